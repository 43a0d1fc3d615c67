//! One bench run: the process setup (descriptor limit, pinning, ports) and
//! the sequence of measurements against each target.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::measure::{self, Bulk, ConnectionRate, Exchanges, IdleMemory, Settings};
use crate::nginx;
use crate::perf::Recording;
use crate::proxy::{Proxy, Route, UdpRoute};
use crate::udp::{self, Sessions, UdpFigures};

/// The backends every target forwards to: one iperf3 server (its control
/// and data connections must meet the same server), two web servers, two
/// echo servers and two datagram echo servers (the proxies balance round
/// robin over each pair).
#[derive(Debug, Clone)]
pub struct Backends {
    pub iperf: SocketAddr,
    pub web: Vec<SocketAddr>,
    pub echo: Vec<SocketAddr>,
    pub udp_echo: Vec<SocketAddr>,
}

/// Where a proxy under test listens: TCP bulk, web and echo; UDP for
/// sessions of one query and for long sessions.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub tcp: [u16; 3],
    pub udp: [u16; 2],
}

/// Which measurements to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tests {
    pub memory: bool,
    pub bulk: bool,
    pub rate: bool,
    pub echo: bool,
    pub udp: bool,
}

impl Tests {
    pub const NAMES: [&'static str; 5] = ["memory", "bulk", "rate", "echo", "udp"];

    pub fn all() -> Tests {
        Tests {
            memory: true,
            bulk: true,
            rate: true,
            echo: true,
            udp: true,
        }
    }

    fn tcp(&self) -> bool {
        self.memory || self.bulk || self.rate || self.echo
    }

    /// From names such as `rate,echo`; empty means all.
    pub fn parse(names: &[String]) -> Result<Tests> {
        if names.is_empty() {
            return Ok(Tests::all());
        }
        let mut tests = Tests {
            memory: false,
            bulk: false,
            rate: false,
            echo: false,
            udp: false,
        };
        for name in names {
            match name.as_str() {
                "memory" => tests.memory = true,
                "bulk" => tests.bulk = true,
                "rate" => tests.rate = true,
                "echo" => tests.echo = true,
                "udp" => tests.udp = true,
                other => bail!(
                    "unknown test {other:?} (known: {})",
                    Tests::NAMES.join(", ")
                ),
            }
        }
        Ok(tests)
    }
}

/// Where one run of one target is, for file names.
#[derive(Debug, Clone)]
pub struct RunPlan<'a> {
    pub tests: Tests,
    /// Record `perf` profiles of the proxy into this directory.
    pub perf_dir: Option<&'a Path>,
    /// 1-based repetition number.
    pub repetition: usize,
}

/// Everything measured for one target; a failed measurement is `None` with
/// its cause in `errors`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetResult {
    pub name: String,
    pub skipped: Option<String>,
    pub bulk_1: Option<Bulk>,
    pub bulk_8: Option<Bulk>,
    pub connection_rate: Option<ConnectionRate>,
    pub exchanges: Option<Exchanges>,
    pub idle_memory: Option<IdleMemory>,
    /// Over both bulk runs.
    pub cpu_seconds_per_gib: Option<f64>,
    /// UDP, one reply per session (DNS).
    pub udp_one_per_query: Option<UdpFigures>,
    /// UDP, long sessions.
    pub udp_long: Option<UdpFigures>,
    /// Several queries in flight per client socket, one reply per query.
    pub udp_pipelined: Option<UdpFigures>,
    pub errors: Vec<String>,
}

impl TargetResult {
    pub fn skipped(name: &str, reason: String) -> Self {
        TargetResult {
            name: name.into(),
            skipped: Some(reason),
            ..Default::default()
        }
    }
}

