//! The scale-out topology: a router running BIRD 2 (or FRR, see
//! [`Router`]) spreads flows to a virtual address over the coexist nodes
//! announcing it by BGP (ECMP with kernel L4 hashing), each node running
//! coexist and its own BIRD.
//!
//! ```text
//!   ns "cl"   eth0 10.88.0.2/24, fd88::2/64            (IPv4 and IPv6 client)
//!      │
//!   ns "rt"   cl 10.88.0.1/24, fd88::1/64
//!             BIRD AS 65000: one BGP session per node and family, kernel
//!             export with `merge paths`, fib_multipath_hash_policy = 1 (L4)
//!             (or FRR: zebra + bgpd + bfdd, `maximum-paths 8`)
//!             (or, resilient hashing: BIRD exports to table 100, a sync
//!             copies the paths into `ip nexthop ... type resilient` groups)
//!      ├── n1 10.88.1.1/24 fd88:1::1/64 ─ eth0 10.88.1.2/24 fd88:1::2/64  ns "n1"
//!      ├── n2 10.88.2.1/24 fd88:2::1/64 ─ eth0 10.88.2.2/24 fd88:2::2/64  ns "n2"
//!      └── n3 ...                                                          ns "n3"
//!   each node: lo   VIP 10.88.100.10/32, fd88:100::10/128
//!              coexist: frontend "web" on VIP:80 → backend "pool" = [::1]:8080
//!                       (a server greeting with the node's name), checked every
//!                       100 ms; [[announce]] "web" tracks "web"; routes via the
//!                       TUN device "coexist0" the daemon holds
//!                       frontend "sticky" on VIP:81 → backend "shared" (maglev)
//!              BIRD AS 65001: `coexist bird-config` snippet, eBGP to the router
//!              eth1 fd88:200::10<i>/64 ── br0 in ns "sw" ── ns "srv" eth0
//!   ns "srv": servers s1..s3 on [fd88:200::11..13]:8080, shared by every node,
//!             each greeting with its name and the node address it sees
//! ```

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use coexist_support::config::{
    Admin, Announce, AnnounceTrack, Backend, Bgp, Config, Frontend, HealthCheck, Server,
};
use tokio::sync::mpsc;

use crate::daemon::READY_LINE;
use crate::ip_monitor::IpMonitor;
use crate::netns::{Lab, Ns, Process};
use crate::netns_thread;
use crate::servers::TestServer;

pub const VIP4: &str = "10.88.100.10";
/// The port of frontend "sticky" (backend "shared", maglev).
pub const STICKY_PORT: u16 = 81;
const SHARED_SERVERS: [&str; 3] = ["fd88:200::11", "fd88:200::12", "fd88:200::13"];
pub const VIP6: &str = "fd88:100::10";
pub const PORT: u16 = 80;
/// How long a node must be healthy before it announces.
pub const ANNOUNCE_AFTER: Duration = Duration::from_millis(500);
/// How long a stopping node keeps serving after its withdrawal.
pub const WITHDRAW_SETTLE: Duration = Duration::from_secs(1);
/// What the tools the topology runs are called (for a skip message).
pub const TOOLS: &[&str] = &["bird", "birdc", "nft"];
/// Where Debian's frr package puts its daemons (they are not on PATH).
const FRR_BIN: &str = "/usr/lib/frr";

/// The BGP engine of the router namespace. The nodes always run BIRD;
/// either router installs its multipath routes into the kernel, where
/// [`EcmpLab::paths`] reads them, so only starting it and asking it for its
/// sessions differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Router {
    /// BIRD 2, kernel protocol with `merge paths`.
    Bird,
    /// FRR 8.4: zebra (kernel routes), bgpd with `maximum-paths`, bfdd.
    Frr,
}

impl Router {
    pub fn label(self) -> &'static str {
        match self {
            Router::Bird => "BIRD",
            Router::Frr => "FRR",
        }
    }

    /// The tools a lab with this router needs (for a skip message).
    pub fn tools(self) -> &'static [&'static str] {
        match self {
            Router::Bird => TOOLS,
            Router::Frr => &[
                "bird",
                "birdc",
                "nft",
                "/usr/lib/frr/zebra",
                "/usr/lib/frr/bgpd",
                "/usr/lib/frr/bfdd",
                "vtysh",
            ],
        }
    }
}

/// The address family of a client or a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn vip(self) -> SocketAddr {
        let ip: IpAddr = match self {
            Family::V4 => VIP4.parse().unwrap(),
            Family::V6 => VIP6.parse().unwrap(),
        };
        SocketAddr::new(ip, PORT)
    }

    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The backend server of one node, on a thread inside the node's
