//! Why a forward ended early.

use std::fmt;
use std::io;
use std::time::Duration;

/// One end of a forwarded connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// The socket operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
    Shutdown,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Read => "reading from",
            IoOp::Write => "writing to",
            IoOp::Shutdown => "half-closing",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no bytes in either direction for {0:?} (idle timeout)")]
    IdleTimeout(Duration),
    #[error("the client reset the connection")]
    ClientReset,
    #[error("the server reset the connection")]
    ServerReset,
    #[error("{op} the {side}: {error}")]
    Io {
        side: Side,
        op: IoOp,
        error: io::Error,
    },
    #[error("creating a splice pipe: {0}")]
    Pipe(io::Error),
}

impl ForwardError {
    /// Classifies a socket error on `side`: a reset (or a write after the
    /// peer's reset, EPIPE) is reported as that side's reset.
    pub(crate) fn from_io(side: Side, op: IoOp, e: io::Error) -> Self {
        let reset = matches!(
            e.raw_os_error(),
            Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED)
        );
        match (reset, side) {
            (true, Side::Client) => ForwardError::ClientReset,
            (true, Side::Server) => ForwardError::ServerReset,
            (false, _) => ForwardError::Io { side, op, error: e },
        }
    }

    /// The side at fault, when one is known.
    pub fn side(&self) -> Option<Side> {
        match self {
            ForwardError::ClientReset => Some(Side::Client),
            ForwardError::ServerReset => Some(Side::Server),
            ForwardError::Io { side, .. } => Some(*side),
            ForwardError::IdleTimeout(_) | ForwardError::Pipe(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_attributed_to_their_side() {
        let e = |code| io::Error::from_raw_os_error(code);
        assert!(matches!(
            ForwardError::from_io(Side::Client, IoOp::Read, e(libc::ECONNRESET)),
            ForwardError::ClientReset
        ));
        assert!(matches!(
            ForwardError::from_io(Side::Server, IoOp::Write, e(libc::EPIPE)),
            ForwardError::ServerReset
        ));
        let other = ForwardError::from_io(Side::Server, IoOp::Write, e(libc::ETIMEDOUT));
        assert_eq!(other.side(), Some(Side::Server));
        assert!(
            other.to_string().starts_with("writing to the server: "),
            "{other}"
        );
    }
}
