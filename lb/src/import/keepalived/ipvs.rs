//! `virtual_server` (IPVS) → a coexist frontend on the virtual address and
//! a backend of its real servers.
//!
//! IPVS forwards packets (NAT, DR, TUN); coexist proxies connections: the
//! servers see coexist's address as the source and answer through it,
//! which every forwarding method's servers accept as long as their service
//! listens on the real server's address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::tree::Node;
use super::whole;
use crate::import::plan::{
    self, Backend, Balance, CheckKind, Frontend, HealthCheck, Origin, Plan, Protocol,
};
use crate::import::tally::{Loc, Tally};
use crate::import::values::{ip, keepalived_timer};

/// keepalived's defaults: delay_loop 60s, connect_timeout 5s, retry 1.
const DELAY_LOOP: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: u32 = 1;

/// Check timing, from the virtual server down to the checker (each level
/// the default of the next).
#[derive(Debug, Clone, Copy)]
struct Timing {
    delay_loop: Duration,
    connect_timeout: Duration,
    retry: Option<u32>,
    alpha: bool,
}

impl Timing {
    /// Reads a timing key of `n`; whether it was one.
    fn read(&mut self, n: &Node, tally: &mut Tally) -> bool {
        let timer = |tally: &mut Tally| {
            let d = keepalived_timer(n.word(1));
            if d.is_none() {
                tally.not_carried(n.at, "not a time in seconds");
            }
            d
        };
        match n.keyword() {
            "delay_loop" => {
                if let Some(d) = timer(tally) {
                    self.delay_loop = d;
                    tally.carried(n.at);
                }
            }
            "connect_timeout" => {
                if let Some(d) = timer(tally) {
                    self.connect_timeout = d;
                    tally.carried(n.at);
                }
            }
            "retry" | "nb_get_retry" => match n.word(1).parse() {
                Ok(r) => {
                    self.retry = Some(r);
                    tally.carried(n.at);
                }
                Err(_) => tally.not_carried(n.at, "not a count"),
            },
            "alpha" => {
                self.alpha = !matches!(n.word(1), "off" | "false" | "no");
                tally.carried(n.at);
            }
            "delay_before_retry" => tally.changed(
                n.at,
                "coexist checks at one interval (delay_loop), failing or not",
            ),
            "warmup" => tally.not_carried(n.at, "coexist starts all checks at once"),
            _ => return false,
        }
        true
    }
}

