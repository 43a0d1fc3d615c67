//! `coexist-lab --ecmp`: the scale-out rows of issue 11 on the topology of
//! [`crate::ecmp`] (a BIRD router with L4 ECMP in front of three coexist +
//! BIRD nodes). Each row builds its own topology, so a row that kills or
//! cuts a node leaves the next one a fresh start.
//!
//! Rows E4–E6 run twice: once with the kernel's hash-threshold multipath
//! route, once with a resilient next-hop group (see
//! [`crate::ecmp::Hashing`]), and print both.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::report::{Report, RowResult, Verdict};
use crate::ecmp::{
    EcmpLab, Family, Hashing, LongLivedConn, Router, ANNOUNCE_AFTER, BREAK_NOTICED, IDLE_TIMER_S,
};

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];
const NODES: usize = 3;
const CONVERGE: Duration = Duration::from_secs(30);
/// How long the issue allows a withdrawal to reach the router after a
/// crash or a dead link.
const CRASH_LIMIT: Duration = Duration::from_millis(500);
/// From node2's transition (its daemon's log line) to the router's route.
const HEALTH_LIMIT: Duration = Duration::from_millis(100);

/// Runs every row with the daemon at `coexist` (only those in `only`,
/// unless it is empty).
pub fn run(coexist: &Path, progress: bool, only: &[u8]) -> Report {
    type Row = fn(&Path) -> anyhow::Result<Verdict>;
    let rows: [(u8, &str, Row); 8] = [
        (1, "E1: 3 nodes, 3,000 new connections per family", |c| {
            spread(c, Router::Bird)
        }),
        (2, "E2: tracked frontend down on node2 only", |c| {
            tracked_health(c, Router::Bird)
        }),
        (3, "E3: node2's daemon SIGKILLed, node3's link dead", crash),
        (4, "E4: node2 drained under 200 new connections/s", |c| {
            both(c, drain)
        }),
        (
            5,
            "E5: each node lost in turn, 300 long-lived connections",
            |c| both(c, loss),
        ),
        (6, "E6: a 4th node joins, 300 long-lived connections", |c| {
            both(c, join)
        }),
        (7, "E7: maglev, 100 clients x 10 connections", maglev),
        (8, "E8: FRR router instead of BIRD: E1 and E2", frr),
    ];
    let mut results = Vec::new();
    for (id, name, row) in rows {
        if !only.is_empty() && !only.contains(&id) {
            continue;
        }
        if progress {
            eprintln!("coexist-lab: {name}");
        }
        results.push(RowResult::of(id, name, row(coexist)));
    }
    Report {
        advert_interval_ms: 0,
        rows: results,
    }
}

fn converged(coexist: &Path) -> anyhow::Result<EcmpLab> {
    converged_with(coexist, Router::Bird)
}

fn converged_with(coexist: &Path, router: Router) -> anyhow::Result<EcmpLab> {
    let lab = EcmpLab::start_with("lab", NODES, coexist, router);
    let every: BTreeSet<usize> = (1..=NODES).collect();
    for family in FAMILIES {
        if lab.wait_paths(family, &every, CONVERGE).is_none() {
            anyhow::bail!(
                "{}: the router has paths {:?} after {CONVERGE:?}, not one per node",
                family.label(),
                lab.paths(family)
            );
        }
    }
    Ok(lab)
}

fn ms(d: Option<Duration>) -> serde_json::Value {
    d.map_or(json!(null), |d| json!(d.as_secs_f64() * 1000.0))
}

