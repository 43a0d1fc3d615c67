//! The validated configuration: what the rest of the daemon consumes.
//!
//! Every value here has been checked by [`super::validate`]; code that holds a
//! [`Config`] never re-checks names, addresses or ranges. Defaults are filled
//! in, so no `Option` means "use the default" past this point.

use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
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
    pub resolver: Resolver,
    /// `[bgp]`, with its defaults when only `[[announce]]` groups are given;
    /// `None` when the file has neither.
    pub bgp: Option<Bgp>,
    pub announce: Vec<Announce>,
}

impl Config {
    /// No frontend and no VRRP instance: the daemon would serve only its
    /// admin endpoint (valid: a reload can add what to run).
    pub fn has_nothing_to_run(&self) -> bool {
        self.frontends.is_empty() && self.vrrp.is_empty()
    }

    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }
    pub fn frontend(&self, name: &str) -> Option<&Frontend> {
        self.frontends.iter().find(|f| f.name == name)
    }

    /// The keys whose values differ in `new` that the daemon reads only at
    /// start: a reload keeps the old value (and says so) until a restart.
    /// `tuning.backlog` applies to listeners a reload adds, not to those
    /// already open.
    pub fn changed_until_restart(&self, new: &Config) -> Vec<&'static str> {
        let (old_t, new_t) = (&self.tuning, &new.tuning);
        [
            ("admin.listen", self.admin.listen != new.admin.listen),
            (
                "admin.control_socket",
                self.admin.control_socket != new.admin.control_socket,
            ),
            (
                "admin.request_timeout",
                self.admin.request_timeout != new.admin.request_timeout,
            ),
            ("tuning.pipe_size", old_t.pipe_size != new_t.pipe_size),
            (
                "tuning.pipe_pool_max",
                old_t.pipe_pool_max != new_t.pipe_pool_max,
            ),
            ("tuning.splice", old_t.splice != new_t.splice),
            ("tuning.backlog", old_t.backlog != new_t.backlog),
            ("tuning.threads", old_t.threads != new_t.threads),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

/// `[bgp]`: the routing daemon that announces the `[[announce]]` groups
/// for this node (coexist speaks no BGP itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Bgp {
    pub engine: Engine,
    /// BIRD's control socket (its `-s` option).
    pub control_socket: PathBuf,
    /// How long a group must be able to serve before it is announced.
    pub announce_after: Duration,
    /// On SIGTERM: how long to keep serving after the withdrawal, while
    /// the routers converge, before draining.
    pub withdraw_settle: Duration,
    /// The TUN device the announced routes point at: it exists only while
    /// the daemon runs, so its routes die with the process.
    pub interface: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// BIRD 2, driven over its control socket.
    Bird,
}

/// `[[announce]]`: host routes this node announces while it can serve them.
#[derive(Debug, Clone, PartialEq)]
pub struct Announce {
    pub name: String,
    /// Host addresses (/32, /128), each on some frontend's listen list.
    pub prefixes: Vec<IpAddr>,
    /// Frontends that must each have a usable server.
    pub track: Vec<String>,
}

impl Announce {
    /// The families the group has prefixes of, IPv4 first.
    pub fn families(&self) -> Vec<vrrp::Family> {
        [vrrp::Family::V4, vrrp::Family::V6]
            .into_iter()
            .filter(|f| self.prefixes.iter().any(|p| vrrp::Family::of(*p) == *f))
            .collect()
    }

    /// The group's prefixes of `family`.
    pub fn prefixes_of(&self, family: vrrp::Family) -> impl Iterator<Item = IpAddr> + '_ {
        (self.prefixes.iter().copied()).filter(move |p| vrrp::Family::of(*p) == family)
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

/// The admin endpoint of a configuration without `[admin]`.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9100";

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
    /// Threads serving TCP clients, each keeping the clients it accepted;
    /// `None`: one per CPU the process may use. At most [`MAX_THREADS`].
    pub threads: Option<usize>,
}

/// Far beyond any machine's cores; a typo of 10,000 would otherwise start
/// 10,000 threads.
pub const MAX_THREADS: usize = 1024;

