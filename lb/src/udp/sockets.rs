//! The sockets of one listener's sessions: each connected to its session's
//! server, all in the listener's epoll set under their slot number, and
//! used again by later sessions rather than closed.
//!
//! Opening a socket, connecting it, adding it to the epoll set and closing
//! it again costs several times what relaying a DNS query and its answer
//! does, and a DNS session lasts one query. So a session's end keeps the
//! socket, made as good as new:
//!
//! 1. it is disconnected: the kernel forgets its server and releases its
//!    port, so a late reply finds no socket (the server gets port
//!    unreachable), exactly as if the socket were closed;
//! 2. it waits for an RCU grace period ([`super::grace`]): a reply the
//!    kernel was queueing on it at the moment of the disconnect has then
//!    landed;
//! 3. whatever landed is read and dropped (counted as an unexpected reply);
//! 4. the next session connects it, and the kernel picks a fresh port, as
//!    for a new socket.
//!
//! Sockets waiting or spare are bounded in number and closed after a while
//! without use. Where the kernel cannot wait for a grace period, sockets
//! are closed at the end of their session as before.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use tokio::io::unix::AsyncFd;

use super::grace::{GracePeriods, Ticket};
use super::session::Flow;
use super::socket;
use crate::sys;

/// Sockets kept for later sessions (waiting for their grace period or
/// spare), per listener: a few grace periods' worth of sessions at a high
/// rate, a small fraction of a process's descriptors.
const SPARE_LIMIT: usize = 4096;
/// A spare socket unused this long is closed.
const SPARE_LINGER: Duration = Duration::from_secs(10);
/// Stray datagrams read from one socket before it is given up on.
const DRAIN_LIMIT: usize = 256;
/// Sockets one trim closes at most, and the pause before the next trim
/// goes on. A close costs the kernel several microseconds (unhashing the
/// port, leaving the epoll set), and a burst of DNS traffic leaves
/// thousands of spares that turn stale in the same instant: closing them
/// in one go held the thread, and every listener on it, for tens of
/// milliseconds (1,232 closes in 40 ms, seen as the p99 of `coexist-bench`'s
/// paced UDP runs).
const TRIM_STEP: usize = 32;
const TRIM_PAUSE: Duration = Duration::from_millis(2);

/// The epoll set of a listener's session sockets.
#[derive(Debug)]
pub struct SessionPoll(Epoll);

impl AsRawFd for SessionPoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

impl SessionPoll {
    pub fn new() -> io::Result<AsyncFd<SessionPoll>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        sys::register_readable(SessionPoll(epoll))
    }

    /// Fills `events` with the sockets that have something to read (their
    /// slot as data), without blocking; how many.
    pub fn wait(&self, events: &mut [EpollEvent]) -> io::Result<usize> {
        self.0.wait(events, 0u8).map_err(io::Error::from)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4 = 0,
    V6 = 1,
}

impl Family {
    fn of(address: SocketAddr) -> Self {
        if address.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }
}

#[derive(Debug)]
struct Slot {
    socket: Option<UdpSocket>,
    family: Family,
    /// The session using the socket; `None` while waiting or spare.
    flow: Option<Flow>,
}

#[derive(Debug, Clone, Copy)]
struct Kept {
    slot: u32,
    ticket: Ticket,
    since: Instant,
}

/// What opening a session's socket did.
#[derive(Debug)]
pub struct Opened {
    pub slot: u32,
    /// Stray datagrams read and dropped from a reused socket.
    pub strays: usize,
}

#[derive(Debug)]
pub struct SessionSockets {
    slots: Vec<Slot>,
    vacant: Vec<u32>,
    /// Disconnected, waiting for their grace period; oldest first.
    waiting: VecDeque<Kept>,
    /// Past their grace period, per family; oldest first, reused newest first.
    spare: [VecDeque<Kept>; 2],
    grace: Option<&'static GracePeriods>,
    /// Set when a trim stopped at [`TRIM_STEP`]: it goes on from then.
    trim_paused_until: Option<Instant>,
}

