//! The results as a Markdown table (with ratios to a direct connection and to
//! HAProxy) and as JSON; plus the performance criteria of the data-plane
//! issue, checked against the figures.

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::Settings;
use crate::run::TargetResult;

/// Target names the ratios refer to.
pub const DIRECT: &str = "direct";
pub const HAPROXY: &str = "haproxy";
pub const COEXIST: &str = "coexist";

#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    /// 1-minute load average when the run started and ended; anything well
    /// above zero means other processes competed for the pinned CPUs.
    pub load_average: [Option<f64>; 2],
    pub tools: Vec<Tool>,
    pub settings: Settings,
    pub targets: Vec<TargetResult>,
    pub criteria: Vec<Criterion>,
}

impl Report {
    pub fn new(
        machine: String,
        load_average: [Option<f64>; 2],
        tools: Vec<Tool>,
        settings: Settings,
        targets: Vec<TargetResult>,
    ) -> Report {
        let criteria = criteria(&targets);
        Report {
            machine,
            load_average,
            tools,
            settings,
            targets,
            criteria,
        }
    }
}

/// One row of the table.
struct Metric {
    label: &'static str,
    higher_is_better: bool,
    decimals: usize,
    value: fn(&TargetResult) -> Option<f64>,
}

const METRICS: &[Metric] = &[
    Metric {
        label: "Bulk, 1 stream (Gbit/s)",
        higher_is_better: true,
        decimals: 2,
        value: |t| t.bulk_1.as_ref().map(|b| b.gbit_per_second),
    },
    Metric {
        label: "Bulk, 8 streams (Gbit/s)",
        higher_is_better: true,
        decimals: 2,
        value: |t| t.bulk_8.as_ref().map(|b| b.gbit_per_second),
    },
    Metric {
        label: "New connections/s",
        higher_is_better: true,
        decimals: 0,
        value: |t| t.connection_rate.as_ref().map(|r| r.per_second),
    },
    Metric {
        label: "New connections/s per proxy core",
        higher_is_better: true,
        decimals: 0,
        value: |t| t.connection_rate.as_ref().and_then(|r| r.per_proxy_core),
    },
    Metric {
        label: "Latency p50 (µs)",
        higher_is_better: false,
        decimals: 0,
        value: |t| t.latency.as_ref().map(|l| l.p50_us),
    },
    Metric {
        label: "Latency p99 (µs)",
        higher_is_better: false,
        decimals: 0,
        value: |t| t.latency.as_ref().map(|l| l.p99_us),
    },
    Metric {
        label: "Memory per idle connection (KiB)",
        higher_is_better: false,
        decimals: 2,
        value: |t| {
            t.idle_memory
                .as_ref()
                .map(|m| m.bytes_per_connection / 1024.0)
        },
    },
    Metric {
        label: "Proxy CPU per GiB of bulk (s)",
        higher_is_better: false,
        decimals: 3,
        value: |t| t.cpu_seconds_per_gib,
    },
];

fn find<'a>(targets: &'a [TargetResult], name: &str) -> Option<&'a TargetResult> {
    targets
        .iter()
        .find(|t| t.name == name && t.skipped.is_none())
}

fn ratio(value: f64, reference: Option<f64>) -> Option<f64> {
    reference.filter(|r| *r != 0.0).map(|r| value / r)
}

