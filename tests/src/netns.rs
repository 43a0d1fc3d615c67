//! A small builder of network-namespace topologies for the tests and the
//! lab: namespaces named `cx-<pid>-<name>`, veth pairs, a bridge inside a
//! "switch" namespace, addresses, commands and processes inside a
//! namespace. [`Lab`] deletes everything it made when dropped, also when
//! a test panics: first every process still in its namespaces, then the
//! namespaces (which takes their interfaces with them).
//!
//! Needs CAP_NET_ADMIN: root, or a re-exec under `unshare -rnm` (see
//! [`enter_or_skip`]).

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Set in the child that [`enter_or_skip`] re-executes under `unshare`.
const CHILD_ENV: &str = "COEXIST_NETNS_CHILD";
/// The `sh -c` script that runs `"$0" "$@"` under `unshare -rnm` with a
/// private tmpfs on /run, where `ip netns` keeps its mount points.
pub const UNSHARED_RUN: &str = "mount -t tmpfs coexist-run /run && exec \"$0\" \"$@\"";
/// With `1`, a test that cannot get network namespaces fails.
pub const REQUIRE_ENV: &str = "COEXIST_REQUIRE_NETNS";

/// Decides where the calling test runs. `true`: run it here (root, or
/// already inside `unshare -rnm`). `false`: the test is done — it either
/// ran in a re-executed child under `unshare -rnm` (which passed; a
/// failure panics here), or it is skipped, with the reason printed. With
/// `COEXIST_REQUIRE_NETNS=1` a skip panics.
///
/// `test` is the test's full name as the harness filters it (for a test
/// function `foo` in an integration test file, `"foo"`).
pub fn enter_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() || std::env::var_os(CHILD_ENV).is_some() {
        if let Err(why) = check_ip_netns() {
            return skip(test, &why);
        }
        return true;
    }
    let usable = Command::new("unshare")
        .args(["-rnm", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        return skip(
            test,
            "not root, and `unshare -rnm` is not usable (user namespaces disabled?)",
        );
    }
    let exe = std::env::current_exe().expect("test binary path");
    // `ip netns add` needs to write /run/netns, which belongs to the real
    // root: give the child a /run of its own in its mount namespace.
    let status = Command::new("unshare")
        .args(["-rnm", "sh", "-c", UNSHARED_RUN])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .status()
        .expect("run the test under unshare -rnm");
    assert!(
        status.success(),
        "{test} failed under unshare -rnm ({status})"
    );
    false
}

fn check_ip_netns() -> Result<(), String> {
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`ip netns` fails: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `ip` (iproute2): {e}")),
    }
}

fn skip(test: &str, why: &str) -> bool {
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{test}: network namespaces required ({REQUIRE_ENV}=1) but unavailable: {why}");
    }
    eprintln!("SKIP {test}: {why}");
    false
}

/// A namespace of a [`Lab`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ns {
    /// The full name, as `ip netns` knows it.
    pub name: String,
}

/// A process started inside a namespace.
pub use coexist_support::Process;

/// Namespaces created by this process, removed on drop.
pub struct Lab {
    prefix: String,
    namespaces: Vec<Ns>,
}

impl Lab {
    /// `tag` keeps labs of concurrent tests in one process apart.
    pub fn new(tag: &str) -> Lab {
        Lab {
            prefix: prefix(tag),
            namespaces: Vec::new(),
        }
    }

    /// The start of every namespace name this lab makes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A new namespace with loopback up and IPv6 duplicate address
    /// detection off (addresses are usable at once).
    pub fn ns(&mut self, name: &str) -> Ns {
        let ns = Ns {
            name: format!("{}{name}", self.prefix),
        };
        run(Command::new("ip").args(["netns", "add", &ns.name]));
        self.namespaces.push(ns.clone());
        self.ip(&ns, &["link", "set", "lo", "up"]);
        self.exec(
            &ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        );
        ns
    }

    /// A namespace holding bridge `br0` (multicast snooping off, so VRRP
    /// multicast floods like on a plain switch).
    pub fn switch(&mut self, name: &str) -> Ns {
        let ns = self.ns(name);
        self.ip(
            &ns,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        );
        self.ip(&ns, &["link", "set", "br0", "up"]);
        ns
    }

