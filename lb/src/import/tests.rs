//! Whole imports from strings (configurations written for these tests): the
//! output passes coexist's own validation, carries what it says, and
//! names what it does not with file and line.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::config::{self, Balance, CheckKind, Config, InitialState};
use crate::proxy_protocol::ProxyVersion;

fn run(sources: &[(Dialect, &str, &str)]) -> Imported {
    let owned: Vec<Source> = sources
        .iter()
        .map(|&(dialect, origin, text)| Source {
            dialect,
            origin: origin.to_owned(),
            text: text.to_owned(),
        })
        .collect();
    import(&owned)
}

/// The output, validated as `coexist check` would.
#[track_caller]
fn valid(imported: &Imported) -> Config {
    config::parse(&imported.toml, "imported.toml")
        .unwrap_or_else(|e| panic!("the import is not a valid config: {e}\n{}", imported.toml))
}

fn notes(imported: &Imported) -> Vec<String> {
    imported.notes.iter().map(ToString::to_string).collect()
}

#[track_caller]
fn has_note(imported: &Imported, prefix: &str, needle: &str) {
    assert!(
        imported
            .notes
            .iter()
            .map(ToString::to_string)
            .any(|n| n.starts_with(prefix) && n.contains(needle)),
        "no note starting {prefix:?} with {needle:?} in\n{:#?}",
        notes(imported)
    );
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A TCP `listen` with every server option coexist has.
const LISTEN: &str = "\
global
    maxconn 20000
    log /dev/log local0
defaults
    mode tcp
    timeout connect 3s
    timeout client 1m
    timeout server 1m
    retries 2
listen db
    bind 192.0.2.10:5432
    bind [2001:db8::10]:5432
    balance leastconn
    maxconn 500
    server db1 10.0.0.1:5432 check inter 500 rise 3 fall 2 weight 3 send-proxy-v2 maxconn 100
    server db2 10.0.0.2:5432 check inter 500 rise 3 fall 2 send-proxy-v2 disabled
    server db3 [2001:db8::3]:5432 check inter 500 rise 3 fall 2 send-proxy-v2 backup
";

#[test]
fn a_tcp_listen_becomes_a_frontend_and_a_backend() {
    // Input: LISTEN. Output: one frontend on both addresses, one backend
    // with the servers' weights, backup, drain and limits, the PROXY v2
    // header, the check timing and the timeouts.
    let out = run(&[(Dialect::Haproxy, "haproxy.cfg", LISTEN)]);
    let c = valid(&out);
    assert!(out.runnable);
    let f = c.frontend("db").expect("frontend db");
    assert_eq!(
        f.listen,
        [addr("192.0.2.10:5432"), addr("[2001:db8::10]:5432")]
    );
    assert_eq!(f.max_connections, Some(500));
    assert_eq!(f.proxy_protocol, Some(ProxyVersion::V2));
    let b = c.backend("db").expect("backend db");
    assert_eq!(b.balance, Balance::LeastConnections);
    assert_eq!(b.connect_timeout, Duration::from_secs(3));
    assert_eq!(b.idle_timeout, Duration::from_secs(60));
    assert_eq!(b.retries, 2);
    let h = b.health_check.as_ref().expect("checks");
    assert_eq!(h.kind, CheckKind::Tcp);
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_millis(500), Duration::from_millis(500))
    );
    assert_eq!((h.rise, h.fall), (3, 2));
    assert_eq!(h.initial_state, InitialState::Up);
    let servers: Vec<(&str, u32, bool, Option<usize>)> = b
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.weight, s.backup, s.max_connections))
        .collect();
    assert_eq!(
        servers,
        [
            ("db1", 3, false, Some(100)),
            ("db2", 0, false, None),
            ("db3", 1, true, None)
        ]
    );
    has_note(
        &out,
        "haproxy.cfg:2: not carried: `maxconn 20000`",
        "limits each frontend",
    );
    has_note(
        &out,
        "haproxy.cfg:3: not carried: `log /dev/log local0`",
        "stderr",
    );
    has_note(&out, "haproxy.cfg:16: changed: `disabled`", "drained");
    assert_eq!(out.notes.len(), 3, "{:#?}", notes(&out));
    // Every other line is carried.
    assert_eq!(out.carried_in("haproxy.cfg"), 13);
}

const FRONTEND_BACKEND: &str = "\
defaults tcp
    mode tcp
    timeout connect 5000
    timeout client 30s
    timeout server 90s
    option redispatch
frontend smtp from tcp
    bind :25
    bind :::587 v4v6
    default_backend mail
    tcp-request inspect-delay 5s
backend mail from tcp
    balance source
    option tcp-check
    tcp-check connect
    tcp-check send EHLO\\ coexist\\r\\n
    tcp-check expect string 250
    default-server check inter 5s
    server mx1 192.0.2.21:25
    server mx2 mx2.example.net:25
    server mx3 192.0.2.23:25 ssl verify none
