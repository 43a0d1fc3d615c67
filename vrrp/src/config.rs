//! The one model of a virtual router: what an instance is configured with,
//! its defaults, and every rule a configuration must meet.
//!
//! [`Config`] is what the protocol state machine needs; [`Wire`] what the
//! IO shell needs besides; [`InstanceSpec`] is both, with a name. A
//! configuration front end (such as the `[[vrrp]]` section of coexist's
//! file) starts from [`InstanceSpec::new`], which fills in the defaults,
//! overrides what its file sets, and asks [`InstanceSpec::problems`] for
//! every broken rule; each [`ConfigError`] names the [`Setting`] at fault
//! so that the front end can point at the key.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use crate::packet::{ChecksumMode, Family, Version};

/// Linux interface names are at most IFNAMSIZ - 1 bytes.
const IFNAMSIZ_MAX: usize = 15;
/// How long a backup may wait before preempting a lower-priority master.
const PREEMPT_DELAY_MAX: Duration = Duration::from_secs(1000);
/// Weights of 254 and 255 would let a tracked failure push the priority
/// to 0 or below, and 0 means "stopping" on the wire.
const TRACK_WEIGHT: (u8, u8) = (1, 253);
const GARP_COUNT_MAX: u32 = 100;
const GARP_INTERVAL_MAX: Duration = Duration::from_secs(60);
const GARP_REFRESH: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(24 * 3600));
/// The priority of the address owner (RFC 9568 §6.1): the router whose own
/// interface carries the virtual addresses.
pub const OWNER_PRIORITY: u8 = 255;

/// Whether `name` can name a Linux network interface.
pub fn is_interface_name(name: &str) -> bool {
    !(name.is_empty()
        || name.len() > IFNAMSIZ_MAX
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control()))
}

/// A virtual address with the prefix length it is added with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualAddress {
    /// The address itself.
    pub addr: IpAddr,
    /// Prefix length of the route the address is added with.
    pub prefix_len: u8,
}

impl VirtualAddress {
    /// `addr/prefix_len`.
    pub fn new(addr: IpAddr, prefix_len: u8) -> VirtualAddress {
        VirtualAddress { addr, prefix_len }
    }
}

impl fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// `"192.0.2.10/24"`, `"2001:db8::10/64"`; without a prefix, a host route
/// (/32 or /128), as keepalived does.
impl FromStr for VirtualAddress {
    type Err = AddressSyntax;

    fn from_str(text: &str) -> Result<VirtualAddress, AddressSyntax> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| AddressSyntax::NotAnAddress)?;
        let max = Family::of(addr).prefix_max();
        let prefix_len = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(AddressSyntax::PrefixLen { max }),
            },
        };
        Ok(VirtualAddress { addr, prefix_len })
    }
}

/// Why a text is not a [`VirtualAddress`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressSyntax {
    /// Not an IP address, with or without a prefix.
    #[error("not an IP address with an optional /prefix")]
    NotAnAddress,
    /// The prefix is not a number within the family's length.
    #[error("the prefix length must be 0..={max}")]
    PrefixLen {
        /// 32 or 128.
        max: u8,
    },
}

/// A tracked object: while it is down, `weight` is taken off the priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// What the object is called where its state is set
    /// ([`crate::Instance::set_track`]).
    pub name: String,
    /// Priority lost while the object is down.
    pub weight: u8,
}

