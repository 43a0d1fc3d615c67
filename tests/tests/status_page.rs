//! The status page at `/`, served by the real daemon and looked at in a
//! real browser (headless Chromium over WebDriver).
//!
//! ```text
//!   namespace cx-<pid>-page-node (see coexist_tests::lone_node)
//!     client ──► coexist "web" 127.0.0.1:P, [::1]:P ──► s1 127.0.0.1:A, s2 [::1]:B
//!     chromium ◄── chromedriver 127.0.0.1:D ◄── test (WebDriver)
//!        └──► admin 127.0.0.1:M: GET /, then GET /status every 500 ms
//!     eth0 10.78.0.1/24 ── br0 in "sw": VRRP "front" alone, master of 10.78.0.10/24
//! ```
//!
//! The page must show both servers up and the VRRP instance master, count
//! the connections made while it is open, then, after s2 stops, show s2
//! down within 2 s without being reloaded. Its
//! screenshots go to `target/tmp/status-page/` (the path is printed).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use coexist_tests::browser::{self, Browser};
use coexist_tests::client::read_greeting;
use coexist_tests::daemon::DaemonProcess;
use coexist_tests::lone_node::{self, MAX_CONNECTIONS, VIP};
use coexist_tests::netns::enter_or_skip;
use coexist_tests::ports::{free_port, v4, v6};
use coexist_tests::servers::TestServer;
use serde::Deserialize;

/// Connections the test makes through the frontend while the page is open.
const CLIENT_CONNECTIONS: u64 = 4;

/// What the page shows, read from its DOM in one WebDriver round trip.
#[derive(Debug, Deserialize)]
struct Shown {
    servers: std::collections::BTreeMap<String, Row>,
    vrrp: std::collections::BTreeMap<String, Row>,
    frontends: std::collections::BTreeMap<String, Row>,
    /// The backend's summary line, e.g. "pool · round-robin · 2/2 up · …".
    backends: std::collections::BTreeMap<String, String>,
    /// How many times the page redrew itself since it was loaded.
    updates: u64,
    /// Set by the test after loading; a reload would clear it.
    marker: Option<String>,
    stale: bool,
}

#[derive(Debug, Deserialize)]
struct Row {
    /// The `data-state` attribute.
    state: Option<String>,
    /// The visible text of the state badge.
    badge: Option<String>,
    /// The visible text of each cell.
    cells: Vec<String>,
}

const READ_PAGE: &str = r#"
const rows = (selector, key) => Object.fromEntries([...document.querySelectorAll(selector)].map((r) => [
  r.dataset[key],
  { state: r.dataset.state ?? null,
    badge: r.querySelector(".badge")?.textContent ?? null,
    cells: [...r.cells].map((c) => c.textContent) },
]));
return {
  servers: rows("tr[data-server]", "server"),
  vrrp: rows("tr[data-vrrp]", "vrrp"),
  frontends: rows("tr[data-frontend]", "frontend"),
  backends: Object.fromEntries([...document.querySelectorAll("tr[data-backend]")]
    .map((r) => [r.dataset.backend, r.textContent])),
  updates: Number(document.body.dataset.updates ?? 0),
  marker: window.coexistTestMarker ?? null,
  stale: document.body.classList.contains("stale"),
};
"#;

async fn read_page(browser: &Browser) -> Shown {
    let value = browser
        .client
        .execute(READ_PAGE, Vec::new())
        .await
        .expect("read the page's DOM");
    serde_json::from_value(value).expect("page summary")
}

/// Polls the page until `done` holds, up to `limit`; returns what it
/// showed last and when `done` first held.
async fn wait_page(
    browser: &Browser,
    limit: Duration,
    done: impl Fn(&Shown) -> bool,
) -> (Shown, Option<Instant>) {
    let deadline = Instant::now() + limit;
    loop {
        let shown = read_page(browser).await;
        if done(&shown) {
            return (shown, Some(Instant::now()));
        }
        if Instant::now() > deadline {
            return (shown, None);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

fn shows(shown: &Shown, table: &str, key: &str, state: &str) -> bool {
    let rows = match table {
        "servers" => &shown.servers,
        _ => &shown.vrrp,
    };
    rows.get(key)
        .is_some_and(|r| r.state.as_deref() == Some(state) && r.badge.as_deref() == Some(state))
}

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page")
}

#[test]
fn the_page_shows_servers_and_vrrp_and_follows_a_server_going_down_without_reload() {
    const TEST: &str =
        "the_page_shows_servers_and_vrrp_and_follows_a_server_going_down_without_reload";
    if !enter_or_skip(TEST) {
        return;
    }
    if let Some(why) = browser::unavailable() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{TEST}: no browser in CI: {why}"
        );
        eprintln!("SKIP {TEST}: {why}");
        return;
    }
    lone_node::run("page", look_at_the_page);
}

