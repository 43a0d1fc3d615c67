//! The one owner of the route netlink socket: a task that carries out
//! requests sent over a channel, one at a time, in order. Address
//! requests are idempotent (adding a present address or removing an
//! absent one succeeds), so a retried or repeated request is harmless.
//!
//! The same socket is a member of the link and address multicast groups:
//! every link or address change the kernel reports bumps a counter that
//! instances watch ([`Netlink::changes`]), and each then reads its own
//! interface again. Reading again rather than applying the notification
//! keeps one code path for start and change, and a burst of
//! notifications costs one read per instance, not one per message.

use std::net::IpAddr;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags, LinkMessage, MacVlanMode,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, LinkMacVlan, LinkUnspec, MulticastGroup};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::VirtualAddress;

const EEXIST: i32 = libc::EEXIST;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;

/// An address as the kernel lists it on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// IPv4 secondary (not the primary address of its subnet).
    pub secondary: bool,
    /// IPv6 duplicate address detection has not finished (or failed): the
    /// address cannot be a source yet.
    pub tentative: bool,
}

/// What the wire layer needs to know about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface index.
    pub index: u32,
    /// Its link-layer address.
    pub mac: [u8; 6],
    /// The addresses on it.
    pub addresses: Vec<InterfaceAddress>,
    /// Administratively up and running (carrier present): packets sent on
    /// it can reach the segment.
    pub up: bool,
}

/// Why a netlink request failed; names the interface or address.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket could not be opened.
    #[error("cannot open a route netlink socket: {0}")]
    Open(std::io::Error),
    /// No interface of that name.
    #[error("no interface named {0:?}")]
    NoSuchLink(String),
    /// The kernel refused a request.
    #[error("{what}: {error}")]
    Request {
        /// What was asked, naming the interface or address.
        what: String,
        /// The kernel's answer.
        error: rtnetlink::Error,
    },
    /// The owner task is gone.
    #[error("the netlink task has stopped")]
    Stopped,
}

enum Request {
    Link(String, oneshot::Sender<Result<LinkInfo, NetlinkError>>),
    Add(
        u32,
        Vec<VirtualAddress>,
        oneshot::Sender<Result<(), NetlinkError>>,
    ),
    Remove(
        u32,
        Vec<VirtualAddress>,
        oneshot::Sender<Result<(), NetlinkError>>,
    ),
    Macvlan {
        parent: u32,
        name: String,
        mac: [u8; 6],
        reply: oneshot::Sender<Result<LinkInfo, NetlinkError>>,
    },
    SetUp(u32, bool, oneshot::Sender<Result<(), NetlinkError>>),
    Delete(u32, oneshot::Sender<Result<(), NetlinkError>>),
}

/// A cheap handle to the netlink task; clone it freely.
#[derive(Clone)]
pub struct Netlink {
    tx: mpsc::UnboundedSender<Request>,
    changes: watch::Receiver<u64>,
}

impl Netlink {
    /// Opens the socket and spawns the owner task on the current runtime.
    pub fn start() -> Result<Netlink, NetlinkError> {
        let groups = [
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ];
        let (connection, handle, messages) =
            rtnetlink::new_multicast_connection(&groups).map_err(NetlinkError::Open)?;
        tokio::spawn(connection);
        let (tx, rx) = mpsc::unbounded_channel();
        let (changed, changes) = watch::channel(0);
        tokio::spawn(owner(handle, rx, messages, changed));
        Ok(Netlink { tx, changes })
    }

