//! A ceiling on proxied connections derived from the descriptor limit, as
//! HAProxy derives `maxconn` from `ulimit -n`.
//!
//! Each proxied connection holds two sockets, and a pipe while it splices.
//! Accepting a client the process cannot connect onward only turns it into
//! a refusal (and, before this existed, blamed a healthy server for the
//! EMFILE), so the accept loops stop at the ceiling and the kernel's
//! backlog holds the next clients until a connection ends: the freed slot
//! wakes an accept loop at once.
//!
//! The descriptor limit belongs to the process, so the budget is one per
//! process ([`process`]).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use serde::{Deserialize, Serialize};

use super::LogLimit;
use crate::limit::{ConnectionLimit, Slot};
use crate::metrics as m;

/// Connections budgeted one splice pipe (two descriptors), HAProxy's
/// `maxpipes` default; beside it each connection holds two sockets. The
/// pipe pool creates no more than [`pipes_for`] pipes; a burst beyond
/// them is copied through a buffer.
const CONNECTIONS_PER_PIPE: u64 = 4;

/// The pipes a process with a ceiling of `max_connections` may hold: the
/// share of descriptors [`ceiling`] set aside for them.
pub fn pipes_for(max_connections: usize) -> usize {
    (max_connections / CONNECTIONS_PER_PIPE as usize).max(1)
}

/// Descriptors kept aside beyond those open at start: health checks, admin
/// clients, config reloads, VRRP and netlink sockets.
const RESERVED_FDS: u64 = 32;

/// How long after a local error the process still reports it.
const LOCAL_ERROR_SHOWN: Duration = Duration::from_secs(1);

/// The process-wide connection budget.
#[derive(Debug)]
pub struct FdBudget {
    max_fds: u64,
    max_connections: usize,
    connections: Arc<ConnectionLimit>,
    started: Instant,
    /// Milliseconds after `started` of the last local error, plus one
    /// (0: none yet).
    last_local_error: AtomicU64,
    limit_log: LogLimit,
    error_log: LogLimit,
}

/// The process's state as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    #[serde(rename = "ok")]
    Ok,
    /// At the connection ceiling, or a socket could not be created within
    /// the last second: clients wait in the backlog.
    #[serde(rename = "at fd limit")]
    AtFdLimit,
}

/// The `process` object of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// The soft RLIMIT_NOFILE.
    pub max_fds: u64,
    /// Proxied connections the process takes at most.
    pub max_connections: usize,
    /// Proxied connections open now, over every frontend.
    pub connections: usize,
    pub condition: Condition,
}

/// The budget of this process, made on first use from its descriptor
/// limit and the descriptors open at that moment; the daemon calls it
/// once its listeners are bound.
pub fn process() -> &'static FdBudget {
    static BUDGET: OnceLock<FdBudget> = OnceLock::new();
    BUDGET.get_or_init(FdBudget::for_this_process)
}

/// Connections a process with `max_fds` descriptors, `open` of them in
/// use already, can hold.
pub fn ceiling(max_fds: u64, open: u64) -> usize {
    let reserve = open + RESERVED_FDS + max_fds / 32;
    // Per CONNECTIONS_PER_PIPE connections: two sockets each and one pipe.
    let fds_per_group = 2 * CONNECTIONS_PER_PIPE + 2;
    let usable = max_fds.saturating_sub(reserve) * CONNECTIONS_PER_PIPE / fds_per_group;
    usize::try_from(usable).unwrap_or(usize::MAX).max(1)
}

impl FdBudget {
    fn for_this_process() -> Self {
        let max_fds = raise_soft_limit();
        let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let budget = Self::new(max_fds, ceiling(max_fds, open));
        tracing::info!(
            max_fds,
            open_fds = open,
            max_connections = budget.max_connections,
            "connection ceiling derived from the descriptor limit"
        );
        metrics::gauge!(m::PROCESS_MAX_FDS).set(max_fds as f64);
        metrics::gauge!(m::PROCESS_MAX_CONNECTIONS).set(budget.max_connections as f64);
        budget
    }

