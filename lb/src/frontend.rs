//! Listening sockets and their accept loops.
//!
//! Listeners are keyed by address and diffed on reload: an unchanged
//! address keeps its socket and task (no accept gap), a new one is bound
//! before the new config is published, and a removed one stops accepting,
//! serves what is already in its backlog, then closes.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics::counter;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics as m;
use crate::proxy::{self, Accepted, DataPlane};
use crate::runtime::{FrontendRuntime, Snapshot};
use crate::shards::Shards;

/// A listener bound ahead of a config switch, not yet accepting: one
/// descriptor of the socket for each runtime that will accept from it.
#[derive(Debug)]
pub struct Bound {
    address: SocketAddr,
    frontend: String,
    descriptors: Vec<std::net::TcpListener>,
}

#[derive(Debug)]
struct Running {
    frontend: watch::Sender<String>,
    stop: watch::Sender<bool>,
    /// One accept loop per shard (or one on the daemon's runtime).
    tasks: Vec<JoinHandle<()>>,
}

/// Every listening socket of the daemon, owned by one place, and the
/// threads that accept from them.
#[derive(Debug, Default)]
pub struct Listeners {
    running: HashMap<SocketAddr, Running>,
    shards: Shards,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} for frontend {frontend}: {error}")]
pub struct BindError {
    pub address: SocketAddr,
    pub frontend: String,
    pub error: io::Error,
}

impl Listeners {
    /// Listeners whose clients are accepted and served on `shards`, or on
    /// the runtime that applies the config when there are none.
    pub fn new(shards: Shards) -> Self {
        Self {
            running: HashMap::new(),
            shards,
        }
    }

    /// Threads serving TCP clients; 0 when the daemon's runtime does.
    pub fn shards(&self) -> usize {
        self.shards.count()
    }

    /// Binds the addresses `config` lists that are not listening yet.
    /// Nothing changes for running listeners; on error every socket bound
    /// here is closed again, so a failed reload leaves no trace.
    pub fn bind_new(&self, config: &Config) -> Result<Vec<Bound>, BindError> {
        let mut bound = Vec::new();
        for frontend in config.frontends.iter().filter(|f| f.is_tcp()) {
            for &address in &frontend.listen {
                if self.running.contains_key(&address) {
                    continue;
                }
                let descriptors = self
                    .bind_descriptors(address, config.tuning.backlog)
                    .map_err(|error| BindError {
                        address,
                        frontend: frontend.name.clone(),
                        error,
                    })?;
                bound.push(Bound {
                    address,
                    frontend: frontend.name.clone(),
                    descriptors,
                });
            }
        }
        Ok(bound)
    }

