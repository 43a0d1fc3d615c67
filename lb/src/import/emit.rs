//! The plan as TOML, with the notes as a comment at the top and, above each
//! table, the directive it came from.

use std::fmt::Write;
use std::time::Duration;

use super::plan::{
    Backend, Balance, CheckKind, Frontend, Plan, Protocol, ProxyVersion, Server, Vrrp,
};
use super::tally::{Note, NoteKind};
use super::values::duration;

pub(super) fn render(plan: &Plan, notes: &[Note], origins: &[&str]) -> String {
    let mut out = String::new();
    header(&mut out, notes, origins);
    if let Some(threads) = &plan.threads {
        from(&mut out, origins, &threads.origin);
        out.push_str("[tuning]\n");
        let _ = writeln!(out, "threads = {}", threads.count);
    }
    for f in &plan.frontends {
        frontend(&mut out, f, origins);
    }
    for b in &plan.backends {
        backend(&mut out, b, origins);
    }
    for v in &plan.vrrp {
        vrrp(&mut out, v, origins);
    }
    out
}

fn header(out: &mut String, notes: &[Note], origins: &[&str]) {
    let _ = writeln!(
        out,
        "# Imported by `coexist import` from {}.",
        origins.join(", ")
    );
    out.push_str("# Review it, then validate with `coexist check --config FILE`.\n");
    for (kind, title) in [
        (
            NoteKind::Changed,
            "Carried over, but coexist behaves differently",
        ),
        (NoteKind::NotCarried, "Not carried over"),
    ] {
        let of_kind: Vec<&Note> = notes.iter().filter(|n| n.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let _ = writeln!(out, "#\n# {title} ({}):", of_kind.len());
        for n in of_kind {
            let _ = writeln!(
                out,
                "#   {}:{}: `{}`: {}",
                n.origin,
                n.line,
                one_line(&n.directive),
                one_line(&n.reason)
            );
        }
    }
}

/// Comments end at a line break: keep a note on its line.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn from(out: &mut String, origins: &[&str], at: &super::plan::Origin) {
    let _ = writeln!(
        out,
        "\n# {}:{}: {}",
        origins[at.at.source],
        at.at.line,
        one_line(&at.what)
    );
}

/// A TOML string literal (quotes and escapes as TOML wants them).
fn string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn list<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let shown: Vec<String> = items.iter().map(show).collect();
    format!("[{}]", shown.join(", "))
}

fn frontend(out: &mut String, f: &Frontend, origins: &[&str]) {
    from(out, origins, &f.origin);
    out.push_str("[[frontend]]\n");
    let _ = writeln!(out, "name = {}", string(&f.name));
    let _ = writeln!(
        out,
        "listen = {}",
        list(&f.listen, |(a, _)| string(&a.to_string()))
    );
    let _ = writeln!(out, "backend = {}", string(&f.backend));
    if f.protocol == Protocol::Udp {
        let _ = writeln!(out, "protocol = {}", string("udp"));
    }
    if let Some(m) = f.max_connections {
        let _ = writeln!(out, "max_connections = {m}");
    }
    if let Some(v) = f.proxy_protocol {
        let v = match v {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        };
        let _ = writeln!(out, "proxy_protocol = {}", string(v));
    }
}

