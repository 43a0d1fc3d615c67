//! One UDP listening address: the task that owns its session table and
//! forwards client datagrams, and one reply task per session.
//!
//! Each session has its own socket connected to its server. The kernel then
//! sorts the servers' replies by session (no lookup on the way back), gives
//! the server a distinct source port per client as with TCP, and reports
//! an ICMP port unreachable on that socket, which is how a UDP server
//! without an active check is observed passively. The cost is a descriptor
//! and a small task per session, both bounded by `max_sessions`.
//!
//! Datagrams move in batches (`recvmmsg`/`sendmmsg`) through a per-thread
//! scratch buffer, so nothing is allocated per datagram and a session holds
//! no buffer of its own.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::session::{EndReason, Ended, Flow, Limits, Route, SessionGate, SessionTable};
use super::socket;
use super::stats::{DropReason, FrontendStats};
use crate::config::UdpSettings;
use crate::health::Observation;
use crate::runtime::{ActiveConnection, FrontendRuntime, ServerRuntime};
use crate::sys::{self, Received, BATCH};

/// Room for the largest UDP payload, so no datagram is ever cut.
const SLOT: usize = 1 << 16;

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
    pub socket: UdpSocket,
    /// The configured address; its IP is the source of every reply unless
    /// the listener is a wildcard.
    pub address: SocketAddr,
}

impl ListenerSocket {
    fn is_wildcard(&self) -> bool {
        self.address.ip().is_unspecified()
    }
}

/// A session's resources on this side: dropping it closes the socket
/// towards the server and stops the reply task.
#[derive(Debug)]
struct Session {
    socket: Arc<UdpSocket>,
    gate: Arc<SessionGate>,
    server: Arc<ServerRuntime>,
    replies: tokio::task::AbortHandle,
    /// Counts the session on its server (least-connections, /status).
    _active: ActiveConnection,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

/// A reply task's report that its session is over.
#[derive(Debug)]
struct SessionEnd {
    flow: Flow,
    gate: Arc<SessionGate>,
    reason: EndReason,
}

/// Serves `listener` until `stop` turns true, then keeps relaying replies
/// of the open sessions until they end (idle or answered), like a TCP
/// listener that stops accepting but lets its connections finish.
pub async fn run(
    listener: ListenerSocket,
    mut serving: watch::Receiver<Serving>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = Arc::new(listener);
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel();
    let current = serving.borrow_and_update().clone();
    let mut owner = Owner {
        table: SessionTable::new(current.limits(), Instant::now()),
        serving: current,
        listener,
        ended_tx,
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
            Some(end) = ended_rx.recv() => {
                if let Some(ended) = owner.table.end(&end.flow, &end.gate, end.reason) {
                    finish(&owner.serving.stats, ended);
                }
            }
            () = &mut expiry, if armed.is_some() => {
                armed = None;
                let mut ended = Vec::new();
                owner.table.expire(Instant::now(), &mut ended);
                finish_all(&owner.serving.stats, ended);
            }
            ready = owner.listener.socket.readable(), if !stopping => {
                if let Err(error) = ready {
                    tracing::error!(address = %owner.listener.address, error = %error, "udp listener failed");
                    stopping = true;
                    continue;
                }
                owner.receive_batches();
            }
        }
    }
    tracing::debug!(address = %owner.listener.address, "udp listener closed");
}

struct Owner {
    listener: Arc<ListenerSocket>,
    serving: Serving,
    table: SessionTable<Session>,
    ended_tx: mpsc::UnboundedSender<SessionEnd>,
    throttle: Throttle,
}

/// Per-batch sums, added to the shared counters once per batch.
#[derive(Debug, Default)]
struct Tally {
    datagrams: u64,
    bytes: u64,
    dropped: SmallVec<[(DropReason, u64); 2]>,
}

impl Tally {
    fn drop(&mut self, why: DropReason) {
        match self.dropped.iter_mut().find(|(r, _)| *r == why) {
            Some((_, n)) => *n += 1,
            None => self.dropped.push((why, 1)),
        }
    }
}

