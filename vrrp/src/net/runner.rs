//! The task of one virtual router: feeds the sans-IO [`Instance`] with
//! adverts, timers and commands, and carries out its actions.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

use super::link::{Inbound, Link};
use super::netlink::{LinkInfo, NetlinkError};
use super::notify::{self, Notifier};
use super::socket::AdvertSocket;
use super::{
    announce, observe, primary_address, InstanceSpec, LastTransition, NetError, Status, Vrrp, Wire,
};
use crate::instance::{Action, Instance, State, TransitionReason};

pub(crate) enum Command {
    SetTrack(String, bool),
    Update(Box<InstanceSpec>, oneshot::Sender<Result<(), NetError>>),
    Shutdown(oneshot::Sender<()>),
}

/// Where the virtual addresses live: the interface itself or its macvlan.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// Set when `name` is a macvlan this instance created and owns.
    pub macvlan: bool,
}

/// The instance's hold on its interface, while the interface exists.
pub(super) struct Attached {
    /// The interface's index: another index under the same name is
    /// another device, attached afresh.
    pub(super) parent: u32,
    pub(super) link: Arc<Link>,
    pub(super) inbound: mpsc::Receiver<Inbound>,
    pub(super) target: Target,
    /// With `virtual_mac`: sends adverts from the macvlan, so that they
    /// carry the virtual router MAC.
    pub(super) sender: Option<AdvertSocket>,
    /// Whether the macvlan is up (it is only while master).
    pub(super) macvlan_up: bool,
}

/// Gratuitous ARP / NA still to send after a takeover.
struct Announcing {
    addrs: Vec<IpAddr>,
    left: u32,
    next: Instant,
}

pub(crate) struct Runner {
    pub name: String,
    pub vr: Instance,
    pub wire: Wire,
    pub attached: Option<Attached>,
    /// Bumped on every link or address change (see `Netlink::changes`).
    pub changes: watch::Receiver<u64>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub vrrp: Vrrp,
    pub status: watch::Sender<Status>,
    /// Why the instance waits in Initialize, while it does.
    waiting: Option<String>,
    pub notifier: Option<Notifier>,
    announcing: Option<Announcing>,
    refresh_at: Option<Instant>,
    last_transition: Option<LastTransition>,
}

