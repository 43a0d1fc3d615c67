//! `coexist-bench [--quick] [--repeat N] [--json FILE]`: coexist beside a
//! direct connection, HAProxy (plain and with forced splice) and nginx
//! `stream` (TCP and UDP), on loopback in a private network namespace, with
//! the proxy pinned to one CPU and clients and servers on another. Prints a
//! Markdown table of medians and spreads; writes JSON with `--json`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use coexist_benches::child::{installed, run_bounded, Child, Spec};
use coexist_benches::coexist::Coexist;
use coexist_benches::echo::{self, EchoSettings};
use coexist_benches::haproxy::Haproxy;
use coexist_benches::measure::Settings;
use coexist_benches::nginx::{self, NginxStream};
use coexist_benches::proxy::Proxy;
use coexist_benches::report::{self, Report, Tool};
use coexist_benches::run::{self, Backends, Listen, RunPlan, TargetResult, Tests};
use coexist_benches::udp::{self, UdpSettings};
use coexist_benches::{iperf, netns, procfs};

#[derive(Debug, Parser)]
#[command(
    name = "coexist-bench",
    about = "End-to-end bench: coexist vs direct, HAProxy, nginx stream",
    long_about = LONG_ABOUT
)]
struct Cli {
    /// Short runs: each measurement a few seconds.
    #[arg(long)]
    quick: bool,
    /// Run every target this many times (interleaved, each repetition
    /// starting one target further along) and report the median and the
    /// spread (min–max).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeat: u32,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write an HTML report into DIR (created if missing):
    /// `bench.html`, the ratio of every target to HAProxy per figure as a
    /// picture (also `bench-ratios.svg`) and the table, self-contained.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// The coexist binary (default: `coexist` next to this binary).
    #[arg(long, value_name = "PATH")]
    coexist: Option<PathBuf>,
    /// Also run another coexist build, as target NAME, right after coexist
    /// (to compare a change with its baseline in the same run).
    #[arg(long, value_name = "NAME=PATH", value_parser = parse_named_binary)]
    compare: Vec<(String, PathBuf)>,
    /// Only these targets, comma-separated
    /// (direct, coexist, haproxy, haproxy-splice, nginx-stream).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// Only these measurements, comma-separated (memory, bulk, rate, echo, udp).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    tests: Vec<String>,
    /// Record `perf` profiles of the proxy during the connection-rate run,
    /// the opening of the echo test's connections, its round trips and the
    /// saturated UDP runs, into DIR
    /// (TARGET-{rate,open,echo,udp-one,udp-long,udp-pipelined}-REPETITION.data).
    #[arg(long, value_name = "DIR")]
    perf: Option<PathBuf>,
    /// CPU the proxy is pinned to.
    #[arg(long, default_value_t = 1)]
    proxy_cpu: usize,
    /// CPU the clients, servers and this process are pinned to.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
    /// Do not pin anything (results are then not comparable with pinned runs).
    #[arg(long)]
    no_pin: bool,
    /// Use the host's loopback instead of a private network namespace.
    #[arg(long)]
    host_network: bool,
    /// Concurrent connections of the connection-rate run.
    #[arg(long, default_value_t = 50)]
    rate_connections: u32,
    /// Idle connections held open for the memory figure.
    #[arg(long, default_value_t = 5_000)]
    idle_connections: usize,
    /// Connections the echo test opens and holds.
    #[arg(long, default_value_t = 7_500)]
    echo_open: usize,
    /// Connections the echo test opens at the same time.
    #[arg(long, default_value_t = 100)]
    echo_in_flight: usize,
    /// Of the echo test's open connections, how many exchange messages.
    #[arg(long, default_value_t = 750)]
    echo_active: usize,
    /// Bytes of each echo message.
    #[arg(long, default_value_t = 512)]
    echo_bytes: usize,
    /// UDP client sockets, each with one query outstanding at saturation.
    #[arg(long, default_value_t = 64)]
    udp_flows: usize,
    /// Queries each UDP client keeps in flight in the pipelined run (a
    /// resolver, dnsperf), over udp-flows / udp-in-flight clients.
    #[arg(long, default_value_t = 16)]
    udp_in_flight: usize,
    /// Bytes of each UDP query.
    #[arg(long, default_value_t = 64)]
    udp_bytes: usize,
    /// Queries per second offered in the UDP latency runs.
    #[arg(long, default_value_t = 20_000)]
    udp_rate: u32,
    /// First loopback port to try for backends and proxies.
    #[arg(long, default_value_t = 23_000)]
    base_port: u16,
    /// Internal: serve echo on these addresses until killed.
    #[arg(long, value_name = "ADDR", hide = true)]
    echo_server: Vec<SocketAddr>,
    /// Internal: serve datagram echo on these addresses until killed.
    #[arg(long, value_name = "ADDR", hide = true)]
    udp_echo_server: Vec<SocketAddr>,
}

