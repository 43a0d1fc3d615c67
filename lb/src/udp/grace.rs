//! Grace periods: when a socket taken out of the kernel's lookup tables can
//! no longer receive a datagram that was already on its way.
//!
//! The kernel delivers a datagram by looking the socket up and queueing on
//! it inside one RCU read-side section (a softirq, possibly on another
//! CPU). After [`crate::sys::disconnect`] no new lookup finds the socket,
//! but one that found it just before may still be queueing. Once an RCU
//! grace period that began after the disconnect has ended, none can be.
//! One thread of the process waits for grace periods, back to back, while
//! some listener holds a [`Ticket`]; listeners only read two counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;

use crate::sys;

/// A grace period that begins after the ticket was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

#[derive(Debug)]
pub struct GracePeriods {
    /// Grace periods begun: the n-th begins when this becomes n.
    begun: AtomicU64,
    /// The latest grace period that has ended.
    ended: AtomicU64,
    /// A ticket was taken since the waiter last looked.
    wanted: AtomicBool,
    waiter: Thread,
}

impl GracePeriods {
    /// The process's grace periods, or `None` where the kernel cannot
    /// wait for one (then sockets are not reused).
    pub fn get() -> Option<&'static GracePeriods> {
        static GLOBAL: OnceLock<Option<&'static GracePeriods>> = OnceLock::new();
        *GLOBAL.get_or_init(|| {
            if !sys::grace_periods_available() {
                tracing::info!("udp session sockets are not reused: the kernel cannot wait for an RCU grace period (membarrier)");
                return None;
            }
            let (tx, rx) = std::sync::mpsc::channel::<&'static GracePeriods>();
            let spawned = std::thread::Builder::new()
                .name("udp-grace".to_owned())
                .spawn(move || {
                    if let Ok(periods) = rx.recv() {
                        periods.wait_while_wanted();
                    }
                });
            let waiter = match spawned {
                Ok(handle) => handle.thread().clone(),
                Err(error) => {
                    tracing::warn!(error = %error, "cannot start the udp grace period thread; session sockets are not reused");
                    return None;
                }
            };
            let periods: &'static GracePeriods = Box::leak(Box::new(GracePeriods {
                begun: AtomicU64::new(0),
                ended: AtomicU64::new(0),
                wanted: AtomicBool::new(false),
                waiter,
            }));
            let _ = tx.send(periods);
            Some(periods)
        })
    }

    /// Taken after a socket left the lookup tables: [`Self::passed`] turns
    /// true once a grace period begun after this call has ended.
    pub fn ticket(&self) -> Ticket {
        let ticket = Ticket(self.begun.load(Ordering::SeqCst) + 1);
        if !self.wanted.swap(true, Ordering::SeqCst) {
            self.waiter.unpark();
        }
        ticket
    }

    pub fn passed(&self, ticket: Ticket) -> bool {
        self.ended.load(Ordering::Acquire) >= ticket.0
    }

    fn wait_while_wanted(&self) {
        loop {
            if !self.wanted.swap(false, Ordering::SeqCst) {
                std::thread::park();
                continue;
            }
            let period = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
            if let Err(error) = sys::wait_grace_period() {
                // Tickets never pass: their sockets are closed as the pool
                // overflows, as if they were never reused.
                tracing::warn!(error = %error, "cannot wait for an RCU grace period; udp session sockets are no longer reused");
                return;
            }
            self.ended.store(period, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_ticket_passes_after_a_grace_period_and_not_before() {
        let Some(periods) = GracePeriods::get() else {
            eprintln!("skipped: membarrier(MEMBARRIER_CMD_GLOBAL) is not available here");
            return;
        };
        let ticket = periods.ticket();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !periods.passed(ticket) {
            assert!(Instant::now() < deadline, "no grace period within 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        // A ticket taken now waits for a period that has not begun yet.
        let later = periods.ticket();
        assert!(later > ticket);
    }
}