pub(super) fn virtual_server(node: &Node, groups: &[&Node], tally: &mut Tally, plan: &mut Plan) {
    let fail = |tally: &mut Tally, why: &str| whole(node, why, tally);
    let protocol = match node
        .children
        .iter()
        .find(|c| c.keyword() == "protocol")
        .map_or("TCP", |c| c.word(1))
    {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        other => {
            fail(
                tally,
                &format!("a {other} service: coexist carries TCP and UDP services"),
            );
            return;
        }
    };
    let listen = match service_addresses(node, groups, tally) {
        Ok(listen) => listen,
        Err(why) => {
            fail(tally, &why);
            return;
        }
    };
    let mut timing = Timing {
        delay_loop: DELAY_LOOP,
        connect_timeout: CONNECT_TIMEOUT,
        retry: None,
        alpha: false,
    };
    let mut scheduler: Option<&Node> = None;
    let mut real: Vec<&Node> = Vec::new();
    let mut sorry: Option<&Node> = None;
    for c in &node.children {
        if timing.read(c, tally) {
            continue;
        }
        let at = c.at;
        match c.keyword() {
            "protocol" => tally.carried(at),
            "lb_algo" | "lvs_sched" => scheduler = Some(c),
            "lb_kind" | "lvs_method" => tally.changed(
                at,
                "coexist proxies each connection: servers see coexist's address as the source and answer through it",
            ),
            "real_server" => real.push(c),
            "sorry_server" => sorry = Some(c),
            "persistence_timeout" | "persistence_granularity" | "persistence_engine" => {
                tally.not_carried(
                    at,
                    "no persistence table: lb_algo sh (balance = \"maglev\") keeps each client on one server",
                )
            }
            "quorum" | "hysteresis" | "quorum_up" | "quorum_down" => tally.not_carried(
                at,
                "no quorum: the sorry server (a backup server) serves while no real server is up",
            ),
            "ha_suspend" => tally.changed(
                at,
                "coexist checks the servers whether or not this node holds the virtual address",
            ),
            "virtualhost" => tally.carried(at),
            "inhibit_on_failure" => tally.changed(
                at,
                "a failed server takes no new connections; open ones continue, as with weight 0",
            ),
            _ => whole(c, "no counterpart in coexist", tally),
        }
    }
    let (balance, weighted) = balance(scheduler, tally);
    let default_host = host_of(node);
    let mut servers: Vec<plan::Server> = Vec::new();
    let mut checks: Vec<(Option<CheckKind>, Timing, Loc)> = Vec::new();
    for r in real {
        let service = Service {
            protocol,
            weighted,
            host: default_host.as_deref(),
        };
        let Some((server, check)) = real_server(r, timing, &service, tally) else {
            continue;
        };
        checks.push((check.0, check.1, r.at));
        servers.push(server);
    }
    if let Some(s) = sorry {
        match (ip(s.word(1)), s.word(2).parse::<u16>()) {
            (Some(a), Ok(p)) if p > 0 && !a.is_unspecified() => {
                servers.push(plan::Server {
                    name: "sorry".into(),
                    address: SocketAddr::new(a, p),
                    weight: None,
                    backup: true,
                    max_connections: None,
                    at: s.at,
                });
                tally.carried(s.at);
                if checks.iter().any(|(k, _, _)| k.is_some()) {
                    tally.changed(
                        s.at,
                        "checked like the real servers (keepalived does not check a sorry server): it must pass their check to be used",
                    );
                }
            }
            _ => tally.not_carried(s.at, "coexist needs the sorry server's address and port"),
        }
    }
    if servers.iter().all(|s| s.backup) {
        fail(tally, "no real server coexist can connect to");
        return;
    }
    let name = match node.word(1) {
        "group" => plan::name(&format!("vsg-{}", node.word(2))),
        _ => plan::name(&format!("vs-{}", listen[0].0)),
    };
    let origin = Origin {
        at: node.at,
        what: node.text(),
    };
    let backend = plan.add_backend(
        Backend {
            name: name.clone(),
            origin: origin.clone(),
            balance: Some(balance),
            connect_timeout: None,
            idle_timeout: None,
            retries: None,
            health_check: health_check(&checks, tally),
            servers,
        },
        tally,
    );
    let added = plan.add_frontend(
        Frontend {
            name,
            origin,
            listen,
            backend,
            max_connections: None,
            proxy_protocol: None,
            protocol,
        },
        tally,
    );
    if added {
        tally.carried(node.at);
    }
}

/// The `virtualhost` of a node, which HTTP checks below it send as Host.
fn host_of(node: &Node) -> Option<String> {
    node.children
        .iter()
        .find(|c| c.keyword() == "virtualhost")
        .map(|c| c.word(1).to_owned())
}

/// IPVS schedulers → coexist balancing, and whether weights count.
fn balance(scheduler: Option<&Node>, tally: &mut Tally) -> (Balance, bool) {
    // keepalived and ipvsadm default to wlc.
    let Some(n) = scheduler else {
        return (Balance::LeastConnections, true);
    };
    let chosen = match n.word(1) {
        "rr" => Some((Balance::RoundRobin, false)),
        "wrr" => Some((Balance::RoundRobin, true)),
        "lc" => Some((Balance::LeastConnections, false)),
        "wlc" => Some((Balance::LeastConnections, true)),
        "sh" | "mh" => Some((Balance::Maglev, true)),
        "twos" => Some((Balance::RandomTwo, true)),
        "sed" | "nq" => {
            tally.changed(n.at, "least-connections balancing takes its place");
            return (Balance::LeastConnections, true);
        }
        _ => None,
    };
    match chosen {
        Some(c) => {
            tally.carried(n.at);
            c
        }
        None => {
            tally.not_carried(
                n.at,
                format!(
                    "no {} scheduler in coexist: least-connections takes its place",
                    n.word(1)
                ),
            );
            (Balance::LeastConnections, true)
        }
    }
}