/// namespace; it can be stopped and started again.
struct NodeServer {
    control: Option<mpsc::UnboundedSender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeServer {
    fn start(ns: &Ns, name: &str) -> NodeServer {
        let (control, mut commands) = mpsc::unbounded_channel::<bool>();
        let (ready, started) = std::sync::mpsc::channel();
        let (ns, name) = (ns.clone(), name.to_owned());
        let thread = std::thread::spawn(move || {
            netns_thread::enter(&ns);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let address = "[::1]:8080".parse().unwrap();
                let mut server = TestServer::named(address, &name)
                    .await
                    .expect("bind [::1]:8080");
                let _ = ready.send(());
                while let Some(up) = commands.recv().await {
                    if up {
                        server.restart().await.expect("listen again");
                    } else {
                        server.stop();
                    }
                }
            });
        });
        started
            .recv_timeout(Duration::from_secs(5))
            .expect("the node's server starts");
        NodeServer {
            control: Some(control),
            thread: Some(thread),
        }
    }

    fn set_up(&self, up: bool) {
        let _ = self.control.as_ref().expect("running").send(up);
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        self.control.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One coexist node with its BIRD.
pub struct Node {
    pub name: String,
    pub ns: Ns,
    /// 1-based, as in the addresses.
    pub index: usize,
    pub coexist: Option<Process>,
    pub bird: Option<Process>,
    pub bird_socket: PathBuf,
    /// coexist's control socket, where `coexist announce` writes.
    pub control_socket: PathBuf,
    pub coexist_log: PathBuf,
    config: PathBuf,
    server: NodeServer,
}

impl Node {
    /// When this node's daemon logged its group going `state`
    /// ("announced" / "withdrawn") for `family`, oldest first.
    pub fn announce_logged(&self, family: Family, state: &str) -> Vec<std::time::SystemTime> {
        let family = match family {
            Family::V4 => "family=\"ipv4\"",
            Family::V6 => "family=\"ipv6\"",
        };
        let state = format!("state=\"{state}\"");
        let log = std::fs::read_to_string(&self.coexist_log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("announce state changed") && l.contains(family))
            .filter(|l| l.contains(&state))
            .filter_map(|l| humantime::parse_rfc3339(l.split_whitespace().next()?).ok())
            .collect()
    }

    /// Makes the node's only server refuse (`false`) or accept connections.
    pub fn set_server_up(&self, up: bool) {
        self.server.set_up(up);
    }
}

/// How the router spreads flows over the paths of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// The kernel's multipath route as the routing daemon installs it
    /// (RFC 2992 hash-threshold): when a path goes or comes, parts of every
    /// path's hash range move, so flows of surviving nodes move too.
    Threshold,
    /// A resilient next-hop group (`ip nexthop ... type resilient`): a
    /// removed path's buckets go to the others, busy buckets never move.
    /// BIRD creates no next-hop objects, so BIRD exports to table
    /// [`STAGING_TABLE`] and [`ResilientSync`] copies each route's paths
    /// into a group the main table's route points at.
    Resilient,
}

impl Hashing {
    pub fn label(self) -> &'static str {
        match self {
            Hashing::Threshold => "hash-threshold",
            Hashing::Resilient => "resilient",
        }
    }
}

/// Where the router's BIRD puts its routes when [`ResilientSync`] builds
/// the main table's.
const STAGING_TABLE: &str = "100";
/// Buckets of each resilient group: many, so that a joining node finds
/// idle ones among those 300 connections use.
const BUCKETS: &str = "512";
/// Seconds without traffic after which a bucket may move to a joining
/// node; the long-lived connections ping well within it.
pub const IDLE_TIMER_S: u64 = 3;

pub struct EcmpLab {
    pub nodes: Vec<Node>,
    pub router: Ns,
    pub router_engine: Router,
    pub client: Ns,
    /// BIRD's CLI socket, or the directory of FRR's vty sockets.
    pub router_socket: PathBuf,
    /// Stopped last first.
    router_daemons: Vec<Process>,
    /// FRR's daemons run as user frr: their files live in a directory of
    /// their own that user owns.
    frr_dir: Option<tempfile::TempDir>,
    pub hashing: Hashing,
    resilient: Option<ResilientSync>,
    coexist_binary: PathBuf,
    shared_servers: Option<std::thread::JoinHandle<()>>,
    stop_shared: Option<tokio::sync::oneshot::Sender<()>>,
    pub dir: tempfile::TempDir,
    /// Last: dropping it removes the namespaces, after every process.
    pub lab: Lab,
}

impl EcmpLab {
    /// Builds the topology with a BIRD router and `nodes` nodes running
    /// the daemon at `coexist` and starts everything; does not wait for BGP.
    pub fn start(tag: &str, nodes: usize, coexist: &Path) -> EcmpLab {
        EcmpLab::start_with(tag, nodes, coexist, Router::Bird)
    }

    /// [`EcmpLab::start`] with `router` as the router's BGP engine.
    pub fn start_with(tag: &str, nodes: usize, coexist: &Path, router_engine: Router) -> EcmpLab {
        EcmpLab::start_hashing(tag, nodes, coexist, router_engine, Hashing::Threshold)
    }

    /// [`EcmpLab::start_with`], the router spreading flows by `hashing`
    /// (resilient only with BIRD as the router).
    pub fn start_hashing(
        tag: &str,
        nodes: usize,
        coexist: &Path,
        router_engine: Router,
        hashing: Hashing,
    ) -> EcmpLab {
        assert!(
            hashing == Hashing::Threshold || router_engine == Router::Bird,
            "resilient groups are built from BIRD's routes only"
        );
        let mut lab = Lab::new(tag);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let router = lab.ns("rt");
        let client = lab.ns("cl");
        lab.veth(&client, "eth0", &router, "cl");
        lab.addr(&client, "eth0", "10.88.0.2/24");
        lab.addr(&client, "eth0", "fd88::2/64");
        lab.addr(&router, "cl", "10.88.0.1/24");
        lab.addr(&router, "cl", "fd88::1/64");
        lab.ip(&client, &["route", "add", "default", "via", "10.88.0.1"]);
        lab.ip(
            &client,
            &["-6", "route", "add", "default", "via", "fd88::1"],
        );
        lab.exec(
            &router,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.fib_multipath_hash_policy=1",
                "net.ipv6.fib_multipath_hash_policy=1",
            ],
        );

        let switch = lab.switch("sw");
        let servers = lab.ns("srv");
        lab.plug(&servers, "eth0", &switch, "srv");
        for address in SHARED_SERVERS {
            lab.addr(&servers, "eth0", &format!("{address}/64"));
        }
        let (stop_shared, shared_servers) = start_shared_servers(&servers);

