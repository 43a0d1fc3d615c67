//! The UDP figures: queries through a proxy to two datagram echo servers,
//! from IPv4 clients to IPv6 servers, in two kinds of session:
//!
//! - one reply per query ends the session (`udp_responses = 1`, nginx's
//!   `proxy_responses 1`), as for DNS: every query opens a session;
//! - long sessions: each client keeps its session for the whole run.
//!
//! Each kind is measured twice: at saturation (every client keeps one query
//! outstanding; the queries per second and their cost in proxy CPU), and
//! at a fixed offered rate well below saturation (the latency a query sees
//! when the proxy is not the bottleneck).
//!
//! ```text
//!   clients 127.0.0.1 (F sockets) ──► proxy 127.0.0.1:P (proxy CPU) ──► echo [::1]:a, [::1]:b
//!   └──────────── client CPU ────────────┘                              └── client CPU ──┘
//! ```
//!
//! Why a datagram echo rather than dnsperf against BIND: the bench measures
//! the proxy, so its servers must cost less than it does; a DNS server
//! answering the queries a proxy core forwards would need more cores than
//! the clients' one. The lab runs real DNS servers (BIND) through coexist.
//!
//! The echo server runs as a child process of the bench (`--udp-echo-server`),
//! the clients in the bench process, both on the clients' CPU.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use serde::Serialize;

use crate::measure::{Busy, CpuMeter};
use crate::perf::{self, Recording};

/// How the clients load the proxy.
#[derive(Debug, Clone, Serialize)]
pub struct UdpSettings {
    /// Client sockets, each with at most one query outstanding.
    pub flows: usize,
    /// Queries each client keeps in flight in the pipelined run, over
    /// `flows / in_flight` clients (the same queries outstanding in all).
    pub in_flight: usize,
    pub payload_bytes: usize,
    pub seconds: u32,
    /// Queries per second offered in the latency run.
    pub paced_rate: u32,
}

/// The kind of session a proxy's UDP route keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sessions {
    /// The first reply ends the session (DNS).
    OnePerQuery,
    /// A client keeps its session.
    Long,
    /// Like `OnePerQuery`, but each client keeps several queries in flight
    /// on its one socket, as a resolver or `dnsperf` does: the session lasts
    /// while any is unanswered.
    Pipelined,
}

impl Sessions {
    /// Replies per client datagram that end a session.
    pub fn responses(self) -> Option<u32> {
        match self {
            Sessions::OnePerQuery | Sessions::Pipelined => Some(1),
            Sessions::Long => None,
        }
    }

    /// The test's part of a `--perf` profile's file name.
    pub fn perf_name(self) -> &'static str {
        match self {
            Sessions::OnePerQuery => "udp-one",
            Sessions::Long => "udp-long",
            Sessions::Pipelined => "udp-pipelined",
        }
    }
}

/// One load run.
#[derive(Debug, Clone, Serialize)]
pub struct UdpLoad {
    /// Queries answered (each answer checked).
    pub queries: u64,
    pub seconds: f64,
    pub per_second: f64,
    /// From the moment a query was due to its answer.
    pub p50_us: f64,
    pub p99_us: f64,
    /// Queries without an answer after [`LOSS_TIMEOUT`].
    pub lost: u64,
    pub proxy_cpu_seconds: Option<f64>,
    pub per_proxy_core: Option<f64>,
    pub busy: Busy,
}

/// The runs of one kind of session.
#[derive(Debug, Clone, Serialize)]
pub struct UdpFigures {
    pub sessions: Sessions,
    pub saturated: UdpLoad,
    /// Below saturation; not for pipelined clients, whose paced queries
    /// would meet the proxy one at a time like the others'.
    pub paced: Option<UdpLoad>,
}

/// A query unanswered this long counts as lost; its client moves on.
pub const LOSS_TIMEOUT: Duration = Duration::from_millis(200);
/// Load before each measurement, so sessions and caches are warm.
const WARM_UP: Duration = Duration::from_millis(500);

