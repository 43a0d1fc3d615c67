//! DNS peers of the UDP tests: dnsmasq as a real DNS server, and the check
//! that the Debian tools a test drives are installed.

use std::net::SocketAddr;
use std::process::Command;

use crate::netns::REQUIRE_ENV;

/// The name dnsmasq answers (A 192.0.2.1); any other name gets REFUSED, as
/// it has no upstream.
pub const UP_NAME: &str = "up.test";
pub const UP_ADDRESS: &str = "192.0.2.1";

/// dnsmasq's arguments to answer [`UP_NAME`] on `listen` only, in the
/// foreground, with no configuration file, upstream or hosts file.
pub fn dnsmasq_args(listen: SocketAddr) -> Vec<String> {
    vec![
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        "--pid-file=".into(),
        "--user=root".into(),
        format!("--address=/{UP_NAME}/{UP_ADDRESS}"),
        format!("--listen-address={}", listen.ip()),
        format!("--port={}", listen.port()),
    ]
}

/// True when every tool runs; otherwise prints why `test` skips, or panics
/// with `COEXIST_REQUIRE_NETNS=1` (CI installs them).
pub fn tools_or_skip(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| Command::new(tool).arg("-v").output().is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
        "{test}: {missing:?} required ({REQUIRE_ENV}=1) but not installed"
    );
    eprintln!("SKIP {test}: {missing:?} not installed");
    false
}