type CheckOf = (Option<CheckKind>, Timing);

/// What the real servers of one virtual server share.
struct Service<'a> {
    protocol: Protocol,
    /// Whether the scheduler counts weights.
    weighted: bool,
    /// The virtual server's `virtualhost`.
    host: Option<&'a str>,
}

fn real_server(
    r: &Node,
    mut timing: Timing,
    service: &Service<'_>,
    tally: &mut Tally,
) -> Option<(plan::Server, CheckOf)> {
    let weighted = service.weighted;
    let host = service.host;
    let address = match (ip(r.word(1)), r.word(2).parse::<u16>()) {
        (Some(a), Ok(p)) if p > 0 && !a.is_unspecified() => SocketAddr::new(a, p),
        _ => {
            whole(r, "coexist needs the real server's address and port", tally);
            return None;
        }
    };
    let host = host_of(r).or_else(|| host.map(str::to_owned));
    let mut weight = None;
    let mut max_connections = None;
    let mut check: Option<CheckKind> = None;
    let mut checker_seen = false;
    for c in &r.children {
        if timing.read(c, tally) {
            continue;
        }
        let at = c.at;
        match c.keyword() {
            "weight" => match c.word(1).parse::<u32>() {
                Ok(w) if w <= 256 => {
                    tally.carried(at);
                    // rr and lc ignore weights but for 0, which quiesces.
                    weight = if weighted || w == 0 { Some(w) } else { None };
                }
                _ => tally.not_carried(at, "coexist's weights are 0 to 256"),
            },
            "uthreshold" => match c.word(1).parse::<u64>() {
                Ok(n) if n > 0 => {
                    max_connections = Some(n);
                    tally.carried(at);
                }
                _ => tally.not_carried(at, "not a number of connections"),
            },
            "virtualhost" | "lvs_method" | "lb_kind" => tally.carried(at),
            "inhibit_on_failure" => tally.changed(
                at,
                "a failed server takes no new connections; open ones continue, as with weight 0",
            ),
            "notify_up" | "notify_down" => tally.not_carried(
                at,
                "no per-server scripts: lb_server_up in /metrics, or `coexist status`",
            ),
            "lthreshold" => tally.not_carried(at, "no lower connection threshold in coexist"),
            kind @ ("TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "SMTP_CHECK" | "MISC_CHECK"
            | "DNS_CHECK" | "PING_CHECK" | "UDP_CHECK" | "BFD_CHECK" | "FILE_CHECK") => {
                if checker_seen {
                    whole(
                        c,
                        "coexist runs one check per server: the first checker's",
                        tally,
                    );
                    continue;
                }
                checker_seen = true;
                let on = Target {
                    port: address.port(),
                    host: host.as_deref(),
                    protocol: service.protocol,
                };
                let (k, t) = checker(c, kind, &on, timing, tally);
                check = k;
                timing = t;
            }
            _ => whole(c, "no counterpart in coexist", tally),
        }
    }
    tally.carried(r.at);
    let server = plan::Server {
        name: address.to_string(),
        address,
        weight,
        backup: false,
        max_connections,
        at: r.at,
    };
    Some((server, (check, timing)))
}

/// The server a checker checks.
struct Target<'a> {
    port: u16,
    host: Option<&'a str>,
    protocol: Protocol,
}

