//! The data plane on loopback, through the real `coexist` binary.
//!
//! ```text
//!   test client ──► coexist (127.0.0.1:P / [::1]:P) ──► test servers (127.0.0.1 / ::1)
//! ```
//! No privileges needed: every socket is on loopback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coexist_support::config::{Backend, Config, Frontend, Server, Tuning};
use coexist_support::wait_until_async;
use coexist_tests::client::read_greeting;
use coexist_tests::daemon::{admin_get, admin_metrics, check, metric_value, DaemonProcess};
use coexist_tests::pattern;
use coexist_tests::ports::{free_port, v4, v6};
use coexist_tests::servers::{Behaviour, TestServer};
use lb::admin::status::Status;
use lb::proxy_protocol::{ProxyHeader, ProxyVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn weighted(rows: &[(&str, SocketAddr, u32)]) -> Vec<Server> {
    let server = |(name, address, weight): &(&str, SocketAddr, u32)| {
        Server::named(name, *address).weight(*weight)
    };
    rows.iter().map(server).collect()
}

/// One frontend `web` listening on `listen`, one backend `pool` of `servers`.
fn config(listen: &[SocketAddr], servers: Vec<Server>) -> Config {
    Config {
        tuning: Some(Tuning {
            shutdown_grace: Some(Duration::from_secs(5)),
            ..Tuning::default()
        }),
        frontends: vec![Frontend::new("web", listen.iter().copied(), "pool")],
        backends: vec![Backend {
            connect_timeout: Some(Duration::from_millis(500)),
            ..Backend::new("pool", servers)
        }],
        ..Config::without_admin()
    }
}

/// Reads the server's greeting line ("name\n").
async fn greeting(stream: &mut TcpStream) -> String {
    read_greeting(stream).await.expect("the server's greeting")
}

/// Sends `size` bytes of a pattern and reads them back (echo), verifying
/// every byte; writing and reading run at once so both directions carry
/// the full volume simultaneously.
async fn echo_verified(stream: TcpStream, size: u64, seed: u64) {
    let (mut reader, mut writer) = stream.into_split();
    let write = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut sent = 0u64;
        while sent < size {
            let n = (size - sent).min(buf.len() as u64) as usize;
            pattern::fill(seed, sent, &mut buf[..n]);
            writer.write_all(&buf[..n]).await.expect("write");
            sent += n as u64;
        }
        writer.shutdown().await.expect("shutdown write");
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        let n = reader.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        if let Some(i) = pattern::first_mismatch(seed, received, &buf[..n]) {
            panic!("byte {} differs", received + i as u64);
        }
        received += n as u64;
    }
    write.await.unwrap();
    assert_eq!(received, size, "all bytes came back");
}

const MIB: u64 = 1024 * 1024;

async fn cross_family(client_side: SocketAddr, server_side: SocketAddr) {
    cross_family_with(client_side, server_side, DaemonProcess::start_ready).await;
}

