//! `[[backend]]` checks: timeouts, the health check, the Maglev table size
//! and the servers.

use std::net::{SocketAddr, SocketAddrV6};
use std::time::Duration;

use toml::Spanned;

use super::values::WrittenAddress;
use super::{dns_check, values, Ctx};
use crate::config::model::{
    Backend, Balance, CheckKind, Family, Frontend, HealthCheck, InitialState, NamedAddress, Prefer,
    Server, ServerAddress,
};
use crate::config::raw::{
    RawBackend, RawBalance, RawCheckKind, RawFamily, RawHealthCheck, RawInitialState, RawPrefer,
    RawServer,
};

const DEFAULT_MAGLEV_TABLE_SIZE: usize = 65537;
/// Beyond this the table stops fitting in cache and building it takes long
/// enough to stall a reload.
const MAX_MAGLEV_TABLE_SIZE: i64 = 1 << 24;
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 3;
/// HAProxy's http-check accepts 2xx and 3xx by default.
const DEFAULT_EXPECT_STATUS: std::ops::RangeInclusive<u16> = 200..=399;
const DEFAULT_HTTP_HOST: &str = "localhost";
/// RFC 8305 §8: the recommended Connection Attempt Delay.
const DEFAULT_HAPPY_EYEBALLS_DELAY: Duration = Duration::from_millis(250);

pub(super) fn backends(ctx: &mut Ctx<'_>, raw: &[Spanned<RawBackend>]) -> Vec<Backend> {
    let mut out: Vec<Backend> = Vec::with_capacity(raw.len());
    for (i, b) in raw.iter().enumerate() {
        let at = format!("backend[{i}]");
        let key = format!("{at}.name");
        let name = &b.get_ref().name;
        ctx.name(name, &key);
        if let Some(j) = out.iter().position(|o| o.name == *name.get_ref()) {
            let msg = format!(
                "duplicate backend name {:?} (also backend[{j}])",
                name.get_ref()
            );
            ctx.error(name.span(), &key, msg);
        }
        out.push(backend(ctx, b, &at));
    }
    out
}

/// `connect_timeout`, `idle_timeout` and `happy_eyeballs_delay` govern TCP
/// connections to the servers; a backend that only UDP frontends use
/// makes none (its sessions end by the frontend's `udp_idle_timeout`), so
/// they are refused there rather than silently ignored.
pub(super) fn tcp_keys_of_udp_backends(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawBackend>],
    frontends: &[Frontend],
) {
    for (i, b) in raw.iter().enumerate() {
        let b = b.get_ref();
        let users: Vec<&Frontend> = (frontends.iter())
            .filter(|f| f.backend == *b.name.get_ref())
            .collect();
        if users.is_empty() || users.iter().any(|f| f.is_tcp()) {
            continue;
        }
        // Without a server by name it is reported as such already.
        let delay = b.happy_eyeballs_delay.as_ref().filter(|_| !all_fixed(b));
        for (name, value) in [
            ("connect_timeout", b.connect_timeout.as_ref()),
            ("idle_timeout", b.idle_timeout.as_ref()),
            ("happy_eyeballs_delay", delay),
        ] {
            if let Some(value) = value {
                let msg =
                    "only used with TCP: every frontend of this backend has protocol = \"udp\"";
                ctx.error(value.span(), &format!("backend[{i}].{name}"), msg);
            }
        }
    }
}

