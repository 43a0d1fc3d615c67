//! One advertisement socket per interface and family, shared by the
//! instances on it: a reader task applies the link-level checks (arrival
//! interface, TTL / hop limit 255, decoding) and hands each advert to the
//! instance of its VRID.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

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

type Routes = Arc<Mutex<HashMap<u8, (String, mpsc::Sender<Inbound>)>>>;

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
        let mut routes = self.routes.lock().expect("routes lock");
        if routes.contains_key(&vrid) {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        routes.insert(vrid, (instance.to_owned(), tx));
        Some(rx)
    }

    pub(super) fn unregister(&self, vrid: u8) {
        self.routes.lock().expect("routes lock").remove(&vrid);
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

async fn read(socket: Arc<AdvertSocket>, index: u32, routes: Routes) {
    loop {
        match socket.recv().await {
            Ok(d) => dispatch(d, index, &routes),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                observe::discard(None, "malformed_ip", None, &e);
            }
            Err(e) => {
                tracing::warn!(error = %e, "VRRP socket receive error");
                // Do not spin on a persistent error.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn dispatch(d: Datagram, index: u32, routes: &Routes) {
    let from = Some(d.src);
    if d.ifindex != Some(index) {
        let detail = format!("arrived on interface {:?}, not {index}", d.ifindex);
        return observe::discard(None, "interface", from, &detail);
    }
    // RFC 9568 §7.1: only a packet that crossed no router can be an advert.
    if d.ttl != Some(TTL) {
        let detail = format!("TTL/hop limit {:?}, not 255", d.ttl);
        return observe::discard(None, "ttl", from, &detail);
    }
    let decoded = match decode(&d.payload, d.src, d.dst) {
        Ok(decoded) => decoded,
        Err(e) => return observe::discard(None, e.reason(), from, &e),
    };
    let vrid = decoded.packet.vrid;
    let routes = routes.lock().expect("routes lock");
    let Some((instance, tx)) = routes.get(&vrid) else {
        // Other virtual routers on the segment are normal: count, no log
        // line per packet (the rate limit still applies).
        return observe::discard(
            None,
            "vrid",
            from,
            &format!("vrid {vrid} is not configured here"),
        );
    };
    let inbound = Inbound {
        src: d.src,
        packet: decoded.packet,
    };
    if tx.try_send(inbound).is_err() {
        // Logged as the instance's line, like those of its own task.
        tracing::info_span!("vrrp", instance = %instance).in_scope(|| {
            observe::discard(Some(instance), "queue_full", from, &"instance queue full")
        });
    }
}
