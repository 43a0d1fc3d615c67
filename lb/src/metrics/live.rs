//! Which configured objects a series may describe.
//!
//! A series belongs to the objects its labels name: `frontend`, `backend`,
//! `backend` + `server`, `vrrp_instance`, and `name` on the announce
//! metrics. When a reload removes one of them, every series naming it goes
//! (see [`super::MetricsHandle::keep_only`]); series naming none of them
//! (reloads, the process, packets of no instance) always stay.

use std::collections::{HashMap, HashSet};

use metrics::Key;

use crate::config::Config;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LiveObjects {
    frontends: HashSet<String>,
    /// Each backend's server names.
    backends: HashMap<String, HashSet<String>>,
    vrrp_instances: HashSet<String>,
    announce_groups: HashSet<String>,
}

impl LiveObjects {
    /// The objects `config` defines.
    pub fn of(config: &Config) -> Self {
        Self {
            frontends: config.frontends.iter().map(|f| f.name.clone()).collect(),
            backends: (config.backends.iter())
                .map(|b| {
                    let servers = b.servers.iter().map(|s| s.name.clone()).collect();
                    (b.name.clone(), servers)
                })
                .collect(),
            vrrp_instances: config.vrrp.iter().map(|v| v.name.clone()).collect(),
            announce_groups: config.announce.iter().map(|a| a.name.clone()).collect(),
        }
    }

    /// Whether every object `key`'s labels name exists.
    pub fn admits(&self, key: &Key) -> bool {
        let announce = matches!(
            key.name(),
            super::ANNOUNCE_UP | super::ANNOUNCE_TRANSITIONS_TOTAL
        );
        let (mut backend, mut server) = (None, None);
        for label in key.labels() {
            let value = label.value();
            let known = match label.key() {
                "frontend" => self.frontends.contains(value),
                "vrrp_instance" => self.vrrp_instances.contains(value),
                "name" if announce => self.announce_groups.contains(value),
                "backend" => {
                    backend = Some(value);
                    true
                }
                "server" => {
                    server = Some(value);
                    true
                }
                _ => true,
            };
            if !known {
                return false;
            }
        }
        match (backend, server) {
            (Some(backend), server) => self
                .backends
                .get(backend)
                .is_some_and(|servers| server.is_none_or(|s| servers.contains(s))),
            // No metric names a server without its backend.
            (None, _) => true,
        }
    }
}

/// The objects of a config with one frontend, backend and server (`web`,
/// `pool`, `s1`): the fixture the metrics tests keep series against.
#[cfg(test)]
pub(super) fn one_server() -> LiveObjects {
    let config = crate::config::parse(
        r#"
        [admin]
        listen = ""
        [[frontend]]
        name = "web"
        listen = ["127.0.0.1:8080"]
        backend = "pool"
        [[backend]]
        name = "pool"
        servers = [{ name = "s1", address = "127.0.0.1:81" }]
        "#,
        "test",
    )
    .expect("valid config");
    LiveObjects::of(&config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Label;

    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
        Key::from_parts(name, labels)
    }

    // Input: series of the configured frontend, backend and server, and of
    // ones the config lacks. Output: only the configured ones are admitted.
    #[test]
    fn admits_series_of_configured_objects_only() {
        let live = one_server();
        assert!(live.admits(&key(
            super::super::ACTIVE_CONNECTIONS,
            &[("frontend", "web")]
        )));
        assert!(!live.admits(&key(
            super::super::ACTIVE_CONNECTIONS,
            &[("frontend", "old")]
        )));
        let server = |b, s| key(super::super::SERVER_UP, &[("backend", b), ("server", s)]);
        assert!(live.admits(&server("pool", "s1")));
        assert!(!live.admits(&server("pool", "s2")));
        assert!(!live.admits(&server("gone", "s1")));
        let backend = |b| key(super::super::CONNECT_DURATION_SECONDS, &[("backend", b)]);
        assert!(live.admits(&backend("pool")));
        assert!(!live.admits(&backend("gone")));
    }

    // Input: VRRP and announce series of objects the config lacks, and
    // series naming no object. Output: the former refused, the latter kept;
    // `name` means a group on the announce metrics only.
    #[test]
    fn vrrp_instances_and_announce_groups_count_too() {
        let live = one_server();
        assert!(!live.admits(&key("vrrp_state", &[("vrrp_instance", "v1")])));
        let announce = key(
            super::super::ANNOUNCE_UP,
            &[("name", "g"), ("family", "ipv4")],
        );
        assert!(!live.admits(&announce));
        assert!(live.admits(&key("other_metric", &[("name", "g")])));
        assert!(live.admits(&key(
            super::super::CONFIG_RELOADS_TOTAL,
            &[("result", "ok")]
        )));
        assert!(live.admits(&key("vrrp_packets_discarded_total", &[("reason", "ttl")])));
    }
}