/// Configuration of one virtual router (RFC 9568 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Virtual Router ID, 1..=255.
    pub vrid: u8,
    /// Protocol version; VRRPv2 is IPv4 only.
    pub version: Version,
    /// Configured priority, 1..=255; 255 means the address owner.
    pub priority: u8,
    /// Advertisement_Interval: a multiple of 10 ms up to 40.95 s in v3, of
    /// 1 s up to 255 s in v2.
    pub advert_interval: Duration,
    /// Preempt_Mode: a higher-priority backup takes over from a lower one.
    pub preempt: bool,
    /// How long a backup must keep hearing a lower-priority master before
    /// it starts preempting (keepalived's `preempt_delay`; not in the RFCs).
    pub preempt_delay: Duration,
    /// Accept_Mode (RFC 9568 §6.1): a non-owner master accepts packets to
    /// the virtual addresses ([`Config::master_accepts_virtual_traffic`]).
    /// Enforcing it is the host's packet filter's job, not the protocol's.
    pub accept_mode: bool,
    /// This router's primary address on the interface, the source of its
    /// adverts and the tie-breaker (RFC 9568 §6.1): for IPv6 its
    /// link-local address. Its family is the instance's family.
    pub primary_address: IpAddr,
    /// The virtual addresses, all of the primary address's family.
    pub addresses: Vec<VirtualAddress>,
    /// Checksum form to send for VRRPv3 over IPv4.
    pub checksum_mode: ChecksumMode,
    /// Objects whose failure lowers the priority.
    pub tracks: Vec<Track>,
}

impl Config {
    /// A configuration with the RFC defaults: VRRPv3, priority 100, 1 s
    /// interval, preempt on without delay, accept mode off, pseudo-header
    /// checksum, no tracking.
    pub fn new(vrid: u8, primary_address: IpAddr, addresses: Vec<VirtualAddress>) -> Config {
        Config {
            vrid,
            version: Version::V3,
            priority: 100,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept_mode: false,
            primary_address,
            addresses,
            checksum_mode: ChecksumMode::PseudoHeader,
            tracks: Vec::new(),
        }
    }

    /// The address family of the instance (of its primary address).
    pub fn family(&self) -> Family {
        Family::of(self.primary_address)
    }

    /// Whether this router is configured as the address owner (priority
    /// 255). Tracking may lower its effective priority; it still owns the
    /// addresses.
    pub fn is_address_owner(&self) -> bool {
        self.priority == OWNER_PRIORITY
    }

    /// Whether this router, while master, accepts packets addressed to the
    /// virtual addresses (RFC 9568 §6.4.3): the address owner always, any
    /// other router only in Accept_Mode. ARP and Neighbor Discovery for
    /// the addresses are answered either way (§6.4.3, §8.1.2, §8.2.2).
    pub fn master_accepts_virtual_traffic(&self) -> bool {
        self.accept_mode || self.is_address_owner()
    }

    /// The first rule the configuration breaks, if any.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every rule the state machine and the packet format rely on that the
    /// configuration breaks, in the order of [`Setting`].
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Problems::default();
        if self.vrid == 0 {
            out.push(Setting::Vrid, Problem::out_of_range(0, 1, 255));
        }
        let family = self.family();
        if self.version == Version::V2 && family == Family::V6 {
            out.push(Setting::Version, Problem::V2Ipv6);
        }
        if self.priority == 0 {
            out.push(Setting::Priority, Problem::out_of_range(0, 1, 255));
        }
        if self.version.raw_interval(self.advert_interval).is_none() {
            out.push(
                Setting::AdvertInterval,
                Problem::Interval {
                    interval: self.advert_interval,
                    version: self.version,
                },
            );
        }
        if self.preempt_delay > PREEMPT_DELAY_MAX {
            out.push(
                Setting::PreemptDelay,
                Problem::duration_out_of_range(
                    self.preempt_delay,
                    Duration::ZERO,
                    PREEMPT_DELAY_MAX,
                ),
            );
        }
        // Without preemption (and short of owning the addresses, which
        // preempts regardless) nothing ever waits out the delay.
        if !self.preempt && !self.preempt_delay.is_zero() && !self.is_address_owner() {
            out.push(Setting::PreemptDelay, Problem::DelayWithoutPreempt);
        }
        self.address_problems(family, &mut out);
        if self.checksum_mode != ChecksumMode::PseudoHeader
            && (self.version != Version::V3 || family != Family::V4)
        {
            out.push(Setting::Checksum, Problem::ChecksumChoice);
        }
        let mut names = BTreeSet::new();
        for (i, t) in self.tracks.iter().enumerate() {
            if !names.insert(t.name.as_str()) {
                out.push(Setting::Track(i), Problem::DuplicateTrack(t.name.clone()));
            }
            let (min, max) = TRACK_WEIGHT;
            if !(min..=max).contains(&t.weight) {
                let problem = Problem::out_of_range(t.weight.into(), min.into(), max.into());
                out.push(Setting::TrackWeight(i), problem);
            }
        }
        out.0
    }

    fn address_problems(&self, family: Family, out: &mut Problems) {
        if self.addresses.is_empty() {
            out.push(Setting::Addresses, Problem::NoAddresses);
        }
        let mut seen = BTreeSet::new();
        for (i, va) in self.addresses.iter().enumerate() {
            let problem = if !is_unicast(va.addr) {
                Some(Problem::NotUnicast(va.addr))
            } else if Family::of(va.addr) != family {
                Some(Problem::FamilyMismatch {
                    addr: va.addr,
                    family,
                })
            } else if va.prefix_len > family.prefix_max() {
                Some(Problem::PrefixLen {
                    prefix_len: va.prefix_len,
                    max: family.prefix_max(),
                })
            } else if !seen.insert(va.addr) {
                Some(Problem::Duplicate(va.addr))
            } else {
                None
            };
            if let Some(problem) = problem {
                out.push(Setting::Address(i), problem);
            }
        }
        // Every address travels in one advertisement that must fit a
        // 1500-byte frame (IPv6: 40-byte header, 8-byte VRRP header), and
        // the count field is one byte.
        let max = match family {
            Family::V4 => 255,
            Family::V6 => (1500 - 40 - 8) / 16,
        };
        if self.addresses.len() > max {
            let count = self.addresses.len();
            out.push(Setting::Addresses, Problem::TooManyAddresses { count, max });
        }
    }
}

