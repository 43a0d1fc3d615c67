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
//! sessions, reads each one's replies and sends all of them to their
//! clients in one `sendmmsg`; client datagrams arrive by `recvmmsg`. So a
//! session costs a descriptor and a table entry (no task, no buffer), and
//! the system calls per datagram stay few: one `send` towards the server,
//! one `recvmmsg` per ready session, the rest shared by a batch.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use smallvec::SmallVec;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::session::{EndReason, Ended, Flow, Limits, Route, SessionGate, SessionTable};
use super::socket;
use super::stats::{DropReason, FrontendStats};
use crate::config::UdpSettings;
use crate::health::Observation;
use crate::runtime::{ActiveConnection, FrontendRuntime, ServerRuntime};
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
    pub socket: AsyncFd<std::net::UdpSocket>,
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

/// The epoll set of a listener's session sockets.
#[derive(Debug)]
struct SessionPoll(Epoll);

impl AsRawFd for SessionPoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// A session's resources: dropping it closes the socket towards the
/// server, which also takes it out of the epoll set.
#[derive(Debug)]
struct Session {
    socket: socket2::Socket,
    token: u64,
    gate: Arc<SessionGate>,
    server: Arc<ServerRuntime>,
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
    let poll = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(io::Error::from)
        .and_then(|e| sys::register_readable(SessionPoll(e)))
    {
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
            tokens: HashMap::with_hasher(RandomState::new()),
        },
        serving: current,
        next_token: 0,
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
        let next = owner.table.next_expiry();
        if next != armed {
            if let Some(at) = next {
                expiry.as_mut().reset(at.into());
            }
            armed = next;
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
                let mut ended = Vec::new();
                owner.table.expire(Instant::now(), &mut ended);
                owner.books.finish_all(ended);
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
    owner.books.finish_all(ended);
    tracing::debug!(address = %listener.address, "udp listener closed");
}

struct Owner {
    serving: Serving,
    table: SessionTable<Session>,
    books: Books,
    next_token: u64,
    /// Sessions a batch of replies completed, ended after the batch.
    ending: Vec<(Flow, Arc<SessionGate>, EndReason)>,
    throttle: Throttle,
}

/// What outlives a session in the table: its token in the epoll set and
/// the counters of its end.
struct Books {
    stats: Arc<FrontendStats>,
    tokens: HashMap<u64, Flow, RandomState>,
}

impl Books {
    fn finish(&mut self, ended: Ended<Session>) {
        self.tokens.remove(&ended.value.token);
        self.stats.session_ended(ended.reason);
    }

