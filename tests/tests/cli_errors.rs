//! What an operator sees when a command fails: one line naming the object
//! at fault and its cause, said once, from the real binary.
//!
//! ```text
//!   coexist run|check --config <missing | directory | not UTF-8 (located)>
//!   coexist run   --config <listen on a taken 127.0.0.1:P>   (frontend, admin)
//!   coexist status|server --admin <closed 127.0.0.1:P>
//!   coexist server web/nope ──► control socket of a running daemon
//!   coexist server web/web1 ──► admin 127.0.0.1:A (read-only: no token file)
//! ```

use std::net::{SocketAddr, TcpListener};

use coexist_support::config::{Backend, Config, Frontend, Server};
use coexist_tests::daemon::{cli, DaemonProcess};
use coexist_tests::ports::{free_port, v4};

#[track_caller]
fn fails_with(args: &[&str], line: &str) {
    let (ok, _, stderr) = cli(args);
    assert!(!ok, "coexist {args:?} succeeded");
    assert_eq!(stderr, format!("{line}\n"), "coexist {args:?}");
}

/// Frontend `web` on `listen`, its backend with server `web1`.
fn config(listen: SocketAddr, admin: Option<SocketAddr>) -> String {
    config_of(listen, admin).to_toml()
}

fn config_of(listen: SocketAddr, admin: Option<SocketAddr>) -> Config {
    let web1 = "127.0.0.1:9".parse().unwrap();
    Config {
        frontends: vec![Frontend::new("web", [listen], "web")],
        backends: vec![Backend::new("web", [Server::named("web1", web1)])],
        ..admin.map_or_else(Config::without_admin, Config::with_admin)
    }
}

#[test]
fn missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonexistent.toml");
    let path = path.to_str().unwrap();
    let line = format!("coexist: cannot read {path}: No such file or directory (os error 2)");
    fails_with(&["run", "--config", path], &line);
    fails_with(&["check", "--config", path], &line);
}

// Root reads any file whatever its mode, so unreadable here means a
// directory given as the file. Bytes that are not UTF-8 text are read but
// rejected, located like any other mistake.
#[test]
fn unreadable_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let line = format!("coexist: cannot read {path}: Is a directory (os error 21)");
    fails_with(&["run", "--config", path], &line);
    fails_with(&["check", "--config", path], &line);

    let latin1 = dir.path().join("coexist.toml");
    std::fs::write(&latin1, b"[admin]\nlisten = \"127.0.0.1:9100\" # caf\xe9\n").unwrap();
    let latin1 = latin1.to_str().unwrap();
    let line = format!(
        "coexist: {latin1}:2:32: admin.listen: byte 0xe9 is not UTF-8: the file must be UTF-8 text"
    );
    fails_with(&["check", "--config", latin1], &line);
    fails_with(&["run", "--config", latin1], &line);
}

#[test]
fn unbindable_addresses() {
    let taken = TcpListener::bind(v4(0)).unwrap();
    let taken = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coexist.toml");
    let path_str = path.to_str().unwrap();

    std::fs::write(&path, config(taken, None)).unwrap();
    let line = format!(
        "coexist: cannot listen on {taken} for frontend web: Address already in use (os error 98)"
    );
    fails_with(&["run", "--config", path_str], &line);

    std::fs::write(&path, config(v4(0), Some(taken))).unwrap();
    let line = format!(
        "coexist: cannot listen on {taken} for the admin endpoint: Address already in use (os error 98)"
    );
    fails_with(&["run", "--config", path_str], &line);
}

#[test]
fn daemon_not_running() {
    let admin = v4(free_port()).to_string();
    let line = format!(
        "coexist: cannot reach the admin endpoint at http://{admin}/status: Connection refused (os error 111)"
    );
    fails_with(&["status", "--admin", &admin], &line);
    let line = format!(
        "coexist: cannot reach the admin endpoint at http://{admin}/servers/web/web1: Connection refused (os error 111)"
    );
    fails_with(&["server", "web/web1", "drain", "--admin", &admin], &line);
}

#[test]
fn unknown_server() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let mut config = config_of(v4(0), Some(v4(free_port())));
    config.admin.as_mut().unwrap().control_socket = Some(socket.clone());
    let _daemon = DaemonProcess::start_ready(&config.to_toml());
    let socket = socket.to_str().unwrap();
    fails_with(
        &["server", "web/nope", "drain", "--socket", socket],
        "coexist: no server web/nope",
    );
    fails_with(
        &["server", "nope/web1", "drain", "--socket", socket],
        "coexist: no server nope/web1",
    );
}

/// Nothing to run is not an error (a staged or imported config, as
/// keepalived runs with no instance), but `check` says it, on stderr.
#[test]
fn check_warns_about_a_config_with_nothing_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coexist.toml");
    std::fs::write(&path, "[admin]\nlisten = \"\"\n").unwrap();
    let path = path.to_str().unwrap();
    let (ok, stdout, stderr) = cli(&["check", "--config", path]);
    assert!(ok, "coexist check refused an admin-only config: {stderr}");
    assert_eq!(
        stdout,
        format!("{path}: ok (0 frontend(s), 0 backend(s), 0 VRRP instance(s))\n")
    );
    assert_eq!(
        stderr,
        format!("coexist: warning: {path}: no [[frontend]] and no [[vrrp]]: the daemon would serve only its admin endpoint\n")
    );
}

/// Without `admin.token_file`, the TCP endpoint is read-only: the refusal
/// says where writes can go.
#[test]
fn write_over_tcp_without_a_token_file() {
    let admin = v4(free_port());
    let _daemon = DaemonProcess::start_ready(&config(v4(0), Some(admin)));
    fails_with(
        &["server", "web/web1", "drain", "--admin", &admin.to_string()],
        "coexist: writes over TCP are disabled: use the control socket, or set admin.token_file and send its token as a bearer token",
    );
}

/// A VRRP interface missing here is a warning, not an error: `coexist
/// run` waits for it to appear.
#[test]
fn check_warns_about_a_missing_vrrp_interface() {
    use coexist_support::config::Vrrp;
    let config = Config {
        vrrp: vec![Vrrp {
            accept_mode: Some(true),
            ..Vrrp::new("v4", "cx-missing0", 51, &["192.0.2.10/24"])
        }],
        ..Config::without_admin()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coexist.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    let (ok, _, stderr) = cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(ok, "coexist check refused a missing interface: {stderr}");
    assert_eq!(
        stderr,
        "coexist: warning: VRRP instance v4: interface cx-missing0 does not exist (yet): \
         `coexist run` would wait for it\n"
    );
}