fn backend(out: &mut String, b: &Backend, origins: &[&str]) {
    from(out, origins, &b.origin);
    out.push_str("[[backend]]\n");
    let _ = writeln!(out, "name = {}", string(&b.name));
    if let Some(balance) = b.balance {
        let balance = match balance {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConnections => "least-connections",
            Balance::Maglev => "maglev",
            Balance::RandomTwo => "random-two",
        };
        let _ = writeln!(out, "balance = {}", string(balance));
    }
    let timeout = |out: &mut String, key: &str, d: Option<Duration>| {
        if let Some(d) = d {
            let _ = writeln!(out, "{key} = {}", string(&duration(d)));
        }
    };
    timeout(out, "connect_timeout", b.connect_timeout);
    timeout(out, "idle_timeout", b.idle_timeout);
    if let Some(r) = b.retries {
        let _ = writeln!(out, "retries = {r}");
    }
    if let Some(h) = &b.health_check {
        let mut fields = Vec::new();
        match &h.kind {
            CheckKind::Tcp => fields.push(format!("kind = {}", string("tcp"))),
            CheckKind::SendExpect { send, expect } => {
                fields.push(format!("kind = {}", string("send-expect")));
                fields.push(format!("send = {}", string(send)));
                fields.push(format!("expect = {}", string(expect)));
            }
            CheckKind::Http {
                path,
                host,
                expect_status,
            } => {
                fields.push(format!("kind = {}", string("http")));
                fields.push(format!("path = {}", string(path)));
                if let Some(host) = host {
                    fields.push(format!("host = {}", string(host)));
                }
                if let Some(s) = expect_status {
                    fields.push(format!("expect_status = {}", string(s)));
                }
            }
            CheckKind::Dns {
                query_name,
                query_type,
            } => {
                fields.push(format!("kind = {}", string("dns")));
                if let Some(name) = query_name {
                    fields.push(format!("query_name = {}", string(name)));
                }
                if let Some(t) = query_type {
                    fields.push(format!("query_type = {}", string(t)));
                }
            }
            CheckKind::Udp { send, expect } => {
                fields.push(format!("kind = {}", string("udp")));
                fields.push(format!("send = {}", string(send)));
                if let Some(expect) = expect {
                    fields.push(format!("expect = {}", string(expect)));
                }
            }
        }
        fields.push(format!("interval = {}", string(&duration(h.interval))));
        fields.push(format!("timeout = {}", string(&duration(h.timeout))));
        fields.push(format!("rise = {}", h.rise));
        fields.push(format!("fall = {}", h.fall));
        if h.initially_up {
            fields.push(format!("initial_state = {}", string("up")));
        }
        let _ = writeln!(out, "health_check = {{ {} }}", fields.join(", "));
    }
    out.push_str("servers = [\n");
    for s in &b.servers {
        let _ = writeln!(out, "  {},", server(s));
    }
    out.push_str("]\n");
}

fn server(s: &Server) -> String {
    let mut fields = vec![
        format!("name = {}", string(&s.name)),
        format!("address = {}", string(&s.address.to_string())),
    ];
    if let Some(w) = s.weight {
        fields.push(format!("weight = {w}"));
    }
    if s.backup {
        fields.push("backup = true".to_owned());
    }
    if let Some(m) = s.max_connections {
        fields.push(format!("max_connections = {m}"));
    }
    format!("{{ {} }}", fields.join(", "))
}

fn vrrp(out: &mut String, v: &Vrrp, origins: &[&str]) {
    from(out, origins, &v.origin);
    out.push_str("[[vrrp]]\n");
    let _ = writeln!(out, "name = {}", string(&v.name));
    let _ = writeln!(out, "interface = {}", string(&v.interface));
    let _ = writeln!(out, "vrid = {}", v.vrid);
    let _ = writeln!(out, "priority = {}", v.priority);
    let _ = writeln!(
        out,
        "advert_interval = {}",
        string(&duration(v.advert_interval))
    );
    let _ = writeln!(out, "version = {}", v.version);
    let _ = writeln!(out, "preempt = {}", v.preempt);
    if let Some(d) = v.preempt_delay {
        let _ = writeln!(out, "preempt_delay = {}", string(&duration(d)));
    }
    if let Some(a) = v.accept_mode {
        let _ = writeln!(out, "accept_mode = {a}");
    }
    let _ = writeln!(
        out,
        "addresses = {}",
        list(&v.addresses, |(ip, prefix)| string(&format!(
            "{ip}/{prefix}"
        )))
    );
    if !v.unicast_peers.is_empty() {
        let _ = writeln!(
            out,
            "unicast_peers = {}",
            list(&v.unicast_peers, |ip| string(&ip.to_string()))
        );
    }
    if v.virtual_mac {
        out.push_str("virtual_mac = true\n");
    }
    if let Some(n) = &v.notify {
        let _ = writeln!(out, "notify = {}", string(n));
    }
    if let Some(c) = v.garp_count {
        let _ = writeln!(out, "garp_count = {c}");
    }
    if let Some(r) = v.garp_refresh {
        let _ = writeln!(out, "garp_refresh = {}", string(&duration(r)));
    }
}
