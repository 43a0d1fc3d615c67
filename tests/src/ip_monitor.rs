//! `ip monitor` in a namespace, read line by line on a thread of its own:
//! the kernel's own report of address and route changes, heard as they
//! happen rather than found by polling (each poll starts a process).

use std::io::{self, BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::netns::Ns;

/// A running `ip -n NS monitor OBJECT`; stopped (process killed, reader
/// joined) when dropped.
pub struct IpMonitor {
    monitor: Child,
    reader: Option<JoinHandle<()>>,
}

/// The monitor's lines, until it is killed.
pub struct MonitorLines(Lines<BufReader<ChildStdout>>);

impl Iterator for MonitorLines {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        self.0.next()?.ok()
    }
}

impl IpMonitor {
    /// Starts `ip monitor object` (`address`, `route`) in `ns` and runs
    /// `read` on a thread with its lines.
    pub fn start(
        ns: &Ns,
        object: &str,
        read: impl FnOnce(MonitorLines) + Send + 'static,
    ) -> io::Result<Self> {
        let mut monitor = Command::new("ip")
            .args(["-n", &ns.name, "monitor", object])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = monitor.stdout.take().expect("stdout is piped");
        let reader = std::thread::spawn(move || read(MonitorLines(BufReader::new(stdout).lines())));
        Ok(Self {
            monitor,
            reader: Some(reader),
        })
    }
}

impl Drop for IpMonitor {
    fn drop(&mut self) {
        let _ = self.monitor.kill();
        let _ = self.monitor.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
