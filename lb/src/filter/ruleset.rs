//! What the packet filter holds for `accept_mode`, computed from the
//! configuration alone, and the nft script that puts it in place.
//!
//! The rules name every virtual address of the instances that must refuse
//! traffic as master (RFC 9568 §6.4.3: not the address owner, and
//! `accept_mode = false`), whatever the instances' states. They need not
//! follow the state: the kernel's input hook only sees packets it delivers
//! locally, and it delivers a packet to a virtual address only while the
//! node holds that address, that is while the instance is master. So a
//! backup's copy of the rules matches nothing, and a takeover finds them in
//! place before the first packet arrives: no window in which a new master
//! holds an address unfiltered, and no `nft` run on the takeover path.
//!
//! To such an address the node accepts:
//! - the frontends' ports (TCP and UDP, on that address or on a wildcard of
//!   its family): a load balancer serves its frontends in any case;
//! - ICMP errors (destination unreachable, time exceeded, parameter
//!   problem, and for IPv6 packet too big), without which path MTU
//!   discovery of the frontends' connections fails;
//! - IPv6 Neighbor Solicitations and Advertisements (RFC 9568 §6.4.3:
//!   the master answers Neighbor Discovery for its addresses);
//! - IPv6 fragments after the first: the first carries the port and is
//!   checked, and the kernel reassembles nothing without it (IPv4 is
//!   reassembled before the input hook).
//!
//! - whatever the node sends itself (through `lo`): the rule is about what
//!   the network delivers, and local monitoring of the address keeps working.
//!
//! Everything else addressed to it is dropped (and counted). ARP is not IP
//! and never reaches an `inet` table; VRRP adverts go to the multicast
//! group or to the peers' own addresses, never to a virtual address;
//! outgoing packets are not filtered.

use std::collections::BTreeSet;
use std::fmt::{self, Write};
use std::net::{IpAddr, SocketAddr};

use crate::config::{Config, Frontend};

/// The table coexist owns, as `nft` names it; nothing else goes in it.
pub const TABLE: &str = "inet coexist";

/// The transport protocol of a frontend port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    /// The name `nft` gives the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// A port a frontend serves on a filtered virtual address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Service {
    pub address: IpAddr,
    pub transport: Transport,
    pub port: u16,
}

/// `10.0.0.10 tcp/80`
impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Service {
            address,
            transport,
            port,
        } = self;
        write!(f, "{address} {}/{port}", transport.as_str())
    }
}

/// The rules: which virtual addresses refuse traffic, and which of their
/// ports stay open. Empty: no table at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    refused: BTreeSet<IpAddr>,
    open: BTreeSet<Service>,
}

impl Ruleset {
    /// The rules `config` asks for.
    pub fn for_config(config: &Config) -> Ruleset {
        let (refused, _) = addresses(config);
        Ruleset::with_frontends(refused, &config.frontends)
    }

    /// The rules while a reload from `old` to `new` is carried out: those
    /// of `new`, plus the addresses `old` refused that `new` does not
    /// accept, which the VRRP instances may still hold until they have
    /// applied the reload (an address removed from an instance, an instance
    /// removed). Ports are those of `new`: its listeners are in place.
    pub fn for_reload(old: &Config, new: &Config) -> Ruleset {
        let (mut refused, accepted) = addresses(new);
        let (was_refused, _) = addresses(old);
        refused.extend(was_refused.difference(&accepted));
        Ruleset::with_frontends(refused, &new.frontends)
    }

