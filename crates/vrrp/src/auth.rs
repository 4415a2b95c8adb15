//! keepalived 2.4's `auth_hmac`: an HMAC-SHA256 trailer after each advertisement, with
//! anti-replay by time window or monotonic sequence, several keys for rotation and the
//! migration modes receive-only → permissive → enforce.
//!
//! The format is keepalived's (`keepalived/vrrp/vrrp_auth_hmac.c` and the `auth_hmac` section
//! of keepalived.conf(5), v2.4.3). The trailer is 28 bytes after the VRRP message (after the
//! v2 authentication data, when there is some):
//!
//! ```text
//!  0      1      2         4                 8         10        12                    28
//!  | type | key  | reserved |  seconds (BE)  | subsec  | counter |  HMAC-SHA256[..16]  |
//! ```
//!
//! - `type` 1 is HMAC-SHA256 truncated to 128 bits; `reserved` is zero.
//! - The 64-bit sequence is `seconds << 32 | subsec << 16 | counter`: the sender's wall clock
//!   (Unix seconds and 1/65536 s) with a counter that breaks ties, so it grows strictly.
//! - The HMAC covers a 20-byte pseudo-header (`4` or `6`, the version, the VRID, zero, the
//!   source address padded to 16 bytes), the VRRP message with its checksum read as zero, the
//!   first 12 trailer bytes and 16 zero bytes in place of the HMAC. The checksum is excluded
//!   because over IPv6 the kernel writes it after signing; the IP header is excluded too.
//! - The VRID and version are the receiver's own, so an advert of another instance sharing
//!   the key fails the HMAC instead of being spliced in.
//!
//! Sans-IO like the rest of the crate: the caller passes the wall-clock time (since the Unix
//! epoch) into [`HmacAuth::sign`] and [`HmacAuth::verify`].

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use hmac::{Mac, digest::KeyInit};

use crate::packet::Version;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Length of the trailer on the wire.
pub const TRAILER_LEN: usize = 28;
/// Length of the truncated HMAC.
pub const HMAC_LEN: usize = 16;
/// Offset of the HMAC in the trailer: everything before it is signed as sent.
pub const HMAC_OFFSET: usize = TRAILER_LEN - HMAC_LEN;
/// The only extension type: HMAC-SHA256 truncated to 128 bits.
pub const EXT_HMAC_SHA256: u8 = 1;
/// Shortest key keepalived accepts (a 128-bit margin under a quantum search).
pub const KEY_LEN_MIN: usize = 32;
/// Longest key keepalived accepts.
pub const KEY_LEN_MAX: usize = 64;
/// Shortest freshness window.
pub const TIME_WINDOW_MIN: Duration = Duration::from_secs(1);
/// Longest freshness window.
pub const TIME_WINDOW_MAX: Duration = Duration::from_secs(300);
/// The floor of the window derived from the advert interval.
pub const TIME_WINDOW_FLOOR: Duration = Duration::from_secs(5);
/// Senders whose replay marks are kept. Only senders whose HMAC verified take a slot, so
/// forged sources cannot churn the table; the least recently seen is evicted.
pub const SENDER_SLOTS: usize = 8;

const PSEUDO_LEN: usize = 20;
/// Offset of the checksum in the VRRP header.
const CHECKSUM_OFFSET: usize = 6;

/// One signing key. Its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey {
    id: u8,
    secret: Vec<u8>,
}

impl HmacKey {
    /// A key with `id` (1..=255) and its bytes (32..=64 of them; see
    /// [`AuthHmacConfig::validate`]).
    pub fn new(id: u8, secret: impl Into<Vec<u8>>) -> Self {
        HmacKey {
            id,
            secret: secret.into(),
        }
    }

    /// The key id carried in the trailer.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The key bytes.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacKey")
            .field("id", &self.id)
            .field(
                "secret",
                &format_args!("<{} bytes redacted>", self.secret.len()),
            )
            .finish()
    }
}

/// How replays are refused (keepalived `anti_replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AntiReplay {
    /// A freshness window around the receiver's clock plus strictly growing sequences per
    /// sender. Needs synchronised clocks (NTP). keepalived's default.
    #[default]
    Time,
    /// Strictly growing sequences per sender only; no clock agreement needed.
    Monotonic,
}

