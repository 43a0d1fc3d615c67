//! The bridge between the load balancer and the VRRP wire layer: turns
//! `[[vrrp]]` sections into running instances, keeps them in step with
//! reloads, lowers priorities while a tracked frontend has no healthy
//! server, and publishes every instance's state on the admin board.
//!
//! One manager task owns the instances; [`Ha`] is its handle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use vrrp::net::{InstanceHandle, NetError, Status, Vrrp};
use vrrp::InstanceSpec;

use crate::admin::status::VrrpStatus;
use crate::admin::VrrpBoard;
use crate::config::Config;
use crate::runtime::{Registry, Snapshot};

/// An instance that could not be started; names it.
#[derive(Debug, thiserror::Error)]
#[error("vrrp instance {instance:?}: {error}")]
pub struct HaError {
    pub instance: String,
    pub error: NetError,
}

enum Message {
    Reload(Arc<Config>, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The running VRRP side of the daemon.
pub struct Ha {
    tx: mpsc::UnboundedSender<Message>,
    task: JoinHandle<()>,
}

impl Ha {
    /// Starts every instance of `config` (each removes stale addresses and
    /// enters Backup, or Master as address owner). Fails if one cannot
    /// start; those already started are stopped again.
    pub async fn start(
        config: &Config,
        board: VrrpBoard,
        snapshot: Arc<ArcSwap<Snapshot>>,
        registry: &Registry,
    ) -> Result<Ha, HaError> {
        let mut manager = Manager {
            vrrp: None,
            instances: BTreeMap::new(),
            board,
            snapshot,
        };
        for instance in &config.vrrp {
            if let Err(e) = manager.start_instance(instance).await {
                manager.stop_all().await;
                return Err(e);
            }
        }
        manager.track();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(manager.run(rx, registry.subscribe()));
        Ok(Ha { tx, task })
    }

    /// Applies a reloaded configuration: unchanged instances are
    /// untouched, changed ones updated in place (no transition) or, when
    /// their identity changed, replaced; removed ones stop cleanly; new
    /// ones start. Failures are logged. Returns once applied.
    pub async fn reload(&self, config: Arc<Config>) {
        let (done, applied) = oneshot::channel();
        if self.tx.send(Message::Reload(config, done)).is_ok() {
            let _ = applied.await;
        }
    }

    /// Stops every instance: masters send priority 0 and remove their
    /// addresses. Returns when that is done.
    pub async fn shutdown(self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Message::Shutdown(done)).is_ok() {
            let _ = finished.await;
        }
        let _ = self.task.await;
    }
}

struct Running {
    config: InstanceSpec,
    handle: InstanceHandle,
    publisher: JoinHandle<()>,
}

struct Manager {
    /// Opened with the first instance, so a config without `[[vrrp]]`
    /// needs no netlink socket.
    vrrp: Option<Vrrp>,
    instances: BTreeMap<String, Running>,
    board: VrrpBoard,
    snapshot: Arc<ArcSwap<Snapshot>>,
}

impl Manager {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Message>,
        mut changes: watch::Receiver<u64>,
    ) {
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Reload(config, done)) => {
                        self.reload(&config).await;
                        self.track();
                        let _ = done.send(());
                    }
                    Some(Message::Shutdown(done)) => {
                        self.stop_all().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop_all().await;
                        return;
                    }
                },
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The registry is gone: nothing will change again.
                        std::future::pending::<()>().await;
                    }
                    self.track();
                }
            }
        }
    }

    async fn start_instance(&mut self, config: &InstanceSpec) -> Result<(), HaError> {
        let error = |error| HaError {
            instance: config.name.clone(),
            error,
        };
        let vrrp = match &self.vrrp {
            Some(v) => v.clone(),
            None => {
                let v = Vrrp::new().map_err(error)?;
                self.vrrp = Some(v.clone());
                v
            }
        };
        let handle = vrrp.spawn(config.clone()).await.map_err(error)?;
        let publisher = tokio::spawn(publish(
            config.clone(),
            handle.status(),
            Arc::clone(&self.board),
        ));
        self.instances.insert(
            config.name.clone(),
            Running {
                config: config.clone(),
                handle,
                publisher,
            },
        );
        Ok(())
    }

    async fn stop_instance(&mut self, name: &str) {
        if let Some(running) = self.instances.remove(name) {
            running.handle.shutdown().await;
            running.publisher.abort();
            self.board.lock().expect("vrrp board lock").remove(name);
        }
    }

    async fn stop_all(&mut self) {
        let names: Vec<String> = self.instances.keys().cloned().collect();
        // One by one, in name order: each master's release is on the wire
        // before the next starts, and the log reads in order.
        for name in names {
            self.stop_instance(&name).await;
        }
    }

    async fn reload(&mut self, config: &Config) {
        let removed: Vec<String> = self
            .instances
            .keys()
            .filter(|name| !config.vrrp.iter().any(|v| &v.name == *name))
            .cloned()
            .collect();
        for name in removed {
            tracing::info!(instance = %name, "VRRP instance removed by reload");
            self.stop_instance(&name).await;
        }
        for new in &config.vrrp {
            let Some(running) = self.instances.get_mut(&new.name) else {
                tracing::info!(instance = %new.name, "VRRP instance added by reload");
                if let Err(e) = self.start_instance(new).await {
                    tracing::error!(instance = %new.name, error = %e.error, "VRRP instance not started");
                }
                continue;
            };
            if running.config == *new {
                continue;
            }
            if running.config.same_identity(new) {
                match running.handle.update(new.clone()).await {
                    Ok(()) => {
                        running.config = new.clone();
                        // The board shows configured fields too.
                        running.publisher.abort();
                        running.publisher = tokio::spawn(publish(
                            new.clone(),
                            running.handle.status(),
                            Arc::clone(&self.board),
                        ));
                    }
                    Err(e) => tracing::error!(
                        instance = %new.name,
                        error = %e,
                        "VRRP reload not applied"
                    ),
                }
            } else {
                tracing::info!(
                    instance = %new.name,
                    "interface, vrid, version, family or virtual_mac changed: restarting the instance"
                );
                self.stop_instance(&new.name).await;
                if let Err(e) = self.start_instance(new).await {
                    tracing::error!(instance = %new.name, error = %e.error, "VRRP instance not started");
                }
            }
        }
    }

    /// A tracked object is "frontend X has a healthy server".
    fn track(&self) {
        let snapshot = self.snapshot.load();
        for running in self.instances.values() {
            // Tracked objects are named after the frontend they watch.
            for t in &running.config.config.tracks {
                let up = snapshot.frontend_can_serve(&t.name);
                running.handle.set_track(&t.name, up);
            }
        }
    }
}

