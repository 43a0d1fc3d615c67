//! Where the command line looks when it is not told: the configuration
//! file a package installs, and the admin endpoint that file configures.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// The file `coexist run` and `coexist check` read without `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/coexist/coexist.toml";

/// The admin endpoint of a configuration without `[admin]`.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9100";

/// The admin endpoint to reach, and what to tell the operator about how it
/// was found (nothing when the configuration said it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEndpoint {
    pub address: String,
    pub remark: Option<String>,
}

/// The admin endpoint of the daemon configured by the file at `path`, read
/// into `text`: its `[admin] listen` (a wildcard becomes the loopback
/// address of its family), or the default when the file cannot be read or
/// is not valid, with a remark saying so. An error when the file turns the
/// endpoint off.
pub fn admin_endpoint(path: &Path, text: io::Result<String>) -> Result<AdminEndpoint, String> {
    let fallback = |why: String| {
        Ok(AdminEndpoint {
            address: DEFAULT_ADMIN.to_owned(),
            remark: Some(format!(
                "{why}; trying the default admin endpoint {DEFAULT_ADMIN}"
            )),
        })
    };
    let shown = path.display();
    let text = match text {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fallback(format!("no --admin, and {shown} does not exist"))
        }
        Err(e) => return fallback(format!("no --admin, and {shown} cannot be read ({e})")),
    };
    let config = match crate::config::parse(&text, &shown.to_string()) {
        Ok(c) => c,
        Err(e) => {
            let first = e.to_string().lines().next().unwrap_or_default().to_owned();
            return fallback(format!("no --admin, and {shown} is not valid ({first})"));
        }
    };
    match config.admin.listen {
        Some(address) => Ok(AdminEndpoint {
            address: reachable(address).to_string(),
            remark: None,
        }),
        None => Err(format!(
            "{shown} turns the admin endpoint off (admin.listen = \"\"); pass --admin ADDRESS"
        )),
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
        admin_endpoint(Path::new("/etc/coexist/coexist.toml"), text)
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
}