async fn look_at_the_page() {
    let mut s1 = TestServer::named(v4(0), "s1").await.unwrap();
    let mut s2 = TestServer::named(v6(0), "s2").await.unwrap();
    let lone_node::Node {
        daemon,
        listen,
        admin,
    } = lone_node::start([("s1", s1.address), ("s2", s2.address)]);
    let browser = Browser::start(1280, 720).await.expect("start the browser");
    browser.open(admin, "/").await.expect("load the page");
    assert_eq!(
        browser.client.title().await.unwrap().split(' ').next(),
        Some("coexist")
    );

    // Both servers up, the lone VRRP node master, the connections counted.
    let (shown, ready) = wait_page(&browser, Duration::from_secs(15), |s| {
        shows(s, "servers", "pool/s1", "up")
            && shows(s, "servers", "pool/s2", "up")
            && shows(s, "vrrp", "front", "master")
    })
    .await;
    assert!(
        ready.is_some(),
        "the page never showed s1 and s2 up and VRRP master: {shown:#?}\ndaemon log:\n{}",
        daemon.log()
    );
    // Connections made now must appear in the counters without a reload.
    for i in 0..CLIENT_CONNECTIONS {
        let address = if i % 2 == 0 { v4(listen) } else { v6(listen) };
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        read_greeting(&mut stream)
            .await
            .expect("greeting through coexist");
    }
    let (shown, counted) = wait_page(&browser, Duration::from_secs(10), |s| {
        s.frontends["web"].cells[4] == CLIENT_CONNECTIONS.to_string()
    })
    .await;
    assert!(counted.is_some(), "connections not counted: {shown:#?}");
    let web = &shown.frontends["web"].cells;
    assert_eq!(web[0], "web");
    assert_eq!(web[1], format!("127.0.0.1:{listen} [::1]:{listen}"));
    assert_eq!(
        web[4],
        CLIENT_CONNECTIONS.to_string(),
        "total connections: {web:?}"
    );
    assert_eq!(web[5], MAX_CONNECTIONS.to_string(), "limit: {web:?}");
    assert!(
        shown.backends["pool"].contains("2/2 up"),
        "{:?}",
        shown.backends
    );
    let front = &shown.vrrp["front"].cells;
    assert!(front.contains(&VIP.to_owned()), "{front:?}");
    assert!(front.contains(&"150".to_owned()), "priority: {front:?}");

    // Mark this document: a reload would give the page a fresh window.
    browser
        .client
        .execute("window.coexistTestMarker = 'loaded once';", Vec::new())
        .await
        .unwrap();
    let updates_before = shown.updates;

    s2.stop();
    let stopped = Instant::now();
    let (shown, down_at) = wait_page(&browser, Duration::from_secs(10), |s| {
        shows(s, "servers", "pool/s2", "down")
    })
    .await;
    let down_at = down_at.unwrap_or_else(|| {
        panic!(
            "the page never showed s2 down: {shown:#?}\ndaemon log:\n{}",
            daemon.log()
        )
    });
    let took = down_at - stopped;
    println!("the page showed s2 down {took:?} after it stopped");
    assert!(
        took <= Duration::from_secs(2),
        "the page showed s2 down only after {took:?}"
    );
    assert_eq!(
        shown.marker.as_deref(),
        Some("loaded once"),
        "the page was reloaded"
    );
    assert!(
        shown.updates > updates_before,
        "the page did not redraw itself"
    );
    assert!(!shown.stale);
    assert!(shows(&shown, "servers", "pool/s1", "up"), "{shown:#?}");
    assert!(
        shown.backends["pool"].contains("1/2 up"),
        "{:?}",
        shown.backends
    );
    let s2_cells = shown.servers["pool/s2"].cells.join(" | ");
    assert!(
        s2_cells.contains("up → down"),
        "last change of s2: {s2_cells}"
    );

    let dir = screenshot_dir();
    browser.screenshot(&dir.join("laptop.png")).await.unwrap();
    // A phone-sized window: the tables become one card per row.
    browser.client.set_window_size(390, 844).await.unwrap();
    let seen = read_page(&browser).await.updates;
    wait_page(&browser, Duration::from_secs(10), |s| s.updates > seen).await;
    browser.screenshot(&dir.join("phone.png")).await.unwrap();
    println!(
        "screenshots of the status page: {}",
        dir.join("{laptop,phone}.png").display()
    );

    browser.close().await;
    drop(daemon);
    s1.stop();
}

/// What a browser and a cache see of `/` and `/status`.
#[test]
fn the_page_is_html_with_a_validator_and_status_is_never_cached() {
    let admin = v4(free_port());
    let listen = free_port();
    let daemon = DaemonProcess::start_ready(&format!(
        "[admin]\nlisten = \"{admin}\"\n[[frontend]]\nname = \"web\"\nlisten = [\"127.0.0.1:{listen}\"]\nbackend = \"pool\"\n[[backend]]\nname = \"pool\"\nservers = [{{ address = \"127.0.0.1:9\" }}]\n"
    ));
    let get =
        |path: &str| ureq::get(&format!("http://{admin}{path}")).timeout(Duration::from_secs(5));
    let page = get("/")
        .call()
        .unwrap_or_else(|e| panic!("GET /: {e}\n{}", daemon.log()));
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let etag = page.header("etag").expect("an ETag").to_owned();
    let body = page.into_string().unwrap();
    assert!(body.starts_with("<!doctype html>"));
    println!("status page: {} bytes", body.len());

    let again = get("/").set("If-None-Match", &etag).call().unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert!(again.into_string().unwrap().is_empty());
    let other = get("/")
        .set("If-None-Match", "\"something-else\"")
        .call()
        .unwrap();
    assert_eq!(other.status(), 200);

    let status = get("/status").call().unwrap();
    assert_eq!(status.header("cache-control"), Some("no-store"));
    assert_eq!(status.header("content-type"), Some("application/json"));
}
