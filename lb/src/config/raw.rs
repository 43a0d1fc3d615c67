//! The TOML as written: serde structs that mirror the file, nothing checked.
//!
//! Optional keys stay `Option` here so that validation alone decides defaults,
//! and values that validation may reject keep their [`Spanned`] location.
//! Numbers are read as `i64` so that a negative or oversized value gets a
//! located range message from validation rather than a serde type error.
//!
//! A `[[vrrp]]` section is the vrrp crate's [`vrrp::InstanceSpec`] written
//! down: [`RawVrrp::instance`] lays its keys over that model's defaults,
//! and the model's own rules check the result. A new VRRP option is added
//! to the vrrp crate and here, nowhere else in lb.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use vrrp::{InstanceSpec, Track};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub admin: Option<Spanned<RawAdmin>>,
    pub tuning: Option<Spanned<RawTuning>>,
    pub resolver: Option<Spanned<RawResolver>>,
    #[serde(default)]
    pub frontend: Vec<Spanned<RawFrontend>>,
    #[serde(default)]
    pub backend: Vec<Spanned<RawBackend>>,
    #[serde(default)]
    pub vrrp: Vec<Spanned<RawVrrp>>,
    pub bgp: Option<Spanned<RawBgp>>,
    #[serde(default)]
    pub announce: Vec<Spanned<RawAnnounce>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub control_socket_mode: Option<Spanned<String>>,
    pub control_socket_group: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTuning {
    pub pipe_size: Option<Spanned<i64>>,
    pub pipe_pool_max: Option<Spanned<i64>>,
    pub splice: Option<bool>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub backlog: Option<Spanned<i64>>,
    pub threads: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    /// `"192.0.2.53"`, `"[2001:db8::53]:5353"`: port 53 unless written.
    #[serde(default)]
    pub servers: Vec<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub attempts: Option<Spanned<i64>>,
    pub hosts: Option<bool>,
    pub min_ttl: Option<Spanned<String>>,
    pub max_ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrontend {
    pub name: Spanned<String>,
    pub listen: Spanned<Vec<Spanned<String>>>,
    pub backend: Spanned<String>,
    pub max_connections: Option<Spanned<i64>>,
    pub proxy_protocol: Option<Spanned<RawProxyProtocol>>,
    pub protocol: Option<Spanned<RawProtocol>>,
    pub udp_idle_timeout: Option<Spanned<String>>,
    pub udp_responses: Option<Spanned<i64>>,
    pub max_sessions: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProtocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProxyProtocol {
    None,
    V1,
    V2,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub name: Spanned<String>,
    pub balance: Option<RawBalance>,
    pub maglev_table_size: Option<Spanned<i64>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    /// Defaults for the servers given by name; a server's own keys win.
    pub prefer: Option<Spanned<RawPrefer>>,
    pub family: Option<Spanned<RawFamily>>,
    pub happy_eyeballs_delay: Option<Spanned<String>>,
    /// `Option` so that a missing list is reported as "no servers" by
    /// validation, at the backend, like an empty one.
    pub servers: Option<Spanned<Vec<Spanned<RawServer>>>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawBalance {
    RoundRobin,
    LeastConnections,
    Maglev,
    RandomTwo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub kind: Option<Spanned<RawCheckKind>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub send: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    /// `200`, `"2xx"` or `"200-399"`: an integer or a string, told apart in validation.
    pub expect_status: Option<Spanned<toml::Value>>,
    pub initial_state: Option<RawInitialState>,
    /// `kind = "dns"`: the name and type asked, and the acceptable answer codes
    /// (a name like `"NOERROR"` or a list of them).
    pub query_name: Option<Spanned<String>>,
    pub query_type: Option<Spanned<String>>,
    pub expect_rcode: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawCheckKind {
    Tcp,
    SendExpect,
    Http,
    Dns,
    Udp,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawInitialState {
    Down,
    Up,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub name: Option<Spanned<String>>,
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub backup: Option<bool>,
    pub max_connections: Option<Spanned<i64>>,
    /// Only for a server given by name.
    pub prefer: Option<Spanned<RawPrefer>>,
    pub family: Option<Spanned<RawFamily>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawPrefer {
    Ipv6,
    Ipv4,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawFamily {
    Ipv4,
    Ipv6,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVrrp {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
    pub vrid: Spanned<i64>,
    pub priority: Option<Spanned<i64>>,
    pub advert_interval: Option<Spanned<String>>,
    pub version: Option<Spanned<i64>>,
    pub preempt: Option<bool>,
    pub preempt_delay: Option<Spanned<String>>,
    pub accept_mode: Option<bool>,
    pub addresses: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub track: Vec<Spanned<RawTrack>>,
    #[serde(default)]
    pub unicast_peers: Vec<Spanned<String>>,
    pub virtual_mac: Option<bool>,
    pub notify: Option<Spanned<String>>,
    pub checksum: Option<Spanned<String>>,
    pub garp_count: Option<Spanned<i64>>,
    pub garp_interval: Option<Spanned<String>>,
    pub garp_refresh: Option<Spanned<String>>,
}

/// `track = [{ frontend = "web", weight = 60 }]`: the tracked object is
/// "frontend `web` has a healthy server".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrack {
    pub frontend: Spanned<String>,
    pub weight: Spanned<i64>,
}

/// Reads raw values as the types of their settings, reporting at its
/// location each value that does not read (validation provides it).
pub(super) trait ReadValues {
    /// An integer of the setting's type.
    fn int<T: TryFrom<i64>>(&mut self, value: &Spanned<i64>) -> Option<T>;
    /// A value converted with the type's `TryFrom`.
    fn read<R, T>(&mut self, value: &Spanned<R>) -> Option<T>
    where
        R: Clone + Display,
        T: TryFrom<R>,
        T::Error: Display;
    /// A string parsed with the type's `FromStr`.
    fn parse<T>(&mut self, value: &Spanned<String>) -> Option<T>
    where
        T: FromStr,
        T::Err: Display;
    /// A duration such as `"100ms"`.
    fn read_duration(&mut self, value: &Spanned<String>) -> Option<Duration>;
}

impl RawVrrp {
    /// The instance this section describes: the vrrp crate's defaults
    /// ([`InstanceSpec::new`]) with each key the section sets laid over
    /// them. A value that cannot be read as its setting's type is reported
    /// through `ctx` and leaves the default; whether the instance is valid
    /// is [`InstanceSpec::problems`]' to say.
    pub(super) fn instance(&self, ctx: &mut impl ReadValues) -> InstanceSpec {
        let addresses = self.addresses.get_ref().iter();
        let addresses = addresses.filter_map(|a| ctx.parse(a)).collect();
        // An unreadable VRID is reported; any valid one stands in.
        let vrid = ctx.int(&self.vrid).unwrap_or(1);
        let name = self.name.get_ref().clone();
        let interface = self.interface.get_ref().clone();
        let mut spec = InstanceSpec::new(name, interface, vrid, addresses);
        let (c, w) = (&mut spec.config, &mut spec.wire);
        set(&mut c.priority, &self.priority, |v| ctx.int(v));
        set(&mut c.version, &self.version, |v| ctx.read(v));
        set(&mut c.advert_interval, &self.advert_interval, |v| {
            ctx.read_duration(v)
        });
        set(&mut c.preempt, &self.preempt, |v| Some(*v));
        set(&mut c.preempt_delay, &self.preempt_delay, |v| {
            ctx.read_duration(v)
        });
        set(&mut c.accept_mode, &self.accept_mode, |v| Some(*v));
        set(&mut c.checksum_mode, &self.checksum, |v| ctx.parse(v));
        c.tracks = (self.track.iter().map(Spanned::get_ref))
            .filter_map(|t| {
                let weight = ctx.int(&t.weight)?;
                let name = t.frontend.get_ref().clone();
                Some(Track { name, weight })
            })
            .collect();
        w.unicast_peers = (self.unicast_peers.iter())
            .filter_map(|p| ctx.parse(p))
            .collect();
        set(&mut w.virtual_mac, &self.virtual_mac, |v| Some(*v));
        set(&mut w.notify, &self.notify, |v| {
            Some(Some(v.get_ref().clone()))
        });
        set(&mut w.garp.count, &self.garp_count, |v| ctx.int(v));
        set(&mut w.garp.interval, &self.garp_interval, |v| {
            ctx.read_duration(v)
        });
        set(&mut w.garp.refresh, &self.garp_refresh, |v| {
            ctx.read_duration(v).map(Some)
        });
        spec
    }
}

/// Overwrites `slot` with what `read` makes of the raw value, if the file
/// has one and it reads.
fn set<R, T>(slot: &mut T, raw: &Option<R>, read: impl FnOnce(&R) -> Option<T>) {
    if let Some(value) = raw.as_ref().and_then(read) {
        *slot = value;
    }
}

/// `[bgp]`: how this node announces its `[[announce]]` groups.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBgp {
    pub engine: Option<Spanned<RawEngine>>,
    pub control_socket: Option<Spanned<String>>,
    pub announce_after: Option<Spanned<String>>,
    pub withdraw_settle: Option<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawEngine {
    Bird,
}

/// `[[announce]]`: host routes announced while the tracked frontends can serve.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnnounce {
    pub name: Spanned<String>,
    pub prefixes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub track: Vec<Spanned<RawAnnounceTrack>>,
}

/// `track = [{ frontend = "web" }]`: withdraw while "web" has no usable server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnnounceTrack {
    pub frontend: Spanned<String>,
}
