//! Rise/fall debouncing of a check's results (keepalived's `vrrp_script` `rise`/`fall`): the
//! state flips only after `rise` successes or `fall` failures in a row. Pure: fed results,
//! it says when the state changes; the tracked scripts and the balancer path check share it.

/// A check's debounced state.
#[derive(Debug, Clone)]
pub(crate) struct Debounce {
    rise: u32,
    fall: u32,
    up: bool,
    streak: u32,
}

impl Debounce {
    /// Starts up (a check is trusted until it fails `fall` times in a row).
    pub fn new(rise: u32, fall: u32) -> Debounce {
        Debounce {
            rise: rise.max(1),
            fall: fall.max(1),
            up: true,
            streak: 0,
        }
    }

    /// The debounced state.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// One result; `Some(new state)` when it flips the state.
    pub fn handle_result(&mut self, ok: bool) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.streak < needed {
            return None;
        }
        self.up = ok;
        self.streak = 0;
        Some(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keepalived.conf(5) vrrp_script: "fall: required number of failures for KO switch",
    /// "rise: required number of successes for OK switch"; a result that agrees with the
    /// state restarts the count.
    #[test]
    fn the_state_flips_after_fall_failures_or_rise_successes_in_a_row() {
        let mut d = Debounce::new(2, 3);
        assert!(d.is_up());
        assert_eq!(d.handle_result(false), None);
        assert_eq!(d.handle_result(false), None);
        assert_eq!(
            d.handle_result(true),
            None,
            "a success restarts the failure count"
        );
        assert_eq!(d.handle_result(false), None);
        assert_eq!(d.handle_result(false), None);
        assert_eq!(d.handle_result(false), Some(false));
        assert!(!d.is_up());
        assert_eq!(d.handle_result(true), None);
        assert_eq!(d.handle_result(true), Some(true));
        assert_eq!(
            Debounce::new(0, 0).handle_result(false),
            Some(false),
            "0 means 1"
        );
    }
}