/// The migration modes (keepalived `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HmacMode {
    /// Send trailers and refuse adverts without one. keepalived's default.
    #[default]
    Enforce,
    /// Send trailers; accept adverts without one (but verify those that carry one).
    Permissive,
    /// Send no trailer; accept adverts without one (but verify those that carry one).
    ReceiveOnly,
}

impl HmacMode {
    /// keepalived's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HmacMode::Enforce => "enforce",
            HmacMode::Permissive => "permissive",
            HmacMode::ReceiveOnly => "receive-only",
        }
    }
}

/// `auth_hmac` settings of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHmacConfig {
    /// Every key a receiver accepts; ids are unique.
    pub keys: Vec<HmacKey>,
    /// The key adverts are signed with.
    pub active_key: u8,
    /// Time window or monotonic sequence.
    pub anti_replay: AntiReplay,
    /// Freshness window in whole seconds, 1..=300 (time mode only).
    pub time_window: Duration,
    /// Migration mode.
    pub mode: HmacMode,
}

impl AuthHmacConfig {
    /// keepalived's defaults around `keys` and `active_key`: time mode, enforce, and the
    /// window derived from `advert_interval`.
    pub fn new(keys: Vec<HmacKey>, active_key: u8, advert_interval: Duration) -> Self {
        AuthHmacConfig {
            keys,
            active_key,
            anti_replay: AntiReplay::Time,
            time_window: Self::default_time_window(advert_interval),
            mode: HmacMode::Enforce,
        }
    }

    /// keepalived's default window: max(3 × advert interval, 5 s), rounded up to whole
    /// seconds and at most 300 s.
    pub fn default_time_window(advert_interval: Duration) -> Duration {
        let three = advert_interval.saturating_mul(3);
        let secs = three.as_secs() + u64::from(three.subsec_nanos() > 0);
        Duration::from_secs(secs).clamp(TIME_WINDOW_FLOOR, TIME_WINDOW_MAX)
    }

    /// The key with `id`.
    pub fn key(&self, id: u8) -> Option<&HmacKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Check every field, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if self.keys.is_empty() {
            return Err(AuthConfigError::NoKeys);
        }
        for (i, k) in self.keys.iter().enumerate() {
            if k.id == 0 {
                return Err(AuthConfigError::KeyId);
            }
            if self.keys[..i].iter().any(|o| o.id == k.id) {
                return Err(AuthConfigError::DuplicateKey(k.id));
            }
            if !(KEY_LEN_MIN..=KEY_LEN_MAX).contains(&k.secret.len()) {
                return Err(AuthConfigError::KeyLength {
                    id: k.id,
                    len: k.secret.len(),
                });
            }
        }
        if self.key(self.active_key).is_none() {
            return Err(AuthConfigError::ActiveKey(self.active_key));
        }
        let w = self.time_window;
        if w.subsec_nanos() != 0 || !(TIME_WINDOW_MIN..=TIME_WINDOW_MAX).contains(&w) {
            return Err(AuthConfigError::TimeWindow(w));
        }
        Ok(())
    }
}

/// An `auth_hmac` setting out of range or inconsistent. Messages never show key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// No key is configured.
    #[error("auth_hmac.keys: at least one key is required")]
    NoKeys,
    /// A key id of 0.
    #[error("auth_hmac.keys: key ids are 1..=255")]
    KeyId,
    /// Two keys with one id.
    #[error("auth_hmac.keys: key id {0} is defined twice")]
    DuplicateKey(u8),
    /// A key of the wrong length.
    #[error("auth_hmac.keys[{id}]: {len} bytes; keys are 32..=64 bytes")]
    KeyLength {
        /// The key's id.
        id: u8,
        /// Its length in bytes.
        len: usize,
    },
    /// The active key is not among the keys.
    #[error("auth_hmac.active_key: {0} is not one of the configured key ids")]
    ActiveKey(u8),
    /// The window is out of range or fractional.
    #[error("auth_hmac.time_window: {0:?} must be whole seconds in 1s..=300s")]
    TimeWindow(Duration),
}

/// A decoded trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Extension type (1: HMAC-SHA256/128).
    pub ext_type: u8,
    /// Id of the key that signed it.
    pub key_id: u8,
    /// Zero on send.
    pub reserved: u16,
    /// `seconds << 32 | subsec << 16 | counter`.
    pub sequence: u64,
    /// The truncated HMAC.
    pub hmac: [u8; HMAC_LEN],
}

