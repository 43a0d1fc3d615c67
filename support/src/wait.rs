//! Polling for a condition, bounded in time.

use std::time::{Duration, Instant};

/// Checks `done` every `step` until it holds or `limit` has passed since
/// the call: how long that took, or `None` when it never held.
pub fn wait_until(
    limit: Duration,
    step: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(step);
    }
}

/// [`wait_until`] for a test on a tokio runtime: the condition may await,
/// and the pauses do not block the runtime's thread.
#[cfg(feature = "tokio")]
pub async fn wait_until_async(
    limit: Duration,
    step: Duration,
    mut done: impl AsyncFnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done().await {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(step).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_when_the_condition_holds_or_the_limit_passes() {
        let mut calls = 0;
        let took = wait_until(Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            calls == 3
        });
        assert!(took.is_some_and(|t| t < Duration::from_secs(5)));
        assert_eq!(calls, 3);
        let never = wait_until(Duration::from_millis(20), Duration::from_millis(5), || {
            false
        });
        assert_eq!(never, None);
    }
}
