//! Interfaces that come and go under running coexist nodes, v3 at 100 ms.
//!
//! ```text
//!   node1 coexist (eth0 10.77.0.1, fd77::1) ──┐
//!   node2 coexist (eth0 10.77.0.2, fd77::2) ──┤ br0 (namespace "sw")
//!   client        (eth0 10.77.0.100, fd77::100) ┘
//!   VIPs 10.77.0.10/24 (vrid 51), fd77::10/64 (vrid 52)
//! ```
//! Link down on the master: it goes to Initialize and drops its addresses
//! (RFC 9568 §6.4.3, Shutdown without the advert the dead link cannot
//! carry), the peer takes over within a Master_Down_Interval; link up: a
//! Startup event (§6.4.1), and node1 preempts back. A node whose interface
//! does not exist yet waits for it and runs once it is created. A master
//! whose primary address changes advertises from the new one (§5.1.1.1,
//! §5.1.2.1) without a transition.

mod vrrp_common;

use std::time::{Duration, Instant};

use coexist_support::config::Vrrp;
use coexist_support::wait_until;
use coexist_tests::netns::{enter_or_skip, Ns};
use nix::sys::signal::Signal;
use vrrp_common::*;

const INTERVAL: Duration = Duration::from_millis(100);

fn config(priority: u8) -> String {
    config_with(priority, false)
}

fn config_with(priority: u8, virtual_mac: bool) -> String {
    let instance = |name, vrid, address| Vrrp {
        virtual_mac: Some(virtual_mac),
        ..vr(name, vrid, priority, INTERVAL, address)
    };
    coexist_config(vec![
        instance("v4", 51, "10.77.0.10/24"),
        instance("v6", 52, "fd77::10/64"),
    ])
}

/// Instance `name` of node `i` as `coexist status --json` shows it.
fn status(seg: &Segment, i: usize, name: &str) -> serde_json::Value {
    let binary = coexist_tests::daemon::coexist_binary();
    let binary = binary.to_str().expect("utf-8 path");
    let out = seg.lab.try_exec(
        &seg.nodes[i],
        &[binary, "status", "--admin", "127.0.0.1:9100", "--json"],
    );
    let s: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    s["vrrp"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == name).cloned())
        .unwrap_or(serde_json::Value::Null)
}

fn wait_state(seg: &Segment, i: usize, name: &str, state: &str, limit: Duration) -> bool {
    wait_until(limit, Duration::from_millis(20), || {
        status(seg, i, name)["state"] == state
    })
    .is_some()
}

#[test]
fn vrrp_interfaces_link_down_releases_and_link_up_resumes() {
    if !enter_or_skip("vrrp_interfaces_link_down_releases_and_link_up_resumes") {
        return;
    }
    link_down_and_up("ifdown", false, Cut::AdminDown);
}

/// The same with `virtual_mac`: the addresses live on macvlans, which
/// must go down with the parent (one holder of the virtual MAC) and come
/// back on the master only.
#[test]
fn vrrp_interfaces_link_down_and_up_with_virtual_mac() {
    if !enter_or_skip("vrrp_interfaces_link_down_and_up_with_virtual_mac") {
        return;
    }
    link_down_and_up("ifdownvm", true, Cut::AdminDown);
}

/// Carrier lost (the switch port goes down; node1's eth0 stays up but not
/// running) is a link down too, and its return a link up.
#[test]
fn vrrp_interfaces_carrier_loss_is_a_link_down() {
    if !enter_or_skip("vrrp_interfaces_carrier_loss_is_a_link_down") {
        return;
    }
    link_down_and_up("ifcarrier", false, Cut::CarrierLoss);
}

/// How node1 loses its link.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// `ip link set eth0 down` on node1.
    AdminDown,
    /// `ip link set p1 down` on the switch: no carrier on node1's eth0.
    CarrierLoss,
}

fn cut_link(seg: &Segment, cut: Cut, up: bool) {
    let state = if up { "up" } else { "down" };
    match cut {
        Cut::AdminDown => seg.lab.ip(&seg.nodes[0], &["link", "set", "eth0", state]),
        Cut::CarrierLoss => {
            let sw = Ns {
                name: format!("{}sw", seg.lab.prefix()),
            };
            seg.lab.ip(&sw, &["link", "set", "p1", state])
        }
    };
}

