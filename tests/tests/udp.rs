//! UDP frontends through the real daemon on loopback.
//!
//! ```text
//!   clients (127.0.0.0/8, ::1) ──► coexist udp 127.0.0.1:P / [::1]:P ──► servers [::1]:s / 127.0.0.1:s
//!                                       │ admin 127.0.0.1:A (/status, /metrics)
//! ```
//!
//! The servers are threads of the test: an echo, one that answers with the
//! address it saw (to tell sessions apart by their source port), one that
//! answers twice, one that answers again a little later, and dnsmasq for
//! DNS.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coexist_support::config::{Backend, Config, Frontend, HealthCheck, Server as ServerEntry};
use coexist_tests::daemon::{admin_get, admin_metrics, metric_value, DaemonProcess};
use coexist_tests::dns::{dnsmasq_args, tools_or_skip, UP_ADDRESS, UP_NAME};
use coexist_tests::ports::free_port;
use lb::admin::status::{FrontendStatus, ServerStatus, Status};
use nix::sys::signal::Signal;

#[derive(Clone, Copy)]
enum Reply {
    /// The datagram back, unchanged.
    Echo,
    /// `NAME PEER`: which server, and the source address it saw.
    Peer(&'static str),
    /// The datagram back, twice.
    Twice,
    /// The datagram back, and once more after a delay.
    Again(Duration),
}

/// A UDP server thread; stops when dropped.
struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(bind: &str, reply: Reply) -> Self {
        let socket = UdpSocket::bind(bind).expect("bind test server");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let address = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 65536];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                match reply {
                    Reply::Echo => {
                        let _ = socket.send_to(&buffer[..n], peer);
                    }
                    Reply::Peer(name) => {
                        let _ = socket.send_to(format!("{name} {peer}").as_bytes(), peer);
                    }
                    Reply::Twice => {
                        let _ = socket.send_to(&buffer[..n], peer);
                        let _ = socket.send_to(&buffer[..n], peer);
                    }
                    Reply::Again(delay) => {
                        let _ = socket.send_to(&buffer[..n], peer);
                        let (late, data) = (socket.try_clone().unwrap(), buffer[..n].to_vec());
                        std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            let _ = late.send_to(&data, peer);
                        });
                    }
                }
            }
        });
        Self { address, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn admin_address() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// A client socket of the frontend's family, connected to it.
fn client(frontend: SocketAddr) -> UdpSocket {
    let local = if frontend.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.connect(frontend).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket
}

/// Sends `request` and returns the reply, sending again on a timeout.
fn ask(socket: &UdpSocket, request: &[u8]) -> Vec<u8> {
    let mut buffer = vec![0u8; 65536];
    for _ in 0..6 {
        socket.send(request).unwrap();
        if let Ok(n) = socket.recv(&mut buffer) {
            buffer.truncate(n);
            return buffer;
        }
    }
    panic!("no reply from {:?}", socket.peer_addr());
}

fn ask_text(socket: &UdpSocket, request: &str) -> String {
    String::from_utf8(ask(socket, request.as_bytes())).unwrap()
}

fn status(admin: SocketAddr) -> Status {
    admin_get(admin, "/status")
}

fn frontend_status(admin: SocketAddr, name: &str) -> FrontendStatus {
    status(admin)
        .frontends
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no frontend {name} in /status"))
}

fn server_status(admin: SocketAddr, backend: &str, name: &str) -> ServerStatus {
    status(admin)
        .backends
        .into_iter()
        .find(|b| b.name == backend)
        .and_then(|b| b.servers.into_iter().find(|s| s.name == name))
        .unwrap_or_else(|| panic!("no server {backend}/{name} in /status"))
}

fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    metric_value(&admin_metrics(admin), name, labels).unwrap_or(0.0)
}

/// Polls `done` until it holds, failing the test after `limit`.
fn wait_until(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    let held = coexist_support::wait_until(limit, Duration::from_millis(20), done);
    assert!(held.is_some(), "timed out waiting for {what}");
}

