//! `health_check = { kind = "dns", ... }`: the query asked and the answer
//! codes accepted, checked with the DNS library the check itself uses.

use std::str::FromStr;

use hickory_proto::rr::{Name, RecordType};
use toml::Spanned;

use super::Ctx;
use crate::config::model::{CheckKind, DNS_RCODES as RCODES};
use crate::config::raw::RawHealthCheck;

/// keepalived's DNS_CHECK asks the same by default: the root's SOA, which
/// every recursive server answers.
const DEFAULT_QUERY_NAME: &str = ".";
const NOERROR: u16 = 0;

pub(super) fn dns(
    ctx: &mut Ctx<'_>,
    h: &RawHealthCheck,
    key: &dyn Fn(&str) -> String,
) -> CheckKind {
    let query_name = match &h.query_name {
        None => DEFAULT_QUERY_NAME.to_owned(),
        Some(n) => match Name::from_ascii(n.get_ref()) {
            Ok(mut name) => {
                name.set_fqdn(true);
                name.to_ascii()
            }
            Err(e) => {
                let msg = format!("{:?} is not a domain name: {e}", n.get_ref());
                ctx.error(n.span(), &key("query_name"), msg);
                DEFAULT_QUERY_NAME.to_owned()
            }
        },
    };
    let query_type = query_type(ctx, h.query_type.as_ref(), &key("query_type"));
    let expect_rcodes = match &h.expect_rcode {
        None => vec![NOERROR],
        Some(v) => rcodes(v.get_ref()).unwrap_or_else(|msg| {
            ctx.error(v.span(), &key("expect_rcode"), msg);
            vec![NOERROR]
        }),
    };
    CheckKind::Dns {
        query_name,
        query_type,
        expect_rcodes,
    }
}

fn query_type(ctx: &mut Ctx<'_>, value: Option<&Spanned<String>>, key: &str) -> u16 {
    let default = u16::from(RecordType::SOA);
    let Some(v) = value else { return default };
    match RecordType::from_str(&v.get_ref().to_ascii_uppercase()) {
        // A query type only: OPT and the like are not questions.
        Ok(t) if !matches!(t, RecordType::OPT | RecordType::Unknown(_)) => u16::from(t),
        _ => {
            let msg = format!(
                "{:?} is not a DNS record type; write one like \"A\", \"AAAA\", \"SOA\" or \"NS\"",
                v.get_ref()
            );
            ctx.error(v.span(), key, msg);
            default
        }
    }
}

/// `"NOERROR"` or `["NOERROR", "NXDOMAIN"]`.
fn rcodes(value: &toml::Value) -> Result<Vec<u16>, String> {
    let one = |v: &toml::Value| -> Result<u16, String> {
        let text = v.as_str().ok_or_else(|| {
            format!(
                "{} value: expected an RCODE name like \"NOERROR\"",
                v.type_str()
            )
        })?;
        RCODES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(text.trim()))
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                let names: Vec<&str> = RCODES.iter().map(|(n, _)| *n).collect();
                format!(
                    "{text:?} is not an RCODE; expected one of {}",
                    names.join(", ")
                )
            })
    };
    match value {
        toml::Value::Array(list) if list.is_empty() => Err("must list at least one RCODE".into()),
        toml::Value::Array(list) => list.iter().map(one).collect(),
        single => Ok(vec![one(single)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcodes_as_a_name_or_a_list() {
        assert_eq!(rcodes(&"NOERROR".into()), Ok(vec![0]));
        assert_eq!(rcodes(&"nxdomain".into()), Ok(vec![3]));
        let list = toml::Value::Array(vec!["NOERROR".into(), "REFUSED".into()]);
        assert_eq!(rcodes(&list), Ok(vec![0, 5]));
        assert!(rcodes(&"OK".into()).unwrap_err().contains("NOERROR"));
        assert!(rcodes(&toml::Value::Array(vec![])).is_err());
        assert!(rcodes(&toml::Value::Integer(0)).is_err());
    }
}
