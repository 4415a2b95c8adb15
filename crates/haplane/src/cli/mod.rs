//! The command line: one file per subcommand (parse → apply → answer). Libraries return
//! values and errors; only these files print and pick exit codes.

pub mod check;
pub mod demo;
pub mod etcd;
pub mod generate;
pub mod import;
pub mod lab;
pub mod lb;
pub mod logging;
pub mod maintenance;
pub mod plan;
pub mod preflight;
pub mod run;
pub mod status;