backend unused_http
    mode http
    server web 192.0.2.30:80
";

/// `global` with `lines` (from line 2 on), then one TCP proxy.
fn with_global(lines: &str) -> String {
    format!("global\n    {lines}\nlisten db\n    mode tcp\n    bind 192.0.2.10:5432\n    server db1 10.0.0.1:5432\n")
}

/// HAProxy's thread count becomes coexist's, with a note on what the
/// threads do. Input: `nbthread 4` in `global`. Output: `[tuning]
/// threads = 4`, valid, and a note naming what differs.
#[test]
fn nbthread_becomes_tuning_threads() {
    let out = run(&[(Dialect::Haproxy, "haproxy.cfg", &with_global("nbthread 4"))]);
    let config = valid(&out);
    assert_eq!(config.tuning.threads, Some(4), "{}", out.toml);
    has_note(
        &out,
        "haproxy.cfg:2:",
        "health checks, VRRP, UDP and the admin API",
    );
}

/// A count coexist would refuse is reported, not written. Input:
/// `nbthread 0`, then `nbthread 5000`. Output: no `[tuning]`, two notes.
#[test]
fn nbthread_out_of_range_is_not_carried() {
    let global = "nbthread 0\n    nbthread 5000";
    let out = run(&[(Dialect::Haproxy, "haproxy.cfg", &with_global(global))]);
    let config = valid(&out);
    assert_eq!(config.tuning.threads, None, "{}", out.toml);
    for line in [2, 3] {
        has_note(
            &out,
            &format!("haproxy.cfg:{line}: not carried"),
            "a count from 1 to 1024",
        );
    }
}

#[test]
fn named_defaults_checks_and_unsupported_servers() {
    // Input: FRONTEND_BACKEND. Output: a dual-stack frontend, a maglev
    // backend with a send-expect check and only the server coexist can
    // reach; the rest named by line.
    let out = run(&[(Dialect::Haproxy, "h.cfg", FRONTEND_BACKEND)]);
    let c = valid(&out);
    let f = c.frontend("smtp").unwrap();
    assert_eq!(
        f.listen,
        [addr("0.0.0.0:25"), addr("[::]:587"), addr("0.0.0.0:587")]
    );
    assert_eq!(f.backend, "mail");
    let b = c.backend("mail").unwrap();
    assert_eq!(b.balance, Balance::Maglev);
    assert_eq!(b.connect_timeout, Duration::from_secs(5));
    assert_eq!(b.idle_timeout, Duration::from_secs(90));
    assert_eq!(b.retries, 3, "HAProxy's default");
    let h = b.health_check.as_ref().unwrap();
    assert_eq!(
        h.kind,
        CheckKind::SendExpect {
            send: b"EHLO coexist\r\n".to_vec(),
            expect: b"250".to_vec()
        }
    );
    assert_eq!(h.interval, Duration::from_secs(5));
    assert_eq!(b.servers.len(), 1);
    assert!(c.backend("unused_http").is_none());
    has_note(
        &out,
        "h.cfg:11: not carried: `tcp-request inspect-delay 5s`",
        "frontend to its backend",
    );
    has_note(&out, "h.cfg:13: changed: `balance source`", "Maglev");
    has_note(
        &out,
        "h.cfg:17: changed: `tcp-check expect string 250`",
        "start with it",
    );
    has_note(
        &out,
        "h.cfg:20: not carried: `server mx2 mx2.example.net:25`",
        "host name",
    );
    has_note(
        &out,
        "h.cfg:21: not carried: `server mx3 192.0.2.23:25 ssl verify none`",
        "TLS",
    );
    has_note(
        &out,
        "h.cfg:22: not carried: `backend unused_http`",
        "mode http (line 23)",
    );
    has_note(
        &out,
        "h.cfg:12: changed: `backend mail from tcp`",
        "the longer (90s)",
    );
    assert_eq!(out.notes.len(), 7, "{:#?}", notes(&out));
}

