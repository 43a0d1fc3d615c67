//! Config from strings: the examples parse with the documented defaults, and
//! every mistake is reported at its line, column and key.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The first diagnostic, displayed.
fn first_error(text: &str) -> String {
    let e = parse(text, "t.toml").expect_err("config should be rejected");
    e.to_string().lines().next().unwrap().to_owned()
}

#[track_caller]
fn assert_error(text: &str, line: usize, column: usize, key: &str, needle: &str) {
    let got = first_error(text);
    let prefix = format!("t.toml:{line}:{column}: {key}: ");
    assert!(
        got.starts_with(&prefix),
        "expected prefix {prefix:?}\n got {got:?}"
    );
    assert!(got.contains(needle), "expected {needle:?} in {got:?}");
}

/// A minimal valid backend, appended where a case needs one.
const WEB_BACKEND: &str =
    "[[backend]]\nname = \"web\"\nservers = [{ address = \"127.0.0.1:8001\" }]\n";

/// The example of DESIGN.md, verbatim.
const DESIGN_EXAMPLE: &str = r#"[admin]
listen = "127.0.0.1:9100"             # HTTP: /metrics (Prometheus), /status (JSON)

[[frontend]]
name = "web"
listen = ["0.0.0.0:8080", "[::]:8080"] # any mix of IPv4 and IPv6; VIPs may be listed before they are owned
backend = "web"
max_connections = 100000               # optional
proxy_protocol = "v2"                  # optional: "none" (default), "v1", "v2" — sent to the servers

[[backend]]
name = "web"
balance = "round-robin"                # round-robin | least-connections | maglev | random-two
connect_timeout = "2s"
idle_timeout = "5m"
retries = 2                            # on connect failure, try again on another server
health_check = { kind = "tcp", interval = "1s", timeout = "500ms", rise = 2, fall = 2 }
  # kind: "tcp" (default) | "send-expect" (+ send, expect) | "http" (+ path, host, expect_status)
  # no health_check table: no active checks (failed connects still count, passively)
servers = [
  { name = "web1", address = "[2001:db8::11]:80", weight = 1 },
  { address = "192.0.2.11:80" },       # name defaults to the address; weight to 1; weight 0 drains
  { address = "192.0.2.12:80", backup = true },   # used only while no other server is up
]

[[vrrp]]
name = "front-v4"
interface = "eth0"
vrid = 51
priority = 150
advert_interval = "100ms"
version = 3                            # 2 is IPv4 only
preempt = true
addresses = ["192.0.2.10/24"]          # one family per instance
track = [{ frontend = "web", weight = 60 }]   # lower priority by 60 while "web" has no healthy server
"#;

#[test]
fn design_example_parses_with_defaults_filled() {
    let c = parse(DESIGN_EXAMPLE, "design.toml").unwrap();
    assert_eq!(c.admin.listen, Some(addr("127.0.0.1:9100")));
    assert_eq!(
        c.tuning,
        Tuning {
            pipe_size: 65536,
            pipe_pool_max: 1024,
            splice: true,
            shutdown_grace: Duration::from_secs(30),
            backlog: 1024,
            threads: None,
        }
    );
    let f = c.frontend("web").unwrap();
    assert_eq!(f.listen, [addr("0.0.0.0:8080"), addr("[::]:8080")]);
    assert_eq!(f.max_connections, Some(100_000));
    assert_eq!(
        f.proxy_protocol,
        Some(crate::proxy_protocol::ProxyVersion::V2)
    );

    let b = c.backend("web").unwrap();
    assert_eq!(b.balance, Balance::RoundRobin);
    assert_eq!(b.maglev_table_size, 65537);
    assert_eq!(
        (b.connect_timeout, b.idle_timeout),
        (Duration::from_secs(2), Duration::from_secs(300))
    );
    assert_eq!(b.retries, 2);
    let hc = b.health_check.as_ref().unwrap();
    assert_eq!(hc.kind, CheckKind::Tcp);
    assert_eq!(
        (hc.interval, hc.timeout),
        (Duration::from_secs(1), Duration::from_millis(500))
    );
    assert_eq!(hc.initial_state, InitialState::Down);
    assert_eq!((b.rise, b.fall), (2, 2), "taken from health_check");
    let names: Vec<&str> = b.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web1", "192.0.2.11:80", "192.0.2.12:80"]);
    assert_eq!(b.servers[1].weight, 1);
    assert!(!b.servers[1].backup && b.servers[2].backup);
    assert_eq!(b.servers[0].max_connections, None);

    // Every key left out has the vrrp crate's default.
    let v = &c.vrrp[0];
    let mut expected = vrrp::InstanceSpec::new(
        "front-v4".into(),
        "eth0".into(),
        51,
        vec!["192.0.2.10/24".parse().unwrap()],
    );
    expected.config.priority = 150;
    expected.config.advert_interval = Duration::from_millis(100);
    expected.config.tracks = vec![vrrp::Track {
        name: "web".into(),
        weight: 60,
    }];
    assert_eq!(*v, expected);
    assert_eq!(v.config.family(), vrrp::Family::V4);
}

