//! `frontend`, `backend` and `listen` proxies → coexist frontends and
//! backends. A `listen` is both, under its name. Backends come first: a
//! frontend is carried only with the backend it sends connections to.

use std::collections::HashMap;
use std::time::Duration;

use super::server::{self, Params};
use super::{bind, check, At, Kind, Proxy};
use crate::import::plan::{self, Backend, Balance, Frontend, Origin, Plan, ProxyVersion};
use crate::import::tally::{Loc, Tally};

/// HAProxy's `retries` when unset.
const RETRIES: u32 = 3;
/// coexist's longest connect and idle timeouts.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A carried backend: its coexist name and the PROXY header its servers get.
struct Carried {
    name: String,
    proxy_protocol: Option<ProxyVersion>,
}

pub(super) fn translate(proxies: &[Proxy], tally: &mut Tally, plan: &mut Plan) {
    let routes: Vec<(&Proxy, Option<At<String>>)> = proxies
        .iter()
        .filter(|p| matches!(p.kind, Kind::Frontend | Kind::Listen))
        .map(|p| (p, route(p, tally)))
        .collect();
    let mut carried: HashMap<&str, Carried> = HashMap::new();
    for p in proxies
        .iter()
        .filter(|p| matches!(p.kind, Kind::Backend | Kind::Listen))
    {
        let clients: Vec<&Proxy> = routes
            .iter()
            .filter(|(_, to)| to.as_ref().is_some_and(|t| t.value == p.name))
            .map(|(f, _)| *f)
            .collect();
        if let Some(c) = backend(p, &clients, tally, plan) {
            carried.insert(&p.name, c);
        }
    }
    for (p, to) in routes {
        frontend(p, to.as_ref(), &carried, tally, plan);
    }
}

/// Reports `p` as not carried, with every line of it.
fn whole(p: &Proxy, reason: String, tally: &mut Tally) {
    let what = format!("{reason}; not carried to line {}", p.last_line);
    tally.not_carried(p.header.at, what);
    for at in &p.body {
        tally.cover(*at);
    }
}

/// Whether `p` runs in TCP mode and is enabled; reports it when not.
fn runs_tcp(p: &Proxy, tally: &mut Tally) -> bool {
    if let Some(at) = p.settings.disabled {
        tally.carried(at);
        whole(p, "disabled: HAProxy does not start it".into(), tally);
        return false;
    }
    match &p.settings.mode {
        Some(m) if m.value != "tcp" => {
            let reason = format!(
                "mode {} (line {}): coexist forwards TCP; an HTTP proxy keeps running in front of or behind it",
                m.value, m.at.line
            );
            whole(p, reason, tally);
            false
        }
        Some(m) => {
            tally.carried(m.at);
            true
        }
        // TCP is HAProxy's default mode.
        None => true,
    }
}

/// The backend a frontend sends its connections to, and the directive
/// that says so: an unconditional `use_backend`, else `default_backend`;
/// a `listen` is its own.
fn route(p: &Proxy, tally: &mut Tally) -> Option<At<String>> {
    let mut to = None;
    for line in &p.settings.use_backend {
        if line.words.len() == 2 && to.is_none() {
            to = Some(At {
                at: line.at,
                value: line.word(1).to_owned(),
            });
        } else {
            tally.not_carried(
                line.at,
                "a backend chosen by a condition: coexist sends every connection of a frontend to one backend",
            );
        }
    }
    if p.kind == Kind::Listen {
        return Some(At {
            at: p.header.at,
            value: p.name.clone(),
        });
    }
    to.or_else(|| p.settings.default_backend.clone())
}

