//! Free loopback ports for configs written before the daemon binds.
//!
//! Ports come from below the kernel's ephemeral range. A port the kernel
//! handed out (bind to port 0) is free when it is returned, but it stays in
//! the range every `connect` and unbound UDP socket draws from: in the time
//! between the choice and the daemon's bind, a client of another test (dig,
//! a UDP session socket, an outgoing connection) may take it. Seen once
//! under load: "cannot listen on 127.0.0.1:35063 (udp) … Address already in
//! use". Below the range only explicit binds compete, and within a process
//! a counter never hands out a port twice.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the search starts when the ephemeral range cannot be read.
const LOW: u32 = 10_000;

/// A port free for TCP and UDP on both 127.0.0.1 and ::1 at the time of
/// the call, never returned before by this process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = (LOW, ephemeral_low().max(LOW + 2_000));
    let span = high - low;
    // Test binaries run one after another, and their daemons may linger a
    // moment: each process starts at its own place in the span.
    let start = std::process::id() * 7_919 % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free loopback port left below {high}");
        let port = u16::try_from(low + (start + n) % span).expect("below the ephemeral range");
        if bindable(port) {
            return port;
        }
    }
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).is_ok()
}

/// The first port of the kernel's ephemeral range (32768 by default).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

pub fn v4(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

pub fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::LOCALHOST, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Output: a hundred different ports, all below the ephemeral range and
    // all bindable for TCP and UDP on both loopbacks when handed out.
    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..100).map(|_| free_port()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports
            .iter()
            .all(|&p| u32::from(p) < ephemeral_low().max(LOW + 2_000)));
        assert!(ports.iter().all(|&p| u32::from(p) >= LOW));
    }
}
