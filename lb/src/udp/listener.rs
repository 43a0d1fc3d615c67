//! One UDP listening address: a task that owns the listening socket, the
//! session table and every session's socket.
//!
//! Each session has its own socket connected to its server. The kernel then
//! sorts the servers' replies by session (no lookup on the way back), gives
//! the server a distinct source port per client as with TCP, and reports
//! an ICMP port unreachable on that socket, which is how a UDP server
//! without an active check is observed passively.
//!
//! The session sockets are not registered with the async runtime one by
//! one: they sit in an epoll set of this listener, whose descriptor the
//! runtime watches. When it turns readable, the task collects the ready
//! sessions, reads every reply queued on each (`recvmmsg`) and sends all
//! of them to their clients in one `sendmmsg`; client datagrams arrive by
//! `recvmmsg`, and a client's consecutive datagrams in a batch leave for
//! its server in one `sendmmsg` (a resolver with many queries in flight on
//! one socket). So a session costs a descriptor and a table entry (no
//! task, no buffer), and the system calls per datagram stay few: at most
//! one towards the server and one per reply, the rest shared by a batch.
//! A session's socket outlives it and serves later sessions
//! ([`super::sockets`]), so a DNS query does not pay for opening and
//! closing one.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollEvent;
use smallvec::SmallVec;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::session::{EndReason, Ended, Flow, Limits, Route, SessionGate, SessionTable};
use super::socket;
use super::sockets::{SessionPoll, SessionSockets};
use super::stats::{DropReason, FrontendStats};
use crate::config::UdpSettings;
use crate::health::Observation;
use crate::runtime::{ActiveConnection, FrontendRuntime, ServerMetrics, ServerRuntime};
use crate::sys::{self, Outgoing, Received, BATCH};

/// Room for the largest UDP payload, so no datagram is ever cut.
const SLOT: usize = 1 << 16;
/// Ready sessions taken per epoll_wait.
const READY: usize = 64;
/// Batches handled per wake-up before yielding, so a flood on one side
/// cannot starve the other or the timers.
const ROUNDS: usize = 8;

/// What a listener serves; replaced as a whole on reload.
#[derive(Debug, Clone)]
pub struct Serving {
    pub runtime: Arc<FrontendRuntime>,
    pub settings: UdpSettings,
    pub stats: Arc<FrontendStats>,
}

impl Serving {
    fn limits(&self) -> Limits {
        Limits {
            idle_timeout: self.settings.idle_timeout,
            responses: self.settings.responses,
            max_sessions: self.settings.max_sessions,
        }
    }
}

#[derive(Debug)]
pub struct ListenerSocket {
    pub socket: AsyncFd<UdpSocket>,
    /// The configured address; its IP is the source of every reply unless
    /// the listener is a wildcard.
    pub address: SocketAddr,
}

impl ListenerSocket {
    /// Where replies to `flow` leave from: a wildcard listener names the
    /// address the client used; a bound one needs no say.
    fn reply_source(&self, flow: &Flow) -> Option<IpAddr> {
        (self.address.ip().is_unspecified() && !flow.local.is_unspecified()).then_some(flow.local)
    }
}

/// A session's resources, besides its socket (the slot in
/// [`SessionSockets`], released when the session ends).
#[derive(Debug)]
struct Session {
    slot: u32,
    gate: Arc<SessionGate>,
    server: Arc<ServerRuntime>,
    /// The server's counters, resolved once for the session.
    metrics: Arc<ServerMetrics>,
    /// Counts the session on its server (least-connections, /status).
    _active: ActiveConnection,
}