#[test]
fn http_checks_keep_path_host_and_status() {
    // Input: option httpchk with the old Host trick, then http-check
    // rules. Output: kind = "http" with path, host and expected status.
    let text = "\
listen web
    bind 127.0.0.1:8080
    option httpchk GET /health HTTP/1.1\\r\\nHost:\\ www.example.org
    http-check expect status 200-299
    server w1 127.0.0.1:9001 check
    server w2 127.0.0.1:9002
listen api
    bind 127.0.0.1:8081
    option httpchk
    http-check send meth HEAD uri /ready ver HTTP/1.1 hdr Host api.example.org
    http-check expect rstatus ^2
    server a1 127.0.0.1:9003 check port 8000
listen redis
    bind 127.0.0.1:6380
    option redis-check
    server r1 127.0.0.1:6379 check
";
    let out = run(&[(Dialect::Haproxy, "h.cfg", text)]);
    let c = valid(&out);
    let web = c.backend("web").unwrap().health_check.clone().unwrap();
    assert_eq!(
        web.kind,
        CheckKind::Http {
            path: "/health".into(),
            host: "www.example.org".into(),
            expect_status: 200..=299
        }
    );
    has_note(
        &out,
        "h.cfg:6: changed: `server w2 127.0.0.1:9002`",
        "checks every server",
    );
    // A check on another port: a connect check on the service port.
    assert_eq!(
        c.backend("api")
            .unwrap()
            .health_check
            .as_ref()
            .unwrap()
            .kind,
        CheckKind::Tcp
    );
    has_note(
        &out,
        "h.cfg:12: changed: `port 8000`",
        "own address and port",
    );
    let redis = c.backend("redis").unwrap().health_check.clone().unwrap();
    assert_eq!(
        redis.kind,
        CheckKind::SendExpect {
            send: b"PING\r\n".to_vec(),
            expect: b"+PONG".to_vec()
        }
    );
}

#[test]
fn overlapping_binds_and_duplicate_servers_stay_valid() {
    // Input: two frontends on one port (wildcard and specific) and two
    // servers on one address. Output: valid; the clashes reported.
    let text = "\
frontend a
    bind :80
    default_backend b
frontend c
    bind 192.0.2.1:80
    bind 192.0.2.1:81
    default_backend b
backend b
    server s1 10.0.0.1:80
    server s2 10.0.0.1:80
";
    let out = run(&[(Dialect::Haproxy, "h.cfg", text)]);
    let c = valid(&out);
    assert_eq!(c.frontend("c").unwrap().listen, [addr("192.0.2.1:81")]);
    assert_eq!(c.backend("b").unwrap().servers.len(), 1);
    assert!(c.backend("b").unwrap().health_check.is_none());
    has_note(
        &out,
        "h.cfg:5: not carried: `192.0.2.1:80`",
        "overlaps 0.0.0.0:80",
    );
    has_note(
        &out,
        "h.cfg:10: not carried: `server s2 10.0.0.1:80`",
        "same address",
    );
}

const KEEPALIVED: &str = "\
global_defs {
    router_id lb1
    script_user root
}
vrrp_script chk_haproxy {
    script \"/usr/bin/killall -0 haproxy\"
    interval 2
    weight -60
}
vrrp_instance VI_4 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    nopreempt
    authentication {
        auth_type PASS
        auth_pass secret
    }
    unicast_peer {
        192.0.2.3
    }
    use_vmac
    virtual_ipaddress {
        192.0.2.10/24 dev eth0 label eth0:vip
        2001:db8::10/64
        198.51.100.10/24 dev eth1
    }
    track_script {
        chk_haproxy
    }
    notify_master /etc/keepalived/master.sh
}
vrrp_instance VI_6 {
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.25
    virtual_ipaddress {
        2001:db8::10/64
    }
}
";