/// Gratuitous ARP / unsolicited NA after a takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garp {
    /// How many rounds (0: none), at most 100.
    pub count: u32,
    /// Spacing of the rounds, at most 60 s.
    pub interval: Duration,
    /// Re-announce this often while master (1 s to 24 h).
    pub refresh: Option<Duration>,
}

impl Default for Garp {
    /// Five rounds 100 ms apart, no refresh.
    fn default() -> Garp {
        Garp {
            count: 5,
            interval: Duration::from_millis(100),
            refresh: None,
        }
    }
}

/// Settings of the wire layer, beside the protocol's [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wire {
    /// The interface the instance runs on (a Linux interface name).
    pub interface: String,
    /// Send adverts to these instead of the multicast group, and accept
    /// adverts only from them.
    pub unicast_peers: Vec<IpAddr>,
    /// Carry the addresses on a macvlan with the virtual router MAC
    /// (RFC 9568 §7.3).
    pub virtual_mac: bool,
    /// Run as `sh -c '<notify> "$@"' - <instance> <state> <priority>`.
    pub notify: Option<String>,
    /// Announcements after a takeover.
    pub garp: Garp,
}

impl Wire {
    /// The wire layer's defaults on `interface`: multicast, the
    /// interface's own MAC, no notify command, [`Garp::default`].
    pub fn new(interface: String) -> Wire {
        Wire {
            interface,
            ..Wire::default()
        }
    }

    fn problems(&self, family: Family, out: &mut Problems) {
        let n = &self.interface;
        if !is_interface_name(n) {
            out.push(Setting::Interface, Problem::InterfaceName(n.clone()));
        }
        let mut seen = BTreeSet::new();
        for (i, &peer) in self.unicast_peers.iter().enumerate() {
            let problem = if !is_unicast(peer) {
                Some(Problem::NotUnicast(peer))
            } else if Family::of(peer) != family {
                Some(Problem::FamilyMismatch { addr: peer, family })
            } else if !seen.insert(peer) {
                Some(Problem::Duplicate(peer))
            } else {
                None
            };
            if let Some(problem) = problem {
                out.push(Setting::UnicastPeer(i), problem);
            }
        }
        if self.notify.as_ref().is_some_and(|n| n.trim().is_empty()) {
            out.push(Setting::Notify, Problem::EmptyNotify);
        }
        let garp = &self.garp;
        if garp.count > GARP_COUNT_MAX {
            let problem = Problem::out_of_range(garp.count.into(), 0, GARP_COUNT_MAX.into());
            out.push(Setting::GarpCount, problem);
        }
        if garp.interval > GARP_INTERVAL_MAX {
            let problem =
                Problem::duration_out_of_range(garp.interval, Duration::ZERO, GARP_INTERVAL_MAX);
            out.push(Setting::GarpInterval, problem);
        }
        let (min, max) = GARP_REFRESH;
        if let Some(refresh) = garp.refresh.filter(|r| !(min..=max).contains(r)) {
            let problem = Problem::duration_out_of_range(refresh, min, max);
            out.push(Setting::GarpRefresh, problem);
        } else if garp.refresh.is_some() && garp.count == 0 {
            out.push(Setting::GarpRefresh, Problem::RefreshWithoutCount);
        }
    }
}

