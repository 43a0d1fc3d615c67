//! A headless Chromium driven over WebDriver, to look at the status page
//! as a person would: Debian's `chromium` and `chromium-driver`, with
//! `fantoccini` as the client.
//!
//! The browser gets a fresh profile and the switches that keep it off the
//! network (no component updates, no sync, no background requests): it
//! only ever loads the loopback address the test gives it.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fantoccini::wd::Capabilities;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Why no browser can run here (Debian packages `chromium` and
/// `chromium-driver` are missing), or `None`.
pub fn unavailable() -> Option<String> {
    [CHROMIUM, CHROMEDRIVER]
        .iter()
        .find(|path| !Path::new(path).exists())
        .map(|path| format!("{path} is missing (apt-get install chromium chromium-driver)"))
}

/// A WebDriver session on a headless Chromium, and the driver process.
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Driver,
    _profile: tempfile::TempDir,
}

/// The chromedriver process, in a process group of its own: dropping it
/// ends the driver and the browser it started, even without a session.
struct Driver {
    child: Child,
    log: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session with
    /// a `width`×`height` window. Startup may be slow on a loaded machine,
    /// hence the generous limits.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        let profile = tempfile::tempdir().context("profile directory")?;
        let log = profile.path().join("chromedriver.log");
        let port = crate::ports::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {CHROMEDRIVER}"))?;
        let driver = Driver { child, log };
        let client = open_session(port, profile.path(), width, height, &driver).await?;
        Ok(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// What chromedriver logged, for a failing test's message.
    pub fn driver_log(&self) -> String {
        self.driver.log()
    }

    /// Opens `path` on the admin endpoint at `admin`.
    pub async fn open(&self, admin: SocketAddr, path: &str) -> anyhow::Result<()> {
        let url = format!("http://{admin}{path}");
        tokio::time::timeout(Duration::from_secs(30), self.client.goto(&url))
            .await
            .with_context(|| format!("loading {url} took more than 30 s"))??;
        Ok(())
    }

    /// Writes a PNG of the visible page to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }

    /// Closes the session (the driver quits the browser), then the driver.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(20), self.client.clone().close()).await;
    }
}

impl Driver {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Waits for the driver to listen, then opens a session on it.
async fn open_session(
    port: u16,
    profile: &Path,
    width: u32,
    height: u32,
    driver: &Driver,
) -> anyhow::Result<fantoccini::Client> {
    let address = crate::ports::v4(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        if Instant::now() > deadline {
            bail!(
                "chromedriver did not listen on {address} within 30 s; log:\n{}",
                driver.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        format!("--user-data-dir={}", profile.join("chromium").display()),
        format!("--window-size={width},{height}"),
    ];
    let mut capabilities = Capabilities::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({ "binary": CHROMIUM, "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let mut builder = fantoccini::ClientBuilder::new(connector);
    builder.capabilities(capabilities);
    let url = format!("http://{address}");
    let session = builder.connect(&url);
    tokio::time::timeout(Duration::from_secs(60), session)
        .await
        .context("no WebDriver session within 60 s")?
        .with_context(|| {
            format!(
                "cannot open a WebDriver session; chromedriver log:\n{}",
                driver.log()
            )
        })
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