/// Serves `listener` until `stop` turns true, then keeps relaying replies
/// of the open sessions until they end (idle or answered), like a TCP
/// listener that stops accepting but lets its connections finish.
pub async fn run(
    listener: ListenerSocket,
    mut serving: watch::Receiver<Serving>,
    mut stop: watch::Receiver<bool>,
) {
    let poll = match SessionPoll::new() {
        Ok(poll) => poll,
        Err(error) => {
            tracing::error!(address = %listener.address, error = %error, "cannot create the udp session poll set");
            return;
        }
    };
    let current = serving.borrow_and_update().clone();
    let mut owner = Owner {
        table: SessionTable::new(current.limits(), Instant::now()),
        books: Books {
            stats: Arc::clone(&current.stats),
            max_sessions: current.settings.max_sessions,
            sockets: SessionSockets::new(),
        },
        serving: current,
        ending: Vec::new(),
        throttle: Throttle::default(),
    };
    let mut stopping = *stop.borrow_and_update();
    let expiry = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(expiry);
    let mut armed: Option<Instant> = None;
    loop {
        if stopping && owner.table.is_empty() {
            break;
        }
        let next = [owner.table.next_expiry(), owner.books.sockets.next_trim()]
            .into_iter()
            .flatten()
            .min();
        // Re-armed only for an earlier time: busy sessions push their
        // expiry later on every datagram, and a timer that fires early just
        // finds nothing to end and is armed again.
        if let Some(at) = next.filter(|&at| armed.is_none_or(|armed| at < armed)) {
            expiry.as_mut().reset(at.into());
            armed = Some(at);
        }
        tokio::select! {
            biased;
            changed = stop.changed(), if !stopping => {
                stopping = changed.is_err() || *stop.borrow_and_update();
            }
            changed = serving.changed() => match changed {
                Ok(()) => {
                    let next = serving.borrow_and_update().clone();
                    owner.reconfigure(next);
                }
                // The listener set is gone (shutdown): serve out what is open.
                Err(_) => stopping = true,
            },
            ready = poll.readable() => match ready {
                Ok(mut guard) => {
                    if owner.relay_replies(poll.get_ref(), &listener) {
                        guard.clear_ready();
                    }
                }
                Err(error) => {
                    tracing::error!(address = %listener.address, error = %error, "udp session poll set failed");
                    break;
                }
            },
            () = &mut expiry, if armed.is_some() => {
                armed = None;
                let now = Instant::now();
                let mut ended = Vec::new();
                owner.table.expire(now, &mut ended);
                owner.books.finish_all(ended, now);
                owner.books.sockets.trim(now);
            }
            ready = listener.socket.readable(), if !stopping => match ready {
                Ok(mut guard) => {
                    if owner.receive_from_clients(poll.get_ref(), &listener) {
                        guard.clear_ready();
                    }
                }
                Err(error) => {
                    tracing::error!(address = %listener.address, error = %error, "udp listener failed");
                    stopping = true;
                }
            },
        }
    }
    let mut ended = Vec::new();
    owner.table.clear(&mut ended);
    owner.books.finish_all(ended, Instant::now());
    tracing::debug!(address = %listener.address, "udp listener closed");
}

struct Owner {
    serving: Serving,
    table: SessionTable<Session>,
    books: Books,
    /// Sessions a batch of replies completed, ended after the batch.
    ending: Vec<(Flow, Arc<SessionGate>, EndReason)>,
    throttle: Throttle,
}

/// What outlives a session in the table: its socket and the counters of
/// its end.
struct Books {
    stats: Arc<FrontendStats>,
    max_sessions: usize,
    sockets: SessionSockets,
}

impl Books {
    fn finish(&mut self, ended: Ended<Session>, now: Instant) {
        self.stats.session_ended(ended.reason);
        // A session ended by the shell may have left an error on its socket
        // or its server is gone: that socket is closed. Sockets kept for
        // later sessions count on max_sessions like open ones, so a flood
        // at the limit closes them as before.
        let reusable = ended.reason != EndReason::Closed;
        let room = self.max_sessions.saturating_sub(self.stats.active());
        self.sockets.release(ended.value.slot, reusable, room, now);
    }

    fn finish_all(&mut self, ended: Vec<Ended<Session>>, now: Instant) {
        for e in ended {
            self.finish(e, now);
        }
    }
}

/// Per-batch sums, added to the shared counters once per batch.
#[derive(Debug, Default)]
struct Tally {
    datagrams: u64,
    bytes: u64,
    dropped: SmallVec<[(DropReason, u64); 2]>,
}

