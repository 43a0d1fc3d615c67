//! `[[frontend]]` checks: names, listen addresses that could all be bound
//! together, the backend each one names, and the keys of its protocol.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::Ctx;
use crate::config::model::{Backend, Frontend, Protocol, UdpSettings};
use crate::config::raw::{RawFrontend, RawProtocol, RawProxyProtocol};
use crate::proxy_protocol::ProxyVersion;

/// A DNS exchange is over in well under a second; a few tens of seconds
/// also keep a slow request/response protocol's session between exchanges.
const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Each holds a descriptor and a socket towards its server (a few KiB in
/// the kernel, idle) and a table entry: some tens of MiB at the limit.
const DEFAULT_MAX_SESSIONS: usize = 16384;
const MAX_MAX_SESSIONS: i64 = 1 << 24;

pub(super) fn frontends(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawFrontend>],
    backends: &[Backend],
) -> Vec<Frontend> {
    let mut out: Vec<Frontend> = Vec::with_capacity(raw.len());
    // Every listen address seen so far, with its protocol and the key that
    // declared it: TCP and UDP sockets on one port do not clash (DNS).
    let mut bound: Vec<(SocketAddr, RawProtocol, String)> = Vec::new();
    for (i, f) in raw.iter().enumerate() {
        let f = f.get_ref();
        let at = format!("frontend[{i}]");
        let key = format!("{at}.name");
        ctx.name(&f.name, &key);
        if let Some(j) = out.iter().position(|o| o.name == *f.name.get_ref()) {
            let msg = format!(
                "duplicate frontend name {:?} (also frontend[{j}])",
                f.name.get_ref()
            );
            ctx.error(f.name.span(), &key, msg);
        }

        if f.listen.get_ref().is_empty() {
            ctx.error(
                f.listen.span(),
                &format!("{at}.listen"),
                "needs at least one address",
            );
        }
        let raw_protocol = f
            .protocol
            .as_ref()
            .map_or(RawProtocol::Tcp, |p| *p.get_ref());
        let mut listen = Vec::new();
        for (k, addr) in f.listen.get_ref().iter().enumerate() {
            let key = format!("{at}.listen[{k}]");
            let Some(a) = ctx.socket_addr(addr, &key) else {
                continue;
            };
            if let Some((_, _, other)) = bound
                .iter()
                .find(|(b, p, _)| *p == raw_protocol && conflicts(*b, a))
            {
                let msg = format!("{a} cannot be bound: it overlaps {other}");
                ctx.error(addr.span(), &key, msg);
            }
            bound.push((a, raw_protocol, key));
            listen.push(a);
        }

        let key = format!("{at}.backend");
        if !backends.iter().any(|b| b.name == *f.backend.get_ref()) {
            let msg = format!("no [[backend]] is named {:?}", f.backend.get_ref());
            ctx.error(f.backend.span(), &key, msg);
        }

        let max_connections = f
            .max_connections
            .as_ref()
            .map(|m| ctx.int_in(Some(m), &format!("{at}.max_connections"), 1, 1..=i64::MAX));
        let proxy_protocol = match f.proxy_protocol.as_ref().map(Spanned::get_ref) {
            None | Some(RawProxyProtocol::None) => None,
            Some(RawProxyProtocol::V1) => Some(ProxyVersion::V1),
            Some(RawProxyProtocol::V2) => Some(ProxyVersion::V2),
        };
        let protocol = match raw_protocol {
            RawProtocol::Tcp => {
                udp_keys_absent(ctx, f, &at);
                Protocol::Tcp
            }
            RawProtocol::Udp => Protocol::Udp(udp(ctx, f, &at)),
        };

        out.push(Frontend {
            name: f.name.get_ref().clone(),
            listen,
            backend: f.backend.get_ref().clone(),
            max_connections: max_connections.filter(|_| raw_protocol == RawProtocol::Tcp),
            proxy_protocol: if raw_protocol == RawProtocol::Tcp {
                proxy_protocol
            } else {
                None
            },
            protocol,
        });
    }
    out
}

/// A UDP key on a TCP frontend: the operator meant something else.
fn udp_keys_absent(ctx: &mut Ctx<'_>, f: &RawFrontend, at: &str) {
    let udp_keys = [
        (
            "udp_idle_timeout",
            f.udp_idle_timeout.as_ref().map(Spanned::span),
        ),
        ("udp_responses", f.udp_responses.as_ref().map(Spanned::span)),
        ("max_sessions", f.max_sessions.as_ref().map(Spanned::span)),
    ];
    for (name, span) in udp_keys {
        if let Some(span) = span {
            ctx.error(
                span,
                &format!("{at}.{name}"),
                "only used with protocol = \"udp\"",
            );
        }
    }
}