impl SessionSockets {
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            vacant: Vec::new(),
            waiting: VecDeque::new(),
            spare: [VecDeque::new(), VecDeque::new()],
            grace: GracePeriods::get(),
            trim_paused_until: None,
        }
    }

    /// The session a slot serves, if any.
    pub fn flow(&self, slot: u32) -> Option<Flow> {
        self.slots.get(slot as usize).and_then(|s| s.flow)
    }

    pub fn socket(&self, slot: u32) -> Option<&UdpSocket> {
        self.slots
            .get(slot as usize)
            .and_then(|s| s.socket.as_ref())
    }

    /// A socket connected to `server` for `flow`: a spare one of the
    /// server's family if there is one, else a new one in `poll`.
    pub fn open(
        &mut self,
        poll: &SessionPoll,
        server: SocketAddr,
        flow: Flow,
    ) -> io::Result<Opened> {
        let family = Family::of(server);
        self.promote();
        let mut strays = 0;
        while let Some(kept) = self.spare[family as usize].pop_back() {
            let slot = &mut self.slots[kept.slot as usize];
            let socket = slot.socket.as_ref().expect("a kept slot has a socket");
            match drain(socket) {
                Some(n) => strays += n,
                None => {
                    self.close(kept.slot);
                    continue;
                }
            }
            if let Err(error) = socket.connect(server) {
                // It may hold a port now without a peer: not kept.
                self.close(kept.slot);
                return Err(error);
            }
            slot.flow = Some(flow);
            return Ok(Opened {
                slot: kept.slot,
                strays,
            });
        }
        let socket: UdpSocket = socket::connect_session(server)?.into();
        let slot = match self.vacant.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    socket: None,
                    family,
                    flow: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        if let Err(error) = poll.0.add(
            socket.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, u64::from(slot)),
        ) {
            self.vacant.push(slot);
            return Err(error.into());
        }
        self.slots[slot as usize] = Slot {
            socket: Some(socket),
            family,
            flow: Some(flow),
        };
        Ok(Opened { slot, strays })
    }

    /// The session of `slot` ended: its socket is kept for a later session
    /// when `reusable` and fewer than `room` are kept, else closed.
    pub fn release(&mut self, slot: u32, reusable: bool, room: usize, now: Instant) {
        let Some(grace) = self.grace.filter(|_| reusable) else {
            self.close(slot);
            return;
        };
        if self.kept() >= SPARE_LIMIT.min(room) {
            self.close(slot);
            return;
        }
        let entry = &mut self.slots[slot as usize];
        entry.flow = None;
        let Some(socket) = entry.socket.as_ref() else {
            return;
        };
        if sys::disconnect(socket.as_fd()).is_err() {
            self.close(slot);
            return;
        }
        self.waiting.push_back(Kept {
            slot,
            ticket: grace.ticket(),
            since: now,
        });
    }

    /// Reads and drops what reached a socket no session uses (a datagram
    /// that was on its way when its session ended); the count dropped.
    pub fn drain_stray(&mut self, slot: u32) -> usize {
        let Some(entry) = self.slots.get(slot as usize) else {
            return 0;
        };
        if entry.flow.is_some() {
            return 0;
        }
        let Some(socket) = entry.socket.as_ref() else {
            return 0;
        };
        match drain(socket) {
            Some(n) => n,
            None => {
                self.forget(slot);
                0
            }
        }
    }

    /// Closes spare sockets unused for [`SPARE_LINGER`], and waiting ones
    /// whose grace period never came: at most [`TRIM_STEP`] of them, the
    /// rest after [`TRIM_PAUSE`].
    pub fn trim(&mut self, now: Instant) {
        self.promote();
        self.trim_paused_until = None;
        for _ in 0..TRIM_STEP {
            let Some(kept) = self.pop_stale(now) else {
                return;
            };
            self.close(kept.slot);
        }
        self.trim_paused_until = Some(now + TRIM_PAUSE);
    }

    /// A kept socket unused for [`SPARE_LINGER`] (the oldest of its list),
    /// taken off its list.
    fn pop_stale(&mut self, now: Instant) -> Option<Kept> {
        let stale = |kept: &Kept| now.saturating_duration_since(kept.since) >= SPARE_LINGER;
        self.spare
            .iter_mut()
            .chain(std::iter::once(&mut self.waiting))
            .find(|queue| queue.front().is_some_and(stale))?
            .pop_front()
    }

    /// Closes every kept socket (descriptors ran out); how many.
    pub fn close_kept(&mut self) -> usize {
        let kept: Vec<u32> = self
            .waiting
            .drain(..)
            .chain(self.spare.iter_mut().flat_map(|s| s.drain(..)))
            .map(|k| k.slot)
            .collect();
        for &slot in &kept {
            self.close(slot);
        }
        kept.len()
    }

    /// When [`Self::trim`] has something to do if nothing happens before.
    pub fn next_trim(&self) -> Option<Instant> {
        let due = self
            .spare
            .iter()
            .chain(std::iter::once(&self.waiting))
            .filter_map(|q| q.front())
            .map(|kept| kept.since + SPARE_LINGER)
            .min()?;
        Some(self.trim_paused_until.map_or(due, |paused| due.max(paused)))
    }

    fn kept(&self) -> usize {
        self.waiting.len() + self.spare[0].len() + self.spare[1].len()
    }

    /// Moves the sockets whose grace period has passed to the spares.
    fn promote(&mut self) {
        let Some(grace) = self.grace else { return };
        while let Some(kept) = self.waiting.front().copied() {
            if !grace.passed(kept.ticket) {
                break;
            }
            self.waiting.pop_front();
            let family = self.slots[kept.slot as usize].family;
            self.spare[family as usize].push_back(kept);
        }
    }

    /// Closes the socket of `slot` (which leaves the epoll set with it).
    fn close(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        entry.flow = None;
        if entry.socket.take().is_some() {
            self.vacant.push(slot);
        }
    }

    /// Closes a kept socket and removes it from the waiting or spare lists.
    fn forget(&mut self, slot: u32) {
        self.waiting.retain(|k| k.slot != slot);
        for spare in &mut self.spare {
            spare.retain(|k| k.slot != slot);
        }
        self.close(slot);
    }
}

