//! The two splice(2) calls of one direction: socket → pipe, pipe → socket.
//!
//! The pipe is filled only when it is empty: then an EAGAIN on socket → pipe
//! can only mean "the socket has nothing", which is what tokio assumes when
//! it clears the readiness. (With bytes left in the pipe, EAGAIN could also
//! mean "pipe full", and clearing readability then would lose the wake-up.)

use std::io;

use nix::errno::Errno;
use nix::fcntl::{splice, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::pool::Pipe;

/// Larger than any pipe we can get, so one call fills whatever pipe we hold,
/// and small enough that a pipe's content always fits in a `u32`.
pub(super) const SPLICE_LEN: usize = 1 << 30;

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE
}

/// Moves what `src` has into the empty `pipe`. `Ok(0)` is the source's EOF;
/// WouldBlock clears the socket's read readiness.
pub(super) fn fill(src: &TcpStream, pipe: &Pipe) -> io::Result<usize> {
    src.try_io(Interest::READABLE, || {
        splice(src, None, &pipe.write, None, SPLICE_LEN, flags()).map_err(io::Error::from)
    })
}

/// Moves up to `len` bytes (all in the pipe) from `pipe` to `dst`.
/// WouldBlock clears the socket's write readiness.
pub(super) fn drain(pipe: &Pipe, dst: &TcpStream, len: usize) -> io::Result<usize> {
    dst.try_io(Interest::WRITABLE, || {
        splice(&pipe.read, None, dst, None, len, flags()).map_err(io::Error::from)
    })
}

/// splice(2) missing from the kernel, or not supported for this socket.
pub(super) fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINVAL | Errno::ENOSYS)
    )
}
