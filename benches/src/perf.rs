//! Optional `perf record` of the proxy while a measurement runs, for the
//! profiling script (benches/scripts/profile-request-path.sh).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::child::{Child, Spec};

/// Sampling frequency: enough samples over a few seconds, little overhead.
const FREQUENCY: &str = "1999";

/// What to record and where the profile goes.
#[derive(Debug, Clone)]
pub struct Recording {
    pub output: PathBuf,
    /// The proxy's CPU: record everything that runs on it, kernel work done
    /// on the proxy's behalf (softirq) included. Without it, the process.
    pub proxy_cpu: Option<usize>,
    pub proxy_pid: u32,
    /// Where perf itself runs (the clients' CPU), off the proxy's CPU.
    pub perf_cpu: Option<usize>,
}

impl Recording {
    /// The `perf record` command line for `seconds`.
    pub fn spec(&self, seconds: u32) -> Spec {
        let output = self.output.to_string_lossy();
        let mut args = vec!["record", "-g", "-F", FREQUENCY, "-o", &output];
        let cpu = self.proxy_cpu.map(|c| c.to_string());
        let pid = self.proxy_pid.to_string();
        match &cpu {
            Some(cpu) => args.extend(["-C", cpu]),
            None => args.extend(["-p", &pid]),
        }
        let seconds = seconds.to_string();
        args.extend(["--", "sleep", &seconds]);
        Spec::new("perf-record", "perf", &args, self.perf_cpu)
    }

    /// Starts recording for `seconds`, alongside the measurement.
    pub fn start(self, log_dir: &Path, seconds: u32) -> Result<Running> {
        let child = Child::spawn(&self.spec(seconds), log_dir)?;
        Ok(Running {
            child,
            seconds,
            output: self.output,
        })
    }
}

/// Runs `measure` with `perf` recording alongside for `seconds` (when a
/// recording is asked for), and waits for the profile once it is done.
pub fn alongside<T>(
    perf: Option<Recording>,
    log_dir: &Path,
    seconds: u32,
    measure: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let running = perf.map(|p| p.start(log_dir, seconds)).transpose()?;
    let measured = measure()?;
    if let Some(running) = running {
        running.finish()?;
    }
    Ok(measured)
}

pub struct Running {
    child: Child,
    seconds: u32,
    output: PathBuf,
}

impl Running {
    /// Waits for perf to write its profile.
    pub fn finish(self) -> Result<()> {
        let done = self
            .child
            .wait_bounded(Duration::from_secs(u64::from(self.seconds) + 60))?;
        if !done.status.success() {
            bail!("perf record exited {}: {}", done.status, done.stderr);
        }
        std::fs::metadata(&self.output)
            .with_context(|| format!("perf wrote no {}", self.output.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_proxy_cpu_when_pinned_else_the_process() {
        let mut r = Recording {
            output: "/x/coexist-rate-1.data".into(),
            proxy_cpu: Some(1),
            proxy_pid: 42,
            perf_cpu: Some(0),
        };
        assert_eq!(
            r.spec(5).argv().join(" "),
            "taskset -c 0 perf record -g -F 1999 -o /x/coexist-rate-1.data -C 1 -- sleep 5"
        );
        r.proxy_cpu = None;
        r.perf_cpu = None;
        assert_eq!(
            r.spec(5).argv().join(" "),
            "perf record -g -F 1999 -o /x/coexist-rate-1.data -p 42 -- sleep 5"
        );
    }
}
