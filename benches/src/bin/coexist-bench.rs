//! `coexist-bench [--quick] [--json FILE]`: coexist beside a direct
//! connection, HAProxy (plain and with forced splice) and nginx `stream`, on
//! loopback, with the proxy pinned to one CPU and clients and servers on
//! another. Prints a Markdown table; writes JSON with `--json`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use coexist_benches::child::{installed, run_bounded, Child, Spec};
use coexist_benches::coexist::Coexist;
use coexist_benches::haproxy::Haproxy;
use coexist_benches::measure::Settings;
use coexist_benches::nginx::{self, NginxStream};
use coexist_benches::proxy::Proxy;
use coexist_benches::report::{self, Report, Tool};
use coexist_benches::run::{self, Backends, TargetResult};
use coexist_benches::{iperf, procfs};

#[derive(Debug, Parser)]
#[command(
    name = "coexist-bench",
    about = "End-to-end throughput bench: coexist vs direct, HAProxy, nginx stream",
    long_about = LONG_ABOUT
)]
struct Cli {
    /// Short budget: the whole run in under 2 minutes.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The coexist binary (default: `coexist` next to this binary).
    #[arg(long, value_name = "PATH")]
    coexist: Option<PathBuf>,
    /// Only these targets, comma-separated
    /// (direct, coexist, haproxy, haproxy-splice, nginx-stream).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// CPU the proxy is pinned to.
    #[arg(long, default_value_t = 1)]
    proxy_cpu: usize,
    /// CPU the clients, servers and this process are pinned to.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
    /// Do not pin anything (results are then not comparable with pinned runs).
    #[arg(long)]
    no_pin: bool,
    /// Idle connections held open for the memory figure.
    #[arg(long, default_value_t = 5_000)]
    idle_connections: usize,
    /// First loopback port to try for backends and proxies.
    #[arg(long, default_value_t = 23_000)]
    base_port: u16,
}

const LONG_ABOUT: &str = "\
End-to-end throughput bench: coexist vs direct, HAProxy, nginx stream.

Needs: apt-get install -y haproxy nginx libnginx-mod-stream iperf3 wrk
Build: cargo build --release -p lb -p coexist-benches
Run:   target/release/coexist-bench --quick --json bench.json

Everything runs on loopback. iperf3 (bulk) and an nginx serving a small page
(connection rate, latency, idle memory) are the backends; each proxy in turn
forwards to them, pinned to --proxy-cpu while clients and servers share
--client-cpu. HAProxy or nginx stream are skipped, with the reason printed,
when not installed; coexist when its binary is not found.

Reading the table: one row per metric, one column per target; 'better' says
which way is good. After each figure, (x× d) is the ratio to the direct
connection and (x× h) to HAProxy without splice. Connections/s per proxy core
divides the rate by the fraction of a core the proxy was busy, so a proxy held
back by the client core is not penalised. Memory is the proxy's RSS growth per
idle connection; CPU per GiB is the proxy's CPU time over the bulk runs. The
last table checks coexist against HAProxy on the data-plane criteria.";

const TARGETS: [&str; 5] = [
    "direct",
    "coexist",
    "haproxy",
    "haproxy-splice",
    "nginx-stream",
];