fn backend(p: &Proxy, clients: &[&Proxy], tally: &mut Tally, plan: &mut Plan) -> Option<Carried> {
    if !runs_tcp(p, tally) {
        return None;
    }
    let s = &p.settings;
    let mut default_remarks = server::Remarks::default();
    let defaults = server::defaults(&s.default_server, &mut default_remarks);
    let mut servers = Vec::new();
    let mut checked: Vec<(Params, Loc)> = Vec::new();
    let mut versions: Vec<(Option<ProxyVersion>, Loc)> = Vec::new();
    for line in &s.servers {
        let mut own = Params::default();
        let mut remarks = server::Remarks::default();
        own.read(line, 3, &mut remarks);
        let params = own.over(&defaults);
        if params.is(|p| &p.ssl) {
            tally.not_carried(
                line.at,
                "connects to the server over TLS: coexist forwards the client's bytes as they are",
            );
            continue;
        }
        if let Some(socks) = &params.socks {
            tally.not_carried(
                line.at,
                format!(
                    "reached through a SOCKS proxy ({}), which coexist does not use",
                    socks.value
                ),
            );
            continue;
        }
        let address = match server::address(line.word(2)) {
            Ok(a) => a,
            Err(reason) => {
                tally.not_carried(line.at, reason);
                continue;
            }
        };
        tally.carried(line.at);
        remarks.report(tally);
        let disabled = params.is(|p| &p.disabled);
        if disabled {
            tally.part_changed(
                line.at,
                "disabled",
                format!(
                    "starts drained (weight 0) where HAProxy starts it in maintenance; `coexist server {}/{} ready --weight N` brings it in",
                    p.name,
                    line.word(1)
                ),
            );
        }
        let name = plan::name(line.word(1));
        servers.push(plan::Server {
            name,
            address,
            weight: if disabled {
                Some(0)
            } else {
                params.weight.as_ref().map(|w| w.value)
            },
            backup: params.is(|p| &p.backup),
            max_connections: params.maxconn.as_ref().map(|m| m.value),
            at: line.at,
        });
        versions.push((params.proxy.as_ref().and_then(|v| v.value), line.at));
        checked.push((params, line.at));
    }
    if servers.is_empty() {
        let reason = format!(
            "{}: no server coexist can connect to (see its server lines)",
            p.named()
        );
        whole(p, reason, tally);
        return None;
    }
    for line in &s.default_server {
        tally.carried(line.at);
    }
    default_remarks.report(tally);
    let health_check = check::health_check(s, &checked, tally);
    let proxy_protocol = one_proxy_version(&versions, tally);
    let backend = Backend {
        name: plan::name(&p.name),
        origin: Origin {
            at: p.header.at,
            what: p.header.words.join(" "),
        },
        balance: balance(s, tally),
        connect_timeout: s.timeout_connect.as_ref().map(|t| bounded(t, tally)),
        idle_timeout: idle_timeout(p, clients, tally),
        retries: Some(retries(s, tally)),
        health_check,
        servers,
    };
    tally.carried(p.header.at);
    let name = plan.add_backend(backend, tally);
    Some(Carried {
        name,
        proxy_protocol,
    })
}

fn bounded(t: &At<Duration>, tally: &mut Tally) -> Duration {
    tally.carried(t.at);
    if t.value > MAX_TIMEOUT {
        tally.changed(t.at, "coexist's timeouts are at most 24h");
        MAX_TIMEOUT
    } else {
        t.value.max(Duration::from_millis(1))
    }
}

/// coexist closes a connection with no bytes either way for idle_timeout;
/// HAProxy has one inactivity timeout per side, and `timeout tunnel` for
/// both once the connection is established, which wins.
fn idle_timeout(p: &Proxy, clients: &[&Proxy], tally: &mut Tally) -> Option<Duration> {
    if let Some(t) = &p.settings.timeout_tunnel {
        return Some(bounded(t, tally));
    }
    let sides: Vec<&At<Duration>> = p
        .settings
        .timeout_server
        .iter()
        .chain(
            clients
                .iter()
                .filter_map(|c| c.settings.timeout_client.as_ref()),
        )
        .collect();
    let longest = sides.iter().map(|t| bounded(t, tally)).max()?;
    if sides.iter().any(|t| t.value.min(MAX_TIMEOUT) != longest) {
        tally.changed(
            p.header.at,
            format!(
                "timeout client and timeout server differ: coexist has one idle timeout for both directions, the longer ({})",
                crate::import::values::duration(longest)
            ),
        );
    }
    Some(longest)
}

fn retries(s: &super::settings::Settings, tally: &mut Tally) -> u32 {
    if let Some(r) = &s.redispatch {
        if r.value {
            tally.carried(r.at);
        } else {
            tally.changed(
                r.at,
                "coexist always tries another server after a failed connect",
            );
        }
    }
    match &s.retries {
        Some(r) if r.value > 100 => {
            tally.changed(r.at, "coexist retries at most 100 times");
            100
        }
        Some(r) => {
            tally.carried(r.at);
            r.value
        }
        None => RETRIES,
    }
}

