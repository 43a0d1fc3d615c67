//! `server` and `default-server` lines: the address and the options coexist
//! has (weight, backup, maxconn, PROXY protocol, check timing), the others
//! reported.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{At, Line};
use crate::import::plan::ProxyVersion;
use crate::import::tally::{Loc, NoteKind, Tally};
use crate::import::values::haproxy_time;

/// Options of a server as its lines set them; `None`: not said.
#[derive(Debug, Clone, Default)]
pub(super) struct Params {
    pub check: Option<At<bool>>,
    pub weight: Option<At<u32>>,
    pub backup: Option<At<bool>>,
    pub disabled: Option<At<bool>>,
    pub inter: Option<At<Duration>>,
    pub rise: Option<At<u32>>,
    pub fall: Option<At<u32>>,
    pub maxconn: Option<At<u64>>,
    pub proxy: Option<At<Option<ProxyVersion>>>,
    pub ssl: Option<At<bool>>,
    pub check_ssl: Option<At<bool>>,
    /// `port N` or `addr A`: the check goes elsewhere than the service.
    pub check_elsewhere: Option<At<String>>,
    /// `socks4 ADDR`: the server is reached through a SOCKS proxy.
    pub socks: Option<At<String>>,
}

/// Options that take one argument; any other word is a flag.
const WITH_ARGUMENT: &[&str] = &[
    "addr",
    "agent-addr",
    "agent-inter",
    "agent-port",
    "agent-send",
    "alpn",
    "ca-file",
    "check-alpn",
    "check-proto",
    "check-sni",
    "ciphers",
    "ciphersuites",
    "client-sigalgs",
    "cookie",
    "crl-file",
    "crt",
    "curves",
    "downinter",
    "error-limit",
    "fall",
    "fastinter",
    "guid",
    "hash-key",
    "id",
    "init-addr",
    "init-state",
    "inter",
    "log-bufsize",
    "log-proto",
    "max-reuse",
    "maxconn",
    "maxqueue",
    "minconn",
    "namespace",
    "npn",
    "observe",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "pool-conn-name",
    "pool-low-conn",
    "pool-max-conn",
    "pool-purge-delay",
    "port",
    "proto",
    "proxy-v2-options",
    "redir",
    "resolve-net",
    "resolve-opts",
    "resolve-prefer",
    "resolvers",
    "rise",
    "shard",
    "sigalgs",
    "slowstart",
    "sni",
    "socks4",
    "ssl-max-ver",
    "ssl-min-ver",
    "tcp-ut",
    "track",
    "verify",
    "verifyhost",
    "weight",
    "ws",
];

/// What a server line says that coexist does not do (exactly): reported
/// only if the server is carried over at all.
#[derive(Debug, Default)]
pub(super) struct Remarks(Vec<(Loc, String, String, NoteKind)>);

impl Remarks {
    fn not_carried(&mut self, at: Loc, part: &str, reason: &str) {
        self.0
            .push((at, part.to_owned(), reason.to_owned(), NoteKind::NotCarried));
    }

    fn changed(&mut self, at: Loc, part: &str, reason: &str) {
        self.0
            .push((at, part.to_owned(), reason.to_owned(), NoteKind::Changed));
    }

    pub fn report(self, tally: &mut Tally) {
        for (at, part, reason, kind) in self.0 {
            match kind {
                NoteKind::NotCarried => tally.part_not_carried(at, &part, reason),
                NoteKind::Changed => tally.part_changed(at, &part, reason),
            }
        }
    }
}

