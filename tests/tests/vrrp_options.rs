//! Two coexist nodes with `virtual_mac`, `unicast_peers` and `notify`.
//!
//! ```text
//!   node1 coexist (eth0 10.77.0.1, fd77::1; macvlans cx4.*.51, cx6.*.52) ──┐
//!   node2 coexist (eth0 10.77.0.2, fd77::2; macvlans cx4.*.51, cx6.*.52) ──┤ br0 ("sw")
//!   client        (eth0 10.77.0.100, fd77::100)                            ┘
//!   VIPs 10.77.0.10/24 (vrid 51, unicast), fd77::10/64 (vrid 52, multicast)
//! ```

mod vrrp_common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use coexist_support::config::Vrrp;
use coexist_support::wait_until;
use coexist_tests::netns::{enter_or_skip, Ns, REQUIRE_ENV};
use nix::sys::signal::Signal;
use vrrp_common::*;

const VMAC4: &str = "00:00:5e:00:01:33";
const VMAC6: &str = "00:00:5e:00:02:34";

fn config(priority: u8, peer: &str, notify_file: &str) -> String {
    let interval = Duration::from_millis(100);
    let options = |v: Vrrp| Vrrp {
        notify: Some(format!("echo >> {notify_file}")),
        virtual_mac: Some(true),
        ..v
    };
    coexist_config(vec![
        Vrrp {
            unicast_peers: vec![peer.parse().expect("peer address")],
            ..options(vr("v4", 51, priority, interval, "10.77.0.10/24"))
        },
        options(vr("v6", 52, priority, interval, "fd77::10/64")),
    ])
}