/// Serves every address in `listen` until killed: each datagram goes back
/// to its sender. One thread per address, blocking reads.
pub fn serve(listen: &[SocketAddr]) -> Result<()> {
    let sockets: Vec<UdpSocket> = listen
        .iter()
        .map(|&a| UdpSocket::bind(a).with_context(|| format!("udp echo server: binding {a}")))
        .collect::<Result<_>>()?;
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            std::thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                loop {
                    if let Ok((n, peer)) = socket.recv_from(&mut buffer) {
                        let _ = socket.send_to(&buffer[..n], peer);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// Sends one query to `target` and waits for its echo, for up to
/// `timeout`: the proxy forwards UDP before anything is measured.
pub fn probe(target: SocketAddr, timeout: Duration) -> Result<()> {
    let socket = client_socket(target)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 64];
    while Instant::now() < deadline {
        socket.send(b"probe")?;
        if let Ok(n) = socket.recv(&mut buffer) {
            if &buffer[..n] == b"probe" {
                return Ok(());
            }
        }
    }
    bail!("no UDP echo through {target} within {timeout:?}")
}

/// Both runs (saturated, then paced) through `target`, whose proxy (if
/// any) is `proxy`, after a warm-up; `clients_cpu` is the CPU the clients
/// and servers are pinned to, if they are.
pub fn measure(
    target: SocketAddr,
    sessions: Sessions,
    proxy: Option<u32>,
    clients_cpu: Option<usize>,
    s: &UdpSettings,
    perf: Option<Recording>,
    log_dir: &Path,
) -> Result<UdpFigures> {
    let seconds = Duration::from_secs(u64::from(s.seconds));
    let clients = match sessions {
        Sessions::Pipelined => Clients {
            sockets: (s.flows / s.in_flight.max(1)).max(1),
            in_flight: s.in_flight.max(1),
        },
        Sessions::OnePerQuery | Sessions::Long => Clients {
            sockets: s.flows,
            in_flight: 1,
        },
    };
    run(target, s, clients, None, WARM_UP, None, None)?;
    let saturated = perf::alongside(perf, log_dir, s.seconds, || {
        run(target, s, clients, None, seconds, proxy, clients_cpu)
    })?;
    let paced = match sessions {
        Sessions::Pipelined => None,
        Sessions::OnePerQuery | Sessions::Long => {
            let paced = Some(s.paced_rate);
            run(target, s, clients, paced, WARM_UP, None, None)?;
            Some(run(target, s, clients, paced, seconds, proxy, clients_cpu)?)
        }
    };
    Ok(UdpFigures {
        sessions,
        saturated,
        paced,
    })
}

fn client_socket(target: SocketAddr) -> Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv4() {
        "127.0.0.1:0".parse()?
    } else {
        "[::1]:0".parse()?
    };
    let socket = UdpSocket::bind(local).context("binding a client socket")?;
    socket.connect(target)?;
    Ok(socket)
}

/// A client's query in flight.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    sequence: u64,
    /// When it was due (paced) or sent (saturated): latency counts from here.
    due: Instant,
    sent: Instant,
}

/// How many client sockets, and how many queries each keeps in flight.
#[derive(Debug, Clone, Copy)]
struct Clients {
    sockets: usize,
    in_flight: usize,
}

