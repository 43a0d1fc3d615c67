//! coexist and keepalived on one segment agree on the master, for VRRPv3
//! over IPv4 and IPv6 and VRRPv2 over IPv4; and, for comparison, two
//! keepalived nodes' takeover times in the same lab.
//!
//! ```text
//!   node1 coexist    (eth0 10.77.0.1, fd77::1) ──┐
//!   node2 keepalived (eth0 10.77.0.2, fd77::2) ──┤ br0 (namespace "sw")
//!   client           (eth0 10.77.0.100, fd77::100) ┘
//!   VIP 10.77.0.10/24 or fd77::10/64, vrid 51
//! ```

mod vrrp_common;

use std::time::{Duration, Instant};

use coexist_support::config::Vrrp;
use coexist_tests::netns::enter_or_skip;
use nix::sys::signal::Signal;
use vrrp_common::*;

fn keepalived_available(test: &str) -> bool {
    peer_available(test, "keepalived", keepalived_installed())
}

struct Case {
    tag: &'static str,
    version: u8,
    interval_ms: u64,
    vip: &'static str,
    prefix: u8,
}

fn keepalived_config(case: &Case, priority: u8) -> String {
    let interval = case.interval_ms as f64 / 1000.0;
    format!(
        "global_defs {{\n  router_id ka\n}}\nvrrp_instance vi {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int {interval}\n  version {}\n  virtual_ipaddress {{\n    {}/{}\n  }}\n}}\n",
        case.version, case.vip, case.prefix
    )
}

fn coexist(case: &Case, priority: u8) -> String {
    let interval = Duration::from_millis(case.interval_ms);
    let address = format!("{}/{}", case.vip, case.prefix);
    coexist_config(vec![Vrrp {
        version: Some(case.version),
        ..vr("vi", 51, priority, interval, &address)
    }])
}

/// RFC 9568 §6.4 between two implementations: each becomes master with
/// the higher priority (by preemption), each takes over when the other
/// stops (priority 0, Skew_Time), and neither complains about the other's
/// packets.
fn interop(test: &str, case: Case) {
    if !enter_or_skip(test) || !keepalived_available(test) {
        return;
    }
    let _serial = serial();
    let seg = segment(case.tag);
    let vip = case.vip;
    let limit = Duration::from_millis(case.interval_ms * 4 + 2000);
    let all = ["cx1", "ka1", "cx2", "ka2"];

    // keepalived alone becomes master; coexist with a higher priority
    // preempts it.
    let mut ka = seg.keepalived(1, "ka1", &keepalived_config(&case, 100));
    assert!(
        seg.wait_holds(1, vip, Instant::now(), limit * 2).is_some(),
        "keepalived never became master\n{}",
        seg.logs(&all)
    );
    let mut cx = seg.coexist(0, "cx1", &coexist(&case, 200));
    assert!(
        seg.wait_holds(0, vip, Instant::now(), limit).is_some(),
        "coexist (priority 200) did not preempt keepalived (100)\n{}",
        seg.logs(&all)
    );
    assert!(
        seg.wait_released(1, vip, limit),
        "keepalived kept {vip}\n{}",
        seg.logs(&all)
    );
    seg.assert_sole_holder(0, vip, Duration::from_millis(case.interval_ms * 5), &all);

    // coexist stops: keepalived takes over.
    let stopped = Instant::now();
    cx.signal(Signal::SIGTERM);
    let t_ka = seg.wait_holds(1, vip, stopped, limit);
    assert!(
        t_ka.is_some(),
        "keepalived did not take over from a stopped coexist\n{}",
        seg.logs(&all)
    );
    assert!(
        cx.wait_exit(Duration::from_secs(5)).is_some(),
        "coexist did not exit"
    );
    assert!(!seg.holds(0, vip), "the stopped coexist kept {vip}");

    // coexist back with a lower priority stays backup.
    let mut cx = seg.coexist(0, "cx2", &coexist(&case, 50));
    std::thread::sleep(Duration::from_millis(case.interval_ms * 5));
    seg.assert_sole_holder(1, vip, Duration::from_millis(case.interval_ms * 3), &all);

    // keepalived stops: coexist takes over.
    let stopped = Instant::now();
    ka.signal(Signal::SIGTERM);
    let t_cx = seg.wait_holds(0, vip, stopped, limit);
    assert!(
        t_cx.is_some(),
        "coexist did not take over from a stopped keepalived\n{}",
        seg.logs(&all)
    );
    assert!(
        ka.wait_exit(Duration::from_secs(5)).is_some(),
        "keepalived did not exit"
    );
    seg.lab.signal_all(&seg.nodes[1], Signal::SIGKILL);

    // keepalived back with a higher priority preempts coexist.
    let _ka = seg.keepalived(1, "ka2", &keepalived_config(&case, 100));
    assert!(
        seg.wait_holds(1, vip, Instant::now(), limit * 2).is_some(),
        "keepalived (100) did not preempt coexist (50)\n{}",
        seg.logs(&all)
    );
    assert!(
        seg.wait_released(0, vip, limit),
        "coexist kept {vip} after keepalived preempted\n{}",
        seg.logs(&all)
    );
    std::thread::sleep(Duration::from_millis(case.interval_ms * 3));

    println!(
        "{test}: keepalived took over from SIGTERMed coexist in {:.0} ms; coexist from SIGTERMed keepalived in {:.0} ms",
        ms(t_ka.unwrap_or_default()),
        ms(t_cx.unwrap_or_default())
    );
    for name in ["cx1", "cx2"] {
        let log = seg.log(name);
        let complaints = coexist_complaints(&log);
        assert!(
            complaints.is_empty(),
            "{name} discarded keepalived's packets: {complaints:#?}\n{log}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("VRRP state changed from=backup to=master")),
            "{name} never became master:\n{log}"
        );
    }
    cx.signal(Signal::SIGTERM);
    assert!(cx.wait_exit(Duration::from_secs(5)).is_some());
    for name in ["ka1", "ka2"] {
        let log = seg.log(name);
        let complaints = keepalived_complaints(&log);
        assert!(
            complaints.is_empty(),
            "{name} complained: {complaints:#?}\n{log}"
        );
        assert!(
            log.contains("Entering MASTER STATE"),
            "{name} never became master:\n{log}"
        );
    }
}

