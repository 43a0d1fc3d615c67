//! Moving the calling thread into a namespace of a [`Lab`](crate::netns::Lab).
//!
//! A network namespace is a per-thread attribute: after [`enter`], sockets
//! the thread opens, threads it spawns (a tokio runtime built afterwards)
//! and processes it starts all live in the namespace, while the other
//! threads of the test binary stay where they were. Tests that need
//! several programs talking over the namespace's own loopback (the daemon,
//! servers, a browser) use it instead of wrapping each in `ip netns exec`.

use crate::netns::Ns;

/// Moves the calling thread into `ns`'s network namespace.
pub fn enter(ns: &Ns) {
    let path = format!("/run/netns/{}", ns.name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("enter {}: {e}", ns.name));
}

/// Moves the calling thread into `ns` and runs `body` on a tokio runtime
/// built there (its worker threads, and every process the body starts,
/// live in the namespace).
pub fn block_on_inside<F: std::future::Future>(ns: &Ns, body: impl FnOnce() -> F) -> F::Output {
    enter(ns);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(body())
}
