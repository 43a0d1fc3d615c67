//! VRRP v2 (RFC 3768) and v3 (RFC 9568) for IPv4 and IPv6.
//!
//! The protocol core has no IO: packets are decoded from and encoded to
//! bytes ([`packet`]), and each virtual router is a state machine
//! ([`Instance`]) fed events and an injected `now`, returning the
//! [`Action`]s the wire layer must carry out.
//!
//! A wire layer's loop, per instance:
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use vrrp::{Action, Config, Instance, VirtualAddress};
//! let primary = "192.0.2.2".parse().unwrap();
//! let vip = VirtualAddress::new("192.0.2.10".parse().unwrap(), 24);
//! let mut vr = Instance::new(Config::new(51, primary, vec![vip])).unwrap();
//! let now = Instant::now();
//! vr.start(now);
//! // ... on a received packet:
//! //   let d = vrrp::decode(payload, src, dst)?;   // count DecodeError::reason() on error
//! //   vr.handle_advert(now, src, &d.packet)?;     // count Discard::reason() on error
//! // ... when the clock reaches vr.poll_timeout():
//! vr.handle_timeout(now + vr.master_down_interval());
//! while let Some(action) = vr.poll_action() {
//!     match action {
//!         Action::SendAdvert(p) => {
//!             let _bytes = vr.encode_advert(&p, p.family().multicast_group()).unwrap();
//!         }
//!         Action::AddAddresses(_) | Action::RemoveAddresses(_) | Action::Announce(_) => {}
//!         Action::StateChanged { from, to, reason } => println!("{from} -> {to}: {reason}"),
//!     }
//! }
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod checksum;
pub mod config;
pub mod instance;
#[cfg(feature = "net")]
pub mod net;
pub mod packet;
#[cfg(feature = "net")]
mod sys;

pub use config::{
    is_interface_name, Config, ConfigError, Garp, InstanceSpec, Problem, Setting, Track,
    VirtualAddress, Wire, OWNER_PRIORITY,
};
pub use instance::{Action, Discard, Instance, State, Transition, TransitionReason, UnknownTrack};
pub use packet::{
    decode, ChecksumMode, DecodeError, Decoded, EncodeError, Family, Packet, Version,
};