fn spread(coexist: &Path, router: Router) -> anyhow::Result<Verdict> {
    const CONNECTIONS: usize = 3000;
    let lab = converged_with(coexist, router)?;
    let mut v = Verdict::default();
    // FRR asks bfdd for a session only once BGP is Established, so BFD
    // may come up after the paths did.
    let sessions = 2 * NODES;
    let bfd =
        coexist_support::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            lab.router_bfd_up() == sessions
        });
    v.figure("router BFD sessions up", json!(lab.router_bfd_up()));
    v.check(format!("router: {sessions} BFD sessions up"), bfd.is_some());
    for family in FAMILIES {
        let f = family.label();
        v.figure(format!("{f} router paths"), json!(lab.paths(family).len()));
        v.check(
            format!("{f}: router has 3 paths"),
            lab.paths(family).len() == NODES,
        );
        let seen = lab.spread(family, CONNECTIONS);
        let failed = seen.get("failed").copied().unwrap_or(0);
        v.figure(format!("{f} client failed connections"), json!(failed));
        v.check(format!("{f}: no failed connection"), failed == 0);
        for node in lab.nodes.iter().map(|n| n.name.as_str()) {
            let share = 100.0 * seen.get(node).copied().unwrap_or(0) as f64 / CONNECTIONS as f64;
            v.figure(format!("{f} client share {node} (%)"), json!(share));
            let fair = (100.0 / NODES as f64 - share).abs() <= 4.0;
            v.check(format!("{f}: {node} within 33.3 % ± 4 points"), fair);
        }
    }
    v.figure("server", json!("[::1]:8080 on each node (IPv6 only)"));
    Ok(v)
}

/// Waits until node `index` is off (`gone`) or on every family's route;
/// returns when the router showed it, per family.
fn route_change(lab: &EcmpLab, index: usize, gone: bool) -> Vec<Option<SystemTime>> {
    let every: BTreeSet<usize> = (1..=NODES).collect();
    (FAMILIES.iter())
        .map(|family| {
            let changed = if gone {
                lab.wait_gone(*family, index, Duration::from_secs(5))
            } else {
                lab.wait_paths(*family, &every, Duration::from_secs(5))
            };
            changed.map(|_| SystemTime::now())
        })
        .collect()
}

/// Milliseconds from `from` to `to`, when both happened.
fn between(from: Option<SystemTime>, to: Option<SystemTime>) -> Option<Duration> {
    to?.duration_since(from?).ok()
}

fn tracked_health(coexist: &Path, router: Router) -> anyhow::Result<Verdict> {
    let lab = converged_with(coexist, router)?;
    let mut v = Verdict::default();
    let sessions = lab.router_sessions();
    let node2 = &lab.nodes[1];
    node2.set_server_up(false);
    let gone = route_change(&lab, 2, true);
    node2.set_server_up(true);
    let back = route_change(&lab, 2, false);
    for (k, family) in FAMILIES.iter().enumerate() {
        let f = family.label();
        let withdrawn = node2.announce_logged(*family, "withdrawn").last().copied();
        let took = between(withdrawn, gone[k]);
        v.figure(
            format!("{f} route lost node2 after its transition (ms)"),
            ms(took),
        );
        v.check(
            format!("{f}: withdrawn within {HEALTH_LIMIT:?} of node2's transition"),
            took.is_some_and(|t| t <= HEALTH_LIMIT),
        );
        let announced = node2.announce_logged(*family, "announced").last().copied();
        let took = between(announced, back[k]);
        v.figure(
            format!("{f} route regained node2 after its transition (ms)"),
            ms(took),
        );
        v.check(
            format!("{f}: back within {HEALTH_LIMIT:?} of recovery + announce_after"),
            took.is_some_and(|t| t <= HEALTH_LIMIT),
        );
    }
    v.figure("announce_after (ms)", json!(ANNOUNCE_AFTER.as_millis()));
    let after = lab.router_sessions();
    v.check(
        "BGP sessions Established throughout (none restarted)",
        EcmpLab::sessions_unchanged(&sessions, &after)
            && after.iter().all(|(_, state, _)| state == "Established"),
    );
    Ok(v)
}

/// E8: rows E1 and E2, their checks unchanged, with FRR as the router.
fn frr(coexist: &Path) -> anyhow::Result<Verdict> {
    let mut v = Verdict::default();
    v.figure("router", json!("FRR: zebra, bgpd (maximum-paths 8), bfdd"));
    v.merge("E1", spread(coexist, Router::Frr));
    v.merge("E2", tracked_health(coexist, Router::Frr));
    Ok(v)
}

