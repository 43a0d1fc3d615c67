//! `vrrp_instance` → `[[vrrp]]`.

use std::net::IpAddr;
use std::time::Duration;

use super::tree::Node;
use super::{notify, whole, Globals};
use crate::import::plan::{self, Origin, Plan, Vrrp};
use crate::import::tally::Tally;
use crate::import::values::{ip, ip_prefix, keepalived_timer};

/// keepalived's defaults.
const PRIORITY: u8 = 100;
const ADVERT: Duration = Duration::from_secs(1);
const VERSION: u8 = 2;

/// Whether any instance of `nodes` has `script` in its track_script.
pub(super) fn tracked(nodes: &[Node], script: &str) -> bool {
    nodes
        .iter()
        .filter(|n| n.keyword() == "vrrp_instance")
        .flat_map(|n| &n.children)
        .filter(|c| c.keyword() == "track_script")
        .flat_map(|c| &c.children)
        .any(|t| t.keyword() == script)
}

pub(super) fn instance(
    node: &Node,
    globals: &Globals,
    scripts: &[&Node],
    tally: &mut Tally,
    plan: &mut Plan,
) {
    let name = node.word(1);
    let fail = |tally: &mut Tally, why: &str| {
        whole(node, &format!("vrrp_instance {name}: {why}"), tally);
    };
    let child = |key: &str| node.children.iter().find(|c| c.keyword() == key);
    let Some(interface) = child("interface") else {
        fail(
            tally,
            "no interface; coexist runs each instance on one interface",
        );
        return;
    };
    let Some(vrid_node) = child("virtual_router_id") else {
        fail(tally, "no virtual_router_id");
        return;
    };
    let Ok(vrid @ 1..=255) = vrid_node.word(1).parse::<u8>() else {
        fail(tally, "virtual_router_id is 1 to 255");
        return;
    };
    let addresses = addresses(node, interface.word(1), tally);
    let Some(&(first, _)) = addresses.first() else {
        fail(tally, "no virtual address coexist can carry");
        return;
    };
    let v6 = first.is_ipv6();
    let mut v = Vrrp {
        name: plan::name(name),
        origin: Origin {
            at: node.at,
            what: node.text(),
        },
        interface: interface.word(1).to_owned(),
        vrid,
        priority: PRIORITY,
        advert_interval: ADVERT,
        version: globals.version.map_or(VERSION, |(v, _)| v),
        preempt: true,
        preempt_delay: None,
        accept_mode: Some(globals.strict.is_none()),
        addresses,
        unicast_peers: Vec::new(),
        virtual_mac: false,
        notify: None,
        garp_count: globals.garp_repeat.map(|(n, _)| n.min(100)),
        // keepalived's 0 is no refresh; and with no announcements (a
        // repeat of 0) there is nothing to refresh.
        garp_refresh: globals
            .garp_refresh
            .filter(|(d, _)| !d.is_zero())
            .filter(|_| globals.garp_repeat.is_none_or(|(n, _)| n > 0))
            .map(|(d, _)| d.max(Duration::from_secs(1))),
    };
    let mut notifications: Vec<&Node> = Vec::new();
    let mut advert_node = None;
    // Read after the block: whether it means anything depends on
    // `nopreempt` and `priority`, wherever they are written.
    let mut delay_node: Option<&Node> = None;
    let mut version_set = false;
    for c in &node.children {
        let at = c.at;
        match c.keyword() {
            "interface" | "virtual_router_id" | "native_ipv6" => tally.carried(at),
            "virtual_ipaddress" => {}
            "priority" => match c.word(1).parse::<u8>() {
                Ok(p @ 1..=255) => {
                    v.priority = p;
                    tally.carried(at);
                }
                _ => tally.not_carried(at, "a priority is 1 to 255; keepalived's default 100 is used"),
            },
            "advert_int" => advert_node = Some(c),
            "version" => match c.word(1).parse::<u8>() {
                Ok(n @ (2 | 3)) => {
                    v.version = n;
                    version_set = true;
                    tally.carried(at);
                }
                _ => tally.not_carried(at, "VRRP versions are 2 and 3"),
            },
            "state" => tally.changed(
                at,
                "coexist starts every instance as backup and elects by priority, as keepalived does once running; the higher priority becomes master",
            ),
            "nopreempt" | "no_preempt" => {
                v.preempt = false;
                tally.carried(at);
            }
            "preempt" => tally.carried(at),
            "preempt_delay" => delay_node = Some(c),
            "accept" => {
                v.accept_mode = Some(true);
                tally.carried(at);
            }
            "no_accept" => {
                v.accept_mode = Some(false);
                tally.carried(at);
            }
            "unicast_peer" => {
                tally.carried(at);
                for peer in &c.children {
                    match ip(peer.keyword()) {
                        Some(p) if p.is_ipv6() == v6 && !v.unicast_peers.contains(&p) => {
                            v.unicast_peers.push(p);
                            tally.carried(peer.at);
                            if peer.words.len() > 1 {
                                tally.part_not_carried(
                                    peer.at,
                                    &peer.words[1..].join(" "),
                                    "coexist checks no TTL range on unicast adverts",
                                );
                            }
                        }
                        _ => tally.not_carried(peer.at, "not a peer address of the instance's family"),
                    }
                }
            }
            "unicast_src_ip" | "mcast_src_ip" => tally.changed(
                at,
                "coexist sends adverts from the interface's primary address",
            ),
            "use_vmac" => {
                v.virtual_mac = true;
                tally.carried(at);
                if c.words.len() > 1 {
                    tally.part_changed(
                        at,
                        &c.words[1..].join(" "),
                        "coexist names the macvlan itself and uses the standard virtual MAC",
                    );
                }
            }
            "vmac_xmit_base" => tally.not_carried(at, "coexist sends adverts on the macvlan"),
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify"
            | "notify_master_rx_lower_pri" => notifications.push(c),
            "track_script" => track_scripts(c, scripts, tally),
            "track_interface" => whole(
                c,
                "coexist does not watch other interfaces; it tracks frontends (track = [{ frontend, weight }])",
                tally,
            ),
            "authentication" => whole(
                c,
                "VRRP authentication was removed by RFC 3768 and coexist does not send it: remove it from the keepalived peers too, or they will drop coexist's adverts",
                tally,
            ),
            "garp_master_repeat" => match c.word(1).parse::<u32>() {
                Ok(n) => {
                    v.garp_count = Some(n.min(100));
                    tally.carried(at);
                }
                Err(_) => tally.not_carried(at, "not a count"),
            },
            "garp_master_refresh" => match keepalived_timer(c.word(1)) {
                Some(d) if !d.is_zero() => {
                    v.garp_refresh = Some(d.max(Duration::from_secs(1)));
                    tally.carried(at);
                }
                _ => tally.not_carried(at, "not a time in seconds"),
            },
            "garp_master_delay" => tally.not_carried(
                at,
                "coexist sends its gratuitous ARPs in one burst (garp_count, garp_interval)",
            ),
            "virtual_ipaddress_excluded" => whole(
                c,
                "coexist sends every virtual address in its adverts: add them as another [[vrrp]] instance, or configure them otherwise",
                tally,
            ),
            "virtual_routes" | "virtual_rules" => whole(
                c,
                "coexist moves addresses, not routes or rules",
                tally,
            ),
            "smtp_alert" => tally.not_carried(at, "no e-mail alerts: vrrp_state in /metrics, or notify"),
            "strict_mode" => {
                v.accept_mode = Some(false);
                tally.changed(at, "coexist follows the RFC in any case; accept_mode is off");
            }
            other => whole(c, &format!("`{other}` has no counterpart in coexist"), tally),
        }
    }
    if v6 {
        if version_set && v.version == 2 {
            tally.changed(
                node.at,
                "VRRP version 2 is IPv4 only: version 3, as keepalived uses for IPv6",
            );
        }
        v.version = 3;
    } else if let (false, Some((_, at))) = (version_set, globals.version) {
        tally.carried(at);
    }
    if let Some(a) = advert_node {
        v.advert_interval = advert(a, v.version, tally);
    }
    if let Some(c) = delay_node {
        match keepalived_timer(c.word(1)) {
            Some(d) if d <= Duration::from_secs(1000) => {
                if !v.preempt && v.priority != vrrp::OWNER_PRIORITY && !d.is_zero() {
                    tally.not_carried(c.at, "keepalived ignores it with nopreempt");
                } else {
                    v.preempt_delay = (!d.is_zero()).then_some(d);
                    tally.carried(c.at);
                }
            }
            _ => tally.not_carried(c.at, "a delay of 0 to 1000 seconds"),
        }
    }
    if let Some((_, at)) = globals.garp_repeat {
        tally.carried(at);
    }
    if let Some((_, at)) = globals.garp_refresh {
        tally.carried(at);
    }
    if let Some(at) = globals.strict {
        tally.changed(
            at,
            "coexist follows the RFC in any case; accept_mode is off",
        );
    }
    v.notify = notify::command(&notifications, tally);
    if plan.add_vrrp(v, tally) {
        tally.carried(node.at);
    }
}

