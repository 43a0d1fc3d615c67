//! Server health: the pure state machine and the active checkers.

mod state;

pub use state::{AdminState, Observation, Policy, ServerHealth, ServerState, Transition};
