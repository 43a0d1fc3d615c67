//! `[[vrrp]]` checks: ranges from RFC 9568 (VRRPv3) and RFC 3768 (VRRPv2),
//! one address family per instance, and references to frontends.

use std::net::IpAddr;
use std::time::Duration;

use toml::Spanned;

use super::{values, Ctx};
use crate::config::model::{ChecksumMode, Frontend, IpFamily, Track, VrrpInstance};
use crate::config::raw::{RawChecksum, RawVrrp};

/// Linux interface names are at most IFNAMSIZ - 1 bytes.
const IFNAMSIZ_MAX: usize = 15;

pub(super) fn instances(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawVrrp>],
    frontends: &[Frontend],
) -> Vec<VrrpInstance> {
    let mut out: Vec<VrrpInstance> = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let v = v.get_ref();
        let at = format!("vrrp[{i}]");
        let key = format!("{at}.name");
        ctx.name(&v.name, &key);
        if let Some(j) = out.iter().position(|o| o.name == *v.name.get_ref()) {
            let msg = format!(
                "duplicate vrrp name {:?} (also vrrp[{j}])",
                v.name.get_ref()
            );
            ctx.error(v.name.span(), &key, msg);
        }
        let inst = instance(ctx, v, &at, frontends);
        // RFC 9568 §7.3: a VRID names one virtual router per LAN and family.
        if let Some((j, o)) = out.iter().enumerate().find(|(_, o)| {
            (o.interface.as_str(), o.vrid, o.family)
                == (inst.interface.as_str(), inst.vrid, inst.family)
        }) {
            let msg = format!(
                "vrid {} on {} ({}) is already used by vrrp[{j}] {:?}",
                inst.vrid,
                inst.interface,
                family_label(inst.family),
                o.name
            );
            ctx.error(v.vrid.span(), &format!("{at}.vrid"), msg);
        }
        out.push(inst);
    }
    out
}

fn family_label(f: IpFamily) -> &'static str {
    match f {
        IpFamily::V4 => "IPv4",
        IpFamily::V6 => "IPv6",
    }
}

fn instance(ctx: &mut Ctx<'_>, v: &RawVrrp, at: &str, frontends: &[Frontend]) -> VrrpInstance {
    let key = |k: &str| format!("{at}.{k}");
    interface(ctx, &v.interface, &key("interface"));
    let vrid = ctx.int_in(Some(&v.vrid), &key("vrid"), 1, 1..=255);
    let priority = ctx.int_in(v.priority.as_ref(), &key("priority"), 100, 1..=255);
    let version = ctx.int_in(v.version.as_ref(), &key("version"), 3u8, 2..=3);
    let (family, addresses) = addresses(ctx, v, at);
    if version == 2 && family == IpFamily::V6 {
        if let Some(ver) = &v.version {
            let msg = "VRRP version 2 is IPv4 only (RFC 3768); use version 3 for IPv6 addresses";
            ctx.error(ver.span(), &key("version"), msg);
        }
    }
    let advert_interval = advert_interval(
        ctx,
        v.advert_interval.as_ref(),
        &key("advert_interval"),
        version,
    );
    let preempt_delay = ctx.duration_in(
        v.preempt_delay.as_ref(),
        &key("preempt_delay"),
        Duration::ZERO,
        Duration::ZERO..=Duration::from_secs(1000),
    );
    let track = track(ctx, v, at, frontends);
    let unicast_peers = unicast_peers(ctx, v, at, family);
    let notify = v.notify.as_ref().and_then(|n| {
        if n.get_ref().trim().is_empty() {
            ctx.error(
                n.span(),
                &key("notify"),
                "must not be empty; leave the key out for no command",
            );
            None
        } else {
            Some(n.get_ref().clone())
        }
    });
    let checksum_mode = match &v.checksum {
        None => ChecksumMode::PseudoHeader,
        Some(c) => {
            if version != 3 || family != IpFamily::V4 {
                let msg = "there is a choice of checksum only for VRRPv3 over IPv4";
                ctx.error(c.span(), &key("checksum"), msg);
            }
            match c.get_ref() {
                RawChecksum::PseudoHeader => ChecksumMode::PseudoHeader,
                RawChecksum::MessageOnly => ChecksumMode::MessageOnly,
            }
        }
    };
    VrrpInstance {
        name: v.name.get_ref().clone(),
        interface: v.interface.get_ref().clone(),
        vrid,
        priority,
        advert_interval,
        version,
        family,
        preempt: v.preempt.unwrap_or(true),
        preempt_delay,
        accept_mode: v.accept_mode.unwrap_or(false),
        addresses,
        track,
        unicast_peers,
        virtual_mac: v.virtual_mac.unwrap_or(false),
        notify,
        checksum_mode,
        garp_count: ctx.int_in(v.garp_count.as_ref(), &key("garp_count"), 5, 0..=100),
        garp_interval: ctx.duration_in(
            v.garp_interval.as_ref(),
            &key("garp_interval"),
            Duration::from_millis(100),
            Duration::ZERO..=Duration::from_secs(60),
        ),
        garp_refresh: v.garp_refresh.as_ref().map(|r| {
            ctx.duration_in(
                Some(r),
                &key("garp_refresh"),
                Duration::from_secs(60),
                Duration::from_secs(1)..=Duration::from_secs(24 * 3600),
            )
        }),
    }
}

fn interface(ctx: &mut Ctx<'_>, name: &Spanned<String>, key: &str) {
    let n = name.get_ref();
    let bad = n.is_empty()
        || n.len() > IFNAMSIZ_MAX
        || n == "."
        || n == ".."
        || n.chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control());
    if bad {
        let msg = format!(
            "{n:?} is not a Linux interface name (1-{IFNAMSIZ_MAX} bytes, no '/' or spaces)"
        );
        ctx.error(name.span(), key, msg);
    }
}