#[test]
fn vrrp_instances_carry_their_router_and_explain_scripts() {
    // Input: KEEPALIVED. Output: a v2 instance (keepalived's default
    // version) with peers, vmac, preempt off and a notify command, and a
    // v3 IPv6 instance; track_script, authentication and the addresses on
    // another interface or family explained.
    let out = run(&[(Dialect::Keepalived, "keepalived.conf", KEEPALIVED)]);
    let c = valid(&out);
    assert_eq!(c.vrrp.len(), 2);
    let v4 = &c.vrrp[0];
    assert_eq!(
        (
            v4.name.as_str(),
            v4.config.vrid,
            v4.config.priority,
            v4.config.version
        ),
        ("VI_4", 51, 150, vrrp::Version::V2)
    );
    assert_eq!(v4.config.advert_interval, Duration::from_secs(1));
    assert!(!v4.config.preempt && v4.wire.virtual_mac && v4.config.accept_mode);
    assert_eq!(
        v4.config.addresses,
        [vrrp::VirtualAddress::new("192.0.2.10".parse().unwrap(), 24)]
    );
    assert_eq!(
        v4.wire.unicast_peers,
        ["192.0.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(v4
        .wire
        .notify
        .as_deref()
        .unwrap()
        .contains("/etc/keepalived/master.sh"));
    let v6 = &c.vrrp[1];
    assert_eq!(
        (v6.config.version, v6.config.advert_interval),
        (vrrp::Version::V3, Duration::from_millis(250))
    );
    has_note(
        &out,
        "keepalived.conf:11: changed: `state MASTER`",
        "priority",
    );
    has_note(
        &out,
        "keepalived.conf:17: not carried: `authentication`",
        "RFC 3768",
    );
    has_note(
        &out,
        "keepalived.conf:26: not carried: `label eth0:vip`",
        "prefix only",
    );
    has_note(
        &out,
        "keepalived.conf:27: not carried: `2001:db8::10/64`",
        "other address family",
    );
    has_note(
        &out,
        "keepalived.conf:28: not carried: `198.51.100.10/24 dev eth1`",
        "on eth1",
    );
    has_note(
        &out,
        "keepalived.conf:31: not carried: `chk_haproxy`",
        "lowers the priority by 60",
    );
    has_note(&out, "keepalived.conf:2: not carried: `router_id lb1`", "");
    has_note(
        &out,
        "keepalived.conf:3: not carried: `script_user root`",
        "own user",
    );
}

const IPVS: &str = "\
virtual_server 192.0.2.50 443 {
    delay_loop 5
    lb_algo wrr
    lb_kind DR
    persistence_timeout 300
    protocol TCP
    sorry_server 192.0.2.99 443
    real_server 192.0.2.51 443 {
        weight 2
        HTTP_GET {
            url {
                path /status
                status_code 200
            }
            connect_timeout 2
            retry 2
        }
    }
    real_server 192.0.2.52 443 {
        weight 1
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
virtual_server 192.0.2.50 53 {
    protocol UDP
    real_server 192.0.2.53 53 {
    }
}
virtual_server fwmark 7 {
    real_server 192.0.2.54 80 {
    }
}
";

/// keepalived ignores `preempt_delay` under `nopreempt` (below the owner's
/// priority); coexist refuses the pair, so the import leaves the delay out
/// and says why, wherever in the block `nopreempt` comes.
#[test]
fn a_preempt_delay_under_nopreempt_is_left_out() {
    let text = "vrrp_instance VI_1 {\n    preempt_delay 5\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    nopreempt\n    virtual_ipaddress {\n        192.0.2.10/24\n    }\n}\n";
    let out = run(&[(Dialect::Keepalived, "keepalived.conf", text)]);
    let c = valid(&out);
    let v = &c.vrrp[0].config;
    assert_eq!((v.preempt, v.preempt_delay), (false, Duration::ZERO));
    has_note(
        &out,
        "keepalived.conf:2: not carried: `preempt_delay 5`",
        "keepalived ignores it with nopreempt",
    );
    let owner = text.replace("priority 150", "priority 255");
    let out = run(&[(Dialect::Keepalived, "keepalived.conf", &owner)]);
    let v = &valid(&out).vrrp[0].config;
    assert_eq!(v.preempt_delay, Duration::from_secs(5));
}

#[test]
fn ipvs_virtual_servers_become_frontends() {
    // Input: IPVS. Output: a frontend on the virtual address, a weighted
    // round-robin backend with the sorry server as backup and the first
    // server's HTTP check; the UDP service a UDP frontend on the same port
    // number; the fwmark service reported.
    let out = run(&[(Dialect::Keepalived, "k.conf", IPVS)]);
    let c = valid(&out);
    assert_eq!(c.frontends.len(), 2);
    let udp = &c.frontends[1];
    assert_eq!(
        (udp.listen.as_slice(), udp.udp().is_some()),
        ([addr("192.0.2.50:53")].as_slice(), true)
    );
    let f = &c.frontends[0];
    assert_eq!(f.name, "vs-192.0.2.50:443");
    assert_eq!(f.listen, [addr("192.0.2.50:443")]);
    let b = c.backend(&f.backend).unwrap();
    assert_eq!(b.balance, Balance::RoundRobin);
    let servers: Vec<(String, u32, bool)> = b
        .servers
        .iter()
        .map(|s| (s.address.to_string(), s.weight, s.backup))
        .collect();
    assert_eq!(
        servers,
        [
            ("192.0.2.51:443".into(), 2, false),
            ("192.0.2.52:443".into(), 1, false),
            ("192.0.2.99:443".into(), 1, true)
        ]
    );
    let h = b.health_check.as_ref().unwrap();
    assert_eq!(
        h.kind,
        CheckKind::Http {
            path: "/status".into(),
            host: "localhost".into(),
            expect_status: 200..=200
        }
    );
    assert_eq!(
        (h.interval, h.timeout, h.rise, h.fall),
        (Duration::from_secs(5), Duration::from_secs(2), 1, 3)
    );
    has_note(&out, "k.conf:4: changed: `lb_kind DR`", "source");
    has_note(
        &out,
        "k.conf:5: not carried: `persistence_timeout 300`",
        "maglev",
    );
    has_note(
        &out,
        "k.conf:19: changed: `real_server 192.0.2.52 443`",
        "differs",
    );
    has_note(
        &out,
        "k.conf:31: not carried: `virtual_server fwmark 7`",
        "firewall-mark",
    );
}

#[test]
fn a_pair_configuration_imports_as_one_node() {
    // Input: keepalived for the VIP and HAProxy listening on it. Output:
    // one file with the frontend and the VRRP instance.
    let haproxy = "frontend web\n    bind 192.0.2.10:80\n    default_backend web\nbackend web\n    server w1 10.0.0.11:80 check\n";
    let keepalived = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    virtual_ipaddress {\n        192.0.2.10/24\n    }\n}\n";
    let out = run(&[
        (Dialect::Haproxy, "haproxy.cfg", haproxy),
        (Dialect::Keepalived, "keepalived.conf", keepalived),
    ]);
    let c = valid(&out);
    assert_eq!(
        (c.frontends.len(), c.backends.len(), c.vrrp.len()),
        (1, 1, 1)
    );
    assert!(out.notes.is_empty(), "{:#?}", notes(&out));
    assert_eq!(out.carried_in("haproxy.cfg"), 5);
    assert_eq!(out.carried_in("keepalived.conf"), 6);
    assert_eq!(
        out.summary("haproxy.cfg"),
        "haproxy.cfg: 5 directive(s) carried over, 0 with a difference; 0 not carried"
    );
    assert!(out
        .toml
        .starts_with("# Imported by `coexist import` from haproxy.cfg, keepalived.conf."));
}

#[test]
fn nothing_to_carry_is_said_so() {
    // Input: HTTP-only HAProxy. Output: not runnable, every line listed.
    let text = "global\n    daemon\ndefaults\n    mode http\nfrontend www\n    bind :80\n    default_backend app\nbackend app\n    server a 192.0.2.1:80\n";
    let out = run(&[(Dialect::Haproxy, "h.cfg", text)]);
    assert!(!out.runnable);
    assert_eq!(out.carried_in("h.cfg"), 0);
    has_note(&out, "h.cfg:2: not carried: `daemon`", "systemd");
    has_note(
        &out,
        "h.cfg:4: not carried: `mode http`",
        "nothing carried over uses it",
    );
    has_note(
        &out,
        "h.cfg:5: not carried: `frontend www`",
        "mode http (line 4)",
    );
    has_note(
        &out,
        "h.cfg:8: not carried: `backend app`",
        "mode http (line 4)",
    );
    // The notes are a comment at the top of the output too.
    assert!(out.toml.contains("#   h.cfg:2: `daemon`:"));
}

#[test]
fn unknown_or_broken_input_is_reported_not_fatal() {
    let out = run(&[
        (
            Dialect::Haproxy,
            "h.cfg",
            "listen x\n  bind \"${ADDR}:80\"\n  frobnicate 3\n  server s 192.0.2.1:80 'open\n",
        ),
        (
            Dialect::Keepalived,
            "k.conf",
            "vrrp_instance X {\n  virtual_router_id 300\n}\n}\n",
        ),
    ]);
    assert!(!out.runnable);
    has_note(&out, "h.cfg:2: not carried:", "environment variable");
    has_note(
        &out,
        "h.cfg:3: not carried: `frobnicate 3`",
        "no counterpart",
    );
    has_note(&out, "h.cfg:4: not carried:", "quote");
    has_note(&out, "h.cfg:1: not carried: `listen x`", "no server");
    has_note(
        &out,
        "k.conf:1: not carried: `vrrp_instance X`",
        "no interface",
    );
    has_note(&out, "k.conf:4:", "closing brace");
}

/// The text of the fenced block after the line `title` in README.md.
fn readme_block(title: &str) -> String {
    let readme = include_str!("../../../README.md");
    let after = &readme[readme
        .find(title)
        .unwrap_or_else(|| panic!("{title} in README.md"))..];
    let start = after.find("```").expect("a block") + 3;
    let body = &after[start..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    body[..body.find("```").expect("closing fence")].to_owned()
}

#[test]
fn the_readme_worked_example_imports_as_shown() {
    // Input: README's haproxy.cfg and keepalived.conf. Output: every
    // line README shows of coexist.toml (notes shortened there).
    let haproxy = readme_block("`haproxy.cfg`:");
    let keepalived = readme_block("`keepalived.conf`:");
    let out = run(&[
        (Dialect::Haproxy, "haproxy.cfg", &haproxy),
        (Dialect::Keepalived, "keepalived.conf", &keepalived),
    ]);
    valid(&out);
    let shown = readme_block("`coexist.toml` (the notes shortened):");
    for line in shown.lines() {
        if line.starts_with("#   ...") {
            continue;
        }
        if let Some((start, _)) = line.split_once(" ...") {
            // A shortened note: the note starts so.
            assert!(out.toml.contains(start), "{start:?} not in\n{}", out.toml);
        } else {
            assert!(out.toml.contains(line), "{line:?} not in\n{}", out.toml);
        }
    }
}

mod generated {
    //! Configurations assembled at random from the directives both grammars
    //! use, with values that coexist accepts and values it refuses, names
    //! that refer to each other and addresses that clash: the import never
    //! fails, and whatever it writes passes coexist's validation.

    use super::*;
    use proptest::prelude::*;

    /// Picks from lists with a stream of random numbers.
    struct Pick<'a>(std::slice::Iter<'a, u32>);

    impl Pick<'_> {
        fn one<'w>(&mut self, from: &[&'w str]) -> &'w str {
            let n = self.0.next().copied().unwrap_or(0) as usize;
            from[n % from.len()]
        }

        fn chance(&mut self, percent: u32) -> bool {
            self.0.next().copied().unwrap_or(0) % 100 < percent
        }
    }

    const NAMES: &[&str] = &["web", "db", "a/b", "web"];
    const BINDS: &[&str] = &[
        ":80",
        ":::80",
        "192.0.2.1:80",
        "[2001:db8::1]:443",
        "0.0.0.0:80",
        "10.0.0.1:8000-8003",
        "host:80",
        "unix@x",
        "192.0.2.1",
        ":443 ssl crt x.pem",
        ":80 v6only",
        "[::]:80 v4v6",
    ];
    const SERVERS: &[&str] = &[
        "10.0.0.1:80",
        "10.0.0.1:80",
        "[2001:db8::2]:80",
        "10.0.0.3",
        "name:80",
        "0.0.0.0:80",
        "10.0.0.4:+1",
    ];
    const SERVER_OPTIONS: &[&str] = &[
        "",
        "check",
        "check inter 1",
        "check inter 100000000",
        "check rise 0 fall 2000",
        "weight 0",
        "weight 300",
        "backup",
        "disabled",
        "maxconn 0",
        "maxconn 5",
        "send-proxy",
        "send-proxy-v2",
        "ssl",
        "check port 81",
        "check-ssl check",
        "slowstart 3s",
        "source 1.2.3.4",
    ];
    const PROXY_LINES: &[&str] = &[
        "mode tcp",
        "mode http",
        "balance roundrobin",
        "balance source",
        "balance random(5)",
        "balance uri",
        "timeout connect 0",
        "timeout connect 5s",
        "timeout client 2d",
        "timeout server 1m",
        "timeout tunnel 1h",
        "timeout check 3s",
        "retries 500",
        "retries 0",
        "maxconn 0",
        "maxconn 100",
        "option tcp-check",
        "option httpchk",
        "option httpchk GET bad path",
        "option redis-check",
        "option mysql-check",
        "tcp-check send PING\\r\\n",
        "tcp-check expect string +PONG",
        "tcp-check expect rstring ^\\+OK",
        "tcp-check send-binary ff",
        "http-check expect status 200",
        "http-check expect rstatus ^9",
        "http-check send meth HEAD uri /x hdr Host h",
        "disabled",
        "log global",
        "acl a src 1.2.3.4",
        "tcp-request content reject",
        "option tcplog",
        "no option redispatch",
    ];
    const KEEPALIVED_VRRP: &[&str] = &[
        "interface eth0",
        "interface eth1",
        "virtual_router_id 51",
        "virtual_router_id 52",
        "virtual_router_id 0",
        "priority 150",
        "priority 0",
        "advert_int 0.001",
        "advert_int 0.5",
        "advert_int 300",
        "version 2",
        "version 3",
        "version 4",
        "nopreempt",
        "preempt_delay 5000",
        "accept",
        "use_vmac vrrp1",
        "state MASTER",
        "notify_master /bin/x",
        "notify \"/bin/x a\" root",
        "notify_fault /bin/y",
        "garp_master_repeat 1000",
        "garp_master_refresh 0.1",
        "authentication {",
        "}",
        "track_script {",
        "chk weight -20",
        "}",
        "smtp_alert",
    ];
    const VIPS: &[&str] = &[
        "192.0.2.10/24",
        "192.0.2.11",
        "2001:db8::10/64",
        "fe80::1",
        "224.0.0.1",
        "0.0.0.0",
        "192.0.2.12/24 dev eth9",
        "192.0.2.13/24 label eth0:1",
        "bad",
    ];
    const IPVS_LINES: &[&str] = &[
        "lb_algo rr",
        "lb_algo wrr",
        "lb_algo sh",
        "lb_algo lblc",
        "lb_kind DR",
        "protocol UDP",
        "delay_loop 0",
        "delay_loop 100000",
        "persistence_timeout 50",
        "alpha",
        "sorry_server 192.0.2.99 80",
        "sorry_server 0.0.0.0 0",
    ];
    const CHECKS: &[&str] = &[
        "TCP_CHECK {\n connect_timeout 300\n }",
        "HTTP_GET {\n url {\n path /x\n status_code 200-299\n }\n }",
        "SSL_GET {\n }",
        "MISC_CHECK {\n misc_path /bin/true\n }",
        "",
    ];

    fn haproxy(numbers: &[u32]) -> String {
        let mut p = Pick(numbers.iter());
        let mut out = String::new();
        while p.0.len() > 0 {
            let line = match p.one(&[
                "section", "section", "bind", "bind", "server", "server", "server", "line", "route",
            ]) {
                "section" => {
                    let kind = p.one(&[
                        "listen", "listen", "frontend", "backend", "defaults", "global",
                    ]);
                    format!("{kind} {}", p.one(NAMES))
                }
                "bind" => format!("  bind {}", p.one(BINDS)),
                "server" => format!(
                    "  server {} {} {}",
                    p.one(&["s1", "s2", "s1"]),
                    p.one(SERVERS),
                    p.one(SERVER_OPTIONS)
                ),
                "route" => format!(
                    "  {} {}",
                    p.one(&["default_backend", "use_backend"]),
                    p.one(NAMES)
                ),
                _ => format!("  {}", p.one(PROXY_LINES)),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    fn keepalived(numbers: &[u32]) -> String {
        let mut p = Pick(numbers.iter());
        let mut out = String::new();
        while p.0.len() > 0 {
            if p.chance(60) {
                out.push_str(&format!(
                    "vrrp_instance {} {{\n",
                    p.one(&["VI_1", "VI_2", "a b"])
                ));
                for _ in 0..(p.one(&["3", "6", "9"]).parse::<usize>().unwrap_or(3)) {
                    out.push_str(p.one(KEEPALIVED_VRRP));
                    out.push('\n');
                }
                if p.chance(90) {
                    out.push_str("virtual_ipaddress {\n");
                    for _ in 0..3 {
                        out.push_str(p.one(VIPS));
                        out.push('\n');
                    }
                    out.push_str("}\n");
                }
                if p.chance(30) {
                    out.push_str("unicast_peer {\n192.0.2.3\n2001:db8::3\n}\n");
                }
                out.push_str("}\n");
            } else {
                out.push_str(&format!(
                    "virtual_server {} {} {{\n",
                    p.one(&["192.0.2.50", "2001:db8::50", "fwmark", "0.0.0.0"]),
                    p.one(&["80", "80", "0", "443"])
                ));
                for _ in 0..3 {
                    out.push_str(p.one(IPVS_LINES));
                    out.push('\n');
                }
                for _ in 0..2 {
                    out.push_str(&format!(
                        "real_server {} 80 {{\nweight {}\n{}\n}}\n",
                        p.one(&["192.0.2.51", "192.0.2.51", "2001:db8::51", "bad"]),
                        p.one(&["0", "1", "3", "999"]),
                        p.one(CHECKS)
                    ));
                }
                out.push_str("}\n");
            }
        }
        out
    }

    /// The properties below are only as strong as the share of generated
    /// configurations that import to something runnable.
    #[test]
    fn generated_configurations_are_often_runnable() {
        let mut seed = 0x2545_f491_u32;
        let mut numbers = |n: usize| -> Vec<u32> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed
                })
                .collect()
        };
        let cases = 200;
        let mut runnable = [0; 2];
        for _ in 0..cases {
            let h = haproxy(&numbers(80));
            runnable[0] += usize::from(run(&[(Dialect::Haproxy, "h", &h)]).runnable);
            let k = keepalived(&numbers(80));
            runnable[1] += usize::from(run(&[(Dialect::Keepalived, "k", &k)]).runnable);
        }
        assert!(
            runnable.iter().all(|r| r * 4 >= cases),
            "{runnable:?} of {cases}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_haproxy_configuration_imports_to_a_valid_one(
            numbers in prop::collection::vec(any::<u32>(), 0..120)
        ) {
            let text = haproxy(&numbers);
            let out = run(&[(Dialect::Haproxy, "h.cfg", &text)]);
            if out.runnable {
                config::parse(&out.toml, "imported.toml").map_err(|e| {
                    TestCaseError::fail(format!("{e}\n--- input\n{text}--- output\n{}", out.toml))
                })?;
            }
        }

        #[test]
        fn any_keepalived_configuration_imports_to_a_valid_one(
            numbers in prop::collection::vec(any::<u32>(), 0..120)
        ) {
            let text = keepalived(&numbers);
            let out = run(&[(Dialect::Keepalived, "k.conf", &text)]);
            if out.runnable {
                config::parse(&out.toml, "imported.toml").map_err(|e| {
                    TestCaseError::fail(format!("{e}\n--- input\n{text}--- output\n{}", out.toml))
                })?;
            }
        }
    }
}

