//! The IO shell around the sans-IO core: raw sockets, netlink, gratuitous
//! announcements and the notify command, one tokio task per instance.
//!
//! ```no_run
//! # async fn example(spec: vrrp::net::InstanceSpec) -> Result<(), vrrp::net::NetError> {
//! let vrrp = vrrp::net::Vrrp::new()?;           // spawns the netlink owner task
//! let handle = vrrp.spawn(spec).await?;          // removes stale addresses, enters backup
//! let mut status = handle.status();              // watch every change
//! status.changed().await.ok();
//! handle.set_track("web", false);                // lowers the priority by the track's weight
//! handle.shutdown().await;                       // a master sends priority 0 and removes its addresses
//! # Ok(()) }
//! ```
//!
//! Needs CAP_NET_RAW and CAP_NET_ADMIN in the network namespace.

mod announce;
mod link;
mod netlink;
mod notify;
mod observe;
mod runner;
mod socket;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use announce::{garp_frame, na_message};
pub use netlink::{InterfaceAddress, LinkInfo, Netlink, NetlinkError};
pub use observe::{
    ADVERTS_RECEIVED_TOTAL, ADVERTS_SENT_TOTAL, ADVERTS_SUPPRESSED_TOTAL, PACKETS_DISCARDED_TOTAL,
    STATE, TRANSITIONS_TOTAL,
};

use crate::config::{Config, ConfigError};
pub use crate::config::{Garp, InstanceSpec, Wire};
use crate::instance::{Instance, State};
use crate::packet::Family;
use link::Links;
use runner::{Attached, Command, Runner, Target};

/// The last state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastTransition {
    /// When it happened.
    pub at: SystemTime,
    /// Why, as [`crate::TransitionReason`] displays it.
    pub reason: String,
}

/// An instance as it runs, published on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Protocol state.
    pub state: State,
    /// Configured priority.
    pub priority: u8,
    /// Priority less the weights of failed tracked objects.
    pub effective_priority: u8,
    /// The master's primary address, when known.
    pub master: Option<IpAddr>,
    /// The source of our adverts.
    pub primary_address: IpAddr,
    /// The interface carrying the virtual addresses (a macvlan with
    /// `virtual_mac`).
    pub interface: String,
    /// The last state change, if any.
    pub last_transition: Option<LastTransition>,
    /// Why the instance is in Initialize though started: its interface
    /// is missing, down, or lacks the address adverts come from.
    pub waiting: Option<String>,
}

/// Why an instance could not be started or updated.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Reading the interface or changing addresses failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The instance breaks a rule of [`crate::config`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The advertisement socket could not be opened.
    #[error("cannot open the VRRP socket on {interface}: {error}")]
    Socket {
        /// The interface it was for.
        interface: String,
        /// Why.
        error: std::io::Error,
    },
    /// The interface lacks the address adverts must come from.
    #[error("interface {interface} has no {what} to send adverts from")]
    NoPrimaryAddress {
        /// The interface.
        interface: String,
        /// Which kind of address is missing.
        what: &'static str,
    },
    /// Another instance of this process runs the same virtual router.
    #[error("vrid {vrid} on {interface} is already run by another instance")]
    VridInUse {
        /// The interface.
        interface: String,
        /// The VRID.
        vrid: u8,
    },
    /// The instance's task is gone.
    #[error("the instance task has stopped")]
    Stopped,
}

/// Runs instances; cheap to clone.
#[derive(Clone)]
pub struct Vrrp {
    netlink: Netlink,
    links: Arc<Links>,
}

impl Vrrp {
    /// Opens netlink and spawns its owner task on the current runtime.
    pub fn new() -> Result<Vrrp, NetError> {
        Ok(Vrrp {
            netlink: Netlink::start()?,
            links: Arc::default(),
        })
    }

    /// The netlink owner, for callers that want to read interfaces.
    pub fn netlink(&self) -> &Netlink {
        &self.netlink
    }

    /// Resolves the interface, removes virtual addresses a dead run left
    /// behind, and starts the instance (Initialize → Backup, or Master for
    /// an address owner). Every log line of the instance, from here on and
    /// from its tasks, is in a `vrrp` span with its name as `instance`.
    pub async fn spawn(&self, spec: InstanceSpec) -> Result<InstanceHandle, NetError> {
        let span = tracing::info_span!("vrrp", instance = %spec.name);
        self.start(spec).instrument(span).await
    }

