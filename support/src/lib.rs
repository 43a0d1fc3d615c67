//! What the integration tests, the lab and the benchmark share: one
//! wrapper for the child processes they start, one way to wait for a
//! condition, and one typed builder of coexist configurations.

pub mod config;
pub mod process;
pub mod procfs;
mod wait;

pub use process::Process;
pub use wait::wait_until;
#[cfg(feature = "tokio")]
pub use wait::wait_until_async;
