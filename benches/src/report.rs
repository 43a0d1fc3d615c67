//! The results as a Markdown table (median and spread over the
//! repetitions, with the ratio to HAProxy, or to nginx stream for UDP) and
//! as JSON; plus the acceptance criteria of the request-path and UDP
//! issues, checked against the figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::Settings;
use crate::run::TargetResult;
use crate::stats::Spread;
use crate::udp::{UdpFigures, UdpLoad};

/// Target names the ratios and criteria refer to.
pub const DIRECT: &str = "direct";
pub const HAPROXY: &str = "haproxy";
pub const HAPROXY_SPLICE: &str = "haproxy-splice";
pub const NGINX_STREAM: &str = "nginx-stream";
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
    /// Every repetition's results, target by target.
    pub repetitions: Vec<Vec<TargetResult>>,
    /// Median and spread of every figure, by target then metric key.
    pub summary: Vec<TargetSummary>,
    pub criteria: Vec<Criterion>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub name: String,
    /// Why the target did not run, when it never did.
    pub skipped: Option<String>,
    pub figures: BTreeMap<&'static str, Spread>,
}

impl Report {
    pub fn new(
        machine: String,
        load_average: [Option<f64>; 2],
        tools: Vec<Tool>,
        settings: Settings,
        repetitions: Vec<Vec<TargetResult>>,
    ) -> Report {
        let summary = summarise(&repetitions);
        let criteria = criteria(&summary);
        Report {
            machine,
            load_average,
            tools,
            settings,
            repetitions,
            summary,
            criteria,
        }
    }
}

/// One row of the table.
pub(crate) struct Metric {
    /// Stable name in the JSON summary.
    pub(crate) key: &'static str,
    pub(crate) label: fn(&Settings) -> String,
    pub(crate) higher_is_better: bool,
    decimals: usize,
    value: fn(&TargetResult) -> Option<f64>,
    /// The target the cells give their ratio to.
    versus: Versus,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Versus {
    Haproxy,
    /// UDP rows: HAProxy has no UDP.
    Nginx,
}

impl Versus {
    fn target(self) -> &'static str {
        match self {
            Versus::Haproxy => HAPROXY,
            Versus::Nginx => NGINX_STREAM,
        }
    }

    /// The mark after a ratio in a cell.
    fn mark(self) -> &'static str {
        match self {
            Versus::Haproxy => "h",
            Versus::Nginx => "n",
        }
    }
}

const BULK_1: &str = "bulk_1_gbit_per_second";
const BULK_8: &str = "bulk_8_gbit_per_second";
const RATE: &str = "connections_per_second";
const RATE_PER_CORE: &str = "connections_per_second_per_proxy_core";
const P50: &str = "latency_p50_us";
const P99: &str = "latency_p99_us";
const OPENING: &str = "opening_connections_per_second";
const ECHO: &str = "echo_round_trips_per_second";
const ECHO_PER_CORE: &str = "echo_round_trips_per_second_per_proxy_core";
const MEMORY: &str = "memory_per_idle_connection_kib";
const CPU_PER_GIB: &str = "proxy_cpu_seconds_per_gib";
const UDP_DNS_RATE: &str = "udp_one_per_session_queries_per_second";
const UDP_DNS_PER_CORE: &str = "udp_one_per_session_queries_per_second_per_proxy_core";
const UDP_DNS_P99: &str = "udp_one_per_session_saturated_p99_us";
const UDP_DNS_PACED_P50: &str = "udp_one_per_session_paced_p50_us";
const UDP_DNS_PACED_P99: &str = "udp_one_per_session_paced_p99_us";
const UDP_LONG_RATE: &str = "udp_long_sessions_queries_per_second";
const UDP_LONG_PER_CORE: &str = "udp_long_sessions_queries_per_second_per_proxy_core";
const UDP_LONG_P99: &str = "udp_long_sessions_saturated_p99_us";
const UDP_LONG_PACED_P50: &str = "udp_long_sessions_paced_p50_us";
const UDP_LONG_PACED_P99: &str = "udp_long_sessions_paced_p99_us";
const UDP_PIPELINED_RATE: &str = "udp_pipelined_queries_per_second";
const UDP_PIPELINED_PER_CORE: &str = "udp_pipelined_queries_per_second_per_proxy_core";
const UDP_PIPELINED_P99: &str = "udp_pipelined_saturated_p99_us";

