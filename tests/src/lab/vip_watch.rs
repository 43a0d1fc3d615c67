//! When a virtual address appeared on a node, as the kernel told it.
//!
//! Polling `ip addr show` starts a process per look, and on a loaded
//! machine a start can take hundreds of milliseconds: the lab once timed a
//! takeover at 786 ms while the clients' DNS gap over the same takeover
//! was 316 ms. `ip monitor address` hears of an address the moment the
//! kernel adds it; a thread reads its lines and stamps each as it arrives,
//! which costs two wake-ups after the event rather than a process start.

use std::sync::{Arc, Mutex};

use super::clock::{ms_between, now_ns};
use crate::ip_monitor::IpMonitor;
use crate::netns::Ns;

/// `ip monitor address` in one namespace, its lines stamped on arrival.
pub struct VipWatch {
    lines: Arc<Mutex<Vec<(u64, String)>>>,
    // Stops `ip monitor` when dropped.
    _monitor: IpMonitor,
}

impl VipWatch {
    /// Starts watching `ns`; `None` if `ip` cannot be started (callers fall
    /// back to their polls).
    pub fn start(ns: &Ns) -> Option<Self> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&lines);
        let monitor = IpMonitor::start(ns, "address", move |monitor_lines| {
            for line in monitor_lines {
                let at = now_ns();
                seen.lock().expect("reader only pushes").push((at, line));
            }
        })
        .ok()?;
        Some(Self {
            lines,
            _monitor: monitor,
        })
    }

    /// Milliseconds after `from_ns` at which `vip` was first seen added.
    pub fn added_ms(&self, vip: &str, from_ns: u64) -> Option<f64> {
        let lines = self.lines.lock().expect("reader only pushes");
        first_added(&lines, vip, from_ns).map(|at| ms_between(from_ns, at))
    }

    /// When `vip` was added, in ms after `from_ns`: the earlier of a poll's
    /// time (`polled`) and what the monitor heard. Both saw the address
    /// only after it was added, so the earlier is the closer bound.
    pub fn earlier(&self, vip: &str, from_ns: u64, polled: Option<f64>) -> Option<f64> {
        earlier_of(polled, self.added_ms(vip, from_ns))
    }
}

fn earlier_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The stamp of the first line at or after `from_ns` that adds `vip` (an
/// `ip monitor address` line without "Deleted" naming `vip/prefix`).
fn first_added(lines: &[(u64, String)], vip: &str, from_ns: u64) -> Option<u64> {
    lines
        .iter()
        .filter(|(at, _)| *at >= from_ns)
        .find(|(_, line)| {
            !line.starts_with("Deleted")
                && line
                    .split_whitespace()
                    .any(|w| w.split('/').next() == Some(vip))
        })
        .map(|(at, _)| *at)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: `ip monitor address` lines around a takeover, stamped: a
    // deletion of the VIP, an unrelated address, the VIP added at 30.
    // Output: 30; nothing before `from_ns` counts.
    #[test]
    fn the_first_addition_of_the_vip_after_the_event() {
        let lines = vec![
            (
                5,
                "2: eth0    inet 10.231.1.10/24 scope global eth0".to_owned(),
            ),
            (
                10,
                "Deleted 2: eth0    inet 10.231.1.10/24 scope global eth0".to_owned(),
            ),
            (
                20,
                "2: eth0    inet 10.231.1.2/24 scope global eth0".to_owned(),
            ),
            (
                30,
                "2: eth0    inet 10.231.1.10/24 scope global eth0".to_owned(),
            ),
            (31, "    valid_lft forever preferred_lft forever".to_owned()),
        ];
        assert_eq!(first_added(&lines, "10.231.1.10", 8), Some(30));
        assert_eq!(first_added(&lines, "10.231.1.1", 8), None);
    }

    // Input: a poll's time and the monitor's, either missing. Output: the
    // earlier of those present.
    #[test]
    fn the_earlier_observation_wins() {
        assert_eq!(earlier_of(Some(786.5), Some(291.2)), Some(291.2));
        assert_eq!(earlier_of(Some(300.0), Some(310.0)), Some(300.0));
        assert_eq!(earlier_of(None, Some(291.2)), Some(291.2));
        assert_eq!(earlier_of(Some(786.5), None), Some(786.5));
        assert_eq!(earlier_of(None, None), None);
    }
}
