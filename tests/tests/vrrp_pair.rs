//! Two coexist nodes on one segment, VRRPv3 for IPv4 and IPv6 at 100 ms.
//!
//! ```text
//!   node1 coexist (eth0 10.77.0.1, fd77::1) ──┐
//!   node2 coexist (eth0 10.77.0.2, fd77::2) ──┤ br0 (namespace "sw")
//!   client        (eth0 10.77.0.100, fd77::100) ┘
//!   VIPs 10.77.0.10/24 (vrid 51), fd77::10/64 (vrid 52)
//! ```

mod vrrp_common;

use std::time::{Duration, Instant};

use coexist_tests::netns::enter_or_skip;
use nix::sys::signal::Signal;
use vrrp_common::*;

const INTERVAL: Duration = Duration::from_millis(100);

fn config(priority: u8) -> String {
    coexist_config(vec![
        vr("v4", 51, priority, INTERVAL, "10.77.0.10/24"),
        vr("v6", 52, priority, INTERVAL, "fd77::10/64"),
    ])
}

/// RFC 9568 §6.4.2 (Master_Down_Timer), §6.4.3 (shutdown sends priority 0)
/// and §8.1.1 / §8.2 (gratuitous ARP / unsolicited NA on takeover).
#[test]
fn vrrp_pair_elects_takes_over_and_announces() {
    if !enter_or_skip("vrrp_pair_elects_takes_over_and_announces") {
        return;
    }
    let _serial = serial();
    let seg = segment("pair");
    let logs = ["n1", "n2"];
    let n1 = seg.coexist(0, "n1", &config(200));
    let n2 = seg.coexist(1, "n2", &config(100));

    // The higher priority becomes master and is the only holder.
    for vip in [VIP4, VIP6] {
        assert!(
            seg.wait_holds(0, vip, Instant::now(), Duration::from_secs(5))
                .is_some(),
            "node1 never became master for {vip}\n{}",
            seg.logs(&logs)
        );
    }
    seg.assert_sole_holder(0, VIP4, Duration::from_millis(600), &logs);
    seg.assert_sole_holder(0, VIP6, Duration::from_millis(200), &logs);

    // The client learns node1's MAC for both virtual addresses.
    let mac1 = seg.lab.mac(&seg.nodes[0], "eth0");
    let mac2 = seg.lab.mac(&seg.nodes[1], "eth0");
    for vip in [VIP4, VIP6] {
        assert_eq!(
            seg.resolve(vip).as_deref(),
            Some(mac1.as_str()),
            "client's entry for {vip}"
        );
    }
    // Past the neighbour table's locktime (1 s), so an update is allowed.
    std::thread::sleep(Duration::from_millis(1100));

    // SIGKILL: the backup takes over when Master_Down_Interval runs out.
    let bound = master_down_interval(INTERVAL, 100) + Duration::from_millis(100);
    let killed = Instant::now();
    n1.signal(Signal::SIGKILL);
    let t4 = seg.wait_holds(1, VIP4, killed, Duration::from_secs(3));
    let t6 = seg.wait_holds(1, VIP6, killed, Duration::from_secs(3));
    let (t4, t6) = (
        t4.expect("node2 never took VIP4"),
        t6.expect("node2 never took VIP6"),
    );
    println!(
        "coexist takeover after SIGKILL: IPv4 {:.0} ms, IPv6 {:.0} ms (bound {:.0} ms)",
        ms(t4),
        ms(t6),
        ms(bound)
    );
    assert!(
        t4 <= bound && t6 <= bound,
        "takeover too slow\n{}",
        seg.logs(&logs)
    );

    // The gratuitous ARP / NA moved the client's entries to node2.
    for vip in [VIP4, VIP6] {
        let moved =
            coexist_support::wait_until(Duration::from_secs(2), Duration::from_millis(10), || {
                seg.lab.neighbour(&seg.client, vip).as_deref() == Some(mac2.as_str())
            });
        assert!(
            moved.is_some(),
            "client's neighbour entry for {vip} is {:?}, expected node2's {mac2}",
            seg.lab.neighbour(&seg.client, vip)
        );
    }
    drop(n1);

    // A node restarted after SIGKILL finds its stale addresses and removes
    // them before it enters Backup. It comes back with a lower priority,
    // so it must stay backup.
    assert!(
        seg.holds(0, VIP4) && seg.holds(0, VIP6),
        "SIGKILL left the addresses on node1"
    );
    let mut n1 = seg.coexist(0, "n1-restart", &config(50));
    assert!(
        seg.wait_released(0, VIP4, Duration::from_secs(5))
            && seg.wait_released(0, VIP6, Duration::from_secs(5)),
        "the restarted node1 kept its stale addresses\n{}",
        seg.logs(&["n1-restart"])
    );
    seg.assert_sole_holder(1, VIP4, Duration::from_millis(600), &["n1-restart", "n2"]);
    seg.assert_sole_holder(1, VIP6, Duration::from_millis(100), &["n1-restart", "n2"]);

    // SIGTERM of the master: priority 0, the backup takes over after
    // Skew_Time only.
    let bound = skew_time(INTERVAL, 50) + Duration::from_millis(100);
    let stopped = Instant::now();
    n2.signal(Signal::SIGTERM);
    let t4 = seg
        .wait_holds(0, VIP4, stopped, Duration::from_secs(3))
        .expect("node1 never took VIP4");
    let t6 = seg
        .wait_holds(0, VIP6, stopped, Duration::from_secs(3))
        .expect("node1 never took VIP6");
    println!(
        "coexist takeover after SIGTERM: IPv4 {:.0} ms, IPv6 {:.0} ms (bound {:.0} ms)",
        ms(t4),
        ms(t6),
        ms(bound)
    );
    assert!(
        t4 <= bound && t6 <= bound,
        "takeover too slow\n{}",
        seg.logs(&["n1-restart", "n2"])
    );
    assert!(
        seg.wait_released(1, VIP4, Duration::from_secs(2)),
        "stopped node2 kept VIP4"
    );
    assert!(
        seg.wait_released(1, VIP6, Duration::from_secs(2)),
        "stopped node2 kept VIP6"
    );
    let mut n2 = n2;
    assert!(
        n2.wait_exit(Duration::from_secs(5)).is_some(),
        "node2 did not exit on SIGTERM"
    );

    for name in ["n1", "n2", "n1-restart"] {
        let log = seg.log(name);
        assert!(
            coexist_complaints(&log).is_empty(),
            "{name} discarded packets:\n{log}"
        );
    }
    n1.signal(Signal::SIGTERM);
    assert!(n1.wait_exit(Duration::from_secs(5)).is_some());
}

