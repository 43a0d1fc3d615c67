//! Runs the `coexist` binary as a child process, as an operator would.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `coexist` binary of this build.
///
/// `cargo test` never builds another package's binary, so the test command
/// is `cargo build -p lb && cargo test --workspace` (see README.md).
pub fn coexist_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/coexist
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
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

/// A `coexist run` child with its config file and captured log.
pub struct DaemonProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl DaemonProcess {
    /// Writes `config` to a file and starts `coexist run` on it.
    pub fn start(config: &str) -> Self {
        Self::start_with_args(config, &[])
    }

    /// Like [`Self::start`], with extra arguments for `coexist run`.
    pub fn start_with_args(config: &str, args: &[&str]) -> Self {
        Self::spawn(config, args, None)
    }

    /// Starts the daemon confined to one CPU (through `taskset`, which
    /// execs it, so the PID is the daemon's): it then runs its
    /// single-threaded scheduler.
    pub fn start_ready_on_one_cpu(config: &str) -> Self {
        let daemon = Self::spawn(config, &[], Some(0));
        assert!(
            daemon.wait_log(READY_LINE, 1),
            "coexist did not start; log:\n{}",
            daemon.log()
        );
        daemon
    }

    fn spawn(config: &str, args: &[&str], cpu: Option<u32>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("coexist.toml"), config).expect("write config");
        let log = std::fs::File::create(dir.path().join("coexist.log")).expect("log file");
        let mut command = match cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpu.to_string()).arg(coexist_binary());
                taskset
            }
            None => Command::new(coexist_binary()),
        };
        let child = command
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("coexist.toml"))
            .args(args)
            .env("COEXIST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn coexist");
        Self { child, dir }
    }

    /// Starts the daemon and waits until it says it runs (all listeners
    /// bound), without opening a connection through it.
    pub fn start_ready(config: &str) -> Self {
        Self::start_ready_with_args(config, &[])
    }

    pub fn start_ready_with_args(config: &str, args: &[&str]) -> Self {
        let daemon = Self::start_with_args(config, args);
        assert!(
            daemon.wait_log(READY_LINE, 1),
            "coexist did not start; log:\n{}",
            daemon.log()
        );
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.path().join("coexist.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Polls until `address` accepts a TCP connection; panics with the
    /// daemon's log after 10 s.
    pub fn wait_listening(&self, address: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("coexist never listened on {address}; log:\n{}", self.log());
    }

    /// Polls the log until `needle` appears `count` times or 10 s pass.
    pub fn wait_log(&self, needle: &str, count: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log().matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal coexist");
    }

    /// Waits for exit up to `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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

/// GETs `/metrics` as text.
pub fn admin_metrics(admin: SocketAddr) -> String {
    ureq::get(&format!("http://{admin}/metrics"))
        .timeout(Duration::from_secs(5))
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
