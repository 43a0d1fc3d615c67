//! The user-space path of a direction: small transfers are copied through a
//! small buffer, which costs fewer system calls than the two splices and the
//! pipe of the zero-copy path; a flow switches to splice(2) once it moves
//! bulk (see `flow`). Like the pipes, a buffer exists only while a burst is
//! in flight, so an idle connection holds no memory for it; buffers are
//! kept in a per-thread free list, so a burst costs no allocation.

use std::cell::RefCell;
use std::io::{self, Read};

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The buffer of every flow that has not moved bulk yet. A read that fills
/// it marks the flow as moving bulk.
pub(super) const SMALL: usize = 16 * 1024;
/// The buffer of a flow that moves bulk without splice (disabled, or
/// refused by the kernel): fewer system calls per byte.
pub(super) const LARGE: usize = 64 * 1024;

/// Free buffers kept per thread and size: enough for the bursts one worker
/// has in flight at once, 1 MiB of each size at most.
const KEEP_SMALL: usize = 64;
const KEEP_LARGE: usize = 16;

/// A heap buffer of SMALL or LARGE bytes.
pub(super) type Buffer = Box<[u8]>;

thread_local! {
    static FREE: RefCell<[Vec<Buffer>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

fn slot(size: usize) -> (usize, usize) {
    if size == SMALL {
        (0, KEEP_SMALL)
    } else {
        (1, KEEP_LARGE)
    }
}

/// A buffer of `size` (SMALL or LARGE) bytes, from this thread's free list
/// when it has one.
pub(super) fn take(size: usize) -> Buffer {
    let (i, _) = slot(size);
    FREE.with(|free| free.borrow_mut()[i].pop())
        .unwrap_or_else(|| vec![0u8; size].into_boxed_slice())
}

/// Returns a buffer to this thread's free list (or frees it).
pub(super) fn give_back(buffer: Buffer) {
    let (i, keep) = slot(buffer.len());
    FREE.with(|free| {
        let list = &mut free.borrow_mut()[i];
        if list.len() < keep {
            list.push(buffer);
        }
    });
}

/// Reads what `src` has into `buf`. A read that returns less than `buf`
/// holds proves the socket drained, so the socket's read readiness is
/// cleared then, as after WouldBlock: the next read waits for the reactor
/// instead of costing a system call that returns EAGAIN. (The sockets are
/// registered edge-triggered; data arriving after the read raises a new
/// event, and a FIN already received keeps the socket readable: tokio never
/// clears its read-closed readiness.)
pub(super) fn read(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut short = 0;
    let result = src.try_io(Interest::READABLE, || {
        let n = (&*SockRef::from(src)).read(buf)?;
        if n > 0 && n < buf.len() {
            short = n;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => Ok(short),
        other => other,
    }
}

/// Writes `buf` to `dst`. With `more`, the bytes are corked (MSG_MORE):
/// the FIN that follows at once goes out in the same segment, which saves
/// the peer a packet, an ACK and a wake-up.
pub(super) fn write(dst: &TcpStream, buf: &[u8], more: bool) -> io::Result<usize> {
    if !more {
        return dst.try_write(buf);
    }
    dst.try_io(Interest::WRITABLE, || {
        SockRef::from(dst).send_with_flags(buf, libc::MSG_MORE | libc::MSG_NOSIGNAL)
    })
}