    /// A counter bumped on every link or address change the kernel
    /// reports (on any interface): read the interface again when it moves.
    pub fn changes(&self) -> watch::Receiver<u64> {
        let mut changes = self.changes.clone();
        changes.mark_unchanged();
        changes
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, NetlinkError>>) -> Request,
    ) -> Result<T, NetlinkError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| NetlinkError::Stopped)?;
        answer.await.map_err(|_| NetlinkError::Stopped)?
    }

    /// The interface called `name`.
    pub async fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        let name = name.to_owned();
        self.ask(|r| Request::Link(name, r)).await
    }

    /// Adds the addresses (IPv6 without duplicate address detection).
    pub async fn add(&self, index: u32, addrs: Vec<VirtualAddress>) -> Result<(), NetlinkError> {
        self.ask(|r| Request::Add(index, addrs, r)).await
    }

    /// Removes the addresses; those already gone are no error.
    pub async fn remove(&self, index: u32, addrs: Vec<VirtualAddress>) -> Result<(), NetlinkError> {
        self.ask(|r| Request::Remove(index, addrs, r)).await
    }

    /// Creates (or takes over a leftover) macvlan `name` in bridge mode on
    /// `parent` with `mac`, IPv6 link-local generated randomly, left down.
    pub async fn macvlan(
        &self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<LinkInfo, NetlinkError> {
        let name = name.to_owned();
        self.ask(|reply| Request::Macvlan {
            parent,
            name,
            mac,
            reply,
        })
        .await
    }

    /// Sets the interface up or down.
    pub async fn set_up(&self, index: u32, up: bool) -> Result<(), NetlinkError> {
        self.ask(|r| Request::SetUp(index, up, r)).await
    }

    /// Deletes the interface (a macvlan this process made).
    pub async fn delete(&self, index: u32) -> Result<(), NetlinkError> {
        self.ask(|r| Request::Delete(index, r)).await
    }
}

type Notifications = futures::channel::mpsc::UnboundedReceiver<(
    rtnetlink::packet_core::NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

async fn owner(
    handle: Handle,
    mut rx: mpsc::UnboundedReceiver<Request>,
    mut notifications: Notifications,
    changed: watch::Sender<u64>,
) {
    loop {
        let request = tokio::select! {
            request = rx.recv() => match request {
                Some(request) => request,
                None => return,
            },
            Some((message, _)) = notifications.next() => {
                if is_interface_change(&message) {
                    changed.send_modify(|n| *n = n.wrapping_add(1));
                }
                continue;
            }
        };
        // A dropped reply channel means the asker went away; nothing to do.
        match request {
            Request::Link(name, reply) => {
                let _ = reply.send(link_info(&handle, &name).await);
            }
            Request::Add(index, addrs, reply) => {
                let _ = reply.send(add(&handle, index, &addrs).await);
            }
            Request::Remove(index, addrs, reply) => {
                let _ = reply.send(remove(&handle, index, &addrs).await);
            }
            Request::Macvlan {
                parent,
                name,
                mac,
                reply,
            } => {
                let _ = reply.send(macvlan(&handle, parent, &name, mac).await);
            }
            Request::SetUp(index, up, reply) => {
                let _ = reply.send(set_up(&handle, index, up).await);
            }
            Request::Delete(index, reply) => {
                let result = handle.link().del(index).execute().await;
                let _ = reply.send(result.map_err(|error| NetlinkError::Request {
                    what: format!("delete link {index}"),
                    error,
                }));
            }
        }
    }
}

fn is_interface_change(
    message: &rtnetlink::packet_core::NetlinkMessage<RouteNetlinkMessage>,
) -> bool {
    use rtnetlink::packet_core::NetlinkPayload;
    matches!(
        &message.payload,
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewLink(_)
                | RouteNetlinkMessage::DelLink(_)
                | RouteNetlinkMessage::NewAddress(_)
                | RouteNetlinkMessage::DelAddress(_)
        )
    )
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

async fn link_info(handle: &Handle, name: &str) -> Result<LinkInfo, NetlinkError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    let link = match links.try_next().await {
        Ok(Some(link)) => link,
        Ok(None) => return Err(NetlinkError::NoSuchLink(name.to_owned())),
        Err(e) if errno(&e) == Some(libc::ENODEV) => {
            return Err(NetlinkError::NoSuchLink(name.to_owned()))
        }
        Err(error) => {
            return Err(NetlinkError::Request {
                what: format!("read link {name}"),
                error,
            })
        }
    };
    link_of(handle, link).await
}

async fn link_of(handle: &Handle, link: LinkMessage) -> Result<LinkInfo, NetlinkError> {
    let index = link.header.index;
    let flags = link.header.flags;
    let up = flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running);
    let mut mac = [0u8; 6];
    for attr in &link.attributes {
        if let LinkAttribute::Address(a) = attr {
            if a.len() == 6 {
                mac.copy_from_slice(a);
            }
        }
    }
    let mut addresses = Vec::new();
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    loop {
        match stream.try_next().await {
            Ok(Some(msg)) => addresses.extend(address_of(&msg)),
            Ok(None) => break,
            Err(error) => {
                return Err(NetlinkError::Request {
                    what: format!("list addresses of link {index}"),
                    error,
                })
            }
        }
    }
    Ok(LinkInfo {
        index,
        mac,
        addresses,
        up,
    })
}

