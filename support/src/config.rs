//! A coexist configuration built in code, written out as the TOML file the
//! daemon reads: tests and the lab say which keys they set, with typed
//! values, instead of formatting TOML by hand.
//!
//! Keys left `None` (or lists left empty) are not written, so the daemon's
//! defaults apply. Enumerated values (`balance`, `kind`, `checksum`, ...)
//! are the strings the file uses.
//!
//! ```
//! use coexist_support::config::{Backend, Config, Frontend, Server};
//!
//! let server = "127.0.0.1:8001".parse().unwrap();
//! let config = Config {
//!     frontends: vec![Frontend::new("web", ["127.0.0.1:8080".parse().unwrap()], "pool")],
//!     backends: vec![Backend::new("pool", [Server::named("s1", server)])],
//!     ..Config::without_admin()
//! };
//! assert!(config.to_toml().contains("[[frontend]]"));
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A whole file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
    #[serde(rename = "frontend", skip_serializing_if = "Vec::is_empty")]
    pub frontends: Vec<Frontend>,
    #[serde(rename = "backend", skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vrrp: Vec<Vrrp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bgp: Option<Bgp>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub announce: Vec<Announce>,
}

impl Config {
    /// A file whose admin endpoint listens on `address`.
    pub fn with_admin(address: SocketAddr) -> Config {
        Config {
            admin: Some(Admin {
                listen: address.to_string(),
                ..Admin::default()
            }),
            ..Config::default()
        }
    }

    /// A file with the admin endpoint turned off (`listen = ""`).
    pub fn without_admin() -> Config {
        Config {
            admin: Some(Admin {
                listen: String::new(),
                ..Admin::default()
            }),
            ..Config::default()
        }
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serializes")
    }
}

/// `[admin]`
#[derive(Debug, Clone, Default, Serialize)]
pub struct Admin {
    /// An address, or empty for no endpoint.
    pub listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_socket: Option<std::path::PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<std::path::PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub request_timeout: Option<Duration>,
}

/// `[tuning]`
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tuning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipe_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipe_pool_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub splice: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub shutdown_grace: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

/// `[[frontend]]`
#[derive(Debug, Clone, Serialize)]
pub struct Frontend {
    pub name: String,
    pub listen: Vec<SocketAddr>,
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// `"none"`, `"v1"` or `"v2"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<String>,
    /// `"tcp"` or `"udp"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub udp_idle_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_responses: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u64>,
}

impl Frontend {
    pub fn new(
        name: &str,
        listen: impl IntoIterator<Item = SocketAddr>,
        backend: &str,
    ) -> Frontend {
        Frontend {
            name: name.to_owned(),
            listen: listen.into_iter().collect(),
            backend: backend.to_owned(),
            max_connections: None,
            proxy_protocol: None,
            protocol: None,
            udp_idle_timeout: None,
            udp_responses: None,
            max_sessions: None,
        }
    }

    /// A UDP frontend (`protocol = "udp"`) with the daemon's defaults.
    pub fn udp(
        name: &str,
        listen: impl IntoIterator<Item = SocketAddr>,
        backend: &str,
    ) -> Frontend {
        Frontend {
            protocol: Some("udp".to_owned()),
            ..Frontend::new(name, listen, backend)
        }
    }
}

/// `[[backend]]`
#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    pub name: String,
    /// `"round-robin"`, `"least-connections"`, `"maglev"`, `"random-two"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maglev_table_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub connect_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub idle_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    pub servers: Vec<Server>,
}

impl Backend {
    pub fn new(name: &str, servers: impl IntoIterator<Item = Server>) -> Backend {
        Backend {
            name: name.to_owned(),
            balance: None,
            maglev_table_size: None,
            connect_timeout: None,
            idle_timeout: None,
            retries: None,
            health_check: None,
            servers: servers.into_iter().collect(),
        }
    }
}

/// A backend's `health_check` table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthCheck {
    /// `"tcp"`, `"send-expect"`, `"http"`, `"dns"` or `"udp"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `"2xx"`, `"200-399"` or `"204"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<String>,
    /// `"down"` or `"up"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<String>,
    /// `kind = "dns"`: the name and type asked, and the answer code
    /// expected (`"NOERROR"`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_rcode: Option<String>,
}