fn crash(coexist: &Path) -> anyhow::Result<Verdict> {
    let mut lab = converged(coexist)?;
    let mut v = Verdict::default();
    let daemon = lab.nodes[1].coexist.as_ref().expect("running");
    let killed = SystemTime::now();
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    let gone = route_change(&lab, 2, true);
    for (k, family) in FAMILIES.iter().enumerate() {
        let f = family.label();
        let took = between(Some(killed), gone[k]);
        v.figure(format!("{f} withdrawn after SIGKILL (ms)"), ms(took));
        v.check(
            format!("{f}: withdrawn within {CRASH_LIMIT:?} of SIGKILL"),
            took.is_some_and(|t| t <= CRASH_LIMIT),
        );
    }
    lab.nodes[1].coexist.take();
    let cut = SystemTime::now();
    lab.cut_link(&lab.nodes[2]);
    let gone = route_change(&lab, 3, true);
    for (k, family) in FAMILIES.iter().enumerate() {
        let f = family.label();
        let took = between(Some(cut), gone[k]);
        v.figure(format!("{f} withdrawn after link death (ms)"), ms(took));
        v.check(
            format!("{f}: withdrawn within {CRASH_LIMIT:?} of the link dying (BFD)"),
            took.is_some_and(|t| t <= CRASH_LIMIT),
        );
    }
    v.figure("BFD", json!("50 ms x 6"));
    Ok(v)
}

fn maglev(coexist: &Path) -> anyhow::Result<Verdict> {
    let lab = converged(coexist)?;
    let mut v = Verdict::default();
    let clients = lab.client_addresses(100);
    for (family, sources) in [
        (Family::V4, clients.iter().map(|c| c.0).collect::<Vec<_>>()),
        (Family::V6, clients.iter().map(|c| c.1).collect()),
    ] {
        let f = family.label();
        let answers = lab.sticky(&sources, 10);
        let one_server = answers
            .iter()
            .filter(|a| {
                let servers: BTreeSet<&str> = a.iter().map(|(s, _)| s.as_str()).collect();
                servers.len() == 1 && !servers.contains("failed")
            })
            .count();
        let several_nodes = answers
            .iter()
            .filter(|a| a.iter().map(|(_, n)| n).collect::<BTreeSet<_>>().len() > 1)
            .count();
        v.figure(format!("{f} clients on one server"), json!(one_server));
        v.figure(format!("{f} clients through >1 node"), json!(several_nodes));
        v.check(
            format!("{f}: every client on one server"),
            one_server == sources.len(),
        );
    }
    Ok(v)
}

/// Long-lived connections per family in rows E4–E6 (300 in all).
const LONG_LIVED: usize = 150;

/// Runs `row` with hash-threshold and with resilient hashing, each on its
/// own topology, side by side: they only share the machine, and the rows
/// spend most of their time waiting.
fn both(
    coexist: &Path,
    row: fn(&Path, Hashing) -> anyhow::Result<Verdict>,
) -> anyhow::Result<Verdict> {
    let mut v = Verdict::default();
    let results = std::thread::scope(|scope| {
        let runs: Vec<_> = [Hashing::Threshold, Hashing::Resilient]
            .map(|hashing| (hashing, scope.spawn(move || row(coexist, hashing))))
            .into();
        (runs.into_iter())
            .map(|(hashing, run)| {
                let result = run
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the row panicked")));
                (hashing, result)
            })
            .collect::<Vec<_>>()
    });
    for (hashing, result) in results {
        v.merge(hashing.label(), result);
    }
    Ok(v)
}

fn converged_hashing(coexist: &Path, nodes: usize, hashing: Hashing) -> anyhow::Result<EcmpLab> {
    // Distinct namespace names, since both variants run at once.
    let tag = match hashing {
        Hashing::Threshold => "lab-t",
        Hashing::Resilient => "lab-r",
    };
    let lab = EcmpLab::start_hashing(tag, nodes, coexist, Router::Bird, hashing);
    let every: BTreeSet<usize> = (1..=nodes).collect();
    for family in FAMILIES {
        if lab.wait_paths(family, &every, CONVERGE).is_none() {
            anyhow::bail!(
                "{}: the router has paths {:?} after {CONVERGE:?}, not one per node",
                family.label(),
                lab.paths(family)
            );
        }
    }
    Ok(lab)
}

