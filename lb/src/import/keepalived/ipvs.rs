//! `virtual_server` (IPVS) → a coexist frontend on the virtual address and
//! a backend of its real servers.
//!
//! IPVS forwards packets (NAT, DR, TUN); coexist proxies connections: the
//! servers see coexist's address as the source and answer through it,
//! which every forwarding method's servers accept as long as their service
//! listens on the real server's address.

use std::net::SocketAddr;
use std::time::Duration;

use super::tree::Node;
use super::whole;
use crate::import::plan::{self, Backend, Balance, CheckKind, Frontend, HealthCheck, Origin, Plan};
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

pub(super) fn virtual_server(node: &Node, tally: &mut Tally, plan: &mut Plan) {
    let fail = |tally: &mut Tally, why: &str| whole(node, why, tally);
    let (Some(vip), Ok(port)) = (ip(node.word(1)), node.word(2).parse::<u16>()) else {
        let why = match node.word(1) {
            "fwmark" => "a firewall-mark service: coexist listens on addresses and ports",
            "group" => "a virtual_server_group: write one virtual_server per address",
            _ => "coexist needs an address and a port to listen on",
        };
        fail(tally, why);
        return;
    };
    if port == 0 {
        fail(
            tally,
            "a service of every port: coexist listens on one port per address",
        );
        return;
    }
    let protocol = node
        .children
        .iter()
        .find(|c| c.keyword() == "protocol")
        .map_or("TCP", |c| c.word(1));
    if protocol != "TCP" {
        fail(
            tally,
            &format!("a {protocol} service: coexist carries TCP services only so far"),
        );
        return;
    }
    let listen = SocketAddr::new(vip, port);
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
        let Some((server, check)) =
            real_server(r, timing, weighted, default_host.as_deref(), tally)
        else {
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
    let name = plan::name(&format!("vs-{listen}"));
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
            listen: vec![(listen, node.at)],
            backend,
            max_connections: None,
            proxy_protocol: None,
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

fn real_server(
    r: &Node,
    mut timing: Timing,
    weighted: bool,
    host: Option<&str>,
    tally: &mut Tally,
) -> Option<(plan::Server, CheckOf)> {
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
                if check.is_some() {
                    whole(
                        c,
                        "coexist runs one check per server: the first checker's",
                        tally,
                    );
                    continue;
                }
                let (k, t) = checker(c, kind, address.port(), host.as_deref(), timing, tally);
                check = Some(k);
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

/// One checker block → the check coexist runs, and its timing.
fn checker(
    block: &Node,
    kind: &str,
    port: u16,
    host: Option<&str>,
    mut timing: Timing,
    tally: &mut Tally,
) -> (CheckKind, Timing) {
    tally.carried(block.at);
    let mut path = None;
    let mut status = None;
    let mut host = host.map(str::to_owned);
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
        "TCP_CHECK" => CheckKind::Tcp,
        "HTTP_GET" => CheckKind::Http {
            path: path
                .filter(|p| p.starts_with('/') && !p.contains(|c: char| c.is_whitespace()))
                .unwrap_or_else(|| "/".into()),
            host: host.filter(|h| !h.is_empty() && !h.contains(char::is_whitespace)),
            // keepalived accepts 200-299 unless told otherwise.
            expect_status: Some(status.unwrap_or_else(|| "2xx".into())),
        },
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
            CheckKind::Tcp
        }
    };
    (check, timing)
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