impl Runner {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: String,
        vr: Instance,
        wire: Wire,
        attached: Option<Attached>,
        changes: watch::Receiver<u64>,
        commands: mpsc::UnboundedReceiver<Command>,
        vrrp: Vrrp,
        status: watch::Sender<Status>,
    ) -> Runner {
        let notifier = wire
            .notify
            .clone()
            .map(|cmd| Notifier::spawn(cmd, name.clone(), notify::TIMEOUT));
        Runner {
            name,
            vr,
            wire,
            attached,
            changes,
            commands,
            vrrp,
            status,
            waiting: None,
            notifier,
            announcing: None,
            refresh_at: None,
            last_transition: None,
        }
    }

    pub(super) async fn run(mut self) {
        observe::state(&self.name, State::Initialize);
        observe::suppressed(&self.name, 0);
        // Down, missing or without a primary address: start() waits.
        self.follow_interface().await;
        self.vr.start(Instant::now());
        self.act().await;
        loop {
            let wake = [
                self.vr.poll_timeout(),
                self.announcing.as_ref().map(|a| a.next),
                self.refresh_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep =
                sleep_until(tokio::time::Instant::from_std(wake.unwrap_or_else(|| {
                    Instant::now() + std::time::Duration::from_secs(3600)
                })));
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::SetTrack(name, up)) => {
                        if let Err(e) = self.vr.set_track(&name, up) {
                            tracing::warn!(error = %e, "VRRP track not applied");
                        }
                    }
                    Some(Command::Update(spec, reply)) => {
                        let result = self.update(*spec);
                        let applied = result.is_ok();
                        let _ = reply.send(result);
                        // Unicast peers decide which IPv6 address is the
                        // primary (link-local or global): choose again.
                        if applied {
                            self.follow_interface().await;
                        }
                    }
                    Some(Command::Shutdown(done)) => {
                        self.stop().await;
                        let _ = done.send(());
                        return;
                    }
                    // The handle was dropped: stop as cleanly as on request.
                    None => {
                        self.stop().await;
                        return;
                    }
                },
                Some(advert) = next_advert(&mut self.attached) => self.receive(advert),
                Ok(()) = self.changes.changed() => self.follow_interface().await,
                () = sleep => self.tick(),
            }
            self.act().await;
        }
    }

    fn receive(&mut self, advert: Inbound) {
        let from = Some(advert.src);
        if !self.wire.unicast_peers.is_empty() && !self.wire.unicast_peers.contains(&advert.src) {
            let detail = "not a unicast peer";
            return observe::discard(Some(&self.name), "not_peer", false, from, &detail);
        }
        observe::received(&self.name);
        let suppressed = self.vr.adverts_suppressed();
        if let Err(d) = self
            .vr
            .handle_advert(Instant::now(), advert.src, &advert.packet)
        {
            observe::discard(Some(&self.name), d.reason(), d.is_routine(), from, &d);
        }
        let held_back = self.vr.adverts_suppressed() - suppressed;
        if held_back > 0 {
            observe::suppressed(&self.name, held_back);
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        self.vr.handle_timeout(now);
        if self.announcing.as_ref().is_some_and(|a| a.next <= now) {
            self.announce_once(now);
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            let addrs = self
                .vr
                .config()
                .addresses
                .iter()
                .map(|va| va.addr)
                .collect();
            self.start_announcing(addrs, now);
        }
    }

    fn update(&mut self, spec: InstanceSpec) -> Result<(), NetError> {
        if let Some(e) = spec.problems().into_iter().next() {
            return Err(e.into());
        }
        let mut config = spec.config;
        config.primary_address = self.vr.config().primary_address;
        self.vr.update_config(config)?;
        if spec.wire.notify != self.wire.notify {
            self.notifier = spec
                .wire
                .notify
                .clone()
                .map(|cmd| Notifier::spawn(cmd, self.name.clone(), notify::TIMEOUT));
        }
        if spec.wire.garp.refresh != self.wire.garp.refresh && self.vr.state() == State::Master {
            self.refresh_at = spec.wire.garp.refresh.map(|r| Instant::now() + r);
        }
        self.wire = spec.wire;
        Ok(())
    }

    async fn stop(&mut self) {
        self.vr.shutdown(Instant::now());
        self.act().await;
        self.release(true).await;
    }

    /// Lets go of the interface: the VRID's queue, the shared socket and
    /// the macvlan (whose deletion fails only when the kernel deleted it
    /// with a vanished parent, so that is only logged when `expected`).
    async fn release(&mut self, expected: bool) {
        let Some(attached) = self.attached.take() else {
            return;
        };
        attached.link.unregister(self.vr.config().vrid);
        let t = &attached.target;
        if t.macvlan {
            match self.vrrp.netlink.delete(t.index).await {
                Err(e) if expected => {
                    tracing::warn!(device = %t.name, error = %e, "cannot delete the macvlan")
                }
                _ => {}
            }
        }
    }

    /// Reads the interface again and follows it: attaches to it when it
    /// appears (or reappears as another device), goes to Initialize
    /// while it is missing, down or without the address adverts come from
    /// (RFC 9568 §5.1.1.1, §5.1.2.1), resumes when it is usable again, and
    /// takes a new primary address as the source of later adverts.
    async fn follow_interface(&mut self) {
        let info = match self.vrrp.netlink.link(&self.wire.interface).await {
            Ok(info) => Some(info),
            Err(NetlinkError::NoSuchLink(_)) => None,
            Err(e) => {
                // Transient (the kernel answered with an error): the next
                // change reads it again.
                tracing::warn!(error = %e, "cannot read the VRRP interface");
                return;
            }
        };
        self.apply_interface(info).await;
        self.act().await;
    }

    async fn apply_interface(&mut self, info: Option<LinkInfo>) {
        let now = Instant::now();
        let interface = self.wire.interface.clone();
        // A device gone (or replaced by another of the same name) took its
        // addresses and macvlans with it: let go first, so that going to
        // Initialize asks nothing of a device that no longer exists.
        let Some(info) = info else {
            self.release(false).await;
            return self.wait(now, format!("waiting for interface {interface}"));
        };
        if (self.attached.as_ref()).is_some_and(|a| a.parent != info.index) {
            self.release(false).await;
            self.vr.interface_down(now);
        }
        if self.attached.is_none() {
            match self
                .vrrp
                .attach(&self.name, &self.wire, &self.vr, &info)
                .await
            {
                Ok(attached) => self.attached = Some(attached),
                Err(e) => return self.wait(now, format!("cannot use interface {interface}: {e}")),
            }
        }
        if !info.up {
            return self.wait(now, format!("waiting for interface {interface} to come up"));
        }
        let family = self.vr.config().family();
        match primary_address(&info, family, self.vr.config(), &self.wire) {
            Ok(primary) => {
                let old = self.vr.config().primary_address;
                if primary != old && !old.is_unspecified() {
                    tracing::info!(from = %old, to = %primary, "VRRP primary address changed");
                }
                self.vr.set_primary_address(primary);
                if self.waiting.take().is_some() {
                    tracing::info!(%interface, "VRRP interface usable");
                }
                self.vr.interface_up(now);
            }
            Err(e) => self.wait(now, format!("waiting: {e}")),
        }
    }

    /// Initialize until the interface is usable; `why` is logged once
    /// and shown in the status.
    fn wait(&mut self, now: Instant, why: String) {
        if self.waiting.as_ref() != Some(&why) {
            tracing::warn!(reason = %why, "VRRP instance waits for its interface");
            self.waiting = Some(why);
        }
        self.vr.interface_down(now);
    }

    fn start_announcing(&mut self, addrs: Vec<IpAddr>, now: Instant) {
        self.refresh_at = self.wire.garp.refresh.map(|r| now + r);
        if self.wire.garp.count == 0 || addrs.is_empty() {
            self.announcing = None;
            return;
        }
        self.announcing = Some(Announcing {
            addrs,
            left: self.wire.garp.count,
            next: now,
        });
        self.announce_once(now);
    }

    fn announce_once(&mut self, now: Instant) {
        let Some(a) = self.announcing.as_mut() else {
            return;
        };
        let Some(t) = self.attached.as_ref().map(|a| &a.target) else {
            self.announcing = None;
            return;
        };
        if let Err(e) = announce::send(&t.name, t.index, t.mac, &a.addrs) {
            tracing::warn!(device = %t.name, error = %e, "gratuitous ARP / NA failed");
        }
        a.left -= 1;
        a.next = now + self.wire.garp.interval;
        if a.left == 0 {
            self.announcing = None;
        }
    }

    /// Carries out the instance's actions in order, then publishes status.
    async fn act(&mut self) {
        while let Some(action) = self.vr.poll_action() {
            if let Action::StateChanged { from, to, reason } = action {
                self.state_changed(from, to, reason);
                continue;
            }
            // Actions other than a transition need the interface; the
            // instance only runs while it has one.
            let Some(attached) = self.attached.as_mut() else {
                tracing::debug!(?action, "no interface: action dropped");
                continue;
            };
            let netlink = &self.vrrp.netlink;
            let t = &attached.target;
            match action {
                Action::SendAdvert(packet) => {
                    // The first advert of a new master precedes its
                    // addresses: the macvlan must be up to carry it.
                    if t.macvlan && !attached.macvlan_up && self.vr.state() == State::Master {
                        match netlink.set_up(t.index, true).await {
                            Ok(()) => attached.macvlan_up = true,
                            Err(e) => tracing::error!(error = %e, "cannot set the macvlan up"),
                        }
                    }
                    let parent = &*attached.link.socket;
                    let macvlan = attached.sender.as_ref().filter(|_| attached.macvlan_up);
                    let primary = self.vr.config().primary_address;
                    let group = [packet.family().multicast_group()];
                    let peers = if self.wire.unicast_peers.is_empty() {
                        &group[..]
                    } else {
                        &self.wire.unicast_peers[..]
                    };
                    for &dst in peers {
                        let send = |bytes: &[u8]| match macvlan {
                            Some(sender) => match sender.send(primary, dst, bytes) {
                                // A macvlan set up while the kernel has not
                                // yet seen its parent's carrier come back
                                // has no IPv6 route for a while (the
                                // kernel's link watch runs up to a second
                                // later): the advert goes out of the parent
                                // rather than not at all.
                                Err(e)
                                    if matches!(
                                        e.raw_os_error(),
                                        Some(libc::ENETUNREACH | libc::ENETDOWN)
                                    ) =>
                                {
                                    tracing::debug!(error = %e, "macvlan not ready: advert sent from the parent");
                                    parent.send(primary, dst, bytes)
                                }
                                other => other,
                            },
                            None => parent.send(primary, dst, bytes),
                        };
                        let sent = self
                            .vr
                            .encode_advert(&packet, dst)
                            .map_err(|e| e.to_string())
                            .and_then(|bytes| send(&bytes).map_err(|e| e.to_string()));
                        match sent {
                            Ok(()) => observe::sent(&self.name),
                            Err(e) => {
                                tracing::warn!(%dst, error = %e, "VRRP advert not sent")
                            }
                        }
                    }
                }
                Action::AddAddresses(addrs) => {
                    if t.macvlan && !attached.macvlan_up {
                        match netlink.set_up(t.index, true).await {
                            Ok(()) => attached.macvlan_up = true,
                            Err(e) => tracing::error!(error = %e, "cannot set the macvlan up"),
                        }
                    }
                    if let Err(e) = netlink.add(t.index, addrs).await {
                        tracing::error!(error = %e, "cannot add the virtual addresses");
                    }
                }
                Action::RemoveAddresses(addrs) => {
                    if let Err(e) = netlink.remove(t.index, addrs).await {
                        tracing::error!(error = %e, "cannot remove the virtual addresses");
                    }
                    // Down while not master: the virtual MAC must have one
                    // holder on the segment.
                    if t.macvlan && self.vr.state() != State::Master {
                        match netlink.set_up(t.index, false).await {
                            Ok(()) => attached.macvlan_up = false,
                            Err(e) => tracing::error!(error = %e, "cannot set the macvlan down"),
                        }
                    }
                }
                Action::Announce(addrs) => self.start_announcing(addrs, Instant::now()),
                Action::StateChanged { .. } => unreachable!("handled above"),
            }
        }
        self.publish();
    }

    fn state_changed(&mut self, from: State, to: State, reason: TransitionReason) {
        tracing::info!(
            %from,
            %to,
            priority = self.vr.effective_priority(),
            %reason,
            "VRRP state changed"
        );
        self.last_transition = Some(LastTransition {
            at: SystemTime::now(),
            reason: reason.to_string(),
        });
        observe::state(&self.name, to);
        observe::transition(&self.name, to);
        if let Some(n) = &self.notifier {
            n.notify(to.as_str(), self.vr.effective_priority());
        }
        if to != State::Master {
            self.announcing = None;
            self.refresh_at = None;
        }
    }

    fn publish(&self) {
        let status = Status {
            state: self.vr.state(),
            priority: self.vr.config().priority,
            effective_priority: self.vr.effective_priority(),
            master: self.vr.master(),
            primary_address: self.vr.config().primary_address,
            interface: self
                .attached
                .as_ref()
                .map_or_else(|| self.wire.interface.clone(), |a| a.target.name.clone()),
            last_transition: self.last_transition.clone(),
            waiting: self.waiting.clone(),
        };
        self.status.send_if_modified(|old| {
            let changed = *old != status;
            *old = status;
            changed
        });
    }
}

/// The next advert for the instance; never, while it has no interface.
async fn next_advert(attached: &mut Option<Attached>) -> Option<Inbound> {
    match attached {
        Some(a) => a.inbound.recv().await,
        None => std::future::pending().await,
    }
}