/// The UDP keys, and the TCP keys a UDP frontend cannot honour.
fn udp(ctx: &mut Ctx<'_>, f: &RawFrontend, at: &str) -> UdpSettings {
    if let Some(m) = &f.max_connections {
        ctx.error(
            m.span(),
            &format!("{at}.max_connections"),
            "TCP only; a UDP frontend is bounded by max_sessions",
        );
    }
    if let Some(p) = f
        .proxy_protocol
        .as_ref()
        .filter(|p| *p.get_ref() != RawProxyProtocol::None)
    {
        ctx.error(
            p.span(),
            &format!("{at}.proxy_protocol"),
            "a PROXY header cannot be sent on a UDP frontend: servers would read it as part of the first datagram",
        );
    }
    UdpSettings {
        idle_timeout: ctx.duration_in(
            f.udp_idle_timeout.as_ref(),
            &format!("{at}.udp_idle_timeout"),
            DEFAULT_UDP_IDLE_TIMEOUT,
            Duration::from_millis(10)..=Duration::from_secs(24 * 3600),
        ),
        responses: f.udp_responses.as_ref().map(|r| {
            ctx.int_in(
                Some(r),
                &format!("{at}.udp_responses"),
                1,
                1..=i64::from(u32::MAX),
            )
        }),
        max_sessions: ctx.int_in(
            f.max_sessions.as_ref(),
            &format!("{at}.max_sessions"),
            DEFAULT_MAX_SESSIONS,
            1..=MAX_MAX_SESSIONS,
        ),
    }
}

