//! The TCP data plane's threads: on a machine with several cores, one
//! single-threaded runtime per core, each accepting from every listener
//! and serving the clients it accepted to their end.
//!
//! A work-stealing runtime moved connections between cores: a client
//! accepted on one worker was often connected onward by another, and every
//! wake-up crossed threads. Unpinned on two cores that cost coexist 12 %
//! of its connection rate against HAProxy, whose threads each keep what
//! they accepted; with a shard per core a connection stays on the thread
//! that accepted it, as in HAProxy.
//!
//! Every shard waits on the same listening socket (a duplicate of its
//! descriptor, made when the address is bound, in the shard's own epoll
//! set): whichever is free first takes the next client, which spreads the
//! load by how busy each shard is. The others find the backlog empty and
//! wait again. A `SO_REUSEPORT` socket per shard spreads clients by hash
//! instead; on two cores it measured the same, and it lets a second process
//! bind the same port without an error. HAProxy sets it on its listeners,
//! so a coexist started beside an HAProxy would share its port rather than
//! say that it is taken.

use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The data plane's runtimes. With none, listeners accept on the runtime
/// that applies the config (a machine with one core, and tests).
#[derive(Debug, Default)]
pub struct Shards {
    handles: Vec<Handle>,
    threads: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Shards {
    /// `threads` shards (`tuning.threads`), or by default one per core
    /// the process may run on, and none with one core (the daemon's
    /// runtime is then single-threaded itself).
    pub fn configured(threads: Option<usize>) -> io::Result<Self> {
        let cpus = usable_cpus();
        Self::start(threads.unwrap_or(if cpus > 1 { cpus } else { 0 }))
    }

    /// Starts `count` shards, each a thread running a single-threaded
    /// runtime until the shards are dropped.
    pub fn start(count: usize) -> io::Result<Self> {
        let mut shards = Self::default();
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            shards.handles.push(runtime.handle().clone());
            let thread = std::thread::Builder::new()
                .name(format!("coexist-tcp-{index}"))
                .spawn(move || {
                    // Runs the shard's tasks until told to stop; dropping the
                    // runtime then drops what is left of them.
                    let _ = runtime.block_on(stopped);
                })?;
            shards.threads.push((stop, thread));
        }
        Ok(shards)
    }

    /// The runtimes to spawn accept loops on; empty when the current
    /// runtime accepts.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// How many shards run (0: the current runtime accepts).
    pub fn count(&self) -> usize {
        self.handles.len()
    }
}

/// The CPUs this process may run on (its affinity mask, a cgroup's quota):
/// what sizes both the daemon's runtime and the shards.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Drop for Shards {
    fn drop(&mut self) {
        for (stop, thread) in self.threads.drain(..) {
            let _ = stop.send(());
            // A shard's last tasks are dropped with its runtime; waiting
            // for that keeps a shard from outliving the daemon's shutdown.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each shard runs its tasks on a thread of its own, named for `top -H`
    /// and /proc, and the threads end when the shards are dropped.
    #[test]
    fn shards_run_tasks_on_threads_of_their_own_until_dropped() {
        let shards = Shards::start(2).unwrap();
        let names: Vec<String> = shards
            .handles()
            .iter()
            .map(|handle| {
                let (tx, rx) = std::sync::mpsc::channel();
                handle.spawn(async move {
                    let _ = tx.send(std::thread::current().name().map(str::to_owned));
                });
                rx.recv().unwrap().unwrap()
            })
            .collect();
        assert_eq!(names, ["coexist-tcp-0", "coexist-tcp-1"]);
        let handle = shards.handles()[0].clone();
        drop(shards);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        handle.spawn(async move {
            let _ = tx.send(());
        });
        assert!(rx.recv().is_err(), "a task ran on a stopped shard");
    }
}
