//! Hot reload under load, through the real daemon on loopback.
//!
//! ```text
//!   client loop ──► coexist :stay ─┬─► s1 ─┐
//!   client probe ─► coexist :extra ┘  s2 ─┼─ (servers come and go per config)
//!                                      s3 ─┘
//!   SIGHUP × N with alternating configs
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coexist_support::config::{Backend, Config, Frontend, Server};
use coexist_support::wait_until_async;
use coexist_tests::daemon::{admin_metrics, metric_value, DaemonProcess};
use coexist_tests::pattern;
use coexist_tests::ports::{free_port, v4, v6};
use coexist_tests::servers::{Behaviour, TestServer};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Variant<'a> {
    balance: &'a str,
    servers: Vec<(&'a str, SocketAddr, u32)>,
    extra_listener: Option<SocketAddr>,
}

fn config(stay: SocketAddr, admin: SocketAddr, v: &Variant<'_>) -> Config {
    let server = |(n, a, w): &(&str, SocketAddr, u32)| Server::named(n, *a).weight(*w);
    let mut frontends = vec![Frontend::new("stay", [stay], "pool")];
    frontends.extend(
        v.extra_listener
            .map(|a| Frontend::new("extra", [a], "pool")),
    );
    Config {
        frontends,
        backends: vec![Backend {
            balance: Some(v.balance.to_owned()),
            connect_timeout: Some(Duration::from_millis(500)),
            ..Backend::new("pool", v.servers.iter().map(server))
        }],
        ..Config::with_admin(admin)
    }
}

fn render(stay: SocketAddr, admin: SocketAddr, v: &Variant<'_>) -> String {
    config(stay, admin, v).to_toml()
}

async fn one_exchange(address: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(b"hello")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut buf))
        .await
        .map_err(|_| "no echo in 3 s".to_owned())?
        .map_err(|e| format!("read: {e}"))?;
    if &buf != b"hello" {
        return Err(format!("wrong echo {buf:?}"));
    }
    Ok(())
}

async fn reloads_seen(daemon: &DaemonProcess, admin: SocketAddr, result: &str) -> f64 {
    let _ = daemon;
    let result = format!("result=\"{result}\"");
    tokio::task::spawn_blocking(move || {
        metric_value(&admin_metrics(admin), "lb_config_reloads_total", &[&result]).unwrap_or(0.0)
    })
    .await
    .unwrap()
}

