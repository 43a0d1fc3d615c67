//! The UDP session table as plain data: which client flow is bound to which
//! session, and when a session ends. No sockets, no clocks: the caller
//! passes `now`, and the reply path reports through a [`SessionGate`].
//!
//! A session ends when
//! - no datagram went either way for `idle_timeout` ([`EndReason::Idle`]);
//! - the server sent `responses` datagrams per datagram of the client
//!   ([`EndReason::Responses`], nginx's `proxy_responses`);
//! - the table is full and it is the session idle longest
//!   ([`EndReason::Evicted`]): a spoofed-source flood can fill the table but
//!   never grow it;
//! - or the shell ends it (server removed, server unreachable, shutdown).
//!
//! Sessions are kept in recency order of the client's datagrams; the reply
//! path records its activity in the gate, and the table folds that in
//! lazily when a session reaches the old end. So the oldest entry is looked
//! at, and moved up when its replies kept it alive, rather than every
//! session on every reply.

use std::collections::hash_map::RandomState;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

/// One client's datagrams to one address of a listener: the key of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub client: SocketAddr,
    /// The address the client sent to; replies leave from it.
    pub local: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub idle_timeout: Duration,
    /// Replies per client datagram that end the session; `None`: unlimited.
    pub responses: Option<u32>,
    pub max_sessions: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Idle,
    Responses,
    Evicted,
    /// The shell ended it: its server left the config, answered with ICMP
    /// unreachable, or the daemon stops.
    Closed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::Responses => "responses",
            EndReason::Evicted => "evicted",
            EndReason::Closed => "closed",
        }
    }
}

/// A session that left the table; dropping `value` releases its resources.
#[derive(Debug)]
pub struct Ended<V> {
    pub flow: Flow,
    pub reason: EndReason,
    pub value: V,
}

/// What the reply path may do with a batch of replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Deliver the first `deliver` replies of the batch, drop the rest.
    pub deliver: usize,
    /// The session is complete: the reply path stops after delivering.
    pub last: bool,
}

/// The state a session shares between the client path (the table's owner)
/// and its reply path: how many replies are still expected, and when the
/// last one came. One atomic word decides between "a new client datagram
/// joins the session" and "the last reply closes it", so a datagram can
/// never be forwarded into a session whose reply path already stopped.
#[derive(Debug)]
pub struct SessionGate {
    /// Bit 63: closed; bit 62: closed by the shell; bits 0..62: replies still
    /// expected (unused when unlimited).
    state: AtomicU64,
    /// Milliseconds since `epoch` of the latest reply; 0 before any.
    last_reply: AtomicU64,
    epoch: Instant,
    responses: Option<u32>,
}

const CLOSED: u64 = 1 << 63;
const CLOSED_BY_SHELL: u64 = 1 << 62;
const OUTSTANDING: u64 = CLOSED_BY_SHELL - 1;

impl SessionGate {
    fn new(epoch: Instant, responses: Option<u32>) -> Self {
        Self {
            state: AtomicU64::new(0),
            last_reply: AtomicU64::new(0),
            epoch,
            responses,
        }
    }

