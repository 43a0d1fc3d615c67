//! Loopback tests with real sockets: a test client and a test server on
//! either side of `forward`, which runs in its own task as in the daemon.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coexist_support::wait_until_async;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::connection::{self, Connection};
use super::flow::Budget;
use super::*;

const MIB: u64 = 1024 * 1024;

#[derive(Default)]
struct Counts {
    to_server: AtomicU64,
    to_client: AtomicU64,
}

impl ByteCounter for Counts {
    fn to_server(&self, n: u64) {
        self.to_server.fetch_add(n, Ordering::Relaxed);
    }
    fn to_client(&self, n: u64) {
        self.to_client.fetch_add(n, Ordering::Relaxed);
    }
}

/// Two connected loopback sockets.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (connected.unwrap(), accepted.unwrap().0)
}

/// client ⇄ [proxy_client | forward | proxy_server] ⇄ server
struct Harness {
    client: TcpStream,
    server: TcpStream,
    forward: JoinHandle<Result<Totals, ForwardError>>,
    counts: Arc<Counts>,
}

async fn start(pool: &Arc<PipePool>, opts: ForwardOptions) -> Harness {
    let (client, proxy_client) = tcp_pair().await;
    let (proxy_server, server) = tcp_pair().await;
    let counts = Arc::new(Counts::default());
    let (pool, task_counts) = (Arc::clone(pool), Arc::clone(&counts));
    let forward = tokio::spawn(async move {
        forward(proxy_client, proxy_server, &pool, &opts, &*task_counts).await
    });
    Harness {
        client,
        server,
        forward,
        counts,
    }
}

fn opts(splice: bool) -> ForwardOptions {
    ForwardOptions {
        idle_timeout: Duration::from_secs(30),
        splice,
    }
}

/// A reproducible byte stream: byte `offset` of stream `seed`, any chunking.
fn pattern(seed: u64, mut offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let word =
            splitmix64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (offset / 8)).to_le_bytes();
        let skip = (offset % 8) as usize;
        let n = (8 - skip).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[skip..skip + n]);
        i += n;
        offset += n as u64;
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `len` bytes of stream `seed`, then half-closes.
async fn send_pattern(mut w: impl AsyncWriteExt + Unpin, seed: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut sent = 0;
    while sent < len {
        let n = (len - sent).min(buf.len() as u64) as usize;
        pattern(seed, sent, &mut buf[..n]);
        w.write_all(&buf[..n]).await?;
        sent += n as u64;
    }
    w.shutdown().await
}

/// Reads to EOF, checking every byte against stream `seed`; returns the count.
async fn expect_pattern(mut r: impl AsyncReadExt + Unpin, seed: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut expected = vec![0u8; buf.len()];
    let mut received = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(received);
        }
        pattern(seed, received, &mut expected[..n]);
        assert!(
            buf[..n] == expected[..n],
            "stream {seed}: wrong bytes at offset {received}..{}",
            received + n as u64
        );
        received += n as u64;
    }
}

/// Sends `len` verified bytes each way at the same time; returns the forward's totals.
async fn exchange(h: Harness, len: u64) -> Totals {
    let (cr, cw) = h.client.into_split();
    let (sr, sw) = h.server.into_split();
    let (up, down, at_server, at_client) = tokio::join!(
        tokio::spawn(send_pattern(cw, 1, len)),
        tokio::spawn(send_pattern(sw, 2, len)),
        tokio::spawn(expect_pattern(sr, 1)),
        tokio::spawn(expect_pattern(cr, 2)),
    );
    up.unwrap().unwrap();
    down.unwrap().unwrap();
    assert_eq!(at_server.unwrap().unwrap(), len, "bytes at the server");
    assert_eq!(at_client.unwrap().unwrap(), len, "bytes at the client");
    let totals = h
        .forward
        .await
        .unwrap()
        .expect("forward ends cleanly after both FINs");
    assert_eq!(
        totals,
        Totals {
            to_server: len,
            to_client: len
        }
    );
    assert_eq!(h.counts.to_server.load(Ordering::Relaxed), len);
    assert_eq!(h.counts.to_client.load(Ordering::Relaxed), len);
    totals
}

