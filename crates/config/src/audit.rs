//! Checks on the files that hold secrets, for `haplane check` and the daemon's start: key
//! files that cannot be used are errors, secrets that anyone but their owner (group or others) can read are warnings.
//! Findings name the file and the key, never the secret.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::secret::key_bytes;
use crate::validate::{Finding, Severity};
use crate::{Cluster, Secret};

fn finding(severity: Severity, path: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding {
        severity,
        path: path.into(),
        message: message.into(),
    }
}

/// Permission bits of `path`, if it exists.
fn mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Anyone but the owner (root, who runs the daemon) can read it: its group or other users.
fn others_can_read(mode: u32) -> bool {
    mode & 0o044 != 0
}

/// Audit every secret of `cluster`, read from `cluster_file`.
pub fn audit_secret_files(cluster: &Cluster, cluster_file: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let vip = &cluster.vip;
    // Secrets written into the cluster file itself.
    let mut inline: Vec<String> = Vec::new();
    if vip.auth_pass.is_some() {
        inline.push("vip.authPass".into());
    }
    if let Some(h) = &vip.auth_hmac {
        for (id, secret) in &h.keys {
            let at = format!("vip.authHmac.keys.{id}");
            match secret.file() {
                None => inline.push(at),
                Some(path) => {
                    if let Err(e) = key_bytes(*id, secret) {
                        out.push(finding(Severity::Error, &at, e.to_string()));
                    }
                    if let Some(m) = mode(path)
                        && others_can_read(m)
                    {
                        out.push(finding(
                            Severity::Warning,
                            &at,
                            format!(
                                "{} holds a VRRP key and is readable by its group or other users (mode {m:04o}); chmod 600 it",
                                path.display()
                            ),
                        ));
                    }
                }
            }
        }
    }
    if !inline.is_empty()
        && let Some(m) = mode(cluster_file)
        && others_can_read(m)
    {
        for at in inline {
            out.push(finding(
                Severity::Warning,
                at,
                format!(
                    "{} holds this secret inline and is readable by its group or other users (mode {m:04o}); chmod 600 it, or move the key to a file: of mode 600",
                    cluster_file.display()
                ),
            ));
        }
    }
    let private_keys = [
        (
            "etcd.keyFile",
            cluster.etcd.as_ref().and_then(|e| e.key_file.as_deref()),
        ),
        (
            "loadBalancer.healthCheck.keyFile",
            cluster.load_balancer.health_check.key_file.as_deref(),
        ),
    ];
    for (at, file) in private_keys {
        if let Some(path) = file
            && let Some(m) = mode(path)
            && others_can_read(m)
        {
            out.push(finding(
                Severity::Warning,
                at,
                format!(
                    "{} is a private key readable by its group or other users (mode {m:04o}); chmod 600 it",
                    path.display()
                ),
            ));
        }
    }
    out
}

/// The auth_hmac keys as bytes, by id, reading `file:` keys; for the daemon.
pub fn resolve_keys(
    keys: &std::collections::BTreeMap<u8, Secret>,
) -> Result<Vec<(u8, Vec<u8>)>, crate::KeyError> {
    keys.iter()
        .map(|(id, s)| key_bytes(*id, s).map(|b| (*id, b)))
        .collect()
}
