//! wrk: the HTTP client for connection rate (short connections) and latency.

use std::net::SocketAddr;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::child::Spec;

/// How the client uses its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Connection: close`: one request per TCP connection.
    ShortConnections,
    /// Keep-alive: requests back to back on the same connections.
    KeepAlive,
}

pub fn client(
    name: &str,
    target: SocketAddr,
    connections: u32,
    seconds: u32,
    mode: Mode,
    cpu: Option<usize>,
) -> Spec {
    let url = format!("http://{target}/");
    let connections = connections.to_string();
    let duration = format!("{seconds}s");
    let mut args = vec![
        "-t1",
        "-c",
        &connections,
        "-d",
        &duration,
        "--timeout",
        "2s",
        "--latency",
    ];
    if mode == Mode::ShortConnections {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(&url);
    Spec::new(name, "wrk", &args, cpu)
}

/// What a wrk run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
    pub non_2xx: u64,
}

/// Parses wrk's text output (run with `--latency`).
pub fn parse_output(text: &str) -> Result<Report> {
    let mut requests = None;
    let mut seconds = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut socket_errors = 0;
    let mut non_2xx = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = Some(rest.trim().parse::<f64>().context("wrk Requests/sec")?);
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50 = Some(parse_duration_us(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = Some(parse_duration_us(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 12, write 0, timeout 3"
            for part in rest.split(',') {
                let count = part
                    .split_whitespace()
                    .nth(1)
                    .ok_or_else(|| anyhow!("wrk socket errors: {line}"))?;
                socket_errors += count
                    .parse::<u64>()
                    .with_context(|| format!("wrk socket errors: {line}"))?;
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = rest.trim().parse().context("wrk non-2xx count")?;
        } else if line.contains(" requests in ") {
            // "10605 requests in 2.06s, 8.42MB read"
            let mut words = line.split_whitespace();
            requests = Some(
                words
                    .next()
                    .unwrap_or("")
                    .parse::<u64>()
                    .context("wrk request count")?,
            );
            let elapsed = words.nth(2).unwrap_or("").trim_end_matches(',');
            seconds = Some(parse_duration_us(elapsed)? / 1e6);
        }
    }
    let missing = |what: &str| anyhow!("wrk output has no {what} line:\n{text}");
    Ok(Report {
        requests: requests.ok_or_else(|| missing("'N requests in'"))?,
        seconds: seconds.ok_or_else(|| missing("'N requests in'"))?,
        requests_per_second: rps.ok_or_else(|| missing("Requests/sec"))?,
        p50_us: p50.ok_or_else(|| missing("50% latency"))?,
        p99_us: p99.ok_or_else(|| missing("99% latency"))?,
        socket_errors,
        non_2xx,
    })
}

/// wrk prints durations as `63.00us`, `3.29ms`, `1.02s`, `2.00m`, `1.00h`.
pub fn parse_duration_us(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| anyhow!("wrk duration {text:?} has no unit"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("wrk duration {text:?}"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return Err(anyhow!("wrk duration {text:?}: unknown unit {unit:?}")),
    };
    Ok(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_close_run() {
        // Input: real output of `wrk -t1 -c32 -d2s -H 'Connection: close' --latency`.
        let r = parse_output(include_str!("testdata/wrk-connection-close.txt")).unwrap();
        // Output: its totals and percentiles, no errors.
        assert_eq!(r.requests, 10605);
        assert!((r.seconds - 2.06).abs() < 1e-9);
        assert!((r.requests_per_second - 5151.24).abs() < 1e-9);
        assert!((r.p50_us - 3290.0).abs() < 1e-6);
        assert!((r.p99_us - 10520.0).abs() < 1e-6);
        assert_eq!((r.socket_errors, r.non_2xx), (0, 0));
    }

    #[test]
    fn errors_are_counted() {
        // Input: a run whose server closed connections early and answered 404.
        let text = "Running 1s test @ http://127.0.0.1:23002/\n  1 threads and 2 connections\n  \
                    Latency Distribution\n     50%   63.00us\n     75%  149.00us\n     90%    2.11ms\n     \
                    99%    1.02s\n  6603 requests in 1.00s, 1.94MB read\n  \
                    Socket errors: connect 1, read 12, write 0, timeout 3\n  \
                    Non-2xx or 3xx responses: 6603\nRequests/sec:   6587.52\nTransfer/sec:      1.93MB\n";
        let r = parse_output(text).unwrap();
        // Output: 16 socket errors, 6603 bad responses, p99 in seconds converted.
        assert_eq!(r.socket_errors, 16);
        assert_eq!(r.non_2xx, 6603);
        assert!((r.p50_us - 63.0).abs() < 1e-9);
        assert!((r.p99_us - 1.02e6).abs() < 1e-3);
    }

    #[test]
    fn output_of_a_failed_run_is_an_error() {
        assert!(parse_output("unable to connect to 127.0.0.1:15299 Connection refused\n").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("534.13us").unwrap(), 534.13);
        assert_eq!(parse_duration_us("2.00m").unwrap(), 120e6);
        assert!(parse_duration_us("12").is_err());
        assert!(parse_duration_us("12ns").is_err());
    }

    #[test]
    fn short_connections_send_connection_close() {
        let spec = client(
            "rate",
            "127.0.0.1:23002".parse().unwrap(),
            32,
            3,
            Mode::ShortConnections,
            None,
        );
        assert_eq!(
            spec.argv().join(" "),
            "wrk -t1 -c 32 -d 3s --timeout 2s --latency -H Connection: close http://127.0.0.1:23002/"
        );
        let spec = client(
            "lat",
            "127.0.0.1:23002".parse().unwrap(),
            1,
            3,
            Mode::KeepAlive,
            None,
        );
        assert!(!spec.argv().iter().any(|a| a.contains("close")));
    }
}
