//! coexist's load balancer: dual-stack TCP frontends, server selection,
//! health state and zero-copy forwarding.

pub mod admin;
pub mod announce;
pub mod balance;
pub mod checker;
pub mod config;
pub mod daemon;
pub mod filter;
pub mod forward;
pub mod frontend;
pub mod ha;
pub mod health;
pub mod import;
pub mod limit;
pub mod locations;
pub mod metrics;
pub mod net;
pub mod package;
pub mod pressure;
pub mod proxy;
pub mod proxy_protocol;
pub mod resolve;
pub mod runtime;
pub mod shards;
mod sys;
pub mod udp;
pub mod watch;
