//! The future behind [`super::forward`]: both directions of one connection
//! and its idle timer, polled by one task.
//!
//! Written by hand rather than as an `async fn` because one of these lives
//! for every proxied connection: an `async fn` keeps a readiness future (with
//! its waiter node and waker) per pending await, per direction, plus the
//! state of every sub-future, where the sockets' own per-direction waker
//! slots suffice. The client's read readiness belongs to the client → server
//! flow and its write readiness to the server → client flow (the other way
//! round for the server), so each slot has a single user.

use std::future::{poll_fn, Future};
use std::net::Shutdown;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::flow::{Budget, Ends, Flow, Progress};
use super::{abort, idle, Ctx, ForwardError, IoOp, Side, Totals};

/// Per direction and poll: enough to keep a fast connection efficient (a
/// wake-up per half MiB or 32 syscalls), little enough that one busy
/// direction neither starves the other nor holds up the worker thread. Fills
/// also spend tokio's cooperative budget (128 per task poll), which both
/// directions share; 16 fills each stay within it.
pub(super) const BUDGET: Budget = Budget {
    steps: 32,
    bytes: 512 * 1024,
};

struct Sockets {
    client: TcpStream,
    server: TcpStream,
}

pub(super) struct Connection<'a> {
    /// Taken, and so closed, when the forward completes.
    sockets: Option<Sockets>,
    up: Flow<'a>,
    down: Flow<'a>,
    ctx: Ctx<'a>,
    idle_timeout: Duration,
    last_active: Instant,
}

impl<'a> Connection<'a> {
    pub(super) fn new(
        client: TcpStream,
        server: TcpStream,
        ctx: Ctx<'a>,
        splice: bool,
        idle_timeout: Duration,
    ) -> Self {
        Connection {
            sockets: Some(Sockets { client, server }),
            up: Flow::new(splice),
            down: Flow::new(splice),
            ctx,
            idle_timeout,
            last_active: Instant::now(),
        }
    }

    /// Whether either direction holds a pipe or a buffer right now.
    #[cfg(test)]
    pub(super) fn holds_carrier(&self) -> bool {
        self.up.holds_carrier() || self.down.holds_carrier()
    }

    /// Whether each direction (up, down) has switched to splice.
    #[cfg(test)]
    pub(super) fn splices(&self) -> (bool, bool) {
        (self.up.splices(), self.down.splices())
    }

    /// The timer needs pinning, which a plain struct cannot give without
    /// `unsafe`; this thin async block adds only the timer and a reference.
    // Not an `async fn`: that keeps `self` twice, as the argument and as the
    // local it is moved into (600 bytes instead of 368 in a debug build).
    #[allow(clippy::manual_async_fn)]
    pub(super) fn run(mut self) -> impl Future<Output = Result<Totals, ForwardError>> + Send + 'a {
        async move {
            let mut idle = pin!(self.idle_timer());
            let this = &mut self;
            poll_fn(move |cx| this.poll(cx, idle.as_mut().as_pin_mut(), BUDGET)).await
        }
    }

    fn idle_timer(&self) -> Option<Sleep> {
        (!self.idle_timeout.is_zero())
            .then(|| tokio::time::sleep_until(self.last_active + self.idle_timeout))
    }

    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        idle: Option<Pin<&mut Sleep>>,
        budget: Budget,
    ) -> Poll<Result<Totals, ForwardError>> {
        let Some(sockets) = &self.sockets else {
            panic!("forward polled after it completed");
        };
        let up = Ends {
            src: &sockets.client,
            dst: &sockets.server,
            from: Side::Client,
            to: Side::Server,
        };
        let down = Ends {
            src: &sockets.server,
            dst: &sockets.client,
            from: Side::Server,
            to: Side::Client,
        };
        let before = self.totals();
        let progress = self
            .up
            .poll(&up, &self.ctx, budget, cx)
            .and_then(|up_progress| {
                let down_progress = self.down.poll(&down, &self.ctx, budget, cx)?;
                Ok((up_progress, down_progress))
            });
        let result = match progress {
            Err(e) => Err(e),
            // Both sources ended: closing the sockets sends whatever FIN is
            // still owed, without a shutdown(2) first.
            Ok((Progress::Ended | Progress::Done, Progress::Ended | Progress::Done)) => {
                Ok(self.totals())
            }
            Ok((up_progress, down_progress)) => {
                // One source ended while the other direction goes on: pass
                // its FIN on and keep forwarding the other way.
                let half_closed = if up_progress == Progress::Ended {
                    Self::half_close(&mut self.up, &up)
                } else if down_progress == Progress::Ended {
                    Self::half_close(&mut self.down, &down)
                } else {
                    Ok(())
                };
                if let Err(e) = half_closed {
                    Err(e)
                } else {
                    if self.totals() != before {
                        self.last_active = Instant::now();
                    }
                    if idle.is_some_and(|timer| self.idle_expired(timer, cx)) {
                        Err(ForwardError::IdleTimeout(self.idle_timeout))
                    } else {
                        if Progress::Yielded == up_progress || Progress::Yielded == down_progress {
                            // Out of budget, not blocked: nothing else will wake us.
                            cx.waker().wake_by_ref();
                        }
                        return Poll::Pending;
                    }
                }
            }
        };
        Poll::Ready(self.complete(result))
    }

    /// Sends the FIN a flow owes its destination.
    fn half_close(flow: &mut Flow<'_>, ends: &Ends<'_>) -> Result<(), ForwardError> {
        flow.fin_sent();
        match SockRef::from(ends.dst).shutdown(Shutdown::Write) {
            // The peer is already gone; the other direction reports why, if it matters.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            Err(e) => Err(ForwardError::from_io(ends.to, IoOp::Shutdown, e)),
            Ok(()) => Ok(()),
        }
    }

    fn totals(&self) -> Totals {
        Totals {
            to_server: self.up.total(),
            to_client: self.down.total(),
        }
    }

    /// Polls the idle timer, re-arming it while bytes keep moving.
    fn idle_expired(&self, mut timer: Pin<&mut Sleep>, cx: &mut Context<'_>) -> bool {
        while timer.as_mut().poll(cx).is_ready() {
            match idle::rearm(timer.deadline(), self.last_active, self.idle_timeout) {
                Some(next) => timer.as_mut().reset(next),
                None => return true,
            }
        }
        false
    }

    /// Ends the forward: propagates a reset, returns or closes the pipes and
    /// closes both sockets.
    fn complete(&mut self, result: Result<Totals, ForwardError>) -> Result<Totals, ForwardError> {
        let sockets = self.sockets.take().expect("completed only once");
        match &result {
            Err(ForwardError::ClientReset) => abort(&sockets.server),
            Err(ForwardError::ServerReset) => abort(&sockets.client),
            _ => {}
        }
        self.up.discard();
        self.down.discard();
        result
    }
}