fn address_of(msg: &AddressMessage) -> Option<InterfaceAddress> {
    // IFA_LOCAL is the interface's own address on point-to-point links
    // (IFA_ADDRESS is then the peer); prefer it when present.
    let mut local = None;
    let mut address = None;
    let unusable = AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed;
    let mut tentative = msg.header.flags.intersects(unusable);
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Flags(f) => {
                tentative |= f.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed)
            }
            _ => {}
        }
    }
    Some(InterfaceAddress {
        addr: local.or(address)?,
        prefix_len: msg.header.prefix_len,
        secondary: msg.header.flags.contains(AddressHeaderFlags::Secondary),
        tentative,
    })
}

fn address_message(index: u32, va: &VirtualAddress) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = va.prefix_len;
    msg.header.scope = AddressScope::Universe;
    match va.addr {
        IpAddr::V4(_) => {
            msg.header.family = AddressFamily::Inet;
            msg.attributes.push(AddressAttribute::Local(va.addr));
            msg.attributes.push(AddressAttribute::Address(va.addr));
        }
        IpAddr::V6(a) => {
            msg.header.family = AddressFamily::Inet6;
            if a.is_unicast_link_local() {
                msg.header.scope = AddressScope::Link;
            }
            msg.attributes.push(AddressAttribute::Address(va.addr));
        }
    }
    msg
}

async fn add(handle: &Handle, index: u32, addrs: &[VirtualAddress]) -> Result<(), NetlinkError> {
    for va in addrs {
        let mut request = handle.address().add(index, va.addr, va.prefix_len);
        if va.addr.is_ipv6() {
            // A takeover must not wait ~1 s for DAD, and the address is
            // expected to exist on the other node a moment ago.
            let msg = request.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(error) => {
                return Err(NetlinkError::Request {
                    what: format!("add {}/{} to link {index}", va.addr, va.prefix_len),
                    error,
                })
            }
        }
    }
    Ok(())
}

async fn remove(handle: &Handle, index: u32, addrs: &[VirtualAddress]) -> Result<(), NetlinkError> {
    for va in addrs {
        match handle
            .address()
            .del(address_message(index, va))
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if matches!(errno(&e), Some(EADDRNOTAVAIL) | Some(libc::ENODEV)) => {}
            Err(error) => {
                return Err(NetlinkError::Request {
                    what: format!("remove {}/{} from link {index}", va.addr, va.prefix_len),
                    error,
                })
            }
        }
    }
    Ok(())
}

async fn set_up(handle: &Handle, index: u32, up: bool) -> Result<(), NetlinkError> {
    let builder = LinkUnspec::new_with_index(index);
    let msg = if up { builder.up() } else { builder.down() }.build();
    handle
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(|error| NetlinkError::Request {
            what: format!("set link {index} {}", if up { "up" } else { "down" }),
            error,
        })
}

async fn macvlan(
    handle: &Handle,
    parent: u32,
    name: &str,
    mac: [u8; 6],
) -> Result<LinkInfo, NetlinkError> {
    // A leftover from a run that died may be on another parent or carry
    // stale addresses: start from a fresh device.
    if let Ok(old) = link_info(handle, name).await {
        let _ = handle.link().del(old.index).execute().await;
    }
    let msg = LinkMacVlan::new(name, parent, MacVlanMode::Bridge)
        .address(mac.to_vec())
        .build();
    handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(|error| NetlinkError::Request {
            what: format!("create macvlan {name}"),
            error,
        })?;
    let info = link_info(handle, name).await?;
    // Random link-local: with EUI-64 both nodes' macvlans, sharing the
    // virtual MAC, would generate the same address (FRR does the same).
    let mut set = LinkUnspec::new_with_index(info.index).build();
    set.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::Random)],
        )]));
    handle
        .link()
        .set(set)
        .execute()
        .await
        .map_err(|error| NetlinkError::Request {
            what: format!("set addrgenmode random on {name}"),
            error,
        })?;
    Ok(info)
}