async fn bulk_64_mib_each_way(splice: bool) -> Arc<PipePool> {
    let pool = Arc::new(PipePool::new(MIB as usize, 8));
    let h = start(&pool, opts(splice)).await;
    let began = Instant::now();
    exchange(h, 64 * MIB).await;
    let secs = began.elapsed().as_secs_f64();
    eprintln!(
        "forward {}: 64 MiB each way in {secs:.3} s = {:.0} MiB/s per direction (pattern generation and checking included)",
        if splice { "splice" } else { "copy" },
        64.0 / secs
    );
    assert_eq!(pool.in_use(), 0);
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_moves_64_mib_each_way_intact() {
    let pool = bulk_64_mib_each_way(true).await;
    assert!(pool.splice_available());
    assert!(pool.idle() > 0, "splice borrowed pipes and gave them back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_moves_64_mib_each_way_intact() {
    let pool = bulk_64_mib_each_way(false).await;
    assert_eq!(pool.idle(), 0, "the copy path never takes a pipe");
}

/// A message for the half-close tests: a few bytes, or with `bulk` enough
/// to fill the small buffer, so the direction switches to splice (when on).
fn message(text: &[u8], bulk: bool) -> Vec<u8> {
    if bulk {
        text.iter().copied().cycle().take(256 * 1024).collect()
    } else {
        text.to_vec()
    }
}

/// Input: the client sends a request and shuts its write side.
/// Output: the server sees EOF, and its later reply still reaches the client.
async fn client_half_close(splice: bool) {
    let pool = Arc::new(PipePool::new(0, 4));
    let mut h = start(&pool, opts(splice)).await;
    let (request, reply) = (message(b"request", splice), message(b"reply", splice));
    h.client.write_all(&request).await.unwrap();
    h.client.shutdown().await.unwrap();
    let mut got = Vec::new();
    h.server.read_to_end(&mut got).await.unwrap();
    assert!(got == request);
    h.server.write_all(&reply).await.unwrap();
    h.server.shutdown().await.unwrap();
    let mut got = Vec::new();
    h.client.read_to_end(&mut got).await.unwrap();
    assert!(got == reply);
    let totals = h.forward.await.unwrap().unwrap();
    assert_eq!(
        totals,
        Totals {
            to_server: request.len() as u64,
            to_client: reply.len() as u64
        }
    );
}

/// Input: the server sends a banner and shuts its write side.
/// Output: the client sees EOF, and its later answer still reaches the server.
async fn server_half_close(splice: bool) {
    let pool = Arc::new(PipePool::new(0, 4));
    let mut h = start(&pool, opts(splice)).await;
    let (banner, answer) = (message(b"banner", splice), message(b"answer!", splice));
    h.server.write_all(&banner).await.unwrap();
    h.server.shutdown().await.unwrap();
    let mut got = Vec::new();
    h.client.read_to_end(&mut got).await.unwrap();
    assert!(got == banner);
    h.client.write_all(&answer).await.unwrap();
    h.client.shutdown().await.unwrap();
    let mut got = Vec::new();
    h.server.read_to_end(&mut got).await.unwrap();
    assert!(got == answer);
    let totals = h.forward.await.unwrap().unwrap();
    assert_eq!(
        totals,
        Totals {
            to_server: answer.len() as u64,
            to_client: banner.len() as u64
        }
    );
}

#[tokio::test]
async fn client_half_close_splice() {
    client_half_close(true).await;
}

#[tokio::test]
async fn client_half_close_copy() {
    client_half_close(false).await;
}

#[tokio::test]
async fn server_half_close_splice() {
    server_half_close(true).await;
}

#[tokio::test]
async fn server_half_close_copy() {
    server_half_close(false).await;
}

/// Input: a connection with no traffic.
/// Output: the forward ends with IdleTimeout and both ends see the close.
#[tokio::test]
async fn idle_timeout_ends_the_forward() {
    let pool = Arc::new(PipePool::new(0, 4));
    let timeout = Duration::from_millis(200);
    let mut h = start(
        &pool,
        ForwardOptions {
            idle_timeout: timeout,
            splice: true,
        },
    )
    .await;
    let began = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), &mut h.forward).await;
    let result = result.expect("forward ended").unwrap();
    assert!(
        matches!(result, Err(ForwardError::IdleTimeout(t)) if t == timeout),
        "{result:?}"
    );
    assert!(began.elapsed() >= timeout);
    let mut rest = Vec::new();
    assert_eq!(h.client.read_to_end(&mut rest).await.unwrap(), 0);
    assert_eq!(h.server.read_to_end(&mut rest).await.unwrap(), 0);
}