/// One checker block → the check coexist runs (none when coexist has no
/// counterpart that would not mark a working server down), and its timing.
fn checker(
    block: &Node,
    kind: &str,
    on: &Target<'_>,
    mut timing: Timing,
    tally: &mut Tally,
) -> (Option<CheckKind>, Timing) {
    tally.carried(block.at);
    let port = on.port;
    let mut path = None;
    let mut status = None;
    let mut host = on.host.map(str::to_owned);
    let mut datagram = Datagram::default();
    let mut query = (None, None);
    for c in &block.children {
        if timing.read(c, tally) {
            continue;
        }
        let at = c.at;
        match c.keyword() {
            "connect_port" if c.word(1).parse() == Ok(port) => tally.carried(at),
            "connect_port" | "connect_ip" | "bindto" | "bind_port" | "bind_if" => tally.changed(
                at,
                "coexist checks the server at its own address and port, from the address the kernel chooses",
            ),
            "url" if kind == "HTTP_GET" || kind == "SSL_GET" => {
                if path.is_some() {
                    whole(c, "coexist checks one path: the first url's", tally);
                    continue;
                }
                tally.carried(at);
                for u in &c.children {
                    match u.keyword() {
                        "path" => {
                            path = Some(u.word(1).to_owned());
                            tally.carried(u.at);
                        }
                        "status_code" => match status_code(&u.words[1..]) {
                            Some(s) => {
                                status = Some(s);
                                tally.carried(u.at);
                            }
                            None => tally.not_carried(
                                u.at,
                                "coexist expects one code, range or class of status codes",
                            ),
                        },
                        "virtualhost" => {
                            host = Some(u.word(1).to_owned());
                            tally.carried(u.at);
                        }
                        "digest" | "regex" | "regex_no_match" | "regex_options" => tally.not_carried(
                            u.at,
                            "coexist's HTTP check looks at the status, not the body",
                        ),
                        _ => tally.not_carried(u.at, "no counterpart in coexist's HTTP check"),
                    }
                }
            }
            "virtualhost" => {
                host = Some(c.word(1).to_owned());
                tally.carried(at);
            }
            "payload" if kind == "UDP_CHECK" => datagram.payload = Some(c),
            "require_reply" if kind == "UDP_CHECK" => datagram.require_reply = Some(c),
            "name" if kind == "DNS_CHECK" => {
                query.0 = Some(c.word(1).to_owned());
                tally.carried(at);
            }
            "type" if kind == "DNS_CHECK" => {
                query.1 = Some(c.word(1).to_owned());
                tally.carried(at);
            }
            "http_protocol" | "fast_recovery" | "log_all_failures" => tally.carried(at),
            "host" => whole(
                c,
                "coexist checks each server at its own address only; check other addresses as servers of their own",
                tally,
            ),
            _ => whole(c, "no counterpart in coexist's checks", tally),
        }
    }
    let check = match kind {
        "TCP_CHECK" => Some(CheckKind::Tcp),
        "HTTP_GET" => Some(CheckKind::Http {
            path: path
                .filter(|p| p.starts_with('/') && !p.contains(|c: char| c.is_whitespace()))
                .unwrap_or_else(|| "/".into()),
            host: host.filter(|h| !h.is_empty() && !h.contains(char::is_whitespace)),
            // keepalived accepts 200-299 unless told otherwise.
            expect_status: Some(status.unwrap_or_else(|| "2xx".into())),
        }),
        "DNS_CHECK" => Some(CheckKind::Dns {
            query_name: query.0,
            query_type: query.1,
        }),
        "UDP_CHECK" => datagram.check(block, tally),
        "PING_CHECK" => {
            tally.not_carried(
                block.at,
                "coexist has no ICMP check: the server is not checked",
            );
            None
        }
        other if on.protocol == Protocol::Udp => {
            tally.not_carried(
                block.at,
                format!("coexist has no {other}: the server is not checked"),
            );
            None
        }
        other => {
            let what = match other {
                "SSL_GET" => "coexist's checks do not speak TLS",
                "MISC_CHECK" => "coexist runs no check scripts",
                "SMTP_CHECK" => "coexist has no SMTP check",
                _ => "coexist has no such check",
            };
            tally.changed(
                block.at,
                format!("{what}: a TCP connect check takes its place"),
            );
            Some(CheckKind::Tcp)
        }
    };
    (check, timing)
}

