//! The running state: immutable config snapshots plus the live state that
//! outlives them (server health, connection counts, limits).

mod backend;
mod registry;
mod server;
mod snapshot;

pub use backend::BackendRuntime;
pub use registry::Registry;
pub use server::{
    ActiveConnection, RecordedTransition, ServerMetrics, ServerRuntime, PASSIVE_RETRY,
};
pub use snapshot::{FrontendRuntime, NewServers, Snapshot};
