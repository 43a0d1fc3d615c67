//! Happy Eyeballs (RFC 8305): which address a connect tries next, and when.
//!
//! Sans-IO: the shell starts the attempts this hands out, reports failures,
//! and sleeps until [`Attempts::wake_at`]. The first attempt to connect wins;
//! the shell drops the others.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Family;

/// RFC 8305 §4: the addresses interleaved by family, starting with `first`
/// ("First Address Family Count" of 1), each family in the order given.
pub fn order(addresses: &[IpAddr], first: Family) -> Vec<IpAddr> {
    let (mut preferred, mut other): (VecDeque<IpAddr>, VecDeque<IpAddr>) =
        addresses.iter().partition(|a| Family::of(**a) == first);
    let mut ordered = Vec::with_capacity(addresses.len());
    loop {
        match (preferred.pop_front(), other.pop_front()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// The connection attempts of one connect.
#[derive(Debug)]
pub struct Attempts {
    waiting: VecDeque<IpAddr>,
    delay: Duration,
    /// When the next waiting address may start.
    next_start: Instant,
    running: usize,
}

impl Attempts {
    /// `ordered` as [`order`] returns it; the first attempt may start at `now`.
    pub fn new(ordered: Vec<IpAddr>, delay: Duration, now: Instant) -> Self {
        Self {
            waiting: ordered.into(),
            delay,
            next_start: now,
            running: 0,
        }
    }

    /// RFC 8305 §5: the next address to try, if its turn has come: at
    /// once for the first, then one Connection Attempt Delay after the
    /// previous attempt started, or as soon as every running one failed.
    pub fn start(&mut self, now: Instant) -> Option<IpAddr> {
        if now < self.next_start {
            return None;
        }
        let address = self.waiting.pop_front()?;
        self.running += 1;
        self.next_start = now + self.delay;
        Some(address)
    }

    /// An attempt failed. With none left running the next starts at once:
    /// waiting out the delay would only add to the client's wait.
    pub fn failed(&mut self, now: Instant) {
        self.running = self.running.saturating_sub(1);
        if self.running == 0 {
            self.next_start = now;
        }
    }

    /// When [`Attempts::start`] has something to hand out; `None` once every
    /// address was tried.
    pub fn wake_at(&self) -> Option<Instant> {
        (!self.waiting.is_empty()).then_some(self.next_start)
    }

    /// Every address was tried and every attempt failed.
    pub fn exhausted(&self) -> bool {
        self.waiting.is_empty() && self.running == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    const DELAY: Duration = Duration::from_millis(250);

    #[test]
    fn rfc8305_section_4_interleaves_families_starting_with_the_preferred() {
        let all = ips(&[
            "192.0.2.1",
            "192.0.2.2",
            "2001:db8::1",
            "2001:db8::2",
            "2001:db8::3",
        ]);
        assert_eq!(
            order(&all, Family::Ipv6),
            ips(&[
                "2001:db8::1",
                "192.0.2.1",
                "2001:db8::2",
                "192.0.2.2",
                "2001:db8::3"
            ])
        );
        assert_eq!(
            order(&all, Family::Ipv4),
            ips(&[
                "192.0.2.1",
                "2001:db8::1",
                "192.0.2.2",
                "2001:db8::2",
                "2001:db8::3"
            ])
        );
        assert_eq!(
            order(&ips(&["192.0.2.1"]), Family::Ipv6),
            ips(&["192.0.2.1"])
        );
    }

    #[test]
    fn rfc8305_section_5_a_silent_first_attempt_lets_the_next_start_after_the_delay() {
        // Input: AAAA whose SYNs vanish, then A. Output: the IPv4 attempt
        // starts 250 ms after the IPv6 one, not at the connect timeout.
        let t0 = Instant::now();
        let mut a = Attempts::new(ips(&["2001:db8::1", "192.0.2.1"]), DELAY, t0);
        assert_eq!(a.start(t0), Some(ips(&["2001:db8::1"])[0]));
        assert_eq!(a.start(t0), None);
        assert_eq!(a.wake_at(), Some(t0 + DELAY));
        assert_eq!(a.start(t0 + DELAY - Duration::from_millis(1)), None);
        assert_eq!(a.start(t0 + DELAY), Some(ips(&["192.0.2.1"])[0]));
        assert_eq!(a.wake_at(), None);
        assert!(!a.exhausted());
    }

    #[test]
    fn rfc8305_section_5_a_refused_attempt_starts_the_next_at_once() {
        let t0 = Instant::now();
        let mut a = Attempts::new(ips(&["2001:db8::1", "192.0.2.1"]), DELAY, t0);
        a.start(t0);
        let refused = t0 + Duration::from_millis(3);
        a.failed(refused);
        assert_eq!(a.wake_at(), Some(refused));
        assert_eq!(a.start(refused), Some(ips(&["192.0.2.1"])[0]));
        a.failed(refused);
        assert!(a.exhausted());
    }

    #[test]
    fn a_failure_while_another_attempt_runs_keeps_the_delay() {
        // Two attempts running, one fails: the survivor still gets its
        // delay before a third address is tried.
        let t0 = Instant::now();
        let mut a = Attempts::new(ips(&["2001:db8::1", "192.0.2.1", "2001:db8::2"]), DELAY, t0);
        a.start(t0);
        a.start(t0 + DELAY);
        let failed = t0 + DELAY + Duration::from_millis(10);
        a.failed(failed);
        assert_eq!(a.wake_at(), Some(t0 + DELAY + DELAY));
    }

    #[test]
    fn no_address_is_exhausted_at_once() {
        let a = Attempts::new(Vec::new(), DELAY, Instant::now());
        assert!(a.exhausted());
        assert_eq!(a.wake_at(), None);
    }
}
