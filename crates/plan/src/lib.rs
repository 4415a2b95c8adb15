//! `haplane plan`, `haplane preflight` and `haplane import` as a library.
//!
//! - [`validate`]: the cluster file's rules, the same `haplane check` runs (etcd member count,
//!   port clashes, keepalived limits, track weights that cannot move the VIP, node roles, ...).
//! - [`render`] / [`write_plan`]: per-node kubeadm configs, haplane's static pod and systemd
//!   unit, external etcd members, a classic keepalived.conf + haproxy.cfg and a runbook.
//! - [`preflight()`]: PASS/WARN/FAIL checks of one host, each with its fix.
//! - [`import()`]: a cluster file from an existing keepalived.conf and haproxy.cfg.

#![forbid(unsafe_code)]

pub mod import;
pub mod preflight;
mod render;
mod validate;

use std::path::{Path, PathBuf};

use config::{Cluster, Finding, Severity};

pub use config::CONTROL_PLANE_PORTS;
pub use import::{
    ImportError, ImportResult, Origin, Rejection, Resolver, Text, Unmapped, import, import_text,
};
pub use preflight::{CheckResult, CheckStatus, PreflightOptions, preflight};
pub use render::{KubeadmApi, Plan, PlanFile, PlanOptions, render};
pub use validate::validate;

/// Why a plan could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The cluster file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The cluster file does not parse or does not fit the schema.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Validation found errors; every finding is listed.
    #[error("the cluster file has {} error(s):\n{}", .0.iter().filter(|f| f.severity == Severity::Error).count(), list(.0))]
    Invalid(Vec<Finding>),
    /// An option is unusable (a malformed token, for example).
    #[error("bad option {name}: {message}")]
    Option { name: &'static str, message: String },
    /// Random bytes for the bootstrap token could not be read.
    #[error("cannot read random bytes from /dev/urandom: {0}")]
    Random(std::io::Error),
    /// A plan file could not be written.
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn list(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("  {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parse a cluster file without rejecting it, so [`validate`] can report every finding.
pub fn parse(text: &str, path: &Path) -> Result<Cluster, PlanError> {
    serde_saphyr::from_str(text).map_err(|e| PlanError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Read and parse a cluster file, then validate it; errors fail, warnings are returned.
pub fn load(path: &Path) -> Result<(Cluster, Vec<Finding>), PlanError> {
    let text = std::fs::read_to_string(path).map_err(|error| PlanError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let cluster = parse(&text, path)?;
    let findings = validate(&cluster);
    if findings.iter().any(|f| f.severity == Severity::Error) {
        return Err(PlanError::Invalid(findings));
    }
    Ok((cluster, findings))
}

/// Write every file of a plan under `out_dir`, creating directories as needed.
pub fn write_plan(plan: &Plan, out_dir: &Path) -> Result<(), PlanError> {
    for file in &plan.files {
        let path = out_dir.join(&file.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| PlanError::Write {
                path: dir.to_path_buf(),
                error,
            })?;
        }
        std::fs::write(&path, &file.contents).map_err(|error| PlanError::Write {
            path: path.clone(),
            error,
        })?;
        if file.secret {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|error| PlanError::Write { path, error })?;
        }
    }
    tracing::info!(out = %out_dir.display(), files = plan.files.len(), "plan written");
    Ok(())
}
