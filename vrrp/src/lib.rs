//! VRRP v2 (RFC 3768) and v3 (RFC 9568) for IPv4 and IPv6.
//!
//! The protocol core has no IO: packets are decoded from and encoded to
//! bytes, and each virtual router is a state machine fed events and an
//! injected `now`, returning the actions the wire layer must carry out.
