//! The `/status` document: what an operator sees in `coexist status`.
//!
//! Fields may be added but never renamed: external tools parse it.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::counters::Counters;
use crate::config::Family;
use crate::metrics as m;
use crate::resolve::NamedTarget;
use crate::runtime::{RecordedTransition, Snapshot};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub frontends: Vec<FrontendStatus>,
    pub backends: Vec<BackendStatus>,
    pub vrrp: Vec<VrrpStatus>,
    /// `[[announce]]` groups, one entry per group and family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announce: Vec<crate::announce::AnnounceStatus>,
    /// The packet filter that enforces `accept_mode = false`.
    #[serde(default)]
    pub accept_filter: AcceptFilterStatus,
    /// Seconds since the Unix epoch when the document was made: the clock
    /// that `last_transition` values are to be compared with.
    pub generated_at: Option<f64>,
    /// The process's own resources: descriptor limit, connection ceiling
    /// and condition ("ok", "at fd limit").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<crate::pressure::ProcessStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrontendStatus {
    pub name: String,
    pub listen: Vec<String>,
    pub backend: String,
    /// Open connections; for a UDP frontend, open sessions.
    pub active_connections: usize,
    /// Connections accepted since the daemon started (`lb_connections_total`);
    /// null when the daemon runs without its metrics recorder.
    pub total_connections: Option<u64>,
    /// The configured `max_connections`; null when unlimited.
    pub max_connections: Option<usize>,
    /// "tcp" or "udp".
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Session counters of a UDP frontend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<UdpSessions>,
}