/// A config: the admin endpoint on `admin`, then the frontends and
/// backends.
fn config(admin: SocketAddr, frontends: Vec<Frontend>, backends: Vec<Backend>) -> String {
    Config {
        frontends,
        backends,
        ..Config::with_admin(admin)
    }
    .to_toml()
}

/// A UDP frontend on `listen` whose sessions end after one reply per
/// datagram (DNS).
fn one_reply(name: &str, listen: SocketAddr, backend: &str) -> Frontend {
    Frontend {
        udp_responses: Some(1),
        ..Frontend::udp(name, [listen], backend)
    }
}

/// A backend of named servers.
fn backend(name: &str, servers: &[(&str, SocketAddr)]) -> Backend {
    Backend::new(name, servers.iter().map(|(n, a)| ServerEntry::named(n, *a)))
}

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A datagram that names its sequence number and differs in size and
/// content from its neighbours.
fn datagram(flow: u64, sequence: u64) -> Vec<u8> {
    let size = 16 + ((sequence * 7919 + flow * 104_729) % 3000) as usize;
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&flow.to_be_bytes());
    bytes.extend_from_slice(&sequence.to_be_bytes());
    let mut x = flow.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ sequence;
    while bytes.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push(x as u8);
    }
    bytes
}

#[test]
fn ten_thousand_datagrams_each_way_across_families_arrive_unchanged() {
    let echo6 = Server::start("[::1]:0", Reply::Echo);
    let echo4 = Server::start("127.0.0.1:0", Reply::Echo);
    let port = free_port();
    let (to_six, to_four) = (
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::new("::1".parse().unwrap(), port),
    );
    let admin = admin_address();
    let _daemon = DaemonProcess::start_ready(&config(
        admin,
        vec![
            Frontend::udp("to-six", [to_six], "six"),
            Frontend::udp("to-four", [to_four], "four"),
        ],
        vec![
            backend("six", &[("echo6", echo6.address)]),
            backend("four", &[("echo4", echo4.address)]),
        ],
    ));
    const FLOWS: u64 = 8;
    const PER_FLOW: u64 = 1250;
    for (frontend, name) in [(to_six, "to-six"), (to_four, "to-four")] {
        let verified: u64 = (0..FLOWS)
            .map(|flow| {
                std::thread::spawn(move || {
                    let socket = client(frontend);
                    (0..PER_FLOW)
                        .filter(|&sequence| {
                            let sent = datagram(flow, sequence);
                            let reply = ask(&socket, &sent);
                            assert_eq!(
                                reply, sent,
                                "{name}: flow {flow} datagram {sequence} changed"
                            );
                            true
                        })
                        .count() as u64
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("client thread"))
            .sum();
        assert_eq!(verified, FLOWS * PER_FLOW, "{name}");
        let frontend_label = format!("frontend=\"{name}\"");
        let forwarded = metric(
            admin,
            "lb_udp_datagrams_total",
            &[&frontend_label, "direction=\"to_client\""],
        );
        assert!(
            forwarded >= (FLOWS * PER_FLOW) as f64,
            "{name}: {forwarded} to clients"
        );
        let udp = frontend_status(admin, name).udp.expect("udp counters");
        assert_eq!(
            udp.active_sessions, FLOWS as usize,
            "{name}: one session per client"
        );
    }
}

/// A resolver or `dnsperf` keeps many queries in flight on one socket. The
/// daemon reads such a burst in one batch and sends it on to the server
/// in one call, and reads the server's queued replies the same way: every
/// datagram must still arrive unchanged and in order, each way, within one
/// session (`udp_responses = 1` counts a reply per query).
///
/// The daemon is stopped while each burst is queued, so it finds the whole
/// burst at once when it resumes; the server is this test, answering only
/// once it holds every query.
#[test]
fn a_burst_of_queries_in_flight_on_one_socket_is_answered_in_order() {
    const IN_FLIGHT: u64 = 50;
    let server = UdpSocket::bind("[::1]:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let port = free_port();
    let admin = admin_address();
    let daemon = DaemonProcess::start_ready(&config(
        admin,
        vec![one_reply("dns", v4(port), "six")],
        vec![backend("six", &[("held", server.local_addr().unwrap())])],
    ));
    let socket = client(v4(port));
    // Small enough that a burst fits every socket buffer on the way.
    let sent: Vec<Vec<u8>> = (0..IN_FLIGHT)
        .map(|i| {
            let mut d = datagram(1, i);
            d.truncate(16 + (i as usize * 13) % 200);
            d
        })
        .collect();
    let mut buffer = vec![0u8; 65536];

    let paused = Paused::new(&daemon);
    for d in &sent {
        socket.send(d).unwrap();
    }
    drop(paused);
    let mut session = None;
    for (i, expected) in sent.iter().enumerate() {
        let (n, from) = server
            .recv_from(&mut buffer)
            .unwrap_or_else(|e| panic!("query {i} of {IN_FLIGHT} at the server: {e}"));
        assert_eq!(&buffer[..n], &expected[..], "query {i} at the server");
        assert_eq!(*session.get_or_insert(from), from, "query {i}: one session");
    }

    let paused = Paused::new(&daemon);
    for d in &sent {
        server.send_to(d, session.unwrap()).unwrap();
    }
    drop(paused);
    for (i, expected) in sent.iter().enumerate() {
        let n = socket
            .recv(&mut buffer)
            .unwrap_or_else(|e| panic!("reply {i} of {IN_FLIGHT}: {e}"));
        assert_eq!(&buffer[..n], &expected[..], "reply {i}");
    }
    let udp = frontend_status(admin, "dns").udp.unwrap();
    assert_eq!(udp.total_sessions, 1);
}

/// The daemon stopped (SIGSTOP, and seen stopped) until dropped.
struct Paused<'a>(&'a DaemonProcess);

impl<'a> Paused<'a> {
    fn new(daemon: &'a DaemonProcess) -> Self {
        daemon.signal(Signal::SIGSTOP);
        let stat = format!("/proc/{}/stat", daemon.pid());
        wait_until("the daemon to stop", Duration::from_secs(5), || {
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('T'))
            })
        });
        Self(daemon)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.signal(Signal::SIGCONT);
    }
}