fn backend(ctx: &mut Ctx<'_>, spanned: &Spanned<RawBackend>, at: &str) -> Backend {
    let b = spanned.get_ref();
    let names = NameSettings::of_backend(ctx, b, at);
    let servers = servers(ctx, spanned, at, names);
    let balance = match b.balance {
        None | Some(RawBalance::RoundRobin) => Balance::RoundRobin,
        Some(RawBalance::LeastConnections) => Balance::LeastConnections,
        Some(RawBalance::Maglev) => Balance::Maglev,
        Some(RawBalance::RandomTwo) => Balance::RandomTwo,
    };
    name_keys_need_a_name(ctx, b, at);
    let maglev_table_size = maglev_table_size(ctx, b, at, balance, servers.len());
    let health_check = b
        .health_check
        .as_ref()
        .map(|h| health_check(ctx, h, &format!("{at}.health_check")));
    let (rise, fall) = health_check
        .as_ref()
        .map_or((DEFAULT_RISE, DEFAULT_FALL), |h| (h.rise, h.fall));
    let positive = Duration::from_millis(1)..=Duration::from_secs(24 * 3600);
    Backend {
        name: b.name.get_ref().clone(),
        balance,
        maglev_table_size,
        connect_timeout: ctx.duration_in(
            b.connect_timeout.as_ref(),
            &format!("{at}.connect_timeout"),
            Duration::from_secs(2),
            positive.clone(),
        ),
        idle_timeout: ctx.duration_in(
            b.idle_timeout.as_ref(),
            &format!("{at}.idle_timeout"),
            Duration::from_secs(300),
            positive,
        ),
        retries: ctx.int_in(b.retries.as_ref(), &format!("{at}.retries"), 2, 0..=100),
        health_check,
        fall,
        rise,
        happy_eyeballs_delay: ctx.duration_in(
            b.happy_eyeballs_delay.as_ref(),
            &format!("{at}.happy_eyeballs_delay"),
            DEFAULT_HAPPY_EYEBALLS_DELAY,
            Duration::from_millis(10)..=Duration::from_secs(10),
        ),
        servers,
    }
}

fn maglev_table_size(
    ctx: &mut Ctx<'_>,
    b: &RawBackend,
    at: &str,
    balance: Balance,
    servers: usize,
) -> usize {
    let key = format!("{at}.maglev_table_size");
    let Some(size) = b.maglev_table_size.as_ref() else {
        return DEFAULT_MAGLEV_TABLE_SIZE;
    };
    if balance != Balance::Maglev {
        ctx.error(size.span(), &key, "only used with balance = \"maglev\"");
        return DEFAULT_MAGLEV_TABLE_SIZE;
    }
    let n = *size.get_ref();
    if !(2..=MAX_MAGLEV_TABLE_SIZE).contains(&n) {
        let msg = format!("{n} is out of range 2..={MAX_MAGLEV_TABLE_SIZE}");
        ctx.error(size.span(), &key, msg);
        return DEFAULT_MAGLEV_TABLE_SIZE;
    }
    let m = n as usize;
    if !crate::balance::is_prime(m as u64) {
        ctx.error(
            size.span(),
            &key,
            format!("{m} is not prime; Maglev needs a prime table size (e.g. 65537, 655373)"),
        );
    } else if m < servers {
        let msg = format!(
            "{m} is smaller than the {servers} servers; every server needs at least one entry"
        );
        ctx.error(size.span(), &key, msg);
    }
    m
}

/// A backend's `prefer`, `family` and `happy_eyeballs_delay` are settings
/// of its servers given by name: with every address fixed they would do
/// nothing, so they are refused rather than silently ignored.
fn name_keys_need_a_name(ctx: &mut Ctx<'_>, b: &RawBackend, at: &str) {
    if !all_fixed(b) {
        return;
    }
    for (name, span) in [
        ("prefer", b.prefer.as_ref().map(Spanned::span)),
        ("family", b.family.as_ref().map(Spanned::span)),
        (
            "happy_eyeballs_delay",
            b.happy_eyeballs_delay.as_ref().map(Spanned::span),
        ),
    ] {
        if let Some(span) = span {
            let msg = "only used with servers given by name: every server of this backend has a fixed address";
            ctx.error(span, &format!("{at}.{name}"), msg);
        }
    }
}

