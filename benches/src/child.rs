//! Child processes of the bench: started pinned to a CPU, logged to files in
//! the run's temp dir, always ended by PID (the shared
//! [`coexist_support::Process`]).
//!
//! Ctrl-C (or SIGTERM) ends exactly the processes this bench started, and
//! removes its temp dir, before the bench exits.

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use coexist_support::Process;

/// On SIGINT/SIGTERM: kill every child, remove the temp dir, exit.
pub fn install_interrupt_handler(temp_dir: &Path) -> Result<()> {
    let temp_dir = temp_dir.to_path_buf();
    ctrlc::set_handler(move || {
        let killed = coexist_support::process::kill_all();
        let _ = std::fs::remove_dir_all(&temp_dir);
        eprintln!("coexist-bench: interrupted; {killed} child(ren) killed");
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")
}

/// What to start: a program, its arguments, and the CPU to pin it to.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Short name, used for log file names and messages.
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    /// Pinned with `taskset -c CPU` when set.
    pub cpu: Option<usize>,
}

impl Spec {
    pub fn new(name: &str, program: &str, args: &[&str], cpu: Option<usize>) -> Self {
        Spec {
            name: name.into(),
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cpu,
        }
    }

    /// The argv actually executed. `taskset` execs the program, so the child's
    /// PID is the program's PID, which is what /proc measurements need.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(cpu) = self.cpu {
            argv.extend(["taskset".into(), "-c".into(), cpu.to_string()]);
        }
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// A running child; ended (TERM, then KILL after 3 s) and reaped when dropped.
pub struct Child {
    pub name: String,
    process: Process,
}

impl Child {
    pub fn spawn(spec: &Spec, log_dir: &Path) -> Result<Child> {
        let stdout = log_dir.join(format!("{}.out", spec.name));
        let stderr = log_dir.join(format!("{}.err", spec.name));
        let argv = spec.argv();
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]).current_dir(log_dir);
        let process = Process::spawn_split(&spec.name, &mut command, &stdout, &stderr)
            .with_context(|| format!("starting {} ({})", spec.name, argv.join(" ")))?
            .with_stop_grace(Duration::from_secs(3));
        Ok(Child {
            name: spec.name.clone(),
            process,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.process
            .exited()
            .with_context(|| format!("waiting for {}", self.name))
    }

    pub fn stdout(&self) -> String {
        self.process.stdout()
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The last lines of stderr (then stdout), for error messages.
    pub fn log_tail(&self) -> String {
        let text = format!("{}{}", self.stderr(), self.stdout());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// Waits until every port in `ports` is listening on this host and, if
    /// given, `line` has appeared on stderr. Fails early if the child exits.
    pub fn wait_ready(
        &mut self,
        ports: &[u16],
        line: Option<&str>,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                bail!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let listening = crate::procfs::listening_ports()?;
            let ports_up = ports.iter().all(|p| listening.contains(p));
            let line_seen = line.is_none_or(|l| self.stderr().contains(l));
            if ports_up && line_seen {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready after {timeout:?} (ports {ports:?} listening: {ports_up}, \
                     log line {line:?} seen: {line_seen}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the child to exit by itself, killing it after `timeout`.
    pub fn wait_bounded(mut self, timeout: Duration) -> Result<Finished> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                return Ok(Finished {
                    status,
                    stdout: self.stdout(),
                    stderr: self.stderr(),
                });
            }
            if Instant::now() >= deadline {
                // Drop kills it.
                return Err(anyhow!(
                    "{} still running after {timeout:?}; killed",
                    self.name
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }
}

/// A child that ran to completion.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion within `timeout`.
pub fn run_bounded(spec: &Spec, log_dir: &Path, timeout: Duration) -> Result<Finished> {
    Child::spawn(spec, log_dir)?.wait_bounded(timeout)
}

/// True when `program` is found on PATH (or is an existing path).
pub fn installed(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_prefixes_taskset_only_when_pinned() {
        let pinned = Spec::new("x", "iperf3", &["-s"], Some(1));
        assert_eq!(pinned.argv(), ["taskset", "-c", "1", "iperf3", "-s"]);
        let free = Spec::new("x", "iperf3", &["-s"], None);
        assert_eq!(free.argv(), ["iperf3", "-s"]);
    }

    #[test]
    fn bounded_run_kills_a_child_that_overstays() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec::new("sleeper", "sleep", &["30"], None);
        let started = Instant::now();
        let err = run_bounded(&spec, dir.path(), Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("still running"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn bounded_run_captures_output() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec::new("echo", "sh", &["-c", "echo out; echo err >&2"], None);
        let done = run_bounded(&spec, dir.path(), Duration::from_secs(5)).unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.stderr, "err\n");
    }

    #[test]
    fn installed_finds_programs_on_path() {
        assert!(installed("sh"));
        assert!(!installed("no-such-program-coexist-bench"));
    }
}
