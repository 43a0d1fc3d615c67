//! keepalived's configuration, as a tree of blocks ([`tree`]):
//! `vrrp_instance` → coexist `[[vrrp]]` ([`vrrp`]), `virtual_server` (IPVS)
//! → a coexist frontend and backend ([`ipvs`]); `global_defs` gives
//! defaults; the rest is reported, track scripts with what coexist does
//! instead.

mod ipvs;
mod notify;
mod tree;
mod vrrp;

use std::time::Duration;

use super::plan::Plan;
use super::tally::{Loc, Tally};
use tree::Node;

/// What `global_defs` sets for every VRRP instance, and where.
#[derive(Debug, Clone, Default)]
struct Globals {
    /// `vrrp_version`; keepalived's default is 2.
    version: Option<(u8, Loc)>,
    garp_repeat: Option<(u32, Loc)>,
    garp_refresh: Option<(Duration, Loc)>,
    /// `vrrp_strict`: no accept mode.
    strict: Option<Loc>,
}

pub(super) fn translate(source: usize, text: &str, tally: &mut Tally, plan: &mut Plan) {
    let nodes = tree::parse(source, text, tally);
    let mut globals = Globals::default();
    // Blocks that give others their meaning come first, wherever written.
    let scripts: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.keyword() == "vrrp_script")
        .collect();
    for node in nodes.iter().filter(|n| n.keyword() == "global_defs") {
        global_defs(node, &mut globals, tally);
    }
    for node in &nodes {
        match node.keyword() {
            "global_defs" => {}
            "vrrp_script" if vrrp::tracked(&nodes, node.word(1)) => {
                // Explained where an instance tracks it.
                for at in node.all_lines() {
                    tally.cover(at);
                }
            }
            "vrrp_script" => whole(node, "no vrrp_instance tracks it", tally),
            "vrrp_instance" => vrrp::instance(node, &globals, &scripts, tally, plan),
            "virtual_server" => ipvs::virtual_server(node, tally, plan),
            "vrrp_sync_group" => whole(
                node,
                "coexist's instances fail over one by one: to move several together, track the same frontends in each (track = [{ frontend, weight }])",
                tally,
            ),
            "virtual_server_group" => whole(
                node,
                "groups of virtual servers are not carried: write one virtual_server per address",
                tally,
            ),
            "static_ipaddress" | "static_routes" | "static_rules" => whole(
                node,
                "not VRRP state: configure them with the system's network configuration",
                tally,
            ),
            "vrrp_track_process" | "track_file" | "vrrp_track_file" | "linkbeat_interfaces"
            | "bfd_instance" | "garp_group" | "vrrp_garp_group" | "track_group" => whole(
                node,
                "no counterpart in coexist; coexist tracks its frontends' servers (track = [{ frontend, weight }])",
                tally,
            ),
            "SSL" => whole(node, "coexist has no TLS checks", tally),
            other => whole(
                node,
                &format!("`{other}` has no counterpart in coexist"),
                tally,
            ),
        }
    }
}

/// Reports `node` and everything inside it with one note.
fn whole(node: &Node, reason: &str, tally: &mut Tally) {
    let reason = if node.children.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason} (block to line {})", node.last_line())
    };
    tally.not_carried(node.at, reason);
    for at in node.all_lines().into_iter().skip(1) {
        tally.cover(at);
    }
}

fn global_defs(node: &Node, globals: &mut Globals, tally: &mut Tally) {
    tally.cover(node.at);
    for child in &node.children {
        let at = child.at;
        match child.keyword() {
            "vrrp_version" => match child.word(1).parse::<u8>() {
                Ok(v @ (2 | 3)) => globals.version = Some((v, at)),
                _ => tally.not_carried(at, "VRRP versions are 2 and 3"),
            },
            "vrrp_garp_master_repeat" => match child.word(1).parse() {
                Ok(n) => globals.garp_repeat = Some((n, at)),
                Err(_) => tally.not_carried(at, "not a count"),
            },
            "vrrp_garp_master_refresh" => match super::values::keepalived_timer(child.word(1)) {
                Some(d) => globals.garp_refresh = Some((d, at)),
                None => tally.not_carried(at, "not a time in seconds"),
            },
            "vrrp_strict" => globals.strict = Some(at),
            "router_id" => tally.not_carried(at, "coexist names nothing after the host; its metrics and logs carry the instance names"),
            "notification_email" | "notification_email_from" | "smtp_server"
            | "smtp_connect_timeout" | "smtp_helo_name" | "smtp_alert" | "smtp_alert_vrrp"
            | "smtp_alert_checker" => whole(
                child,
                "no e-mail alerts: coexist exports vrrp_state and lb_server_up in /metrics, and can run a notify command",
                tally,
            ),
            "enable_script_security" | "script_user" => tally.not_carried(
                at,
                "coexist runs its notify command as its own user (coexist under systemd)",
            ),
            "vrrp_skip_check_adv_addr" | "vrrp_check_unicast_src" | "checker_process_name"
            | "vrrp_process_name" | "lvs_id" | "vrrp_mcast_group4" | "vrrp_mcast_group6"
            | "vrrp_garp_master_delay" | "vrrp_garp_lower_prio_repeat"
            | "vrrp_garp_lower_prio_delay" | "vrrp_garp_interval" | "vrrp_gna_interval"
            | "vrrp_lower_prio_no_advert" | "vrrp_higher_prio_send_advert" | "vrrp_priority"
            | "checker_priority" | "vrrp_no_swap" | "checker_no_swap" | "dynamic_interfaces"
            | "vrrp_iptables" | "vrrp_ipsets" | "nftables" | "max_auto_priority"
            | "lvs_sync_daemon" | "lvs_flush" | "lvs_timeouts" | "snmp_socket"
            | "enable_snmp_vrrp" | "enable_snmp_checker" | "enable_traps"
            | "vrrp_notify_fifo" | "notify_fifo" | "vrrp_startup_delay" => whole(
                child,
                "a keepalived process setting with no counterpart in coexist",
                tally,
            ),
            other => whole(
                child,
                &format!("global setting `{other}` has no counterpart in coexist"),
                tally,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::import::{import, Dialect, Source};

    fn notes(text: &str) -> Vec<String> {
        let out = import(&[Source {
            dialect: Dialect::Keepalived,
            origin: "k.conf".into(),
            text: text.into(),
        }]);
        out.notes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn blocks_without_counterpart_are_reported_once() {
        let n = notes("static_routes {\n  10.0.0.0/8 via 192.0.2.1\n}\nglobal_defs {\n  router_id LB1\n  notification_email {\n    ops@example.org\n  }\n}\n");
        assert_eq!(n.len(), 3, "{n:#?}");
        assert!(n[0].starts_with("k.conf:1: not carried: `static_routes`"));
        assert!(n[0].contains("block to line 3"));
        assert!(n[1].starts_with("k.conf:5: not carried: `router_id LB1`"));
        assert!(n[2].starts_with("k.conf:6: not carried: `notification_email`"));
    }
}