pub(crate) const METRICS: &[Metric] = &[
    Metric {
        key: BULK_1,
        label: |_| "Bulk, 1 stream (Gbit/s)".into(),
        higher_is_better: true,
        decimals: 2,
        value: |t| t.bulk_1.as_ref().map(|b| b.gbit_per_second),
        versus: Versus::Haproxy,
    },
    Metric {
        key: BULK_8,
        label: |_| "Bulk, 8 streams (Gbit/s)".into(),
        higher_is_better: true,
        decimals: 2,
        value: |t| t.bulk_8.as_ref().map(|b| b.gbit_per_second),
        versus: Versus::Haproxy,
    },
    Metric {
        key: RATE,
        label: |s| {
            format!(
                "New connections/s ({} concurrent, Connection: close, {} B responses)",
                s.rate_connections,
                crate::nginx::PAGE_BYTES
            )
        },
        higher_is_better: true,
        decimals: 0,
        value: |t| t.connection_rate.as_ref().map(|r| r.per_second),
        versus: Versus::Haproxy,
    },
    Metric {
        key: RATE_PER_CORE,
        label: |_| "New connections/s per proxy core".into(),
        higher_is_better: true,
        decimals: 0,
        value: |t| t.connection_rate.as_ref().and_then(|r| r.per_proxy_core),
        versus: Versus::Haproxy,
    },
    Metric {
        key: P50,
        label: |_| "Latency p50 under that load (µs)".into(),
        higher_is_better: false,
        decimals: 0,
        value: |t| t.connection_rate.as_ref().map(|r| r.p50_us),
        versus: Versus::Haproxy,
    },
    Metric {
        key: P99,
        label: |_| "Latency p99 under that load (µs)".into(),
        higher_is_better: false,
        decimals: 0,
        value: |t| t.connection_rate.as_ref().map(|r| r.p99_us),
        versus: Versus::Haproxy,
    },
    Metric {
        key: OPENING,
        label: |s| {
            format!(
                "Opening {} connections ({} at a time), connections/s",
                s.echo.open, s.echo.open_in_flight
            )
        },
        higher_is_better: true,
        decimals: 0,
        value: |t| t.exchanges.as_ref().map(|e| e.opening.per_second),
        versus: Versus::Haproxy,
    },
    Metric {
        key: ECHO,
        label: |s| {
            format!(
                "{} B echo round trips/s, {} active of {} open",
                s.echo.message_bytes, s.echo.active, s.echo.open
            )
        },
        higher_is_better: true,
        decimals: 0,
        value: |t| t.exchanges.as_ref().map(|e| e.round_trips.per_second),
        versus: Versus::Haproxy,
    },
    Metric {
        key: ECHO_PER_CORE,
        label: |_| "Echo round trips/s per proxy core".into(),
        higher_is_better: true,
        decimals: 0,
        value: |t| t.exchanges.as_ref().and_then(|e| e.per_proxy_core),
        versus: Versus::Haproxy,
    },
    Metric {
        key: MEMORY,
        label: |_| "Memory per idle connection (KiB)".into(),
        higher_is_better: false,
        decimals: 2,
        value: |t| {
            t.idle_memory
                .as_ref()
                .map(|m| m.bytes_per_connection / 1024.0)
        },
        versus: Versus::Haproxy,
    },
    Metric {
        key: CPU_PER_GIB,
        label: |_| "Proxy CPU per GiB of bulk (s)".into(),
        higher_is_better: false,
        decimals: 3,
        value: |t| t.cpu_seconds_per_gib,
        versus: Versus::Haproxy,
    },
    Metric {
        key: UDP_DNS_RATE,
        label: |s| {
            format!(
                "UDP queries/s, one reply per session (DNS), {} clients",
                s.udp.flows
            )
        },
        higher_is_better: true,
        decimals: 0,
        value: |t| t.udp_one_per_query.as_ref().map(|u| u.saturated.per_second),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_DNS_PER_CORE,
        label: |_| "UDP queries/s per proxy core, one reply per session".into(),
        higher_is_better: true,
        decimals: 0,
        value: |t| {
            t.udp_one_per_query
                .as_ref()
                .and_then(|u| u.saturated.per_proxy_core)
        },
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_DNS_P99,
        label: |_| "UDP latency p99 at that load, one reply per session (µs)".into(),
        higher_is_better: false,
        decimals: 0,
        value: |t| t.udp_one_per_query.as_ref().map(|u| u.saturated.p99_us),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_DNS_PACED_P50,
        label: |s| {
            format!(
                "UDP latency p50 at {} queries/s, one reply per session (µs)",
                s.udp.paced_rate
            )
        },
        higher_is_better: false,
        decimals: 0,
        value: |t| paced(&t.udp_one_per_query).map(|p| p.p50_us),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_DNS_PACED_P99,
        label: |s| {
            format!(
                "UDP latency p99 at {} queries/s, one reply per session (µs)",
                s.udp.paced_rate
            )
        },
        higher_is_better: false,
        decimals: 0,
        value: |t| paced(&t.udp_one_per_query).map(|p| p.p99_us),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_LONG_RATE,
        label: |s| format!("UDP queries/s, long sessions, {} clients", s.udp.flows),
        higher_is_better: true,
        decimals: 0,
        value: |t| t.udp_long.as_ref().map(|u| u.saturated.per_second),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_LONG_PER_CORE,
        label: |_| "UDP queries/s per proxy core, long sessions".into(),
        higher_is_better: true,
        decimals: 0,
        value: |t| t.udp_long.as_ref().and_then(|u| u.saturated.per_proxy_core),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_LONG_P99,
        label: |_| "UDP latency p99 at that load, long sessions (µs)".into(),
        higher_is_better: false,
        decimals: 0,
        value: |t| t.udp_long.as_ref().map(|u| u.saturated.p99_us),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_LONG_PACED_P50,
        label: |s| {
            format!(
                "UDP latency p50 at {} queries/s, long sessions (µs)",
                s.udp.paced_rate
            )
        },
        higher_is_better: false,
        decimals: 0,
        value: |t| paced(&t.udp_long).map(|p| p.p50_us),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_LONG_PACED_P99,
        label: |s| {
            format!(
                "UDP latency p99 at {} queries/s, long sessions (µs)",
                s.udp.paced_rate
            )
        },
        higher_is_better: false,
        decimals: 0,
        value: |t| paced(&t.udp_long).map(|p| p.p99_us),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_PIPELINED_RATE,
        label: |s| {
            format!(
                "UDP queries/s, {} in flight on each of {} clients, one reply per query",
                s.udp.in_flight,
                (s.udp.flows / s.udp.in_flight.max(1)).max(1)
            )
        },
        higher_is_better: true,
        decimals: 0,
        value: |t| t.udp_pipelined.as_ref().map(|u| u.saturated.per_second),
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_PIPELINED_PER_CORE,
        label: |_| "UDP queries/s per proxy core, many in flight per client".into(),
        higher_is_better: true,
        decimals: 0,
        value: |t| {
            t.udp_pipelined
                .as_ref()
                .and_then(|u| u.saturated.per_proxy_core)
        },
        versus: Versus::Nginx,
    },
    Metric {
        key: UDP_PIPELINED_P99,
        label: |_| "UDP latency p99 at that load, many in flight per client (µs)".into(),
        higher_is_better: false,
        decimals: 0,
        value: |t| t.udp_pipelined.as_ref().map(|u| u.saturated.p99_us),
        versus: Versus::Nginx,
    },
];