impl Tally {
    fn drop(&mut self, why: DropReason, count: u64) {
        if count == 0 {
            return;
        }
        match self.dropped.iter_mut().find(|(r, _)| *r == why) {
            Some((_, n)) => *n += count,
            None => self.dropped.push((why, count)),
        }
    }
}

impl Owner {
    /// Reads client datagrams a batch at a time, up to a bound. True when
    /// the socket is drained (a short batch), so readiness may be cleared.
    fn receive_from_clients(&mut self, poll: &SessionPoll, listener: &ListenerSocket) -> bool {
        for _ in 0..ROUNDS {
            let result = with_scratch(|scratch| {
                let n = sys::recv_batch(
                    listener.socket.get_ref().as_fd(),
                    &mut scratch.buffer,
                    SLOT,
                    &mut scratch.received,
                    listener.address.ip().is_unspecified(),
                )?;
                let mut inbound = Inbound {
                    buffer: &scratch.buffer,
                    received: &scratch.received[..n],
                    now: Instant::now(),
                    run: Run::default(),
                    tally: Tally::default(),
                };
                for index in 0..n {
                    self.forward(poll, listener, &mut inbound, index);
                }
                self.send_run(&mut inbound);
                let tally = inbound.tally;
                let stats = &self.serving.stats;
                stats.datagrams_to_server.increment(tally.datagrams);
                stats.bytes_to_server.increment(tally.bytes);
                for (why, count) in tally.dropped {
                    stats.dropped(why, count);
                }
                Ok::<_, io::Error>(n)
            });
            match result {
                Ok(n) if n == BATCH => continue,
                Ok(_) => return true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // An error queued on the socket concerns one datagram;
                    // reading it cleared it, and the next read goes on.
                    self.throttle.warn(|suppressed| {
                        tracing::warn!(address = %listener.address, error = %error, suppressed, "udp receive failed");
                    });
                    return false;
                }
            }
        }
        false
    }

    /// Client datagram `index` of `inbound`: to its session, opening one if
    /// needed. A datagram for an open session joins the run of the same
    /// client's previous datagrams, sent as a whole by [`Self::send_run`];
    /// anything that changes the table sends the run first, so its session
    /// and socket are still the ones it was routed to.
    fn forward(
        &mut self,
        poll: &SessionPoll,
        listener: &ListenerSocket,
        inbound: &mut Inbound<'_>,
        index: usize,
    ) {
        let (meta, now) = (inbound.received[index], inbound.now);
        let Some(client) = meta.peer else { return };
        if meta.truncated {
            inbound.tally.drop(DropReason::Truncated, 1);
            return;
        }
        let local = match meta.local {
            Some(ip) if listener.address.ip().is_unspecified() => ip,
            _ => listener.address.ip(),
        };
        let flow = Flow { client, local };
        if inbound.run.flow.is_some_and(|f| f != flow) {
            self.send_run(inbound);
        }
        // A burst (the same client's next datagram follows) leaves in one
        // call; a lone datagram, the usual case, is sent at once.
        let burst = inbound.run.flow.is_some() || inbound.same_client(index, index + 1);
        let sent = match self.table.route(&flow, now) {
            Route::Open(session) if session.server.is_healthy() => {
                if burst {
                    inbound.run.push(index, flow);
                    return;
                }
                send_to_server(&self.books.sockets, session, inbound.datagram(index))
            }
            // Its server went down: the client's next datagram is balanced
            // again rather than sent into silence until the session idles out.
            Route::Open(session) => {
                let gate = Arc::clone(&session.gate);
                self.send_run(inbound);
                if let Some(ended) = self.table.end(&flow, &gate, EndReason::Closed) {
                    self.books.finish(ended, now);
                }
                self.open_and_send(poll, flow, inbound.datagram(index), now)
            }
            Route::New(closed) => {
                self.send_run(inbound);
                if let Some(ended) = closed {
                    self.books.finish(ended, now);
                }
                self.open_and_send(poll, flow, inbound.datagram(index), now)
            }
        };
        match sent {
            Sent::Ok => {
                inbound.tally.datagrams += 1;
                inbound.tally.bytes += meta.len as u64;
            }
            Sent::Dropped(why) => inbound.tally.drop(why, 1),
            Sent::Refused(server, gate) => {
                self.refused(&flow, &server, &gate, now);
                inbound.tally.drop(DropReason::Unreachable, 1);
            }
        }
    }

    /// Sends the pending run on its session's socket.
    fn send_run(&mut self, inbound: &mut Inbound<'_>) {
        let Some(flow) = inbound.run.flow.take() else {
            return;
        };
        let (first, len) = (inbound.run.first, std::mem::take(&mut inbound.run.len));
        let Some((session, socket)) = self
            .table
            .peek(&flow)
            .and_then(|s| Some((s, self.books.sockets.socket(s.slot)?)))
        else {
            inbound.tally.drop(DropReason::Send, len as u64);
            return;
        };
        let mut datagrams = [Outgoing::connected(&[]); BATCH];
        for (datagram, index) in datagrams.iter_mut().zip(first..first + len) {
            *datagram = Outgoing::connected(inbound.datagram(index));
        }
        let outcome = send_burst(socket, &datagrams[..len]);
        session.metrics.bytes_to_server.increment(outcome.bytes);
        let refused = outcome
            .refused
            .then(|| (Arc::clone(&session.server), Arc::clone(&session.gate)));
        let tally = &mut inbound.tally;
        tally.datagrams += outcome.sent;
        tally.bytes += outcome.bytes;
        tally.drop(DropReason::Send, outcome.failed);
        if let Some((server, gate)) = refused {
            // The datagram that found out, and the rest of the burst.
            tally.drop(DropReason::Unreachable, outcome.unsent);
            self.refused(&flow, &server, &gate, inbound.now);
        }
    }

    /// A send found the server's port unreachable: the server is observed
    /// failed and the session ends.
    fn refused(
        &mut self,
        flow: &Flow,
        server: &ServerRuntime,
        gate: &Arc<SessionGate>,
        now: Instant,
    ) {
        server.observe(Observation::ConnectFailed("port unreachable".to_owned()));
        if let Some(ended) = self.table.end(flow, gate, EndReason::Closed) {
            self.books.finish(ended, now);
        }
    }

    fn open_and_send(
        &mut self,
        poll: &SessionPoll,
        flow: Flow,
        datagram: &[u8],
        now: Instant,
    ) -> Sent {
        // max_sessions bounds the frontend across all its listeners.
        if self.serving.stats.active() >= self.serving.settings.max_sessions {
            match self.table.evict_oldest() {
                Some(ended) => self.books.finish(ended, now),
                None => return Sent::Dropped(DropReason::Limit),
            }
        }
        let mut connected = self.connect(poll, flow);
        // Out of descriptors: sockets kept for later sessions go first.
        if connected
            .as_ref()
            .is_err_and(|why| *why == DropReason::Socket)
            && self.books.sockets.close_kept() > 0
        {
            connected = self.connect(poll, flow);
        }
        let session = match connected {
            Ok(session) => session,
            // Still out: the session idle longest gives up its own.
            Err(DropReason::Socket) => match self.table.evict_oldest() {
                Some(ended) => {
                    self.books.finish(ended, now);
                    match self.connect(poll, flow) {
                        Ok(session) => session,
                        Err(why) => return Sent::Dropped(why),
                    }
                }
                None => return Sent::Dropped(DropReason::Socket),
            },
            Err(why) => {
                if why == DropReason::NoServer {
                    let frontend = &self.serving.runtime.config.name;
                    self.throttle.warn(|suppressed| {
                        tracing::warn!(frontend = %frontend, client = %flow.client, suppressed, "no server can take a udp session; dropping the datagram");
                    });
                }
                return Sent::Dropped(why);
            }
        };
        self.serving.stats.session_opened();
        let gate = Arc::clone(&session.gate);
        let (session, evicted) = self.table.open(flow, gate, session, now);
        let sent = send_to_server(&self.books.sockets, session, datagram);
        if let Some(ended) = evicted {
            self.books.finish(ended, now);
        }
        sent
    }

    /// A socket towards a server picked by the backend's algorithm, in the
    /// epoll set. A server whose socket cannot be connected (no route) is
    /// observed as failed and another one tried, up to `retries`.
    fn connect(&mut self, poll: &SessionPoll, flow: Flow) -> Result<Session, DropReason> {
        let backend = &self.serving.runtime.backend;
        let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
        for _ in 0..=backend.config.retries {
            let Some(index) = backend.pick(flow.client.ip(), &tried) else {
                break;
            };
            let server = &backend.servers[index];
            let opened = server
                .current_address()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrNotAvailable, "name not resolved yet")
                })
                .and_then(|address| self.books.sockets.open(poll, address, flow));
            match opened {
                Ok(opened) => {
                    if opened.strays > 0 {
                        self.serving
                            .stats
                            .dropped(DropReason::UnexpectedReply, opened.strays as u64);
                    }
                    return Ok(Session {
                        slot: opened.slot,
                        gate: self.table.new_gate(),
                        metrics: Arc::clone(&server.metrics()),
                        _active: server.begin_connection(),
                        server: Arc::clone(server),
                    });
                }
                Err(error) if socket::is_exhaustion(&error) => {
                    self.throttle.warn(|suppressed| {
                        tracing::warn!(server = %server.address, error = %error, suppressed, "cannot open a udp socket towards the server");
                    });
                    return Err(DropReason::Socket);
                }
                Err(error) => {
                    server.observe(Observation::ConnectFailed(
                        crate::net::describe_connect_error(&error),
                    ));
                    tried.push(index);
                }
            }
        }
        Err(DropReason::NoServer)
    }

    /// Relays the replies of the sessions the epoll set reports, in batches
    /// to the clients. True when the set reported nothing left to read.
    fn relay_replies(&mut self, poll: &SessionPoll, listener: &ListenerSocket) -> bool {
        with_scratch(|scratch| {
            let mut outbox = Outbox::default();
            let drained = self.relay_rounds(poll, listener, scratch, &mut outbox);
            outbox.flush(listener, scratch, &self.serving.stats);
            drained
        })
    }

    fn relay_rounds(
        &mut self,
        poll: &SessionPoll,
        listener: &ListenerSocket,
        scratch: &mut Scratch,
        outbox: &mut Outbox,
    ) -> bool {
        let mut events = [EpollEvent::empty(); READY];
        for _ in 0..ROUNDS {
            let ready = match poll.wait(&mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::error!(address = %listener.address, error = %error, "udp session poll failed");
                    return false;
                }
            };
            // Only an empty answer shows that every socket was read dry: a
            // read bounded by the outbox's room may leave some for the next
            // round.
            if ready == 0 {
                return true;
            }
            let now = Instant::now();
            self.relay_ready(&events[..ready], listener, scratch, outbox, now);
            for (flow, gate, reason) in std::mem::take(&mut self.ending) {
                if let Some(ended) = self.table.end(&flow, &gate, reason) {
                    self.books.finish(ended, now);
                }
            }
        }
        false
    }

    /// Reads the replies queued on each ready session into the outbox,
    /// which is sent when full. A session with more queued than the outbox
    /// had room for stays ready in the set.
    fn relay_ready(
        &mut self,
        events: &[EpollEvent],
        listener: &ListenerSocket,
        scratch: &mut Scratch,
        outbox: &mut Outbox,
        now: Instant,
    ) {
        let mut unexpected = 0;
        for event in events {
            let slot = event.data() as u32;
            let Some(flow) = self.books.sockets.flow(slot) else {
                unexpected += self.books.sockets.drain_stray(slot);
                continue;
            };
            let (Some(session), Some(socket)) =
                (self.table.peek(&flow), self.books.sockets.socket(slot))
            else {
                continue;
            };
            if outbox.len == BATCH {
                outbox.flush(listener, scratch, &self.serving.stats);
            }
            // A client with many queries in flight on one socket (a
            // resolver, dnsperf) has their replies read in one call, up to
            // the outbox's room; a session expecting one reply, or with no
            // reply limit to say how many may be queued, reads one with a
            // plain recv (a batch read costs more for a single datagram: 3 %
            // fewer queries per core in the bench).
            let at = outbox.len;
            let expected = session.gate.replies_expected().unwrap_or(1);
            let read = match expected.clamp(1, BATCH - at) {
                1 => socket
                    .recv(&mut scratch.buffer[at * SLOT..(at + 1) * SLOT])
                    .map(|len| {
                        scratch.received[0].len = len;
                        1
                    }),
                batch => sys::recv_batch(
                    socket.as_fd(),
                    &mut scratch.buffer[at * SLOT..],
                    SLOT,
                    &mut scratch.received[..batch],
                    false,
                ),
            };
            match read {
                Ok(read) => {
                    let admitted = session.gate.admit_replies(read, now);
                    let mut bytes = 0;
                    for reply in &scratch.received[..admitted.deliver] {
                        outbox.push(reply.len, flow.client, listener.reply_source(&flow));
                        bytes += reply.len as u64;
                    }
                    session.metrics.bytes_to_client.increment(bytes);
                    unexpected += read - admitted.deliver;
                    session.server.observe(Observation::ConnectSucceeded);
                    if admitted.last {
                        self.ending
                            .push((flow, Arc::clone(&session.gate), EndReason::Responses));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    session
                        .server
                        .observe(Observation::ConnectFailed("port unreachable".to_owned()));
                    session.gate.close();
                    self.ending
                        .push((flow, Arc::clone(&session.gate), EndReason::Closed));
                }
                Err(error) => {
                    tracing::debug!(server = %session.server.address, error = %error, "udp session receive failed");
                    session.gate.close();
                    self.ending
                        .push((flow, Arc::clone(&session.gate), EndReason::Closed));
                }
            }
        }
        if unexpected > 0 {
            self.serving
                .stats
                .dropped(DropReason::UnexpectedReply, unexpected as u64);
        }
    }

    /// A reload: new limits, and the sessions of servers it removed end.
    fn reconfigure(&mut self, serving: Serving) {
        let mut ended = Vec::new();
        self.table.set_limits(serving.limits(), &mut ended);
        self.table
            .end_where(|session| session.server.is_retired(), &mut ended);
        self.books.finish_all(ended, Instant::now());
        self.books.stats = Arc::clone(&serving.stats);
        self.books.max_sessions = serving.settings.max_sessions;
        self.serving = serving;
    }
}