        let mut built = Vec::new();
        for index in 1..=nodes {
            let name = format!("n{index}");
            let ns = lab.ns(&name);
            lab.veth(&router, &name, &ns, "eth0");
            lab.addr(&router, &name, &format!("10.88.{index}.1/24"));
            lab.addr(&router, &name, &format!("fd88:{index}::1/64"));
            lab.addr(&ns, "eth0", &format!("10.88.{index}.2/24"));
            lab.addr(&ns, "eth0", &format!("fd88:{index}::2/64"));
            lab.addr(&ns, "lo", &format!("{VIP4}/32"));
            lab.addr(&ns, "lo", &format!("{VIP6}/128"));
            let via4 = format!("10.88.{index}.1");
            let via6 = format!("fd88:{index}::1");
            lab.ip(&ns, &["route", "add", "default", "via", &via4]);
            lab.ip(&ns, &["-6", "route", "add", "default", "via", &via6]);
            lab.plug(&ns, "eth1", &switch, &format!("p{index}"));
            lab.addr(&ns, "eth1", &format!("fd88:200::{}/64", 100 + index));
            built.push(start_node(&lab, dir.path(), ns, index, coexist));
        }
        let resilient =
            (hashing == Hashing::Resilient).then(|| ResilientSync::start(&router, nodes));
        let (router_daemons, router_socket, frr_dir) = match router_engine {
            Router::Bird => {
                let table = resilient.as_ref().map(|_| STAGING_TABLE);
                let (bird, socket) = start_bird_router(&lab, &router, dir.path(), nodes, table);
                (vec![bird], socket, None)
            }
            Router::Frr => {
                let (daemons, frr_dir) = start_frr_router(&lab, &router, nodes);
                (daemons, frr_dir.path().to_owned(), Some(frr_dir))
            }
        };
        EcmpLab {
            nodes: built,
            router,
            router_engine,
            client,
            router_socket,
            router_daemons,
            frr_dir,
            hashing,
            resilient,
            coexist_binary: coexist.to_owned(),
            shared_servers: Some(shared_servers),
            stop_shared: Some(stop_shared),
            dir,
            lab,
        }
    }

    /// The nodes (1-based) the router's route to the VIP of `family` goes
    /// through now.
    pub fn paths(&self, family: Family) -> BTreeSet<usize> {
        self.path_order(family).into_iter().collect()
    }

    /// The nodes on the router's route for `family` in the kernel's order:
    /// hash-threshold gives each its slice of the hash range in this order.
    pub fn path_order(&self, family: Family) -> Vec<usize> {
        let (flag, vip) = match family {
            Family::V4 => ("-4", VIP4),
            Family::V6 => ("-6", VIP6),
        };
        nodes_on(&self.lab.ip(&self.router, &[flag, "route", "show", vip]))
    }

    /// Polls until the router's paths for `family` are `want`; how long
    /// that took, or `None` after `limit`.
    pub fn wait_paths(
        &self,
        family: Family,
        want: &BTreeSet<usize>,
        limit: Duration,
    ) -> Option<Duration> {
        coexist_support::wait_until(limit, Duration::from_millis(5), || {
            self.paths(family) == *want
        })
    }

    /// Polls until node `index` is on no path of `family`.
    pub fn wait_gone(&self, family: Family, index: usize, limit: Duration) -> Option<Duration> {
        coexist_support::wait_until(limit, Duration::from_millis(5), || {
            !self.paths(family).contains(&index)
        })
    }

    /// Whether no session went down and came back between two readings of
    /// [`Self::router_sessions`]: the same sessions in the same states
    /// since the same moment. BIRD prints that moment as the time of day
    /// it derives from now minus the uptime, which moves by a millisecond
    /// between two reads (seen once: `09:42:35.679` then `.680`); a session
    /// that really came back would be seconds later (BIRD waits its
    /// connect delay first), so times within 100 ms are the same moment.
    pub fn sessions_unchanged(
        before: &[(String, String, String)],
        after: &[(String, String, String)],
    ) -> bool {
        before.len() == after.len()
            && before
                .iter()
                .zip(after)
                .all(|(b, a)| b.0 == a.0 && b.1 == a.1 && (b.2 == a.2 || same_moment(&b.2, &a.2)))
    }

    /// Every BGP session of the router, its state and when it last became
    /// that (BIRD: `show protocols`' since; FRR: the time it became
    /// Established and how many times it did): (name, state, since). Equal
    /// lists mean no session went down and came back in between.
    pub fn router_sessions(&self) -> Vec<(String, String, String)> {
        match self.router_engine {
            Router::Bird => {
                let out = self.lab.exec(
                    &self.router,
                    &[
                        "birdc",
                        "-s",
                        self.router_socket.to_str().unwrap(),
                        "show",
                        "protocols",
                    ],
                );
                out.lines()
                    .filter_map(|l| {
                        let w: Vec<&str> = l.split_whitespace().collect();
                        (w.len() >= 6 && w[1] == "BGP")
                            .then(|| (w[0].to_owned(), w[5].to_owned(), w[4].to_owned()))
                    })
                    .collect()
            }
            Router::Frr => {
                let out = self.vtysh("show bgp neighbors json");
                let neighbors: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&out)
                        .unwrap_or_else(|e| panic!("vtysh's neighbors are not JSON ({e}): {out}"));
                neighbors
                    .into_iter()
                    .map(|(address, n)| {
                        let state = n["bgpState"].as_str();
                        let count = n["connectionsEstablished"].as_u64();
                        let (Some(state), Some(count)) = (state, count) else {
                            panic!("vtysh's neighbor {address} lacks bgpState or connectionsEstablished: {n}");
                        };
                        // The count alone tells a reset: FRR derives its
                        // "established at" epoch from now minus the uptime,
                        // which moves by a second between two reads.
                        let since = format!("established {count} times");
                        (address, state.to_owned(), since)
                    })
                    .collect()
            }
        }
    }

    /// How many of the router's BFD sessions are up.
    pub fn router_bfd_up(&self) -> usize {
        match self.router_engine {
            Router::Bird => {
                let out = self.lab.exec(
                    &self.router,
                    &[
                        "birdc",
                        "-s",
                        self.router_socket.to_str().unwrap(),
                        "show",
                        "bfd",
                        "sessions",
                    ],
                );
                (out.lines())
                    .filter(|l| l.split_whitespace().nth(2) == Some("Up"))
                    .count()
            }
            Router::Frr => {
                let out = self.vtysh("show bfd peers json");
                let peers: Vec<serde_json::Value> = serde_json::from_str(&out)
                    .unwrap_or_else(|e| panic!("vtysh's BFD peers are not JSON ({e}): {out}"));
                (peers.iter())
                    .filter(|p| p["status"].as_str() == Some("up"))
                    .count()
            }
        }
    }

    /// Runs one FRR CLI command in the router namespace.
    fn vtysh(&self, command: &str) -> String {
        self.lab.exec(
            &self.router,
            &[
                "vtysh",
                "--vty_socket",
                self.router_socket.to_str().unwrap(),
                "-c",
                command,
            ],
        )
    }

    /// Opens `count` connections from the client to the VIP of `family`,
    /// one after the other, and counts which node's server greeted each.
    /// Failures are counted under "failed".
    pub fn spread(
        &self,
        family: Family,
        count: usize,
    ) -> std::collections::BTreeMap<String, usize> {
        let client = self.client.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    netns_thread::enter(&client);
                    let mut seen = std::collections::BTreeMap::new();
                    for _ in 0..count {
                        let who = ask(family.vip()).unwrap_or_else(|_| "failed".to_owned());
                        *seen.entry(who).or_insert(0) += 1;
                    }
                    seen
                })
                .join()
                .expect("the client thread")
        })
    }

    /// Makes node `index`'s link drop every packet, as a dead cable or
    /// switch port would, without the carrier change a veth would show.
    pub fn cut_link(&self, node: &Node) {
        let ns = &node.ns;
        self.lab.exec(ns, &["nft", "add", "table", "inet", "cut"]);
        for (chain, hook, dir) in [("in", "input", "iifname"), ("out", "output", "oifname")] {
            let spec = format!("{{ type filter hook {hook} priority 0; policy accept; }}");
            self.lab
                .exec(ns, &["nft", "add", "chain", "inet", "cut", chain, &spec]);
            self.lab.exec(
                ns,
                &[
                    "nft", "add", "rule", "inet", "cut", chain, dir, "eth0", "drop",
                ],
            );
        }
    }

    /// Gives the client `count` more addresses per family (10.88.0.100...,
    /// fd88::100...): distinct clients for maglev.
    pub fn client_addresses(&self, count: usize) -> Vec<(IpAddr, IpAddr)> {
        (0..count)
            .map(|k| {
                let v4: IpAddr = format!("10.88.0.{}", 100 + k).parse().unwrap();
                let v6: IpAddr = format!("fd88::{:x}", 0x100 + k).parse().unwrap();
                self.lab.addr(&self.client, "eth0", &format!("{v4}/24"));
                self.lab.addr(&self.client, "eth0", &format!("{v6}/64"));
                (v4, v6)
            })
            .collect()
    }

    /// From each of `sources`, opens `per_source` connections to frontend
    /// "sticky" and records each answer: (server, node address it came
    /// through), or ("failed", error).
    pub fn sticky(&self, sources: &[IpAddr], per_source: usize) -> Vec<Vec<(String, String)>> {
        let client = self.client.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    netns_thread::enter(&client);
                    (sources.iter())
                        .map(|source| {
                            let vip = match source {
                                IpAddr::V4(_) => Family::V4.vip(),
                                IpAddr::V6(_) => Family::V6.vip(),
                            };
                            let vip = SocketAddr::new(vip.ip(), STICKY_PORT);
                            (0..per_source)
                                .map(|_| match ask_from(*source, vip) {
                                    Ok(line) => {
                                        let (server, node) =
                                            line.split_once(' ').unwrap_or((&line, ""));
                                        (server.to_owned(), node.to_owned())
                                    }
                                    Err(e) => ("failed".to_owned(), e.to_string()),
                                })
                                .collect()
                        })
                        .collect()
                })
                .join()
                .expect("the client thread")
        })
    }

    /// Starts coexist again on node `index` (1-based) after it died; the
    /// new run logs to a file of its own, which becomes the node's log.
    pub fn restart_coexist(&mut self, index: usize) {
        let node = &mut self.nodes[index - 1];
        if let Some(mut old) = node.coexist.take() {
            let exited = old.wait_exit(Duration::from_secs(5));
            assert!(exited.is_some(), "{} still runs", node.name);
        }
        let runs = (self.dir.path().read_dir().unwrap())
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy()
                    .starts_with(&format!("{}.coexist", node.name))
            })
            .count();
        node.coexist_log = (self.dir.path()).join(format!("{}.coexist.{runs}.log", node.name));
        node.coexist = Some(spawn_coexist(
            &self.lab,
            &node.ns,
            &node.name,
            &self.coexist_binary,
            &node.config,
            &node.coexist_log,
        ));
    }

    /// The daemon binary the nodes run.
    pub fn coexist_binary(&self) -> &Path {
        &self.coexist_binary
    }

    /// Opens `per_family` long-lived connections from the client to the
    /// VIP of each family; they ping until [`LongLived::finish`].
    pub fn long_lived(&self, per_family: usize) -> LongLived {
        LongLived::open(&self.client, per_family)
    }

    /// New connections from the client to the VIP of `family`, `per_second`
    /// of them for `duration`, each reading its greeting: (answered,
    /// failed).
    pub fn paced(&self, family: Family, per_second: u32, duration: Duration) -> (usize, usize) {
        let client = self.client.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    netns_thread::enter(&client);
                    let every = Duration::from_secs(1) / per_second;
                    let start = std::time::Instant::now();
                    let (mut ok, mut failed) = (0, 0);
                    let mut next = start;
                    while next < start + duration {
                        std::thread::sleep(
                            next.saturating_duration_since(std::time::Instant::now()),
                        );
                        match ask(family.vip()) {
                            Ok(_) => ok += 1,
                            Err(_) => failed += 1,
                        }
                        next += every;
                    }
                    (ok, failed)
                })
                .join()
                .expect("the client thread")
        })
    }

    /// The node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            for (what, path) in [
                ("coexist", node.coexist_log.clone()),
                (
                    "bird",
                    self.dir.path().join(format!("{}.bird.log", node.name)),
                ),
            ] {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                out.push_str(&format!("--- {} {what}\n{text}", node.name));
            }
        }
        let logs: Vec<PathBuf> = match &self.frr_dir {
            None => vec![self.dir.path().join("rt.bird.log")],
            Some(frr) => ["zebra", "bgpd", "bfdd"]
                .map(|d| frr.path().join(format!("{d}.log")))
                .into(),
        };
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let name = log.file_name().unwrap().to_string_lossy();
            out.push_str(&format!("--- router {name}\n{text}"));
        }
        out
    }
}

