//! The local admin socket: commands that change what the daemon does (`haplane lb drain`,
//! `haplane maintenance enter`) come over a Unix socket that only root can open, like
//! haproxy's admin-level stats socket. Never over the TCP status port, which may be reachable
//! from other hosts for `haplane status --config`.
//!
//! Who may connect is checked twice: the socket file is 0600 in a 0700 directory, and the
//! daemon asks the kernel who the peer is (SO_PEERCRED) and answers only root or its own user.
//!
//! The protocol is one JSON request line and one JSON reply line per connection:
//! `{"command":"lb-admin","backend":"192.0.2.11:6443","state":"drain"}` →
//! `{"ok":true,"result":{...}}` or `{"ok":false,"error":"..."}`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

/// The longest request line accepted.
const MAX_REQUEST: usize = 4096;

/// A command for the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// The balancer's status (as in /status).
    LbStatus,
    /// Set one backend's admin state.
    LbAdmin {
        /// The backend, as configured.
        backend: SocketAddr,
        /// `drain` or `ready`.
        state: AdminState,
    },
    /// Enter or leave maintenance, or ask where it stands.
    Maintenance {
        /// What to do.
        action: MaintenanceAction,
    },
}

/// A backend's admin state, as the socket spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// No new sessions; established ones continue.
    Drain,
    /// Back in service.
    Ready,
}

/// What `haplane maintenance` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceAction {
    /// Give the VIP away and drain.
    Enter,
    /// Take part again.
    Exit,
    /// Report only.
    Status,
}

/// The daemon's side: answers a request.
pub trait Handler: Send + Sync + 'static {
    /// The result to send back, or an error message for the operator.
    fn handle(&self, request: Request) -> BoxFuture<'static, Result<serde_json::Value, String>>;
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What can go wrong on either side of the admin socket.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket (or its directory) could not be created.
    #[error("cannot create the admin socket {path}: {error}")]
    Bind {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Another daemon already answers on this socket.
    #[error(
        "another haplane already serves the admin socket {0}; is a second daemon running for this node?"
    )]
    InUse(PathBuf),
    /// No daemon listens there.
    #[error(
        "no haplane daemon answers on {path} ({error}); is `haplane run` running for this node? (--node picks another node's socket)"
    )]
    NotRunning {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The socket exists but this user may not open it.
    #[error("permission denied on {0}: only root may use the admin socket")]
    Denied(PathBuf),
    /// The exchange failed half-way.
    #[error("admin socket {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The daemon's answer was not understood.
    #[error("admin socket {path}: unexpected reply {reply:?}")]
    BadReply { path: PathBuf, reply: String },
    /// The daemon refused the command; the message says why.
    #[error("{0}")]
    Refused(String),
}

/// A bound admin socket; the file is removed when this is dropped.
#[derive(Debug)]
pub struct AdminServer {
    path: PathBuf,
}

impl AdminServer {
    /// Binds `path` (0600, in a 0700 directory created if missing) and answers requests with
    /// `handler` in the background. A stale socket file from a dead daemon is replaced; one a
    /// live daemon answers on is an error.
    pub async fn serve(path: &Path, handler: Arc<dyn Handler>) -> Result<AdminServer, AdminError> {
        let bind_err = |error| AdminError::Bind {
            path: path.to_path_buf(),
            error,
        };
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(bind_err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(bind_err)?;
        }
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(AdminError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
        info!(socket = %path.display(), "admin socket ready");
        let me = nix::unistd::geteuid().as_raw();
        crate::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let handler = handler.clone();
                crate::spawn(async move {
                    if let Err(e) = answer(stream, handler, me).await {
                        warn!("admin socket: {e}");
                    }
                });
            }
        });
        Ok(AdminServer {
            path: path.to_path_buf(),
        })
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(stream: UnixStream, handler: Arc<dyn Handler>, me: u32) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let reply = if uid != 0 && uid != me {
        warn!(uid, "admin socket: refused a client that is not root");
        Reply {
            ok: false,
            result: None,
            error: Some(format!(
                "uid {uid} may not use the admin socket (root only)"
            )),
        }
    } else {
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64 + 1);
        let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
        match read {
            Err(_) => bad("no request within 5s"),
            Ok(Err(e)) => bad(&format!("cannot read the request: {e}")),
            Ok(Ok(_)) if line.len() > MAX_REQUEST => {
                bad(&format!("request longer than {MAX_REQUEST} bytes"))
            }
            Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
                Err(e) => bad(&format!("not a request: {e}")),
                Ok(request) => {
                    info!(uid, ?request, "admin command");
                    match handler.handle(request).await {
                        Ok(result) => Reply {
                            ok: true,
                            result: Some(result),
                            error: None,
                        },
                        Err(e) => bad(&e),
                    }
                }
            },
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

