//! What one virtual router is configured with, checked before use.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::packet::{ChecksumMode, Family, Version};

/// A virtual address with the prefix length it is added with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualAddress {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl VirtualAddress {
    pub fn new(addr: IpAddr, prefix_len: u8) -> VirtualAddress {
        VirtualAddress { addr, prefix_len }
    }
}

/// A tracked object: while it is down, `weight` is taken off the priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub name: String,
    pub weight: u8,
}

/// Configuration of one virtual router (RFC 9568 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Virtual Router ID, 1..=255.
    pub vrid: u8,
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
    /// the virtual addresses. Read by the wire layer.
    pub accept_mode: bool,
    /// This router's primary address on the interface, the source of its
    /// adverts and the tie-breaker (RFC 9568 §6.1): for IPv6 its
    /// link-local address. Its family is the instance's family.
    pub primary_address: IpAddr,
    /// The virtual addresses, all of the primary address's family.
    pub addresses: Vec<VirtualAddress>,
    /// Checksum form to send for VRRPv3 over IPv4.
    pub checksum_mode: ChecksumMode,
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

    pub fn family(&self) -> Family {
        Family::of(self.primary_address)
    }

    /// Check every rule the state machine and the packet format rely on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::VridZero);
        }
        if self.priority == 0 {
            return Err(ConfigError::PriorityZero);
        }
        let family = self.family();
        if self.version == Version::V2 && family == Family::V6 {
            return Err(ConfigError::V2Ipv6);
        }
        if self.version.raw_interval(self.advert_interval).is_none() {
            return Err(ConfigError::Interval {
                interval: self.advert_interval,
                version: self.version,
            });
        }
        match self.addresses.len() {
            0 => return Err(ConfigError::NoAddresses),
            n if n > 255 => return Err(ConfigError::TooManyAddresses(n)),
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for va in &self.addresses {
            if Family::of(va.addr) != family {
                return Err(ConfigError::AddressFamily {
                    addr: va.addr,
                    primary: self.primary_address,
                });
            }
            let max = match family {
                Family::V4 => 32,
                Family::V6 => 128,
            };
            if va.prefix_len > max {
                return Err(ConfigError::PrefixLen {
                    addr: va.addr,
                    prefix_len: va.prefix_len,
                });
            }
            if !seen.insert(va.addr) {
                return Err(ConfigError::DuplicateAddress(va.addr));
            }
        }
        let mut names = BTreeSet::new();
        for t in &self.tracks {
            if !names.insert(t.name.as_str()) {
                return Err(ConfigError::DuplicateTrack(t.name.clone()));
            }
        }
        Ok(())
    }
}

/// Why a [`Config`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("vrid 0 is not valid (1..=255)")]
    VridZero,
    #[error("priority 0 is reserved for a master that stops (1..=255)")]
    PriorityZero,
    #[error("VRRPv2 is IPv4 only")]
    V2Ipv6,
    #[error("advert interval {interval:?} is not a whole number of {version:?} units within range (v3: 10ms..=40.95s in 10 ms steps, v2: 1..=255 s)")]
    Interval {
        interval: Duration,
        version: Version,
    },
    #[error("no virtual address")]
    NoAddresses,
    #[error("{0} virtual addresses, at most 255 fit an advertisement")]
    TooManyAddresses(usize),
    #[error("virtual address {addr} is not of the family of primary address {primary}")]
    AddressFamily { addr: IpAddr, primary: IpAddr },
    #[error("virtual address {addr}: prefix length {prefix_len} too long")]
    PrefixLen { addr: IpAddr, prefix_len: u8 },
    #[error("virtual address {0} listed twice")]
    DuplicateAddress(IpAddr),
    #[error("tracked object {0:?} listed twice")]
    DuplicateTrack(String),
    #[error("{0} cannot change on a running instance; create a new one")]
    IdentityChanged(&'static str),
}