impl Drop for EcmpLab {
    fn drop(&mut self) {
        // The sync first: it would chase every route the shutdown removes.
        self.resilient.take();
        // Daemons first (their TUN devices and sockets), then the BIRDs.
        // All told at once: each withdraws and settles before it exits.
        for node in &self.nodes {
            if let Some(coexist) = &node.coexist {
                coexist.signal(nix::sys::signal::Signal::SIGTERM);
            }
        }
        for node in &mut self.nodes {
            node.coexist.take();
            node.bird.take();
        }
        while let Some(daemon) = self.router_daemons.pop() {
            drop(daemon);
        }
        self.stop_shared.take();
        if let Some(thread) = self.shared_servers.take() {
            let _ = thread.join();
        }
    }
}

/// Servers s1..s3 in `ns`, each answering a connection with
/// `"<name> <peer address>\n"`: which server, reached through which node.
fn start_shared_servers(
    ns: &Ns,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, started) = std::sync::mpsc::channel();
    let ns = ns.clone();
    let thread = std::thread::spawn(move || {
        netns_thread::enter(&ns);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            for (k, address) in SHARED_SERVERS.iter().enumerate() {
                let address = SocketAddr::new(address.parse().unwrap(), 8080);
                let listener = lb::net::bind_listener(address, 1024).expect("bind a shared server");
                let name = format!("s{}", k + 1);
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    while let Ok((mut stream, peer)) = listener.accept().await {
                        let line = format!("{name} {}\n", peer.ip());
                        tokio::spawn(async move {
                            let _ = stream.write_all(line.as_bytes()).await;
                        });
                    }
                });
            }
            let _ = ready.send(());
            let _ = stopped.await;
        });
    });
    started
        .recv_timeout(Duration::from_secs(5))
        .expect("the shared servers start");
    (stop, thread)
}