/// A batch of client datagrams as received, in the scratch buffer, and
/// what forwarding it has done so far.
struct Inbound<'a> {
    buffer: &'a [u8],
    received: &'a [Received],
    now: Instant,
    /// Datagrams waiting to leave together.
    run: Run,
    tally: Tally,
}

impl Inbound<'_> {
    fn datagram(&self, index: usize) -> &[u8] {
        &self.buffer[index * SLOT..index * SLOT + self.received[index].len]
    }

    /// Whether datagrams `a` and `b` (if any) came from one client to one
    /// local address.
    fn same_client(&self, a: usize, b: usize) -> bool {
        match (self.received.get(a), self.received.get(b)) {
            (Some(a), Some(b)) => a.peer.is_some() && a.peer == b.peer && a.local == b.local,
            _ => false,
        }
    }
}

/// Consecutive datagrams of a batch from one client to its open session.
#[derive(Debug, Default)]
struct Run {
    flow: Option<Flow>,
    first: usize,
    len: usize,
}

impl Run {
    fn push(&mut self, index: usize, flow: Flow) {
        if self.flow.is_none() {
            self.flow = Some(flow);
            self.first = index;
        }
        self.len += 1;
    }
}

/// Replies read into the scratch slots `0..len`, waiting to be sent.
#[derive(Default)]
struct Outbox {
    len: usize,
    entries: [(usize, Option<SocketAddr>, Option<IpAddr>); BATCH],
}

