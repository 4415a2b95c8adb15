//! The VRRP router state machine (RFC 5798 §6, RFC 3768 §6) with keepalived's FAULT state,
//! tracked-check weights, `nopreempt` and `preempt_delay`.
//!
//! Sans-IO: feed it packets, timeouts and check results with the current [`Instant`]; drain
//! [`Action`]s with [`Router::poll_action`] and wake it at [`Router::poll_timeout`].

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::auth::{AuthHmacConfig, AuthReject, HmacAuth, Verified};
use crate::config::{ConfigError, PRIORITY_OWNER, RouterConfig};
use crate::packet::{
    AUTH_LEN, Advertisement, ChecksumMode, DecodeError, TTL, Version, append_trailer, message_len,
    multicast_group, password_auth_data,
};

/// Minimum gap between re-announcements provoked by lower-priority masters.
const LOWER_ANNOUNCE_GAP: Duration = Duration::from_secs(1);

/// Router state (RFC 5798 §6.4) plus keepalived's FAULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or shut down (RFC 5798 §6.4.1).
    Initialize,
    /// Monitoring the master (RFC 5798 §6.4.2).
    Backup,
    /// Forwarding for the virtual addresses (RFC 5798 §6.4.3).
    Master,
    /// keepalived FAULT: interface down or a weight-0 check failing; takes no part.
    Fault,
}

impl State {
    /// keepalived's name for the state, as passed to notify scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A received VRRP message with the IP fields the checks need.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address (the group, or us in unicast mode).
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit as received.
    pub hop_limit: u8,
    /// The VRRP message (IP payload).
    pub payload: &'a [u8],
}

/// Something the I/O side must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a VRRP message (payload only: the kernel builds the IP header, TTL/hop limit 255,
    /// protocol 112, source = primary address). One per unicast peer, or one to the group.
    Send {
        /// Destination: the multicast group or a unicast peer.
        dst: IpAddr,
        /// The encoded VRRP message, checksum included.
        payload: Vec<u8>,
    },
    /// Add the virtual addresses to the interface.
    AddVips(Vec<IpAddr>),
    /// Remove the virtual addresses from the interface.
    RemoveVips(Vec<IpAddr>),
    /// Send a gratuitous ARP / unsolicited NA burst for these addresses now (RFC 5798 §6.4.1);
    /// repeats are scheduled by the I/O side.
    Announce(Vec<IpAddr>),
    /// The state changed (for notify scripts, logs and metrics).
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Effective priority at the time of the change.
        priority: u8,
    },
}

macro_rules! discard_reasons {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// Why a received message was discarded. Discards never change state.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DiscardReason {
            $( $(#[$doc])* $variant, )*
        }

        impl DiscardReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DiscardReason] = &[$(DiscardReason::$variant,)*];

            /// A stable snake_case name, for metrics labels.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DiscardReason::$variant => $name,)*
                }
            }
        }
    };
}

discard_reasons! {
    /// Shorter than the header, addresses and auth data require.
    Truncated => "truncated",
    /// Structurally invalid (zero interval).
    Malformed => "malformed",
    /// TTL / hop limit not 255 (RFC 5798 §7.1, RFC 3768 §7.1).
    BadTtl => "bad_ttl",
    /// Checksum does not verify (with our checksum mode).
    BadChecksum => "bad_checksum",
    /// Not our protocol version.
    BadVersion => "bad_version",
    /// Type is not 1 (advertisement).
    BadType => "bad_type",
    /// Another virtual router's advertisement.
    VridMismatch => "vrid_mismatch",
    /// v2 authentication type or password differs.
    AuthMismatch => "auth_mismatch",
    /// v2 advertisement interval differs from ours (RFC 3768 §7.1).
    IntervalMismatch => "interval_mismatch",
    /// Our own advertisement looped back.
    OwnPacket => "own_packet",
    /// Unicast mode and the source is not a configured peer.
    NotAPeer => "not_a_peer",
    /// Source of the other address family.
    AddressFamily => "address_family",
    /// Received while in Initialize or Fault, where adverts are not processed.
    Inactive => "inactive",
    /// auth_hmac: no trailer, and the mode is enforce.
    HmacMissing => "hmac_missing",
    /// auth_hmac: a trailer of the wrong length, type or reserved bits.
    HmacMalformed => "hmac_malformed",
    /// auth_hmac: the trailer names a key id we do not have.
    HmacUnknownKey => "hmac_unknown_key",
    /// auth_hmac: the HMAC does not verify (wrong key, or the advert was altered).
    HmacBadMac => "hmac_bad_mac",
    /// auth_hmac: the timestamp is outside the time window.
    HmacStale => "hmac_stale",
    /// auth_hmac: the sequence does not grow (a replayed advert).
    HmacReplay => "hmac_replay",
}

