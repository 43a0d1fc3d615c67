//! Child processes: started with their output in log files, signalled and
//! ended by their own PID, and never outliving their handle.
//!
//! Every running child is also listed process-wide, so that a signal
//! handler, which cannot reach the handles, can end exactly the processes
//! this program started ([`kill_all`]).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::wait_until;

static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn running() -> MutexGuard<'static, Vec<u32>> {
    // A panic while holding the lock leaves plain data behind; keep going
    // so the children still get ended.
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child process. Dropping the handle ends it: SIGTERM and up to the
/// stop grace period to exit (none by default), then SIGKILL, then reaped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    stop_grace: Duration,
}

impl Process {
    /// Starts `command` with stdin closed and stdout and stderr both in
    /// the file `log`.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> io::Result<Process> {
        let file = File::create(log)?;
        command.stdout(file.try_clone()?).stderr(file);
        Self::start(name, command, log, log)
    }

    /// Starts `command` with stdin closed and stdout and stderr in files
    /// of their own.
    pub fn spawn_split(
        name: &str,
        command: &mut Command,
        stdout: &Path,
        stderr: &Path,
    ) -> io::Result<Process> {
        command
            .stdout(File::create(stdout)?)
            .stderr(File::create(stderr)?);
        Self::start(name, command, stdout, stderr)
    }

    fn start(name: &str, command: &mut Command, stdout: &Path, stderr: &Path) -> io::Result<Self> {
        let child = command.stdin(Stdio::null()).spawn()?;
        running().push(child.id());
        Ok(Process {
            name: name.to_owned(),
            child,
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
            stop_grace: Duration::ZERO,
        })
    }

    /// How long a dropped handle gives the child to exit after SIGTERM
    /// before it is killed.
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// The name it was started under, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal`; a child that is already gone is no error, since
    /// the caller wanted it stopped or it has nothing left to hear.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits for the child to exit, up to `limit`; `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(limit, Duration::from_millis(5), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// What it wrote to stdout (with stderr, when they share a file).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it wrote to stderr (with stdout, when they share a file).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if !self.stop_grace.is_zero() {
                self.signal(Signal::SIGTERM);
                self.wait_exit(self.stop_grace);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let pid = self.child.id();
        running().retain(|&p| p != pid);
    }
}

/// Kills and reaps every child of this program that still runs; how many.
/// For a signal handler, which cannot reach the handles.
pub fn kill_all() -> usize {
    let pids = running().clone();
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    // Reaped here: once the program exits, nobody else would.
    for &pid in &pids {
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
    }
    pids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_logged_and_the_exit_status_seen() {
        let dir = std::env::temp_dir().join(format!("coexist-support-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = Process::spawn_split(
            "echo",
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            &dir.join("out"),
            &dir.join("err"),
        )
        .unwrap();
        assert!(p.wait_exit(Duration::from_secs(5)).unwrap().success());
        assert_eq!((p.stdout(), p.stderr()), ("out\n".into(), "err\n".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dropped_handle_ends_its_child() {
        let log = std::env::temp_dir().join(format!("coexist-support-{}.log", std::process::id()));
        let p = Process::spawn("sleeper", Command::new("sleep").arg("30"), &log).unwrap();
        let pid = Pid::from_raw(p.pid() as i32);
        assert!(running().contains(&p.pid()));
        drop(p);
        // Reaped, so the PID no longer names a process of ours.
        assert!(kill(pid, None).is_err());
        std::fs::remove_file(&log).unwrap();
    }
}
