//! One client connection: choose a server, connect (retrying elsewhere),
//! send the PROXY header, then hand both sockets to the forwarder.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::forward::{self, ByteCounter, ForwardOptions, PipePool};
use crate::health::Observation;
use crate::limit::Slot;
use crate::pressure::LogLimit;
use crate::proxy_protocol;
use crate::runtime::{BackendRuntime, FrontendRuntime, ServerRuntime};

/// Process-wide resources the connection path shares.
#[derive(Debug)]
pub struct DataPlane {
    pub pipes: PipePool,
    pub splice: bool,
    /// Every connection task, so shutdown can wait for them to finish.
    pub connections: tokio_util::task::TaskTracker,
}

/// A client that was accepted and holds a slot of its frontend's limit and
/// one of the process's connection ceiling.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub slot: Slot,
    /// Freed when the connection's future ends or is dropped. Carried here
    /// rather than by a wrapping `async fn`, which would hold the whole
    /// connection future twice (its argument and the awaited copy): 2,104
    /// bytes a connection instead of about 1,050.
    pub admitted: Slot,
}

/// Serves one client to completion. Never panics on client or server
/// behaviour; every outcome is logged at the level an operator wants.
pub async fn serve(frontend: Arc<FrontendRuntime>, accepted: Accepted, plane: Arc<DataPlane>) {
    let started = Instant::now();
    let Accepted {
        stream: client,
        peer,
        local,
        mut slot,
        admitted,
    } = accepted;
    slot.serve();
    frontend.connections_total.increment(1);
    frontend.active_gauge.increment(1.0);

    let backend = &frontend.backend;
    match connect_with_retries(backend, peer).await {
        Some((server, server_stream, _active)) => {
            if let Err(error) = relay(
                &frontend,
                client,
                server_stream,
                &server,
                peer,
                local,
                &plane,
            )
            .await
            {
                tracing::debug!(
                    frontend = %frontend.config.name,
                    backend = %backend.name(),
                    server = %server.name(),
                    client = %peer,
                    %error,
                    "connection ended with an error"
                );
            }
        }
        None => {
            static REFUSED: LogLimit = LogLimit::per_second();
            if let Some(suppressed) = REFUSED.allow() {
                tracing::warn!(
                    frontend = %frontend.config.name,
                    backend = %backend.name(),
                    client = %peer,
                    suppressed,
                    "no server could take the connection; refusing it"
                );
            }
            frontend.refused_no_server.increment(1);
            refuse(client);
        }
    }
    frontend.duration.record(started.elapsed().as_secs_f64());
    frontend.active_gauge.decrement(1.0);
    drop((slot, admitted));
}

/// Sends the PROXY header if configured, then forwards until both sides
/// are done.
async fn relay(
    frontend: &FrontendRuntime,
    client: TcpStream,
    mut server_stream: TcpStream,
    server: &ServerRuntime,
    peer: SocketAddr,
    local: SocketAddr,
    plane: &DataPlane,
) -> io::Result<()> {
    if let Some(version) = frontend.proxy_protocol {
        let header = proxy_protocol::encode(version, peer, local);
        server_stream.write_all(&header).await?;
    }
    let options = ForwardOptions {
        idle_timeout: frontend.backend.config.idle_timeout,
        splice: plane.splice,
    };
    forward::forward(
        client,
        server_stream,
        &plane.pipes,
        &options,
        &ServerBytes(server),
    )
    .await
    .map(drop)
    .map_err(io::Error::other)
}

/// Tries up to `1 + retries` servers, each a different one when the pool
/// allows, so a dead server costs a client one connect timeout at worst.
async fn connect_with_retries(
    backend: &BackendRuntime,
    client: SocketAddr,
) -> Option<(
    Arc<ServerRuntime>,
    TcpStream,
    crate::runtime::ActiveConnection,
)> {
    let mut tried: Vec<usize> = Vec::new();
    for _attempt in 0..=backend.config.retries {
        let index = backend.pick(client.ip(), &tried)?;
        let server = Arc::clone(&backend.servers[index]);
        let active = server.begin_connection();
        let started = Instant::now();
        let timeout = backend.config.connect_timeout;
        let connected = match server.fixed_address() {
            Some(address) => crate::net::connect(address, timeout).await,
            None => server.connect_by_name(timeout).await,
        };
        match connected {
            Ok(stream) => {
                backend
                    .connect_duration
                    .record(started.elapsed().as_secs_f64());
                server.observe(Observation::ConnectSucceeded);
                return Some((server, stream, active));
            }
            // Out of descriptors or ports: no server is to blame, and
            // another would fail the same way.
            Err(error) if crate::pressure::is_local(&error) => {
                crate::pressure::process().local_error("connect", &error);
                return None;
            }
            Err(error) => {
                static FAILED: LogLimit = LogLimit::per_second();
                let reason = crate::net::describe_connect_error(&error);
                if let Some(suppressed) = FAILED.allow() {
                    tracing::warn!(
                        backend = %backend.name(),
                        server = %server.name(),
                        address = %server.address,
                        %reason,
                        suppressed,
                        "connect to server failed"
                    );
                }
                server.observe(Observation::ConnectFailed(reason));
                tried.push(index);
            }
        }
    }
    None
}

/// Closes with a RST so the client sees a refusal at once rather than a
/// clean end of stream it might mistake for an empty answer.
fn refuse(client: TcpStream) {
    if let Ok(std_stream) = client.into_std() {
        let _ = socket2::SockRef::from(&std_stream).set_linger(Some(std::time::Duration::ZERO));
    }
}

struct ServerBytes<'a>(&'a ServerRuntime);

impl ByteCounter for ServerBytes<'_> {
    fn to_server(&self, n: u64) {
        self.0.metrics().bytes_to_server.increment(n);
    }
    fn to_client(&self, n: u64) {
        self.0.metrics().bytes_to_client.increment(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Registry, Snapshot};

    /// The task of a connection holds this future for the connection's whole
    /// life, so its size counts in the memory of every idle connection, and
    /// spawning copies it several times.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let config = crate::config::parse(
            "[[frontend]]\nname = \"web\"\nlisten = [\"127.0.0.1:1\"]\nbackend = \"web\"\n\
             [[backend]]\nname = \"web\"\nservers = [{ address = \"127.0.0.1:2\" }]\n",
            "test",
        )
        .unwrap();
        let (snapshot, _) = Snapshot::build(config, &Registry::default());
        let frontend = Arc::clone(&snapshot.frontends["web"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let accepted = Accepted {
            stream,
            peer,
            local: peer,
            slot: frontend.limit.acquire_over_limit(),
            admitted: frontend.limit.acquire_over_limit(),
        };
        let plane = Arc::new(DataPlane {
            pipes: PipePool::new(0, 1),
            splice: true,
            connections: tokio_util::task::TaskTracker::new(),
        });
        let future = serve(frontend, accepted, plane);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 1_152, "connection future is {size} bytes");
    }
}