impl From<AuthReject> for DiscardReason {
    fn from(r: AuthReject) -> Self {
        match r {
            AuthReject::Missing => DiscardReason::HmacMissing,
            AuthReject::Malformed => DiscardReason::HmacMalformed,
            AuthReject::UnknownKey => DiscardReason::HmacUnknownKey,
            AuthReject::BadMac => DiscardReason::HmacBadMac,
            AuthReject::Stale => DiscardReason::HmacStale,
            AuthReject::Replay => DiscardReason::HmacReplay,
        }
    }
}

/// Counters of one router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Valid advertisements processed.
    pub adverts_received: u64,
    /// Advertisements sent (one per destination).
    pub adverts_sent: u64,
    /// Valid advertisements received with priority 0.
    pub priority_zero_received: u64,
    /// Priority-0 advertisements sent (one per destination).
    pub priority_zero_sent: u64,
    /// State transitions.
    pub transitions: u64,
    /// Transitions into Master.
    pub became_master: u64,
    /// auth_hmac: adverts accepted with a verified trailer.
    pub hmac_verified: u64,
    /// auth_hmac: adverts accepted without a trailer (permissive or receive-only).
    pub hmac_unsigned_accepted: u64,
    discards: [u64; DiscardReason::ALL.len()],
}

impl Counters {
    /// Messages discarded for `reason`.
    pub fn discarded(&self, reason: DiscardReason) -> u64 {
        self.discards[reason as usize]
    }

    /// All messages discarded.
    pub fn discarded_total(&self) -> u64 {
        self.discards.iter().sum()
    }

    /// Discard counts by reason, every reason listed.
    pub fn discards(&self) -> impl Iterator<Item = (DiscardReason, u64)> + '_ {
        DiscardReason::ALL.iter().map(|r| (*r, self.discarded(*r)))
    }
}

/// v2 password auth data; `Debug` does not show it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct AuthData([u8; AUTH_LEN]);

impl fmt::Debug for AuthData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One VRRP instance.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    checksum_mode: ChecksumMode,
    auth: Option<AuthData>,
    /// keepalived 2.4 auth_hmac state (keys, send sequence, replay marks).
    hmac: Option<HmacAuth>,
    /// An instant and the wall-clock time (since the Unix epoch) at that instant.
    wall_clock: Option<(Instant, Duration)>,
    /// The interval field we send: v2 seconds, v3 centiseconds.
    interval_field: u16,
    state: State,
    check_up: Vec<bool>,
    interface_up: bool,
    master_adver_interval: Duration,
    adver_timer: Option<Instant>,
    master_down_timer: Option<Instant>,
    /// keepalived preempt_delay: until this instant a lower-priority master is accepted.
    preempt_deadline: Option<Instant>,
    /// Last re-announcement provoked by a lower-priority master.
    last_lower_announce: Option<Instant>,
    /// Last master seen (address, priority).
    master: Option<(IpAddr, u8)>,
    actions: VecDeque<Action>,
    counters: Counters,
}

