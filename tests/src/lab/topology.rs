//! The lab's network: namespaces, segments, addresses, and the processes
//! that run in them (two coexist nodes, five servers, clients).
//!
//! ```text
//!  client4 (10.231.1.100)        client6 (fd00:231:1::100)
//!           \                        /
//!            -- front (dual-stack): VIP4 10.231.1.10, VIP6 fd00:231:1::10 --
//!            |                                   |
//!     node1 eth0 .1 / ::1                 node2 eth0 .2 / ::2
//!       eth1 fd00:231:2::1                  eth1 fd00:231:2::2
//!       eth2 10.231.3.1, fd00:231:3::1      eth2 10.231.3.2, fd00:231:3::2
//!            |                                   |
//!            -- back (IPv6 only) --------------------
//!            |  srv1 ::11   srv2 ::12   srv3 ::13          frontend "web" :80
//!            |  (each also runs BIND 9 on :53)             frontend "dns" udp :53
//!            -- pool (dual-stack) ------------------
//!               srv4 .14 / ::14   srv5 .15 / ::15          frontend "dual" :8080
//! ```
//!
//! The addresses are private ranges, used only inside the namespaces.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use coexist_support::config::{
    Backend, Config, Frontend, HealthCheck, Server, Track, Tuning, Vrrp,
};

use super::dns;
use super::load::ClientRun;
use crate::netns::{Lab, Ns, Process};

pub const VIP4: &str = "10.231.1.10";
pub const VIP6: &str = "fd00:231:1::10";
pub const WEB_PORT: u16 = 80;
pub const DUAL_PORT: u16 = 8080;
/// The IPv6-only servers behind frontend "web".
pub const WEB_SERVERS: [&str; 3] = ["srv1", "srv2", "srv3"];
/// The dual-stack servers behind frontend "dual".
pub const DUAL_SERVERS: [&str; 2] = ["srv4", "srv5"];
/// node1 is the preferred master; a failed track takes it below node2.
pub const PRIORITIES: [u8; 2] = [150, 100];
pub const TRACK_WEIGHT: u8 = 60;
/// The admin endpoint of each node, on its own loopback.
pub const ADMIN: &str = "127.0.0.1:9100";

pub fn vip4(port: u16) -> SocketAddr {
    SocketAddr::new(VIP4.parse().expect("VIP4"), port)
}

pub fn vip6(port: u16) -> SocketAddr {
    SocketAddr::new(VIP6.parse().expect("VIP6"), port)
}

/// A node's configuration; `web_weights` lets the reload row change it.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub priority: u8,
    pub advert: Duration,
    pub web_weights: [u32; 3],
}

/// The coexist config of a node: frontends on both VIPs (listening while
/// backup, so a takeover serves at once), an IPv6-only backend and a
/// dual-stack one, and one VRRP instance per family tracking "web".
pub fn node_config(c: &NodeConfig) -> String {
    let ms = Duration::from_millis;
    let web = WEB_SERVERS.iter().enumerate().map(|(i, name)| {
        let address = SocketAddr::new(back_address(i).into(), WEB_PORT);
        Server::named(name, address).weight(c.web_weights[i])
    });
    let dual = DUAL_SERVERS.iter().enumerate().flat_map(|(i, name)| {
        let host = 14 + i;
        let v4 = addr(&format!("10.231.3.{host}:80"));
        let v6 = addr(&format!("[fd00:231:3::{host}]:80"));
        [
            Server::named(&format!("{name}-v4"), v4),
            Server::named(&format!("{name}-v6"), v6),
        ]
    });
    let dns_servers = WEB_SERVERS.iter().enumerate().map(|(i, name)| {
        Server::named(
            &dns_server(name),
            SocketAddr::new(back_address(i).into(), dns::DNS_PORT),
        )
    });
    let backend = |name: &str, servers: Vec<Server>| Backend {
        balance: Some("round-robin".into()),
        connect_timeout: Some(ms(500)),
        retries: Some(2),
        health_check: Some(HealthCheck::every("tcp", ms(200), ms(150), 2, 2)),
        ..Backend::new(name, servers)
    };
    let vrrp = |name: &str, vrid: u8, address: String| Vrrp {
        priority: Some(c.priority),
        advert_interval: Some(c.advert),
        version: Some(3),
        preempt: Some(true),
        track: vec![Track {
            frontend: "web".into(),
            weight: TRACK_WEIGHT,
        }],
        ..Vrrp::new(name, "eth0", vrid, &[&address])
    };
    Config {
        tuning: Some(Tuning {
            shutdown_grace: Some(Duration::from_secs(2)),
            ..Tuning::default()
        }),
        frontends: vec![
            Frontend::new("web", [vip4(WEB_PORT), vip6(WEB_PORT)], "web"),
            Frontend::new("dual", [vip4(DUAL_PORT), vip6(DUAL_PORT)], "dual"),
            Frontend {
                udp_responses: Some(1),
                ..Frontend::udp("dns", [vip4(dns::DNS_PORT), vip6(dns::DNS_PORT)], "dns")
            },
        ],
        backends: vec![
            backend("web", web.collect()),
            backend("dual", dual.collect()),
            Backend {
                health_check: Some(HealthCheck {
                    query_name: Some(dns::WHOAMI.into()),
                    query_type: Some("TXT".into()),
                    expect_rcode: Some("NOERROR".into()),
                    ..HealthCheck::every("dns", ms(200), ms(150), 2, 2)
                }),
                // Only the UDP frontend uses it: no TCP connect to time.
                connect_timeout: None,
                ..backend("dns", dns_servers.collect())
            },
        ],
        vrrp: vec![
            vrrp("front-v4", 51, format!("{VIP4}/24")),
            vrrp("front-v6", 52, format!("{VIP6}/64")),
        ],
        ..Config::with_admin(ADMIN.parse().expect("admin address"))
    }
    .to_toml()
}