/// The macvlan of `prefix` ("cx4." / "cx6.") in `ns`, and its addresses.
fn find_macvlan(seg: &Segment, ns: &Ns, prefix: &str) -> Option<(String, Vec<IpAddr>)> {
    let links = seg.lab.ip(ns, &["-o", "link", "show"]);
    let name = links
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|n| {
            n.trim_end_matches(':')
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .find(|n| n.starts_with(prefix))?;
    let addrs = seg.lab.addresses(ns, &name);
    Some((name, addrs))
}

fn macvlan(seg: &Segment, ns: &Ns, prefix: &str) -> (String, Vec<IpAddr>) {
    find_macvlan(seg, ns, prefix).unwrap_or_else(|| panic!("no {prefix}* macvlan in {}", ns.name))
}

fn holds_on_macvlan(seg: &Segment, i: usize, prefix: &str, vip: &str) -> bool {
    let vip: IpAddr = vip.parse().expect("address");
    find_macvlan(seg, &seg.nodes[i], prefix).is_some_and(|(_, addrs)| addrs.contains(&vip))
}

/// RFC 9568 §7.3 (virtual router MAC), §6.4.3 via unicast peers, and the
/// notify command in transition order.
#[test]
fn vrrp_options_virtual_mac_unicast_and_notify() {
    if !enter_or_skip("vrrp_options_virtual_mac_unicast_and_notify") {
        return;
    }
    let _serial = serial();
    let seg = segment("opt");
    let notify = |i: usize| seg.dir.path().join(format!("notify{i}.txt"));
    let n1_notify = notify(1);
    let n2_notify = notify(2);
    let n1 = seg.coexist(
        0,
        "n1",
        &config(200, "10.77.0.2", n1_notify.to_str().expect("utf-8")),
    );
    let mut n2 = seg.coexist(
        1,
        "n2",
        &config(100, "10.77.0.1", n2_notify.to_str().expect("utf-8")),
    );
    let logs = ["n1", "n2"];

    let elected = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        holds_on_macvlan(&seg, 0, "cx4.", VIP4) && holds_on_macvlan(&seg, 0, "cx6.", VIP6)
    });
    assert!(
        elected.is_some(),
        "node1 never held the VIPs on its macvlans\n{}",
        seg.logs(&logs)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !holds_on_macvlan(&seg, 1, "cx4.", VIP4),
        "node2 holds VIP4 too\n{}",
        seg.logs(&logs)
    );
    assert!(
        !holds_on_macvlan(&seg, 1, "cx6.", VIP6),
        "node2 holds VIP6 too\n{}",
        seg.logs(&logs)
    );
    assert!(
        !seg.holds(0, VIP4) && !seg.holds(0, VIP6),
        "VIPs belong on the macvlan, not eth0"
    );

    // The macvlans carry the virtual router MACs, and their link-local
    // address is random, not the EUI-64 of the shared MAC.
    let (name4, _) = macvlan(&seg, &seg.nodes[0], "cx4.");
    let (name6, addrs6) = macvlan(&seg, &seg.nodes[0], "cx6.");
    assert_eq!(seg.lab.mac(&seg.nodes[0], &name4), VMAC4);
    assert_eq!(seg.lab.mac(&seg.nodes[0], &name6), VMAC6);
    let eui64: IpAddr = "fe80::200:5eff:fe00:234".parse().expect("address");
    assert!(
        addrs6
            .iter()
            .any(|a| matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local()))
            && !addrs6.contains(&eui64),
        "macvlan link-local should be random: {addrs6:?}"
    );

    // Clients resolve the VIPs to the virtual MACs.
    assert_eq!(
        seg.resolve(VIP4).as_deref(),
        Some(VMAC4),
        "node1 eth0 {} arp_ignore {:?}\n{}",
        seg.lab.mac(&seg.nodes[0], "eth0"),
        seg.lab
            .try_exec(&seg.nodes[0], &["sysctl", "net.ipv4.conf.eth0.arp_ignore"]),
        seg.logs(&logs)
    );
    assert_eq!(seg.resolve(VIP6).as_deref(), Some(VMAC6));

    // Takeover moves the VIPs (and the MACs) to node2's macvlans.
    let stopped = Instant::now();
    n1.signal(Signal::SIGTERM);
    let took = wait_until(Duration::from_secs(3), Duration::from_millis(2), || {
        holds_on_macvlan(&seg, 1, "cx4.", VIP4) && holds_on_macvlan(&seg, 1, "cx6.", VIP6)
    });
    assert!(
        took.is_some(),
        "node2 did not take over\n{}",
        seg.logs(&logs)
    );
    println!(
        "virtual_mac + unicast takeover after SIGTERM: {:.0} ms",
        ms(stopped.elapsed())
    );
    let mut n1 = n1;
    assert!(n1.wait_exit(Duration::from_secs(5)).is_some());
    let links = seg.lab.ip(&seg.nodes[0], &["-o", "link", "show"]);
    assert!(
        !links.contains("cx4.") && !links.contains("cx6."),
        "stopped node1 left its macvlans:\n{links}"
    );
    let (name4, _) = macvlan(&seg, &seg.nodes[1], "cx4.");
    assert_eq!(seg.lab.mac(&seg.nodes[1], &name4), VMAC4);

    // notify ran for every transition, in order: backup, master, and, if
    // node2 took over once at the start (node1 slow to start on a loaded
    // machine; it then preempts), backup, master again. Ends as master.
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let calls = |text: &str, name: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .map(str::to_owned)
            .collect()
    };
    let seen = wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
        let text = read(&n2_notify);
        ["v4", "v6"]
            .iter()
            .all(|name| calls(&text, name).last() == Some(&format!("{name} master 100")))
    });
    let text = read(&n2_notify);
    assert!(seen.is_some(), "node2 notify calls:\n{text}");
    for name in ["v4", "v6"] {
        let mine = calls(&text, name);
        let alternating: Vec<String> = (0..mine.len())
            .map(|i| format!("{name} {} 100", ["backup", "master"][i % 2]))
            .collect();
        assert!(mine.len() == 2 || mine.len() == 4, "{text}");
        assert_eq!(mine, alternating, "{text}");
    }
    let text = read(&n1_notify);
    for name in ["v4", "v6"] {
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .take(2)
            .collect();
        assert_eq!(
            mine,
            [format!("{name} backup 200"), format!("{name} master 200")],
            "{text}"
        );
    }
    for name in logs {
        let log = seg.log(name);
        assert!(
            coexist_complaints(&log).is_empty(),
            "{name} discarded packets:\n{log}"
        );
    }
    n2.signal(Signal::SIGTERM);
    assert!(n2.wait_exit(Duration::from_secs(5)).is_some());
}

