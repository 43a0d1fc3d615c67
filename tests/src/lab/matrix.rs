//! The matrix: each row drives the network into a situation, measures it
//! from the clients' side and from the nodes, and judges the figures by
//! named checks.
//!
//! Rows run in one sequence on one network, in the order of [`ROWS`]; each
//! starts from the state the one before left: 1–2 traffic, 3 VRRP state
//! (steady: node1 master, every server up), 4 node1's daemon alone is
//! killed and restarted, then node1 dies, 5 node1 comes back, 6 a server
//! dies, 7 node1 loses its servers, 8 reload; then DNS over the UDP
//! frontend: 9 both families answered and balanced, 10 a DNS server
//! dies, 11 a takeover.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use super::analysis::{self, longest_gap};
use super::clock::{ms_between, now_ns};
use super::dns;
use super::load::{ClientRun, Conn};
use super::report::{Report, RowResult, Verdict};
use super::timeline::{Lane, Mark, Timeline};
use super::topology::*;
use super::vip_watch::VipWatch;
use crate::netns::Ns;

/// How the lab runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub advert: Duration,
    pub programs: Programs,
    /// Logs, configs and client records go here.
    pub dir: std::path::PathBuf,
    /// Say on stderr which row runs.
    pub progress: bool,
}

/// A row of the matrix: its number in the report, what it shows, and how
/// it is run on the network the rows before it left.
pub struct Row {
    pub id: u8,
    pub title: &'static str,
    pub run: fn(&mut Net) -> anyhow::Result<Verdict>,
}

/// The rows, in the order they run.
pub const ROWS: [Row; 11] = [
    Row {
        id: 1,
        title: "IPv6 client -> VIP6 -> IPv6 servers: balanced",
        run: row_1,
    },
    Row {
        id: 2,
        title: "IPv4 client -> VIP4 -> IPv6 servers: works",
        run: row_2,
    },
    Row {
        id: 3,
        title: "VRRP: node1 master for both families, sole VIP holder",
        run: row_3,
    },
    Row {
        id: 4,
        title: "node1 dies / node1's daemon SIGKILLed: takeover, gap",
        run: row_4,
    },
    Row {
        id: 5,
        title: "node1 back: preemption returns mastership",
        run: row_5,
    },
    Row {
        id: 6,
        title: "a server killed under load: no failed connection",
        run: row_6,
    },
    Row {
        id: 7,
        title: "node1 loses its servers: mastership moves to node2",
        run: row_7,
    },
    Row {
        id: 8,
        title: "reload on both nodes under load: no failed connection",
        run: row_8,
    },
    Row {
        id: 9,
        title: "DNS: dig and queries from both clients -> VIPs:53 -> BIND 9 on IPv6-only servers",
        run: row_9,
    },
    Row {
        id: 10,
        title: "DNS: a DNS server killed under query load: no failed query after detection",
        run: row_10,
    },
    Row {
        id: 11,
        title: "DNS: node1's daemon SIGKILLed under query load: takeover, query gap",
        run: row_11,
    },
];

/// Client traffic before an event, so the gap starts in a steady state.
const PRE: Duration = Duration::from_millis(400);
/// Client traffic after the network settled again.
const POST: Duration = Duration::from_millis(400);
/// Upper bound of any client run (they are stopped much earlier).
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// Builds the network, runs every row, and tears everything down.
pub fn run(opts: &Options) -> anyhow::Result<Report> {
    let say = |what: &str| {
        if opts.progress {
            eprintln!("coexist-lab: {what}");
        }
    };
    say("building the network");
    let mut net = Net::build(opts.programs.clone(), &opts.dir, opts.advert);
    setup(&mut net).context("setting up the lab")?;
    let rows = ROWS
        .iter()
        .map(|row| {
            say(&format!("row {}: {}", row.id, row.title));
            RowResult::of(row.id, row.title, (row.run)(&mut net))
        })
        .collect();
    Ok(Report {
        advert_interval_ms: opts.advert.as_millis() as u64,
        rows,
    })
}

/// Polls `cond` every 2 ms; the time it first held, or an error naming
/// `what` after `limit`.
fn wait(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    coexist_support::wait_until(limit, Duration::from_millis(2), &mut cond)
        .with_context(|| format!("{what}: not within {} ms", limit.as_millis()))
}

/// RFC 9568 §6.1 Master_Down_Interval of node2 (the backup).
fn master_down(net: &Net) -> Duration {
    let skew = net.advert * (256 - u32::from(PRIORITIES[1])) / 256;
    net.advert * 3 + skew
}

/// Bound of a failover: Master_Down_Interval plus one advert interval and
/// 200 ms for the scheduler of a small, loaded machine.
fn takeover_bound(net: &Net) -> Duration {
    master_down(net) + net.advert + Duration::from_millis(200)
}

/// Generous limit for anything VRRP must do.
fn vrrp_limit(net: &Net) -> Duration {
    net.advert * 10 + Duration::from_secs(5)
}

fn setup(net: &mut Net) -> anyhow::Result<()> {
    for name in WEB_SERVERS.iter().chain(DUAL_SERVERS.iter()) {
        net.start_server(name);
    }
    for name in WEB_SERVERS {
        net.start_dns(name)?;
    }
    for node in 0..2 {
        net.write_config(node, &net.node_config(node, [1, 1, 1]))?;
        net.start_daemon(node);
    }
    wait_steady(net, Duration::from_secs(20))
}

