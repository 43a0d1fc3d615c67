//! Parsers for single values written as strings: durations, status ranges,
//! names. Pure functions returning a message on error; the
//! caller adds the location.

use std::net::{Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

pub(super) fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("invalid duration {text:?} ({e}); write a number and a unit, like \"100ms\", \"2s\" or \"5m\"")
    })
}

/// `200`, `"200"`, `"2xx"` or `"200-399"`.
pub(super) fn status_range(value: &toml::Value) -> Result<RangeInclusive<u16>, String> {
    const HINT: &str = "expected a status like 200, \"2xx\" or \"200-399\"";
    let range = match value {
        toml::Value::Integer(code) => {
            let code = u16::try_from(*code).map_err(|_| format!("{code}: {HINT}"))?;
            code..=code
        }
        toml::Value::String(text) => {
            let t = text.trim();
            let code = |s: &str| {
                s.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("{text:?}: {HINT}"))
            };
            if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                let digit = match class.as_bytes() {
                    [d @ b'1'..=b'5'] => u16::from(d - b'0'),
                    _ => return Err(format!("{text:?}: {HINT}")),
                };
                digit * 100..=digit * 100 + 99
            } else if let Some((lo, hi)) = t.split_once('-') {
                code(lo)?..=code(hi)?
            } else {
                let c = code(t)?;
                c..=c
            }
        }
        other => return Err(format!("{} value: {HINT}", other.type_str())),
    };
    if *range.start() < 100 || *range.end() > 599 {
        return Err(format!(
            "{}-{} is outside HTTP status codes 100-599",
            range.start(),
            range.end()
        ));
    }
    if range.start() > range.end() {
        return Err(format!(
            "{}-{} is an empty range: the first code must not exceed the last",
            range.start(),
            range.end()
        ));
    }
    Ok(range)
}

/// Names appear in `BACKEND/SERVER` on the command line, in logs and in
/// metric labels, so they must survive all three unquoted.
pub(super) fn name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = text
        .chars()
        .find(|c| *c == '/' || c.is_whitespace() || c.is_control() || *c == '"')
    {
        return Err(format!(
            "{text:?} contains {c:?}; names may not contain '/', quotes, spaces or control characters"
        ));
    }
    Ok(())
}

/// A server's `address` as written, before its zone names an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WrittenAddress {
    Socket(SocketAddr),
    /// `[fe80::1%eth1]:80`
    Zoned {
        ip: Ipv6Addr,
        zone: String,
        port: u16,
    },
    /// `web1.example.net:80`, the host in lower case without a final dot.
    Name {
        host: String,
        port: u16,
    },
}

const ADDRESS_FORMS: &str =
    "like \"192.0.2.1:80\", \"[2001:db8::1]:80\", \"[fe80::1%eth0]:80\" or \"web1.example.net:80\"";

/// A server address: an IP address or a host name, with a port.
pub(super) fn server_address(text: &str) -> Result<WrittenAddress, String> {
    let t = text.trim();
    let not = |why: &str| {
        format!("{text:?} {why}; write an address or host name with a port, {ADDRESS_FORMS}")
    };
    if let Ok(address) = t.parse::<SocketAddr>() {
        return Ok(WrittenAddress::Socket(address));
    }
    if let Some(inside) = t.strip_prefix('[') {
        let (inside, port) = inside
            .split_once("]:")
            .ok_or_else(|| not("has no port after the bracketed IPv6 address"))?;
        let port = port_number(port).ok_or_else(|| not("has no valid port"))?;
        let (ip, zone) = match inside.split_once('%') {
            Some((ip, zone)) => (ip, Some(zone)),
            None => (inside, None),
        };
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| not("is not an IPv6 address in brackets"))?;
        return match zone {
            Some("") | None => Err(not("has an empty zone")),
            Some(zone) => Ok(WrittenAddress::Zoned {
                ip,
                zone: zone.to_owned(),
                port,
            }),
        };
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(not("has no port"));
    };
    if host.contains(':') {
        return Err(not("is not an address: an IPv6 address goes in brackets"));
    }
    let port = port_number(port).ok_or_else(|| not("has no valid port"))?;
    if !host.is_empty() && host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(not("is not an IPv4 address"));
    }
    let host = host_name(host).map_err(|why| not(&why))?;
    Ok(WrittenAddress::Name { host, port })
}

fn port_number(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A DNS host name (RFC 1123 letters, digits and hyphens, plus the
/// underscore some zones use), lower-cased, without its final dot.
fn host_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 253 {
        return Err("is not a host name (1 to 253 characters)".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "is not a host name: label {label:?} must have 1 to 63 characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("is not a host name: {c:?} in label {label:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "is not a host name: label {label:?} starts or ends with '-'"
            ));
        }
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_in_every_form() {
        let written = |t: &str| server_address(t);
        assert_eq!(
            written("192.0.2.1:80"),
            Ok(WrittenAddress::Socket("192.0.2.1:80".parse().unwrap()))
        );
        assert_eq!(
            written(" [2001:db8::1]:443 "),
            Ok(WrittenAddress::Socket("[2001:db8::1]:443".parse().unwrap()))
        );
        assert_eq!(
            written("[fe80::1%eth1]:80"),
            Ok(WrittenAddress::Zoned {
                ip: "fe80::1".parse().unwrap(),
                zone: "eth1".into(),
                port: 80
            })
        );
        assert_eq!(
            written("Web1.Example.NET.:8080"),
            Ok(WrittenAddress::Name {
                host: "web1.example.net".into(),
                port: 8080
            })
        );
        assert_eq!(
            written("localhost:80"),
            Ok(WrittenAddress::Name {
                host: "localhost".into(),
                port: 80
            })
        );
        for (bad, why) in [
            ("192.0.2.1", "has no port"),
            ("web1", "has no port"),
            ("web1:http", "no valid port"),
            ("web1:70000", "no valid port"),
            ("web1:-1", "no valid port"),
            ("10.0.0.300:80", "not an IPv4 address"),
            ("2001:db8::1:80", "goes in brackets"),
            ("[2001:db8::1]", "no port"),
            ("[2001:db8::zz]:80", "not an IPv6 address"),
            ("[fe80::1%]:80", "empty zone"),
            ("web 1:80", "' '"),
            ("-web:80", "starts or ends with '-'"),
            ("a..b:80", "1 to 63"),
            (":80", "1 to 253"),
        ] {
            let error = written(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
            assert!(error.contains("web1.example.net:80"), "{bad}: {error}");
        }
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert!(duration("100").unwrap_err().contains("\"100\""));
        assert!(duration("fast").is_err());
    }

    #[test]
    fn status_range_forms() {
        assert_eq!(status_range(&toml::Value::Integer(200)), Ok(200..=200));
        assert_eq!(status_range(&"2xx".into()), Ok(200..=299));
        assert_eq!(status_range(&"200-399".into()), Ok(200..=399));
        assert_eq!(status_range(&"204".into()), Ok(204..=204));
        assert!(status_range(&"6xx".into()).is_err());
        assert!(status_range(&"399-200".into())
            .unwrap_err()
            .contains("empty"));
        assert!(status_range(&toml::Value::Integer(99)).is_err());
        assert!(status_range(&toml::Value::Integer(-1)).is_err());
        assert!(status_range(&toml::Value::Boolean(true)).is_err());
    }

    #[test]
    fn names_reject_separators() {
        assert!(name("web-1").is_ok());
        assert!(name("[2001:db8::11]:80").is_ok());
        assert!(name("a/b").is_err());
        assert!(name("a b").is_err());
        assert!(name("").is_err());
    }
}