fn tcp() -> String {
    "tcp".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UdpSessions {
    pub active_sessions: usize,
    pub total_sessions: u64,
    pub evicted_sessions: u64,
    pub max_sessions: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStatus {
    pub name: String,
    pub balance: String,
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerStatus {
    pub name: String,
    pub address: String,
    /// up | down | drain | maint
    pub state: String,
    /// ready | drain | maint, as set by the operator.
    pub admin: String,
    pub weight: u32,
    pub backup: bool,
    pub active_connections: usize,
    pub total_connections: u64,
    /// "ok", the reason of the last failure, or null before any result.
    pub last_check: Option<String>,
    /// Failed connects for clients (`lb_connect_errors_total`); this and
    /// the byte counts are null without the metrics recorder.
    pub connect_errors: Option<u64>,
    /// Bytes delivered to the server and back (`lb_bytes_total`).
    pub bytes_to_server: Option<u64>,
    pub bytes_to_client: Option<u64>,
    /// Seconds since the Unix epoch of the last state change, null before any.
    pub last_transition: Option<f64>,
    pub last_transition_reason: Option<String>,
    /// The state before the last change.
    pub previous_state: Option<String>,
    /// For a server given by name: what it resolves to now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<ResolutionStatus>,
}

/// A named server's addresses, as its resolver task last saw them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResolutionStatus {
    pub host: String,
    /// The order a connect tries them in (Happy Eyeballs).
    pub addresses: Vec<ResolvedAddress>,
    /// Seconds until the name is asked again at the latest; null before
    /// the first answer.
    pub ttl_left: Option<f64>,
    /// The last lookup's error; the addresses are then the last good ones.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResolvedAddress {
    pub address: String,
    /// ipv4 | ipv6
    pub family: String,
}

fn resolution(named: &NamedTarget) -> ResolutionStatus {
    let resolved = named.resolved();
    ResolutionStatus {
        host: named.host.clone(),
        addresses: named
            .ordered()
            .into_iter()
            .map(|ip| ResolvedAddress {
                address: SocketAddr::new(ip, named.port).to_string(),
                family: Family::of(ip).as_str().to_owned(),
            })
            .collect(),
        ttl_left: resolved.expires.map(|at| {
            at.saturating_duration_since(std::time::Instant::now())
                .as_secs_f64()
        }),
        error: resolved.error.clone(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VrrpStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    /// initialize | backup | master
    pub state: String,
    pub priority: u8,
    pub effective_priority: u8,
    /// Primary address of the current master, if known.
    pub master: Option<String>,
    pub addresses: Vec<String>,
    /// Seconds since the Unix epoch of the last state change.
    pub last_transition: Option<f64>,
    pub last_transition_reason: Option<String>,
    /// The configured `accept_mode`.
    #[serde(default)]
    pub accept_mode: bool,
    /// Why a started instance stays in initialize: its interface is
    /// missing, down or without the address adverts come from (it starts
    /// when that changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// Whether coexist's nftables table is what the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterState {
    /// No instance refuses traffic (each has `accept_mode` or owns its
    /// addresses): no table.
    #[default]
    Off,
    /// The table is in place.
    On,
    /// The table should be in place and is not; `error` says why.
    Failed,
}

impl FilterState {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterState::Off => "off",
            FilterState::On => "on",
            FilterState::Failed => "failed",
        }
    }
}

/// The packet filter that keeps a master without `accept_mode` from
/// accepting traffic to its virtual addresses, except its frontends'.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AcceptFilterStatus {
    pub state: FilterState,
    /// The nftables table, `inet coexist`.
    pub table: String,
    /// Virtual addresses that take only their frontends' traffic while
    /// this node is master.
    pub addresses: Vec<String>,
    /// Their frontends' ports: `"192.0.2.10 tcp/80"`.
    pub open: Vec<String>,
    /// Why the table is not in place (state `failed`).
    pub error: Option<String>,
}

/// The metric names whose samples [`Status::from_snapshot`] reads.
pub const COUNTER_NAMES: [&str; 3] = [
    m::CONNECTIONS_TOTAL,
    m::BYTES_TOTAL,
    m::CONNECT_ERRORS_TOTAL,
];

/// Seconds since the Unix epoch, as `/status` writes times.
pub fn epoch_seconds(at: SystemTime) -> Option<f64> {
    at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

impl Status {
    /// The load balancer part of the status, read from a snapshot;
    /// `counters` is `None` when no metrics recorder is installed.
    pub fn from_snapshot(
        snapshot: &Snapshot,
        vrrp: Vec<VrrpStatus>,
        counters: Option<&Counters>,
        now: SystemTime,
    ) -> Self {
        let count = |name: &str, labels: &[(&str, &str)]| counters?.count(name, labels);
        let frontends = snapshot
            .config
            .frontends
            .iter()
            .filter_map(|f| snapshot.frontends.get(&f.name))
            .map(|f| FrontendStatus {
                name: f.config.name.clone(),
                listen: f.config.listen.iter().map(ToString::to_string).collect(),
                backend: f.config.backend.clone(),
                active_connections: f.limit.serving(),
                total_connections: count(m::CONNECTIONS_TOTAL, &[("frontend", &f.config.name)]),
                max_connections: f.config.max_connections,
                protocol: f.config.protocol.as_str().to_owned(),
                udp: f.config.udp().map(|u| UdpSessions {
                    active_sessions: 0,
                    total_sessions: 0,
                    evicted_sessions: 0,
                    max_sessions: u.max_sessions,
                }),
            })
            .collect();
        let backends = snapshot
            .backends
            .iter()
            .map(|b| BackendStatus {
                name: b.config.name.clone(),
                balance: b.config.balance.as_str().to_owned(),
                servers: b
                    .servers
                    .iter()
                    .zip(&b.config.servers)
                    .map(|(runtime, config)| {
                        let name = runtime.name();
                        let server = [("backend", b.name()), ("server", name.as_str())];
                        let bytes = |direction| {
                            count(
                                m::BYTES_TOTAL,
                                &[server[0], server[1], ("direction", direction)],
                            )
                        };
                        let last = runtime.last_transition();
                        ServerStatus {
                            name: name.to_string(),
                            address: runtime.address.to_string(),
                            state: runtime.state().as_str().to_owned(),
                            admin: runtime.admin().as_str().to_owned(),
                            weight: runtime.weight(),
                            backup: config.backup,
                            active_connections: runtime.active(),
                            total_connections: runtime.total(),
                            last_check: runtime.last_check(),
                            connect_errors: count(m::CONNECT_ERRORS_TOTAL, &server),
                            bytes_to_server: bytes("to_server"),
                            bytes_to_client: bytes("to_client"),
                            last_transition: last.as_ref().and_then(|l| epoch_seconds(l.at)),
                            last_transition_reason: last
                                .as_ref()
                                .map(|l| l.transition.reason.clone()),
                            previous_state: last.as_ref().map(|l: &RecordedTransition| {
                                l.transition.from.as_str().to_owned()
                            }),
                            resolution: runtime.named().map(|named| resolution(named)),
                        }
                    })
                    .collect(),
            })
            .collect();
        Self {
            frontends,
            backends,
            vrrp,
            announce: Vec::new(),
            accept_filter: AcceptFilterStatus::default(),
            generated_at: epoch_seconds(now),
            process: None,
        }
    }

    /// Fills in the session counters of the UDP frontends.
    pub fn add_udp_sessions(&mut self, board: &crate::udp::StatsBoard) {
        for frontend in &mut self.frontends {
            let (Some(udp), Some(stats)) = (frontend.udp.as_mut(), board.get(&frontend.name))
            else {
                continue;
            };
            udp.active_sessions = stats.active();
            udp.total_sessions = stats.total();
            udp.evicted_sessions = stats.evicted();
            frontend.active_connections = udp.active_sessions;
        }
    }

    /// The human table `coexist status` prints.
    pub fn render_table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "FRONTEND         PROTO  ACTIVE  BACKEND          LISTEN"
        );
        for f in &self.frontends {
            let _ = writeln!(
                out,
                "{:<16} {:<5} {:>7}  {:<16} {}",
                f.name,
                f.protocol,
                f.active_connections,
                f.backend,
                f.listen.join(", ")
            );
        }
        let udp: Vec<_> = self
            .frontends
            .iter()
            .filter_map(|f| f.udp.as_ref().map(|u| (&f.name, u)))
            .collect();
        if !udp.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "UDP FRONTEND     SESSIONS       MAX      TOTAL  EVICTED"
            );
            for (name, u) in udp {
                let _ = writeln!(
                    out,
                    "{:<16} {:>8} {:>9} {:>10} {:>8}",
                    name, u.active_sessions, u.max_sessions, u.total_sessions, u.evicted_sessions
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "SERVER                         ADDRESS                   STATE  WEIGHT  ACTIVE     TOTAL  SINCE     LAST CHECK"
        );
        for b in &self.backends {
            for s in &b.servers {
                let name = format!(
                    "{}/{}{}",
                    b.name,
                    s.name,
                    if s.backup { " (backup)" } else { "" }
                );
                let _ = writeln!(
                    out,
                    "{:<30} {:<25} {:<6} {:>6}  {:>6} {:>9}  {:<8}  {}",
                    name,
                    s.address,
                    s.state,
                    s.weight,
                    s.active_connections,
                    s.total_connections,
                    self.since(s.last_transition),
                    s.last_check.as_deref().unwrap_or("-")
                );
                if let Some(r) = &s.resolution {
                    let addresses: Vec<&str> =
                        r.addresses.iter().map(|a| a.address.as_str()).collect();
                    let ttl = r
                        .ttl_left
                        .map_or("-".to_owned(), |t| format!("{}s", t.ceil()));
                    let _ = writeln!(
                        out,
                        "{:<30} resolved: {} (ttl {ttl}){}",
                        "",
                        if addresses.is_empty() {
                            "-".to_owned()
                        } else {
                            addresses.join(" ")
                        },
                        r.error
                            .as_deref()
                            .map_or(String::new(), |e| format!("; lookup failed: {e}"))
                    );
                }
            }
        }
        if !self.vrrp.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "VRRP             IFACE      VRID  STATE       PRIO  EFFECTIVE  MASTER                   SINCE     LAST CHANGE"
            );
            for v in &self.vrrp {
                let _ = writeln!(
                    out,
                    "{:<16} {:<10} {:>4}  {:<10} {:>5}  {:>9}  {:<24} {:<8}  {}",
                    v.name,
                    v.interface,
                    v.vrid,
                    v.state,
                    v.priority,
                    v.effective_priority,
                    v.master.as_deref().unwrap_or("-"),
                    self.since(v.last_transition),
                    v.last_transition_reason.as_deref().unwrap_or("-")
                );
                if let Some(why) = &v.waiting {
                    let _ = writeln!(out, "{:<16} {why}", "");
                }
            }
            let f = &self.accept_filter;
            let _ = writeln!(out);
            let _ = match f.state {
                FilterState::Off => writeln!(
                    out,
                    "ACCEPT FILTER    off (every instance has accept_mode or owns its addresses)"
                ),
                FilterState::On => writeln!(
                    out,
                    "ACCEPT FILTER    on ({}): {} take only {}",
                    f.table,
                    f.addresses.join(", "),
                    if f.open.is_empty() {
                        "ICMP errors and ND".to_owned()
                    } else {
                        f.open.join(", ")
                    }
                ),
                FilterState::Failed => writeln!(
                    out,
                    "ACCEPT FILTER    FAILED: {} accept all traffic while master: {}",
                    f.addresses.join(", "),
                    f.error.as_deref().unwrap_or("-")
                ),
            };
        }
        if !self.announce.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "ANNOUNCE         FAMILY  STATE      SINCE     REASON");
            for a in &self.announce {
                let _ = writeln!(
                    out,
                    "{:<16} {:<7} {:<10} {:<8}  {}",
                    a.name,
                    a.family,
                    a.state,
                    self.since(Some(a.since)),
                    a.reason
                );
            }
        }
        out
    }

    /// How long ago `then` was, in whole seconds, by the daemon's clock.
    fn since(&self, then: Option<f64>) -> String {
        match (self.generated_at, then) {
            (Some(now), Some(then)) => {
                let seconds = (now - then).max(0.0) as u64;
                humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
            }
            _ => "-".to_owned(),
        }
    }
}
