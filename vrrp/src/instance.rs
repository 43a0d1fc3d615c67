//! One virtual router: the state machine of RFC 9568 §6.4 (and RFC 3768
//! §6.4 where VRRPv2 differs), driven by calls carrying an injected `now`
//! and answering with [`Action`]s that the caller drains with
//! [`Instance::poll_action`].
//!
//! Timers follow the quinn pattern: the caller sleeps until
//! [`Instance::poll_timeout`] and then calls [`Instance::handle_timeout`].
//! Nothing here reads a clock or touches a socket.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError, Problem, Setting, VirtualAddress};
use crate::packet::{EncodeError, Family, Packet, Version};

/// Protocol state (RFC 9568 §6.4; RFC 9568 calls Master "Active").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not running: before start and after shutdown.
    Initialize,
    /// Listening for the master's adverts.
    Backup,
    /// Holding the virtual addresses and sending adverts.
    Master,
}

impl State {
    /// Lower-case name, as shown in `/status` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
        }
    }

    /// Numeric value for the `vrrp_state` gauge (keepalived's numbering:
    /// 0 init, 1 backup, 2 master).
    pub fn code(self) -> u8 {
        match self {
            State::Initialize => 0,
            State::Backup => 1,
            State::Master => 2,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened. `Display` gives the human-readable text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionReason {
    /// Initialize → Backup at start.
    Startup,
    /// Initialize → Master: priority 255, the address owner.
    AddressOwner,
    /// Backup → Master: no advert heard for Master_Down_Interval.
    MasterDown {
        /// The Master_Down_Interval that passed.
        interval: Duration,
    },
    /// Backup → Master: the master sent priority 0, Skew_Time passed.
    MasterReleased {
        /// The master that left.
        from: IpAddr,
    },
    /// Backup → Master: lower-priority adverts were ignored (preemption).
    Preempted {
        /// The master's priority.
        priority: u8,
        /// The master preempted.
        from: IpAddr,
    },
    /// Master → Backup: an advert with a higher priority.
    HigherPriority {
        /// The advert's priority.
        priority: u8,
        /// The new master.
        from: IpAddr,
    },
    /// Master → Backup: same priority from a higher primary address.
    HigherAddress {
        /// The advert's priority, equal to ours.
        priority: u8,
        /// The new master.
        from: IpAddr,
    },
    /// Any state → Initialize.
    Shutdown,
    /// Any state → Initialize: the interface went down (or away, or lost
    /// the address adverts come from).
    InterfaceDown,
    /// Initialize → Backup: the interface came (back) up.
    InterfaceUp,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::Startup => write!(f, "startup"),
            TransitionReason::AddressOwner => write!(f, "priority 255: address owner"),
            TransitionReason::MasterDown { interval } => {
                write!(f, "master down interval expired ({interval:?})")
            }
            TransitionReason::MasterReleased { from } => {
                write!(f, "master {from} released (priority 0), skew time expired")
            }
            TransitionReason::Preempted { priority, from } => {
                write!(f, "preempted lower priority {priority} from {from}")
            }
            TransitionReason::HigherPriority { priority, from } => {
                write!(f, "higher priority {priority} from {from}")
            }
            TransitionReason::HigherAddress { priority, from } => {
                write!(f, "equal priority {priority} from higher address {from}")
            }
            TransitionReason::Shutdown => write!(f, "shutdown"),
            TransitionReason::InterfaceDown => write!(f, "interface down"),
            TransitionReason::InterfaceUp => write!(f, "interface up"),
        }
    }
}

/// A transition that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: TransitionReason,
    /// When (the `now` of the call that caused it).
    pub at: Instant,
}

/// What the caller must do, in the order drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this advertisement (to the multicast group or each unicast
    /// peer); [`Instance::encode_advert`] gives the bytes for a destination.
    SendAdvert(Packet),
    /// Add these addresses to the interface.
    AddAddresses(Vec<VirtualAddress>),
    /// Remove these addresses from the interface (idempotent: also emitted
    /// on entering Backup from Initialize, which clears leftovers of an
    /// earlier run).
    RemoveAddresses(Vec<VirtualAddress>),
    /// Send gratuitous ARP (IPv4) or unsolicited Neighbor Advertisements
    /// (IPv6) for these addresses; repeating them is the wire layer's job.
    Announce(Vec<IpAddr>),
    /// Emitted before the actions the transition causes.
    StateChanged {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// Why.
        reason: TransitionReason,
    },
}