/// Reads and drops everything queued on a socket; the count, or `None` if
/// it does not run dry (then it is closed rather than reused).
fn drain(socket: &UdpSocket) -> Option<usize> {
    // A datagram longer than this is cut; it is dropped either way.
    let mut sink = [0u8; 1];
    let mut strays = 0;
    for _ in 0..DRAIN_LIMIT {
        match socket.recv(&mut sink) {
            Ok(_) => strays += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(strays),
            // An error the previous session left queued (port
            // unreachable): reading it cleared it.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn flow(n: u16) -> Flow {
        Flow {
            client: SocketAddr::from(([127, 0, 0, 1], 40000 + n)),
            local: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    fn server(bind: &str) -> UdpSocket {
        let socket = UdpSocket::bind(bind).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        socket
    }

    /// Sockets that reuse, once grace periods pass; `None` (and a note)
    /// where the kernel cannot wait for one.
    fn recycling() -> Option<SessionSockets> {
        let sockets = SessionSockets::new();
        if sockets.grace.is_none() {
            eprintln!("skipped: membarrier(MEMBARRIER_CMD_GLOBAL) is not available here");
            return None;
        }
        Some(sockets)
    }

    /// Releases `slot` and waits until its socket is spare.
    fn release_and_cool(sockets: &mut SessionSockets, slot: u32) {
        sockets.release(slot, true, usize::MAX, Instant::now());
        cool(sockets);
    }

    /// Waits until every released socket has passed its grace period and
    /// is spare.
    fn cool(sockets: &mut SessionSockets) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sockets.waiting.is_empty() {
            assert!(Instant::now() < deadline, "no grace period within 10 s");
            std::thread::sleep(Duration::from_millis(2));
            sockets.promote();
        }
    }

    fn local_port(sockets: &SessionSockets, slot: u32) -> u16 {
        sockets.socket(slot).unwrap().local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn an_ended_sessions_socket_serves_the_next_session_from_a_fresh_port() {
        let Some(mut sockets) = recycling() else {
            return;
        };
        let poll = SessionPoll::new().unwrap();
        let a = server("[::1]:0");
        let b = server("[::1]:0");
        let first = sockets
            .open(poll.get_ref(), a.local_addr().unwrap(), flow(1))
            .unwrap();
        let old_port = local_port(&sockets, first.slot);
        sockets.socket(first.slot).unwrap().send(b"one").unwrap();
        let mut buffer = [0u8; 16];
        let (_, seen) = a.recv_from(&mut buffer).unwrap();
        assert_eq!(seen.port(), old_port);

        release_and_cool(&mut sockets, first.slot);
        assert_eq!(sockets.flow(first.slot), None);
        // A reply to the ended session finds no socket.
        a.send_to(b"late", seen).unwrap();

        let second = sockets
            .open(poll.get_ref(), b.local_addr().unwrap(), flow(2))
            .unwrap();
        assert_eq!(second.slot, first.slot, "the socket was reused");
        assert_eq!(second.strays, 0);
        assert_eq!(sockets.flow(second.slot), Some(flow(2)));
        let socket = sockets.socket(second.slot).unwrap();
        socket.send(b"two").unwrap();
        let (n, from) = b.recv_from(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"two");
        b.send_to(b"answer", from).unwrap();
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let n = socket.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"answer", "only the new server's reply");
    }

    #[tokio::test]
    async fn a_reply_queued_before_the_end_is_dropped_not_passed_on() {
        let Some(mut sockets) = recycling() else {
            return;
        };
        let poll = SessionPoll::new().unwrap();
        let a = server("127.0.0.1:0");
        let opened = sockets
            .open(poll.get_ref(), a.local_addr().unwrap(), flow(1))
            .unwrap();
        let socket = sockets.socket(opened.slot).unwrap();
        socket.send(b"query").unwrap();
        let mut buffer = [0u8; 16];
        let (_, seen) = a.recv_from(&mut buffer).unwrap();
        // Two replies queue up; the session ends before they are read.
        a.send_to(b"extra 1", seen).unwrap();
        a.send_to(b"extra 2", seen).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        release_and_cool(&mut sockets, opened.slot);

        let next = sockets
            .open(poll.get_ref(), a.local_addr().unwrap(), flow(2))
            .unwrap();
        assert_eq!(next.slot, opened.slot);
        assert_eq!(next.strays, 2, "both stray replies read and counted");
        let socket = sockets.socket(next.slot).unwrap();
        assert_eq!(
            socket.recv(&mut buffer).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[tokio::test]
    async fn sockets_of_closed_sessions_or_beyond_the_room_are_closed() {
        let Some(mut sockets) = recycling() else {
            return;
        };
        let poll = SessionPoll::new().unwrap();
        let a = server("127.0.0.1:0");
        let to = a.local_addr().unwrap();
        let first = sockets.open(poll.get_ref(), to, flow(1)).unwrap();
        sockets.release(first.slot, false, usize::MAX, Instant::now());
        assert!(sockets.socket(first.slot).is_none(), "not reusable: closed");
        let second = sockets.open(poll.get_ref(), to, flow(2)).unwrap();
        sockets.release(second.slot, true, 0, Instant::now());
        assert!(sockets.socket(second.slot).is_none(), "no room: closed");
        assert_eq!(sockets.kept(), 0);
    }

    #[tokio::test]
    async fn spare_sockets_unused_for_a_while_are_closed() {
        let Some(mut sockets) = recycling() else {
            return;
        };
        let poll = SessionPoll::new().unwrap();
        let a = server("127.0.0.1:0");
        let opened = sockets
            .open(poll.get_ref(), a.local_addr().unwrap(), flow(1))
            .unwrap();
        release_and_cool(&mut sockets, opened.slot);
        let at = sockets.next_trim().expect("a spare socket to trim");
        sockets.trim(at - Duration::from_millis(1));
        assert_eq!(sockets.kept(), 1, "kept until its time");
        sockets.trim(at);
        assert_eq!(sockets.kept(), 0);
        assert!(sockets.socket(opened.slot).is_none());
        assert_eq!(sockets.next_trim(), None);
    }

    /// A burst of DNS traffic leaves many spares that turn stale in the
    /// same instant; they are closed a step at a time, so the thread goes
    /// back to its listeners in between.
    #[tokio::test]
    async fn spares_stale_at_once_are_closed_a_step_at_a_time() {
        let Some(mut sockets) = recycling() else {
            return;
        };
        let poll = SessionPoll::new().unwrap();
        let a = server("127.0.0.1:0");
        let count = 3 * TRIM_STEP + 5;
        let slots: Vec<u32> = (0..count)
            .map(|n| {
                sockets
                    .open(poll.get_ref(), a.local_addr().unwrap(), flow(n as u16))
                    .unwrap()
                    .slot
            })
            .collect();
        let released = Instant::now();
        for &slot in &slots {
            sockets.release(slot, true, usize::MAX, released);
        }
        cool(&mut sockets);
        let mut at = sockets.next_trim().expect("spares to trim");
        assert_eq!(at, released + SPARE_LINGER);
        let mut steps = 0;
        while sockets.kept() > 0 {
            let before = sockets.kept();
            sockets.trim(at);
            steps += 1;
            assert!(
                before - sockets.kept() <= TRIM_STEP,
                "step {steps} closed {}",
                before - sockets.kept()
            );
            if sockets.kept() > 0 {
                assert_eq!(sockets.next_trim(), Some(at + TRIM_PAUSE));
                at += TRIM_PAUSE;
            }
        }
        assert_eq!(steps, 4);
        assert!(slots.iter().all(|&slot| sockets.socket(slot).is_none()));
        assert_eq!(sockets.next_trim(), None);
    }

    #[tokio::test]
    async fn a_socket_is_reused_only_for_its_family() {
        let Some(mut sockets) = recycling() else {
            return;
        };
        let poll = SessionPoll::new().unwrap();
        let v4 = server("127.0.0.1:0");
        let v6 = server("[::1]:0");
        let opened = sockets
            .open(poll.get_ref(), v4.local_addr().unwrap(), flow(1))
            .unwrap();
        release_and_cool(&mut sockets, opened.slot);
        let other = sockets
            .open(poll.get_ref(), v6.local_addr().unwrap(), flow(2))
            .unwrap();
        assert_ne!(other.slot, opened.slot);
        assert_eq!(sockets.kept(), 1);
    }
}
