//! State that outlives config snapshots, keyed by identity.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config;
use crate::limit::ConnectionLimit;

use super::server::ServerRuntime;

#[derive(Debug)]
pub struct Registry {
    servers: Mutex<HashMap<(String, SocketAddr), Arc<ServerRuntime>>>,
    limits: Mutex<HashMap<String, Arc<ConnectionLimit>>>,
    /// Bumped on every server state change; VRRP tracking and `/status`
    /// watchers wait on it instead of polling.
    changes: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            servers: Mutex::default(),
            limits: Mutex::default(),
            changes: watch::Sender::new(0),
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
        let key = (backend.name.clone(), server.address);
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
        let keep: std::collections::HashSet<(&str, SocketAddr)> = config
            .backends
            .iter()
            .flat_map(|b| b.servers.iter().map(move |s| (b.name.as_str(), s.address)))
            .collect();
        let mut servers = self.servers.lock().expect("registry lock");
        servers.retain(|(backend, address), server| {
            let kept = keep.contains(&(backend.as_str(), *address));
            if !kept {
                server.retire();
            }
            kept
        });
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
