//! The measurements, each against one target (a proxy, or the backends
//! directly): bulk throughput, connection rate with its latency, opening
//! many connections and small round trips over them, idle memory.
//!
//! Each returns plain data; the arithmetic on it is in pure functions at the
//! bottom so it can be checked without running anything.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::child::run_bounded;
use crate::echo::{EchoClient, EchoSettings, Opening, RoundTrips};
use crate::perf::{self, Recording};
use crate::{iperf, procfs, wrk};

/// How long and how hard each measurement runs.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub bulk_seconds: u32,
    pub rate_seconds: u32,
    /// Concurrent short connections wrk keeps in flight.
    pub rate_connections: u32,
    pub echo: EchoSettings,
    pub idle_connections: usize,
    pub udp: crate::udp::UdpSettings,
    /// CPU of every client and server; the proxy gets another one.
    pub client_cpu: Option<usize>,
    pub proxy_cpu: Option<usize>,
}

/// How busy the proxy and the clients' core were during a measurement. On
/// two cores the proxy's and the clients' share show which of them set a
/// rate: a figure measured with the clients' core full says more about the
/// work a proxy causes there than about the proxy.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Busy {
    /// The proxy's CPU time over the wall time (1.0: one core, all the time).
    pub proxy: Option<f64>,
    /// The busy share of the CPU the clients and servers are pinned to.
    pub clients_core: Option<f64>,
}

/// What the proxy process and the clients' core spend over an interval.
pub struct CpuMeter {
    pid: Option<u32>,
    cpu_start: f64,
    clients_cpu: Option<(usize, procfs::CpuTicks)>,
    started: Instant,
}

/// What a [`CpuMeter`] saw.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub proxy_cpu_seconds: Option<f64>,
    pub wall_seconds: f64,
    pub busy: Busy,
}

impl Usage {
    /// `rate` scaled to one fully busy proxy core (see [`per_core_rate`]).
    pub fn per_proxy_core(&self, rate: f64) -> Option<f64> {
        self.busy
            .proxy
            .and_then(|cores_busy| per_core_rate(rate, cores_busy))
    }
}

impl CpuMeter {
    /// Meters process `pid` (the proxy; none when measuring direct) and
    /// CPU `clients_cpu` (none when the run is not pinned).
    pub fn start(pid: Option<u32>, clients_cpu: Option<usize>) -> Result<CpuMeter> {
        let cpu_start = match pid {
            Some(pid) => procfs::cpu_seconds(pid)?,
            None => 0.0,
        };
        let clients_cpu = match clients_cpu {
            Some(cpu) => Some((cpu, procfs::cpu_ticks(cpu)?)),
            None => None,
        };
        Ok(CpuMeter {
            pid,
            cpu_start,
            clients_cpu,
            started: Instant::now(),
        })
    }

