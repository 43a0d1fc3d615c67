//! Server health: the pure state machine, and its one view for the
//! connection path. The checkers that feed it live in [`crate::checker`].

mod shared;
mod state;

pub use shared::SharedHealth;
pub use state::{AdminState, Observation, Policy, ServerHealth, ServerState, Transition};
