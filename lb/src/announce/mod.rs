//! ECMP scale-out: every node announces the `[[announce]]` groups' host
//! routes through BIRD while it can serve them; the upstream router spreads
//! flows over the nodes announcing a prefix.
//!
//! One manager task owns the per-group, per-family [`machine::Machine`]s,
//! the TUN device the routes point at and the [`bird::BirdLink`]; the
//! [`Announcer`] handle sends it requests.

pub mod bird;
pub mod bird_config;
pub mod machine;
pub mod reply;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use vrrp::Family;

use crate::config::{Bgp, Config};
use crate::metrics as m;
use crate::runtime::{Registry, Snapshot};
use crate::sys::tun::Tun;
use bird::{BirdLink, Protocols};
use bird_config::protocol_name;
use machine::{Machine, Wanted};

/// How long shutdown waits for BIRD to confirm the withdrawal.
const WITHDRAW_CONFIRM: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
#[error("cannot create the announce interface {interface:?}: {error}")]
pub struct AnnounceError {
    pub interface: String,
    pub error: std::io::Error,
}

/// Why `coexist announce NAME withdraw|announce` was not applied.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no [[announce]] group is named {0:?}")]
    UnknownGroup(String),
    #[error("this node announces nothing (no [bgp] in its configuration)")]
    NotAnnouncing,
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// What the operator asks of a group on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AdminAction {
    /// Stop announcing (a manual drain of this node), whatever its health.
    Withdraw,
    /// Announce again when healthy (undoes `withdraw`).
    Announce,
}

/// One group and family as `/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnnounceStatus {
    pub name: String,
    /// "ipv4" | "ipv6"
    pub family: String,
    /// "announced" | "withdrawn"
    pub state: String,
    pub reason: String,
    /// Seconds since the Unix epoch of the last change of state or reason.
    pub since: f64,
    pub protocol: String,
}

/// Where the admin API reads the groups' state and sends the operator's
/// requests; the manager task fills it in.
#[derive(Debug, Default)]
pub struct Board {
    status: Mutex<Vec<AnnounceStatus>>,
    control: Mutex<Option<mpsc::UnboundedSender<Message>>>,
}

pub type AnnounceBoard = Arc<Board>;

impl Board {
    pub fn status(&self) -> Vec<AnnounceStatus> {
        self.status.lock().expect("announce board lock").clone()
    }

    /// Applies `action` to group `name`; returns the group's new state.
    pub async fn admin(
        &self,
        name: &str,
        action: AdminAction,
    ) -> Result<Vec<AnnounceStatus>, AdminError> {
        let control = self.control.lock().expect("announce board lock").clone();
        let control = control.ok_or(AdminError::NotAnnouncing)?;
        let (done, result) = oneshot::channel();
        let message = Message::Admin {
            group: name.to_owned(),
            withdraw: action == AdminAction::Withdraw,
            done,
        };
        control
            .send(message)
            .map_err(|_| AdminError::ShuttingDown)?;
        result.await.map_err(|_| AdminError::ShuttingDown)??;
        let status = self.status();
        Ok(status.into_iter().filter(|s| s.name == name).collect())
    }
}

