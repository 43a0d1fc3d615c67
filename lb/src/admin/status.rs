//! The `/status` document: what an operator sees in `coexist status`.
//!
//! Fields may be added but never renamed: external tools parse it.

use serde::{Deserialize, Serialize};

use crate::runtime::Snapshot;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub frontends: Vec<FrontendStatus>,
    pub backends: Vec<BackendStatus>,
    pub vrrp: Vec<VrrpStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrontendStatus {
    pub name: String,
    pub listen: Vec<String>,
    pub backend: String,
    /// Open connections; for a UDP frontend, open sessions.
    pub active_connections: usize,
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
}

impl Status {
    /// The load balancer part of the status, read from a snapshot.
    pub fn from_snapshot(snapshot: &Snapshot, vrrp: Vec<VrrpStatus>) -> Self {
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
                    .map(|(runtime, config)| ServerStatus {
                        name: runtime.name().to_string(),
                        address: runtime.address.to_string(),
                        state: runtime.state().as_str().to_owned(),
                        admin: runtime.admin().as_str().to_owned(),
                        weight: runtime.weight(),
                        backup: config.backup,
                        active_connections: runtime.active(),
                        total_connections: runtime.total(),
                        last_check: runtime.last_check(),
                    })
                    .collect(),
            })
            .collect();
        Self {
            frontends,
            backends,
            vrrp,
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
            "SERVER                         ADDRESS                   STATE  WEIGHT  ACTIVE     TOTAL  LAST CHECK"
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
                    "{:<30} {:<25} {:<6} {:>6}  {:>6} {:>9}  {}",
                    name,
                    s.address,
                    s.state,
                    s.weight,
                    s.active_connections,
                    s.total_connections,
                    s.last_check.as_deref().unwrap_or("-")
                );
            }
        }
        if !self.vrrp.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "VRRP             IFACE      VRID  STATE       PRIO  EFFECTIVE  MASTER                   LAST CHANGE"
            );
            for v in &self.vrrp {
                let _ = writeln!(
                    out,
                    "{:<16} {:<10} {:>4}  {:<10} {:>5}  {:>9}  {:<24} {}",
                    v.name,
                    v.interface,
                    v.vrid,
                    v.state,
                    v.priority,
                    v.effective_priority,
                    v.master.as_deref().unwrap_or("-"),
                    v.last_transition_reason.as_deref().unwrap_or("-")
                );
            }
        }
        out
    }
}