    async fn start(&self, spec: InstanceSpec) -> Result<InstanceHandle, NetError> {
        if let Some(e) = spec.problems().into_iter().next() {
            return Err(e.into());
        }
        let InstanceSpec {
            name,
            mut config,
            wire,
        } = spec;
        let family = config.family();
        // Subscribed before the interface is read, so that no change
        // between the read and the runner's start goes unseen.
        let changes = self.netlink.changes();
        // A missing interface is no error: the instance waits for it
        // (the runner reads it again on every change).
        let info = match self.netlink.link(&wire.interface).await {
            Ok(info) => Some(info),
            Err(NetlinkError::NoSuchLink(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(Ok(primary)) = info
            .as_ref()
            .map(|info| primary_address(info, family, &config, &wire))
        {
            config.primary_address = primary;
        }
        let vr = Instance::new(config)?;
        // An interface that exists is attached now, so that a VRID in use
        // or a socket that cannot open fails the start as before.
        let attached = match &info {
            Some(info) => Some(self.attach(&name, &wire, &vr, info).await?),
            None => None,
        };
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let interface = attached
            .as_ref()
            .map_or_else(|| wire.interface.clone(), |a| a.target.name.clone());
        let (status_tx, status) = watch::channel(Status {
            state: State::Initialize,
            priority: vr.config().priority,
            effective_priority: vr.effective_priority(),
            master: None,
            primary_address: vr.config().primary_address,
            interface,
            last_transition: None,
            waiting: None,
        });
        let runner = Runner::new(
            name.clone(),
            vr,
            wire,
            attached,
            changes,
            commands,
            self.clone(),
            status_tx,
        );
        let task = tokio::spawn(runner.run().instrument(tracing::Span::current()));
        Ok(InstanceHandle {
            name,
            commands: commands_tx,
            status,
            task,
        })
    }

    /// Everything an instance needs on an interface that exists: its
    /// macvlan with `virtual_mac`, no stale virtual addresses, the shared
    /// advertisement socket and its VRID's queue on it.
    async fn attach(
        &self,
        name: &str,
        wire: &Wire,
        vr: &Instance,
        info: &LinkInfo,
    ) -> Result<Attached, NetError> {
        let family = vr.config().family();
        let vrid = vr.config().vrid;
        let socket_error = |interface: &str| {
            let interface = interface.to_owned();
            move |error| NetError::Socket { interface, error }
        };
        // The VRID first: another instance of it on this interface and
        // family would share the macvlan's name, which is made afresh below.
        let link = self
            .links
            .get_or_open(&wire.interface, info.index, family)
            .map_err(socket_error(&wire.interface))?;
        let inbound = link
            .register(vrid, name)
            .ok_or_else(|| NetError::VridInUse {
                interface: wire.interface.clone(),
                vrid,
            })?;
        match self.prepare(wire, vr, info).await {
            Ok((target, sender)) => Ok(Attached {
                parent: info.index,
                link,
                inbound,
                target,
                sender,
                macvlan_up: false,
            }),
            Err(e) => {
                link.unregister(vrid);
                Err(e)
            }
        }
    }

    /// The device the addresses go on (a fresh macvlan with
    /// `virtual_mac`), and the socket adverts leave from if not the
    /// shared one; stale virtual addresses removed.
    async fn prepare(
        &self,
        wire: &Wire,
        vr: &Instance,
        info: &LinkInfo,
    ) -> Result<(Target, Option<socket::AdvertSocket>), NetError> {
        let family = vr.config().family();
        let vrid = vr.config().vrid;
        let socket_error = |interface: &str| {
            let interface = interface.to_owned();
            move |error| NetError::Socket { interface, error }
        };
        let (target, sender) = if wire.virtual_mac {
            let mac = virtual_mac(family, vrid);
            let vname = macvlan_name(family, info.index, vrid);
            // Set before the device is up so its link-local, and our
            // announcements from it, need not wait for DAD.
            let vinfo = self.netlink.macvlan(info.index, &vname, mac).await?;
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{vname}/accept_dad"), "0");
            // Every device sharing the segment through the parent (the
            // parent and each macvlan, of either family) would otherwise
            // answer ARP for any local IPv4 address with its own MAC, or
            // send ARP requests naming it: tie IPv4 addresses to the MAC
            // of the device that carries them, as keepalived does.
            let devices = if family == Family::V4 {
                vec![wire.interface.as_str(), vname.as_str()]
            } else {
                vec![vname.as_str()]
            };
            for dev in devices {
                for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
                    if let Err(e) =
                        std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/{key}"), value)
                    {
                        tracing::warn!(
                            device = dev,
                            sysctl = key,
                            error = %e,
                            "cannot tie IPv4 addresses to their device's MAC"
                        );
                    }
                }
            }
            let sender = socket::AdvertSocket::open_sender(&vname, vinfo.index, family)
                .map_err(socket_error(&vname))?;
            let target = Target {
                name: vname,
                index: vinfo.index,
                mac,
                macvlan: true,
            };
            (target, Some(sender))
        } else {
            let target = Target {
                name: wire.interface.clone(),
                index: info.index,
                mac: info.mac,
                macvlan: false,
            };
            (target, None)
        };
        // A run that died (SIGKILL, crash) left its addresses: never enter
        // Backup while still holding them.
        self.netlink
            .remove(target.index, vr.config().addresses.clone())
            .await?;
        Ok((target, sender))
    }
}

/// A running instance. Dropping it stops the instance as
/// [`InstanceHandle::shutdown`] does, without waiting.
pub struct InstanceHandle {
    name: String,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
    task: JoinHandle<()>,
}

impl InstanceHandle {
    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its status, updated on every change.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Marks a tracked object up or down (idempotent).
    pub fn set_track(&self, name: &str, up: bool) {
        let _ = self.commands.send(Command::SetTrack(name.to_owned(), up));
    }

    /// Applies a reloaded configuration without a transition. The
    /// interface, VRID, version, family and `virtual_mac` must be the same
    /// (else shut this instance down and spawn a new one).
    pub async fn update(&self, spec: InstanceSpec) -> Result<(), NetError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Update(Box::new(spec), reply))
            .map_err(|_| NetError::Stopped)?;
        answer.await.map_err(|_| NetError::Stopped)?
    }

