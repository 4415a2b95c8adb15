//! The topology: one switch namespace with a bridge, and hosts attached to it.

use std::net::IpAddr;
use std::sync::Arc;

use crate::cidr::Cidr;
use crate::error::{Error, Result};
use crate::exec;
use crate::host::{HOST_IFNAME, Host};
use crate::names;
use crate::partition::{self, PartitionGuard};
use crate::process::Registry;

/// The default subnet hosts are addressed from (RFC 5737 TEST-NET-1).
pub const DEFAULT_SUBNET: &str = "192.0.2.0/24";
/// Host `i` (0-based, in builder order) gets the subnet's address number `FIRST_HOST + i`.
pub const FIRST_HOST: u32 = 11;
/// The bridge inside the switch namespace.
pub const BRIDGE: &str = "br0";

/// One host as declared to the builder.
#[derive(Debug, Clone)]
struct HostSpec {
    name: String,
    /// Explicit addresses (first is primary); empty means "the default one".
    addresses: Vec<String>,
    /// Addresses added after the primary ones.
    extra: Vec<String>,
}

/// Declares a topology; [`build`](Self::build) creates it.
///
/// ```no_run
/// let topo = netlab::Topology::builder()
///     .host("m1")
///     .host("m2")
///     .host_with_addresses("w1", &["192.0.2.50/24"])
///     .extra_address("m1", "192.0.2.100/24")
///     .build()?;
/// # Ok::<(), netlab::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    subnet: String,
    lab: Option<String>,
    hosts: Vec<HostSpec>,
    /// Names given to `extra_address` that were not declared (reported by `build`).
    unknown_extra: Vec<String>,
}

impl Default for TopologyBuilder {
    fn default() -> Self {
        Self {
            subnet: DEFAULT_SUBNET.to_owned(),
            lab: None,
            hosts: Vec::new(),
            unknown_extra: Vec::new(),
        }
    }
}

impl TopologyBuilder {
    /// The IPv4 subnet of the switch, e.g. `"198.51.100.0/24"` (default 192.0.2.0/24). Default
    /// host addresses are `.11`, `.12`, ... in it; explicit addresses without a `/len` take its
    /// prefix length.
    pub fn subnet(mut self, subnet: &str) -> Self {
        self.subnet = subnet.to_owned();
        self
    }

    /// Adds a host with the default address (subnet address number 11 + its index).
    pub fn host(mut self, name: &str) -> Self {
        self.hosts.push(HostSpec {
            name: name.to_owned(),
            addresses: Vec::new(),
            extra: Vec::new(),
        });
        self
    }

