//! Scale-out behind an ECMP router: every coexist node announces the VIPs
//! through its BIRD while it can serve, and the router spreads new flows
//! over the nodes announcing (issue rows E1, E2, E3, E7; E8: E1 and E2
//! again with FRR as the router; E5 and E6 with a resilient next-hop group
//! on the router). The topology is drawn in `coexist_tests::ecmp`:
//!
//! ```text
//!   client ── router (BIRD or FRR, ECMP, L4 hash) ──┬── n1: coexist + BIRD ──► [::1]:8080 "n1"
//!                                                   ├── n2: coexist + BIRD ──► [::1]:8080 "n2"
//!                                                   └── n3: coexist + BIRD ──► [::1]:8080 "n3"
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use coexist_tests::daemon::{coexist_binary, DaemonProcess};
use coexist_tests::dns::tools_or_skip;
use coexist_tests::ecmp::{
    EcmpLab, Family, Hashing, Router, ANNOUNCE_AFTER, BREAK_NOTICED, IDLE_TIMER_S, TOOLS,
    WITHDRAW_SETTLE,
};
use coexist_tests::netns::{enter_or_skip, Lab};
use coexist_tests::netns_thread;

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];
/// BGP sessions start within a second or two; allow for a loaded machine.
const CONVERGE: Duration = Duration::from_secs(30);

fn all(nodes: usize) -> BTreeSet<usize> {
    (1..=nodes).collect()
}

/// Starts the lab with a BIRD router and waits until the router has a
/// path to every node for both families.
fn converged(tag: &str, nodes: usize) -> EcmpLab {
    converged_with(tag, nodes, Router::Bird)
}

fn converged_with(tag: &str, nodes: usize, router: Router) -> EcmpLab {
    converged_hashing(tag, nodes, router, Hashing::Threshold)
}

fn converged_hashing(tag: &str, nodes: usize, router: Router, hashing: Hashing) -> EcmpLab {
    let lab = EcmpLab::start_hashing(tag, nodes, &coexist_binary(), router, hashing);
    for family in FAMILIES {
        let took = lab.wait_paths(family, &all(nodes), CONVERGE);
        assert!(
            took.is_some(),
            "{}: the router has paths {:?}, not every node; logs:\n{}",
            family.label(),
            lab.paths(family),
            lab.logs()
        );
    }
    lab
}

// E1: three nodes announce; the router holds three paths per family and
// new connections from IPv4 and IPv6 clients spread over all three (each
// reaching the node's IPv6 server), none failing. Then the operator
// drains node2 by hand and brings it back.
#[test]
fn new_connections_spread_over_every_announcing_node() {
    spread_and_drain(
        "new_connections_spread_over_every_announcing_node",
        Router::Bird,
    );
}

// E8 for E1: the same with FRR as the router (zebra, bgpd with
// `maximum-paths`, bfdd); the nodes and their BIRD do not change.
#[test]
fn an_frr_router_spreads_new_connections_over_every_announcing_node() {
    spread_and_drain(
        "an_frr_router_spreads_new_connections_over_every_announcing_node",
        Router::Frr,
    );
}

