//! `garp_count`, `garp_interval` and `garp_refresh` on the wire: what a
//! neighbour sees when a node becomes master of an IPv4 and an IPv6
//! virtual address (gratuitous ARP requests, RFC 5227 §3; unsolicited
//! Neighbor Advertisements, RFC 4861 §7.2.6).
//!
//! ```text
//!   ns "cl"  eth0 10.77.29.2/24, fd77:29::2/64
//!      │ tcpdump: ARP and ICMPv6 seen on the link
//!   ns "n"   eth0 10.77.29.1/24, fd77:29::1/64
//!      coexist, alone on the link: master of 10.77.29.10/24 and fd77:29::10/64
//!        garp_count = 3, garp_interval = "300ms", garp_refresh = "2s"
//! ```

use std::time::Duration;

use coexist_support::config::{Config, Vrrp};
use coexist_support::wait_until;
use coexist_tests::daemon::coexist_binary;
use coexist_tests::netns::{enter_or_skip, Lab, REQUIRE_ENV};

const VIP4: &str = "10.77.29.10";
const VIP6: &str = "fd77:29::10";
const COUNT: u32 = 3;
const INTERVAL: Duration = Duration::from_millis(300);
const REFRESH: Duration = Duration::from_secs(2);

/// Times (seconds, tcpdump's clock) of the announcements of `vip` in a
/// `tcpdump -tt -n -l` capture: a gratuitous ARP request (sender and
/// target both the address), or an unsolicited NA for it to all nodes.
fn announcements(capture: &str, vip: &str) -> Vec<f64> {
    let garp = format!("Request who-has {vip} tell {vip},");
    let na = format!("> ff02::1: ICMP6, neighbor advertisement, tgt is {vip},");
    capture
        .lines()
        .filter(|l| l.contains(&garp) || l.contains(&na))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Splits times into bursts: a gap longer than a second starts a new one.
fn bursts(times: &[f64]) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::new();
    for &t in times {
        match out.last_mut() {
            Some(burst) if t - burst.last().unwrap() < 1.0 => burst.push(t),
            _ => out.push(vec![t]),
        }
    }
    out
}

/// `tcpdump -v` (what `tools_or_skip` runs) would start a capture: ask
/// for the version instead.
fn tcpdump_or_skip(test: &str) -> bool {
    let present = std::process::Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert_ne!(
            std::env::var(REQUIRE_ENV).as_deref(),
            Ok("1"),
            "{test}: tcpdump required ({REQUIRE_ENV}=1) but not installed"
        );
        eprintln!("SKIP {test}: tcpdump not installed");
    }
    present
}

#[test]
fn a_new_master_announces_count_times_interval_apart_and_again_every_refresh() {
    let test = "a_new_master_announces_count_times_interval_apart_and_again_every_refresh";
    if !enter_or_skip(test) || !tcpdump_or_skip(test) {
        return;
    }
    let mut lab = Lab::new("garp");
    let node = lab.ns("n");
    let client = lab.ns("cl");
    lab.veth(&node, "eth0", &client, "eth0");
    lab.addr(&node, "eth0", "10.77.29.1/24");
    lab.addr(&node, "eth0", "fd77:29::1/64");
    lab.addr(&client, "eth0", "10.77.29.2/24");
    lab.addr(&client, "eth0", "fd77:29::2/64");
    let dir = tempfile::tempdir().unwrap();
    let capture_log = dir.path().join("tcpdump.log");
    let capture = || std::fs::read_to_string(&capture_log).unwrap_or_default();
    let mut tcpdump = lab.spawn(
        &client,
        std::path::Path::new("tcpdump"),
        &[
            "-i",
            "eth0",
            "-n",
            "-l",
            "-tt",
            "--immediate-mode",
            "arp or icmp6",
        ],
        &capture_log,
    );
    let listening = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        capture().contains("listening on")
    });
    assert!(listening.is_some(), "tcpdump did not start: {}", capture());

    let vrrp = |name: &str, vrid: u8, address: &str| Vrrp {
        priority: Some(150),
        advert_interval: Some(Duration::from_millis(100)),
        garp_count: Some(COUNT),
        garp_interval: Some(INTERVAL),
        garp_refresh: Some(REFRESH),
        ..Vrrp::new(name, "eth0", vrid, &[address])
    };
    let config = Config {
        vrrp: vec![
            vrrp("v4", 51, &format!("{VIP4}/24")),
            vrrp("v6", 52, &format!("{VIP6}/64")),
        ],
        ..Config::without_admin()
    };
    let path = dir.path().join("coexist.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    let coexist_log = dir.path().join("coexist.log");
    let _coexist = lab.spawn(
        &node,
        &coexist_binary(),
        &["run", "--config", path.to_str().unwrap()],
        &coexist_log,
    );
    // Two whole bursts and the start of a third.
    let seen = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        [VIP4, VIP6]
            .iter()
            .all(|vip| bursts(&announcements(&capture(), vip)).len() >= 3)
    });
    tcpdump.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = tcpdump.wait_exit(Duration::from_secs(5));
    let log = || std::fs::read_to_string(&coexist_log).unwrap_or_default();
    assert!(
        seen.is_some(),
        "not three bursts for each address; capture:\n{}\ncoexist:\n{}",
        capture(),
        log()
    );

    for vip in [VIP4, VIP6] {
        let bursts = bursts(&announcements(&capture(), vip));
        let first_two = &bursts[..2];
        for burst in first_two {
            // garp_count: as many as asked (the default is 5).
            assert_eq!(burst.len(), COUNT as usize, "{vip}: {bursts:?}");
            // garp_interval: spaced as asked (the default is 100ms); the
            // sender never sends early, so only a lower bound is checked.
            for pair in burst.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(
                    gap >= INTERVAL.as_secs_f64() * 0.9,
                    "{vip}: gap {gap} in {burst:?}"
                );
            }
        }
        // garp_refresh: the burst repeats while master (without it: never).
        let period = first_two[1][0] - first_two[0][0];
        assert!(
            period >= REFRESH.as_secs_f64() * 0.9,
            "{vip}: refreshed after {period} s: {bursts:?}"
        );
    }
}
