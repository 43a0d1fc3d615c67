//! A site migrates from HAProxy + keepalived: each node's configuration is
//! imported with `coexist import`, and the resulting coexist pair takes
//! over from a real keepalived and serves clients on the virtual address.
//!
//! ```text
//!   node1 keepalived + HAProxy, then coexist (eth0 10.77.0.1)   ──┐
//!   node2 coexist, imported from its keepalived + HAProxy config  ──┤ br0 (namespace "sw")
//!         (eth0 10.77.0.2)                                        │
//!   client + server srv1 on :8000 (eth0 10.77.0.100)             ──┘
//!   VIP 10.77.0.10/24, vrid 51, keepalived's defaults: VRRPv2, advert 1s
//!   service: 10.77.0.10:80 → 10.77.0.100:8000
//! ```
//!
//! 1. node1 runs keepalived (priority 150) and HAProxy; a client is served
//!    through them.
//! 2. node2's configuration (priority 100) is imported; coexist runs it and
//!    stays backup beside the real keepalived.
//! 3. keepalived and HAProxy stop on node1: coexist on node2 takes the
//!    address over and serves the client.
//! 4. node1's configuration is imported; coexist on node1 preempts (150).
//! 5. coexist stops on node1: node2 takes over again.

mod vrrp_common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use coexist_tests::netns::enter_or_skip;
use nix::sys::signal::Signal;
use vrrp_common::*;

const HAPROXY_CFG: &str = "\
global
    maxconn 4096
    log stdout format raw local0

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 1m
    timeout server 1m
    retries 2

frontend web
    bind 10.77.0.10:80
    default_backend web

backend web
    balance roundrobin
    server srv1 10.77.0.100:8000 check inter 500 rise 1 fall 2
";

fn keepalived_conf(node: u8, state: &str, priority: u8) -> String {
    format!(
        "global_defs {{
    router_id node{node}
    enable_script_security
    script_user root
}}

vrrp_script chk_haproxy {{
    script \"/usr/bin/pgrep -x haproxy\"
    interval 1
    weight -60
}}

vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {VIP4}/24
    }}
    track_script {{
        chk_haproxy
    }}
}}
"
    )
}

fn haproxy_path() -> Option<PathBuf> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file())
}

fn peers_available(test: &str) -> bool {
    peer_available(test, "keepalived", keepalived_installed())
        && peer_available(test, "haproxy", haproxy_path().is_some())
}

/// `coexist import` of a node's two files; the output must pass `coexist
/// check`, and the notes name their lines.
fn import(seg: &Segment, node: u8, keepalived: &str) -> (String, String) {
    let dir = seg.dir.path();
    let haproxy_cfg = dir.join("haproxy.cfg");
    let keepalived_conf = dir.join(format!("keepalived-node{node}.conf"));
    std::fs::write(&keepalived_conf, keepalived).expect("write keepalived.conf");
    let out = Command::new(coexist_tests::daemon::coexist_binary())
        .arg("import")
        .arg("--haproxy")
        .arg(&haproxy_cfg)
        .arg("--keepalived")
        .arg(&keepalived_conf)
        .output()
        .expect("run coexist import");
    let toml = String::from_utf8_lossy(&out.stdout).into_owned();
    let notes = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "import failed:\n{notes}\n{toml}");
    let (ok, problems) = coexist_tests::daemon::check(&toml);
    assert!(
        ok,
        "the import does not pass coexist check: {problems}\n{toml}"
    );
    (toml, notes)
}

