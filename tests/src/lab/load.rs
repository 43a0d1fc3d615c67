//! The lab's servers and clients. Each runs as its own process inside a
//! namespace (the lab binary re-executed with a hidden subcommand), so a
//! server can be killed like a real one and a client's sockets live in
//! the client's namespace.
//!
//! A server greets every connection with `<name> via <local address>\n`,
//! then echoes until EOF. A client opens connections at a fixed pace
//! (open loop: a stuck connection never delays the next one), sends a
//! pattern, verifies the echo and records each connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::clock::now_ns;
use crate::pattern;

/// One client connection as the client saw it. Times are CLOCK_MONOTONIC
/// nanoseconds, comparable with the lab's own event times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conn {
    pub start_ns: u64,
    /// When the server's greeting arrived: a server was reached.
    pub greeted_ns: Option<u64>,
    pub end_ns: u64,
    /// The greeting's first word, e.g. `srv1`.
    pub server: Option<String>,
    /// The greeting's address: which of its addresses the balancer used.
    pub via: Option<String>,
    /// Echoed bytes that matched what was sent.
    pub bytes_verified: u64,
    pub ok: bool,
    pub error: Option<String>,
}

/// What a client process writes to its output file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientRun {
    pub target: String,
    pub conns: Vec<Conn>,
}

/// Serves until killed: one thread per connection, which is plenty for
/// the lab's few hundred connections a second.
pub fn serve(name: &str, listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let name = name.to_owned();
        std::thread::spawn(move || answer(stream, &name));
    }
    Ok(())
}

fn answer(mut stream: TcpStream, name: &str) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        // A dual-stack socket shows IPv4 peers as mapped addresses.
        Ok(a) => a.ip().to_canonical().to_string(),
        Err(_) => return,
    };
    // Health checks close at once; their failed writes are no concern.
    if stream
        .write_all(format!("{name} via {local}\n").as_bytes())
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Bytes each client connection sends and verifies.
pub const BYTES: usize = 4096;

/// How a client process runs.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub target: SocketAddr,
    /// Upper bound of the run; SIGTERM ends it earlier.
    pub duration: Duration,
    /// A new connection this often.
    pub every: Duration,
    /// Bytes sent and verified per connection.
    pub bytes: usize,
    /// Limit on connections open at once (bounded load). High enough
    /// that connections hanging on a dead node (up to the 1 s connect
    /// timeout) never hold back new ones.
    pub max_in_flight: usize,
}

/// Per-step limits of one connection: short enough that a connection to a
/// node that died fails within the run, long enough for a debug build.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a client to its end and writes a [`ClientRun`] as JSON to `out`.
pub fn client(spec: &ClientSpec, out: &Path) -> anyhow::Result<()> {
    let (target, bytes) = (spec.target, spec.bytes);
    let pace = Pace {
        duration: spec.duration,
        every: spec.every,
        max_in_flight: spec.max_in_flight,
    };
    record(target, out, pace, move |seed| one(target, seed, bytes))
}

/// How an open-loop client paces its attempts.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Upper bound of the run; SIGTERM ends it earlier.
    pub duration: Duration,
    /// A new attempt this often.
    pub every: Duration,
    /// Limit on attempts in flight at once.
    pub max_in_flight: usize,
}

/// Runs `attempt` (given a new seed each time) at `pace` until the run
/// ends, waits for those in flight, and writes them as a [`ClientRun`]
/// to `out`.
pub fn record<F>(
    target: SocketAddr,
    out: &Path,
    pace: Pace,
    attempt: impl FnMut(u64) -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Conn> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let conns = runtime.block_on(open_loop(pace, attempt))?;
    let run = ClientRun {
        target: target.to_string(),
        conns,
    };
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&run)?)
        .with_context(|| format!("write {}", tmp.display()))?;
    // The lab reads the file once it exists: never a half-written one.
    std::fs::rename(&tmp, out).with_context(|| format!("write {}", out.display()))?;
    Ok(())
}

async fn open_loop<F>(pace: Pace, mut attempt: impl FnMut(u64) -> F) -> anyhow::Result<Vec<Conn>>
where
    F: std::future::Future<Output = Conn> + Send + 'static,
{
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let deadline = tokio::time::Instant::now() + pace.duration;
    let mut tick = tokio::time::interval(pace.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    let mut conns = Vec::new();
    let mut seed = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = term.recv() => break,
            _ = tokio::time::sleep_until(deadline) => break,
        }
        while let Some(done) = tasks.try_join_next() {
            conns.push(done?);
        }
        if tasks.len() < pace.max_in_flight {
            seed += 1;
            tasks.spawn(attempt(seed));
        }
    }
    while let Some(done) = tasks.join_next().await {
        conns.push(done?);
    }
    conns.sort_by_key(|c| c.start_ns);
    Ok(conns)
}

impl Conn {
    /// An attempt starting now, with nothing seen yet.
    pub fn starting() -> Conn {
        Conn {
            start_ns: now_ns(),
            greeted_ns: None,
            end_ns: 0,
            server: None,
            via: None,
            bytes_verified: 0,
            ok: false,
            error: None,
        }
    }
}

async fn one(target: SocketAddr, seed: u64, bytes: usize) -> Conn {
    let mut conn = Conn::starting();
    let result = exchange(target, seed, bytes, &mut conn).await;
    conn.end_ns = now_ns();
    match result {
        Ok(()) => conn.ok = true,
        Err(e) => conn.error = Some(e),
    }
    conn
}

async fn exchange(
    target: SocketAddr,
    seed: u64,
    bytes: usize,
    conn: &mut Conn,
) -> Result<(), String> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target))
        .await
        .map_err(|_| "connect: timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let greeting = read_line(&mut stream).await?;
        conn.greeted_ns = Some(now_ns());
        let mut words = greeting.split_whitespace();
        conn.server = words.next().map(str::to_owned);
        conn.via = words.nth(1).map(str::to_owned);
        let mut sent = vec![0u8; bytes];
        pattern::fill(seed, 0, &mut sent);
        let (mut reader, mut writer) = stream.split();
        let write = async {
            writer.write_all(&sent).await?;
            writer.shutdown().await
        };
        let read = async {
            let mut echoed = Vec::with_capacity(bytes);
            reader.read_to_end(&mut echoed).await.map(|_| echoed)
        };
        let (written, echoed) = tokio::join!(write, read);
        written.map_err(|e| format!("send: {e}"))?;
        let echoed = echoed.map_err(|e| format!("echo: {e}"))?;
        let good = pattern::first_mismatch(seed, 0, &echoed).unwrap_or(echoed.len());
        conn.bytes_verified = good as u64;
        if echoed.len() != bytes || good != bytes {
            return Err(format!(
                "echo: {} of {bytes} bytes back, {good} verified",
                echoed.len()
            ));
        }
        Ok(())
    })
    .await
    .map_err(|_| "exchange: timed out".to_owned())?
}

async fn read_line(stream: &mut tokio::net::TcpStream) -> Result<String, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        match stream.read(&mut byte).await {
            Ok(0) => return Err("greeting: closed before a server answered".to_owned()),
            Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(format!("greeting: {e}")),
        }
    }
    Err("greeting: too long".to_owned())
}