impl Owner {
    /// Reads what the socket holds, a batch at a time, up to a bound so
    /// replies and timers get their turn under a flood.
    fn receive_batches(&mut self) {
        for _ in 0..8 {
            let result = with_scratch(|scratch| {
                let socket = &self.listener.socket;
                let n = socket.try_io(Interest::READABLE, || {
                    sys::recv_batch(
                        socket.as_fd(),
                        &mut scratch.buffer,
                        SLOT,
                        &mut scratch.received,
                    )
                })?;
                let now = Instant::now();
                let mut tally = Tally::default();
                for (i, meta) in scratch.received.iter().take(n).enumerate() {
                    let datagram = &scratch.buffer[i * SLOT..i * SLOT + meta.len];
                    self.forward(meta, datagram, now, &mut tally);
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
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    // Errors of one datagram (an ICMP error queued on a
                    // wildcard socket and the like): the next read goes on.
                    self.throttle.warn(|suppressed| {
                        tracing::warn!(address = %self.listener.address, error = %error, suppressed, "udp receive failed");
                    });
                    return;
                }
            }
        }
    }

    /// One client datagram: to its session, opening one if needed.
    fn forward(&mut self, meta: &Received, datagram: &[u8], now: Instant, tally: &mut Tally) {
        let Some(client) = meta.peer else { return };
        if meta.truncated {
            tally.drop(DropReason::Truncated);
            return;
        }
        let local = match meta.local {
            Some(ip) if self.listener.is_wildcard() => ip,
            _ => self.listener.address.ip(),
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
                    finish(&self.serving.stats, ended);
                }
                self.open_and_send(flow, datagram, now)
            }
            Route::New(closed) => {
                if let Some(ended) = closed {
                    finish(&self.serving.stats, ended);
                }
                self.open_and_send(flow, datagram, now)
            }
        };
        match sent {
            Sent::Ok => {
                tally.datagrams += 1;
                tally.bytes += datagram.len() as u64;
            }
            Sent::Dropped(why) => tally.drop(why),
            Sent::Refused(server, gate) => {
                server.observe(Observation::ConnectFailed("port unreachable".to_owned()));
                if let Some(ended) = self.table.end(&flow, &gate, EndReason::Closed) {
                    finish(&self.serving.stats, ended);
                }
                tally.drop(DropReason::Unreachable);
            }
        }
    }

    fn open_and_send(&mut self, flow: Flow, datagram: &[u8], now: Instant) -> Sent {
        let stats = Arc::clone(&self.serving.stats);
        // max_sessions bounds the frontend across all its listeners.
        if stats.active() >= self.serving.settings.max_sessions {
            match self.table.evict_oldest() {
                Some(ended) => finish(&stats, ended),
                None => return Sent::Dropped(DropReason::Limit),
            }
        }
        let gate = self.table.new_gate();
        let session = match self.connect(flow, &gate) {
            Ok(session) => session,
            // Out of descriptors: the session idle longest gives up its own.
            Err(DropReason::Socket) => match self.table.evict_oldest() {
                Some(ended) => {
                    finish(&stats, ended);
                    match self.connect(flow, &gate) {
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
        stats.session_opened();
        let (session, evicted) = self.table.open(flow, gate, session, now);
        let sent = send_to_server(session, datagram);
        if let Some(ended) = evicted {
            finish(&stats, ended);
        }
        sent
    }

    /// A socket towards a server picked by the backend's algorithm, and its
    /// reply task. A server whose socket cannot be connected (no route) is
    /// observed as failed and another one tried, up to `retries`.
    fn connect(&mut self, flow: Flow, gate: &Arc<SessionGate>) -> Result<Session, DropReason> {
        let backend = &self.serving.runtime.backend;
        let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
        for _ in 0..=backend.config.retries {
            let Some(index) = backend.pick(flow.client.ip(), &tried) else {
                break;
            };
            let server = &backend.servers[index];
            match socket::connect_session(server.address) {
                Ok(socket) => {
                    let socket = Arc::new(socket);
                    let replies = tokio::spawn(relay_replies(ReplyPath {
                        socket: Arc::clone(&socket),
                        listener: Arc::clone(&self.listener),
                        flow,
                        gate: Arc::clone(gate),
                        server: Arc::clone(server),
                        stats: Arc::clone(&self.serving.stats),
                        ended: self.ended_tx.clone(),
                    }))
                    .abort_handle();
                    return Ok(Session {
                        socket,
                        gate: Arc::clone(gate),
                        _active: server.begin_connection(),
                        server: Arc::clone(server),
                        replies,
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

    /// A reload: new limits, and the sessions of servers it removed end.
    fn reconfigure(&mut self, serving: Serving) {
        let mut ended = Vec::new();
        self.table.set_limits(serving.limits(), &mut ended);
        self.table
            .end_where(|session| session.server.is_retired(), &mut ended);
        finish_all(&self.serving.stats, ended);
        self.serving = serving;
    }
}

enum Sent {
    Ok,
    Dropped(DropReason),
    /// The server answered an earlier datagram with port unreachable.
    Refused(Arc<ServerRuntime>, Arc<SessionGate>),
}

fn send_to_server(session: &Session, datagram: &[u8]) -> Sent {
    // Straight to the kernel: tokio's readiness of a socket opened a moment
    // ago is not known yet, and a UDP send never waits anyway.
    match socket2::SockRef::from(session.socket.as_ref()).send(datagram) {
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

fn finish(stats: &FrontendStats, ended: Ended<Session>) {
    stats.session_ended(ended.reason);
}

fn finish_all(stats: &FrontendStats, ended: Vec<Ended<Session>>) {
    for e in ended {
        finish(stats, e);
    }
}

/// Everything a reply task needs; it never touches the session table.
struct ReplyPath {
    socket: Arc<UdpSocket>,
    listener: Arc<ListenerSocket>,
    flow: Flow,
    gate: Arc<SessionGate>,
    server: Arc<ServerRuntime>,
    stats: Arc<FrontendStats>,
    ended: mpsc::UnboundedSender<SessionEnd>,
}

/// Relays the server's datagrams to the client until the session is
/// complete (`udp_responses`), the server is unreachable, or the owner
/// drops the session (which aborts this task).
async fn relay_replies(path: ReplyPath) {
    let mut answered = false;
    let reason = loop {
        if path.socket.readable().await.is_err() {
            break EndReason::Closed;
        }
        match with_scratch(|scratch| path.relay_batch(scratch)) {
            Ok(last) => {
                if !answered {
                    answered = true;
                    path.server.observe(Observation::ConnectSucceeded);
                }
                if last {
                    break EndReason::Responses;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                path.gate.close();
                path.server
                    .observe(Observation::ConnectFailed("port unreachable".to_owned()));
                break EndReason::Closed;
            }
            Err(error) => {
                tracing::debug!(server = %path.server.address, error = %error, "udp session receive failed");
                path.gate.close();
                break EndReason::Closed;
            }
        }
    };
    let _ = path.ended.send(SessionEnd {
        flow: path.flow,
        gate: path.gate,
        reason,
    });
}

impl ReplyPath {
    /// One batch of replies to the client; true when it completed the session.
    fn relay_batch(&self, scratch: &mut Scratch) -> io::Result<bool> {
        let socket = &self.socket;
        let n = socket.try_io(Interest::READABLE, || {
            sys::recv_batch(
                socket.as_fd(),
                &mut scratch.buffer,
                SLOT,
                &mut scratch.received,
            )
        })?;
        let admitted = self.gate.admit_replies(n, Instant::now());
        let mut replies: [&[u8]; BATCH] = [&[]; BATCH];
        for (i, (reply, meta)) in replies
            .iter_mut()
            .zip(&scratch.received)
            .take(admitted.deliver)
            .enumerate()
        {
            *reply = &scratch.buffer[i * SLOT..i * SLOT + meta.len];
        }
        let replies = &replies[..admitted.deliver];
        let from = (self.listener.is_wildcard() && !self.flow.local.is_unspecified())
            .then_some(self.flow.local);
        let listener = self.listener.socket.as_fd();
        let (mut next, mut sent, mut bytes, mut failed) = (0, 0u64, 0u64, 0u64);
        while next < replies.len() {
            match sys::send_batch(listener, &replies[next..], Some(self.flow.client), from) {
                Ok(k) => {
                    sent += k as u64;
                    bytes += replies[next..next + k]
                        .iter()
                        .map(|r| r.len() as u64)
                        .sum::<u64>();
                    next += k;
                }
                // A full socket buffer: the rest of the batch is lost, as
                // it would be on the wire.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    failed += (replies.len() - next) as u64;
                    next = replies.len();
                }
                // This datagram only (too large for the path, say).
                Err(_) => {
                    failed += 1;
                    next += 1;
                }
            }
        }
        let stats = &self.stats;
        stats.datagrams_to_client.increment(sent);
        stats.bytes_to_client.increment(bytes);
        self.server.metrics().bytes_to_client.increment(bytes);
        if failed > 0 {
            stats.dropped(DropReason::Send, failed);
        }
        if n > admitted.deliver {
            stats.dropped(DropReason::UnexpectedReply, (n - admitted.deliver) as u64);
        }
        Ok(admitted.last)
    }
}

/// Receive buffers shared by every listener and reply task of a thread:
/// used only between two awaits, so one set per thread serves them all.
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