/// `clients.sockets` clients, each with at most `clients.in_flight`
/// queries outstanding, for `duration`: as fast as answers come back
/// (`rate` `None`), or one query every 1/`rate` s. A query due while every
/// client is at its limit is sent as soon as one has room, its latency
/// still counted from when it was due. The proxy `proxy` and CPU
/// `clients_cpu` are metered.
fn run(
    target: SocketAddr,
    s: &UdpSettings,
    clients: Clients,
    rate: Option<u32>,
    duration: Duration,
    proxy: Option<u32>,
    clients_cpu: Option<usize>,
) -> Result<UdpLoad> {
    // Wake-ups within a microsecond of the next query's time.
    let _ = nix::sys::prctl::set_timerslack(1_000);
    let sockets: Vec<UdpSocket> = (0..clients.sockets)
        .map(|_| {
            let socket = client_socket(target)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<Result<_>>()?;
    let mut fds: Vec<PollFd<'_>> = sockets
        .iter()
        .map(|socket| PollFd::new(socket.as_fd(), PollFlags::POLLIN))
        .collect();
    let mut outstanding: Vec<VecDeque<Outstanding>> =
        vec![VecDeque::with_capacity(clients.in_flight); clients.sockets];
    // A client once per query it has room for.
    let mut free: Vec<usize> = (0..clients.in_flight)
        .flat_map(|_| 0..clients.sockets)
        .collect();
    let mut due: VecDeque<Instant> = VecDeque::new();
    let mut sequence = 0u64;
    let mut payload = vec![0u8; s.payload_bytes.max(16)];
    let mut buffer = vec![0u8; 65536];
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut lost = 0u64;
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));

    let meter = CpuMeter::start(proxy, clients_cpu)?;
    let started = Instant::now();
    let end = started + duration;
    let mut next_due = started;
    let mut now = started;
    while now < end {
        // Queries that are due: all clients at once when saturating.
        match interval {
            None => due.extend(std::iter::repeat_n(now, free.len())),
            Some(interval) => {
                while next_due <= now {
                    due.push_back(next_due);
                    next_due += interval;
                }
            }
        }
        while let (Some(&when), Some(flow)) = (due.front(), free.last().copied()) {
            due.pop_front();
            free.pop();
            sequence += 1;
            payload[..8].copy_from_slice(&sequence.to_be_bytes());
            payload[8..16].copy_from_slice(&(flow as u64).to_be_bytes());
            let _ = sockets[flow].send(&payload);
            outstanding[flow].push_back(Outstanding {
                sequence,
                due: when,
                sent: now,
            });
        }
        let wait = match interval {
            Some(_) if due.is_empty() => next_due.saturating_duration_since(now),
            _ => Duration::from_millis(10),
        }
        .min(Duration::from_millis(10));
        let _ = ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None);
        now = Instant::now();
        for (flow, fd) in fds.iter().enumerate() {
            if fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                while let Ok(n) = sockets[flow].recv(&mut buffer) {
                    if n != payload.len() {
                        continue;
                    }
                    let answered = u64::from_be_bytes(buffer[..8].try_into().expect("8 bytes"));
                    // Answers come back in order on loopback: the first
                    // query in flight, unless one was lost.
                    let queries = &mut outstanding[flow];
                    if let Some(at) = queries.iter().position(|q| q.sequence == answered) {
                        let query = queries.remove(at).expect("position is in range");
                        latencies.push(micros(now.saturating_duration_since(query.due)));
                        free.push(flow);
                    }
                }
            }
            let queries = &mut outstanding[flow];
            while queries
                .front()
                .is_some_and(|q| now.saturating_duration_since(q.sent) > LOSS_TIMEOUT)
            {
                queries.pop_front();
                lost += 1;
                free.push(flow);
            }
        }
    }
    let usage = meter.stop()?;
    let wall = usage.wall_seconds;
    latencies.sort_unstable();
    let queries = latencies.len() as u64;
    let per_second = queries as f64 / wall;
    Ok(UdpLoad {
        queries,
        seconds: wall,
        per_second,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        lost,
        proxy_cpu_seconds: usage.proxy_cpu_seconds,
        per_proxy_core: usage.per_proxy_core(per_second),
        busy: usage.busy,
    })
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The `q` quantile (0..=1) of ascending `sorted` values, nearest rank;
/// 0 without values.
pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        // Input: 1..=100. Output: p50 = 50, p99 = 99, p100 = 100.
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.50), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[7], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn sessions_map_to_responses() {
        assert_eq!(Sessions::OnePerQuery.responses(), Some(1));
        assert_eq!(Sessions::Long.responses(), None);
        assert_eq!(Sessions::Pipelined.responses(), Some(1));
    }

    #[test]
    fn echo_server_and_load_round_trip_on_loopback() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer) {
                let _ = socket.send_to(&buffer[..n], peer);
            }
        });
        probe(address, Duration::from_secs(2)).unwrap();
        let s = UdpSettings {
            flows: 4,
            in_flight: 4,
            payload_bytes: 64,
            seconds: 1,
            paced_rate: 1_000,
        };
        let one_each = Clients {
            sockets: 4,
            in_flight: 1,
        };
        let saturated = run(
            address,
            &s,
            one_each,
            None,
            Duration::from_millis(200),
            None,
            None,
        )
        .unwrap();
        assert!(saturated.queries > 10, "{saturated:?}");
        assert_eq!(saturated.lost, 0);
        assert!(saturated.p50_us <= saturated.p99_us);
        assert_eq!(
            saturated.per_proxy_core, None,
            "no proxy, no per-core figure"
        );
        // Paced at 1,000/s for 0.3 s: at most the 301 queries due, however
        // fast the echo answers.
        let paced = run(
            address,
            &s,
            one_each,
            Some(1_000),
            Duration::from_millis(300),
            None,
            None,
        )
        .unwrap();
        assert!(
            (1..=301).contains(&paced.queries),
            "{} queries paced at 1,000/s over 0.3 s",
            paced.queries
        );
        // One socket, many queries in flight: every answer is matched to its
        // query, none is lost.
        let pipelined = Clients {
            sockets: 1,
            in_flight: 16,
        };
        let piped = run(
            address,
            &s,
            pipelined,
            None,
            Duration::from_millis(200),
            None,
            None,
        )
        .unwrap();
        assert!(piped.queries > 10, "{piped:?}");
        assert_eq!(piped.lost, 0);
    }
}
