//! The injector: each fault of the schedule on its own thread, which waits for the fault's
//! start, injects it, waits for its heal time and heals it, and records what it did. Faults
//! hold distinct resources (the schedule sees to that; a fault on the VIP holder is checked
//! against the busy resources when it resolves the holder and skipped if it would clash), so
//! the threads never touch the same daemon or link.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Serialize;

use super::check::{Daemon, Injected};
use super::run::{Shared, lock};
use super::schedule::{Action, COOLDOWN_MS, Fault, Target};
use crate::procs::{self, Kind as ProcKind};
use crate::state::{LabState, NodeInfo};

/// A fault that was not injected.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The schedule's fault id.
    pub id: u32,
    /// Why.
    pub reason: String,
}

/// The lab as the injector sees it.
pub(super) struct Ctx<'a> {
    pub st: &'a LabState,
    pub topo: &'a netlab::Topology,
    /// Every node, the bit order of the samples.
    pub names: Vec<String>,
    pub sh: &'a Shared,
}

impl Ctx<'_> {
    fn now(&self) -> u64 {
        self.sh.origin.elapsed().as_millis() as u64
    }

    fn sleep_until(&self, ms: u64) {
        let now = self.now();
        if ms > now {
            std::thread::sleep(Duration::from_millis(ms - now));
        }
    }

    fn bit(&self, node: &str) -> u32 {
        self.names
            .iter()
            .position(|n| n == node)
            .map_or(0, |i| 1 << i)
    }

    fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.st.nodes().find(|n| n.name == name)
    }

    fn note(&self, f: &Fault, what: impl std::fmt::Display) {
        lock(&self.sh.notes).push(format!("#{}: {what}", f.id));
    }

    fn link(&self, f: &Fault, node: &str, up: bool) {
        let Ok(host) = self.topo.host(node) else {
            self.note(f, format!("no host {node}"));
            return;
        };
        let bit = self.bit(node);
        if up {
            if let Err(e) = host.link_up() {
                self.note(f, format!("link up on {node}: {e}"));
            }
            // Counted again only once the link is up: never a false double holder.
            self.sh.links_down.fetch_and(!bit, Ordering::SeqCst);
        } else {
            self.sh.links_down.fetch_or(bit, Ordering::SeqCst);
            if let Err(e) = host.link_down() {
                self.note(f, format!("link down on {node}: {e}"));
            }
        }
    }

    /// The VIP holder now: the one node answering ARP, else the first with the address.
    fn holder(&self) -> Option<String> {
        let one = |s: Option<u32>| {
            s.filter(|s| s.count_ones() == 1)
                .map(|s| self.names[s.trailing_zeros() as usize].clone())
        };
        let arp = lock(&self.sh.arp).last().map(|s| s.set);
        one(arp).or_else(|| {
            let addr = lock(&self.sh.addr).last().map(|s| s.set)?;
            (addr != 0).then(|| self.names[addr.trailing_zeros() as usize].clone())
        })
    }
}

fn resolve(ctx: &Ctx<'_>, t: &Target) -> Result<String, String> {
    match t {
        Target::Node(n) => Ok(n.clone()),
        Target::Holder => ctx
            .holder()
            .ok_or_else(|| "no node holds the VIP at the fault's start".to_string()),
    }
}

/// Claims the fault's resources (with the holder resolved) until its heal plus the cooldown;
/// an error names the clash.
fn claim(ctx: &Ctx<'_>, f: &Fault, holder: Option<&str>) -> Result<(), String> {
    let now = ctx.now();
    let mut busy = lock(&ctx.sh.busy);
    let res = f.action.resources_on(holder);
    if let Some(r) = res
        .iter()
        .find(|r| busy.get(*r).is_some_and(|until| *until > now))
    {
        return Err(format!("{r} is busy with another fault"));
    }
    for r in res {
        busy.insert(r, f.heal_ms + COOLDOWN_MS);
    }
    Ok(())
}

fn start_if_missing(ctx: &Ctx<'_>, f: &Fault, node: &NodeInfo, kind: ProcKind) {
    if !procs::find(node, kind).is_empty() {
        return;
    }
    let r = match kind {
        ProcKind::Etcd => procs::start_etcd(ctx.st, node),
        ProcKind::Apiserver => procs::start_apiserver(ctx.st, node),
        _ => procs::start_haplane(ctx.st, node),
    };
    if let Err(e) = r {
        ctx.note(f, format!("start on {}: {e}", node.name));
    }
}