#[derive(Debug)]
enum Message {
    Reload(Arc<Config>),
    Listening(bool),
    Admin {
        group: String,
        withdraw: bool,
        done: oneshot::Sender<Result<(), AdminError>>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// The running announcement side of the daemon.
pub struct Announcer {
    tx: mpsc::UnboundedSender<Message>,
    task: JoinHandle<()>,
    withdraw_settle: Duration,
}

impl Announcer {
    /// Creates the interface and starts announcing `config`'s groups as
    /// they become able to serve. `None` without `[bgp]`.
    pub fn start(
        config: &Config,
        board: AnnounceBoard,
        snapshot: Arc<ArcSwap<Snapshot>>,
        registry: &Registry,
    ) -> Result<Option<Announcer>, AnnounceError> {
        let Some(bgp) = config.bgp.clone() else {
            return Ok(None);
        };
        let tun = Tun::create(&bgp.interface).map_err(|error| AnnounceError {
            interface: bgp.interface.clone(),
            error,
        })?;
        let link = BirdLink::start(bgp.control_socket.clone());
        let mut manager = Manager {
            bgp,
            groups: BTreeMap::new(),
            admin_withdrawn: Vec::new(),
            retired: Vec::new(),
            listening: false,
            link,
            board,
            snapshot,
            _tun: tun,
            clock: Clock::new(),
        };
        manager.configure(config);
        let (tx, rx) = mpsc::unbounded_channel();
        *manager.board.control.lock().expect("announce board lock") = Some(tx.clone());
        let withdraw_settle = manager.bgp.withdraw_settle;
        let task = tokio::spawn(manager.run(rx, registry.subscribe()));
        Ok(Some(Announcer {
            tx,
            task,
            withdraw_settle,
        }))
    }

    /// The listeners serve (or stopped serving).
    pub fn set_listening(&self, listening: bool) {
        let _ = self.tx.send(Message::Listening(listening));
    }

    /// Applies a reloaded configuration's groups; `[bgp]` changes other
    /// than `announce_after` take effect at the next restart.
    pub fn reload(&self, config: Arc<Config>) {
        let _ = self.tx.send(Message::Reload(config));
    }

    /// Withdraws every group, waits for BIRD to confirm, then keeps serving
    /// for `withdraw_settle` while the routers converge.
    pub async fn shutdown(self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Message::Shutdown(done)).is_ok() {
            let _ = finished.await;
        }
        if !self.withdraw_settle.is_zero() {
            tracing::info!(
                settle = %humantime::format_duration(self.withdraw_settle),
                "routes withdrawn; serving while the routers converge"
            );
            tokio::time::sleep(self.withdraw_settle).await;
        }
        let _ = self.task.await;
    }
}

/// Instants for the machines, wall-clock seconds for `/status`.
struct Clock {
    started: Instant,
    started_wall: SystemTime,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            started: Instant::now(),
            started_wall: SystemTime::now(),
        }
    }

    fn unix_seconds(&self, at: Instant) -> f64 {
        let wall = self.started_wall + at.saturating_duration_since(self.started);
        (wall.duration_since(SystemTime::UNIX_EPOCH)).map_or(0.0, |d| d.as_secs_f64())
    }
}

struct Group {
    tracks: Vec<String>,
    machines: Vec<(Family, Machine)>,
}

struct Manager {
    bgp: Bgp,
    groups: BTreeMap<String, Group>,
    /// Groups the operator withdrew; kept across reloads.
    admin_withdrawn: Vec<String>,
    /// Protocols of groups a reload removed: kept disabled.
    retired: Vec<String>,
    listening: bool,
    link: BirdLink,
    board: AnnounceBoard,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Held for its lifetime: the routes' next hop.
    _tun: Tun,
    clock: Clock,
}

