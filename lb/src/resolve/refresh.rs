//! When a server's name is asked again, and which addresses it has meanwhile.
//!
//! Sans-IO: the shell reports each lookup's outcome with the time it ended;
//! this decides what the server connects to and when to ask next. A failed
//! lookup never takes addresses away: a DNS outage must not empty a backend
//! whose servers are still where they were.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed lookups are retried no later than this, even when `max_ttl` is
/// longer: the outage is the thing to notice the end of.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// `[resolver]` `min_ttl` and `max_ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
}

impl Bounds {
    fn clamp(self, ttl: Duration) -> Duration {
        ttl.clamp(self.min, self.max)
    }
}

/// What one lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The addresses and how long the answer may be used.
    Answer {
        addresses: Vec<IpAddr>,
        ttl: Duration,
    },
    /// No answer: the resolver's error, as operators read it.
    Failed(String),
}

/// The state of one name.
#[derive(Debug, Clone)]
pub struct Resolution {
    bounds: Bounds,
    /// The last good answer, sorted; empty until the first one.
    addresses: Vec<IpAddr>,
    /// When the last good answer's TTL (as bounded) ends.
    expires: Option<Instant>,
    /// The error of the last lookup, if it failed.
    error: Option<String>,
    failures: u32,
    next: Instant,
}

impl Resolution {
    /// A name not asked yet: the first lookup is due at `now`.
    pub fn new(bounds: Bounds, now: Instant) -> Self {
        Self {
            bounds,
            addresses: Vec::new(),
            expires: None,
            error: None,
            failures: 0,
            next: now,
        }
    }

    /// A reload changed the bounds; the next lookup moves no later than
    /// `now + max`.
    pub fn set_bounds(&mut self, bounds: Bounds, now: Instant) {
        self.bounds = bounds;
        self.next = self.next.min(now + bounds.max);
    }

    pub fn next_lookup(&self) -> Instant {
        self.next
    }

    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn expires(&self) -> Option<Instant> {
        self.expires
    }

    /// Takes in a lookup's outcome; true when the addresses changed.
    pub fn record(&mut self, outcome: Outcome, now: Instant) -> bool {
        match outcome {
            Outcome::Answer { mut addresses, ttl } if !addresses.is_empty() => {
                addresses.sort_unstable();
                addresses.dedup();
                let lifetime = self.bounds.clamp(ttl);
                self.expires = Some(now + lifetime);
                self.next = now + lifetime;
                self.error = None;
                self.failures = 0;
                let changed = addresses != self.addresses;
                self.addresses = addresses;
                changed
            }
            Outcome::Answer { .. } => {
                self.failed("no A or AAAA record".to_owned(), now);
                false
            }
            Outcome::Failed(error) => {
                self.failed(error, now);
                false
            }
        }
    }