#[test]
fn idle_sessions_expire_and_udp_responses_ends_a_session_per_answer() {
    let peer = Server::start("[::1]:0", Reply::Peer("s1"));
    let twice = Server::start("[::1]:0", Reply::Twice);
    let (idle, dns, double) = (free_port(), free_port(), free_port());
    let admin = admin_address();
    let _daemon = DaemonProcess::start_ready(&config(
        admin,
        vec![
            Frontend {
                udp_idle_timeout: Some(Duration::from_millis(400)),
                ..Frontend::udp("idle", [v4(idle)], "peer")
            },
            one_reply("dns", v4(dns), "peer"),
            one_reply("double", v4(double), "twice"),
        ],
        vec![
            backend("peer", &[("s1", peer.address)]),
            backend("twice", &[("twice", twice.address)]),
        ],
    ));

    // Within the idle timeout the client keeps its session (and source port
    // towards the server); after it, a new session starts.
    let c = client(SocketAddr::from(([127, 0, 0, 1], idle)));
    let first = ask_text(&c, "a");
    assert_eq!(ask_text(&c, "b"), first, "same session within the timeout");
    wait_until("the idle session to expire", Duration::from_secs(5), || {
        metric(
            admin,
            "lb_udp_sessions_ended_total",
            &["frontend=\"idle\"", "reason=\"idle\""],
        ) >= 1.0
    });
    assert_eq!(frontend_status(admin, "idle").active_connections, 0);
    assert_ne!(ask_text(&c, "c"), first, "a new session after the timeout");

    // One response per request: every exchange is a session of its own.
    let c = client(SocketAddr::from(([127, 0, 0, 1], dns)));
    for i in 0..5 {
        ask_text(&c, &format!("q{i}"));
    }
    wait_until("five answered sessions", Duration::from_secs(5), || {
        metric(
            admin,
            "lb_udp_sessions_ended_total",
            &["frontend=\"dns\"", "reason=\"responses\""],
        ) >= 5.0
    });
    let udp = frontend_status(admin, "dns").udp.unwrap();
    assert_eq!((udp.active_sessions, udp.total_sessions), (0, 5));

    // A second answer to the same request is not delivered.
    let c = client(SocketAddr::from(([127, 0, 0, 1], double)));
    assert_eq!(ask(&c, b"once"), b"once");
    let mut buffer = [0u8; 64];
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        c.recv(&mut buffer).is_err(),
        "the second answer reached the client"
    );
}