// Input: a VRRP-only config with every key. Output: each value lands on
// its setting of the vrrp crate's model.
#[test]
fn vrrp_every_key_reaches_the_model() {
    let c = parse(
        "[[vrrp]]\nname = \"v\"\ninterface = \"eth1\"\nvrid = 7\npriority = 255\nadvert_interval = \"50ms\"\n\
         version = 3\npreempt = false\npreempt_delay = \"2s\"\naccept_mode = true\naddresses = [\"192.0.2.10/24\"]\n\
         unicast_peers = [\"192.0.2.3\"]\nvirtual_mac = true\nnotify = \"/bin/true\"\nchecksum = \"message-only\"\n\
         garp_count = 3\ngarp_interval = \"20ms\"\ngarp_refresh = \"30s\"\n",
        "t.toml",
    )
    .unwrap();
    let mut expected = vrrp::InstanceSpec::new(
        "v".into(),
        "eth1".into(),
        7,
        vec!["192.0.2.10/24".parse().unwrap()],
    );
    let (config, wire) = (&mut expected.config, &mut expected.wire);
    config.version = vrrp::Version::V3;
    // The owner: the one priority where preempt_delay means something
    // with preempt off (the owner preempts regardless).
    config.priority = 255;
    config.advert_interval = Duration::from_millis(50);
    config.preempt = false;
    config.preempt_delay = Duration::from_secs(2);
    config.accept_mode = true;
    config.checksum_mode = vrrp::ChecksumMode::MessageOnly;
    wire.unicast_peers = vec!["192.0.2.3".parse().unwrap()];
    wire.virtual_mac = true;
    wire.notify = Some("/bin/true".into());
    wire.garp.count = 3;
    wire.garp.interval = Duration::from_millis(20);
    wire.garp.refresh = Some(Duration::from_secs(30));
    assert_eq!(c.vrrp, [expected]);
}

#[test]
fn vrrp_version_2_instance() {
    let c = parse(
        "[[vrrp]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nversion = 2\nadvert_interval = \"2s\"\naddresses = [\"192.0.2.10/24\"]\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.vrrp[0].config.version, vrrp::Version::V2);
}

#[test]
fn shipped_example_config_parses() {
    let c = parse(
        include_str!("../../../conf/coexist.toml"),
        "conf/coexist.toml",
    )
    .unwrap();
    assert!(!c.frontends.is_empty() && !c.backends.is_empty() && c.vrrp.len() >= 2);
    // Only loopback and documentation addresses (RFC 5737, RFC 3849).
    let documentation = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(a) => a.octets()[..3] == [192, 0, 2],
        std::net::IpAddr::V6(a) => {
            a.segments()[..2] == [0x2001, 0xdb8] || a.is_unicast_link_local()
        }
    };
    let listen = c
        .frontends
        .iter()
        .flat_map(|f| f.listen.iter().map(|a| a.ip()));
    let servers = c.backends.iter().flat_map(|b| {
        b.servers
            .iter()
            .filter_map(|s| s.address.socket())
            .map(|a| a.ip())
    });
    let vips = c
        .vrrp
        .iter()
        .flat_map(|v| v.config.addresses.iter().map(|a| a.addr));
    for ip in listen.chain(servers).chain(vips) {
        assert!(ip.is_loopback() || documentation(ip), "{ip} in example");
    }
}

#[test]
fn defaults_without_health_check_and_admin_disabled() {
    let text = format!("[admin]\nlisten = \"\"\n[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = \"web\"\n{WEB_BACKEND}");
    let c = parse(&text, "t.toml").unwrap();
    assert_eq!(c.admin.listen, None);
    let b = &c.backends[0];
    assert_eq!((b.health_check.as_ref(), b.rise, b.fall), (None, 2, 3));
    assert_eq!(c.frontends[0].proxy_protocol, None);
    assert_eq!(c.frontends[0].max_connections, None);
}

#[test]
fn http_check_defaults_and_status_forms() {
    let text = "[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:80\"]\nbackend = \"b\"\n[[backend]]\nname = \"b\"\nhealth_check = { kind = \"http\" }\nservers = [{ address = \"127.0.0.1:81\" }]\n";
    let c = parse(text, "t.toml").unwrap();
    let expected = CheckKind::Http {
        path: "/".into(),
        host: "localhost".into(),
        expect_status: 200..=399,
    };
    assert_eq!(c.backends[0].health_check.as_ref().unwrap().kind, expected);
    let hc = c.backends[0].health_check.as_ref().unwrap();
    assert_eq!(
        (hc.interval, hc.timeout, hc.rise, hc.fall),
        (Duration::from_secs(2), Duration::from_secs(1), 2, 3)
    );

    let text = text.replace(
        "kind = \"http\"",
        "kind = \"http\", path = \"/health\", host = \"example.org\", expect_status = 204",
    );
    let c = parse(&text, "t.toml").unwrap();
    let expected = CheckKind::Http {
        path: "/health".into(),
        host: "example.org".into(),
        expect_status: 204..=204,
    };
    assert_eq!(c.backends[0].health_check.as_ref().unwrap().kind, expected);
}

#[test]
fn send_expect_keeps_escapes_as_bytes() {
    let text = "[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:80\"]\nbackend = \"b\"\n[[backend]]\nname = \"b\"\nhealth_check = { kind = \"send-expect\", send = \"PING\\r\\n\", expect = \"+PONG\" }\nservers = [{ address = \"127.0.0.1:81\" }]\n";
    let c = parse(text, "t.toml").unwrap();
    let expected = CheckKind::SendExpect {
        send: b"PING\r\n".to_vec(),
        expect: b"+PONG".to_vec(),
    };
    assert_eq!(c.backends[0].health_check.as_ref().unwrap().kind, expected);
}

