//! UDP frontends: a client (address, port) gets a session bound to one
//! server, datagrams go both ways unchanged and across address families,
//! and replies leave from the address the client sent to.
//!
//! [`session`] is the sans-IO table; [`Listeners`] owns the listening
//! sockets, diffed on reload like the TCP ones, so sessions survive it.

mod grace;
mod listener;
pub mod session;
mod socket;
mod sockets;
mod stats;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::runtime::Snapshot;
use listener::{ListenerSocket, Serving};
pub use stats::{FrontendStats, StatsBoard};

/// A leaf, like the TCP listener's: the io error is part of the message
/// and not also a `source()`, which a chain would print a second time
/// ("… Address already in use (os error 98): Address already in use (os
/// error 98)", seen in a test log).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} (udp) for frontend {frontend}: {error}")]
pub struct BindError {
    pub address: SocketAddr,
    pub frontend: String,
    pub error: io::Error,
}

/// A UDP socket bound ahead of a config switch, not yet served.
#[derive(Debug)]
pub struct Bound {
    address: SocketAddr,
    socket: tokio::io::unix::AsyncFd<std::net::UdpSocket>,
}

#[derive(Debug)]
struct Running {
    serving: watch::Sender<Serving>,
    stop: watch::Sender<bool>,
}

/// Every UDP listening socket of the daemon.
#[derive(Debug, Default)]
pub struct Listeners {
    running: HashMap<SocketAddr, Running>,
    stats: StatsBoard,
    /// Listener tasks, including those serving out their sessions after
    /// their address was removed.
    tasks: TaskTracker,
}

impl Listeners {
    pub fn stats(&self) -> StatsBoard {
        self.stats.clone()
    }

    /// Binds the UDP addresses `config` lists that are not served yet; on
    /// error the sockets bound here close again and nothing changed.
    pub fn bind_new(&self, config: &Config) -> Result<Vec<Bound>, BindError> {
        let mut bound = Vec::new();
        for frontend in config.frontends.iter().filter(|f| f.udp().is_some()) {
            for &address in &frontend.listen {
                if self.running.contains_key(&address) {
                    continue;
                }
                let socket = socket::bind_listener(address).map_err(|error| BindError {
                    address,
                    frontend: frontend.name.clone(),
                    error,
                })?;
                bound.push(Bound { address, socket });
            }
        }
        Ok(bound)
    }

    /// Points kept listeners at the new snapshot (their sessions stay),
    /// starts the newly bound ones and stops those the config dropped.
    pub fn apply(&mut self, snapshot: &Snapshot, bound: Vec<Bound>) {
        let mut wanted: HashMap<SocketAddr, Serving> = HashMap::new();
        for frontend in &snapshot.config.frontends {
            let (Some(settings), Some(runtime)) =
                (frontend.udp(), snapshot.frontends.get(&frontend.name))
            else {
                continue;
            };
            let serving = Serving {
                runtime: Arc::clone(runtime),
                settings: settings.clone(),
                stats: self.stats.frontend(&frontend.name),
            };
            for &address in &frontend.listen {
                wanted.insert(address, serving.clone());
            }
        }
        self.running
            .retain(|address, running| match wanted.get(address) {
                Some(serving) => {
                    running.serving.send_replace(serving.clone());
                    true
                }
                None => {
                    tracing::info!(%address, "udp listener removed; its sessions end as they go idle");
                    let _ = running.stop.send(true);
                    false
                }
            });
        for Bound { address, socket } in bound {
            let Some(serving) = wanted.remove(&address) else {
                continue;
            };
            tracing::info!(%address, frontend = %serving.runtime.config.name, "listening (udp)");
            let (serving_tx, serving_rx) = watch::channel(serving);
            let (stop_tx, stop_rx) = watch::channel(false);
            self.tasks.spawn(listener::run(
                ListenerSocket { socket, address },
                serving_rx,
                stop_rx,
            ));
            self.running.insert(
                address,
                Running {
                    serving: serving_tx,
                    stop: stop_tx,
                },
            );
        }
        self.stats.retain(|name| {
            snapshot
                .config
                .frontend(name)
                .is_some_and(|f| f.udp().is_some())
        });
    }

    /// Stops reading from clients; open sessions go on until they end,
    /// which the returned tracker waits for.
    pub fn stop_all(&mut self) -> TaskTracker {
        for (_, running) in self.running.drain() {
            let _ = running.stop.send(true);
        }
        self.tasks.close();
        self.tasks.clone()
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.running.keys().copied().collect()
    }
}

#[cfg(test)]
mod bind_error_tests {
    /// DESIGN.md, Errors: a cause is said once, even through the daemon's
    /// error and the chain `coexist` prints.
    #[test]
    fn a_taken_address_says_its_cause_once() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let config = crate::config::parse(
            &format!(
                "[[frontend]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = [\"{address}\"]\n\
                 backend = \"b\"\n[[backend]]\nname = \"b\"\nservers = [{{ address = \"127.0.0.1:53\" }}]\n"
            ),
            "test",
        )
        .unwrap();
        let error = super::Listeners::default().bind_new(&config).unwrap_err();
        let shown = format!(
            "{:#}",
            anyhow::Error::new(crate::daemon::DaemonError::from(error))
        );
        assert_eq!(
            shown.matches("Address already in use").count(),
            1,
            "{shown}"
        );
        assert!(shown.contains(&address.to_string()), "{shown}");
    }
}
