//! One direction of a connection as a small state machine, polled by the
//! connection's task.
//!
//! Waiting uses the sockets' own readiness slots (`poll_read_ready` on the
//! source, `poll_write_ready` on the destination), so a flow stores no waiter
//! of its own: its whole state is what is in flight and how to move it.
//!
//! A flow starts on the copy path with a small buffer: a request or a
//! response of a few kilobytes costs one read and one write. A read that
//! fills the buffer shows bulk, and from then on the flow splices (or, when
//! splice is off, copies through a large buffer).

use std::io;
use std::mem;
use std::task::{Context, Poll};

use tokio::net::TcpStream;

use super::copy::{self, Buffer};
use super::pool::LentPipe;
use super::{splice, Ctx, ForwardError, IoOp, Side};

/// One direction's sockets: bytes read from `src` (the `from` side) are
/// written to `dst` (the `to` side).
pub(super) struct Ends<'s> {
    pub(super) src: &'s TcpStream,
    pub(super) dst: &'s TcpStream,
    pub(super) from: Side,
    pub(super) to: Side,
}

impl Ends<'_> {
    fn read_error(&self, e: io::Error) -> ForwardError {
        ForwardError::from_io(self.from, IoOp::Read, e)
    }
    fn write_error(&self, e: io::Error) -> ForwardError {
        ForwardError::from_io(self.to, IoOp::Write, e)
    }
}

/// How much one poll of a flow may do before it lets the other direction,
/// and the other tasks of the worker, have a turn.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// Syscalls (fills and drains).
    pub(super) steps: u16,
    /// Bytes delivered.
    pub(super) bytes: u32,
}

/// Where a poll of a flow left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// The source's EOF came and every byte is delivered: the FIN is owed
    /// to the destination (the connection sends it, see [`Flow::fin_sent`]).
    Ended,
    /// The FIN was passed on earlier.
    Done,
    /// Waiting for a socket; the task is woken when it is ready.
    Blocked,
    /// Out of budget while bytes could still move: poll again soon.
    Yielded,
}

/// What the flow holds bytes in while they are on the way.
enum Carrier<'p> {
    Empty,
    Pipe(LentPipe<'p>),
    Buffer(Buffer),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Through a buffer of `copy::SMALL` bytes, or `copy::LARGE` once the
    /// flow moves bulk and may not splice.
    Copy {
        bulk: bool,
    },
    Splice,
    /// The source ended and everything is delivered.
    Ended,
    Done,
}

/// The result of one fill or drain attempt.
enum Step {
    Continue,
    Blocked,
}

pub(super) struct Flow<'p> {
    carrier: Carrier<'p>,
    /// The bytes in flight: `start..end` of the buffer, or `end - start`
    /// bytes in the pipe.
    start: u32,
    end: u32,
    mode: Mode,
    /// Whether this flow may switch to splice once it moves bulk.
    may_splice: bool,
    /// The source's EOF was read along with the bytes in flight: they go
    /// out corked, with the FIN right behind them.
    eof_read: bool,
    /// Bytes delivered so far.
    total: u64,
}

impl<'p> Flow<'p> {
    pub(super) fn new(splice: bool) -> Self {
        Flow {
            carrier: Carrier::Empty,
            start: 0,
            end: 0,
            mode: Mode::Copy { bulk: false },
            may_splice: splice,
            eof_read: false,
            total: 0,
        }
    }

    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Whether a pipe or buffer is borrowed right now.
    #[cfg(test)]
    pub(super) fn holds_carrier(&self) -> bool {
        !matches!(self.carrier, Carrier::Empty)
    }

    /// Whether this flow has switched to splice.
    #[cfg(test)]
    pub(super) fn splices(&self) -> bool {
        self.mode == Mode::Splice
    }

    /// The connection passed the FIN on (shutdown, or close).
    pub(super) fn fin_sent(&mut self) {
        self.mode = Mode::Done;
    }

    /// Gives up the pipe or buffer; a pipe that may still hold bytes is
    /// closed rather than returned to the pool.
    pub(super) fn discard(&mut self) {
        match mem::replace(&mut self.carrier, Carrier::Empty) {
            Carrier::Pipe(pipe) if self.start == self.end => pipe.release_empty(),
            Carrier::Buffer(buffer) => copy::give_back(buffer),
            _ => {}
        }
    }

    /// Moves bytes until a socket blocks, the source's EOF is reached with
    /// every byte delivered, or `budget` is spent.
    pub(super) fn poll(
        &mut self,
        ends: &Ends<'_>,
        ctx: &Ctx<'p>,
        budget: Budget,
        cx: &mut Context<'_>,
    ) -> Result<Progress, ForwardError> {
        let delivered_before = self.total;
        for _ in 0..budget.steps {
            let step = match self.mode {
                Mode::Ended => return Ok(Progress::Ended),
                Mode::Done => return Ok(Progress::Done),
                _ if self.start < self.end => self.drain(ends, ctx, cx)?,
                _ if self.eof_read => {
                    self.discard();
                    self.mode = Mode::Ended;
                    return Ok(Progress::Ended);
                }
                _ => self.fill(ends, ctx, cx)?,
            };
            if let Step::Blocked = step {
                return Ok(Progress::Blocked);
            }
            if self.total - delivered_before >= u64::from(budget.bytes) {
                break;
            }
        }
        Ok(match self.mode {
            Mode::Ended => Progress::Ended,
            Mode::Done => Progress::Done,
            _ => Progress::Yielded,
        })
    }