    /// Adds several hosts with default addresses.
    pub fn hosts<S: AsRef<str>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        for n in names {
            self = self.host(n.as_ref());
        }
        self
    }

    /// Adds a host with these addresses instead of the default; the first (IPv4) is primary.
    pub fn host_with_addresses(mut self, name: &str, addresses: &[&str]) -> Self {
        self.hosts.push(HostSpec {
            name: name.to_owned(),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            extra: Vec::new(),
        });
        self
    }

    /// Adds one more address to an already declared host (IPv4 or IPv6).
    pub fn extra_address(mut self, host: &str, address: &str) -> Self {
        match self.hosts.iter_mut().find(|h| h.name == host) {
            Some(h) => h.extra.push(address.to_owned()),
            None => self.unknown_extra.push(host.to_owned()),
        }
        self
    }

    /// Gives the topology a fixed lab name: namespaces are `hpl-lab-<name>-...`, building fails
    /// if that lab exists, and it can be removed later with [`Topology::destroy_by_name`] from
    /// any process. Without a name, names carry the pid and a counter.
    pub fn lab_name(mut self, name: &str) -> Self {
        self.lab = Some(name.to_owned());
        self
    }

    /// Checks the declaration and computes each host's addresses (no system calls).
    fn plan(&self) -> Result<Vec<(String, Vec<Cidr>)>> {
        if let Some(h) = self.unknown_extra.first() {
            return Err(Error::UnknownHost(h.clone()));
        }
        let subnet: Cidr = self.subnet.parse()?;
        if subnet.ipv4().is_none() {
            return Err(Error::InvalidAddress {
                value: self.subnet.clone(),
                reason: "the subnet must be IPv4",
            });
        }
        let parse = |s: &str| -> Result<Cidr> {
            if s.contains('/') {
                s.parse()
            } else {
                let a: IpAddr = s.parse().map_err(|_| Error::InvalidAddress {
                    value: s.to_owned(),
                    reason: "not an IP address",
                })?;
                Cidr::new(a, if a.is_ipv4() { subnet.prefix_len } else { 64 })
            }
        };
        let mut plan: Vec<(String, Vec<Cidr>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, spec) in self.hosts.iter().enumerate() {
            names::validate_host_name(&spec.name)?;
            if plan.iter().any(|(n, _)| *n == spec.name) {
                return Err(Error::DuplicateHost(spec.name.clone()));
            }
            let mut addrs = Vec::new();
            if spec.addresses.is_empty() {
                let n = FIRST_HOST + i as u32;
                let a = subnet.nth_host_v4(n).ok_or_else(|| Error::InvalidAddress {
                    value: format!("{subnet} host #{n}"),
                    reason: "too many hosts for the subnet",
                })?;
                addrs.push(Cidr::new(IpAddr::V4(a), subnet.prefix_len)?);
            } else {
                for a in &spec.addresses {
                    addrs.push(parse(a)?);
                }
            }
            if addrs[0].ipv4().is_none() {
                return Err(Error::InvalidAddress {
                    value: addrs[0].to_string(),
                    reason: "the primary address must be IPv4",
                });
            }
            for a in &spec.extra {
                addrs.push(parse(a)?);
            }
            for a in &addrs {
                if !seen.insert(a.addr) {
                    return Err(Error::InvalidAddress {
                        value: a.to_string(),
                        reason: "address given twice",
                    });
                }
            }
            plan.push((spec.name.clone(), addrs));
        }
        Ok(plan)
    }

    /// Creates the namespaces, bridge, veths and addresses. On failure everything created so
    /// far is removed again.
    pub fn build(self) -> Result<Topology> {
        let plan = self.plan()?;
        exec::check_environment()?;
        let (base, lab) = match &self.lab {
            Some(name) => {
                let base = names::lab_base(name)?;
                if !names::list_namespaces()?
                    .iter()
                    .all(|ns| !matches!(names::parse(ns), Some((_, b, _)) if b == base))
                {
                    return Err(Error::LabExists(name.clone()));
                }
                (base, Some(name.clone()))
            }
            None => (names::ephemeral_base(), None),
        };
        let mut topo = Topology {
            switch_ns: names::switch_ns(&base),
            base,
            lab,
            hosts: Vec::new(),
            created: Vec::new(),
            registry: Arc::new(Registry::default()),
            persistent: false,
        };
        topo.create_switch()?;
        for (i, (name, addrs)) in plan.into_iter().enumerate() {
            topo.create_host(i, name, addrs)?;
        }
        tracing::info!(topology = %topo.base, hosts = topo.hosts.len(), "netlab: topology up");
        Ok(topo)
    }
}

/// A switch and its hosts. Dropping it kills every process spawned through its hosts and
/// deletes its namespaces (and with them every interface), also while unwinding from a panic,
/// unless [`persist`](Self::persist) was called.
#[derive(Debug)]
pub struct Topology {
    base: String,
    lab: Option<String>,
    switch_ns: String,
    hosts: Vec<Host>,
    /// Namespaces this value created (or adopted) and must delete, switch first.
    created: Vec<String>,
    registry: Arc<Registry>,
    persistent: bool,
}

/// Bridge port name for host number `i`: `p<i>-<name>`, cut to the 15-byte interface name
/// limit. The `p<i>-` prefix keeps it unique even when cut.
fn port_name(i: usize, host: &str) -> String {
    let mut s = format!("p{i}-{host}");
    s.truncate(15);
    s
}