/// Logs to stderr (the process's log file); BFD at 50 ms × 6 on every
/// link, so a dead node is dropped in about 300 ms rather than at the BGP
/// hold timer (50 ms × 3 flapped on a loaded 2-core machine).
const COMMON: &str = "log stderr all;\nprotocol device { scan time 10; }\n\
    protocol bfd { interface \"*\" { min rx interval 50 ms; min tx interval 50 ms; multiplier 6; }; }\n";
/// Short timers so sessions come up within a second or two of both sides
/// running; BFD watches each session.
const FAST_BGP: &str = "connect delay time 1; connect retry time 1; error wait time 1, 2; bfd on;";

/// The router's BIRD: one session per node and family, every path merged
/// into one multipath kernel route. Returns BIRD and its CLI socket.
/// `table`: the kernel table to export to instead of the main one.
fn start_bird_router(
    lab: &Lab,
    router: &Ns,
    dir: &Path,
    nodes: usize,
    table: Option<&str>,
) -> (Process, PathBuf) {
    let table = table.map_or(String::new(), |t| format!("kernel table {t}; "));
    let mut peers = String::new();
    for index in 1..=nodes {
        peers.push_str(&format!(
            "protocol bgp n{index}_v4 from node {{ neighbor 10.88.{index}.2 as 65001; ipv4 {{ import all; export none; }}; }}\n\
             protocol bgp n{index}_v6 from node {{ neighbor fd88:{index}::2 as 65001; ipv6 {{ import all; export none; }}; }}\n"
        ));
    }
    let router_conf = dir.join("rt.conf");
    std::fs::write(
        &router_conf,
        format!(
            "{COMMON}router id 10.88.0.1;\n\
             protocol kernel {{ {table}ipv4 {{ import none; export all; }}; merge paths on; }}\n\
             protocol kernel {{ {table}ipv6 {{ import none; export all; }}; merge paths on; }}\n\
             template bgp node {{ local as 65000; {FAST_BGP} }}\n{peers}"
        ),
    )
    .unwrap();
    let socket = dir.join("rt.ctl");
    let bird = spawn_bird(lab, router, dir, "rt", &router_conf, &socket);
    (bird, socket)
}

