//! coexist-lab: builds the verification topology in network namespaces,
//! runs the matrix and prints it. See `coexist-lab --help`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use coexist_tests::lab::{self, load};
use coexist_tests::netns;

/// Set once a signal asked the lab to stop.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Set in the copy of the lab re-executed under `unshare -rnm`.
const UNSHARED_ENV: &str = "COEXIST_LAB_UNSHARED";

#[derive(Parser)]
#[command(
    name = "coexist-lab",
    about = "Build the coexist verification topology in network namespaces, run the matrix, print it",
    long_about = "Builds two coexist nodes (load balancer + VRRP for IPv4 and IPv6) between an \
IPv4-only and an IPv6-only client and IPv6-only and dual-stack servers, all in network \
namespaces on this machine, then runs the verification matrix: balance, IPv4 to IPv6 \
servers, VRRP election, node failure and daemon crash (takeover and client-visible gap), \
preemption, a server killed under load, tracking, and reload under load; then DNS through \
UDP frontends to BIND 9 on the IPv6-only servers: both families answered and balanced, a DNS \
server killed under query load, and the query gap of a takeover.\n\n\
Needs CAP_NET_ADMIN: run as root, or it re-executes itself under `unshare -rnm`. \
Every namespace and process it makes is removed at the end, also on Ctrl-C. \
Exits non-zero if a row fails; then its logs are kept and their directory printed.\n\n\
Expects the coexist daemon next to itself: \
`cargo build --release -p lb -p coexist-tests && target/release/coexist-lab`."
)]
struct Cli {
    #[command(subcommand)]
    helper: Option<Helper>,
    /// Print the results as JSON: { "rows": [ { "id", "name", "pass", "figures" } ] }.
    #[arg(long)]
    json: bool,
    /// VRRP advertisement interval of both nodes (multiples of 10ms).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    advert_interval: Duration,
    /// The coexist binary (default: `coexist` next to this program).
    #[arg(long)]
    coexist: Option<PathBuf>,
    /// Run the scale-out rows instead: a BIRD router with ECMP in front of
    /// three coexist + BIRD nodes, with hash-threshold and resilient
    /// next-hop groups, and FRR as the router in row E8 (needs bird2, frr
    /// and nftables).
    #[arg(long)]
    ecmp: bool,
    /// With --ecmp: run only these rows (ids, comma-separated).
    #[arg(long, value_delimiter = ',', requires = "ecmp")]
    rows: Vec<u8>,
    /// Keep the logs, configs and client records even when every row passes.
    #[arg(long)]
    keep_logs: bool,
    /// Also write an HTML report into DIR (created if missing): `lab.html`,
    /// the matrix and a timeline per takeover row of what each client saw,
    /// self-contained (opens from the file, no internet), and each timeline
    /// as its own SVG file beside it.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

/// The lab's own servers and clients, run inside namespaces.
#[derive(Subcommand)]
enum Helper {
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        name: String,
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    #[command(hide = true)]
    Client {
        #[arg(long)]
        target: std::net::SocketAddr,
        #[arg(long)]
        duration_ms: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 5)]
        every_ms: u64,
        #[arg(long, default_value_t = load::BYTES)]
        bytes: usize,
        #[arg(long, default_value_t = 1000)]
        max_in_flight: usize,
        /// DNS queries (UDP) instead of TCP connections.
        #[arg(long)]
        dns: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coexist-lab: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.helper {
        Some(Helper::Serve { name, listen }) => {
            load::serve(&name, listen)?;
            return Ok(0);
        }
        Some(Helper::Client {
            target,
            duration_ms,
            out,
            every_ms,
            bytes: _,
            max_in_flight,
            dns: true,
        }) => {
            let pace = load::Pace {
                duration: Duration::from_millis(duration_ms),
                every: Duration::from_millis(every_ms.max(1)),
                max_in_flight,
            };
            lab::dns::client(target, pace, &out)?;
            return Ok(0);
        }
        Some(Helper::Client {
            target,
            duration_ms,
            out,
            every_ms,
            bytes,
            max_in_flight,
            dns: false,
        }) => {
            let spec = load::ClientSpec {
                target,
                duration: Duration::from_millis(duration_ms),
                every: Duration::from_millis(every_ms.max(1)),
                bytes,
                max_in_flight,
            };
            load::client(&spec, &out)?;
            return Ok(0);
        }
        None => {}
    }
    let advert = cli.advert_interval;
    if advert < Duration::from_millis(10)
        || advert.as_millis() % 10 != 0
        || advert.subsec_nanos() % 1_000_000 != 0
    {
        bail!("--advert-interval must be a multiple of 10ms (VRRPv3 counts centiseconds), not {advert:?}");
    }
    let helper = std::env::current_exe().context("cannot find this program's path")?;
    if !nix::unistd::geteuid().is_root() && std::env::var_os(UNSHARED_ENV).is_none() {
        return Err(reexec_unshared(&helper));
    }
    let coexist = match cli.coexist {
        Some(path) => path,
        None => beside(&helper, "coexist"),
    };
    if !coexist.is_file() {
        bail!(
            "the coexist daemon is missing at {}: build it first, e.g. \
             `cargo build --release -p lb -p coexist-tests` (debug: `cargo build -p lb -p coexist-tests`), \
             or pass --coexist PATH",
            coexist.display()
        );
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => bail!(
            "`ip netns` fails: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => bail!("cannot run `ip` (install iproute2): {e}"),
    }

    let dir = tempfile::Builder::new()
        .prefix("coexist-lab-")
        .tempdir()
        .context("temporary directory")?;
    let prefix = netns::prefix("lab");
    let dir_path = dir.path().to_owned();
    // The main thread may trip over namespaces vanishing under it: keep it
    // quiet and waiting, so the handler's cleanup and exit code win.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if INTERRUPTED.load(Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
        default_hook(info);
    }));
    ctrlc::set_handler(move || {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("coexist-lab: interrupted, removing the lab");
        netns::purge(&prefix);
        let _ = std::fs::remove_dir_all(&dir_path);
        std::process::exit(130);
    })
    .context("install the signal handler")?;

    if cli.ecmp {
        let report = lab::ecmp::run(&coexist, !cli.json, &cli.rows);
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!(
                "{}",
                report.table_titled("--ecmp, 3 nodes behind a BIRD router (E8: an FRR router)")
            );
        }
        return Ok(if report.passed() { 0 } else { 1 });
    }
    let report = lab::run(&lab::Options {
        advert,
        programs: lab::Programs { coexist, helper },
        dir: dir.path().to_owned(),
        progress: !cli.json,
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let kept = dir.keep();
            bail!("{e:#}\n(logs kept in {})", kept.display());
        }
    };
    if let Some(dir) = &cli.report {
        let page = lab::html::write(&report, dir).context("writing the HTML report")?;
        eprintln!("coexist-lab: report written to {}", page.display());
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    let passed = report.passed();
    if !passed || cli.keep_logs {
        let kept = dir.keep();
        eprintln!("coexist-lab: logs kept in {}", kept.display());
    }
    Ok(if passed { 0 } else { 1 })
}

/// `name` in the directory of `exe` (target/<profile>/ for both
/// `cargo run` and a direct call).
fn beside(exe: &Path, name: &str) -> PathBuf {
    exe.parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Replaces this process with itself under `unshare -rnm`, where it has
/// CAP_NET_ADMIN over namespaces of its own. A private /run lets `ip netns`
/// create its mount points there. Returns only on failure.
fn reexec_unshared(exe: &Path) -> anyhow::Error {
    let usable = Command::new("unshare")
        .args(["-rnm", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        return anyhow::anyhow!(
            "not root, and `unshare -rnm` is not usable (user namespaces disabled?): run as root"
        );
    }
    let err = Command::new("unshare")
        .args(["-rnm", "sh", "-c", netns::UNSHARED_RUN])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(UNSHARED_ENV, "1")
        .exec();
    anyhow::anyhow!("cannot re-execute under unshare -rnm: {err}")
}
