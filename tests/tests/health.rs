//! Health checking through the real daemon on loopback.
//!
//! ```text
//!   clients ──► coexist 127.0.0.1:P ──► s1, s2, s3 (127.0.0.1 / ::1)
//!                   │ admin 127.0.0.1:A (/status)
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coexist_support::config::{Backend, Config, Frontend, HealthCheck, Server};
use coexist_support::wait_until_async;
use coexist_tests::client::read_greeting;
use coexist_tests::daemon::{admin_get, admin_metrics, metric_value, DaemonProcess};
use coexist_tests::ports::{free_port, v4, v6};
use coexist_tests::servers::{Behaviour, TestServer};
use lb::admin::status::{ServerStatus, Status};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    check: HealthCheck,
    servers: &[(&str, SocketAddr, bool)],
) -> String {
    let server = |(name, address, backup): &(&str, SocketAddr, bool)| Server {
        backup: Some(*backup),
        ..Server::named(name, *address)
    };
    Config {
        frontends: vec![Frontend::new("web", [listen], "pool")],
        backends: vec![Backend {
            connect_timeout: Some(Duration::from_millis(500)),
            retries: Some(2),
            health_check: Some(check),
            ..Backend::new("pool", servers.iter().map(server))
        }],
        ..Config::with_admin(admin)
    }
    .to_toml()
}

async fn server_status(admin: SocketAddr, name: &str) -> ServerStatus {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        let status: Status = admin_get(admin, "/status");
        status.backends[0]
            .servers
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .expect("server in /status")
    })
    .await
    .unwrap()
}

/// Polls `/status` until the server reaches `state`; returns how long it took.
async fn wait_state(admin: SocketAddr, name: &str, state: &str, limit: Duration) -> Duration {
    let mut last = None;
    let took = wait_until_async(limit, Duration::from_millis(10), async || {
        let s = server_status(admin, name).await;
        let reached = s.state == state;
        last = Some(s);
        reached
    })
    .await;
    took.unwrap_or_else(|| {
        let s = last.expect("polled at least once");
        panic!(
            "{name} still {} (last check {:?}) after {limit:?}",
            s.state, s.last_check
        )
    })
}