/// Runs fault `f`: waits for its start, injects, waits for its heal, heals, records.
pub(super) fn run_fault(ctx: &Ctx<'_>, f: &Fault) {
    ctx.sleep_until(f.at_ms);
    let target = f.action.target();
    let node_name = match target.as_ref().map(|t| resolve(ctx, t)).transpose() {
        Ok(n) => n,
        Err(reason) => return skip(ctx, f, reason),
    };
    let holder = matches!(target, Some(Target::Holder))
        .then(|| node_name.clone())
        .flatten();
    if let Err(reason) = claim(ctx, f, holder.as_deref()) {
        return skip(ctx, f, reason);
    }
    let node = node_name.as_deref().and_then(|n| ctx.node(n)).cloned();
    if node_name.is_some() && node.is_none() {
        return skip(ctx, f, format!("no node {:?} in the lab", node_name));
    }
    let master = node.as_ref().is_some_and(|n| ctx.st.is_master(&n.name));
    let on = node_name.clone().unwrap_or_default();
    let mut touches: Vec<(String, Daemon)> = Vec::new();
    let at = ctx.now();
    let what = describe(&f.action, &on);

    match &f.action {
        Action::KillHaplane { .. } | Action::KillEtcd { .. } => {
            let Some(n) = &node else { return };
            let (kind, daemon) = if matches!(f.action, Action::KillEtcd { .. }) {
                (ProcKind::Etcd, Daemon::Etcd)
            } else {
                (ProcKind::Haplane, Daemon::Haplane)
            };
            touches.push((on.clone(), daemon));
            procs::signal_all(&procs::find(n, kind), Signal::SIGKILL);
            ctx.sleep_until(f.heal_ms);
            start_if_missing(ctx, f, n, kind);
        }
        Action::StopHaplane { .. } | Action::StopEtcd { .. } => {
            let Some(n) = &node else { return };
            let (kind, daemon) = if matches!(f.action, Action::StopEtcd { .. }) {
                (ProcKind::Etcd, Daemon::Etcd)
            } else {
                (ProcKind::Haplane, Daemon::Haplane)
            };
            touches.push((on.clone(), daemon));
            let pids = procs::find(n, kind);
            procs::signal_all(&pids, Signal::SIGSTOP);
            ctx.sleep_until(f.heal_ms);
            procs::signal_all(&pids, Signal::SIGCONT);
        }
        Action::KillNode { .. } => {
            let Some(n) = &node else { return };
            touches.push((on.clone(), Daemon::Haplane));
            if master {
                touches.push((on.clone(), Daemon::Etcd));
            }
            procs::signal_all(&procs::pids_in(&n.netns), Signal::SIGKILL);
            ctx.link(f, &on, false);
            ctx.sleep_until(f.heal_ms);
            // A rebooted machine comes back without the VIP: remove it before the link returns.
            if let Ok(h) = ctx.topo.host(&on) {
                let vip = format!("{}/24", ctx.st.vip);
                let _ = h.run(&["ip", "addr", "del", vip.as_str(), "dev", "eth0"]);
            }
            ctx.link(f, &on, true);
            if master {
                start_if_missing(ctx, f, n, ProcKind::Etcd);
                if ctx.st.apiserver.is_some() {
                    start_if_missing(ctx, f, n, ProcKind::Apiserver);
                }
            }
            start_if_missing(ctx, f, n, ProcKind::Haplane);
        }
        Action::StopNode { .. } => {
            let Some(n) = &node else { return };
            touches.push((on.clone(), Daemon::Haplane));
            if master {
                touches.push((on.clone(), Daemon::Etcd));
            }
            let pids = procs::pids_in(&n.netns);
            procs::signal_all(&pids, Signal::SIGSTOP);
            ctx.sleep_until(f.heal_ms);
            procs::signal_all(&pids, Signal::SIGCONT);
        }
        Action::LinkDown { node } => {
            ctx.link(f, node, false);
            ctx.sleep_until(f.heal_ms);
            ctx.link(f, node, true);
        }
        Action::LinkFlap {
            node,
            down_ms,
            up_ms,
        } => {
            loop {
                ctx.link(f, node, false);
                ctx.sleep_until((ctx.now() + down_ms).min(f.heal_ms));
                ctx.link(f, node, true);
                if ctx.now() + up_ms >= f.heal_ms {
                    break;
                }
                ctx.sleep_until(ctx.now() + up_ms);
            }
            ctx.sleep_until(f.heal_ms);
        }
        Action::Partition { from, to, one_way } => {
            let hosts = |names: &[String]| -> Vec<&netlab::Host> {
                names.iter().filter_map(|n| ctx.topo.host(n).ok()).collect()
            };
            let (a, b) = (hosts(from), hosts(to));
            let guard = if *one_way {
                ctx.topo.partition_one_way(&a, &b)
            } else {
                ctx.topo.partition(&a, &b)
            };
            match guard {
                Ok(g) => {
                    ctx.sleep_until(f.heal_ms);
                    if let Err(e) = g.heal() {
                        ctx.note(f, format!("heal: {e}"));
                    }
                }
                Err(e) => return skip(ctx, f, format!("partition: {e}")),
            }
        }
        Action::Loss { node, percent } => {
            let guard = ctx.topo.host(node).and_then(|h| ctx.topo.loss(h, *percent));
            match guard {
                Ok(g) => {
                    ctx.sleep_until(f.heal_ms);
                    if let Err(e) = g.heal() {
                        ctx.note(f, format!("heal: {e}"));
                    }
                }
                Err(e) => return skip(ctx, f, format!("loss: {e}")),
            }
        }
        Action::Restart { .. } | Action::Handover => {
            let Some(n) = &node else { return };
            touches.push((on.clone(), Daemon::Haplane));
            // SIGTERM: the daemon hands the VIP over and drains; SIGKILL after 10 s.
            procs::stop(&procs::find(n, ProcKind::Haplane), Duration::from_secs(10));
            ctx.sleep_until(f.heal_ms);
            start_if_missing(ctx, f, n, ProcKind::Haplane);
        }
    }
    lock(&ctx.sh.injected).push(Injected {
        id: f.id,
        kind: f.kind(),
        what,
        at_ms: at,
        healed_ms: ctx.now(),
        touches,
    });
}