/// Every server of `b` has a fixed address (an IP address, with its zone
/// if link-local). An address that does not read is reported on its own,
/// and may have been meant as a name.
fn all_fixed(b: &RawBackend) -> bool {
    let Some(list) = b.servers.as_ref().map(Spanned::get_ref) else {
        return false;
    };
    let fixed = |s: &Spanned<RawServer>| {
        let written = values::server_address(s.get_ref().address.get_ref());
        matches!(written, Ok(w) if !matches!(w, WrittenAddress::Name { .. }))
    };
    !list.is_empty() && list.iter().all(fixed)
}

/// `prefer` and `family` of a backend or a server given by name.
#[derive(Debug, Clone, Copy)]
struct NameSettings {
    prefer: Prefer,
    family: Option<Family>,
}

impl NameSettings {
    fn of_backend(ctx: &mut Ctx<'_>, b: &RawBackend, at: &str) -> Self {
        let defaults = NameSettings {
            prefer: Prefer::Family(Family::Ipv6),
            family: None,
        };
        defaults.overridden(ctx, b.prefer.as_ref(), b.family.as_ref(), at)
    }

    /// These settings with the keys of a table laid over them. `prefer`
    /// naming the family that `family` excludes is a contradiction in one
    /// table; across tables the restriction wins.
    fn overridden(
        self,
        ctx: &mut Ctx<'_>,
        prefer: Option<&Spanned<RawPrefer>>,
        family: Option<&Spanned<RawFamily>>,
        at: &str,
    ) -> Self {
        let prefer_written = prefer.map(|p| match p.get_ref() {
            RawPrefer::Ipv6 => Prefer::Family(Family::Ipv6),
            RawPrefer::Ipv4 => Prefer::Family(Family::Ipv4),
            RawPrefer::Any => Prefer::Any,
        });
        let family_written = family.map(|f| match f.get_ref() {
            RawFamily::Ipv4 => Family::Ipv4,
            RawFamily::Ipv6 => Family::Ipv6,
        });
        if let (Some(p), Some(Prefer::Family(preferred)), Some(only)) =
            (prefer, prefer_written, family_written)
        {
            if preferred != only {
                let msg = format!(
                    "prefer = {:?} contradicts family = {:?}, which excludes {preferred}",
                    preferred.as_str(),
                    only.as_str()
                );
                ctx.error(p.span(), &format!("{at}.prefer"), msg);
            }
        }
        NameSettings {
            prefer: prefer_written.unwrap_or(self.prefer),
            family: family_written.or(self.family),
        }
    }
}

