//! `coexist`: the daemon and its command-line tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use lb::admin::client::Endpoint;
use lb::locations::DEFAULT_CONFIG;

#[derive(Debug, Parser)]
#[command(
    name = "coexist",
    version,
    about = "Dual-stack layer-4 load balancer with built-in VRRP"
)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Where a command that changes something sends it.
#[derive(Debug, clap::Args)]
struct WriteTo {
    /// The daemon's control socket [default: the one
    /// /etc/coexist/coexist.toml configures, else /run/coexist/control.sock].
    #[arg(long, value_name = "PATH", conflicts_with = "admin")]
    socket: Option<PathBuf>,
    /// Send it over TCP to this admin endpoint instead (with --token-file).
    #[arg(long, value_name = "ADDRESS")]
    admin: Option<String>,
    /// The file holding the admin endpoint's bearer token (admin.token_file).
    #[arg(long, value_name = "FILE", requires = "admin")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground; SIGHUP reloads, SIGTERM drains and exits.
    Run {
        /// The configuration file [default: /etc/coexist/coexist.toml].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also reload when the config file changes (debounced).
        #[arg(long)]
        watch: bool,
    },
    /// Validate a configuration file and exit.
    Check {
        /// The configuration file [default: /etc/coexist/coexist.toml].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the BIRD 2 snippet that declares the `[[announce]]` groups'
    /// static protocols; include it in bird.conf.
    BirdConfig {
        /// The configuration file [default: /etc/coexist/coexist.toml].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show frontends, servers and VRRP instances of a running daemon.
    Status {
        /// Address of the daemon's admin endpoint [default: the one
        /// /etc/coexist/coexist.toml configures, else 127.0.0.1:9100].
        #[arg(long)]
        admin: Option<String>,
        /// Print the raw JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a server's state (and optionally weight) at run time,
    /// through the daemon's control socket.
    Server {
        /// The server, as BACKEND/SERVER.
        server: String,
        #[arg(value_enum)]
        state: lb::health::AdminState,
        #[arg(long)]
        weight: Option<u32>,
        #[command(flatten)]
        to: WriteTo,
    },
    /// Withdraw or announce again an `[[announce]]` group on this node
    /// (a manual drain for maintenance; health still decides when announced).
    Announce {
        /// The group's name.
        name: String,
        #[arg(value_enum)]
        action: lb::announce::AdminAction,
        #[command(flatten)]
        to: WriteTo,
    },
    /// Print a coexist.toml equivalent to HAProxy and keepalived
    /// configurations; what cannot be carried over is listed, with file
    /// and line, in the output and on stderr.
    Import {
        /// An HAProxy configuration (repeatable).
        #[arg(long, value_name = "FILE")]
        haproxy: Vec<PathBuf>,
        /// A keepalived configuration (repeatable, e.g. for included files).
        #[arg(long, value_name = "FILE")]
        keepalived: Vec<PathBuf>,
    },
    /// Write the man pages and shell completions a package installs.
    #[command(hide = true)]
    PackageAssets { dir: PathBuf },
}

/// Every connection allocates a task and two socket registrations, aligned
/// to cache lines; glibc's aligned allocation path cost more instructions
/// than the rest of the connection's user-space work together.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run { config, watch } => run(config_file(config), watch),
        Command::Check { config } => check(config_file(config)),
        Command::BirdConfig { config } => bird_config(config_file(config)),
        Command::Status { admin, json } => admin_endpoint(admin).and_then(|a| status(a, json)),
        Command::Server {
            server,
            state,
            weight,
            to,
        } => write_endpoint(to).and_then(|e| change_server(&e, &server, state, weight)),
        Command::Announce { name, action, to } => {
            write_endpoint(to).and_then(|e| change_announce(&e, &name, action))
        }
        Command::Import {
            haproxy,
            keepalived,
        } => import(&haproxy, &keepalived),
        Command::PackageAssets { dir } => lb::package::write_assets(Cli::command(), &dir)
            .map(|_| ())
            .with_context(|| format!("cannot write to {}", dir.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Every error names its object and says its cause once in its
            // own message (see lb::config::ConfigError): the chain, joined,
            // is one line.
            eprintln!("coexist: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--config`, or the conventional file, said on stderr.
fn config_file(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        eprintln!("coexist: no --config: using {DEFAULT_CONFIG}");
        PathBuf::from(DEFAULT_CONFIG)
    })
}

/// `--admin`, or the endpoint the conventional config file sets up.
fn admin_endpoint(given: Option<String>) -> anyhow::Result<String> {
    if let Some(a) = given {
        return Ok(a);
    }
    let path = std::path::Path::new(DEFAULT_CONFIG);
    let found =
        lb::locations::admin_endpoint(path, std::fs::read(path)).map_err(anyhow::Error::msg)?;
    if let Some(remark) = found.remark {
        eprintln!("coexist: {remark}");
    }
    Ok(found.address)
}

/// `--socket`, `--admin` with its token, or the control socket the
/// conventional config file sets up.
fn write_endpoint(to: WriteTo) -> anyhow::Result<Endpoint> {
    if let Some(address) = to.admin {
        let token = match to.token_file {
            Some(file) => Some(lb::admin::access::Token::read(&file)?.text().with_context(
                || {
                    format!(
                        "the token in {} is not printable ASCII: it cannot go in an HTTP header",
                        file.display()
                    )
                },
            )?),
            None => None,
        };
        return Ok(Endpoint::Tcp { address, token });
    }
    if let Some(socket) = to.socket {
        return Ok(Endpoint::Socket(socket));
    }
    let path = std::path::Path::new(DEFAULT_CONFIG);
    let found =
        lb::locations::control_socket(path, std::fs::read(path)).map_err(anyhow::Error::msg)?;
    if let Some(remark) = found.remark {
        eprintln!("coexist: {remark}");
    }
    Ok(Endpoint::Socket(found.address))
}

fn import(haproxy: &[PathBuf], keepalived: &[PathBuf]) -> anyhow::Result<()> {
    use lb::import::{Dialect, Source};
    anyhow::ensure!(
        !haproxy.is_empty() || !keepalived.is_empty(),
        "nothing to import: give --haproxy FILE and/or --keepalived FILE"
    );
    let mut sources = Vec::new();
    for (dialect, paths) in [
        (Dialect::Haproxy, haproxy),
        (Dialect::Keepalived, keepalived),
    ] {
        for path in paths {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let origin = path.display().to_string();
            sources.push(Source {
                dialect,
                origin,
                text,
            });
        }
    }
    let imported = lb::import::import(&sources);
    for note in &imported.notes {
        eprintln!("coexist: {note}");
    }
    for source in &sources {
        eprintln!("coexist: {}", imported.summary(&source.origin));
    }
    print!("{}", imported.toml);
    if !imported.runnable {
        eprintln!("coexist: warning: {NOTHING_CARRIED}");
    }
    lb::config::parse(&imported.toml, "the imported configuration")
        .context("the import is not a valid coexist configuration (a bug in the import: please report it with its input)")?;
    Ok(())
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("COEXIST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn check(path: PathBuf) -> anyhow::Result<()> {
    let config = lb::config::load(&path)?;
    println!(
        "{}: ok ({} frontend(s), {} backend(s), {} VRRP instance(s){})",
        path.display(),
        config.frontends.len(),
        config.backends.len(),
        config.vrrp.len(),
        if config.announce.is_empty() {
            String::new()
        } else {
            format!(", {} announce group(s)", config.announce.len())
        }
    );
    // Not a config error: the file is right, this machine lacks a tool.
    // ExecStartPre runs check, so the journal shows it before the start.
    let refusing: Vec<&str> = (config.vrrp.iter())
        .filter(|v| !v.config.master_accepts_virtual_traffic())
        .map(|v| v.name.as_str())
        .collect();
    if !refusing.is_empty() && lb::filter::nft::locate().is_none() {
        eprintln!(
            "coexist: warning: VRRP instance(s) {} have accept_mode = false, which coexist enforces with nftables, \
             but nft (Debian package nftables) is not installed: `coexist run` would accept all traffic \
             to their virtual addresses while master",
            refusing.join(", ")
        );
    }
    // Not an error either: `coexist run` waits for a missing interface
    // (one a later unit or hotplug creates).
    for v in &config.vrrp {
        let interface = &v.wire.interface;
        if nix::net::if_::if_nametoindex(interface.as_str()).is_err() {
            eprintln!(
                "coexist: warning: VRRP instance {}: interface {interface} does not exist (yet): \
                 `coexist run` would wait for it",
                v.name
            );
        }
    }
    if config.has_nothing_to_run() {
        eprintln!(
            "coexist: warning: {}: no [[frontend]] and no [[vrrp]]: the daemon would serve only its admin endpoint",
            path.display()
        );
    }
    Ok(())
}

/// Why an import that carried nothing runnable still writes a config.
const NOTHING_CARRIED: &str = "no frontend and no VRRP instance could be carried over (each directive is listed above): the configuration serves only the admin endpoint";

fn bird_config(path: PathBuf) -> anyhow::Result<()> {
    let config = lb::config::load(&path)?;
    let snippet = lb::announce::bird_config::render(&config, &path.display().to_string())
        .with_context(|| {
            format!(
                "{}: no [bgp] and no [[announce]]: nothing to announce",
                path.display()
            )
        })?;
    print!("{snippet}");
    Ok(())
}

fn run(path: PathBuf, watch: bool) -> anyhow::Result<()> {
    // On one CPU (a pinned or small machine) a work-stealing scheduler only
    // adds cross-thread synchronisation to every wake-up.
    let cpus = lb::shards::usable_cpus();
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Histograms fold each sample into fixed buckets as it is recorded:
    // nothing piles up when nobody scrapes /metrics.
    let metrics = lb::metrics::MetricsHandle::install()
        .map_err(|_| anyhow::anyhow!("cannot install the metrics recorder: one is installed"))?;
    runtime.block_on(async {
        let signals = lb::daemon::Signals::install().context("cannot catch signals")?;
        let daemon = lb::daemon::Daemon::start(&path, Some(metrics)).await?;
        let watch = watch
            .then(|| lb::watch::ConfigWatch::new(&path))
            .transpose()?;
        tracing::info!(
            config = %path.display(),
            cpus,
            shards = daemon.shards(),
            scheduler = if cpus == 1 {
                "single-threaded"
            } else {
                "multi-threaded"
            },
            "coexist running"
        );
        // Type=notify units wait for this: listeners (and VRRP) are up.
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let left = daemon.run_until_signalled(signals, watch).await?;
        if left > 0 {
            tracing::warn!(
                cut = left,
                "exited with connections cut at the end of the grace period"
            );
        }
        Ok(())
    })
}

fn status(address: String, json: bool) -> anyhow::Result<()> {
    let endpoint = Endpoint::Tcp {
        address,
        token: None,
    };
    let status = lb::admin::client::status(&endpoint)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render_table());
    }
    Ok(())
}

fn change_server(
    endpoint: &Endpoint,
    server: &str,
    state: lb::health::AdminState,
    weight: Option<u32>,
) -> anyhow::Result<()> {
    let (backend, name) = server
        .split_once('/')
        .with_context(|| format!("expected BACKEND/SERVER, got {server:?}"))?;
    let change = lb::admin::ServerChange {
        state: Some(state),
        weight,
    };
    if let Some(s) = lb::admin::client::change_server(endpoint, backend, name, &change)? {
        println!(
            "{backend}/{}: {} (weight {}, {} active)",
            s.name, s.state, s.weight, s.active_connections
        );
    }
    Ok(())
}

fn change_announce(
    endpoint: &Endpoint,
    name: &str,
    action: lb::announce::AdminAction,
) -> anyhow::Result<()> {
    let change = lb::admin::AnnounceChange { action };
    for group in lb::admin::client::change_announce(endpoint, name, &change)? {
        println!(
            "{}/{}: {} ({})",
            group.name, group.family, group.state, group.reason
        );
    }
    Ok(())
}