/// A cell: the value, then its ratio to direct (d) and to HAProxy (h) where
/// both exist and the target is not that reference itself.
fn cell(
    metric: &Metric,
    target: &TargetResult,
    direct: Option<f64>,
    haproxy: Option<f64>,
) -> String {
    let Some(value) = (metric.value)(target) else {
        return "–".into();
    };
    let mut cell = format!("{value:.*}", metric.decimals);
    let mut ratios = Vec::new();
    // The direct column is the reference itself: its figures stand alone.
    if target.name == DIRECT {
        return cell;
    }
    if let Some(r) = ratio(value, direct) {
        ratios.push(format!("{r:.2}× d"));
    }
    if target.name != HAPROXY {
        if let Some(r) = ratio(value, haproxy) {
            ratios.push(format!("{r:.2}× h"));
        }
    }
    if !ratios.is_empty() {
        let _ = write!(cell, " ({})", ratios.join(", "));
    }
    cell
}

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}", report.machine);
    let load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
    let _ = writeln!(
        out,
        "- load average {} at start, {} at end (other work on the CPUs makes figures noisy)",
        load(report.load_average[0]),
        load(report.load_average[1])
    );
    for tool in &report.tools {
        let _ = writeln!(out, "- {}: {}", tool.name, tool.version);
    }
    let s = &report.settings;
    let cpu = |c: Option<usize>| c.map_or("unpinned".to_string(), |c| format!("CPU {c}"));
    let _ = writeln!(
        out,
        "- proxy on {}, clients and servers on {}; bulk {} s per run, connection rate {} s with {} \
         concurrent, latency {} s on one connection, {} idle connections\n",
        cpu(s.proxy_cpu),
        cpu(s.client_cpu),
        s.bulk_seconds,
        s.rate_seconds,
        s.rate_connections,
        s.latency_seconds,
        s.idle_connections
    );

    let shown: Vec<&TargetResult> = report
        .targets
        .iter()
        .filter(|t| t.skipped.is_none())
        .collect();
    let _ = write!(out, "| metric | better |");
    for t in &shown {
        let _ = write!(out, " {} |", t.name);
    }
    let _ = write!(out, "\n|---|---|");
    for _ in &shown {
        out.push_str("---|");
    }
    out.push('\n');
    let direct = find(&report.targets, DIRECT);
    let haproxy = find(&report.targets, HAPROXY);
    for metric in METRICS {
        let d = direct.and_then(metric.value);
        let h = haproxy.and_then(metric.value);
        let better = if metric.higher_is_better {
            "higher"
        } else {
            "lower"
        };
        let _ = write!(out, "| {} | {better} |", metric.label);
        for t in &shown {
            let _ = write!(out, " {} |", cell(metric, t, d, h));
        }
        out.push('\n');
    }
    out.push_str(
        "\n(x× d) is the ratio to the direct connection, (x× h) to HAProxy without splice; \
         \"better\" says which way is good. Per-core rate = connections/s divided by the proxy's \
         busy fraction of a core over the run. Memory = proxy RSS growth / idle connections.\n",
    );
    for t in &report.targets {
        if let Some(reason) = &t.skipped {
            let _ = writeln!(out, "- {}: skipped: {reason}", t.name);
        }
        for e in &t.errors {
            let _ = writeln!(out, "- {}: {e}", t.name);
        }
    }
    if !report.criteria.is_empty() {
        out.push_str("\n| criterion (issue 2) | coexist | haproxy | result |\n|---|---|---|---|\n");
        for c in &report.criteria {
            let fmt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
            let result = match c.pass {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "not measured",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {result} |",
                c.name,
                fmt(c.coexist),
                fmt(c.haproxy)
            );
        }
    }
    out
}

/// A performance requirement of coexist relative to HAProxy (plain).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Criterion {
    pub name: String,
    pub coexist: Option<f64>,
    pub haproxy: Option<f64>,
    /// `None` when either side was not measured.
    pub pass: Option<bool>,
}

