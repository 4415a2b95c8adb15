//! The VRRP router's part of /status and /metrics, from the core's state and counters and
//! what the driver knows about the interface.

use std::collections::BTreeMap;

use vrrp::{DiscardReason, Router};

use crate::status::{AuthHmacStatus, CheckStatus, RouterCounters, RouterStatus};

/// What the driver knows beside the router core.
pub(super) struct DriverFacts<'a> {
    pub interface: &'a str,
    pub prefix: u8,
    pub holds_vip: bool,
    pub link_up: bool,
    pub last_transition: f64,
    pub fencing: &'a str,
    pub checks_up: &'a [bool],
    pub ip_errors: u64,
}

/// The router's status as /status shows it.
pub(super) fn router_status(r: &Router, facts: DriverFacts<'_>) -> RouterStatus {
    let c = r.counters();
    let mut discarded: BTreeMap<String, u64> = DiscardReason::ALL
        .iter()
        .map(|reason| (reason.as_str().to_string(), c.discarded(*reason)))
        .collect();
    discarded.insert("bad_ip_header".to_string(), facts.ip_errors);
    let cfg = r.config();
    RouterStatus {
        instance: cfg.name.clone(),
        interface: facts.interface.to_string(),
        vrid: cfg.vrid,
        version: cfg.version.number(),
        state: r.state().as_str().to_string(),
        base_priority: cfg.priority,
        effective_priority: r.effective_priority(),
        master: r.master_address(),
        vips: cfg
            .virtual_addresses
            .iter()
            .map(|a| format!("{a}/{}", facts.prefix))
            .collect(),
        holds_vip: facts.holds_vip,
        link_up: facts.link_up,
        master_adver_interval_ms: r.master_adver_interval().as_millis() as u64,
        last_transition: facts.last_transition,
        fencing: facts.fencing.to_string(),
        checks: cfg
            .tracked
            .iter()
            .zip(facts.checks_up)
            .map(|(t, up)| CheckStatus {
                name: t.name.clone(),
                weight: t.weight,
                up: *up,
            })
            .collect(),
        auth_hmac: r.auth_hmac().map(|a| AuthHmacStatus {
            mode: a.mode.as_str().to_string(),
            anti_replay: format!("{:?}", a.anti_replay).to_lowercase(),
            active_key: a.active_key,
            key_ids: a.keys.iter().map(|k| k.id()).collect(),
            time_window_s: a.time_window.as_secs(),
        }),
        counters: RouterCounters {
            adverts_received: c.adverts_received,
            adverts_sent: c.adverts_sent,
            priority_zero_received: c.priority_zero_received,
            priority_zero_sent: c.priority_zero_sent,
            transitions: c.transitions,
            became_master: c.became_master,
            hmac_verified: c.hmac_verified,
            hmac_unsigned_accepted: c.hmac_unsigned_accepted,
            discarded,
        },
    }
}
