//! Network partitions: nftables rules in the switch that drop frames between two groups of
//! bridge ports.
//!
//! Rules live in the **bridge** family at the forward hook, so they see every frame the bridge
//! forwards from one port to another: unicast, broadcast (ARP requests included) and multicast
//! (VRRP adverts to 224.0.0.18). Flooded frames pass the forward hook once per output port, so
//! an `iifname A oifname B drop` rule removes only the copy towards B and the copies to other
//! ports still go out. Each partition is its own table, so partitions stack and heal
//! independently.
//!
//! The same machinery cuts one way only (frames from group A to group B, while B still
//! reaches A) and drops a random share of the frames to and from one port (`numgen random`:
//! this kernel has no netem, and nftables needs no extra module for it).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::exec;
use crate::names;

/// Prefix of the nftables tables netlab creates in a switch namespace.
pub(crate) const TABLE_PREFIX: &str = "netlab_part_";

/// An active partition; dropping it (or [`heal`](Self::heal)) lets traffic flow again.
#[derive(Debug)]
#[must_use = "the partition heals as soon as the guard is dropped"]
pub struct PartitionGuard {
    switch_ns: String,
    table: String,
    active: bool,
}

/// Quotes an interface name for an nft set. Port names are `[A-Za-z0-9_-]` (validated host
/// names), so quoting is enough.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table with one forward chain holding `rules`.
fn table_script(table: &str, rules: &[String]) -> String {
    let mut s = format!(
        "table bridge {table} {{\n\tchain forward {{\n\t\ttype filter hook forward priority 0; policy accept;\n"
    );
    for r in rules {
        s.push_str("\t\t");
        s.push_str(r);
        s.push('\n');
    }
    s.push_str("\t}\n}\n");
    s
}

/// The nft script that creates table `table` dropping frames from ports `a` to ports `b`,
/// and with `both_ways` also from `b` to `a`.
pub(crate) fn script(table: &str, a: &[&str], b: &[&str], both_ways: bool) -> String {
    let (a, b) = (quoted(a), quoted(b));
    let mut rules = vec![format!("iifname {{ {a} }} oifname {{ {b} }} counter drop")];
    if both_ways {
        rules.push(format!("iifname {{ {b} }} oifname {{ {a} }} counter drop"));
    }
    table_script(table, &rules)
}

/// The nft script that creates table `table` dropping `percent` % of the frames from and to
/// `port`, each frame drawn independently.
pub(crate) fn loss_script(table: &str, port: &str, percent: u8) -> String {
    let port = quoted(&[port]);
    // nft checks the constant against `mod 100`'s range 0..=99: 100 % is a plain drop.
    let draw = if percent >= 100 {
        String::new()
    } else {
        format!(" numgen random mod 100 < {percent}")
    };
    table_script(
        table,
        &[
            format!("iifname {{ {port} }}{draw} counter drop"),
            format!("oifname {{ {port} }}{draw} counter drop"),
        ],
    )
}