#[test]
fn udp_virtual_server_becomes_a_udp_frontend() {
    // Input: keepalived's UDP_CHECK sample shape, a DNS service on UDP with
    // a text payload and require_reply. Output: a UDP frontend whose backend
    // has a UDP check sending the payload.
    let text = "virtual_server 192.0.2.53 53 {\n  protocol UDP\n  lb_algo rr\n  real_server 10.0.0.1 53 {\n    UDP_CHECK {\n      payload 70696e67\n      require_reply 706f6e67\n    }\n  }\n  real_server 10.0.0.2 53 {\n    UDP_CHECK {\n      payload 70696e67\n      require_reply 706f6e67\n    }\n  }\n}\n";
    let out = run(&[(Dialect::Keepalived, "k.conf", text)]);
    let config = valid(&out);
    let frontend = &config.frontends[0];
    assert!(frontend.udp().is_some(), "{}", out.toml);
    assert_eq!(
        frontend.listen,
        ["192.0.2.53:53".parse::<SocketAddr>().unwrap()]
    );
    let check = config.backends[0].health_check.as_ref().unwrap();
    assert_eq!(
        check.kind,
        CheckKind::Udp {
            send: b"ping".to_vec(),
            expect: Some(b"pong".to_vec()),
        }
    );
}

#[test]
fn checks_coexist_cannot_match_on_udp_leave_servers_unchecked() {
    // Input: a UDP service checked by PING_CHECK and a UDP_CHECK without
    // require_reply (keepalived counts silence as success). Output: no
    // check rather than one that would mark working servers down.
    let text = "virtual_server 192.0.2.53 1358 {\n  protocol UDP\n  real_server 10.0.0.1 1358 {\n    PING_CHECK {\n      retry 2\n    }\n  }\n  real_server 10.0.0.2 1358 {\n    UDP_CHECK {\n      connect_timeout 3\n    }\n  }\n}\n";
    let out = run(&[(Dialect::Keepalived, "k.conf", text)]);
    let config = valid(&out);
    assert!(config.frontends[0].udp().is_some());
    assert!(config.backends[0].health_check.is_none(), "{}", out.toml);
    has_note(&out, "k.conf:4: not carried: `PING_CHECK`", "no ICMP check");
    has_note(&out, "k.conf:9: not carried: `UDP_CHECK`", "require_reply");
}

