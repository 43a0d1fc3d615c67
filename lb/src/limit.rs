//! A connection limit whose bound can change while connections hold slots.
//!
//! A `tokio::sync::Semaphore` cannot lower its permit count below the number
//! handed out, and a reload may change `max_connections` at any time, so the
//! limit is an atomic bound checked against an atomic count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug)]
pub struct ConnectionLimit {
    active: AtomicUsize,
    /// Slots held by connections being served, as opposed to slots an
    /// accept loop reserved while it waits for the next client.
    serving: AtomicUsize,
    limit: AtomicUsize,
    released: Notify,
}

/// One occupied slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<ConnectionLimit>,
    serving: bool,
}

impl ConnectionLimit {
    pub fn new(limit: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            active: AtomicUsize::new(0),
            serving: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit.unwrap_or(usize::MAX)),
            released: Notify::new(),
        })
    }

    /// Slots taken, including those reserved by waiting accept loops.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Connections being served now.
    pub fn serving(&self) -> usize {
        self.serving.load(Ordering::Relaxed)
    }

    pub fn set_limit(&self, limit: Option<usize>) {
        self.limit
            .store(limit.unwrap_or(usize::MAX), Ordering::Relaxed);
        self.released.notify_waiters();
    }

    /// Takes a slot if one is free now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                owner: Arc::clone(self),
                serving: false,
            })
    }

    /// Takes a slot even above the limit, for clients the kernel already
    /// accepted whose only alternative is a reset; they still count.
    pub fn acquire_over_limit(self: &Arc<Self>) -> Slot {
        self.active.fetch_add(1, Ordering::AcqRel);
        Slot {
            owner: Arc::clone(self),
            serving: false,
        }
    }

    /// Waits for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            // Register interest before checking, so a release between the
            // check and the await is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            released.await;
        }
    }
}

impl Slot {
    /// Marks the slot as carrying a connection (it counts in `serving`).
    pub fn serve(&mut self) {
        if !self.serving {
            self.serving = true;
            self.owner.serving.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.serving {
            self.owner.serving.fetch_sub(1, Ordering::AcqRel);
        }
        self.owner.active.fetch_sub(1, Ordering::AcqRel);
        self.owner.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slots_are_bounded_and_returned_on_drop() {
        let limit = ConnectionLimit::new(Some(2));
        let a = limit.try_acquire().unwrap();
        let _b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        drop(a);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn serving_counts_only_slots_that_carry_a_connection() {
        let limit = ConnectionLimit::new(Some(3));
        let _reserved = limit.try_acquire().unwrap();
        let mut carrying = limit.try_acquire().unwrap();
        carrying.serve();
        assert_eq!((limit.active(), limit.serving()), (2, 1));
        drop(carrying);
        assert_eq!((limit.active(), limit.serving()), (1, 0));
    }

    #[test]
    fn over_limit_slots_count_and_are_returned() {
        let limit = ConnectionLimit::new(Some(1));
        let _held = limit.try_acquire().unwrap();
        let extra = limit.acquire_over_limit();
        assert_eq!(limit.active(), 2);
        assert!(limit.try_acquire().is_none());
        drop(extra);
        assert_eq!(limit.active(), 1);
    }

    #[test]
    fn no_limit_means_unbounded() {
        let limit = ConnectionLimit::new(None);
        let slots: Vec<_> = (0..1000).map(|_| limit.try_acquire().unwrap()).collect();
        assert_eq!(limit.active(), 1000);
        drop(slots);
        assert_eq!(limit.active(), 0);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_a_slot_is_freed() {
        let limit = ConnectionLimit::new(Some(1));
        let held = limit.try_acquire().unwrap();
        let waiter = tokio::spawn({
            let limit = Arc::clone(&limit);
            async move { limit.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
    }

    #[tokio::test]
    async fn raising_the_limit_wakes_waiters() {
        let limit = ConnectionLimit::new(Some(1));
        let _held = limit.try_acquire().unwrap();
        let waiter = tokio::spawn({
            let limit = Arc::clone(&limit);
            async move { limit.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        limit.set_limit(Some(2));
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
    }
}
