//! A bounded pool of splice pipes.
//!
//! A pipe costs two file descriptors and up to `pipe_size` bytes of kernel
//! memory, and the process may hold only so many descriptors, so a connection
//! borrows a pipe only while bytes are moving and gives it back, empty, when
//! the burst ends. The pool keeps at most `max_idle` pipes for reuse so that a
//! busy daemon does not pay pipe2 + fcntl on every burst, and creates none
//! beyond `max_pipes` (the share of descriptors the process budgets for
//! pipes): past it, a burst is copied through a buffer instead.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::pipe2;

/// One kernel pipe: bytes go in at `write`, come out at `read`.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
}

/// Shared by every connection of the process (wrap it in an `Arc`).
#[derive(Debug)]
pub struct PipePool {
    requested_size: usize,
    max_idle: usize,
    /// Pipes (lent and idle) the pool may hold at once.
    max_pipes: usize,
    idle: Mutex<Vec<Pipe>>,
    in_use: AtomicUsize,
    /// Set once the kernel refused `requested_size`; later pipes keep the
    /// default size without asking again.
    size_refused: AtomicBool,
    /// Cleared the first time splice(2) turns out not to work on a socket
    /// (EINVAL / ENOSYS); from then on every connection copies in user space.
    splice_works: AtomicBool,
}

impl PipePool {
    /// `pipe_size`: requested capacity of each pipe (F_SETPIPE_SZ); 0 keeps
    /// the kernel default. `max_idle`: pipes kept for reuse, the rest closed.
    pub fn new(pipe_size: usize, max_idle: usize) -> Self {
        PipePool {
            requested_size: pipe_size,
            max_idle,
            max_pipes: usize::MAX,
            idle: Mutex::new(Vec::with_capacity(max_idle.min(1024))),
            in_use: AtomicUsize::new(0),
            size_refused: AtomicBool::new(false),
            splice_works: AtomicBool::new(true),
        }
    }

    /// At most `max_pipes` pipes, lent and idle together: two descriptors
    /// each that the process's connection ceiling set aside.
    pub fn with_max_pipes(mut self, max_pipes: usize) -> Self {
        self.max_pipes = max_pipes;
        self
    }

    /// Empty pipes waiting in the pool.
    pub fn idle(&self) -> usize {
        self.lock_idle().len()
    }

    /// Pipes currently lent to connections.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Whether splice(2) has worked so far in this process.
    pub fn splice_available(&self) -> bool {
        self.splice_works.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_splice_unavailable(&self) {
        if self.splice_works.swap(false, Ordering::Relaxed) {
            tracing::warn!("splice(2) is not supported here; copying in user space from now on");
        }
    }

    /// Lends a pipe: an idle one, or a new one while the pool holds fewer
    /// than `max_pipes`. `Ok(None)`: the pool's share is spent, and the
    /// caller copies this burst instead.
    pub(crate) fn take(&self) -> io::Result<Option<LentPipe<'_>>> {
        let reused = self.lock_idle().pop();
        let pipe = match reused {
            Some(pipe) => pipe,
            // Checked and counted apart, so threads taking at once may pass
            // the bound by one pipe each; the descriptor reserve absorbs it.
            None if self.in_use.load(Ordering::Relaxed) >= self.max_pipes => return Ok(None),
            None => self.create()?,
        };
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(Some(LentPipe {
            pool: self,
            pipe: Some(pipe),
        }))
    }

    fn create(&self) -> io::Result<Pipe> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        if self.requested_size > 0 && !self.size_refused.load(Ordering::Relaxed) {
            // A size above /proc/sys/fs/pipe-max-size gives EPERM without
            // CAP_SYS_RESOURCE; a size beyond c_int cannot even be asked for.
            let result = i32::try_from(self.requested_size)
                .map_err(|_| nix::errno::Errno::EINVAL)
                .and_then(|size| fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size)));
            if let Err(errno) = result {
                if !self.size_refused.swap(true, Ordering::Relaxed) {
                    tracing::debug!(
                        requested = self.requested_size,
                        %errno,
                        "kernel refused the splice pipe size; keeping the default size"
                    );
                }
            }
        }
        Ok(Pipe { read, write })
    }

    fn give_back(&self, pipe: Pipe) {
        let mut idle = self.lock_idle();
        if idle.len() < self.max_idle {
            idle.push(pipe);
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Pipe>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A pipe on loan. Dropped, it is closed (it may still hold bytes);
/// [`LentPipe::release_empty`] returns it to the pool instead.
#[derive(Debug)]
pub(crate) struct LentPipe<'a> {
    pool: &'a PipePool,
    pipe: Option<Pipe>,
}

impl LentPipe<'_> {
    pub(crate) fn pipe(&self) -> &Pipe {
        self.pipe.as_ref().expect("pipe present until drop")
    }

    /// The caller guarantees that every byte spliced in has been spliced out.
    pub(crate) fn release_empty(mut self) {
        if let Some(pipe) = self.pipe.take() {
            self.pool.give_back(pipe);
        }
    }
}