fn spread_and_drain(test: &str, router: Router) {
    if !enter_or_skip(test) || !tools_or_skip(test, router.tools()) {
        return;
    }
    let tag = match router {
        Router::Bird => "ecmp1",
        Router::Frr => "ecmpf1",
    };
    let lab = converged_with(tag, 3, router);
    const CONNECTIONS: usize = 600;
    for family in FAMILIES {
        let seen = lab.spread(family, CONNECTIONS);
        println!(
            "E1 ({} router) {} client, {CONNECTIONS} connections: {seen:?}",
            router.label(),
            family.label()
        );
        assert_eq!(seen.get("failed"), None, "{seen:?}");
        for node in ["n1", "n2", "n3"] {
            let share = seen.get(node).copied().unwrap_or(0) as f64 / CONNECTIONS as f64;
            // 33.3 %, with room for the hash of 600 random source ports
            // (the lab's 3,000 connections show the ± 4 point figure).
            assert!(
                (0.2..=0.47).contains(&share),
                "{}: {node} took {:.1} % ({seen:?})",
                family.label(),
                share * 100.0
            );
        }
    }

    // A manual drain: `coexist announce web withdraw` on node2 takes it off
    // the router; `announce` brings it back after announce_after.
    let node2 = &lab.nodes[1];
    let announce = |action: &str, group: &str| {
        lab.lab.try_exec(
            &node2.ns,
            &[
                coexist_binary().to_str().unwrap(),
                "announce",
                group,
                action,
                "--socket",
                node2.control_socket.to_str().unwrap(),
            ],
        )
    };
    let out = announce("withdraw", "web");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("web/ipv4: withdrawn (withdrawn by the operator)"),
        "{said}"
    );
    let survivors: BTreeSet<usize> = [1, 3].into();
    for family in FAMILIES {
        let took = lab.wait_paths(family, &survivors, Duration::from_secs(10));
        assert!(
            took.is_some(),
            "{}: {:?}",
            family.label(),
            lab.paths(family)
        );
    }
    let out = announce("withdraw", "mail");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no [[announce]] group is named \"mail\""),
        "{said}"
    );
    assert!(announce("announce", "web").status.success());
    for family in FAMILIES {
        let took = lab.wait_paths(family, &all(3), Duration::from_secs(10));
        assert!(
            took.is_some(),
            "{}: {:?}",
            family.label(),
            lab.paths(family)
        );
    }

    // SIGTERM withdraws first and keeps serving for withdraw_settle: the
    // router drops node3 while its daemon still runs.
    let mut lab = lab;
    let coexist = lab.nodes[2].coexist.as_ref().expect("running");
    coexist.signal(nix::sys::signal::Signal::SIGTERM);
    let took = lab.wait_gone(Family::V4, 3, WITHDRAW_SETTLE);
    let exited = lab.nodes[2]
        .coexist
        .as_mut()
        .expect("running")
        .exited()
        .unwrap();
    assert!(
        took.is_some(),
        "node3 not withdrawn within withdraw_settle: {:?}; logs:\n{}",
        lab.paths(Family::V4),
        lab.logs()
    );
    let coexist = lab.nodes[2].coexist.as_mut().expect("running");
    assert_eq!(exited, None, "exited before withdraw_settle was over");
    let status = coexist.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

// E2: node2's tracked frontend loses its last server: the router drops
// node2 for both families while n1 and n3 stay, BGP sessions stay up, and
// node2 comes back once its server is up for announce_after.
#[test]
fn a_node_whose_tracked_frontend_fails_is_withdrawn_and_returns() {
    withdrawn_and_back(
        "a_node_whose_tracked_frontend_fails_is_withdrawn_and_returns",
        Router::Bird,
    );
}

// E8 for E2: the same with FRR as the router.
#[test]
fn an_frr_router_drops_a_node_whose_tracked_frontend_fails_and_takes_it_back() {
    withdrawn_and_back(
        "an_frr_router_drops_a_node_whose_tracked_frontend_fails_and_takes_it_back",
        Router::Frr,
    );
}

