//! Configuration: TOML text in, a validated [`Config`] out.

mod model;

pub use model::*;
