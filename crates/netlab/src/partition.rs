//! Network partitions: nftables rules in the switch that drop frames between two groups of
//! bridge ports.
//!
//! Rules live in the **bridge** family at the forward hook, so they see every frame the bridge
//! forwards from one port to another: unicast, broadcast (ARP requests included) and multicast
//! (VRRP adverts to 224.0.0.18). Flooded frames pass the forward hook once per output port, so
//! an `iifname A oifname B drop` rule removes only the copy towards B and the copies to other
//! ports still go out. Each partition is its own table, so partitions stack and heal
//! independently.

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

/// The nft script that creates table `table` dropping frames between ports `a` and `b`, both
/// directions.
pub(crate) fn script(table: &str, a: &[&str], b: &[&str]) -> String {
    let (a, b) = (quoted(a), quoted(b));
    format!(
        "table bridge {table} {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         \t\tiifname {{ {a} }} oifname {{ {b} }} counter drop\n\
         \t\tiifname {{ {b} }} oifname {{ {a} }} counter drop\n\
         \t}}\n\
         }}\n"
    )
}

impl PartitionGuard {
    /// Installs a partition between ports `a` and `b` in `switch_ns`.
    pub(crate) fn install(switch_ns: &str, a: &[&str], b: &[&str]) -> Result<Self> {
        if a.is_empty() || b.is_empty() {
            return Err(Error::InvalidPartition(
                "both groups need at least one host",
            ));
        }
        if a.iter().any(|p| b.contains(p)) {
            return Err(Error::InvalidPartition("a host is on both sides"));
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let table = format!(
            "{TABLE_PREFIX}{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        tracing::debug!(switch = switch_ns, table, ?a, ?b, "netlab: partition");
        exec::nft_in(switch_ns, &script(&table, a, b))?;
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
        let s = script("t", &["p0-a", "p1-b"], &["p2-c"]);
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
    fn empty_or_overlapping_groups_are_rejected_before_touching_nft() {
        assert!(matches!(
            PartitionGuard::install("none", &[], &["p1"]),
            Err(Error::InvalidPartition(_))
        ));
        assert!(matches!(
            PartitionGuard::install("none", &["p1", "p2"], &["p2"]),
            Err(Error::InvalidPartition(_))
        ));
    }
}
