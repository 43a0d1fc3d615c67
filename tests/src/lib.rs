//! Integration-test support: servers, clients and network-namespace
//! topologies shared by the tests and the lab.

pub mod browser;
pub mod client;
pub mod daemon;
pub mod dns;
pub mod ecmp;
pub mod ip_monitor;
pub mod lab;
pub mod lone_node;
pub mod netns;
pub mod netns_thread;
pub mod pattern;
pub mod ports;
pub mod servers;
