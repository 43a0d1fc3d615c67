//! The scale-out topology: a router running BIRD 2 spreads flows to a
//! virtual address over the coexist nodes announcing it by BGP (ECMP with
//! kernel L4 hashing), each node running coexist and its own BIRD.
//!
//! ```text
//!   ns "cl"   eth0 10.88.0.2/24, fd88::2/64            (IPv4 and IPv6 client)
//!      │
//!   ns "rt"   cl 10.88.0.1/24, fd88::1/64
//!             BIRD AS 65000: one BGP session per node and family, kernel
//!             export with `merge paths`, fib_multipath_hash_policy = 1 (L4)
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

pub struct EcmpLab {
    pub nodes: Vec<Node>,
    pub router: Ns,
    pub client: Ns,
    pub router_socket: PathBuf,
    router_bird: Option<Process>,
    shared_servers: Option<std::thread::JoinHandle<()>>,
    stop_shared: Option<tokio::sync::oneshot::Sender<()>>,
    pub dir: tempfile::TempDir,
    /// Last: dropping it removes the namespaces, after every process.
    pub lab: Lab,
}

impl EcmpLab {
    /// Builds the topology with `nodes` nodes running the daemon at
    /// `coexist` and starts everything; does not wait for BGP.
    pub fn start(tag: &str, nodes: usize, coexist: &Path) -> EcmpLab {
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

        let mut peers = String::new();
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
            peers.push_str(&format!(
                "protocol bgp {name}_v4 from node {{ neighbor 10.88.{index}.2 as 65001; ipv4 {{ import all; export none; }}; }}\n\
                 protocol bgp {name}_v6 from node {{ neighbor fd88:{index}::2 as 65001; ipv6 {{ import all; export none; }}; }}\n"
            ));
            built.push(start_node(&lab, dir.path(), ns, index, coexist));
        }
        let router_conf = dir.path().join("rt.conf");
        std::fs::write(
            &router_conf,
            format!(
                "{COMMON}router id 10.88.0.1;\n\
                 protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
                 protocol kernel {{ ipv6 {{ import none; export all; }}; merge paths on; }}\n\
                 template bgp node {{ local as 65000; {FAST_BGP} }}\n{peers}"
            ),
        )
        .unwrap();
        let router_socket = dir.path().join("rt.ctl");
        let router_bird = spawn_bird(
            &lab,
            &router,
            dir.path(),
            "rt",
            &router_conf,
            &router_socket,
        );
        EcmpLab {
            nodes: built,
            router,
            client,
            router_socket,
            router_bird: Some(router_bird),
            shared_servers: Some(shared_servers),
            stop_shared: Some(stop_shared),
            dir,
            lab,
        }
    }

    /// The nodes (1-based) the router's route to the VIP of `family` goes
    /// through now.
    pub fn paths(&self, family: Family) -> BTreeSet<usize> {
        let (flag, vip) = match family {
            Family::V4 => ("-4", VIP4),
            Family::V6 => ("-6", VIP6),
        };
        let out = self.lab.ip(&self.router, &[flag, "route", "show", vip]);
        let words: Vec<&str> = out.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[0] == "dev")
            .filter_map(|w| w[1].strip_prefix('n')?.parse().ok())
            .collect()
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

    /// Every BGP session of the router and how long it has been in its
    /// state, as `birdc show protocols` prints them: (name, state, since).
    pub fn router_sessions(&self) -> Vec<(String, String, String)> {
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
        let router = std::fs::read_to_string(self.dir.path().join("rt.bird.log"));
        out.push_str(&format!("--- router bird\n{}", router.unwrap_or_default()));
        out
    }
}

impl Drop for EcmpLab {
    fn drop(&mut self) {
        // Daemons first (their TUN devices and sockets), then the BIRDs.
        for node in &mut self.nodes {
            node.coexist.take();
            node.bird.take();
        }
        self.router_bird.take();
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
    let coexist = lab
        .spawn(
            &ns,
            coexist,
            &["run", "--config", config.to_str().unwrap()],
            &coexist_log,
        )
        .with_stop_grace(Duration::from_secs(5));
    let started =
        coexist_support::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::fs::read_to_string(&coexist_log)
                .unwrap_or_default()
                .contains(READY_LINE)
        });
    assert!(
        started.is_some(),
        "coexist on {name} did not start:\n{}",
        std::fs::read_to_string(&coexist_log).unwrap_or_default()
    );
    Node {
        name,
        ns,
        index,
        coexist: Some(coexist),
        bird: Some(bird),
        bird_socket,
        control_socket,
        coexist_log,
        server,
    }
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
