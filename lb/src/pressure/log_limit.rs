//! Warnings that could be written once per client, written at most once
//! per interval with the count of those held back since the last one.
//!
//! A flood of refused clients must not become a flood of log lines (disk,
//! journald rate limits, an operator's terminal): the first line of a burst
//! is written at once, the rest are counted and the count rides on the next
//! line written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A gate for one kind of warning, shared by every task that writes it.
#[derive(Debug)]
pub struct LogLimit {
    interval: Duration,
    /// Milliseconds since [`epoch`] before which no line is written;
    /// 0 before the first line.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimit {
    /// One line per second: what an operator can read during an incident.
    pub const fn per_second() -> Self {
        Self::every(Duration::from_secs(1))
    }

    pub const fn every(interval: Duration) -> Self {
        Self {
            interval,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be
    /// written now; `None` when this one is to be held back (and counted).
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(epoch().elapsed())
    }

    fn allow_at(&self, now: Duration) -> Option<u64> {
        let now_ms = now.as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let due = next == 0 || now_ms >= next;
        let interval_ms = (self.interval.as_millis() as u64).max(1);
        if due
            && self
                .next_ms
                .compare_exchange(
                    next,
                    (now_ms + interval_ms).max(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The clock every [`LogLimit`] counts from (fits an atomic, unlike an
/// `Instant`).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: 100 attempts within one interval, then one after it.
    // Output: the first is written, 99 held back, and the next line
    // carries the 99.
    #[test]
    fn one_line_per_interval_carries_the_count_held_back() {
        let limit = LogLimit::per_second();
        let t0 = Duration::from_secs(10);
        assert_eq!(limit.allow_at(t0), Some(0));
        let written = (1..100)
            .filter(|i| limit.allow_at(t0 + Duration::from_millis(*i)).is_some())
            .count();
        assert_eq!(written, 0);
        assert_eq!(limit.allow_at(t0 + Duration::from_millis(1000)), Some(99));
        assert_eq!(limit.allow_at(t0 + Duration::from_millis(1001)), None);
        assert_eq!(limit.allow_at(t0 + Duration::from_millis(2500)), Some(1));
    }

    #[test]
    fn the_first_line_at_time_zero_is_written() {
        let limit = LogLimit::per_second();
        assert_eq!(limit.allow_at(Duration::ZERO), Some(0));
        assert_eq!(limit.allow_at(Duration::from_millis(5)), None);
    }
}