/// advert_int in coexist's steps: VRRPv3 counts centiseconds (10ms to
/// 40.95s), VRRPv2 whole seconds (1 to 255).
fn advert(node: &Node, version: u8, tally: &mut Tally) -> Duration {
    let Some(d) = keepalived_timer(node.word(1)) else {
        tally.not_carried(node.at, "not a time in seconds; 1s is used");
        return ADVERT;
    };
    let (step, lo, hi) = if version == 3 {
        (10, 10, 40_950)
    } else {
        (1000, 1000, 255_000)
    };
    let ms = d.as_millis() as u64;
    let fitted = ((ms + step / 2) / step * step).clamp(lo, hi);
    if fitted == ms {
        tally.carried(node.at);
    } else {
        tally.changed(
            node.at,
            format!(
                "VRRPv{version} adverts go every {}: the nearest interval coexist can send",
                crate::import::values::duration(Duration::from_millis(fitted))
            ),
        );
    }
    Duration::from_millis(fitted)
}

/// The virtual addresses coexist can carry: those on the instance's
/// interface, of the first address's family.
fn addresses(node: &Node, interface: &str, tally: &mut Tally) -> Vec<(IpAddr, u8)> {
    let mut out: Vec<(IpAddr, u8)> = Vec::new();
    let Some(block) = node
        .children
        .iter()
        .find(|c| c.keyword() == "virtual_ipaddress")
    else {
        return out;
    };
    tally.carried(block.at);
    for a in &block.children {
        let Some((ip, prefix)) = ip_prefix(a.keyword()) else {
            tally.not_carried(a.at, "not an address with an optional /prefix");
            continue;
        };
        let mut options = a.words[1..].iter().map(String::as_str);
        let mut dropped: Vec<String> = Vec::new();
        let mut elsewhere = None;
        while let Some(o) = options.next() {
            match o {
                "dev" => elsewhere = options.next().filter(|d| *d != interface),
                "brd" | "scope" | "label" | "peer" | "preferred_lft" => {
                    dropped.push(format!("{o} {}", options.next().unwrap_or("")));
                }
                other => dropped.push(other.to_owned()),
            }
        }
        if let Some(dev) = elsewhere {
            tally.not_carried(
                a.at,
                format!("on {dev}: coexist puts an instance's addresses on its own interface ({interface}); make another [[vrrp]] instance on {dev}"),
            );
            continue;
        }
        // One advertisement carries them all: a 1500-byte frame, and a
        // one-byte count (as coexist's validation says).
        let most = if ip.is_ipv6() {
            (1500 - 40 - 8) / 16
        } else {
            255
        };
        let problem = if out.len() >= most {
            Some(format!(
                "one advertisement carries at most {most} addresses: add another [[vrrp]] instance"
            ))
        } else if ip.is_unspecified() || ip.is_multicast() {
            Some("cannot be a virtual address".to_owned())
        } else if out
            .first()
            .is_some_and(|(f, _)| f.is_ipv6() != ip.is_ipv6())
        {
            Some("of the other address family: coexist runs one [[vrrp]] instance per family; add one for it".to_owned())
        } else if out.iter().any(|(o, _)| *o == ip) {
            Some("listed twice".to_owned())
        } else {
            None
        };
        if let Some(why) = problem {
            tally.not_carried(a.at, why);
            continue;
        }
        if !dropped.is_empty() {
            tally.part_not_carried(
                a.at,
                &dropped.join(" "),
                "coexist adds the address with its prefix only",
            );
        }
        tally.carried(a.at);
        out.push((ip, prefix));
    }
    out
}

