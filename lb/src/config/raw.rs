//! The TOML as written: serde structs that mirror the file, nothing checked.
//!
//! Optional keys stay `Option` here so that validation alone decides defaults,
//! and values that validation may reject keep their [`Spanned`] location.
//! Numbers are read as `i64` so that a negative or oversized value gets a
//! located range message from validation rather than a serde type error.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub admin: Option<Spanned<RawAdmin>>,
    pub tuning: Option<Spanned<RawTuning>>,
    #[serde(default)]
    pub frontend: Vec<Spanned<RawFrontend>>,
    #[serde(default)]
    pub backend: Vec<Spanned<RawBackend>>,
    #[serde(default)]
    pub vrrp: Vec<Spanned<RawVrrp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTuning {
    pub pipe_size: Option<Spanned<i64>>,
    pub pipe_pool_max: Option<Spanned<i64>>,
    pub splice: Option<bool>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub backlog: Option<Spanned<i64>>,
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
    pub checksum: Option<Spanned<RawChecksum>>,
    pub garp_count: Option<Spanned<i64>>,
    pub garp_interval: Option<Spanned<String>>,
    pub garp_refresh: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrack {
    pub frontend: Spanned<String>,
    pub weight: Spanned<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawChecksum {
    PseudoHeader,
    MessageOnly,
}
