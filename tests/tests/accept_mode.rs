//! `accept_mode` on a real kernel (RFC 9568 §6.4.3): a master that is not
//! the address owner takes only its frontends' traffic to the virtual
//! addresses unless accept mode is on; its nftables table goes with the
//! daemon, and a table a killed daemon left behind is replaced at start.
//!
//! ```text
//!   ns "cl"  eth0 10.77.19.2/24, fd77:19::2/64
//!      │ connects to VIP:80 (a frontend), VIP:2222 (not one), node:2222
//!   ns "n"   eth0 10.77.19.1/24, fd77:19::1/64
//!      coexist, alone on the link: master (priority 150, not the owner)
//!        of 10.77.19.10/24 and fd77:19::10/64
//!        frontend "web" 10.77.19.10:80, [fd77:19::10]:80 ──► 127.0.0.1:9000 ("backend")
//!      admin endpoint 127.0.0.1:9100 (coexist status)
//!      another service on [::]:2222, both families ("other"), as sshd would be
//! ```

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coexist_support::config::{Backend, Config, Frontend, Server, Vrrp};
use coexist_support::wait_until;
use coexist_tests::daemon::{coexist_binary, READY_LINE};
use coexist_tests::dns::tools_or_skip;
use coexist_tests::netns::{enter_or_skip, Lab, Ns, Process};
use coexist_tests::netns_thread;

const VIP4: &str = "10.77.19.10";
const VIP6: &str = "fd77:19::10";
const NODE4: &str = "10.77.19.1";
const FRONTEND_PORT: u16 = 80;
const OTHER_PORT: u16 = 2222;
const BACKEND: &str = "127.0.0.1:9000";
/// In the node's namespace: no other test's daemon listens there.
const ADMIN: &str = "127.0.0.1:9100";

fn config(accept_mode: bool) -> String {
    let vrrp = |name: &str, vrid: u8, address: &str| Vrrp {
        priority: Some(150),
        advert_interval: Some(Duration::from_millis(100)),
        accept_mode: Some(accept_mode),
        ..Vrrp::new(name, "eth0", vrid, &[address])
    };
    let listen = [VIP4, VIP6].map(|vip| SocketAddr::new(vip.parse().unwrap(), FRONTEND_PORT));
    Config {
        frontends: vec![Frontend::new("web", listen, "pool")],
        backends: vec![Backend::new(
            "pool",
            [Server::named("b", BACKEND.parse().unwrap())],
        )],
        vrrp: vec![
            vrrp("v4", 51, &format!("{VIP4}/24")),
            vrrp("v6", 52, &format!("{VIP6}/64")),
        ],
        ..Config::with_admin(ADMIN.parse().unwrap())
    }
    .to_toml()
}