/// `coexist announce web ACTION` on node `index`.
fn announce(lab: &EcmpLab, index: usize, action: &str) -> anyhow::Result<()> {
    let node = &lab.nodes[index - 1];
    let coexist = lab.coexist_binary();
    let out = lab.lab.try_exec(
        &node.ns,
        &[
            coexist.to_str().unwrap(),
            "announce",
            "web",
            action,
            "--socket",
            node.control_socket.to_str().unwrap(),
        ],
    );
    anyhow::ensure!(
        out.status.success(),
        "coexist announce web {action} on {}: {}",
        node.name,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn of(conns: &[LongLivedConn], family: Family) -> Vec<&LongLivedConn> {
    conns.iter().filter(|c| c.family == family).collect()
}

fn percent(part: usize, whole: usize) -> f64 {
    (1000.0 * part as f64 / whole.max(1) as f64).round() / 10.0
}

/// E4: node2 withdrawn by its operator while clients open 200 new
/// connections per second and family and 300 long-lived ones ping.
fn drain(coexist: &Path, hashing: Hashing) -> anyhow::Result<Verdict> {
    const LOAD: Duration = Duration::from_secs(4);
    let lab = converged_hashing(coexist, NODES, hashing)?;
    let mut v = Verdict::default();
    let m = hashing.label();
    if hashing == Hashing::Threshold {
        // Node2's slice in the middle of the hash range goes to its
        // neighbours: no other node's flows move. Losing n1 or n3 moves
        // some (E5).
        let order: Vec<String> = (FAMILIES.iter())
            .map(|f| format!("{} {:?}", f.label(), lab.path_order(*f)))
            .collect();
        v.figure(format!("{m} path order before"), json!(order.join(", ")));
    }
    let long = lab.long_lived(LONG_LIVED);
    std::thread::sleep(Duration::from_secs(1));
    let (loads, gone, drained) = std::thread::scope(|scope| {
        let loads: Vec<_> = (FAMILIES.iter())
            .map(|f| {
                let lab = &lab;
                scope.spawn(move || lab.paced(*f, 200, LOAD))
            })
            .collect();
        std::thread::sleep(LOAD / 3);
        let drained_at = std::time::Instant::now();
        let drained = announce(&lab, 2, "withdraw").map(|_| drained_at);
        let gone: Vec<_> = (FAMILIES.iter())
            .map(|f| lab.wait_gone(*f, 2, Duration::from_secs(5)))
            .collect();
        let loads: Vec<_> = loads.into_iter().map(|l| l.join().expect("load")).collect();
        (loads, gone, drained)
    });
    let drained_at = drained?;
    std::thread::sleep(BREAK_NOTICED.saturating_sub(drained_at.elapsed()));
    let conns = long.finish();
    for (k, family) in FAMILIES.iter().enumerate() {
        let f = family.label();
        let (answered, failed) = loads[k];
        v.figure(format!("{m} {f} new connections answered"), json!(answered));
        v.figure(format!("{m} {f} new connections failed"), json!(failed));
        v.check(format!("{f}: node2 left the route"), gone[k].is_some());
        v.check(format!("{f}: no new connection failed"), failed == 0);
        let all = of(&conns, *family);
        let on2 = all.iter().filter(|c| c.node == "n2").count();
        let broken = all.iter().filter(|c| c.broken).count();
        let survivors = all.iter().filter(|c| c.broken && c.node != "n2").count();
        let (share, lost) = (percent(on2, all.len()), percent(broken, all.len()));
        v.figure(format!("{m} {f} long-lived on node2 (%)"), json!(share));
        v.figure(format!("{m} {f} long-lived broken (%)"), json!(lost));
        v.figure(format!("{m} {f} broken on n1 and n3"), json!(survivors));
        if hashing == Hashing::Resilient {
            v.check(
                format!("{f}: broken ≤ node2's share + 2 points"),
                lost <= share + 2.0,
            );
        }
    }
    Ok(v)
}

/// E5: each node's daemon SIGKILLed in turn (and started again), 300
/// long-lived connections open each time: how many on the surviving nodes
/// break.
fn loss(coexist: &Path, hashing: Hashing) -> anyhow::Result<Verdict> {
    let mut lab = converged_hashing(coexist, NODES, hashing)?;
    let mut v = Verdict::default();
    let m = hashing.label();
    let every: BTreeSet<usize> = (1..=NODES).collect();
    for k in 1..=NODES {
        let dead = format!("n{k}");
        let long = lab.long_lived(LONG_LIVED);
        std::thread::sleep(Duration::from_secs(1));
        let daemon = lab.nodes[k - 1].coexist.as_ref().expect("running");
        daemon.signal(nix::sys::signal::Signal::SIGKILL);
        let gone: Vec<_> = (FAMILIES.iter())
            .map(|f| lab.wait_gone(*f, k, Duration::from_secs(5)))
            .collect();
        std::thread::sleep(BREAK_NOTICED);
        let conns = long.finish();
        for (i, family) in FAMILIES.iter().enumerate() {
            let f = family.label();
            v.check(format!("{f}: {dead} left the route"), gone[i].is_some());
            let all = of(&conns, *family);
            let survivors: Vec<_> = all.iter().filter(|c| c.node != dead).collect();
            let broken = survivors.iter().filter(|c| c.broken).count();
            v.figure(
                format!("{m} {f} {dead} lost: broken on the others"),
                json!(format!("{broken} of {}", survivors.len())),
            );
            if hashing == Hashing::Resilient {
                v.check(
                    format!("{f}: {dead} lost: none broken on the others"),
                    broken == 0,
                );
            }
        }
        lab.restart_coexist(k);
        for family in FAMILIES {
            anyhow::ensure!(
                lab.wait_paths(family, &every, CONVERGE).is_some(),
                "{}: {dead} did not come back: {:?}",
                family.label(),
                lab.paths(family)
            );
        }
        // Buckets move to the returning node only once idle.
        if hashing == Hashing::Resilient {
            std::thread::sleep(Duration::from_secs(IDLE_TIMER_S + 1));
        }
    }
    Ok(v)
}

/// E6: a fourth node (withdrawn until then) announces while 300
/// long-lived connections ping: how many break, and how many new
/// connections the new node then takes.
fn join(coexist: &Path, hashing: Hashing) -> anyhow::Result<Verdict> {
    let lab = converged_hashing(coexist, NODES + 1, hashing)?;
    let mut v = Verdict::default();
    let m = hashing.label();
    let three: BTreeSet<usize> = (1..=NODES).collect();
    let four: BTreeSet<usize> = (1..=NODES + 1).collect();
    announce(&lab, 4, "withdraw")?;
    for family in FAMILIES {
        anyhow::ensure!(
            lab.wait_paths(family, &three, Duration::from_secs(5))
                .is_some(),
            "n4 not withdrawn: {:?}",
            lab.paths(family)
        );
    }
    let long = lab.long_lived(LONG_LIVED);
    std::thread::sleep(Duration::from_secs(1));
    announce(&lab, 4, "announce")?;
    let joined: Vec<_> = (FAMILIES.iter())
        .map(|f| lab.wait_paths(*f, &four, Duration::from_secs(5)))
        .collect();
    // Long enough for idle buckets to move to n4 and for a broken
    // connection to notice.
    std::thread::sleep(Duration::from_secs(IDLE_TIMER_S) + BREAK_NOTICED);
    let spread: Vec<_> = FAMILIES.iter().map(|f| lab.spread(*f, 200)).collect();
    let conns = long.finish();
    for (i, family) in FAMILIES.iter().enumerate() {
        let f = family.label();
        v.check(format!("{f}: n4 joined the route"), joined[i].is_some());
        let all = of(&conns, *family);
        let broken = all.iter().filter(|c| c.broken).count();
        v.figure(
            format!("{m} {f} broken when n4 joined"),
            json!(format!("{broken} of {}", all.len())),
        );
        let n4 = spread[i].get("n4").copied().unwrap_or(0);
        v.figure(
            format!("{m} {f} new connections to n4 afterwards (%)"),
            json!(percent(n4, 200)),
        );
        if hashing == Hashing::Resilient {
            v.check(format!("{f}: none broken"), broken == 0);
        }
    }
    Ok(v)
}
