//! `[[vrrp]]`: each section read onto the vrrp crate's model
//! ([`RawVrrp::instance`]) and checked by that model's rules, each broken
//! rule reported at its key; then what only the whole file can tell:
//! unique names, one virtual router per VRID, interface and family, and
//! tracked frontends that exist.

use toml::Spanned;
use vrrp::InstanceSpec;

use super::Ctx;
use crate::config::model::Frontend;
use crate::config::raw::RawVrrp;

pub(super) fn instances(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawVrrp>],
    frontends: &[Frontend],
) -> Vec<InstanceSpec> {
    let mut out: Vec<InstanceSpec> = Vec::with_capacity(raw.len());
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
        let unreadable = ctx.reported();
        let spec = v.instance(ctx);
        // Values that did not read left defaults behind, and list indices
        // that no longer match the file: judge only a complete instance.
        if ctx.reported() == unreadable {
            for e in spec.problems() {
                ctx.error_at_key(&format!("{at}.{}", e.setting.key()), e.problem.to_string());
            }
        }
        for (k, t) in v.track.iter().enumerate() {
            let name = t.get_ref().frontend.get_ref();
            if !frontends.iter().any(|f| f.name == *name) {
                ctx.error(
                    t.get_ref().frontend.span(),
                    &format!("{at}.track[{k}].frontend"),
                    format!("no [[frontend]] is named {name:?}"),
                );
            }
        }
        // RFC 9568 §7.3: a VRID names one virtual router per LAN and family.
        if let Some((j, o)) = out.iter().enumerate().find(|(_, o)| o.same_router(&spec)) {
            let msg = format!(
                "vrid {} on {} ({}) is already used by vrrp[{j}] {:?}",
                spec.config.vrid,
                spec.wire.interface,
                spec.config.family(),
                o.name
            );
            ctx.error(v.vrid.span(), &format!("{at}.vrid"), msg);
        }
        out.push(spec);
    }
    out
}