/// `unicast_peers`: adverts go to the peers listed, not to 224.0.0.18, and
/// adverts from any other source are ignored (RFC 9568 leaves unicast to
/// implementations; keepalived's `unicast_peer` does the same). A router
/// on the client's address advertises the same VRID at a higher priority
/// by multicast: node1 does not yield to it.
///
/// ```text
///   node1  coexist vrid 51 prio 200, unicast_peers = [10.77.0.2] ──┐
///   node2  tcpdump: the VRRP packets node1 sends it               ──┤ br0
///   client coexist vrid 51 prio 250, multicast                    ──┘
/// ```
#[test]
fn unicast_peers_get_the_adverts_and_other_sources_are_ignored() {
    let test = "unicast_peers_get_the_adverts_and_other_sources_are_ignored";
    if !enter_or_skip(test) {
        return;
    }
    // `tcpdump --version`: tools_or_skip's `-v` would start a capture.
    let tcpdump_present = std::process::Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !tcpdump_present {
        assert_ne!(
            std::env::var(REQUIRE_ENV).as_deref(),
            Ok("1"),
            "{test}: tcpdump required ({REQUIRE_ENV}=1) but not installed"
        );
        eprintln!("SKIP {test}: tcpdump not installed");
        return;
    }
    let _serial = serial();
    let seg = segment("uni");
    let capture_log = seg.dir.path().join("tcpdump.log");
    let capture = || std::fs::read_to_string(&capture_log).unwrap_or_default();
    let mut tcpdump = seg.lab.spawn(
        &seg.nodes[1],
        std::path::Path::new("tcpdump"),
        &["-i", "eth0", "-n", "-l", "--immediate-mode", "ip proto 112"],
        &capture_log,
    );
    let listening = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        capture().contains("listening on")
    });
    assert!(listening.is_some(), "tcpdump did not start: {}", capture());

    let interval = Duration::from_millis(100);
    let other = coexist_config(vec![vr("other", 51, 250, interval, "10.77.0.10/24")]);
    let other_path = seg.dir.path().join("other.toml");
    std::fs::write(&other_path, other).expect("write config");
    let _other = seg.lab.spawn(
        &seg.client,
        &coexist_tests::daemon::coexist_binary(),
        &["run", "--config", other_path.to_str().expect("utf-8")],
        &seg.log_path("other"),
    );
    let multicast = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        capture().contains("10.77.0.100 > 224.0.0.18: VRRPv3")
    });
    assert!(
        multicast.is_some(),
        "no multicast advert seen:\n{}",
        capture()
    );

    let n1 = coexist_config(vec![Vrrp {
        unicast_peers: vec!["10.77.0.2".parse().expect("address")],
        ..vr("v4", 51, 200, interval, "10.77.0.10/24")
    }]);
    let _n1 = seg.coexist(0, "n1", &n1);
    let logs = ["n1", "other"];
    assert!(
        seg.wait_holds(0, VIP4, Instant::now(), Duration::from_secs(5))
            .is_some(),
        "node1 yielded to a router that is not its peer\n{}",
        seg.logs(&logs)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(seg.holds(0, VIP4), "node1 let go\n{}", seg.logs(&logs));
    tcpdump.signal(Signal::SIGTERM);
    let _ = tcpdump.wait_exit(Duration::from_secs(5));
    let text = capture();
    assert!(
        text.contains("10.77.0.1 > 10.77.0.2: VRRPv3, Advertisement, vrid 51, prio 200"),
        "no unicast advert to the peer:\n{text}"
    );
    assert!(
        !text.contains("10.77.0.1 > 224.0.0.18"),
        "node1 advertised by multicast:\n{text}"
    );
}

