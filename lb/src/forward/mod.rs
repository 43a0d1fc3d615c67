//! Bidirectional byte forwarding between an accepted client connection and a
//! connected server connection.
//!
//! Each direction is a small state machine driven by tokio readiness, and
//! one hand-written future polls both directions of a connection. Small
//! transfers (requests, responses, messages) are copied through a small
//! user-space buffer: one read and one write each. A direction that moves
//! bulk switches to splice(2), where the bytes go socket → pipe → socket
//! without entering user space. Pipes and buffers are borrowed (from a
//! shared [`PipePool`], from a per-thread free list) only while a burst is in
//! flight, so an idle connection costs its two sockets and nothing more.
//!
//! A FIN from one side becomes `shutdown(Write)` towards the other while the
//! opposite direction keeps flowing, sent in the same segment as the last
//! bytes when both were read together; the forward ends when both
//! directions have seen EOF (closing the sockets then sends the last FIN), on
//! the first error, or after `idle_timeout` without a byte moving either way.

mod connection;
mod copy;
mod error;
mod flow;
mod idle;
mod pool;
mod splice;

use std::future::Future;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::TcpStream;

use connection::Connection;

pub use error::{ForwardError, IoOp, Side};
pub use pool::PipePool;

/// Per-connection forwarding settings, read from the backend and `[tuning]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOptions {
    /// The forward ends after this long with no byte moved in either
    /// direction. `Duration::ZERO` disables the timeout.
    pub idle_timeout: Duration,
    /// Switch a direction that moves bulk to splice(2) when the kernel
    /// supports it; otherwise bulk too is copied in user space.
    pub splice: bool,
}

/// Where bytes are counted as they are delivered (written to the destination
/// socket). Implemented by the daemon: metrics counters, per-server stats.
pub trait ByteCounter: Send + Sync {
    fn to_server(&self, n: u64);
    fn to_client(&self, n: u64);
}

/// Bytes delivered in each direction over the whole connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub to_server: u64,
    pub to_client: u64,
}

/// Forwards bytes both ways until both directions are finished, an error, or
/// the idle timeout. Both sockets are closed when the future completes. On a
/// reset from one side the other side's socket is reset too (SO_LINGER 0),
/// so the abort travels end to end.
///
/// The future is a hand-written state machine of a few hundred bytes, since
/// one lives for every proxied connection, idle or not.
pub fn forward<'a>(
    client: TcpStream,
    server: TcpStream,
    pool: &'a PipePool,
    opts: &ForwardOptions,
    counter: &'a dyn ByteCounter,
) -> impl Future<Output = Result<Totals, ForwardError>> + Send + 'a {
    let ctx = Ctx { pool, counter };
    let splice = opts.splice && pool.splice_available();
    let connection = Connection::new(client, server, ctx, splice, opts.idle_timeout);
    connection.run()
}

/// What both directions of one connection share.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    pool: &'a PipePool,
    counter: &'a dyn ByteCounter,
}

impl Ctx<'_> {
    /// Records `n` bytes delivered towards `to`.
    fn delivered(&self, to: Side, n: usize) {
        let n = n as u64;
        match to {
            Side::Server => self.counter.to_server(n),
            Side::Client => self.counter.to_client(n),
        }
    }
}

/// Makes the close of `stream` send a RST instead of a FIN.
fn abort(stream: &TcpStream) {
    // Best effort: the socket is closed right after either way.
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
#[cfg(test)]
mod tests;
