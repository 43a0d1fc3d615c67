//! One advertisement socket per interface and family, shared by the
//! instances on it: a reader task applies the link-level checks (arrival
//! interface, TTL / hop limit 255, decoding) and hands each advert to the
//! instance of its VRID.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::observe;
use super::socket::{AdvertSocket, Datagram, TTL};
use crate::packet::{decode, Family, Packet};

/// Adverts queued per instance before the reader drops them; a healthy
/// instance drains its queue within microseconds.
const QUEUE: usize = 64;

/// A decoded advert for one instance.
#[derive(Debug, Clone)]
pub(super) struct Inbound {
    pub src: IpAddr,
    pub packet: Packet,
}

/// Where the adverts of one VRID go.
enum Route {
    /// The instance's name and queue.
    Running(String, mpsc::Sender<Inbound>),
    /// The instance stopped (or is stopping) until this instant: its peers
    /// answer its release and go on advertising for a while, which is
    /// expected, not a packet for a VRID this node never had.
    Retired { until: Instant },
}

/// How long a stopped instance's VRID stays [`Route::Retired`]: the peers
/// take over within a master-down interval (at most ~3 × 40 s in v2, but
/// ~3 × 1 s as usually configured), and a stopping daemon finishes within
/// seconds; after it, adverts for the VRID are discarded as unknown again.
const RETIRED_FOR: Duration = Duration::from_secs(10);

type Routes = Arc<Mutex<HashMap<u8, Route>>>;