/// Input: one byte every 100 ms, alternating directions, for 2.4 s, with a 1 s idle timeout.
/// Output: the forward is alive throughout, then times out once traffic stops.
///
/// The timeout is ten steps long so that a loaded machine stalling this
/// task for most of a second (a 300 ms timeout once ran out under
/// `stress-ng` and a second suite) does not end it; the traffic still lasts
/// more than twice the timeout.
#[tokio::test]
async fn traffic_in_either_direction_defers_the_idle_timeout() {
    let pool = Arc::new(PipePool::new(0, 4));
    let mut h = start(
        &pool,
        ForwardOptions {
            idle_timeout: Duration::from_secs(1),
            splice: true,
        },
    )
    .await;
    let mut byte = [0u8; 1];
    for round in 0..24 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if round % 2 == 0 {
            h.client.write_all(b"x").await.unwrap();
            h.server.read_exact(&mut byte).await.unwrap();
        } else {
            h.server.write_all(b"y").await.unwrap();
            h.client.read_exact(&mut byte).await.unwrap();
        }
        assert!(
            !h.forward.is_finished(),
            "timed out at round {round} despite traffic"
        );
    }
    let result = tokio::time::timeout(Duration::from_secs(5), h.forward)
        .await
        .expect("forward ended");
    assert!(matches!(result.unwrap(), Err(ForwardError::IdleTimeout(_))));
    assert_eq!(h.counts.to_server.load(Ordering::Relaxed), 12);
    assert_eq!(h.counts.to_client.load(Ordering::Relaxed), 12);
}

/// Input: 4 MiB each way, read completely, then silence on an open connection.
/// Output: no pipe stays lent (in_use() == 0) while the connection lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_holds_no_pipe() {
    let pool = Arc::new(PipePool::new(0, 8));
    let mut h = start(&pool, opts(true)).await;
    for round in 0..3u64 {
        let payload = vec![round as u8; 4 * MIB as usize];
        let mut got = vec![0u8; payload.len()];
        let (sent_up, _) =
            tokio::join!(h.client.write_all(&payload), h.server.read_exact(&mut got));
        sent_up.unwrap();
        assert!(got == payload);
        let (sent_down, _) =
            tokio::join!(h.server.write_all(&payload), h.client.read_exact(&mut got));
        sent_down.unwrap();
        assert!(got == payload);
        let back = wait_until_async(
            Duration::from_secs(5),
            Duration::from_millis(5),
            async || pool.in_use() == 0,
        );
        assert!(back.await.is_some(), "pipes not back in the pool");
        assert!(pool.idle() >= 1, "pipes were used and returned, not closed");
        assert!(!h.forward.is_finished(), "connection still open");
    }
    drop(h.client);
    drop(h.server);
    let totals = h.forward.await.unwrap().unwrap();
    assert_eq!(
        totals,
        Totals {
            to_server: 12 * MIB,
            to_client: 12 * MIB
        }
    );
}

/// Input: a pipe size the kernel refuses (1 GiB, above pipe-max-size).
/// Output: pipes keep the default size and 8 MiB each way still arrive intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_pipe_size_still_forwards() {
    let pool = Arc::new(PipePool::new(1 << 30, 4));
    let h = start(&pool, opts(true)).await;
    exchange(h, 8 * MIB).await;
    assert!(pool.idle() > 0, "splice was used");
}

/// Input: splice on, but a pool allowed no pipe at all (the process's
/// share of descriptors for pipes is spent).
/// Output: the bulk is copied instead, 8 MiB each way intact, and no pipe
/// was ever created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_pipe_to_be_had_bulk_is_copied() {
    let pool = Arc::new(PipePool::new(0, 4).with_max_pipes(0));
    let h = start(&pool, opts(true)).await;
    exchange(h, 8 * MIB).await;
    assert_eq!((pool.in_use(), pool.idle()), (0, 0));
    assert!(
        pool.splice_available(),
        "splice is still there for later bursts"
    );
}