fn skip(ctx: &Ctx<'_>, f: &Fault, reason: String) {
    tracing::info!(fault = f.id, %reason, "lab chaos: fault skipped");
    lock(&ctx.sh.skipped).push(Skipped { id: f.id, reason });
}

/// The action with the holder resolved to `node`.
fn describe(a: &Action, node: &str) -> String {
    let d = a.describe();
    if node.is_empty() {
        d
    } else {
        d.replace("the VIP holder", &format!("the VIP holder {node}"))
    }
}

/// Puts the lab's network and processes back after the final heal (idempotent: every fault
/// healed itself; this catches an injector error): partitions and losses removed, links up,
/// every process continued. Daemons are not restarted here, so one that died by itself stays
/// visible to the checker.
pub(super) fn final_heal(ctx: &Ctx<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Err(e) = ctx.topo.heal_all() {
        notes.push(format!("final heal: partitions: {e}"));
    }
    for n in ctx.st.nodes() {
        if let Ok(h) = ctx.topo.host(&n.name)
            && let Err(e) = h.link_up()
        {
            notes.push(format!("final heal: link up on {}: {e}", n.name));
        }
        procs::signal_all(&procs::pids_in(&n.netns), Signal::SIGCONT);
    }
    ctx.sh.links_down.store(0, Ordering::SeqCst);
    notes
}

/// Faults per kind name: injected and skipped.
pub fn counts(
    injected: &[Injected],
    skipped: &[Skipped],
    faults: &[Fault],
) -> BTreeMap<String, (usize, usize)> {
    let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for i in injected {
        m.entry(i.kind.name().to_string()).or_default().0 += 1;
    }
    for s in skipped {
        if let Some(f) = faults.iter().find(|f| f.id == s.id) {
            m.entry(f.kind().name().to_string()).or_default().1 += 1;
        }
    }
    m
}
