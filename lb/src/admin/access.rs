//! Who may change things through the admin API.
//!
//! The same router serves the TCP endpoint and the control socket; only
//! the routes that change state (`writes` in [`super::router`]) check the
//! [`Access`] of the listener the request came in on. Reading (`/`,
//! `/metrics`, `/status`) is open wherever the API is served.
//!
//! - The control socket lets through whoever can connect: the socket
//!   file's owner, group and mode decide, as with HAProxy's stats socket
//!   and BIRD's `birdc`.
//! - TCP lets a write through only with `Authorization: Bearer <token>`,
//!   the token being the content of `admin.token_file`; without a token
//!   file, TCP is read-only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The write permission of one listener.
#[derive(Clone)]
pub enum Access {
    /// The control socket: the file system already decided.
    ControlSocket,
    /// TCP: writes need the current token, if there is one.
    Tcp(TokenSlot),
}

/// The token of `admin.token_file`, replaced on reload.
pub type TokenSlot = Arc<ArcSwapOption<Token>>;

/// A bearer token, read from its file.
pub struct Token {
    secret: Vec<u8>,
    /// The file, named in refusals.
    file: PathBuf,
}

/// Why a token file cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the admin token file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the admin token file {} is empty", path.display())]
    Empty { path: PathBuf },
}

impl Token {
    /// Reads the file; surrounding white space (a final newline) is not
    /// part of the token.
    pub fn read(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read(path).map_err(|error| TokenError::Read {
            path: path.to_owned(),
            error,
        })?;
        let secret = text.trim_ascii().to_vec();
        if secret.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_owned(),
            });
        }
        warn_if_readable_by_others(path);
        Ok(Token {
            secret,
            file: path.to_owned(),
        })
    }

    /// The token as text, as it goes in a header; `None` when it is not
    /// printable ASCII.
    pub fn text(&self) -> Option<String> {
        let printable = self.secret.iter().all(|b| b.is_ascii_graphic());
        printable.then(|| String::from_utf8_lossy(&self.secret).into_owned())
    }

    /// Compares in time independent of where the first difference is, so
    /// response times do not reveal the token byte by byte.
    fn matches(&self, offered: &[u8]) -> bool {
        let differences = self
            .secret
            .iter()
            .zip(offered)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        differences == 0 && self.secret.len() == offered.len()
    }
}

/// Names the file, never the secret (it would end up in logs).
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the admin token file is readable by every user of this host"
            );
        }
    }
}

/// Why a write was refused: the status and the one line the client shows.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Access {
    pub(super) fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Access::Tcp(slot) = self else {
            return Ok(());
        };
        let Some(token) = slot.load_full() else {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "writes over TCP are disabled: use the control socket, or set admin.token_file and send its token as a bearer token".to_owned(),
            });
        };
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        match offered {
            None => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: format!(
                    "writes over TCP need the token of {} as `Authorization: Bearer <token>`",
                    token.file.display()
                ),
            }),
            Some(offered) if !token.matches(offered.trim_ascii()) => Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: format!(
                    "the bearer token is not the one in {}",
                    token.file.display()
                ),
            }),
            Some(_) => Ok(()),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, format!("{}\n", self.message)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"coexist\""),
            );
        }
        response
    }
}

/// Middleware on the routes that change state.
pub(super) async fn authorize(
    State(access): State<Access>,
    request: Request,
    next: Next,
) -> Response {
    match access.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(
                path = %request.uri().path(),
                status = refusal.status.as_u16(),
                "admin write refused"
            );
            refusal.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(secret: Option<&str>) -> Access {
        let token = secret.map(|s| {
            Arc::new(Token {
                secret: s.as_bytes().to_vec(),
                file: PathBuf::from("/etc/coexist/admin.token"),
            })
        });
        Access::Tcp(Arc::new(ArcSwapOption::new(token)))
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn the_control_socket_needs_no_token() {
        assert_eq!(Access::ControlSocket.check(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn tcp_without_a_token_file_refuses_every_write() {
        let refusal = tcp(None).check(&bearer("Bearer anything")).unwrap_err();
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
        assert!(refusal.message.contains("control socket"), "{refusal:?}");
    }

    #[test]
    fn tcp_writes_need_the_exact_token() {
        let access = tcp(Some("s3cret"));
        assert_eq!(access.check(&bearer("Bearer s3cret")), Ok(()));
        let missing = access.check(&HeaderMap::new()).unwrap_err();
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert!(missing.message.contains("/etc/coexist/admin.token"));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer S3cret",
            "Basic s3cret",
        ] {
            let refusal = access.check(&bearer(wrong)).unwrap_err();
            assert_ne!(refusal.status, StatusCode::OK, "{wrong}");
        }
    }

    #[test]
    fn a_token_file_is_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc123\n").unwrap();
        assert_eq!(Token::read(&path).unwrap().secret, b"abc123");
        std::fs::write(&path, " \n").unwrap();
        assert_eq!(
            Token::read(&path).unwrap_err().to_string(),
            format!("the admin token file {} is empty", path.display())
        );
    }
}