impl Router {
    /// A router in Initialize. Checks start passing and the interface up; report otherwise
    /// with [`Router::set_check`] / [`Router::set_interface_up`] before [`Router::start`].
    pub fn new(config: RouterConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let interval_field = match config.version {
            // Validated: whole seconds 1..=255, or 1..=4095 centiseconds.
            Version::V2 => u16::try_from(config.advert_interval.as_secs()).unwrap_or(u16::MAX),
            Version::V3 => {
                u16::try_from(config.advert_interval.as_millis() / 10).unwrap_or(u16::MAX)
            }
        };
        Ok(Router {
            checksum_mode: if config.v3_checksum_as_v2 {
                ChecksumMode::MessageOnly
            } else {
                ChecksumMode::PseudoHeader
            },
            auth: config
                .auth_pass
                .as_deref()
                .map(|p| AuthData(password_auth_data(p))),
            hmac: config.auth_hmac.clone().map(HmacAuth::new),
            wall_clock: None,
            interval_field,
            state: State::Initialize,
            check_up: vec![true; config.tracked.len()],
            interface_up: true,
            master_adver_interval: config.advert_interval,
            adver_timer: None,
            master_down_timer: None,
            preempt_deadline: None,
            last_lower_announce: None,
            master: None,
            actions: VecDeque::new(),
            counters: Counters::default(),
            cfg: config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Tell the router the wall-clock time (since the Unix epoch) at `now`. auth_hmac signs
    /// with it and checks the time window against it; the I/O side calls this before
    /// handing over packets and timeouts, the simulator with virtual clocks. Until it is
    /// called the wall clock reads as the epoch, so time-mode adverts are refused as stale.
    pub fn set_wall_clock(&mut self, now: Instant, since_epoch: Duration) {
        self.wall_clock = Some((now, since_epoch));
    }

    fn wall_time(&self, now: Instant) -> Duration {
        match self.wall_clock {
            Some((at, t)) if now >= at => t + (now - at),
            Some((at, t)) => t.saturating_sub(at - now),
            None => Duration::ZERO,
        }
    }

    /// Change the auth_hmac settings in place (a key rotation or a migration step): the
    /// send sequence and the replay marks carry over, the state does not change.
    pub fn set_auth_hmac(&mut self, auth: Option<AuthHmacConfig>) -> Result<(), ConfigError> {
        let mut cfg = self.cfg.clone();
        cfg.auth_hmac = auth.clone();
        cfg.validate()?;
        self.hmac = match (self.hmac.take(), auth.clone()) {
            (Some(mut state), Some(new)) => {
                state.reconfigure(new);
                Some(state)
            }
            (None, Some(new)) => Some(HmacAuth::new(new)),
            (_, None) => None,
        };
        self.cfg.auth_hmac = auth;
        Ok(())
    }

    /// Priority after tracked-check weights (keepalived): base + negative weights of failing
    /// checks + positive weights of passing checks, clamped to 1..=254. The owner (255) is
    /// not adjusted.
    pub fn effective_priority(&self) -> u8 {
        if self.cfg.priority == PRIORITY_OWNER {
            return PRIORITY_OWNER;
        }
        let mut p = i32::from(self.cfg.priority);
        for (check, up) in self.cfg.tracked.iter().zip(&self.check_up) {
            let w = i32::from(check.weight);
            if (w < 0 && !up) || (w > 0 && *up) {
                p += w;
            }
        }
        // Clamped to 1..=254, so the conversion cannot fail.
        u8::try_from(p.clamp(1, 254)).unwrap_or(1)
    }

    /// The current master as last seen: ourselves when Master, the last accepted (or
    /// preempted) advertiser when Backup, none otherwise.
    pub fn master_address(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.cfg.primary_address),
            State::Backup => self.master.map(|(a, _)| a),
            State::Initialize | State::Fault => None,
        }
    }

    /// Master_Adver_Interval: learned from the master's adverts in v3 (RFC 5798 §6.4.2),
    /// our own interval in v2 and while Master.
    pub fn master_adver_interval(&self) -> Duration {
        match self.state {
            State::Master => self.cfg.advert_interval,
            _ => self.master_adver_interval,
        }
    }

    /// Skew_Time. v3: ((256 − Priority) × Master_Adver_Interval) / 256 (RFC 5798 §6.1);
    /// v2: (256 − Priority) / 256 s (RFC 3768 §6.1).
    pub fn skew_time(&self) -> Duration {
        let unit = match self.cfg.version {
            Version::V2 => Duration::from_secs(1),
            Version::V3 => self.master_adver_interval,
        };
        unit * (256 - u32::from(self.effective_priority())) / 256
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time (RFC 5798 §6.1).
    pub fn master_down_interval(&self) -> Duration {
        3 * self.master_adver_interval + self.skew_time()
    }

    /// The next deadline at which [`Router::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Master => self.adver_timer,
            State::Backup => self.master_down_timer,
            State::Initialize | State::Fault => None,
        }
    }

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Leave Initialize (RFC 5798 §6.4.1). The owner becomes Master at once, others Backup;
    /// a router with a fault condition goes to Fault. No effect unless in Initialize.
    pub fn start(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        if self.faulted() {
            self.enter_fault(now);
        } else if self.effective_priority() == PRIORITY_OWNER {
            self.become_master(now);
        } else {
            self.become_backup(now, None);
            // keepalived: preemption waits preempt_delay after startup.
            if !self.cfg.preempt_delay.is_zero() {
                self.preempt_deadline = Some(now + self.cfg.preempt_delay);
            }
        }
    }