    /// A client datagram is about to be forwarded on this session. False
    /// when the session has closed: the caller opens a new one.
    pub fn admit_request(&self) -> bool {
        let Some(per_request) = self.responses else {
            return self.state.load(Ordering::Acquire) & CLOSED == 0;
        };
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & CLOSED == 0).then(|| {
                    ((s & OUTSTANDING).saturating_add(u64::from(per_request))).min(OUTSTANDING)
                })
            })
            .is_ok()
    }

    /// `count` replies arrived from the server at `now`.
    pub fn admit_replies(&self, count: usize, now: Instant) -> Admitted {
        self.last_reply
            .fetch_max(millis_since(self.epoch, now), Ordering::Relaxed);
        if self.responses.is_none() {
            let open = self.state.load(Ordering::Acquire) & CLOSED == 0;
            return Admitted {
                deliver: if open { count } else { 0 },
                last: !open,
            };
        }
        let mut admitted = Admitted {
            deliver: 0,
            last: true,
        };
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                if s & CLOSED != 0 {
                    admitted = Admitted {
                        deliver: 0,
                        last: true,
                    };
                    return None;
                }
                let outstanding = s & OUTSTANDING;
                let deliver = outstanding.min(count as u64);
                let left = outstanding - deliver;
                admitted = Admitted {
                    deliver: deliver as usize,
                    last: left == 0,
                };
                Some(if left == 0 { CLOSED } else { left })
            });
        admitted
    }

    /// How many replies the session still waits for; `None` without a
    /// limit (`udp_responses` unset).
    pub fn replies_expected(&self) -> Option<usize> {
        self.responses?;
        let outstanding = self.state.load(Ordering::Acquire) & OUTSTANDING;
        Some(usize::try_from(outstanding).unwrap_or(usize::MAX))
    }

    /// Ends the session from the reply path (the server is unreachable).
    pub fn close(&self) {
        self.state
            .fetch_or(CLOSED | CLOSED_BY_SHELL, Ordering::AcqRel);
    }

    /// Why the session closed, if it did.
    pub fn closed(&self) -> Option<EndReason> {
        let state = self.state.load(Ordering::Acquire);
        if state & CLOSED_BY_SHELL != 0 {
            Some(EndReason::Closed)
        } else if state & CLOSED != 0 {
            Some(EndReason::Responses)
        } else {
            None
        }
    }

    fn last_reply_millis(&self) -> u64 {
        self.last_reply.load(Ordering::Relaxed)
    }
}

fn millis_since(epoch: Instant, now: Instant) -> u64 {
    // +1 keeps 0 free for "never" in the gate.
    now.saturating_duration_since(epoch).as_millis() as u64 + 1
}

#[derive(Debug)]
struct Entry<V> {
    gate: Arc<SessionGate>,
    /// Latest activity the table has accounted for, in `millis_since`.
    active: u64,
    value: V,
}

/// Client flows → sessions, in recency order.
#[derive(Debug)]
pub struct SessionTable<V> {
    limits: Limits,
    epoch: Instant,
    /// SipHash with a random key: a flood of chosen source addresses cannot
    /// steer entries into one bucket.
    sessions: LruCache<Flow, Entry<V>, RandomState>,
}

/// What to do with a client datagram.
#[derive(Debug)]
pub enum Route<'t, V> {
    /// Forward it on this session.
    Open(&'t V),
    /// No open session for the flow: pick a server and [`SessionTable::open`]
    /// one. A session of the flow that had closed is returned to be dropped.
    New(Option<Ended<V>>),
}

