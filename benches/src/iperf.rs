//! iperf3: the bulk-throughput backend and client.

use std::net::SocketAddr;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::child::Spec;

/// The iperf3 server: one test at a time, serving every run of the bench.
pub fn server(listen: SocketAddr, cpu: Option<usize>) -> Spec {
    let port = listen.port().to_string();
    let bind = listen.ip().to_string();
    Spec::new(
        "iperf3-server",
        "iperf3",
        &["-s", "-p", &port, "-B", &bind],
        cpu,
    )
}

/// A client run of `seconds` with `streams` parallel TCP streams, JSON output.
pub fn client(
    name: &str,
    target: SocketAddr,
    streams: u32,
    seconds: u32,
    cpu: Option<usize>,
) -> Spec {
    let host = target.ip().to_string();
    let port = target.port().to_string();
    let streams = streams.to_string();
    let seconds = seconds.to_string();
    Spec::new(
        name,
        "iperf3",
        &[
            "-c",
            &host,
            "-p",
            &port,
            "-P",
            &streams,
            "-t",
            &seconds,
            "-J",
            "--connect-timeout",
            "3000",
        ],
        cpu,
    )
}

/// What one iperf3 run moved, as the receiver counted it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    pub bytes: u64,
    pub seconds: f64,
    pub bits_per_second: f64,
}

/// Parses `iperf3 -J` output. The receiver's sum is used: bytes that made it
/// through the proxy, not bytes the sender queued.
pub fn parse_json(text: &str) -> Result<Throughput> {
    let doc: serde_json::Value = serde_json::from_str(text).context("iperf3 output is not JSON")?;
    if let Some(error) = doc.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {error}");
    }
    let sum = doc
        .pointer("/end/sum_received")
        .ok_or_else(|| anyhow!("iperf3 JSON has no end.sum_received"))?;
    let number = |key: &str| {
        sum.get(key)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| anyhow!("iperf3 end.sum_received has no numeric {key}"))
    };
    Ok(Throughput {
        bytes: number("bytes")? as u64,
        seconds: number("seconds")?,
        bits_per_second: number("bits_per_second")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_sum_of_a_two_stream_run() {
        // Input: real `iperf3 -c 127.0.0.1 -P 2 -t 1 -J` output.
        let t = parse_json(include_str!("testdata/iperf3-2-streams.json")).unwrap();
        // Output: end.sum_received of that run.
        assert_eq!(t.bytes, 1_074_003_968);
        assert!((t.seconds - 1.010982).abs() < 1e-9);
        assert!((t.bits_per_second - 8_498_699_031.238934).abs() < 1e-3);
    }

    #[test]
    fn iperf_error_field_becomes_the_error() {
        // Input: output of a run against a closed port.
        let err = parse_json(include_str!("testdata/iperf3-refused.json")).unwrap_err();
        // Output: iperf3's own message.
        assert!(err.to_string().contains("Connection refused"), "{err}");
    }

    #[test]
    fn truncated_output_is_an_error() {
        assert!(parse_json("{\"start\": {}").is_err());
        assert!(parse_json("{\"end\": {}}").is_err());
    }

    #[test]
    fn client_arguments() {
        let spec = client("bulk", "127.0.0.1:23001".parse().unwrap(), 8, 3, Some(0));
        assert_eq!(
            spec.argv().join(" "),
            "taskset -c 0 iperf3 -c 127.0.0.1 -p 23001 -P 8 -t 3 -J --connect-timeout 3000"
        );
    }
}