/// The DNS server on web server `name`, as the "dns" backend names it.
pub fn dns_server(name: &str) -> String {
    format!("{name}-dns")
}

/// The address of the `i`th IPv6-only server on the back segment.
fn back_address(i: usize) -> std::net::Ipv6Addr {
    format!("fd00:231:2::{}", 11 + i)
        .parse()
        .expect("a lab address")
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a lab address")
}

/// Where the lab finds its programs.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The `coexist` daemon.
    pub coexist: PathBuf,
    /// A binary that understands the hidden `serve` and `client`
    /// subcommands (the `coexist-lab` binary).
    pub helper: PathBuf,
}

/// The built network and everything running in it. Dropping it stops
/// every process and deletes every namespace.
pub struct Net {
    pub programs: Programs,
    pub dir: PathBuf,
    pub advert: Duration,
    pub client4: Ns,
    pub client6: Ns,
    pub nodes: [Ns; 2],
    pub servers: BTreeMap<String, Ns>,
    pub daemons: [Option<Process>; 2],
    pub server_procs: BTreeMap<String, Process>,
    starts: usize,
    // Last: dropped after the processes above are gone.
    pub lab: Lab,
}

impl Net {
    /// Makes the namespaces and links and gives every interface its
    /// addresses. Runs nothing yet.
    pub fn build(programs: Programs, dir: &Path, advert: Duration) -> Net {
        let mut lab = Lab::new("lab");
        let front = lab.switch("front");
        let back = lab.switch("back");
        let pool = lab.switch("pool");

        let client4 = lab.ns("client4");
        // IPv4 only: no IPv6 at all, not even link-local.
        lab.exec(
            &client4,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        lab.plug(&client4, "eth0", &front, "f-c4");
        lab.addr(&client4, "eth0", "10.231.1.100/24");

        // IPv6 only: no IPv4 address.
        let client6 = lab.ns("client6");
        lab.plug(&client6, "eth0", &front, "f-c6");
        lab.addr(&client6, "eth0", "fd00:231:1::100/64");

        let mut nodes = Vec::new();
        for n in 1..=2u8 {
            let node = lab.ns(&format!("node{n}"));
            // A link that goes down keeps its IPv6 addresses, as a
            // configured machine does; the lab takes links down on purpose.
            lab.exec(
                &node,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.keep_addr_on_down=1",
                    "net.ipv6.conf.default.keep_addr_on_down=1",
                ],
            );
            lab.plug(&node, "eth0", &front, &format!("f-n{n}"));
            lab.addr(&node, "eth0", &format!("10.231.1.{n}/24"));
            lab.addr(&node, "eth0", &format!("fd00:231:1::{n}/64"));
            lab.plug(&node, "eth1", &back, &format!("b-n{n}"));
            lab.addr(&node, "eth1", &format!("fd00:231:2::{n}/64"));
            lab.plug(&node, "eth2", &pool, &format!("p-n{n}"));
            lab.addr(&node, "eth2", &format!("10.231.3.{n}/24"));
            lab.addr(&node, "eth2", &format!("fd00:231:3::{n}/64"));
            nodes.push(node);
        }

        let mut servers = BTreeMap::new();
        for (i, name) in WEB_SERVERS.iter().enumerate() {
            let ns = lab.ns(name);
            lab.plug(&ns, "eth0", &back, &format!("b-{name}"));
            lab.addr(&ns, "eth0", &format!("fd00:231:2::{}/64", 11 + i));
            servers.insert((*name).to_owned(), ns);
        }
        for (i, name) in DUAL_SERVERS.iter().enumerate() {
            let ns = lab.ns(name);
            lab.plug(&ns, "eth0", &pool, &format!("p-{name}"));
            lab.addr(&ns, "eth0", &format!("10.231.3.{}/24", 14 + i));
            lab.addr(&ns, "eth0", &format!("fd00:231:3::{}/64", 14 + i));
            servers.insert((*name).to_owned(), ns);
        }
        let [node1, node2]: [Ns; 2] = nodes.try_into().expect("two nodes");
        Net {
            programs,
            dir: dir.to_owned(),
            advert,
            client4,
            client6,
            nodes: [node1, node2],
            servers,
            daemons: [None, None],
            server_procs: BTreeMap::new(),
            starts: 0,
            lab,
        }
    }

