//! Per-frontend UDP counters: `lb_udp_*` metrics, and the few values
//! `/status` reads back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{counter, gauge, Counter, Gauge};

use super::session::EndReason;
use crate::metrics as m;

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No server of the backend could take a new session.
    NoServer,
    /// No socket towards the server could be opened (descriptors exhausted).
    Socket,
    /// The kernel refused the datagram (buffer full, too large, ...).
    Send,
    /// The server's port is unreachable (ICMP), reported on this datagram.
    Unreachable,
    /// A reply beyond `udp_responses`.
    UnexpectedReply,
    /// `max_sessions` reached and no session of this listener to evict.
    Limit,
    /// Larger than any UDP datagram: cannot be forwarded unchanged.
    Truncated,
}

impl DropReason {
    const ALL: [DropReason; 7] = [
        DropReason::NoServer,
        DropReason::Socket,
        DropReason::Send,
        DropReason::Unreachable,
        DropReason::UnexpectedReply,
        DropReason::Limit,
        DropReason::Truncated,
    ];

    fn as_str(self) -> &'static str {
        match self {
            DropReason::NoServer => "no_server",
            DropReason::Socket => "socket",
            DropReason::Send => "send",
            DropReason::Unreachable => "unreachable",
            DropReason::UnexpectedReply => "unexpected_reply",
            DropReason::Limit => "limit",
            DropReason::Truncated => "truncated",
        }
    }
}

const END_REASONS: [EndReason; 4] = [
    EndReason::Idle,
    EndReason::Responses,
    EndReason::Evicted,
    EndReason::Closed,
];

/// Counters of one UDP frontend, shared by its listeners.
#[derive(Debug)]
pub struct FrontendStats {
    active: AtomicUsize,
    total: AtomicU64,
    evicted: AtomicU64,
    active_gauge: Gauge,
    total_counter: Counter,
    evicted_counter: Counter,
    ended: [Counter; END_REASONS.len()],
    dropped: [Counter; DropReason::ALL.len()],
    pub datagrams_to_server: Counter,
    pub datagrams_to_client: Counter,
    pub bytes_to_server: Counter,
    pub bytes_to_client: Counter,
}

impl FrontendStats {
    fn new(frontend: &str) -> Self {
        let label = || ("frontend", frontend.to_owned());
        let with = |name: &'static str, key: &'static str, value: &'static str| {
            counter!(name, &[label(), (key, value.to_owned())])
        };
        Self {
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            active_gauge: gauge!(m::UDP_SESSIONS_ACTIVE, &[label()]),
            total_counter: counter!(m::UDP_SESSIONS_TOTAL, &[label()]),
            evicted_counter: counter!(m::UDP_EVICTIONS_TOTAL, &[label()]),
            ended: END_REASONS.map(|r| with(m::UDP_SESSIONS_ENDED_TOTAL, "reason", r.as_str())),
            dropped: DropReason::ALL.map(|d| with(m::UDP_DROPPED_TOTAL, "reason", d.as_str())),
            datagrams_to_server: with(m::UDP_DATAGRAMS_TOTAL, "direction", "to_server"),
            datagrams_to_client: with(m::UDP_DATAGRAMS_TOTAL, "direction", "to_client"),
            bytes_to_server: with(m::UDP_BYTES_TOTAL, "direction", "to_server"),
            bytes_to_client: with(m::UDP_BYTES_TOTAL, "direction", "to_client"),
        }
    }

    pub fn session_opened(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.active_gauge.increment(1.0);
        self.total_counter.increment(1);
    }

    pub fn session_ended(&self, reason: EndReason) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.active_gauge.decrement(1.0);
        let index = END_REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        self.ended[index].increment(1);
        if reason == EndReason::Evicted {
            self.evicted.fetch_add(1, Ordering::Relaxed);
            self.evicted_counter.increment(1);
        }
    }

    pub fn dropped(&self, why: DropReason, count: u64) {
        let index = DropReason::ALL.iter().position(|d| *d == why).unwrap_or(0);
        self.dropped[index].increment(count);
    }

    /// Sessions open now across the frontend's listeners.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// The stats of every UDP frontend by name; outlives reloads so counters
/// continue, and the admin endpoint reads it.
#[derive(Debug, Clone, Default)]
pub struct StatsBoard(Arc<Mutex<HashMap<String, Arc<FrontendStats>>>>);

impl StatsBoard {
    pub fn frontend(&self, name: &str) -> Arc<FrontendStats> {
        let mut board = self.0.lock().expect("udp stats lock");
        Arc::clone(
            board
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(FrontendStats::new(name))),
        )
    }

    pub fn get(&self, name: &str) -> Option<Arc<FrontendStats>> {
        self.0.lock().expect("udp stats lock").get(name).cloned()
    }

    pub(super) fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .expect("udp stats lock")
            .retain(|name, _| keep(name));
    }
}
