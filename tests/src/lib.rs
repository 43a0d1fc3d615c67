//! Integration-test support: servers, clients and network-namespace
//! topologies shared by the tests and the lab.

pub mod client;
pub mod daemon;
pub mod dns;
pub mod lab;
pub mod netns;
pub mod pattern;
pub mod ports;
pub mod servers;
