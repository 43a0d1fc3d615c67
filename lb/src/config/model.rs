//! The validated configuration: what the rest of the daemon consumes.
//!
//! Every value here has been checked by [`super::validate`]; code that holds a
//! [`Config`] never re-checks names, addresses or ranges. Defaults are filled
//! in, so no `Option` means "use the default" past this point.

use std::net::SocketAddr;
use std::path::PathBuf;
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

/// `[admin]`: the HTTP endpoint for /metrics and /status, and the control
/// socket that also takes writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// `None` when the operator set `listen = ""` to disable the endpoint.
    pub listen: Option<SocketAddr>,
    /// `None` unless the operator sets `control_socket` (the packaged
    /// file does): a daemon started by hand or by a test makes no file
    /// outside the places its configuration names.
    pub control_socket: Option<ControlSocket>,
    /// A file holding the bearer token that allows writes over `listen`;
    /// without one, `listen` is read-only.
    pub token_file: Option<PathBuf>,
    /// How long a client of either listener may take to send a request,
    /// counted from the connection's start or the previous response: an
    /// idle or slow connection is closed after it.
    pub request_timeout: Duration,
}

/// `[admin] control_socket*`: a Unix socket serving the admin API with
/// writes allowed to whoever the file's permissions let connect.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlSocket {
    pub path: PathBuf,
    /// Permission bits of the socket file.
    pub mode: u32,
    /// Group of the socket file (a name or a number); the daemon's own
    /// group when `None`.
    pub group: Option<String>,
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
    /// TCP only (`None` on UDP frontends, whose bound is `max_sessions`).
    pub max_connections: Option<usize>,
    /// The PROXY protocol header sent to the servers; `None` sends none
    /// (always `None` on UDP frontends).
    pub proxy_protocol: Option<ProxyVersion>,
    pub protocol: Protocol,
}

impl Frontend {
    pub fn is_tcp(&self) -> bool {
        matches!(self.protocol, Protocol::Tcp)
    }

    /// The session settings of a UDP frontend; `None` for TCP.
    pub fn udp(&self) -> Option<&UdpSettings> {
        match &self.protocol {
            Protocol::Tcp => None,
            Protocol::Udp(settings) => Some(settings),
        }
    }
}

/// `protocol = "tcp" | "udp"`, with what only a UDP frontend has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp(UdpSettings),
}

impl Protocol {
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp(_) => "udp",
        }
    }
}

/// How a UDP frontend keeps its client sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpSettings {
    /// A session with no datagram either way for this long ends.
    pub idle_timeout: Duration,
    /// Datagrams back per datagram from the client after which the session
    /// ends (nginx's `proxy_responses`; 1 for DNS); `None`: until idle.
    pub responses: Option<u32>,
    /// Sessions kept at once; at the limit the one idle longest is evicted.
    pub max_sessions: usize,
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
    /// A DNS query over UDP; healthy on a well-formed reply whose RCODE is
    /// one of `expect_rcodes`.
    Dns {
        /// Fully qualified, as written (`"example.org."`).
        query_name: String,
        /// Record type number (1 = A, 6 = SOA, 28 = AAAA, ...).
        query_type: u16,
        expect_rcodes: Vec<u16>,
    },
    /// Send one datagram; healthy on a reply that starts with `expect`
    /// (any reply when `None`).
    Udp {
        send: Vec<u8>,
        expect: Option<Vec<u8>>,
    },
}

impl CheckKind {
    /// Checks that talk UDP to the server rather than TCP.
    pub fn is_udp(&self) -> bool {
        matches!(self, CheckKind::Dns { .. } | CheckKind::Udp { .. })
    }
}

/// RCODE names as `dig` prints them (RFC 1035 §4.1.1, RFC 2136 §2.2).
pub const DNS_RCODES: [(&str, u16); 11] = [
    ("NOERROR", 0),
    ("FORMERR", 1),
    ("SERVFAIL", 2),
    ("NXDOMAIN", 3),
    ("NOTIMP", 4),
    ("REFUSED", 5),
    ("YXDOMAIN", 6),
    ("YXRRSET", 7),
    ("NXRRSET", 8),
    ("NOTAUTH", 9),
    ("NOTZONE", 10),
];

/// The name of RCODE `code`, or its number when it has none here.
pub fn dns_rcode_name(code: u16) -> String {
    DNS_RCODES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| code.to_string(), |(n, _)| (*n).to_owned())
}
