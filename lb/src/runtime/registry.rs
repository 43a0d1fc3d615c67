//! State that outlives config snapshots, keyed by identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use tokio::sync::watch;

use crate::config::{self, ServerKey};
use crate::limit::ConnectionLimit;

use super::server::ServerRuntime;

#[derive(Debug)]
pub struct Registry {
    servers: Mutex<HashMap<(String, ServerKey), Arc<ServerRuntime>>>,
    limits: Mutex<HashMap<String, Arc<ConnectionLimit>>>,
    /// Bumped on every server state change; VRRP tracking and `/status`
    /// watchers wait on it instead of polling.
    changes: watch::Sender<u64>,
    /// `[resolver]` as last loaded; the tasks resolving server names read it.
    resolver: Arc<ArcSwap<config::Resolver>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            servers: Mutex::default(),
            limits: Mutex::default(),
            changes: watch::Sender::new(0),
            resolver: Arc::new(ArcSwap::from_pointee(config::Resolver::default())),
        }
    }
}

impl Registry {
    /// The server's live state, created on first sight and reconfigured
    /// after. The second value is true when it was created now.
    pub fn server(
        &self,
        backend: &config::Backend,
        server: &config::Server,
    ) -> (Arc<ServerRuntime>, bool) {
        let mut servers = self.servers.lock().expect("registry lock");
        let key = (backend.name.clone(), server.address.key());
        if let Some(existing) = servers.get(&key) {
            existing.reconfigure(backend, server);
            return (Arc::clone(existing), false);
        }
        let created = ServerRuntime::new(backend, server, self.changes.clone());
        servers.insert(key, Arc::clone(&created));
        (created, true)
    }

    /// Forgets servers that are not in `config`, stopping their checks.
    /// Connections still open to them hold their own reference.
    pub fn retain_servers(&self, config: &config::Config) {
        let keep: std::collections::HashSet<(&str, ServerKey)> = config
            .backends
            .iter()
            .flat_map(|b| {
                b.servers
                    .iter()
                    .map(move |s| (b.name.as_str(), s.address.key()))
            })
            .collect();
        let mut servers = self.servers.lock().expect("registry lock");
        servers.retain(|(backend, key), server| {
            let kept = keep.contains(&(backend.as_str(), key.clone()));
            if !kept {
                server.retire();
            }
            kept
        });
    }

    /// Takes a new `[resolver]`; resolver tasks rebuild their client at
    /// their next lookup when it changed.
    pub fn set_resolver(&self, resolver: &config::Resolver) {
        if **self.resolver.load() != *resolver {
            self.resolver.store(Arc::new(resolver.clone()));
        }
    }

    pub fn resolver(&self) -> Arc<ArcSwap<config::Resolver>> {
        Arc::clone(&self.resolver)
    }

    pub fn limit(&self, frontend: &config::Frontend) -> Arc<ConnectionLimit> {
        let mut limits = self.limits.lock().expect("registry lock");
        let limit = limits
            .entry(frontend.name.clone())
            .or_insert_with(|| ConnectionLimit::new(frontend.max_connections));
        limit.set_limit(frontend.max_connections);
        Arc::clone(limit)
    }

    pub fn retain_limits(&self, config: &config::Config) {
        let mut limits = self.limits.lock().expect("registry lock");
        limits.retain(|name, _| config.frontend(name).is_some());
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