/// The paced run of a kind of session, if it was measured.
fn paced(figures: &Option<UdpFigures>) -> Option<&UdpLoad> {
    figures.as_ref()?.paced.as_ref()
}

/// Targets in the order they ran, each with the spread of every figure.
fn summarise(repetitions: &[Vec<TargetResult>]) -> Vec<TargetSummary> {
    let mut names: Vec<&str> = Vec::new();
    for result in repetitions.iter().flatten() {
        if !names.contains(&result.name.as_str()) {
            names.push(&result.name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let runs: Vec<&TargetResult> = repetitions
                .iter()
                .flatten()
                .filter(|t| t.name == name)
                .collect();
            let ran: Vec<&TargetResult> = runs
                .iter()
                .copied()
                .filter(|t| t.skipped.is_none())
                .collect();
            let figures = METRICS
                .iter()
                .filter_map(|m| {
                    let values: Vec<f64> = ran.iter().filter_map(|t| (m.value)(t)).collect();
                    Spread::of(&values).map(|s| (m.key, s))
                })
                .collect();
            TargetSummary {
                name: name.to_owned(),
                skipped: ran
                    .is_empty()
                    .then(|| runs.iter().find_map(|t| t.skipped.clone()))
                    .flatten(),
                figures,
            }
        })
        .collect()
}

fn find<'a>(summary: &'a [TargetSummary], name: &str) -> Option<&'a TargetSummary> {
    summary
        .iter()
        .find(|t| t.name == name && t.skipped.is_none())
}