#[test]
fn vrrp_keepalived_interop_v3_ipv4() {
    interop(
        "vrrp_keepalived_interop_v3_ipv4",
        Case {
            tag: "k34",
            version: 3,
            interval_ms: 100,
            vip: VIP4,
            prefix: 24,
        },
    );
}

#[test]
fn vrrp_keepalived_interop_v3_ipv6() {
    interop(
        "vrrp_keepalived_interop_v3_ipv6",
        Case {
            tag: "k36",
            version: 3,
            interval_ms: 100,
            vip: VIP6,
            prefix: 64,
        },
    );
}

#[test]
fn vrrp_keepalived_interop_v2_ipv4() {
    interop(
        "vrrp_keepalived_interop_v2_ipv4",
        Case {
            tag: "k24",
            version: 2,
            interval_ms: 1000,
            vip: VIP4,
            prefix: 24,
        },
    );
}

/// For comparison with coexist's figures (vrrp_pair): two keepalived
/// nodes at 100 ms, priorities 200 and 100, master crashed (every process
/// of its namespace SIGKILLed) and master stopped (SIGTERM).
#[test]
fn vrrp_keepalived_pair_takeover_for_comparison() {
    let test = "vrrp_keepalived_pair_takeover_for_comparison";
    if !enter_or_skip(test) || !keepalived_available(test) {
        return;
    }
    let _serial = serial();
    let seg = segment("kk");
    let case = Case {
        tag: "kk",
        version: 3,
        interval_ms: 100,
        vip: VIP4,
        prefix: 24,
    };
    let all = ["a", "b", "a2"];
    let _a = seg.keepalived(0, "a", &keepalived_config(&case, 200));
    let _b = seg.keepalived(1, "b", &keepalived_config(&case, 100));
    assert!(
        seg.wait_holds(0, VIP4, Instant::now(), Duration::from_secs(5))
            .is_some(),
        "{}",
        seg.logs(&all)
    );
    seg.assert_sole_holder(0, VIP4, Duration::from_millis(500), &all);
    let killed = Instant::now();
    seg.lab.signal_all(&seg.nodes[0], Signal::SIGKILL);
    let t_kill = seg.wait_holds(1, VIP4, killed, Duration::from_secs(3));
    assert!(
        t_kill.is_some(),
        "keepalived backup never took over\n{}",
        seg.logs(&all)
    );
    // keepalived removes nothing when killed: clear the stale address as
    // its restart would, then bring node1 back so it preempts.
    seg.lab.ip(
        &seg.nodes[0],
        &["addr", "flush", "dev", "eth0", "to", "10.77.0.10/32"],
    );
    let a2 = seg.keepalived(0, "a2", &keepalived_config(&case, 200));
    assert!(
        seg.wait_holds(0, VIP4, Instant::now(), Duration::from_secs(5))
            .is_some(),
        "{}",
        seg.logs(&all)
    );
    assert!(
        seg.wait_released(1, VIP4, Duration::from_secs(3)),
        "{}",
        seg.logs(&all)
    );
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    a2.signal(Signal::SIGTERM);
    let t_term = seg.wait_holds(1, VIP4, stopped, Duration::from_secs(3));
    assert!(
        t_term.is_some(),
        "keepalived backup never took over after SIGTERM\n{}",
        seg.logs(&all)
    );
    println!(
        "keepalived pair takeover at 100 ms: after SIGKILL {:.0} ms (Master_Down_Interval {:.0} ms), after SIGTERM {:.0} ms (Skew_Time {:.0} ms)",
        ms(t_kill.unwrap_or_default()),
        ms(master_down_interval(Duration::from_millis(100), 100)),
        ms(t_term.unwrap_or_default()),
        ms(skew_time(Duration::from_millis(100), 100))
    );
}