/// The router as FRR: zebra (which installs the kernel routes), then bgpd
/// with one session per node and family and `maximum-paths`, and bfdd
/// with the same BFD timers as the nodes' BIRD. Each daemon reads its own
/// config file and keeps its pid file and vty socket in a directory owned
/// by user frr, the user the daemons drop to.
fn start_frr_router(lab: &Lab, router: &Ns, nodes: usize) -> (Vec<Process>, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("coexist-frr")
        .tempdir()
        .expect("a temporary directory");
    let mut neighbors = String::new();
    let (mut v4, mut v6) = (String::new(), String::new());
    for index in 1..=nodes {
        for (address, family) in [
            (format!("10.88.{index}.2"), &mut v4),
            (format!("fd88:{index}::2"), &mut v6),
        ] {
            neighbors.push_str(&format!(
                " neighbor {address} remote-as 65001\n \
                 neighbor {address} timers connect 1\n \
                 neighbor {address} bfd profile fast\n"
            ));
            family.push_str(&format!(
                "  neighbor {address} activate\n  neighbor {address} route-map none out\n"
            ));
        }
    }
    let configs = [
        // zebra batches route changes for 10 ms by default (bgpd for a
        // fixed 50 ms on top): each one at once keeps FRR's share of the
        // 100 ms E2 allows small.
        ("zebra", "hostname rt\nzebra work-queue 0\n".to_owned()),
        (
            "bgpd",
            format!(
                "hostname rt\n\
                 route-map none deny 10\n\
                 router bgp 65000\n \
                 bgp router-id 10.88.0.1\n \
                 no bgp ebgp-requires-policy\n \
                 no bgp default ipv4-unicast\n\
                 {neighbors} \
                 address-family ipv4 unicast\n  maximum-paths 8\n{v4} exit-address-family\n \
                 address-family ipv6 unicast\n  maximum-paths 8\n{v6} exit-address-family\n"
            ),
        ),
        (
            "bfdd",
            "bfd\n profile fast\n  receive-interval 50\n  transmit-interval 50\n  \
             detect-multiplier 6\n exit\nexit\n"
                .to_owned(),
        ),
    ];
    for (daemon, config) in &configs {
        std::fs::write(dir.path().join(format!("{daemon}.conf")), config).unwrap();
    }
    lab.exec(
        router,
        &["chown", "-R", "frr:frr", dir.path().to_str().unwrap()],
    );
    let zserv = dir.path().join("zserv.api");
    let mut daemons = Vec::new();
    for (daemon, _) in &configs {
        let path = |name: String| dir.path().join(name).to_str().unwrap().to_owned();
        let program = Path::new(FRR_BIN).join(daemon);
        let args = [
            "-f",
            &path(format!("{daemon}.conf")),
            "-i",
            &path(format!("{daemon}.pid")),
            "-z",
            zserv.to_str().unwrap(),
            "--vty_socket",
            dir.path().to_str().unwrap(),
            // No TCP vty: the CLI is the socket.
            "-P",
            "0",
            "--log",
            "stdout",
        ];
        let log = dir.path().join(format!("{daemon}.log"));
        daemons.push(lab.spawn(router, &program, &args, &log));
        if *daemon == "zebra" {
            // bgpd and bfdd would retry, but only after seconds.
            let up = coexist_support::wait_until(
                Duration::from_secs(10),
                Duration::from_millis(20),
                || zserv.exists(),
            );
            assert!(
                up.is_some(),
                "zebra did not open its socket:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
    (daemons, dir)
}

fn spawn_bird(lab: &Lab, ns: &Ns, dir: &Path, name: &str, conf: &Path, socket: &Path) -> Process {
    let pid = dir.join(format!("{name}.bird.pid"));
    lab.spawn(
        ns,
        Path::new("bird"),
        &[
            "-f",
            "-c",
            conf.to_str().unwrap(),
            "-s",
            socket.to_str().unwrap(),
            "-P",
            pid.to_str().unwrap(),
        ],
        &dir.join(format!("{name}.bird.log")),
    )
}

/// The coexist config of node `index`.
/// A node's config: BIRD's socket at `bird_socket`, coexist's own control
/// socket (for `coexist announce`) at `control_socket`.
pub fn node_config(bird_socket: &Path, control_socket: &Path) -> Config {
    let web = Frontend::new("web", [Family::V4.vip(), Family::V6.vip()], "pool");
    let sticky_listen = [Family::V4.vip(), Family::V6.vip()].map(|mut a| {
        a.set_port(STICKY_PORT);
        a
    });
    let sticky = Frontend::new("sticky", sticky_listen, "shared");
    let shared = SHARED_SERVERS.iter().enumerate().map(|(k, a)| {
        Server::named(
            &format!("s{}", k + 1),
            SocketAddr::new(a.parse().unwrap(), 8080),
        )
    });
    let ms = Duration::from_millis;
    Config {
        admin: Some(Admin {
            listen: "127.0.0.1:9100".into(),
            control_socket: Some(control_socket.to_owned()),
            ..Admin::default()
        }),
        frontends: vec![web, sticky],
        backends: vec![
            Backend {
                health_check: Some(HealthCheck::every("tcp", ms(100), ms(100), 1, 1)),
                ..Backend::new("pool", [Server::named("s", "[::1]:8080".parse().unwrap())])
            },
            Backend {
                balance: Some("maglev".into()),
                health_check: Some(HealthCheck::every("tcp", ms(100), ms(100), 1, 1)),
                ..Backend::new("shared", shared)
            },
        ],
        bgp: Some(Bgp {
            control_socket: Some(bird_socket.display().to_string()),
            announce_after: Some(ANNOUNCE_AFTER),
            withdraw_settle: Some(WITHDRAW_SETTLE),
            ..Bgp::default()
        }),
        announce: vec![Announce {
            name: "web".into(),
            prefixes: vec![format!("{VIP4}/32"), format!("{VIP6}/128")],
            track: vec![AnnounceTrack {
                frontend: "web".into(),
            }],
        }],
        ..Config::default()
    }
}

fn start_node(lab: &Lab, dir: &Path, ns: Ns, index: usize, coexist: &Path) -> Node {
    let name = format!("n{index}");
    let server = NodeServer::start(&ns, &name);
    let bird_socket = dir.join(format!("{name}.ctl"));
    let config = dir.join(format!("{name}.toml"));
    let control_socket = dir.join(format!("{name}.sock"));
    std::fs::write(
        &config,
        node_config(&bird_socket, &control_socket).to_toml(),
    )
    .unwrap();
    // The snippet as an operator makes it.
    let snippet = lab.exec(
        &ns,
        &[
            coexist.to_str().unwrap(),
            "bird-config",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let snippet_path = dir.join(format!("{name}.coexist.conf"));
    std::fs::write(&snippet_path, snippet).unwrap();
    let bird_conf = dir.join(format!("{name}.bird.conf"));
    std::fs::write(
        &bird_conf,
        format!(
            "{COMMON}router id 10.88.{index}.2;\ninclude \"{snippet}\";\n\
             template bgp up {{ local as 65001; {FAST_BGP} }}\n\
             protocol bgp up_v4 from up {{ neighbor 10.88.{index}.1 as 65000; ipv4 {{ import none; export where proto ~ \"coexist_*\"; }}; }}\n\
             protocol bgp up_v6 from up {{ neighbor fd88:{index}::1 as 65000; ipv6 {{ import none; export where proto ~ \"coexist_*\"; }}; }}\n",
            snippet = snippet_path.display()
        ),
    )
    .unwrap();
    let bird = spawn_bird(lab, &ns, dir, &name, &bird_conf, &bird_socket);
    let coexist_log = dir.join(format!("{name}.coexist.log"));
    let coexist = spawn_coexist(lab, &ns, &name, coexist, &config, &coexist_log);
    Node {
        name,
        ns,
        index,
        coexist: Some(coexist),
        bird: Some(bird),
        bird_socket,
        control_socket,
        coexist_log,
        config,
        server,
    }
}

/// Starts coexist on node `name`, logging to `log`, and waits until it
/// serves.
fn spawn_coexist(
    lab: &Lab,
    ns: &Ns,
    name: &str,
    coexist: &Path,
    config: &Path,
    log: &Path,
) -> Process {
    let process = lab
        .spawn(
            ns,
            coexist,
            &["run", "--config", config.to_str().unwrap()],
            log,
        )
        .with_stop_grace(Duration::from_secs(5));
    let started =
        coexist_support::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains(READY_LINE)
        });
    assert!(
        started.is_some(),
        "coexist on {name} did not start:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    process
}

/// Connects to `vip` and returns the greeting line of the server reached.
pub fn ask(vip: SocketAddr) -> std::io::Result<String> {
    let stream = TcpStream::connect_timeout(&vip, Duration::from_secs(2))?;
    greeting(stream)
}

/// [`ask`] from the local address `source`.
pub fn ask_from(source: IpAddr, vip: SocketAddr) -> std::io::Result<String> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(vip), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&vip.into(), Duration::from_secs(2))?;
    greeting(socket.into())
}

fn greeting(stream: TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// The nodes (1-based) an `ip route show` of one route goes through, in
/// its order.
fn nodes_on(route: &str) -> Vec<usize> {
    let words: Vec<&str> = route.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "dev")
        .filter_map(|w| w[1].strip_prefix('n')?.parse().ok())
        .collect()
}

/// Copies the paths of the VIP routes BIRD exports to [`STAGING_TABLE`]
/// into one resilient next-hop group per family, which the main table's
/// route uses: the small piece a BIRD router lacks to use resilient
/// hashing. Next hop `k` (IPv4) and `10 + k` (IPv6) lead to node `k`;
/// groups are 100 (IPv4) and 200 (IPv6). It follows `ip monitor route`,
/// so each change of BIRD's routes is copied within milliseconds.
struct ResilientSync {
    // Stops the copying when dropped.
    _monitor: IpMonitor,
}

impl ResilientSync {
    fn start(router: &Ns, nodes: usize) -> ResilientSync {
        for k in 1..=nodes {
            let dev = format!("n{k}");
            for (id, via) in [
                (k.to_string(), format!("10.88.{k}.2")),
                ((10 + k).to_string(), format!("fd88:{k}::2")),
            ] {
                router_ip(
                    router,
                    &["nexthop", "add", "id", &id, "via", &via, "dev", &dev],
                )
                .expect("a next hop per node");
            }
        }
        let owned = router.clone();
        let monitor = IpMonitor::start(router, "route", move |lines| {
            let mut copied = [None, None];
            sync(&owned, &mut copied);
            // Ends when the monitor is stopped.
            for _ in lines {
                sync(&owned, &mut copied);
            }
        })
        .expect("run ip monitor");
        ResilientSync { _monitor: monitor }
    }
}

/// One pass of [`ResilientSync`]: `copied` holds the paths last copied
/// per family (`None` before the group exists).
fn sync(router: &Ns, copied: &mut [Option<BTreeSet<usize>>; 2]) {
    for (k, (flag, vip, group, offset)) in [("-4", VIP4, "100", 0), ("-6", VIP6, "200", 10)]
        .into_iter()
        .enumerate()
    {
        let Ok(staged) = router_ip(
            router,
            &[flag, "route", "show", "table", STAGING_TABLE, vip],
        ) else {
            continue;
        };
        let paths: BTreeSet<usize> = nodes_on(&staged).into_iter().collect();
        if copied[k].as_ref() == Some(&paths) {
            continue;
        }
        let result = if paths.is_empty() {
            // A group cannot be empty: the route goes, the group stays.
            let _ = router_ip(router, &[flag, "route", "del", vip]);
            Ok(String::new())
        } else {
            let members: Vec<String> = paths.iter().map(|p| (p + offset).to_string()).collect();
            let members = members.join("/");
            let verb = if copied[k].is_some() {
                "replace"
            } else {
                "add"
            };
            let idle = IDLE_TIMER_S.to_string();
            router_ip(
                router,
                &[
                    "nexthop",
                    verb,
                    "id",
                    group,
                    "group",
                    &members,
                    "type",
                    "resilient",
                    "buckets",
                    BUCKETS,
                    "idle_timer",
                    &idle,
                    "unbalanced_timer",
                    "0",
                ],
            )
            .and_then(|_| router_ip(router, &[flag, "route", "replace", vip, "nhid", group]))
        };
        match result {
            Ok(_) => copied[k] = Some(paths),
            Err(e) => eprintln!("resilient sync: {e}"),
        }
    }
}

/// `ip -n ROUTER args...`; its stdout, or its stderr as the error.
fn router_ip(router: &Ns, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("ip")
        .args(["-n", &router.name])
        .args(args)
        .output()
        .map_err(|e| format!("run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// How often a long-lived connection checks it still reaches its node.
const PING_EVERY: Duration = Duration::from_millis(500);
/// An unanswered ping counts as a broken connection after this long.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after a route change every broken long-lived connection has
/// noticed: a ping, its timeout, and a margin.
pub const BREAK_NOTICED: Duration =
    Duration::from_millis(PING_EVERY.as_millis() as u64 + PING_TIMEOUT.as_millis() as u64 + 500);

/// One long-lived connection: which node's server greeted it, and whether
/// it broke (a reset, an end, or an unanswered ping).
#[derive(Debug, Clone)]
pub struct LongLivedConn {
    pub family: Family,
    pub node: String,
    pub broken: bool,
}

/// Long-lived connections from the client, each sending a byte every
/// [`PING_EVERY`] and waiting for its echo; traffic also keeps their
/// buckets of a resilient group busy.
pub struct LongLived {
    conns: std::sync::Arc<std::sync::Mutex<Vec<LongLivedConn>>>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LongLived {
    fn open(client: &Ns, per_family: usize) -> LongLived {
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (ready, opened) = std::sync::mpsc::channel();
        let (client, shared) = (client.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            netns_thread::enter(&client);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut pingers = Vec::new();
                for family in [Family::V4, Family::V6] {
                    for _ in 0..per_family {
                        let (node, stream) = match open_one(family.vip()).await {
                            Ok((node, stream)) => (node, Some(stream)),
                            Err(e) => (format!("failed: {e}"), None),
                        };
                        let slot = {
                            let mut all = shared.lock().unwrap();
                            all.push(LongLivedConn {
                                family,
                                node,
                                broken: stream.is_none(),
                            });
                            all.len() - 1
                        };
                        if let Some(stream) = stream {
                            let (shared, stopped) = (shared.clone(), stopped.clone());
                            pingers.push(tokio::spawn(ping(stream, slot, shared, stopped)));
                        }
                    }
                }
                let _ = ready.send(());
                for pinger in pingers {
                    let _ = pinger.await;
                }
            });
        });
        opened
            .recv_timeout(Duration::from_secs(60))
            .expect("the long-lived connections open");
        LongLived {
            conns,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The connections as they are now.
    pub fn now(&self) -> Vec<LongLivedConn> {
        self.conns.lock().unwrap().clone()
    }

    /// Stops pinging, closes every connection, and returns their fate.
    pub fn finish(mut self) -> Vec<LongLivedConn> {
        self.stop_all();
        self.now()
    }

    fn stop_all(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LongLived {
    fn drop(&mut self) {
        self.stop_all();
    }
}

async fn open_one(
    vip: SocketAddr,
) -> std::io::Result<(String, tokio::io::BufReader<tokio::net::TcpStream>)> {
    use tokio::io::AsyncBufReadExt;
    let stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(vip))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let mut stream = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok((line.trim().to_owned(), stream))
}

async fn ping(
    mut stream: tokio::io::BufReader<tokio::net::TcpStream>,
    slot: usize,
    shared: std::sync::Arc<std::sync::Mutex<Vec<LongLivedConn>>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(PING_EVERY) => {}
        }
        let echoed = tokio::time::timeout(PING_TIMEOUT, async {
            stream.get_mut().write_all(b"p").await?;
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await
        })
        .await;
        if !matches!(echoed, Ok(Ok(_))) {
            shared.lock().unwrap()[slot].broken = true;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    /// The ECMP nodes run a config `coexist check` accepts (see the lab's
    /// `node_configs_are_valid`).
    #[test]
    fn node_config_is_valid() {
        let dir = std::path::Path::new("/run/coexist-test");
        let config = super::node_config(&dir.join("bird.ctl"), &dir.join("control.sock"));
        let text = config.to_toml();
        if let Err(e) = lb::config::parse(&text, "node.toml") {
            panic!("{e}\n{text}");
        }
    }
}

/// Two BIRD `HH:MM:SS.mmm` times at most 100 ms apart.
fn same_moment(a: &str, b: &str) -> bool {
    fn millis(t: &str) -> Option<i64> {
        let mut parts = t.split(':');
        let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
        let seconds: f64 = s.parse().ok()?;
        Some(
            (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60) * 1000
                + (seconds * 1000.0).round() as i64,
        )
    }
    match (millis(a), millis(b)) {
        (Some(a), Some(b)) => (a - b).abs() <= 100,
        _ => false,
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    fn session(since: &str) -> Vec<(String, String, String)> {
        vec![("n1_v4".into(), "Established".into(), since.into())]
    }

    // Input: BIRD's since read twice a millisecond apart, then a session
    // that came back two seconds later. Output: the same, then not.
    #[test]
    fn a_millisecond_of_jitter_is_not_a_reset() {
        let before = session("09:42:35.679");
        assert!(EcmpLab::sessions_unchanged(
            &before,
            &session("09:42:35.680")
        ));
        assert!(!EcmpLab::sessions_unchanged(
            &before,
            &session("09:42:37.680")
        ));
        assert!(EcmpLab::sessions_unchanged(
            &session("established 1 times"),
            &session("established 1 times")
        ));
        assert!(!EcmpLab::sessions_unchanged(
            &session("established 1 times"),
            &session("established 2 times")
        ));
    }
}