    /// Fire expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Master => {
                if self.adver_timer.is_some_and(|t| t <= now) {
                    // RFC 5798 §6.4.3: on Adver_Timer expiry send an advert and reset it.
                    self.send_advert(now, self.effective_priority());
                    self.adver_timer = Some(now + self.cfg.advert_interval);
                }
            }
            State::Backup => {
                if self.master_down_timer.is_some_and(|t| t <= now) {
                    // RFC 5798 §6.4.2: Master_Down_Timer fired.
                    self.become_master(now);
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    /// Process a received message. Invalid messages are counted and dropped (RFC 5798 §7.1);
    /// the reason is returned so the I/O side can log it (rate-limited, see
    /// [`crate::log_limit`]). None: the advert was accepted.
    pub fn handle_packet(&mut self, now: Instant, pkt: Incoming<'_>) -> Option<DiscardReason> {
        match self.accept(now, pkt) {
            Ok(ad) => {
                self.on_advert(now, pkt.src, &ad);
                None
            }
            Err(reason) => {
                self.counters.discards[reason as usize] += 1;
                Some(reason)
            }
        }
    }

    /// The auth_hmac state: mode, keys and active key (`None` without auth_hmac).
    pub fn auth_hmac(&self) -> Option<&crate::auth::AuthHmacConfig> {
        self.hmac.as_ref().map(HmacAuth::config)
    }

    /// Report a tracked check's result (after rise/fall). Returns false for an unknown index.
    pub fn set_check(&mut self, now: Instant, index: usize, up: bool) -> bool {
        let Some(slot) = self.check_up.get_mut(index) else {
            return false;
        };
        *slot = up;
        self.reconcile(now);
        true
    }

    /// Report the interface's link state; down means Fault (keepalived).
    pub fn set_interface_up(&mut self, now: Instant, up: bool) {
        self.interface_up = up;
        self.reconcile(now);
    }

    /// Stop (RFC 5798 §6.4.3 Shutdown): a Master sends a priority-0 advert and removes the
    /// virtual addresses. Every state goes to Initialize; [`Router::start`] restarts.
    pub fn shutdown(&mut self, now: Instant) {
        match self.state {
            State::Initialize => return,
            State::Master => {
                self.send_advert(now, 0);
                self.actions
                    .push_back(Action::RemoveVips(self.cfg.virtual_addresses.clone()));
            }
            State::Backup | State::Fault => {}
        }
        self.clear_timers();
        self.set_state(State::Initialize);
    }

    fn faulted(&self) -> bool {
        !self.interface_up
            || self
                .cfg
                .tracked
                .iter()
                .zip(&self.check_up)
                .any(|(c, up)| c.weight == 0 && !up)
    }

    /// Move in or out of Fault after a check or link change. A priority change alone takes
    /// effect with the next advert (Master) or the next received one (Backup).
    fn reconcile(&mut self, now: Instant) {
        match (self.state, self.faulted()) {
            (State::Initialize, _) => {}
            (State::Fault, false) => {
                // keepalived leaves FAULT to BACKUP; the owner goes straight to Master.
                if self.effective_priority() == PRIORITY_OWNER {
                    self.become_master(now);
                } else {
                    self.become_backup(now, None);
                }
            }
            (State::Backup | State::Master, true) => self.enter_fault(now),
            _ => {}
        }
    }

    fn accept(&mut self, now: Instant, pkt: Incoming<'_>) -> Result<Advertisement, DiscardReason> {
        if matches!(self.state, State::Initialize | State::Fault) {
            return Err(DiscardReason::Inactive);
        }
        let primary = self.cfg.primary_address;
        if pkt.src.is_ipv4() != primary.is_ipv4() || pkt.dst.is_ipv4() != primary.is_ipv4() {
            return Err(DiscardReason::AddressFamily);
        }
        if pkt.src == primary {
            return Err(DiscardReason::OwnPacket);
        }
        if !self.cfg.unicast_peers.is_empty() && !self.cfg.unicast_peers.contains(&pkt.src) {
            return Err(DiscardReason::NotAPeer);
        }
        // RFC 5798 §7.1 / RFC 3768 §7.1: MUST discard unless TTL / hop limit is 255.
        if pkt.hop_limit != TTL {
            return Err(DiscardReason::BadTtl);
        }
        // Check the version before decoding so a v2 message at a v3 router (or the reverse)
        // counts as a version mismatch, not as whatever else v2/v3 parsing trips on.
        if let Some(b) = pkt.payload.first()
            && matches!(b >> 4, 2 | 3)
            && b >> 4 != self.cfg.version.number()
        {
            return Err(DiscardReason::BadVersion);
        }
        let ad = Advertisement::decode(pkt.src, pkt.dst, pkt.payload, self.checksum_mode).map_err(
            |e| match e {
                DecodeError::Truncated { .. } => DiscardReason::Truncated,
                DecodeError::BadVersion(_) | DecodeError::V2OverIpv6 => DiscardReason::BadVersion,
                DecodeError::BadType(_) => DiscardReason::BadType,
                DecodeError::BadChecksum { .. } => DiscardReason::BadChecksum,
                DecodeError::FamilyMismatch => DiscardReason::AddressFamily,
                DecodeError::ZeroInterval => DiscardReason::Malformed,
                DecodeError::UnsupportedAuthType(_) => DiscardReason::AuthMismatch,
            },
        )?;
        if ad.vrid != self.cfg.vrid {
            return Err(DiscardReason::VridMismatch);
        }
        if self.cfg.version == Version::V2 {
            // keepalived compares auth type and, for PASS, the 8 bytes of auth data.
            if ad.auth != self.auth.map(|a| a.0) {
                return Err(DiscardReason::AuthMismatch);
            }
            // RFC 3768 §7.1: MUST discard if Adver Interval differs from ours.
            if ad.interval != self.interval_field {
                return Err(DiscardReason::IntervalMismatch);
            }
        }
        let wall = self.wall_time(now);
        if let Some(auth) = self.hmac.as_mut() {
            // Decoded, so the message length is known; what follows it is the trailer.
            let len = message_len(pkt.payload, pkt.src.is_ipv6()).unwrap_or(pkt.payload.len());
            let (message, rest) = pkt.payload.split_at(len);
            let trailer = (!rest.is_empty()).then_some(rest);
            let (version, vrid) = (self.cfg.version, self.cfg.vrid);
            match auth.verify(wall, version, vrid, pkt.src, message, trailer) {
                Ok(Verified::Signed { .. }) => self.counters.hmac_verified += 1,
                Ok(Verified::Unsigned) => self.counters.hmac_unsigned_accepted += 1,
                Err(reject) => return Err(reject.into()),
            }
        }
        Ok(ad)
    }

    fn on_advert(&mut self, now: Instant, src: IpAddr, ad: &Advertisement) {
        self.counters.adverts_received += 1;
        if ad.priority == 0 {
            self.counters.priority_zero_received += 1;
        }
        let local = self.effective_priority();
        match self.state {
            State::Backup => {
                if ad.priority == 0 {
                    // RFC 5798 §6.4.2: the master is stopping; take over after Skew_Time.
                    self.master_down_timer = Some(now + self.skew_time());
                } else if !self.cfg.preempt || ad.priority >= local || self.preempt_held(now) {
                    // RFC 5798 §6.4.2: accept the master; v3 learns its interval.
                    if self.cfg.version == Version::V3 {
                        self.master_adver_interval = ad.interval_duration();
                    }
                    self.master_down_timer = Some(now + self.master_down_interval());
                    self.master = Some((src, ad.priority));
                    // keepalived: a higher master stops the preempt delay; the first lower
                    // one seen starts it.
                    if !self.cfg.preempt_delay.is_zero() {
                        if ad.priority >= local {
                            self.preempt_deadline = None;
                        } else if self.preempt_deadline.is_none() {
                            self.preempt_deadline = Some(now + self.cfg.preempt_delay);
                        }
                    }
                } else {
                    // RFC 5798 §6.4.2: preempt; ignore it and let Master_Down_Timer fire.
                    self.master = Some((src, ad.priority));
                }
            }
            State::Master => {
                if ad.priority == 0 {
                    // RFC 5798 §6.4.3: send an advert at once and reset the Adver_Timer.
                    self.send_advert(now, local);
                    self.adver_timer = Some(now + self.cfg.advert_interval);
                } else if ad.priority > local
                    || (ad.priority == local && src > self.cfg.primary_address)
                {
                    // RFC 5798 §6.4.3: a better master; ties go to the higher primary address.
                    if self.cfg.version == Version::V3 {
                        self.master_adver_interval = ad.interval_duration();
                    }
                    self.become_backup(now, Some((src, ad.priority)));
                } else {
                    // RFC 5798 §6.4.3 says discard; keepalived also re-asserts at once so a
                    // lower-priority master (after a partition) backs off quickly.
                    self.send_advert(now, local);
                    // And re-announces (keepalived's vrrp_garp_lower_prio_repeat): hosts may
                    // have learnt the other master's MAC for the VIP during the split, and
                    // nothing else would correct their ARP caches. At most once a second.
                    if self
                        .last_lower_announce
                        .is_none_or(|t| now >= t + LOWER_ANNOUNCE_GAP)
                    {
                        self.last_lower_announce = Some(now);
                        self.actions
                            .push_back(Action::Announce(self.cfg.virtual_addresses.clone()));
                    }
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    fn preempt_held(&self, now: Instant) -> bool {
        !self.cfg.preempt_delay.is_zero() && self.preempt_deadline.is_none_or(|d| d > now)
    }

    fn become_master(&mut self, now: Instant) {
        // RFC 5798 §6.4.1 / §6.4.2: send an advert, claim the addresses, announce them.
        self.clear_timers();
        self.send_advert(now, self.effective_priority());
        self.adver_timer = Some(now + self.cfg.advert_interval);
        self.master = Some((self.cfg.primary_address, self.effective_priority()));
        let vips = self.cfg.virtual_addresses.clone();
        self.actions.push_back(Action::AddVips(vips.clone()));
        self.actions.push_back(Action::Announce(vips));
        self.counters.became_master += 1;
        self.set_state(State::Master);
    }

    /// Enter Backup with a fresh Master_Down_Timer. `seen` is the master that sent us here.
    fn become_backup(&mut self, now: Instant, seen: Option<(IpAddr, u8)>) {
        if self.state == State::Master {
            self.actions
                .push_back(Action::RemoveVips(self.cfg.virtual_addresses.clone()));
        }
        if seen.is_none() {
            self.master_adver_interval = self.cfg.advert_interval;
        }
        self.clear_timers();
        self.preempt_deadline = None;
        self.master = seen;
        self.set_state(State::Backup);
        self.master_down_timer = Some(now + self.master_down_interval());
    }

    fn enter_fault(&mut self, now: Instant) {
        if self.state == State::Master {
            // keepalived sends priority 0 when entering FAULT (VRRP_PRIO_STOP) so a backup
            // takes over after Skew_Time; then the addresses go.
            self.send_advert(now, 0);
            self.actions
                .push_back(Action::RemoveVips(self.cfg.virtual_addresses.clone()));
        }
        self.clear_timers();
        self.master = None;
        self.set_state(State::Fault);
    }

    fn clear_timers(&mut self) {
        self.adver_timer = None;
        self.master_down_timer = None;
    }

    fn set_state(&mut self, to: State) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.counters.transitions += 1;
        self.actions.push_back(Action::StateChanged {
            from,
            to,
            priority: self.effective_priority(),
        });
    }

    fn send_advert(&mut self, now: Instant, priority: u8) {
        let ad = Advertisement {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            interval: self.interval_field,
            addresses: self.cfg.virtual_addresses.clone(),
            auth: self.auth.map(|a| a.0),
        };
        let wall = self.wall_time(now);
        let src = self.cfg.primary_address;
        let dsts: Vec<IpAddr> = if self.cfg.unicast_peers.is_empty() {
            vec![multicast_group(src)]
        } else {
            self.cfg.unicast_peers.clone()
        };
        for dst in dsts {
            // The checksum pseudo-header uses the real destination, so encode per peer.
            // Validated config: encoding cannot fail; skip rather than panic if it did.
            if let Ok(mut payload) = ad.encode(src, dst, self.checksum_mode) {
                if let Some(auth) = self.hmac.as_mut()
                    && let Some(trailer) = auth.sign(wall, ad.version, ad.vrid, src, &payload)
                {
                    append_trailer(
                        &mut payload,
                        &trailer,
                        ad.version,
                        src,
                        dst,
                        self.checksum_mode,
                    );
                }
                self.counters.adverts_sent += 1;
                if priority == 0 {
                    self.counters.priority_zero_sent += 1;
                }
                self.actions.push_back(Action::Send { dst, payload });
            }
        }
    }
}
