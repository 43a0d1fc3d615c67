//! The operator's side of the admin endpoint: what `coexist status` and
//! `coexist server` ask a running daemon, with errors that name the
//! endpoint or the server and say the cause once.

use super::status::{ServerStatus, Status};
use super::ServerChange;

/// Why a request to the admin endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No HTTP answer: nothing listens there, or the connection failed.
    #[error("cannot reach the admin endpoint at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// The daemon answered with an error; its answer says why (for
    /// instance `no server web/nope`).
    #[error("{0}")]
    Refused(String),
    /// An answer that is not the document asked for.
    #[error("malformed answer from {url}: {cause}")]
    Malformed { url: String, cause: String },
}

/// `http://ADDR/PATH` for an admin address given as `host:port` or a URL.
pub fn url(admin: &str, path: &str) -> String {
    let base = if admin.starts_with("http://") {
        admin.to_owned()
    } else {
        format!("http://{admin}")
    };
    format!("{}{path}", base.trim_end_matches('/'))
}

/// `GET /status`.
pub fn status(admin: &str) -> Result<Status, ClientError> {
    let url = url(admin, "/status");
    let response = ureq::get(&url).call().map_err(|e| failed(&url, e))?;
    response.into_json().map_err(|e| ClientError::Malformed {
        url,
        cause: e.to_string(),
    })
}

/// `POST /servers/BACKEND/SERVER`: the server as it is afterwards.
pub fn change_server(
    admin: &str,
    backend: &str,
    server: &str,
    change: &ServerChange,
) -> Result<Option<ServerStatus>, ClientError> {
    let url = url(admin, &format!("/servers/{backend}/{server}"));
    let response = ureq::post(&url)
        .send_json(change)
        .map_err(|e| failed(&url, e))?;
    response.into_json().map_err(|e| ClientError::Malformed {
        url,
        cause: e.to_string(),
    })
}

/// `POST /announce/{name}`: the group's state after the change.
pub fn change_announce(
    admin: &str,
    name: &str,
    change: &super::AnnounceChange,
) -> Result<Vec<crate::announce::AnnounceStatus>, ClientError> {
    let url = url(admin, &format!("/announce/{name}"));
    let response = ureq::post(&url)
        .send_json(change)
        .map_err(|e| failed(&url, e))?;
    response.into_json().map_err(|e| ClientError::Malformed {
        url,
        cause: e.to_string(),
    })
}

fn failed(url: &str, error: ureq::Error) -> ClientError {
    match error {
        ureq::Error::Status(code, response) => {
            let text = response.into_string().unwrap_or_default();
            let text = text.trim();
            ClientError::Refused(if text.is_empty() {
                format!("{url}: HTTP {code}")
            } else {
                text.to_owned()
            })
        }
        ureq::Error::Transport(transport) => ClientError::Unreachable {
            url: url.to_owned(),
            cause: root_cause(&transport),
        },
    }
}

/// ureq's message repeats the URL and then its cause, which it also
/// exposes as `source()`: the innermost cause alone says what happened.
fn root_cause(transport: &ureq::Transport) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(transport);
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    match (innermost, transport.message()) {
        (Some(c), _) => c.to_string(),
        (None, Some(message)) => format!("{}: {message}", transport.kind()),
        (None, None) => transport.kind().to_string(),
    }
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
        let e = status(&admin).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot reach the admin endpoint at http://{admin}/status: Connection refused (os error 111)"
            )
        );
    }
}
