//! One direction through a pipe with splice(2).
//!
//! The pipe is filled only when it is empty: then an EAGAIN on socket → pipe
//! can only mean "the socket has nothing", which is what tokio assumes when
//! it clears the readiness. (With bytes left in the pipe, EAGAIN could also
//! mean "pipe full", and clearing readability then would lose the wake-up.)

use std::io;

use nix::errno::Errno;
use nix::fcntl::{splice, SpliceFFlags};
use tokio::io::Interest;

use super::pool::LentPipe;
use super::{Ctx, Direction, ForwardError};

/// Larger than any pipe we can get, so one call fills whatever pipe we hold.
const SPLICE_LEN: usize = 1 << 30;

pub(super) enum End {
    /// The source sent FIN and every byte was delivered.
    Eof,
    /// The kernel cannot splice these sockets; the pipe was empty, so the
    /// caller may carry on with the copy path without losing a byte.
    Unsupported,
}

pub(super) async fn pump(
    dir: &Direction<'_>,
    ctx: &Ctx<'_>,
    total: &mut u64,
) -> Result<End, ForwardError> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let mut lent: Option<LentPipe<'_>> = None;
    let mut in_pipe = 0usize;
    loop {
        if in_pipe == 0 {
            // Wait without a pipe: an idle connection holds none.
            dir.src.readable().await.map_err(|e| dir.read_error(e))?;
            let pipe = match lent.as_ref() {
                Some(pipe) => pipe,
                None => lent.insert(ctx.pool.take().map_err(ForwardError::Pipe)?),
            };
            let filled = dir.src.try_io(Interest::READABLE, || {
                splice(dir.src, None, &pipe.pipe().write, None, SPLICE_LEN, flags)
                    .map_err(io::Error::from)
            });
            match filled {
                Ok(0) => {
                    release(&mut lent);
                    return Ok(End::Eof);
                }
                Ok(n) => in_pipe = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => release(&mut lent),
                Err(e) if is_unsupported(&e) => {
                    release(&mut lent);
                    return Ok(End::Unsupported);
                }
                Err(e) => return Err(dir.read_error(e)),
            }
        } else {
            let pipe = lent.as_ref().expect("bytes in the pipe imply a pipe");
            let drained = dir.dst.try_io(Interest::WRITABLE, || {
                splice(&pipe.pipe().read, None, dir.dst, None, in_pipe, flags)
                    .map_err(io::Error::from)
            });
            match drained {
                Ok(0) => return Err(dir.write_error(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    in_pipe -= n;
                    *total += n as u64;
                    ctx.delivered(dir.to, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dir.dst.writable().await.map_err(|e| dir.write_error(e))?;
                }
                Err(e) => return Err(dir.write_error(e)),
            }
        }
    }
}

/// Returns an empty pipe to the pool.
fn release(lent: &mut Option<LentPipe<'_>>) {
    if let Some(pipe) = lent.take() {
        pipe.release_empty();
    }
}

/// splice(2) missing from the kernel, or not supported for this socket.
fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINVAL | Errno::ENOSYS)
    )
}
