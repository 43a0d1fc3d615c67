//! Active health checks: the IO shell around [`crate::health::ServerHealth`].
//!
//! One task per server probes it on its own address family and feeds the
//! result to the server's state machine. Start times are jittered so a
//! thousand servers are not probed in the same millisecond.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod udp;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{CheckKind, HealthCheck};
use crate::health::Observation;
use crate::runtime::ServerRuntime;

/// Runs checks for `server` until a reload removes it.
pub fn spawn(server: Arc<ServerRuntime>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The first check runs almost at once (a fresh daemon should serve
        // as soon as a server answers), spread over a tenth of the interval
        // so a thousand servers are not probed in the same millisecond.
        let mut first = true;
        loop {
            if server.is_retired() {
                return;
            }
            let Some(check) = server.check() else {
                // No active checks configured: only passive re-admission.
                server.poll();
                if wait_or_retired(&server, Duration::from_millis(500)).await {
                    return;
                }
                continue;
            };
            let pause = if first {
                check
                    .interval
                    .mul_f64(rand::thread_rng().gen_range(0.0..0.1))
            } else {
                check
                    .interval
                    .mul_f64(rand::thread_rng().gen_range(0.9..1.1))
            };
            first = false;
            if wait_or_retired(&server, pause).await {
                return;
            }
            if !server.admin_allows_checks() {
                continue;
            }
            let result = match server.current_address() {
                Some(address) => run(&check, address).await,
                None => Err(CheckFailure::Server("name not resolved yet".to_owned())),
            };
            let observation = match result {
                Ok(()) => Observation::CheckPassed,
                Err(CheckFailure::Server(reason)) => Observation::CheckFailed(reason),
                // Says nothing about the server: the next check decides.
                Err(CheckFailure::Local(error)) => {
                    crate::pressure::process().local_error("check", &error);
                    continue;
                }
            };
            if server.is_retired() {
                return;
            }
            server.observe(observation);
        }
    })
}

/// Sleeps for `pause`; true if the server was retired meanwhile.
async fn wait_or_retired(server: &ServerRuntime, pause: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => server.is_retired(),
        _ = server.retired_signal.notified() => true,
    }
}

/// Why a check did not pass.
#[derive(Debug)]
pub enum CheckFailure {
    /// The server failed it; the reason shown to operators.
    Server(String),
    /// This process could not run it (out of descriptors, ports or
    /// memory), which says nothing about the server.
    Local(io::Error),
}

impl From<String> for CheckFailure {
    fn from(reason: String) -> Self {
        Self::Server(reason)
    }
}

impl CheckFailure {
    /// A failed connect or socket(), sorted by whose fault it is.
    pub(crate) fn of_connect(error: io::Error) -> Self {
        if crate::pressure::is_local(&error) {
            Self::Local(error)
        } else {
            Self::Server(crate::net::describe_connect_error(&error))
        }
    }
}

/// Runs one check.
pub async fn run(check: &HealthCheck, address: SocketAddr) -> Result<(), CheckFailure> {
    let timeout = check.timeout;
    match tokio::time::timeout(timeout, probe(&check.kind, address)).await {
        Ok(result) => result,
        Err(_) => Err(CheckFailure::Server(format!(
            "timeout after {}",
            humantime::format_duration(timeout)
        ))),
    }
}