impl Params {
    /// Reads the options of `line` from word `first` on, over `self`.
    pub fn read(&mut self, line: &Line, first: usize, remarks: &mut Remarks) {
        let at = line.at;
        let mut i = first;
        while i < line.words.len() {
            let key = line.words[i].as_str();
            let (arg, used) = if key == "source" {
                source_words(&line.words[i..])
            } else if WITH_ARGUMENT.contains(&key) {
                (line.words.get(i + 1).map_or("", String::as_str), 2)
            } else {
                ("", 1)
            };
            let shown = line.words[i..(i + used).min(line.words.len())].join(" ");
            i += used;
            let set = |v| Some(At { at, value: v });
            match key {
                "check" => self.check = set(true),
                "no-check" => self.check = set(false),
                "backup" => self.backup = set(true),
                "no-backup" => self.backup = set(false),
                "disabled" => self.disabled = set(true),
                "enabled" => self.disabled = set(false),
                "send-proxy" => self.proxy = Some(At { at, value: Some(ProxyVersion::V1) }),
                "send-proxy-v2" => self.proxy = Some(At { at, value: Some(ProxyVersion::V2) }),
                "no-send-proxy" | "no-send-proxy-v2" => self.proxy = Some(At { at, value: None }),
                "ssl" => self.ssl = set(true),
                "no-ssl" => self.ssl = set(false),
                "check-ssl" => self.check_ssl = set(true),
                "no-check-ssl" => self.check_ssl = set(false),
                "weight" => match arg.parse::<u32>() {
                    Ok(w) if w <= 256 => self.weight = Some(At { at, value: w }),
                    _ => remarks.not_carried(at, &shown, "a weight is 0 to 256"),
                },
                "maxconn" => match arg.parse::<u64>() {
                    // 0 is HAProxy's "no limit".
                    Ok(0) => {}
                    Ok(n) => self.maxconn = Some(At { at, value: n }),
                    Err(_) => remarks.not_carried(at, &shown, "not a number of connections"),
                },
                "inter" => match haproxy_time(arg) {
                    Some(d) => self.inter = Some(At { at, value: d }),
                    None => remarks.not_carried(at, &shown, "not a time HAProxy reads"),
                },
                "rise" | "fall" => match arg.parse::<u32>() {
                    Ok(n @ 1..=1000) => {
                        let slot = if key == "rise" { &mut self.rise } else { &mut self.fall };
                        *slot = Some(At { at, value: n });
                    }
                    _ => remarks.not_carried(at, &shown, "a count from 1 to 1000"),
                },
                "port" | "addr" => self.check_elsewhere = Some(At { at, value: shown }),
                "socks4" => self.socks = Some(At { at, value: shown }),
                "send-proxy-v2-ssl" | "send-proxy-v2-ssl-cn" => remarks.changed(at, &shown,
                    "sent as a plain PROXY v2 header, without the TLS details",
                ),
                "fastinter" | "downinter" => remarks.changed(at, &shown,
                    "coexist checks at one interval whatever the server's state",
                ),
                "slowstart" => remarks.not_carried(at, &shown, "a server gets its full share as soon as it is up"),
                "observe" | "error-limit" | "on-error" => remarks.changed(at, &shown,
                    "coexist always counts failed connects against a server (3 in a row take it out)",
                ),
                "on-marked-down" | "on-marked-up" => remarks.not_carried(at, &shown,
                    "open connections continue when a server's state changes",
                ),
                "resolvers" | "resolve-prefer" | "resolve-net" | "resolve-opts" | "init-addr" => {
                    remarks.not_carried(at, &shown, "DNS resolution of servers is not carried yet")
                }
                "track" | "agent-check" | "agent-port" | "agent-inter" | "agent-addr"
                | "agent-send" => remarks.not_carried(at, &shown,
                    "each server is checked on its own by the backend's health_check",
                ),
                "cookie" | "redir" => remarks.not_carried(at, &shown, "an HTTP-mode feature"),
                "source" => remarks.not_carried(at, &shown,
                    "connections to servers leave from the address the kernel chooses",
                ),
                "id" | "guid" | "hash-key" => {
                    remarks.not_carried(at, &shown, "no counterpart; servers are named")
                }
                "maxqueue" | "minconn" => {
                    remarks.not_carried(at, &shown, "coexist does not queue connections")
                }
                _ => remarks.not_carried(at, &shown, "no counterpart in coexist"),
            }
        }
    }