/// The targets of one repetition, in the order they run: each repetition
/// starts one target further along. Where a target runs changes its
/// figures: one coexist binary run as two targets, first and second in
/// every repetition, opened the echo test's connections at 29,913 and
/// 34,485/s (medians of three). Rotating spreads that over the targets, so
/// with at least as many targets as repetitions no target is always first.
pub fn rotated(selected: &[usize], repetition: usize) -> impl Iterator<Item = usize> + '_ {
    let start = if selected.is_empty() {
        0
    } else {
        repetition % selected.len()
    };
    selected[start..].iter().chain(&selected[..start]).copied()
}

/// What the bench asks for: the echo test holds 7,500 connections, which
/// costs a proxy 15,000 descriptors and its splice pipes on top.
const WANTED_FD_LIMIT: u64 = 65_536;

/// Raises this process's open-file limit (to WANTED_FD_LIMIT when allowed
/// to raise the hard limit, as root; else to the hard limit); children
/// inherit it.
pub fn raise_fd_limit() -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(NOFILE)")?;
    let wanted = hard.max(WANTED_FD_LIMIT);
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        return Ok(wanted);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(NOFILE)")?;
    Ok(hard)
}

/// Pins this process (the idle-connection client) to `cpu`.
pub fn pin_self(cpu: usize) -> Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning to CPU {cpu}"))
}

/// `count` loopback ports at or above `base` that nothing listens on, below
/// the ephemeral range so that clients churning through source ports in the
/// connection-rate test never collide with them.
pub fn free_ports(base: u16, count: usize) -> Result<Vec<u16>> {
    let listening = crate::procfs::listening_ports()?;
    let mut ports = Vec::with_capacity(count);
    for port in base..32_768 {
        if ports.len() == count {
            break;
        }
        if !listening.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            ports.push(port);
        }
    }
    if ports.len() < count {
        bail!("found only {} free ports in {base}..32768", ports.len());
    }
    Ok(ports)
}