/// What became of a datagram (for tests; the reader only counts and logs).
#[derive(Debug, PartialEq, Eq)]
enum Dispatched {
    Queued,
    /// For a stopped instance, within [`RETIRED_FOR`]: dropped quietly.
    Retired,
    Discarded(&'static str),
}

pub(super) struct Link {
    pub index: u32,
    pub socket: Arc<AdvertSocket>,
    routes: Routes,
    reader: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Link {
    fn open(name: &str, index: u32, family: Family) -> io::Result<Link> {
        let socket = Arc::new(AdvertSocket::open(name, index, family)?);
        let routes: Routes = Arc::default();
        // The link serves every instance on the interface: its lines are
        // the interface's, not those of the instance that opened it.
        let span = tracing::info_span!(parent: None, "vrrp_link", interface = name, %family);
        let reader =
            tokio::spawn(read(Arc::clone(&socket), index, Arc::clone(&routes)).instrument(span));
        Ok(Link {
            index,
            socket,
            routes,
            reader,
        })
    }

    /// The queue of adverts for `vrid`; `None` if another instance has it.
    pub(super) fn register(&self, vrid: u8, instance: &str) -> Option<mpsc::Receiver<Inbound>> {
        register(&self.routes, vrid, instance)
    }

    /// The instance of `vrid` stops: its peers' adverts are dropped quietly
    /// for [`RETIRED_FOR`].
    pub(super) fn unregister(&self, vrid: u8) {
        retire(&self.routes, vrid, Instant::now());
    }
}

/// The open links, so that instances on one interface share a socket;
/// a link closes with its last instance.
#[derive(Default)]
pub(super) struct Links {
    map: Mutex<HashMap<(String, Family), Weak<Link>>>,
}

impl Links {
    pub(super) fn get_or_open(
        &self,
        name: &str,
        index: u32,
        family: Family,
    ) -> io::Result<Arc<Link>> {
        let mut map = self.map.lock().expect("links lock");
        let key = (name.to_owned(), family);
        if let Some(link) = map.get(&key).and_then(Weak::upgrade) {
            if link.index == index {
                return Ok(link);
            }
        }
        let link = Arc::new(Link::open(name, index, family)?);
        map.insert(key, Arc::downgrade(&link));
        map.retain(|_, l| l.strong_count() > 0);
        Ok(link)
    }
}

fn register(routes: &Routes, vrid: u8, instance: &str) -> Option<mpsc::Receiver<Inbound>> {
    let mut routes = routes.lock().expect("routes lock");
    if matches!(routes.get(&vrid), Some(Route::Running(..))) {
        return None;
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    routes.insert(vrid, Route::Running(instance.to_owned(), tx));
    Some(rx)
}

fn retire(routes: &Routes, vrid: u8, now: Instant) {
    let until = now + RETIRED_FOR;
    let mut routes = routes.lock().expect("routes lock");
    routes.insert(vrid, Route::Retired { until });
    routes.retain(|_, r| !matches!(r, Route::Retired { until } if *until <= now));
}

async fn read(socket: Arc<AdvertSocket>, index: u32, routes: Routes) {
    loop {
        match socket.recv().await {
            Ok(d) => {
                dispatch(d, index, &routes, Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                observe::discard(None, "malformed_ip", false, None, &e);
            }
            Err(e) => {
                tracing::warn!(error = %e, "VRRP socket receive error");
                // Do not spin on a persistent error.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn dispatch(d: Datagram, index: u32, routes: &Routes, now: Instant) -> Dispatched {
    let from = Some(d.src);
    let discard = |instance: Option<&str>, reason, detail: &dyn std::fmt::Display| {
        observe::discard(instance, reason, false, from, detail);
        Dispatched::Discarded(reason)
    };
    if d.ifindex != Some(index) {
        let detail = format!("arrived on interface {:?}, not {index}", d.ifindex);
        return discard(None, "interface", &detail);
    }
    // RFC 9568 §7.1: only a packet that crossed no router can be an advert.
    if d.ttl != Some(TTL) {
        let detail = format!("TTL/hop limit {:?}, not 255", d.ttl);
        return discard(None, "ttl", &detail);
    }
    let decoded = match decode(&d.payload, d.src, d.dst) {
        Ok(decoded) => decoded,
        Err(e) => return discard(None, e.reason(), &e),
    };
    let vrid = decoded.packet.vrid;
    let routes = routes.lock().expect("routes lock");
    let (instance, tx) = match routes.get(&vrid) {
        Some(Route::Running(instance, tx)) => (instance, tx),
        Some(Route::Retired { until }) if now < *until => {
            tracing::debug!(vrid, from = %d.src, "advert for a stopped instance dropped");
            return Dispatched::Retired;
        }
        // Other virtual routers on the segment are normal: count, no log
        // line per packet (the rate limit still applies).
        _ => return discard(None, "vrid", &format!("vrid {vrid} is not configured here")),
    };
    let inbound = Inbound {
        src: d.src,
        packet: decoded.packet,
    };
    if tx.try_send(inbound).is_err() {
        // Logged as the instance's line, like those of its own task.
        return tracing::info_span!("vrrp", instance = %instance)
            .in_scope(|| discard(Some(instance), "queue_full", &"instance queue full"));
    }
    Dispatched::Queued
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::packet::{ChecksumMode, Version};

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));

    fn advert(vrid: u8) -> Datagram {
        let packet = Packet {
            version: Version::V3,
            vrid,
            priority: 100,
            max_advert_int: 100,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
            reserved: 0,
            auth_data: Default::default(),
        };
        Datagram {
            src: PEER,
            dst: GROUP,
            ttl: Some(TTL),
            ifindex: Some(7),
            payload: packet
                .encode(PEER, GROUP, ChecksumMode::PseudoHeader)
                .unwrap(),
        }
    }

    /// Input: a peer's adverts for VRID 51 while its instance here runs,
    /// right after it stopped (the peer answering its release), and after
    /// RETIRED_FOR. Output: queued; dropped quietly (no "not configured
    /// here" discard, the shutdown race of the VRRP tests); discarded as
    /// unknown. Another VRID never configured is discarded at once.
    #[test]
    fn a_stopped_instances_peer_adverts_are_not_unknown_packets() {
        let routes = Routes::default();
        let t0 = Instant::now();
        let mut queue = register(&routes, 51, "v4").unwrap();
        assert_eq!(dispatch(advert(51), 7, &routes, t0), Dispatched::Queued);
        assert_eq!(queue.try_recv().unwrap().packet.vrid, 51);
        assert!(register(&routes, 51, "again").is_none(), "VRID in use");

        retire(&routes, 51, t0);
        let soon = t0 + Duration::from_millis(300);
        assert_eq!(dispatch(advert(51), 7, &routes, soon), Dispatched::Retired);
        assert_eq!(
            dispatch(advert(52), 7, &routes, soon),
            Dispatched::Discarded("vrid")
        );
        let later = t0 + RETIRED_FOR;
        assert_eq!(
            dispatch(advert(51), 7, &routes, later),
            Dispatched::Discarded("vrid")
        );

        // Configured again (a reload): its adverts are its own again.
        let mut queue = register(&routes, 51, "v4").unwrap();
        assert_eq!(dispatch(advert(51), 7, &routes, soon), Dispatched::Queued);
        assert!(queue.try_recv().is_ok());
    }
}
