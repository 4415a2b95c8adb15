//! Subcommands that live in their own file (issue 13 moves the rest here).

pub mod chaos;
pub mod generate;
pub mod lb;
pub mod maintenance;