    /// Binds `address` and duplicates the socket for every shard beyond
    /// the first. Done here rather than when the shards start accepting, so
    /// the descriptors are open when the daemon derives its connection
    /// ceiling from what is open.
    fn bind_descriptors(
        &self,
        address: SocketAddr,
        backlog: u32,
    ) -> io::Result<Vec<std::net::TcpListener>> {
        let listener = crate::net::bind_listening_socket(address, backlog)?;
        let mut descriptors = (1..self.shards.count())
            .map(|_| listener.try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        descriptors.push(listener);
        Ok(descriptors)
    }

    /// Starts the newly bound listeners, re-points kept ones at their
    /// (possibly renamed) frontend and stops the ones `config` dropped.
    /// Call after the snapshot for `config` is published.
    pub fn apply(
        &mut self,
        config: &Config,
        bound: Vec<Bound>,
        snapshot: &Arc<ArcSwap<Snapshot>>,
        plane: &Arc<DataPlane>,
    ) {
        let wanted: HashMap<SocketAddr, &str> = config
            .frontends
            .iter()
            .filter(|f| f.is_tcp())
            .flat_map(|f| f.listen.iter().map(move |a| (*a, f.name.as_str())))
            .collect();
        self.running
            .retain(|address, running| match wanted.get(address) {
                Some(frontend) => {
                    running.frontend.send_if_modified(|current| {
                        let changed = current != frontend;
                        if changed {
                            *current = (*frontend).to_owned();
                        }
                        changed
                    });
                    true
                }
                None => {
                    tracing::info!(%address, "listener removed; closing after its backlog");
                    let _ = running.stop.send(true);
                    false
                }
            });
        for Bound {
            address,
            frontend,
            descriptors,
        } in bound
        {
            tracing::info!(%address, %frontend, "listening");
            let (frontend_tx, frontend_rx) = watch::channel(frontend);
            let (stop_tx, stop_rx) = watch::channel(false);
            let tasks = self.spawn_accept_loops(address, descriptors, |shard| AcceptLoop {
                accepted: counter!(m::SHARD_CONNECTIONS_TOTAL, "shard" => shard.to_string()),
                frontend: frontend_rx.clone(),
                stop: stop_rx.clone(),
                snapshot: Arc::clone(snapshot),
                plane: Arc::clone(plane),
            });
            self.running.insert(
                address,
                Running {
                    frontend: frontend_tx,
                    stop: stop_tx,
                    tasks,
                },
            );
        }
    }

    /// Stops every listener (shutdown); connections already accepted go on.
    pub async fn stop_all(&mut self) {
        for (_, running) in self.running.drain() {
            let _ = running.stop.send(true);
            for task in running.tasks {
                let _ = task.await;
            }
        }
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.running.keys().copied().collect()
    }

    /// Starts an accept loop on each shard with its own descriptor of the
    /// socket, or one on the current runtime when there are no shards.
    /// Each registers its descriptor with the reactor of the runtime it
    /// runs on.
    fn spawn_accept_loops(
        &self,
        address: SocketAddr,
        descriptors: Vec<std::net::TcpListener>,
        context: impl Fn(usize) -> AcceptLoop,
    ) -> Vec<JoinHandle<()>> {
        descriptors
            .into_iter()
            .enumerate()
            .map(|(shard, descriptor)| {
                let context = context(shard);
                let accepting = async move {
                    match TcpListener::from_std(descriptor) {
                        Ok(listener) => accept_loop(listener, context).await,
                        Err(error) => {
                            tracing::error!(%address, %error, shard, "cannot accept on this listener")
                        }
                    }
                };
                match self.shards.handles().get(shard) {
                    Some(runtime) => runtime.spawn(accepting),
                    None => tokio::spawn(accepting),
                }
            })
            .collect()
    }
}

/// What an accept loop needs besides its listener.
struct AcceptLoop {
    /// Counts the clients this loop accepts, by the shard it runs on.
    accepted: metrics::Counter,
    frontend: watch::Receiver<String>,
    stop: watch::Receiver<bool>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    plane: Arc<DataPlane>,
}

async fn accept_loop(listener: TcpListener, context: AcceptLoop) {
    let AcceptLoop {
        accepted: accepted_total,
        frontend,
        mut stop,
        snapshot,
        plane,
    } = context;
    let local = listener.local_addr().ok();
    let process = crate::pressure::process();
    let mut backoff = AcceptBackoff::default();
    let mut current = CurrentFrontend::wait(&snapshot, &frontend).await;
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        // At the limit we stop accepting and let the kernel backlog hold
        // the rest, as HAProxy's maxconn does.
        let slot = match current.runtime.limit.try_acquire() {
            Some(slot) => slot,
            None => tokio::select! {
                slot = current.runtime.limit.acquire() => slot,
                _ = stop.changed() => continue,
            },
        };
        // The process's ceiling, derived from its descriptor limit: below
        // it, every client accepted can be connected onward.
        let mut admitted = match process.try_admit() {
            Some(slot) => slot,
            None => tokio::select! {
                slot = process.admit() => slot,
                _ = stop.changed() => continue,
            },
        };
        let accepted = tokio::select! {
            biased;
            accepted = listener.accept() => accepted,
            _ = stop.changed() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                accepted_total.increment(1);
                admitted.serve();
                backoff.reset();
                // A listener on a specific address knows the local address;
                // only a wildcard one must ask the kernel (for PROXY headers).
                let local = match local {
                    Some(address) if !address.ip().is_unspecified() => address,
                    _ => stream.local_addr().unwrap_or(peer),
                };
                // A reload may have landed while we waited in accept: the
                // client gets the config current now, not the one we had.
                current.refresh(&snapshot, &frontend);
                let accepted = Accepted {
                    stream,
                    peer,
                    local,
                    slot,
                    admitted,
                };
                spawn_connection(&plane, &current.runtime, accepted);
                // Let the new client's task start its connect before the
                // next accept. Draining the whole backlog first made clients
                // arrive, and servers get connected, in convoys: while one
                // core worked through a burst the other waited for it.
                tokio::task::yield_now().await;
            }
            Err(error) => {
                drop((slot, admitted));
                if crate::pressure::is_local(&error) {
                    process.local_error("accept", &error);
                }
                counter!(m::ACCEPT_ERRORS_TOTAL, "frontend" => current.runtime.config.name.clone())
                    .increment(1);
                if let Some(pause) = backoff.on_error(&error) {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
    drain_backlog(listener, current.runtime, &plane);
}

/// The frontend an accept loop serves, looked up again only when a reload
/// published a new snapshot, not once per connection.
struct CurrentFrontend {
    snapshot: Arc<Snapshot>,
    runtime: Arc<FrontendRuntime>,
}

impl CurrentFrontend {
    async fn wait(snapshot: &ArcSwap<Snapshot>, name: &watch::Receiver<String>) -> Self {
        loop {
            let current = snapshot.load_full();
            let found = current.frontends.get(name.borrow().as_str()).cloned();
            if let Some(runtime) = found {
                return Self {
                    snapshot: current,
                    runtime,
                };
            }
            // The frontend vanished in a reload that kept this address under
            // another name; `Listeners::apply` re-points us momentarily.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Follows a reload. A frontend the new config dropped keeps its old
    /// runtime: its listener is about to stop, and the clients it already
    /// accepted are served as the old config said.
    fn refresh(&mut self, snapshot: &ArcSwap<Snapshot>, name: &watch::Receiver<String>) {
        if Arc::ptr_eq(&self.snapshot, &snapshot.load()) {
            return;
        }
        let current = snapshot.load_full();
        let found = current.frontends.get(name.borrow().as_str()).cloned();
        if let Some(runtime) = found {
            self.runtime = runtime;
            self.snapshot = current;
        }
    }
}

/// Serves connections that completed their handshake before the listener
/// was removed, so removing a listener never resets a client the kernel
/// already accepted.
fn drain_backlog(listener: TcpListener, runtime: Arc<FrontendRuntime>, plane: &Arc<DataPlane>) {
    let Ok(listener) = listener.into_std() else {
        return;
    };
    while let Ok((stream, peer)) = listener.accept() {
        let Ok(stream) = stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
        else {
            continue;
        };
        let local = stream.local_addr().unwrap_or(peer);
        // Backlog connections bypass the limit: they are already accepted
        // by the kernel and the alternative is a reset.
        let slot = runtime.limit.acquire_over_limit();
        let mut admitted = crate::pressure::process().admit_over_limit();
        admitted.serve();
        let accepted = Accepted {
            stream,
            peer,
            local,
            slot,
            admitted,
        };
        spawn_connection(plane, &runtime, accepted);
    }
}

/// Serves an accepted client on a task of its own, tracked for shutdown.
fn spawn_connection(plane: &Arc<DataPlane>, runtime: &Arc<FrontendRuntime>, accepted: Accepted) {
    // Boxed: spawning moves the future several times, and a pointer is
    // cheaper to move than the whole connection.
    let connection = proxy::serve(Arc::clone(runtime), accepted, Arc::clone(plane));
    plane.connections.spawn(Box::pin(connection));
}

/// Pauses after resource-exhaustion accept errors so they never spin a
/// core, with a log line at most once a second. The pause stays short:
/// descriptors freed elsewhere (a pipe, a check) are not announced.
#[derive(Debug, Default)]
struct AcceptBackoff {
    pause: Option<Duration>,
    last_log: Option<std::time::Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    /// Short: when the pressure ends, service resumes within this.
    const MAX: Duration = Duration::from_millis(50);

    fn reset(&mut self) {
        self.pause = None;
    }

    fn on_error(&mut self, error: &io::Error) -> Option<Duration> {
        let exhausted = matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        let now = std::time::Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(
                %error,
                pausing = exhausted,
                suppressed = self.suppressed,
                "accept failed"
            );
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        if !exhausted {
            // ECONNABORTED and friends concern one client only.
            return None;
        }
        let pause = self.pause.map_or(Self::FIRST, |p| (p * 2).min(Self::MAX));
        self.pause = Some(pause);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_exhaustion_backs_off_exponentially_up_to_50_ms() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<_> = (0..10)
            .map(|_| backoff.on_error(&emfile).unwrap())
            .collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(*pauses.last().unwrap(), Duration::from_millis(50));
        backoff.reset();
        assert_eq!(backoff.on_error(&emfile), Some(Duration::from_millis(10)));
    }

    /// Each shard gets a descriptor of its own, opened when the address is
    /// bound (the connection ceiling is derived from the descriptors open
    /// then), and all of them are the one socket: a client is accepted
    /// through exactly one.
    #[test]
    fn binding_opens_a_descriptor_of_one_socket_for_each_shard() {
        use std::os::fd::AsRawFd;
        let localhost: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let alone = Listeners::default();
        assert_eq!(alone.bind_descriptors(localhost, 16).unwrap().len(), 1);

        let listeners = Listeners::new(Shards::start(3).unwrap());
        let descriptors = listeners.bind_descriptors(localhost, 16).unwrap();
        assert_eq!(descriptors.len(), 3);
        let mut fds: Vec<_> = descriptors.iter().map(|d| d.as_raw_fd()).collect();
        fds.sort();
        fds.dedup();
        assert_eq!(fds.len(), 3, "three descriptors");
        let address = descriptors[0].local_addr().unwrap();
        assert!(descriptors
            .iter()
            .all(|d| d.local_addr().unwrap() == address));

        for descriptor in &descriptors {
            descriptor.set_nonblocking(true).unwrap();
        }
        let _client = std::net::TcpStream::connect(address).unwrap();
        let mut accepted = 0;
        for _ in 0..200 {
            accepted += descriptors.iter().filter(|d| d.accept().is_ok()).count();
            if accepted > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(accepted, 1);
    }

    #[test]
    fn a_per_client_accept_error_does_not_pause() {
        let mut backoff = AcceptBackoff::default();
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(backoff.on_error(&aborted), None);
    }
}