const LONG_ABOUT: &str = "\
End-to-end bench: coexist vs direct, HAProxy, nginx stream.

Needs: apt-get install -y haproxy nginx libnginx-mod-stream iperf3 wrk
Build: cargo build --release -p lb -p coexist-benches
Run:   target/release/coexist-bench --quick --repeat 3 --json bench.json
UDP:   target/release/coexist-bench --tests udp --only direct,coexist,nginx-stream --repeat 3

Everything runs on the loopback of a private network namespace (as root;
--host-network otherwise). iperf3 (bulk), two nginx servers of a 1 KiB page
(connection rate, latency, idle memory) and two echo servers (opening many
connections, small round trips) are the backends; each proxy in turn forwards
to them, round robin over each pair, pinned to --proxy-cpu while clients and
servers share --client-cpu. HAProxy or nginx stream are skipped, with the
reason printed, when not installed; coexist when its binary is not found.

Reading the table: one row per metric, one column per target; 'better' says
which way is good. Each cell is the median over the repetitions, the spread
(min–max), and (x× h) the ratio to HAProxy without splice. Per-core figures
divide a rate by the fraction of a core the proxy was busy, so a proxy held
back by the client core is not penalised. Memory is the proxy's RSS growth per
idle connection; CPU per GiB is the proxy's CPU time over the bulk runs. The
last table checks coexist against the criteria of the request-path issue and
of the UDP issue.

UDP: IPv4 clients send queries through each proxy (HAProxy has no UDP) to
two datagram echo servers on ::1, in sessions of one query (udp_responses = 1,
nginx proxy_responses 1: DNS) and in long sessions; each at saturation
(--udp-flows clients, one query outstanding each) and paced at --udp-rate
queries/s for the latency a query sees below saturation. Then pipelined: each
client keeps --udp-in-flight queries in flight on its one socket (a resolver,
dnsperf), one reply per query, at saturation.";

const TARGETS: [&str; 5] = [
    "direct",
    "coexist",
    "haproxy",
    "haproxy-splice",
    "nginx-stream",
];

fn main() {
    let cli = Cli::parse();
    let result = if !cli.echo_server.is_empty() {
        echo::serve(&cli.echo_server)
    } else if !cli.udp_echo_server.is_empty() {
        udp::serve(&cli.udp_echo_server)
    } else {
        run_bench(cli)
    };
    if let Err(e) = result {
        eprintln!("coexist-bench: {e:#}");
        std::process::exit(1);
    }
}

fn parse_named_binary(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {text:?}"))?;
    if name.is_empty() || TARGETS.contains(&name) {
        return Err(format!("{name:?} is not a free target name"));
    }
    Ok((name.to_owned(), PathBuf::from(path)))
}

