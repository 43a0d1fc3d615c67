//! The Grafana dashboard and the Prometheus rules in `conf/` only use
//! metric names and labels a live daemon exposes.
//!
//! ```text
//!   namespace cx-<pid>-dash-node (see coexist_tests::lone_node)
//!     client ──► coexist "web" 127.0.0.1:P ──► up 127.0.0.1:A (passes checks)
//!                                          └─► gone 127.0.0.1:B (nothing listens)
//!     test ──► admin 127.0.0.1:M /metrics
//!     eth0 10.78.0.1/24 ── br0 in "sw": VRRP "front" alone, master
//! ```
//!
//! The daemon runs frontends, a backend with active checks (one server
//! passing, one failing), a proxied connection, a reload and a VRRP
//! instance, so every family of metrics has samples. The names come from
//! the files and from `/metrics`, never from a list kept in this test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use coexist_tests::client::read_greeting;
use coexist_tests::daemon::admin_metrics;
use coexist_tests::lone_node;
use coexist_tests::netns::enter_or_skip;
use coexist_tests::ports::{free_port, v4};
use coexist_tests::servers::TestServer;

const DASHBOARD: &str = "conf/grafana/coexist.json";
const RULES: &str = "conf/prometheus/coexist-rules.yml";
const RULE_TESTS: &str = "conf/prometheus/coexist-rules.test.yml";

/// Labels Prometheus adds on scrape: the target's `job` and `instance`.
/// No coexist metric has a label of these names, so none is renamed
/// (`exported_instance`) on scrape.
const SCRAPE_LABELS: [&str; 2] = ["job", "instance"];

fn read_conf(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// Identifiers in `text` that name coexist metrics (`lb_*`, `vrrp_*`).
fn metric_names_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        // A YAML key (`vrrp_instance: v4`) ends with the colon.
        .map(|word| word.trim_end_matches(':'))
        .filter(|word| word.starts_with("lb_") || word.starts_with("vrrp_"))
        .map(str::to_owned)
        .collect()
}

/// The label names of each sample name in a Prometheus text exposition.
fn exposed(page: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = metrics.entry(line[..end].to_owned()).or_default();
        if let Some(set) = line[end..]
            .strip_prefix('{')
            .and_then(|s| s.split('}').next())
        {
            // Label values of coexist metrics hold no `=` or `,` in this
            // test's config, so a plain split is enough here.
            for pair in set.split(',') {
                if let Some((name, _)) = pair.split_once('=') {
                    labels.insert(name.trim().to_owned());
                }
            }
        }
    }
    metrics
}

/// Label names a PromQL expression uses: in `{…}` matchers and in
/// `by (…)`, `without (…)`, `on (…)`, `ignoring (…)` clauses.
fn labels_in_expr(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = expr;
    while let Some(open) = rest.find(['{', '(']) {
        let before = rest[..open].trim_end();
        let is_clause = ["by", "without", "on", "ignoring"].iter().any(|k| {
            before.strip_suffix(k).is_some_and(|head| {
                head.chars()
                    .last()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
            })
        });
        let close = if rest.as_bytes()[open] == b'{' {
            '}'
        } else {
            ')'
        };
        let Some(len) = rest[open + 1..].find(close) else {
            break;
        };
        let inside = &rest[open + 1..open + 1 + len];
        if close == '}' {
            for matcher in inside.split(',') {
                if let Some(end) = matcher.find(['=', '!']) {
                    found.insert(matcher[..end].trim().to_owned());
                }
            }
            rest = &rest[open + 1 + len + 1..];
        } else if is_clause {
            found.extend(inside.split(',').map(|l| l.trim().to_owned()));
            rest = &rest[open + 1 + len + 1..];
        } else {
            rest = &rest[open + 1..];
        }
    }
    found.retain(|l| !l.is_empty());
    found
}