/// The `/status` entry of an instance.
pub fn status_entry(spec: &InstanceSpec, status: &Status) -> VrrpStatus {
    let config = &spec.config;
    VrrpStatus {
        name: spec.name.clone(),
        interface: status.interface.clone(),
        vrid: config.vrid,
        version: config.version.number(),
        state: status.state.as_str().to_owned(),
        priority: config.priority,
        effective_priority: status.effective_priority,
        master: status.master.map(|m| m.to_string()),
        addresses: config.addresses.iter().map(ToString::to_string).collect(),
        last_transition: status
            .last_transition
            .as_ref()
            .and_then(|t| t.at.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64()),
        last_transition_reason: status.last_transition.as_ref().map(|t| t.reason.clone()),
        accept_mode: config.accept_mode,
        waiting: status.waiting.clone(),
    }
}

async fn publish(config: InstanceSpec, mut status: watch::Receiver<Status>, board: VrrpBoard) {
    loop {
        let entry = status_entry(&config, &status.borrow_and_update());
        board
            .lock()
            .expect("vrrp board lock")
            .insert(config.name.clone(), entry);
        if status.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn parse(text: &str) -> Config {
        config::parse(text, "t.toml").expect("valid config")
    }

    #[test]
    fn status_entry_shows_configured_and_effective_priority() {
        let c = parse("[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 9\npriority = 150\naddresses = [\"192.0.2.10/24\"]\n");
        let status = Status {
            state: vrrp::State::Master,
            priority: 150,
            effective_priority: 90,
            master: Some("192.0.2.2".parse().unwrap()),
            primary_address: "192.0.2.2".parse().unwrap(),
            interface: "eth0".into(),
            last_transition: Some(vrrp::net::LastTransition {
                at: UNIX_EPOCH + std::time::Duration::from_secs(100),
                reason: "startup".into(),
            }),
            waiting: None,
        };
        let e = status_entry(&c.vrrp[0], &status);
        assert_eq!(
            (e.state.as_str(), e.priority, e.effective_priority),
            ("master", 150, 90)
        );
        assert_eq!(e.master.as_deref(), Some("192.0.2.2"));
        assert_eq!(e.addresses, vec!["192.0.2.10/24".to_owned()]);
        assert_eq!(e.last_transition, Some(100.0));
        assert_eq!(e.vrid, 9);
    }
}