    fn helper(&self, ns: &Ns, args: &[&str], log: &str) -> Process {
        let log = self.dir.join(log);
        self.lab.spawn(ns, &self.programs.helper, args, &log)
    }

    /// Starts (or restarts) server `name`, listening on every address of
    /// its namespace.
    pub fn start_server(&mut self, name: &str) {
        let ns = self.servers[name].clone();
        let proc = self.helper(
            &ns,
            &["serve", "--name", name, "--listen", "[::]:80"],
            &format!("{name}.log"),
        );
        self.server_procs.insert(name.to_owned(), proc);
    }

    /// Starts (or restarts) BIND 9 on web server `name`, answering for
    /// `lab.` on its back-segment address.
    pub fn start_dns(&mut self, name: &str) -> anyhow::Result<()> {
        let i = WEB_SERVERS
            .iter()
            .position(|s| *s == name)
            .context("DNS runs on the IPv6-only servers")?;
        let named = program("named").context(
            "named is missing: install BIND 9 (apt-get install bind9), the lab's DNS server",
        )?;
        let conf = dns::write_named(
            &self.dir.join(format!("named-{name}")),
            name,
            back_address(i),
        )?;
        let args = dns::named_args(&conf);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ns = self.servers[name].clone();
        let log = self.dir.join(format!("named-{name}.log"));
        let proc = self.lab.spawn(&ns, &named, &args, &log);
        self.server_procs.insert(dns_server(name), proc);
        Ok(())
    }

    /// Kills server `name`'s process (SIGKILL), or its DNS server when
    /// `name` is [`dns_server`]`(server)`.
    pub fn kill_server(&mut self, name: &str) {
        if let Some(mut p) = self.server_procs.remove(name) {
            p.signal(nix::sys::signal::Signal::SIGKILL);
            p.wait_exit(Duration::from_secs(2));
        }
    }

