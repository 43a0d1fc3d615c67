//! Which core set each rate: the busy share of the proxy and of the
//! clients' core over each saturating run, beside the figures.
//!
//! On two CPUs the proxy has one and every client and server the other.
//! A rate measured with the proxy's core full is the proxy's; one measured
//! with the clients' core full is set by the work each proxy causes there
//! (its peers' wake-ups, the acknowledgements it provokes) rather than by
//! the proxy's own cost, which the per-core rows give.

use std::fmt::Write as _;

use crate::measure::Busy;
use crate::run::TargetResult;
use crate::stats::Spread;

/// A saturating run and where its shares are in a target's result.
struct Run {
    label: &'static str,
    busy: fn(&TargetResult) -> Option<Busy>,
}

const RUNS: &[Run] = &[
    Run {
        label: "Bulk, 1 stream",
        busy: |t| t.bulk_1.as_ref().map(|b| b.busy),
    },
    Run {
        label: "Bulk, 8 streams",
        busy: |t| t.bulk_8.as_ref().map(|b| b.busy),
    },
    Run {
        label: "New connections",
        busy: |t| t.connection_rate.as_ref().map(|r| r.busy),
    },
    Run {
        label: "Echo round trips",
        busy: |t| t.exchanges.as_ref().map(|e| e.busy),
    },
    Run {
        label: "UDP, one reply per session",
        busy: |t| t.udp_one_per_query.as_ref().map(|u| u.saturated.busy),
    },
    Run {
        label: "UDP, long sessions",
        busy: |t| t.udp_long.as_ref().map(|u| u.saturated.busy),
    },
    Run {
        label: "UDP, many in flight per client",
        busy: |t| t.udp_pipelined.as_ref().map(|u| u.saturated.busy),
    },
];

/// The table for `targets` (in column order) over `repetitions`, or
/// nothing when no run measured the clients' core (an unpinned run).
pub fn markdown(
    targets: &[&str],
    repetitions: &[Vec<TargetResult>],
    clients_cpu: Option<usize>,
) -> String {
    let Some(clients_cpu) = clients_cpu else {
        return String::new();
    };
    let mut rows = String::new();
    for run in RUNS {
        let cells: Vec<String> = targets
            .iter()
            .map(|name| cell(run, name, repetitions))
            .collect();
        if cells.iter().all(|c| c == "–") {
            continue;
        }
        let _ = write!(rows, "| {} |", run.label);
        for c in cells {
            let _ = write!(rows, " {c} |");
        }
        rows.push('\n');
    }
    if rows.is_empty() {
        return rows;
    }
    let mut out = format!(
        "\nBusy share of the proxy (its CPU time over the run's, 100 = one core) / of the \
         clients' core (CPU {clients_cpu}), % (medians): a run with the clients' core near 100 \
         measures the work each proxy causes there more than the proxy itself.\n\n| run |"
    );
    for name in targets {
        let _ = write!(out, " {name} |");
    }
    out.push_str("\n|---|");
    for _ in targets {
        out.push_str("---|");
    }
    out.push('\n');
    out.push_str(&rows);
    out
}

/// "proxy / clients' core" in percent, medians over the repetitions.
fn cell(run: &Run, name: &str, repetitions: &[Vec<TargetResult>]) -> String {
    let shares: Vec<Busy> = repetitions
        .iter()
        .flatten()
        .filter(|t| t.name == name && t.skipped.is_none())
        .filter_map(run.busy)
        .collect();
    let median = |share: fn(&Busy) -> Option<f64>| {
        let values: Vec<f64> = shares.iter().filter_map(share).collect();
        Spread::of(&values).map(|s| s.median * 100.0)
    };
    match (median(|b| b.proxy), median(|b| b.clients_core)) {
        (None, None) => "–".into(),
        (proxy, clients) => {
            let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
            format!("{} / {}", pct(proxy), pct(clients))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::ConnectionRate;

    fn rate(name: &str, proxy: Option<f64>, clients_core: f64) -> TargetResult {
        TargetResult {
            name: name.into(),
            connection_rate: Some(ConnectionRate {
                connections: 1000,
                seconds: 1.0,
                per_second: 1000.0,
                p50_us: 1000.0,
                p99_us: 2000.0,
                socket_errors: 0,
                non_2xx: 0,
                proxy_cpu_seconds: proxy,
                per_proxy_core: None,
                busy: Busy {
                    proxy,
                    clients_core: Some(clients_core),
                },
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_run_shows_the_median_shares_of_both_cores() {
        // Input: three repetitions of coexist (proxy 0.90, 0.95, 0.80 of a
        // core; clients' core 1.0, 0.99, 0.98) and direct (no proxy).
        let repetitions = vec![
            vec![rate("coexist", Some(0.90), 1.0), rate("direct", None, 0.7)],
            vec![rate("coexist", Some(0.95), 0.99)],
            vec![rate("coexist", Some(0.80), 0.98)],
        ];
        let md = markdown(&["direct", "coexist"], &repetitions, Some(0));
        // Output: one row, for the connection-rate run, of medians.
        assert!(md.contains("clients' core (CPU 0)"), "{md}");
        assert!(md.contains("| run | direct | coexist |"), "{md}");
        assert!(
            md.contains("| New connections | – / 70 | 90 / 99 |"),
            "{md}"
        );
        assert!(!md.contains("Bulk"), "runs that did not happen: {md}");
    }

    #[test]
    fn unpinned_runs_have_no_clients_core_to_show() {
        let repetitions = vec![vec![rate("coexist", Some(0.9), 1.0)]];
        assert_eq!(markdown(&["coexist"], &repetitions, None), "");
    }
}
