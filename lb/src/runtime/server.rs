//! A server's live state: health, counters and connection accounting.
//!
//! A `ServerRuntime` is keyed by (backend name, address) and outlives config
//! snapshots: a reload that keeps the server keeps this object, so its
//! health and counters survive, and connections still open to a server that
//! left the pool keep updating the object they started with.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use metrics::{counter, gauge, Counter, Gauge};
use tokio::sync::{watch, Notify};

use crate::config::{self, HealthCheck, ServerAddress};
use crate::health::{
    AdminState, Observation, Policy, ServerHealth, ServerState, SharedHealth, Transition,
};
use crate::metrics as m;
use crate::resolve::NamedTarget;

/// How long a server taken down by failed connects waits before it is
/// offered traffic again when its backend has no active checks.
pub const PASSIVE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Metric handles resolved once, not per connection.
#[derive(Debug)]
pub struct ServerMetrics {
    pub bytes_to_server: Counter,
    pub bytes_to_client: Counter,
    pub connections: Counter,
    pub connect_errors: Counter,
    pub active: Gauge,
    pub up: Gauge,
    pub checks_ok: Counter,
    pub checks_failed: Counter,
}

impl ServerMetrics {
    fn new(backend: &str, server: &str) -> Self {
        let labels = [
            ("backend", backend.to_owned()),
            ("server", server.to_owned()),
        ];
        let with_direction = |direction: &'static str| {
            let mut l = labels.to_vec();
            l.push(("direction", direction.to_owned()));
            counter!(m::BYTES_TOTAL, &l)
        };
        let with_result = |result: &'static str| {
            let mut l = labels.to_vec();
            l.push(("result", result.to_owned()));
            counter!(m::HEALTH_CHECKS_TOTAL, &l)
        };
        Self {
            bytes_to_server: with_direction("to_server"),
            bytes_to_client: with_direction("to_client"),
            connections: counter!(m::SERVER_CONNECTIONS_TOTAL, &labels),
            connect_errors: counter!(m::CONNECT_ERRORS_TOTAL, &labels),
            active: gauge!(m::SERVER_ACTIVE_CONNECTIONS, &labels),
            up: gauge!(m::SERVER_UP, &labels),
            checks_ok: with_result("ok"),
            checks_failed: with_result("failed"),
        }
    }
}

#[derive(Debug)]
pub struct ServerRuntime {
    pub backend: String,
    /// As written; the same for the server's whole life (it is its identity).
    pub address: ServerAddress,
    /// `Some` for a server given by address: connects go straight there.
    fixed: Option<SocketAddr>,
    /// `Some` for a server given by name.
    named: Option<Arc<NamedTarget>>,
    name: ArcSwap<String>,
    metrics: ArcSwap<ServerMetrics>,
    /// Health, readable per connection without a lock.
    health: SharedHealth,
    active: AtomicUsize,
    total: AtomicU64,
    max_connections: AtomicUsize,
    check: ArcSwapOption<HealthCheck>,
    /// Set when a reload removed the server; its checker stops.
    retired: AtomicBool,
    pub retired_signal: Notify,
    changes: watch::Sender<u64>,
    /// The last state change, for operators asking "since when, and why".
    last_transition: Mutex<Option<RecordedTransition>>,
}

/// A [`Transition`] with the wall-clock time it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTransition {
    pub transition: Transition,
    pub at: SystemTime,
}

/// Counts a connection to the server for as long as it lives.
#[derive(Debug)]
pub struct ActiveConnection {
    server: Arc<ServerRuntime>,
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.server.active.fetch_sub(1, Ordering::AcqRel);
        self.server.metrics.load().active.decrement(1.0);
    }
}

pub(crate) fn policy_for(backend: &config::Backend) -> Policy {
    Policy {
        rise: backend.rise,
        fall: backend.fall,
        active_checks: backend.health_check.is_some(),
        start_up: backend
            .health_check
            .as_ref()
            .is_some_and(|c| c.initial_state == config::InitialState::Up),
        passive_retry: PASSIVE_RETRY,
    }
}

impl ServerRuntime {
    pub(crate) fn new(
        backend: &config::Backend,
        server: &config::Server,
        changes: watch::Sender<u64>,
    ) -> Arc<Self> {
        let health = ServerHealth::new(policy_for(backend), server.weight);
        let this = Arc::new(Self {
            backend: backend.name.clone(),
            address: server.address.clone(),
            fixed: server.address.socket(),
            named: server
                .address
                .name()
                .map(|named| Arc::new(NamedTarget::new(backend, server, named))),
            name: ArcSwap::from_pointee(server.name.clone()),
            metrics: ArcSwap::from_pointee(ServerMetrics::new(&backend.name, &server.name)),
            health: SharedHealth::new(health),
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            max_connections: AtomicUsize::new(server.max_connections.unwrap_or(usize::MAX)),
            check: ArcSwapOption::from_pointee(backend.health_check.clone()),
            retired: AtomicBool::new(false),
            retired_signal: Notify::new(),
            changes,
            last_transition: Mutex::new(None),
        });
        this.publish_state();
        this
    }