fn servers(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawBackend>,
    at: &str,
    names: NameSettings,
) -> Vec<Server> {
    let b = spanned.get_ref();
    let key = format!("{at}.servers");
    let list: &[Spanned<RawServer>] = match &b.servers {
        Some(s) if !s.get_ref().is_empty() => s.get_ref(),
        Some(s) => {
            ctx.error(
                s.span(),
                &key,
                format!("backend {:?} has no servers", b.name.get_ref()),
            );
            return Vec::new();
        }
        None => {
            ctx.error(
                spanned.span(),
                &key,
                format!("backend {:?} has no servers", b.name.get_ref()),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<(Server, bool)> = Vec::with_capacity(list.len());
    for (j, s) in list.iter().enumerate() {
        let s = s.get_ref();
        let at = format!("{key}[{j}]");
        let address = server_address(ctx, s, &at, names);
        if let Some(a) = &address {
            if let Some(k) = out
                .iter()
                .position(|(o, ok)| *ok && o.address.key() == a.key())
            {
                let msg = format!("{a} is already {key}[{k}]; a server's identity is its address");
                ctx.error(s.address.span(), &format!("{at}.address"), msg);
            }
        }
        let name = match &s.name {
            Some(n) => {
                ctx.name(n, &format!("{at}.name"));
                n.get_ref().clone()
            }
            None => s.address.get_ref().trim().to_owned(),
        };
        if let Some(k) = out.iter().position(|(o, _)| o.name == name) {
            let (span, name_key) = match &s.name {
                Some(n) => (n.span(), format!("{at}.name")),
                None => (s.address.span(), format!("{at}.address")),
            };
            ctx.error(
                span,
                &name_key,
                format!("duplicate server name {name:?} (also {key}[{k}])"),
            );
        }
        let found = address.is_some();
        let server = Server {
            name,
            address: address.unwrap_or(ServerAddress::Socket(SocketAddr::from(([0, 0, 0, 0], 0)))),
            weight: ctx.int_in(s.weight.as_ref(), &format!("{at}.weight"), 1, 0..=256),
            backup: s.backup.unwrap_or(false),
            max_connections: s
                .max_connections
                .as_ref()
                .map(|m| ctx.int_in(Some(m), &format!("{at}.max_connections"), 1, 1..=i64::MAX)),
        };
        out.push((server, found));
    }
    out.into_iter().map(|(s, _)| s).collect()
}

/// The server's `address` with, for a name, its `prefer` and `family`.
fn server_address(
    ctx: &mut Ctx<'_>,
    s: &RawServer,
    at: &str,
    names: NameSettings,
) -> Option<ServerAddress> {
    let raw = &s.address;
    let key = format!("{at}.address");
    let written = match values::server_address(raw.get_ref()) {
        Ok(written) => written,
        Err(msg) => {
            ctx.error(raw.span(), &key, msg);
            return None;
        }
    };
    let address = match written {
        WrittenAddress::Name { host, port } => {
            let names = names.overridden(ctx, s.prefer.as_ref(), s.family.as_ref(), at);
            let named = ServerAddress::Name(NamedAddress {
                host,
                port,
                prefer: names.prefer,
                family: names.family,
            });
            return checked_port(ctx, raw, &key, port).then_some(named);
        }
        WrittenAddress::Zoned { ip, zone, port } => zoned(ctx, raw, &key, ip, &zone, port)?,
        WrittenAddress::Socket(SocketAddr::V6(v6)) if v6.scope_id() != 0 => zoned(
            ctx,
            raw,
            &key,
            *v6.ip(),
            &v6.scope_id().to_string(),
            v6.port(),
        )?,
        WrittenAddress::Socket(a) => ServerAddress::Socket(a),
    };
    for (name, span) in [
        ("prefer", s.prefer.as_ref().map(Spanned::span)),
        ("family", s.family.as_ref().map(Spanned::span)),
    ] {
        if let Some(span) = span {
            let msg = "only used with a host name: this server's address is fixed";
            ctx.error(span, &format!("{at}.{name}"), msg);
        }
    }
    let a = address.socket()?;
    let problem = if a.port() == 0 {
        Some("port 0 cannot be connected to")
    } else if a.ip().is_unspecified() {
        Some("an unspecified address cannot be connected to")
    } else if a.ip().is_multicast() {
        Some("a multicast address cannot take TCP connections")
    } else if matches!(address, ServerAddress::Socket(SocketAddr::V6(v6)) if v6.ip().is_unicast_link_local())
    {
        Some("a link-local address needs its interface, like \"[fe80::1%eth0]:80\"")
    } else {
        None
    };
    match problem {
        Some(p) => {
            ctx.error(raw.span(), &key, format!("{a}: {p}"));
            None
        }
        None => Some(address),
    }
}

fn checked_port(ctx: &mut Ctx<'_>, raw: &Spanned<String>, key: &str, port: u16) -> bool {
    if port == 0 {
        let msg = format!("{:?}: port 0 cannot be connected to", raw.get_ref());
        ctx.error(raw.span(), key, msg);
    }
    port != 0
}

/// A link-local address with its zone: the interface (by name or index)
/// must exist here, since connections leave through it.
fn zoned(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<String>,
    key: &str,
    ip: std::net::Ipv6Addr,
    zone: &str,
    port: u16,
) -> Option<ServerAddress> {
    if !ip.is_unicast_link_local() {
        let msg = format!(
            "{:?}: a zone only applies to a link-local address (fe80::/10)",
            raw.get_ref()
        );
        ctx.error(raw.span(), key, msg);
        return None;
    }
    if !checked_port(ctx, raw, key, port) {
        return None;
    }
    let index = match zone.parse::<u32>() {
        Ok(index) => Some(index),
        Err(_) => nix::net::if_::if_nametoindex(zone).ok(),
    };
    match index {
        Some(index) if index != 0 => Some(ServerAddress::LinkLocal {
            address: SocketAddrV6::new(ip, port, 0, index),
            interface: zone.to_owned(),
        }),
        _ => {
            let msg = format!(
                "{:?}: no interface {zone:?} on this host for the zone",
                raw.get_ref()
            );
            ctx.error(raw.span(), key, msg);
            None
        }
    }
}

fn health_check(ctx: &mut Ctx<'_>, spanned: &Spanned<RawHealthCheck>, at: &str) -> HealthCheck {
    let h = spanned.get_ref();
    let key = |k: &str| format!("{at}.{k}");
    let interval = ctx.duration_in(
        h.interval.as_ref(),
        &key("interval"),
        Duration::from_secs(2),
        Duration::from_millis(10)..=Duration::from_secs(24 * 3600),
    );
    let timeout = ctx.duration_in(
        h.timeout.as_ref(),
        &key("timeout"),
        Duration::from_secs(1),
        Duration::from_millis(1)..=Duration::from_secs(24 * 3600),
    );
    if timeout > interval {
        // A check still running when the next is due would overlap it.
        let (span, k) = match (&h.timeout, &h.interval) {
            (Some(t), _) => (t.span(), key("timeout")),
            (None, Some(i)) => (i.span(), key("interval")),
            (None, None) => (spanned.span(), at.to_owned()),
        };
        ctx.error(
            span,
            &k,
            format!("timeout {timeout:?} exceeds interval {interval:?}"),
        );
    }
    let rise = ctx.int_in(h.rise.as_ref(), &key("rise"), DEFAULT_RISE, 1..=1000);
    let fall = ctx.int_in(h.fall.as_ref(), &key("fall"), DEFAULT_FALL, 1..=1000);
    let initial_state = match h.initial_state {
        None | Some(RawInitialState::Down) => InitialState::Down,
        Some(RawInitialState::Up) => InitialState::Up,
    };
    let kind_value = h.kind.as_ref().map_or(RawCheckKind::Tcp, |k| *k.get_ref());
    // Missing keys are reported at `kind`, the key that made them necessary.
    let kind_span = h.kind.as_ref().map_or(spanned.span(), Spanned::span);
    unused_keys(ctx, h, kind_value, &key);
    let bytes = |ctx: &mut Ctx<'_>, v: Option<&Spanned<String>>, name: &str| match v {
        Some(s) if !s.get_ref().is_empty() => s.get_ref().as_bytes().to_vec(),
        Some(s) => {
            ctx.error(s.span(), &key(name), "must not be empty");
            Vec::new()
        }
        None => {
            let msg = format!("kind = {:?} needs `{name}`", kind_name(kind_value));
            ctx.error(kind_span.clone(), &key(name), msg);
            Vec::new()
        }
    };
    let kind = match kind_value {
        RawCheckKind::Tcp => CheckKind::Tcp,
        RawCheckKind::Http => http(ctx, h, &key),
        RawCheckKind::SendExpect => {
            let send = bytes(ctx, h.send.as_ref(), "send");
            let expect = bytes(ctx, h.expect.as_ref(), "expect");
            CheckKind::SendExpect { send, expect }
        }
        RawCheckKind::Udp => {
            let send = bytes(ctx, h.send.as_ref(), "send");
            let expect = h
                .expect
                .is_some()
                .then(|| bytes(ctx, h.expect.as_ref(), "expect"));
            CheckKind::Udp { send, expect }
        }
        RawCheckKind::Dns => dns_check::dns(ctx, h, &key),
    };
    HealthCheck {
        kind,
        interval,
        timeout,
        rise,
        fall,
        initial_state,
    }
}

fn kind_name(kind: RawCheckKind) -> &'static str {
    match kind {
        RawCheckKind::Tcp => "tcp",
        RawCheckKind::SendExpect => "send-expect",
        RawCheckKind::Http => "http",
        RawCheckKind::Dns => "dns",
        RawCheckKind::Udp => "udp",
    }
}

/// Reports keys that the check's kind does not use, naming the kinds that do.
fn unused_keys(
    ctx: &mut Ctx<'_>,
    h: &RawHealthCheck,
    kind: RawCheckKind,
    key: &dyn Fn(&str) -> String,
) {
    use RawCheckKind::{Dns, Http, SendExpect, Udp};
    let span = |v: Option<&Spanned<String>>| v.map(Spanned::span);
    /// A key, where it is written (if it is), and the kinds that use it.
    type KeyUse<'k> = (&'k str, Option<std::ops::Range<usize>>, &'k [RawCheckKind]);
    let keys: [KeyUse<'_>; 8] = [
        ("send", span(h.send.as_ref()), &[SendExpect, Udp]),
        ("expect", span(h.expect.as_ref()), &[SendExpect, Udp]),
        ("path", span(h.path.as_ref()), &[Http]),
        ("host", span(h.host.as_ref()), &[Http]),
        (
            "expect_status",
            h.expect_status.as_ref().map(Spanned::span),
            &[Http],
        ),
        ("query_name", span(h.query_name.as_ref()), &[Dns]),
        ("query_type", span(h.query_type.as_ref()), &[Dns]),
        (
            "expect_rcode",
            h.expect_rcode.as_ref().map(Spanned::span),
            &[Dns],
        ),
    ];
    for (name, span, owners) in keys {
        let Some(span) = span else { continue };
        if owners.contains(&kind) {
            continue;
        }
        let owners: Vec<String> = owners
            .iter()
            .map(|k| format!("{:?}", kind_name(*k)))
            .collect();
        let msg = format!("only used with kind = {}", owners.join(" or "));
        ctx.error(span, &key(name), msg);
    }
}

fn http(ctx: &mut Ctx<'_>, h: &RawHealthCheck, key: &dyn Fn(&str) -> String) -> CheckKind {
    // Both go verbatim into the request line and a header.
    let request_safe =
        |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    let path = match &h.path {
        Some(p) if p.get_ref().starts_with('/') && request_safe(p.get_ref()) => p.get_ref().clone(),
        Some(p) => {
            let msg = format!(
                "{:?} must start with '/' and contain no spaces or control characters",
                p.get_ref()
            );
            ctx.error(p.span(), &key("path"), msg);
            String::new()
        }
        None => "/".to_owned(),
    };
    let host = match &h.host {
        Some(v) if request_safe(v.get_ref()) => v.get_ref().clone(),
        Some(v) => {
            let msg = format!(
                "{:?} must be non-empty, with no spaces or control characters",
                v.get_ref()
            );
            ctx.error(v.span(), &key("host"), msg);
            String::new()
        }
        None => DEFAULT_HTTP_HOST.to_owned(),
    };
    let expect_status = match &h.expect_status {
        None => DEFAULT_EXPECT_STATUS,
        Some(s) => values::status_range(s.get_ref()).unwrap_or_else(|msg| {
            ctx.error(s.span(), &key("expect_status"), msg);
            DEFAULT_EXPECT_STATUS
        }),
    };
    CheckKind::Http {
        path,
        host,
        expect_status,
    }
}
