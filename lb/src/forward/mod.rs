//! Bidirectional byte forwarding between an accepted client connection and a
//! connected server connection.
//!
//! Each direction is a small pump driven by tokio readiness. With splice(2)
//! the bytes go socket → pipe → socket without entering user space; pipes are
//! borrowed from a shared [`PipePool`] only while a burst is in flight, so an
//! idle connection costs its two sockets and nothing more. Without splice
//! (disabled in the config, or refused by the kernel) a user-space buffer is
//! borrowed the same way.
//!
//! A FIN from one side becomes `shutdown(Write)` towards the other while the
//! opposite direction keeps flowing; the forward ends when both directions
//! have seen EOF, on the first error, or after `idle_timeout` without a byte
//! moving either way.

mod copy;
mod error;
mod pool;
mod splice;

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use error::{ForwardError, IoOp, Side};
pub use pool::PipePool;

/// Per-connection forwarding settings, read from the backend and `[tuning]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOptions {
    /// The forward ends after this long with no byte moved in either
    /// direction. `Duration::ZERO` disables the timeout.
    pub idle_timeout: Duration,
    /// Use splice(2) when the kernel supports it; otherwise copy in user space.
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
/// the idle timeout. Both sockets are closed when this returns. On a reset
/// from one side the other side's socket is reset too (SO_LINGER 0), so the
/// abort travels end to end.
pub async fn forward(
    client: TcpStream,
    server: TcpStream,
    pool: &PipePool,
    opts: &ForwardOptions,
    counter: &dyn ByteCounter,
) -> Result<Totals, ForwardError> {
    let activity = Activity::new();
    let ctx = Ctx {
        pool,
        counter,
        activity: &activity,
        splice: opts.splice && pool.splice_available(),
    };
    let up = pump(
        Direction {
            src: &client,
            dst: &server,
            from: Side::Client,
            to: Side::Server,
        },
        &ctx,
    );
    let down = pump(
        Direction {
            src: &server,
            dst: &client,
            from: Side::Server,
            to: Side::Client,
        },
        &ctx,
    );
    let result = tokio::select! {
        both = async { tokio::try_join!(up, down) } => both.map(|(to_server, to_client)| Totals { to_server, to_client }),
        () = activity.idle_for(opts.idle_timeout) => Err(ForwardError::IdleTimeout(opts.idle_timeout)),
    };
    match &result {
        Err(ForwardError::ClientReset) => abort(&server),
        Err(ForwardError::ServerReset) => abort(&client),
        _ => {}
    }
    result
}

/// What both pumps of one connection share.
struct Ctx<'a> {
    pool: &'a PipePool,
    counter: &'a dyn ByteCounter,
    activity: &'a Activity,
    splice: bool,
}

impl Ctx<'_> {
    /// Records `n` bytes delivered towards `to`.
    fn delivered(&self, to: Side, n: usize) {
        let n = n as u64;
        match to {
            Side::Server => self.counter.to_server(n),
            Side::Client => self.counter.to_client(n),
        }
        self.activity.touch();
    }
}

/// One direction: bytes read from `src` (the `from` side) are written to
/// `dst` (the `to` side).
struct Direction<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    from: Side,
    to: Side,
}

impl Direction<'_> {
    fn read_error(&self, e: io::Error) -> ForwardError {
        ForwardError::from_io(self.from, IoOp::Read, e)
    }
    fn write_error(&self, e: io::Error) -> ForwardError {
        ForwardError::from_io(self.to, IoOp::Write, e)
    }
}

/// Moves one direction to EOF, then half-closes the destination. Returns the
/// bytes delivered.
async fn pump(dir: Direction<'_>, ctx: &Ctx<'_>) -> Result<u64, ForwardError> {
    let mut total = 0u64;
    let mut spliced_to_eof = false;
    if ctx.splice && ctx.pool.splice_available() {
        match splice::pump(&dir, ctx, &mut total).await? {
            splice::End::Eof => spliced_to_eof = true,
            splice::End::Unsupported => ctx.pool.mark_splice_unavailable(),
        }
    }
    if !spliced_to_eof {
        copy::pump(&dir, ctx, &mut total).await?;
    }
    match SockRef::from(dir.dst).shutdown(Shutdown::Write) {
        // The peer is already gone; the other direction reports why, if it matters.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        Err(e) => return Err(ForwardError::from_io(dir.to, IoOp::Shutdown, e)),
        Ok(()) => {}
    }
    Ok(total)
}

/// Makes the close of `stream` send a RST instead of a FIN.
fn abort(stream: &TcpStream) {
    // Best effort: the socket is closed right after either way.
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// When a byte last moved, in either direction, as nanoseconds since `start`.
struct Activity {
    start: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = self.start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    /// Completes once `timeout` has passed with no `touch`. One timer per
    /// connection, re-armed at most once per `timeout`, instead of one reset
    /// per syscall.
    async fn idle_for(&self, timeout: Duration) {
        if timeout.is_zero() {
            return std::future::pending().await;
        }
        let mut deadline = self.start + timeout;
        loop {
            tokio::time::sleep_until(deadline).await;
            let next = self.last() + timeout;
            if next <= deadline {
                return;
            }
            deadline = next;
        }
    }
}

#[cfg(test)]
mod tests;