impl Outbox {
    fn push(&mut self, bytes: usize, to: SocketAddr, from: Option<IpAddr>) {
        self.entries[self.len] = (bytes, Some(to), from);
        self.len += 1;
    }

    /// Sends the batch; what the kernel refuses is counted and dropped, as
    /// it would be on the wire.
    fn flush(&mut self, listener: &ListenerSocket, scratch: &Scratch, stats: &FrontendStats) {
        if self.len == 0 {
            return;
        }
        let mut outgoing = [Outgoing::connected(&[]); BATCH];
        for (i, (out, (bytes, to, from))) in outgoing
            .iter_mut()
            .zip(&self.entries)
            .take(self.len)
            .enumerate()
        {
            *out = Outgoing {
                data: &scratch.buffer[i * SLOT..i * SLOT + bytes],
                to: *to,
                from: *from,
            };
        }
        let outgoing = &outgoing[..self.len];
        let fd = listener.socket.get_ref().as_fd();
        let (mut next, mut sent, mut bytes, mut failed) = (0, 0u64, 0u64, 0u64);
        while next < outgoing.len() {
            match sys::send_batch(fd, &outgoing[next..]) {
                Ok(k) => {
                    sent += k as u64;
                    bytes += outgoing[next..next + k]
                        .iter()
                        .map(|o| o.data.len() as u64)
                        .sum::<u64>();
                    next += k;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    failed += (outgoing.len() - next) as u64;
                    next = outgoing.len();
                }
                // This datagram only (too large for the path, say).
                Err(_) => {
                    failed += 1;
                    next += 1;
                }
            }
        }
        stats.datagrams_to_client.increment(sent);
        stats.bytes_to_client.increment(bytes);
        if failed > 0 {
            stats.dropped(DropReason::Send, failed);
        }
        self.len = 0;
    }
}