/// The host index encoded in a port name made by [`port_name`].
fn port_index(port: &str) -> usize {
    port.strip_prefix('p')
        .and_then(|r| r.split('-').next())
        .and_then(|i| i.parse().ok())
        .unwrap_or(usize::MAX)
}

impl Topology {
    /// Starts declaring a topology.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    fn create_switch(&mut self) -> Result<()> {
        let sw = self.switch_ns.clone();
        names::add_namespace(&sw)?;
        self.created.push(sw.clone());
        exec::ip_in(&sw, &["link", "set", "lo", "up"])?;
        // No STP (ports forward as soon as they are up) and no multicast snooping (every
        // multicast frame is flooded, as on a dumb switch, whether or not IGMP was seen).
        exec::ip_in(
            &sw,
            &[
                "link",
                "add",
                BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ],
        )?;
        exec::ip_in(&sw, &["link", "set", BRIDGE, "up"])?;
        Ok(())
    }

    fn create_host(&mut self, index: usize, name: String, addrs: Vec<Cidr>) -> Result<()> {
        let ns = names::host_ns(&self.base, &name);
        let port = port_name(index, &name);
        names::add_namespace(&ns)?;
        self.created.push(ns.clone());
        // Both ends are created directly in their namespaces: nothing appears in ours.
        exec::ip_in(
            &self.switch_ns,
            &[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                HOST_IFNAME,
                "netns",
                &ns,
            ],
        )?;
        // The alias lets `Topology::open` map ports back to hosts.
        exec::ip_in(
            &self.switch_ns,
            &["link", "set", &port, "alias", &name, "master", BRIDGE, "up"],
        )?;
        exec::ip_in(&ns, &["link", "set", "lo", "up"])?;
        for a in &addrs {
            let text = a.to_string();
            let mut args = vec!["addr", "add", text.as_str()];
            if a.addr.is_ipv4() {
                // Set the directed broadcast address so subnet broadcasts are received.
                args.extend(["brd", "+"]);
            } else {
                // Usable at once: no duplicate address detection delay.
                args.push("nodad");
            }
            args.extend(["dev", HOST_IFNAME]);
            exec::ip_in(&ns, &args)?;
        }
        exec::ip_in(&ns, &["link", "set", HOST_IFNAME, "up"])?;
        self.hosts.push(Host {
            name,
            ns,
            switch_ns: self.switch_ns.clone(),
            port,
            addresses: addrs,
            registry: self.registry.clone(),
        });
        Ok(())
    }

    /// Attaches to an existing named lab (made by another process with
    /// [`TopologyBuilder::lab_name`] and [`persist`](Self::persist)). The result is persistent:
    /// dropping it leaves the lab up; call [`destroy`](Self::destroy) to remove it.
    pub fn open(lab: &str) -> Result<Topology> {
        exec::check_environment()?;
        let base = names::lab_base(lab)?;
        let switch_ns = names::switch_ns(&base);
        if !names::namespace_exists(&switch_ns) {
            return Err(Error::NoSuchLab(lab.to_owned()));
        }
        // `ip -o link` prints one line per port, ending in "alias <host>".
        let out = exec::ip_in(&switch_ns, &["-o", "link", "show", "master", BRIDGE])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let registry = Arc::new(Registry::default());
        let mut hosts = Vec::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let Some(port) = fields.nth(1) else { continue };
            let port = port.trim_end_matches(':');
            let port = port.split('@').next().unwrap_or(port).to_owned();
            let Some(name) = line
                .split("alias ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
            else {
                continue;
            };
            let ns = names::host_ns(&base, name);
            if !names::namespace_exists(&ns) {
                continue;
            }
            let mut host = Host {
                name: name.to_owned(),
                ns,
                switch_ns: switch_ns.clone(),
                port,
                addresses: Vec::new(),
                registry: registry.clone(),
            };
            host.addresses = host
                .addresses()?
                .into_iter()
                .filter(|c| c.addr.is_ipv4())
                .collect();
            hosts.push(host);
        }
        // Builder order is the index in the port name `p<i>-<host>`.
        hosts.sort_by_key(|h| port_index(&h.port));
        let mut created = vec![switch_ns.clone()];
        created.extend(hosts.iter().map(|h| h.ns.clone()));
        Ok(Topology {
            base,
            lab: Some(lab.to_owned()),
            switch_ns,
            hosts,
            created,
            registry,
            persistent: true,
        })
    }

    /// Removes every namespace of the named lab and kills the processes in them, from any
    /// process. Returns the removed namespace names.
    pub fn destroy_by_name(lab: &str) -> Result<Vec<String>> {
        names::destroy_lab(lab)
    }

    /// The unique base of the namespace names (`hpl-<pid>-<seq>` or `hpl-lab-<name>`).
    pub fn id(&self) -> &str {
        &self.base
    }

    /// The lab name, when built with [`TopologyBuilder::lab_name`] or opened.
    pub fn lab_name(&self) -> Option<&str> {
        self.lab.as_deref()
    }

    /// The switch's namespace (holds bridge `br0` and one port per host).
    pub fn switch_ns(&self) -> &str {
        &self.switch_ns
    }

    /// The hosts, in builder order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| Error::UnknownHost(name.to_owned()))
    }

    /// Cuts `a` off from `b`: no frame crosses between the two groups in either direction
    /// (unicast, broadcast, multicast, ARP), while both groups still reach every other host.
    /// The returned guard heals the partition when dropped. Partitions can overlap.
    pub fn partition(&self, a: &[&Host], b: &[&Host]) -> Result<PartitionGuard> {
        self.cut(a, b, true)
    }

    /// Cuts one way: no frame from `from` reaches `to`, while `to` still reaches `from` (so a
    /// request from `to` arrives and its answer is lost; ARP from `to` is heard, the reply is
    /// not). Both groups still reach every other host. Heals like [`partition`](Self::partition).
    pub fn partition_one_way(&self, from: &[&Host], to: &[&Host]) -> Result<PartitionGuard> {
        self.cut(from, to, false)
    }

    fn cut(&self, a: &[&Host], b: &[&Host], both_ways: bool) -> Result<PartitionGuard> {
        for h in a.iter().chain(b) {
            if h.switch_ns != self.switch_ns {
                return Err(Error::InvalidPartition(
                    "a host belongs to another topology",
                ));
            }
        }
        let pa: Vec<&str> = a.iter().map(|h| h.port.as_str()).collect();
        let pb: Vec<&str> = b.iter().map(|h| h.port.as_str()).collect();
        PartitionGuard::install(&self.switch_ns, &pa, &pb, both_ways)
    }

    /// Drops `percent` % (1..=100) of the frames the switch forwards from and to `host`, each
    /// frame and each direction drawn independently (nftables `numgen random` in the switch;
    /// no netem needed). The guard removes it like a partition's; losses and partitions stack.
    pub fn loss(&self, host: &Host, percent: u8) -> Result<PartitionGuard> {
        if host.switch_ns != self.switch_ns {
            return Err(Error::InvalidPartition(
                "a host belongs to another topology",
            ));
        }
        PartitionGuard::install_loss(&self.switch_ns, &host.port, percent)
    }

    /// Removes every partition in this topology, including persisted ones.
    pub fn heal_all(&self) -> Result<()> {
        partition::heal_all(&self.switch_ns)
    }

    /// Keeps the topology (namespaces and spawned processes) after this value is dropped, for a
    /// lab that outlives the process. Remove it later with [`Topology::destroy_by_name`] (named
    /// lab) or [`cleanup_stale`](crate::cleanup_stale) (unnamed, once this process has exited).
    pub fn persist(&mut self) {
        self.persistent = true;
    }

    /// Whether dropping this value leaves the topology up.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Tears the topology down now (also when persistent), reporting the first failure.
    pub fn destroy(mut self) -> Result<()> {
        self.persistent = true; // Drop has nothing left to do.
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        self.registry.kill_all();
        let mut first_error = None;
        // Hosts first: deleting them removes the veths, then the switch goes.
        for ns in self.created.drain(..).rev() {
            if let Err(e) = names::destroy_namespace(&ns) {
                tracing::warn!(ns, error = %e, "netlab: cannot delete namespace");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if self.persistent {
            return;
        }
        tracing::debug!(topology = %self.base, "netlab: tearing down");
        // Errors were logged; a destructor has no one to report them to.
        let _ = self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(b: &TopologyBuilder) -> Vec<(String, Vec<String>)> {
        b.plan()
            .unwrap()
            .into_iter()
            .map(|(n, a)| (n, a.iter().map(|c| c.to_string()).collect()))
            .collect()
    }

    #[test]
    fn hosts_get_dot_eleven_onwards_in_builder_order() {
        let b = Topology::builder().hosts(["m1", "m2", "w1"]);
        assert_eq!(
            addrs(&b),
            vec![
                ("m1".into(), vec!["192.0.2.11/24".into()]),
                ("m2".into(), vec!["192.0.2.12/24".into()]),
                ("w1".into(), vec!["192.0.2.13/24".into()]),
            ]
        );
    }

    #[test]
    fn subnet_explicit_and_extra_addresses_are_honoured() {
        let b = Topology::builder()
            .subnet("198.51.100.0/24")
            .host("a")
            .host_with_addresses("b", &["198.51.100.50"])
            .extra_address("a", "198.51.100.200/24")
            .extra_address("b", "2001:db8::b/64");
        assert_eq!(
            addrs(&b),
            vec![
                (
                    "a".into(),
                    vec!["198.51.100.11/24".into(), "198.51.100.200/24".into()]
                ),
                (
                    "b".into(),
                    vec!["198.51.100.50/24".into(), "2001:db8::b/64".into()]
                ),
            ]
        );
    }

    #[test]
    fn bad_declarations_fail_before_touching_the_system() {
        let dup = Topology::builder().host("m1").host("m1");
        assert!(matches!(dup.plan(), Err(Error::DuplicateHost(_))));
        let unknown = Topology::builder()
            .host("m1")
            .extra_address("zz", "192.0.2.9");
        assert!(matches!(unknown.plan(), Err(Error::UnknownHost(_))));
        let clash = Topology::builder()
            .host("m1")
            .host_with_addresses("m2", &["192.0.2.11/24"]);
        assert!(matches!(clash.plan(), Err(Error::InvalidAddress { .. })));
        let v6_primary = Topology::builder().host_with_addresses("m1", &["2001:db8::1/64"]);
        assert!(matches!(
            v6_primary.plan(),
            Err(Error::InvalidAddress { .. })
        ));
        let bad_name = Topology::builder().host("m 1");
        assert!(matches!(bad_name.plan(), Err(Error::InvalidName { .. })));
        let tiny = Topology::builder().subnet("192.0.2.0/29").host("a");
        assert!(
            matches!(tiny.plan(), Err(Error::InvalidAddress { .. })),
            ".11 does not fit in a /29"
        );
        let v6_subnet = Topology::builder().subnet("2001:db8::/64").host("a");
        assert!(v6_subnet.plan().is_err());
    }

    #[test]
    fn port_names_fit_ifnamsiz_and_stay_unique_when_cut() {
        let long = "a-very-long-host-name";
        let p1 = port_name(1, long);
        let p10 = port_name(10, long);
        assert!(p1.len() <= 15 && p10.len() <= 15);
        assert_ne!(p1, p10);
        assert_eq!(port_name(0, "m1"), "p0-m1");
        assert_eq!(port_index(&p10), 10);
        assert_eq!(port_index("br0"), usize::MAX);
    }
}
