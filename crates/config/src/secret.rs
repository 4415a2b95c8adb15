//! Secrets in the cluster file (`vip.authPass`, `vip.authHmac.keys`): kept as written, never
//! shown by `Debug`, and resolved to key bytes (`hex:`, `file:` or a plain string) only where
//! they are used.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A value that must not reach logs, `/status`, metrics or error messages. Serialises as
/// written (so `haplane import` can emit it); `Debug` shows `<redacted>`; there is no
/// `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value as written in the cluster file. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The file a `file:` value names.
    pub fn file(&self) -> Option<&Path> {
        self.0.strip_prefix("file:").map(Path::new)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.file() {
            Some(p) => write!(f, "Secret(file:{})", p.display()),
            None => f.write_str("Secret(<redacted>)"),
        }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

/// Why a key could not be turned into bytes. Messages name the key and the file, never the
/// value.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `hex:` followed by something that is not an even number of hex digits.
    #[error("key {id}: the hex: value is not an even number of hex digits")]
    BadHex {
        /// Key id.
        id: u8,
    },
    /// Outside keepalived's 32..=64 bytes.
    #[error("key {id}: {len} bytes; auth_hmac keys are 32 to 64 bytes (64 to 128 hex digits)")]
    Length {
        /// Key id.
        id: u8,
        /// Its length in bytes.
        len: usize,
    },
    /// A `file:` path that is not absolute (the daemon's working directory is `/`).
    #[error("key {id}: file:{} is not an absolute path", .path.display())]
    RelativePath {
        /// Key id.
        id: u8,
        /// The path.
        path: PathBuf,
    },
    /// A `file:` key that cannot be read.
    #[error("key {id}: cannot read {}: {error}", .path.display())]
    Read {
        /// Key id.
        id: u8,
        /// The path.
        path: PathBuf,
        /// The I/O error (shown in the message).
        error: std::io::Error,
    },
}

/// Shortest auth_hmac key (keepalived).
pub const KEY_LEN_MIN: usize = 32;
/// Longest auth_hmac key (keepalived).
pub const KEY_LEN_MAX: usize = 64;

/// The bytes of an inline value: `hex:` and hex digits, or the string itself (keepalived's
/// `auth_hmac` `key` syntax). Lengths are checked here too.
pub fn inline_key_bytes(id: u8, value: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = match value.strip_prefix("hex:") {
        Some(hex) => decode_hex(hex).ok_or(KeyError::BadHex { id })?,
        None => value.as_bytes().to_vec(),
    };
    if !(KEY_LEN_MIN..=KEY_LEN_MAX).contains(&bytes.len()) {
        return Err(KeyError::Length {
            id,
            len: bytes.len(),
        });
    }
    Ok(bytes)
}

/// The bytes of a key: inline, or read from its `file:` (whose content, trailing whitespace
/// removed, follows the inline syntax).
pub fn key_bytes(id: u8, secret: &Secret) -> Result<Vec<u8>, KeyError> {
    let Some(path) = secret.file() else {
        return inline_key_bytes(id, secret.expose());
    };
    if !path.is_absolute() {
        return Err(KeyError::RelativePath {
            id,
            path: path.to_path_buf(),
        });
    }
    let raw = std::fs::read(path).map_err(|error| KeyError::Read {
        id,
        path: path.to_path_buf(),
        error,
    })?;
    let end = raw
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let content = &raw[..end];
    match std::str::from_utf8(content) {
        Ok(text) if text.starts_with("hex:") => inline_key_bytes(id, text),
        _ if (KEY_LEN_MIN..=KEY_LEN_MAX).contains(&content.len()) => Ok(content.to_vec()),
        _ => Err(KeyError::Length {
            id,
            len: content.len(),
        }),
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_neither_inline_values_nor_file_contents() {
        let s = Secret::new("hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let f = Secret::new("file:/etc/haplane/vrrp.key");
        assert_eq!(format!("{f:?}"), "Secret(file:/etc/haplane/vrrp.key)");
    }

    #[test]
    fn inline_keys_follow_keepalived_syntax() {
        let hex = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        assert_eq!(
            inline_key_bytes(1, hex).unwrap(),
            (0u8..32).collect::<Vec<_>>()
        );
        let ascii = "an-ascii-key-of-forty-characters-123456";
        assert_eq!(inline_key_bytes(9, ascii).unwrap(), ascii.as_bytes());
        assert!(matches!(
            inline_key_bytes(2, "too-short"),
            Err(KeyError::Length { id: 2, len: 9 })
        ));
        let e = inline_key_bytes(
            3,
            "hex:zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        )
        .unwrap_err();
        assert!(!e.to_string().contains("0102"), "{e}");
        assert!(matches!(
            inline_key_bytes(3, "hex:abc"),
            Err(KeyError::BadHex { id: 3 })
        ));
    }

    #[test]
    fn file_keys_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "an-ascii-key-of-forty-characters-123456\n").unwrap();
        let s = Secret::new(format!("file:{}", p.display()));
        assert_eq!(
            key_bytes(1, &s).unwrap(),
            b"an-ascii-key-of-forty-characters-123456"
        );
        std::fs::write(&p, [0xffu8; 40]).unwrap();
        assert_eq!(key_bytes(1, &s).unwrap(), vec![0xff; 40]);
        let missing = Secret::new(format!("file:{}", dir.path().join("nope").display()));
        let e = key_bytes(4, &missing).unwrap_err();
        assert!(e.to_string().starts_with("key 4: cannot read"), "{e}");
        assert!(matches!(
            key_bytes(5, &Secret::new("file:relative/k")),
            Err(KeyError::RelativePath { id: 5, .. })
        ));
    }
}