/// Two listeners clash when the kernel would refuse to bind both: same port
/// and family, and the same address or a wildcard on either side. IPv6
/// listeners are V6ONLY, so `[::]:p` leaves `0.0.0.0:p` free. Port 0 asks
/// the kernel for a fresh port and never clashes.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::conflicts;
    use crate::config::{parse, CheckKind, Protocol, UdpSettings};
    use std::time::Duration;

    const DNS_BACKEND: &str =
        "[[backend]]\nname = \"dns\"\nservers = [{ address = \"[2001:db8::53]:53\" }]\n";

    fn frontend(extra: &str) -> String {
        format!(
            "[[frontend]]\nname = \"dns\"\nlisten = [\"0.0.0.0:53\", \"[::]:53\"]\nbackend = \"dns\"\n{extra}\n{DNS_BACKEND}"
        )
    }

    /// The first diagnostic, displayed.
    fn error(text: &str) -> String {
        let e = parse(text, "t.toml").expect_err("config should be rejected");
        e.to_string().lines().next().unwrap().to_owned()
    }

    #[test]
    fn udp_frontend_defaults() {
        let c = parse(&frontend("protocol = \"udp\""), "t.toml").unwrap();
        assert_eq!(
            c.frontends[0].protocol,
            Protocol::Udp(UdpSettings {
                idle_timeout: Duration::from_secs(30),
                responses: None,
                max_sessions: 16384,
            })
        );
        let c = parse(&frontend(""), "t.toml").unwrap();
        assert_eq!(c.frontends[0].protocol, Protocol::Tcp);
    }

    #[test]
    fn udp_keys_are_read() {
        let text = frontend(
            "protocol = \"udp\"\nudp_idle_timeout = \"5s\"\nudp_responses = 1\nmax_sessions = 1000",
        );
        let c = parse(&text, "t.toml").unwrap();
        let udp = c.frontends[0].udp().unwrap();
        assert_eq!(udp.idle_timeout, Duration::from_secs(5));
        assert_eq!(udp.responses, Some(1));
        assert_eq!(udp.max_sessions, 1000);
    }

    #[test]
    fn the_same_port_serves_tcp_and_udp_frontends() {
        let text = format!(
            "{}[[frontend]]\nname = \"dns-tcp\"\nlisten = [\"0.0.0.0:53\", \"[::]:53\"]\nbackend = \"dns\"\n",
            frontend("protocol = \"udp\"")
        );
        let c = parse(&text, "t.toml").unwrap();
        assert_eq!(c.frontends.len(), 2);
        // Two UDP frontends on one port still clash.
        let text = format!(
            "{}[[frontend]]\nname = \"dns2\"\nprotocol = \"udp\"\nlisten = [\"127.0.0.1:53\"]\nbackend = \"dns\"\n",
            frontend("protocol = \"udp\"")
        );
        let e = error(&text);
        assert!(
            e.starts_with("t.toml:12:11: frontend[1].listen[0]: "),
            "{e}"
        );
        assert!(e.contains("overlaps frontend[0].listen[0]"), "{e}");
    }

    #[test]
    fn tcp_keys_on_a_udp_frontend_are_rejected() {
        let e = error(&frontend("protocol = \"udp\"\nproxy_protocol = \"v2\""));
        assert!(
            e.starts_with("t.toml:6:18: frontend[0].proxy_protocol: "),
            "{e}"
        );
        assert!(e.contains("PROXY header"), "{e}");
        let e = error(&frontend("protocol = \"udp\"\nmax_connections = 10"));
        assert!(
            e.starts_with("t.toml:6:19: frontend[0].max_connections: "),
            "{e}"
        );
        assert!(e.contains("max_sessions"), "{e}");
        // "none" says nothing a UDP frontend cannot honour.
        assert!(parse(
            &frontend("protocol = \"udp\"\nproxy_protocol = \"none\""),
            "t.toml"
        )
        .is_ok());
    }

    #[test]
    fn udp_keys_on_a_tcp_frontend_are_rejected() {
        for (line, key) in [
            ("udp_idle_timeout = \"5s\"", "udp_idle_timeout"),
            ("udp_responses = 1", "udp_responses"),
            ("max_sessions = 10", "max_sessions"),
        ] {
            let e = error(&frontend(line));
            let column = key.len() + 4;
            let prefix = format!("t.toml:5:{column}: frontend[0].{key}: ");
            assert!(e.starts_with(&prefix), "{e}");
            assert!(e.contains("only used with protocol = \"udp\""), "{e}");
        }
    }

    #[test]
    fn udp_values_out_of_range() {
        let e = error(&frontend("protocol = \"udp\"\nudp_responses = 0"));
        assert!(
            e.starts_with("t.toml:6:17: frontend[0].udp_responses: 0 is out of range"),
            "{e}"
        );
        let e = error(&frontend("protocol = \"udp\"\nmax_sessions = 0"));
        assert!(
            e.starts_with("t.toml:6:16: frontend[0].max_sessions: 0 is out of range"),
            "{e}"
        );
        let e = error(&frontend("protocol = \"udp\"\nudp_idle_timeout = \"1ms\""));
        assert!(
            e.contains("frontend[0].udp_idle_timeout: 1ms is out of range"),
            "{e}"
        );
        let e = error(&frontend("protocol = \"quic\""));
        assert!(e.starts_with("t.toml:5:12: frontend[0].protocol: "), "{e}");
    }

    fn check(keys: &str) -> Result<CheckKind, String> {
        let text = format!(
            "[[backend]]\nname = \"dns\"\nhealth_check = {{ {keys} }}\nservers = [{{ address = \"127.0.0.1:53\" }}]\n[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:53\"]\nbackend = \"dns\"\n"
        );
        parse(&text, "t.toml")
            .map(|c| c.backends[0].health_check.clone().unwrap().kind)
            .map_err(|e| e.to_string().lines().next().unwrap().to_owned())
    }

    #[test]
    fn dns_check_defaults_and_keys() {
        assert_eq!(
            check("kind = \"dns\""),
            Ok(CheckKind::Dns {
                query_name: ".".to_owned(),
                query_type: 6,
                expect_rcodes: vec![0],
            })
        );
        assert_eq!(
            check("kind = \"dns\", query_name = \"example.org\", query_type = \"aaaa\", expect_rcode = [\"NOERROR\", \"NXDOMAIN\"]"),
            Ok(CheckKind::Dns {
                query_name: "example.org.".to_owned(),
                query_type: 28,
                expect_rcodes: vec![0, 3],
            })
        );
    }

    #[test]
    fn dns_check_mistakes_are_located() {
        let e = check("kind = \"dns\", query_type = \"AAA\"").unwrap_err();
        assert!(
            e.starts_with("t.toml:3:45: backend[0].health_check.query_type: "),
            "{e}"
        );
        let e = check("kind = \"dns\", expect_rcode = \"OK\"").unwrap_err();
        assert!(
            e.starts_with("t.toml:3:47: backend[0].health_check.expect_rcode: "),
            "{e}"
        );
        let e = check("kind = \"dns\", query_name = \"a..b\"").unwrap_err();
        assert!(
            e.starts_with("t.toml:3:45: backend[0].health_check.query_name: "),
            "{e}"
        );
        let e = check("kind = \"dns\", path = \"/\"").unwrap_err();
        assert!(
            e.contains("backend[0].health_check.path: only used with kind = \"http\""),
            "{e}"
        );
        let e = check("kind = \"tcp\", query_name = \"a\"").unwrap_err();
        assert!(
            e.contains("query_name: only used with kind = \"dns\""),
            "{e}"
        );
    }

    #[test]
    fn udp_check_needs_send_and_may_expect() {
        assert_eq!(
            check("kind = \"udp\", send = \"ping\""),
            Ok(CheckKind::Udp {
                send: b"ping".to_vec(),
                expect: None
            })
        );
        assert_eq!(
            check("kind = \"udp\", send = \"ping\", expect = \"pong\""),
            Ok(CheckKind::Udp {
                send: b"ping".to_vec(),
                expect: Some(b"pong".to_vec())
            })
        );
        let e = check("kind = \"udp\"").unwrap_err();
        assert!(
            e.contains("backend[0].health_check.send: kind = \"udp\" needs `send`"),
            "{e}"
        );
        let e = check("kind = \"http\", send = \"x\"").unwrap_err();
        assert!(
            e.contains("send: only used with kind = \"send-expect\" or \"udp\""),
            "{e}"
        );
    }

    #[test]
    fn wildcard_overlaps_same_family_only() {
        let p = |s: &str| s.parse().unwrap();
        assert!(conflicts(p("0.0.0.0:80"), p("192.0.2.1:80")));
        assert!(conflicts(p("[::]:80"), p("[2001:db8::1]:80")));
        assert!(!conflicts(p("0.0.0.0:80"), p("[::]:80")));
        assert!(!conflicts(p("192.0.2.1:80"), p("192.0.2.2:80")));
        assert!(!conflicts(p("127.0.0.1:0"), p("127.0.0.1:0")));
    }
}