/// Every `expr` of the dashboard's targets.
fn dashboard_exprs(dashboard: &serde_json::Value, out: &mut Vec<String>) {
    match dashboard {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// Every `expr:` of the rules file, which keeps each on one line.
fn rule_exprs(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|expr| {
            let expr = expr.trim();
            assert!(
                !expr.starts_with(['|', '>']),
                "{RULES}: write each expr on one line so this test reads it: {expr}"
            );
            expr.to_owned()
        })
        .collect()
}

#[test]
fn dashboard_and_rules_use_only_metrics_a_live_daemon_exposes() {
    const TEST: &str = "dashboard_and_rules_use_only_metrics_a_live_daemon_exposes";
    let dashboard_text = read_conf(DASHBOARD);
    let rules = read_conf(RULES);
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard_text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    exprs.extend(rule_exprs(&rules));
    let used: BTreeSet<String> = [&dashboard_text, &rules, &read_conf(RULE_TESTS)]
        .iter()
        .flat_map(|text| metric_names_in(text))
        .collect();
    assert!(
        exprs.len() > 15 && used.len() > 10,
        "found {} exprs, {} names",
        exprs.len(),
        used.len()
    );
    if !enter_or_skip(TEST) {
        return;
    }

    let page = lone_node::run("dash", || exercise_the_daemon(&used));

    let exposed = exposed(&page);
    // `vrrp_instance` reads like a metric name but is a label.
    let labels: BTreeSet<&String> = exposed.values().flatten().collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !exposed.contains_key(*n) && !labels.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{DASHBOARD}, {RULES} or {RULE_TESTS} use metrics the daemon does not expose: {missing:?}\n/metrics:\n{page}"
    );
    // A label of the target's name would be renamed on scrape
    // (`exported_instance`), and queries would have to know it.
    for (name, labels) in &exposed {
        let clash: Vec<&&str> = SCRAPE_LABELS
            .iter()
            .filter(|l| labels.contains(**l))
            .collect();
        assert!(
            clash.is_empty(),
            "{name} has label(s) {clash:?}, which Prometheus sets on scrape"
        );
    }
    // A label must be on one of the metrics its expression reads.
    for expr in &exprs {
        let on_its_metrics: BTreeSet<&String> = metric_names_in(expr)
            .iter()
            .filter_map(|name| exposed.get(name))
            .flatten()
            .collect();
        for label in labels_in_expr(expr) {
            assert!(
                on_its_metrics.contains(&label) || SCRAPE_LABELS.contains(&label.as_str()),
                "label {label:?} in `{expr}` is on none of its metrics: {on_its_metrics:?}"
            );
        }
    }
}

/// Runs the daemon through everything that creates metrics, then returns
/// `/metrics` once it has every name in `wanted` (or after 15 s).
async fn exercise_the_daemon(wanted: &BTreeSet<String>) -> String {
    let up_server = TestServer::named(v4(0), "up").await.unwrap();
    let gone = v4(free_port());
    let lone_node::Node {
        daemon,
        listen,
        admin,
    } = lone_node::start([("up", up_server.address), ("gone", gone)]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut reloaded = false;
    loop {
        // A connection through (connect time, bytes), until the server is up.
        if let Ok(mut stream) = tokio::net::TcpStream::connect(v4(listen)).await {
            let _ = read_greeting(&mut stream).await;
        }
        if !reloaded {
            daemon.signal(nix::sys::signal::Signal::SIGHUP);
            reloaded = true;
        }
        let page = tokio::task::spawn_blocking(move || admin_metrics(admin))
            .await
            .unwrap();
        let exposed = exposed(&page);
        if wanted.iter().all(|n| exposed.contains_key(n)) || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Input: PromQL with matchers, grouping and functions. Output: only the
// label names, not function or metric names.
#[test]
fn labels_are_read_from_matchers_and_grouping_clauses() {
    let expr = r#"sum by (job, backend) (rate(lb_connect_errors_total{job=~"$job", server!="x"}[5m])) / on(instance) group_left sum without (le) (histogram_fraction(0, 1, up))"#;
    let labels: Vec<String> = labels_in_expr(expr).into_iter().collect();
    assert_eq!(labels, ["backend", "instance", "job", "le", "server"]);
}
