//! The task of one virtual router: feeds the sans-IO [`Instance`] with
//! adverts, timers and commands, and carries out its actions.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

use super::link::{Inbound, Link};
use super::netlink::Netlink;
use super::notify::{self, Notifier};
use super::{announce, observe, InstanceSpec, LastTransition, NetError, Status, Wire};
use crate::instance::{Action, Instance, State};

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
    pub link: Arc<Link>,
    pub inbound: mpsc::Receiver<Inbound>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub netlink: Netlink,
    pub target: Target,
    pub status: watch::Sender<Status>,
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
        link: Arc<Link>,
        inbound: mpsc::Receiver<Inbound>,
        commands: mpsc::UnboundedReceiver<Command>,
        netlink: Netlink,
        target: Target,
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
            link,
            inbound,
            commands,
            netlink,
            target,
            status,
            notifier,
            announcing: None,
            refresh_at: None,
            last_transition: None,
        }
    }

    pub(super) async fn run(mut self) {
        observe::state(&self.name, State::Initialize);
        observe::suppressed(&self.name, 0);
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
                        let _ = reply.send(result);
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
                Some(advert) = self.inbound.recv() => self.receive(advert),
                () = sleep => self.tick(),
            }
            self.act().await;
        }
    }

    fn receive(&mut self, advert: Inbound) {
        let from = Some(advert.src);
        if !self.wire.unicast_peers.is_empty() && !self.wire.unicast_peers.contains(&advert.src) {
            let detail = "not a unicast peer";
            return observe::discard(Some(&self.name), "not_peer", from, &detail);
        }
        observe::received(&self.name);
        let suppressed = self.vr.adverts_suppressed();
        if let Err(d) = self
            .vr
            .handle_advert(Instant::now(), advert.src, &advert.packet)
        {
            observe::discard(Some(&self.name), d.reason(), from, &d);
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
        self.link.unregister(self.vr.config().vrid);
        if self.target.macvlan {
            if let Err(e) = self.netlink.delete(self.target.index).await {
                tracing::warn!(
                    device = %self.target.name,
                    error = %e,
                    "cannot delete the macvlan"
                );
            }
        }
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
        let t = &self.target;
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
            match action {
                Action::SendAdvert(packet) => {
                    let primary = self.vr.config().primary_address;
                    let group = [packet.family().multicast_group()];
                    let peers = if self.wire.unicast_peers.is_empty() {
                        &group[..]
                    } else {
                        &self.wire.unicast_peers[..]
                    };
                    for &dst in peers {
                        let sent = self
                            .vr
                            .encode_advert(&packet, dst)
                            .map_err(|e| e.to_string())
                            .and_then(|bytes| {
                                self.link
                                    .socket
                                    .send(primary, dst, &bytes)
                                    .map_err(|e| e.to_string())
                            });
                        match sent {
                            Ok(()) => observe::sent(&self.name),
                            Err(e) => {
                                tracing::warn!(%dst, error = %e, "VRRP advert not sent")
                            }
                        }
                    }
                }
                Action::AddAddresses(addrs) => {
                    if self.target.macvlan {
                        if let Err(e) = self.netlink.set_up(self.target.index, true).await {
                            tracing::error!(error = %e, "cannot set the macvlan up");
                        }
                    }
                    if let Err(e) = self.netlink.add(self.target.index, addrs).await {
                        tracing::error!(error = %e, "cannot add the virtual addresses");
                    }
                }
                Action::RemoveAddresses(addrs) => {
                    if let Err(e) = self.netlink.remove(self.target.index, addrs).await {
                        tracing::error!(error = %e, "cannot remove the virtual addresses");
                    }
                    // Down while not master: the virtual MAC must have one
                    // holder on the segment.
                    if self.target.macvlan && self.vr.state() != State::Master {
                        if let Err(e) = self.netlink.set_up(self.target.index, false).await {
                            tracing::error!(error = %e, "cannot set the macvlan down");
                        }
                    }
                }
                Action::Announce(addrs) => self.start_announcing(addrs, Instant::now()),
                Action::StateChanged { from, to, reason } => {
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
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let status = Status {
            state: self.vr.state(),
            priority: self.vr.config().priority,
            effective_priority: self.vr.effective_priority(),
            master: self.vr.master(),
            primary_address: self.vr.config().primary_address,
            interface: self.target.name.clone(),
            last_transition: self.last_transition.clone(),
        };
        self.status.send_if_modified(|old| {
            let changed = *old != status;
            *old = status;
            changed
        });
    }
}
