//! `[admin]`: the HTTP endpoint, the control socket and the write token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::Ctx;
use crate::config::model::{Admin, ControlSocket};
use crate::config::raw::RawAdmin;
use crate::config::DEFAULT_ADMIN;

/// Group and owner may use the socket: the daemon's group has no members
/// until the operator adds some, and root can always connect.
const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// Long enough for a human typing at the API, short enough that idle
/// connections do not pile up.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

pub(super) fn admin(ctx: &mut Ctx<'_>, raw: Option<&RawAdmin>) -> Admin {
    let listen = match raw.and_then(|a| a.listen.as_ref()) {
        None => DEFAULT_ADMIN.parse().ok(),
        Some(l) if l.get_ref().is_empty() => None,
        Some(l) => ctx.socket_addr(l, "admin.listen"),
    };
    // Writes over TCP are the only use of the token: without the endpoint
    // it would do nothing.
    if let (None, Some(file)) = (listen, raw.and_then(|a| a.token_file.as_ref())) {
        let msg = "only used with listen: writes over TCP need the HTTP endpoint";
        ctx.error(file.span(), "admin.token_file", msg);
    }
    Admin {
        listen,
        control_socket: control_socket(ctx, raw),
        token_file: raw
            .and_then(|a| a.token_file.as_ref())
            .and_then(|f| path(ctx, f, "admin.token_file")),
        request_timeout: ctx.duration_in(
            raw.and_then(|a| a.request_timeout.as_ref()),
            "admin.request_timeout",
            DEFAULT_REQUEST_TIMEOUT,
            Duration::from_millis(100)..=Duration::from_secs(3600),
        ),
    }
}

fn control_socket(ctx: &mut Ctx<'_>, raw: Option<&RawAdmin>) -> Option<ControlSocket> {
    let given = raw
        .and_then(|a| a.control_socket.as_ref())
        .filter(|p| !p.get_ref().is_empty());
    let mode = raw.and_then(|a| a.control_socket_mode.as_ref());
    let group = raw.and_then(|a| a.control_socket_group.as_ref());
    let Some(p) = given else {
        for (key, value) in [
            ("admin.control_socket_mode", mode),
            ("admin.control_socket_group", group),
        ] {
            if let Some(value) = value {
                ctx.error(value.span(), key, "only used with control_socket");
            }
        }
        return None;
    };
    let mode = mode
        .and_then(|m| socket_mode(ctx, m))
        .unwrap_or(DEFAULT_SOCKET_MODE);
    let group = group.and_then(|g| {
        if g.get_ref().trim().is_empty() {
            ctx.error(g.span(), "admin.control_socket_group", "must not be empty");
            return None;
        }
        Some(g.get_ref().trim().to_owned())
    });
    let path = path(ctx, p, "admin.control_socket")?;
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        let msg = format!(
            "{} bytes is too long for a Unix socket path (at most {MAX_SOCKET_PATH})",
            path.as_os_str().len()
        );
        ctx.error(p.span(), "admin.control_socket", msg);
        return None;
    }
    Some(ControlSocket { path, mode, group })
}

/// An absolute path: the daemon's working directory is no place to guess.
fn path(ctx: &mut Ctx<'_>, value: &Spanned<String>, key: &str) -> Option<PathBuf> {
    let text = value.get_ref();
    if !Path::new(text).is_absolute() {
        ctx.error(
            value.span(),
            key,
            format!("{text:?} is not an absolute path"),
        );
        return None;
    }
    Some(PathBuf::from(text))
}

/// Octal permission bits as chmod takes them: "0660", "660", "0o660".
fn socket_mode(ctx: &mut Ctx<'_>, value: &Spanned<String>) -> Option<u32> {
    let text = value.get_ref().trim();
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 && !digits.is_empty() => Some(mode),
        _ => {
            let msg = format!("{text:?} is not a file mode in octal, like \"0660\"");
            ctx.error(value.span(), "admin.control_socket_mode", msg);
            None
        }
    }
}