/// Why [`Instance::handle_advert`] refused a decoded advertisement.
/// [`Discard::reason`] is a stable metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    /// The instance is in Initialize.
    #[error("instance not running (initialize state)")]
    NotRunning,
    /// Another virtual router's advert.
    #[error("advert for vrid {got}, this instance is vrid {expected}")]
    Vrid {
        /// Ours.
        expected: u8,
        /// The advert's.
        got: u8,
    },
    /// An advert of the other protocol version.
    #[error("advert of version {got:?}, this instance runs {expected:?}")]
    Version {
        /// Ours.
        expected: Version,
        /// The advert's.
        got: Version,
    },
    /// An advert of the other address family.
    #[error("advert from {from} is not of this instance's family")]
    Family {
        /// Its sender.
        from: IpAddr,
    },
    /// Our own advert, looped back.
    #[error("advert from our own primary address {0}")]
    OwnAdvert(IpAddr),
    /// The address owner listens to no one.
    #[error("this router is the address owner (priority 255) and ignores adverts")]
    LocalOwner,
    /// RFC 3768 §7.1: a VRRPv2 advert with another interval.
    #[error("advert interval {got:?} differs from the configured {expected:?} (VRRPv2)")]
    IntervalMismatch {
        /// Ours.
        expected: Duration,
        /// The advert's.
        got: Duration,
    },
    /// RFC 3768 §7.1: a VRRPv2 advert with another address list, not from
    /// the owner.
    #[error("advert from {from} lists other addresses and does not come from the owner (VRRPv2)")]
    AddressMismatch {
        /// Its sender.
        from: IpAddr,
    },
}

impl Discard {
    /// A short stable label, for the `reason` of a discard counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Discard::NotRunning => "not_running",
            Discard::Vrid { .. } => "vrid",
            Discard::Version { .. } => "version_mismatch",
            Discard::Family { .. } => "family_mismatch",
            Discard::OwnAdvert(_) => "own_advert",
            Discard::LocalOwner => "local_owner",
            Discard::IntervalMismatch { .. } => "interval_mismatch",
            Discard::AddressMismatch { .. } => "address_mismatch",
        }
    }

    /// Whether the discard is part of the normal course of things, not a
    /// sign of a misconfigured or misbehaving peer: an instance in
    /// Initialize (starting, stopping, or waiting for its interface)
    /// hears its peers' adverts, and has no use for them.
    pub fn is_routine(&self) -> bool {
        matches!(self, Discard::NotRunning)
    }
}

/// Returned by [`Instance::set_track`] for a name not in the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no tracked object named {0:?} in this instance")]
pub struct UnknownTrack(pub String);

/// What armed the Master_Down_Timer, to explain the transition it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownCause {
    Silence,
    Released { from: IpAddr },
    Preempting { priority: u8, from: IpAddr },
}

/// One virtual router.
#[derive(Debug, Clone)]
pub struct Instance {
    config: Config,
    state: State,
    failed_tracks: BTreeSet<String>,
    effective_priority: u8,
    /// Master_Adver_Interval: the interval the master advertises (v3),
    /// our own while we are master or have heard none.
    master_adver_interval: Duration,
    adver_timer: Option<Instant>,
    master_down_timer: Option<Instant>,
    down_cause: DownCause,
    master: Option<IpAddr>,
    /// Since when a lower-priority master has been heard without a break,
    /// for `preempt_delay`.
    lower_master_since: Option<Instant>,
    /// When the last received packet that calls for an immediate advert
    /// (a lower-priority master's, or another master's release) arrived,
    /// answered or not: see [`Instance::answer`].
    last_answerable: Option<Instant>,
    /// Immediate adverts not sent because of that limit.
    adverts_suppressed: u64,
    /// Source of the last v3 advert whose address list differed from ours,
    /// so that the warning is logged once per master, not per packet.
    warned_address_mismatch: Option<IpAddr>,
    last_transition: Option<Transition>,
    /// Started and not shut down: runs whenever the interface is up.
    enabled: bool,
    /// Whether the interface can carry adverts (see
    /// [`Instance::interface_down`]).
    link_up: bool,
    actions: VecDeque<Action>,
}

