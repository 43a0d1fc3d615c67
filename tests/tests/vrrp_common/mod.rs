//! The segment every VRRP namespace test uses, and helpers to run coexist
//! and keepalived nodes on it.
//!
//! ```text
//!   node1 (eth0: 10.77.0.1/24, fd77::1/64) ──┐
//!   node2 (eth0: 10.77.0.2/24, fd77::2/64) ──┤ br0 in "sw"
//!   client (eth0: 10.77.0.100/24, fd77::100/64) ┘
//!   virtual addresses: 10.77.0.10/24, fd77::10/64
//! ```
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use coexist_support::config::{Config, Vrrp};
use coexist_support::wait_until;
use coexist_tests::lab::clock::now_ns;
use coexist_tests::lab::vip_watch::VipWatch;
use coexist_tests::netns::{Lab, Ns, Process};

pub const VIP4: &str = "10.77.0.10";
pub const VIP6: &str = "fd77::10";

/// Timing figures are measured one test at a time: two cores shared by
/// parallel tests would measure the scheduler, not VRRP.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Segment {
    pub nodes: [Ns; 2],
    pub client: Ns,
    pub dir: tempfile::TempDir,
    /// Each node's address changes as the kernel reports them, for
    /// [`Segment::wait_holds`]' timing.
    vips: [Option<VipWatch>; 2],
    // Last: dropped after the processes above are gone.
    pub lab: Lab,
}

pub fn segment(tag: &str) -> Segment {
    let mut lab = Lab::new(tag);
    let sw = lab.switch("sw");
    let n1 = lab.ns("n1");
    let n2 = lab.ns("n2");
    let client = lab.ns("cl");
    for (i, (ns, port)) in [(&n1, "p1"), (&n2, "p2"), (&client, "pc")]
        .into_iter()
        .enumerate()
    {
        lab.plug(ns, "eth0", &sw, port);
        let host = [1, 2, 100][i];
        lab.addr(ns, "eth0", &format!("10.77.0.{host}/24"));
        lab.addr(ns, "eth0", &format!("fd77::{host}/64"));
    }
    let vips = [VipWatch::start(&n1), VipWatch::start(&n2)];
    Segment {
        nodes: [n1, n2],
        client,
        vips,
        dir: tempfile::tempdir().expect("temp dir"),
        lab,
    }
}

/// One VRRPv3 `[[vrrp]]` section on eth0.
pub fn vr(name: &str, vrid: u8, priority: u8, interval: Duration, address: &str) -> Vrrp {
    Vrrp {
        priority: Some(priority),
        advert_interval: Some(interval),
        version: Some(3),
        ..Vrrp::new(name, "eth0", vrid, &[address])
    }
}

/// A node's config: these instances, the admin endpoint on its loopback.
pub fn coexist_config(instances: Vec<Vrrp>) -> String {
    Config {
        vrrp: instances,
        ..Config::with_admin("127.0.0.1:9100".parse().expect("address"))
    }
    .to_toml()
}

impl Segment {
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Starts coexist on node `i` (0 or 1) with `config`; its log is
    /// `<name>.log` in the test's directory.
    pub fn coexist(&self, i: usize, name: &str, config: &str) -> Process {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("write config");
        let binary = coexist_tests::daemon::coexist_binary();
        let path = path.to_str().expect("utf-8 path").to_owned();
        self.lab.spawn(
            &self.nodes[i],
            &binary,
            &["run", "--config", &path],
            &self.log_path(name),
        )
    }