/// node1 master holding both VIPs, node2 backup holding none, and every
/// server up on both nodes.
fn wait_steady(net: &Net, limit: Duration) -> anyhow::Result<()> {
    let ok = coexist_support::wait_until(limit, Duration::from_millis(50), || {
        steady(net).unwrap_or(false)
    });
    if ok.is_none() {
        bail!(
            "no steady state after {} s (node1 master with both VIPs, every server up): node1 {:?}, node2 {:?}; {}",
            limit.as_secs(),
            net.holds(0),
            net.holds(1),
            net.status(0).map(|s| format!("{s:?}")).unwrap_or_else(|e| format!("{e:#}")),
        );
    }
    Ok(())
}

fn steady(net: &Net) -> anyhow::Result<bool> {
    if net.holds(0) != (true, true) || net.holds(1) != (false, false) {
        return Ok(false);
    }
    for node in 0..2 {
        let s = net.status(node)?;
        let all_up = s
            .backends
            .iter()
            .all(|b| b.servers.iter().all(|srv| srv.state == "up"));
        let want = if node == 0 { "master" } else { "backup" };
        if !all_up || s.vrrp.len() != 2 || s.vrrp.iter().any(|v| v.state != want) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Both clients against port 80 of their VIP.
fn clients_web(net: &Net) -> (Client, Client) {
    (
        net.client(&net.client4, vip4(WEB_PORT), CLIENT_LIMIT),
        net.client(&net.client6, vip6(WEB_PORT), CLIENT_LIMIT),
    )
}

/// Stops both clients and reads their records, with the time they were
/// told to stop: the end of the window for gaps. Connections that still
/// complete after it (a SYN retransmitted after 1 s) would otherwise add
/// a stretch without new connections that the clients never had.
fn finish(clients: (Client, Client)) -> anyhow::Result<(ClientRun, ClientRun, u64)> {
    let stop = now_ns();
    let (c4, c6) = clients;
    let r4 = c4.finish().context("IPv4 client")?;
    let r6 = c6.finish().context("IPv6 client")?;
    Ok((r4, r6, stop))
}

/// What one client saw of both frontends, one after the other.
struct Traffic {
    web: ClientRun,
    per_web: BTreeMap<String, u64>,
    per_dual: BTreeMap<String, u64>,
    dual_balanced: bool,
    failed: usize,
    first_error: Option<String>,
}

// One family at a time: two clients sharing a round-robin backend would
// interleave, and each would see a skewed share.
fn traffic(net: &Net, client: &Ns, vip: fn(u16) -> SocketAddr) -> anyhow::Result<Traffic> {
    let run = Duration::from_millis(1500);
    let web = net.client(client, vip(WEB_PORT), run);
    let dual = net.client(client, vip(DUAL_PORT), run);
    let (web, dual) = (web.collect()?, dual.collect()?);
    // The dual-stack servers, each reached over both families.
    let keys: Vec<String> = DUAL_SERVERS
        .iter()
        .flat_map(|s| [format!("{s}/IPv4"), format!("{s}/IPv6")])
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let per_dual = analysis::per_server_family(&dual.conns);
    Ok(Traffic {
        per_web: analysis::per_server(&web.conns),
        dual_balanced: analysis::balanced(&per_dual, &keys, 2.0),
        per_dual,
        failed: analysis::failed(&web.conns) + analysis::failed(&dual.conns),
        first_error: analysis::first_error(&web.conns).or(analysis::first_error(&dual.conns)),
        web,
    })
}

fn row_1(net: &mut Net) -> anyhow::Result<Verdict> {
    let t = traffic(net, &net.client6, vip6)?;
    let mut v = Verdict::default();
    v.check(
        "IPv6-only servers balanced within 1.5x",
        analysis::balanced(&t.per_web, &WEB_SERVERS, 1.5),
    )
    .check(
        "dual-stack servers balanced over both families within 2x",
        t.dual_balanced,
    )
    .check("no failed connection", t.failed == 0)
    .figure("IPv6-only servers (VIP6:80)", json!(t.per_web))
    .figure("dual-stack servers (VIP6:8080)", json!(t.per_dual))
    .figure("failed", json!(t.failed))
    .figure("first error", json!(t.first_error));
    Ok(v)
}

fn row_2(net: &mut Net) -> anyhow::Result<Verdict> {
    let t = traffic(net, &net.client4, vip4)?;
    let ok = analysis::succeeded(&t.web.conns);
    let bytes = analysis::bytes_verified(&t.web.conns);
    let only_web = t.per_web.keys().all(|k| WEB_SERVERS.contains(&k.as_str()));
    let mut v = Verdict::default();
    v.check("connections made", ok > 0)
        .check("no failed connection", t.failed == 0)
        .check("VIP4:80 answered by the IPv6-only servers only", only_web)
        .check(
            "every byte came back",
            bytes == ok as u64 * super::load::BYTES as u64,
        )
        .check(
            "dual-stack servers balanced over both families within 2x",
            t.dual_balanced,
        )
        .figure("connections", json!(ok))
        .figure("bytes verified", json!(bytes))
        .figure("IPv6-only servers (VIP4:80)", json!(t.per_web))
        .figure("dual-stack servers (VIP4:8080)", json!(t.per_dual))
        .figure("failed", json!(t.failed))
        .figure("first error", json!(t.first_error));
    Ok(v)
}

fn states(net: &Net, node: usize) -> anyhow::Result<String> {
    let s = net.status(node)?;
    let find = |name: &str| {
        s.vrrp
            .iter()
            .find(|v| v.name == name)
            .map(|v| format!("{} ({})", v.state, v.effective_priority))
            .unwrap_or_else(|| "missing".to_owned())
    };
    Ok(format!(
        "IPv4 {}, IPv6 {}",
        find("front-v4"),
        find("front-v6")
    ))
}

fn row_3(net: &mut Net) -> anyhow::Result<Verdict> {
    let samples = 10;
    let mut sole = 0;
    for _ in 0..samples {
        if net.holds(0) == (true, true) && net.holds(1) == (false, false) {
            sole += 1;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let (s1, s2) = (net.status(0)?, net.status(1)?);
    let all = |s: &lb::admin::status::Status, state: &str| {
        s.vrrp.len() == 2 && s.vrrp.iter().all(|v| v.state == state)
    };
    let mut v = Verdict::default();
    v.check(
        "node1 sole holder of both VIPs in every sample",
        sole == samples,
    )
    .check("node1 master for both families", all(&s1, "master"))
    .check("node2 backup for both families", all(&s2, "backup"))
    .figure("node1", json!(states(net, 0)?))
    .figure("node2", json!(states(net, 1)?))
    .figure(
        "node1 sole holder of VIP4 and VIP6",
        json!(format!("{sole} of {samples} samples")),
    );
    Ok(v)
}

/// Whether node `node` holds each VIP and the other node does not.
fn sole_holder(net: &Net, node: usize) -> (bool, bool) {
    let (a4, a6) = net.holds(node);
    let (o4, o6) = net.holds(1 - node);
    (a4 && !o4, a6 && !o6)
}

/// Per-family times (ms since `from_ns`), `(IPv4, IPv6)`; `None` when
/// not seen.
type PerFamily = (Option<f64>, Option<f64>);

/// Per-family times (ms since `from_ns`) until `cond` holds for each VIP,
/// for a takeover by node `to`, and meanwhile the times until client4's ARP entry for VIP4 and client6's neighbour entry
/// for VIP6 name node `to`'s MAC: when the takeover's announcements took
/// effect on the clients.
fn watch_takeover(
    net: &Net,
    from_ns: u64,
    to: usize,
    mut cond: impl FnMut(&Net) -> (bool, bool),
) -> (PerFamily, PerFamily) {
    let mac = Some(net.lab.mac(&net.nodes[to], "eth0"));
    let limit = vrrp_limit(net);
    // Two pollers, so that reading the neighbour tables does not make
    // the VIP polls coarser.
    std::thread::scope(|scope| {
        let neighbours = scope.spawn(|| {
            watch(net, from_ns, limit, |n| {
                [
                    n.lab.neighbour(&n.client4, VIP4) == mac,
                    n.lab.neighbour(&n.client6, VIP6) == mac,
                ]
            })
        });
        let [t4, t6] = watch(net, from_ns, limit, |n| cond(n).into());
        let [n4, n6] = neighbours
            .join()
            .expect("the neighbour poller does not panic");
        ((t4, t6), (n4, n6))
    })
}

/// Times (ms since `from_ns`) until each of `cond`'s conditions first
/// held, polled every 2 ms until all did or `limit` passed.
fn watch<const N: usize>(
    net: &Net,
    from_ns: u64,
    limit: Duration,
    mut cond: impl FnMut(&Net) -> [bool; N],
) -> [Option<f64>; N] {
    let mut seen = [None; N];
    let _ = coexist_support::wait_until(limit, Duration::from_millis(2), || {
        let held = cond(net);
        let now = ms_between(from_ns, now_ns());
        for (at, held) in seen.iter_mut().zip(held) {
            if held && at.is_none() {
                *at = Some(now);
            }
        }
        seen.iter().all(Option::is_some)
    });
    seen
}

/// When node 2 added each VIP: the polls' times, refined by what `vips`
/// (started before the event) heard.
fn added_earlier(vips: Option<VipWatch>, event: u64, (t4, t6): PerFamily) -> PerFamily {
    match vips {
        Some(vips) => (vips.earlier(VIP4, event, t4), vips.earlier(VIP6, event, t6)),
        None => (t4, t6),
    }
}

fn gap_ms(conns: &[Conn], from_ns: u64, to_ns: u64) -> Option<f64> {
    longest_gap(conns, from_ns, to_ns).map(|g| g.longest_ns as f64 / 1e6)
}

/// Checks that node2 took over each family within `bound` ms.
fn takeover_within(v: &mut Verdict, t4: Option<f64>, t6: Option<f64>, bound: f64) {
    v.check(
        "takeover within the bound (IPv4)",
        t4.is_some_and(|t| t <= bound),
    )
    .check(
        "takeover within the bound (IPv6)",
        t6.is_some_and(|t| t <= bound),
    );
}

/// Checks that each client's longest gap could be measured.
fn gaps_measured(v: &mut Verdict, g4: Option<f64>, g6: Option<f64>) {
    v.check("clients' gap measured (IPv4)", g4.is_some())
        .check("clients' gap measured (IPv6)", g6.is_some());
}

/// Failed connections of the IPv4 and the IPv6 client.
fn failed_per_family(r4: &ClientRun, r6: &ClientRun) -> Value {
    per_family(analysis::failed(&r4.conns), analysis::failed(&r6.conns))
}

fn per_family<T: serde::Serialize>(v4: T, v6: T) -> Value {
    json!({ "IPv4": v4, "IPv6": v6 })
}

/// A moment of a row's picture, in ms from its zero, per family.
struct Moment {
    mark: Mark,
    label: &'static str,
    at: (Option<f64>, Option<f64>),
}

impl Moment {
    fn new(mark: Mark, label: &'static str, at: (Option<f64>, Option<f64>)) -> Moment {
        Moment { mark, label, at }
    }

    /// The same moment for both families (what the lab did).
    fn both(mark: Mark, label: &'static str, at_ms: f64) -> Moment {
        Moment::new(mark, label, (Some(at_ms), Some(at_ms)))
    }

    /// A per-family moment measured from `offset_ms` instead of zero.
    fn after(
        mark: Mark,
        label: &'static str,
        offset_ms: f64,
        at: (Option<f64>, Option<f64>),
    ) -> Moment {
        let shift = |t: Option<f64>| t.map(|t| t + offset_ms);
        Moment::new(mark, label, (shift(at.0), shift(at.1)))
    }
}

/// The picture of a row: what the IPv4 and the IPv6 client saw from
/// before `zero_ns` (the fault) up to `end_ns`, with the row's moments.
fn timeline(
    title: &str,
    (r4, r6): (&ClientRun, &ClientRun),
    zero_ns: u64,
    end_ns: u64,
    moments: &[Moment],
) -> Timeline {
    let lane = |name: &str, run: &ClientRun, at: fn(&Moment) -> Option<f64>| {
        let mut lane = Lane::of(name, &run.conns, zero_ns, end_ns);
        for m in moments {
            lane.event(m.mark, m.label, at(m));
        }
        lane
    };
    Timeline {
        title: title.to_owned(),
        lanes: vec![lane("IPv4", r4, |m| m.at.0), lane("IPv6", r6, |m| m.at.1)],
    }
}

/// Row 4a: node1's links go down and its daemon is killed, as when the
/// machine fails. Leaves node1 down for row 5.
fn node1_dies(net: &mut Net) -> anyhow::Result<Verdict> {
    let vips = VipWatch::start(&net.nodes[1]);
    let clients = clients_web(net);
    std::thread::sleep(PRE);
    let event = now_ns();
    for ifname in ["eth0", "eth1", "eth2"] {
        net.set_link(0, ifname, false);
    }
    net.kill_daemon(0);
    let (polled, (n4, n6)) = watch_takeover(net, event, 1, |n| n.holds(1));
    let (t4, t6) = added_earlier(vips, event, polled);
    std::thread::sleep(POST);
    let (r4, r6, end) = finish(clients)?;
    let (g4, g6) = (gap_ms(&r4.conns, event, end), gap_ms(&r6.conns, event, end));
    let bound = super::clock::ms(takeover_bound(net));
    let mut v = Verdict::default();
    takeover_within(&mut v, t4, t6, bound);
    gaps_measured(&mut v, g4, g6);
    v.figures(vec![
        ("node1 dies: takeover_ms", per_family(t4, t6)),
        (
            "node1 dies: clients' neighbour entry -> node2_ms",
            per_family(n4, n6),
        ),
        ("node1 dies: gap_ms", per_family(g4, g6)),
        (
            "node1 dies: failed connections",
            failed_per_family(&r4, &r6),
        ),
        ("takeover bound_ms", json!(bound)),
    ]);
    v.timeline(timeline(
        "node1 dies",
        (&r4, &r6),
        event,
        end,
        &[
            Moment::both(Mark::Fault, "node1's links down, its daemon killed", 0.0),
            Moment::new(Mark::VipMoved, "VIP on node2", (t4, t6)),
            Moment::new(
                Mark::NeighbourMoved,
                "client's neighbour entry -> node2",
                (n4, n6),
            ),
        ],
    ));
    Ok(v)
}

/// Row 5: node1 comes back as a rebooted machine does (links up, no
/// virtual addresses, the daemon starts) and takes mastership back once
/// its servers are up (preemption).
fn row_5(net: &mut Net) -> anyhow::Result<Verdict> {
    if net.daemons[0].is_some() {
        bail!("node1 did not die in row 4");
    }
    let node1 = net.nodes[0].clone();
    for cidr in [format!("{VIP4}/24"), format!("{VIP6}/64")] {
        let _ = net
            .lab
            .try_exec(&node1, &["ip", "addr", "del", &cidr, "dev", "eth0"]);
    }
    for ifname in ["eth0", "eth1", "eth2"] {
        net.set_link(0, ifname, true);
    }
    let clients = clients_web(net);
    std::thread::sleep(PRE);
    let event = now_ns();
    net.start_daemon(0);
    let ((t4, t6), (n4, n6)) = watch_takeover(net, event, 0, |n| sole_holder(n, 0));
    std::thread::sleep(POST);
    let (r4, r6, end) = finish(clients)?;
    let (g4, g6) = (gap_ms(&r4.conns, event, end), gap_ms(&r6.conns, event, end));
    let back = states(net, 0)?;
    let mut v = Verdict::default();
    v.check("node1 sole holder again (IPv4)", t4.is_some())
        .check("node1 sole holder again (IPv6)", t6.is_some());
    gaps_measured(&mut v, g4, g6);
    wait_steady(net, Duration::from_secs(10))?;
    v.figures(vec![
        ("daemon start -> node1 sole holder_ms", per_family(t4, t6)),
        (
            "daemon start -> clients' neighbour entry -> node1_ms",
            per_family(n4, n6),
        ),
        ("gap_ms", per_family(g4, g6)),
        ("failed connections", failed_per_family(&r4, &r6)),
        ("node1", json!(back)),
    ]);
    v.timeline(timeline(
        "node1 back: preemption",
        (&r4, &r6),
        event,
        end,
        &[
            Moment::both(Mark::Repair, "node1's daemon starts", 0.0),
            Moment::new(Mark::VipMoved, "node1 sole VIP holder", (t4, t6)),
            Moment::new(
                Mark::NeighbourMoved,
                "client's neighbour entry -> node1",
                (n4, n6),
            ),
        ],
    ));
    Ok(v)
}

/// Row 4b: node1's daemon alone is SIGKILLed; the machine keeps running,
/// so the kernel keeps the virtual addresses until a daemon removes them.
/// Then the daemon is restarted.
fn daemon_killed(net: &mut Net) -> anyhow::Result<Verdict> {
    let vips = VipWatch::start(&net.nodes[1]);
    let clients = clients_web(net);
    std::thread::sleep(PRE);
    let event = now_ns();
    net.kill_daemon(0);
    let (polled, (n4, n6)) = watch_takeover(net, event, 1, |n| n.holds(1));
    let (t4, t6) = added_earlier(vips, event, polled);
    let stale = net.holds(0);
    let monitor_log = net.dir.join("node1-addresses.log");
    let mut monitor = net.lab.spawn(
        &net.nodes[0],
        std::path::Path::new("ip"),
        &["monitor", "address"],
        &monitor_log,
    );
    std::thread::sleep(Duration::from_millis(100));
    let restart = now_ns();
    net.start_daemon(0);
    let ((b4, b6), (m4, m6)) = watch_takeover(net, restart, 0, |n| sole_holder(n, 0));
    std::thread::sleep(POST);
    let (r4, r6, end) = finish(clients)?;
    monitor.signal(Signal::SIGTERM);
    monitor.wait_exit(Duration::from_secs(1));
    let events = std::fs::read_to_string(&monitor_log).unwrap_or_default();
    let removed = removed_vips(&events);
    let stale_list: Vec<&str> = [(stale.0, VIP4), (stale.1, VIP6)]
        .iter()
        .filter(|(held, _)| *held)
        .map(|(_, v)| *v)
        .collect();
    let bound = super::clock::ms(takeover_bound(net));
    let mut v = Verdict::default();
    takeover_within(&mut v, t4, t6, bound);
    v.check("the kernel kept both VIPs on node1", stale == (true, true))
        .check(
            "the restarted daemon removed both stale VIPs first",
            removed == [VIP4, VIP6],
        )
        .check("restarted node1 sole holder again (IPv4)", b4.is_some())
        .check("restarted node1 sole holder again (IPv6)", b6.is_some());
    gaps_measured(
        &mut v,
        gap_ms(&r4.conns, event, end),
        gap_ms(&r6.conns, event, end),
    );
    wait_steady(net, Duration::from_secs(10))?;
    v.figures(vec![
        ("daemon killed: takeover_ms", per_family(t4, t6)),
        (
            "daemon killed: clients' neighbour entry -> node2_ms",
            per_family(n4, n6),
        ),
        (
            "daemon killed: gap_ms",
            per_family(
                gap_ms(&r4.conns, event, restart),
                gap_ms(&r6.conns, event, restart),
            ),
        ),
        (
            "daemon killed: failed connections",
            failed_per_family(&r4, &r6),
        ),
        ("stale VIPs on node1 before restart", json!(stale_list)),
        ("removed by the restarted daemon first", json!(removed)),
        ("restart -> node1 sole holder_ms", per_family(b4, b6)),
        (
            "restart: gap_ms",
            per_family(
                gap_ms(&r4.conns, restart, end),
                gap_ms(&r6.conns, restart, end),
            ),
        ),
    ]);
    let restart_ms = ms_between(event, restart);
    v.timeline(timeline(
        "node1's daemon SIGKILLed, then restarted",
        (&r4, &r6),
        event,
        end,
        &[
            Moment::both(Mark::Fault, "node1's daemon SIGKILLed", 0.0),
            Moment::new(Mark::VipMoved, "VIP on node2", (t4, t6)),
            Moment::new(
                Mark::NeighbourMoved,
                "client's neighbour entry -> node2",
                (n4, n6),
            ),
            Moment::both(Mark::Repair, "node1's daemon restarted", restart_ms),
            Moment::after(
                Mark::VipMoved,
                "node1 sole VIP holder",
                restart_ms,
                (b4, b6),
            ),
            Moment::after(
                Mark::NeighbourMoved,
                "client's neighbour entry -> node1",
                restart_ms,
                (m4, m6),
            ),
        ],
    ));
    Ok(v)
}

/// The VIPs that `ip monitor address` saw deleted before it saw any VIP
/// added, in that order (VIP4 first when both).
pub fn removed_vips(events: &str) -> Vec<&'static str> {
    let mut removed = Vec::new();
    for line in events.lines() {
        let vip = [VIP4, VIP6].into_iter().find(|v| {
            line.split_whitespace()
                .any(|w| w.split('/').next() == Some(*v))
        });
        let Some(vip) = vip else { continue };
        if !line.starts_with("Deleted") {
            break;
        }
        if !removed.contains(&vip) {
            removed.push(vip);
        }
    }
    removed.sort_by_key(|v| *v != VIP4);
    removed
}

/// Row 4: first node1's daemon alone is SIGKILLed and restarted (4b), then
/// node1 dies (4a), which leaves it down for row 5. Figures in the order
/// 4a, 4b.
fn row_4(net: &mut Net) -> anyhow::Result<Verdict> {
    let killed = daemon_killed(net);
    let died = node1_dies(net);
    let mut v = Verdict::default();
    v.merge("node1 dies", died);
    v.merge("daemon killed", killed);
    Ok(v)
}

fn row_6(net: &mut Net) -> anyhow::Result<Verdict> {
    let victim = "srv2";
    let clients = clients_web(net);
    std::thread::sleep(Duration::from_millis(600));
    // From the moment the server is reaped: its sockets are closed then.
    // A connection opened between the signal and that moment may still
    // have been accepted by the dying server's kernel socket.
    net.kill_server(victim);
    let kill = now_ns();
    let down = wait(Duration::from_secs(5), "node1 marks srv2 down", || {
        server_state(net, 0, victim).as_deref() == Some("down")
    });
    std::thread::sleep(Duration::from_millis(600));
    let (r4, r6, _) = finish(clients)?;
    let conns: Vec<Conn> = r4.conns.into_iter().chain(r6.conns).collect();
    let after = analysis::failed_since(&conns, kill);
    let cut = analysis::failed_in_flight(&conns, kill);
    let victim_after = conns
        .iter()
        .filter(|c| c.ok && c.start_ns > kill && c.server.as_deref() == Some(victim))
        .count();
    let node2_down = server_state(net, 1, victim);
    net.start_server(victim);
    let restored = wait_steady(net, Duration::from_secs(10));
    let mut v = Verdict::default();
    v.check("no connection opened after the kill failed", after == 0)
        .check("node1 marked the server down within 5 s", down.is_ok())
        .check("no connection reached the killed server", victim_after == 0)
        .check("steady again once the server is back", restored.is_ok());
    v.figures(vec![
        ("killed", json!(victim)),
        ("connections", json!(analysis::succeeded(&conns))),
        ("failed, opened after the kill", json!(after)),
        ("cut while in flight to the killed server", json!(cut)),
        (
            "marked down on node1 after_ms",
            json!(down.ok().map(super::clock::ms)),
        ),
        ("state on node2", json!(node2_down)),
        ("first error", json!(analysis::first_error(&conns))),
    ]);
    Ok(v)
}

fn server_state(net: &Net, node: usize, server: &str) -> Option<String> {
    let s = net.status(node).ok()?;
    s.backends
        .iter()
        .flat_map(|b| b.servers.iter())
        .find(|srv| srv.name == server)
        .map(|srv| srv.state.clone())
}

/// Row 7: node1 can no longer reach the servers of its tracked frontend
/// (its back-segment link goes down); node2 still can.
fn row_7(net: &mut Net) -> anyhow::Result<Verdict> {
    let clients = clients_web(net);
    std::thread::sleep(PRE);
    let down = now_ns();
    net.set_link(0, "eth1", false);
    let ((t4, t6), (n4, n6)) = watch_takeover(net, down, 1, |n| sole_holder(n, 1));
    let lowered = net.status(0).map(|s| {
        s.vrrp
            .iter()
            .map(|v| v.effective_priority)
            .collect::<Vec<_>>()
    });
    let node1_then = states(net, 0).unwrap_or_else(|e| format!("{e:#}"));
    std::thread::sleep(Duration::from_millis(300));
    let up = now_ns();
    net.set_link(0, "eth1", true);
    let ((b4, b6), (m4, m6)) = watch_takeover(net, up, 0, |n| sole_holder(n, 0));
    std::thread::sleep(POST);
    let (r4, r6, end) = finish(clients)?;
    let expected = PRIORITIES[0] - TRACK_WEIGHT;
    let mut v = Verdict::default();
    v.check(
        "node2 sole holder while node1 is cut off (IPv4)",
        t4.is_some(),
    )
    .check(
        "node2 sole holder while node1 is cut off (IPv6)",
        t6.is_some(),
    )
    .check(
        "node1's priorities lowered by the track weight",
        lowered
            .as_ref()
            .is_ok_and(|p| p.len() == 2 && p.iter().all(|&p| p == expected)),
    )
    .check("node1 sole holder once reconnected (IPv4)", b4.is_some())
    .check("node1 sole holder once reconnected (IPv6)", b6.is_some());
    gaps_measured(
        &mut v,
        gap_ms(&r4.conns, down, end),
        gap_ms(&r6.conns, down, end),
    );
    wait_steady(net, Duration::from_secs(10))?;
    v.figures(vec![
        ("link down -> node2 sole holder_ms", per_family(t4, t6)),
        (
            "link down -> clients' neighbour entry -> node2_ms",
            per_family(n4, n6),
        ),
        ("node1 while its servers are unreachable", json!(node1_then)),
        (
            "gap_ms",
            per_family(gap_ms(&r4.conns, down, up), gap_ms(&r6.conns, down, up)),
        ),
        ("link up -> node1 sole holder_ms", per_family(b4, b6)),
        (
            "link up -> clients' neighbour entry -> node1_ms",
            per_family(m4, m6),
        ),
        (
            "back: gap_ms",
            per_family(gap_ms(&r4.conns, up, end), gap_ms(&r6.conns, up, end)),
        ),
        ("failed connections", failed_per_family(&r4, &r6)),
    ]);
    let up_ms = ms_between(down, up);
    v.timeline(timeline(
        "node1 loses its servers, then gets them back",
        (&r4, &r6),
        down,
        end,
        &[
            Moment::both(Mark::Fault, "node1's server link down", 0.0),
            Moment::new(Mark::VipMoved, "node2 sole VIP holder", (t4, t6)),
            Moment::new(
                Mark::NeighbourMoved,
                "client's neighbour entry -> node2",
                (n4, n6),
            ),
            Moment::both(Mark::Repair, "node1's server link up", up_ms),
            Moment::after(Mark::VipMoved, "node1 sole VIP holder", up_ms, (b4, b6)),
            Moment::after(
                Mark::NeighbourMoved,
                "client's neighbour entry -> node1",
                up_ms,
                (m4, m6),
            ),
        ],
    ));
    Ok(v)
}

/// Row 8: both nodes reload a config with new weights (3:1:1) while the
/// clients keep connecting.
fn row_8(net: &mut Net) -> anyhow::Result<Verdict> {
    let clients = clients_web(net);
    std::thread::sleep(Duration::from_millis(500));
    let reload = now_ns();
    for node in 0..2 {
        net.write_config(node, &net.node_config(node, [3, 1, 1]))?;
        net.signal_daemon(node, Signal::SIGHUP);
    }
    let mut applied = Vec::new();
    for node in 0..2 {
        let t = wait(Duration::from_secs(5), "the reload applied", || {
            net.status(node).is_ok_and(|s| {
                s.backends
                    .iter()
                    .flat_map(|b| b.servers.iter())
                    .any(|srv| srv.name == "srv1" && srv.weight == 3)
            })
        })
        .ok();
        applied.push(t.map(|_| ms_between(reload, now_ns())));
    }
    let settled = now_ns();
    std::thread::sleep(Duration::from_millis(800));
    let (r4, r6, _) = finish(clients)?;
    let conns: Vec<Conn> = r4.conns.into_iter().chain(r6.conns).collect();
    let failed = analysis::failed(&conns);
    let after: Vec<Conn> = conns
        .iter()
        .filter(|c| c.start_ns > settled)
        .cloned()
        .collect();
    let share = analysis::per_server(&after);
    let count = |s: &str| share.get(s).copied().unwrap_or(0) as f64;
    let weighted = count("srv1") > 1.5 * count("srv2") && count("srv1") > 1.5 * count("srv3");
    let master = net.holds(0) == (true, true) && net.holds(1) == (false, false);
    let mut v = Verdict::default();
    v.check("no failed connection", failed == 0)
        .check(
            "both nodes applied the reload within 5 s",
            applied.iter().all(Option::is_some),
        )
        .check("srv1 takes the larger share (weights 3:1:1)", weighted)
        .check("node1 still sole VIP holder", master);
    v.figures(vec![
        ("connections", json!(analysis::succeeded(&conns))),
        ("failed", json!(failed)),
        (
            "reload applied after_ms",
            json!({ "node1": applied[0], "node2": applied[1] }),
        ),
        ("per server after reload (weights 3:1:1)", json!(share)),
        ("node1 still sole VIP holder", json!(master)),
        ("first error", json!(analysis::first_error(&conns))),
    ]);
    Ok(v)
}

/// Both clients asking DNS queries of their VIP.
fn clients_dns(net: &Net) -> (Client, Client) {
    (
        net.dns_client(&net.client4, vip4(dns::DNS_PORT), CLIENT_LIMIT),
        net.dns_client(&net.client6, vip6(dns::DNS_PORT), CLIENT_LIMIT),
    )
}

/// What `dig` in `client` gets from `vip` for the server's name: the
/// TXT string, or dig's complaint.
fn dig(net: &Net, client: &Ns, vip: SocketAddr) -> String {
    let server = format!("@{}", vip.ip());
    let port = vip.port().to_string();
    let args = [
        "dig",
        &server,
        "-p",
        &port,
        dns::WHOAMI,
        "TXT",
        "+short",
        "+tries=1",
        "+time=2",
    ];
    let out = net.lab.try_exec(client, &args);
    let text = String::from_utf8_lossy(if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    });
    text.trim().trim_matches('"').to_owned()
}

/// Row 9: `dig` from each single-family client to its VIP gets an answer
/// from an IPv6-only BIND, and a query load from each (one family at a
/// time, as in rows 1–2) spreads over all three.
fn row_9(net: &mut Net) -> anyhow::Result<Verdict> {
    let dig4 = dig(net, &net.client4, vip4(dns::DNS_PORT));
    let dig6 = dig(net, &net.client6, vip6(dns::DNS_PORT));
    let run = Duration::from_millis(1500);
    let r4 = net
        .dns_client(&net.client4, vip4(dns::DNS_PORT), run)
        .collect()?;
    let r6 = net
        .dns_client(&net.client6, vip6(dns::DNS_PORT), run)
        .collect()?;
    let (per4, per6) = (
        analysis::per_server(&r4.conns),
        analysis::per_server(&r6.conns),
    );
    let mut v = Verdict::default();
    v.check(
        "dig IPv4 client -> VIP4 answered by an IPv6-only server",
        WEB_SERVERS.contains(&dig4.as_str()),
    )
    .check(
        "dig IPv6 client -> VIP6 answered by an IPv6-only server",
        WEB_SERVERS.contains(&dig6.as_str()),
    )
    .check(
        "IPv4 queries balanced over the DNS servers within 1.5x",
        analysis::balanced(&per4, &WEB_SERVERS, 1.5),
    )
    .check(
        "IPv6 queries balanced over the DNS servers within 1.5x",
        analysis::balanced(&per6, &WEB_SERVERS, 1.5),
    )
    .check(
        "no failed query",
        analysis::failed(&r4.conns) + analysis::failed(&r6.conns) == 0,
    )
    .figure("dig", per_family(&dig4, &dig6))
    .figure("DNS servers (VIP4:53)", json!(per4))
    .figure("DNS servers (VIP6:53)", json!(per6))
    .figure("failed queries", failed_per_family(&r4, &r6))
    .figure(
        "first error",
        json!(analysis::first_error(&r4.conns).or(analysis::first_error(&r6.conns))),
    );
    Ok(v)
}

/// Row 10: srv2's BIND is killed while both clients ask. A query sent
/// before node1 notices goes to the dead server and is lost (UDP has no
/// handshake to retry on); every query after it must be answered.
fn row_10(net: &mut Net) -> anyhow::Result<Verdict> {
    let victim = dns_server("srv2");
    let clients = clients_dns(net);
    std::thread::sleep(Duration::from_millis(600));
    net.kill_server(&victim);
    let kill = now_ns();
    let down = wait(
        Duration::from_secs(5),
        "node1 marks srv2's DNS down",
        || server_state(net, 0, &victim).as_deref() == Some("down"),
    );
    let detected = now_ns();
    std::thread::sleep(Duration::from_millis(600));
    let (r4, r6, _) = finish(clients)?;
    let conns: Vec<Conn> = r4.conns.into_iter().chain(r6.conns).collect();
    let after = analysis::failed_since(&conns, detected);
    let lost = analysis::failed_since(&conns, kill) - after;
    let victim_after = conns
        .iter()
        .filter(|c| c.ok && c.start_ns > detected && c.server.as_deref() == Some("srv2"))
        .count();
    let answered_after = conns
        .iter()
        .filter(|c| c.ok && c.start_ns > detected)
        .count();
    net.start_dns("srv2")?;
    let restored = wait_steady(net, Duration::from_secs(10));
    let mut v = Verdict::default();
    v.check("node1 marked the DNS server down within 5 s", down.is_ok())
        .check("no query sent after the detection failed", after == 0)
        .check("queries answered after the detection", answered_after > 0)
        .check("no query answered by the killed server", victim_after == 0)
        .check("steady again once the server is back", restored.is_ok());
    v.figures(vec![
        ("killed", json!(victim)),
        ("queries answered", json!(analysis::succeeded(&conns))),
        (
            "marked down on node1 after_ms",
            json!(down.ok().map(super::clock::ms)),
        ),
        ("lost between the kill and the detection", json!(lost)),
        ("failed, sent after the detection", json!(after)),
        ("first error", json!(analysis::first_error(&conns))),
    ]);
    Ok(v)
}

/// Row 11: node1's daemon is SIGKILLed while both clients ask (as in row
/// 4b): node2 takes over both VIPs, and the clients' longest stretch
/// without an answered query is the DNS gap of a takeover. Then node1's
/// daemon is restarted and takes mastership back.
fn row_11(net: &mut Net) -> anyhow::Result<Verdict> {
    let vips = VipWatch::start(&net.nodes[1]);
    let clients = clients_dns(net);
    std::thread::sleep(PRE);
    let event = now_ns();
    net.kill_daemon(0);
    let [t4, t6] = watch(net, event, vrrp_limit(net), |n| n.holds(1).into());
    let (t4, t6) = added_earlier(vips, event, (t4, t6));
    std::thread::sleep(POST);
    let (r4, r6, end) = finish(clients)?;
    let (g4, g6) = (gap_ms(&r4.conns, event, end), gap_ms(&r6.conns, event, end));
    let answered_after = |r: &ClientRun, took: Option<f64>| {
        took.is_some_and(|t| {
            let at = event + (t * 1e6) as u64;
            r.conns.iter().any(|c| c.ok && c.start_ns > at)
        })
    };
    let (a4, a6) = (answered_after(&r4, t4), answered_after(&r6, t6));
    net.start_daemon(0);
    let restored = wait_steady(net, Duration::from_secs(10));
    let bound = super::clock::ms(takeover_bound(net));
    let mut v = Verdict::default();
    takeover_within(&mut v, t4, t6, bound);
    gaps_measured(&mut v, g4, g6);
    v.check("queries answered through node2 (IPv4)", a4)
        .check("queries answered through node2 (IPv6)", a6)
        .check(
            "steady again once node1's daemon restarted",
            restored.is_ok(),
        );
    v.figures(vec![
        ("takeover_ms", per_family(t4, t6)),
        ("DNS gap_ms", per_family(g4, g6)),
        ("failed queries", failed_per_family(&r4, &r6)),
        ("takeover bound_ms", json!(bound)),
    ]);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: `ip monitor address` lines of a restart: both VIPs deleted,
    // then added again on takeover. Output: both, VIP4 first.
    #[test]
    fn removed_vips_are_the_deletions_before_any_addition() {
        let events = "Deleted 2: eth0    inet6 fd00:231:1::10/64 scope global \n\
                      \x20      valid_lft forever preferred_lft forever\n\
                      Deleted 2: eth0    inet 10.231.1.10/24 scope global eth0\n\
                      2: eth0    inet 10.231.1.10/24 scope global eth0\n\
                      Deleted 2: eth0    inet 10.231.1.10/24 scope global eth0\n";
        assert_eq!(removed_vips(events), vec![VIP4, VIP6]);
    }

    // Input: the VIP was added before anything was deleted (a daemon that
    // did not clean up). Output: nothing counts as removed.
    #[test]
    fn an_addition_first_means_nothing_was_cleaned() {
        let events = "2: eth0    inet 10.231.1.10/24 scope global eth0\n\
                      Deleted 2: eth0    inet 10.231.1.10/24 scope global eth0\n";
        assert!(removed_vips(events).is_empty());
    }
}