    /// With nothing in flight: reads what the source has, or waits for it.
    fn fill(
        &mut self,
        ends: &Ends<'_>,
        ctx: &Ctx<'p>,
        cx: &mut Context<'_>,
    ) -> Result<Step, ForwardError> {
        // Wait without a pipe or buffer: an idle connection holds none.
        match ends.src.poll_read_ready(cx) {
            Poll::Pending => {
                self.discard();
                return Ok(Step::Blocked);
            }
            Poll::Ready(ready) => ready.map_err(|e| ends.read_error(e))?,
        }
        match self.mode {
            Mode::Splice => self.splice_fill(ends, ctx, cx),
            Mode::Copy { bulk } => self.copy_fill(ends, ctx, cx, bulk),
            Mode::Ended | Mode::Done => unreachable!("finished flows do not fill"),
        }
    }

    fn splice_fill(
        &mut self,
        ends: &Ends<'_>,
        ctx: &Ctx<'p>,
        cx: &mut Context<'_>,
    ) -> Result<Step, ForwardError> {
        if !matches!(self.carrier, Carrier::Pipe(_)) {
            self.discard();
            match ctx.pool.take() {
                Ok(Some(pipe)) => self.carrier = Carrier::Pipe(pipe),
                // No pipe to be had, within the pool's share of descriptors
                // or the process's: this burst is copied, which needs none,
                // and the next one asks for a pipe again.
                Ok(None) => return self.copy_fill(ends, ctx, cx, true),
                Err(e) if crate::pressure::is_local(&e) => {
                    crate::pressure::process().local_error("pipe", &e);
                    return self.copy_fill(ends, ctx, cx, true);
                }
                Err(e) => return Err(ForwardError::Pipe(e)),
            }
        }
        let Carrier::Pipe(pipe) = &self.carrier else {
            unreachable!("a pipe was just put in place");
        };
        match splice::fill(ends.src, pipe.pipe()) {
            Ok(0) => self.source_ended(),
            // At most SPLICE_LEN, far below u32::MAX.
            Ok(n) => (self.start, self.end) = (0, n as u32),
            // The source is drained and its readiness cleared: give the
            // pipe back while waiting.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.discard(),
            Err(e) if splice::is_unsupported(&e) => {
                // The pipe is empty, so copying on loses no byte.
                self.discard();
                ctx.pool.mark_splice_unavailable();
                self.may_splice = false;
                self.mode = Mode::Copy { bulk: true };
            }
            Err(e) => return Err(ends.read_error(e)),
        }
        Ok(Step::Continue)
    }

    fn copy_fill(
        &mut self,
        ends: &Ends<'_>,
        ctx: &Ctx<'p>,
        cx: &mut Context<'_>,
        bulk: bool,
    ) -> Result<Step, ForwardError> {
        let size = if bulk { copy::LARGE } else { copy::SMALL };
        if !matches!(&self.carrier, Carrier::Buffer(b) if b.len() == size) {
            self.discard();
            self.carrier = Carrier::Buffer(copy::take(size));
        }
        let Carrier::Buffer(buffer) = &mut self.carrier else {
            unreachable!("a buffer was just put in place");
        };
        let n = match copy::read(ends.src, buffer) {
            Ok(0) => {
                self.source_ended();
                return Ok(Step::Continue);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.discard();
                return Ok(Step::Continue);
            }
            Err(e) => return Err(ends.read_error(e)),
        };
        if n == buffer.len() {
            // A full buffer: bulk. Later fills splice (or use the large
            // buffer); this one is drained first.
            if !bulk {
                self.mode = if self.may_splice && ctx.pool.splice_available() {
                    Mode::Splice
                } else {
                    Mode::Copy { bulk: true }
                };
            }
        } else if ends.src.poll_read_ready(cx).is_ready() {
            // The short read cleared the readiness, so the socket is still
            // readable only if the FIN is in: read it now, and the bytes go
            // out with the FIN in one segment.
            match copy::read(ends.src, &mut buffer[n..]) {
                Ok(0) => self.eof_read = true,
                Ok(more) => return Ok(self.filled(n + more)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(ends.read_error(e)),
            }
        }
        Ok(self.filled(n))
    }

    fn filled(&mut self, n: usize) -> Step {
        // At most copy::LARGE, far below u32::MAX.
        (self.start, self.end) = (0, n as u32);
        Step::Continue
    }

    /// The source sent FIN and nothing is in flight.
    fn source_ended(&mut self) {
        self.discard();
        self.mode = Mode::Ended;
    }

    /// With bytes in flight: writes them on, or waits until the destination
    /// takes more.
    fn drain(
        &mut self,
        ends: &Ends<'_>,
        ctx: &Ctx<'p>,
        cx: &mut Context<'_>,
    ) -> Result<Step, ForwardError> {
        let (start, end) = (self.start as usize, self.end as usize);
        let drained = match &self.carrier {
            Carrier::Pipe(pipe) => splice::drain(pipe.pipe(), ends.dst, end - start),
            Carrier::Buffer(buffer) => copy::write(ends.dst, &buffer[start..end], self.eof_read),
            Carrier::Empty => unreachable!("bytes in flight imply a pipe or a buffer"),
        };
        match drained {
            Ok(0) => Err(ends.write_error(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                self.start += n as u32;
                self.total += n as u64;
                ctx.delivered(ends.to, n);
                Ok(Step::Continue)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match ends.dst.poll_write_ready(cx) {
                    Poll::Pending => Ok(Step::Blocked),
                    Poll::Ready(ready) => {
                        ready.map_err(|e| ends.write_error(e))?;
                        Ok(Step::Continue)
                    }
                }
            }
            Err(e) => Err(ends.write_error(e)),
        }
    }
}
