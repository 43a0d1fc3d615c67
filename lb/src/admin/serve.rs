//! The listeners of the admin API: the TCP endpoint and the control
//! socket, each connection served by hyper with the timeouts that keep an
//! idle or slow client from holding it.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use super::access::{Access, Token, TokenError, TokenSlot};
use super::{router, AdminContext};
use crate::config::{Admin, ControlSocket};

/// Largest request head; the API's requests are a line and a few headers.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Why the admin API could not be set up; names the address or file.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {address} for the admin endpoint: {error}")]
    Listen {
        address: std::net::SocketAddr,
        error: io::Error,
    },
    #[error("cannot make the control socket {}: {error}", path.display())]
    ControlSocket { path: PathBuf, error: io::Error },
    #[error("the control socket {} is in use by another running process", path.display())]
    ControlSocketInUse { path: PathBuf },
    #[error("{} exists and is not a socket: not replacing it with the control socket", path.display())]
    NotASocket { path: PathBuf },
    #[error("admin.control_socket_group: no group {0:?} on this host")]
    NoSuchGroup(String),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The running listeners. Dropping it removes the control socket file.
pub struct Endpoints {
    tokens: TokenSlot,
    /// Held for its `Drop`.
    _socket: Option<SocketFile>,
    tcp: Option<std::net::SocketAddr>,
}

impl Endpoints {
    /// Reads the token, binds both listeners and serves them.
    pub async fn start(config: &Admin, context: AdminContext) -> Result<Endpoints, AdminError> {
        let tokens: TokenSlot = Arc::new(ArcSwapOption::new(Self::read_token(config)?));
        let timeout = config.request_timeout;
        let tcp = match config.listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|error| AdminError::Listen { address, error })?,
            ),
            None => None,
        };
        let socket = match &config.control_socket {
            Some(c) => Some(SocketFile::bind(c)?),
            None => None,
        };
        let tcp_address = tcp.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(listener) = tcp {
            if let Some(address) = tcp_address {
                tracing::info!(%address, "admin endpoint listening (/metrics, /status)");
            }
            let app = router(context.clone(), Access::Tcp(Arc::clone(&tokens)), timeout);
            tokio::spawn(serve(listener, app, timeout));
        }
        let socket = socket.map(|(file, listener)| {
            tracing::info!(path = %file.path.display(), "control socket listening");
            let app = router(context, Access::ControlSocket, timeout);
            tokio::spawn(serve(listener, app, timeout));
            file
        });
        Ok(Endpoints {
            tokens,
            _socket: socket,
            tcp: tcp_address,
        })
    }

    /// The TCP endpoint's address, once bound.
    pub fn tcp_address(&self) -> Option<std::net::SocketAddr> {
        self.tcp
    }

    /// Reads the token of a reloaded `[admin]`, before anything changes.
    pub fn read_token(config: &Admin) -> Result<Option<Arc<Token>>, AdminError> {
        let token = config.token_file.as_deref().map(Token::read).transpose()?;
        Ok(token.map(Arc::new))
    }

    /// A reloaded `[admin]`'s token (see [`Endpoints::read_token`]): a
    /// rotated token takes effect at once. Listeners and timeouts change
    /// only at a restart (`Config::changed_until_restart` names them).
    pub fn set_token(&self, token: Option<Arc<Token>>) {
        self.tokens.store(token);
    }
}

/// Accepts for ever; axum's [`Listener`] waits and retries when an
/// accept fails (out of descriptors), rather than spinning.
async fn serve<L: Listener>(mut listener: L, app: Router, timeout: Duration) {
    loop {
        let (stream, _) = listener.accept().await;
        tokio::spawn(serve_connection(stream, app.clone(), timeout));
    }
}

/// One connection, HTTP/1.1 with keep-alive. `timeout` bounds the wait for
/// each request's head, counted from the connection's start or the end of
/// the previous response (so an idle connection is closed too); the
/// router's own timeout bounds the body and the answer.
async fn serve_connection<S>(stream: S, app: Router, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .await;
    if let Err(error) = served {
        // A client that went away or was timed out: routine.
        tracing::debug!(%error, "admin connection ended");
    }
}

/// The control socket's file, removed when dropped (if it is still ours).
struct SocketFile {
    path: PathBuf,
    /// (device, inode) of the socket this process made.
    identity: (u64, u64),
}