/// With `udp_responses = 1` a session ends at its first reply and its
/// socket serves later sessions. The server answers every query a second
/// time 5 ms later, while the socket may already serve another client:
/// that late reply must reach nobody, as with a closed socket.
#[test]
fn a_late_extra_reply_never_reaches_the_next_client_of_a_reused_socket() {
    const CLIENTS: usize = 8;
    const QUERIES: usize = 100;
    let server = Server::start("[::1]:0", Reply::Again(Duration::from_millis(5)));
    let port = free_port();
    let admin = admin_address();
    let _daemon = DaemonProcess::start_ready(&config(
        admin,
        vec![one_reply("dns", v4(port), "dns")],
        vec![backend("dns", &[("late", server.address)])],
    ));
    let frontend = v4(port);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64];
                for q in 0..QUERIES {
                    // A new client (source port) per query: a new session.
                    let socket = client(frontend);
                    let query = format!("client {c} query {q}");
                    assert_eq!(ask_text(&socket, &query), query);
                    socket
                        .set_read_timeout(Some(Duration::from_millis(15)))
                        .unwrap();
                    if let Ok(n) = socket.recv(&mut buffer) {
                        panic!(
                            "{query}: a second datagram reached the client: {}",
                            String::from_utf8_lossy(&buffer[..n])
                        );
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .expect("a client saw a reply not meant for it");
    }
    let ended = metric(
        admin,
        "lb_udp_sessions_ended_total",
        &["frontend=\"dns\"", "reason=\"responses\""],
    );
    assert!(
        ended >= (CLIENTS * QUERIES) as f64,
        "{ended} sessions ended by their reply"
    );
}

#[test]
fn a_reload_keeps_sessions_and_removing_a_server_ends_only_its_own() {
    let a = Server::start("[::1]:0", Reply::Peer("a"));
    let b = Server::start("127.0.0.1:0", Reply::Peer("b"));
    let c = Server::start("[::1]:0", Reply::Peer("c"));
    let port = free_port();
    let admin = admin_address();
    let config = |idle: u64, servers: &[(&str, SocketAddr)]| {
        let frontend = Frontend {
            udp_idle_timeout: Some(Duration::from_secs(idle)),
            ..Frontend::udp("u", [v4(port)], "pool")
        };
        config(admin, vec![frontend], vec![backend("pool", servers)])
    };
    let daemon = DaemonProcess::start_ready(&config(60, &[("a", a.address), ("b", b.address)]));
    let frontend = SocketAddr::from(([127, 0, 0, 1], port));
    // Round-robin puts the first two clients on a and b.
    let clients = [client(frontend), client(frontend)];
    let before: Vec<String> = clients.iter().map(|s| ask_text(s, "hello")).collect();
    let mut names: Vec<&str> = before.iter().map(|r| &r[..1]).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"], "{before:?}");

    // A reload that changes settings and adds a server keeps both sessions:
    // same server, same source port.
    daemon.write_config(&config(
        50,
        &[("a", a.address), ("b", b.address), ("c", c.address)],
    ));
    daemon.signal(Signal::SIGHUP);
    assert!(
        daemon.wait_log("configuration reloaded", 1),
        "{}",
        daemon.log()
    );
    let after: Vec<String> = clients.iter().map(|s| ask_text(s, "again")).collect();
    assert_eq!(after, before, "sessions changed across a reload");

    // Removing b ends b's session only.
    daemon.write_config(&config(50, &[("a", a.address), ("c", c.address)]));
    daemon.signal(Signal::SIGHUP);
    assert!(
        daemon.wait_log("configuration reloaded", 2),
        "{}",
        daemon.log()
    );
    let on_a = before.iter().position(|r| r.starts_with('a')).unwrap();
    let on_b = 1 - on_a;
    assert_eq!(ask_text(&clients[on_a], "still"), before[on_a]);
    let moved = ask_text(&clients[on_b], "moved");
    assert!(
        !moved.starts_with('b'),
        "b's client still reached b: {moved}"
    );
    assert!(
        metric(
            admin,
            "lb_udp_sessions_ended_total",
            &["frontend=\"u\"", "reason=\"closed\""]
        ) >= 1.0
    );
}

