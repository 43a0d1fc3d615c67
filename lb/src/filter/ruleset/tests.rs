use super::*;
use crate::config;

const BACKEND: &str = "[[backend]]\nname = \"b\"\nservers = [{ address = \"127.0.0.1:9000\" }]\n";

fn parse(text: &str) -> Config {
    config::parse(&format!("{text}\n{BACKEND}"), "t.toml").expect("valid config")
}

fn vrrp(name: &str, vrid: u8, priority: u8, accept_mode: bool, addresses: &[&str]) -> String {
    let addresses: Vec<String> = addresses.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[vrrp]]\nname = \"{name}\"\ninterface = \"eth0\"\nvrid = {vrid}\npriority = {priority}\naccept_mode = {accept_mode}\naddresses = [{}]\n",
        addresses.join(", ")
    )
}

fn frontend(name: &str, protocol: &str, listen: &[&str]) -> String {
    let listen: Vec<String> = listen.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[frontend]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nlisten = [{}]\nbackend = \"b\"\n",
        listen.join(", ")
    )
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn refused(r: &Ruleset) -> Vec<IpAddr> {
    r.refused().copied().collect()
}

fn open(r: &Ruleset) -> Vec<String> {
    r.open().map(ToString::to_string).collect()
}

// RFC 9568 §6.4.3: a master that is not the address owner accepts packets
// to the virtual addresses only in Accept_Mode; the owner always does.
#[test]
fn rfc9568_6_4_3_refuses_the_addresses_of_non_owners_without_accept_mode() {
    let c = parse(
        &[
            vrrp("plain", 51, 150, false, &["192.0.2.10/24", "192.0.2.11/24"]),
            vrrp("accepting", 52, 150, true, &["2001:db8::10/64"]),
            vrrp("owner", 53, 255, false, &["192.0.2.20/24"]),
        ]
        .concat(),
    );
    assert_eq!(
        refused(&Ruleset::for_config(&c)),
        ips(&["192.0.2.10", "192.0.2.11"])
    );
}

// An address two instances list (the kernel holds it once) is filtered
// only when neither would accept traffic to it.
#[test]
fn an_address_another_instance_accepts_is_not_refused() {
    let c = parse(
        &[
            vrrp("a", 51, 150, false, &["192.0.2.10/24", "192.0.2.11/24"]),
            vrrp("b", 52, 150, true, &["192.0.2.11/24"]),
        ]
        .concat(),
    );
    assert_eq!(refused(&Ruleset::for_config(&c)), ips(&["192.0.2.10"]));
}

#[test]
fn frontend_ports_stay_open_on_their_address_and_on_wildcards_of_its_family() {
    let c = parse(
        &[
            vrrp("v4", 51, 150, false, &["192.0.2.10/24"]),
            vrrp("v6", 52, 150, false, &["2001:db8::10/64"]),
            frontend("web", "tcp", &["192.0.2.10:80", "[2001:db8::10]:443"]),
            frontend("dns", "udp", &["0.0.0.0:53", "[::]:5353"]),
            frontend("dns-tcp", "tcp", &["0.0.0.0:53"]),
            // Not on a virtual address: nothing opens.
            frontend(
                "local",
                "tcp",
                &["127.0.0.1:8080", "[::1]:8080", "192.0.2.99:22"],
            ),
            // A fresh port nobody can know.
            frontend("fresh", "tcp", &["192.0.2.10:0"]),
        ]
        .concat(),
    );
    let r = Ruleset::for_config(&c);
    assert_eq!(
        open(&r),
        [
            "192.0.2.10 tcp/53",
            "192.0.2.10 tcp/80",
            "192.0.2.10 udp/53",
            "2001:db8::10 tcp/443",
            "2001:db8::10 udp/5353",
        ]
    );
}

#[test]
fn nothing_to_refuse_removes_the_table() {
    let c = parse(
        &[
            vrrp("accepting", 51, 150, true, &["192.0.2.10/24"]),
            frontend("web", "tcp", &["0.0.0.0:80"]),
        ]
        .concat(),
    );
    let r = Ruleset::for_config(&c);
    assert!(r.is_empty());
    assert_eq!(r.open().count(), 0);
    assert_eq!(
        r.script(),
        "add table inet coexist\ndelete table inet coexist\n"
    );
    assert_eq!(Ruleset::default().script(), r.script());
}

