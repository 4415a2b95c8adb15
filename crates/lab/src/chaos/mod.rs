//! `haplane lab chaos`: seeded schedules of overlapping faults against a lab that `lab up`
//! built, while clients write through the VIP and the node-local balancer; afterwards a
//! checker that trusts nothing verifies the histories and samples (see docs/lab.md).
//!
//! - [`schedule`]: the seeded, deterministic fault schedule (pure);
//! - [`check`]: the invariants over recorded histories (pure).

pub mod check;
pub mod schedule;

pub use check::{History, Invariant, Violation};
pub use schedule::{Kind, Nodes, Schedule};
