//! Server health: the pure state machine and the active checkers.

pub mod check;
mod state;
mod udp_check;

pub use state::{AdminState, Observation, Policy, ServerHealth, ServerState, Transition};