async fn probe(kind: &CheckKind, address: SocketAddr) -> Result<(), CheckFailure> {
    match kind {
        CheckKind::Tcp => connect(address).await.map(drop),
        CheckKind::SendExpect { send, expect } => {
            let mut stream = connect(address).await?;
            stream
                .write_all(send)
                .await
                .map_err(|e| format!("send failed: {e}"))?;
            let reply = read_until(&mut stream, |r| r.len() >= expect.len()).await?;
            if reply.starts_with(expect) {
                Ok(())
            } else {
                Err(CheckFailure::Server(format!(
                    "expected reply starting with {:?}, got {:?}",
                    String::from_utf8_lossy(expect),
                    String::from_utf8_lossy(&reply[..reply.len().min(64)])
                )))
            }
        }
        CheckKind::Http {
            path,
            host,
            expect_status,
        } => {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: coexist-health-check\r\nConnection: close\r\n\r\n"
            );
            let mut stream = connect(address).await?;
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| format!("send failed: {e}"))?;
            let reply = read_until(&mut stream, |r| r.contains(&b'\n')).await?;
            let status = parse_status(&reply)?;
            if expect_status.contains(&status) {
                Ok(())
            } else {
                Err(CheckFailure::Server(format!(
                    "expected HTTP {}, got {status}",
                    describe_range(expect_status)
                )))
            }
        }
        CheckKind::Dns {
            query_name,
            query_type,
            expect_rcodes,
        } => {
            let socket = udp::connected(address).await?;
            Ok(udp::dns(socket, query_name, *query_type, expect_rcodes).await?)
        }
        CheckKind::Udp { send, expect } => {
            let socket = udp::connected(address).await?;
            Ok(udp::send_expect(socket, send, expect.as_deref()).await?)
        }
    }
}

async fn connect(address: SocketAddr) -> Result<TcpStream, CheckFailure> {
    TcpStream::connect(address)
        .await
        .map_err(CheckFailure::of_connect)
}

/// Reads until `enough` says the reply is complete, EOF, or 4 KiB.
async fn read_until(
    stream: &mut TcpStream,
    enough: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, String> {
    let mut reply = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    while !enough(&reply) && reply.len() < 4096 {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    Ok(reply)
}

/// Parses the status code of an HTTP/1.x status line.
fn parse_status(reply: &[u8]) -> Result<u16, String> {
    let line = reply.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => code
            .parse()
            .map_err(|_| format!("malformed HTTP status line {:?}", line.trim_end())),
        _ if line.is_empty() => Err("no HTTP response".to_owned()),
        _ => Err(format!("malformed HTTP status line {:?}", line.trim_end())),
    }
}

fn describe_range(range: &std::ops::RangeInclusive<u16>) -> String {
    let (low, high) = (*range.start(), *range.end());
    if low == high {
        low.to_string()
    } else if low % 100 == 0 && high == low + 99 {
        format!("{}xx", low / 100)
    } else {
        format!("{low}-{high}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Ok(503)
        );
        assert!(parse_status(b"").unwrap_err().contains("no HTTP response"));
        assert!(parse_status(b"SSH-2.0-OpenSSH\r\n")
            .unwrap_err()
            .contains("malformed"));
    }

    /// `path` and `host` of an HTTP check are what the server is asked.
    #[tokio::test]
    async fn http_check_asks_for_its_path_with_its_host() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let request = read_until(&mut stream, |r| r.windows(4).any(|w| w == b"\r\n\r\n"))
                .await
                .unwrap();
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let check = HealthCheck {
            kind: CheckKind::Http {
                path: "/healthz?deep=1".to_owned(),
                host: "www.example.org".to_owned(),
                expect_status: 200..=299,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            rise: 1,
            fall: 1,
            initial_state: crate::config::InitialState::Down,
        };
        let result = run(&check, address).await;
        assert!(result.is_ok(), "{result:?}");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /healthz?deep=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\nHost: www.example.org\r\n"),
            "{request}"
        );
    }

    /// `timeout` bounds a check against a server that accepts and then
    /// says nothing: without it the check would wait forever and the
    /// server would never be marked down.
    #[tokio::test]
    async fn a_silent_server_fails_the_check_at_its_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(stream);
        });
        let check = HealthCheck {
            kind: CheckKind::SendExpect {
                send: b"PING\r\n".to_vec(),
                expect: b"+PONG".to_vec(),
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(150),
            rise: 1,
            fall: 1,
            initial_state: crate::config::InitialState::Down,
        };
        let result = tokio::time::timeout(Duration::from_secs(10), run(&check, address))
            .await
            .expect("the check ends by its own timeout");
        silent.abort();
        match result {
            Err(CheckFailure::Server(reason)) => assert_eq!(reason, "timeout after 150ms"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_ranges_read_like_an_operator_writes_them() {
        assert_eq!(describe_range(&(200..=299)), "2xx");
        assert_eq!(describe_range(&(200..=399)), "200-399");
        assert_eq!(describe_range(&(204..=204)), "204");
    }
}
