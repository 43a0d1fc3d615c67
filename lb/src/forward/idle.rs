//! The idle timeout: one timer per connection, re-armed at most once per
//! timeout period instead of once per syscall.

use std::time::Duration;

use tokio::time::Instant;

/// The idle timer fired at `fired`. Returns the deadline to re-arm it for
/// when a byte moved since it was armed (at `last_active`), or `None` when
/// the connection has been idle for the whole `timeout`.
pub(super) fn rearm(fired: Instant, last_active: Instant, timeout: Duration) -> Option<Instant> {
    let next = last_active + timeout;
    (next > fired).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_when_nothing_moved_since_arming() {
        let armed = Instant::now();
        let timeout = Duration::from_secs(10);
        assert_eq!(rearm(armed + timeout, armed, timeout), None);
    }

    #[test]
    fn rearms_from_the_last_activity() {
        let armed = Instant::now();
        let timeout = Duration::from_secs(10);
        let last = armed + Duration::from_secs(4);
        assert_eq!(rearm(armed + timeout, last, timeout), Some(last + timeout));
    }

    #[test]
    fn a_rearmed_timer_fires_at_its_own_deadline_without_new_activity() {
        let armed = Instant::now();
        let timeout = Duration::from_secs(10);
        let last = armed + Duration::from_secs(4);
        let next = rearm(armed + timeout, last, timeout).unwrap();
        assert_eq!(rearm(next, last, timeout), None);
    }
}