/// Input: 200 connections at once, 256 KiB each way on each, through an 8-pipe pool.
/// Output: every byte intact, and afterwards no pipe lent and at most 8 kept.
async fn many_connections(splice: bool) {
    let pool = Arc::new(PipePool::new(0, 8));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let h = start(&pool, opts(splice)).await;
        tasks.push(tokio::spawn(exchange(h, 256 * 1024)));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(pool.in_use(), 0);
    assert!(pool.idle() <= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections_splice() {
    many_connections(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections_copy() {
    many_connections(false).await;
}

/// Input: the client aborts (RST) while the server is still sending.
/// Output: ClientReset, and the server sees a reset too, not a clean close.
#[tokio::test]
async fn client_reset_is_reported_and_propagated() {
    let pool = Arc::new(PipePool::new(0, 4));
    let mut h = start(&pool, opts(true)).await;
    h.client.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    h.server.read_exact(&mut got).await.unwrap();
    abort(&h.client);
    drop(h.client);
    let result = tokio::time::timeout(Duration::from_secs(5), h.forward)
        .await
        .expect("forward ended");
    assert!(matches!(result.unwrap(), Err(ForwardError::ClientReset)));
    let mut rest = Vec::new();
    let err = h
        .server
        .read_to_end(&mut rest)
        .await
        .expect_err("server must see the abort");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[test]
fn forward_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let pool = PipePool::new(0, 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b) = tcp_pair().await;
        let (options, counts) = (opts(true), Counts::default());
        let fut = forward(a, b, &pool, &options, &counts);
        assert_send(&fut);
    });
}

/// Counts wake-ups, to tell a forward that woke itself from one that waits.
#[derive(Default)]
struct WakeCount(std::sync::atomic::AtomicUsize);

impl std::task::Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl WakeCount {
    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sends the next bytes of stream `seed` (up to `len` in all) without
/// blocking; returns how many were taken.
fn push(to: &TcpStream, seed: u64, sent: u64, len: u64) -> u64 {
    let mut buf = vec![0u8; (len - sent).min(256 * 1024) as usize];
    pattern(seed, sent, &mut buf);
    match to.try_write(&buf) {
        Ok(n) => n as u64,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("test write failed: {e}"),
    }
}

/// Receives and checks what has arrived of stream `seed` without blocking.
fn pull(from: &TcpStream, seed: u64, received: u64) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    match from.try_read(&mut buf) {
        Ok(n) => {
            let mut expected = vec![0u8; n];
            pattern(seed, received, &mut expected);
            assert!(
                buf[..n] == expected[..],
                "stream {seed}: wrong bytes at {received}"
            );
            n as u64
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("test read failed: {e}"),
    }
}

/// A connection polled by hand, as its task would, with the sockets of the
/// test client and server.
struct Manual<'a> {
    client: TcpStream,
    server: TcpStream,
    conn: Connection<'a>,
    wakes: Arc<WakeCount>,
    waker: std::task::Waker,
}

async fn manual<'a>(pool: &'a PipePool, counts: &'a Counts, splice: bool) -> Manual<'a> {
    let (client, proxy_client) = tcp_pair().await;
    let (proxy_server, server) = tcp_pair().await;
    let ctx = Ctx {
        pool,
        counter: counts,
    };
    let wakes = Arc::new(WakeCount::default());
    Manual {
        client,
        server,
        conn: Connection::new(proxy_client, proxy_server, ctx, splice, Duration::ZERO),
        waker: std::task::Waker::from(Arc::clone(&wakes)),
        wakes,
    }
}

impl Manual<'_> {
    fn poll(&mut self, budget: Budget) -> std::task::Poll<Result<Totals, ForwardError>> {
        let mut cx = std::task::Context::from_waker(&self.waker);
        self.conn.poll(&mut cx, None, budget)
    }
}

/// Lets the reactor pick up readiness between hand-made polls.
async fn reactor_turn() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Input: 1 MiB sent each way at once through the copy path, with a budget
/// of 2 syscalls (one read, one write) per direction per poll.
/// Output: no poll moves more than one buffer either way, polls move bytes
/// both ways, a poll that stops on its budget wakes its own task (nothing
/// else would), and every byte arrives intact.
#[tokio::test]
async fn busy_directions_share_every_poll() {
    let (pool, counts) = (PipePool::new(0, 4), Counts::default());
    let mut m = manual(&pool, &counts, false).await;
    let budget = Budget {
        steps: 2,
        bytes: u32::MAX,
    };
    let len = MIB;
    let (mut sent_up, mut sent_down, mut got_up, mut got_down) = (0, 0, 0, 0);
    let mut polls_both_ways = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got_up < len || got_down < len {
        assert!(
            Instant::now() < deadline,
            "stalled at {got_up} up, {got_down} down"
        );
        sent_up += push(&m.client, 1, sent_up, len);
        sent_down += push(&m.server, 2, sent_down, len);
        let before = (
            counts.to_server.load(Ordering::Relaxed),
            counts.to_client.load(Ordering::Relaxed),
            m.wakes.get(),
        );
        assert!(m.poll(budget).is_pending());
        let up = counts.to_server.load(Ordering::Relaxed) - before.0;
        let down = counts.to_client.load(Ordering::Relaxed) - before.1;
        assert!(
            up <= copy::LARGE as u64 && down <= copy::LARGE as u64,
            "one poll moved {up} up, {down} down"
        );
        if up > 0 && down > 0 {
            polls_both_ways += 1;
            assert!(
                m.wakes.get() > before.2,
                "a poll that ran out of budget must wake its task"
            );
        }
        got_up += pull(&m.server, 1, got_up);
        got_down += pull(&m.client, 2, got_down);
        reactor_turn().await;
    }
    assert!(polls_both_ways > 0, "no poll moved bytes both ways");
    m.client.shutdown().await.unwrap();
    m.server.shutdown().await.unwrap();
    let totals = loop {
        assert!(
            Instant::now() < deadline,
            "the FINs did not end the forward"
        );
        if let std::task::Poll::Ready(result) = m.poll(budget) {
            break result.unwrap();
        }
        reactor_turn().await;
    };
    assert_eq!(
        totals,
        Totals {
            to_server: len,
            to_client: len
        }
    );
}

/// Sends "ping" up and "pong" down and polls `m` until both are delivered
/// (not yet read by the test's ends).
async fn ping_pong(m: &mut Manual<'_>, counts: &Counts) {
    m.client.write_all(b"ping").await.unwrap();
    m.server.write_all(b"pong").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while counts.to_server.load(Ordering::Relaxed) < 4
        || counts.to_client.load(Ordering::Relaxed) < 4
    {
        assert!(Instant::now() < deadline, "ping/pong not delivered");
        assert!(m.poll(connection::BUDGET).is_pending());
        reactor_turn().await;
    }
}

/// Input: "ping" up and "pong" down, delivered, then silence.
/// Output: once the forward has seen both sources drained it holds neither a
/// pipe nor a buffer, and is blocked, not spinning (no self wake-up).
async fn a_drained_connection_holds_no_carrier(splice: bool) {
    let (pool, counts) = (PipePool::new(0, 4), Counts::default());
    let mut m = manual(&pool, &counts, splice).await;
    ping_pong(&mut m, &counts).await;
    let wakes = m.wakes.get();
    assert!(m.poll(connection::BUDGET).is_pending());
    assert!(
        !m.conn.holds_carrier(),
        "an idle connection keeps a pipe or buffer"
    );
    assert_eq!(pool.in_use(), 0);
    assert_eq!(m.wakes.get(), wakes, "an idle connection woke itself");
    let mut got = [0u8; 4];
    m.server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    m.client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong");
}

#[tokio::test]
async fn a_drained_connection_holds_no_pipe() {
    a_drained_connection_holds_no_carrier(true).await;
}

#[tokio::test]
async fn a_drained_connection_holds_no_buffer() {
    a_drained_connection_holds_no_carrier(false).await;
}

/// One forward future lives for every proxied connection, idle or not, so
/// its size is most of the per-connection memory (it was 1.8 KB as an
/// `async fn` of two pumps).
#[test]
fn forward_future_stays_small() {
    let pool = PipePool::new(0, 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b) = tcp_pair().await;
        let (options, counts) = (opts(true), Counts::default());
        let fut = forward(a, b, &pool, &options, &counts);
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 512, "forward future is {size} bytes");
    });
}