/// TCP listeners inside a namespace that write `greeting` to every
/// connection, until dropped (or a minute passes).
struct Greeter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Greeter {
    fn start(ns: &Ns, addresses: &[&str], greeting: &'static str) -> Greeter {
        let ns = ns.clone();
        let addresses: Vec<SocketAddr> = addresses.iter().map(|a| a.parse().unwrap()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            netns_thread::enter(&ns);
            let listeners: Vec<TcpListener> = addresses
                .iter()
                .map(|a| {
                    let l = TcpListener::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}"));
                    l.set_nonblocking(true).unwrap();
                    l
                })
                .collect();
            ready_tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                for l in &listeners {
                    if let Ok((mut stream, _)) = l.accept() {
                        use std::io::Write as _;
                        let _ = stream.write_all(greeting.as_bytes());
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        ready.recv().expect("greeter bound");
        Greeter {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from `ns` to `ip:port` and reads the greeting. A dropped SYN
/// is `Err(TimedOut)`.
fn greeting(ns: &Ns, ip: &str, port: u16) -> std::io::Result<String> {
    let ns = ns.clone();
    let address = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port);
    std::thread::spawn(move || {
        netns_thread::enter(&ns);
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(1500))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })
    .join()
    .expect("client thread")
}

struct Node {
    lab: Lab,
    node: Ns,
    client: Ns,
    dir: tempfile::TempDir,
}

impl Node {
    fn new(tag: &str) -> Node {
        let mut lab = Lab::new(tag);
        let node = lab.ns("n");
        let client = lab.ns("cl");
        lab.veth(&node, "eth0", &client, "eth0");
        lab.addr(&node, "eth0", &format!("{NODE4}/24"));
        lab.addr(&node, "eth0", "fd77:19::1/64");
        lab.addr(&client, "eth0", "10.77.19.2/24");
        lab.addr(&client, "eth0", "fd77:19::2/64");
        Node {
            lab,
            node,
            client,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Starts coexist and waits until it is master of both addresses.
    fn coexist(&self, name: &str, config: &str) -> Process {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let process = self.lab.spawn(
            &self.node,
            &coexist_binary(),
            &["run", "--config", path.to_str().unwrap()],
            &self.dir.path().join(format!("{name}.log")),
        );
        let vips: [IpAddr; 2] = [VIP4.parse().unwrap(), VIP6.parse().unwrap()];
        let master = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.log(name).contains(READY_LINE) && {
                let held = self.lab.addresses(&self.node, "eth0");
                vips.iter().all(|v| held.contains(v))
            }
        });
        assert!(master.is_some(), "not master; log:\n{}", self.log(name));
        process
    }

    /// `nft list table inet coexist` in the node, `None` when there is none.
    fn table(&self) -> Option<String> {
        let out = self
            .lab
            .try_exec(&self.node, &["nft", "list", "table", "inet", "coexist"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn stop(&self, mut process: Process, name: &str) {
        process.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(
            process.wait_exit(Duration::from_secs(10)).is_some(),
            "coexist did not stop; log:\n{}",
            self.log(name)
        );
    }
}

/// RFC 9568 §6.4.3: without Accept_Mode a non-owner master does not
/// accept packets to the virtual addresses; coexist still serves its
/// frontends on them. The table goes when the daemon stops.
#[test]
fn without_accept_mode_only_the_frontends_are_served_on_the_virtual_addresses() {
    let test = "without_accept_mode_only_the_frontends_are_served_on_the_virtual_addresses";
    if !enter_or_skip(test) || !tools_or_skip(test, &["nft"]) {
        return;
    }
    let n = Node::new("refuse");
    let _backend = Greeter::start(&n.node, &[BACKEND], "backend");
    let _other = Greeter::start(&n.node, &["[::]:2222"], "other");
    let coexist = n.coexist("refusing", &config(false));
    let table = n.table().expect("the accept filter's table is in place");

    for vip in [VIP4, VIP6] {
        assert_eq!(
            greeting(&n.client, vip, FRONTEND_PORT)
                .unwrap_or_else(|e| panic!("frontend on {vip}: {e}; log:\n{}", n.log("refusing"))),
            "backend"
        );
        let refused = greeting(&n.client, vip, OTHER_PORT);
        assert_eq!(
            refused.as_ref().map_err(std::io::Error::kind),
            Err(ErrorKind::TimedOut),
            "{vip}:{OTHER_PORT} must be dropped; table:\n{table}"
        );
    }
    // The service itself is up: only its virtual addresses are closed, and
    // only to the network (the node reaches them through lo).
    assert_eq!(greeting(&n.client, NODE4, OTHER_PORT).unwrap(), "other");
    assert_eq!(greeting(&n.node, VIP4, OTHER_PORT).unwrap(), "other");
    let status = n.lab.exec(
        &n.node,
        &[
            coexist_binary().to_str().unwrap(),
            "status",
            "--admin",
            ADMIN,
        ],
    );
    assert!(
        status.contains(&format!("ACCEPT FILTER    on (inet coexist): {VIP4}, {VIP6} take only {VIP4} tcp/80, {VIP6} tcp/80")),
        "{status}"
    );
    let counted = n.table().unwrap();
    assert!(
        !counted.contains("counter packets 0 "),
        "every drop chain counted its drops:\n{counted}"
    );

    n.stop(coexist, "refusing");
    assert_eq!(n.table(), None, "the table outlived the daemon");
}

/// With Accept_Mode the master takes every packet to its addresses. The
/// table a killed run left (SIGKILL: no cleanup) is removed at start; a
/// reload that turns accept mode off puts the filter in place.
#[test]
fn with_accept_mode_all_is_accepted_a_dead_runs_table_goes_and_a_reload_filters() {
    let test = "with_accept_mode_all_is_accepted_a_dead_runs_table_goes_and_a_reload_filters";
    if !enter_or_skip(test) || !tools_or_skip(test, &["nft"]) {
        return;
    }
    let n = Node::new("accept");
    let _backend = Greeter::start(&n.node, &[BACKEND], "backend");
    let _other = Greeter::start(&n.node, &["[::]:2222"], "other");
    let mut killed = n.coexist("killed", &config(false));
    killed.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(killed.wait_exit(Duration::from_secs(5)).is_some());
    assert!(n.table().is_some(), "SIGKILL left the table behind");
    assert!(
        greeting(&n.client, VIP4, OTHER_PORT).is_err(),
        "the stale table still drops"
    );

    let coexist = n.coexist("accepting", &config(true));
    assert_eq!(n.table(), None, "the dead run's table is still there");
    let status = n.lab.exec(
        &n.node,
        &[
            coexist_binary().to_str().unwrap(),
            "status",
            "--admin",
            ADMIN,
        ],
    );
    assert!(status.contains("ACCEPT FILTER    off"), "{status}");
    for vip in [VIP4, VIP6] {
        for (port, expected) in [(FRONTEND_PORT, "backend"), (OTHER_PORT, "other")] {
            let got = greeting(&n.client, vip, port)
                .unwrap_or_else(|e| panic!("{vip}:{port}: {e}; log:\n{}", n.log("accepting")));
            assert_eq!(got, expected, "{vip}:{port}");
        }
    }

    // A reload that turns accept mode off installs the table.
    std::fs::write(n.dir.path().join("accepting.toml"), config(false)).unwrap();
    coexist.signal(nix::sys::signal::Signal::SIGHUP);
    let installed = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        n.table().is_some()
    });
    assert!(
        installed.is_some(),
        "no table after the reload; log:\n{}",
        n.log("accepting")
    );
    assert_eq!(greeting(&n.client, VIP4, FRONTEND_PORT).unwrap(), "backend");
    assert_eq!(
        greeting(&n.client, VIP4, OTHER_PORT).map_err(|e| e.kind()),
        Err(ErrorKind::TimedOut)
    );
    n.stop(coexist, "accepting");
    assert_eq!(n.table(), None);
}