#[test]
fn a_spoofed_source_flood_of_100000_clients_keeps_the_table_bounded_and_the_service_answering() {
    const MAX_SESSIONS: usize = 1000;
    const FLOOD: u32 = 100_000;
    let echo = Server::start("127.0.0.1:0", Reply::Echo);
    let port = free_port();
    let admin = admin_address();
    let daemon = DaemonProcess::start_ready(&config(
        admin,
        vec![Frontend {
            max_sessions: Some(MAX_SESSIONS as u64),
            ..Frontend::udp("u", [v4(port)], "echo")
        }],
        vec![backend("echo", &[("echo", echo.address)])],
    ));
    let frontend = SocketAddr::from(([127, 0, 0, 1], port));
    let busy = client(frontend);
    let started = Instant::now();
    let mut largest = 0;
    for n in 0..FLOOD {
        // Every client its own (address, port) in 127.0.0.0/8: one socket
        // each, bound to a distinct address, used once.
        let source = Ipv4Addr::from(0x7f01_0000 + n);
        let socket = UdpSocket::bind((source, 0)).expect("bind a flood source");
        let _ = socket.send_to(b"flood", frontend);
        if n % 100 == 99 {
            // Paces the flood to what the daemon takes in, and shows it answers.
            assert_eq!(
                ask(&busy, b"still there?"),
                b"still there?",
                "after {n} flood datagrams"
            );
        }
        if n % 10_000 == 9_999 {
            let udp = frontend_status(admin, "u").udp.unwrap();
            largest = largest.max(udp.active_sessions);
            assert!(
                udp.active_sessions <= MAX_SESSIONS,
                "{} sessions",
                udp.active_sessions
            );
            let descriptors =
                std::fs::read_dir(format!("/proc/{}/fd", daemon.pid())).map_or(0, Iterator::count);
            assert!(
                descriptors <= MAX_SESSIONS + 100,
                "{descriptors} descriptors open"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "flood took too long at {n}"
        );
    }
    let udp = frontend_status(admin, "u").udp.unwrap();
    assert!(udp.active_sessions <= MAX_SESSIONS);
    assert_eq!(largest, MAX_SESSIONS, "the flood filled the table");
    // Nearly every flood datagram opened a session; all but the last
    // MAX_SESSIONS were evicted to make room.
    assert!(udp.total_sessions >= u64::from(FLOOD) * 9 / 10, "{udp:?}");
    assert!(
        udp.evicted_sessions + MAX_SESSIONS as u64 >= udp.total_sessions - 1,
        "{udp:?}"
    );
    assert_eq!(ask(&busy, b"after"), b"after");
}

#[test]
fn a_server_answering_port_unreachable_is_taken_down_passively() {
    let live = Server::start("[::1]:0", Reply::Peer("live"));
    let dead = {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
        // Closed here: datagrams to it draw an ICMP port unreachable.
    };
    let port = free_port();
    let admin = admin_address();
    let _daemon = DaemonProcess::start_ready(&config(
        admin,
        vec![Frontend::udp("u", [v4(port)], "pool")],
        vec![backend("pool", &[("dead", dead), ("live", live.address)])],
    ));
    let frontend = SocketAddr::from(([127, 0, 0, 1], port));
    // Clients that landed on the dead server get no answer, send again and
    // get a new session; every one is answered in the end.
    for i in 0..10 {
        let reply = ask_text(&client(frontend), &format!("client {i}"));
        assert!(reply.starts_with("live "), "{reply}");
    }
    let dead_status = server_status(admin, "pool", "dead");
    assert_eq!(dead_status.state, "down", "{dead_status:?}");
    assert_eq!(dead_status.last_check.as_deref(), Some("port unreachable"));
    assert!(
        metric(admin, "lb_connect_errors_total", &["server=\"dead\""]) >= 3.0,
        "three failures take it down (fall)"
    );
    assert_eq!(server_status(admin, "pool", "live").state, "up");
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dns_and_udp_checks_against_real_responders_and_dig_through_the_frontend() {
    let test = "dns_and_udp_checks_against_real_responders_and_dig_through_the_frontend";
    if !tools_or_skip(test, &["dnsmasq", "dig"]) {
        return;
    }
    // Ports from free_port are outside the range clients draw from, so no
    // retry on another: dnsmasq exiting at once is a failure to report.
    let dns_address = SocketAddr::new("::1".parse().unwrap(), free_port());
    let mut dns = Command::new("dnsmasq")
        .args(dnsmasq_args(dns_address))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(dns.try_wait(), Ok(None)),
        "dnsmasq exited at once on {dns_address}"
    );
    let _dns = Killed(dns);
    let echo = Server::start("127.0.0.1:0", Reply::Echo);
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let port = free_port();
    let admin = admin_address();
    // Two failures to go down: one check timing out on a loaded machine
    // must not take an answering server down while the test waits for all
    // four states at once.
    let check = |kind: &str| {
        HealthCheck::every(
            kind,
            Duration::from_millis(200),
            Duration::from_millis(150),
            1,
            2,
        )
    };
    let checked = |backend: Backend, check: HealthCheck| Backend {
        health_check: Some(check),
        ..backend
    };
    let dns_check = |name: &str| HealthCheck {
        query_name: Some(name.into()),
        query_type: Some("A".into()),
        ..check("dns")
    };
    let udp_check = HealthCheck {
        send: Some("ping".into()),
        expect: Some("ping".into()),
        ..check("udp")
    };
    let _daemon = DaemonProcess::start_ready(&config(
        admin,
        vec![one_reply("dns", v4(port), "dns")],
        vec![
            checked(
                backend("dns", &[("dnsmasq", dns_address)]),
                dns_check(UP_NAME),
            ),
            checked(
                backend("refused", &[("dnsmasq", dns_address)]),
                dns_check("other.test"),
            ),
            checked(
                backend("echo", &[("echo", echo.address), ("closed", closed)]),
                udp_check,
            ),
        ],
    ));
    let state = |backend: &str, server: &str| {
        let s = server_status(admin, backend, server);
        (s.state, s.last_check.unwrap_or_default())
    };
    let settled =
        coexist_support::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            state("dns", "dnsmasq").0 == "up"
                && state("refused", "dnsmasq").0 == "down"
                && state("echo", "echo").0 == "up"
                && state("echo", "closed").0 == "down"
        });
    assert!(
        settled.is_some(),
        "the checks never settled: dns {:?}, refused {:?}, echo {:?}, closed {:?}",
        state("dns", "dnsmasq"),
        state("refused", "dnsmasq"),
        state("echo", "echo"),
        state("echo", "closed")
    );
    assert_eq!(
        state("refused", "dnsmasq").1,
        "expected RCODE NOERROR, got REFUSED"
    );
    assert_eq!(state("echo", "closed").1, "port unreachable");

    // An IPv4 client asks an IPv6-only DNS server through the frontend.
    let dig = Command::new("dig")
        .args([
            "+short",
            "+tries=3",
            "+time=1",
            "-p",
            &port.to_string(),
            "@127.0.0.1",
            UP_NAME,
            "A",
        ])
        .output()
        .expect("run dig");
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), UP_ADDRESS);
}