impl Trailer {
    /// Read a trailer of exactly [`TRAILER_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Option<Trailer> {
        let b: &[u8; TRAILER_LEN] = bytes.try_into().ok()?;
        let mut hmac = [0u8; HMAC_LEN];
        hmac.copy_from_slice(&b[HMAC_OFFSET..]);
        Some(Trailer {
            ext_type: b[0],
            key_id: b[1],
            reserved: u16::from_be_bytes([b[2], b[3]]),
            sequence: u64::from_be_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]),
            hmac,
        })
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0] = self.ext_type;
        b[1] = self.key_id;
        b[2..4].copy_from_slice(&self.reserved.to_be_bytes());
        b[4..12].copy_from_slice(&self.sequence.to_be_bytes());
        b[HMAC_OFFSET..].copy_from_slice(&self.hmac);
        b
    }

    /// The sender's clock, whole Unix seconds (modulo 2^32).
    pub fn seconds(&self) -> u32 {
        (self.sequence >> 32) as u32
    }
}

/// The sequence for a wall-clock reading: seconds in the high 32 bits, a 1/65536 s fraction
/// in the next 16, the counter cleared.
pub fn clock_sequence(since_epoch: Duration) -> u64 {
    let secs = since_epoch.as_secs() as u32;
    let subsec = (u64::from(since_epoch.subsec_nanos()) << 16) / 1_000_000_000;
    (u64::from(secs) << 32) | (subsec << 16)
}

/// RFC 1982 serial number order on the 64-bit sequence, so it survives the field's wrap.
fn seq_after(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) > 0
}

/// Seconds from `b` to `a` on the 32-bit seconds field, wrapping.
fn secs_between(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// The truncated HMAC of `message` (the VRRP message, its checksum read as zero) followed by
/// the first 12 bytes of its trailer, sent by `src` for the instance `version`/`vrid`.
pub fn compute_hmac(
    key: &[u8],
    version: Version,
    vrid: u8,
    src: IpAddr,
    message: &[u8],
    trailer_head: &[u8; HMAC_OFFSET],
) -> [u8; HMAC_LEN] {
    // HMAC takes keys of any length (RFC 2104 §2); ours are validated to 32..=64 bytes.
    let Ok(mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return [0; HMAC_LEN];
    };
    keyed_hmac(mac, version, vrid, src, message, trailer_head)
}

/// [`compute_hmac`] from an HMAC already keyed (its inner and outer pads hashed once per
/// key, not once per advert).
fn keyed_hmac(
    mut mac: HmacSha256,
    version: Version,
    vrid: u8,
    src: IpAddr,
    message: &[u8],
    trailer_head: &[u8; HMAC_OFFSET],
) -> [u8; HMAC_LEN] {
    let mut pseudo = [0u8; PSEUDO_LEN];
    pseudo[1] = version.number();
    pseudo[2] = vrid;
    match src {
        IpAddr::V4(a) => {
            pseudo[0] = 4;
            pseudo[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            pseudo[0] = 6;
            pseudo[4..20].copy_from_slice(&a.octets());
        }
    }
    mac.update(&pseudo);
    if message.len() >= CHECKSUM_OFFSET + 2 {
        mac.update(&message[..CHECKSUM_OFFSET]);
        mac.update(&[0, 0]);
        mac.update(&message[CHECKSUM_OFFSET + 2..]);
    } else {
        mac.update(message);
    }
    mac.update(trailer_head);
    mac.update(&[0u8; HMAC_LEN]);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; HMAC_LEN];
    out.copy_from_slice(&full[..HMAC_LEN]);
    out
}

/// Why a received advert failed `auth_hmac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AuthReject {
    /// No trailer, and the mode is enforce.
    #[error("no auth_hmac trailer (mode enforce)")]
    Missing,
    /// A trailer of the wrong length, an unknown extension type or non-zero reserved bits.
    #[error("malformed auth_hmac trailer")]
    Malformed,
    /// The key id is not configured.
    #[error("unknown auth_hmac key id")]
    UnknownKey,
    /// The HMAC does not verify.
    #[error("invalid auth_hmac hmac")]
    BadMac,
    /// The timestamp is outside the freshness window (time mode).
    #[error("auth_hmac timestamp outside the time window")]
    Stale,
    /// The sequence does not grow past the sender's last accepted one.
    #[error("replayed auth_hmac sequence")]
    Replay,
}

/// A received advert that passed `auth_hmac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// It carried a valid trailer signed with this key.
    Signed {
        /// The key id.
        key_id: u8,
    },
    /// It carried no trailer, which a migration mode accepts.
    Unsigned,
}