    fn finish_all(&mut self, ended: Vec<Ended<Session>>) {
        for e in ended {
            self.finish(e);
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
                )?;
                let now = Instant::now();
                let mut tally = Tally::default();
                for (i, meta) in scratch.received.iter().take(n).enumerate() {
                    let datagram = &scratch.buffer[i * SLOT..i * SLOT + meta.len];
                    self.forward(poll, listener, meta, datagram, now, &mut tally);
                }
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

    /// One client datagram: to its session, opening one if needed.
    fn forward(
        &mut self,
        poll: &SessionPoll,
        listener: &ListenerSocket,
        meta: &Received,
        datagram: &[u8],
        now: Instant,
        tally: &mut Tally,
    ) {
        let Some(client) = meta.peer else { return };
        if meta.truncated {
            tally.drop(DropReason::Truncated, 1);
            return;
        }
        let local = match meta.local {
            Some(ip) if listener.address.ip().is_unspecified() => ip,
            _ => listener.address.ip(),
        };
        let flow = Flow { client, local };
        let sent = match self.table.route(&flow, now) {
            Route::Open(session) if session.server.is_healthy() => {
                send_to_server(session, datagram)
            }
            // Its server went down: the client's next datagram is balanced
            // again rather than sent into silence until the session idles out.
            Route::Open(session) => {
                let gate = Arc::clone(&session.gate);
                if let Some(ended) = self.table.end(&flow, &gate, EndReason::Closed) {
                    self.books.finish(ended);
                }
                self.open_and_send(poll, flow, datagram, now)
            }
            Route::New(closed) => {
                if let Some(ended) = closed {
                    self.books.finish(ended);
                }
                self.open_and_send(poll, flow, datagram, now)
            }
        };
        match sent {
            Sent::Ok => {
                tally.datagrams += 1;
                tally.bytes += datagram.len() as u64;
            }
            Sent::Dropped(why) => tally.drop(why, 1),
            Sent::Refused(server, gate) => {
                server.observe(Observation::ConnectFailed("port unreachable".to_owned()));
                if let Some(ended) = self.table.end(&flow, &gate, EndReason::Closed) {
                    self.books.finish(ended);
                }
                tally.drop(DropReason::Unreachable, 1);
            }
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
                Some(ended) => self.books.finish(ended),
                None => return Sent::Dropped(DropReason::Limit),
            }
        }
        let session = match self.connect(poll, flow) {
            Ok(session) => session,
            // Out of descriptors: the session idle longest gives up its own.
            Err(DropReason::Socket) => match self.table.evict_oldest() {
                Some(ended) => {
                    self.books.finish(ended);
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
        self.books.tokens.insert(session.token, flow);
        let gate = Arc::clone(&session.gate);
        let (session, evicted) = self.table.open(flow, gate, session, now);
        let sent = send_to_server(session, datagram);
        if let Some(ended) = evicted {
            self.books.finish(ended);
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
            let token = self.next_token;
            let address = server.current_address().ok_or_else(|| {
                io::Error::new(io::ErrorKind::AddrNotAvailable, "name not resolved yet")
            });
            let opened = address
                .and_then(socket::connect_session)
                .and_then(|socket| {
                    poll.0
                        .add(&socket, EpollEvent::new(EpollFlags::EPOLLIN, token))
                        .map_err(io::Error::from)?;
                    Ok(socket)
                });
            match opened {
                Ok(socket) => {
                    self.next_token += 1;
                    return Ok(Session {
                        socket,
                        token,
                        gate: self.table.new_gate(),
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
    /// to the clients. True when nothing is left to read.
    fn relay_replies(&mut self, poll: &SessionPoll, listener: &ListenerSocket) -> bool {
        let mut events = [EpollEvent::empty(); READY];
        for _ in 0..ROUNDS {
            let ready = match poll.0.wait(&mut events, 0u8) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(error) => {
                    tracing::error!(address = %listener.address, error = %error, "udp session poll failed");
                    return false;
                }
            };
            if ready == 0 {
                return true;
            }
            let more =
                with_scratch(|scratch| self.relay_ready(&events[..ready], listener, scratch));
            for (flow, gate, reason) in std::mem::take(&mut self.ending) {
                if let Some(ended) = self.table.end(&flow, &gate, reason) {
                    self.books.finish(ended);
                }
            }
            if ready < READY && !more {
                return true;
            }
        }
        false
    }

    /// Reads each ready session and sends what it may deliver; true if a
    /// session may hold more than was read.
    fn relay_ready(
        &mut self,
        events: &[EpollEvent],
        listener: &ListenerSocket,
        scratch: &mut Scratch,
    ) -> bool {
        let mut outbox = Outbox::default();
        let mut more = false;
        let now = Instant::now();
        for event in events {
            let Some(flow) = self.books.tokens.get(&event.data()).copied() else {
                continue;
            };
            let Some(session) = self.table.peek(&flow) else {
                continue;
            };
            if outbox.len == BATCH {
                outbox.flush(listener, scratch, &self.serving.stats);
            }
            let free = BATCH - outbox.len;
            let at = outbox.len;
            let read = sys::recv_batch(
                session.socket.as_fd(),
                &mut scratch.buffer[at * SLOT..],
                SLOT,
                &mut scratch.received[at..],
            );
            match read {
                Ok(n) => {
                    more |= n == free;
                    let admitted = session.gate.admit_replies(n, now);
                    let from = listener.reply_source(&flow);
                    let mut bytes = 0;
                    for meta in &scratch.received[at..at + admitted.deliver] {
                        outbox.push(meta.len, flow.client, from);
                        bytes += meta.len as u64;
                    }
                    session.server.metrics().bytes_to_client.increment(bytes);
                    session.server.observe(Observation::ConnectSucceeded);
                    if n > admitted.deliver {
                        let extra = (n - admitted.deliver) as u64;
                        self.serving
                            .stats
                            .dropped(DropReason::UnexpectedReply, extra);
                    }
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
        outbox.flush(listener, scratch, &self.serving.stats);
        more
    }

    /// A reload: new limits, and the sessions of servers it removed end.
    fn reconfigure(&mut self, serving: Serving) {
        let mut ended = Vec::new();
        self.table.set_limits(serving.limits(), &mut ended);
        self.table
            .end_where(|session| session.server.is_retired(), &mut ended);
        self.books.finish_all(ended);
        self.books.stats = Arc::clone(&serving.stats);
        self.serving = serving;
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
        let mut outgoing = [Outgoing {
            data: &[],
            to: None,
            from: None,
        }; BATCH];
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

enum Sent {
    Ok,
    Dropped(DropReason),
    /// The server answered an earlier datagram with port unreachable.
    Refused(Arc<ServerRuntime>, Arc<SessionGate>),
}

fn send_to_server(session: &Session, datagram: &[u8]) -> Sent {
    match session.socket.send(datagram) {
        Ok(_) => {
            session
                .server
                .metrics()
                .bytes_to_server
                .increment(datagram.len() as u64);
            Sent::Ok
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Sent::Refused(Arc::clone(&session.server), Arc::clone(&session.gate))
        }
        Err(_) => Sent::Dropped(DropReason::Send),
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