    pub fn config_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("node{}.toml", node + 1))
    }

    pub fn node_config(&self, node: usize, web_weights: [u32; 3]) -> String {
        node_config(&NodeConfig {
            priority: PRIORITIES[node],
            advert: self.advert,
            web_weights,
        })
    }

    /// Writes the node's config (write + rename, as an editor does).
    pub fn write_config(&self, node: usize, text: &str) -> anyhow::Result<()> {
        let path = self.config_path(node);
        let tmp = path.with_extension("toml.new");
        std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))?;
        Ok(())
    }

    /// Starts `coexist run` on node `i` with its current config file; each
    /// start logs to its own file (`node1-2.log` for the second).
    pub fn start_daemon(&mut self, i: usize) -> PathBuf {
        self.starts += 1;
        let log = self.dir.join(format!("node{}-{}.log", i + 1, self.starts));
        let config = self.config_path(i);
        let config = config.to_str().expect("utf-8 path").to_owned();
        let proc = self.lab.spawn(
            &self.nodes[i],
            &self.programs.coexist,
            &["run", "--config", &config],
            &log,
        );
        self.daemons[i] = Some(proc);
        log
    }

    pub fn signal_daemon(&self, i: usize, signal: nix::sys::signal::Signal) {
        if let Some(p) = &self.daemons[i] {
            p.signal(signal);
        }
    }

    /// SIGKILLs node `i`'s daemon and reaps it.
    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(mut p) = self.daemons[i].take() {
            p.signal(nix::sys::signal::Signal::SIGKILL);
            p.wait_exit(Duration::from_secs(2));
        }
    }

    pub fn set_link(&self, node: usize, ifname: &str, up: bool) {
        self.lab.ip(
            &self.nodes[node],
            &["link", "set", ifname, if up { "up" } else { "down" }],
        );
    }

    /// Which VIPs node `i` holds on its front interface: (VIP4, VIP6).
    pub fn holds(&self, i: usize) -> (bool, bool) {
        let addrs = self.lab.addresses(&self.nodes[i], "eth0");
        let v4: IpAddr = VIP4.parse().expect("VIP4");
        let v6: IpAddr = VIP6.parse().expect("VIP6");
        (addrs.contains(&v4), addrs.contains(&v6))
    }

    /// The daemon's `/status` on node `i`, read with `coexist status`
    /// inside the node (its admin endpoint is on the node's loopback).
    pub fn status(&self, i: usize) -> anyhow::Result<lb::admin::status::Status> {
        let coexist = self.programs.coexist.to_str().context("utf-8 path")?;
        let out = self.lab.try_exec(
            &self.nodes[i],
            &[coexist, "status", "--admin", ADMIN, "--json"],
        );
        if !out.status.success() {
            bail!(
                "coexist status on node{}: {}",
                i + 1,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).context("coexist status --json")
    }

    /// Starts a client in `ns` against `target`; it runs until
    /// [`Client::finish`] or `limit`.
    pub fn client(&self, ns: &Ns, target: SocketAddr, limit: Duration) -> Client {
        self.spawn_client(ns, target, limit, &[])
    }

    /// Like [`Net::client`], asking DNS queries instead of opening
    /// connections.
    pub fn dns_client(&self, ns: &Ns, target: SocketAddr, limit: Duration) -> Client {
        self.spawn_client(ns, target, limit, &["--dns"])
    }

    fn spawn_client(&self, ns: &Ns, target: SocketAddr, limit: Duration, extra: &[&str]) -> Client {
        let tag = format!("client-{}-{}", ns.name, super::clock::now_ns());
        let out = self.dir.join(format!("{tag}.json"));
        let args = [
            "client".to_owned(),
            "--target".to_owned(),
            target.to_string(),
            "--duration-ms".to_owned(),
            limit.as_millis().to_string(),
            "--out".to_owned(),
            out.to_str().expect("utf-8 path").to_owned(),
        ];
        let args: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect();
        let process = self.helper(ns, &args, &format!("{tag}.log"));
        Client {
            process,
            out,
            log: self.dir.join(format!("{tag}.log")),
            limit,
        }
    }
}

/// A running client process.
pub struct Client {
    process: Process,
    out: PathBuf,
    log: PathBuf,
    limit: Duration,
}

impl Client {
    /// Stops opening connections (SIGTERM), waits for the open ones and
    /// reads the record.
    pub fn finish(self) -> anyhow::Result<ClientRun> {
        self.process.signal(nix::sys::signal::Signal::SIGTERM);
        self.collect()
    }

    /// Waits for the client to end by itself and reads the record.
    pub fn collect(mut self) -> anyhow::Result<ClientRun> {
        // Open connections get their own timeouts (3 s at most) after the
        // run ends.
        let status = self.process.wait_exit(self.limit + Duration::from_secs(10));
        match status {
            Some(s) if s.success() => {}
            other => bail!(
                "client failed ({other:?}): {}",
                std::fs::read_to_string(&self.log)
                    .unwrap_or_default()
                    .trim()
            ),
        }
        let text = std::fs::read(&self.out)
            .with_context(|| format!("client record {}", self.out.display()))?;
        serde_json::from_slice(&text).context("client record")
    }
}

/// Where `name` is installed: on the `PATH` or in `/usr/sbin` (not on
/// every root's `PATH`).
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// The lab's nodes run a config `coexist check` accepts: a rule added to
    /// validation that the lab's config breaks shows here, not in a lab run.
    #[test]
    fn node_configs_are_valid() {
        let c = super::NodeConfig {
            priority: 150,
            advert: Duration::from_millis(100),
            web_weights: [3, 1, 1],
        };
        let text = super::node_config(&c);
        if let Err(e) = lb::config::parse(&text, "node.toml") {
            panic!("{e}\n{text}");
        }
    }
}
