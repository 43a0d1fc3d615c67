//! The admin endpoint and the operator CLI, through the real daemon.
//!
//! ```text
//!   client ──► coexist 127.0.0.1:P ──► s1, s2
//!   test   ──► admin 127.0.0.1:A  (/metrics, /status, POST /servers/…)
//!   coexist status ──► admin;  coexist server … ──► control socket S
//!   test   ──► S (a Unix socket in a temporary directory)
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use coexist_support::config::{Admin, Backend, Config, Frontend, HealthCheck, Server};
use coexist_support::wait_until_async;
use coexist_tests::client::read_greeting;
use coexist_tests::daemon::{admin_get, admin_metrics, cli, metric_value, DaemonProcess};
use coexist_tests::ports::{free_port, v4, v6};
use coexist_tests::servers::TestServer;
use lb::admin::status::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(listen: SocketAddr, admin: SocketAddr, s1: SocketAddr, s2: SocketAddr) -> Config {
    let ms = Duration::from_millis;
    Config {
        frontends: vec![Frontend::new("web", [listen], "pool")],
        backends: vec![Backend {
            health_check: Some(HealthCheck::every("tcp", ms(200), ms(100), 1, 1)),
            ..Backend::new("pool", [Server::named("s1", s1), Server::named("s2", s2)])
        }],
        ..Config::with_admin(admin)
    }
}

async fn greeting(listen: SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let name = read_greeting(&mut stream).await.expect("greeting");
    (stream, name)
}

async fn status(admin: SocketAddr) -> Status {
    tokio::task::spawn_blocking(move || admin_get(admin, "/status"))
        .await
        .unwrap()
}

async fn metrics(admin: SocketAddr) -> String {
    tokio::task::spawn_blocking(move || admin_metrics(admin))
        .await
        .unwrap()
}

