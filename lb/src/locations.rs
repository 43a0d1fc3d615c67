//! Where the command line looks when it is not told: the configuration
//! file a package installs, and the admin endpoint and control socket that
//! file configures.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The file `coexist run` and `coexist check` read without `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/coexist/coexist.toml";

pub use crate::config::DEFAULT_ADMIN;

/// The control socket the packaged configuration sets (in the systemd
/// unit's `RuntimeDirectory=coexist`), tried when there is no
/// configuration to read.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/coexist/control.sock";

/// Where to reach the daemon, and what to tell the operator about how it
/// was found (nothing when the configuration said it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<T> {
    pub address: T,
    pub remark: Option<String>,
}

/// The admin endpoint to reach.
pub type AdminEndpoint = Found<String>;

/// The admin endpoint of the daemon configured by the file at `path`, read
/// into `text`: its `[admin] listen` (a wildcard becomes the loopback
/// address of its family), or the default when the file cannot be read or
/// is not valid, with a remark saying so. An error when the file turns the
/// endpoint off.
pub fn admin_endpoint(path: &Path, text: io::Result<Vec<u8>>) -> Result<AdminEndpoint, String> {
    let default = (DEFAULT_ADMIN.to_owned(), DEFAULT_ADMIN);
    from_config(
        path,
        text,
        "admin endpoint",
        default,
        |config| match config.admin.listen {
            Some(address) => Ok(reachable(address).to_string()),
            None => Err(format!(
                "{} turns the admin endpoint off (admin.listen = \"\"); pass --admin ADDRESS",
                path.display()
            )),
        },
    )
}

/// The control socket of the daemon configured by the file at `path`, as
/// [`admin_endpoint`] finds the admin endpoint.
pub fn control_socket(path: &Path, text: io::Result<Vec<u8>>) -> Result<Found<PathBuf>, String> {
    let default = (
        PathBuf::from(DEFAULT_CONTROL_SOCKET),
        DEFAULT_CONTROL_SOCKET,
    );
    from_config(path, text, "control socket", default, |config| {
        match &config.admin.control_socket {
            Some(socket) => Ok(socket.path.clone()),
            None => Err(format!(
                "{} sets no control socket (admin.control_socket); pass --socket PATH, or --admin ADDRESS with --token-file FILE",
                path.display()
            )),
        }
    })
}

/// `pick` from the configuration in `text`, or `default` (said in the
/// remark) when there is no valid configuration to read.
fn from_config<T>(
    path: &Path,
    text: io::Result<Vec<u8>>,
    what: &str,
    (default, shown_default): (T, &str),
    pick: impl FnOnce(&crate::config::Config) -> Result<T, String>,
) -> Result<Found<T>, String> {
    let shown = path.display();
    let why = match text {
        Err(e) if e.kind() == io::ErrorKind::NotFound => format!("{shown} does not exist"),
        Err(e) => format!("{shown} cannot be read ({e})"),
        Ok(bytes) => match crate::config::parse_bytes(bytes, &shown.to_string()) {
            Ok(config) => {
                return pick(&config).map(|address| Found {
                    address,
                    remark: None,
                })
            }
            Err(e) => {
                let first = e.to_string().lines().next().unwrap_or_default().to_owned();
                format!("{shown} is not valid ({first})")
            }
        },
    };
    let remark = format!(
        "no --{}, and {why}; trying the default {what} {shown_default}",
        flag(what)
    );
    Ok(Found {
        address: default,
        remark: Some(remark),
    })
}

/// The option that names `what` on the command line.
fn flag(what: &str) -> &'static str {
    if what == "control socket" {
        "socket"
    } else {
        "admin"
    }
}

/// A listener on every address is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen {
        SocketAddr::V4(a) if a.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRONTEND: &str = "[[frontend]]\nname = \"f\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = \"b\"\n[[backend]]\nname = \"b\"\nservers = [{ address = \"127.0.0.1:8081\" }]\n";

    fn lookup(text: io::Result<String>) -> Result<AdminEndpoint, String> {
        admin_endpoint(
            Path::new("/etc/coexist/coexist.toml"),
            text.map(String::into_bytes),
        )
    }

    #[test]
    fn the_admin_endpoint_comes_from_the_config_file() {
        let text = format!("[admin]\nlisten = \"127.0.0.1:9200\"\n{FRONTEND}");
        assert_eq!(
            lookup(Ok(text)),
            Ok(AdminEndpoint {
                address: "127.0.0.1:9200".into(),
                remark: None
            })
        );
        let wildcard = format!("[admin]\nlisten = \"[::]:9300\"\n{FRONTEND}");
        assert_eq!(lookup(Ok(wildcard)).unwrap().address, "[::1]:9300");
        // No [admin]: the daemon listens on the default, so that is no guess.
        assert_eq!(
            lookup(Ok(FRONTEND.into())),
            Ok(AdminEndpoint {
                address: DEFAULT_ADMIN.into(),
                remark: None
            })
        );
    }

    #[test]
    fn without_a_usable_file_the_default_is_tried_and_said() {
        let missing = lookup(Err(io::ErrorKind::NotFound.into())).unwrap();
        assert_eq!(missing.address, DEFAULT_ADMIN);
        assert!(missing.remark.unwrap().contains("does not exist"));
        let denied = lookup(Err(io::ErrorKind::PermissionDenied.into())).unwrap();
        assert!(denied.remark.unwrap().contains("cannot be read"));
        let invalid = lookup(Ok("[admin]\nlisten = 3\n".into())).unwrap();
        assert!(invalid
            .remark
            .unwrap()
            .contains("is not valid (/etc/coexist/coexist.toml:2:"));
    }

    #[test]
    fn an_endpoint_turned_off_is_an_error() {
        let off = format!("[admin]\nlisten = \"\"\n{FRONTEND}");
        assert!(lookup(Ok(off))
            .unwrap_err()
            .contains("turns the admin endpoint off"));
    }

    #[test]
    fn the_control_socket_comes_from_the_config_file_or_the_default() {
        let socket =
            |text: &str| control_socket(Path::new("/etc/coexist/coexist.toml"), Ok(text.into()));
        let set = format!("[admin]\ncontrol_socket = \"/run/lb/ctl.sock\"\n{FRONTEND}");
        assert_eq!(
            socket(&set),
            Ok(Found {
                address: PathBuf::from("/run/lb/ctl.sock"),
                remark: None
            })
        );
        assert!(socket(FRONTEND)
            .unwrap_err()
            .contains("sets no control socket"));
        let missing = control_socket(Path::new("/x.toml"), Err(io::ErrorKind::NotFound.into()));
        assert_eq!(
            missing.unwrap().remark.unwrap(),
            "no --socket, and /x.toml does not exist; trying the default control socket /run/coexist/control.sock"
        );
        let off = format!("[admin]\ncontrol_socket = \"\"\n{FRONTEND}");
        assert!(socket(&off).unwrap_err().contains("--socket PATH"));
    }
}