fn figure(summary: &[TargetSummary], target: &str, key: &str) -> Option<Spread> {
    find(summary, target).and_then(|t| t.figures.get(key).copied())
}

/// A cell: the median, the spread over the repetitions, and the ratio of
/// the medians to the row's reference (HAProxy, or nginx stream for UDP;
/// not on the reference's own column nor on direct).
fn cell(metric: &Metric, target: &TargetSummary, reference: Option<Spread>) -> String {
    let Some(spread) = target.figures.get(metric.key) else {
        return "–".into();
    };
    let d = metric.decimals;
    let mut cell = format!("{:.d$}", spread.median);
    if spread.runs > 1 {
        let _ = write!(cell, " ({:.d$}–{:.d$})", spread.min, spread.max);
    }
    if target.name != metric.versus.target() && target.name != DIRECT {
        if let Some(r) = reference.filter(|r| r.median != 0.0) {
            let _ = write!(
                cell,
                " {:.2}× {}",
                spread.median / r.median,
                metric.versus.mark()
            );
        }
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
        "- proxy on {}, clients and servers on {}; {} repetition(s), targets interleaved and rotated; bulk {} s \
         per run, connection rate {} s, echo {} s, {} idle connections\n",
        cpu(s.proxy_cpu),
        cpu(s.client_cpu),
        report.repetitions.len(),
        s.bulk_seconds,
        s.rate_seconds,
        s.echo.seconds,
        s.idle_connections
    );

    let shown: Vec<&TargetSummary> = report
        .summary
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
    for metric in METRICS {
        if shown.iter().all(|t| !t.figures.contains_key(metric.key)) {
            continue;
        }
        let h = figure(&report.summary, metric.versus.target(), metric.key);
        let better = if metric.higher_is_better {
            "higher"
        } else {
            "lower"
        };
        let _ = write!(out, "| {} | {better} |", (metric.label)(s));
        for t in &shown {
            let _ = write!(out, " {} |", cell(metric, t, h));
        }
        out.push('\n');
    }
    out.push_str(
        "\nEach cell: median (min–max over the repetitions), then the ratio of the medians to \
         HAProxy without splice (× h), or on UDP rows to nginx stream (× n); \"better\" says \
         which way is good. Per-core figures divide by the proxy's busy fraction of a core over \
         the measurement. Latency is wrk's, connect to last byte, during the connection-rate \
         run; UDP latency is from when a query was due to its answer. Memory = proxy RSS growth \
         / idle connections.\n",
    );
    let names: Vec<&str> = shown.iter().map(|t| t.name.as_str()).collect();
    out.push_str(&crate::limits::markdown(
        &names,
        &report.repetitions,
        s.client_cpu,
    ));
    for t in report.summary.iter().filter(|t| t.skipped.is_some()) {
        let _ = writeln!(
            out,
            "- {}: skipped: {}",
            t.name,
            t.skipped.as_deref().unwrap_or("")
        );
    }
    for (i, run) in report.repetitions.iter().enumerate() {
        for t in run {
            for e in &t.errors {
                let _ = writeln!(out, "- {} (repetition {}): {e}", t.name, i + 1);
            }
        }
    }
    for issue in [REQUEST_PATH_ISSUE, UDP_ISSUE] {
        let criteria: Vec<&Criterion> = report
            .criteria
            .iter()
            .filter(|c| c.issue == issue)
            .collect();
        // A table only for an issue whose figures were measured at all.
        if criteria.iter().all(|c| c.verdict == Verdict::NotMeasured) {
            continue;
        }
        let _ = write!(
            out,
            "\n| criterion (issue {issue}) | coexist | reference | result |\n|---|---|---|---|\n"
        );
        for c in criteria {
            let fmt = |v: Option<Spread>| {
                v.map_or("–".into(), |v| {
                    if v.runs > 1 {
                        format!("{:.2} ({:.2}–{:.2})", v.median, v.min, v.max)
                    } else {
                        format!("{:.2}", v.median)
                    }
                })
            };
            let reference = match (&c.reference, c.threshold) {
                (Some(r), _) => format!("{}: {}", r.target, fmt(Some(r.spread))),
                (None, Some(t)) => format!("{t:.2}"),
                (None, None) => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {reference} | {} |",
                c.name,
                fmt(c.coexist),
                c.verdict.as_str()
            );
        }
    }
    if report
        .criteria
        .iter()
        .any(|c| c.verdict != Verdict::NotMeasured)
    {
        out.push_str(
            "\n\"pass\": the medians meet the criterion and so does every repetition against \
             every other (coexist's worst against the reference's best); \"within noise\": the \
             medians meet it but the spreads overlap the bound, so it is not met.\n",
        );
    }
    out
}

