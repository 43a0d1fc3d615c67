//! Free loopback ports for configs written before the daemon binds.
//!
//! Ports come from below the kernel's ephemeral range. A port the kernel
//! handed out (bind to port 0) is free when it is returned, but it stays in
//! the range every `connect` and unbound UDP socket draws from: in the time
//! between the choice and the daemon's bind, a client of another test (dig,
//! a UDP session socket, an outgoing connection) may take it. Seen once
//! under load: "cannot listen on 127.0.0.1:35063 (udp) … Address already in
//! use". Below the range only explicit binds compete; within a process no
//! port is handed out twice.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Where the search starts when the ephemeral range cannot be read.
const LOW: u32 = 10_000;

/// A port free for TCP and UDP on both 127.0.0.1 and ::1 at the time of
/// the call, never returned before by this process.
pub fn free_port() -> u16 {
    /// The generator and the ports handed out, under one lock.
    static PICKED: Mutex<Option<(SmallRng, BTreeSet<u16>)>> = Mutex::new(None);
    let (low, high) = (LOW, ephemeral_low().max(LOW + 2_000));
    let mut picked = PICKED.lock().unwrap_or_else(|e| e.into_inner());
    let (rng, given) = picked.get_or_insert_with(|| (SmallRng::from_entropy(), BTreeSet::new()));
    // Random, not walked in order: two processes (two test binaries, or a
    // suite beside another) that walked from nearby places handed out the
    // same ports before either daemon bound them.
    for _ in 0..100_000 {
        let port = u16::try_from(rng.gen_range(low..high)).expect("below the ephemeral range");
        if !given.contains(&port) && bindable(port) {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port found below {high}");
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
        let distinct: BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports
            .iter()
            .all(|&p| u32::from(p) < ephemeral_low().max(LOW + 2_000)));
        assert!(ports.iter().all(|&p| u32::from(p) >= LOW));
    }
}
