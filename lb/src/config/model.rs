//! The validated configuration: what the rest of the daemon consumes.
//!
//! Every value here has been checked by [`super::validate`]; code that holds a
//! [`Config`] never re-checks names, addresses or ranges. Defaults are filled
//! in, so no `Option` means "use the default" past this point.

use std::net::SocketAddr;
use std::time::Duration;

/// The algorithm a backend balances with, as the balancer defines it.
pub use crate::balance::Balance;
use crate::proxy_protocol::ProxyVersion;

/// A complete, checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub admin: Admin,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    /// `[[vrrp]]`: the vrrp crate's model of an instance, as is.
    pub vrrp: Vec<vrrp::InstanceSpec>,
    pub tuning: Tuning,
}

impl Config {
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }
    pub fn frontend(&self, name: &str) -> Option<&Frontend> {
        self.frontends.iter().find(|f| f.name == name)
    }
}

/// `[admin]`: the HTTP endpoint for /metrics and /status.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// `None` when the operator set `listen = ""` to disable the endpoint.
    pub listen: Option<SocketAddr>,
}

/// `[tuning]`: process-wide knobs an operator rarely touches.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Requested size of each splice pipe, in bytes (F_SETPIPE_SZ).
    pub pipe_size: usize,
    /// Upper bound on pipes kept in the idle pool.
    pub pipe_pool_max: usize,
    /// Use splice(2); when false (or unsupported) bytes are copied in user space.
    pub splice: bool,
    /// How long SIGTERM waits for open connections before exiting.
    pub shutdown_grace: Duration,
    /// Kernel accept backlog of every listener.
    pub backlog: u32,
}

/// `[[frontend]]`
#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    pub name: String,
    /// One listening socket per address, IPv4 and IPv6 mixed freely.
    pub listen: Vec<SocketAddr>,
    /// Name of a backend that exists in the same config.
    pub backend: String,
    pub max_connections: Option<usize>,
    /// The PROXY protocol header sent to the servers; `None` sends none.
    pub proxy_protocol: Option<ProxyVersion>,
}

/// `[[backend]]`
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub balance: Balance,
    /// Size of the Maglev lookup table (prime); only used by `maglev`.
    pub maglev_table_size: usize,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// Further attempts, each on another server, after a failed connect.
    pub retries: u32,
    /// `None`: no active checks; failed connects still count passively.
    pub health_check: Option<HealthCheck>,
    /// Consecutive failures that take a server down (passive observation
    /// uses this even without active checks).
    pub fall: u32,
    /// Consecutive successes that bring a server back up.
    pub rise: u32,
    pub servers: Vec<Server>,
}

/// One server of a backend. Identity across reloads is (backend name, address).
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Defaults to the address as written.
    pub name: String,
    pub address: SocketAddr,
    /// 0 drains: no new connections, existing ones continue.
    pub weight: u32,
    /// Used only while no non-backup server is up.
    pub backup: bool,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// State of a server before its first check completes.
    pub initial_state: InitialState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    /// Takes no traffic until its first check succeeds (the default).
    Down,
    /// Takes traffic at once; a failing first check takes it down.
    Up,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// The TCP handshake completes.
    Tcp,
    /// Write `send`, then the reply must start with `expect`.
    SendExpect { send: Vec<u8>, expect: Vec<u8> },
    /// `GET path` with `Host: host`; the status must lie in `expect_status`.
    Http {
        path: String,
        host: String,
        expect_status: std::ops::RangeInclusive<u16>,
    },
}
