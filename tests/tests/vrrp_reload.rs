//! Reloading VRRP instances (issue: hot reload), two coexist nodes, v3 at 100 ms.
//!
//! ```text
//!   node1 coexist (eth0 10.77.0.1, fd77::1) ──┐
//!   node2 coexist (eth0 10.77.0.2, fd77::2) ──┤ br0 (namespace "sw")
//!   client        (eth0 10.77.0.100, fd77::100) ┘
//!   VIPs 10.77.0.10/24 (vrid 51), fd77::10/64 (vrid 52)
//! ```
//! A reload that changes only a priority causes no transition by itself; a
//! priority below the peer's hands mastership over (the peer preempts); an
//! instance removed by a reload gives its address up at once (priority 0)
//! and its series leave `/metrics`.

mod vrrp_common;

use std::time::{Duration, Instant};

use coexist_tests::netns::enter_or_skip;
use nix::sys::signal::Signal;
use vrrp_common::*;

/// `v4` at `v4_priority`, and `v6` (if `v6_priority` is given).
fn config(v4_priority: u8, v6_priority: Option<u8>) -> String {
    let interval = Duration::from_millis(100);
    let mut instances = vec![vr("v4", 51, v4_priority, interval, "10.77.0.10/24")];
    instances.extend(v6_priority.map(|p| vr("v6", 52, p, interval, "fd77::10/64")));
    coexist_config(instances)
}

/// State changes logged by the wire layer ("VRRP state changed from=…").
fn transitions(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("VRRP state changed"))
        .count()
}

#[test]
fn vrrp_reload_changes_priority_without_spurious_transitions_and_releases_removed_instances() {
    if !enter_or_skip("vrrp_reload") {
        return;
    }
    let _serial = serial();
    let seg = segment("reload");
    let n1 = seg.coexist(0, "n1", &config(200, Some(200)));
    let _n2 = seg.coexist(1, "n2", &config(100, Some(100)));
    for vip in [VIP4, VIP6] {
        assert!(
            seg.wait_holds(0, vip, Instant::now(), Duration::from_secs(5))
                .is_some(),
            "node1 never became master for {vip}\n{}",
            seg.logs(&["n1", "n2"])
        );
    }
    let config_path = seg.log_path("n1").with_file_name("n1.toml");
    let reload = |text: &str| {
        std::fs::write(&config_path, text).expect("rewrite config");
        n1.signal(Signal::SIGHUP);
    };

    // 200 → 150: still above node2; nothing may change hands.
    let before = transitions(&seg.log("n1"));
    reload(&config(150, Some(200)));
    std::thread::sleep(Duration::from_millis(600));
    let log = seg.log("n1");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(
        transitions(&log),
        before,
        "a priority change caused a transition:\n{log}"
    );
    seg.assert_sole_holder(0, VIP4, Duration::from_millis(300), &["n1", "n2"]);

    // 150 → 50: node2 (100, preempt) hears lower-priority adverts and
    // takes VIP4; VIP6 stays on node1.
    let started = Instant::now();
    reload(&config(50, Some(200)));
    assert!(
        seg.wait_holds(1, VIP4, started, Duration::from_secs(3))
            .is_some(),
        "node2 did not preempt after node1's priority dropped\n{}",
        seg.logs(&["n1", "n2"])
    );
    assert!(
        seg.wait_released(0, VIP4, Duration::from_secs(2)),
        "node1 kept VIP4"
    );
    assert!(
        seg.holds(0, VIP6),
        "VIP6 moved although its instance did not change"
    );

    // v6 removed: node1 sends priority 0 and removes the address, so node2
    // takes over after Skew_Time rather than Master_Down_Interval.
    let started = Instant::now();
    reload(&config(50, None));
    let took = seg
        .wait_holds(1, VIP6, started, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("node2 never took VIP6\n{}", seg.logs(&["n1", "n2"])));
    assert!(
        seg.wait_released(0, VIP6, Duration::from_secs(2)),
        "node1 kept VIP6"
    );
    let bound = skew_time(Duration::from_millis(100), 100) + Duration::from_millis(200);
    assert!(
        took <= bound,
        "VIP6 took {:.0} ms to move; a clean release allows {:.0} ms",
        ms(took),
        ms(bound)
    );

    // The removed instance's series went with it (its last state change,
    // made while it stopped, too); the kept one's stay.
    let metrics = seg.lab.exec(
        &seg.nodes[0],
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9100; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
        ],
    );
    assert!(
        metrics.contains("vrrp_state{vrrp_instance=\"v4\"}"),
        "no vrrp_state for v4:\n{metrics}"
    );
    let stale: Vec<&str> = (metrics.lines())
        .filter(|l| l.contains("vrrp_instance=\"v6\""))
        .collect();
    assert!(stale.is_empty(), "series of the removed v6: {stale:#?}");

    // Every VRRP line names its instance: starts, transitions, reloads,
    // the removal and the release.
    let log = seg.log("n1");
    assert!(transitions(&log) >= 4, "{log}");
    let unnamed = vrrp_lines_without_instance(&log);
    assert!(
        unnamed.is_empty(),
        "VRRP lines without instance: {unnamed:#?}"
    );
}