    fn with_frontends(refused: BTreeSet<IpAddr>, frontends: &[Frontend]) -> Ruleset {
        let mut open = BTreeSet::new();
        for frontend in frontends {
            let transport = if frontend.is_tcp() {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            // Port 0 asks the kernel for a fresh port: nobody can know it
            // as a service of the virtual address.
            let listeners = frontend.listen.iter().filter(|l| l.port() != 0);
            for listen in listeners {
                for &address in refused.iter().filter(|&&a| serves(*listen, a)) {
                    open.insert(Service {
                        address,
                        transport,
                        port: listen.port(),
                    });
                }
            }
        }
        Ruleset { refused, open }
    }

    /// No address to filter: the table is not needed.
    pub fn is_empty(&self) -> bool {
        self.refused.is_empty()
    }

    /// The virtual addresses that refuse all but their frontends' traffic.
    pub fn refused(&self) -> impl Iterator<Item = &IpAddr> {
        self.refused.iter()
    }

    /// The frontends' ports on them.
    pub fn open(&self) -> impl Iterator<Item = &Service> {
        self.open.iter()
    }

    /// An `nft -f` script that makes the kernel's table exactly this, in
    /// one transaction: whatever table of that name exists (a crashed
    /// run's included) is replaced, or removed when the ruleset is empty.
    pub fn script(&self) -> String {
        let mut out = String::new();
        // `add` makes sure there is a table to delete; the kernel applies
        // the three commands at once or not at all.
        let _ = writeln!(out, "add table {TABLE}\ndelete table {TABLE}");
        if self.is_empty() {
            return out;
        }
        let families: Vec<Family> = [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| self.refused.iter().any(|a| f.holds(*a)))
            .collect();
        let _ = writeln!(out, "table {TABLE} {{");
        let _ = writeln!(
            out,
            "\tcomment \"managed by coexist: VRRP accept_mode = false (RFC 9568 6.4.3)\""
        );
        for f in &families {
            let n = f.number();
            let refused = self.refused.iter().filter(|a| f.holds(**a));
            set(&mut out, &format!("refused{n}"), f.addr_type(), refused);
            let open = (self.open.iter().filter(|s| f.holds(s.address)))
                .map(|s| format!("{} . {} . {}", s.address, s.transport.as_str(), s.port));
            let typ = format!("{} . inet_proto . inet_service", f.addr_type());
            set(&mut out, &format!("open{n}"), &typ, open);
        }
        let _ = writeln!(out, "\tchain input {{");
        let _ = writeln!(
            out,
            "\t\ttype filter hook input priority -10; policy accept;"
        );
        let _ = writeln!(out, "\t\tiif \"lo\" accept");
        for f in &families {
            let (n, ip) = (f.number(), f.keyword());
            let _ = writeln!(out, "\t\t{ip} daddr @refused{n} jump refused{n}");
        }
        let _ = writeln!(out, "\t}}");
        for f in &families {
            let (n, ip) = (f.number(), f.keyword());
            let _ = writeln!(out, "\tchain refused{n} {{");
            let _ = writeln!(
                out,
                "\t\t{ip} daddr . meta l4proto . th dport @open{n} accept"
            );
            let _ = writeln!(out, "\t\t{} accept", f.icmp_kept());
            if *f == Family::V6 {
                let _ = writeln!(out, "\t\tfrag frag-off != 0 accept");
            }
            let _ = writeln!(out, "\t\tcounter drop");
            let _ = writeln!(out, "\t}}");
        }
        let _ = writeln!(out, "}}");
        out
    }
}

/// The addresses whose instances refuse traffic as master, less those
/// some other instance accepts, and the addresses accepted.
fn addresses(config: &Config) -> (BTreeSet<IpAddr>, BTreeSet<IpAddr>) {
    let (mut refused, mut accepted) = (BTreeSet::new(), BTreeSet::new());
    for spec in &config.vrrp {
        let into = if spec.config.master_accepts_virtual_traffic() {
            &mut accepted
        } else {
            &mut refused
        };
        into.extend(spec.config.addresses.iter().map(|va| va.addr));
    }
    let refused = refused.difference(&accepted).copied().collect();
    (refused, accepted)
}

/// Whether a listener on `listen` takes packets to `address`. IPv6
/// listeners are V6ONLY, so a wildcard serves its own family only.
fn serves(listen: SocketAddr, address: IpAddr) -> bool {
    listen.ip() == address
        || (listen.ip().is_unspecified() && listen.is_ipv4() == address.is_ipv4())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn holds(self, address: IpAddr) -> bool {
        address.is_ipv4() == (self == Family::V4)
    }

    fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    fn keyword(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    /// The ICMP the virtual address keeps taking (see the module's notes).
    fn icmp_kept(self) -> &'static str {
        match self {
            Family::V4 => {
                "icmp type { destination-unreachable, time-exceeded, parameter-problem }"
            }
            Family::V6 => {
                "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-neighbor-solicit, nd-neighbor-advert }"
            }
        }
    }
}

/// A named set; `elements` written only when there are some (nft refuses
/// an empty element list).
fn set(out: &mut String, name: &str, typ: &str, elements: impl Iterator<Item = impl fmt::Display>) {
    let elements: Vec<String> = elements.map(|e| e.to_string()).collect();
    let _ = writeln!(out, "\tset {name} {{");
    let _ = writeln!(out, "\t\ttype {typ}");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(out, "\t}}");
}

#[cfg(test)]
mod tests;
