//! A server's health as the connection path reads it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use super::ServerHealth;

/// The state machine behind a lock, and lock-free copies of the facts the
/// connection path reads per connection. Every change goes through
/// [`SharedHealth::update`], which refreshes the copies: a fact derived
/// from the health state cannot be added without its copy being kept.
#[derive(Debug)]
pub struct SharedHealth {
    machine: Mutex<ServerHealth>,
    accepts_new: AtomicBool,
    healthy: AtomicBool,
    /// A failure streak is open: only then must a successful connect take
    /// the lock to close it.
    failing: AtomicBool,
    weight: AtomicU32,
}

impl SharedHealth {
    pub fn new(health: ServerHealth) -> Self {
        let shared = Self {
            machine: Mutex::new(health),
            accepts_new: AtomicBool::new(false),
            healthy: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            weight: AtomicU32::new(0),
        };
        shared.update(|_| ());
        shared
    }

    /// Changes the state machine, then refreshes every copy.
    pub fn update<T>(&self, change: impl FnOnce(&mut ServerHealth) -> T) -> T {
        let mut health = self.machine.lock().expect("health lock");
        let result = change(&mut health);
        self.accepts_new
            .store(health.accepts_new(), Ordering::Release);
        self.healthy.store(health.is_healthy(), Ordering::Release);
        self.failing
            .store(health.failure_streak() > 0, Ordering::Release);
        self.weight.store(health.weight(), Ordering::Relaxed);
        result
    }

    /// Reads what has no lock-free copy (state, last result, admin state).
    pub fn read<T>(&self, read: impl FnOnce(&ServerHealth) -> T) -> T {
        read(&self.machine.lock().expect("health lock"))
    }

    /// [`ServerHealth::accepts_new`]: state up.
    pub fn accepts_new(&self) -> bool {
        self.accepts_new.load(Ordering::Acquire)
    }

    /// [`ServerHealth::is_healthy`].
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Consecutive failures are being counted.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// [`ServerHealth::weight`].
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::health::{AdminState, Observation, Policy};

    fn policy() -> Policy {
        Policy {
            rise: 1,
            fall: 2,
            active_checks: false,
            start_up: true,
            passive_retry: Duration::from_secs(5),
        }
    }

    // Every change is mirrored: the copies always agree with the machine.
    #[test]
    fn copies_follow_every_change() {
        let shared = SharedHealth::new(ServerHealth::new(policy(), 3));
        let agree = |s: &SharedHealth| {
            s.read(|h| {
                (
                    h.accepts_new(),
                    h.is_healthy(),
                    h.failure_streak() > 0,
                    h.weight(),
                )
            }) == (s.accepts_new(), s.is_healthy(), s.failing(), s.weight())
        };
        assert!(agree(&shared) && shared.accepts_new() && shared.weight() == 3);
        let now = Instant::now();
        shared.update(|h| h.observe(Observation::ConnectFailed("refused".into()), now));
        assert!(agree(&shared) && shared.failing() && shared.accepts_new());
        shared.update(|h| h.observe(Observation::ConnectFailed("refused".into()), now));
        assert!(agree(&shared) && !shared.accepts_new() && !shared.is_healthy());
        shared.update(|h| h.set_admin(AdminState::Maint));
        shared.update(|h| h.set_weight(0, "test"));
        assert!(agree(&shared) && shared.weight() == 0);
    }
}