/// `[resolver]`: how servers given by name are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// Name servers asked; empty: those of `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// How long one query may take; `None`: as `/etc/resolv.conf` says.
    pub timeout: Option<Duration>,
    /// Queries per name server before giving up; `None`: as `/etc/resolv.conf` says.
    pub attempts: Option<usize>,
    /// `/etc/hosts` answers before DNS, as the C library does.
    pub hosts: bool,
    /// Bounds on the time a resolved address is kept before the name is
    /// asked again: a TTL of 0 does not mean a query per connection, and a
    /// TTL of a day does not hide a change for a day.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

/// No `[resolver]` table: the system's resolvers, `/etc/hosts` first,
/// TTLs kept between 1 s and 5 min.
impl Default for Resolver {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout: None,
            attempts: None,
            hosts: true,
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
        }
    }
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
    /// How long a connect to a server given by name waits on its preferred
    /// address family before it also tries the other (RFC 8305).
    pub happy_eyeballs_delay: Duration,
    pub servers: Vec<Server>,
}

/// One server of a backend. Identity across reloads is (backend name, address).
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Defaults to the address as written.
    pub name: String,
    pub address: ServerAddress,
    /// 0 drains: no new connections, existing ones continue.
    pub weight: u32,
    /// Used only while no non-backup server is up.
    pub backup: bool,
    pub max_connections: Option<usize>,
}

/// A server's `address`: where its connections go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddress {
    /// An IPv4 or IPv6 address with a port.
    Socket(SocketAddr),
    /// An IPv6 link-local address with its zone: `address` carries the
    /// interface's index as scope id, `interface` the name as written.
    LinkLocal {
        address: SocketAddrV6,
        interface: String,
    },
    /// A host name, resolved at run time.
    Name(NamedAddress),
}

impl ServerAddress {
    /// The address to connect to, for a server not given by name.
    pub fn socket(&self) -> Option<SocketAddr> {
        match self {
            ServerAddress::Socket(address) => Some(*address),
            ServerAddress::LinkLocal { address, .. } => Some(SocketAddr::V6(*address)),
            ServerAddress::Name(_) => None,
        }
    }

    pub fn name(&self) -> Option<&NamedAddress> {
        match self {
            ServerAddress::Name(named) => Some(named),
            _ => None,
        }
    }

    /// What makes two servers of a backend one: their address, or their
    /// name and port (a name's `prefer` and `family` do not).
    pub fn key(&self) -> ServerKey {
        match self {
            ServerAddress::Name(named) => ServerKey::Name(named.host.clone(), named.port),
            _ => ServerKey::Socket(self.socket().expect("not a name")),
        }
    }
}

/// A server's identity within its backend; see [`ServerAddress::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerKey {
    Socket(SocketAddr),
    Name(String, u16),
}

/// As an operator writes it: a zone by its interface's name.
impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Socket(address) => address.fmt(f),
            ServerAddress::LinkLocal { address, interface } => {
                write!(f, "[{}%{interface}]:{}", address.ip(), address.port())
            }
            ServerAddress::Name(named) => write!(f, "{}:{}", named.host, named.port),
        }
    }
}

/// A server given by name: `{ address = "web1.example.net:80", prefer = "ipv6" }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamedAddress {
    /// Lower case, without a trailing dot.
    pub host: String,
    pub port: u16,
    /// The family tried first when the name has both.
    pub prefer: Prefer,
    /// `Some`: only this family is asked for and connected to.
    pub family: Option<Family>,
}

impl NamedAddress {
    /// The families asked for: both, or the one `family` restricts to.
    pub fn families(&self) -> &'static [Family] {
        match self.family {
            None => &[Family::Ipv6, Family::Ipv4],
            Some(Family::Ipv6) => &[Family::Ipv6],
            Some(Family::Ipv4) => &[Family::Ipv4],
        }
    }
}

/// An address family, as `family` and `prefer` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(address: std::net::IpAddr) -> Family {
        if address.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    pub fn other(self) -> Family {
        match self {
            Family::Ipv4 => Family::Ipv6,
            Family::Ipv6 => Family::Ipv4,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `prefer`: which family a connect to a dual-stack name tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefer {
    Family(Family),
    /// The family that connected first last time.
    Any,
}

impl Prefer {
    pub fn as_str(self) -> &'static str {
        match self {
            Prefer::Family(family) => family.as_str(),
            Prefer::Any => "any",
        }
    }
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