#[derive(Debug, Clone, Copy)]
struct Sender {
    addr: IpAddr,
    /// The last accepted sequence; None once expired.
    mark: Option<u64>,
    last_used: u64,
}

/// Each key's HMAC state after hashing its pads. `Debug` shows only the ids.
#[derive(Clone)]
struct Keyed(Vec<(u8, HmacSha256)>);

impl Keyed {
    fn of(cfg: &AuthHmacConfig) -> Self {
        Keyed(
            cfg.keys
                .iter()
                .filter_map(|k| {
                    <HmacSha256 as KeyInit>::new_from_slice(&k.secret)
                        .ok()
                        .map(|m| (k.id, m))
                })
                .collect(),
        )
    }

    fn get(&self, id: u8) -> Option<HmacSha256> {
        self.0
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, m)| m.clone())
    }
}

impl fmt::Debug for Keyed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(id, _)| id))
            .finish()
    }
}

/// The `auth_hmac` state of one instance: configuration, the send sequence and the
/// per-sender replay marks.
#[derive(Debug, Clone)]
pub struct HmacAuth {
    cfg: AuthHmacConfig,
    keyed: Keyed,
    send_seq: u64,
    senders: Vec<Sender>,
    lru_clock: u64,
}

impl HmacAuth {
    /// State for a validated configuration.
    pub fn new(cfg: AuthHmacConfig) -> Self {
        HmacAuth {
            keyed: Keyed::of(&cfg),
            cfg,
            send_seq: 0,
            senders: Vec::with_capacity(SENDER_SLOTS),
            lru_clock: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AuthHmacConfig {
        &self.cfg
    }

    /// Take new settings (a key rotation, a migration step) without losing the send
    /// sequence or the replay marks, so nothing can be replayed across the change.
    pub fn reconfigure(&mut self, cfg: AuthHmacConfig) {
        self.keyed = Keyed::of(&cfg);
        self.cfg = cfg;
    }

    /// Whether adverts get a trailer (every mode but receive-only).
    pub fn signs(&self) -> bool {
        self.cfg.mode != HmacMode::ReceiveOnly
    }

    /// The next sequence: the clock, or one past the last value when the clock has not
    /// moved (or went back). In time mode a last value stranded more than the window ahead of
    /// the clock (a corrected clock step) restarts from the clock, since receivers would
    /// refuse it; monotonic mode keeps strict growth, its only guarantee.
    fn next_sequence(&mut self, since_epoch: Duration) -> u64 {
        let clock = clock_sequence(since_epoch);
        if seq_after(clock, self.send_seq) {
            self.send_seq = clock;
            return clock;
        }
        let ahead = secs_between((self.send_seq >> 32) as u32, (clock >> 32) as u32);
        if self.cfg.anti_replay == AntiReplay::Time && ahead > self.cfg.time_window.as_secs() as i64
        {
            self.send_seq = clock;
        } else {
            self.send_seq = self.send_seq.wrapping_add(1);
        }
        self.send_seq
    }

    /// The trailer for `message` (the encoded VRRP message) sent by `src` at wall-clock time
    /// `since_epoch`, or None in receive-only mode. Each call takes a new sequence.
    pub fn sign(
        &mut self,
        since_epoch: Duration,
        version: Version,
        vrid: u8,
        src: IpAddr,
        message: &[u8],
    ) -> Option<[u8; TRAILER_LEN]> {
        if !self.signs() {
            return None;
        }
        let sequence = self.next_sequence(since_epoch);
        let mut trailer = Trailer {
            ext_type: EXT_HMAC_SHA256,
            key_id: self.cfg.active_key,
            reserved: 0,
            sequence,
            hmac: [0; HMAC_LEN],
        };
        // A validated configuration always has its active key; a zero HMAC is refused.
        if let Some(mac) = self.keyed.get(self.cfg.active_key) {
            let head = head_of(&trailer.to_bytes());
            trailer.hmac = keyed_hmac(mac, version, vrid, src, message, &head);
        }
        Some(trailer.to_bytes())
    }

    /// Check a received advert. `message` is the VRRP message and `trailer` whatever
    /// follows it (None when nothing does). The cheap checks (format, window, key id) run
    /// before the HMAC so a flood of stale or foreign adverts costs no digest; the replay
    /// mark moves only after the HMAC verified, so forged adverts never move it.
    pub fn verify(
        &mut self,
        since_epoch: Duration,
        version: Version,
        vrid: u8,
        src: IpAddr,
        message: &[u8],
        trailer: Option<&[u8]>,
    ) -> Result<Verified, AuthReject> {
        let Some(bytes) = trailer else {
            return match self.cfg.mode {
                HmacMode::Enforce => Err(AuthReject::Missing),
                HmacMode::Permissive | HmacMode::ReceiveOnly => Ok(Verified::Unsigned),
            };
        };
        let tr = Trailer::parse(bytes).ok_or(AuthReject::Malformed)?;
        if tr.ext_type != EXT_HMAC_SHA256 || tr.reserved != 0 {
            return Err(AuthReject::Malformed);
        }
        let now_secs = since_epoch.as_secs() as u32;
        let window = self.cfg.time_window.as_secs() as i64;
        let time = self.cfg.anti_replay == AntiReplay::Time;
        if time && secs_between(now_secs, tr.seconds()).abs() > window {
            return Err(AuthReject::Stale);
        }
        let mac = self.keyed.get(tr.key_id).ok_or(AuthReject::UnknownKey)?;
        let head = head_of(&tr.to_bytes());
        let expected = keyed_hmac(mac, version, vrid, src, message, &head);
        if !constant_time_eq(&expected, &tr.hmac) {
            return Err(AuthReject::BadMac);
        }
        let slot = self.sender(src);
        if let Some(mark) = slot.mark
            && time
            && secs_between(now_secs, (mark >> 32) as u32).abs() > window
        {
            // A mark outside the window only orders adverts the window refuses anyway;
            // expiring it lets a sender whose clock was stepped back recover.
            slot.mark = None;
        }
        if slot.mark.is_some_and(|m| !seq_after(tr.sequence, m)) {
            return Err(AuthReject::Replay);
        }
        slot.mark = Some(tr.sequence);
        Ok(Verified::Signed { key_id: tr.key_id })
    }

    /// The replay slot of `addr`, taking the least recently used one if it has none.
    fn sender(&mut self, addr: IpAddr) -> &mut Sender {
        self.lru_clock += 1;
        let clock = self.lru_clock;
        let index = match self.senders.iter().position(|s| s.addr == addr) {
            Some(i) => i,
            None if self.senders.len() < SENDER_SLOTS => {
                self.senders.push(Sender {
                    addr,
                    mark: None,
                    last_used: 0,
                });
                self.senders.len() - 1
            }
            None => {
                let (i, _) = self
                    .senders
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.last_used)
                    .unwrap_or((0, &self.senders[0]));
                self.senders[i] = Sender {
                    addr,
                    mark: None,
                    last_used: 0,
                };
                i
            }
        };
        let slot = &mut self.senders[index];
        slot.last_used = clock;
        slot
    }
}

fn head_of(trailer: &[u8; TRAILER_LEN]) -> [u8; HMAC_OFFSET] {
    let mut head = [0u8; HMAC_OFFSET];
    head.copy_from_slice(&trailer[..HMAC_OFFSET]);
    head
}

/// Compare without an early exit, so the time taken says nothing about the expected HMAC.
fn constant_time_eq(a: &[u8; HMAC_LEN], b: &[u8; HMAC_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key_00_1f() -> Vec<u8> {
        (0u8..32).collect()
    }

    fn cfg(mode: HmacMode, anti_replay: AntiReplay) -> AuthHmacConfig {
        AuthHmacConfig {
            keys: vec![HmacKey::new(1, key_00_1f())],
            active_key: 1,
            anti_replay,
            time_window: Duration::from_secs(5),
            mode,
        }
    }

    /// keepalived's own test vectors (the draft appendix images in keepalived's
    /// auth_hmac_test.c): key 00..1f, VRID 51, priority 200, sequence 0x6800000080000000.
    #[test]
    fn keepalived_appendix_vectors_verify() {
        let v4 = hex(concat!(
            "3133c80100644402c0000264",
            "010100006800000080000000",
            "1b84bc4e8e43892dc6d98448f8ee2265"
        ));
        let v6 = hex(concat!(
            "3133c8010064a2e9",
            "fe800000000000000000000000000100",
            "010100006800000080000000",
            "c8c56146ebfd66ee10ec4d8186461b78"
        ));
        let cases: [(&[u8], IpAddr, usize); 2] = [
            (&v4, "198.51.100.10".parse().unwrap(), 12),
            (&v6, "fe80::10".parse().unwrap(), 24),
        ];
        for (img, src, mlen) in cases {
            // The fixed timestamps are far in the past: verify in monotonic mode.
            let mut auth = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Monotonic));
            let got = auth.verify(
                Duration::ZERO,
                Version::V3,
                51,
                src,
                &img[..mlen],
                Some(&img[mlen..]),
            );
            assert_eq!(got, Ok(Verified::Signed { key_id: 1 }), "{src}");
        }
    }