/// `count` UDP ports at or above `base`, below the ephemeral range, free on
/// both 127.0.0.1 and ::1 (the datagram echo servers are IPv6, the
/// proxies' UDP listeners IPv4).
pub fn free_udp_ports(base: u16, count: usize) -> Result<Vec<u16>> {
    use std::net::{Ipv6Addr, UdpSocket};
    let ports: Vec<u16> = (base..32_768)
        .filter(|&port| {
            UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
                && UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).is_ok()
        })
        .take(count)
        .collect();
    if ports.len() < count {
        bail!("found only {} free UDP ports in {base}..32768", ports.len());
    }
    Ok(ports)
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Runs the measurements of `plan` through `proxy` (listening on
/// `listen`), or straight at the backends when `proxy` is `None`: the TCP
/// ones with one instance of the proxy, then the UDP ones with another.
pub fn run_target(
    name: &str,
    proxy: Option<&dyn Proxy>,
    listen: Listen,
    backends: &Backends,
    s: &Settings,
    plan: &RunPlan<'_>,
    dir: &Path,
) -> TargetResult {
    let mut result = if plan.tests.tcp() {
        run_tcp(name, proxy, listen.tcp, backends, s, plan, dir)
    } else {
        TargetResult {
            name: name.into(),
            ..Default::default()
        }
    };
    if plan.tests.udp && result.skipped.is_none() {
        run_udp(proxy, listen.udp, backends, s, plan, dir, &mut result);
    }
    result
}

/// The UDP measurements: both kinds of session through one instance of
/// `proxy` (or straight at the first datagram echo server), into
/// `result`, which names the target.
fn run_udp(
    proxy: Option<&dyn Proxy>,
    listen_ports: [u16; 2],
    backends: &Backends,
    s: &Settings,
    plan: &RunPlan<'_>,
    dir: &Path,
    result: &mut TargetResult,
) {
    let name = result.name.clone();
    let name = name.as_str();
    let kinds = [Sessions::OnePerQuery, Sessions::Long, Sessions::Pipelined];
    let (child, targets) = match proxy {
        None => (None, [backends.udp_echo[0]; 3]),
        Some(proxy) => {
            if let Some(reason) = proxy.udp_unavailable() {
                eprintln!("{name}: udp: skipped: {reason}");
                if !ran_tcp(result) {
                    result.skipped = Some(reason);
                }
                return;
            }
            let routes = [("dns", kinds[0]), ("flows", kinds[1])]
                .into_iter()
                .zip(listen_ports)
                .map(|((route, sessions), port)| UdpRoute {
                    name: route,
                    listen: loopback(port),
                    servers: backends.udp_echo.clone(),
                    responses: sessions.responses(),
                })
                .collect::<Vec<_>>();
            let started = proxy
                .start_udp(&routes, dir, s.proxy_cpu)
                .and_then(|child| {
                    for route in &routes {
                        udp::probe(route.listen, std::time::Duration::from_secs(10))?;
                    }
                    Ok(child)
                });
            match started {
                // Pipelined queries go to the DNS route: one reply per query.
                Ok(child) => (
                    Some(child),
                    [routes[0].listen, routes[1].listen, routes[0].listen],
                ),
                Err(e) => {
                    eprintln!("{name}: udp: FAILED to start: {e:#}");
                    result.errors.push(format!("udp: failed to start: {e:#}"));
                    return;
                }
            }
        }
    };
    let pid = child.as_ref().map(|c| c.pid());
    for (sessions, target) in kinds.into_iter().zip(targets) {
        let what = match sessions {
            Sessions::OnePerQuery => "udp, one reply per session",
            Sessions::Long => "udp, long sessions",
            Sessions::Pipelined => "udp, many in flight per client",
        };
        let recording = perf_recording(plan, s, name, sessions.perf_name(), pid);
        match udp::measure(target, sessions, pid, s.client_cpu, &s.udp, recording, dir) {
            Ok(f) => {
                let paced = f.paced.as_ref().map_or(String::new(), |p| {
                    format!(
                        "; at {}/s p50 {:.0} us, p99 {:.0} us",
                        s.udp.paced_rate, p.p50_us, p.p99_us
                    )
                });
                eprintln!(
                    "{name}: {what}: {:.0}/s, {} per proxy core, p99 {:.0} us{paced} ({} lost)",
                    f.saturated.per_second,
                    f.saturated
                        .per_proxy_core
                        .map_or("–".into(), |c| format!("{c:.0}")),
                    f.saturated.p99_us,
                    f.saturated.lost + f.paced.as_ref().map_or(0, |p| p.lost)
                );
                match sessions {
                    Sessions::OnePerQuery => result.udp_one_per_query = Some(f),
                    Sessions::Long => result.udp_long = Some(f),
                    Sessions::Pipelined => result.udp_pipelined = Some(f),
                }
            }
            Err(e) => {
                eprintln!("{name}: {what}: FAILED: {e:#}");
                result.errors.push(format!("{what}: {e:#}"));
            }
        }
    }
    drop(child);
}

/// Whether any TCP measurement produced a figure.
fn ran_tcp(result: &TargetResult) -> bool {
    result.bulk_1.is_some()
        || result.bulk_8.is_some()
        || result.connection_rate.is_some()
        || result.exchanges.is_some()
        || result.idle_memory.is_some()
}

/// The TCP measurements of `plan` through one instance of `proxy`
/// (listening on `listen_ports`: bulk, web, echo).
fn run_tcp(
    name: &str,
    proxy: Option<&dyn Proxy>,
    listen_ports: [u16; 3],
    backends: &Backends,
    s: &Settings,
    plan: &RunPlan<'_>,
    dir: &Path,
) -> TargetResult {
    let mut result = TargetResult {
        name: name.into(),
        ..Default::default()
    };
    let (child, [bulk_addr, web_addr, echo_addr]) = match proxy {
        None => (None, [backends.iperf, backends.web[0], backends.echo[0]]),
        Some(proxy) => {
            if let Some(reason) = proxy.unavailable() {
                eprintln!("{name}: skipped: {reason}");
                return TargetResult::skipped(name, reason);
            }
            let routes = [
                Route {
                    name: "bulk",
                    listen: loopback(listen_ports[0]),
                    servers: vec![backends.iperf],
                },
                Route {
                    name: "web",
                    listen: loopback(listen_ports[1]),
                    servers: backends.web.clone(),
                },
                Route {
                    name: "echo",
                    listen: loopback(listen_ports[2]),
                    servers: backends.echo.clone(),
                },
            ];
            match proxy.start(&routes, dir, s.proxy_cpu) {
                Ok(child) => (Some(child), routes.map(|r| r.listen)),
                Err(e) => {
                    let reason = format!("failed to start: {e:#}");
                    eprintln!("{name}: skipped: {reason}");
                    return TargetResult::skipped(name, reason);
                }
            }
        }
    };
    let pid = child.as_ref().map(|c| c.pid());
    if let Err(e) = measure::http_probe(web_addr, nginx::PAGE_BYTES) {
        let reason = format!("does not forward: {e:#}");
        eprintln!("{name}: skipped: {reason}");
        return TargetResult::skipped(name, reason);
    }
    let recording = |test: &str| perf_recording(plan, s, name, test, pid);

    let mut step = |what: &str, f: &mut dyn FnMut() -> Result<String>| match f() {
        Ok(summary) => eprintln!("{name}: {what}: {summary}"),
        Err(e) => {
            eprintln!("{name}: {what}: FAILED: {e:#}");
            result.errors.push(format!("{what}: {e:#}"));
        }
    };
    // Memory first, on a proxy that has not yet grown buffers for bulk traffic.
    let mut idle = None;
    if let Some(pid) = pid.filter(|_| plan.tests.memory) {
        step("idle memory", &mut || {
            let m = measure::idle_memory(web_addr, pid, s.idle_connections)?;
            let summary = format!(
                "{:.0} B/connection over {} (fds {} -> {})",
                m.bytes_per_connection, m.connections, m.proxy_fds_before, m.proxy_fds_after
            );
            idle = Some(m);
            Ok(summary)
        });
    }
    let mut bulks = [None, None];
    if plan.tests.bulk {
        for (slot, streams) in bulks.iter_mut().zip([1, 8]) {
            step(&format!("bulk {streams} stream(s)"), &mut || {
                let b = measure::bulk(bulk_addr, streams, pid, s, dir)?;
                let summary = format!("{:.2} Gbit/s", b.gbit_per_second);
                *slot = Some(b);
                Ok(summary)
            });
        }
    }
    let mut rate = None;
    if plan.tests.rate {
        step("connection rate", &mut || {
            let r = measure::connection_rate(web_addr, pid, s, dir, recording("rate"))?;
            let summary = format!(
                "{:.0}/s, {} per proxy core, p50 {:.0} us, p99 {:.0} us ({} socket errors)",
                r.per_second,
                r.per_proxy_core.map_or("–".into(), |c| format!("{c:.0}")),
                r.p50_us,
                r.p99_us,
                r.socket_errors
            );
            rate = Some(r);
            Ok(summary)
        });
    }
    let mut exchanges = None;
    if plan.tests.echo {
        step("open + echo", &mut || {
            let perf = recording("open").zip(recording("echo"));
            let e = measure::exchanges(echo_addr, pid, s, dir, perf)?;
            let summary = format!(
                "opened {} at {:.0}/s; {:.0} round trips/s on {} active, {} per proxy core",
                e.opening.connections,
                e.opening.per_second,
                e.round_trips.per_second,
                e.round_trips.active,
                e.per_proxy_core.map_or("–".into(), |c| format!("{c:.0}")),
            );
            exchanges = Some(e);
            Ok(summary)
        });
    }
    drop(child);

    let [bulk_1, bulk_8] = bulks;
    result.cpu_seconds_per_gib = cpu_per_gib(&[bulk_1.as_ref(), bulk_8.as_ref()]);
    result.bulk_1 = bulk_1;
    result.bulk_8 = bulk_8;
    result.connection_rate = rate;
    result.exchanges = exchanges;
    result.idle_memory = idle;
    result
}

/// `DIR/TARGET-TEST-REPETITION.data`, what the profiling script looks for.
/// The `--perf` recording of `test` on `target`'s proxy (`pid`), if
/// profiles are asked for and there is a proxy.
fn perf_recording(
    plan: &RunPlan<'_>,
    s: &Settings,
    target: &str,
    test: &str,
    pid: Option<u32>,
) -> Option<Recording> {
    Some(Recording {
        output: perf_file(plan.perf_dir?, target, test, plan.repetition),
        proxy_cpu: s.proxy_cpu,
        proxy_pid: pid?,
        perf_cpu: s.client_cpu,
    })
}

pub fn perf_file(dir: &Path, target: &str, test: &str, repetition: usize) -> PathBuf {
    dir.join(format!("{target}-{test}-{repetition}.data"))
}

/// Proxy CPU per GiB over all completed bulk runs that have a CPU figure.
fn cpu_per_gib(runs: &[Option<&Bulk>]) -> Option<f64> {
    let (cpu, bytes) = runs
        .iter()
        .flatten()
        .filter_map(|b| b.proxy_cpu_seconds.map(|c| (c, b.bytes)))
        .fold((0.0, 0u64), |(c, b), (c2, b2)| (c + c2, b + b2));
    measure::cpu_seconds_per_gib(cpu, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: u64, cpu: Option<f64>) -> Bulk {
        Bulk {
            streams: 1,
            bytes,
            seconds: 1.0,
            gbit_per_second: 1.0,
            proxy_cpu_seconds: cpu,
            busy: Default::default(),
        }
    }

    #[test]
    fn cpu_per_gib_pools_the_bulk_runs() {
        // Input: 1 GiB for 1 s of CPU, 3 GiB for 1 s. Output: 0.5 s/GiB.
        let a = bulk(1 << 30, Some(1.0));
        let b = bulk(3 << 30, Some(1.0));
        assert_eq!(cpu_per_gib(&[Some(&a), Some(&b)]), Some(0.5));
        // Direct runs carry no proxy CPU: no figure.
        let d = bulk(1 << 30, None);
        assert_eq!(cpu_per_gib(&[Some(&d), None]), None);
    }

    #[test]
    fn every_repetition_starts_one_target_further() {
        let selected = [1, 2, 5];
        let order = |r| rotated(&selected, r).collect::<Vec<_>>();
        assert_eq!(order(0), [1, 2, 5]);
        assert_eq!(order(1), [2, 5, 1]);
        assert_eq!(order(2), [5, 1, 2]);
        assert_eq!(order(3), [1, 2, 5]);
        assert_eq!(rotated(&[], 4).count(), 0);
    }

    #[test]
    fn tests_by_name() {
        assert_eq!(Tests::parse(&[]).unwrap(), Tests::all());
        let t = Tests::parse(&["rate".into(), "echo".into()]).unwrap();
        assert_eq!(
            (t.memory, t.bulk, t.rate, t.echo, t.udp),
            (false, false, true, true, false)
        );
        let t = Tests::parse(&["udp".into()]).unwrap();
        assert!(t.udp && !t.tcp());
        assert!(Tests::parse(&["latency".into()]).is_err());
    }

    #[test]
    fn free_udp_ports_are_bindable_on_both_loopbacks() {
        let ports = free_udp_ports(23_000, 2).unwrap();
        assert_eq!(ports.len(), 2);
        for p in ports {
            assert!((23_000..32_768).contains(&p));
            std::net::UdpSocket::bind(("::1", p)).unwrap();
        }
    }

    #[test]
    fn free_ports_are_bindable_and_below_the_ephemeral_range() {
        let ports = free_ports(23_000, 3).unwrap();
        assert_eq!(ports.len(), 3);
        for p in ports {
            assert!((23_000..32_768).contains(&p));
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        }
    }
}
