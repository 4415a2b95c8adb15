//! `haplane lab chaos`: seeded schedules of overlapping faults against a lab that `lab up`
//! built, while clients write through the VIP and the node-local balancer; afterwards a
//! checker that trusts nothing verifies the histories and samples (see docs/lab.md).
//!
//! - [`schedule`]: the seeded, deterministic fault schedule (pure);
//! - [`check`]: the invariants over recorded histories (pure);
//! - [`figures`]: gaps per fault kind, the longest gaps, the timeline (pure);
//! - [`observe`]: daemons, singletons, memory and descriptors from /proc;
//! - [`inject`]: each fault injected and healed on its own thread;
//! - [`run`]: samplers, clients, injector, final heal, health check, read-back;
//! - [`report`]: the summary table and the HTML report.

pub mod check;
pub mod figures;
pub mod inject;
pub mod observe;
pub mod report;
pub mod run;
pub mod schedule;

pub use check::{History, Invariant, Violation};
pub use run::{ChaosOptions, ChaosResult};
pub use schedule::{Kind, Nodes, Schedule};
