//! One clock for the lab and its client processes: CLOCK_MONOTONIC is the
//! same in every network namespace, so a client's connection times and
//! the lab's event times can be compared directly.

use std::time::Duration;

pub fn now_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Milliseconds between two clock readings, for the report.
pub fn ms_between(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e6
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