fn run_bench(cli: Cli) -> Result<()> {
    let started = Instant::now();
    for name in &cli.only {
        if !TARGETS.contains(&name.as_str()) && !cli.compare.iter().any(|(n, _)| n == name) {
            bail!(
                "unknown target {name:?} in --only (known: {})",
                TARGETS.join(", ")
            );
        }
    }
    let tests = Tests::parse(&cli.tests)?;
    for tool in ["iperf3", "wrk", "nginx"] {
        if !installed(tool) {
            bail!("{tool} is not installed; run: apt-get install -y haproxy nginx libnginx-mod-stream iperf3 wrk");
        }
    }
    if cli.perf.is_some() && !installed("perf") {
        bail!("--perf needs perf (apt-get install linux-perf)");
    }
    // First, while this process has a single thread.
    if !cli.host_network {
        netns::enter_private()?;
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
    let seconds = if cli.quick { 5 } else { 10 };
    let settings = Settings {
        bulk_seconds: if cli.quick { 3 } else { 10 },
        rate_seconds: seconds,
        rate_connections: cli.rate_connections,
        echo: EchoSettings {
            open: cli.echo_open,
            open_in_flight: cli.echo_in_flight,
            active: cli.echo_active,
            message_bytes: cli.echo_bytes,
            seconds,
        },
        idle_connections: cli.idle_connections,
        udp: UdpSettings {
            flows: cli.udp_flows,
            in_flight: cli.udp_in_flight,
            payload_bytes: cli.udp_bytes,
            seconds,
            paced_rate: cli.udp_rate,
        },
        client_cpu: pin.then_some(cli.client_cpu),
        proxy_cpu: pin.then_some(cli.proxy_cpu),
    };
    let fd_limit = run::raise_fd_limit()?;
    let most_open = settings.idle_connections.max(settings.echo.open);
    if (fd_limit as usize) < 2 * most_open + 2_100 {
        bail!("open-file hard limit {fd_limit} is too low for {most_open} connections");
    }
    if let Some(cpu) = settings.client_cpu {
        run::pin_self(cpu)?;
    }
    if let Some(dir) = &cli.perf {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let temp = tempfile::Builder::new()
        .prefix("coexist-bench-")
        .tempdir()
        .context("creating the temp dir")?;
    let dir = temp.path();
    coexist_benches::child::install_interrupt_handler(dir)?;

    // Absolute: the proxies run in the temp dir.
    let absolute = |path: &PathBuf| std::path::absolute(path).unwrap_or_else(|_| path.clone());
    let coexist = match &cli.coexist {
        Some(path) => Coexist {
            name: "coexist".into(),
            binary: absolute(path),
        },
        None => Coexist::beside_current_exe()?,
    };
    let compared: Vec<Coexist> = cli
        .compare
        .iter()
        .map(|(name, binary)| Coexist {
            name: name.clone(),
            binary: absolute(binary),
        })
        .collect();
    let tools = tool_versions(&coexist, dir);
    let machine = procfs::machine_description();
    let load_start = procfs::load_average().ok();

    let haproxy = Haproxy { splice: false };
    let haproxy_splice = Haproxy { splice: true };
    let mut targets: Vec<(&str, Option<&dyn Proxy>)> =
        vec![("direct", None), ("coexist", Some(&coexist))];
    targets.extend(
        compared
            .iter()
            .map(|c| (c.name.as_str(), Some(c as &dyn Proxy))),
    );
    targets.extend([
        ("haproxy", Some(&haproxy as &dyn Proxy)),
        ("haproxy-splice", Some(&haproxy_splice as &dyn Proxy)),
        ("nginx-stream", Some(&NginxStream as &dyn Proxy)),
    ]);
    let listen_ports_per_target = 3;
    let ports = run::free_ports(
        cli.base_port,
        5 + listen_ports_per_target * (targets.len() - 1),
    )?;
    let udp_listen_per_target = 2;
    let udp_ports = run::free_udp_ports(cli.base_port, 2 + udp_listen_per_target * targets.len())?;
    let backends = Backends {
        iperf: run::loopback(ports[0]),
        web: vec![run::loopback(ports[1]), run::loopback(ports[2])],
        echo: vec![run::loopback(ports[3]), run::loopback(ports[4])],
        udp_echo: udp_ports[..2]
            .iter()
            .map(|&p| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, p)))
            .collect(),
    };
    let mut iperf_server = Child::spawn(&iperf::server(backends.iperf, settings.client_cpu), dir)?;
    iperf_server.wait_ready(&[backends.iperf.port()], None, Duration::from_secs(10))?;
    let web_server = nginx::start_backend(
        &backends.web,
        &dir.join("nginx-backend"),
        settings.client_cpu,
    )?;
    let echo_server = start_echo_server(&backends.echo, settings.client_cpu, dir)?;
    if tests.echo {
        warm_up_echo_servers(&backends.echo, &settings.echo)?;
    }
    let udp_echo_server = start_udp_echo_server(&backends.udp_echo, settings.client_cpu, dir)?;
    eprintln!(
        "coexist-bench: backends up (iperf3 on {}, nginx on {:?}, echo on {:?}, udp echo on {:?}); temp dir {}",
        backends.iperf,
        backends.web,
        backends.echo,
        backends.udp_echo,
        dir.display()
    );

    let mut repetitions = Vec::new();
    'repetitions: for repetition in 1..=cli.repeat as usize {
        let plan = RunPlan {
            tests,
            perf_dir: cli.perf.as_deref(),
            repetition,
        };
        let mut results = Vec::new();
        let selected: Vec<usize> = (0..targets.len())
            .filter(|&i| cli.only.is_empty() || cli.only.iter().any(|o| o == targets[i].0))
            .collect();
        for i in coexist_benches::run::rotated(&selected, repetition - 1) {
            let (name, proxy) = targets[i];
            eprintln!(
                "coexist-bench: repetition {repetition} of {}: {name}",
                cli.repeat
            );
            let tcp = if i == 0 {
                [0; 3]
            } else {
                let first = 5 + listen_ports_per_target * (i - 1);
                [ports[first], ports[first + 1], ports[first + 2]]
            };
            let first = 2 + udp_listen_per_target * i;
            let listen = Listen {
                tcp,
                udp: [udp_ports[first], udp_ports[first + 1]],
            };
            results.push(run::run_target(
                name, proxy, listen, &backends, &settings, &plan, dir,
            ));
            if let Some(status) = iperf_server.exited()? {
                // Later bulk runs would all fail; say why instead.
                results.push(TargetResult::skipped(
                    "iperf3-server",
                    format!("exited ({status}): {}", iperf_server.log_tail()),
                ));
                repetitions.push(results);
                break 'repetitions;
            }
        }
        repetitions.push(results);
    }
    drop(udp_echo_server);
    drop(echo_server);
    drop(web_server);
    drop(iperf_server);

    let load_end = procfs::load_average().ok();
    let report = Report::new(
        machine,
        [load_start, load_end],
        tools,
        settings,
        repetitions,
    );
    println!("{}", report::markdown(&report));
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(dir) = &cli.report {
        let page =
            coexist_benches::chart::write(&report, dir).context("writing the HTML report")?;
        eprintln!("coexist-bench: report written to {}", page.display());
    }
    eprintln!(
        "coexist-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// This binary again, serving echo on `listen`.
fn start_echo_server(
    listen: &[SocketAddr],
    cpu: Option<usize>,
    dir: &std::path::Path,
) -> Result<Child> {
    let mut child = spawn_self("echo-server", "--echo-server", listen, cpu, dir)?;
    let ports: Vec<u16> = listen.iter().map(|a| a.port()).collect();
    child.wait_ready(&ports, None, Duration::from_secs(10))?;
    Ok(child)
}

/// Opens as many connections straight to the echo servers as a target
/// will hold through its proxy, then closes them. Without it the first
/// target of a run opened its connections at 24,318/s against 30,044 to
/// 34,882 for the others (the same binary too): the echo servers and the
/// client grew their memory during its measurement.
fn warm_up_echo_servers(echo: &[SocketAddr], s: &EchoSettings) -> Result<()> {
    let open = s.open.div_ceil(echo.len().max(1));
    let each = EchoSettings {
        open,
        active: s.active.min(open),
        ..s.clone()
    };
    for &address in echo {
        let (client, _) = echo::EchoClient::open(address, &each)
            .with_context(|| format!("warming up the echo server on {address}"))?;
        drop(client);
    }
    Ok(())
}

/// This binary again, serving datagram echo on `listen`; ready once a
/// datagram comes back from each address.
fn start_udp_echo_server(
    listen: &[SocketAddr],
    cpu: Option<usize>,
    dir: &std::path::Path,
) -> Result<Child> {
    let child = spawn_self("udp-echo-server", "--udp-echo-server", listen, cpu, dir)?;
    for &address in listen {
        udp::probe(address, Duration::from_secs(10))
            .with_context(|| format!("the datagram echo server: {}", child.log_tail()))?;
    }
    Ok(child)
}

/// This binary again as `name`, with `flag=ADDRESS` for each of `listen`.
fn spawn_self(
    name: &str,
    flag: &str,
    listen: &[SocketAddr],
    cpu: Option<usize>,
    dir: &std::path::Path,
) -> Result<Child> {
    let exe = std::env::current_exe().context("locating the coexist-bench binary")?;
    let exe = exe.to_string_lossy();
    let addresses: Vec<String> = listen.iter().map(|a| format!("{flag}={a}")).collect();
    let args: Vec<&str> = addresses.iter().map(String::as_str).collect();
    Child::spawn(&Spec::new(name, &exe, &args, cpu), dir)
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
