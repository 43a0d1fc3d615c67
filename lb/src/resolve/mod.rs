//! Servers given by name: their addresses, kept fresh by a resolver task,
//! and the Happy Eyeballs connect that races their address families.
//!
//! Servers given by address never come here: their connect path does no
//! resolver work at all.

mod eyeballs;
mod refresh;
mod shell;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use metrics::{counter, Counter};

use crate::config::{self, Family, NamedAddress, Prefer};
use crate::metrics as m;

pub use eyeballs::{order, Attempts};
pub use refresh::{Bounds, Outcome, Resolution};
pub use shell::{connect, spawn};

/// What a connect to a named server follows; a reload may change it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    prefer: Prefer,
    family: Option<Family>,
    delay: Duration,
}

/// The addresses a name has now, as the resolver task last published them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The last good answer (sorted); kept while lookups fail.
    pub addresses: Vec<IpAddr>,
    /// When that answer's TTL (bounded by `min_ttl`/`max_ttl`) ends.
    pub expires: Option<Instant>,
    /// The last lookup's error, if it failed.
    pub error: Option<String>,
}

/// A server given by name: shared by its resolver task, its connects, its
/// checks and `/status`.
#[derive(Debug)]
pub struct NamedTarget {
    pub host: String,
    pub port: u16,
    settings: ArcSwap<Settings>,
    resolved: ArcSwap<Resolved>,
    /// The family of the last connect that won, for `prefer = "any"`.
    last_winner: AtomicU8,
    wins: ArcSwap<[Counter; 2]>,
}

const NO_WINNER: u8 = 0;

impl NamedTarget {
    pub(crate) fn new(
        backend: &config::Backend,
        server: &config::Server,
        named: &NamedAddress,
    ) -> Self {
        Self {
            host: named.host.clone(),
            port: named.port,
            settings: ArcSwap::from_pointee(Settings::of(backend, named)),
            resolved: ArcSwap::default(),
            last_winner: AtomicU8::new(NO_WINNER),
            wins: ArcSwap::from_pointee(wins(&backend.name, &server.name)),
        }
    }

    /// A reload kept the server (same name and port): its settings may
    /// have changed, its resolved addresses stay.
    pub(crate) fn reconfigure(
        &self,
        backend: &config::Backend,
        server: &config::Server,
        named: &NamedAddress,
    ) {
        self.settings.store(Arc::new(Settings::of(backend, named)));
        self.wins.store(Arc::new(wins(&backend.name, &server.name)));
    }

    pub fn resolved(&self) -> Arc<Resolved> {
        self.resolved.load_full()
    }

    fn publish(&self, resolved: Resolved) {
        self.resolved.store(Arc::new(resolved));
    }

    fn family_restriction(&self) -> Option<Family> {
        self.settings.load().family
    }

    /// The family tried first: the preferred one, or with `prefer =
    /// "any"` the one that won last (IPv6 before any connect).
    pub fn first_family(&self) -> Family {
        match self.settings.load().prefer {
            Prefer::Family(family) => family,
            Prefer::Any => match self.last_winner.load(Ordering::Relaxed) {
                4 => Family::Ipv4,
                _ => Family::Ipv6,
            },
        }
    }

    /// The addresses in the order a connect tries them.
    pub fn ordered(&self) -> Vec<IpAddr> {
        order(&self.resolved.load().addresses, self.first_family())
    }

    /// Where a health check or a UDP session goes: the first address a
    /// connect would try.
    pub fn first_address(&self) -> Option<SocketAddr> {
        let first = self.ordered().into_iter().next()?;
        Some(SocketAddr::new(first, self.port))
    }

    fn delay(&self) -> Duration {
        self.settings.load().delay
    }

    fn won(&self, family: Family) {
        let (code, index) = match family {
            Family::Ipv4 => (4, 0),
            Family::Ipv6 => (6, 1),
        };
        self.last_winner.store(code, Ordering::Relaxed);
        self.wins.load()[index].increment(1);
    }
}

impl Settings {
    fn of(backend: &config::Backend, named: &NamedAddress) -> Self {
        Self {
            prefer: named.prefer,
            family: named.family,
            delay: backend.happy_eyeballs_delay,
        }
    }
}

fn wins(backend: &str, server: &str) -> [Counter; 2] {
    [Family::Ipv4, Family::Ipv6].map(|family| {
        counter!(
            m::SERVER_CONNECTS_BY_FAMILY_TOTAL,
            "backend" => backend.to_owned(),
            "server" => server.to_owned(),
            "family" => family.as_str()
        )
    })
}
