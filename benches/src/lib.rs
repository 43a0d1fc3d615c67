//! Support code for `coexist-bench`, the end-to-end benchmark: coexist beside
//! HAProxy and nginx `stream` (when installed) and a direct connection, all
//! in front of the same loopback backends (iperf3 for bulk, nginx serving a
//! small page for connection rate, latency and idle memory).
//!
//! A module per tool (`iperf`, `wrk`, `nginx`, `haproxy`, `coexist`), the
//! measurements (`measure`), the run sequence (`run`) and the output
//! (`report`). Tool output parsers are pure and unit-tested on real samples.

pub mod child;
pub mod coexist;
pub mod haproxy;
pub mod iperf;
pub mod measure;
pub mod nginx;
pub mod procfs;
pub mod proxy;
pub mod report;
pub mod run;
pub mod wrk;