fn withdrawn_and_back(test: &str, router: Router) {
    if !enter_or_skip(test) || !tools_or_skip(test, router.tools()) {
        return;
    }
    let tag = match router {
        Router::Bird => "ecmp2",
        Router::Frr => "ecmpf2",
    };
    let lab = converged_with(tag, 3, router);
    let sessions_before = lab.router_sessions();
    assert_eq!(sessions_before.len(), 6, "{sessions_before:?}");
    let node2 = &lab.nodes[1];

    node2.set_server_up(false);
    let survivors: BTreeSet<usize> = [1, 3].into();
    for family in FAMILIES {
        let took = lab.wait_paths(family, &survivors, Duration::from_secs(10));
        assert!(
            took.is_some(),
            "{}: node2 not withdrawn: paths {:?}; logs:\n{}",
            family.label(),
            lab.paths(family),
            lab.logs()
        );
        println!(
            "E2 ({} router) {}: node2 withdrawn {:?} after its server stopped (check interval 100 ms)",
            router.label(),
            family.label(),
            took.unwrap()
        );
    }
    // While withdrawn, every new connection lands on the others.
    for family in FAMILIES {
        let seen = lab.spread(family, 60);
        assert_eq!(seen.get("n2"), None, "{seen:?}");
        assert_eq!(seen.get("failed"), None, "{seen:?}");
    }
    let status = lab.lab.exec(
        &node2.ns,
        &[
            coexist_binary().to_str().unwrap(),
            "status",
            "--admin",
            "127.0.0.1:9100",
        ],
    );
    assert!(
        status.contains("withdrawn") && status.contains("frontend \"web\" has no usable server"),
        "{status}"
    );

    node2.set_server_up(true);
    let every = all(3);
    for family in FAMILIES {
        let took = lab.wait_paths(family, &every, Duration::from_secs(10));
        assert!(
            took.is_some(),
            "{}: node2 not announced again: paths {:?}; logs:\n{}",
            family.label(),
            lab.paths(family),
            lab.logs()
        );
        let took = took.unwrap();
        println!(
            "E2 ({} router) {}: node2 back {took:?} after its server restarted (announce_after {ANNOUNCE_AFTER:?})",
            router.label(),
            family.label()
        );
        if family == Family::V4 {
            assert!(
                took >= ANNOUNCE_AFTER,
                "announced before announce_after: {took:?}"
            );
        }
    }
    // The withdrawal and the return were route updates, not session resets.
    let sessions_after = lab.router_sessions();
    println!(
        "E2 ({} router) sessions: {sessions_after:?}",
        router.label()
    );
    assert!(
        EcmpLab::sessions_unchanged(&sessions_before, &sessions_after),
        "sessions before {sessions_before:?}, after {sessions_after:?}; logs:\n{}",
        lab.logs()
    );
    assert!(
        sessions_after
            .iter()
            .all(|(_, state, _)| state == "Established"),
        "{sessions_after:?}"
    );
}

// E3: coexist dies on node2 (SIGKILL: no shutdown code runs, BIRD keeps
// running): the TUN device the routes point at goes with the process, so
// BIRD withdraws them. Then node3's link dies silently: BFD (100 ms x 5)
// takes its sessions down long before the BGP hold timer would.
#[test]
fn a_killed_daemon_or_a_dead_link_withdraws_the_node() {
    let test = "a_killed_daemon_or_a_dead_link_withdraws_the_node";
    if !enter_or_skip(test) || !tools_or_skip(test, TOOLS) {
        return;
    }
    let mut lab = converged("ecmp3", 3);
    let coexist = lab.nodes[1].coexist.as_ref().expect("running");
    coexist.signal(nix::sys::signal::Signal::SIGKILL);
    let survivors: BTreeSet<usize> = [1, 3].into();
    for family in FAMILIES {
        let took = lab.wait_paths(family, &survivors, Duration::from_secs(5));
        assert!(
            took.is_some(),
            "{}: node2 still routed after SIGKILL: {:?}; logs:\n{}",
            family.label(),
            lab.paths(family),
            lab.logs()
        );
        println!(
            "E3 {}: withdrawn {:?} after SIGKILL",
            family.label(),
            took.unwrap()
        );
    }
    lab.nodes[1].coexist.take();

    lab.cut_link(&lab.nodes[2]);
    let only: BTreeSet<usize> = [1].into();
    for family in FAMILIES {
        // The default hold timer is 240 s: only BFD gets here in 5 s.
        let took = lab.wait_paths(family, &only, Duration::from_secs(5));
        assert!(
            took.is_some(),
            "{}: node3 still routed after its link died: {:?}; logs:\n{}",
            family.label(),
            lab.paths(family),
            lab.logs()
        );
        println!(
            "E3 {}: withdrawn {:?} after the link died",
            family.label(),
            took.unwrap()
        );
    }
    for family in FAMILIES {
        let seen = lab.spread(family, 30);
        assert_eq!(seen.get("n1"), Some(&30), "{seen:?}");
    }
}