impl Drop for LentPipe<'_> {
    fn drop(&mut self) {
        self.pool.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_capacity(pipe: &Pipe) -> i32 {
        fcntl(pipe.read.as_raw_fd(), FcntlArg::F_GETPIPE_SZ).unwrap()
    }

    #[test]
    fn lent_pipes_are_counted_and_reused() {
        let pool = PipePool::new(0, 4);
        let a = pool.take().unwrap().unwrap();
        let b = pool.take().unwrap().unwrap();
        assert_eq!((pool.in_use(), pool.idle()), (2, 0));
        let a_fd = a.pipe().read.as_raw_fd();
        a.release_empty();
        assert_eq!((pool.in_use(), pool.idle()), (1, 1));
        let again = pool.take().unwrap().unwrap();
        assert_eq!(again.pipe().read.as_raw_fd(), a_fd, "idle pipe reused");
        drop(b);
        drop(again);
        assert_eq!(
            (pool.in_use(), pool.idle()),
            (0, 0),
            "dropped pipes are closed"
        );
    }

    #[test]
    fn idle_pipes_are_bounded() {
        let pool = PipePool::new(0, 2);
        let lent: Vec<_> = (0..5).map(|_| pool.take().unwrap().unwrap()).collect();
        lent.into_iter().for_each(LentPipe::release_empty);
        assert_eq!((pool.in_use(), pool.idle()), (0, 2));
    }

    // Input: a pool allowed two pipes; three taken, then one given back.
    // Output: the third is refused (the caller copies), and once a pipe is
    // back, taking works again without creating a third.
    #[test]
    fn no_pipe_beyond_the_budget() {
        let pool = PipePool::new(0, 2).with_max_pipes(2);
        let a = pool.take().unwrap().unwrap();
        let _b = pool.take().unwrap().unwrap();
        assert!(pool.take().unwrap().is_none(), "a third pipe was created");
        a.release_empty();
        let again = pool.take().unwrap();
        assert!(again.is_some(), "the returned pipe is lent again");
        assert!(pool.take().unwrap().is_none());
    }

    #[test]
    fn pipes_are_nonblocking_and_cloexec() {
        let pool = PipePool::new(0, 1);
        let lent = pool.take().unwrap().unwrap();
        for fd in [&lent.pipe().read, &lent.pipe().write] {
            let fl = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).unwrap());
            assert!(fl.contains(OFlag::O_NONBLOCK));
            let fd_flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFD).unwrap();
            assert_ne!(fd_flags & libc::FD_CLOEXEC, 0);
        }
    }

    #[test]
    fn requested_size_is_applied() {
        let pool = PipePool::new(256 * 1024, 1);
        let lent = pool.take().unwrap().unwrap();
        assert_eq!(pipe_capacity(lent.pipe()), 256 * 1024);
    }

    #[test]
    fn refused_size_falls_back_to_the_default() {
        let default = {
            let pool = PipePool::new(0, 1);
            let lent = pool.take().unwrap().unwrap();
            pipe_capacity(lent.pipe())
        };
        // Far above pipe-max-size (1 MiB by default), and beyond c_int.
        for absurd in [1usize << 30, 1usize << 40] {
            let pool = PipePool::new(absurd, 1);
            let first = pool.take().unwrap().unwrap();
            let second = pool.take().unwrap().unwrap();
            assert_eq!(pipe_capacity(first.pipe()), default);
            assert_eq!(pipe_capacity(second.pipe()), default);
        }
    }
}
