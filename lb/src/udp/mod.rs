//! UDP frontends: client sessions bound to one server each, datagrams
//! forwarded unchanged both ways, across address families.

pub mod session;