/// One connection from the client to the service on the virtual address;
/// the server's greeting, or the error.
fn fetch(seg: &Segment) -> Result<String, String> {
    let script = format!("exec 3<>/dev/tcp/{VIP4}/80 && head -n 1 <&3");
    let out = seg
        .lab
        .try_exec(&seg.client, &["timeout", "3", "bash", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && text.starts_with("srv1 via ") {
        Ok(text)
    } else {
        Err(format!(
            "{text} {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Retries [`fetch`] for up to `limit` (neighbour caches follow the
/// address's move within a few gratuitous ARPs).
#[track_caller]
fn served(seg: &Segment, limit: Duration, logs: &[&str], what: &str) {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match fetch(seg) {
            Ok(_) => return,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what}: the client was not served: {last}\n{}",
        seg.logs(logs)
    );
}

#[test]
fn imported_pair_takes_over_from_keepalived() {
    let test = "imported_pair_takes_over_from_keepalived";
    if !enter_or_skip(test) || !peers_available(test) {
        return;
    }
    let _serial = serial();
    let seg = segment("imp");
    let all = ["ka1", "haproxy1", "cx1", "cx2", "srv1"];
    let dir = seg.dir.path();
    std::fs::write(dir.join("haproxy.cfg"), HAPROXY_CFG).expect("write haproxy.cfg");
    let ka1 = keepalived_conf(1, "MASTER", 150);
    let ka2 = keepalived_conf(2, "BACKUP", 100);

    // The inputs are real configurations: both daemons accept them.
    let haproxy = haproxy_path().expect("haproxy installed");
    let checked = Command::new(&haproxy)
        .arg("-c")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .output()
        .expect("haproxy -c");
    assert!(checked.status.success(), "{checked:?}");
    std::fs::write(dir.join("ka1-test.conf"), &ka1).expect("write");
    let checked = Command::new(keepalived_path().expect("keepalived"))
        .arg("--config-test")
        .arg(format!(
            "--use-file={}",
            dir.join("ka1-test.conf").display()
        ))
        .output()
        .expect("keepalived --config-test");
    assert!(checked.status.success(), "{checked:?}");

    let helper = PathBuf::from(env!("CARGO_BIN_EXE_coexist-lab"));
    let _srv1 = seg.lab.spawn(
        &seg.client,
        &helper,
        &["serve", "--name", "srv1", "--listen", "10.77.0.100:8000"],
        &seg.log_path("srv1"),
    );

    // 1. node1: keepalived + HAProxy (HAProxy binds the virtual address
    //    before it owns it, as sites set net.ipv4.ip_nonlocal_bind for).
    seg.lab.exec(
        &seg.nodes[0],
        &["sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"],
    );
    let mut haproxy1 = seg.lab.spawn(
        &seg.nodes[0],
        &haproxy,
        &[
            "-db",
            "-f",
            dir.join("haproxy.cfg").to_str().expect("utf-8"),
        ],
        &seg.log_path("haproxy1"),
    );
    let mut keepalived1 = seg.keepalived(0, "ka1", &ka1);
    assert!(
        seg.wait_holds(0, VIP4, Instant::now(), Duration::from_secs(8))
            .is_some(),
        "keepalived never became master\n{}",
        seg.logs(&all)
    );
    served(
        &seg,
        Duration::from_secs(5),
        &all,
        "through HAProxy on node1",
    );

    // 2. node2 migrates: its imported configuration keeps it backup.
    let (toml2, notes2) = import(&seg, 2, &ka2);
    assert!(
        toml2.contains("priority = 100") && toml2.contains("version = 2"),
        "{toml2}"
    );
    assert!(toml2.contains("listen = [\"10.77.0.10:80\"]"), "{toml2}");
    let ka2_origin = dir.join("keepalived-node2.conf").display().to_string();
    assert!(
        notes2.contains(&format!("{ka2_origin}:23: not carried: `chk_haproxy`")),
        "the track script is not explained at its line:\n{notes2}"
    );
    let _cx2 = seg.coexist(1, "cx2", &toml2);
    std::thread::sleep(Duration::from_secs(4));
    seg.assert_sole_holder(0, VIP4, Duration::from_secs(2), &all);

    // 3. keepalived and HAProxy stop on node1: coexist takes over.
    let stopped = Instant::now();
    keepalived1.signal(Signal::SIGTERM);
    haproxy1.signal(Signal::SIGTERM);
    let takeover = seg.wait_holds(1, VIP4, stopped, Duration::from_secs(6));
    assert!(
        takeover.is_some(),
        "coexist did not take over from keepalived\n{}",
        seg.logs(&all)
    );
    assert!(keepalived1.wait_exit(Duration::from_secs(5)).is_some());
    assert!(haproxy1.wait_exit(Duration::from_secs(5)).is_some());
    assert!(
        seg.wait_released(0, VIP4, Duration::from_secs(3)),
        "keepalived left the address behind\n{}",
        seg.logs(&all)
    );
    served(
        &seg,
        Duration::from_secs(5),
        &all,
        "through coexist on node2",
    );

    // 4. node1 migrates too, and preempts with its priority 150.
    let (toml1, _) = import(&seg, 1, &ka1);
    assert!(toml1.contains("priority = 150"), "{toml1}");
    let mut cx1 = seg.coexist(0, "cx1", &toml1);
    let preempted = seg.wait_holds(0, VIP4, Instant::now(), Duration::from_secs(8));
    assert!(
        preempted.is_some(),
        "coexist on node1 did not preempt\n{}",
        seg.logs(&all)
    );
    assert!(
        seg.wait_released(1, VIP4, Duration::from_secs(3)),
        "node2 kept the address\n{}",
        seg.logs(&all)
    );
    served(
        &seg,
        Duration::from_secs(5),
        &all,
        "through coexist on node1",
    );

    // 5. The coexist pair fails over within itself.
    let stopped = Instant::now();
    cx1.signal(Signal::SIGTERM);
    let back = seg.wait_holds(1, VIP4, stopped, Duration::from_secs(6));
    assert!(
        back.is_some(),
        "node2 did not take over\n{}",
        seg.logs(&all)
    );
    assert!(cx1.wait_exit(Duration::from_secs(5)).is_some());
    served(
        &seg,
        Duration::from_secs(5),
        &all,
        "through coexist on node2 again",
    );

    for name in ["cx1", "cx2"] {
        let log = seg.log(name);
        let complaints = coexist_complaints(&log);
        assert!(complaints.is_empty(), "{name}: {complaints:#?}\n{log}");
    }
    let log = seg.log("ka1");
    let complaints = keepalived_complaints(&log);
    assert!(complaints.is_empty(), "ka1: {complaints:#?}\n{log}");
    println!(
        "{test}: coexist (imported) took over from SIGTERMed keepalived in {:.0} ms; the imported pair failed over in {:.0} ms",
        ms(takeover.unwrap_or_default()),
        ms(back.unwrap_or_default())
    );
}