/// A `UDP_CHECK`'s `payload` and `require_reply` lines.
#[derive(Default)]
struct Datagram<'n> {
    payload: Option<&'n Node>,
    require_reply: Option<&'n Node>,
}

impl Datagram<'_> {
    /// coexist's UDP check needs a reply and sends a payload written as
    /// text; keepalived's counts silence as success unless `require_reply`.
    fn check(&self, block: &Node, tally: &mut Tally) -> Option<CheckKind> {
        let Some(reply) = self.require_reply else {
            tally.not_carried(
                block.at,
                "without require_reply keepalived counts silence as success; coexist's UDP check needs a reply: the server is not checked",
            );
            return None;
        };
        let Some(payload) = self.payload else {
            tally.not_carried(
                reply.at,
                "coexist's UDP check sends a payload and there is none: the server is not checked",
            );
            return None;
        };
        let Some(send) = hex_text(payload.word(1)) else {
            tally.not_carried(
                payload.at,
                "coexist's UDP check sends text (UTF-8), and this payload is not: the server is not checked",
            );
            return None;
        };
        tally.carried(payload.at);
        let expect = match reply.words.get(1) {
            None => None,
            Some(hex) => match hex_text(hex) {
                Some(text) => Some(text),
                None => {
                    tally.changed(
                        reply.at,
                        "the expected reply is not text (UTF-8): any reply passes",
                    );
                    None
                }
            },
        };
        tally.carried(reply.at);
        Some(CheckKind::Udp { send, expect })
    }
}