    /// keepalived's mutation table: each flipped byte of the IPv6 vector gives its reason;
    /// the checksum is outside the HMAC.
    #[test]
    fn keepalived_mutation_table() {
        let img = hex(concat!(
            "3133c8010064a2e9",
            "fe800000000000000000000000000100",
            "010100006800000080000000",
            "c8c56146ebfd66ee10ec4d8186461b78"
        ));
        let src: IpAddr = "fe80::10".parse().unwrap();
        let t = 24;
        let cases = [
            (2, Err(AuthReject::BadMac)),            // priority
            (5, Err(AuthReject::BadMac)),            // advert interval
            (6, Ok(Verified::Signed { key_id: 1 })), // checksum
            (8 + 15, Err(AuthReject::BadMac)),       // the VIP
            (t, Err(AuthReject::Malformed)),         // ext type
            (t + 1, Err(AuthReject::UnknownKey)),    // key id
            (t + 2, Err(AuthReject::Malformed)),     // reserved
            (t + 4, Err(AuthReject::BadMac)),        // seconds
            (t + 10, Err(AuthReject::BadMac)),       // counter
            (t + 12, Err(AuthReject::BadMac)),       // hmac
        ];
        for (offset, want) in cases {
            let mut b = img.clone();
            b[offset] ^= 1;
            let mut auth = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Monotonic));
            let got = auth.verify(Duration::ZERO, Version::V3, 51, src, &b[..t], Some(&b[t..]));
            assert_eq!(got, want, "byte {offset}");
        }
        // The pseudo-header binds the source and the receiver's VRID.
        let mut auth = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Monotonic));
        let other: IpAddr = "fe80::20".parse().unwrap();
        let r = auth.verify(
            Duration::ZERO,
            Version::V3,
            51,
            other,
            &img[..t],
            Some(&img[t..]),
        );
        assert_eq!(r, Err(AuthReject::BadMac));
        let r = auth.verify(
            Duration::ZERO,
            Version::V3,
            52,
            src,
            &img[..t],
            Some(&img[t..]),
        );
        assert_eq!(r, Err(AuthReject::BadMac));
    }

    fn advert_v6() -> Vec<u8> {
        let mut m = vec![0x31, 51, 200, 1, 0, 100, 0, 0];
        m.extend_from_slice(&"fe80::100".parse::<Ipv6Addr>().unwrap().octets());
        m
    }

    #[test]
    fn a_signed_advert_verifies_once_then_is_a_replay() {
        let now = Duration::from_secs(1_800_000_000);
        let src: IpAddr = "fe80::10".parse().unwrap();
        let msg = advert_v6();
        let mut tx = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        let mut rx = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        let tr = tx.sign(now, Version::V3, 51, src, &msg).unwrap();
        assert_eq!(
            rx.verify(now, Version::V3, 51, src, &msg, Some(&tr)),
            Ok(Verified::Signed { key_id: 1 })
        );
        assert_eq!(
            rx.verify(now, Version::V3, 51, src, &msg, Some(&tr)),
            Err(AuthReject::Replay)
        );
        // A second receiver has its own marks: one advert reaches every peer.
        let mut rx2 = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        assert!(
            rx2.verify(now, Version::V3, 51, src, &msg, Some(&tr))
                .is_ok()
        );
    }

    #[test]
    fn sequences_grow_within_one_clock_tick() {
        let now = Duration::from_secs(1_800_000_000);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let mut tx = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        let a = Trailer::parse(&tx.sign(now, Version::V3, 51, src, &[0; 12]).unwrap()).unwrap();
        let b = Trailer::parse(&tx.sign(now, Version::V3, 51, src, &[0; 12]).unwrap()).unwrap();
        assert_eq!(b.sequence, a.sequence + 1);
        assert_eq!(a.seconds(), 1_800_000_000);
        // The clock going back does not make the sequence go back.
        let c = tx.sign(now - Duration::from_secs(2), Version::V3, 51, src, &[0; 12]);
        assert_eq!(
            Trailer::parse(&c.unwrap()).unwrap().sequence,
            b.sequence + 1
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_before_the_hmac() {
        let now = Duration::from_secs(1_800_000_000);
        let src: IpAddr = "fe80::10".parse().unwrap();
        let msg = advert_v6();
        let mut tx = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        let tr = tx.sign(now, Version::V3, 51, src, &msg).unwrap();
        let mut rx = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        for skew in [6i64, -6, 100, -100] {
            let at = Duration::from_secs((1_800_000_000 + skew) as u64);
            assert_eq!(
                rx.verify(at, Version::V3, 51, src, &msg, Some(&tr)),
                Err(AuthReject::Stale),
                "receiver clock {skew:+} s"
            );
        }
        // Exactly the window is still fresh.
        let at = now + Duration::from_secs(5);
        assert!(rx.verify(at, Version::V3, 51, src, &msg, Some(&tr)).is_ok());
        // Monotonic mode has no window.
        let mut rx = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Monotonic));
        let late = now + Duration::from_secs(3600);
        assert!(
            rx.verify(late, Version::V3, 51, src, &msg, Some(&tr))
                .is_ok()
        );
    }

    /// keepalived: a stranded future mark expires in time mode (a sender recovering from a
    /// clock step), but monotonic mode keeps it.
    #[test]
    fn an_expired_replay_mark_lets_a_restarted_sender_in_time_mode_only() {
        let now = Duration::from_secs(1_800_000_000);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let msg = [0x31, 51, 100, 1, 0, 100, 0, 0, 192, 0, 2, 100];
        for (mode, want) in [
            (AntiReplay::Time, Ok(Verified::Signed { key_id: 1 })),
            (AntiReplay::Monotonic, Err(AuthReject::Replay)),
        ] {
            let mut rx = HmacAuth::new(cfg(HmacMode::Enforce, mode));
            let mut ahead = HmacAuth::new(cfg(HmacMode::Enforce, mode));
            let future = now + Duration::from_secs(3600);
            let tr = ahead.sign(future, Version::V3, 51, src, &msg).unwrap();
            // Accept the future advert (monotonic has no window; time mode sees it at that time).
            assert!(
                rx.verify(future, Version::V3, 51, src, &msg, Some(&tr))
                    .is_ok()
            );
            let mut fresh = HmacAuth::new(cfg(HmacMode::Enforce, mode));
            let tr = fresh.sign(now, Version::V3, 51, src, &msg).unwrap();
            assert_eq!(
                rx.verify(now, Version::V3, 51, src, &msg, Some(&tr)),
                want,
                "{mode:?}"
            );
        }
    }

    #[test]
    fn migration_modes_decide_about_missing_trailers_only() {
        let now = Duration::from_secs(1_800_000_000);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let msg = [0x31, 51, 100, 1, 0, 100, 0, 0, 192, 0, 2, 100];
        for (mode, unsigned) in [
            (HmacMode::Enforce, Err(AuthReject::Missing)),
            (HmacMode::Permissive, Ok(Verified::Unsigned)),
            (HmacMode::ReceiveOnly, Ok(Verified::Unsigned)),
        ] {
            let mut rx = HmacAuth::new(cfg(mode, AntiReplay::Time));
            assert_eq!(rx.verify(now, Version::V3, 51, src, &msg, None), unsigned);
            // A trailer that is present is checked in every mode.
            let mut bad = HmacAuth::new(AuthHmacConfig {
                keys: vec![HmacKey::new(1, vec![7; 32])],
                ..cfg(HmacMode::Enforce, AntiReplay::Time)
            });
            let tr = bad.sign(now, Version::V3, 51, src, &msg).unwrap();
            assert_eq!(
                rx.verify(now, Version::V3, 51, src, &msg, Some(&tr)),
                Err(AuthReject::BadMac),
                "{mode:?}"
            );
            assert_eq!(
                rx.verify(now, Version::V3, 51, src, &msg, Some(&tr[..27])),
                Err(AuthReject::Malformed)
            );
        }
        let mut ro = HmacAuth::new(cfg(HmacMode::ReceiveOnly, AntiReplay::Time));
        assert_eq!(ro.sign(now, Version::V3, 51, src, &msg), None);
    }

    /// Rotation: a receiver accepts every configured key; reconfiguring keeps the marks, so
    /// an advert accepted before the change cannot be replayed after it.
    #[test]
    fn rotation_keeps_replay_marks() {
        let now = Duration::from_secs(1_800_000_000);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let msg = [0x31, 51, 100, 1, 0, 100, 0, 0, 192, 0, 2, 100];
        let two = AuthHmacConfig {
            keys: vec![HmacKey::new(1, key_00_1f()), HmacKey::new(2, vec![9; 40])],
            active_key: 2,
            ..cfg(HmacMode::Enforce, AntiReplay::Time)
        };
        let mut tx = HmacAuth::new(two.clone());
        let mut rx = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        let tr = tx.sign(now, Version::V3, 51, src, &msg).unwrap();
        assert_eq!(
            rx.verify(now, Version::V3, 51, src, &msg, Some(&tr)),
            Err(AuthReject::UnknownKey)
        );
        rx.reconfigure(two);
        assert_eq!(
            rx.verify(now, Version::V3, 51, src, &msg, Some(&tr)),
            Ok(Verified::Signed { key_id: 2 })
        );
        rx.reconfigure(cfg(HmacMode::Enforce, AntiReplay::Time));
        let mut k1 = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        let old = k1.sign(now - Duration::from_secs(1), Version::V3, 51, src, &msg);
        assert_eq!(
            rx.verify(now, Version::V3, 51, src, &msg, Some(&old.unwrap())),
            Err(AuthReject::Replay)
        );
    }

    #[test]
    fn forged_senders_cannot_evict_a_verified_sender() {
        let now = Duration::from_secs(1_800_000_000);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let msg = [0x31, 51, 100, 1, 0, 100, 0, 0, 192, 0, 2, 100];
        let mut tx = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        let mut rx = HmacAuth::new(cfg(HmacMode::Enforce, AntiReplay::Time));
        let tr = tx.sign(now, Version::V3, 51, src, &msg).unwrap();
        assert!(
            rx.verify(now, Version::V3, 51, src, &msg, Some(&tr))
                .is_ok()
        );
        for host in 2..200u8 {
            let forged: IpAddr = format!("192.0.2.{host}").parse().unwrap();
            let _ = rx.verify(now, Version::V3, 51, forged, &msg, Some(&tr));
        }
        assert_eq!(
            rx.verify(now, Version::V3, 51, src, &msg, Some(&tr)),
            Err(AuthReject::Replay)
        );
    }

    #[test]
    fn validation_names_the_field() {
        let ok = cfg(HmacMode::Enforce, AntiReplay::Time);
        assert_eq!(ok.validate(), Ok(()));
        let short = AuthHmacConfig {
            keys: vec![HmacKey::new(1, vec![1; 31])],
            ..ok.clone()
        };
        assert_eq!(
            short.validate(),
            Err(AuthConfigError::KeyLength { id: 1, len: 31 })
        );
        let missing = AuthHmacConfig {
            active_key: 3,
            ..ok.clone()
        };
        assert_eq!(missing.validate(), Err(AuthConfigError::ActiveKey(3)));
        let dup = AuthHmacConfig {
            keys: vec![HmacKey::new(1, vec![1; 32]), HmacKey::new(1, vec![2; 32])],
            ..ok.clone()
        };
        assert_eq!(dup.validate(), Err(AuthConfigError::DuplicateKey(1)));
        let wide = AuthHmacConfig {
            time_window: Duration::from_secs(301),
            ..ok.clone()
        };
        assert!(matches!(
            wide.validate(),
            Err(AuthConfigError::TimeWindow(_))
        ));
        assert_eq!(
            AuthHmacConfig::default_time_window(Duration::from_millis(100)),
            Duration::from_secs(5)
        );
        assert_eq!(
            AuthHmacConfig::default_time_window(Duration::from_millis(2500)),
            Duration::from_secs(8)
        );
        assert_eq!(
            AuthHmacConfig::default_time_window(Duration::from_secs(255)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn debug_output_never_shows_key_bytes() {
        let k = HmacKey::new(1, b"haplane-fixture-rotation-key-number-two".to_vec());
        let text = format!("{:?}", cfg(HmacMode::Enforce, AntiReplay::Time));
        assert!(!text.contains("0, 1, 2, 3"), "{text}");
        let text = format!("{k:?}");
        assert!(!text.contains("haplane-fixture"), "{text}");
        assert!(text.contains("redacted"));
    }
}
