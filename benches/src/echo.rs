//! The small-exchange test: an echo server (the backends) and a client that
//! opens many connections through a proxy, then keeps a tenth of them busy
//! with small round trips while the rest stay open.
//!
//! Both run on tokio's single-threaded runtime: the client in the bench
//! process, the server as a child process of the bench (`--echo-server`),
//! each pinned to the clients' CPU.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// Serves every address in `listen` until killed: whatever a client sends
/// comes back.
pub fn serve(listen: &[SocketAddr]) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the echo server's runtime")?;
    runtime.block_on(async {
        let mut listeners = JoinSet::new();
        for &address in listen {
            let socket = match address {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            socket
                .bind(address)
                .with_context(|| format!("echo server: binding {address}"))?;
            let listener = socket.listen(4096)?;
            listeners.spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        // EMFILE and the like: let the client see it fail.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    tokio::spawn(echo(stream));
                }
            });
        }
        while listeners.join_next().await.is_some() {}
        Ok(())
    })
}

async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How the client loads the proxy.
#[derive(Debug, Clone, Serialize)]
pub struct EchoSettings {
    /// Connections opened, each confirmed by one round trip, and held open.
    pub open: usize,
    /// Connections being opened at the same time.
    pub open_in_flight: usize,
    /// Of the open connections, how many exchange messages back to back.
    pub active: usize,
    pub message_bytes: usize,
    pub seconds: u32,
}

/// Opening `open` connections through the proxy.
#[derive(Debug, Clone, Serialize)]
pub struct Opening {
    pub connections: usize,
    pub seconds: f64,
    pub per_second: f64,
}

/// Round trips of the active connections while all the others stay open.
#[derive(Debug, Clone, Serialize)]
pub struct RoundTrips {
    pub open: usize,
    pub active: usize,
    pub message_bytes: usize,
    pub round_trips: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// The client's connections, all open; dropped, they are closed.
pub struct EchoClient {
    runtime: tokio::runtime::Runtime,
    streams: Vec<TcpStream>,
    message: Arc<[u8]>,
    settings: EchoSettings,
}

impl EchoClient {
    /// Opens `s.open` connections to `target`, each confirmed by one round
    /// trip, `s.open_in_flight` at a time.
    pub fn open(target: SocketAddr, s: &EchoSettings) -> Result<(EchoClient, Opening)> {
        if s.active == 0 || s.active > s.open || s.open_in_flight == 0 || s.message_bytes == 0 {
            bail!("echo test needs 0 < active <= open, open_in_flight > 0 and a message: {s:?}");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the echo client's runtime")?;
        let message: Arc<[u8]> = (0..s.message_bytes).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        let streams = runtime.block_on(open_all(target, s, Arc::clone(&message)))?;
        let seconds = started.elapsed().as_secs_f64();
        let opening = Opening {
            connections: streams.len(),
            seconds,
            per_second: streams.len() as f64 / seconds,
        };
        let client = EchoClient {
            runtime,
            streams,
            message,
            settings: s.clone(),
        };
        Ok((client, opening))
    }

    /// Round trips back to back on `active` connections spread evenly over
    /// the open ones, for `seconds`; the others stay open and silent.
    pub fn exchange(&mut self) -> Result<RoundTrips> {
        let (stride, wanted) = (
            self.streams.len() / self.settings.active,
            self.settings.active,
        );
        let (active, idle): (Vec<_>, Vec<_>) = std::mem::take(&mut self.streams)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % stride == 0 && i / stride < wanted);
        self.streams = idle.into_iter().map(|(_, s)| s).collect();
        let active = active.into_iter().map(|(_, s)| s).collect();
        self.runtime
            .block_on(exchange(active, &self.settings, Arc::clone(&self.message)))
    }
}

async fn open_all(
    target: SocketAddr,
    s: &EchoSettings,
    message: Arc<[u8]>,
) -> Result<Vec<TcpStream>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..s.open_in_flight.min(s.open) {
        let (next, message, open) = (Arc::clone(&next), Arc::clone(&message), s.open);
        workers.spawn(async move {
            let mut opened = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= open {
                    return Ok::<_, anyhow::Error>(opened);
                }
                let stream = open_one(target, &message)
                    .await
                    .with_context(|| format!("connection {} of {open} through {target}", i + 1))?;
                opened.push(stream);
            }
        });
    }
    let mut streams = Vec::with_capacity(s.open);
    while let Some(done) = workers.join_next().await {
        streams.extend(done.context("opening worker panicked")??);
    }
    Ok(streams)
}

/// Connects and makes one round trip, so the connection is known to reach a
/// server and not just the proxy's accept queue.
async fn open_one(target: SocketAddr, message: &[u8]) -> Result<TcpStream> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target))
        .await
        .map_err(|_| anyhow!("connect timed out after 5 s"))?
        .context("connect")?;
    stream.set_nodelay(true)?;
    round_trip(&mut stream, message, &mut vec![0; message.len()]).await?;
    Ok(stream)
}

async fn round_trip(stream: &mut TcpStream, message: &[u8], buffer: &mut [u8]) -> Result<()> {
    stream.write_all(message).await.context("sending")?;
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(buffer))
        .await
        .map_err(|_| anyhow!("no echo within 5 s"))?
        .context("reading the echo")?;
    if buffer != message {
        bail!("the echo differs from the message");
    }
    Ok(())
}

async fn exchange(
    active: Vec<TcpStream>,
    s: &EchoSettings,
    message: Arc<[u8]>,
) -> Result<RoundTrips> {
    let count = active.len();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(u64::from(s.seconds));
    let mut tasks = JoinSet::new();
    for mut stream in active {
        let message = Arc::clone(&message);
        tasks.spawn(async move {
            let mut buffer = vec![0; message.len()];
            let mut done = 0u64;
            while Instant::now() < deadline {
                round_trip(&mut stream, &message, &mut buffer).await?;
                done += 1;
            }
            Ok::<_, anyhow::Error>(done)
        });
    }
    let mut round_trips = 0;
    while let Some(done) = tasks.join_next().await {
        round_trips += done.context("echo task panicked")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(RoundTrips {
        open: s.open,
        active: count,
        message_bytes: s.message_bytes,
        round_trips,
        seconds,
        per_second: round_trips as f64 / seconds,
    })
}
