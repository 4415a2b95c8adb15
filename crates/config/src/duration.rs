//! Human durations in the cluster file: `10ms`, `1s`, `1.5s`, `2m`, `1h`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a number with a unit (`ms`, `s`, `m`, `h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is empty.
    #[error("empty duration; write it like 1s, 100ms, 2m or 1h")]
    Empty,
    /// The unit is missing or unknown.
    #[error("duration {0:?} needs a unit: ms, s, m or h (for example 1s or 100ms)")]
    Unit(String),
    /// The number part is not a non-negative decimal.
    #[error("duration {0:?} has no valid number before its unit")]
    Number(String),
}

impl Dur {
    /// The longest duration the cluster file takes (10^15 ms, about 31 700 years); more is
    /// a typo, and would not be written back as a number the parser reads.
    pub const MAX: Dur = Dur(Duration::from_millis(1_000_000_000_000_000));

    /// `d`, unless it is longer than [`Dur::MAX`].
    pub fn checked(d: Duration) -> Option<Self> {
        (d <= Self::MAX.0).then_some(Dur(d))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for Dur {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::Unit(text.to_string()))?;
        let (number, unit) = s.split_at(split);
        let scale_ms: f64 = match unit.trim() {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(DurationError::Unit(text.to_string())),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| DurationError::Number(text.to_string()))?;
        if !value.is_finite() || value < 0.0 || value * scale_ms > 1e15 {
            return Err(DurationError::Number(text.to_string()));
        }
        // Whole microseconds are plenty; rounding avoids 0.1s becoming 99.999ms.
        let micros = (value * scale_ms * 1_000.0).round() as u64;
        Dur::checked(Duration::from_micros(micros))
            .ok_or_else(|| DurationError::Number(text.to_string()))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if self.0.subsec_nanos() % 1_000_000 != 0 {
            // A fraction of a millisecond, in the units the parser reads (`1.5ms`).
            let us = self.0.as_micros();
            let frac = format!("{:03}", us % 1_000);
            write!(f, "{}.{}ms", us / 1_000, frac.trim_end_matches('0'))
        } else if ms == 0 {
            write!(f, "0s")
        } else if ms % 3_600_000 == 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 1_000 == 0 {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 1s, 100ms, 2m or 1h")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "duration {v} needs a unit: write {v}s or {v}ms"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "duration {v} needs a unit: write {v}s or {v}ms"
                )))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "duration {v} needs a unit: write {v}s or {v}ms"
                )))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_to_the_expected_durations() {
        assert_eq!("10ms".parse(), Ok(Dur::from_millis(10)));
        assert_eq!("1s".parse(), Ok(Dur::from_secs(1)));
        assert_eq!("0.1s".parse(), Ok(Dur::from_millis(100)));
        assert_eq!("2m".parse(), Ok(Dur::from_secs(120)));
        assert_eq!("1h".parse(), Ok(Dur::from_secs(3600)));
    }

    #[test]
    fn a_bare_number_is_rejected_because_the_unit_is_ambiguous() {
        assert!(matches!("1".parse::<Dur>(), Err(DurationError::Unit(_))));
        assert!(matches!("1d".parse::<Dur>(), Err(DurationError::Unit(_))));
        assert!(matches!("-1s".parse::<Dur>(), Err(DurationError::Unit(_))));
        assert!(matches!(
            "..s".parse::<Dur>(),
            Err(DurationError::Number(_))
        ));
        assert_eq!("".parse::<Dur>(), Err(DurationError::Empty));
    }

    #[test]
    fn display_round_trips() {
        for text in ["10ms", "1s", "2m", "1h", "1500ms", "0s", "1.5ms", "0.001ms"] {
            let d: Dur = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn every_duration_the_parser_reads_is_written_back_in_units_it_reads() {
        // Found while fixing a keepalived-importer fuzz crash: sub-millisecond durations were
        // written as `1500us`, a unit the parser does not read, so a rendered file was refused.
        for text in ["0.0015s", "1.0005s", "0.000001h", "1000000000000000ms"] {
            let d: Dur = text.parse().unwrap();
            assert_eq!(d.to_string().parse::<Dur>().unwrap(), d, "{text} -> {d}");
        }
        assert!(
            "1000000000000001ms".parse::<Dur>().is_err(),
            "beyond Dur::MAX"
        );
        assert_eq!(
            Dur::checked(Dur::MAX.0 + std::time::Duration::from_millis(1)),
            None
        );
    }
}