    /// Stops: a master sends priority 0 and removes its addresses.
    /// Returns once that is done.
    pub async fn shutdown(self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = finished.await;
        }
        let _ = self.task.await;
    }
}

/// 00-00-5E-00-01-{VRID} (IPv4) or 00-00-5E-00-02-{VRID} (IPv6), RFC 9568 §7.3.
pub fn virtual_mac(family: Family, vrid: u8) -> [u8; 6] {
    let kind = match family {
        Family::V4 => 1,
        Family::V6 => 2,
    };
    [0x00, 0x00, 0x5e, 0x00, kind, vrid]
}

/// A name unique per parent, family and VRID within IFNAMSIZ.
fn macvlan_name(family: Family, parent: u32, vrid: u8) -> String {
    let f = match family {
        Family::V4 => 4,
        Family::V6 => 6,
    };
    format!("cx{f}.{parent}.{vrid}")
}

/// The source of our adverts (RFC 9568 §5.1.1.1, §5.1.2.1).
fn primary_address(
    info: &LinkInfo,
    family: Family,
    config: &Config,
    wire: &Wire,
) -> Result<IpAddr, NetError> {
    let vips: Vec<IpAddr> = config.addresses.iter().map(|va| va.addr).collect();
    let own = || (info.addresses.iter()).filter(|a| !a.tentative && !vips.contains(&a.addr));
    let missing = |what| NetError::NoPrimaryAddress {
        interface: wire.interface.clone(),
        what,
    };
    match family {
        Family::V4 => own()
            .filter(|a| a.addr.is_ipv4())
            .min_by_key(|a| a.secondary)
            .map(|a| a.addr)
            .ok_or_else(|| missing("IPv4 address")),
        Family::V6 => {
            let link_local = |a: &&InterfaceAddress| matches!(a.addr, IpAddr::V6(v6) if v6.is_unicast_link_local());
            let global_peers = !wire.unicast_peers.is_empty()
                && wire
                    .unicast_peers
                    .iter()
                    .all(|p| matches!(p, IpAddr::V6(v6) if !v6.is_unicast_link_local()));
            if global_peers {
                own()
                    .filter(|a| a.addr.is_ipv6() && !link_local(a))
                    .map(|a| a.addr)
                    .next()
                    .ok_or_else(|| missing("global IPv6 address (for global unicast peers)"))
            } else {
                own()
                    .find(link_local)
                    .map(|a| a.addr)
                    .ok_or_else(|| missing("IPv6 link-local address"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VirtualAddress;

    fn info(addrs: &[(&str, bool)]) -> LinkInfo {
        LinkInfo {
            index: 2,
            mac: [2, 0, 0, 0, 0, 1],
            addresses: addrs
                .iter()
                .map(|(a, secondary)| InterfaceAddress {
                    addr: a.parse().unwrap(),
                    prefix_len: 24,
                    secondary: *secondary,
                    tentative: false,
                })
                .collect(),
            up: true,
        }
    }

    fn config(vip: &str) -> Config {
        let vip: IpAddr = vip.parse().unwrap();
        let unspecified: IpAddr = if vip.is_ipv4() {
            "0.0.0.0".parse().unwrap()
        } else {
            "::".parse().unwrap()
        };
        Config::new(7, unspecified, vec![VirtualAddress::new(vip, 24)])
    }

    // RFC 9568 §5.1.1.1: IPv4 adverts come from the interface's primary
    // address, never from a virtual address left on it.
    #[test]
    fn ipv4_source_is_the_primary_not_a_vip_or_secondary() {
        let i = info(&[
            ("192.0.2.10", false),
            ("192.0.2.3", true),
            ("192.0.2.2", false),
            ("fe80::1", false),
        ]);
        let wire = Wire::default();
        let got = primary_address(&i, Family::V4, &config("192.0.2.10"), &wire).unwrap();
        assert_eq!(got, "192.0.2.2".parse::<IpAddr>().unwrap());
    }

    // RFC 9568 §5.1.2.1: IPv6 adverts come from the link-local address.
    #[test]
    fn ipv6_source_is_the_link_local() {
        let i = info(&[("2001:db8::2", false), ("fe80::2", false)]);
        let got =
            primary_address(&i, Family::V6, &config("2001:db8::10"), &Wire::default()).unwrap();
        assert_eq!(got, "fe80::2".parse::<IpAddr>().unwrap());
        let wire = Wire {
            unicast_peers: vec!["2001:db8::3".parse().unwrap()],
            ..Wire::default()
        };
        let got = primary_address(&i, Family::V6, &config("2001:db8::10"), &wire).unwrap();
        assert_eq!(got, "2001:db8::2".parse::<IpAddr>().unwrap());
    }

    // RFC 9568 §5.1.2.1 with RFC 4862 §5.4: a link-local still in
    // duplicate address detection cannot be a source; until it passes the
    // instance has none and waits.
    #[test]
    fn tentative_link_local_is_not_a_source() {
        let mut i = info(&[("fe80::2", false)]);
        i.addresses[0].tentative = true;
        let vip = config("2001:db8::10");
        assert!(primary_address(&i, Family::V6, &vip, &Wire::default()).is_err());
        i.addresses[0].tentative = false;
        let got = primary_address(&i, Family::V6, &vip, &Wire::default()).unwrap();
        assert_eq!(got, "fe80::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn no_usable_address_is_an_error_naming_the_interface() {
        let i = info(&[("192.0.2.10", false)]);
        let wire = Wire {
            interface: "eth9".into(),
            ..Wire::default()
        };
        let e = primary_address(&i, Family::V4, &config("192.0.2.10"), &wire).unwrap_err();
        assert!(e.to_string().contains("eth9"), "{e}");
    }

    // RFC 9568 §7.3.
    #[test]
    fn virtual_router_mac_by_family() {
        assert_eq!(virtual_mac(Family::V4, 51), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(virtual_mac(Family::V6, 255), [0, 0, 0x5e, 0, 2, 255]);
        assert!(macvlan_name(Family::V6, 65535, 255).len() <= 15);
    }
}