impl Manager {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Message>,
        mut changes: watch::Receiver<u64>,
    ) {
        self.track();
        self.publish();
        loop {
            let deadline = self.deadline();
            let wake = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Reload(config)) => {
                        self.reload(&config);
                        self.track();
                    }
                    Some(Message::Listening(listening)) => {
                        self.listening = listening;
                        let now = Instant::now();
                        self.each(|m| m.set_listening(now, listening));
                    }
                    Some(Message::Admin { group, withdraw, done }) => {
                        let result = self.admin(&group, withdraw);
                        // The caller reads the board next: show the change.
                        self.publish();
                        let _ = done.send(result);
                    }
                    Some(Message::Shutdown(done)) => {
                        self.board.control.lock().expect("announce board lock").take();
                        let now = Instant::now();
                        self.each(|m| m.shutdown(now));
                        self.publish();
                        if !self.link.applied_within(WITHDRAW_CONFIRM).await {
                            tracing::warn!("BIRD did not confirm the withdrawal; stopping anyway (the interface goes with the daemon)");
                        }
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The registry is gone: health will not change again.
                        changes = watch::channel(0).1;
                    }
                    self.track();
                }
                () = wake => {
                    let now = Instant::now();
                    self.each(|m| m.poll(now));
                }
            }
            self.publish();
        }
    }

    /// Builds the machines of `config`'s groups, keeping the state of
    /// groups and families that stay.
    fn configure(&mut self, config: &Config) {
        let now = Instant::now();
        let after = self.bgp.announce_after;
        let mut groups = BTreeMap::new();
        for group in &config.announce {
            let mut old = self.groups.remove(&group.name);
            let machines = group
                .families()
                .into_iter()
                .map(|family| {
                    let kept = old.as_mut().and_then(|g| {
                        let at = g.machines.iter().position(|(f, _)| *f == family)?;
                        Some(g.machines.swap_remove(at).1)
                    });
                    let mut machine = match kept {
                        Some(mut machine) => {
                            let t = machine.reconfigure(now, after, &group.track);
                            log_transition(&group.name, family, t.as_ref());
                            machine
                        }
                        None => {
                            let mut machine = Machine::new(now, after, &group.track);
                            machine.set_listening(now, self.listening);
                            machine
                        }
                    };
                    let withdrawn = self.admin_withdrawn.contains(&group.name);
                    let t = machine.set_admin_withdrawn(now, withdrawn);
                    log_transition(&group.name, family, t.as_ref());
                    (family, machine)
                })
                .collect();
            groups.insert(
                group.name.clone(),
                Group {
                    tracks: group.track.clone(),
                    machines,
                },
            );
        }
        for (name, group) in std::mem::replace(&mut self.groups, groups) {
            tracing::info!(group = %name, "announce group removed by reload; its protocols are disabled");
            let protocols = group.machines.iter().map(|(f, _)| protocol_name(&name, *f));
            self.retired.extend(protocols);
        }
        let live: Vec<String> = (self.groups.iter())
            .flat_map(|(name, g)| g.machines.iter().map(|(f, _)| protocol_name(name, *f)))
            .collect();
        self.retired.retain(|p| !live.contains(p));
    }

    fn reload(&mut self, config: &Config) {
        match &config.bgp {
            Some(bgp) => {
                let mut restart_only = bgp.clone();
                restart_only.announce_after = self.bgp.announce_after;
                restart_only.withdraw_settle = self.bgp.withdraw_settle;
                if restart_only != self.bgp {
                    tracing::warn!("bgp.engine, control_socket or interface changed; that takes effect at the next restart");
                }
                self.bgp.announce_after = bgp.announce_after;
            }
            None => tracing::warn!("[bgp] removed; routes stay managed until the next restart"),
        }
        self.configure(config);
    }

    fn admin(&mut self, group: &str, withdraw: bool) -> Result<(), AdminError> {
        if !self.groups.contains_key(group) {
            return Err(AdminError::UnknownGroup(group.to_owned()));
        }
        self.admin_withdrawn.retain(|g| g != group);
        if withdraw {
            self.admin_withdrawn.push(group.to_owned());
        }
        tracing::info!(group = %group, withdraw, "announce changed by the operator");
        let now = Instant::now();
        let machines = &mut self.groups.get_mut(group).expect("checked").machines;
        for (family, machine) in machines {
            let t = machine.set_admin_withdrawn(now, withdraw);
            log_transition(group, *family, t.as_ref());
        }
        Ok(())
    }

    /// Feeds the tracked frontends' health to every machine.
    fn track(&mut self) {
        let snapshot = self.snapshot.load();
        let now = Instant::now();
        for (name, group) in &mut self.groups {
            for frontend in &group.tracks {
                let up = snapshot.frontend_can_serve(frontend);
                for (family, machine) in &mut group.machines {
                    let t = machine.set_track(now, frontend, up);
                    log_transition(name, *family, t.as_ref());
                }
            }
        }
    }

    fn each(&mut self, mut step: impl FnMut(&mut Machine) -> Option<machine::Transition>) {
        for (name, group) in &mut self.groups {
            for (family, machine) in &mut group.machines {
                let t = step(machine);
                log_transition(name, *family, t.as_ref());
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let machines = self.groups.values().flat_map(|g| &g.machines);
        machines.filter_map(|(_, m)| m.deadline()).min()
    }

    /// Hands the wanted states to the link, the board and the gauges.
    fn publish(&self) {
        let mut wanted: Protocols = self.retired.iter().map(|p| (p.clone(), false)).collect();
        let mut board = Vec::new();
        for (name, group) in &self.groups {
            for (family, machine) in &group.machines {
                let protocol = protocol_name(name, *family);
                let up = machine.wanted() == Wanted::Announced;
                wanted.insert(protocol.clone(), up);
                metrics::gauge!(m::ANNOUNCE_UP, "name" => name.clone(), "family" => family_label(*family))
                    .set(f64::from(u8::from(up)));
                board.push(AnnounceStatus {
                    name: name.clone(),
                    family: family_label(*family).to_owned(),
                    state: machine.wanted().as_str().to_owned(),
                    reason: machine.reason().to_string(),
                    since: self.clock.unix_seconds(machine.since()),
                    protocol,
                });
            }
        }
        self.link.set(wanted);
        *self.board.status.lock().expect("announce board lock") = board;
    }
}

fn family_label(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

fn log_transition(group: &str, family: Family, transition: Option<&machine::Transition>) {
    let Some(t) = transition else { return };
    metrics::counter!(
        m::ANNOUNCE_TRANSITIONS_TOTAL,
        "name" => group.to_owned(),
        "family" => family_label(family),
        "state" => t.to.as_str()
    )
    .increment(1);
    tracing::info!(
        group = %group,
        family = family_label(family),
        state = t.to.as_str(),
        reason = %t.reason,
        "announce state changed"
    );
}