/// What became of a burst sent on a session socket.
#[derive(Debug, Default)]
struct BurstSent {
    sent: u64,
    bytes: u64,
    /// Refused by the kernel one by one (a full socket buffer, say).
    failed: u64,
    /// The server answered an earlier datagram with port unreachable: the
    /// session ends, and the `unsent` rest of the burst with it.
    refused: bool,
    unsent: u64,
}

/// Sends `datagrams` (at most [`BATCH`]) on a connected session socket:
/// one `sendmmsg` for a client's burst, a plain `send` for one datagram.
/// The one place that says what a failed send to a server means.
fn send_burst(socket: &UdpSocket, datagrams: &[Outgoing<'_>]) -> BurstSent {
    let mut outcome = BurstSent::default();
    let mut next = 0;
    while next < datagrams.len() {
        let result = match &datagrams[next..] {
            [one] => socket.send(one.data).map(|_| 1),
            several => sys::send_batch(socket.as_fd(), several),
        };
        match result {
            Ok(k) => {
                outcome.sent += k as u64;
                outcome.bytes += datagrams[next..next + k]
                    .iter()
                    .map(|d| d.data.len() as u64)
                    .sum::<u64>();
                next += k;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                outcome.refused = true;
                outcome.unsent = (datagrams.len() - next) as u64;
                break;
            }
            Err(_) => {
                outcome.failed += 1;
                next += 1;
            }
        }
    }
    outcome
}

enum Sent {
    Ok,
    Dropped(DropReason),
    /// The server answered an earlier datagram with port unreachable.
    Refused(Arc<ServerRuntime>, Arc<SessionGate>),
}

fn send_to_server(sockets: &SessionSockets, session: &Session, datagram: &[u8]) -> Sent {
    let Some(socket) = sockets.socket(session.slot) else {
        return Sent::Dropped(DropReason::Send);
    };
    let outcome = send_burst(socket, &[Outgoing::connected(datagram)]);
    session.metrics.bytes_to_server.increment(outcome.bytes);
    if outcome.refused {
        Sent::Refused(Arc::clone(&session.server), Arc::clone(&session.gate))
    } else if outcome.sent == 1 {
        Sent::Ok
    } else {
        Sent::Dropped(DropReason::Send)
    }
}

/// Receive buffers shared by every listener of a thread: used only between
/// two awaits, so one set per thread serves them all.
struct Scratch {
    buffer: Box<[u8]>,
    received: [Received; BATCH],
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        let scratch = slot.get_or_insert_with(|| Scratch {
            buffer: vec![0u8; SLOT * BATCH].into_boxed_slice(),
            received: [Received::default(); BATCH],
        });
        f(scratch)
    })
}

/// At most one warning a second for problems a flood can repeat per datagram.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn warn(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            log(self.suppressed);
            self.last = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}
