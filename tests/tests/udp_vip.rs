//! UDP replies leave from the address the client asked: a free-bound
//! virtual address that appears after the daemon started (a VRRP backup
//! taking over), and each address of a wildcard listener.
//!
//! ```text
//!   ns "cl"  eth0 10.77.9.2/24, fd77:9::2/64
//!      │ dig @VIP / @each address         (dig drops replies from another source)
//!   ns "n"   eth0 10.77.9.1/24, fd77:9::1/64  (+ VIPs 10.77.9.10, fd77:9::10 added later)
//!      coexist udp  10.77.9.10:53, [fd77:9::10]:53   (free bind, before the VIPs exist)
//!                   0.0.0.0:54, [::]:54               (wildcard: packet info)
//!        └──► dnsmasq [::1]:5353 (up.test A 192.0.2.1)
//! ```

use std::time::{Duration, Instant};

use coexist_tests::daemon::{coexist_binary, READY_LINE};
use coexist_tests::dns::{dnsmasq_args, tools_or_skip, UP_ADDRESS, UP_NAME};
use coexist_tests::netns::{enter_or_skip, Lab};

#[test]
fn replies_leave_from_a_late_virtual_address_and_from_each_wildcard_address() {
    let test = "replies_leave_from_a_late_virtual_address_and_from_each_wildcard_address";
    if !enter_or_skip(test) || !tools_or_skip(test, &["dnsmasq", "dig"]) {
        return;
    }
    let mut lab = Lab::new("udpvip");
    let node = lab.ns("n");
    let client = lab.ns("cl");
    lab.veth(&node, "eth0", &client, "eth0");
    lab.addr(&node, "eth0", "10.77.9.1/24");
    lab.addr(&node, "eth0", "fd77:9::1/64");
    lab.addr(&client, "eth0", "10.77.9.2/24");
    lab.addr(&client, "eth0", "fd77:9::2/64");
    let dir = tempfile::tempdir().unwrap();

    let dnsmasq = dnsmasq_args("[::1]:5353".parse().unwrap());
    let dnsmasq: Vec<&str> = dnsmasq.iter().map(String::as_str).collect();
    let _dnsmasq = lab.spawn(
        &node,
        std::path::Path::new("dnsmasq"),
        &dnsmasq,
        &dir.path().join("dnsmasq.log"),
    );
    let config = dir.path().join("coexist.toml");
    std::fs::write(
        &config,
        r#"
[admin]
listen = ""

[[frontend]]
name = "vip"
protocol = "udp"
listen = ["10.77.9.10:53", "[fd77:9::10]:53"]
backend = "dns"
udp_responses = 1

[[frontend]]
name = "wildcard"
protocol = "udp"
listen = ["0.0.0.0:54", "[::]:54"]
backend = "dns"
udp_responses = 1

[[backend]]
name = "dns"
health_check = { kind = "dns", query_name = "up.test", query_type = "A", interval = "200ms", timeout = "150ms", rise = 1 }
servers = [{ address = "[::1]:5353" }]
"#,
    )
    .unwrap();
    let log = dir.path().join("coexist.log");
    let _coexist = lab.spawn(
        &node,
        &coexist_binary(),
        &["run", "--config", config.to_str().unwrap()],
        &log,
    );
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(READY_LINE)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "coexist did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The virtual addresses arrive after the listeners were bound.
    lab.addr(&node, "eth0", "10.77.9.10/24");
    lab.addr(&node, "eth0", "fd77:9::10/64");

    let dig = |server: &str, port: &str| {
        let out = lab.try_exec(
            &client,
            &[
                "dig",
                "+short",
                "+tries=5",
                "+time=1",
                "-p",
                port,
                &format!("@{server}"),
                UP_NAME,
                "A",
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for (server, port) in [
        ("10.77.9.10", "53"),
        ("fd77:9::10", "53"),
        ("10.77.9.1", "54"),
        ("10.77.9.10", "54"),
        ("fd77:9::1", "54"),
        ("fd77:9::10", "54"),
    ] {
        assert_eq!(
            dig(server, port),
            UP_ADDRESS,
            "no answer from {server} port {port}; coexist log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}
