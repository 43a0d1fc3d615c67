//! Support code for `coexist-bench`, the end-to-end benchmark: coexist beside
//! HAProxy (plain and with forced splice) and nginx `stream` (when
//! installed) and a direct connection, all in front of the same loopback
//! backends (iperf3 for bulk, nginx serving a small page for connection rate,
//! latency and idle memory, echo servers for small round trips), and UDP
//! through coexist and nginx `stream` to datagram echo servers (`udp`).
//!
//! A module per tool (`iperf`, `wrk`, `nginx`, `haproxy`, `coexist`, `echo`,
//! `perf`), the measurements (`measure`), the run sequence (`run`), the
//! statistics over repetitions (`stats`) and the output (`report`, `limits`
//! for which core set each rate, and `chart` for the pictures of
//! `--report`). Tool
//! output parsers are pure and unit-tested on real samples.

pub mod chart;
pub mod child;
pub mod coexist;
pub mod echo;
pub mod haproxy;
pub mod iperf;
pub mod limits;
pub mod measure;
pub mod netns;
pub mod nginx;
pub mod perf;
pub mod procfs;
pub mod proxy;
pub mod report;
pub mod run;
pub mod stats;
pub mod udp;
pub mod wrk;