/// The data-plane issue's acceptance figures: bulk at 8 streams ≥ 1.3× HAProxy,
/// connection rate per proxy core ≥ HAProxy, idle memory per connection ≤ HAProxy.
pub fn criteria(targets: &[TargetResult]) -> Vec<Criterion> {
    let c = find(targets, COEXIST);
    let h = find(targets, HAPROXY);
    let row = |name: &str, metric: usize, holds: fn(f64, f64) -> bool| {
        let coexist = c.and_then(METRICS[metric].value);
        let haproxy = h.and_then(METRICS[metric].value);
        Criterion {
            name: name.into(),
            coexist,
            haproxy,
            pass: coexist.zip(haproxy).map(|(c, h)| holds(c, h)),
        }
    };
    vec![
        row("bulk 8 streams (Gbit/s) ≥ 1.3 × HAProxy", 1, |c, h| {
            c >= 1.3 * h
        }),
        row("new connections/s per proxy core ≥ HAProxy", 3, |c, h| {
            c >= h
        }),
        row("memory per idle connection (KiB) ≤ HAProxy", 6, |c, h| {
            c <= h
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Bulk, ConnectionRate, IdleMemory};

    fn target(
        name: &str,
        gbit8: f64,
        per_core: Option<f64>,
        mem_bytes: Option<f64>,
    ) -> TargetResult {
        TargetResult {
            name: name.into(),
            bulk_8: Some(Bulk {
                streams: 8,
                bytes: 1 << 30,
                seconds: 1.0,
                gbit_per_second: gbit8,
                proxy_cpu_seconds: None,
            }),
            connection_rate: Some(ConnectionRate {
                connections: 1000,
                seconds: 1.0,
                per_second: 1000.0,
                socket_errors: 0,
                non_2xx: 0,
                proxy_cpu_seconds: None,
                per_proxy_core: per_core,
            }),
            idle_memory: mem_bytes.map(|b| IdleMemory {
                connections: 5000,
                rss_before_kib: 0,
                rss_after_kib: 0,
                bytes_per_connection: b,
                proxy_fds_before: 0,
                proxy_fds_after: 0,
            }),
            ..Default::default()
        }
    }

    fn settings() -> Settings {
        Settings {
            bulk_seconds: 3,
            rate_seconds: 3,
            rate_connections: 32,
            latency_seconds: 2,
            idle_connections: 5000,
            client_cpu: Some(0),
            proxy_cpu: Some(1),
        }
    }

    #[test]
    fn criteria_compare_coexist_with_plain_haproxy() {
        // Input: coexist 26 vs HAProxy 20 Gbit/s (1.3×), 9,000 vs 10,000
        // conn/s per core, 3,000 vs 3,400 bytes per idle connection.
        let targets = vec![
            target("direct", 40.0, None, None),
            target("coexist", 26.0, Some(9_000.0), Some(3_000.0)),
            target("haproxy", 20.0, Some(10_000.0), Some(3_400.0)),
        ];
        let c = criteria(&targets);
        // Output: bulk passes (exactly 1.3×), rate fails, memory passes.
        assert_eq!(
            c.iter().map(|c| c.pass).collect::<Vec<_>>(),
            [Some(true), Some(false), Some(true)]
        );
    }

    #[test]
    fn criteria_unmeasured_without_haproxy() {
        let targets = vec![target("coexist", 26.0, Some(9_000.0), Some(3_000.0))];
        assert!(criteria(&targets).iter().all(|c| c.pass.is_none()));
    }

    #[test]
    fn table_shows_ratios_to_direct_and_haproxy() {
        let targets = vec![
            target("direct", 40.0, None, None),
            target("coexist", 30.0, Some(12_000.0), Some(2048.0)),
            target("haproxy", 20.0, Some(10_000.0), Some(3072.0)),
            TargetResult::skipped("nginx-stream", "nginx is not installed".into()),
        ];
        let report = Report::new(
            "test machine".into(),
            [Some(0.1), None],
            vec![],
            settings(),
            targets,
        );
        let md = markdown(&report);
        // Columns only for targets that ran.
        assert!(
            md.contains("| metric | better | direct | coexist | haproxy |\n"),
            "{md}"
        );
        // Bulk 8: coexist is 0.75× direct and 1.50× HAProxy; HAProxy 0.50× direct.
        assert!(
            md.contains("| Bulk, 8 streams (Gbit/s) | higher | 40.00 | 30.00 (0.75× d, 1.50× h) | 20.00 (0.50× d) |"),
            "{md}"
        );
        // Memory has no direct figure: only the HAProxy ratio.
        assert!(md.contains("| – | 2.00 (0.67× h) | 3.00 |"), "{md}");
        assert!(md.contains("- nginx-stream: skipped: nginx is not installed"));
        assert!(md.contains("- load average 0.10 at start, ? at end"));
        assert!(md.contains(
            "| new connections/s per proxy core ≥ HAProxy | 12000.00 | 10000.00 | pass |"
        ));
    }

    #[test]
    fn report_serializes_to_json() {
        let report = Report::new(
            "m".into(),
            [None, None],
            vec![],
            settings(),
            vec![target("direct", 1.0, None, None)],
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["targets"][0]["name"], "direct");
        assert_eq!(json["targets"][0]["bulk_8"]["gbit_per_second"], 1.0);
        assert_eq!(json["settings"]["idle_connections"], 5000);
    }
}