    /// Applies a new config to a server that stays; health evidence survives.
    pub(crate) fn reconfigure(&self, backend: &config::Backend, server: &config::Server) {
        if **self.name.load() != server.name {
            self.name.store(Arc::new(server.name.clone()));
            self.metrics
                .store(Arc::new(ServerMetrics::new(&backend.name, &server.name)));
        }
        self.max_connections.store(
            server.max_connections.unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
        self.check.store(backend.health_check.clone().map(Arc::new));
        if let (Some(target), Some(named)) = (&self.named, server.address.name()) {
            target.reconfigure(backend, server, named);
        }
        self.retired.store(false, Ordering::Release);
        let transition = self
            .health
            .update(|h| h.reconfigure(policy_for(backend), server.weight));
        self.report(transition);
    }

    /// The address of a server given by address; connects to it need no
    /// resolver work.
    pub fn fixed_address(&self) -> Option<SocketAddr> {
        self.fixed
    }

    /// The name and resolved addresses of a server given by name.
    pub fn named(&self) -> Option<&Arc<NamedTarget>> {
        self.named.as_ref()
    }

    /// Where checks (and UDP sessions) go: the fixed address, or the one
    /// a connect to the name would try first; `None` before the name
    /// resolved.
    pub fn current_address(&self) -> Option<SocketAddr> {
        self.fixed
            .or_else(|| self.named.as_ref().and_then(|n| n.first_address()))
    }

    /// Connects to a server given by name (Happy Eyeballs). Boxed: the
    /// fixed-address path, which most connections take, keeps its small
    /// future.
    pub fn connect_by_name(
        &self,
        timeout: std::time::Duration,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<tokio::net::TcpStream>> + Send + '_>,
    > {
        Box::pin(async move {
            match &self.named {
                Some(named) => crate::resolve::connect(named, timeout).await,
                None => Err(std::io::ErrorKind::AddrNotAvailable.into()),
            }
        })
    }

    pub fn name(&self) -> Arc<String> {
        self.name.load_full()
    }

    pub fn metrics(&self) -> arc_swap::Guard<Arc<ServerMetrics>> {
        self.metrics.load()
    }

    pub fn state(&self) -> ServerState {
        self.health.read(ServerHealth::state)
    }

    pub fn last_transition(&self) -> Option<RecordedTransition> {
        self.last_transition
            .lock()
            .expect("last transition lock")
            .clone()
    }

    pub fn last_check(&self) -> Option<String> {
        self.health.read(|h| h.last_result().map(str::to_owned))
    }

    /// Maintenance suspends checks; drain does not (HAProxy does the same).
    pub fn admin_allows_checks(&self) -> bool {
        self.health.read(ServerHealth::wants_checks)
    }

    pub fn admin(&self) -> AdminState {
        self.health.read(ServerHealth::admin)
    }

    pub fn accepts_new(&self) -> bool {
        self.health.accepts_new()
            && self.active.load(Ordering::Relaxed) < self.max_connections.load(Ordering::Relaxed)
    }

    /// Up for backup selection and VRRP tracking (drained servers count).
    pub fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }

    /// In rotation (state up), regardless of the connection cap.
    pub fn is_up(&self) -> bool {
        self.health.accepts_new()
    }

    pub fn weight(&self) -> u32 {
        self.health.weight()
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn check(&self) -> Option<Arc<HealthCheck>> {
        self.check.load_full()
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.retired_signal.notify_waiters();
    }

    pub fn begin_connection(self: &Arc<Self>) -> ActiveConnection {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.total.fetch_add(1, Ordering::Relaxed);
        let metrics = self.metrics.load();
        metrics.active.increment(1.0);
        metrics.connections.increment(1);
        ActiveConnection {
            server: Arc::clone(self),
        }
    }

    pub fn observe(&self, observation: Observation) {
        if observation == Observation::ConnectSucceeded && !self.health.failing() {
            // The common case on the connection path: nothing to record.
            return;
        }
        let metrics = self.metrics.load();
        match &observation {
            Observation::CheckPassed => metrics.checks_ok.increment(1),
            Observation::CheckFailed(_) => metrics.checks_failed.increment(1),
            Observation::ConnectFailed(_) => metrics.connect_errors.increment(1),
            Observation::ConnectSucceeded => {}
        }
        let transition = self
            .health
            .update(|h| h.observe(observation, Instant::now()));
        self.report(transition);
    }

    /// Re-admits a passively downed server when its retry time has come.
    pub fn poll(&self) {
        let transition = self.health.update(|h| h.poll(Instant::now()));
        self.report(transition);
    }

    pub fn set_admin(&self, admin: AdminState) {
        let transition = self.health.update(|h| h.set_admin(admin));
        self.report(transition);
    }

    pub fn set_weight(&self, weight: u32) {
        let transition = self
            .health
            .update(|h| h.set_weight(weight, "set by operator"));
        self.report(transition);
    }

    fn publish_state(&self) {
        let up = if self.is_up() { 1.0 } else { 0.0 };
        self.metrics.load().up.set(up);
    }

    fn report(&self, transition: Option<Transition>) {
        let Some(t) = transition else { return };
        self.publish_state();
        let name = self.name();
        tracing::info!(
            backend = %self.backend,
            server = %name,
            from = %t.from,
            to = %t.to,
            reason = %t.reason,
            "server state changed"
        );
        counter!(
            m::SERVER_TRANSITIONS_TOTAL,
            "backend" => self.backend.clone(),
            "server" => name.to_string(),
            "state" => t.to.as_str()
        )
        .increment(1);
        *self.last_transition.lock().expect("last transition lock") = Some(RecordedTransition {
            transition: t,
            at: SystemTime::now(),
        });
        self.changes.send_modify(|generation| *generation += 1);
    }
}

impl crate::resolve::NameOwner for ServerRuntime {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn server_name(&self) -> String {
        self.name().to_string()
    }

    fn is_retired(&self) -> bool {
        ServerRuntime::is_retired(self)
    }

    fn retired(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        self.retired_signal.notified()
    }
}
