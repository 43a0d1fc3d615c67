//! The operator's side of the admin API: what `coexist status` and
//! `coexist server` ask a running daemon, over TCP or the control socket,
//! with errors that name the endpoint or the server and say the cause once.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::status::{ServerStatus, Status};
use super::ServerChange;

/// How long the CLI waits for the daemon's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The TCP endpoint, `host:port` or `http://host:port/`; writes need
    /// the bearer token of its `admin.token_file`.
    Tcp {
        address: String,
        token: Option<String>,
    },
    /// The control socket: no token, the file's permissions decide.
    Socket(PathBuf),
}

/// Why a request to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No HTTP answer: nothing listens there, or the connection failed.
    #[error("cannot reach {what}: {cause}")]
    Unreachable { what: String, cause: String },
    /// The daemon answered with an error; its answer says why (for
    /// instance `no server web/nope`).
    #[error("{0}")]
    Refused(String),
    /// An answer that is not the document asked for.
    #[error("malformed answer from {what}: {cause}")]
    Malformed { what: String, cause: String },
}

/// `http://ADDR/PATH` for an admin address given as `host:port` or a URL.
pub fn url(admin: &str, path: &str) -> String {
    format!("http://{}{path}", host(admin))
}

/// `host:port` of an address given as `host:port` or a URL.
fn host(admin: &str) -> &str {
    admin
        .strip_prefix("http://")
        .unwrap_or(admin)
        .trim_end_matches('/')
}

impl Endpoint {
    /// What an error message calls the target of `path`.
    fn describe(&self, path: &str) -> String {
        match self {
            Endpoint::Tcp { address, .. } => {
                format!("the admin endpoint at {}", url(address, path))
            }
            Endpoint::Socket(socket) => format!("the control socket {}", socket.display()),
        }
    }
}

/// `GET /status`.
pub fn status(endpoint: &Endpoint) -> Result<Status, ClientError> {
    let body = exchange(endpoint, Method::GET, "/status", None)?;
    json(endpoint, "/status", &body)
}

/// `POST /servers/BACKEND/SERVER`: the server as it is afterwards.
pub fn change_server(
    endpoint: &Endpoint,
    backend: &str,
    server: &str,
    change: &ServerChange,
) -> Result<Option<ServerStatus>, ClientError> {
    let path = format!("/servers/{backend}/{server}");
    let body = serde_json::to_vec(change).expect("a change always serializes");
    let answer = exchange(endpoint, Method::POST, &path, Some(body))?;
    json(endpoint, &path, &answer)
}

fn json<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    path: &str,
    body: &[u8],
) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Malformed {
        what: endpoint.describe(path),
        cause: e.to_string(),
    })
}

/// `POST /announce/{name}`: the group's state after the change.
pub fn change_announce(
    endpoint: &Endpoint,
    name: &str,
    change: &super::AnnounceChange,
) -> Result<Vec<crate::announce::AnnounceStatus>, ClientError> {
    let path = format!("/announce/{name}");
    let body = serde_json::to_vec(change).expect("a change always serializes");
    let answer = exchange(endpoint, Method::POST, &path, Some(body))?;
    json(endpoint, &path, &answer)
}

/// One request on a fresh connection; the body of a 2xx answer, or the
/// daemon's refusal as an error.
fn exchange(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Bytes, ClientError> {
    let unreachable = |cause: String| ClientError::Unreachable {
        what: endpoint.describe(path),
        cause,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut request = Request::builder().method(method).uri(path);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = match endpoint {
        Endpoint::Tcp { address, token } => {
            request = request.header(header::HOST, host(address));
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            request
        }
        Endpoint::Socket(_) => request.header(header::HOST, "localhost"),
    };
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| unreachable(e.to_string()))?;
    let answered = runtime.block_on(async {
        let exchange = async {
            match endpoint {
                Endpoint::Tcp { address, .. } => {
                    let stream = tokio::net::TcpStream::connect(host(address))
                        .await
                        .map_err(|e| e.to_string())?;
                    send(stream, request).await
                }
                Endpoint::Socket(socket) => {
                    let stream = tokio::net::UnixStream::connect(socket)
                        .await
                        .map_err(|e| e.to_string())?;
                    send(stream, request).await
                }
            }
        };
        tokio::time::timeout(ANSWER_TIMEOUT, exchange).await
    });
    let (status, answer) = match answered {
        Ok(Ok(answer)) => answer,
        Ok(Err(cause)) => return Err(unreachable(cause)),
        Err(_) => {
            let waited = humantime::format_duration(ANSWER_TIMEOUT);
            return Err(unreachable(format!("no answer within {waited}")));
        }
    };
    if status.is_success() {
        return Ok(answer);
    }
    let text = String::from_utf8_lossy(&answer);
    let text = text.trim();
    Err(ClientError::Refused(if text.is_empty() {
        format!("{}: HTTP {status}", endpoint.describe(path))
    } else {
        text.to_owned()
    }))
}

/// Sends `request` over `stream` and reads the whole answer. Errors are
/// one line: the innermost cause, which the outer ones only wrap.
async fn send<S>(stream: S, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| innermost(&e);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(failed)?;
    let driven = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(failed)?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(failed)?;
    driven.abort();
    Ok((status, body.to_bytes()))
}

fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_become_urls() {
        assert_eq!(
            url("127.0.0.1:9100", "/status"),
            "http://127.0.0.1:9100/status"
        );
        assert_eq!(
            url("http://[::1]:9100/", "/status"),
            "http://[::1]:9100/status"
        );
    }

    #[test]
    fn an_unreachable_endpoint_is_named_with_the_cause_once() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = closed.local_addr().unwrap().to_string();
        drop(closed);
        let endpoint = Endpoint::Tcp {
            address: admin.clone(),
            token: None,
        };
        let e = status(&endpoint).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot reach the admin endpoint at http://{admin}/status: Connection refused (os error 111)"
            )
        );
        let socket = Endpoint::Socket("/nonexistent/control.sock".into());
        assert_eq!(
            status(&socket).unwrap_err().to_string(),
            "cannot reach the control socket /nonexistent/control.sock: No such file or directory (os error 2)"
        );
    }
}