// E7: a maglev backend behind three nodes: 100 clients per family, 10 new
// connections each, spread over the nodes by the router's hash, and each
// client's connections all land on one server whichever node took them
// (every node builds the same table from the same servers).
#[test]
fn maglev_keeps_each_client_on_one_server_across_nodes() {
    let test = "maglev_keeps_each_client_on_one_server_across_nodes";
    if !enter_or_skip(test) || !tools_or_skip(test, TOOLS) {
        return;
    }
    let lab = converged("ecmp7", 3);
    let clients = lab.client_addresses(100);
    for (family, sources) in [
        (Family::V4, clients.iter().map(|c| c.0).collect::<Vec<_>>()),
        (Family::V6, clients.iter().map(|c| c.1).collect()),
    ] {
        let answers = lab.sticky(&sources, 10);
        let mut nodes_seen = BTreeSet::new();
        let mut servers_seen = BTreeSet::new();
        let mut clients_over_several_nodes = 0;
        for (source, answers) in sources.iter().zip(&answers) {
            let servers: BTreeSet<&str> = answers.iter().map(|(s, _)| s.as_str()).collect();
            let nodes: BTreeSet<&str> = answers.iter().map(|(_, n)| n.as_str()).collect();
            assert_eq!(
                servers.len(),
                1,
                "{}: client {source} reached {answers:?}",
                family.label()
            );
            assert!(!servers.contains("failed"), "{source}: {answers:?}");
            clients_over_several_nodes += usize::from(nodes.len() > 1);
            nodes_seen.extend(nodes.into_iter().map(str::to_owned));
            servers_seen.extend(servers.into_iter().map(str::to_owned));
        }
        println!(
            "E7 {}: 100 clients x 10 connections, each on one server; {clients_over_several_nodes} clients came through more than one node; nodes {nodes_seen:?}, servers {servers_seen:?}",
            family.label()
        );
        // The claim needs clients whose connections took different nodes.
        assert!(
            clients_over_several_nodes >= 50,
            "{clients_over_several_nodes}"
        );
        assert_eq!(nodes_seen.len(), 3, "{nodes_seen:?}");
        assert!(servers_seen.len() >= 2, "{servers_seen:?}");
    }
}

// E5 with resilient hashing: the router's route uses a resilient next-hop
// group (BIRD's paths copied into `ip nexthop ... type resilient`).
// node1's daemon dies under 300 long-lived connections: its own
// connections break, none of those on n2 and n3 does. (Hash-threshold
// would move part of node2's hash range to node3 here.)
#[test]
fn with_a_resilient_group_losing_a_node_breaks_no_connection_on_the_others() {
    let test = "with_a_resilient_group_losing_a_node_breaks_no_connection_on_the_others";
    if !enter_or_skip(test) || !tools_or_skip(test, TOOLS) {
        return;
    }
    let lab = converged_hashing("ecmpr5", 3, Router::Bird, Hashing::Resilient);
    let long = lab.long_lived(150);
    std::thread::sleep(Duration::from_secs(1));
    let before = long.now();
    assert!(before.iter().all(|c| !c.broken), "{before:?}");
    let coexist = lab.nodes[0].coexist.as_ref().expect("running");
    coexist.signal(nix::sys::signal::Signal::SIGKILL);
    for family in FAMILIES {
        let took = lab.wait_gone(family, 1, Duration::from_secs(5));
        assert!(
            took.is_some(),
            "{}: {:?}",
            family.label(),
            lab.paths(family)
        );
    }
    std::thread::sleep(BREAK_NOTICED);
    let conns = long.finish();
    for family in FAMILIES {
        let on = |node: &str| -> (usize, usize) {
            let here: Vec<_> = (conns.iter())
                .filter(|c| c.family == family && c.node == node)
                .collect();
            (here.len(), here.iter().filter(|c| c.broken).count())
        };
        let (n1, n1_broken) = on("n1");
        let (n2, n2_broken) = on("n2");
        let (n3, n3_broken) = on("n3");
        println!(
            "E5 resilient {}: broken n1 {n1_broken}/{n1}, n2 {n2_broken}/{n2}, n3 {n3_broken}/{n3}",
            family.label()
        );
        assert!(n1 > 0 && n2 > 0 && n3 > 0, "{conns:?}");
        assert_eq!(n1_broken, n1, "node1's connections died with its daemon");
        assert_eq!((n2_broken, n3_broken), (0, 0), "{}", family.label());
    }
}