    pub fn new(max_fds: u64, max_connections: usize) -> Self {
        Self {
            max_fds,
            max_connections,
            connections: ConnectionLimit::new(Some(max_connections)),
            started: Instant::now(),
            last_local_error: AtomicU64::new(0),
            limit_log: LogLimit::per_second(),
            error_log: LogLimit::per_second(),
        }
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// A slot for one more connection if the process is below its
    /// ceiling. On `None` the caller waits in [`Self::admit`].
    pub fn try_admit(&self) -> Option<Slot> {
        self.connections.try_acquire()
    }

    /// Waits until a connection ends and its slot is free. Counted and
    /// logged (rate-limited) as the ceiling being reached.
    pub async fn admit(&self) -> Slot {
        metrics::counter!(m::PROCESS_LIMIT_REACHED_TOTAL).increment(1);
        if let Some(suppressed) = self.limit_log.allow() {
            tracing::warn!(
                max_connections = self.max_connections,
                max_fds = self.max_fds,
                suppressed,
                "at the connection ceiling of the descriptor limit; new clients wait in the backlog"
            );
        }
        self.connections.acquire().await
    }

    /// A slot even at the ceiling, for clients the kernel already
    /// accepted whose only alternative is a reset.
    pub fn admit_over_limit(&self) -> Slot {
        self.connections.acquire_over_limit()
    }

    /// Records a failure of the process's own resources during
    /// `operation` (`accept`, `connect`, `check`): counted, shown as the
    /// process's condition for a second, logged at most once a second.
    pub fn local_error(&self, operation: &'static str, error: &io::Error) {
        let name = super::local_error_name(error).unwrap_or("other");
        metrics::counter!(m::LOCAL_ERRORS_TOTAL, "operation" => operation, "error" => name)
            .increment(1);
        let at = self.started.elapsed().as_millis() as u64 + 1;
        self.last_local_error.fetch_max(at, Ordering::Relaxed);
        if let Some(suppressed) = self.error_log.allow() {
            tracing::warn!(
                operation,
                %error,
                suppressed,
                "out of a local resource; not counted against any server"
            );
        }
    }

    pub fn condition(&self) -> Condition {
        let at_ceiling = self.connections.active() >= self.max_connections;
        let last = self.last_local_error.load(Ordering::Relaxed);
        let recent_error = last > 0
            && self.started.elapsed().as_millis() as u64 + 1
                < last + LOCAL_ERROR_SHOWN.as_millis() as u64;
        if at_ceiling || recent_error {
            Condition::AtFdLimit
        } else {
            Condition::Ok
        }
    }

    pub fn status(&self) -> ProcessStatus {
        ProcessStatus {
            max_fds: self.max_fds,
            max_connections: self.max_connections,
            connections: self.connections.serving(),
            condition: self.condition(),
        }
    }
}

/// Raises the soft descriptor limit to the hard one (systemd starts
/// services at 1024 soft, 512Ki hard) and returns the soft limit in force.
fn raise_soft_limit() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: descriptor limits from a prlimit'd test to a systemd default.
    // Output: two fifths of what is left after the open ones and the
    // reserve (2 sockets and a quarter pipe each); a 20,000 limit holds
    // 7,500 connections (the bench's echo test) with room to spare.
    #[test]
    fn the_ceiling_leaves_room_for_what_is_open_and_the_reserve() {
        assert_eq!(ceiling(256, 20), (256 - 20 - 32 - 8) * 2 / 5);
        assert_eq!(ceiling(1024, 20), (1024 - 20 - 32 - 32) * 2 / 5);
        assert_eq!(ceiling(20_000, 13), 7_732);
        assert_eq!(ceiling(524_288, 20), (524_288 - 20 - 32 - 16_384) * 2 / 5);
        // Sockets and the pipes' share fit in what is left.
        for (max_fds, open) in [(256, 20), (20_000, 13), (524_288, 20)] {
            let connections = ceiling(max_fds, open) as u64;
            let pipes = pipes_for(connections as usize) as u64;
            assert!(2 * connections + 2 * pipes + open + 32 <= max_fds);
        }
        // Never zero: a process that cannot hold one connection serves
        // one at a time rather than none.
        assert_eq!(ceiling(16, 20), 1);
    }

    #[test]
    fn at_the_ceiling_the_condition_shows_and_a_freed_slot_clears_it() {
        let budget = FdBudget::new(256, 2);
        let a = budget.try_admit().unwrap();
        let mut b = budget.try_admit().unwrap();
        b.serve();
        assert!(budget.try_admit().is_none());
        assert_eq!(budget.condition(), Condition::AtFdLimit);
        assert_eq!(budget.status().connections, 1);
        drop(a);
        assert_eq!(budget.condition(), Condition::Ok);
        assert!(budget.try_admit().is_some());
    }

    #[test]
    fn a_local_error_shows_for_a_second() {
        let budget = FdBudget::new(256, 10);
        assert_eq!(budget.condition(), Condition::Ok);
        budget.local_error("connect", &io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(budget.condition(), Condition::AtFdLimit);
    }

    #[tokio::test]
    async fn a_waiting_accept_loop_is_admitted_when_a_connection_ends() {
        let budget = Arc::new(FdBudget::new(256, 1));
        let held = budget.try_admit().unwrap();
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_millis(500), waiter)
            .await
            .expect("admitted once the slot was freed")
            .unwrap();
    }
}