async fn cross_family_with(
    client_side: SocketAddr,
    server_side: SocketAddr,
    start: fn(&str) -> DaemonProcess,
) {
    let server = TestServer::start(server_side, Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let cfg = config(&[client_side], weighted(&[("s1", server.address, 1)]));
    let _daemon = start(&cfg.to_toml());
    let stream = TcpStream::connect(client_side).await.unwrap();
    echo_verified(stream, 64 * MIB, 42).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_client_reaches_ipv6_server_64_mib_both_ways() {
    cross_family(v4(free_port()), v6(0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_client_reaches_ipv4_server_64_mib_both_ways() {
    cross_family(v6(free_port()), v4(0)).await;
}

/// On one CPU the daemon runs tokio's current-thread scheduler instead of
/// the work-stealing one: the same traffic must pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_confined_to_one_cpu_forwards_both_ways() {
    cross_family_with(
        v6(free_port()),
        v4(0),
        DaemonProcess::start_ready_on_one_cpu,
    )
    .await;
}

/// With several cores the daemon serves TCP on a single-threaded runtime
/// per core (`lb::shards`), each accepting from the same listening socket:
/// every one of them takes clients, and every client is served.
///
/// ```text
///   32 clients at a time, 2,048 in all ──► coexist ──► echo server
///   (64-byte echo each)                     threads coexist-tcp-0 … -N (one per core)
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_core_accepts_and_serves_clients_on_a_thread_of_its_own() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One core: no extra threads, the daemon's own runtime accepts (as
    // shard 0).
    let threads = if cpus > 1 { cpus } else { 0 };
    threads_accept_and_serve(None, threads).await;
}

/// `tuning.threads` sets how many threads serve TCP, whatever the cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuning_threads_sets_how_many_threads_serve_tcp() {
    threads_accept_and_serve(Some(3), 3).await;
}

/// Starts a daemon with `tuning.threads = configured`, checks it runs
/// `threads` threads named `coexist-tcp-N`, then sends 2,048 short echoes
/// through it, 32 at a time: all must come back, every thread must have
/// accepted some of them, and those threads, not the daemon's own
/// runtime, must have done the work.
async fn threads_accept_and_serve(configured: Option<usize>, threads: usize) {
    const CLIENTS: usize = 32;
    const EACH: usize = 64;
    let server = TestServer::start(v4(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let mut cfg = Config {
        admin: Config::with_admin(admin).admin,
        ..config(&[listen], weighted(&[("s1", server.address, 1)]))
    };
    cfg.tuning.as_mut().expect("config() sets tuning").threads = configured;
    let daemon = DaemonProcess::start_ready(&cfg.to_toml());

    let mut running = thread_names(daemon.pid())
        .into_iter()
        .filter(|name| name.starts_with(SHARD_PREFIX))
        .collect::<Vec<_>>();
    running.sort();
    let mut expected: Vec<String> = (0..threads).map(|i| format!("coexist-tcp-{i}")).collect();
    expected.sort();
    assert_eq!(running, expected, "tuning.threads = {configured:?}");

    let cpu_before = cpu_time_by_kind(daemon.pid());
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        clients.spawn(async move {
            for i in 0..EACH {
                let message = format!("client {client} connection {i}").into_bytes();
                let mut stream = TcpStream::connect(listen).await.unwrap();
                stream.write_all(&message).await.unwrap();
                stream.shutdown().await.unwrap();
                let mut echoed = Vec::new();
                stream.read_to_end(&mut echoed).await.unwrap();
                assert_eq!(echoed, message);
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let cpu_after = cpu_time_by_kind(daemon.pid());
    if threads > 0 {
        // The counter below is labelled where the loop was spawned; this
        // says where it ran. The daemon's own workers only idle here.
        let shards = cpu_after.shards - cpu_before.shards;
        let others = cpu_after.others - cpu_before.others;
        assert!(
            shards > others,
            "shard threads ran {shards} ns, the daemon's other threads {others} ns"
        );
    }

    let page = tokio::task::spawn_blocking(move || admin_metrics(admin))
        .await
        .unwrap();
    let accepted: Vec<f64> = (0..threads.max(1))
        .map(|i| {
            let label = format!("shard=\"{i}\"");
            metric_value(&page, "lb_shard_connections_total", &[&label]).unwrap_or(0.0)
        })
        .collect();
    assert_eq!(
        accepted.iter().sum::<f64>(),
        (CLIENTS * EACH) as f64,
        "accepted per shard: {accepted:?}"
    );
    assert!(
        accepted.iter().all(|&n| n > 0.0),
        "a shard accepted no client: {accepted:?}"
    );
}

const SHARD_PREFIX: &str = "coexist-tcp-";

/// A process's threads: name (`comm`) and time on a CPU so far in ns
/// (`schedstat`'s first field), from `/proc/PID/task/*`.
fn threads_of(pid: u32) -> Vec<(String, u64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the daemon's threads")
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let schedstat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            let ran = schedstat.split_whitespace().next()?.parse().ok()?;
            Some((name.trim_end().to_owned(), ran))
        })
        .collect()
}

fn thread_names(pid: u32) -> Vec<String> {
    threads_of(pid).into_iter().map(|(name, _)| name).collect()
}

/// CPU time of the shard threads and of every other thread of a process.
struct CpuTime {
    shards: u64,
    others: u64,
}

fn cpu_time_by_kind(pid: u32) -> CpuTime {
    let mut time = CpuTime {
        shards: 0,
        others: 0,
    };
    for (name, ran) in threads_of(pid) {
        if name.starts_with(SHARD_PREFIX) {
            time.shards += ran;
        } else {
            time.others += ran;
        }
    }
    time
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_propagates_both_ways() {
    let server = TestServer::start(v6(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let listen = v4(free_port());
    let cfg = config(&[listen], weighted(&[("s1", server.address, 1)]));
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());

    // Client → server FIN: the client stops writing but still reads the
    // echo, and then sees the server's own FIN (the echo server closes its
    // side after reading EOF, i.e. server → client FIN).
    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream.write_all(b"first half").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("reply and EOF within 5 s")
        .unwrap();
    assert_eq!(reply, b"first half");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_fin_reaches_client_while_client_keeps_sending() {
    // Server → client FIN: the server says "bye" and closes its write side
    // at once; the client sees EOF yet can still send, and the server gets
    // every byte the client sent afterwards.
    let listener = tokio::net::TcpListener::bind(v6(0)).await.unwrap();
    let server_address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"bye").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        got
    });
    let listen = v4(free_port());
    let cfg = config(&[listen], weighted(&[("s1", server_address, 1)]));
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());

    let mut stream = TcpStream::connect(listen).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
        .await
        .expect("server's FIN reached the client")
        .unwrap();
    assert_eq!(got, b"bye");
    stream.write_all(b"still talking").await.unwrap();
    stream.shutdown().await.unwrap();
    let server_got = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server finished")
        .unwrap();
    assert_eq!(server_got, b"still talking");
}

/// Opens `count` connections and tallies which server greeted each.
async fn spread(listen: SocketAddr, count: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..count {
        let mut stream = TcpStream::connect(listen).await.unwrap();
        *seen.entry(greeting(&mut stream).await).or_insert(0) += 1;
    }
    seen
}

async fn three_named_servers() -> Vec<TestServer> {
    let mut servers = Vec::new();
    for (i, address) in [v6(0), v4(0), v6(0)].into_iter().enumerate() {
        servers.push(
            TestServer::named(address, &format!("s{}", i + 1))
                .await
                .unwrap(),
        );
    }
    servers
}

async fn balance_spread(balance: &str) -> HashMap<String, usize> {
    let servers = three_named_servers().await;
    let listen = v4(free_port());
    let rows: Vec<(&str, SocketAddr, u32)> = vec![
        ("s1", servers[0].address, 1),
        ("s2", servers[1].address, 1),
        ("s3", servers[2].address, 1),
    ];
    let mut cfg = config(&[listen], weighted(&rows));
    cfg.backends[0].balance = Some(balance.to_owned());
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    spread(listen, 60).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_over_three_servers() {
    let seen = balance_spread("round-robin").await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n == 20), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_spreads_over_three_servers() {
    // Each connection is over, as the daemon counts it, before the next
    // starts, so every server is at zero active connections at each pick:
    // ties must still rotate. (Only closing the client's end is not enough:
    // on a loaded machine the daemon may still count the previous
    // connection, and rightly prefer the other servers.)
    let servers = three_named_servers().await;
    let listen = v4(free_port());
    let admin = v4(free_port());
    let rows: Vec<(&str, SocketAddr, u32)> = vec![
        ("s1", servers[0].address, 1),
        ("s2", servers[1].address, 1),
        ("s3", servers[2].address, 1),
    ];
    let mut cfg = config(&[listen], weighted(&rows));
    cfg.backends[0].balance = Some("least-connections".to_owned());
    cfg.admin = Config::with_admin(admin).admin;
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let mut seen = HashMap::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(listen).await.unwrap();
        *seen.entry(greeting(&mut stream).await).or_insert(0) += 1;
        drop(stream);
        let idle = wait_until_async(
            Duration::from_secs(5),
            Duration::from_millis(5),
            async || {
                tokio::task::spawn_blocking(move || {
                    let status: Status = admin_get(admin, "/status");
                    status.backends[0]
                        .servers
                        .iter()
                        .all(|s| s.active_connections == 0)
                })
                .await
                .unwrap()
            },
        )
        .await;
        assert!(
            idle.is_some(),
            "a closed connection still counted after 5 s"
        );
    }
    assert_eq!(
        seen,
        HashMap::from([
            ("s1".to_owned(), 20),
            ("s2".to_owned(), 20),
            ("s3".to_owned(), 20)
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_two_spreads_over_three_servers() {
    let seen = balance_spread("random-two").await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n >= 5), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_spreads_clients_and_pins_each_client_to_one_server() {
    // Maglev hashes the client address, so spread needs many client
    // addresses: loopback has all of 127.0.0.0/8 to bind from.
    let servers = three_named_servers().await;
    let listen = v4(free_port());
    let rows = vec![
        ("s1", servers[0].address, 1),
        ("s2", servers[1].address, 1),
        ("s3", servers[2].address, 1),
    ];
    let mut cfg = config(&[listen], weighted(&rows));
    cfg.backends[0].balance = Some("maglev".to_owned());
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..90u32 {
        let client = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
        let mut picks = Vec::new();
        for _ in 0..2 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from((client, 0))).unwrap();
            let mut stream = socket.connect(listen).await.unwrap();
            picks.push(greeting(&mut stream).await);
        }
        assert_eq!(picks[0], picks[1], "client {client} moved between servers");
        *seen.entry(picks.remove(0)).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n >= 15), "{seen:?}");
}

/// `maglev_table_size` is part of which server a client gets: through the
/// daemon, each client reaches the server a Maglev table of that size
/// names, and the default size would name another for some of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_table_size_decides_which_server_each_client_gets() {
    use lb::balance::{Balance, Candidate, Selector, ServerKey};
    const SIZE: usize = 13;
    let servers = three_named_servers().await;
    let names = ["s1", "s2", "s3"];
    let keys: Vec<ServerKey<'_>> = names.iter().map(|id| ServerKey { id, weight: 1 }).collect();
    let candidates = [Candidate {
        weight: 1,
        active: 0,
        eligible: true,
    }; 3];
    let predict = |size: usize, client: std::net::Ipv4Addr| {
        let mut selector = Selector::new(Balance::Maglev, &keys, size);
        let i = selector.pick(&candidates, client.into()).expect("a server");
        names[i].to_owned()
    };
    let clients: Vec<std::net::Ipv4Addr> = (1..=40)
        .map(|i| std::net::Ipv4Addr::new(127, 2, 0, i))
        .collect();
    assert!(
        clients
            .iter()
            .any(|c| predict(SIZE, *c) != predict(65537, *c)),
        "the sizes must disagree somewhere for this test to tell them apart"
    );
    let listen = v4(free_port());
    let rows: Vec<_> = (0..3).map(|i| (names[i], servers[i].address, 1)).collect();
    let mut cfg = config(&[listen], weighted(&rows));
    cfg.backends[0].balance = Some("maglev".to_owned());
    cfg.backends[0].maglev_table_size = Some(SIZE as u64);
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    for client in clients {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((client, 0))).unwrap();
        let mut stream = socket.connect(listen).await.unwrap();
        assert_eq!(
            greeting(&mut stream).await,
            predict(SIZE, client),
            "client {client}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_zero_receives_no_new_connections() {
    let servers = three_named_servers().await;
    let listen = v6(free_port());
    let rows = vec![
        ("s1", servers[0].address, 1),
        ("s2", servers[1].address, 0),
        ("s3", servers[2].address, 2),
    ];
    let cfg = config(&[listen], weighted(&rows));
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let seen = spread(listen, 30).await;
    assert_eq!(seen.get("s2"), None, "{seen:?}");
    assert_eq!(seen.get("s1"), Some(&10), "{seen:?}");
    assert_eq!(seen.get("s3"), Some(&20), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_is_retried_on_another_server_unseen_by_the_client() {
    let live = TestServer::named(v6(0), "live").await.unwrap();
    let dead = {
        let l = std::net::TcpListener::bind(v4(0)).unwrap();
        l.local_addr().unwrap()
    }; // closed again: connects are refused
    let listen = v4(free_port());
    let rows = vec![("dead", dead, 1), ("live", live.address, 1)];
    // No health check: the only way to avoid the dead server is the retry.
    let mut cfg = config(&[listen], weighted(&rows));
    cfg.backends[0].retries = Some(2);
    let daemon = DaemonProcess::start_ready(&cfg.to_toml());
    for _ in 0..10 {
        let mut stream = TcpStream::connect(listen).await.unwrap();
        assert_eq!(greeting(&mut stream).await, "live");
    }
    assert!(daemon.log().contains("connect refused"), "{}", daemon.log());
}

/// `retries = 0`: a failed connect is not tried again elsewhere, so the
/// client whose connection was sent to the dead server sees it closed
/// (with the default of 2, as above, no client would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_failed_connect_reaches_the_client() {
    let live = TestServer::named(v6(0), "live").await.unwrap();
    let dead = {
        let l = std::net::TcpListener::bind(v4(0)).unwrap();
        l.local_addr().unwrap()
    }; // closed again: connects are refused
    let listen = v4(free_port());
    let rows = vec![("dead", dead, 1), ("live", live.address, 1)];
    let mut cfg = config(&[listen], weighted(&rows));
    cfg.backends[0].retries = Some(0);
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let mut answers = Vec::new();
    // Round robin sends one of the first two to the dead server, before
    // passive observation (3 failures) takes it out.
    // The reset can come before the client's connect has returned.
    for _ in 0..2 {
        let answer = match TcpStream::connect(listen).await {
            Ok(mut stream) => read_greeting(&mut stream).await.ok(),
            Err(_) => None,
        };
        answers.push(answer);
    }
    answers.sort();
    assert_eq!(answers, [None, Some("live".to_owned())]);
}

async fn proxy_header_through(
    listen: SocketAddr,
    server_side: SocketAddr,
    version: &str,
) -> (ProxyHeader, SocketAddr, SocketAddr) {
    let server = TestServer::start(server_side, Behaviour::ProxyHeader)
        .await
        .unwrap();
    let mut cfg = config(&[listen], weighted(&[("s1", server.address, 1)]));
    cfg.frontends[0].proxy_protocol = Some(version.to_owned());
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let client = stream.local_addr().unwrap();
    stream.write_all(b"after the header").await.unwrap();
    let mut echoed = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .expect("echo within 5 s")
        .unwrap();
    assert_eq!(
        &echoed, b"after the header",
        "payload follows the header intact"
    );
    let header = server.stats.proxy_headers.lock().unwrap()[0].clone();
    (header, client, listen)
}

fn assert_header(
    header: &ProxyHeader,
    version: ProxyVersion,
    client: SocketAddr,
    frontend: SocketAddr,
) {
    assert_eq!(header.version, version, "{header:?}");
    let addresses = header.addresses.as_ref().expect("addresses in the header");
    assert_eq!(addresses.source, client, "source is the client: {header:?}");
    assert_eq!(
        addresses.destination, frontend,
        "destination is the frontend: {header:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_same_family() {
    let (h, client, fe) = proxy_header_through(v4(free_port()), v4(0), "v1").await;
    assert_header(&h, ProxyVersion::V1, client, fe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_ipv4_client_ipv6_server_says_tcp4() {
    let (h, client, fe) = proxy_header_through(v4(free_port()), v6(0), "v1").await;
    assert_header(&h, ProxyVersion::V1, client, fe);
    assert!(client.is_ipv4());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_same_family_ipv6() {
    let (h, client, fe) = proxy_header_through(v6(free_port()), v6(0), "v2").await;
    assert_header(&h, ProxyVersion::V2, client, fe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_ipv4_client_ipv6_server_says_af_inet() {
    let (h, client, fe) = proxy_header_through(v4(free_port()), v6(0), "v2").await;
    assert_header(&h, ProxyVersion::V2, client, fe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_ipv6_client_ipv4_server_says_af_inet6() {
    let (h, client, fe) = proxy_header_through(v6(free_port()), v4(0), "v2").await;
    assert_header(&h, ProxyVersion::V2, client, fe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_further_clients_in_the_backlog() {
    let server = TestServer::named(v4(0), "s1").await.unwrap();
    let listen = v4(free_port());
    let mut cfg = config(&[listen], weighted(&[("s1", server.address, 1)]));
    cfg.frontends[0].max_connections = Some(2);
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let mut first = TcpStream::connect(listen).await.unwrap();
    let mut second = TcpStream::connect(listen).await.unwrap();
    assert_eq!(greeting(&mut first).await, "s1");
    assert_eq!(greeting(&mut second).await, "s1");
    // The third completes its handshake in the kernel backlog but is not
    // served until a slot frees.
    let mut third = TcpStream::connect(listen).await.unwrap();
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(
        waited.is_err(),
        "a third connection was served beyond max_connections"
    );
    assert_eq!(server.connections(), 2);
    drop(first);
    assert_eq!(greeting(&mut third).await, "s1");
}

/// A server's `max_connections`: at its limit it takes no new connection,
/// the others take them; once one closes it takes the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_at_its_max_connections_gets_no_new_ones() {
    let servers = three_named_servers().await;
    let listen = v4(free_port());
    let mut capped = weighted(&[("s1", servers[0].address, 1), ("s2", servers[1].address, 1)]);
    capped[0].max_connections = Some(1);
    let _daemon = DaemonProcess::start_ready(&config(&[listen], capped).to_toml());
    // Held open: without the cap round-robin would give s1 two of four.
    let mut open = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(listen).await.unwrap();
        *seen.entry(greeting(&mut stream).await).or_insert(0) += 1;
        open.push(stream);
    }
    assert_eq!(seen.get("s1"), Some(&1), "{seen:?}");
    assert_eq!(seen.get("s2"), Some(&3), "{seen:?}");
    // Closing every connection frees s1's slot.
    drop(open);
    let freed = coexist_support::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(50),
        async || spread(listen, 2).await.contains_key("s1"),
    )
    .await;
    assert!(freed.is_some(), "s1 never took a connection again");
}

/// A backend's `connect_timeout`: a server that never completes the
/// handshake (its accept queue is full, so the kernel drops the SYN) is
/// given up after it, not after the default 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_gives_up_on_a_server_that_never_answers() {
    let silent = std::net::TcpListener::bind(v4(0)).unwrap();
    let silent_address = silent.local_addr().unwrap();
    // Backlog 0: one handshake completes, then the queue is full.
    nix::sys::socket::listen(&silent, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
    let _filler = std::net::TcpStream::connect(silent_address).unwrap();
    let listen = v4(free_port());
    let mut cfg = config(&[listen], weighted(&[("silent", silent_address, 1)]));
    cfg.backends[0].connect_timeout = Some(Duration::from_millis(300));
    cfg.backends[0].retries = Some(0);
    let daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let mut client = TcpStream::connect(listen).await.unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut byte)).await;
    let took = started.elapsed();
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the client was not closed: {read:?}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1800),
        "closed after {took:?}; log:\n{}",
        daemon.log()
    );
}

/// `tuning.backlog`: the listeners' accept queue is as long as asked
/// (`ss` shows it as the listening socket's Send-Q).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_sets_the_listeners_accept_queue() {
    let server = TestServer::named(v4(0), "s1").await.unwrap();
    let listen = v4(free_port());
    let mut cfg = config(&[listen], weighted(&[("s1", server.address, 1)]));
    cfg.tuning.as_mut().unwrap().backlog = Some(7);
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{}", listen.port())])
        .output()
        .expect("run ss (iproute2)");
    let out = String::from_utf8_lossy(&out.stdout);
    let send_q: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(send_q, ["7"], "ss:\n{out}");
}

/// The pipes `pid` holds open: each end of a pipe is one path under
/// /proc/PID/fd naming a `pipe:[inode]`.
fn pipe_fds(pid: u32) -> Vec<std::path::PathBuf> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the daemon's fds");
    dir.filter_map(|entry| {
        let path = entry.ok()?.path();
        let target = std::fs::read_link(&path).ok()?;
        target.to_str()?.starts_with("pipe:").then_some(path)
    })
    .collect()
}

/// The capacity of the pipe behind `fd` (a /proc/PID/fd path): opening
/// it gives this process the same pipe.
fn pipe_capacity(fd: &std::path::Path) -> usize {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fd)
        .expect("open the daemon's pipe");
    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ).expect("F_GETPIPE_SZ")
        as usize
}

/// Eight bulk echoes at once, each direction of each busy enough to
/// splice through a pipe of its own; returns the daemon and the pipes it
/// holds once they are all over, beyond those it held before.
async fn pipes_left_after_bulk_echoes(
    cfg: &Config,
    listen: SocketAddr,
) -> (DaemonProcess, Vec<std::path::PathBuf>) {
    let daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let before = pipe_fds(daemon.pid());
    let echoes: Vec<_> = (0..8)
        .map(|seed| {
            tokio::spawn(async move {
                let stream = TcpStream::connect(listen).await.unwrap();
                echo_verified(stream, 8 * MIB, seed).await;
            })
        })
        .collect();
    for echo in echoes {
        echo.await.unwrap();
    }
    // A connection gives its pipes back when it ends, just after the
    // client saw its last byte.
    let mut after = pipe_fds(daemon.pid());
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = pipe_fds(daemon.pid());
        if now == after {
            break;
        }
        after = now;
    }
    after.retain(|fd| !before.contains(fd));
    (daemon, after)
}

/// `[tuning]` `splice`, `pipe_size` and `pipe_pool_max` as the daemon
/// applies them: pipes of the requested size, no more kept idle than the
/// pool allows, and none at all when splice is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuning_sets_splice_pipe_size_and_the_idle_pipes_kept() {
    let server = TestServer::start(v4(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let listen = v4(free_port());
    let mut cfg = config(&[listen], weighted(&[("s1", server.address, 1)]));
    let tuning = cfg.tuning.as_mut().unwrap();
    // Neither the kernel's default capacity (64 KiB) nor coexist's.
    tuning.pipe_size = Some(256 * 1024);
    tuning.pipe_pool_max = Some(2);
    let (_daemon, idle) = pipes_left_after_bulk_echoes(&cfg, listen).await;
    // Two ends per pipe: pipe_pool_max pipes are kept of the up to 16 used.
    assert_eq!(idle.len(), 2 * 2, "idle pipe fds: {idle:?}");
    for fd in &idle {
        assert_eq!(pipe_capacity(fd), 256 * 1024, "{}", fd.display());
    }

    let listen = v4(free_port());
    let mut cfg = config(&[listen], weighted(&[("s1", server.address, 1)]));
    cfg.tuning.as_mut().unwrap().splice = Some(false);
    let (_daemon, idle) = pipes_left_after_bulk_echoes(&cfg, listen).await;
    assert_eq!(
        idle,
        Vec::<std::path::PathBuf>::new(),
        "splice = false uses no pipe"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_a_silent_connection() {
    let server = TestServer::start(v4(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let listen = v4(free_port());
    let mut cfg = config(&[listen], weighted(&[("s1", server.address, 1)]));
    cfg.backends[0].idle_timeout = Some(Duration::from_millis(300));
    let _daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let mut stream = TcpStream::connect(listen).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "idle connection still open after 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_lets_open_connections_finish() {
    let server = TestServer::start(v6(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let listen = v6(free_port());
    let cfg = config(&[listen], weighted(&[("s1", server.address, 1)]));
    let mut daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let mut open = TcpStream::connect(listen).await.unwrap();
    open.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    open.read_exact(&mut buf).await.unwrap();

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(daemon.wait_log("stopping", 1), "{}", daemon.log());
    // New connections are refused once the listener is closed.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(listen).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting after SIGTERM");
    // The open connection still works, and the daemon waits for it.
    open.write_all(b"during").await.unwrap();
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"during");
    assert!(
        daemon.wait_exit(Duration::from_millis(300)).is_none(),
        "exited with a connection open"
    );
    drop(open);
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("exits once drained");
    assert!(status.success(), "exit status {status:?}");
}

/// `tuning.shutdown_grace`: SIGTERM waits that long for open connections,
/// then exits with them still open (the default would wait 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_after_shutdown_grace_with_a_connection_still_open() {
    let server = TestServer::start(v4(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let listen = v4(free_port());
    let mut cfg = config(&[listen], weighted(&[("s1", server.address, 1)]));
    cfg.tuning.as_mut().unwrap().shutdown_grace = Some(Duration::from_millis(500));
    let mut daemon = DaemonProcess::start_ready(&cfg.to_toml());
    let mut open = TcpStream::connect(listen).await.unwrap();
    open.write_all(b"held").await.unwrap();
    let mut buf = [0u8; 4];
    open.read_exact(&mut buf).await.unwrap();

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        daemon.wait_exit(Duration::from_millis(300)).is_none(),
        "exited before the grace period with a connection open"
    );
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some(),
        "still running long after shutdown_grace; log:\n{}",
        daemon.log()
    );
    // The connection was cut, not finished.
    let read = tokio::time::timeout(Duration::from_secs(2), open.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
}

#[test]
fn check_reports_file_line_column_and_key() {
    let (ok, message) =
        check("[[frontend]]\nname = \"web\"\nlisten = [\"127.0.0.1:1\"]\nbackend = \"missing\"\n");
    assert!(!ok);
    assert!(message.contains("coexist.toml:4:"), "{message}");
    assert!(message.contains("frontend[0].backend"), "{message}");

    let (ok, message) = check(
        "[[frontend]]\nname = \"web\"\nlisten = [\"127.0.0.1:1\"]\nbackend = \"b\"\nbogus = 1\n",
    );
    assert!(!ok);
    assert!(message.contains(":5:"), "{message}");
    assert!(message.contains("bogus"), "{message}");
}

#[test]
fn check_accepts_the_example_config() {
    let example = include_str!("../../conf/coexist.toml");
    let (ok, message) = check(example);
    assert!(ok, "{message}");
}