/// One instance to run: the protocol's [`Config`] and the [`Wire`]
/// settings, under a name. `config.primary_address` only gives the
/// family: the wire layer replaces it with the interface's primary IPv4
/// address or IPv6 link-local address (a global one when every unicast
/// peer is global), as RFC 9568 §5.1 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Label of logs, metrics and notify calls.
    pub name: String,
    /// What the state machine runs with.
    pub config: Config,
    /// What the wire layer runs with.
    pub wire: Wire,
}

impl InstanceSpec {
    /// An instance with every default ([`Config::new`], [`Wire::new`]); its
    /// family is that of the first address (IPv4 when there is none).
    pub fn new(
        name: String,
        interface: String,
        vrid: u8,
        addresses: Vec<VirtualAddress>,
    ) -> InstanceSpec {
        let placeholder = match addresses.first().map(|va| Family::of(va.addr)) {
            Some(Family::V6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        InstanceSpec {
            name,
            config: Config::new(vrid, placeholder, addresses),
            wire: Wire::new(interface),
        }
    }

    /// Every rule the instance breaks, ordered by [`Setting`].
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Problems(self.config.problems());
        self.wire.problems(self.config.family(), &mut out);
        out.0.sort_by_key(|e| e.setting);
        out.0
    }

    /// Whether `other` names the same virtual router on the same LAN
    /// (RFC 9568 §7.3): interface, VRID and family. Two of them cannot run
    /// side by side.
    pub fn same_router(&self, other: &InstanceSpec) -> bool {
        (&self.wire.interface, self.config.vrid, self.config.family())
            == (
                &other.wire.interface,
                other.config.vrid,
                other.config.family(),
            )
    }

    /// Whether a running instance can take `other` as an update in place
    /// (no transition): the same router, version and `virtual_mac`.
    /// Otherwise it must be stopped and `other` started.
    pub fn same_identity(&self, other: &InstanceSpec) -> bool {
        self.same_router(other)
            && (self.config.version, self.wire.virtual_mac)
                == (other.config.version, other.wire.virtual_mac)
    }
}

/// The setting of an instance a [`ConfigError`] is about. [`Setting::key`]
/// is its name in a configuration file, relative to the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    /// [`Wire::interface`]
    Interface,
    /// [`Config::vrid`]
    Vrid,
    /// [`Config::version`]
    Version,
    /// [`Config::priority`]
    Priority,
    /// [`Config::advert_interval`]
    AdvertInterval,
    /// [`Config::preempt_delay`]
    PreemptDelay,
    /// [`Config::addresses`] as a whole.
    Addresses,
    /// One of [`Config::addresses`], by index.
    Address(usize),
    /// One of [`Config::tracks`], by index.
    Track(usize),
    /// The weight of one of [`Config::tracks`].
    TrackWeight(usize),
    /// One of [`Wire::unicast_peers`], by index.
    UnicastPeer(usize),
    /// [`Wire::notify`]
    Notify,
    /// [`Config::checksum_mode`]
    Checksum,
    /// [`Garp::count`]
    GarpCount,
    /// [`Garp::interval`]
    GarpInterval,
    /// [`Garp::refresh`]
    GarpRefresh,
}