fn main() {
    if let Err(e) = run_bench(Cli::parse()) {
        eprintln!("coexist-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run_bench(cli: Cli) -> Result<()> {
    let started = Instant::now();
    for name in &cli.only {
        if !TARGETS.contains(&name.as_str()) {
            bail!(
                "unknown target {name:?} in --only (known: {})",
                TARGETS.join(", ")
            );
        }
    }
    for tool in ["iperf3", "wrk", "nginx"] {
        if !installed(tool) {
            bail!("{tool} is not installed; run: apt-get install -y haproxy nginx libnginx-mod-stream iperf3 wrk");
        }
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pin = !cli.no_pin && cpus >= 2 && installed("taskset");
    if !cli.no_pin && !pin {
        eprintln!(
            "coexist-bench: not pinning ({cpus} CPU(s) available, taskset installed: {})",
            installed("taskset")
        );
    }
    let settings = Settings {
        bulk_seconds: if cli.quick { 3 } else { 10 },
        rate_seconds: if cli.quick { 3 } else { 10 },
        rate_connections: if cli.quick { 32 } else { 64 },
        latency_seconds: if cli.quick { 2 } else { 10 },
        idle_connections: cli.idle_connections,
        client_cpu: pin.then_some(cli.client_cpu),
        proxy_cpu: pin.then_some(cli.proxy_cpu),
    };
    let fd_limit = run::raise_fd_limit()?;
    if (fd_limit as usize) < 2 * settings.idle_connections + 100 {
        bail!(
            "open-file hard limit {fd_limit} is too low for {} idle connections",
            settings.idle_connections
        );
    }
    if let Some(cpu) = settings.client_cpu {
        run::pin_self(cpu)?;
    }

    let temp = tempfile::Builder::new()
        .prefix("coexist-bench-")
        .tempdir()
        .context("creating the temp dir")?;
    let dir = temp.path();
    coexist_benches::child::install_interrupt_handler(dir)?;

    let coexist = match &cli.coexist {
        Some(path) => Coexist {
            binary: path.clone(),
        },
        None => Coexist::beside_current_exe()?,
    };
    let tools = tool_versions(&coexist, dir);
    let machine = procfs::machine_description();
    let load_start = procfs::load_average().ok();

    let ports = run::free_ports(cli.base_port, 2 + 2 * (TARGETS.len() - 1))?;
    let backends = Backends {
        iperf: run::loopback(ports[0]),
        web: run::loopback(ports[1]),
    };
    let mut iperf_server = Child::spawn(&iperf::server(backends.iperf, settings.client_cpu), dir)?;
    iperf_server.wait_ready(&[backends.iperf.port()], None, Duration::from_secs(10))?;
    let web_server = nginx::start_backend(
        backends.web,
        &dir.join("nginx-backend"),
        settings.client_cpu,
    )?;
    eprintln!(
        "coexist-bench: backends up (iperf3 on {}, nginx on {}); temp dir {}",
        backends.iperf,
        backends.web,
        dir.display()
    );

    let haproxy = Haproxy { splice: false };
    let haproxy_splice = Haproxy { splice: true };
    let proxies: [Option<&dyn Proxy>; 5] = [
        None,
        Some(&coexist),
        Some(&haproxy),
        Some(&haproxy_splice),
        Some(&NginxStream),
    ];
    let mut results = Vec::new();
    for (i, (name, proxy)) in TARGETS.iter().zip(proxies).enumerate() {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == name) {
            continue;
        }
        let listen = if i == 0 {
            [0, 0]
        } else {
            [ports[2 * i], ports[2 * i + 1]]
        };
        results.push(run::run_target(
            name, proxy, listen, backends, &settings, dir,
        ));
        if let Some(status) = iperf_server.exited()? {
            // Later bulk runs would all fail; say why instead.
            results.push(TargetResult::skipped(
                "iperf3-server",
                format!("exited ({status}): {}", iperf_server.log_tail()),
            ));
            break;
        }
    }
    drop(web_server);
    drop(iperf_server);

    let load_end = procfs::load_average().ok();
    let report = Report::new(machine, [load_start, load_end], tools, settings, results);
    println!("{}", report::markdown(&report));
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "coexist-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// First line of each tool's version output, for the record.
fn tool_versions(coexist: &Coexist, dir: &std::path::Path) -> Vec<Tool> {
    let binary = coexist.binary.to_string_lossy();
    let probes: [(&str, &str, &[&str]); 5] = [
        ("coexist", &binary, &["--version"]),
        ("haproxy", "haproxy", &["-v"]),
        ("nginx", "nginx", &["-v"]),
        ("iperf3", "iperf3", &["--version"]),
        ("wrk", "wrk", &["-v"]),
    ];
    probes
        .iter()
        .map(|(name, program, args)| {
            let version = if installed(program) {
                run_bounded(
                    &Spec::new(&format!("version-{name}"), program, args, None),
                    dir,
                    Duration::from_secs(5),
                )
                .map(|f| {
                    format!("{}\n{}", f.stdout, f.stderr)
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_else(|e| format!("unknown ({e})"))
            } else {
                "not installed".into()
            };
            Tool {
                name: name.to_string(),
                version,
            }
        })
        .collect()
}