fn fast_tcp() -> HealthCheck {
    HealthCheck::every("tcp", ms(200), ms(100), 2, 2)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_takes_a_dead_server_out_and_back_in() {
    let mut s1 = TestServer::named(v4(0), "s1").await.unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let daemon = DaemonProcess::start_ready(&config(
        listen,
        admin,
        fast_tcp(),
        &[("s1", s1.address, false)],
    ));
    wait_state(admin, "s1", "up", Duration::from_secs(2)).await;
    s1.stop();
    wait_state(admin, "s1", "down", Duration::from_secs(2)).await;
    assert_eq!(
        server_status(admin, "s1").await.last_check.as_deref(),
        Some("connect refused")
    );
    assert!(
        daemon
            .log()
            .lines()
            .any(|l| l.contains("server state changed")
                && l.contains("backend=pool server=s1 from=up to=down reason=connect refused")),
        "{}",
        daemon.log()
    );
    s1.restart().await.unwrap();
    wait_state(admin, "s1", "up", Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_expect_check_compares_the_reply_prefix() {
    // `good` only echoes, so "+PONG" comes back only if the check really
    // sent it; `bad` greets "-ERR" before echoing, so its reply never
    // starts with the expected prefix.
    let good = TestServer::start(v6(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let bad = TestServer::named(v6(0), "-ERR").await.unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let check = HealthCheck {
        send: Some("+PONG\r\n".into()),
        expect: Some("+PONG".into()),
        ..HealthCheck::every("send-expect", ms(200), ms(200), 1, 1)
    };
    let _daemon = DaemonProcess::start_ready(&config(
        listen,
        admin,
        check,
        &[("good", good.address, false), ("bad", bad.address, false)],
    ));
    wait_state(admin, "good", "up", Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bad_status = server_status(admin, "bad").await;
    assert_eq!(bad_status.state, "down");
    let reason = bad_status.last_check.unwrap();
    assert!(reason.contains("expected reply starting with"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_expects_a_status_range() {
    let ok = TestServer::start(v4(0), Behaviour::Http { status: 204 })
        .await
        .unwrap();
    let failing = TestServer::start(v4(0), Behaviour::Http { status: 503 })
        .await
        .unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let check = HealthCheck {
        path: Some("/healthz".into()),
        host: Some("example.test".into()),
        expect_status: Some("2xx".into()),
        ..HealthCheck::every("http", ms(200), ms(200), 1, 1)
    };
    let _daemon = DaemonProcess::start_ready(&config(
        listen,
        admin,
        check,
        &[
            ("ok", ok.address, false),
            ("failing", failing.address, false),
        ],
    ));
    wait_state(admin, "ok", "up", Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failing = server_status(admin, "failing").await;
    assert_eq!(failing.state, "down");
    assert_eq!(
        failing.last_check.as_deref(),
        Some("expected HTTP 2xx, got 503")
    );
}

/// One short connection: connect, read the greeting, close. Errors are
/// what a client would see.
async fn short_connection(listen: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect(listen)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = read_greeting(&mut stream).await?;
    let _ = stream.shutdown().await;
    Ok(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dying_under_load_costs_no_client_connection() {
    let s1 = TestServer::named(v4(0), "s1").await.unwrap();
    let mut s2 = TestServer::named(v6(0), "s2").await.unwrap();
    let s3 = TestServer::named(v4(0), "s3").await.unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let _daemon = DaemonProcess::start_ready(&config(
        listen,
        admin,
        fast_tcp(),
        &[
            ("s1", s1.address, false),
            ("s2", s2.address, false),
            ("s3", s3.address, false),
        ],
    ));
    for name in ["s1", "s2", "s3"] {
        wait_state(admin, name, "up", Duration::from_secs(2)).await;
    }

    let mut failures = Vec::new();
    let total = 2400;
    for i in 0..total {
        if i == 600 {
            s2.stop();
        }
        if let Err(e) = short_connection(listen).await {
            failures.push((i, e));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(server_status(admin, "s2").await.state, "down");

    // Back within rise × interval plus one interval (+ scheduling slack).
    let before = s2.connections();
    s2.restart().await.unwrap();
    let limit = Duration::from_millis(2 * 200 + 200 + 300);
    let served = wait_until_async(limit, Duration::from_millis(5), async || {
        short_connection(listen)
            .await
            .expect("served while s2 returns");
        s2.connections() > before
    })
    .await;
    assert!(served.is_some(), "s2 got no connection within {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_down_clients_are_refused_at_once_then_served_again() {
    let mut s1 = TestServer::named(v4(0), "s1").await.unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let _daemon = DaemonProcess::start_ready(&config(
        listen,
        admin,
        fast_tcp(),
        &[("s1", s1.address, false)],
    ));
    wait_state(admin, "s1", "up", Duration::from_secs(2)).await;
    s1.stop();
    wait_state(admin, "s1", "down", Duration::from_secs(2)).await;

    let started = Instant::now();
    let refused = short_connection(listen).await;
    assert!(
        refused.is_err(),
        "served with every server down: {refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refusal took {:?}",
        started.elapsed()
    );

    s1.restart().await.unwrap();
    wait_state(admin, "s1", "up", Duration::from_secs(2)).await;
    assert_eq!(short_connection(listen).await.unwrap(), "s1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_serves_only_while_no_primary_is_up() {
    let mut primary = TestServer::named(v4(0), "primary").await.unwrap();
    let backup = TestServer::named(v6(0), "backup").await.unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let _daemon = DaemonProcess::start_ready(&config(
        listen,
        admin,
        fast_tcp(),
        &[
            ("primary", primary.address, false),
            ("backup", backup.address, true),
        ],
    ));
    wait_state(admin, "primary", "up", Duration::from_secs(2)).await;
    wait_state(admin, "backup", "up", Duration::from_secs(2)).await;
    for _ in 0..10 {
        assert_eq!(short_connection(listen).await.unwrap(), "primary");
    }
    primary.stop();
    wait_state(admin, "primary", "down", Duration::from_secs(2)).await;
    for _ in 0..10 {
        assert_eq!(short_connection(listen).await.unwrap(), "backup");
    }
    primary.restart().await.unwrap();
    wait_state(admin, "primary", "up", Duration::from_secs(2)).await;
    assert_eq!(short_connection(listen).await.unwrap(), "primary");
}

/// `initial_state = "up"` serves before any check has ended; the default
/// (`"down"`) waits for one to pass. The first check comes within a tenth
/// of the interval after start, and its outcome would decide either way,
/// so here no check can end while the test runs: s1's answer is shorter
/// than the reply expected, and the check waits out its 5 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_state_up_serves_before_the_checks_have_risen() {
    let s1 = TestServer::named(v4(0), "s1").await.unwrap();
    let (admin, up, down) = (v4(free_port()), v4(free_port()), v4(free_port()));
    let slow = HealthCheck {
        send: Some("hello\n".into()),
        expect: Some("s1\nhello\n and more than s1 ever sends".into()),
        ..HealthCheck::every("send-expect", ms(10_000), ms(5_000), 3, 3)
    };
    let config = Config {
        frontends: vec![
            Frontend::new("up", [up], "up"),
            Frontend::new("down", [down], "down"),
        ],
        backends: vec![
            Backend {
                health_check: Some(HealthCheck {
                    initial_state: Some("up".into()),
                    ..slow.clone()
                }),
                ..Backend::new("up", [Server::named("s1", s1.address)])
            },
            Backend {
                health_check: Some(slow),
                ..Backend::new("down", [Server::named("s1", s1.address)])
            },
        ],
        ..Config::with_admin(admin)
    };
    let _daemon = DaemonProcess::start_ready(&config.to_toml());
    let states = tokio::task::spawn_blocking(move || {
        let status: Status = admin_get(admin, "/status");
        let state = |b: usize| status.backends[b].servers[0].state.clone();
        [state(0), state(1)]
    })
    .await
    .unwrap();
    assert_eq!(states, ["up", "down"], "initial_state up, then the default");
    assert_eq!(short_connection(up).await.unwrap(), "s1");
    let refused = short_connection(down).await;
    assert!(refused.is_err(), "served before rise passes: {refused:?}");
}

/// `fall` and `rise` are the runs of failed (passed) checks that take a
/// server down (bring it back): when /status first shows the change, the
/// daemon has counted that many since the last one (the defaults, 3 and
/// 2, would change it sooner). Checks come 300 ms apart, so at most one
/// more can slip in before the reading. (The first pass after
/// start brings a server up at once, whatever `rise`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fall_and_rise_are_the_runs_of_checks_that_change_a_server() {
    let mut s1 = TestServer::named(v4(0), "s1").await.unwrap();
    let (listen, admin) = (v4(free_port()), v4(free_port()));
    let check = HealthCheck::every("tcp", ms(300), ms(200), 4, 5);
    let _daemon =
        DaemonProcess::start_ready(&config(listen, admin, check, &[("s1", s1.address, false)]));
    let checks = |result: &'static str| async move {
        let page = tokio::task::spawn_blocking(move || admin_metrics(admin))
            .await
            .unwrap();
        let result = format!("result=\"{result}\"");
        metric_value(&page, "lb_health_checks_total", &["server=\"s1\"", &result]).unwrap_or(0.0)
    };
    wait_state(admin, "s1", "up", Duration::from_secs(5)).await;
    s1.stop();
    wait_state(admin, "s1", "down", Duration::from_secs(5)).await;
    let failed = checks("failed").await;
    // One more at most, had a check slipped in before the reading.
    assert!(
        (5.0..=6.0).contains(&failed),
        "down after {failed} failed checks"
    );
    let passed_before = checks("ok").await;
    s1.restart().await.unwrap();
    wait_state(admin, "s1", "up", Duration::from_secs(5)).await;
    let passed = checks("ok").await - passed_before;
    assert!(
        (4.0..=5.0).contains(&passed),
        "up again after {passed} passed checks"
    );
}