/// What coexist is compared with in a criterion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reference {
    pub target: String,
    pub spread: Spread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Met by the medians and beyond the run-to-run spread.
    Pass,
    /// Met by the medians only: not met.
    WithinNoise,
    Fail,
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::WithinNoise => "within noise",
            Verdict::Fail => "FAIL",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// A performance requirement on coexist: relative to a peer (`factor` ×
/// the peer's figure) or to an absolute `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Criterion {
    /// The issue whose acceptance it is.
    pub issue: u32,
    pub name: String,
    pub coexist: Option<Spread>,
    pub reference: Option<Reference>,
    pub threshold: Option<f64>,
    pub verdict: Verdict,
}

/// How a criterion's bound is set.
enum Bound<'a> {
    /// `factor` × the figure of target `peer`.
    Peer(&'a str, f64),
    Absolute(f64),
}

/// The issues whose acceptance figures the bench checks.
pub const REQUEST_PATH_ISSUE: u32 = 13;
pub const UDP_ISSUE: u32 = 14;

/// The request-path and UDP issues' acceptance figures.
pub fn criteria(summary: &[TargetSummary]) -> Vec<Criterion> {
    let mut all = request_path_criteria(summary);
    all.extend(udp_criteria(summary));
    all
}

fn udp_criteria(summary: &[TargetSummary]) -> Vec<Criterion> {
    let row = |name: &str, key: &str, factor: f64| {
        criterion(
            summary,
            UDP_ISSUE,
            name,
            key,
            Bound::Peer(NGINX_STREAM, factor),
        )
    };
    vec![
        row(
            "UDP queries/s per proxy core, one reply per session ≥ 1.5 × nginx stream",
            UDP_DNS_PER_CORE,
            1.5,
        ),
        row(
            "UDP latency p99 at saturation, one reply per session ≤ nginx stream",
            UDP_DNS_P99,
            1.0,
        ),
        row(
            "UDP latency p99 paced, one reply per session ≤ nginx stream",
            UDP_DNS_PACED_P99,
            1.0,
        ),
        row(
            "UDP queries/s per proxy core, long sessions ≥ 1.5 × nginx stream",
            UDP_LONG_PER_CORE,
            1.5,
        ),
        row(
            "UDP latency p99 at saturation, long sessions ≤ nginx stream",
            UDP_LONG_P99,
            1.0,
        ),
        row(
            "UDP latency p99 paced, long sessions ≤ nginx stream",
            UDP_LONG_PACED_P99,
            1.0,
        ),
        row(
            "UDP queries/s per proxy core, many in flight per client ≥ 1.5 × nginx stream",
            UDP_PIPELINED_PER_CORE,
            1.5,
        ),
        row(
            "UDP latency p99 at saturation, many in flight per client ≤ nginx stream",
            UDP_PIPELINED_P99,
            1.0,
        ),
    ]
}