    /// `self` over `base`: what a server line says wins over its defaults.
    pub fn over(self, base: &Params) -> Params {
        fn pick<T: Clone>(own: Option<At<T>>, base: &Option<At<T>>) -> Option<At<T>> {
            own.or_else(|| base.clone())
        }
        Params {
            check: pick(self.check, &base.check),
            weight: pick(self.weight, &base.weight),
            backup: pick(self.backup, &base.backup),
            disabled: pick(self.disabled, &base.disabled),
            inter: pick(self.inter, &base.inter),
            rise: pick(self.rise, &base.rise),
            fall: pick(self.fall, &base.fall),
            maxconn: pick(self.maxconn, &base.maxconn),
            proxy: pick(self.proxy, &base.proxy),
            ssl: pick(self.ssl, &base.ssl),
            check_ssl: pick(self.check_ssl, &base.check_ssl),
            check_elsewhere: pick(self.check_elsewhere, &base.check_elsewhere),
            socks: pick(self.socks, &base.socks),
        }
    }

    pub fn is(&self, flag: impl Fn(&Params) -> &Option<At<bool>>) -> bool {
        flag(self).as_ref().is_some_and(|f| f.value)
    }
}

/// `source ADDR [usesrc X] [interface X]`: the words it takes.
fn source_words(words: &[String]) -> (&str, usize) {
    let mut used = 2;
    while matches!(
        words.get(used).map(String::as_str),
        Some("usesrc" | "interface")
    ) {
        used += 2;
    }
    (
        words.get(1).map_or("", String::as_str),
        used.min(words.len()),
    )
}

/// A server's address as HAProxy writes it: `ip:port`, `[ipv6]:port`,
/// bare IPv6 with the port after the last colon, an optional `ipv4@` or
/// `ipv6@` prefix. The reason when coexist cannot connect to it.
pub(super) fn address(text: &str) -> Result<SocketAddr, String> {
    let text = text
        .strip_prefix("ipv4@")
        .or_else(|| text.strip_prefix("ipv6@"))
        .unwrap_or(text);
    if text.starts_with('/') || text.contains('@') {
        return Err(format!(
            "{text}: not an IP address (a UNIX socket or inherited descriptor)"
        ));
    }
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once("]:") {
            Some((h, p)) => (h, p),
            None => (rest.trim_end_matches(']'), ""),
        },
        None => match text.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (text, ""),
        },
    };
    if port.is_empty() {
        return Err(format!(
            "{text}: no port, so HAProxy uses the port each client connected to; coexist connects to one port per server"
        ));
    }
    if port.starts_with(['+', '-']) {
        return Err(format!(
            "{text}: a port relative to the client's; coexist connects to one port per server"
        ));
    }
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("{text}: {port:?} is not a port")),
    };
    if host.is_empty() || host == "*" {
        return Err(format!(
            "{text}: forwards to the client's own destination (transparent proxying), which coexist does not do"
        ));
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => Err(format!(
            "{text}: forwards to the client's own destination (transparent proxying), which coexist does not do"
        )),
        Ok(ip) => Ok(SocketAddr::new(ip, port)),
        Err(_) => Err(format!(
            "{host} is a host name: names in server addresses are not carried yet; write its address"
        )),
    }
}

/// Reads the `default-server` lines of a proxy, in order.
pub(super) fn defaults(lines: &[Line], remarks: &mut Remarks) -> Params {
    let mut p = Params::default();
    for line in lines {
        p.read(line, 1, remarks);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_haproxy_forms() {
        let ok = |t: &str| address(t).unwrap().to_string();
        assert_eq!(ok("192.0.2.1:80"), "192.0.2.1:80");
        assert_eq!(ok("ipv4@192.0.2.1:80"), "192.0.2.1:80");
        assert_eq!(ok("[2001:db8::1]:443"), "[2001:db8::1]:443");
        assert_eq!(ok("2001:db8::1:443"), "[2001:db8::1]:443");
        assert_eq!(ok("ipv6@::1:8080"), "[::1]:8080");
    }

    #[test]
    fn addresses_coexist_cannot_connect_to() {
        let why = |t: &str| address(t).unwrap_err();
        assert!(why("192.0.2.1").contains("no port"));
        assert!(why("192.0.2.1:+1000").contains("relative"));
        assert!(why("0.0.0.0:80").contains("transparent"));
        assert!(why("*:80").contains("transparent"));
        assert!(why("db1.example.net:5432").contains("host name"));
        assert!(why("/run/app.sock").contains("UNIX"));
        assert!(why("unix@app.sock").contains("UNIX"));
        assert!(why("192.0.2.1:99999").contains("not a port"));
    }
}
