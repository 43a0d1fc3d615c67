//! Metric names, in one place so the contract in DESIGN.md is easy to audit.
//!
//! Everything is recorded through the `metrics` facade; the daemon installs
//! [`MetricsHandle`]'s recorder, which `/metrics` renders and which every
//! reload rids of the series of the objects it removed ([`LiveObjects`]).

mod histogram;
mod live;
mod recorder;

pub use live::LiveObjects;
pub use recorder::{MetricsHandle, Recorder};

/// Connections accepted, by `frontend`.
pub const CONNECTIONS_TOTAL: &str = "lb_connections_total";
/// Connections open now, by `frontend`.
pub const ACTIVE_CONNECTIONS: &str = "lb_active_connections";
/// Connections refused because no server could take them, by `frontend` and `reason`.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "lb_connections_refused_total";
/// Bytes delivered, by `backend`, `server` and `direction` (`to_server` / `to_client`).
pub const BYTES_TOTAL: &str = "lb_bytes_total";
/// 1 while a server takes new connections, by `backend` and `server`.
pub const SERVER_UP: &str = "lb_server_up";
/// Connections sent to a server, by `backend` and `server`.
pub const SERVER_CONNECTIONS_TOTAL: &str = "lb_server_connections_total";
/// Connections open to a server now, by `backend` and `server`.
pub const SERVER_ACTIVE_CONNECTIONS: &str = "lb_server_active_connections";
/// Failed connects to a server (refused, timed out, unreachable), by `backend` and `server`.
pub const CONNECT_ERRORS_TOTAL: &str = "lb_connect_errors_total";
/// Active check results, by `backend`, `server` and `result` (`ok` / `failed`).
pub const HEALTH_CHECKS_TOTAL: &str = "lb_health_checks_total";
/// Server state changes, by `backend`, `server` and new `state`.
pub const SERVER_TRANSITIONS_TOTAL: &str = "lb_server_transitions_total";
/// Config reloads, by `result` (`ok` / `error`).
pub const CONFIG_RELOADS_TOTAL: &str = "lb_config_reloads_total";
/// Accept errors (EMFILE and the like), by `frontend`.
pub const ACCEPT_ERRORS_TOTAL: &str = "lb_accept_errors_total";
/// TCP clients accepted by each data-plane thread, by `shard` (0 to one
/// less than the cores; `0` alone on one core): how evenly the cores share
/// the load.
pub const SHARD_CONNECTIONS_TOTAL: &str = "lb_shard_connections_total";
/// The process's descriptor limit (soft RLIMIT_NOFILE).
pub const PROCESS_MAX_FDS: &str = "lb_process_max_fds";
/// Proxied connections the process holds at most, derived from its
/// descriptor limit; the accept loops stop taking clients there.
pub const PROCESS_MAX_CONNECTIONS: &str = "lb_process_max_connections";
/// Times an accept loop found the process at its connection ceiling and
/// left clients waiting in the backlog.
pub const PROCESS_LIMIT_REACHED_TOTAL: &str = "lb_process_limit_reached_total";
/// Failures of the process's own resources (EMFILE, ENFILE, ENOBUFS,
/// ENOMEM, EADDRNOTAVAIL), by `operation` (`accept`, `connect`, `check`)
/// and `error`; they never count against a server.
pub const LOCAL_ERRORS_TOTAL: &str = "lb_local_errors_total";
/// Seconds to connect to a server, by `backend`.
pub const CONNECT_DURATION_SECONDS: &str = "lb_connect_duration_seconds";
/// Seconds a proxied connection lasted, by `frontend`.
pub const CONNECTION_DURATION_SECONDS: &str = "lb_connection_duration_seconds";
/// UDP sessions open now, by `frontend`.
pub const UDP_SESSIONS_ACTIVE: &str = "lb_udp_sessions_active";
/// UDP sessions opened, by `frontend`.
pub const UDP_SESSIONS_TOTAL: &str = "lb_udp_sessions_total";
/// UDP sessions ended, by `frontend` and `reason` (`idle`, `responses`,
/// `evicted`, `closed`).
pub const UDP_SESSIONS_ENDED_TOTAL: &str = "lb_udp_sessions_ended_total";
/// UDP sessions evicted to make room at `max_sessions`, by `frontend`.
pub const UDP_EVICTIONS_TOTAL: &str = "lb_udp_evictions_total";
/// Datagrams forwarded, by `frontend` and `direction` (`to_server` / `to_client`).
pub const UDP_DATAGRAMS_TOTAL: &str = "lb_udp_datagrams_total";
/// Payload bytes forwarded, by `frontend` and `direction`.
pub const UDP_BYTES_TOTAL: &str = "lb_udp_bytes_total";
/// Datagrams not forwarded, by `frontend` and `reason` (`no_server`,
/// `socket`, `send`, `unreachable`, `unexpected_reply`, `limit`, `truncated`).
pub const UDP_DROPPED_TOTAL: &str = "lb_udp_dropped_total";
/// Connects to a server given by name, by `backend`, `server` and the
/// `family` (`ipv4` / `ipv6`) whose attempt won the Happy Eyeballs race.
pub const SERVER_CONNECTS_BY_FAMILY_TOTAL: &str = "lb_server_connects_by_family_total";
/// Addresses a server's name resolves to now, by `backend`, `server` and `family`.
pub const SERVER_RESOLVED_ADDRESSES: &str = "lb_server_resolved_addresses";
/// Failed lookups of a server's name (its last addresses are kept), by `backend` and `server`.
pub const SERVER_RESOLVE_ERRORS_TOTAL: &str = "lb_server_resolve_errors_total";
/// 1 while this node announces an `[[announce]]` group's prefixes, by
/// `name` and `family` (`ipv4` / `ipv6`).
pub const ANNOUNCE_UP: &str = "lb_announce_up";
/// Announce state changes, by `name`, `family` and new `state`
/// (`announced` / `withdrawn`).
pub const ANNOUNCE_TRANSITIONS_TOTAL: &str = "lb_announce_transitions_total";