impl<V> SessionTable<V> {
    pub fn new(limits: Limits, epoch: Instant) -> Self {
        Self {
            limits,
            epoch,
            sessions: LruCache::unbounded_with_hasher(RandomState::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The session of `flow` for a datagram the client sent at `now`.
    pub fn route(&mut self, flow: &Flow, now: Instant) -> Route<'_, V> {
        let now = millis_since(self.epoch, now);
        let open = match self.sessions.get_mut(flow) {
            None => return Route::New(None),
            Some(entry) => {
                let open = entry.gate.admit_request();
                if open {
                    entry.active = entry.active.max(now);
                }
                open
            }
        };
        if open {
            let entry = self.sessions.peek(flow).expect("entry found above");
            Route::Open(&entry.value)
        } else {
            let entry = self.sessions.pop(flow).expect("entry found above");
            Route::New(Some(Ended {
                flow: *flow,
                reason: entry.gate.closed().unwrap_or(EndReason::Closed),
                value: entry.value,
            }))
        }
    }

    /// The session of `flow`, without counting activity.
    pub fn peek(&self, flow: &Flow) -> Option<&V> {
        self.sessions.peek(flow).map(|e| &e.value)
    }

    /// A gate for a session about to be opened; the reply path gets a clone.
    pub fn new_gate(&self) -> Arc<SessionGate> {
        Arc::new(SessionGate::new(self.epoch, self.limits.responses))
    }

    /// Adds the session for `flow` (absent: [`Self::route`] said `New`),
    /// counting the client datagram that opened it. At the limit, the
    /// session idle longest makes room and is returned.
    pub fn open(
        &mut self,
        flow: Flow,
        gate: Arc<SessionGate>,
        value: V,
        now: Instant,
    ) -> (&V, Option<Ended<V>>) {
        let evicted = if self.sessions.len() >= self.limits.max_sessions {
            self.evict_oldest()
        } else {
            None
        };
        gate.admit_request();
        let entry = Entry {
            gate,
            active: millis_since(self.epoch, now),
            value,
        };
        let replaced = self.sessions.push(flow, entry);
        debug_assert!(replaced.is_none(), "open() on a flow that has a session");
        let value = &self.sessions.peek(&flow).expect("just pushed").value;
        (value, evicted)
    }

    /// Ends the session idle longest, if any.
    pub fn evict_oldest(&mut self) -> Option<Ended<V>> {
        self.settle_oldest();
        let (flow, entry) = self.sessions.pop_lru()?;
        let reason = entry.gate.closed().unwrap_or(EndReason::Evicted);
        Some(Ended {
            flow,
            reason,
            value: entry.value,
        })
    }

    /// Ends the session of `flow` if it is still the one `gate` belongs to
    /// (the reply path reports an end after a new session may have taken
    /// the flow).
    pub fn end(
        &mut self,
        flow: &Flow,
        gate: &Arc<SessionGate>,
        reason: EndReason,
    ) -> Option<Ended<V>> {
        let same = self
            .sessions
            .peek(flow)
            .is_some_and(|e| Arc::ptr_eq(&e.gate, gate));
        if !same {
            return None;
        }
        let entry = self.sessions.pop(flow)?;
        Some(Ended {
            flow: *flow,
            reason,
            value: entry.value,
        })
    }

    /// Ends every session for which `condition` holds (e.g. its server left).
    pub fn end_where(&mut self, mut condition: impl FnMut(&V) -> bool, ended: &mut Vec<Ended<V>>) {
        let flows: Vec<Flow> = self
            .sessions
            .iter()
            .filter(|(_, e)| condition(&e.value))
            .map(|(f, _)| *f)
            .collect();
        for flow in flows {
            if let Some(entry) = self.sessions.pop(&flow) {
                ended.push(Ended {
                    flow,
                    reason: EndReason::Closed,
                    value: entry.value,
                });
            }
        }
    }

    /// Ends sessions idle for `idle_timeout` at `now`, and closed ones that
    /// reached the old end.
    pub fn expire(&mut self, now: Instant, ended: &mut Vec<Ended<V>>) {
        let now = millis_since(self.epoch, now);
        let idle = self.limits.idle_timeout.as_millis() as u64;
        loop {
            self.settle_oldest();
            let Some((_, entry)) = self.sessions.peek_lru() else {
                return;
            };
            let reason = match entry.gate.closed() {
                Some(reason) => reason,
                None if now.saturating_sub(entry.active) >= idle => EndReason::Idle,
                None => return,
            };
            let (flow, entry) = self.sessions.pop_lru().expect("peeked");
            ended.push(Ended {
                flow,
                reason,
                value: entry.value,
            });
        }
    }

    /// When the oldest session expires if nothing happens before.
    pub fn next_expiry(&mut self) -> Option<Instant> {
        self.settle_oldest();
        let (_, entry) = self.sessions.peek_lru()?;
        let since_epoch = Duration::from_millis(entry.active.saturating_sub(1));
        Some(self.epoch + since_epoch + self.limits.idle_timeout)
    }

    /// New limits (a reload): a lower `max_sessions` evicts down to it.
    /// Open sessions keep their gate's `responses` setting.
    pub fn set_limits(&mut self, limits: Limits, ended: &mut Vec<Ended<V>>) {
        self.limits = limits;
        while self.sessions.len() > limits.max_sessions {
            match self.evict_oldest() {
                Some(e) => ended.push(e),
                None => break,
            }
        }
    }

    /// Ends every session (shutdown of the listener).
    pub fn clear(&mut self, ended: &mut Vec<Ended<V>>) {
        while let Some((flow, entry)) = self.sessions.pop_lru() {
            ended.push(Ended {
                flow,
                reason: EndReason::Closed,
                value: entry.value,
            });
        }
    }

    /// Moves sessions whose replies kept them alive away from the old end,
    /// until the oldest entry's recorded activity is its real one. Each
    /// entry moves at most once per call: its activity is then settled.
    fn settle_oldest(&mut self) {
        loop {
            let Some((flow, entry)) = self.sessions.peek_lru() else {
                return;
            };
            let replied = entry.gate.last_reply_millis();
            if replied <= entry.active {
                return;
            }
            let flow = *flow;
            if let Some(entry) = self.sessions.get_mut(&flow) {
                entry.active = replied;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(30);

    fn limits(responses: Option<u32>, max_sessions: usize) -> Limits {
        Limits {
            idle_timeout: IDLE,
            responses,
            max_sessions,
        }
    }

    fn flow(n: u32) -> Flow {
        // Distinct (address, port) pairs across 127.0.0.0/8, as a flood
        // with spoofed sources would bring.
        let address = std::net::Ipv4Addr::from(0x7f00_0000 | (n >> 8));
        Flow {
            client: SocketAddr::from((address, 1024 + (n & 0xff) as u16)),
            local: "127.0.0.1".parse().unwrap(),
        }
    }

    /// What the gate lets through of `count` replies at `now`: (delivered, last).
    fn replies(gate: &SessionGate, count: usize, now: Instant) -> (usize, bool) {
        let admitted = gate.admit_replies(count, now);
        (admitted.deliver, admitted.last)
    }

    /// A table whose values name their server, and a clock.
    struct Fixture {
        table: SessionTable<&'static str>,
        start: Instant,
        gates: Vec<(Flow, Arc<SessionGate>)>,
    }

    impl Fixture {
        fn new(limits: Limits) -> Self {
            let start = Instant::now();
            Self {
                table: SessionTable::new(limits, start),
                start,
                gates: Vec::new(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.start + Duration::from_millis(ms)
        }

        /// A client datagram of `flow` at `ms`: its session's server, and
        /// whether a session was opened for it (with what ended before).
        fn datagram(
            &mut self,
            flow: Flow,
            server: &'static str,
            ms: u64,
        ) -> (&'static str, bool, Option<Ended<&'static str>>) {
            let now = self.at(ms);
            match self.table.route(&flow, now) {
                Route::Open(s) => (*s, false, None),
                Route::New(closed) => {
                    let gate = self.table.new_gate();
                    self.gates.push((flow, Arc::clone(&gate)));
                    let (s, evicted) = self.table.open(flow, gate, server, now);
                    (*s, true, evicted.or(closed))
                }
            }
        }

        fn gate(&self, flow: Flow) -> &Arc<SessionGate> {
            &self.gates.iter().rev().find(|(f, _)| *f == flow).unwrap().1
        }

        fn expire(&mut self, ms: u64) -> Vec<(Flow, EndReason)> {
            let mut ended = Vec::new();
            self.table.expire(self.at(ms), &mut ended);
            ended.into_iter().map(|e| (e.flow, e.reason)).collect()
        }
    }

    #[test]
    fn a_client_keeps_its_session_and_server() {
        let mut f = Fixture::new(limits(None, 10));
        assert_eq!(f.datagram(flow(1), "s1", 0).0, "s1");
        let (server, opened, _) = f.datagram(flow(1), "s2", 10);
        assert_eq!((server, opened), ("s1", false));
        let (server, opened, _) = f.datagram(flow(2), "s2", 20);
        assert_eq!((server, opened), ("s2", true));
        assert_eq!(f.table.len(), 2);
    }

    #[test]
    fn a_session_idle_for_the_timeout_ends() {
        let mut f = Fixture::new(limits(None, 10));
        f.datagram(flow(1), "s1", 0);
        f.datagram(flow(2), "s1", 0);
        f.datagram(flow(2), "s1", 10_000);
        assert_eq!(f.expire(29_999), vec![]);
        assert_eq!(f.expire(30_000), vec![(flow(1), EndReason::Idle)]);
        assert_eq!(f.table.next_expiry(), Some(f.at(40_000)));
        assert_eq!(f.expire(40_000), vec![(flow(2), EndReason::Idle)]);
        assert!(f.table.is_empty());
        assert_eq!(f.table.next_expiry(), None);
    }

    #[test]
    fn replies_keep_a_session_alive() {
        let mut f = Fixture::new(limits(None, 10));
        f.datagram(flow(1), "s1", 0);
        assert_eq!(replies(f.gate(flow(1)), 3, f.at(20_000)), (3, false));
        assert_eq!(f.expire(30_000), vec![]);
        assert_eq!(f.table.next_expiry(), Some(f.at(50_000)));
        assert_eq!(f.expire(50_000), vec![(flow(1), EndReason::Idle)]);
    }

    #[test]
    fn one_response_per_request_ends_a_dns_session() {
        let mut f = Fixture::new(limits(Some(1), 10));
        f.datagram(flow(1), "s1", 0);
        let gate = Arc::clone(f.gate(flow(1)));
        assert_eq!(replies(&gate, 1, f.at(1)), (1, true));
        // A second reply to the same query is not delivered.
        assert_eq!(replies(&gate, 1, f.at(2)), (0, true));
        // The client's next query opens a new session (maybe elsewhere).
        let (server, opened, ended) = f.datagram(flow(1), "s2", 3);
        assert_eq!((server, opened), ("s2", true));
        assert_eq!(ended.map(|e| e.reason), Some(EndReason::Responses));
    }

    #[test]
    fn pipelined_requests_each_expect_their_responses() {
        let mut f = Fixture::new(limits(Some(1), 10));
        for ms in 0..3 {
            f.datagram(flow(1), "s1", ms);
        }
        let gate = Arc::clone(f.gate(flow(1)));
        assert_eq!(
            gate.replies_expected(),
            Some(3),
            "what a batch read may take"
        );
        assert_eq!(replies(&gate, 2, f.at(5)), (2, false));
        assert_eq!(gate.replies_expected(), Some(1));
        assert_eq!(replies(&gate, 2, f.at(6)), (1, true));
        assert!(
            !gate.admit_request(),
            "a closed session takes no new request"
        );
    }

    #[test]
    fn several_responses_per_request() {
        let mut f = Fixture::new(limits(Some(2), 10));
        f.datagram(flow(1), "s1", 0);
        let gate = Arc::clone(f.gate(flow(1)));
        assert_eq!(replies(&gate, 1, f.at(1)), (1, false));
        assert_eq!(replies(&gate, 1, f.at(2)), (1, true));
        assert_eq!(f.expire(3), vec![(flow(1), EndReason::Responses)]);
    }

    #[test]
    fn without_a_responses_limit_replies_flow_until_closed() {
        let mut f = Fixture::new(limits(None, 10));
        f.datagram(flow(1), "s1", 0);
        let gate = Arc::clone(f.gate(flow(1)));
        assert_eq!(gate.replies_expected(), None, "no count to go by");
        assert_eq!(replies(&gate, 5, f.at(1)), (5, false));
        gate.close();
        assert_eq!(replies(&gate, 1, f.at(2)), (0, true));
        let (_, opened, ended) = f.datagram(flow(1), "s1", 3);
        assert!(opened);
        assert_eq!(ended.map(|e| e.reason), Some(EndReason::Closed));
    }

    #[test]
    fn at_the_limit_the_session_idle_longest_is_evicted() {
        let mut f = Fixture::new(limits(None, 3));
        for n in 1..=3 {
            f.datagram(flow(n), "s1", u64::from(n));
        }
        // flow 1 is the oldest by client datagrams, but its server answered
        // since: flow 2 has been idle longest.
        f.gate(flow(1)).admit_replies(1, f.at(10));
        let (_, _, evicted) = f.datagram(flow(4), "s1", 11);
        let evicted = evicted.unwrap();
        assert_eq!(
            (evicted.flow, evicted.reason),
            (flow(2), EndReason::Evicted)
        );
        assert_eq!(f.table.len(), 3);
    }

    #[test]
    fn a_spoofed_flood_of_100000_clients_stays_within_the_limit_and_spares_a_busy_client() {
        let max = 1000;
        let mut f = Fixture::new(limits(None, max));
        let busy = Flow {
            client: "[2001:db8::1]:5353".parse().unwrap(),
            local: "::1".parse().unwrap(),
        };
        let mut evicted = 0;
        for n in 0..100_000u32 {
            let ms = u64::from(n / 10);
            let (_, _, ended) = f.datagram(flow(n), "s1", ms);
            if let Some(e) = ended {
                assert_eq!(e.reason, EndReason::Evicted);
                assert_ne!(e.flow, busy, "the busy client lost its session");
                evicted += 1;
            }
            if n % 100 == 0 {
                let (_, opened, _) = f.datagram(busy, "s2", ms);
                assert!(!opened || n == 0, "busy client re-opened at {n}");
            }
            assert!(f.table.len() <= max);
        }
        assert_eq!(f.table.len(), max);
        assert_eq!(evicted, 100_000 + 1 - max);
    }

    #[test]
    fn ending_a_servers_sessions_leaves_the_others() {
        let mut f = Fixture::new(limits(None, 10));
        f.datagram(flow(1), "s1", 0);
        f.datagram(flow(2), "s2", 0);
        f.datagram(flow(3), "s1", 0);
        let mut ended = Vec::new();
        f.table.end_where(|server| *server == "s1", &mut ended);
        let mut flows: Vec<Flow> = ended.iter().map(|e| e.flow).collect();
        flows.sort_by_key(|f| f.client);
        assert_eq!(flows, vec![flow(1), flow(3)]);
        assert!(ended.iter().all(|e| e.reason == EndReason::Closed));
        let (server, opened, _) = f.datagram(flow(2), "s9", 1);
        assert_eq!((server, opened), ("s2", false));
    }

    #[test]
    fn an_end_reported_for_a_replaced_session_is_ignored() {
        let mut f = Fixture::new(limits(Some(1), 10));
        f.datagram(flow(1), "s1", 0);
        let old = Arc::clone(f.gate(flow(1)));
        old.admit_replies(1, f.at(1));
        f.datagram(flow(1), "s2", 2);
        assert!(f.table.end(&flow(1), &old, EndReason::Responses).is_none());
        assert_eq!(f.table.len(), 1);
        let new = Arc::clone(f.gate(flow(1)));
        let ended = f.table.end(&flow(1), &new, EndReason::Closed).unwrap();
        assert_eq!(ended.value, "s2");
    }

    #[test]
    fn a_lower_limit_on_reload_evicts_down_to_it() {
        let mut f = Fixture::new(limits(None, 10));
        for n in 0..10 {
            f.datagram(flow(n), "s1", u64::from(n));
        }
        let mut ended = Vec::new();
        f.table.set_limits(limits(None, 4), &mut ended);
        assert_eq!(f.table.len(), 4);
        let evicted: Vec<Flow> = ended.iter().map(|e| e.flow).collect();
        assert_eq!(evicted, (0..6).map(flow).collect::<Vec<_>>());
    }
}