/// coexist's figure `key` against `bound`.
fn criterion(
    summary: &[TargetSummary],
    issue: u32,
    name: &str,
    key: &str,
    bound: Bound<'_>,
) -> Criterion {
    let metric = METRICS
        .iter()
        .find(|m| m.key == key)
        .expect("criteria name known metrics");
    let coexist = figure(summary, COEXIST, key);
    let (reference, threshold, bounds) = match bound {
        Bound::Peer(peer, factor) => {
            let r = figure(summary, peer, key);
            let bounds = r.map(|r| (factor * r.median, factor * r.min, factor * r.max));
            let reference = r.map(|spread| Reference {
                target: peer.to_owned(),
                spread,
            });
            (reference, None, bounds)
        }
        Bound::Absolute(t) => (None, Some(t), Some((t, t, t))),
    };
    let verdict = match (coexist, bounds) {
        (Some(c), Some(b)) => verdict(c, b, metric.higher_is_better),
        _ => Verdict::NotMeasured,
    };
    Criterion {
        issue,
        name: name.into(),
        coexist,
        reference,
        threshold,
        verdict,
    }
}

fn request_path_criteria(summary: &[TargetSummary]) -> Vec<Criterion> {
    let row = |name: &str, key: &str, bound: Bound<'_>| {
        criterion(summary, REQUEST_PATH_ISSUE, name, key, bound)
    };
    vec![
        row(
            "new connections/s per proxy core ≥ 1.25 × HAProxy",
            RATE_PER_CORE,
            Bound::Peer(HAPROXY, 1.25),
        ),
        row(
            "new connections/s per proxy core ≥ 1.15 × nginx stream",
            RATE_PER_CORE,
            Bound::Peer(NGINX_STREAM, 1.15),
        ),
        row(
            "echo round trips/s ≥ 1.10 × HAProxy",
            ECHO,
            Bound::Peer(HAPROXY, 1.10),
        ),
        row(
            "echo round trips/s ≥ HAProxy with forced splice",
            ECHO,
            Bound::Peer(HAPROXY_SPLICE, 1.0),
        ),
        row(
            "opening connections/s ≥ HAProxy",
            OPENING,
            Bound::Peer(HAPROXY, 1.0),
        ),
        row(
            "latency p50 under load ≤ HAProxy",
            P50,
            Bound::Peer(HAPROXY, 1.0),
        ),
        row(
            "latency p99 under load ≤ HAProxy",
            P99,
            Bound::Peer(HAPROXY, 1.0),
        ),
        row(
            "bulk 1 stream ≥ 1.2 × HAProxy",
            BULK_1,
            Bound::Peer(HAPROXY, 1.2),
        ),
        row(
            "bulk 8 streams ≥ 1.2 × HAProxy",
            BULK_8,
            Bound::Peer(HAPROXY, 1.2),
        ),
        row(
            "memory per idle connection ≤ 2.1 KiB",
            MEMORY,
            Bound::Absolute(2.1),
        ),
    ]
}

