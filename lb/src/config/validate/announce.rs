//! `[bgp]` and `[[announce]]`: the routing daemon coexist drives, and the
//! groups of host routes it announces. A prefix must be one address (the
//! router spreads flows over every node announcing it) that some frontend
//! listens on, or the router would send this node traffic nobody accepts.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use vrrp::{Family, VirtualAddress};

use super::Ctx;
use crate::config::model::{Announce, Bgp, Engine, Frontend};
use crate::config::raw::{RawAnnounce, RawBgp, RawEngine, ReadValues};

/// Debian's bird2 package puts the control socket here.
const DEFAULT_CONTROL_SOCKET: &str = "/run/bird/bird.ctl";
const DEFAULT_ANNOUNCE_AFTER: Duration = Duration::from_secs(1);
const DEFAULT_WITHDRAW_SETTLE: Duration = Duration::from_secs(2);
const DEFAULT_INTERFACE: &str = "coexist0";
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// BIRD symbols are at most 64 characters; the protocol names add
/// `coexist_` and `_v4` to the group's name.
const MAX_NAME_LEN: usize = 64 - "coexist__v4".len();

/// `[bgp]`, defaulted when only groups are given; `None` without either.
pub(super) fn bgp(ctx: &mut Ctx<'_>, raw: Option<&RawBgp>, groups: usize) -> Option<Bgp> {
    if raw.is_none() && groups == 0 {
        return None;
    }
    let engine = match raw.and_then(|b| b.engine.as_ref()).map(Spanned::get_ref) {
        None | Some(RawEngine::Bird) => Engine::Bird,
    };
    let control_socket = match raw.and_then(|b| b.control_socket.as_ref()) {
        None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
        Some(path) => {
            if !path.get_ref().starts_with('/') {
                let msg = format!("{:?} must be an absolute path", path.get_ref());
                ctx.error(path.span(), "bgp.control_socket", msg);
            }
            PathBuf::from(path.get_ref())
        }
    };
    let interface = match raw.and_then(|b| b.interface.as_ref()) {
        None => DEFAULT_INTERFACE.to_owned(),
        Some(name) => {
            if !vrrp::is_interface_name(name.get_ref()) {
                let problem = vrrp::Problem::InterfaceName(name.get_ref().clone());
                ctx.error(name.span(), "bgp.interface", problem.to_string());
            }
            name.get_ref().clone()
        }
    };
    let delay = |ctx: &mut Ctx<'_>, value, key, default| {
        ctx.duration_in(value, key, default, Duration::ZERO..=MAX_DELAY)
    };
    let announce_after = delay(
        ctx,
        raw.and_then(|b| b.announce_after.as_ref()),
        "bgp.announce_after",
        DEFAULT_ANNOUNCE_AFTER,
    );
    let withdraw_settle = delay(
        ctx,
        raw.and_then(|b| b.withdraw_settle.as_ref()),
        "bgp.withdraw_settle",
        DEFAULT_WITHDRAW_SETTLE,
    );
    Some(Bgp {
        engine,
        control_socket,
        announce_after,
        withdraw_settle,
        interface,
    })
}

pub(super) fn groups(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawAnnounce>],
    frontends: &[Frontend],
) -> Vec<Announce> {
    let mut out: Vec<Announce> = Vec::with_capacity(raw.len());
    for (i, group) in raw.iter().enumerate() {
        let group = group.get_ref();
        let at = format!("announce[{i}]");
        let name = group.name.get_ref();
        let key = format!("{at}.name");
        ctx.name(&group.name, &key);
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
        {
            let msg = format!("{name:?} contains {c:?}: the BIRD protocols named after the group allow letters, digits, '_', '-', '.' and ':'");
            ctx.error(group.name.span(), &key, msg);
        } else if name.len() > MAX_NAME_LEN {
            let msg = format!("{name:?} is longer than {MAX_NAME_LEN} characters (BIRD protocol names are at most 64)");
            ctx.error(group.name.span(), &key, msg);
        }
        if let Some(j) = out.iter().position(|o| o.name == *name) {
            let msg = format!("duplicate announce name {name:?} (also announce[{j}])");
            ctx.error(group.name.span(), &key, msg);
        }

        if group.prefixes.get_ref().is_empty() {
            let msg = "needs at least one prefix";
            ctx.error(group.prefixes.span(), &format!("{at}.prefixes"), msg);
        }
        let mut prefixes: Vec<IpAddr> = Vec::new();
        for (k, text) in group.prefixes.get_ref().iter().enumerate() {
            let key = format!("{at}.prefixes[{k}]");
            let Some(prefix) = ctx.parse::<VirtualAddress>(text) else {
                continue;
            };
            if let Some(problem) = prefix_problem(prefix, &prefixes, &out, frontends) {
                ctx.error(text.span(), &key, problem);
            }
            prefixes.push(prefix.addr);
        }

        let mut track = Vec::new();
        for (k, t) in group.track.iter().enumerate() {
            let frontend = t.get_ref().frontend.get_ref();
            if !frontends.iter().any(|f| f.name == *frontend) {
                ctx.error(
                    t.get_ref().frontend.span(),
                    &format!("{at}.track[{k}].frontend"),
                    format!("no [[frontend]] is named {frontend:?}"),
                );
            }
            if !track.contains(frontend) {
                track.push(frontend.clone());
            }
        }
        out.push(Announce {
            name: name.clone(),
            prefixes,
            track,
        });
    }
    out
}