/// Whether node `i` holds `vip` on any interface (eth0 or a macvlan).
fn holds(seg: &Segment, i: usize, vip: &str) -> bool {
    let out = seg.lab.ip(&seg.nodes[i], &["-o", "addr", "show"]);
    out.split_whitespace()
        .any(|w| w.split('/').next() == Some(vip))
}

fn wait_holds(
    seg: &Segment,
    i: usize,
    vip: &str,
    from: Instant,
    limit: Duration,
) -> Option<Duration> {
    let left = limit.saturating_sub(from.elapsed());
    wait_until(left, Duration::from_millis(2), || holds(seg, i, vip)).map(|_| from.elapsed())
}

fn wait_released(seg: &Segment, i: usize, vip: &str, limit: Duration) -> bool {
    wait_until(limit, Duration::from_millis(5), || !holds(seg, i, vip)).is_some()
}

/// Macvlans of node `i` that are up (`virtual_mac`).
fn macvlans_up(seg: &Segment, i: usize) -> Vec<String> {
    let out = seg.lab.ip(&seg.nodes[i], &["-o", "link", "show", "up"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|n| {
            n.trim_end_matches(':')
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .filter(|n| n.starts_with("cx"))
        .collect()
}

fn link_down_and_up(tag: &str, virtual_mac: bool, cut: Cut) {
    let _serial = serial();
    let seg = segment(tag);
    let logs = ["n1", "n2"];
    let config = |priority| config_with(priority, virtual_mac);
    let mut n1 = seg.coexist(0, "n1", &config(200));
    let mut n2 = seg.coexist(1, "n2", &config(100));
    for vip in [VIP4, VIP6] {
        assert!(
            wait_holds(&seg, 0, vip, Instant::now(), Duration::from_secs(5)).is_some(),
            "node1 never became master for {vip}\n{}",
            seg.logs(&logs)
        );
    }
    assert!(wait_state(&seg, 1, "v4", "backup", Duration::from_secs(2)));

    // Link down on the master.
    let down = Instant::now();
    cut_link(&seg, cut, false);
    let took4 = wait_holds(&seg, 1, VIP4, down, Duration::from_secs(3));
    let took6 = wait_holds(&seg, 1, VIP6, down, Duration::from_secs(3));
    assert!(
        took4.is_some() && took6.is_some(),
        "node2 did not take over\n{}",
        seg.logs(&logs)
    );
    // The downed node let its addresses go (the kernel keeps IPv4
    // addresses on a down interface: only coexist removes them).
    assert!(
        wait_released(&seg, 0, VIP4, Duration::from_secs(1)) && !holds(&seg, 0, VIP6),
        "node1 kept a VIP after its link went down:\n{}\n{}",
        seg.lab.ip(&seg.nodes[0], &["-o", "addr", "show"]),
        seg.logs(&logs)
    );
    assert!(
        wait_state(&seg, 0, "v4", "initialize", Duration::from_secs(2)),
        "{}",
        seg.logs(&logs)
    );
    if virtual_mac {
        assert!(
            wait_until(Duration::from_secs(1), Duration::from_millis(10), || {
                macvlans_up(&seg, 0).is_empty()
            })
            .is_some(),
            "node1 left macvlans up on a down parent: {:?}",
            macvlans_up(&seg, 0)
        );
    }
    let s = status(&seg, 0, "v4");
    assert_eq!(s["last_transition_reason"], "interface down", "{s}");
    assert!(
        s["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("eth0") && w.contains("come up")),
        "{s}"
    );
    let mdi = master_down_interval(INTERVAL, 100);
    println!(
        "{cut:?}, virtual_mac {virtual_mac}: link down on the master: node2 holds VIP4 after {:.0} ms, VIP6 after {:.0} ms \
         (Master_Down_Interval {:.0} ms)",
        ms(took4.unwrap()),
        ms(took6.unwrap()),
        ms(mdi)
    );
    // Still silent and empty-handed while down.
    std::thread::sleep(mdi * 2);
    assert!(!holds(&seg, 0, VIP4) && holds(&seg, 1, VIP4));

    // Link up: node1 starts again (Backup) and, priority 200, preempts.
    let up = Instant::now();
    cut_link(&seg, cut, true);
    let back4 = wait_holds(&seg, 0, VIP4, up, Duration::from_secs(5));
    // IPv6 waits for the new link-local's duplicate address detection.
    let back6 = wait_holds(&seg, 0, VIP6, up, Duration::from_secs(8));
    assert!(
        back4.is_some() && back6.is_some(),
        "node1 did not resume and preempt\n{}",
        seg.logs(&logs)
    );
    assert!(wait_released(&seg, 1, VIP4, Duration::from_secs(2)));
    assert!(wait_released(&seg, 1, VIP6, Duration::from_secs(2)));
    assert!(wait_state(&seg, 0, "v4", "master", Duration::from_secs(2)));
    assert!(status(&seg, 0, "v4")["waiting"].is_null());
    if virtual_mac {
        assert_eq!(macvlans_up(&seg, 0).len(), 2, "node1 masters both");
        assert!(macvlans_up(&seg, 1).is_empty(), "node2 keeps a macvlan up");
    }
    println!(
        "link up: node1 master again for VIP4 after {:.0} ms, VIP6 after {:.0} ms",
        ms(back4.unwrap()),
        ms(back6.unwrap())
    );
    let log = seg.log("n1");
    assert!(
        log.contains("reason=interface down") && log.contains("reason=interface up"),
        "{log}"
    );
    // Nothing failed on the way: no advert sent into the dead link, no
    // address or macvlan request refused.
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("ERROR") || (l.contains("WARN") && !l.contains("waits for its interface"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for (p, name) in [(&mut n1, "n1"), (&mut n2, "n2")] {
        p.signal(Signal::SIGTERM);
        assert!(
            p.wait_exit(Duration::from_secs(5)).is_some(),
            "{name} did not stop"
        );
    }
}

#[test]
fn vrrp_interfaces_instance_waits_for_a_late_interface() {
    if !enter_or_skip("vrrp_interfaces_instance_waits_for_a_late_interface") {
        return;
    }
    let _serial = serial();
    let mut seg = segment("iflate");
    let logs = ["n1", "n2"];
    // node1's interface does not exist yet when coexist starts.
    seg.lab.ip(&seg.nodes[0], &["link", "del", "eth0"]);
    let mut n1 = seg.coexist(0, "n1", &config(200));
    let mut n2 = seg.coexist(1, "n2", &config(100));
    assert!(
        seg.wait_holds(1, VIP4, Instant::now(), Duration::from_secs(5))
            .is_some(),
        "node2 never became master\n{}",
        seg.logs(&logs)
    );
    assert!(
        wait_state(&seg, 0, "v4", "initialize", Duration::from_secs(5)),
        "node1 is not up and waiting\n{}",
        seg.logs(&logs)
    );
    let s = status(&seg, 0, "v4");
    assert_eq!(s["waiting"], "waiting for interface eth0", "{s}");
    assert!(n1.exited().expect("wait").is_none(), "node1 exited");

    // The interface appears (plugged into the switch, then addressed).
    let created = Instant::now();
    let sw = Ns {
        name: format!("{}sw", seg.lab.prefix()),
    };
    seg.lab.plug(&seg.nodes[0], "eth0", &sw, "p1b");
    seg.lab.addr(&seg.nodes[0], "eth0", "10.77.0.1/24");
    seg.lab.addr(&seg.nodes[0], "eth0", "fd77::1/64");
    let got4 = seg.wait_holds(0, VIP4, created, Duration::from_secs(5));
    let got6 = seg.wait_holds(0, VIP6, created, Duration::from_secs(8));
    assert!(
        got4.is_some() && got6.is_some(),
        "node1 did not start on its new interface\n{}",
        seg.logs(&logs)
    );
    assert!(seg.wait_released(1, VIP4, Duration::from_secs(2)));
    assert!(wait_state(&seg, 1, "v4", "backup", Duration::from_secs(2)));
    assert!(status(&seg, 0, "v4")["waiting"].is_null());
    println!(
        "late interface: node1 master for VIP4 {:.0} ms, VIP6 {:.0} ms after it was created",
        ms(got4.unwrap()),
        ms(got6.unwrap())
    );
    for (p, name) in [(&mut n1, "n1"), (&mut n2, "n2")] {
        p.signal(Signal::SIGTERM);
        assert!(
            p.wait_exit(Duration::from_secs(5)).is_some(),
            "{name} did not stop"
        );
    }
}

#[test]
fn vrrp_interfaces_primary_address_change_is_followed() {
    if !enter_or_skip("vrrp_interfaces_primary_address_change_is_followed") {
        return;
    }
    let _serial = serial();
    let seg = segment("ifaddr");
    let logs = ["n1", "n2"];
    let n1_ns = &seg.nodes[0];
    let mut n1 = seg.coexist(0, "n1", &config(200));
    let mut n2 = seg.coexist(1, "n2", &config(100));
    for vip in [VIP4, VIP6] {
        assert!(
            seg.wait_holds(0, vip, Instant::now(), Duration::from_secs(5))
                .is_some(),
            "node1 never became master for {vip}
{}",
            seg.logs(&logs)
        );
    }
    let master_seen_by_node2 = |name: &str, addr: &str| {
        wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
            status(&seg, 1, name)["master"] == addr
        })
        .is_some()
    };
    assert!(
        master_seen_by_node2("v4", "10.77.0.1"),
        "{}",
        seg.logs(&logs)
    );
    let old_ll = seg
        .lab
        .addresses(n1_ns, "eth0")
        .into_iter()
        .find(|a| matches!(a, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .expect("node1 has a link-local address");
    let transitions = |log: &str| log.matches("VRRP state changed").count();
    let before = transitions(&seg.log("n1"));

    // IPv4: a new address, then the old primary goes (the virtual address,
    // a secondary of the subnet, is promoted rather than deleted with it).
    let changed = Instant::now();
    seg.lab.exec(
        n1_ns,
        &["sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"],
    );
    seg.lab.addr(n1_ns, "eth0", "10.77.0.3/24");
    seg.lab
        .ip(n1_ns, &["addr", "del", "10.77.0.1/24", "dev", "eth0"]);
    // IPv6: another link-local replaces the first.
    seg.lab.addr(n1_ns, "eth0", "fe80::99/64");
    let old = format!("{old_ll}/64");
    seg.lab.ip(n1_ns, &["addr", "del", &old, "dev", "eth0"]);
    assert!(
        master_seen_by_node2("v4", "10.77.0.3") && master_seen_by_node2("v6", "fe80::99"),
        "node2 sees {} and {}\n{}",
        status(&seg, 1, "v4"),
        status(&seg, 1, "v6"),
        seg.logs(&logs)
    );
    println!(
        "primary address change: node2 names the new sources after {:.0} ms",
        ms(changed.elapsed())
    );
    assert_eq!(status(&seg, 0, "v4")["master"], "10.77.0.3");
    assert_eq!(status(&seg, 0, "v6")["master"], "fe80::99");
    // Mastership never moved: no transition on either node, node1 holds
    // both addresses and node2 none.
    assert_eq!(transitions(&seg.log("n1")), before, "{}", seg.log("n1"));
    seg.assert_sole_holder(0, VIP4, Duration::from_millis(500), &logs);
    seg.assert_sole_holder(0, VIP6, Duration::from_millis(500), &logs);
    assert_eq!(status(&seg, 1, "v4")["state"], "backup");
    let log = seg.log("n1");
    assert!(log.contains("VRRP primary address changed"), "{log}");
    for (p, name) in [(&mut n1, "n1"), (&mut n2, "n2")] {
        p.signal(Signal::SIGTERM);
        assert!(
            p.wait_exit(Duration::from_secs(5)).is_some(),
            "{name} did not stop"
        );
    }
}
