//! The bridge between the load balancer and the VRRP wire layer: turns
//! `[[vrrp]]` sections into running instances, keeps them in step with
//! reloads, lowers priorities while a tracked frontend has no healthy
//! server, and publishes every instance's state on the admin board.
//!
//! One manager task owns the instances; [`Ha`] is its handle.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use vrrp::net::{Garp, InstanceHandle, InstanceSpec, NetError, Status, Vrrp, Wire};

use crate::admin::status::VrrpStatus;
use crate::admin::VrrpBoard;
use crate::config::{ChecksumMode, Config, IpFamily, VrrpInstance};
use crate::runtime::{Registry, Snapshot};

/// An instance that could not be started; names it.
#[derive(Debug, thiserror::Error)]
#[error("vrrp instance {instance:?}: {source}")]
pub struct HaError {
    pub instance: String,
    #[source]
    pub source: NetError,
}

enum Message {
    Reload(Arc<Config>),
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

    /// Applies a reloaded configuration in the background: unchanged
    /// instances are untouched, changed ones updated in place (no
    /// transition) or, when their identity changed, replaced; removed
    /// ones stop cleanly; new ones start. Failures are logged.
    pub fn reload(&self, config: Arc<Config>) {
        let _ = self.tx.send(Message::Reload(config));
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
    config: VrrpInstance,
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
                    Some(Message::Reload(config)) => {
                        self.reload(&config).await;
                        self.track();
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

    async fn start_instance(&mut self, config: &VrrpInstance) -> Result<(), HaError> {
        let error = |source| HaError {
            instance: config.name.clone(),
            source,
        };
        let vrrp = match &self.vrrp {
            Some(v) => v.clone(),
            None => {
                let v = Vrrp::new().map_err(error)?;
                self.vrrp = Some(v.clone());
                v
            }
        };
        let handle = vrrp.spawn(spec(config)).await.map_err(error)?;
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
            tracing::info!(instance = name, "VRRP instance removed by reload");
            self.stop_instance(&name).await;
        }
        for new in &config.vrrp {
            let Some(running) = self.instances.get_mut(&new.name) else {
                tracing::info!(instance = new.name, "VRRP instance added by reload");
                if let Err(e) = self.start_instance(new).await {
                    tracing::error!("{e}");
                }
                continue;
            };
            if running.config == *new {
                continue;
            }
            if same_identity(&running.config, new) {
                match running.handle.update(spec(new)).await {
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
                    Err(e) => tracing::error!(instance = new.name, "reload not applied: {e}"),
                }
            } else {
                tracing::info!(
                    instance = new.name,
                    "interface, vrid, version, family or virtual_mac changed: restarting the instance"
                );
                self.stop_instance(&new.name).await;
                if let Err(e) = self.start_instance(new).await {
                    tracing::error!("{e}");
                }
            }
        }
    }

    /// A tracked object is "frontend X has a healthy server".
    fn track(&self) {
        let snapshot = self.snapshot.load();
        for running in self.instances.values() {
            for t in &running.config.track {
                let up = snapshot
                    .frontends
                    .get(&t.frontend)
                    .is_some_and(|f| f.backend.has_healthy_server());
                running.handle.set_track(&t.frontend, up);
            }
        }
    }
}

/// Whether two versions of an instance can be one running instance.
fn same_identity(a: &VrrpInstance, b: &VrrpInstance) -> bool {
    (&a.interface, a.vrid, a.version, a.family, a.virtual_mac)
        == (&b.interface, b.vrid, b.version, b.family, b.virtual_mac)
}

/// The wire layer's view of a `[[vrrp]]` section.
pub fn spec(v: &VrrpInstance) -> InstanceSpec {
    let placeholder: IpAddr = match v.family {
        IpFamily::V4 => Ipv4Addr::UNSPECIFIED.into(),
        IpFamily::V6 => Ipv6Addr::UNSPECIFIED.into(),
    };
    let config = vrrp::Config {
        vrid: v.vrid,
        version: if v.version == 2 {
            vrrp::Version::V2
        } else {
            vrrp::Version::V3
        },
        priority: v.priority,
        advert_interval: v.advert_interval,
        preempt: v.preempt,
        preempt_delay: v.preempt_delay,
        accept_mode: v.accept_mode,
        primary_address: placeholder,
        addresses: v
            .addresses
            .iter()
            .map(|&(addr, prefix_len)| vrrp::VirtualAddress::new(addr, prefix_len))
            .collect(),
        checksum_mode: match v.checksum_mode {
            ChecksumMode::PseudoHeader => vrrp::ChecksumMode::PseudoHeader,
            ChecksumMode::MessageOnly => vrrp::ChecksumMode::MessageOnly,
        },
        tracks: v
            .track
            .iter()
            .map(|t| vrrp::Track {
                name: t.frontend.clone(),
                weight: t.weight,
            })
            .collect(),
    };
    InstanceSpec {
        name: v.name.clone(),
        config,
        wire: Wire {
            interface: v.interface.clone(),
            unicast_peers: v.unicast_peers.clone(),
            virtual_mac: v.virtual_mac,
            notify: v.notify.clone(),
            garp: Garp {
                count: v.garp_count,
                interval: v.garp_interval,
                refresh: v.garp_refresh,
            },
        },
    }
}

/// The `/status` entry of an instance.
pub fn status_entry(config: &VrrpInstance, status: &Status) -> VrrpStatus {
    VrrpStatus {
        name: config.name.clone(),
        interface: status.interface.clone(),
        vrid: config.vrid,
        version: config.version,
        state: status.state.as_str().to_owned(),
        priority: config.priority,
        effective_priority: status.effective_priority,
        master: status.master.map(|m| m.to_string()),
        addresses: config
            .addresses
            .iter()
            .map(|(a, p)| format!("{a}/{p}"))
            .collect(),
        last_transition: status
            .last_transition
            .as_ref()
            .and_then(|t| t.at.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64()),
        last_transition_reason: status.last_transition.as_ref().map(|t| t.reason.clone()),
    }
}

async fn publish(config: VrrpInstance, mut status: watch::Receiver<Status>, board: VrrpBoard) {
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

    // Input: a VRRP-only config with every key. Output: the wire layer's
    // spec carries each value across, with the family as placeholder.
    #[test]
    fn spec_carries_every_setting() {
        let c = parse(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth1\"\nvrid = 7\npriority = 200\nadvert_interval = \"50ms\"\n\
             preempt = false\npreempt_delay = \"2s\"\naccept_mode = true\naddresses = [\"192.0.2.10/24\"]\n\
             unicast_peers = [\"192.0.2.3\"]\nvirtual_mac = true\nnotify = \"/bin/true\"\nchecksum = \"message-only\"\n\
             garp_count = 3\ngarp_interval = \"20ms\"\ngarp_refresh = \"30s\"\n",
        );
        let s = spec(&c.vrrp[0]);
        assert_eq!(s.name, "v");
        assert_eq!(s.config.vrid, 7);
        assert_eq!(s.config.priority, 200);
        assert_eq!(
            s.config.advert_interval,
            std::time::Duration::from_millis(50)
        );
        assert!(!s.config.preempt && s.config.accept_mode);
        assert_eq!(s.config.preempt_delay, std::time::Duration::from_secs(2));
        assert_eq!(
            s.config.primary_address,
            IpAddr::from(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(s.config.checksum_mode, vrrp::ChecksumMode::MessageOnly);
        assert_eq!(
            s.config.addresses,
            vec![vrrp::VirtualAddress::new("192.0.2.10".parse().unwrap(), 24)]
        );
        assert_eq!(s.wire.interface, "eth1");
        assert_eq!(
            s.wire.unicast_peers,
            vec!["192.0.2.3".parse::<IpAddr>().unwrap()]
        );
        assert!(s.wire.virtual_mac);
        assert_eq!(s.wire.notify.as_deref(), Some("/bin/true"));
        assert_eq!(s.wire.garp.count, 3);
        assert_eq!(
            s.wire.garp.refresh,
            Some(std::time::Duration::from_secs(30))
        );
        assert!(s.config.validate().is_ok());
    }

    #[test]
    fn spec_of_v2_and_ipv6_instances() {
        let c = parse(
            "[[vrrp]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nversion = 2\naddresses = [\"192.0.2.10/24\"]\n\
             [[vrrp]]\nname = \"b\"\ninterface = \"eth0\"\nvrid = 1\naddresses = [\"2001:db8::10/64\"]\n",
        );
        assert_eq!(spec(&c.vrrp[0]).config.version, vrrp::Version::V2);
        let b = spec(&c.vrrp[1]);
        assert_eq!(b.config.family(), vrrp::Family::V6);
        assert!(b.config.validate().is_ok());
    }

    // Reload rule: a priority change is an update, a VRID change a new
    // instance.
    #[test]
    fn identity_is_interface_vrid_version_family_and_virtual_mac() {
        let c = parse("[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\naddresses = [\"192.0.2.10/24\"]\n");
        let a = c.vrrp[0].clone();
        let mut b = a.clone();
        b.priority = 200;
        b.addresses.push(("192.0.2.11".parse().unwrap(), 24));
        assert!(same_identity(&a, &b));
        b.vrid = 2;
        assert!(!same_identity(&a, &b));
        let mut m = a.clone();
        m.virtual_mac = true;
        assert!(!same_identity(&a, &m));
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