fn bad(message: &str) -> Reply {
    Reply {
        ok: false,
        result: None,
        error: Some(message.to_string()),
    }
}

/// The client's side: sends `request` to the daemon at `path` and waits up to `timeout` for
/// its answer. Blocking; for the CLI.
pub fn call(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<serde_json::Value, AdminError> {
    let io = |error| AdminError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(AdminError::Denied(path.to_path_buf()));
        }
        Err(source) => {
            return Err(AdminError::NotRunning {
                path: path.to_path_buf(),
                error: source,
            });
        }
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| io(std::io::Error::other(e)))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(io)?;
    let parsed: Reply = serde_json::from_str(reply.trim()).map_err(|_| AdminError::BadReply {
        path: path.to_path_buf(),
        reply: reply.trim().to_string(),
    })?;
    match (parsed.ok, parsed.result, parsed.error) {
        (true, Some(result), _) => Ok(result),
        (false, _, Some(e)) => Err(AdminError::Refused(e)),
        _ => Err(AdminError::BadReply {
            path: path.to_path_buf(),
            reply: reply.trim().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_json_form() {
        let r = Request::LbAdmin {
            backend: "192.0.2.11:6443".parse().unwrap(),
            state: AdminState::Drain,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"command":"lb-admin","backend":"192.0.2.11:6443","state":"drain"}"#
        );
        let m: Request =
            serde_json::from_str(r#"{"command":"maintenance","action":"enter"}"#).unwrap();
        assert_eq!(
            m,
            Request::Maintenance {
                action: MaintenanceAction::Enter
            }
        );
        assert!(
            serde_json::from_str::<Request>(r#"{"command":"lb-admin","backend":"x"}"#).is_err()
        );
        assert!(serde_json::from_str::<Request>(r#"{"command":"shell","cmd":"rm"}"#).is_err());
    }
}

/// Whose admin socket a CLI command talks to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node's name.
    pub node: String,
    /// Its admin socket.
    pub socket: PathBuf,
}

/// The node `--node` names, or the one whose address is on this host, and its socket.
pub fn target(
    cluster: &config::Cluster,
    node: Option<&str>,
) -> Result<Target, config::FindNodeError> {
    let local: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|i| i.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| std::net::IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
                })
                .collect()
        })
        .unwrap_or_default();
    let n = cluster.find_node(node, &local)?;
    Ok(Target {
        node: n.name.clone(),
        socket: cluster.admin_socket(&n.name),
    })
}

/// A backend named on the command line: `IP:PORT` as configured, an IP that only one backend
/// has, or the name of a node whose address only one backend has.
pub fn resolve_backend(cluster: &config::Cluster, name: &str) -> Result<SocketAddr, AdminError> {
    let backends: Vec<SocketAddr> = cluster.lb_backends().iter().map(|b| b.address).collect();
    let listed = || {
        backends
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Ok(sa) = name.parse::<SocketAddr>() {
        return if backends.contains(&sa) {
            Ok(sa)
        } else {
            Err(AdminError::Refused(format!(
                "{sa} is not a backend; the backends are {}",
                listed()
            )))
        };
    }
    let ip = match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match cluster.node(name) {
            Some(n) => n.address,
            None => {
                return Err(AdminError::Refused(format!(
                    "{name:?} is neither IP:PORT, an IP nor a node name; the backends are {}",
                    listed()
                )));
            }
        },
    };
    let matching: Vec<&SocketAddr> = backends.iter().filter(|b| b.ip() == ip).collect();
    match matching.as_slice() {
        [one] => Ok(**one),
        [] => Err(AdminError::Refused(format!(
            "no backend at {ip}; the backends are {}",
            listed()
        ))),
        _ => Err(AdminError::Refused(format!(
            "several backends at {ip}; name one as IP:PORT: {}",
            listed()
        ))),
    }
}