// E6 with resilient hashing: a fourth node, withdrawn until 300
// long-lived connections are open, announces. No connection breaks (their
// buckets are busy), and once idle buckets have moved the new node takes
// new connections.
#[test]
fn with_a_resilient_group_a_joining_node_breaks_no_connection() {
    let test = "with_a_resilient_group_a_joining_node_breaks_no_connection";
    if !enter_or_skip(test) || !tools_or_skip(test, TOOLS) {
        return;
    }
    let lab = converged_hashing("ecmpr6", 4, Router::Bird, Hashing::Resilient);
    let node4 = &lab.nodes[3];
    let announce = |action: &str| {
        lab.lab.exec(
            &node4.ns,
            &[
                coexist_binary().to_str().unwrap(),
                "announce",
                "web",
                action,
                "--socket",
                node4.control_socket.to_str().unwrap(),
            ],
        )
    };
    announce("withdraw");
    for family in FAMILIES {
        let took = lab.wait_paths(family, &all(3), Duration::from_secs(5));
        assert!(
            took.is_some(),
            "{}: {:?}",
            family.label(),
            lab.paths(family)
        );
    }
    let long = lab.long_lived(150);
    std::thread::sleep(Duration::from_secs(1));
    announce("announce");
    for family in FAMILIES {
        let took = lab.wait_paths(family, &all(4), Duration::from_secs(5));
        assert!(
            took.is_some(),
            "{}: {:?}",
            family.label(),
            lab.paths(family)
        );
    }
    std::thread::sleep(Duration::from_secs(IDLE_TIMER_S) + BREAK_NOTICED);
    let new: Vec<_> = FAMILIES.iter().map(|f| lab.spread(*f, 200)).collect();
    let conns = long.finish();
    for (family, new) in FAMILIES.iter().zip(new) {
        let broken: Vec<_> = (conns.iter())
            .filter(|c| c.family == *family && c.broken)
            .collect();
        println!(
            "E6 resilient {}: {} of 150 broken; new connections afterwards {new:?}",
            family.label(),
            broken.len()
        );
        assert!(broken.is_empty(), "{broken:?}");
        assert!(new.get("n4").is_some_and(|n| *n > 0), "{new:?}");
        assert_eq!(new.get("failed"), None, "{new:?}");
    }
}

/// `[bgp]` `interface` names the TUN device the announced routes point at;
/// it exists while the daemon runs and goes with it, so BIRD drops the
/// routes of a dead daemon. No BIRD is needed to see that: the daemon
/// starts, and keeps trying to reach BIRD, without one.
///
/// ```text
///   namespace cx-<pid>-bgpif-node (the test thread enters it)
///     coexist: frontend 192.0.2.77:P (free bind), TUN "cxnamed0"
/// ```
#[test]
fn the_announce_interface_is_the_one_named_and_goes_with_the_daemon() {
    let test = "the_announce_interface_is_the_one_named_and_goes_with_the_daemon";
    if !enter_or_skip(test) {
        return;
    }
    let mut lab = Lab::new("bgpif");
    let node = lab.ns("node");
    netns_thread::enter(&node);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[admin]\nlisten = \"\"\n\n[[frontend]]\nname = \"web\"\nlisten = [\"192.0.2.77:8080\"]\nbackend = \"web\"\n\n[[backend]]\nname = \"web\"\nservers = [{{ address = \"127.0.0.1:8081\" }}]\n\n[bgp]\ncontrol_socket = \"{}\"\ninterface = \"cxnamed0\"\nwithdraw_settle = \"0s\"\n\n[[announce]]\nname = \"web\"\nprefixes = [\"192.0.2.77/32\"]\n",
        dir.path().join("no-bird.ctl").display()
    );
    let links = || {
        let out = std::process::Command::new("ip")
            .args(["-br", "link"])
            .output()
            .expect("run ip");
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        out.lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let mut daemon = DaemonProcess::start_ready(&config);
    let running = links();
    assert!(
        running.iter().any(|l| l == "cxnamed0"),
        "links while running: {running:?}; log:\n{}",
        daemon.log()
    );
    assert!(!running.iter().any(|l| l == "coexist0"), "{running:?}");
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        daemon.wait_exit(Duration::from_secs(15)).is_some(),
        "still running; log:\n{}",
        daemon.log()
    );
    let after = links();
    assert!(!after.iter().any(|l| l == "cxnamed0"), "{after:?}");
    drop(lab);
}