    /// Keeps the last addresses and asks again after a backoff that
    /// doubles from `min_ttl` up to [`MAX_RETRY`] (or `max_ttl` if shorter).
    fn failed(&mut self, error: String, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let doubling = 1u32 << (self.failures - 1).min(16);
        let ceiling = self.bounds.max.min(MAX_RETRY).max(self.bounds.min);
        self.next = now + self.bounds.min.saturating_mul(doubling).min(ceiling);
        self.error = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        min: Duration::from_secs(1),
        max: Duration::from_secs(300),
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn answer(addresses: &[&str], ttl: u64) -> Outcome {
        Outcome::Answer {
            addresses: addresses.iter().map(|a| ip(a)).collect(),
            ttl: Duration::from_secs(ttl),
        }
    }

    #[test]
    fn the_first_lookup_is_due_at_once() {
        let now = Instant::now();
        let r = Resolution::new(BOUNDS, now);
        assert_eq!(r.next_lookup(), now);
        assert!(r.addresses().is_empty());
    }

    #[test]
    fn an_answer_is_used_for_its_ttl() {
        // Input: A + AAAA with TTL 30 s. Output: both addresses, next lookup at 30 s.
        let now = Instant::now();
        let mut r = Resolution::new(BOUNDS, now);
        assert!(r.record(answer(&["2001:db8::1", "192.0.2.1"], 30), now));
        assert_eq!(r.addresses(), [ip("192.0.2.1"), ip("2001:db8::1")]);
        assert_eq!(r.next_lookup(), now + Duration::from_secs(30));
        assert_eq!(r.expires(), Some(now + Duration::from_secs(30)));
        assert_eq!(r.error(), None);
    }

    #[test]
    fn ttls_are_bounded_by_min_and_max() {
        // Input: TTL 0, then TTL one day. Output: asked again after 1 s, then after 300 s.
        let now = Instant::now();
        let mut r = Resolution::new(BOUNDS, now);
        r.record(answer(&["192.0.2.1"], 0), now);
        assert_eq!(r.next_lookup(), now + Duration::from_secs(1));
        r.record(answer(&["192.0.2.1"], 86_400), now);
        assert_eq!(r.next_lookup(), now + Duration::from_secs(300));
    }

    #[test]
    fn the_same_answer_in_another_order_is_no_change() {
        let now = Instant::now();
        let mut r = Resolution::new(BOUNDS, now);
        assert!(r.record(answer(&["192.0.2.1", "192.0.2.2"], 5), now));
        assert!(!r.record(answer(&["192.0.2.2", "192.0.2.1", "192.0.2.1"], 5), now));
        assert!(r.record(answer(&["192.0.2.2"], 5), now));
        assert_eq!(r.addresses(), [ip("192.0.2.2")]);
    }

    #[test]
    fn a_failed_lookup_keeps_the_last_addresses_and_backs_off() {
        // Input: a good answer, then three timeouts. Output: the addresses
        // stay, the error is shown, retries after 1, 2 and 4 s.
        let now = Instant::now();
        let mut r = Resolution::new(BOUNDS, now);
        r.record(answer(&["192.0.2.1"], 5), now);
        for (i, wait) in [1, 2, 4].into_iter().enumerate() {
            let at = now + Duration::from_secs(10 * (i as u64 + 1));
            assert!(!r.record(Outcome::Failed("timed out".into()), at));
            assert_eq!(r.next_lookup(), at + Duration::from_secs(wait));
            assert_eq!(r.addresses(), [ip("192.0.2.1")]);
            assert_eq!(r.error(), Some("timed out"));
        }
        // Recovery clears the error and the backoff.
        let later = now + Duration::from_secs(60);
        r.record(answer(&["192.0.2.1"], 5), later);
        assert_eq!(r.error(), None);
        r.record(Outcome::Failed("timed out".into()), later);
        assert_eq!(r.next_lookup(), later + Duration::from_secs(1));
    }

    #[test]
    fn retries_never_wait_longer_than_the_retry_ceiling() {
        let now = Instant::now();
        let mut r = Resolution::new(BOUNDS, now);
        for _ in 0..40 {
            r.record(Outcome::Failed("servfail".into()), now);
        }
        assert_eq!(r.next_lookup(), now + MAX_RETRY);
    }

    #[test]
    fn an_empty_answer_is_a_failure_that_keeps_the_addresses() {
        // A name whose records vanished is more likely a broken zone than a
        // server to stop using at once; the operator sees the error.
        let now = Instant::now();
        let mut r = Resolution::new(BOUNDS, now);
        r.record(answer(&["2001:db8::1"], 5), now);
        assert!(!r.record(answer(&[], 5), now));
        assert_eq!(r.addresses(), [ip("2001:db8::1")]);
        assert_eq!(r.error(), Some("no A or AAAA record"));
    }

    #[test]
    fn shorter_bounds_on_reload_bring_the_next_lookup_forward() {
        let now = Instant::now();
        let mut r = Resolution::new(BOUNDS, now);
        r.record(answer(&["192.0.2.1"], 3_600), now);
        let tight = Bounds {
            min: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        r.set_bounds(tight, now);
        assert_eq!(r.next_lookup(), now + Duration::from_secs(10));
    }
}