/// RFC 9568 §7.3: with `virtual_mac`, the master's adverts carry the
/// virtual router MAC as Ethernet source, so that the switches learn it
/// on the master's port from the adverts themselves. Captured on node2's
/// eth0 (node2 is a backup and sends nothing): unicast IPv4 adverts and
/// multicast IPv6 ones, each with its family's virtual MAC.
#[test]
fn vrrp_options_virtual_mac_adverts_leave_from_the_virtual_mac() {
    let test = "vrrp_options_virtual_mac_adverts_leave_from_the_virtual_mac";
    if !enter_or_skip(test) {
        return;
    }
    let present = std::process::Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(present, "{test}: tcpdump is needed");
    let _serial = serial();
    let seg = segment("vmacsrc");
    let logs = ["n1", "n2"];
    let quiet = seg.dir.path().join("notify.txt");
    let quiet = quiet.to_str().expect("utf-8");
    let capture_log = seg.dir.path().join("tcpdump.log");
    let capture = || std::fs::read_to_string(&capture_log).unwrap_or_default();
    let mut n1 = seg.coexist(0, "n1", &config(200, "10.77.0.2", quiet));
    let held = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        holds_on_macvlan(&seg, 0, "cx4.", VIP4) && holds_on_macvlan(&seg, 0, "cx6.", VIP6)
    });
    assert!(held.is_some(), "node1 never master\n{}", seg.logs(&logs));
    let mut tcpdump = seg.lab.spawn(
        &seg.nodes[1],
        std::path::Path::new("tcpdump"),
        &[
            "-i",
            "eth0",
            "-e",
            "-n",
            "-l",
            "-t",
            "--immediate-mode",
            "ip proto 112 or ip6 proto 112",
        ],
        &capture_log,
    );
    let listening = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        capture().contains("listening on")
    });
    assert!(listening.is_some(), "tcpdump did not start: {}", capture());
    let mut n2 = seg.coexist(1, "n2", &config(100, "10.77.0.1", quiet));
    // (source MAC, ethertype) of each captured advert.
    let adverts = || -> Vec<(String, String)> {
        capture()
            .lines()
            .filter(|l| l.contains("ethertype"))
            .filter_map(|l| {
                let src = l.split_whitespace().next()?.to_owned();
                let kind = if l.contains("ethertype IPv6") {
                    "IPv6"
                } else {
                    "IPv4"
                };
                Some((src, kind.to_owned()))
            })
            .collect()
    };
    let count = |kind: &str| adverts().iter().filter(|(_, k)| k == kind).count();
    let seen = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        count("IPv4") >= 10 && count("IPv6") >= 10
    });
    tcpdump.signal(Signal::SIGTERM);
    let _ = tcpdump.wait_exit(Duration::from_secs(5));
    assert!(seen.is_some(), "too few adverts captured:\n{}", capture());
    for (src, kind) in adverts() {
        let expected = if kind == "IPv4" { VMAC4 } else { VMAC6 };
        assert_eq!(
            src,
            expected,
            "{kind} advert from another MAC (node1 eth0 is {}):\n{}",
            seg.lab.mac(&seg.nodes[0], "eth0"),
            capture()
        );
    }
    println!(
        "virtual_mac: {} IPv4 and {} IPv6 adverts captured, all from the virtual router MAC",
        count("IPv4"),
        count("IPv6")
    );
    assert!(
        seg.log("n2")
            .lines()
            .all(|l| !l.contains("VRRP packet discarded")),
        "{}",
        seg.log("n2")
    );
    for p in [&mut n1, &mut n2] {
        p.signal(Signal::SIGTERM);
        assert!(p.wait_exit(Duration::from_secs(5)).is_some());
    }
}