impl Instance {
    /// A stopped instance (Initialize); call [`Instance::start`].
    pub fn new(config: Config) -> Result<Instance, ConfigError> {
        config.validate()?;
        let mut instance = Instance {
            master_adver_interval: config.advert_interval,
            config,
            state: State::Initialize,
            failed_tracks: BTreeSet::new(),
            effective_priority: 0,
            adver_timer: None,
            master_down_timer: None,
            down_cause: DownCause::Silence,
            master: None,
            lower_master_since: None,
            last_answerable: None,
            adverts_suppressed: 0,
            warned_address_mismatch: None,
            last_transition: None,
            enabled: false,
            link_up: true,
            actions: VecDeque::new(),
        };
        instance.effective_priority = instance.compute_priority();
        Ok(instance)
    }

    // ---- read-only view -------------------------------------------------

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current protocol state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Configured priority minus the weights of failed tracked objects.
    pub fn effective_priority(&self) -> u8 {
        self.effective_priority
    }

    /// The master's primary address: ours while master, the last accepted
    /// advert's source while backup, `None` when unknown or released.
    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }

    /// The advertisement interval in use: ours while master, the master's
    /// (VRRPv3, RFC 9568 §6.4.2) or the configured one (VRRPv2) otherwise.
    pub fn advert_interval(&self) -> Duration {
        match (self.state, self.config.version) {
            (State::Backup, Version::V3) => self.master_adver_interval,
            _ => self.config.advert_interval,
        }
    }

    /// Skew_Time (RFC 9568 §6.1; RFC 3768 §6.1 for v2).
    pub fn skew_time(&self) -> Duration {
        let weight = 256 - u32::from(self.effective_priority);
        match self.config.version {
            Version::V3 => self.master_adver_interval * weight / 256,
            Version::V2 => Duration::from_secs(1) * weight / 256,
        }
    }

    /// Master_Down_Interval: 3 × the master's interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        let interval = match self.config.version {
            Version::V3 => self.master_adver_interval,
            Version::V2 => self.config.advert_interval,
        };
        interval * 3 + self.skew_time()
    }

    /// How many adverts that received packets called for were not sent,
    /// since the instance was made (see [`Instance::handle_advert`]).
    pub fn adverts_suppressed(&self) -> u64 {
        self.adverts_suppressed
    }

    /// Whether the interface is up, as last told by
    /// [`Instance::interface_down`] / [`Instance::interface_up`].
    pub fn interface_is_up(&self) -> bool {
        self.link_up
    }

    /// Started, in Initialize only because the interface is down: it
    /// resumes on [`Instance::interface_up`].
    pub fn waiting_for_interface(&self) -> bool {
        self.enabled && !self.link_up
    }

    /// The last state change, if there was one.
    pub fn last_transition(&self) -> Option<&Transition> {
        self.last_transition.as_ref()
    }

    /// Whether the host should accept packets addressed to the virtual
    /// addresses (RFC 9568 §6.4.3): only as master, and only when the
    /// address owner or in accept mode
    /// ([`Config::master_accepts_virtual_traffic`]).
    pub fn accepts_virtual_traffic(&self) -> bool {
        self.state == State::Master && self.config.master_accepts_virtual_traffic()
    }

    /// Names of the tracked objects currently down.
    pub fn failed_tracks(&self) -> impl Iterator<Item = &str> {
        self.failed_tracks.iter().map(String::as_str)
    }

    /// The wire bytes of an advert for `dst`, from the primary address with
    /// the configured checksum form.
    pub fn encode_advert(&self, packet: &Packet, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
        packet.encode(self.config.primary_address, dst, self.config.checksum_mode)
    }

    // ---- outputs ----------------------------------------------------------

    /// The next action to carry out, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// All pending actions, oldest first.
    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        self.actions.drain(..)
    }

    /// When [`Instance::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Initialize => None,
            State::Backup => self.master_down_timer,
            State::Master => self.adver_timer,
        }
    }

    // ---- inputs -----------------------------------------------------------

    /// Startup event (RFC 9568 §6.4.1). Ignored unless in Initialize.
    /// While the interface is down the instance stays in Initialize and
    /// starts when [`Instance::interface_up`] is called.
    pub fn start(&mut self, now: Instant) {
        self.enabled = true;
        self.startup(now, TransitionReason::Startup);
    }

    /// The interface went down, disappeared or lost the address adverts
    /// come from: nothing sent on it reaches the peers any more. A Shutdown
    /// event (RFC 9568 §6.4.2, §6.4.3) without the priority-0 advert, which
    /// could not leave: a master releases its addresses at once, so that
    /// they are not held on a dead link while a peer takes them over, and
    /// neither state keeps timers (a backup must not become master of a
    /// link it cannot hear). [`Instance::interface_up`] resumes.
    pub fn interface_down(&mut self, now: Instant) {
        self.link_up = false;
        let was = self.state;
        if was != State::Initialize {
            self.transition(now, State::Initialize, TransitionReason::InterfaceDown);
        }
        if was == State::Master {
            self.actions
                .push_back(Action::RemoveAddresses(self.config.addresses.clone()));
        }
        self.stop_timers();
    }

    /// The interface is usable again: a started instance goes through the
    /// Startup event (RFC 9568 §6.4.1) as at start.
    pub fn interface_up(&mut self, now: Instant) {
        self.link_up = true;
        if self.enabled {
            self.startup(now, TransitionReason::InterfaceUp);
        }
    }

    /// The interface's primary address (RFC 9568 §5.1.1.1, §5.1.2.1: the
    /// source of adverts, and the tie-breaker of §6.4.3) changed: the next
    /// advert comes from `addr`; no transition.
    pub fn set_primary_address(&mut self, addr: IpAddr) {
        if Family::of(addr) != self.config.family() || addr == self.config.primary_address {
            return;
        }
        self.config.primary_address = addr;
        if self.state == State::Master {
            self.master = Some(addr);
        }
    }

    fn startup(&mut self, now: Instant, reason: TransitionReason) {
        if self.state != State::Initialize || !self.link_up {
            return;
        }
        if self.is_owner() {
            self.become_master(now, TransitionReason::AddressOwner);
        } else {
            self.master_adver_interval = self.config.advert_interval;
            self.become_backup(now, reason, None);
        }
    }

    fn stop_timers(&mut self) {
        self.adver_timer = None;
        self.master_down_timer = None;
        self.master = None;
        self.lower_master_since = None;
    }

    /// Shutdown event (RFC 9568 §6.4.2, §6.4.3): a master sends priority 0
    /// so that backups take over after Skew_Time, then drops its addresses.
    pub fn shutdown(&mut self, now: Instant) {
        self.enabled = false;
        match self.state {
            State::Initialize => {}
            State::Backup => self.transition(now, State::Initialize, TransitionReason::Shutdown),
            State::Master => {
                self.transition(now, State::Initialize, TransitionReason::Shutdown);
                let release = self.advert_packet(0);
                self.actions.push_back(Action::SendAdvert(release));
                self.actions
                    .push_back(Action::RemoveAddresses(self.config.addresses.clone()));
            }
        }
        self.stop_timers();
    }

    /// Timer expiry: call at or after [`Instance::poll_timeout`]; early
    /// calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Initialize => {}
            State::Master => {
                if self.adver_timer.is_some_and(|t| t <= now) {
                    self.send_advert(now);
                }
            }
            State::Backup => {
                if self.master_down_timer.is_some_and(|t| t <= now) {
                    let reason = match self.down_cause {
                        DownCause::Silence => TransitionReason::MasterDown {
                            interval: self.master_down_interval(),
                        },
                        DownCause::Released { from } => TransitionReason::MasterReleased { from },
                        DownCause::Preempting { priority, from } => {
                            TransitionReason::Preempted { priority, from }
                        }
                    };
                    self.become_master(now, reason);
                }
            }
        }
    }

    /// A decoded advert from `src` (RFC 9568 §7.1 checks that need
    /// instance state, then §6.4.2 / §6.4.3). `Ok` means it was processed,
    /// which includes the protocol's own silent ignoring of lower-priority
    /// adverts by a preempting backup.
    ///
    /// A master answers a lower-priority advert (v3) or another master's
    /// release (priority 0) with an immediate advert, as RFC 9568 §6.4.3
    /// says, and announces its addresses again (gratuitous ARP / unsolicited
    /// NA: the other master's announcements may have moved the neighbours),
    /// but only to the first such packet after a quiet advertisement
    /// interval: a flood of them (spoofed, or a peer gone wrong) costs at
    /// most one advert per interval beyond the periodic ones, never one per
    /// packet. The others are counted in [`Instance::adverts_suppressed`].
    pub fn handle_advert(
        &mut self,
        now: Instant,
        src: IpAddr,
        packet: &Packet,
    ) -> Result<(), Discard> {
        self.check_advert(src, packet)?;
        self.warn_on_address_mismatch(src, packet);
        match self.state {
            State::Initialize => Err(Discard::NotRunning),
            State::Backup => {
                self.backup_receive(now, src, packet);
                Ok(())
            }
            State::Master => {
                self.master_receive(now, src, packet);
                Ok(())
            }
        }
    }

    /// Mark tracked object `name` up or down. The new effective priority
    /// goes out with the next advert (no immediate advert, no transition).
    pub fn set_track(&mut self, name: &str, up: bool) -> Result<(), UnknownTrack> {
        if !self.config.tracks.iter().any(|t| t.name == name) {
            return Err(UnknownTrack(name.to_owned()));
        }
        if up {
            self.failed_tracks.remove(name);
        } else {
            self.failed_tracks.insert(name.to_owned());
        }
        self.effective_priority = self.compute_priority();
        Ok(())
    }

    /// Apply a reloaded configuration without a transition. The VRID,
    /// version and family identify the instance and cannot change. A master
    /// adds and announces new addresses and removes dropped ones; priority
    /// and interval changes take effect at the next advert; tracked objects
    /// keep their state by name.
    pub fn update_config(&mut self, config: Config) -> Result<(), ConfigError> {
        config.validate()?;
        let changed = |setting, problem| Err(ConfigError { setting, problem });
        if config.vrid != self.config.vrid {
            return changed(Setting::Vrid, Problem::IdentityChanged);
        }
        if config.version != self.config.version {
            return changed(Setting::Version, Problem::IdentityChanged);
        }
        if config.family() != self.config.family() {
            return changed(Setting::Addresses, Problem::FamilyChanged);
        }
        if self.state == State::Master {
            let removed: Vec<_> = self
                .config
                .addresses
                .iter()
                .filter(|old| !config.addresses.contains(old))
                .copied()
                .collect();
            let added: Vec<_> = config
                .addresses
                .iter()
                .filter(|new| !self.config.addresses.contains(new))
                .copied()
                .collect();
            if !removed.is_empty() {
                self.actions.push_back(Action::RemoveAddresses(removed));
            }
            if !added.is_empty() {
                let announce = added.iter().map(|va| va.addr).collect();
                self.actions.push_back(Action::AddAddresses(added));
                self.actions.push_back(Action::Announce(announce));
            }
            self.master = Some(config.primary_address);
        }
        self.failed_tracks
            .retain(|name| config.tracks.iter().any(|t| &t.name == name));
        if self.state != State::Backup || config.version == Version::V2 {
            self.master_adver_interval = config.advert_interval;
        }
        self.config = config;
        self.effective_priority = self.compute_priority();
        Ok(())
    }

    // ---- internals --------------------------------------------------------

    fn is_owner(&self) -> bool {
        self.effective_priority == crate::config::OWNER_PRIORITY
    }

    /// Configured minus failed weights. Tracking only ever lowers, and
    /// never to 0 (which means "releasing") nor below 1.
    fn compute_priority(&self) -> u8 {
        let penalty: u32 = self
            .config
            .tracks
            .iter()
            .filter(|t| self.failed_tracks.contains(&t.name))
            .map(|t| u32::from(t.weight))
            .sum();
        if penalty == 0 {
            return self.config.priority;
        }
        let lowered = u32::from(self.config.priority).saturating_sub(penalty);
        lowered.clamp(1, 254) as u8
    }

    fn check_advert(&self, src: IpAddr, packet: &Packet) -> Result<(), Discard> {
        if packet.vrid != self.config.vrid {
            return Err(Discard::Vrid {
                expected: self.config.vrid,
                got: packet.vrid,
            });
        }
        if packet.version != self.config.version {
            return Err(Discard::Version {
                expected: self.config.version,
                got: packet.version,
            });
        }
        if Family::of(src) != self.config.family() || packet.family() != self.config.family() {
            return Err(Discard::Family { from: src });
        }
        if src == self.config.primary_address {
            return Err(Discard::OwnAdvert(src));
        }
        if self.state == State::Initialize {
            return Err(Discard::NotRunning);
        }
        // RFC 9568 §7.1 / RFC 3768 §7.1: the address owner does not process
        // adverts for its own virtual router.
        if self.is_owner() {
            return Err(Discard::LocalOwner);
        }
        if self.config.version == Version::V2 {
            if packet.interval() != self.config.advert_interval {
                return Err(Discard::IntervalMismatch {
                    expected: self.config.advert_interval,
                    got: packet.interval(),
                });
            }
            if !self.same_addresses(packet) && packet.priority != 255 {
                return Err(Discard::AddressMismatch { from: src });
            }
        }
        Ok(())
    }

    fn same_addresses(&self, packet: &Packet) -> bool {
        let ours: BTreeSet<IpAddr> = self.config.addresses.iter().map(|va| va.addr).collect();
        let theirs: BTreeSet<IpAddr> = packet.addresses.iter().copied().collect();
        ours == theirs
    }

    /// RFC 9568 §7.1: a VRRPv3 advert listing other addresses is a
    /// misconfiguration to log, not a reason to discard. Logged once per
    /// sender so a steady master does not flood the log.
    fn warn_on_address_mismatch(&mut self, src: IpAddr, packet: &Packet) {
        if self.same_addresses(packet) {
            if self.warned_address_mismatch == Some(src) {
                self.warned_address_mismatch = None;
            }
        } else if self.warned_address_mismatch != Some(src) {
            self.warned_address_mismatch = Some(src);
            tracing::warn!(
                vrid = self.config.vrid,
                from = %src,
                "VRRP advert lists other virtual addresses than configured"
            );
        }
    }

    fn backup_receive(&mut self, now: Instant, src: IpAddr, packet: &Packet) {
        if packet.priority == 0 {
            // RFC 9568 §6.4.2: the master is leaving; take over after
            // Skew_Time only, so the highest-priority backup wins.
            self.master_down_timer = Some(now + self.skew_time());
            self.down_cause = DownCause::Released { from: src };
            self.master = None;
            self.lower_master_since = None;
            return;
        }
        let preempt = self.config.preempt || self.is_owner();
        if preempt && packet.priority < self.effective_priority {
            let since = *self.lower_master_since.get_or_insert(now);
            if now >= since + self.config.preempt_delay {
                // Ignore it: the Master_Down_Timer runs out and we take over.
                self.down_cause = DownCause::Preempting {
                    priority: packet.priority,
                    from: src,
                };
                return;
            }
        } else {
            self.lower_master_since = None;
        }
        if self.config.version == Version::V3 {
            self.master_adver_interval = packet.interval();
        }
        self.master = Some(src);
        self.down_cause = DownCause::Silence;
        self.master_down_timer = Some(now + self.master_down_interval());
    }

    fn master_receive(&mut self, now: Instant, src: IpAddr, packet: &Packet) {
        let local = self.effective_priority;
        if packet.priority == 0 {
            // RFC 9568 §6.4.3: another master released; assert ourselves.
            self.answer(now);
            return;
        }
        let reason = if packet.priority > local {
            Some(TransitionReason::HigherPriority {
                priority: packet.priority,
                from: src,
            })
        } else if packet.priority == local && src > self.config.primary_address {
            Some(TransitionReason::HigherAddress {
                priority: packet.priority,
                from: src,
            })
        } else {
            None
        };
        match reason {
            Some(reason) => {
                if self.config.version == Version::V3 {
                    self.master_adver_interval = packet.interval();
                }
                self.become_backup(now, reason, Some(src));
            }
            None if self.config.version == Version::V3 => {
                // RFC 9568 §6.4.3: a lower-priority master exists; advertise
                // at once so it steps down without waiting an interval.
                self.answer(now);
            }
            // RFC 3768 §6.4.3: VRRPv2 just discards it.
            None => {}
        }
    }

    fn become_master(&mut self, now: Instant, reason: TransitionReason) {
        self.transition(now, State::Master, reason);
        self.master_down_timer = None;
        self.master = Some(self.config.primary_address);
        self.lower_master_since = None;
        self.down_cause = DownCause::Silence;
        self.master_adver_interval = self.config.advert_interval;
        self.send_advert(now);
        self.actions
            .push_back(Action::AddAddresses(self.config.addresses.clone()));
        let announce = self.config.addresses.iter().map(|va| va.addr).collect();
        self.actions.push_back(Action::Announce(announce));
    }

    fn become_backup(&mut self, now: Instant, reason: TransitionReason, master: Option<IpAddr>) {
        self.transition(now, State::Backup, reason);
        self.adver_timer = None;
        self.master = master;
        self.lower_master_since = None;
        self.down_cause = DownCause::Silence;
        self.master_down_timer = Some(now + self.master_down_interval());
        self.actions
            .push_back(Action::RemoveAddresses(self.config.addresses.clone()));
    }

    fn transition(&mut self, now: Instant, to: State, reason: TransitionReason) {
        let from = self.state;
        self.state = to;
        self.last_transition = Some(Transition {
            from,
            to,
            reason,
            at: now,
        });
        self.actions
            .push_back(Action::StateChanged { from, to, reason });
    }

    /// An advert in answer to a received packet, unless another such
    /// packet arrived less than an advertisement interval ago: the first
    /// of a burst is answered (the sender hears us at once), the rest wait
    /// for the periodic adverts. Each answer is one the sender caused, so
    /// without the limit every received packet would make us send one.
    fn answer(&mut self, now: Instant) {
        let quiet = self
            .last_answerable
            .is_none_or(|last| now.saturating_duration_since(last) >= self.config.advert_interval);
        self.last_answerable = Some(now);
        if quiet {
            self.send_advert(now);
            // The other node held, or still holds, the addresses as master:
            // neighbours may have followed its announcements. Announcing
            // again points them back here at once instead of when their
            // entries go stale (keepalived's vrrp_garp_lower_prio_repeat).
            let announce = self.config.addresses.iter().map(|va| va.addr).collect();
            self.actions.push_back(Action::Announce(announce));
        } else {
            self.adverts_suppressed += 1;
        }
    }

    fn send_advert(&mut self, now: Instant) {
        let packet = self.advert_packet(self.effective_priority);
        self.actions.push_back(Action::SendAdvert(packet));
        self.adver_timer = Some(now + self.config.advert_interval);
    }

    fn advert_packet(&self, priority: u8) -> Packet {
        let raw = self
            .config
            .version
            .raw_interval(self.config.advert_interval)
            .expect("advert_interval is checked by Config::validate");
        Packet {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            max_advert_int: raw,
            addresses: self.config.addresses.iter().map(|va| va.addr).collect(),
            reserved: 0,
            auth_data: [0; crate::packet::V2_AUTH_DATA_LEN],
        }
    }
}

#[cfg(test)]
mod tests;
