//! One coexist node alone in a namespace, with a frontend, a checked
//! backend of two servers and a VRRP instance that becomes master (no peer
//! answers): the tests that look at what the daemon shows (status page,
//! metrics for the dashboards) run it.
//!
//! ```text
//!   namespace cx-<pid>-<tag>-node (the calling thread enters it)
//!     lo 127.0.0.1 / ::1: frontend "web" → backend "pool" (two servers)
//!     eth0 10.78.0.1/24 ── br0 in "sw"   VRRP "front", vrid 61, VIP 10.78.0.10/24
//! ```

use std::net::SocketAddr;

use crate::daemon::DaemonProcess;
use crate::netns::Lab;
use crate::netns_thread;
use crate::ports::{free_port, v4};

/// The node's own address on eth0.
pub const ADDRESS: &str = "10.78.0.1/24";
/// The virtual address of VRRP instance "front".
pub const VIP: &str = "10.78.0.10/24";
/// The frontend's `max_connections`.
pub const MAX_CONNECTIONS: usize = 500;

/// The node's config: frontend "web" on 127.0.0.1 and ::1 port `listen`,
/// backend "pool" with fast TCP checks (rise 1, fall 1) on `servers`
/// (name, address), VRRP instance "front" on eth0.
pub fn config(listen: u16, admin: SocketAddr, servers: [(&str, SocketAddr); 2]) -> String {
    let [(n1, a1), (n2, a2)] = servers;
    format!(
        r#"
[admin]
listen = "{admin}"

[[frontend]]
name = "web"
listen = ["127.0.0.1:{listen}", "[::1]:{listen}"]
backend = "pool"
max_connections = {MAX_CONNECTIONS}

[[backend]]
name = "pool"
health_check = {{ kind = "tcp", interval = "200ms", timeout = "100ms", rise = 1, fall = 1 }}
servers = [
  {{ name = "{n1}", address = "{a1}" }},
  {{ name = "{n2}", address = "{a2}" }},
]

[[vrrp]]
name = "front"
interface = "eth0"
vrid = 61
priority = 150
advert_interval = "100ms"
addresses = ["{VIP}"]
"#
    )
}

/// The daemon of the node, started and ready, and where it listens.
pub struct Node {
    pub daemon: DaemonProcess,
    /// The port of frontend "web" on 127.0.0.1 and ::1.
    pub listen: u16,
    pub admin: SocketAddr,
}

/// Starts the daemon on [`config`] with free ports. Call it inside
/// [`run`]'s body (it blocks in place while the daemon starts).
pub fn start(servers: [(&str, SocketAddr); 2]) -> Node {
    let listen = free_port();
    let admin = v4(free_port());
    let daemon =
        tokio::task::block_in_place(|| DaemonProcess::start_ready(&config(listen, admin, servers)));
    Node {
        daemon,
        listen,
        admin,
    }
}

/// Makes lab `tag` with the node, moves the calling thread into it, and
/// runs `body` on a tokio runtime built there (its worker threads, and
/// every process the body starts, live in the namespace). Removes the lab
/// afterwards.
pub fn run<F: std::future::Future>(tag: &str, body: impl FnOnce() -> F) -> F::Output {
    let mut lab = Lab::new(tag);
    let sw = lab.switch("sw");
    let node = lab.ns("node");
    lab.plug(&node, "eth0", &sw, "p1");
    lab.addr(&node, "eth0", ADDRESS);
    let output = netns_thread::block_on_inside(&node, body);
    drop(lab);
    output
}