impl SocketFile {
    /// Binds under a temporary name, sets mode and group, then renames it
    /// into place, so that no client ever finds it with other permissions.
    fn bind(config: &ControlSocket) -> Result<(SocketFile, UnixListener), AdminError> {
        let path = &config.path;
        let failed = |error| AdminError::ControlSocket {
            path: path.clone(),
            error,
        };
        let gid = config.group.as_deref().map(group_id).transpose()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        check_stale(path)?;
        let temporary = path.with_extension(format!("tmp.{}", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        let listener = UnixListener::bind(&temporary).map_err(failed)?;
        let placed = (|| {
            std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(config.mode))?;
            if let Some(gid) = gid {
                std::os::unix::fs::chown(&temporary, None, Some(gid))?;
            }
            std::fs::rename(&temporary, path)?;
            std::fs::metadata(path)
        })();
        let meta = placed.map_err(|error| {
            let _ = std::fs::remove_file(&temporary);
            failed(error)
        })?;
        let file = SocketFile {
            path: path.clone(),
            identity: (meta.dev(), meta.ino()),
        };
        Ok((file, listener))
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A socket left by a process that died is removed; one that answers
/// belongs to a running daemon and is left alone.
fn check_stale(path: &Path) -> Result<(), AdminError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(AdminError::NotASocket {
            path: path.to_owned(),
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(AdminError::ControlSocketInUse {
            path: path.to_owned(),
        });
    }
    std::fs::remove_file(path).map_err(|error| AdminError::ControlSocket {
        path: path.to_owned(),
        error,
    })
}

/// A group name, or a number.
fn group_id(group: &str) -> Result<u32, AdminError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(AdminError::NoSuchGroup(group.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(path: PathBuf, mode: u32) -> ControlSocket {
        ControlSocket {
            path,
            mode,
            group: Some("0".into()),
        }
    }

    #[tokio::test]
    async fn the_socket_file_gets_its_mode_and_goes_away_with_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/coexist/control.sock");
        let (file, _listener) = SocketFile::bind(&socket(path.clone(), 0o640)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(meta.gid(), 0);
        // Another daemon on the same path is refused while this one runs.
        let again = SocketFile::bind(&socket(path.clone(), 0o600))
            .err()
            .unwrap();
        assert!(
            matches!(again, AdminError::ControlSocketInUse { .. }),
            "{again}"
        );
        drop(file);
        assert!(!path.exists());
    }

    /// A group other than the daemon's own that this process may give a
    /// file to, with its name: any group as root, else a supplementary one.
    fn another_group() -> (u32, String) {
        let own = nix::unistd::getegid().as_raw();
        let allowed: Vec<u32> = if nix::unistd::geteuid().is_root() {
            Vec::new()
        } else {
            let groups = nix::unistd::getgroups().expect("getgroups");
            groups.into_iter().map(|g| g.as_raw()).collect()
        };
        let groups = std::fs::read_to_string("/etc/group").expect("read /etc/group");
        groups
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let gid = fields.nth(1)?.parse::<u32>().ok()?;
                Some((gid, name.to_owned()))
            })
            .find(|(gid, _)| *gid != own && (allowed.is_empty() || allowed.contains(gid)))
            .expect("root, or a supplementary group listed in /etc/group, to hand the socket to")
    }

    /// `control_socket_group`, by number or by name, decides who besides
    /// the owner may connect; the daemon's own group is only the default.
    #[tokio::test]
    async fn the_socket_file_goes_to_the_group_named_by_number_or_name() {
        let (gid, name) = another_group();
        let dir = tempfile::tempdir().unwrap();
        for group in [gid.to_string(), name] {
            let path = dir.path().join("control.sock");
            let config = ControlSocket {
                path: path.clone(),
                mode: 0o660,
                group: Some(group.clone()),
            };
            let (file, _listener) = SocketFile::bind(&config).unwrap();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert_eq!(meta.gid(), gid, "group = {group:?}");
            drop(file);
        }
        let config = ControlSocket {
            path: dir.path().join("default.sock"),
            mode: 0o660,
            group: None,
        };
        let (_file, _listener) = SocketFile::bind(&config).unwrap();
        let meta = std::fs::symlink_metadata(&config.path).unwrap();
        assert_eq!(meta.gid(), nix::unistd::getegid().as_raw());
        let unknown = ControlSocket {
            group: Some("no-such-group-coexist".into()),
            ..config
        };
        let refused = SocketFile::bind(&unknown).err().unwrap();
        assert!(matches!(refused, AdminError::NoSuchGroup(_)), "{refused}");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_other_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "left behind as by a killed daemon");
        let bound = SocketFile::bind(&socket(path.clone(), 0o600)).unwrap();
        drop(bound);
        std::fs::write(&path, "not a socket").unwrap();
        let refused = SocketFile::bind(&socket(path.clone(), 0o600))
            .err()
            .unwrap();
        assert_eq!(
            refused.to_string(),
            format!(
                "{} exists and is not a socket: not replacing it with the control socket",
                path.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    }
}
