//! coexist's load balancer: dual-stack TCP frontends, server selection,
//! health state and zero-copy forwarding.

pub mod config;
pub mod forward;
pub mod proxy_protocol;