    pub fn stop(self) -> Result<Usage> {
        let wall_seconds = self.started.elapsed().as_secs_f64();
        let proxy_cpu_seconds = match self.pid {
            Some(pid) => Some(procfs::cpu_seconds(pid)? - self.cpu_start),
            None => None,
        };
        let clients_core = match self.clients_cpu {
            Some((cpu, start)) => procfs::cpu_ticks(cpu)?.busy_since(start),
            None => None,
        };
        Ok(Usage {
            proxy_cpu_seconds,
            wall_seconds,
            busy: Busy {
                proxy: proxy_cpu_seconds
                    .filter(|_| wall_seconds > 0.0)
                    .map(|cpu| cpu / wall_seconds),
                clients_core,
            },
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Bulk {
    pub streams: u32,
    pub bytes: u64,
    pub seconds: f64,
    pub gbit_per_second: f64,
    pub proxy_cpu_seconds: Option<f64>,
    pub busy: Busy,
}

/// iperf3 through `target` with `streams` parallel streams.
pub fn bulk(
    target: SocketAddr,
    streams: u32,
    proxy: Option<u32>,
    s: &Settings,
    dir: &Path,
) -> Result<Bulk> {
    let spec = iperf::client(
        &format!("iperf3-client-{streams}"),
        target,
        streams,
        s.bulk_seconds,
        s.client_cpu,
    );
    let meter = CpuMeter::start(proxy, s.client_cpu)?;
    let done = run_bounded(
        &spec,
        dir,
        Duration::from_secs(u64::from(s.bulk_seconds) + 20),
    )?;
    let usage = meter.stop()?;
    let t = iperf::parse_json(&done.stdout)
        .with_context(|| format!("iperf3 exited {}: {}", done.status, done.stderr))?;
    Ok(Bulk {
        streams,
        bytes: t.bytes,
        seconds: t.seconds,
        gbit_per_second: t.bits_per_second / 1e9,
        proxy_cpu_seconds: usage.proxy_cpu_seconds,
        busy: usage.busy,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRate {
    pub connections: u64,
    pub seconds: f64,
    pub per_second: f64,
    /// Latency of the requests under this load (connect to last byte).
    pub p50_us: f64,
    pub p99_us: f64,
    pub socket_errors: u64,
    pub non_2xx: u64,
    pub proxy_cpu_seconds: Option<f64>,
    /// Connections per second per fully busy proxy core.
    pub per_proxy_core: Option<f64>,
    pub busy: Busy,
}

/// wrk with `Connection: close` against the small page through `target`.
pub fn connection_rate(
    target: SocketAddr,
    proxy: Option<u32>,
    s: &Settings,
    dir: &Path,
    perf: Option<Recording>,
) -> Result<ConnectionRate> {
    let spec = wrk::client(
        "wrk-rate",
        target,
        s.rate_connections,
        s.rate_seconds,
        wrk::Mode::ShortConnections,
        s.client_cpu,
    );
    let (done, usage) = perf::alongside(perf, dir, s.rate_seconds, || {
        let meter = CpuMeter::start(proxy, s.client_cpu)?;
        let done = run_bounded(
            &spec,
            dir,
            Duration::from_secs(u64::from(s.rate_seconds) + 15),
        )?;
        Ok((done, meter.stop()?))
    })?;
    let r = wrk::parse_output(&done.stdout)
        .with_context(|| format!("wrk exited {}: {}", done.status, done.stderr))?;
    Ok(ConnectionRate {
        connections: r.requests,
        seconds: r.seconds,
        per_second: r.requests_per_second,
        p50_us: r.p50_us,
        p99_us: r.p99_us,
        socket_errors: r.socket_errors,
        non_2xx: r.non_2xx,
        proxy_cpu_seconds: usage.proxy_cpu_seconds,
        per_proxy_core: usage.per_proxy_core(r.requests_per_second),
        busy: usage.busy,
    })
}

/// Opening many connections, then small round trips on some of them.
#[derive(Debug, Clone, Serialize)]
pub struct Exchanges {
    pub opening: Opening,
    pub round_trips: RoundTrips,
    /// Proxy CPU over the round-trip phase.
    pub proxy_cpu_seconds: Option<f64>,
    /// Round trips per second per fully busy proxy core.
    pub per_proxy_core: Option<f64>,
    /// Over the round-trip phase.
    pub busy: Busy,
}

/// Opens `s.echo.open` connections to the echo servers through `target`,
/// then runs round trips on `s.echo.active` of them.
/// How long a profile of the opening phase records: the opening takes well
/// under a second at the rates seen.
const OPENING_PROFILE_SECONDS: u32 = 2;

/// `perf` gets one recording of the opening phase and one of the round
/// trips (`open` and `echo` in its output name).
pub fn exchanges(
    target: SocketAddr,
    proxy: Option<u32>,
    s: &Settings,
    dir: &Path,
    perf: Option<(Recording, Recording)>,
) -> Result<Exchanges> {
    let fds_before = proxy.map(procfs::open_fds).transpose()?;
    let (perf_open, perf_echo) = perf.unzip();
    let (mut client, opening) = perf::alongside(perf_open, dir, OPENING_PROFILE_SECONDS, || {
        EchoClient::open(target, &s.echo)
    })?;
    let (round_trips, usage) = perf::alongside(perf_echo, dir, s.echo.seconds, || {
        let meter = CpuMeter::start(proxy, s.client_cpu)?;
        let round_trips = client.exchange()?;
        Ok((round_trips, meter.stop()?))
    })?;
    drop(client);
    if let (Some(pid), Some(before)) = (proxy, fds_before) {
        wait_for_fds_below(pid, before + 16, Duration::from_secs(10))?;
    }
    Ok(Exchanges {
        per_proxy_core: usage.per_proxy_core(round_trips.per_second),
        opening,
        round_trips,
        proxy_cpu_seconds: usage.proxy_cpu_seconds,
        busy: usage.busy,
    })
}

/// Lets the proxy close its side of connections the client closed, so the
/// next measurement starts from a quiet proxy.
fn wait_for_fds_below(pid: u32, limit: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while procfs::open_fds(pid)? > limit && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleMemory {
    pub connections: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_connection: f64,
    pub proxy_fds_before: usize,
    /// About `before + 2 × connections` when every connection reached the server.
    pub proxy_fds_after: usize,
}

/// Opens `count` connections through the proxy to the page server, sends
/// nothing, and reads the growth of the proxy's resident memory.
pub fn idle_memory(target: SocketAddr, proxy: u32, count: usize) -> Result<IdleMemory> {
    settle_rss(proxy)?;
    let rss_before_kib = procfs::rss_kib(proxy)?;
    let proxy_fds_before = procfs::open_fds(proxy)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut held = Vec::with_capacity(count);
    while held.len() < count {
        if Instant::now() >= deadline {
            bail!(
                "opened only {} of {count} idle connections in 30 s",
                held.len()
            );
        }
        let stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .with_context(|| format!("idle connection {} to {target}", held.len() + 1))?;
        held.push(stream);
    }
    // The proxy accepts and connects onward asynchronously: wait until it
    // holds both sides of (nearly) every connection.
    let want = proxy_fds_before + 2 * count;
    let deadline = Instant::now() + Duration::from_secs(15);
    while procfs::open_fds(proxy)? < want && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    settle_rss(proxy)?;
    let rss_after_kib = procfs::rss_kib(proxy)?;
    let proxy_fds_after = procfs::open_fds(proxy)?;
    drop(held);
    wait_for_fds_below(proxy, proxy_fds_before + 16, Duration::from_secs(10))?;
    Ok(IdleMemory {
        connections: count,
        rss_before_kib,
        rss_after_kib,
        bytes_per_connection: bytes_per_connection(rss_before_kib, rss_after_kib, count),
        proxy_fds_before,
        proxy_fds_after,
    })
}

/// Waits (at most 3 s) until two RSS samples 200 ms apart agree.
fn settle_rss(pid: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = procfs::rss_kib(pid)?;
    while Instant::now() < deadline {
        sleep(Duration::from_millis(200));
        let now = procfs::rss_kib(pid)?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(())
}

/// One `GET /` through `target`, expecting a 200 with the whole page: proves
/// the path works before anything is measured.
pub fn http_probe(target: SocketAddr, page_bytes: usize) -> Result<()> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
        .with_context(|| format!("probe: connecting to {target}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut response)
        .with_context(|| format!("probe: reading the response through {target}"))?;
    check_response(&response, page_bytes)
}

/// Pure check of a full HTTP response to the probe.
pub fn check_response(response: &[u8], page_bytes: usize) -> Result<()> {
    let text = String::from_utf8_lossy(response);
    let status = text.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        bail!("probe: expected HTTP/1.1 200, got {status:?}");
    }
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.len())
        .unwrap_or(0);
    if body != page_bytes {
        bail!("probe: body of {body} bytes, expected {page_bytes}");
    }
    Ok(())
}

/// Requests per second scaled to one fully busy proxy core; `None` when the
/// proxy used too little CPU to extrapolate from (under 1 % of a core).
/// `cores_busy` is the proxy's CPU time over the wall time ([`Busy::proxy`]).
pub fn per_core_rate(rate: f64, cores_busy: f64) -> Option<f64> {
    (cores_busy >= 0.01).then(|| rate / cores_busy)
}

/// Proxy CPU seconds spent per GiB it forwarded.
pub fn cpu_seconds_per_gib(cpu_seconds: f64, bytes: u64) -> Option<f64> {
    (bytes > 0).then(|| cpu_seconds / (bytes as f64 / (1u64 << 30) as f64))
}

/// Resident memory growth per connection, in bytes (may be negative when the
/// allocator gives memory back; reported as measured).
pub fn bytes_per_connection(before_kib: u64, after_kib: u64, count: usize) -> f64 {
    (after_kib as f64 - before_kib as f64) * 1024.0 / count.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_reports_both_shares_only_for_what_it_watches() {
        // Input: this process as the proxy and CPU 0 as the clients' core,
        // over 50 ms of spinning; then a meter watching neither.
        let meter = CpuMeter::start(Some(std::process::id()), Some(0)).unwrap();
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let usage = meter.stop().unwrap();
        // Output: a share for each, as a fraction; none when unwatched.
        let proxy = usage.busy.proxy.expect("the proxy's share");
        let clients = usage.busy.clients_core.expect("the clients' core's share");
        assert!(proxy >= 0.0, "{usage:?}");
        assert!((0.0..=1.0).contains(&clients), "{usage:?}");
        assert_eq!(usage.proxy_cpu_seconds.map(|c| c >= 0.0), Some(true));
        let unwatched = CpuMeter::start(None, None).unwrap().stop().unwrap();
        assert!(unwatched.busy.proxy.is_none() && unwatched.busy.clients_core.is_none());
        assert_eq!(unwatched.per_proxy_core(1000.0), None);
    }

    #[test]
    fn per_core_rate_scales_by_the_busy_fraction() {
        // Input: 10,000 conn/s while the proxy was busy half the time.
        // Output: 20,000 conn/s per fully busy core.
        assert_eq!(per_core_rate(10_000.0, 0.5), Some(20_000.0));
        assert_eq!(per_core_rate(10_000.0, 0.0), None);
    }

    #[test]
    fn cpu_per_gib() {
        assert_eq!(cpu_seconds_per_gib(3.0, 6 << 30), Some(0.5));
        assert_eq!(cpu_seconds_per_gib(3.0, 0), None);
    }

    #[test]
    fn memory_per_connection_in_bytes() {
        // Input: RSS 10,000 KiB → 26,500 KiB over 5,000 connections.
        // Output: 3,379.2 bytes each.
        assert!((bytes_per_connection(10_000, 26_500, 5_000) - 3379.2).abs() < 1e-9);
        assert!(bytes_per_connection(10_000, 9_000, 1000) < 0.0);
    }

    #[test]
    fn probe_response_check() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert!(check_response(ok, 3).is_ok());
        assert!(check_response(ok, 4).is_err());
        assert!(check_response(b"HTTP/1.1 404 Not Found\r\n\r\nabc", 3).is_err());
        assert!(check_response(b"", 0).is_err());
    }
}
