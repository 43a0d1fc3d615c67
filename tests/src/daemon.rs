//! Runs the `coexist` binary as a child process, as an operator would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use coexist_support::{wait_until, Process};

/// The `coexist` binary of this build.
///
/// `cargo test` never builds another package's binary, so the test command
/// is `cargo build -p lb && cargo test --workspace` (see README.md).
pub fn coexist_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/coexist; a binary of
    // this crate (coexist-soak) lives beside it in target/<profile>.
    let dir = exe.parent().expect("test binary lives in target/<profile>");
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>/deps has a parent")
    } else {
        dir
    };
    let binary = profile_dir.join("coexist");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p lb` before the tests",
        binary.display()
    );
    binary
}

/// Logged once every listener of the initial config is bound.
pub const READY_LINE: &str = "coexist running";

/// A program the daemon is started through; each execs it, so the
/// child's PID is the daemon's.
enum Wrapper {
    None,
    /// `taskset -c CPU`
    Cpu(u32),
    /// `prlimit --nofile=N:N`
    FdLimit(u64),
}

/// A `coexist run` child with its config file and captured log.
pub struct DaemonProcess {
    process: Process,
    dir: tempfile::TempDir,
}

impl DaemonProcess {
    /// Writes `config` to a file and starts `coexist run` on it.
    pub fn start(config: &str) -> Self {
        Self::start_with_args(config, &[])
    }

    /// Like [`Self::start`], with extra arguments for `coexist run`.
    pub fn start_with_args(config: &str, args: &[&str]) -> Self {
        Self::spawn(config, args, Wrapper::None)
    }

    /// Starts the daemon confined to one CPU (through `taskset`, which
    /// execs it, so the PID is the daemon's): it then runs its
    /// single-threaded scheduler.
    pub fn start_ready_on_one_cpu(config: &str) -> Self {
        Self::spawn(config, &[], Wrapper::Cpu(0)).ready()
    }

    /// Starts the daemon with at most `limit` open file descriptors
    /// (soft and hard RLIMIT_NOFILE, through `prlimit`, which execs it).
    pub fn start_ready_with_fd_limit(config: &str, limit: u64) -> Self {
        Self::spawn(config, &[], Wrapper::FdLimit(limit)).ready()
    }

    fn ready(self) -> Self {
        assert!(
            self.wait_log(READY_LINE, 1),
            "coexist did not start; log:\n{}",
            self.log()
        );
        self
    }

    fn spawn(config: &str, args: &[&str], wrapper: Wrapper) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("coexist.toml"), config).expect("write config");
        let mut command = match wrapper {
            Wrapper::Cpu(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpu.to_string()).arg(coexist_binary());
                taskset
            }
            Wrapper::FdLimit(limit) => {
                let mut prlimit = Command::new("prlimit");
                prlimit
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg(coexist_binary());
                prlimit
            }
            Wrapper::None => Command::new(coexist_binary()),
        };
        command
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("coexist.toml"))
            .args(args)
            .env("COEXIST_LOG", "info");
        let process = Process::spawn("coexist", &mut command, &dir.path().join("coexist.log"))
            .expect("spawn coexist");
        Self { process, dir }
    }

    /// Starts the daemon and waits until it says it runs (all listeners
    /// bound), without opening a connection through it.
    pub fn start_ready(config: &str) -> Self {
        Self::start_ready_with_args(config, &[])
    }

    pub fn start_ready_with_args(config: &str, args: &[&str]) -> Self {
        Self::start_with_args(config, args).ready()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("coexist.toml")
    }

    /// Replaces the config file atomically (write + rename, as editors do).
    pub fn write_config(&self, config: &str) {
        let tmp = self.dir.path().join("coexist.toml.new");
        std::fs::write(&tmp, config).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    pub fn log(&self) -> String {
        self.process.stdout()
    }

    /// Polls until `address` accepts a TCP connection; panics with the
    /// daemon's log after 10 s.
    pub fn wait_listening(&self, address: SocketAddr) {
        let listening = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
        });
        if listening.is_none() {
            panic!("coexist never listened on {address}; log:\n{}", self.log());
        }
    }

    /// Polls the log until `needle` appears `count` times or 10 s pass.
    pub fn wait_log(&self, needle: &str, count: usize) -> bool {
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            self.log().matches(needle).count() >= count
        })
        .is_some()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        self.process.signal(signal);
    }

    /// Waits for exit up to `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(limit)
    }
}

/// Runs `coexist ARGS...` to completion: (success, stdout, stderr).
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(coexist_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run coexist");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `coexist check --config` on `config`; returns (success, stderr).
pub fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("coexist.toml");
    std::fs::write(&path, config).expect("write config");
    let (ok, _, stderr) = cli(&["check", "--config", path.to_str().expect("utf-8 path")]);
    (ok, stderr)
}

/// GETs `path` from an admin endpoint and parses the JSON.
pub fn admin_get<T: serde::de::DeserializeOwned>(admin: SocketAddr, path: &str) -> T {
    ureq::get(&format!("http://{admin}{path}"))
        .timeout(Duration::from_secs(5))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .into_json()
        .unwrap_or_else(|e| panic!("GET {path}: malformed JSON: {e}"))
}

/// GETs `/metrics` as text. A page can be large (5.7 MB with the pressure
/// test's 10,000 servers), and a debug build on a loaded machine once took
/// more than 5 s to serve it.
pub fn admin_metrics(admin: SocketAddr) -> String {
    ureq::get(&format!("http://{admin}/metrics"))
        .timeout(Duration::from_secs(30))
        .call()
        .expect("GET /metrics")
        .into_string()
        .expect("metrics text")
}

/// The value of the sample `name{labels}` in a Prometheus text page, where
/// `labels` is a substring of its label set (e.g. `server="s1"`).
pub fn metric_value(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .next()
}