/// track_script → the explanation of what coexist does instead.
fn track_scripts(block: &Node, scripts: &[&Node], tally: &mut Tally) {
    tally.cover(block.at);
    for t in &block.children {
        let name = t.keyword();
        let script = scripts.iter().find(|s| s.word(1) == name);
        let command = script
            .and_then(|s| s.children.iter().find(|c| c.keyword() == "script"))
            .map_or_else(
                || "its script".to_owned(),
                |c| format!("script {:?}", c.word(1)),
            );
        let weight = t
            .words
            .iter()
            .position(|w| w == "weight")
            .and_then(|i| t.words.get(i + 1))
            .map(String::as_str)
            .or_else(|| {
                script
                    .and_then(|s| s.children.iter().find(|c| c.keyword() == "weight"))
                    .map(|c| c.word(1))
            })
            .unwrap_or("0");
        let effect = match weight.parse::<i32>() {
            Ok(0) | Err(_) => "a failure puts the instance in fault state".to_owned(),
            Ok(w) if w < 0 => format!("a failure lowers the priority by {}", -w),
            Ok(w) => format!("success raises the priority by {w}"),
        };
        tally.not_carried(
            t.at,
            format!(
                "{command} ({effect}) is not run: coexist is the proxy and the VRRP daemon in one process, so when it stops, its adverts stop and the peer takes over; to hand over while a frontend has no healthy server, add track = [{{ frontend = \"NAME\", weight = N }}]"
            ),
        );
    }
}