#[test]
fn sctp_services_are_listed_not_carried() {
    let text =
        "virtual_server 192.0.2.1 9 {\n  protocol SCTP\n  real_server 10.0.0.1 9 {\n  }\n}\n";
    let out = run(&[(Dialect::Keepalived, "k.conf", text)]);
    assert!(!out.runnable);
    has_note(&out, "k.conf:1: not carried:", "a SCTP service");
}

#[test]
fn virtual_server_group_listens_on_every_member() {
    // Input: keepalived's virtual_server_group sample shape: addresses, a
    // range of the last byte, fwmarks. Output: one frontend listening on
    // each address (the range expanded); fwmark members listed.
    let text = "virtual_server_group VSG {\n  192.0.2.1 8080\n  192.0.2.3-5 80\n  2001:db8::a-c 80\n  fwmark 1\n}\nvirtual_server group VSG {\n  protocol TCP\n  real_server 10.0.0.1 80 {\n    TCP_CHECK {\n    }\n  }\n}\nvirtual_server_group UNUSED {\n  192.0.2.9 80\n}\n";
    let out = run(&[(Dialect::Keepalived, "k.conf", text)]);
    let config = valid(&out);
    let listen: Vec<String> = config.frontends[0]
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        listen,
        [
            "192.0.2.1:8080",
            "192.0.2.3:80",
            "192.0.2.4:80",
            "192.0.2.5:80",
            "[2001:db8::a]:80",
            "[2001:db8::b]:80",
            "[2001:db8::c]:80"
        ],
        "{}",
        out.toml
    );
    assert_eq!(config.frontends[0].name, "vsg-VSG");
    has_note(&out, "k.conf:5: not carried: `fwmark 1`", "firewall-mark");
    has_note(
        &out,
        "k.conf:14: not carried: `virtual_server_group UNUSED`",
        "no virtual_server uses it",
    );
}

#[test]
fn a_virtual_server_naming_a_missing_group_is_listed() {
    let text = "virtual_server group NOPE {\n  real_server 10.0.0.1 80 {\n  }\n}\n";
    let out = run(&[(Dialect::Keepalived, "k.conf", text)]);
    assert!(!out.runnable);
    has_note(
        &out,
        "k.conf:1: not carried:",
        "no virtual_server_group named \"NOPE\"",
    );
}

#[test]
fn an_import_with_nothing_runnable_is_still_a_valid_config() {
    // Input: Debian's default haproxy.cfg shape (global and defaults only).
    // Output: a config coexist accepts, serving only the admin endpoint.
    let text = "global\n    daemon\ndefaults\n    mode http\n    timeout connect 5000\n";
    let out = run(&[(Dialect::Haproxy, "h.cfg", text)]);
    assert!(!out.runnable);
    assert!(valid(&out).has_nothing_to_run(), "{}", out.toml);
}
