//! Parsers for single values written as strings: durations, status ranges,
//! names. Pure functions returning a message on error; the
//! caller adds the location.

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

#[cfg(test)]
mod tests {
    use super::*;

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