async fn reload_and_wait(daemon: &DaemonProcess, admin: SocketAddr, config: &str, result: &str) {
    let before = reloads_seen(daemon, admin, result).await;
    daemon.write_config(config);
    daemon.signal(Signal::SIGHUP);
    let seen = wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(10),
        async || reloads_seen(daemon, admin, result).await > before,
    )
    .await;
    assert!(
        seen.is_some(),
        "reload ({result}) not seen; log:\n{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_fail_no_connection() {
    let echo = || Behaviour::Echo { greeting: vec![] };
    let s1 = TestServer::start(v4(0), echo()).await.unwrap();
    let s2 = TestServer::start(v6(0), echo()).await.unwrap();
    let s3 = TestServer::start(v4(0), echo()).await.unwrap();
    let (stay, extra, admin) = (v4(free_port()), v6(free_port()), v4(free_port()));
    let variants = [
        Variant {
            balance: "round-robin",
            servers: vec![("s1", s1.address, 1), ("s2", s2.address, 1)],
            extra_listener: None,
        },
        Variant {
            balance: "least-connections",
            servers: vec![("s2", s2.address, 3), ("s3", s3.address, 1)],
            extra_listener: Some(extra),
        },
        Variant {
            balance: "maglev",
            servers: vec![("s1", s1.address, 1), ("s3", s3.address, 2)],
            extra_listener: None,
        },
        Variant {
            balance: "random-two",
            servers: vec![
                ("s1", s1.address, 2),
                ("s2", s2.address, 1),
                ("s3", s3.address, 1),
            ],
            extra_listener: Some(extra),
        },
    ];
    let daemon = DaemonProcess::start_ready(&render(stay, admin, &variants[0]));

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let client = tokio::spawn({
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        async move {
            let mut failures = Vec::new();
            // Bounded: at most 200,000 connections even if the reloads stall.
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Err(e) = one_exchange(stay).await {
                    failures.push(e);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }
    });

    for round in 1..=52 {
        let variant = &variants[round % variants.len()];
        reload_and_wait(&daemon, admin, &render(stay, admin, variant), "ok").await;
        match variant.extra_listener {
            Some(address) => one_exchange(address).await.unwrap_or_else(|e| {
                panic!("added listener does not serve after reload {round}: {e}")
            }),
            None => {
                // The removed listener closes after serving its backlog.
                let refused = wait_until_async(
                    Duration::from_millis(500),
                    Duration::from_millis(5),
                    async || TcpStream::connect(extra).await.is_err(),
                );
                assert!(
                    refused.await.is_some(),
                    "removed listener still accepts after reload {round}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Keep the load on a little longer than the last reload.
    while done.load(Ordering::Relaxed) < 3000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let failures = client.await.unwrap();
    let total = done.load(Ordering::Relaxed);
    assert!(total >= 3000, "only {total} connections");
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_connections_survive_reloads_that_remove_their_server() {
    let echo = || Behaviour::Echo { greeting: vec![] };
    let old = TestServer::start(v6(0), echo()).await.unwrap();
    let new = TestServer::start(v4(0), echo()).await.unwrap();
    let (stay, admin) = (v4(free_port()), v4(free_port()));
    let with_old = Variant {
        balance: "round-robin",
        servers: vec![("old", old.address, 1)],
        extra_listener: None,
    };
    let daemon = DaemonProcess::start_ready(&render(stay, admin, &with_old));

    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(TcpStream::connect(stay).await.unwrap());
    }
    // A connect returns once the kernel completed the handshake; the
    // daemon may not have accepted the client yet, and a reload landing
    // first rightly sends it to the config of that moment. Seen once
    // under load: 98 of the 100 went to the new server.
    let all_on_old = wait_until_async(
        Duration::from_secs(10),
        Duration::from_millis(10),
        async || old.connections() == 100,
    )
    .await;
    assert!(
        all_on_old.is_some(),
        "only {} of 100 clients reached the original server; log:\n{}",
        old.connections(),
        daemon.log()
    );
    // Every connection keeps exchanging chunks while the reloads happen.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut stream)| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let seed = i as u64;
                let mut offset = 0u64;
                let mut out = vec![0u8; 4096];
                let mut back = vec![0u8; 4096];
                while !stop.load(Ordering::Relaxed) && offset < 64 * 1024 * 1024 {
                    pattern::fill(seed, offset, &mut out);
                    stream
                        .write_all(&out)
                        .await
                        .map_err(|e| format!("conn {i} write: {e}"))?;
                    stream
                        .read_exact(&mut back)
                        .await
                        .map_err(|e| format!("conn {i} read: {e}"))?;
                    if let Some(at) = pattern::first_mismatch(seed, offset, &back) {
                        return Err(format!("conn {i}: byte {} differs", offset + at as u64));
                    }
                    offset += out.len() as u64;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<u64, String>(offset)
            })
        })
        .collect();

    let without_old = Variant {
        balance: "least-connections",
        servers: vec![("new", new.address, 1)],
        extra_listener: None,
    };
    for round in 0..20 {
        let variant = if round % 2 == 0 {
            &without_old
        } else {
            &with_old
        };
        reload_and_wait(&daemon, admin, &render(stay, admin, variant), "ok").await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let moved = worker
            .await
            .unwrap()
            .expect("connection intact across reloads");
        assert!(moved > 0);
    }
    assert_eq!(
        old.connections(),
        100,
        "all long-lived connections went to the original server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reloads_change_nothing_and_are_counted() {
    let s1 = TestServer::start(v4(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let (stay, admin) = (v4(free_port()), v4(free_port()));
    let variant = Variant {
        balance: "round-robin",
        servers: vec![("s1", s1.address, 1)],
        extra_listener: None,
    };
    let good = render(stay, admin, &variant);
    let daemon = DaemonProcess::start_ready(&good);
    // 192.0.2.1 is TEST-NET-1 with no free bind for this port range: use an
    // address no interface has and free bind cannot cover — a port already
    // taken by another socket is the portable unbindable case.
    let taken = std::net::TcpListener::bind(v4(0)).unwrap();
    let taken_address = taken.local_addr().unwrap();
    let mut clash = config(stay, admin, &variant);
    clash
        .frontends
        .push(Frontend::new("clash", [taken_address], "pool"));
    // The first three are the good file's text, broken by hand.
    let cases = [
        ("syntax error", good.replace("[[backend]]", "[[backend]")),
        (
            "unknown key",
            good.replace("balance =", "bogus = 1\nbalance ="),
        ),
        (
            "missing backend",
            good.replace("backend = \"pool\"", "backend = \"nowhere\""),
        ),
        ("unbindable address", clash.to_toml()),
    ];
    let expected_fragments = [
        "coexist.toml:",
        "bogus",
        "frontend[0].backend",
        &taken_address.to_string(),
    ];
    for (i, ((what, config), fragment)) in cases.iter().zip(expected_fragments).enumerate() {
        reload_and_wait(&daemon, admin, config, "error").await;
        let log = daemon.log();
        let last_error = log
            .lines()
            .rev()
            .find(|l| l.contains("reload rejected"))
            .unwrap_or_else(|| panic!("no rejection logged for {what}:\n{log}"));
        assert!(last_error.contains(fragment), "{what}: {last_error}");
        one_exchange(stay)
            .await
            .unwrap_or_else(|e| panic!("old config stopped serving after {what}: {e}"));
        let errors = reloads_seen(&daemon, admin, "error").await;
        assert_eq!(errors, (i + 1) as f64);
    }
    assert_eq!(reloads_seen(&daemon, admin, "ok").await, 0.0);
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_when_an_editor_replaces_the_file() {
    let first = TestServer::start(v4(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let second = TestServer::start(v6(0), Behaviour::Echo { greeting: vec![] })
        .await
        .unwrap();
    let (stay, admin) = (v4(free_port()), v4(free_port()));
    let config_for = |server: SocketAddr| {
        render(
            stay,
            admin,
            &Variant {
                balance: "round-robin",
                servers: vec![("only", server, 1)],
                extra_listener: None,
            },
        )
    };
    let daemon = DaemonProcess::start_ready_with_args(&config_for(first.address), &["--watch"]);
    one_exchange(stay).await.unwrap();
    assert_eq!(first.connections(), 1);

    // Two saves by rename, as editors do: the watch must survive the first.
    for (round, server) in [(1.0, &second), (2.0, &first)] {
        let before = server.connections();
        daemon.write_config(&config_for(server.address));
        let reloaded = wait_until_async(
            Duration::from_secs(3),
            Duration::from_millis(10),
            async || reloads_seen(&daemon, admin, "ok").await >= round,
        );
        assert!(
            reloaded.await.is_some(),
            "no reload after save {round}; log:\n{}",
            daemon.log()
        );
        one_exchange(stay).await.unwrap();
        assert_eq!(
            server.connections(),
            before + 1,
            "save {round} not applied; log:\n{}",
            daemon.log()
        );
    }
    // A burst of saves is debounced into one reload. Counted from a quiet
    // moment: on a loaded machine the last save's events may still be
    // arriving when its reload is seen, and the reload they cause is not
    // the burst's.
    let quiet = 3 * lb::watch::DEBOUNCE;
    tokio::time::sleep(quiet).await;
    let before = reloads_seen(&daemon, admin, "ok").await;
    for _ in 0..5 {
        daemon.write_config(&config_for(second.address));
    }
    tokio::time::sleep(quiet).await;
    let after = reloads_seen(&daemon, admin, "ok").await;
    assert_eq!(after - before, 1.0, "log:\n{}", daemon.log());
}