/// Input: "ping" up and "pong" down, then 1 MiB up, through a forward that
/// may splice.
/// Output: the small messages take no pipe and leave both directions on
/// the copy path; the 1 MiB switches the upward direction to splice (a
/// pipe is borrowed and returned), the downward one stays on copy.
#[tokio::test]
async fn small_messages_copy_and_bulk_switches_to_splice() {
    let (pool, counts) = (PipePool::new(0, 4), Counts::default());
    let mut m = manual(&pool, &counts, true).await;
    ping_pong(&mut m, &counts).await;
    assert_eq!(
        (pool.in_use(), pool.idle()),
        (0, 0),
        "no pipe for small messages"
    );
    assert_eq!(m.conn.splices(), (false, false));
    let mut small = [0u8; 4];
    m.server.read_exact(&mut small).await.unwrap();
    m.client.read_exact(&mut small).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut sent, mut got) = (0, 0);
    while got < MIB {
        assert!(Instant::now() < deadline, "1 MiB not delivered: {got}");
        sent += push(&m.client, 3, sent, MIB);
        assert!(m.poll(connection::BUDGET).is_pending());
        got += pull(&m.server, 3, got);
        reactor_turn().await;
    }
    assert_eq!(m.conn.splices(), (true, false));
    assert!(
        pool.idle() >= 1,
        "the bulk borrowed a pipe and gave it back"
    );
}