/// What is wrong with announcing `prefix` beside the group's `earlier`
/// prefixes and the groups before it, if anything.
fn prefix_problem(
    prefix: VirtualAddress,
    earlier: &[IpAddr],
    groups: &[Announce],
    frontends: &[Frontend],
) -> Option<String> {
    let ip = prefix.addr;
    let family = Family::of(ip);
    if prefix.prefix_len != family.prefix_max() {
        return Some(format!(
            "{prefix} is not a host route: announce single addresses (/{} for {family}); the router spreads each one's flows over the nodes announcing it",
            family.prefix_max()
        ));
    }
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Some(format!("{ip} cannot be routed to this node"));
    }
    if earlier.contains(&ip) {
        return Some(format!("{ip} is listed twice"));
    }
    if let Some((j, g)) = groups
        .iter()
        .enumerate()
        .find(|(_, g)| g.prefixes.contains(&ip))
    {
        return Some(format!(
            "{ip} is already announced by announce[{j}] {:?}",
            g.name
        ));
    }
    let listened = frontends
        .iter()
        .flat_map(|f| &f.listen)
        .any(|a| a.ip() == ip || (a.ip().is_unspecified() && Family::of(a.ip()) == family));
    if !listened {
        let wildcard = match family {
            Family::V4 => "0.0.0.0",
            Family::V6 => "[::]",
        };
        return Some(format!(
            "no [[frontend]] listens on {ip} (or on {wildcard}): the router would send this node connections nobody accepts"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Engine};

    const FRONTEND: &str = r#"
[[frontend]]
name = "web"
listen = ["192.0.2.10:80", "[2001:db8::10]:80"]
backend = "web"

[[backend]]
name = "web"
servers = [{ address = "[2001:db8::11]:80" }]
"#;

    fn with_frontend(text: &str) -> String {
        format!("{FRONTEND}{text}")
    }

    /// The first diagnostic, displayed.
    fn first_error(text: &str) -> String {
        let e = parse(text, "t.toml").expect_err("config should be rejected");
        e.to_string().lines().next().unwrap().to_owned()
    }

    #[track_caller]
    fn assert_error(text: &str, at: &str, needle: &str) {
        let got = first_error(text);
        assert!(got.starts_with(&format!("t.toml:{at}: ")), "{got}");
        assert!(got.contains(needle), "expected {needle:?} in {got}");
    }

    #[test]
    fn design_example_reads_every_key() {
        let c = parse(
            &with_frontend(
                r#"
[bgp]
engine = "bird"
control_socket = "/run/bird/bird.ctl"
announce_after = "1s"
withdraw_settle = "2s"

[[announce]]
name = "web"
prefixes = ["192.0.2.10/32", "2001:db8::10/128"]
track = [{ frontend = "web" }]
"#,
            ),
            "t.toml",
        )
        .unwrap();
        let bgp = c.bgp.unwrap();
        assert_eq!(bgp.engine, Engine::Bird);
        assert_eq!(
            bgp.control_socket,
            std::path::Path::new("/run/bird/bird.ctl")
        );
        assert_eq!(bgp.announce_after, std::time::Duration::from_secs(1));
        assert_eq!(bgp.withdraw_settle, std::time::Duration::from_secs(2));
        assert_eq!(bgp.interface, "coexist0");
        let group = &c.announce[0];
        assert_eq!(group.name, "web");
        assert_eq!(
            group.prefixes,
            [
                "192.0.2.10".parse::<std::net::IpAddr>().unwrap(),
                "2001:db8::10".parse().unwrap()
            ]
        );
        assert_eq!(group.track, ["web"]);
        assert_eq!(group.families(), [vrrp::Family::V4, vrrp::Family::V6]);
    }

    // A group alone gets the [bgp] defaults; a file with neither has no [bgp].
    #[test]
    fn bgp_defaults_apply_to_groups_alone() {
        let c = parse(
            &with_frontend("[[announce]]\nname = \"web\"\nprefixes = [\"2001:db8::10\"]\n"),
            "t.toml",
        )
        .unwrap();
        let bgp = c.bgp.unwrap();
        assert_eq!(
            bgp.control_socket,
            std::path::Path::new("/run/bird/bird.ctl")
        );
        assert_eq!(bgp.withdraw_settle, std::time::Duration::from_secs(2));
        assert_eq!(c.announce[0].families(), [vrrp::Family::V6]);
        assert!(c.announce[0].track.is_empty());
        assert_eq!(parse(FRONTEND, "t.toml").unwrap().bgp, None);
    }

    #[test]
    fn prefixes_must_be_host_routes() {
        let text = with_frontend(
            "[[announce]]\nname = \"web\"\nprefixes = [\"192.0.2.10/32\", \"2001:db8::/64\"]\n",
        );
        assert_error(
            &text,
            "12:30",
            "announce[0].prefixes[1]: 2001:db8::/64 is not a host route",
        );
        let text = with_frontend("[[announce]]\nname = \"web\"\nprefixes = [\"192.0.2.300/32\"]\n");
        assert_error(
            &text,
            "12:13",
            "announce[0].prefixes[0]: \"192.0.2.300/32\"",
        );
    }

    #[test]
    fn prefixes_must_be_on_a_listen_list() {
        let text = with_frontend("[[announce]]\nname = \"web\"\nprefixes = [\"192.0.2.99\"]\n");
        assert_error(
            &text,
            "12:13",
            "announce[0].prefixes[0]: no [[frontend]] listens on 192.0.2.99 (or on 0.0.0.0)",
        );
        // A wildcard listener of the family takes any of its addresses.
        let wildcard = text.replace("\"192.0.2.10:80\"", "\"0.0.0.0:80\"");
        assert!(parse(&wildcard, "t.toml").is_ok());
        // ... but not those of the other family.
        let text = with_frontend("[[announce]]\nname = \"web\"\nprefixes = [\"2001:db8::99\"]\n")
            .replace("\"192.0.2.10:80\"", "\"0.0.0.0:80\"");
        assert_error(&text, "12:13", "(or on [::])");
    }

    #[test]
    fn a_prefix_belongs_to_one_group_once() {
        let text = with_frontend(
            "[[announce]]\nname = \"a\"\nprefixes = [\"192.0.2.10\"]\n\n[[announce]]\nname = \"b\"\nprefixes = [\"192.0.2.10/32\"]\n",
        );
        assert_error(&text, "16:13", "already announced by announce[0] \"a\"");
        let text = with_frontend(
            "[[announce]]\nname = \"a\"\nprefixes = [\"192.0.2.10\", \"192.0.2.10/32\"]\n",
        );
        assert_error(&text, "12:27", "listed twice");
    }

    #[test]
    fn group_names_become_bird_protocol_names() {
        let text = with_frontend("[[announce]]\nname = \"web+tls\"\nprefixes = [\"192.0.2.10\"]\n");
        assert_error(&text, "11:8", "announce[0].name: \"web+tls\" contains '+'");
        let long = "a".repeat(54);
        let text = with_frontend(&format!(
            "[[announce]]\nname = \"{long}\"\nprefixes = [\"192.0.2.10\"]\n"
        ));
        assert_error(&text, "11:8", "longer than 53 characters");
        let text = with_frontend(
            "[[announce]]\nname = \"a\"\nprefixes = [\"192.0.2.10\"]\n[[announce]]\nname = \"a\"\nprefixes = [\"2001:db8::10\"]\n",
        );
        assert_error(&text, "14:8", "duplicate announce name \"a\"");
    }

    #[test]
    fn tracked_frontends_must_exist() {
        let text = with_frontend(
            "[[announce]]\nname = \"web\"\nprefixes = [\"192.0.2.10\"]\ntrack = [{ frontend = \"api\" }]\n",
        );
        assert_error(
            &text,
            "13:23",
            "announce[0].track[0].frontend: no [[frontend]] is named \"api\"",
        );
        let text = text.replace("frontend = \"api\"", "frontend = \"web\", weight = 10");
        assert_error(&text, "13:30", "track[0].weight: unknown field `weight`");
    }

    #[test]
    fn bgp_values_are_checked_at_their_keys() {
        let group = "[[announce]]\nname = \"web\"\nprefixes = [\"192.0.2.10\"]\n";
        let text = with_frontend(&format!("{group}[bgp]\nengine = \"frr\"\n"));
        assert_error(
            &text,
            "14:10",
            "bgp.engine: unknown variant `frr`, expected `bird`",
        );
        let text = with_frontend(&format!("{group}[bgp]\ncontrol_socket = \"bird.ctl\"\n"));
        assert_error(
            &text,
            "14:18",
            "bgp.control_socket: \"bird.ctl\" must be an absolute path",
        );
        let text = with_frontend(&format!(
            "{group}[bgp]\ninterface = \"coexist-announce0\"\n"
        ));
        assert_error(
            &text,
            "14:13",
            "bgp.interface: \"coexist-announce0\" is not a Linux interface name",
        );
        let text = with_frontend(&format!("{group}[bgp]\nannounce_after = \"2h\"\n"));
        assert_error(&text, "14:18", "bgp.announce_after: 7200s is out of range");
        let text = with_frontend(&format!("{group}[bgp]\nwithdraw_settle = \"soon\"\n"));
        assert_error(
            &text,
            "14:19",
            "bgp.withdraw_settle: invalid duration \"soon\"",
        );
    }
}