    /// A veth pair `a_if` in `a` — `b_if` in `b`, both up.
    pub fn veth(&mut self, a: &Ns, a_if: &str, b: &Ns, b_if: &str) {
        self.ip(
            a,
            &[
                "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
            ],
        );
        self.ip(a, &["link", "set", a_if, "up"]);
        self.ip(b, &["link", "set", b_if, "up"]);
    }

    /// Plugs `ns` into `switch`'s bridge through a veth: `ifname` in
    /// `ns`, `port` on the bridge.
    pub fn plug(&mut self, ns: &Ns, ifname: &str, switch: &Ns, port: &str) {
        self.veth(ns, ifname, switch, port);
        self.ip(switch, &["link", "set", port, "master", "br0"]);
    }

    /// Adds `cidr` (e.g. `10.77.0.1/24`) to `ifname` in `ns`.
    pub fn addr(&self, ns: &Ns, ifname: &str, cidr: &str) {
        self.ip(ns, &["addr", "add", cidr, "dev", ifname]);
    }

    /// `ip -n NS args...`; panics on failure with its stderr.
    pub fn ip(&self, ns: &Ns, args: &[&str]) -> String {
        let out = run(Command::new("ip").arg("-n").arg(&ns.name).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command inside `ns` and returns its output, whatever its
    /// exit status.
    pub fn try_exec(&self, ns: &Ns, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .output()
            .expect("run ip netns exec")
    }

    /// Runs a command inside `ns`; panics if it fails.
    pub fn exec(&self, ns: &Ns, args: &[&str]) -> String {
        let out = self.try_exec(ns, args);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `program args...` inside `ns` with stdout and stderr to
    /// `log`. `ip netns exec` execs the program, so the PID is its own.
    pub fn spawn(&self, ns: &Ns, program: &Path, args: &[&str], log: &Path) -> Process {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &ns.name])
            .arg(program)
            .args(args);
        let name = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Process::spawn(&name, &mut command, log)
            .unwrap_or_else(|e| panic!("spawn {} in {}: {e}", program.display(), ns.name))
    }

    /// Sends `signal` to every process inside `ns` (as a machine crash
    /// would stop them all, forked children included).
    pub fn signal_all(&self, ns: &Ns, signal: nix::sys::signal::Signal) {
        for pid in pids(ns) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// The addresses on `ifname` in `ns`, without prefix length.
    pub fn addresses(&self, ns: &Ns, ifname: &str) -> Vec<std::net::IpAddr> {
        let out = Command::new("ip")
            .args(["-n", &ns.name, "-o", "addr", "show", "dev", ifname])
            .output()
            .expect("run ip addr");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet" || *w == "inet6")?;
                words.next()?.split('/').next()?.parse().ok()
            })
            .collect()
    }

    /// The MAC of `ifname` in `ns`, as `ip` prints it.
    pub fn mac(&self, ns: &Ns, ifname: &str) -> String {
        let out = self.ip(ns, &["-o", "link", "show", "dev", ifname]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }

    /// The link-layer address `ns` has for `ip` in its neighbour table.
    pub fn neighbour(&self, ns: &Ns, ip: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["-n", &ns.name, "neigh", "show", ip])
            .output()
            .expect("run ip neigh");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        remove(&self.namespaces);
    }
}

/// The namespace prefix of a [`Lab`] made by this process with `tag`.
pub fn prefix(tag: &str) -> String {
    format!("cx-{}-{tag}-", std::process::id())
}

/// Kills the processes in, and deletes, every namespace whose name starts
/// with `prefix`: for a signal handler, which cannot reach the [`Lab`] to
/// drop it.
pub fn purge(prefix: &str) {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let names: Vec<String> = out
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(prefix))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let namespaces: Vec<Ns> = names.into_iter().map(|name| Ns { name }).collect();
    remove(&namespaces);
}

fn remove(namespaces: &[Ns]) {
    for ns in namespaces {
        for pid in pids(ns) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for ns in namespaces.iter().rev() {
        let _ = Command::new("ip")
            .args(["netns", "del", &ns.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn pids(ns: &Ns) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", &ns.name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}
