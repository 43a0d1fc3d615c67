//! `[[frontend]]` checks: names, listen addresses that could all be bound
//! together, and the backend each one names.

use std::net::SocketAddr;

use toml::Spanned;

use super::Ctx;
use crate::config::model::{Backend, Frontend};
use crate::config::raw::{RawFrontend, RawProxyProtocol};
use crate::proxy_protocol::ProxyVersion;

pub(super) fn frontends(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawFrontend>],
    backends: &[Backend],
) -> Vec<Frontend> {
    let mut out: Vec<Frontend> = Vec::with_capacity(raw.len());
    // Every listen address seen so far, with the key that declared it.
    let mut bound: Vec<(SocketAddr, String)> = Vec::new();
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
        let mut listen = Vec::new();
        for (k, addr) in f.listen.get_ref().iter().enumerate() {
            let key = format!("{at}.listen[{k}]");
            let Some(a) = ctx.socket_addr(addr, &key) else {
                continue;
            };
            if let Some((_, other)) = bound.iter().find(|(b, _)| conflicts(*b, a)) {
                let msg = format!("{a} cannot be bound: it overlaps {other}");
                ctx.error(addr.span(), &key, msg);
            }
            bound.push((a, key));
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

        out.push(Frontend {
            name: f.name.get_ref().clone(),
            listen,
            backend: f.backend.get_ref().clone(),
            max_connections,
            proxy_protocol: match f.proxy_protocol {
                None | Some(RawProxyProtocol::None) => None,
                Some(RawProxyProtocol::V1) => Some(ProxyVersion::V1),
                Some(RawProxyProtocol::V2) => Some(ProxyVersion::V2),
            },
        });
    }
    out
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
