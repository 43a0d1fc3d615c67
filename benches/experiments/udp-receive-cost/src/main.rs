//! What receiving one datagram costs, the way coexist's UDP listener reads
//! its session sockets, against io_uring multishot receives.
//!
//! ```text
//!   sender thread (CPU 0) ──► 64 UDP sockets on ::1, each connected to it ──► receiver thread (CPU 1)
//!   (at most 64 datagrams in flight, like 64 clients with one query each)
//! ```
//!
//! - `epoll`: the sockets sit in a level-triggered epoll set, which sits
//!   edge-triggered in an outer one (tokio's); on each wake the receiver
//!   waits on the inner set without blocking until it is empty and reads
//!   one datagram per ready socket — `lb::udp::listener`'s reply path.
//! - `epoll-et`: the same with the inner set edge-triggered, each ready
//!   socket read until it would block.
//! - `uring`: one multishot receive per socket on one io_uring, buffers
//!   from a provided buffer ring, one `io_uring_enter` per wake.
//!
//! Printed: datagrams, the receiver thread's CPU time per datagram and the
//! datagrams per wake (so both are compared at the same batch size). The
//! sender's work, which includes the kernel delivering into the sockets,
//! is on the other CPU and not counted.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, IoUring};

const SOCKETS: usize = 64;
const SECONDS: u64 = 5;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if !["epoll", "epoll-et", "uring"].contains(&mode.as_str()) {
        eprintln!("usage: udp-receive-cost epoll|epoll-et|uring");
        std::process::exit(2);
    }
    let sender = UdpSocket::bind("[::1]:0").expect("bind the sender");
    let sockets: Vec<UdpSocket> = (0..SOCKETS)
        .map(|_| {
            let socket = UdpSocket::bind("[::1]:0").expect("bind a session socket");
            socket.connect(sender.local_addr().unwrap()).unwrap();
            socket.set_nonblocking(true).unwrap();
            socket
        })
        .collect();
    let targets: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sending = {
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::spawn(move || send(sender, &targets, &received, &stop))
    };
    pin_to(1);
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let cpu_before = thread_cpu_seconds();
    let started = Instant::now();
    let (count, wakes) = match mode.as_str() {
        "epoll" => receive_by_epoll(&sockets, &received, deadline, Trigger::Level),
        "epoll-et" => receive_by_epoll(&sockets, &received, deadline, Trigger::Edge),
        _ => receive_by_io_uring(&sockets, &received, deadline),
    };
    let cpu = thread_cpu_seconds() - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sending.join().unwrap();
    println!(
        "{mode}: {count} datagrams in {wall:.2} s, {:.1} per wake; receiver CPU {:.3} µs per datagram",
        count as f64 / wakes.max(1) as f64,
        cpu * 1e6 / count.max(1) as f64
    );
}

/// Keeps at most one datagram in flight per socket, round robin.
fn send(sender: UdpSocket, targets: &[SocketAddr], received: &AtomicU64, stop: &AtomicBool) {
    pin_to(0);
    let payload = [7u8; 64];
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if sent - received.load(Ordering::Acquire) >= targets.len() as u64 {
            std::hint::spin_loop();
            continue;
        }
        let _ = sender.send_to(&payload, targets[sent as usize % targets.len()]);
        sent += 1;
    }
}

#[derive(PartialEq)]
enum Trigger {
    /// One read per ready socket; the set reports it again while it has more.
    Level,
    /// Each ready socket read until it would block (a second `recv` per
    /// reply), so the set polls it once.
    Edge,
}

