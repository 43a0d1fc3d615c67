//! The coexist configuration being built: frontends, backends and VRRP
//! instances with only the keys coexist has, kept valid as they are added
//! (unique names, listeners that can all be bound, distinct servers and
//! virtual routers) so that the output passes `coexist check`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::tally::{Loc, Tally};

#[derive(Debug, Default)]
pub(super) struct Plan {
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    pub vrrp: Vec<Vrrp>,
    /// `[tuning] threads`, from HAProxy's `nbthread`.
    pub threads: Option<Threads>,
}

#[derive(Debug)]
pub(super) struct Threads {
    pub count: usize,
    pub origin: Origin,
}

/// Where an item came from, written above it in the output.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub at: Loc,
    /// E.g. `listen web` or `virtual_server 192.0.2.10 80`.
    pub what: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProxyVersion {
    V1,
    V2,
}

#[derive(Debug)]
pub(super) struct Frontend {
    pub name: String,
    pub origin: Origin,
    /// Each address with the directive that declared it.
    pub listen: Vec<(SocketAddr, Loc)>,
    pub backend: String,
    pub max_connections: Option<u64>,
    pub proxy_protocol: Option<ProxyVersion>,
    pub protocol: Protocol,
}

/// What a frontend listens for: TCP connections or UDP datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Balance {
    RoundRobin,
    LeastConnections,
    Maglev,
    RandomTwo,
}

