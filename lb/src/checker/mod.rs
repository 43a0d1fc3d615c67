//! Active health checks: the IO shell around [`crate::health::ServerHealth`].
//!
//! One task per server probes it on its own address family and feeds the
//! result to the server's state machine. Start times are jittered so a
//! thousand servers are not probed in the same millisecond.

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
            let observation = match run(&check, server.address).await {
                Ok(()) => Observation::CheckPassed,
                Err(reason) => Observation::CheckFailed(reason),
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

/// Runs one check; the error is the reason shown to operators.
pub async fn run(check: &HealthCheck, address: SocketAddr) -> Result<(), String> {
    let timeout = check.timeout;
    match tokio::time::timeout(timeout, probe(&check.kind, address)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timeout after {}",
            humantime::format_duration(timeout)
        )),
    }
}

async fn probe(kind: &CheckKind, address: SocketAddr) -> Result<(), String> {
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
                Err(format!(
                    "expected reply starting with {:?}, got {:?}",
                    String::from_utf8_lossy(expect),
                    String::from_utf8_lossy(&reply[..reply.len().min(64)])
                ))
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
                Err(format!(
                    "expected HTTP {}, got {status}",
                    describe_range(expect_status)
                ))
            }
        }
        CheckKind::Dns {
            query_name,
            query_type,
            expect_rcodes,
        } => udp::dns(address, query_name, *query_type, expect_rcodes).await,
        CheckKind::Udp { send, expect } => udp::send_expect(address, send, expect.as_deref()).await,
    }
}

async fn connect(address: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(address)
        .await
        .map_err(|e| crate::net::describe_connect_error(&e))
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
        assert_eq!(run(&check, address).await, Ok(()));
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

    #[test]
    fn status_ranges_read_like_an_operator_writes_them() {
        assert_eq!(describe_range(&(200..=299)), "2xx");
        assert_eq!(describe_range(&(200..=399)), "200-399");
        assert_eq!(describe_range(&(204..=204)), "204");
    }
}
