//! An immutable view of one config, ready for the connection path.
//!
//! New connections load the current snapshot once and keep it; a reload
//! publishes a new one through `arc-swap` and never mutates an old one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{self, Config};
use crate::limit::ConnectionLimit;
use crate::proxy_protocol::ProxyVersion;

use super::backend::BackendRuntime;
use super::registry::Registry;
use super::server::ServerRuntime;

#[derive(Debug)]
pub struct FrontendRuntime {
    pub config: config::Frontend,
    pub backend: Arc<BackendRuntime>,
    pub limit: Arc<ConnectionLimit>,
    pub proxy_protocol: Option<ProxyVersion>,
    pub connections_total: metrics::Counter,
    pub active_gauge: metrics::Gauge,
    pub refused_no_server: metrics::Counter,
    pub duration: metrics::Histogram,
}

#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub frontends: HashMap<String, Arc<FrontendRuntime>>,
    pub backends: Vec<Arc<BackendRuntime>>,
}

impl Snapshot {
    /// Whether frontend `name` has a usable server: the rule VRRP tracking
    /// and route announcements both follow.
    pub fn frontend_can_serve(&self, name: &str) -> bool {
        (self.frontends.get(name)).is_some_and(|f| f.backend.has_healthy_server())
    }
}

/// What building a snapshot did to the server registry, for checkers.
#[derive(Debug, Default)]
pub struct NewServers(pub Vec<Arc<ServerRuntime>>);

impl Snapshot {
    /// Builds a snapshot, reusing live state from `registry` for servers and
    /// frontends that already existed.
    pub fn build(config: Config, registry: &Registry) -> (Self, NewServers) {
        let mut created = Vec::new();
        let backends: HashMap<String, Arc<BackendRuntime>> = config
            .backends
            .iter()
            .map(|backend| {
                let servers = backend
                    .servers
                    .iter()
                    .map(|server| {
                        let (runtime, new) = registry.server(backend, server);
                        if new {
                            created.push(Arc::clone(&runtime));
                        }
                        runtime
                    })
                    .collect();
                (
                    backend.name.clone(),
                    Arc::new(BackendRuntime::new(backend.clone(), servers)),
                )
            })
            .collect();
        let frontends = config
            .frontends
            .iter()
            .map(|frontend| {
                let backend = Arc::clone(
                    backends
                        .get(&frontend.backend)
                        .expect("validation guarantees the backend exists"),
                );
                let runtime = FrontendRuntime {
                    config: frontend.clone(),
                    backend,
                    limit: registry.limit(frontend),
                    proxy_protocol: frontend.proxy_protocol,
                    connections_total: metrics::counter!(
                        crate::metrics::CONNECTIONS_TOTAL,
                        "frontend" => frontend.name.clone()
                    ),
                    active_gauge: metrics::gauge!(
                        crate::metrics::ACTIVE_CONNECTIONS,
                        "frontend" => frontend.name.clone()
                    ),
                    refused_no_server: metrics::counter!(
                        crate::metrics::CONNECTIONS_REFUSED_TOTAL,
                        "frontend" => frontend.name.clone(),
                        "reason" => "no_server"
                    ),
                    duration: metrics::histogram!(
                        crate::metrics::CONNECTION_DURATION_SECONDS,
                        "frontend" => frontend.name.clone()
                    ),
                };
                (frontend.name.clone(), Arc::new(runtime))
            })
            .collect();
        registry.set_resolver(&config.resolver);
        registry.retain_servers(&config);
        registry.retain_limits(&config);
        let backends = config
            .backends
            .iter()
            .map(|b| Arc::clone(&backends[&b.name]))
            .collect();
        (
            Self {
                config: Arc::new(config),
                frontends,
                backends,
            },
            NewServers(created),
        )
    }

    pub fn backend(&self, name: &str) -> Option<&Arc<BackendRuntime>> {
        self.backends.iter().find(|b| b.name() == name)
    }
}
