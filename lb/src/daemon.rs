//! The daemon: owns the listeners, the running snapshot and the checkers,
//! and applies reloads and shutdown in the order that loses no connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics::counter;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::admin::serve::{AdminError, Endpoints};
use crate::admin::{AdminContext, VrrpBoard};
use crate::checker;
use crate::config::{self, Config, ConfigError};
use crate::forward::PipePool;
use crate::frontend::{BindError, Listeners};
use crate::ha::{Ha, HaError};
use crate::metrics as m;
use crate::proxy::DataPlane;
use crate::runtime::{NewServers, Registry, Snapshot};
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
}

impl Daemon {
    /// Loads the config at `path`, binds every listener and starts serving.
    /// `metrics` renders `/metrics` when the binary installed a recorder.
    pub async fn start(
        path: &Path,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, DaemonError> {
        let config = config::load(path)?;
        Self::start_with(path.to_owned(), config, metrics).await
    }

    async fn start_with(
        path: PathBuf,
        config: Config,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, DaemonError> {
        let listeners = Listeners::default();
        let bound = listeners.bind_new(&config)?;
        let udp = udp::Listeners::default();
        let udp_bound = udp.bind_new(&config)?;
        let registry = Arc::new(Registry::default());
        let plane = Arc::new(DataPlane {
            pipes: PipePool::new(config.tuning.pipe_size, config.tuning.pipe_pool_max),
            splice: config.tuning.splice,
            connections: tokio_util::task::TaskTracker::new(),
        });
        let (snapshot, new_servers) = Snapshot::build(config, &registry);
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let admin = AdminContext {
            snapshot: Arc::clone(&snapshot),
            metrics,
            vrrp: VrrpBoard::default(),
            udp: udp.stats(),
        };
        let endpoints = Endpoints::start(&snapshot.load().config.admin, admin.clone()).await?;
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
        };
        let snapshot = daemon.snapshot.load_full();
        let config = Arc::clone(&snapshot.config);
        daemon
            .listeners
            .apply(&config, bound, &daemon.snapshot, &daemon.plane);
        daemon.udp.apply(&snapshot, udp_bound);
        start_checkers(new_servers);
        // VRRP last: a node may become master only once it can serve.
        let ha = Ha::start(
            &config,
            daemon.admin.vrrp.clone(),
            daemon.snapshot(),
            &daemon.registry,
        )
        .await?;
        daemon.ha = Some(ha);
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
    pub fn reload(&mut self) -> Result<(), DaemonError> {
        let result = self.try_reload();
        let outcome = if result.is_ok() { "ok" } else { "error" };
        counter!(m::CONFIG_RELOADS_TOTAL, "result" => outcome).increment(1);
        match &result {
            Ok(()) => tracing::info!(config = %self.path.display(), "configuration reloaded"),
            Err(error) => tracing::error!(
                config = %self.path.display(),
                %error,
                "reload rejected, still serving the previous configuration"
            ),
        }
        result
    }

    fn try_reload(&mut self) -> Result<(), DaemonError> {
        let config = config::load(&self.path)?;
        let token = Endpoints::read_token(&config.admin)?;
        let bound = self.listeners.bind_new(&config)?;
        let udp_bound = self.udp.bind_new(&config)?;
        self.endpoints
            .reload(&self.snapshot.load().config.admin, &config.admin, token);
        let (snapshot, new_servers) = Snapshot::build(config, &self.registry);
        let snapshot = Arc::new(snapshot);
        self.snapshot.store(Arc::clone(&snapshot));
        self.listeners
            .apply(&snapshot.config, bound, &self.snapshot, &self.plane);
        self.udp.apply(&snapshot, udp_bound);
        start_checkers(new_servers);
        if let Some(ha) = &self.ha {
            ha.reload(Arc::clone(&snapshot.config));
        }
        Ok(())
    }

    /// Stops accepting, then waits up to the grace period for open
    /// connections to finish. Returns how many were still open.
    pub async fn shutdown(mut self) -> usize {
        // VRRP hands over first (priority 0, addresses removed), so the
        // peer takes new connections while this node drains its own.
        if let Some(ha) = self.ha.take() {
            ha.shutdown().await;
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
        watch: Option<ConfigWatch>,
    ) -> std::io::Result<usize> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut watch = watch;
        loop {
            let file_changed = async {
                match watch.as_mut() {
                    Some(watch) => watch.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hangup.recv() => { let _ = self.reload(); }
                _ = file_changed => {
                    tracing::info!(config = %self.path.display(), "configuration file changed");
                    let _ = self.reload();
                }
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
            }
        }
        tracing::info!("stopping: no new connections");
        Ok(self.shutdown().await)
    }
}

fn start_checkers(new_servers: NewServers) {
    for server in new_servers.0 {
        checker::spawn(server);
    }
}