impl Setting {
    /// The key path of the setting within an instance's section, as
    /// coexist's `[[vrrp]]` spells it: `priority`, `addresses[2]`,
    /// `track[0].weight`.
    pub fn key(self) -> String {
        match self {
            Setting::Interface => "interface".into(),
            Setting::Vrid => "vrid".into(),
            Setting::Version => "version".into(),
            Setting::Priority => "priority".into(),
            Setting::AdvertInterval => "advert_interval".into(),
            Setting::PreemptDelay => "preempt_delay".into(),
            Setting::Addresses => "addresses".into(),
            Setting::Address(i) => format!("addresses[{i}]"),
            Setting::Track(i) => format!("track[{i}]"),
            Setting::TrackWeight(i) => format!("track[{i}].weight"),
            Setting::UnicastPeer(i) => format!("unicast_peers[{i}]"),
            Setting::Notify => "notify".into(),
            Setting::Checksum => "checksum".into(),
            Setting::GarpCount => "garp_count".into(),
            Setting::GarpInterval => "garp_interval".into(),
            Setting::GarpRefresh => "garp_refresh".into(),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A rule a configuration breaks: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// Where the problem is.
    pub setting: Setting,
    /// What the problem is.
    pub problem: Problem,
}

/// What is wrong with a [`Setting`]; the message does not repeat the
/// setting's name, so a front end can print it after its own key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A number outside its range.
    #[error("{value} is out of range {min}..={max}")]
    OutOfRange {
        /// The value set.
        value: u64,
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
    /// A duration outside its range.
    #[error("{value:?} is out of range {min:?}..={max:?}")]
    DurationOutOfRange {
        /// The value set.
        value: Duration,
        /// The least allowed.
        min: Duration,
        /// The most allowed.
        max: Duration,
    },
    /// VRRPv2 over IPv6.
    #[error("VRRP version 2 is IPv4 only (RFC 3768); use version 3 for IPv6 addresses")]
    V2Ipv6,
    /// An advertisement interval the version's field cannot carry.
    #[error("{interval:?}: {}", interval_rule(*.version))]
    Interval {
        /// The interval set.
        interval: Duration,
        /// The instance's version.
        version: Version,
    },
    /// A refresh of announcements there are none of.
    #[error("only used with garp_count above 0: there is nothing to repeat")]
    RefreshWithoutCount,
    /// A preemption delay on an instance that never preempts.
    #[error("only used with preempt = true (or priority 255): this instance never preempts")]
    DelayWithoutPreempt,
    /// No virtual address.
    #[error("needs at least one virtual address")]
    NoAddresses,
    /// More addresses than one advertisement carries.
    #[error("{count} addresses do not fit one advertisement (at most {max})")]
    TooManyAddresses {
        /// How many are configured.
        count: usize,
        /// How many fit.
        max: usize,
    },
    /// The unspecified address or a multicast address.
    #[error("{0} is not a unicast address")]
    NotUnicast(IpAddr),
    /// An address of the other family than the instance's.
    #[error("{addr} is {} but the instance's addresses are {family}; use one instance per address family", Family::of(*.addr))]
    FamilyMismatch {
        /// The address at fault.
        addr: IpAddr,
        /// The instance's family.
        family: Family,
    },
    /// A prefix longer than the family's addresses.
    #[error("prefix length {prefix_len} is longer than {max}")]
    PrefixLen {
        /// The prefix length set.
        prefix_len: u8,
        /// 32 or 128.
        max: u8,
    },
    /// An address listed twice.
    #[error("{0} is listed twice")]
    Duplicate(IpAddr),
    /// A tracked object listed twice.
    #[error("{0:?} is tracked twice")]
    DuplicateTrack(String),
    /// A checksum form other than the pseudo-header where there is no choice.
    #[error("there is a choice of checksum only for VRRPv3 over IPv4")]
    ChecksumChoice,
    /// Not a Linux interface name.
    #[error("{0:?} is not a Linux interface name (1-{IFNAMSIZ_MAX} bytes, no '/' or spaces)")]
    InterfaceName(String),
    /// An empty notify command.
    #[error("must not be empty; leave the setting out for no command")]
    EmptyNotify,
    /// The VRID or version of a running instance.
    #[error("cannot change on a running instance; create a new one")]
    IdentityChanged,
    /// The address family of a running instance.
    #[error("are of another family than the running instance's; create a new one")]
    FamilyChanged,
}

impl Problem {
    fn out_of_range(value: u64, min: u64, max: u64) -> Problem {
        Problem::OutOfRange { value, min, max }
    }

    fn duration_out_of_range(value: Duration, min: Duration, max: Duration) -> Problem {
        Problem::DurationOutOfRange { value, min, max }
    }
}

/// RFC 9568 §5.2.7 (v3): centiseconds in 12 bits. RFC 3768 §5.3.7 (v2):
/// whole seconds in 8 bits.
fn interval_rule(version: Version) -> &'static str {
    match version {
        Version::V3 => "VRRPv3 intervals are whole centiseconds from 10ms to 40.95s",
        Version::V2 => "VRRPv2 intervals are whole seconds from 1s to 255s",
    }
}

fn is_unicast(addr: IpAddr) -> bool {
    !addr.is_unspecified() && !addr.is_multicast()
}

#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn push(&mut self, setting: Setting, problem: Problem) {
        self.0.push(ConfigError { setting, problem });
    }
}

