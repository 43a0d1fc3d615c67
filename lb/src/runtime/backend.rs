//! A backend in one config snapshot: its servers and its selector.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use smallvec::SmallVec;

use crate::balance::{Candidate, Selector, ServerKey};
use crate::config;

use super::server::ServerRuntime;

pub struct BackendRuntime {
    pub config: config::Backend,
    /// In config order; index `i` is candidate `i` of the selector.
    pub servers: Vec<Arc<ServerRuntime>>,
    selector: Mutex<Selector>,
    /// Resolved once: a registry lookup per connection costs more than the
    /// record itself.
    pub connect_duration: metrics::Histogram,
}

impl BackendRuntime {
    pub fn new(config: config::Backend, servers: Vec<Arc<ServerRuntime>>) -> Self {
        let keys: Vec<ServerKey<'_>> = config
            .servers
            .iter()
            .map(|s| ServerKey {
                id: &s.name,
                weight: s.weight,
            })
            .collect();
        let selector = Selector::new(config.balance, &keys, config.maglev_table_size);
        let connect_duration = metrics::histogram!(
            crate::metrics::CONNECT_DURATION_SECONDS,
            "backend" => config.name.clone()
        );
        Self {
            config,
            servers,
            selector: Mutex::new(selector),
            connect_duration,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Chooses a server for a new connection from `client`, skipping those
    /// in `tried` (failed earlier for this connection).
    ///
    /// Backup servers are candidates only while no primary server is up.
    pub fn pick(&self, client: IpAddr, tried: &[usize]) -> Option<usize> {
        let primary_up = self
            .servers
            .iter()
            .zip(&self.config.servers)
            .any(|(s, c)| !c.backup && s.is_up());
        let candidates: SmallVec<[Candidate; 16]> = self
            .servers
            .iter()
            .zip(&self.config.servers)
            .enumerate()
            .map(|(i, (server, config))| Candidate {
                weight: server.weight(),
                active: server.active(),
                eligible: config.backup != primary_up
                    && server.accepts_new()
                    && !tried.contains(&i),
            })
            .collect();
        self.selector
            .lock()
            .expect("selector lock")
            .pick(&candidates, client)
    }

    /// At least one server could serve (healthy, drained ones included).
    /// VRRP tracking uses this: a node whose backend is all down hands over.
    pub fn has_healthy_server(&self) -> bool {
        self.servers.iter().any(|s| s.is_healthy())
    }
}

impl std::fmt::Debug for BackendRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendRuntime")
            .field("name", &self.config.name)
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}