/// The admin board shows each instance's state and master (RFC 9568
/// §6.4: Master's own address as master).
#[test]
fn vrrp_pair_status_shows_instances() {
    if !enter_or_skip("vrrp_pair_status_shows_instances") {
        return;
    }
    let _serial = serial();
    let seg = segment("stat");
    let _n1 = seg.coexist(0, "n1", &config(200));
    let _n2 = seg.coexist(1, "n2", &config(100));
    assert!(seg
        .wait_holds(0, VIP4, Instant::now(), Duration::from_secs(5))
        .is_some());
    assert!(seg
        .wait_holds(0, VIP6, Instant::now(), Duration::from_secs(5))
        .is_some());
    let binary = coexist_tests::daemon::coexist_binary();
    let binary = binary.to_str().expect("utf-8 path");
    let status = |i: usize| -> serde_json::Value {
        let out = seg.lab.exec(
            &seg.nodes[i],
            &[binary, "status", "--admin", "127.0.0.1:9100", "--json"],
        );
        serde_json::from_str(&out).expect("status JSON")
    };
    let find = |s: &serde_json::Value, name: &str| {
        s["vrrp"]
            .as_array()
            .and_then(|a| a.iter().find(|v| v["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no vrrp {name} in {s}"))
    };
    // The board is published by its own task after the addresses are in
    // place: poll briefly rather than race it.
    coexist_support::wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
        let s = status(0);
        find(&s, "v4")["state"] == "master" && find(&s, "v6")["state"] == "master"
    });
    let s1 = status(0);
    let s2 = status(1);
    assert_eq!(
        find(&s1, "v4")["state"],
        "master",
        "{s1}\n{}",
        seg.logs(&["n1", "n2"])
    );
    assert_eq!(find(&s1, "v4")["master"], "10.77.0.1");
    assert_eq!(find(&s2, "v4")["state"], "backup");
    assert_eq!(find(&s2, "v4")["master"], "10.77.0.1");
    assert_eq!(find(&s2, "v6")["state"], "backup");
    assert_eq!(find(&s1, "v6")["priority"], 200);
    // The VRRP metrics named in DESIGN.md, read inside node1's namespace.
    let metrics = seg.lab.exec(
        &seg.nodes[0],
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9100; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
        ],
    );
    for name in [
        "vrrp_state",
        "vrrp_transitions_total",
        "vrrp_adverts_sent_total",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    let state_line = metrics
        .lines()
        .find(|l| l.starts_with("vrrp_state") && l.contains("v4"))
        .unwrap_or_else(|| panic!("no vrrp_state for v4:\n{metrics}"));
    assert!(
        state_line.ends_with(" 2"),
        "node1 v4 should be master (2): {state_line}"
    );
    let master6 = find(&s2, "v6")["master"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        master6.starts_with("fe80::"),
        "IPv6 master should be node1's link-local, got {master6}"
    );
}