/// `bound` is (median, min, max) of the bound itself.
fn verdict(c: Spread, (median, min, max): (f64, f64, f64), higher_is_better: bool) -> Verdict {
    let (met, clear) = if higher_is_better {
        (c.median >= median, c.min >= max)
    } else {
        (c.median <= median, c.max <= min)
    };
    match (met, clear) {
        (true, true) => Verdict::Pass,
        (true, false) => Verdict::WithinNoise,
        (false, _) => Verdict::Fail,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::echo::EchoSettings;
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
                busy: Default::default(),
            }),
            connection_rate: Some(ConnectionRate {
                connections: 1000,
                seconds: 1.0,
                per_second: 1000.0,
                p50_us: 4000.0,
                p99_us: 9000.0,
                socket_errors: 0,
                non_2xx: 0,
                proxy_cpu_seconds: None,
                per_proxy_core: per_core,
                busy: Default::default(),
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

    pub(crate) fn settings() -> Settings {
        Settings {
            bulk_seconds: 3,
            rate_seconds: 3,
            rate_connections: 50,
            echo: EchoSettings {
                open: 7500,
                open_in_flight: 100,
                active: 750,
                message_bytes: 512,
                seconds: 5,
            },
            idle_connections: 5000,
            udp: crate::udp::UdpSettings {
                flows: 64,
                in_flight: 16,
                payload_bytes: 64,
                seconds: 5,
                paced_rate: 20_000,
            },
            client_cpu: Some(0),
            proxy_cpu: Some(1),
        }
    }

    fn criterion<'a>(report: &'a [Criterion], prefix: &str) -> &'a Criterion {
        report.iter().find(|c| c.name.starts_with(prefix)).unwrap()
    }

    #[test]
    fn verdicts_need_the_medians_and_the_spreads() {
        let spread = |median, min, max| Spread {
            median,
            min,
            max,
            runs: 3,
        };
        // Higher is better; bound 100 (90–110).
        let bound = (100.0, 90.0, 110.0);
        assert_eq!(
            verdict(spread(120.0, 111.0, 130.0), bound, true),
            Verdict::Pass
        );
        assert_eq!(
            verdict(spread(105.0, 95.0, 130.0), bound, true),
            Verdict::WithinNoise
        );
        assert_eq!(
            verdict(spread(99.0, 95.0, 130.0), bound, true),
            Verdict::Fail
        );
        // Lower is better: coexist's worst run must beat the bound's best.
        assert_eq!(
            verdict(spread(80.0, 70.0, 89.0), bound, false),
            Verdict::Pass
        );
        assert_eq!(
            verdict(spread(80.0, 70.0, 95.0), bound, false),
            Verdict::WithinNoise
        );
        assert_eq!(
            verdict(spread(101.0, 70.0, 95.0), bound, false),
            Verdict::Fail
        );
    }

    #[test]
    fn criteria_over_repetitions() {
        // Input: three repetitions; coexist's per-core rate 13,000–13,400
        // against HAProxy's 10,000–10,200 and nginx's 11,900–12,000.
        let run = |c: f64, h: f64, n: f64| {
            vec![
                target("coexist", 26.0, Some(c), Some(2000.0)),
                target("haproxy", 20.0, Some(h), Some(3000.0)),
                target("nginx-stream", 18.0, Some(n), Some(2500.0)),
            ]
        };
        let reps = vec![
            run(13_000.0, 10_000.0, 11_900.0),
            run(13_200.0, 10_200.0, 12_000.0),
            run(13_400.0, 10_100.0, 11_950.0),
        ];
        let report = Report::new("m".into(), [None, None], vec![], settings(), reps);
        let c = &report.criteria;
        // Output: ≥ 1.25 × HAProxy holds for every pair of runs (13,000 ≥
        // 12,750); ≥ 1.15 × nginx only by the medians (13,200 ≥ 13,743 fails).
        assert_eq!(
            criterion(c, "new connections/s per proxy core ≥ 1.25").verdict,
            Verdict::Pass
        );
        assert_eq!(
            criterion(c, "new connections/s per proxy core ≥ 1.15").verdict,
            Verdict::Fail
        );
        // Bulk 8: 26 vs 1.2 × 20 = 24, identical runs: pass.
        assert_eq!(criterion(c, "bulk 8").verdict, Verdict::Pass);
        // 2000 B = 1.95 KiB ≤ 2.1.
        assert_eq!(criterion(c, "memory").verdict, Verdict::Pass);
        // Latency: equal medians meet "≤" and, with no spread, clearly.
        assert_eq!(criterion(c, "latency p50").verdict, Verdict::Pass);
        // No echo figures, no HAProxy with splice: not measured.
        assert_eq!(
            criterion(c, "echo round trips/s ≥ HAProxy with").verdict,
            Verdict::NotMeasured
        );
    }

    #[test]
    fn table_shows_median_spread_and_ratio_to_haproxy() {
        let reps = vec![
            vec![
                target("direct", 40.0, None, None),
                target("coexist", 30.0, Some(12_000.0), Some(2048.0)),
                target("haproxy", 20.0, Some(10_000.0), Some(3072.0)),
                TargetResult::skipped("nginx-stream", "nginx is not installed".into()),
            ],
            vec![
                target("direct", 42.0, None, None),
                target("coexist", 32.0, Some(12_400.0), Some(2048.0)),
                target("haproxy", 20.0, Some(10_000.0), Some(3072.0)),
                TargetResult::skipped("nginx-stream", "nginx is not installed".into()),
            ],
        ];
        let report = Report::new(
            "test machine".into(),
            [Some(0.1), None],
            vec![],
            settings(),
            reps,
        );
        let md = markdown(&report);
        // Columns only for targets that ran.
        assert!(
            md.contains("| metric | better | direct | coexist | haproxy |\n"),
            "{md}"
        );
        // Bulk 8: coexist median 31 (30–32), 1.55× HAProxy's 20; direct has no ratio.
        assert!(
            md.contains("| Bulk, 8 streams (Gbit/s) | higher | 41.00 (40.00–42.00) | 31.00 (30.00–32.00) 1.55× h | 20.00 (20.00–20.00) |"),
            "{md}"
        );
        // Rows without any figure (bulk 1, echo) are left out.
        assert!(!md.contains("Bulk, 1 stream"), "{md}");
        assert!(
            md.contains("| – | 2.00 (2.00–2.00) 0.67× h | 3.00 (3.00–3.00) |"),
            "{md}"
        );
        assert!(md.contains("- nginx-stream: skipped: nginx is not installed"));
        assert!(md.contains("- load average 0.10 at start, ? at end"));
        assert!(md.contains("2 repetition(s)"));
        assert!(md.contains(
            "| new connections/s per proxy core ≥ 1.25 × HAProxy | 12200.00 (12000.00–12400.00) | haproxy: 10000.00 (10000.00–10000.00) | FAIL |"
        ), "{md}");
    }

    fn udp_target(name: &str, per_core: f64, p99: f64) -> TargetResult {
        use crate::udp::Sessions;
        let load = |p99_us: f64| UdpLoad {
            queries: 1000,
            seconds: 1.0,
            per_second: 1000.0,
            p50_us: p99_us / 2.0,
            p99_us,
            lost: 0,
            proxy_cpu_seconds: Some(0.5),
            per_proxy_core: Some(per_core),
            busy: Default::default(),
        };
        TargetResult {
            name: name.into(),
            udp_one_per_query: Some(UdpFigures {
                sessions: Sessions::OnePerQuery,
                saturated: load(p99),
                paced: Some(load(p99 / 10.0)),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn udp_rows_compare_with_nginx_and_check_the_udp_criteria() {
        // Input: coexist at 60,000 DNS queries/s per core and p99 1,000 µs;
        // nginx stream at 38,000 and 2,000 µs; HAProxy has no UDP figure.
        let reps = vec![vec![
            udp_target("coexist", 60_000.0, 1_000.0),
            udp_target("nginx-stream", 38_000.0, 2_000.0),
        ]];
        let report = Report::new("m".into(), [None, None], vec![], settings(), reps);
        let md = markdown(&report);
        // Output: ratios to nginx (× n), 60,000 / 38,000 = 1.58.
        assert!(
            md.contains("| UDP queries/s per proxy core, one reply per session | higher | 60000 1.58× n | 38000 |"),
            "{md}"
        );
        assert!(md.contains("| criterion (issue 14) |"), "{md}");
        assert!(
            !md.contains("| criterion (issue 13) |"),
            "nothing of issue 13 measured: {md}"
        );
        let c = &report.criteria;
        assert_eq!(
            criterion(c, "UDP queries/s per proxy core, one reply").verdict,
            Verdict::Pass
        );
        assert_eq!(
            criterion(c, "UDP latency p99 paced, one reply").verdict,
            Verdict::Pass
        );
        assert_eq!(
            criterion(c, "UDP queries/s per proxy core, long").verdict,
            Verdict::NotMeasured
        );
        assert!(c.iter().all(|c| c.issue == 13 || c.issue == 14));
    }

    #[test]
    fn report_serializes_to_json() {
        let report = Report::new(
            "m".into(),
            [None, None],
            vec![],
            settings(),
            vec![vec![target("direct", 1.0, None, None)]],
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["repetitions"][0][0]["name"], "direct");
        assert_eq!(json["repetitions"][0][0]["bulk_8"]["gbit_per_second"], 1.0);
        assert_eq!(
            json["summary"][0]["figures"]["bulk_8_gbit_per_second"]["median"],
            1.0
        );
        assert_eq!(json["settings"]["echo"]["open"], 7500);
    }
}