/// Input: the server answers and closes before the forward looks, so the
/// answer and the FIN are read together; the client talks on afterwards.
/// Output: the client gets the answer and then EOF, while its own
/// direction still carries bytes to the server.
#[tokio::test]
async fn an_answer_read_with_its_fin_is_delivered_then_eof() {
    let (pool, counts) = (PipePool::new(0, 4), Counts::default());
    let mut m = manual(&pool, &counts, true).await;
    m.server.write_all(b"answer").await.unwrap();
    m.server.shutdown().await.unwrap();
    reactor_turn().await;
    assert!(m.poll(connection::BUDGET).is_pending());
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), m.client.read_to_end(&mut got))
        .await
        .expect("answer and EOF within one poll")
        .unwrap();
    assert_eq!(got, b"answer");
    m.client.write_all(b"more").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while counts.to_server.load(Ordering::Relaxed) < 4 {
        assert!(Instant::now() < deadline, "the client's bytes stopped");
        assert!(m.poll(connection::BUDGET).is_pending());
        reactor_turn().await;
    }
    let mut up = [0u8; 4];
    m.server.read_exact(&mut up).await.unwrap();
    assert_eq!(&up, b"more");
}

/// Input: both sides send a few bytes and their FIN.
/// Output: the forward ends cleanly and each side reads the other's bytes
/// and a clean EOF (the last FIN comes from closing, not a reset).
#[tokio::test]
async fn both_fins_end_the_forward_with_clean_closes() {
    let pool = Arc::new(PipePool::new(0, 4));
    let mut h = start(&pool, opts(true)).await;
    h.client.write_all(b"ping").await.unwrap();
    h.client.shutdown().await.unwrap();
    h.server.write_all(b"pong").await.unwrap();
    h.server.shutdown().await.unwrap();
    let totals = tokio::time::timeout(Duration::from_secs(5), h.forward)
        .await
        .expect("forward ends")
        .unwrap()
        .unwrap();
    assert_eq!(
        totals,
        Totals {
            to_server: 4,
            to_client: 4
        }
    );
    let (mut at_server, mut at_client) = (Vec::new(), Vec::new());
    h.server.read_to_end(&mut at_server).await.unwrap();
    h.client.read_to_end(&mut at_client).await.unwrap();
    assert_eq!(
        (&at_server[..], &at_client[..]),
        (&b"ping"[..], &b"pong"[..])
    );
}
