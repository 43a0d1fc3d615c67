//! The process's own resources under pressure: descriptors, memory,
//! source ports.
//!
//! Running out of them is this process's fault, never a server's: such
//! errors are recognised here ([`is_local`]), counted and reported as the
//! process's condition ([`budget`]), and never fed to a server's health.
//! Warnings a flood could repeat per client go through [`LogLimit`].

pub mod budget;
pub mod log_limit;

use std::io;

pub use budget::{pipes_for, process, Condition, FdBudget, ProcessStatus};
pub use log_limit::LogLimit;

/// True for failures of this process's resources rather than of the
/// peer: out of descriptors (EMFILE, ENFILE), of socket buffers or memory
/// (ENOBUFS, ENOMEM), of local ports (EADDRNOTAVAIL on connect).
pub fn is_local(error: &io::Error) -> bool {
    local_error_name(error).is_some()
}

/// The errno name of a local failure, the `error` label of
/// `lb_local_errors_total`.
pub fn local_error_name(error: &io::Error) -> Option<&'static str> {
    Some(match error.raw_os_error()? {
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_exhaustion_is_local_and_peer_failures_are_not() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EADDRNOTAVAIL,
        ] {
            assert!(is_local(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        for errno in [
            libc::ECONNREFUSED,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::ECONNRESET,
        ] {
            assert!(!is_local(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        assert!(!is_local(&io::Error::new(
            io::ErrorKind::TimedOut,
            "timeout"
        )));
    }
}