#[test]
fn vrrp_only_ipv6_instance_with_unicast_peers() {
    let text = "[[vrrp]]\nname = \"v6\"\ninterface = \"eth1\"\nvrid = 7\naddresses = [\"fe80::7\", \"2001:db8::10/64\"]\nunicast_peers = [\"2001:db8::2\"]\nvirtual_mac = true\nnotify = \"/usr/local/bin/notify\"\ngarp_refresh = \"60s\"\n";
    let c = parse(text, "t.toml").unwrap();
    let v = &c.vrrp[0];
    assert_eq!(v.config.family(), vrrp::Family::V6);
    assert_eq!(
        v.config.addresses[0],
        vrrp::VirtualAddress::new("fe80::7".parse().unwrap(), 128)
    );
    assert_eq!(
        v.wire.unicast_peers,
        ["2001:db8::2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(v.wire.virtual_mac);
    assert_eq!(v.wire.notify.as_deref(), Some("/usr/local/bin/notify"));
    assert_eq!(v.wire.garp.refresh, Some(Duration::from_secs(60)));
    assert_eq!(v.config.advert_interval, Duration::from_secs(1));
    assert_eq!(v.config.priority, 100);
}

// --- TOML and serde shape errors -------------------------------------------

#[test]
fn unknown_top_level_key() {
    assert_error(
        "frontends = []\n",
        1,
        1,
        "frontends",
        "unknown field `frontends`",
    );
}

#[test]
fn unknown_key_in_frontend_names_it() {
    let text = "[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:80\"]\nbackend = \"web\"\nbakend = \"x\"\n";
    assert_error(text, 5, 1, "frontend[0].bakend", "unknown field `bakend`");
}

#[test]
fn unknown_key_in_server_inline_table() {
    let text = "[[backend]]\nname = \"web\"\nservers = [\n  { address = \"127.0.0.1:81\" },\n  { address = \"127.0.0.1:82\", wieght = 2 },\n]\n";
    assert_error(
        text,
        5,
        31,
        "backend[0].servers[1].wieght",
        "unknown field `wieght`",
    );
}

#[test]
fn unknown_key_in_health_check() {
    let text =
        "[[backend]]\nname = \"web\"\nhealth_check = { kind = \"tcp\", intervall = \"1s\" }\n";
    assert_error(
        text,
        3,
        32,
        "backend[0].health_check.intervall",
        "unknown field `intervall`",
    );
}

#[test]
fn syntax_error_is_located_with_key() {
    let text = "[[frontend]]\nname = \"a\"\n[[frontend]]\nname = \"b\nbackend = \"web\"\n";
    let got = first_error(text);
    assert!(got.starts_with("t.toml:4:"), "{got}");
    assert!(got.contains(": frontend[1].name: "), "{got}");
}

#[test]
fn wrong_type_is_located() {
    let text = format!("{WEB_BACKEND}retries = \"two\"\n");
    assert_error(
        &text,
        4,
        11,
        "backend[0].retries",
        "invalid type: string \"two\"",
    );
}

#[test]
fn missing_required_key_names_the_key() {
    let text = "[[frontend]]\nlisten = [\"127.0.0.1:80\"]\nbackend = \"web\"\n";
    assert_error(text, 1, 1, "frontend[0].name", "missing field `name`");
}

#[test]
fn unknown_balance_algorithm() {
    let text = "[[backend]]\nname = \"web\"\nbalance = \"fastest\"\n";
    assert_error(
        text,
        3,
        11,
        "backend[0].balance",
        "unknown variant `fastest`",
    );
}

// --- validation: frontends -------------------------------------------------

#[test]
fn bad_listen_address() {
    let text = format!("[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:80\", \"localhost:80\"]\nbackend = \"web\"\n{WEB_BACKEND}");
    assert_error(
        &text,
        3,
        27,
        "frontend[0].listen[1]",
        "\"localhost:80\" is not an address with a port",
    );
}

#[test]
fn frontend_naming_missing_backend() {
    let text = format!("[[frontend]]\nname = \"a\"\nlisten = [\"127.0.0.1:80\"]\nbackend = \"web\"\n[[frontend]]\nname = \"b\"\nlisten = [\"127.0.0.1:81\"]\nbackend = \"api\"\n{WEB_BACKEND}");
    assert_error(
        &text,
        8,
        11,
        "frontend[1].backend",
        "no [[backend]] is named \"api\"",
    );
}

#[test]
fn duplicate_frontend_name() {
    let text = format!("[[frontend]]\nname = \"a\"\nlisten = [\"127.0.0.1:80\"]\nbackend = \"web\"\n[[frontend]]\nname = \"a\"\nlisten = [\"127.0.0.1:81\"]\nbackend = \"web\"\n{WEB_BACKEND}");
    assert_error(
        &text,
        6,
        8,
        "frontend[1].name",
        "duplicate frontend name \"a\" (also frontend[0])",
    );
}

#[test]
fn duplicate_listen_across_frontends() {
    let text = format!("[[frontend]]\nname = \"a\"\nlisten = [\"0.0.0.0:80\"]\nbackend = \"web\"\n[[frontend]]\nname = \"b\"\nlisten = [\"[::]:80\", \"127.0.0.1:80\"]\nbackend = \"web\"\n{WEB_BACKEND}");
    assert_error(
        &text,
        7,
        22,
        "frontend[1].listen[1]",
        "overlaps frontend[0].listen[0]",
    );
}

#[test]
fn name_with_slash_is_rejected() {
    let text = "[[backend]]\nname = \"web/1\"\nservers = [{ address = \"127.0.0.1:81\" }]\n[[vrrp]]\nname = \"v\"\ninterface = \"lo\"\nvrid = 1\naddresses = [\"192.0.2.1/24\"]\n";
    assert_error(text, 2, 8, "backend[0].name", "may not contain '/'");
}

#[test]
fn a_config_with_nothing_to_run_is_valid_and_says_so() {
    // As keepalived runs with no instance and `haproxy -c` accepts a file
    // of only `global` and `defaults`: a staged or imported config with
    // nothing to serve yet is not an error, and a reload can fill it.
    let config = parse("[admin]\n", "t.toml").unwrap();
    assert!(config.has_nothing_to_run());
    let config = parse(DESIGN_EXAMPLE, "t.toml").unwrap();
    assert!(!config.has_nothing_to_run());
}

// --- validation: backends and servers --------------------------------------

#[test]
fn backend_without_servers() {
    let text = "[[backend]]\nname = \"web\"\nservers = []\n";
    assert_error(
        text,
        3,
        11,
        "backend[0].servers",
        "backend \"web\" has no servers",
    );
    let text = "[[backend]]\nname = \"web\"\n";
    assert_error(
        text,
        1,
        1,
        "backend[0].servers",
        "backend \"web\" has no servers",
    );
}

#[test]
fn duplicate_backend_name() {
    let text = format!("{WEB_BACKEND}{WEB_BACKEND}");
    assert_error(
        &text,
        5,
        8,
        "backend[1].name",
        "duplicate backend name \"web\"",
    );
}

#[test]
fn duplicate_server_name_within_backend() {
    let text = "[[backend]]\nname = \"web\"\nservers = [\n  { name = \"s\", address = \"127.0.0.1:81\" },\n  { name = \"s\", address = \"127.0.0.1:82\" },\n]\n";
    assert_error(
        text,
        5,
        12,
        "backend[0].servers[1].name",
        "duplicate server name \"s\" (also backend[0].servers[0])",
    );
}

#[test]
fn duplicate_server_address_within_backend() {
    let text = "[[backend]]\nname = \"web\"\nservers = [\n  { name = \"a\", address = \"127.0.0.1:81\" },\n  { name = \"b\", address = \"127.0.0.1:81\" },\n]\n";
    assert_error(
        text,
        5,
        27,
        "backend[0].servers[1].address",
        "already backend[0].servers[0]",
    );
}

#[test]
fn server_address_errors() {
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"192.0.2.1\" }]\n";
    assert_error(
        text,
        3,
        24,
        "backend[0].servers[0].address",
        "\"192.0.2.1\" has no port",
    );
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"[::]:80\" }]\n";
    assert_error(text, 3, 24, "backend[0].servers[0].address", "unspecified");
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"web_1..example:80\" }]\n";
    assert_error(
        text,
        3,
        24,
        "backend[0].servers[0].address",
        "is not a host name",
    );
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"[fe80::1]:80\" }]\n";
    assert_error(
        text,
        3,
        24,
        "backend[0].servers[0].address",
        "needs its interface",
    );
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"[2001:db8::1%lo]:80\" }]\n";
    assert_error(
        text,
        3,
        24,
        "backend[0].servers[0].address",
        "only applies to a link-local",
    );
    let text =
        "[[backend]]\nname = \"web\"\nservers = [{ address = \"[fe80::1%no-such-if0]:80\" }]\n";
    assert_error(
        text,
        3,
        24,
        "backend[0].servers[0].address",
        "no interface \"no-such-if0\"",
    );
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"web1.example:0\" }]\n";
    assert_error(text, 3, 24, "backend[0].servers[0].address", "port 0");
}

const WEB_FRONTEND: &str =
    "[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:80\"]\nbackend = \"web\"\n";

#[test]
fn servers_by_name_with_preference_and_family() {
    // Input: a name with the backend's defaults, one overriding them, and
    // a link-local address with its zone. Output: typed addresses.
    let text = "[[backend]]\nname = \"web\"\nprefer = \"ipv4\"\nhappy_eyeballs_delay = \"100ms\"\nservers = [\n  { address = \"Web1.Example.NET:80\" },\n  { address = \"web2.example.net:80\", prefer = \"any\", family = \"ipv6\" },\n  { address = \"[fe80::1%lo]:8080\" },\n]\n";
    let c = parse(&format!("{text}{WEB_FRONTEND}"), "t.toml").unwrap();
    let b = &c.backends[0];
    assert_eq!(
        b.happy_eyeballs_delay,
        std::time::Duration::from_millis(100)
    );
    let named = |i: usize| b.servers[i].address.name().cloned().unwrap();
    assert_eq!(
        named(0),
        NamedAddress {
            host: "web1.example.net".into(),
            port: 80,
            prefer: Prefer::Family(Family::Ipv4),
            family: None
        }
    );
    assert_eq!(named(1).prefer, Prefer::Any);
    assert_eq!(named(1).family, Some(Family::Ipv6));
    assert_eq!(
        b.servers[0].name, "Web1.Example.NET:80",
        "the name defaults to the address as written"
    );
    match &b.servers[2].address {
        ServerAddress::LinkLocal { address, interface } => {
            assert_eq!(interface, "lo");
            assert_eq!(address.scope_id(), 1, "lo is interface 1");
            assert_eq!(address.port(), 8080);
        }
        other => panic!("not link-local: {other:?}"),
    }
    assert_eq!(b.servers[2].address.to_string(), "[fe80::1%lo]:8080");
    // Defaults: IPv6 first, 250 ms (RFC 8305 §8), the system resolvers.
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"localhost:80\" }]\n";
    let c = parse(&format!("{text}{WEB_FRONTEND}"), "t.toml").unwrap();
    let b = &c.backends[0];
    assert_eq!(
        b.happy_eyeballs_delay,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(
        b.servers[0].address.name().unwrap().prefer,
        Prefer::Family(Family::Ipv6)
    );
    assert_eq!(c.resolver, Resolver::default());
}

#[test]
fn name_settings_errors() {
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"192.0.2.1:80\", prefer = \"ipv4\" }]\n";
    assert_error(
        text,
        3,
        49,
        "backend[0].servers[0].prefer",
        "only used with a host name",
    );
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"w.example:80\", prefer = \"ipv4\", family = \"ipv6\" }]\n";
    assert_error(
        text,
        3,
        49,
        "backend[0].servers[0].prefer",
        "contradicts family",
    );
    let text = "[[backend]]\nname = \"web\"\nservers = [{ address = \"w.example:80\" }, { address = \"W.example.:80\", family = \"ipv4\" }]\n";
    assert_error(
        text,
        3,
        54,
        "backend[0].servers[1].address",
        "already backend[0].servers[0]",
    );
    let text = "[resolver]\nservers = [\"127.0.0.1:5353\", \"dns.example\"]\nmin_ttl = \"10s\"\nmax_ttl = \"5s\"\n[[backend]]\nname = \"web\"\nservers = [{ address = \"w.example:80\" }]\n";
    let error = parse(text, "t.toml").unwrap_err().to_string();
    assert!(
        error.contains(
            "t.toml:2:30: resolver.servers[1]: \"dns.example\" is not a name server address"
        ),
        "{error}"
    );
    assert!(
        error.contains("resolver.min_ttl: min_ttl 10s exceeds max_ttl 5s"),
        "{error}"
    );
}

#[test]
fn resolver_table() {
    let text = "[resolver]\nservers = [\"127.0.0.1:5353\", \"::1\"]\ntimeout = \"2s\"\nattempts = 3\nhosts = false\nmin_ttl = \"5s\"\nmax_ttl = \"1m\"\n[[backend]]\nname = \"web\"\nservers = [{ address = \"w.example:80\" }]\n";
    let c = parse(&format!("{text}{WEB_FRONTEND}"), "t.toml").unwrap();
    assert_eq!(
        c.resolver,
        Resolver {
            servers: vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ],
            timeout: Some(std::time::Duration::from_secs(2)),
            attempts: Some(3),
            hosts: false,
            min_ttl: std::time::Duration::from_secs(5),
            max_ttl: std::time::Duration::from_secs(60),
        }
    );
}

#[test]
fn server_weight_limits() {
    let text =
        "[[backend]]\nname = \"web\"\nservers = [{ address = \"127.0.0.1:81\", weight = 257 }]\n";
    assert_error(
        text,
        3,
        49,
        "backend[0].servers[0].weight",
        "257 is out of range 0..=256",
    );
    let text = text.replace("257", "-1");
    assert_error(
        &text,
        3,
        49,
        "backend[0].servers[0].weight",
        "-1 is out of range",
    );
    let ok = text.replace("-1", "0");
    let ok =
        format!("{ok}[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:80\"]\nbackend = \"web\"\n");
    assert_eq!(
        parse(&ok, "t.toml").unwrap().backends[0].servers[0].weight,
        0
    );
}

#[test]
fn bad_duration() {
    let text = format!("{WEB_BACKEND}connect_timeout = \"2 seconds please\"\n");
    assert_error(
        &text,
        4,
        19,
        "backend[0].connect_timeout",
        "invalid duration \"2 seconds please\"",
    );
    let text = format!("{WEB_BACKEND}idle_timeout = \"0s\"\n");
    assert_error(&text, 4, 16, "backend[0].idle_timeout", "out of range");
}

#[test]
fn check_timeout_longer_than_interval() {
    let text = format!("{WEB_BACKEND}health_check = {{ interval = \"1s\", timeout = \"2s\" }}\n");
    assert_error(
        &text,
        4,
        45,
        "backend[0].health_check.timeout",
        "timeout 2s exceeds interval 1s",
    );
    // The default timeout (1s) against a short interval: reported at the interval.
    let text = format!("{WEB_BACKEND}health_check = {{ interval = \"500ms\" }}\n");
    assert_error(
        &text,
        4,
        29,
        "backend[0].health_check.interval",
        "timeout 1s exceeds interval 500ms",
    );
}

#[test]
fn bad_expect_status() {
    let text =
        format!("{WEB_BACKEND}health_check = {{ kind = \"http\", expect_status = \"2xx-3xx\" }}\n");
    assert_error(
        &text,
        4,
        49,
        "backend[0].health_check.expect_status",
        "expected a status like 200",
    );
    let text =
        format!("{WEB_BACKEND}health_check = {{ kind = \"http\", expect_status = \"500-200\" }}\n");
    assert_error(
        &text,
        4,
        49,
        "backend[0].health_check.expect_status",
        "empty range",
    );
}

#[test]
fn send_expect_requires_both_keys() {
    let text = format!(
        "{WEB_BACKEND}health_check = {{ kind = \"send-expect\", send = \"PING\\r\\n\" }}\n"
    );
    assert_error(
        &text,
        4,
        25,
        "backend[0].health_check.expect",
        "kind = \"send-expect\" needs `expect`",
    );
}

#[test]
fn check_keys_of_another_kind_are_rejected() {
    let text = format!("{WEB_BACKEND}health_check = {{ kind = \"tcp\", path = \"/\" }}\n");
    assert_error(
        &text,
        4,
        39,
        "backend[0].health_check.path",
        "only used with kind = \"http\"",
    );
}

#[test]
fn http_path_must_be_a_path() {
    let text =
        format!("{WEB_BACKEND}health_check = {{ kind = \"http\", path = \"health check\" }}\n");
    assert_error(
        &text,
        4,
        40,
        "backend[0].health_check.path",
        "must start with '/'",
    );
}

#[test]
fn maglev_table_size_must_be_prime_and_cover_servers() {
    let text = format!("{WEB_BACKEND}balance = \"maglev\"\nmaglev_table_size = 65536\n");
    assert_error(
        &text,
        5,
        21,
        "backend[0].maglev_table_size",
        "65536 is not prime",
    );
    let text = "[[backend]]\nname = \"web\"\nbalance = \"maglev\"\nmaglev_table_size = 2\nservers = [{ address = \"127.0.0.1:81\" }, { address = \"127.0.0.1:82\" }, { address = \"127.0.0.1:83\" }]\n";
    assert_error(
        text,
        4,
        21,
        "backend[0].maglev_table_size",
        "smaller than the 3 servers",
    );
}

/// Keys that can have no effect where they are written are refused at
/// their location rather than silently ignored: a table size without
/// Maglev, name settings on a backend of fixed addresses, control socket
/// settings without a control socket, a write token without the endpoint
/// that takes writes, a preemption delay without preemption, a refresh of
/// no announcements, TCP connection settings of a backend only UDP
/// frontends use.
#[test]
fn keys_without_effect_where_written_are_rejected() {
    let text = format!("{WEB_BACKEND}maglev_table_size = 13\n");
    let only_maglev = "only used with balance = \"maglev\"";
    assert_error(&text, 4, 21, "backend[0].maglev_table_size", only_maglev);
    let text = format!("{WEB_BACKEND}balance = \"least-connections\"\nmaglev_table_size = 13\n");
    assert_error(&text, 5, 21, "backend[0].maglev_table_size", only_maglev);

    let only_names = "only used with servers given by name";
    for (line, column, key) in [
        ("prefer = \"ipv4\"", 10, "prefer"),
        ("family = \"ipv6\"", 10, "family"),
        ("happy_eyeballs_delay = \"1s\"", 24, "happy_eyeballs_delay"),
    ] {
        let text = format!("{WEB_BACKEND}{line}\n");
        assert_error(&text, 4, column, &format!("backend[0].{key}"), only_names);
        // One server given by name is enough for them to mean something.
        let named = format!(
            "[[backend]]\nname = \"web\"\n{line}\nservers = [{{ address = \"127.0.0.1:8001\" }}, {{ address = \"web.example:80\" }}]\n"
        );
        assert!(parse(&named, "t.toml").is_ok(), "{named}");
    }

    let admin = |keys: &str| format!("[admin]\n{keys}\n{ADMIN_TEST_FRONTEND}{WEB_BACKEND}");
    let only_socket = "only used with control_socket";
    let text = admin("control_socket_mode = \"0600\"");
    assert_error(&text, 2, 23, "admin.control_socket_mode", only_socket);
    let text = admin("control_socket = \"\"\ncontrol_socket_group = \"adm\"");
    assert_error(&text, 3, 24, "admin.control_socket_group", only_socket);
    let text = admin("listen = \"\"\ntoken_file = \"/etc/cx/token\"");
    let only_listen = "only used with listen: writes over TCP need the HTTP endpoint";
    assert_error(&text, 3, 14, "admin.token_file", only_listen);

    let text = format!(
        "{VRRP_HEAD}preempt = false\npreempt_delay = \"5s\"\naddresses = [\"192.0.2.10/24\"]\n"
    );
    let never = "only used with preempt = true (or priority 255): this instance never preempts";
    assert_error(&text, 6, 17, "vrrp[0].preempt_delay", never);

    let text = format!(
        "{VRRP_HEAD}garp_count = 0\ngarp_refresh = \"60s\"\naddresses = [\"192.0.2.10/24\"]\n"
    );
    let nothing = "only used with garp_count above 0: there is nothing to repeat";
    assert_error(&text, 6, 16, "vrrp[0].garp_refresh", nothing);

    let udp = "[[frontend]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = [\"127.0.0.1:5353\"]\nbackend = \"web\"\n";
    let only_tcp = "only used with TCP: every frontend of this backend has protocol = \"udp\"";
    for (line, column, key) in [
        ("connect_timeout = \"1s\"", 19, "connect_timeout"),
        ("idle_timeout = \"1m\"", 16, "idle_timeout"),
    ] {
        let text = format!("{udp}{WEB_BACKEND}{line}\n");
        assert_error(&text, 9, column, &format!("backend[0].{key}"), only_tcp);
        // A TCP frontend on the same backend gives them a use.
        let text = format!("{udp}{ADMIN_TEST_FRONTEND}{WEB_BACKEND}{line}\n");
        assert!(parse(&text, "t.toml").is_ok(), "{text}");
    }
}

// --- validation: vrrp -------------------------------------------------------

const VRRP_HEAD: &str = "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 51\n";

#[test]
fn vrrp_address_family_mix() {
    let text = format!("{VRRP_HEAD}addresses = [\"192.0.2.10/24\", \"2001:db8::10/64\"]\n");
    assert_error(
        &text,
        5,
        31,
        "vrrp[0].addresses[1]",
        "use one instance per address family",
    );
}

#[test]
fn vrrp_v2_is_ipv4_only() {
    let text = format!("{VRRP_HEAD}version = 2\naddresses = [\"2001:db8::10/64\"]\n");
    assert_error(&text, 5, 11, "vrrp[0].version", "IPv4 only");
}

#[test]
fn vrrp_duplicate_vrid_on_interface_and_family() {
    let text = format!("{VRRP_HEAD}addresses = [\"192.0.2.10/24\"]\n[[vrrp]]\nname = \"w\"\ninterface = \"eth0\"\nvrid = 51\naddresses = [\"192.0.2.20/24\"]\n");
    assert_error(
        &text,
        9,
        8,
        "vrrp[1].vrid",
        "vrid 51 on eth0 (IPv4) is already used by vrrp[0] \"v\"",
    );
    // The same VRID in the other family is another virtual router (RFC 9568 §7.3).
    let ok = text.replace("192.0.2.20/24", "2001:db8::20/64");
    assert_eq!(parse(&ok, "t.toml").unwrap().vrrp.len(), 2);
}

#[test]
fn vrrp_duplicate_name() {
    let text = format!("{VRRP_HEAD}addresses = [\"192.0.2.10/24\"]\n[[vrrp]]\nname = \"v\"\ninterface = \"eth1\"\nvrid = 51\naddresses = [\"192.0.2.20/24\"]\n");
    assert_error(&text, 7, 8, "vrrp[1].name", "duplicate vrrp name \"v\"");
}

/// A thread count of 0 serves nothing and one in the thousands is a typo
/// that would start that many threads.
#[test]
fn tuning_threads_range() {
    let c = parse("[tuning]\nthreads = 4\n", "t.toml").unwrap();
    assert_eq!(c.tuning.threads, Some(4));
    assert_error(
        "[tuning]\nthreads = 0\n",
        2,
        11,
        "tuning.threads",
        "0 is out of range 1..=1024",
    );
    assert_error(
        "[tuning]\nthreads = 10000\n",
        2,
        11,
        "tuning.threads",
        "10000 is out of range 1..=1024",
    );
}

#[test]
fn vrrp_vrid_and_priority_ranges() {
    let text =
        "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 0\naddresses = [\"192.0.2.10/24\"]\n";
    assert_error(text, 4, 8, "vrrp[0].vrid", "0 is out of range 1..=255");
    let text = format!("{VRRP_HEAD}priority = 256\naddresses = [\"192.0.2.10/24\"]\n");
    assert_error(&text, 5, 12, "vrrp[0].priority", "256 is too large");
    let text = format!("{VRRP_HEAD}priority = 0\naddresses = [\"192.0.2.10/24\"]\n");
    assert_error(
        &text,
        5,
        12,
        "vrrp[0].priority",
        "0 is out of range 1..=255",
    );
}

#[test]
fn vrrp_advert_interval_granularity_by_version() {
    // RFC 9568 §5.2.7: v3 carries centiseconds.
    let text = format!("{VRRP_HEAD}advert_interval = \"15ms\"\naddresses = [\"192.0.2.10/24\"]\n");
    assert_error(
        &text,
        5,
        19,
        "vrrp[0].advert_interval",
        "whole centiseconds from 10ms to 40.95s",
    );
    let text = format!("{VRRP_HEAD}advert_interval = \"41s\"\naddresses = [\"192.0.2.10/24\"]\n");
    assert_error(&text, 5, 19, "vrrp[0].advert_interval", "40.95s");
    // RFC 3768 §5.3.7: v2 carries whole seconds.
    let text = format!(
        "{VRRP_HEAD}version = 2\nadvert_interval = \"1500ms\"\naddresses = [\"192.0.2.10/24\"]\n"
    );
    assert_error(
        &text,
        6,
        19,
        "vrrp[0].advert_interval",
        "whole seconds from 1s to 255s",
    );
}

#[test]
fn vrrp_track_names_missing_frontend() {
    let text = format!("{VRRP_HEAD}addresses = [\"192.0.2.10/24\"]\ntrack = [{{ frontend = \"web\", weight = 60 }}]\n");
    assert_error(
        &text,
        6,
        23,
        "vrrp[0].track[0].frontend",
        "no [[frontend]] is named \"web\"",
    );
}

#[test]
fn vrrp_track_weight_range() {
    let text = format!("[[frontend]]\nname = \"web\"\nlisten = [\"127.0.0.1:80\"]\nbackend = \"web\"\n{WEB_BACKEND}{VRRP_HEAD}addresses = [\"192.0.2.10/24\"]\ntrack = [{{ frontend = \"web\", weight = 254 }}]\n");
    assert_error(
        &text,
        13,
        39,
        "vrrp[0].track[0].weight",
        "254 is out of range 1..=253",
    );
}

#[test]
fn vrrp_unicast_peer_of_other_family() {
    let text = format!("{VRRP_HEAD}addresses = [\"192.0.2.10/24\"]\nunicast_peers = [\"192.0.2.2\", \"2001:db8::2\"]\n");
    assert_error(
        &text,
        6,
        31,
        "vrrp[0].unicast_peers[1]",
        "2001:db8::2 is IPv6 but the instance's addresses are IPv4",
    );
}

#[test]
fn vrrp_checksum_choice_only_for_v3_ipv4() {
    let text =
        format!("{VRRP_HEAD}addresses = [\"2001:db8::10/64\"]\nchecksum = \"message-only\"\n");
    assert_error(
        &text,
        6,
        12,
        "vrrp[0].checksum",
        "only for VRRPv3 over IPv4",
    );
    let ok = text.replace("2001:db8::10/64", "192.0.2.10/24");
    assert_eq!(
        parse(&ok, "t.toml").unwrap().vrrp[0].config.checksum_mode,
        vrrp::ChecksumMode::MessageOnly
    );
}

// Values that are not even of their setting's type are reported at their
// key, with the type's reason; the model's rules are then not judged.
#[test]
fn vrrp_unreadable_values_are_located() {
    let text = format!("{VRRP_HEAD}version = 4\naddresses = [\"192.0.2.10/24\"]\n");
    assert_error(&text, 5, 11, "vrrp[0].version", "4: expected 2 or 3");
    let text = format!("{VRRP_HEAD}addresses = [\"192.0.2.10/24\", \"eth0/24\"]\n");
    assert_error(
        &text,
        5,
        31,
        "vrrp[0].addresses[1]",
        "\"eth0/24\": not an IP address with an optional /prefix",
    );
    let text = format!("{VRRP_HEAD}addresses = [\"192.0.2.10/24\"]\nchecksum = \"crc\"\n");
    assert_error(
        &text,
        6,
        12,
        "vrrp[0].checksum",
        "\"crc\": expected pseudo-header or message-only",
    );
    let text = format!("{VRRP_HEAD}addresses = [\"192.0.2.10/24\"]\ngarp_interval = \"soon\"\n");
    assert_error(&text, 6, 17, "vrrp[0].garp_interval", "invalid duration");
}

#[test]
fn vrrp_interface_name_too_long() {
    let text = "[[vrrp]]\nname = \"v\"\ninterface = \"a-very-long-ifname\"\nvrid = 1\naddresses = [\"192.0.2.10/24\"]\n";
    assert_error(
        text,
        3,
        13,
        "vrrp[0].interface",
        "not a Linux interface name",
    );
}

// --- reporting ----------------------------------------------------------------

#[test]
fn all_validation_errors_are_reported_in_file_order() {
    let text = "[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:80\"]\nbackend = \"nope\"\n[[backend]]\nname = \"web\"\nretries = -1\nservers = []\n";
    let e = parse(text, "t.toml").unwrap_err();
    let keys: Vec<(usize, &str)> = e
        .diagnostics()
        .iter()
        .map(|d| (d.line, d.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (4, "frontend[0].backend"),
            (7, "backend[0].retries"),
            (8, "backend[0].servers")
        ]
    );
    assert_eq!(e.to_string().lines().count(), 3);
}

#[test]
fn load_names_the_missing_file() {
    let path = std::path::Path::new("no-such-dir-coexist/coexist.toml");
    let e = load(path).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert_eq!(
        e.to_string(),
        "cannot read no-such-dir-coexist/coexist.toml: No such file or directory (os error 2)"
    );
    assert!(
        std::error::Error::source(&e).is_none(),
        "the cause is said once"
    );
}

/// A reload cannot change what is set up once at start; the daemon warns
/// about exactly these keys, and not about those a reload applies.
#[test]
fn keys_read_only_at_start_are_named_when_a_reload_changes_them() {
    let vrrp =
        "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\naddresses = [\"192.0.2.10/24\"]\n";
    let base = "[admin]\nlisten = \"127.0.0.1:9100\"\n";
    let old = parse(&format!("{base}{vrrp}"), "t.toml").unwrap();
    let grace = "[tuning]\nshutdown_grace = \"5s\"\n";
    let same = parse(&format!("{base}{grace}{vrrp}"), "t.toml").unwrap();
    assert_eq!(old.changed_until_restart(&same), Vec::<&str>::new());
    let text = "[admin]\nlisten = \"127.0.0.1:9101\"\n[tuning]\npipe_size = 131072\npipe_pool_max = 8\nsplice = false\nbacklog = 16\nthreads = 3\n";
    let new = parse(&format!("{text}{vrrp}"), "t.toml").unwrap();
    assert_eq!(
        old.changed_until_restart(&new),
        [
            "admin.listen",
            "tuning.pipe_size",
            "tuning.pipe_pool_max",
            "tuning.splice",
            "tuning.backlog",
            "tuning.threads"
        ]
    );
}

/// Found by the config fuzzer: the TOML parser refuses a control
/// character in a comment with an empty reason, which printed as
/// "t.toml:2:7: " and nothing else. Input: a comment holding U+0017.
/// Output: its location and the character named.
#[test]
fn a_control_character_in_a_comment_is_named() {
    let e = parse(
        "[admin]\n# not \u{17} here\nlisten = \"127.0.0.1:9100\"\n",
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:2:7: admin: control character U+0017 is not allowed in TOML"
    );
}

/// Input: a Latin-1 "é" (0xe9) inside a string value, in a key, and a
/// file cut inside a character. Output: line, column (in characters of
/// the text before it) and key of the first invalid byte, said once.
#[test]
fn invalid_utf8_is_located_at_its_first_byte() {
    let mut text =
        b"[[frontend]]\nname = \"caf\xe9\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = \"web\"\n"
            .to_vec();
    text.extend_from_slice(WEB_BACKEND.as_bytes());
    let e = parse_bytes(text, "t.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:2:12: frontend[0].name: byte 0xe9 is not UTF-8: the file must be UTF-8 text"
    );

    let text = b"[admin]\nlisten = \"127.0.0.1:9100\"\n\xc3\xa9t\xe9 = 1\n".to_vec();
    let e = parse_bytes(text, "t.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:3:3: admin: byte 0xe9 is not UTF-8: the file must be UTF-8 text"
    );

    let truncated = b"[admin]\nlisten = \"\xe2\x82".to_vec();
    let e = parse_bytes(truncated, "t.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:2:11: admin.listen: the file ends inside a UTF-8 character (0xe2 0x82): the file must be UTF-8 text"
    );
}

const ADMIN_TEST_FRONTEND: &str =
    "[[frontend]]\nname = \"web\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = \"web\"\n";

/// `[admin]` writes: no control socket unless one is named; paths are
/// absolute, the mode octal, the timeout within bounds.
#[test]
fn admin_control_socket_token_and_timeout() {
    let with = |admin: &str| format!("[admin]\n{admin}\n{ADMIN_TEST_FRONTEND}{WEB_BACKEND}");
    let config = parse(&with(""), "t.toml").unwrap();
    assert_eq!(config.admin.control_socket, None);
    assert_eq!(config.admin.token_file, None);
    assert_eq!(config.admin.request_timeout, Duration::from_secs(10));

    let text = with(
        "control_socket = \"/run/cx/ctl.sock\"\ncontrol_socket_mode = \"0640\"\ncontrol_socket_group = \"adm\"\ntoken_file = \"/etc/cx/token\"\nrequest_timeout = \"2s\"",
    );
    let admin = parse(&text, "t.toml").unwrap().admin;
    let socket = admin.control_socket.unwrap();
    assert_eq!(socket.path, std::path::Path::new("/run/cx/ctl.sock"));
    assert_eq!((socket.mode, socket.group.as_deref()), (0o640, Some("adm")));
    assert_eq!(
        admin.token_file.unwrap(),
        std::path::Path::new("/etc/cx/token")
    );
    assert_eq!(admin.request_timeout, Duration::from_secs(2));

    let e = |admin: &str| with(admin);
    assert_error(
        &e("control_socket = \"ctl.sock\""),
        2,
        18,
        "admin.control_socket",
        "is not an absolute path",
    );
    assert_error(
        &e("token_file = \"token\""),
        2,
        14,
        "admin.token_file",
        "is not an absolute path",
    );
    assert_error(
        &e("control_socket = \"/run/cx/ctl.sock\"\ncontrol_socket_mode = \"0999\""),
        3,
        23,
        "admin.control_socket_mode",
        "not a file mode in octal",
    );
    let long = format!("control_socket = \"/{}\"", "x".repeat(120));
    assert_error(
        &e(&long),
        2,
        18,
        "admin.control_socket",
        "too long for a Unix socket path",
    );
    assert_error(
        &e("request_timeout = \"1ms\""),
        2,
        19,
        "admin.request_timeout",
        "",
    );
}