fn balance(s: &super::settings::Settings, tally: &mut Tally) -> Option<Balance> {
    let b = s.balance.as_ref()?;
    let algorithm = b.value.first().map_or("", String::as_str);
    let chosen = match algorithm {
        "roundrobin" | "static-rr" => Some(Balance::RoundRobin),
        "leastconn" => Some(Balance::LeastConnections),
        "source" => {
            // Consistent hashing whatever hash-type said.
            if let Some(h) = &s.hash_type {
                tally.carried(h.at);
            }
            tally.changed(
                b.at,
                "clients are spread by Maglev hashing of their address: each keeps its server, but not the one HAProxy chose",
            );
            Some(Balance::Maglev)
        }
        "random" | "random(2)" => Some(Balance::RandomTwo),
        r if r.starts_with("random(") => {
            tally.changed(b.at, "coexist draws two servers and takes the less loaded");
            Some(Balance::RandomTwo)
        }
        other => {
            tally.not_carried(
                b.at,
                format!("no `{other}` balancing in coexist: round-robin takes its place"),
            );
            return None;
        }
    };
    if b.value.len() > 1 {
        tally.part_not_carried(
            b.at,
            &b.value[1..].join(" "),
            "balancing arguments coexist has no use for",
        );
    }
    tally.carried(b.at);
    chosen
}

/// coexist sends one PROXY header version per frontend: the servers'
/// common one; the first server's when they differ.
fn one_proxy_version(
    versions: &[(Option<ProxyVersion>, Loc)],
    tally: &mut Tally,
) -> Option<ProxyVersion> {
    let (first, _) = *versions.first()?;
    for (v, at) in versions {
        if *v != first {
            tally.changed(
                *at,
                "coexist sends the same PROXY header (or none) to every server of a backend: the first server's",
            );
        }
    }
    first
}

/// A frontend side that is not carried: all of a `frontend`; of a
/// `listen`, only the listening (its backend side may be carried).
fn drop_frontend(p: &Proxy, reason: String, tally: &mut Tally) {
    if p.kind == Kind::Listen {
        tally.not_carried(p.header.at, format!("{reason}: no frontend"));
    } else {
        whole(p, reason, tally);
    }
}

fn frontend(
    p: &Proxy,
    to: Option<&At<String>>,
    carried: &HashMap<&str, Carried>,
    tally: &mut Tally,
    plan: &mut Plan,
) {
    if !runs_tcp(p, tally) {
        return;
    }
    let s = &p.settings;
    let old_style = p.kind == Kind::Listen && p.header.words.len() > 2;
    if s.binds.is_empty() && !old_style {
        if p.kind == Kind::Frontend {
            let reason = format!("{}: no bind line", p.named());
            drop_frontend(p, reason, tally);
        }
        // A listen without bind serves only as a backend.
        return;
    }
    let Some(to) = to else {
        let reason = format!(
            "{}: no default_backend or unconditional use_backend",
            p.named()
        );
        drop_frontend(p, reason, tally);
        return;
    };
    let Some(backend) = carried.get(to.value.as_str()) else {
        if p.kind == Kind::Listen {
            // Its own backend side is not carried, and says why.
            return;
        }
        let reason = format!(
            "{}: its backend {} is not carried over (see the notes about it)",
            p.named(),
            to.value
        );
        drop_frontend(p, reason, tally);
        return;
    };
    let mut listen: Vec<(std::net::SocketAddr, Loc)> = Vec::new();
    if old_style {
        // The old `listen NAME ADDRESS` form.
        for a in bind::addresses(&p.header, 2, 3, tally) {
            listen.push((a, p.header.at));
        }
    }
    for line in &s.binds {
        let addresses = bind::addresses(line, 1, 2, tally);
        if !addresses.is_empty() {
            tally.carried(line.at);
        }
        listen.extend(addresses.into_iter().map(|a| (a, line.at)));
    }
    let max_connections = s.maxconn.as_ref().map(|m| {
        tally.carried(m.at);
        m.value
    });
    if listen.is_empty() {
        let reason = format!("{}: no address coexist can listen on", p.named());
        drop_frontend(p, reason, tally);
        return;
    }
    let added = plan.add_frontend(
        Frontend {
            name: plan::name(&p.name),
            origin: Origin {
                at: p.header.at,
                what: p.header.words.join(" "),
            },
            listen,
            backend: backend.name.clone(),
            max_connections: max_connections.filter(|m| *m > 0),
            proxy_protocol: backend.proxy_protocol,
        },
        tally,
    );
    if added {
        tally.carried(p.header.at);
        tally.carried(to.at);
        if let Some(c) = &s.timeout_client {
            tally.carried(c.at);
        }
    } else {
        let reason = format!(
            "{}: none of its addresses can be listened on beside those of other frontends",
            p.named()
        );
        drop_frontend(p, reason, tally);
    }
}
