//! What every proxy under test is given, and how it is started.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;

use crate::child::Child;

/// One TCP forwarding rule: accept on `listen`, spread connections over
/// `servers` round robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// A short identifier usable as a section name in every config format.
    pub name: &'static str,
    pub listen: SocketAddr,
    pub servers: Vec<SocketAddr>,
}

/// Every open connection costs a proxy two descriptors (client and server
/// side). The largest test holds 7,500 connections open; HAProxy's limit
/// leaves room for them and for its splice pipes (see `haproxy::MAX_PIPES`).
pub const PROXY_MAX_CONNECTIONS: u32 = 8_000;

/// One UDP forwarding rule: sessions from clients on `listen` spread over
/// `servers` round robin, each ended by `responses` replies per datagram
/// (`None`: by idling only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpRoute {
    pub name: &'static str,
    pub listen: SocketAddr,
    pub servers: Vec<SocketAddr>,
    pub responses: Option<u32>,
}

/// Two routes for the config tests: "dns" (one reply per session, two
/// servers) on 127.0.0.1:23020 and "flows" (long sessions) on :23021.
#[cfg(test)]
pub fn sample_udp_routes() -> [UdpRoute; 2] {
    [
        UdpRoute {
            name: "dns",
            listen: "127.0.0.1:23020".parse().unwrap(),
            servers: vec![
                "[::1]:23005".parse().unwrap(),
                "[::1]:23006".parse().unwrap(),
            ],
            responses: Some(1),
        },
        UdpRoute {
            name: "flows",
            listen: "127.0.0.1:23021".parse().unwrap(),
            servers: vec!["[::1]:23005".parse().unwrap()],
            responses: None,
        },
    ]
}

/// Seconds a UDP session may idle in every proxy (coexist's default).
pub const UDP_IDLE_SECONDS: u32 = 30;

/// A TCP proxy the bench can start in front of the backends.
pub trait Proxy {
    /// Name in the table and JSON.
    fn name(&self) -> &str;
    /// Why this proxy cannot run here (not installed, not built), if so.
    fn unavailable(&self) -> Option<String>;
    /// Writes its configuration under `dir`, starts it pinned to `cpu`, and
    /// returns once every route is listening.
    fn start(&self, routes: &[Route], dir: &Path, cpu: Option<usize>) -> Result<Child>;
    /// Why it cannot forward UDP, if so.
    fn udp_unavailable(&self) -> Option<String> {
        Some(format!("{} does not forward UDP", self.name()))
    }
    /// Like [`Proxy::start`], with UDP routes only; returns once it has
    /// started (the caller probes the routes).
    fn start_udp(&self, routes: &[UdpRoute], dir: &Path, cpu: Option<usize>) -> Result<Child> {
        let _ = (routes, dir, cpu);
        anyhow::bail!("{} does not forward UDP", self.name())
    }
}