fn receive_by_epoll(
    sockets: &[UdpSocket],
    received: &AtomicU64,
    deadline: Instant,
    trigger: Trigger,
) -> (u64, u64) {
    let session_events = match trigger {
        Trigger::Level => libc::EPOLLIN as u32,
        Trigger::Edge => (libc::EPOLLIN | libc::EPOLLET) as u32,
    };
    let mut buffer = [0u8; 2048];
    let (mut count, mut wakes) = (0u64, 0u64);
    // SAFETY: plain system calls on descriptors this function creates or
    // that `sockets` keeps open; `events` outlives every epoll_wait that
    // writes into it and is as long as the count passed.
    unsafe {
        let inner = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let outer = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        for (i, socket) in sockets.iter().enumerate() {
            let mut event = libc::epoll_event {
                events: session_events,
                u64: i as u64,
            };
            libc::epoll_ctl(inner, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut event);
        }
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        libc::epoll_ctl(outer, libc::EPOLL_CTL_ADD, inner, &mut event);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        while Instant::now() < deadline {
            libc::epoll_wait(outer, events.as_mut_ptr(), 1, 100);
            wakes += 1;
            loop {
                let ready = libc::epoll_wait(inner, events.as_mut_ptr(), events.len() as i32, 0);
                if ready <= 0 {
                    break;
                }
                for event in &events[..ready as usize] {
                    let socket = &sockets[event.u64 as usize];
                    while socket.recv(&mut buffer).is_ok() {
                        count += 1;
                        if trigger == Trigger::Level {
                            break;
                        }
                    }
                }
                received.store(count, Ordering::Release);
            }
        }
        libc::close(outer);
        libc::close(inner);
    }
    (count, wakes)
}

fn receive_by_io_uring(
    sockets: &[UdpSocket],
    received: &AtomicU64,
    deadline: Instant,
) -> (u64, u64) {
    const BUFFERS: u16 = 1024;
    const BUFFER: usize = 2048;
    const GROUP: u16 = 0;
    let mut ring = IoUring::new(4096).expect("io_uring (is it disabled here?)");
    let mut buffers = vec![0u8; BUFFERS as usize * BUFFER];
    // The provided buffer ring: BUFFERS entries of 16 bytes, page aligned,
    // whose tail the kernel reads.
    let layout = std::alloc::Layout::from_size_align(BUFFERS as usize * 16, 4096).unwrap();
    // SAFETY: a non-zero size and a valid alignment.
    let ring_memory = unsafe { std::alloc::alloc_zeroed(layout) };
    let entries = ring_memory.cast::<types::BufRingEntry>();
    // SAFETY: the tail lives inside the first entry, which is allocated.
    let tail = unsafe { &*types::BufRingEntry::tail(entries).cast::<AtomicU16>() };
    let mut next_tail = 0u16;
    let base = buffers.as_mut_ptr();
    let give = |next_tail: &mut u16, bid: u16| {
        // SAFETY: the index is masked into the ring, the buffer address
        // into `buffers`, which outlives the ring's use below.
        unsafe {
            let entry = &mut *entries.add(usize::from(*next_tail & (BUFFERS - 1)));
            entry.set_addr(base.add(usize::from(bid) * BUFFER) as u64);
            entry.set_len(BUFFER as u32);
            entry.set_bid(bid);
        }
        *next_tail = next_tail.wrapping_add(1);
    };
    (0..BUFFERS).for_each(|bid| give(&mut next_tail, bid));
    tail.store(next_tail, Ordering::Release);
    // SAFETY: the ring memory stays allocated and unmoved while the ring
    // exists (it is leaked when this function returns).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(ring_memory as u64, BUFFERS, GROUP, 0)
            .expect("register the buffer ring");
    }
    let arm = |ring: &mut IoUring, i: usize| {
        let entry = opcode::RecvMulti::new(types::Fd(sockets[i].as_raw_fd()), GROUP)
            .build()
            .user_data(i as u64);
        // SAFETY: the entry refers to no memory besides the registered
        // buffer ring; the queue has room (4096 entries, 64 sockets).
        unsafe {
            ring.submission()
                .push(&entry)
                .expect("submission queue full")
        };
    };
    (0..sockets.len()).for_each(|i| arm(&mut ring, i));
    let (mut count, mut wakes) = (0u64, 0u64);
    let mut rearm = Vec::new();
    while Instant::now() < deadline {
        ring.submit_and_wait(1).expect("io_uring_enter");
        wakes += 1;
        for completion in ring.completion() {
            if completion.result() > 0 {
                count += 1;
            }
            if let Some(bid) = cqueue::buffer_select(completion.flags()) {
                give(&mut next_tail, bid);
            }
            if !cqueue::more(completion.flags()) {
                rearm.push(completion.user_data() as usize);
            }
        }
        tail.store(next_tail, Ordering::Release);
        rearm.drain(..).for_each(|i| arm(&mut ring, i));
        received.store(count, Ordering::Release);
    }
    (count, wakes)
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn thread_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
