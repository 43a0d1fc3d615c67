//! `bind` lines (and the address on an old-style `listen NAME ADDR`
//! header): the addresses coexist listens on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Line;
use crate::import::tally::Tally;

/// A port range larger than this is not expanded into listeners.
const MAX_RANGE: u32 = 64;

/// The addresses of a `bind` line (`list` is its address word, options
/// follow from word `options`).
pub(super) fn addresses(
    line: &Line,
    list: usize,
    options: usize,
    tally: &mut Tally,
) -> Vec<SocketAddr> {
    let at = line.at;
    let opts = &line.words[options.min(line.words.len())..];
    let has = |o: &str| opts.iter().any(|w| w == o);
    if has("ssl") || opts.iter().any(|w| w == "crt" || w.starts_with("quic")) {
        tally.not_carried(
            at,
            "terminates TLS: coexist forwards bytes as they are, so the servers would get TLS they do not expect",
        );
        return Vec::new();
    }
    if has("accept-proxy") || has("accept-netscaler-cip") {
        tally.not_carried(
            at,
            "expects a PROXY header from clients, which coexist does not read",
        );
        return Vec::new();
    }
    let dual_stack = !has("v6only");
    let rest: Vec<&str> = opts
        .iter()
        .map(String::as_str)
        .filter(|w| *w != "v4v6" && *w != "v6only")
        .collect();
    if !rest.is_empty() {
        tally.part_not_carried(
            at,
            &rest.join(" "),
            "bind options with no counterpart in coexist",
        );
    }
    let mut out = Vec::new();
    for item in line.word(list).split(',').filter(|i| !i.is_empty()) {
        match one(item, dual_stack) {
            Ok(mut addresses) => out.append(&mut addresses),
            Err(reason) => tally.part_not_carried(at, item, reason),
        }
    }
    if out.is_empty() && line.word(list).is_empty() {
        tally.not_carried(at, "no address to listen on");
    }
    out
}

/// One `[address]:port[-port]`.
fn one(item: &str, dual_stack: bool) -> Result<Vec<SocketAddr>, String> {
    let (family, text) = match item.split_once('@') {
        Some(("ipv4", rest)) => (Some(false), rest),
        Some(("ipv6", rest)) => (Some(true), rest),
        Some((prefix, _)) => {
            return Err(format!(
                "{prefix}@ addresses are not TCP listeners coexist can open"
            ))
        }
        None => (None, item),
    };
    if text.starts_with('/') {
        return Err("a UNIX socket: coexist listens on IP addresses".into());
    }
    let (host, ports) = match text.strip_prefix('[') {
        Some(rest) => rest
            .split_once("]:")
            .ok_or_else(|| format!("{item}: no port"))?,
        None => text
            .rsplit_once(':')
            .ok_or_else(|| format!("{item}: no port"))?,
    };
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (a, b),
        None => (ports, ports),
    };
    let (first, last): (u16, u16) = match (first.parse(), last.parse()) {
        (Ok(a), Ok(b)) if a > 0 && a <= b => (a, b),
        _ => return Err(format!("{item}: {ports:?} is not a port or port range")),
    };
    if u32::from(last - first) >= MAX_RANGE {
        return Err(format!(
            "{item}: a range of {} ports; coexist opens one listener per port, list the ones in use",
            u32::from(last - first) + 1
        ));
    }
    let ips: Vec<IpAddr> = match host {
        // HAProxy: no address (or `*`) is every IPv4 address, unless the
        // family is forced.
        "" | "*" if family == Some(true) => wildcard_v6(dual_stack),
        "" | "*" => vec![Ipv4Addr::UNSPECIFIED.into()],
        _ => match host.parse::<IpAddr>() {
            // `::` takes IPv4 too unless v6only (net.ipv6.bindv6only=0,
            // Linux's default); coexist's IPv6 listeners are V6ONLY, so it
            // listens on both.
            Ok(IpAddr::V6(v6)) if v6.is_unspecified() => wildcard_v6(dual_stack),
            Ok(ip) => vec![ip],
            Err(_) => {
                return Err(format!(
                    "{host} is a host name: coexist listens on addresses; write the address"
                ))
            }
        },
    };
    Ok(ips
        .into_iter()
        .flat_map(|ip| (first..=last).map(move |p| SocketAddr::new(ip, p)))
        .collect())
}

fn wildcard_v6(dual_stack: bool) -> Vec<IpAddr> {
    let mut ips = vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)];
    if dual_stack {
        ips.push(Ipv4Addr::UNSPECIFIED.into());
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(item: &str, dual: bool) -> Vec<String> {
        one(item, dual)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn haproxy_bind_addresses() {
        assert_eq!(shown(":80", true), ["0.0.0.0:80"]);
        assert_eq!(shown("*:80", true), ["0.0.0.0:80"]);
        assert_eq!(shown("192.0.2.10:443", true), ["192.0.2.10:443"]);
        assert_eq!(shown(":::80", true), ["[::]:80", "0.0.0.0:80"]);
        assert_eq!(shown("[::]:80", false), ["[::]:80"]);
        assert_eq!(shown("ipv6@:80", true), ["[::]:80", "0.0.0.0:80"]);
        assert_eq!(shown("2001:db8::10:80", true), ["[2001:db8::10]:80"]);
        assert_eq!(
            shown("10.0.0.1:8000-8002", true),
            ["10.0.0.1:8000", "10.0.0.1:8001", "10.0.0.1:8002"]
        );
    }

    #[test]
    fn bind_addresses_coexist_cannot_listen_on() {
        let why = |t: &str| one(t, true).unwrap_err();
        assert!(why("/var/run/x.sock").contains("UNIX"));
        assert!(why("unix@x.sock").contains("unix@"));
        assert!(why("fd@${FD}").contains("fd@"));
        assert!(why("public:443").contains("host name"));
        assert!(why(":1000-2000").contains("range of 1001"));
        assert!(why("192.0.2.1").contains("no port"));
    }
}