fn next_table() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{TABLE_PREFIX}{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl PartitionGuard {
    /// Installs a partition from ports `a` to ports `b` (and back, with `both_ways`) in
    /// `switch_ns`.
    pub(crate) fn install(
        switch_ns: &str,
        a: &[&str],
        b: &[&str],
        both_ways: bool,
    ) -> Result<Self> {
        if a.is_empty() || b.is_empty() {
            return Err(Error::InvalidPartition(
                "both groups need at least one host",
            ));
        }
        if a.iter().any(|p| b.contains(p)) {
            return Err(Error::InvalidPartition("a host is on both sides"));
        }
        let table = next_table();
        tracing::debug!(
            switch = switch_ns,
            table,
            ?a,
            ?b,
            both_ways,
            "netlab: partition"
        );
        let s = script(&table, a, b, both_ways);
        Self::apply(switch_ns, table, &s)
    }

    /// Installs random loss of `percent` % on `port` in `switch_ns`.
    pub(crate) fn install_loss(switch_ns: &str, port: &str, percent: u8) -> Result<Self> {
        if !(1..=100).contains(&percent) {
            return Err(Error::InvalidLoss(percent));
        }
        let table = next_table();
        tracing::debug!(switch = switch_ns, table, port, percent, "netlab: loss");
        let s = loss_script(&table, port, percent);
        Self::apply(switch_ns, table, &s)
    }

    fn apply(switch_ns: &str, table: String, script: &str) -> Result<Self> {
        exec::nft_in(switch_ns, script)?;
        Ok(Self {
            switch_ns: switch_ns.to_owned(),
            table,
            active: true,
        })
    }

    /// The nftables table holding the rules (`ip netns exec <switch> nft list table bridge <t>`).
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Removes the rules now, reporting failure.
    pub fn heal(mut self) -> Result<()> {
        self.active = false;
        delete_table(&self.switch_ns, &self.table)
    }

    /// Keeps the partition after the guard is gone (for a long-lived lab);
    /// [`Topology::heal_all`](crate::Topology::heal_all) removes it later.
    pub fn persist(mut self) {
        self.active = false;
    }
}

impl Drop for PartitionGuard {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        if let Err(e) = delete_table(&self.switch_ns, &self.table) {
            // After the topology itself is gone there is nothing left to heal.
            if names::namespace_exists(&self.switch_ns) {
                tracing::warn!(table = %self.table, error = %e, "netlab: cannot heal partition");
            }
        }
    }
}

fn delete_table(switch_ns: &str, table: &str) -> Result<()> {
    exec::nft_in(switch_ns, &format!("delete table bridge {table}\n")).map(|_| ())
}

/// Removes every partition table in `switch_ns`.
pub(crate) fn heal_all(switch_ns: &str) -> Result<()> {
    let out = exec::run(std::process::Command::new("ip").args([
        "netns", "exec", switch_ns, "nft", "list", "tables", "bridge",
    ]))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.trim().strip_prefix("table bridge ") {
            Some(t) if t.starts_with(TABLE_PREFIX) => delete_table(switch_ns, t)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_drops_both_directions_between_groups_only() {
        let s = script("t", &["p0-a", "p1-b"], &["p2-c"], true);
        assert!(s.contains("table bridge t"));
        assert!(s.contains("hook forward"));
        assert!(s.contains("iifname { \"p0-a\", \"p1-b\" } oifname { \"p2-c\" } counter drop"));
        assert!(s.contains("iifname { \"p2-c\" } oifname { \"p0-a\", \"p1-b\" } counter drop"));
        assert!(
            s.contains("policy accept"),
            "everything else must still flow"
        );
    }

    #[test]
    fn a_one_way_script_drops_only_from_the_first_group_to_the_second() {
        let s = script("t", &["p0-a"], &["p1-b", "p2-c"], false);
        assert!(s.contains("iifname { \"p0-a\" } oifname { \"p1-b\", \"p2-c\" } counter drop"));
        assert!(!s.contains("iifname { \"p1-b\", \"p2-c\" }"), "{s}");
    }

    #[test]
    fn a_loss_script_draws_each_frame_both_ways_on_one_port() {
        let s = loss_script("t", "p0-a", 30);
        assert!(s.contains("iifname { \"p0-a\" } numgen random mod 100 < 30 counter drop"));
        assert!(s.contains("oifname { \"p0-a\" } numgen random mod 100 < 30 counter drop"));
        assert!(s.contains("policy accept"));
        let all = loss_script("t", "p0-a", 100);
        assert!(all.contains("iifname { \"p0-a\" } counter drop"), "{all}");
        assert!(!all.contains("numgen"), "{all}");
    }

    #[test]
    fn empty_or_overlapping_groups_and_bad_percentages_are_rejected_before_touching_nft() {
        assert!(matches!(
            PartitionGuard::install("none", &[], &["p1"], true),
            Err(Error::InvalidPartition(_))
        ));
        assert!(matches!(
            PartitionGuard::install("none", &["p1", "p2"], &["p2"], false),
            Err(Error::InvalidPartition(_))
        ));
        for bad in [0, 101, 255] {
            assert!(matches!(
                PartitionGuard::install_loss("none", "p1", bad),
                Err(Error::InvalidLoss(p)) if p == bad
            ));
        }
    }
}
