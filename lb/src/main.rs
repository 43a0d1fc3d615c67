//! `coexist`: the daemon and its command-line tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground; SIGHUP reloads, SIGTERM drains and exits.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Also reload when the config file changes (debounced).
        #[arg(long)]
        watch: bool,
    },
    /// Validate a configuration file and exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show frontends, servers and VRRP instances of a running daemon.
    Status {
        /// Address of the daemon's admin endpoint.
        #[arg(long, default_value = DEFAULT_ADMIN)]
        admin: String,
        /// Print the raw JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a server's state (and optionally weight) at run time.
    Server {
        /// The server, as BACKEND/SERVER.
        server: String,
        #[arg(value_enum)]
        state: lb::health::AdminState,
        #[arg(long)]
        weight: Option<u32>,
        #[arg(long, default_value = DEFAULT_ADMIN)]
        admin: String,
    },
}

const DEFAULT_ADMIN: &str = "127.0.0.1:9100";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run { config, watch } => run(config, watch),
        Command::Check { config } => check(config),
        Command::Status { admin, json } => status(&admin, json),
        Command::Server {
            server,
            state,
            weight,
            admin,
        } => change_server(&admin, &server, state, weight),
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
        "{}: ok ({} frontend(s), {} backend(s), {} VRRP instance(s))",
        path.display(),
        config.frontends.len(),
        config.backends.len(),
        config.vrrp.len()
    );
    Ok(())
}

fn run(path: PathBuf, watch: bool) -> anyhow::Result<()> {
    // On one CPU (a pinned or small machine) a work-stealing scheduler only
    // adds cross-thread synchronisation to every wake-up.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let metrics = install_metrics_recorder()?;
    runtime.block_on(async {
        let daemon = lb::daemon::Daemon::start(&path, Some(metrics)).await?;
        let watch = watch
            .then(|| lb::watch::ConfigWatch::new(&path))
            .transpose()?;
        tracing::info!(
            config = %path.display(),
            cpus,
            scheduler = if cpus == 1 {
                "single-threaded"
            } else {
                "multi-threaded"
            },
            "coexist running"
        );
        // Type=notify units wait for this: listeners (and VRRP) are up.
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let left = daemon.run_until_signalled(watch).await?;
        if left > 0 {
            tracing::warn!(
                cut = left,
                "exited with connections cut at the end of the grace period"
            );
        }
        Ok(())
    })
}

fn install_metrics_recorder() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Explicit buckets: connect times are milliseconds on a LAN, connection
    // durations range from a request to a long-lived stream.
    let connect = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    let duration = [
        0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(lb::metrics::CONNECT_DURATION_SECONDS.to_owned()),
            &connect,
        )?
        .set_buckets_for_metric(
            Matcher::Full(lb::metrics::CONNECTION_DURATION_SECONDS.to_owned()),
            &duration,
        )?
        .install_recorder()
        .context("cannot install the metrics recorder")
}

fn status(admin: &str, json: bool) -> anyhow::Result<()> {
    let status = lb::admin::client::status(admin)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render_table());
    }
    Ok(())
}

fn change_server(
    admin: &str,
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
    if let Some(s) = lb::admin::client::change_server(admin, backend, name, &change)? {
        println!(
            "{backend}/{}: {} (weight {}, {} active)",
            s.name, s.state, s.weight, s.active_connections
        );
    }
    Ok(())
}