/// `"pseudo-header"` or `"message-only"`.
impl FromStr for ChecksumMode {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<ChecksumMode, UnknownName> {
        match text {
            "pseudo-header" => Ok(ChecksumMode::PseudoHeader),
            "message-only" => Ok(ChecksumMode::MessageOnly),
            _ => Err(UnknownName("pseudo-header or message-only")),
        }
    }
}

/// 2 or 3.
impl TryFrom<i64> for Version {
    type Error = UnknownName;

    fn try_from(number: i64) -> Result<Version, UnknownName> {
        match number {
            2 => Ok(Version::V2),
            3 => Ok(Version::V3),
            _ => Err(UnknownName("2 or 3")),
        }
    }
}

/// A value that is none of those a setting knows; says which they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {0}")]
pub struct UnknownName(&'static str);

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addresses: &[&str]) -> InstanceSpec {
        let addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
        InstanceSpec::new("v".into(), "eth0".into(), 51, addresses)
    }

    fn settings(spec: &InstanceSpec) -> Vec<Setting> {
        spec.problems().iter().map(|e| e.setting).collect()
    }

    #[test]
    fn defaults_are_valid_and_take_the_first_address_family() {
        let v4 = spec(&["192.0.2.10/24"]);
        assert_eq!(v4.problems(), []);
        assert_eq!(v4.config.family(), Family::V4);
        assert_eq!(v4.wire.garp, Garp::default());
        let v6 = spec(&["2001:db8::10/64"]);
        assert_eq!(v6.config.family(), Family::V6);
        assert_eq!(v6.problems(), []);
    }

    #[test]
    fn virtual_address_forms() {
        let va: VirtualAddress = "192.0.2.10/24".parse().unwrap();
        assert_eq!(va, VirtualAddress::new("192.0.2.10".parse().unwrap(), 24));
        let host: VirtualAddress = "2001:db8::1".parse().unwrap();
        assert_eq!(host.prefix_len, 128);
        assert_eq!(
            "192.0.2.10/33".parse::<VirtualAddress>(),
            Err(AddressSyntax::PrefixLen { max: 32 })
        );
        assert_eq!(
            "eth0/24".parse::<VirtualAddress>(),
            Err(AddressSyntax::NotAnAddress)
        );
    }

    // RFC 9568 §7.3 / §5.2.9: addresses of one family, unicast, once each.
    #[test]
    fn address_rules_name_the_address() {
        let mixed = spec(&[
            "192.0.2.10/24",
            "2001:db8::10/64",
            "192.0.2.10/24",
            "0.0.0.0",
        ]);
        assert_eq!(
            settings(&mixed),
            [
                Setting::Address(1),
                Setting::Address(2),
                Setting::Address(3)
            ]
        );
        let e = &mixed.problems()[0];
        assert_eq!(
            e.to_string(),
            "addresses[1]: 2001:db8::10 is IPv6 but the instance's addresses are IPv4; use one instance per address family"
        );
        assert_eq!(settings(&spec(&[])), [Setting::Addresses]);
        let many: Vec<String> = (0..91).map(|i| format!("2001:db8::{:x}", i + 1)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(settings(&spec(&many)), [Setting::Addresses]);
    }

    #[test]
    fn wire_rules() {
        let mut s = spec(&["192.0.2.10/24"]);
        s.wire.interface = "a-very-long-ifname".into();
        s.wire.unicast_peers = vec!["192.0.2.2".parse().unwrap(), "2001:db8::2".parse().unwrap()];
        s.wire.notify = Some(" ".into());
        s.wire.garp.count = 101;
        s.wire.garp.refresh = Some(Duration::from_millis(10));
        assert_eq!(
            settings(&s),
            [
                Setting::Interface,
                Setting::UnicastPeer(1),
                Setting::Notify,
                Setting::GarpCount,
                Setting::GarpRefresh
            ]
        );
    }

    // RFC 9568 §5.2.8: the checksum form is a choice for VRRPv3 over IPv4 only.
    #[test]
    fn checksum_choice_only_for_v3_over_ipv4() {
        let mut s = spec(&["2001:db8::10/64"]);
        s.config.checksum_mode = ChecksumMode::MessageOnly;
        assert_eq!(settings(&s), [Setting::Checksum]);
        let mut s = spec(&["192.0.2.10/24"]);
        s.config.checksum_mode = "message-only".parse().unwrap();
        assert_eq!(s.problems(), []);
    }

    /// `garp_refresh` repeats the `garp_count` announcements: with none,
    /// there is nothing to repeat.
    #[test]
    fn garp_refresh_needs_announcements() {
        let mut s = spec(&["192.0.2.10/24"]);
        s.wire.garp.refresh = Some(Duration::from_secs(60));
        assert_eq!(s.problems(), []);
        s.wire.garp.count = 0;
        let problems: Vec<String> = s.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            ["garp_refresh: only used with garp_count above 0: there is nothing to repeat"]
        );
        s.wire.garp.refresh = None;
        assert_eq!(s.problems(), []);
    }

    /// keepalived's `preempt_delay` postpones preemption: without it
    /// (and below the owner's priority, which always preempts) there is
    /// nothing to postpone.
    #[test]
    fn preempt_delay_needs_preemption() {
        let mut s = spec(&["192.0.2.10/24"]);
        s.config.preempt = false;
        s.config.preempt_delay = Duration::from_secs(5);
        let problems: Vec<String> = s.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            ["preempt_delay: only used with preempt = true (or priority 255): this instance never preempts"]
        );
        s.config.priority = OWNER_PRIORITY;
        assert_eq!(s.problems(), []);
        s.config.priority = 100;
        s.config.preempt = true;
        assert_eq!(s.problems(), []);
        s.config.preempt = false;
        s.config.preempt_delay = Duration::ZERO;
        assert_eq!(s.problems(), []);
    }

    #[test]
    fn track_weights_keep_the_priority_above_zero() {
        let mut s = spec(&["192.0.2.10/24"]);
        s.config.tracks = vec![
            Track {
                name: "a".into(),
                weight: 254,
            },
            Track {
                name: "a".into(),
                weight: 1,
            },
        ];
        let problems: Vec<String> = s.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "track[1]: \"a\" is tracked twice",
                "track[0].weight: 254 is out of range 1..=253"
            ]
        );
    }

    #[test]
    fn identity_is_interface_vrid_family_version_and_virtual_mac() {
        let a = spec(&["192.0.2.10/24"]);
        let mut b = a.clone();
        b.config.priority = 200;
        b.config.addresses.push("192.0.2.11/24".parse().unwrap());
        assert!(a.same_identity(&b));
        b.wire.virtual_mac = true;
        assert!(a.same_router(&b) && !a.same_identity(&b));
        let v6 = spec(&["2001:db8::10/64"]);
        assert!(
            !a.same_router(&v6),
            "the same VRID in the other family is another router"
        );
    }
}
