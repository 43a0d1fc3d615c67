//! What the integration tests, the lab and the benchmark share: one
//! wrapper for the child processes they start, and one way to wait for a
//! condition.

pub mod process;
mod wait;

pub use process::Process;
pub use wait::wait_until;
#[cfg(feature = "tokio")]
pub use wait::wait_until_async;
