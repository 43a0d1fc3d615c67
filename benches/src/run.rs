//! One bench run: the process setup (descriptor limit, pinning, ports) and
//! the sequence of measurements against each target.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::measure::{self, Bulk, ConnectionRate, IdleMemory, Latency, Settings};
use crate::nginx;
use crate::proxy::{Proxy, Route};

/// The backends every target forwards to.
#[derive(Debug, Clone, Copy)]
pub struct Backends {
    pub iperf: SocketAddr,
    pub web: SocketAddr,
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
    pub latency: Option<Latency>,
    pub idle_memory: Option<IdleMemory>,
    /// Over both bulk runs.
    pub cpu_seconds_per_gib: Option<f64>,
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

/// Raises this process's open-file limit to its hard limit; children inherit
/// it (the proxies need two descriptors per idle connection).
pub fn raise_fd_limit() -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(NOFILE)")?;
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

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Runs every measurement through `proxy` (listening on `listen_ports`), or
/// straight at the backends when `proxy` is `None`.
pub fn run_target(
    name: &str,
    proxy: Option<&dyn Proxy>,
    listen_ports: [u16; 2],
    backends: Backends,
    s: &Settings,
    dir: &Path,
) -> TargetResult {
    let mut result = TargetResult {
        name: name.into(),
        ..Default::default()
    };
    let (child, bulk_addr, web_addr) = match proxy {
        None => (None, backends.iperf, backends.web),
        Some(proxy) => {
            if let Some(reason) = proxy.unavailable() {
                eprintln!("{name}: skipped: {reason}");
                return TargetResult::skipped(name, reason);
            }
            let routes = [
                Route {
                    name: "bulk",
                    listen: loopback(listen_ports[0]),
                    server: backends.iperf,
                },
                Route {
                    name: "web",
                    listen: loopback(listen_ports[1]),
                    server: backends.web,
                },
            ];
            match proxy.start(&routes, dir, s.proxy_cpu) {
                Ok(child) => (Some(child), routes[0].listen, routes[1].listen),
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

    let mut step = |what: &str, f: &mut dyn FnMut() -> Result<String>| match f() {
        Ok(summary) => eprintln!("{name}: {what}: {summary}"),
        Err(e) => {
            eprintln!("{name}: {what}: FAILED: {e:#}");
            result.errors.push(format!("{what}: {e:#}"));
        }
    };
    // Memory first, on a proxy that has not yet grown buffers for bulk traffic.
    let mut idle = None;
    if let Some(pid) = pid {
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
    for (slot, streams) in bulks.iter_mut().zip([1, 8]) {
        step(&format!("bulk {streams} stream(s)"), &mut || {
            let b = measure::bulk(bulk_addr, streams, pid, s, dir)?;
            let summary = format!("{:.2} Gbit/s", b.gbit_per_second);
            *slot = Some(b);
            Ok(summary)
        });
    }
    let mut rate = None;
    step("connection rate", &mut || {
        let r = measure::connection_rate(web_addr, pid, s, dir)?;
        let summary = format!("{:.0}/s ({} socket errors)", r.per_second, r.socket_errors);
        rate = Some(r);
        Ok(summary)
    });
    let mut lat = None;
    step("latency", &mut || {
        let l = measure::latency(web_addr, s, dir)?;
        let summary = format!("p50 {:.0} us, p99 {:.0} us", l.p50_us, l.p99_us);
        lat = Some(l);
        Ok(summary)
    });
    drop(child);

    let [bulk_1, bulk_8] = bulks;
    result.cpu_seconds_per_gib = cpu_per_gib(&[bulk_1.as_ref(), bulk_8.as_ref()]);
    result.bulk_1 = bulk_1;
    result.bulk_8 = bulk_8;
    result.connection_rate = rate;
    result.latency = lat;
    result.idle_memory = idle;
    result
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
    fn free_ports_are_bindable_and_below_the_ephemeral_range() {
        let ports = free_ports(23_000, 3).unwrap();
        assert_eq!(ports.len(), 3);
        for p in ports {
            assert!((23_000..32_768).contains(&p));
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        }
    }
}
