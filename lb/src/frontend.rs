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

/// A listener bound ahead of a config switch, not yet accepting.
#[derive(Debug)]
pub struct Bound {
    address: SocketAddr,
    frontend: String,
    listener: TcpListener,
}

#[derive(Debug)]
struct Running {
    frontend: watch::Sender<String>,
    stop: watch::Sender<bool>,
    /// One accept loop per shard (or one on the daemon's runtime).
    tasks: Vec<JoinHandle<()>>,
}

/// Every listening socket of the daemon, owned by one place.
#[derive(Debug, Default)]
pub struct Listeners {
    running: HashMap<SocketAddr, Running>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} for frontend {frontend}: {error}")]
pub struct BindError {
    pub address: SocketAddr,
    pub frontend: String,
    pub error: io::Error,
}

impl Listeners {
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
                let listener =
                    crate::net::bind_listener(address, config.tuning.backlog).map_err(|error| {
                        BindError {
                            address,
                            frontend: frontend.name.clone(),
                            error,
                        }
                    })?;
                bound.push(Bound {
                    address,
                    frontend: frontend.name.clone(),
                    listener,
                });
            }
        }
        Ok(bound)
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
        shards: &Shards,
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
            listener,
        } in bound
        {
            tracing::info!(%address, %frontend, "listening");
            let (frontend_tx, frontend_rx) = watch::channel(frontend);
            let (stop_tx, stop_rx) = watch::channel(false);
            let tasks = spawn_accept_loops(listener, shards, |shard| AcceptLoop {
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

/// Starts the accept loops of `listener`: one on each shard, each with its
/// own descriptor of the socket registered with its shard's runtime, or one
/// on the current runtime when there are no shards.
fn spawn_accept_loops(
    listener: TcpListener,
    shards: &Shards,
    context: impl Fn(usize) -> AcceptLoop,
) -> Vec<JoinHandle<()>> {
    let Some((last, others)) = shards.handles().split_last() else {
        return vec![tokio::spawn(accept_loop(listener, context(0)))];
    };
    let address = listener.local_addr().ok();
    // Only fails for a socket never registered, and bind_listener did.
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(?address, %error, "cannot hand the listener to the shards");
            return Vec::new();
        }
    };
    let mut descriptors: Vec<_> = others
        .iter()
        .enumerate()
        .filter_map(|shard| match listener.try_clone() {
            Ok(duplicate) => Some((shard, duplicate)),
            Err(error) => {
                // Out of descriptors: the shards that have one accept for all.
                tracing::warn!(?address, %error, "a shard does not accept on this listener");
                None
            }
        })
        .collect();
    descriptors.push(((others.len(), last), listener));
    descriptors
        .into_iter()
        .map(|((index, shard), listener)| {
            let context = context(index);
            shard.spawn(async move {
                // Registered here, with the shard's own reactor.
                match TcpListener::from_std(listener) {
                    Ok(listener) => accept_loop(listener, context).await,
                    Err(error) => {
                        tracing::warn!(?address, %error, "a shard does not accept on this listener")
                    }
                }
            })
        })
        .collect()
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

    #[test]
    fn a_per_client_accept_error_does_not_pause() {
        let mut backoff = AcceptBackoff::default();
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(backoff.on_error(&aborted), None);
    }
}
