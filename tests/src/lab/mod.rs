//! coexist-lab: the verification topology in network namespaces and the
//! matrix of issue 7, shared by the `coexist-lab` binary and the
//! integration tests.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use coexist_tests::lab;
//! let programs = lab::Programs { coexist: "target/debug/coexist".into(), helper: "target/debug/coexist-lab".into() };
//! let dir = tempfile::tempdir()?;
//! let report = lab::run(&lab::Options {
//!     advert: std::time::Duration::from_millis(100),
//!     programs,
//!     dir: dir.path().to_owned(),
//!     progress: false,
//! })?;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```

pub mod analysis;
pub mod clock;
pub mod dns;
pub mod draw;
pub mod ecmp;
pub mod html;
pub mod load;
pub mod matrix;
pub mod report;
pub mod timeline;
pub mod topology;
pub mod vip_watch;

pub use matrix::{run, Options};
pub use report::{Figures, Report, RowResult, Verdict};
pub use topology::Programs;
