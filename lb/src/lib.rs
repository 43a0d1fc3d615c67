//! coexist's load balancer: dual-stack TCP frontends, server selection,
//! health state and zero-copy forwarding.

pub mod balance;
pub mod config;