/// Polls `done` for up to 5 s; panics naming `what` if it never holds.
async fn assert_eventually(what: &str, done: impl AsyncFnMut() -> bool) {
    let held = wait_until_async(Duration::from_secs(5), Duration::from_millis(20), done).await;
    assert!(held.is_some(), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_named_as_documented_and_move() {
    let s1 = TestServer::named(v4(0), "s1").await.unwrap();
    let s2 = TestServer::named(v6(0), "s2").await.unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let _daemon =
        DaemonProcess::start_ready(&config(listen, admin, s1.address, s2.address).to_toml());
    assert_eventually("both servers up", async || {
        status(admin).await.backends[0]
            .servers
            .iter()
            .all(|s| s.state == "up")
    })
    .await;

    let before = metrics(admin).await;
    for name in ["lb_server_up", "lb_health_checks_total"] {
        assert!(before.contains(name), "{name} missing:\n{before}");
    }
    assert_eq!(
        metric_value(&before, "lb_server_up", &["server=\"s1\""]),
        Some(1.0)
    );
    for _ in 0..4 {
        let (mut stream, _) = greeting(listen).await;
        stream.write_all(b"0123456789").await.unwrap();
        let mut echo = [0u8; 10];
        stream.read_exact(&mut echo).await.unwrap();
    }
    let after = metrics(admin).await;
    for name in [
        "lb_connections_total",
        "lb_active_connections",
        "lb_bytes_total",
        "lb_server_up",
        "lb_connect_duration_seconds_bucket",
        "lb_connection_duration_seconds_bucket",
    ] {
        assert!(after.contains(name), "{name} missing:\n{after}");
    }
    assert_eq!(
        metric_value(&after, "lb_connections_total", &["frontend=\"web\""]),
        Some(4.0)
    );
    let bytes = metric_value(
        &after,
        "lb_bytes_total",
        &["server=\"s1\"", "direction=\"to_server\""],
    )
    .unwrap_or(0.0)
        + metric_value(
            &after,
            "lb_bytes_total",
            &["server=\"s2\"", "direction=\"to_server\""],
        )
        .unwrap_or(0.0);
    assert_eq!(bytes, 40.0, "4 × 10 bytes to the servers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_a_server_going_down() {
    let s1 = TestServer::named(v4(0), "s1").await.unwrap();
    let mut s2 = TestServer::named(v6(0), "s2").await.unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let _daemon =
        DaemonProcess::start_ready(&config(listen, admin, s1.address, s2.address).to_toml());
    assert_eventually("both up", async || {
        status(admin).await.backends[0]
            .servers
            .iter()
            .all(|s| s.state == "up")
    })
    .await;
    let (_held, _) = greeting(listen).await;

    let doc = status(admin).await;
    assert_eq!(doc.frontends[0].name, "web");
    assert_eq!(doc.frontends[0].listen, vec![listen.to_string()]);
    assert_eq!(doc.frontends[0].active_connections, 1);
    assert_eq!(doc.backends[0].balance, "round-robin");
    let s2_status = doc.backends[0]
        .servers
        .iter()
        .find(|s| s.name == "s2")
        .unwrap();
    assert_eq!(s2_status.address, s2.address.to_string());
    assert_eq!(s2_status.last_check.as_deref(), Some("ok"));

    s2.stop();
    assert_eventually("s2 down", async || {
        status(admin).await.backends[0]
            .servers
            .iter()
            .any(|s| s.name == "s2" && s.state == "down")
    })
    .await;
    let doc = status(admin).await;
    let s2_status = doc.backends[0]
        .servers
        .iter()
        .find(|s| s.name == "s2")
        .unwrap();
    assert_eq!(s2_status.last_check.as_deref(), Some("connect refused"));
    let page = metrics(admin).await;
    assert_eq!(
        metric_value(&page, "lb_server_up", &["server=\"s2\""]),
        Some(0.0)
    );

    let (ok, table, _) = cli(&["status", "--admin", &admin.to_string()]);
    assert!(ok);
    assert!(table.contains("pool/s2"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("pool/s2") && l.contains("down")),
        "{table}"
    );
}

/// A daemon with servers s1 (IPv4) and s2 (IPv6), its admin endpoint, and
/// a control socket in a temporary directory; `adjust` sets the rest of
/// `[admin]` (and may write files in the directory first).
struct WithSocket {
    listen: SocketAddr,
    admin: SocketAddr,
    socket: String,
    dir: tempfile::TempDir,
    _daemon: DaemonProcess,
    _servers: (TestServer, TestServer),
}

async fn with_socket(adjust: impl FnOnce(&mut Admin, &std::path::Path)) -> WithSocket {
    let s1 = TestServer::named(v4(0), "s1").await.unwrap();
    let s2 = TestServer::named(v6(0), "s2").await.unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let mut config = config(listen, admin, s1.address, s2.address);
    let settings = config.admin.as_mut().unwrap();
    settings.control_socket = Some(socket.clone());
    adjust(settings, dir.path());
    let daemon = DaemonProcess::start_ready(&config.to_toml());
    WithSocket {
        listen,
        admin,
        socket: socket.to_str().unwrap().to_owned(),
        dir,
        _daemon: daemon,
        _servers: (s1, s2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_new_connections_and_keeps_existing_ones() {
    let node = with_socket(|_, _| {}).await;
    let (listen, admin, socket) = (node.listen, node.admin, node.socket.as_str());
    assert_eventually("both up", async || {
        status(admin).await.backends[0]
            .servers
            .iter()
            .all(|s| s.state == "up")
    })
    .await;

    // Find a connection that landed on s1 and keep it.
    let mut kept = None;
    for _ in 0..4 {
        let (stream, name) = greeting(listen).await;
        if name == "s1" {
            kept = Some(stream);
            break;
        }
    }
    let mut kept = kept.expect("a connection on s1");

    let (ok, out, err) = cli(&["server", "pool/s1", "drain", "--socket", socket]);
    assert!(ok, "{err}");
    assert!(out.contains("drain"), "{out}");
    assert_eq!(
        status(admin).await.backends[0]
            .servers
            .iter()
            .find(|s| s.name == "s1")
            .unwrap()
            .state,
        "drain"
    );
    for _ in 0..10 {
        assert_eq!(
            greeting(listen).await.1,
            "s2",
            "a drained server got a new connection"
        );
    }
    kept.write_all(b"still here").await.unwrap();
    let mut echo = [0u8; 10];
    kept.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"still here");

    let (ok, _, err) = cli(&["server", "pool/s1", "ready", "--socket", socket]);
    assert!(ok, "{err}");
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(greeting(listen).await.1);
    }
    assert!(names.contains(&"s1".to_owned()), "{names:?}");

    let (ok, _, err) = cli(&["server", "pool/nope", "maint", "--socket", socket]);
    assert!(!ok);
    assert!(err.contains("no server pool/nope"), "{err}");
}

/// `POST /servers/pool/s1` with `authorization` (a header value) over TCP.
async fn post_over_tcp(admin: SocketAddr, authorization: Option<&str>) -> String {
    let mut stream = TcpStream::connect(admin).await.unwrap();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let body = r#"{"state":"drain"}"#;
    let request = format!(
        "POST /servers/pool/s1 HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// Writes: over the control socket for whoever may open it; over TCP only
/// with the bearer token of `admin.token_file`. Reads stay open on TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_control_socket_or_the_token() {
    let node = with_socket(|settings, dir| {
        for (name, secret) in [
            ("admin.token", "s3cret-token\n"),
            ("wrong.token", "not-it\n"),
        ] {
            let file = dir.join(name);
            std::fs::write(&file, secret).unwrap();
            // As an operator keeps it: not readable by every user (else a warning).
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        settings.token_file = Some(dir.join("admin.token"));
    })
    .await;
    let (admin, socket) = (node.admin, node.socket.as_str());
    let path = |name: &str| node.dir.path().join(name).to_str().unwrap().to_owned();
    let (token, wrong) = (path("admin.token"), path("wrong.token"));
    let (token, wrong) = (token.as_str(), wrong.as_str());
    let admin_text = admin.to_string();

    // Input: no token, a wrong token. Output: 401 / 403, nothing changed.
    let answer = post_over_tcp(admin, None).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains(token),
        "the refusal names the token file: {answer}"
    );
    assert!(post_over_tcp(admin, Some("Bearer not-it"))
        .await
        .starts_with("HTTP/1.1 403"));
    let (ok, _, err) = cli(&[
        "server",
        "pool/s1",
        "drain",
        "--admin",
        &admin_text,
        "--token-file",
        wrong,
    ]);
    assert!(!ok);
    assert_eq!(
        err,
        format!("coexist: the bearer token is not the one in {token}\n")
    );
    assert!(status(admin).await.backends[0]
        .servers
        .iter()
        .all(|s| s.state != "drain"));

    // Input: the right token over TCP. Output: the change is made.
    let (ok, out, err) = cli(&[
        "server",
        "pool/s1",
        "drain",
        "--admin",
        &admin_text,
        "--token-file",
        token,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("drain"), "{out}");

    // Input: the control socket, no token. Output: the change is made.
    let (ok, out, err) = cli(&["server", "pool/s2", "maint", "--socket", socket]);
    assert!(ok, "{err}");
    assert!(out.contains("maint"), "{out}");
    let states: Vec<String> = status(admin).await.backends[0]
        .servers
        .iter()
        .map(|s| s.state.clone())
        .collect();
    assert_eq!(states, ["drain", "maint"]);
}

/// An admin connection that sends nothing, or a request head slowly, is
/// closed after `admin.request_timeout`, on TCP and on the control socket,
/// so idle clients cannot hold descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_admin_connections_are_closed() {
    let node = with_socket(|settings, _| {
        settings.request_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let (admin, socket) = (node.admin, &node.socket);

    // Waits (at most 10 s, far beyond the 300 ms) for the daemon to close.
    async fn closed_by_daemon(mut stream: impl tokio::io::AsyncRead + Unpin) -> bool {
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        matches!(
            tokio::time::timeout(Duration::from_secs(10), read).await,
            Ok(Ok(_))
        )
    }
    let idle = TcpStream::connect(admin).await.unwrap();
    assert!(
        closed_by_daemon(idle).await,
        "an idle TCP connection stayed open"
    );
    let mut slow = TcpStream::connect(admin).await.unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_daemon(slow).await,
        "a request head never finished, still open"
    );
    let idle = tokio::net::UnixStream::connect(&socket).await.unwrap();
    assert!(
        closed_by_daemon(idle).await,
        "an idle control socket connection stayed open"
    );

    // After an answer, the kept-alive connection is closed when idle too.
    let mut kept = TcpStream::connect(admin).await.unwrap();
    kept.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        closed_by_daemon(kept).await,
        "an idle kept-alive connection stayed open"
    );
    // The endpoint still serves.
    assert_eq!(status(admin).await.backends[0].servers.len(), 2);
}