#[derive(Debug)]
pub(super) struct Backend {
    pub name: String,
    pub origin: Origin,
    pub balance: Option<Balance>,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub health_check: Option<HealthCheck>,
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CheckKind {
    Tcp,
    SendExpect {
        send: String,
        expect: String,
    },
    Http {
        path: String,
        host: Option<String>,
        /// `"2xx"`, `"200-399"` or `"200"`.
        expect_status: Option<String>,
    },
    /// A DNS query over UDP; coexist's defaults (".", SOA) are keepalived's.
    Dns {
        query_name: Option<String>,
        query_type: Option<String>,
    },
    /// One datagram; healthy on a reply (starting with `expect`, if given).
    Udp {
        send: String,
        expect: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HealthCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Servers count as up before the first check (as HAProxy and
    /// keepalived start them), rather than coexist's default "down".
    pub initially_up: bool,
}

impl HealthCheck {
    /// A check within coexist's ranges: an interval of 10ms to 24h, a
    /// timeout of 1ms up to the interval, rise and fall of 1 to 1000. With
    /// it, why the interval had to move, if it did (the timeout follows the
    /// interval silently: both daemons end a check by the next one).
    pub fn within_ranges(
        kind: CheckKind,
        interval: Duration,
        timeout: Duration,
        rise: u32,
        fall: u32,
        initially_up: bool,
    ) -> (HealthCheck, Option<String>) {
        let fitted = interval.clamp(Duration::from_millis(10), Duration::from_secs(24 * 3600));
        let moved = (fitted != interval).then(|| {
            format!(
                "coexist checks every 10ms to 24h: every {}",
                super::values::duration(fitted)
            )
        });
        let check = HealthCheck {
            kind,
            interval: fitted,
            timeout: timeout.clamp(Duration::from_millis(1), fitted),
            rise: rise.clamp(1, 1000),
            fall: fall.clamp(1, 1000),
            initially_up,
        };
        (check, moved)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Server {
    pub name: String,
    pub address: SocketAddr,
    pub weight: Option<u32>,
    pub backup: bool,
    pub max_connections: Option<u64>,
    pub at: Loc,
}

#[derive(Debug)]
pub(super) struct Vrrp {
    pub name: String,
    pub origin: Origin,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub version: u8,
    pub preempt: bool,
    pub preempt_delay: Option<Duration>,
    pub accept_mode: Option<bool>,
    /// `ip/prefix` as written, all of one family.
    pub addresses: Vec<(IpAddr, u8)>,
    pub unicast_peers: Vec<IpAddr>,
    pub virtual_mac: bool,
    pub notify: Option<String>,
    pub garp_count: Option<u32>,
    pub garp_refresh: Option<Duration>,
}

impl Plan {
    pub fn runnable(&self) -> bool {
        !self.frontends.is_empty() || !self.vrrp.is_empty()
    }

    pub fn has_backend(&self, name: &str) -> bool {
        self.backends.iter().any(|b| b.name == name)
    }

    /// Adds `backend` under a name no other backend has; returns that name.
    /// Servers whose address another server of the backend already has are
    /// left out (coexist identifies a server by its address), with a note.
    pub fn add_backend(&mut self, mut backend: Backend, tally: &mut Tally) -> String {
        backend.name = unique(&backend.name, |n| self.has_backend(n));
        let mut servers: Vec<Server> = Vec::with_capacity(backend.servers.len());
        for mut s in std::mem::take(&mut backend.servers) {
            if let Some(first) = servers.iter().find(|o| o.address == s.address) {
                let reason = format!(
                    "same address as server {:?}; coexist identifies a server by its address, so one server takes both",
                    first.name
                );
                tally.not_carried(s.at, reason);
                continue;
            }
            s.name = unique(&s.name, |n| servers.iter().any(|o| o.name == n));
            servers.push(s);
        }
        backend.servers = servers;
        let name = backend.name.clone();
        self.backends.push(backend);
        name
    }

    /// Adds `frontend` under a name no other frontend has, without the
    /// addresses coexist could not bind beside those already listened on.
    /// Returns false (and adds nothing) when no address is left.
    pub fn add_frontend(&mut self, mut frontend: Frontend, tally: &mut Tally) -> bool {
        let mut kept: Vec<(SocketAddr, Loc)> = Vec::with_capacity(frontend.listen.len());
        let own = std::mem::take(&mut frontend.listen);
        for &(address, at) in &own {
            // Within one frontend, a wildcard listener takes the
            // connections of the addresses it covers: one listener.
            let covered = own
                .iter()
                .any(|(a, _)| *a != address && a.ip().is_unspecified() && overlaps(*a, address));
            if covered || kept.iter().any(|(a, _)| *a == address) {
                continue;
            }
            let clash = self
                .frontends
                .iter()
                // A TCP and a UDP socket on one port do not clash (DNS).
                .filter(|f| f.protocol == frontend.protocol)
                .flat_map(|f| f.listen.iter().map(move |(a, _)| (f.name.as_str(), *a)))
                .chain(kept.iter().map(|(a, _)| (frontend.name.as_str(), *a)))
                .find(|(_, other)| overlaps(*other, address));
            match clash {
                Some((owner, other)) => {
                    let reason = format!(
                        "{address} overlaps {other} of frontend {owner:?}; coexist cannot listen on both"
                    );
                    tally.part_not_carried(at, &address.to_string(), reason);
                }
                None => kept.push((address, at)),
            }
        }
        if kept.is_empty() {
            return false;
        }
        frontend.listen = kept;
        frontend.name = unique(&frontend.name, |n| {
            self.frontends.iter().any(|f| f.name == n)
        });
        self.frontends.push(frontend);
        true
    }

    /// Adds `vrrp` unless another instance already is this virtual router
    /// (same interface, VRID and family); returns whether it was added.
    pub fn add_vrrp(&mut self, mut vrrp: Vrrp, tally: &mut Tally) -> bool {
        let v4 = |v: &Vrrp| v.addresses.first().is_some_and(|(ip, _)| ip.is_ipv4());
        if let Some(other) = self
            .vrrp
            .iter()
            .find(|o| o.interface == vrrp.interface && o.vrid == vrrp.vrid && v4(o) == v4(&vrrp))
        {
            let reason = format!(
                "virtual router {} on {} is already instance {:?}",
                vrrp.vrid, vrrp.interface, other.name
            );
            tally.not_carried(vrrp.origin.at, reason);
            return false;
        }
        vrrp.name = unique(&vrrp.name, |n| self.vrrp.iter().any(|o| o.name == n));
        self.vrrp.push(vrrp);
        true
    }
}

/// The kernel refuses to bind two listeners of one family on one port when
/// their addresses are equal or either is the wildcard (coexist's IPv6
/// listeners are V6ONLY, so `[::]` and `0.0.0.0` coexist).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `base`, or `base-2`, `base-3`... the first that `taken` refuses.
fn unique(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|n| !taken(n))
        .expect("an unused suffix exists")
}

/// A name coexist accepts (no '/', quotes, spaces or control characters)
/// that stays recognisable: the offending characters become '-'.
pub(super) fn name(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c == '/' || c == '"' || c.is_whitespace() || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unnamed".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_acceptable_to_coexist() {
        assert_eq!(name("web"), "web");
        assert_eq!(name("a/b c"), "a-b-c");
        assert_eq!(name(""), "unnamed");
        assert_eq!(unique("web", |n| n == "web" || n == "web-2"), "web-3");
    }

    #[test]
    fn listeners_overlap_like_the_kernel_says() {
        let p = |s: &str| s.parse().unwrap();
        assert!(overlaps(p("0.0.0.0:80"), p("192.0.2.1:80")));
        assert!(!overlaps(p("0.0.0.0:80"), p("[::]:80")));
        assert!(!overlaps(p("192.0.2.1:80"), p("192.0.2.2:80")));
        assert!(!overlaps(p("192.0.2.1:80"), p("192.0.2.1:81")));
    }
}