/// Hex digits → the text they spell, when it is non-empty UTF-8.
fn hex_text(hex: &str) -> Option<String> {
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Whether a `virtual_server` names the group `name`.
pub(super) fn group_used(nodes: &[Node], name: &str) -> bool {
    nodes
        .iter()
        .any(|n| n.keyword() == "virtual_server" && n.word(1) == "group" && n.word(2) == name)
}

/// The addresses a `virtual_server` serves: its own, or those of the
/// `virtual_server_group` it names; why none, when none.
fn service_addresses(
    node: &Node,
    groups: &[&Node],
    tally: &mut Tally,
) -> Result<Vec<(SocketAddr, Loc)>, String> {
    match node.word(1) {
        "fwmark" => Err("a firewall-mark service: coexist listens on addresses and ports".into()),
        "group" => {
            let name = node.word(2);
            let group = groups
                .iter()
                .find(|g| g.word(1) == name)
                .ok_or_else(|| format!("no virtual_server_group named {name:?}"))?;
            let listen = group_members(group, tally);
            if listen.is_empty() {
                Err(format!(
                    "group {name:?} has no address and port coexist can listen on"
                ))
            } else {
                Ok(listen)
            }
        }
        _ => match (ip(node.word(1)), node.word(2).parse::<u16>()) {
            (Some(_), Ok(0)) => {
                Err("a service of every port: coexist listens on one port per address".into())
            }
            (Some(vip), Ok(port)) => Ok(vec![(SocketAddr::new(vip, port), node.at)]),
            _ => Err("coexist needs an address and a port to listen on".into()),
        },
    }
}

/// keepalived expands no more than a /24 (or one IPv6 block of 256).
const MAX_RANGE: u16 = 256;

/// A group's `address port` and `first-last port` lines as listeners;
/// `fwmark` lines and what cannot be listened on, reported.
fn group_members(group: &Node, tally: &mut Tally) -> Vec<(SocketAddr, Loc)> {
    tally.carried(group.at);
    let mut listen = Vec::new();
    for member in &group.children {
        let port = member.word(1).parse::<u16>().ok().filter(|p| *p > 0);
        let members = match (member.keyword(), port) {
            ("fwmark", _) => Err("a firewall-mark member: coexist listens on addresses and ports"),
            (_, None) => Err("coexist needs a port other than 0 to listen on"),
            (text, Some(port)) => range(text)
                .map(|ips| (ips, port))
                .ok_or("not an address or a range of addresses"),
        };
        match members {
            Ok((ips, port)) => {
                tally.carried(member.at);
                listen.extend(
                    ips.into_iter()
                        .map(|ip| (SocketAddr::new(ip, port), member.at)),
                );
            }
            Err(why) => whole(member, why, tally),
        }
    }
    listen
}

/// `192.0.2.3`, or keepalived's `192.0.2.3-10` (the last byte of an IPv4
/// address, the last group of an IPv6 one, counting up to the number after
/// the dash).
fn range(text: &str) -> Option<Vec<IpAddr>> {
    let Some((first, last)) = text.split_once('-') else {
        return ip(text).map(|a| vec![a]);
    };
    match ip(first)? {
        IpAddr::V4(a) => {
            let [w, x, y, start] = a.octets();
            let end: u8 = last.parse().ok()?;
            (start <= end).then(|| {
                (start..=end)
                    .map(|z| IpAddr::V4(Ipv4Addr::new(w, x, y, z)))
                    .collect()
            })
        }
        IpAddr::V6(a) => {
            let mut groups = a.segments();
            let start = groups[7];
            let end = u16::from_str_radix(last, 16).ok()?;
            (start <= end && end - start < MAX_RANGE).then(|| {
                (start..=end)
                    .map(|g| {
                        groups[7] = g;
                        IpAddr::V6(Ipv6Addr::from(groups))
                    })
                    .collect()
            })
        }
    }
}

/// `status_code 200`, `200-299` or several → one expect_status, when one
/// code, range or class says it.
fn status_code(words: &[String]) -> Option<String> {
    let [one] = words else { return None };
    let code = |t: &str| t.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    match one.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (code(a)?, code(b)?);
            if a % 100 == 0 && b == a + 99 {
                Some(format!("{}xx", a / 100))
            } else {
                (a <= b).then(|| format!("{a}-{b}"))
            }
        }
        None => code(one).map(|c| c.to_string()),
    }
}

/// The backend's check: the first checked server's; differences reported.
fn health_check(
    checks: &[(Option<CheckKind>, Timing, Loc)],
    tally: &mut Tally,
) -> Option<HealthCheck> {
    let (kind, timing, first) = checks.iter().find(|(k, _, _)| k.is_some())?;
    let kind = kind.clone()?;
    for (k, t, at) in checks {
        if k.is_none() {
            tally.changed(
                *at,
                "checked like the other real servers (keepalived did not check it): coexist checks every server of a backend",
            );
        } else if *k != Some(kind.clone())
            || t.delay_loop != timing.delay_loop
            || t.connect_timeout != timing.connect_timeout
            || t.retry != timing.retry
        {
            tally.changed(
                *at,
                "its check differs from the first real server's: coexist checks every server of a backend the same way",
            );
        }
    }
    let (check, moved) = HealthCheck::within_ranges(
        kind,
        timing.delay_loop,
        timing.connect_timeout,
        1,
        // retry: further attempts after a failure before the server is down.
        timing.retry.unwrap_or(RETRY).saturating_add(1),
        !timing.alpha,
    );
    if let Some(why) = moved {
        tally.changed(*first, why);
    }
    Some(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_keepalived_writes() {
        let s = |w: &[&str]| status_code(&w.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
        assert_eq!(s(&["200"]).as_deref(), Some("200"));
        assert_eq!(s(&["200-299"]).as_deref(), Some("2xx"));
        assert_eq!(s(&["200-399"]).as_deref(), Some("200-399"));
        assert_eq!(s(&["200", "301"]), None);
        assert_eq!(s(&["ok"]), None);
    }
}
