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

/// The server a name is resolved for, as the resolving task sees it: who
/// it is (for logs and metrics) and whether a reload removed it. A trait,
/// so that resolving does not depend on the runtime that depends on it.
pub trait NameOwner: Send + Sync + 'static {
    /// The backend's name.
    fn backend(&self) -> &str;
    /// The server's name within its backend.
    fn server_name(&self) -> String;
    /// Whether a reload removed the server.
    fn is_retired(&self) -> bool;
    /// Completes when a reload removes the server.
    fn retired(&self) -> impl std::future::Future<Output = ()> + Send + '_;
}

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

    /// The addresses in the order a connect tries them. A reload that
    /// restricted `family` applies before the next lookup does.
    pub fn ordered(&self) -> Vec<IpAddr> {
        let resolved = self.resolved.load();
        let allowed: Vec<IpAddr> = match self.family_restriction() {
            Some(only) => resolved
                .addresses
                .iter()
                .copied()
                .filter(|a| Family::of(*a) == only)
                .collect(),
            None => resolved.addresses.clone(),
        };
        order(&allowed, self.first_family())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The target of the only server of a config whose backend has `keys`.
    fn target(keys: &str, port: u16) -> NamedTarget {
        let text = format!(
            "[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:1\"]\nbackend = \"b\"\n\
             [[backend]]\nname = \"b\"\n{keys}\nservers = [{{ address = \"w.test:{port}\" }}]\n"
        );
        let config = config::parse(&text, "test").unwrap();
        let backend = &config.backends[0];
        let server = &backend.servers[0];
        NamedTarget::new(backend, server, server.address.name().unwrap())
    }

    fn resolved(addresses: &[&str]) -> Resolved {
        Resolved {
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            ..Resolved::default()
        }
    }

    #[tokio::test]
    async fn a_refused_preferred_family_hands_over_at_once_and_any_remembers_the_winner() {
        // Input: ::1 refuses, 127.0.0.1 listens, the delay is a minute.
        // Output: connected over IPv4 long before the delay; `prefer =
        // "any"` starts with IPv4 next time.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let named = target("prefer = \"any\"\nhappy_eyeballs_delay = \"10s\"", port);
        named.publish(resolved(&["::1", "127.0.0.1"]));
        assert_eq!(named.first_family(), Family::Ipv6);
        let connect = connect(&named, Duration::from_secs(60));
        let stream = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .expect("a refused attempt must not wait out the delay")
            .unwrap();
        assert!(stream.peer_addr().unwrap().is_ipv4());
        assert_eq!(named.first_family(), Family::Ipv4);
        assert_eq!(
            named.first_address(),
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        );
    }

    #[tokio::test]
    async fn a_name_without_addresses_fails_at_once_and_every_refusal_is_an_error() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let named = target("", port);
        let error = connect(&named, Duration::from_secs(60)).await.unwrap_err();
        assert!(
            error.to_string().contains("w.test has no address yet"),
            "{error}"
        );
        named.publish(resolved(&["127.0.0.1", "::1"]));
        let error = connect(&named, Duration::from_secs(60)).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