/// RFC 9568 §5.2.7 (v3): centiseconds in 12 bits, so 10ms..=40.95s in steps
/// of 10ms. RFC 3768 §5.3.7 (v2): whole seconds in 8 bits.
fn advert_interval(
    ctx: &mut Ctx<'_>,
    value: Option<&Spanned<String>>,
    key: &str,
    version: u8,
) -> Duration {
    let default = Duration::from_secs(1);
    let d = ctx.duration(value, key, default);
    let Some(v) = value else { return d };
    let ms = d.as_millis();
    let problem = if version == 3 {
        (!(10..=40_950).contains(&ms) || d.as_nanos() % 10_000_000 != 0)
            .then_some("VRRPv3 intervals are whole centiseconds from 10ms to 40.95s")
    } else {
        (!(1000..=255_000).contains(&ms) || d.subsec_nanos() != 0)
            .then_some("VRRPv2 intervals are whole seconds from 1s to 255s")
    };
    match problem {
        Some(p) => {
            ctx.error(v.span(), key, format!("{d:?}: {p}"));
            default
        }
        None => d,
    }
}

fn addresses(ctx: &mut Ctx<'_>, v: &RawVrrp, at: &str) -> (IpFamily, Vec<(IpAddr, u8)>) {
    let list = v.addresses.get_ref();
    if list.is_empty() {
        ctx.error(
            v.addresses.span(),
            &format!("{at}.addresses"),
            "needs at least one virtual address",
        );
    }
    // The first valid address decides the family, and where it was said.
    let mut family: Option<(IpFamily, usize)> = None;
    let mut out: Vec<(IpAddr, u8)> = Vec::with_capacity(list.len());
    for (k, a) in list.iter().enumerate() {
        let key = format!("{at}.addresses[{k}]");
        let (ip, prefix) = match values::ip_prefix(a.get_ref()) {
            Ok(p) => p,
            Err(msg) => {
                ctx.error(a.span(), &key, msg);
                continue;
            }
        };
        let this = if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        };
        let problem = if ip.is_unspecified() || ip.is_multicast() {
            Some(format!("{ip} cannot be a virtual address"))
        } else if let Some((_, first)) = family.filter(|(f, _)| *f != this) {
            Some(format!(
                "{ip} is {} but {at}.addresses[{first}] is not; use one [[vrrp]] instance per address family",
                values::family_name(&ip)
            ))
        } else if out.iter().any(|(o, _)| *o == ip) {
            Some(format!("{ip} is listed twice"))
        } else {
            None
        };
        if let Some(msg) = problem {
            ctx.error(a.span(), &key, msg);
            continue;
        }
        family.get_or_insert((this, k));
        out.push((ip, prefix));
    }
    // All addresses travel in one advertisement that must fit a 1500-byte
    // frame; v3's count field is one byte.
    let family = family.map_or(IpFamily::V4, |(f, _)| f);
    let max = match family {
        IpFamily::V6 => (1500 - 40 - 8) / 16,
        _ => 255,
    };
    if out.len() > max {
        let msg = format!(
            "{} addresses do not fit one advertisement (at most {max})",
            out.len()
        );
        ctx.error(v.addresses.span(), &format!("{at}.addresses"), msg);
    }
    (family, out)
}

fn track(ctx: &mut Ctx<'_>, v: &RawVrrp, at: &str, frontends: &[Frontend]) -> Vec<Track> {
    let mut out: Vec<Track> = Vec::with_capacity(v.track.len());
    for (k, t) in v.track.iter().enumerate() {
        let t = t.get_ref();
        let key = format!("{at}.track[{k}].frontend");
        let name = t.frontend.get_ref();
        if !frontends.iter().any(|f| f.name == *name) {
            ctx.error(
                t.frontend.span(),
                &key,
                format!("no [[frontend]] is named {name:?}"),
            );
        } else if out.iter().any(|o| o.frontend == *name) {
            ctx.error(
                t.frontend.span(),
                &key,
                format!("frontend {name:?} is tracked twice"),
            );
        }
        // 254 and 255 would let a tracked failure push priority to 0 or
        // below, and 0 means "stopping" on the wire.
        let weight = ctx.int_in(
            Some(&t.weight),
            &format!("{at}.track[{k}].weight"),
            1,
            1..=253,
        );
        out.push(Track {
            frontend: name.clone(),
            weight,
        });
    }
    out
}

fn unicast_peers(ctx: &mut Ctx<'_>, v: &RawVrrp, at: &str, family: IpFamily) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(v.unicast_peers.len());
    for (k, p) in v.unicast_peers.iter().enumerate() {
        let key = format!("{at}.unicast_peers[{k}]");
        let Ok(ip) = p.get_ref().trim().parse::<IpAddr>() else {
            ctx.error(
                p.span(),
                &key,
                format!("{:?} is not an IP address", p.get_ref()),
            );
            continue;
        };
        let this = if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        };
        let problem = if ip.is_unspecified() || ip.is_multicast() {
            Some(format!("{ip} cannot be a unicast peer"))
        } else if this != family {
            Some(format!(
                "{ip} is {} but the instance's addresses are {}",
                values::family_name(&ip),
                family_label(family)
            ))
        } else if out.contains(&ip) {
            Some(format!("{ip} is listed twice"))
        } else {
            None
        };
        match problem {
            Some(msg) => ctx.error(p.span(), &key, msg),
            None => out.push(ip),
        }
    }
    out
}