// A reload that takes an address out of an instance, or removes the
// instance, keeps refusing it until the instance has let it go; one that
// turns accept_mode on stops refusing at once.
#[test]
fn during_a_reload_addresses_the_instances_may_still_hold_stay_refused() {
    let old = parse(
        &[
            vrrp("a", 51, 150, false, &["192.0.2.10/24", "192.0.2.11/24"]),
            vrrp("gone", 52, 150, false, &["192.0.2.20/24"]),
            vrrp("b", 53, 150, false, &["192.0.2.30/24"]),
        ]
        .concat(),
    );
    let new = parse(
        &[
            vrrp("a", 51, 150, false, &["192.0.2.10/24", "192.0.2.12/24"]),
            vrrp("b", 53, 150, true, &["192.0.2.30/24"]),
            frontend("web", "tcp", &["0.0.0.0:80"]),
        ]
        .concat(),
    );
    let during = Ruleset::for_reload(&old, &new);
    assert_eq!(
        refused(&during),
        ips(&["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.20"])
    );
    assert_eq!(open(&during).len(), 4, "the new frontends' ports, on each");
    assert_eq!(
        refused(&Ruleset::for_config(&new)),
        ips(&["192.0.2.10", "192.0.2.12"])
    );
}

/// The whole script for one instance of each family: what `nft list table
/// inet coexist` shows an operator.
#[test]
fn script_replaces_the_table_in_one_transaction() {
    let c = parse(
        &[
            vrrp("v4", 51, 150, false, &["192.0.2.10/24"]),
            vrrp("v6", 52, 150, false, &["fe80::51", "2001:db8::10/64"]),
            frontend("web", "tcp", &["192.0.2.10:80", "[::]:80"]),
        ]
        .concat(),
    );
    let expected = "\
add table inet coexist
delete table inet coexist
table inet coexist {
\tcomment \"managed by coexist: VRRP accept_mode = false (RFC 9568 6.4.3)\"
\tset refused4 {
\t\ttype ipv4_addr
\t\telements = { 192.0.2.10 }
\t}
\tset open4 {
\t\ttype ipv4_addr . inet_proto . inet_service
\t\telements = { 192.0.2.10 . tcp . 80 }
\t}
\tset refused6 {
\t\ttype ipv6_addr
\t\telements = { 2001:db8::10, fe80::51 }
\t}
\tset open6 {
\t\ttype ipv6_addr . inet_proto . inet_service
\t\telements = { 2001:db8::10 . tcp . 80, fe80::51 . tcp . 80 }
\t}
\tchain input {
\t\ttype filter hook input priority -10; policy accept;
\t\tiif \"lo\" accept
\t\tip daddr @refused4 jump refused4
\t\tip6 daddr @refused6 jump refused6
\t}
\tchain refused4 {
\t\tip daddr . meta l4proto . th dport @open4 accept
\t\ticmp type { destination-unreachable, time-exceeded, parameter-problem } accept
\t\tcounter drop
\t}
\tchain refused6 {
\t\tip6 daddr . meta l4proto . th dport @open6 accept
\t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-neighbor-solicit, nd-neighbor-advert } accept
\t\tfrag frag-off != 0 accept
\t\tcounter drop
\t}
}
";
    assert_eq!(Ruleset::for_config(&c).script(), expected);
}

/// `nft -c` (check only, nothing applied) reads every form of the script:
/// both families, one family, a family without open ports, and removal.
/// Needs the `nft` program and CAP_NET_ADMIN; says so and passes without,
/// unless `COEXIST_REQUIRE_NETNS=1` (CI) asks for every kernel test.
#[test]
fn nft_accepts_every_form_of_the_script() {
    let skip = |why: &str| {
        assert_ne!(
            std::env::var("COEXIST_REQUIRE_NETNS").as_deref(),
            Ok("1"),
            "nft_accepts_every_form_of_the_script: {why}"
        );
        eprintln!("SKIP nft_accepts_every_form_of_the_script: {why}");
    };
    let Some(nft) = super::super::nft::locate() else {
        return skip("nft is not installed (Debian package nftables)");
    };
    if !nix::unistd::geteuid().is_root() {
        return skip("nft -c needs CAP_NET_ADMIN");
    }
    let configs = [
        [
            vrrp("v4", 51, 150, false, &["192.0.2.10/24"]),
            vrrp("v6", 52, 150, false, &["fe80::51", "2001:db8::10/64"]),
            frontend("web", "tcp", &["192.0.2.10:80", "[::]:80"]),
            frontend("dns", "udp", &["0.0.0.0:53"]),
        ]
        .concat(),
        vrrp("v6", 52, 150, false, &["2001:db8::10/64"]),
        [
            vrrp("v4", 51, 150, false, &["192.0.2.10/24"]),
            frontend("web", "tcp", &["0.0.0.0:80"]),
        ]
        .concat(),
        vrrp("v4", 51, 150, true, &["192.0.2.10/24"]),
    ];
    for text in configs {
        let script = Ruleset::for_config(&parse(&text)).script();
        let mut child = std::process::Command::new(&nft)
            .args(["-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run nft");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -c refused:\n{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