impl HealthCheck {
    /// A check of `kind` every `interval`, given up after `timeout`,
    /// `rise` and `fall` in a row to change state.
    pub fn every(kind: &str, interval: Duration, timeout: Duration, rise: u32, fall: u32) -> Self {
        HealthCheck {
            kind: Some(kind.to_owned()),
            interval: Some(interval),
            timeout: Some(timeout),
            rise: Some(rise),
            fall: Some(fall),
            ..HealthCheck::default()
        }
    }
}

/// One of a backend's `servers`.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub address: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
}

impl Server {
    pub fn named(name: &str, address: SocketAddr) -> Server {
        Server {
            name: Some(name.to_owned()),
            address,
            weight: None,
            backup: None,
            max_connections: None,
        }
    }

    /// A server named after its address.
    pub fn at(address: SocketAddr) -> Server {
        Server {
            name: None,
            ..Server::named("", address)
        }
    }

    pub fn weight(self, weight: u32) -> Server {
        Server {
            weight: Some(weight),
            ..self
        }
    }
}

/// `[[vrrp]]`
#[derive(Debug, Clone, Serialize)]
pub struct Vrrp {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub advert_interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preempt: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub preempt_delay: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_mode: Option<bool>,
    /// `"192.0.2.10/24"`; without a prefix, a host route.
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub track: Vec<Track>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unicast_peers: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_mac: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// `"pseudo-header"` or `"message-only"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub garp_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub garp_interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub garp_refresh: Option<Duration>,
}

impl Vrrp {
    pub fn new(name: &str, interface: &str, vrid: u8, addresses: &[&str]) -> Vrrp {
        Vrrp {
            name: name.to_owned(),
            interface: interface.to_owned(),
            vrid,
            priority: None,
            advert_interval: None,
            version: None,
            preempt: None,
            preempt_delay: None,
            accept_mode: None,
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            track: Vec::new(),
            unicast_peers: Vec::new(),
            virtual_mac: None,
            notify: None,
            checksum: None,
            garp_count: None,
            garp_interval: None,
            garp_refresh: None,
        }
    }
}

/// `track = [{ frontend = "web", weight = 60 }]`
#[derive(Debug, Clone, Serialize)]
pub struct Track {
    pub frontend: String,
    pub weight: u8,
}

/// `[bgp]`
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bgp {
    /// `"bird"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_socket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub announce_after: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub withdraw_settle: Option<Duration>,
    /// The TUN device the announced routes point at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// `[[announce]]`
#[derive(Debug, Clone, Serialize)]
pub struct Announce {
    pub name: String,
    /// `"192.0.2.10/32"`, `"2001:db8::10"`.
    pub prefixes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub track: Vec<AnnounceTrack>,
}

/// `track = [{ frontend = "web" }]` of an `[[announce]]` group.
#[derive(Debug, Clone, Serialize)]
pub struct AnnounceTrack {
    pub frontend: String,
}

/// `"200ms"`, `"2s"`: a duration as the file writes it.
fn duration<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_str(&humantime::format_duration(*d).to_string()),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_left_out_are_not_written_and_durations_read_as_written() {
        let a: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        let config = Config {
            tuning: Some(Tuning {
                shutdown_grace: Some(Duration::from_millis(1500)),
                ..Tuning::default()
            }),
            frontends: vec![Frontend::new("web", [a], "pool")],
            backends: vec![Backend {
                health_check: Some(HealthCheck::every(
                    "tcp",
                    Duration::from_millis(200),
                    Duration::from_millis(100),
                    1,
                    1,
                )),
                ..Backend::new("pool", [Server::named("s1", a).weight(3)])
            }],
            vrrp: vec![Vrrp {
                track: vec![Track {
                    frontend: "web".into(),
                    weight: 60,
                }],
                ..Vrrp::new("v", "eth0", 51, &["192.0.2.10/24"])
            }],
            ..Config::without_admin()
        };
        let text = config.to_toml();
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["admin"]["listen"].as_str(), Some(""));
        assert_eq!(
            parsed["tuning"]["shutdown_grace"].as_str(),
            Some("1s 500ms")
        );
        assert!(parsed["tuning"].get("backlog").is_none(), "{text}");
        let backend = &parsed["backend"][0];
        assert_eq!(backend["health_check"]["interval"].as_str(), Some("200ms"));
        assert_eq!(backend["servers"][0]["weight"].as_integer(), Some(3));
        assert!(backend.get("balance").is_none());
        assert_eq!(
            parsed["vrrp"][0]["track"][0]["weight"].as_integer(),
            Some(60)
        );
    }
}
