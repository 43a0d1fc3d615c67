//! The daemon: owns the listeners, the running snapshot and the checkers,
//! and applies reloads and shutdown in the order that loses no connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics::counter;

use crate::admin::serve::{AdminError, Endpoints};
use crate::admin::{AdminContext, FilterBoard, VrrpBoard};
use crate::announce::{AnnounceError, Announcer};
use crate::checker;
use crate::config::{self, Config, ConfigError};
use crate::filter::{AcceptFilter, Ruleset};
use crate::forward::PipePool;
use crate::frontend::{BindError, Listeners};
use crate::ha::{Ha, HaError};
use crate::metrics as m;
use crate::proxy::DataPlane;
use crate::resolve;
use crate::runtime::{NewServers, Registry, Snapshot};
use crate::shards::Shards;
use crate::udp;
use crate::watch::ConfigWatch;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Vrrp(#[from] HaError),
    #[error(transparent)]
    UdpBind(#[from] udp::BindError),
    #[error(transparent)]
    Announce(#[from] AnnounceError),
}

/// A running load balancer.
pub struct Daemon {
    path: PathBuf,
    snapshot: Arc<ArcSwap<Snapshot>>,
    registry: Arc<Registry>,
    listeners: Listeners,
    udp: udp::Listeners,
    plane: Arc<DataPlane>,
    admin: AdminContext,
    /// The admin listeners; dropping them removes the control socket.
    endpoints: Endpoints,
    /// VRRP instances; `None` only once shut down.
    ha: Option<Ha>,
    /// `[[announce]]` groups; `None` without `[bgp]` or once shut down.
    announcer: Option<Announcer>,
    /// The packet filter of `accept_mode`; `None` only once shut down.
    filter: Option<AcceptFilter>,
}

impl Daemon {
    /// Loads the config at `path`, binds every listener and starts serving.
    /// `metrics` renders `/metrics` when the binary installed a recorder.
    pub async fn start(
        path: &Path,
        metrics: Option<m::MetricsHandle>,
    ) -> Result<Self, DaemonError> {
        if let Err(error) = crate::sys::disable_transparent_huge_pages() {
            tracing::warn!(%error, "cannot turn transparent huge pages off; a growing heap may stall the data path");
        }
        let config = config::load(path)?;
        warn_if_idle(&config);
        Self::start_with(path.to_owned(), config, metrics).await
    }

    async fn start_with(
        path: PathBuf,
        config: Config,
        metrics: Option<m::MetricsHandle>,
    ) -> Result<Self, DaemonError> {
        // Before anything is bound: the shards' runtimes and the listeners'
        // descriptor for each of them count in the connection ceiling.
        let shards = Shards::configured(config.tuning.threads).unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot start a runtime per core; serving TCP on the daemon's");
            Shards::default()
        });
        let listeners = Listeners::new(shards);
        let bound = listeners.bind_new(&config)?;
        let udp = udp::Listeners::default();
        let udp_bound = udp.bind_new(&config)?;
        let registry = Arc::new(Registry::default());
        let tuning = config.tuning.clone();
        if let Some(metrics) = &metrics {
            metrics.keep_only(m::LiveObjects::of(&config));
        }
        let (snapshot, new_servers) = Snapshot::build(config, &registry);
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let admin = AdminContext {
            snapshot: Arc::clone(&snapshot),
            metrics,
            vrrp: VrrpBoard::default(),
            filter: FilterBoard::default(),
            udp: udp.stats(),
            announce: Default::default(),
        };
        let endpoints = Endpoints::start(&snapshot.load().config.admin, admin.clone()).await?;
        // The listeners and admin endpoints are open: the connection
        // ceiling is what the descriptor limit leaves beside them. Derived
        // (and logged) only once nothing is left that could fail to bind.
        let process = crate::pressure::process();
        // Pipes hold descriptors too: the ceiling set aside one per four
        // connections (HAProxy's maxpipes default), lent or idle.
        let max_pipes = crate::pressure::pipes_for(process.max_connections());
        let idle_pipes = tuning.pipe_pool_max.min(max_pipes);
        let plane = Arc::new(DataPlane {
            pipes: PipePool::new(tuning.pipe_size, idle_pipes).with_max_pipes(max_pipes),
            splice: tuning.splice,
            connections: tokio_util::task::TaskTracker::new(),
        });
        let mut daemon = Self {
            path,
            snapshot,
            registry,
            listeners,
            udp,
            plane,
            admin,
            endpoints,
            ha: None,
            announcer: None,
            filter: None,
        };
        let snapshot = daemon.snapshot.load_full();
        let config = Arc::clone(&snapshot.config);
        daemon
            .listeners
            .apply(&config, bound, &daemon.snapshot, &daemon.plane);
        daemon.udp.apply(&snapshot, udp_bound);
        start_checkers(new_servers, &daemon.registry);
        // Before VRRP: a master never holds an address unfiltered. This
        // also replaces or removes a table a dead run left.
        let filter =
            AcceptFilter::start(Ruleset::for_config(&config), daemon.admin.filter.clone()).await;
        // VRRP last: a node may become master only once it can serve.
        let ha = Ha::start(
            &config,
            daemon.admin.vrrp.clone(),
            daemon.snapshot(),
            &daemon.registry,
        )
        .await;
        match ha {
            Ok(ha) => daemon.ha = Some(ha),
            Err(e) => {
                filter.shutdown().await;
                return Err(e.into());
            }
        }
        daemon.filter = Some(filter);
        // Routes last too: the router sends flows once this node serves.
        daemon.announcer = Announcer::start(
            &config,
            daemon.admin.announce.clone(),
            daemon.snapshot(),
            &daemon.registry,
        )?;
        if let Some(announcer) = &daemon.announcer {
            announcer.set_listening(true);
        }
        Ok(daemon)
    }

    pub fn snapshot(&self) -> Arc<ArcSwap<Snapshot>> {
        Arc::clone(&self.snapshot)
    }

    pub fn admin(&self) -> &AdminContext {
        &self.admin
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    pub fn config_path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the config file and applies it, or changes nothing.
    ///
    /// Order matters: validate everything, bind new listeners, and only
    /// then touch live state, so any failure leaves the old config serving.
    pub async fn reload(&mut self) -> Result<(), DaemonError> {
        let result = self.try_reload().await;
        match &result {
            Ok(()) => tracing::info!(config = %self.path.display(), "configuration reloaded"),
            Err(error) => tracing::error!(
                config = %self.path.display(),
                %error,
                "reload rejected, still serving the previous configuration"
            ),
        }
        // Counted after the line is written (stderr, unbuffered): whoever
        // sees the count go up finds the reason in the log. Counted first,
        // a test read the count and then a log without the line.
        let outcome = if result.is_ok() { "ok" } else { "error" };
        counter!(m::CONFIG_RELOADS_TOTAL, "result" => outcome).increment(1);
        result
    }

    async fn try_reload(&mut self) -> Result<(), DaemonError> {
        let config = config::load(&self.path)?;
        warn_if_idle(&config);
        for key in self.snapshot.load().config.changed_until_restart(&config) {
            tracing::warn!(
                key,
                "changed; the running value stays until the next restart"
            );
        }
        let token = Endpoints::read_token(&config.admin)?;
        let bound = self.listeners.bind_new(&config)?;
        let udp_bound = self.udp.bind_new(&config)?;
        self.endpoints.set_token(token);
        // Nothing fails from here on. The series of removed servers,
        // frontends, backends, VRRP instances and announce groups go now,
        // and any they would register while they wind down is not listed.
        if let Some(metrics) = &self.admin.metrics {
            metrics.keep_only(m::LiveObjects::of(&config));
        }
        let (snapshot, new_servers) = Snapshot::build(config, &self.registry);
        let snapshot = Arc::new(snapshot);
        let old = self.snapshot.swap(Arc::clone(&snapshot));
        let (old, new) = (&old.config, &snapshot.config);
        self.listeners
            .apply(new, bound, &self.snapshot, &self.plane);
        self.udp.apply(&snapshot, udp_bound);
        start_checkers(new_servers, &self.registry);
        // The filter covers the old and the new addresses while the VRRP
        // instances move from one to the other, then the new ones only.
        if let Some(filter) = &self.filter {
            filter.apply(Ruleset::for_reload(old, new)).await;
        }
        if let Some(ha) = &self.ha {
            ha.reload(Arc::clone(new)).await;
        }
        if let Some(filter) = &self.filter {
            filter.apply(Ruleset::for_config(new)).await;
        }
        if let Some(announcer) = &self.announcer {
            announcer.reload(Arc::clone(&snapshot.config));
        }
        Ok(())
    }

    /// Threads serving TCP clients, one per core; 0 when the daemon's own
    /// runtime does (one core).
    pub fn shards(&self) -> usize {
        self.listeners.shards()
    }

    /// Stops accepting, then waits up to the grace period for open
    /// connections to finish. Returns how many were still open.
    pub async fn shutdown(mut self) -> usize {
        // The routers move new flows to the other nodes first, while this
        // one still serves what they send until they converge.
        if let Some(announcer) = self.announcer.take() {
            announcer.shutdown().await;
        }
        // VRRP hands over first (priority 0, addresses removed), so the
        // peer takes new connections while this node drains its own.
        if let Some(ha) = self.ha.take() {
            ha.shutdown().await;
        }
        // The addresses are gone: the table may go too.
        if let Some(filter) = self.filter.take() {
            filter.shutdown().await;
        }
        let grace = self.snapshot.load().config.tuning.shutdown_grace;
        self.listeners.stop_all().await;
        // UDP listeners stop reading; their open sessions may finish.
        let udp_sessions = self.udp.stop_all();
        let tracker = &self.plane.connections;
        tracker.close();
        let open = tracker.len();
        if open > 0 {
            tracing::info!(
                open,
                grace = %humantime::format_duration(grace),
                "draining open connections"
            );
        }
        let all_done = async {
            tracker.wait().await;
            udp_sessions.wait().await;
        };
        match tokio::time::timeout(grace, all_done).await {
            Ok(()) => 0,
            Err(_) => {
                let left = tracker.len();
                tracing::warn!(
                    open = left,
                    "grace period over; closing the open connections"
                );
                left
            }
        }
    }

    /// Runs until SIGTERM or SIGINT, reloading on SIGHUP and, with
    /// `watch`, whenever the config file changes.
    pub async fn run_until_signalled(
        mut self,
        signals: Signals,
        watch: Option<ConfigWatch>,
    ) -> std::io::Result<usize> {
        let Signals {
            mut hangup,
            mut terminate,
            mut interrupt,
        } = signals;
        let mut watch = watch;
        // Reloads run on this task's thread, which allocated what the
        // replaced config used; the tasks of removed servers free their
        // part on other threads as they wind down. Released once at the
        // reload and once more after that.
        let release = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(release);
        let mut release_pending = false;
        loop {
            let file_changed = async {
                match watch.as_mut() {
                    Some(watch) => watch.changed().await,
                    None => std::future::pending().await,
                }
            };
            let reloaded = tokio::select! {
                _ = hangup.recv() => self.reload().await.is_ok(),
                _ = file_changed => {
                    tracing::info!(config = %self.path.display(), "configuration file changed");
                    self.reload().await.is_ok()
                }
                () = &mut release, if release_pending => {
                    release_pending = false;
                    crate::sys::release_freed_memory();
                    false
                }
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
            };
            if reloaded {
                crate::sys::release_freed_memory();
                release
                    .as_mut()
                    .reset(tokio::time::Instant::now() + RELEASE_AFTER_RELOAD);
                release_pending = true;
            }
        }
        tracing::info!("stopping: no new connections");
        Ok(self.shutdown().await)
    }
}

/// The signals the daemon answers, caught from [`Signals::install`] on.
/// Installed before the daemon says it is ready: a SIGTERM sent the moment
/// it is must drain, not kill it by the default action.
pub struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Catches SIGHUP, SIGTERM and SIGINT; needs a running tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}
/// Time for the connections and tasks of removed servers to let go of
/// them, after a reload.
const RELEASE_AFTER_RELOAD: std::time::Duration = std::time::Duration::from_secs(2);

/// A config with nothing to run is valid (a reload can add frontends), but
/// an operator who meant otherwise must hear of it.
fn warn_if_idle(config: &Config) {
    if config.has_nothing_to_run() {
        tracing::warn!("no frontend and no VRRP instance: serving only the admin endpoint");
    }
}

/// Starts the checks of new servers and, for those given by name, the
/// task keeping their addresses fresh.
fn start_checkers(new_servers: NewServers, registry: &Registry) {
    for server in new_servers.0 {
        if let Some(named) = server.named() {
            resolve::spawn(Arc::clone(&server), Arc::clone(named), registry.resolver());
        }
        checker::spawn(server);
    }
}
