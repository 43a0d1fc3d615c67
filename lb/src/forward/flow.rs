//! One direction of a connection as a small state machine, polled by the
//! connection's task.
//!
//! Waiting uses the sockets' own readiness slots (`poll_read_ready` on the
//! source, `poll_write_ready` on the destination), so a flow stores no waiter
//! of its own: its whole state is what is in flight and how to move it.

use std::io;
use std::mem;
use std::net::Shutdown;
use std::task::{Context, Poll};

use socket2::SockRef;
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
    /// EOF was forwarded and the destination half-closed.
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
    Splice,
    Copy,
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
    /// Bytes delivered so far.
    total: u64,
}

impl<'p> Flow<'p> {
    pub(super) fn new(splice: bool) -> Self {
        Flow {
            carrier: Carrier::Empty,
            start: 0,
            end: 0,
            mode: if splice { Mode::Splice } else { Mode::Copy },
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

    /// Gives up the pipe or buffer; a pipe that may still hold bytes is
    /// closed rather than returned to the pool.
    pub(super) fn discard(&mut self) {
        match mem::replace(&mut self.carrier, Carrier::Empty) {
            Carrier::Pipe(pipe) if self.start == self.end => pipe.release_empty(),
            _ => {}
        }
    }

    /// Moves bytes until a socket blocks, the source's EOF has been
    /// forwarded, or `budget` is spent.
    pub(super) fn poll(
        &mut self,
        ends: &Ends<'_>,
        ctx: &Ctx<'p>,
        budget: Budget,
        cx: &mut Context<'_>,
    ) -> Result<Progress, ForwardError> {
        let delivered_before = self.total;
        for _ in 0..budget.steps {
            let step = if self.mode == Mode::Done {
                return Ok(Progress::Done);
            } else if self.start < self.end {
                self.drain(ends, ctx, cx)?
            } else {
                self.fill(ends, ctx, cx)?
            };
            if let Step::Blocked = step {
                return Ok(Progress::Blocked);
            }
            if self.total - delivered_before >= u64::from(budget.bytes) {
                break;
            }
        }
        Ok(match self.mode {
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
            Poll::Pending => return Ok(Step::Blocked),
            Poll::Ready(ready) => ready.map_err(|e| ends.read_error(e))?,
        }
        let filled = match self.mode {
            Mode::Splice => {
                if !matches!(self.carrier, Carrier::Pipe(_)) {
                    self.carrier = Carrier::Pipe(ctx.pool.take().map_err(ForwardError::Pipe)?);
                }
                let Carrier::Pipe(pipe) = &self.carrier else {
                    unreachable!("a pipe was just put in place");
                };
                splice::fill(ends.src, pipe.pipe())
            }
            Mode::Copy | Mode::Done => {
                if !matches!(self.carrier, Carrier::Buffer(_)) {
                    self.carrier = Carrier::Buffer(copy::new_buffer());
                }
                let Carrier::Buffer(buffer) = &mut self.carrier else {
                    unreachable!("a buffer was just put in place");
                };
                ends.src.try_read(&mut buffer[..])
            }
        };
        match filled {
            Ok(0) => {
                self.discard();
                self.finish(ends)?;
            }
            // At most SPLICE_LEN or BUFFER_SIZE, both far below u32::MAX.
            Ok(n) => (self.start, self.end) = (0, n as u32),
            // The source is drained and its readiness cleared: give the
            // carrier back while waiting.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.discard(),
            Err(e) if self.mode == Mode::Splice && splice::is_unsupported(&e) => {
                // The pipe is empty, so copying on loses no byte.
                self.discard();
                ctx.pool.mark_splice_unavailable();
                self.mode = Mode::Copy;
            }
            Err(e) => return Err(ends.read_error(e)),
        }
        Ok(Step::Continue)
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
            Carrier::Buffer(buffer) => ends.dst.try_write(&buffer[start..end]),
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

    /// Every byte is delivered and the source sent FIN: pass the FIN on.
    fn finish(&mut self, ends: &Ends<'_>) -> Result<(), ForwardError> {
        self.mode = Mode::Done;
        match SockRef::from(ends.dst).shutdown(Shutdown::Write) {
            // The peer is already gone; the other direction reports why, if it matters.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            Err(e) => Err(ForwardError::from_io(ends.to, IoOp::Shutdown, e)),
            Ok(()) => Ok(()),
        }
    }
}