    /// Starts keepalived (VRRP only, foreground, logging to the console)
    /// on node `i` with its own config and pid files.
    pub fn keepalived(&self, i: usize, name: &str, config: &str) -> Process {
        let d = self.dir.path();
        let conf = d.join(format!("{name}.conf"));
        std::fs::write(&conf, config).expect("write keepalived config");
        let s = |p: PathBuf| p.to_str().expect("utf-8 path").to_owned();
        let args = [
            "--vrrp".to_owned(),
            "--dont-fork".to_owned(),
            "--log-console".to_owned(),
            "--log-detail".to_owned(),
            format!("--use-file={}", s(conf)),
            format!("--pid={}", s(d.join(format!("{name}.pid")))),
            format!("--vrrp_pid={}", s(d.join(format!("{name}.vrrp.pid")))),
            format!(
                "--checkers_pid={}",
                s(d.join(format!("{name}.checkers.pid")))
            ),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let binary = keepalived_path().expect("keepalived installed");
        self.lab
            .spawn(&self.nodes[i], &binary, &args, &self.log_path(name))
    }

    pub fn holds(&self, i: usize, vip: &str) -> bool {
        let vip: IpAddr = vip.parse().expect("address");
        self.lab.addresses(&self.nodes[i], "eth0").contains(&vip)
    }

    /// Polls every 2 ms until node `i` holds `vip`; the time since `from`.
    pub fn wait_holds(
        &self,
        i: usize,
        vip: &str,
        from: Instant,
        limit: Duration,
    ) -> Option<Duration> {
        let left = limit.saturating_sub(from.elapsed());
        let polled = wait_until(left, Duration::from_millis(2), || self.holds(i, vip))
            .map(|_| from.elapsed())?;
        // A poll starts `ip`, which on a loaded machine takes long enough
        // to time a takeover hundreds of milliseconds late; the monitor
        // heard of the address when it was added.
        let Some(vips) = &self.vips[i] else {
            return Some(polled);
        };
        let from_ns = now_ns().saturating_sub(from.elapsed().as_nanos() as u64);
        let polled_ms = polled.as_secs_f64() * 1e3;
        vips.earlier(vip, from_ns, Some(polled_ms))
            .map(|ms| Duration::from_secs_f64(ms / 1e3))
    }

    pub fn wait_released(&self, i: usize, vip: &str, limit: Duration) -> bool {
        wait_until(limit, Duration::from_millis(5), || !self.holds(i, vip)).is_some()
    }

    /// Asserts node `i` alone holds `vip`, continuously for `period`.
    pub fn assert_sole_holder(&self, i: usize, vip: &str, period: Duration, logs: &[&str]) {
        let start = Instant::now();
        while start.elapsed() < period {
            assert!(
                self.holds(i, vip) && !self.holds(1 - i, vip),
                "node{} should be the only holder of {vip}: node1 {} node2 {}\n{}",
                i + 1,
                self.holds(0, vip),
                self.holds(1, vip),
                self.logs(logs)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Makes the client resolve `vip` (a UDP datagram to the discard
    /// port needs its link-layer address) and returns the MAC it learnt.
    pub fn resolve(&self, vip: &str) -> Option<String> {
        let script = format!("echo x > /dev/udp/{vip}/9");
        for _ in 0..50 {
            let _ = self.lab.try_exec(&self.client, &["bash", "-c", &script]);
            if let Some(mac) = self
                .lab
                .neighbour(&self.client, vip)
                .filter(|m| !m.is_empty())
            {
                return Some(mac);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn logs(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|n| format!("--- {n} ---\n{}", self.log(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// keepalived as Debian installs it; found on PATH or in the sbin
/// directories, which a non-root PATH often lacks.
pub fn keepalived_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("keepalived"))
        .find(|p| p.is_file())
}

pub fn keepalived_installed() -> bool {
    keepalived_path().is_some()
}

/// Whether `program`, a peer `test` runs beside coexist, is `installed`;
/// when not, the test is skipped (saying so), or fails under
/// `COEXIST_REQUIRE_NETNS=1`, where every peer must be there.
pub fn peer_available(test: &str, program: &str, installed: bool) -> bool {
    if installed {
        return true;
    }
    let require = coexist_tests::netns::REQUIRE_ENV;
    assert!(
        std::env::var(require).as_deref() != Ok("1"),
        "{test}: {program} is required ({require}=1) but is not installed"
    );
    eprintln!("SKIP {test}: {program} is not installed");
    false
}

/// Master_Down_Interval (RFC 9568 §6.1) for a v3 backup of `priority`.
pub fn master_down_interval(interval: Duration, priority: u8) -> Duration {
    interval * 3 + skew_time(interval, priority)
}

pub fn skew_time(interval: Duration, priority: u8) -> Duration {
    interval * (256 - u32::from(priority)) / 256
}

/// Discard lines coexist logs for packets it could not accept.
pub fn coexist_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("VRRP packet discarded"))
        .collect()
}

/// Log lines of the vrrp crate or of lb's VRRP manager that do not say
/// which instance (or, for the shared socket of an interface, which
/// interface) they are about.
pub fn vrrp_lines_without_instance(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" vrrp::") || l.contains(" lb::ha:"))
        .filter(|l| {
            !(l.contains("vrrp{instance=")
                || l.contains("vrrp_link{interface=")
                || (l.contains(" lb::ha:") && l.contains(" instance=")))
        })
        .collect()
}

/// Lines where keepalived complains about a received packet's format or
/// checksum. Addresses are left out of the match: a random link-local
/// such as `fe80::…:8bad` once read as the word "bad".
pub fn keepalived_complaints(log: &str) -> Vec<&str> {
    const WORDS: [&str; 8] = [
        "checksum",
        "invalid",
        "header check",
        "ttl",
        "bad ",
        "malformed",
        "mismatch",
        "wrong",
    ];
    log.lines()
        .filter(|l| {
            let words = without_addresses(l).to_ascii_lowercase();
            WORDS.iter().any(|w| words.contains(w))
        })
        .collect()
}

/// `line` with every whitespace-separated token that is an IP address
/// (trailing punctuation aside) removed.
fn without_addresses(line: &str) -> String {
    line.split_whitespace()
        .filter(|token| {
            let bare = token.trim_end_matches([',', ':', ';', '.', ')']);
            bare.parse::<std::net::IpAddr>().is_err()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn an_address_is_not_a_complaint() {
    let heard = "(vi) Master received advert from fe80::d0f9:d2ff:fe6b:8bad with higher priority 200, ours 100";
    assert!(keepalived_complaints(heard).is_empty());
    let complaint = "(vi) bad checksum from fe80::1, ignoring";
    assert_eq!(keepalived_complaints(complaint), vec![complaint]);
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
