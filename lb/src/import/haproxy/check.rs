//! A backend's health check from HAProxy's per-server `check` options and
//! the proxy's check directives (`option tcp-check` + `tcp-check`,
//! `option httpchk` + `http-check`, `option redis-check`).
//!
//! HAProxy checks server by server; coexist checks every server of a
//! backend the same way. The first checked server's timing is used and
//! every difference is reported.

use std::time::Duration;

use super::server::Params;
use super::settings::{CheckOption, Settings};
use super::Line;
use crate::import::plan::{CheckKind, HealthCheck};
use crate::import::tally::{Loc, Tally};

/// HAProxy's defaults: `inter 2s rise 2 fall 3`.
const INTER: Duration = Duration::from_secs(2);
const RISE: u32 = 2;
const FALL: u32 = 3;

pub(super) fn health_check(
    s: &Settings,
    servers: &[(Params, Loc)],
    tally: &mut Tally,
) -> Option<HealthCheck> {
    let checked: Vec<&(Params, Loc)> = servers.iter().filter(|(p, _)| p.is(|p| &p.check)).collect();
    let (first, _) = checked.first()?;
    for (p, at) in servers.iter().filter(|(p, _)| !p.is(|p| &p.check)) {
        let _ = p;
        tally.changed(
            *at,
            "checked like the other servers of its backend (HAProxy did not check it): coexist checks every server of a backend",
        );
    }
    let pick = |get: fn(&Params) -> Option<u64>, default: u64, what: &str, tally: &mut Tally| {
        let chosen = get(first).unwrap_or(default);
        for (p, at) in &checked {
            if get(p).unwrap_or(default) != chosen {
                tally.changed(
                    *at,
                    format!("its {what} differs from the first checked server's; coexist uses one for the backend"),
                );
            }
        }
        chosen
    };
    let interval = Duration::from_millis(pick(
        |p| p.inter.as_ref().map(|i| i.value.as_millis() as u64),
        INTER.as_millis() as u64,
        "check interval",
        tally,
    ));
    let rise = pick(
        |p| p.rise.as_ref().map(|r| u64::from(r.value)),
        u64::from(RISE),
        "rise",
        tally,
    ) as u32;
    let fall = pick(
        |p| p.fall.as_ref().map(|f| u64::from(f.value)),
        u64::from(FALL),
        "fall",
        tally,
    ) as u32;
    // HAProxy: without `timeout check` the whole check has `inter`; with
    // it, connecting has min(timeout connect, inter) and reading `timeout
    // check` more. coexist's timeout may not exceed its interval.
    let timeout = match &s.timeout_check {
        Some(check) => {
            tally.carried(check.at);
            let connect = s
                .timeout_connect
                .as_ref()
                .map_or(interval, |c| c.value.min(interval));
            (connect + check.value).min(interval)
        }
        None => interval,
    };
    let kind = kind(s, &checked, tally);
    let (check, moved) = HealthCheck::within_ranges(kind, interval, timeout, rise, fall, true);
    if let (Some(why), Some(inter)) = (moved, &first.inter) {
        tally.changed(inter.at, why);
    }
    Some(check)
}

fn kind(s: &Settings, checked: &[&(Params, Loc)], tally: &mut Tally) -> CheckKind {
    for (p, _) in checked {
        if let Some(e) = &p.check_elsewhere {
            tally.part_changed(
                e.at,
                &e.value,
                "coexist checks each server at its own address and port: a connect check there replaces this check",
            );
            return CheckKind::Tcp;
        }
        if let Some(c) = p.check_ssl.as_ref().filter(|c| c.value) {
            tally.part_changed(
                c.at,
                "check-ssl",
                "coexist's checks do not speak TLS: a connect check replaces it",
            );
            return CheckKind::Tcp;
        }
    }
    let Some(option) = &s.check else {
        return CheckKind::Tcp;
    };
    tally.carried(option.at);
    match &option.value {
        CheckOption::TcpCheck => tcp_rules(&s.tcp_checks.lines, tally),
        CheckOption::Redis => CheckKind::SendExpect {
            send: "PING\r\n".into(),
            expect: "+PONG".into(),
        },
        CheckOption::HttpChk {
            method,
            uri,
            version,
        } => http(option.at, method, uri, version, &s.http_checks.lines, tally),
        CheckOption::Other(name) => {
            tally.changed(
                option.at,
                format!("coexist has no {name} check: a connect check takes its place"),
            );
            CheckKind::Tcp
        }
    }
}

/// Options a `tcp-check` or `http-check` rule may carry, each with one
/// argument, which change nothing coexist does.
const RULE_OPTIONS: &[&str] = &[
    "comment",
    "min-recv",
    "ok-status",
    "error-status",
    "tout-status",
    "on-success",
    "on-error",
    "status-code",
];

/// The words of a rule after `tcp-check`/`http-check`, without the
/// options that do not matter to coexist.
fn rule_words(line: &Line) -> Vec<&str> {
    // The action itself (`comment`, `expect`...) is never an option.
    let mut out: Vec<&str> = line.words.get(1).map(String::as_str).into_iter().collect();
    let mut i = 2;
    while i < line.words.len() {
        if RULE_OPTIONS.contains(&line.words[i].as_str()) {
            i += 2;
        } else {
            out.push(line.words[i].as_str());
            i += 1;
        }
    }
    out
}

/// `tcp-check` rules coexist can say: at most a plain connect, one send
/// and one expectation of the reply's start.
fn tcp_rules(rules: &[Line], tally: &mut Tally) -> CheckKind {
    let mut send: Option<(String, Loc)> = None;
    let mut expect: Option<(String, Loc, bool)> = None;
    let mut unsupported: Vec<(Loc, &'static str)> = Vec::new();
    for rule in rules {
        let words = rule_words(rule);
        match words.as_slice() {
            ["connect"] | ["connect", "default"] | ["comment", ..] => tally.carried(rule.at),
            ["send", data] if send.is_none() && expect.is_none() && !rule.binary => {
                send = Some(((*data).to_owned(), rule.at));
            }
            ["send-binary", hex] if send.is_none() && expect.is_none() => match hex_text(hex) {
                Some(text) => send = Some((text, rule.at)),
                None => unsupported.push((
                    rule.at,
                    "bytes that are not text cannot be written in coexist.toml",
                )),
            },
            ["expect", "string", text] if send.is_some() && expect.is_none() && !rule.binary => {
                expect = Some(((*text).to_owned(), rule.at, false));
            }
            ["expect", "binary", hex] if send.is_some() && expect.is_none() => {
                match hex_text(hex) {
                    Some(text) => expect = Some((text, rule.at, false)),
                    None => unsupported.push((
                        rule.at,
                        "bytes that are not text cannot be written in coexist.toml",
                    )),
                }
            }
            ["expect", "rstring", re] if send.is_some() && expect.is_none() => {
                match anchored_literal(re) {
                    Some(text) => expect = Some((text, rule.at, true)),
                    None => unsupported.push((
                        rule.at,
                        "coexist matches the start of the reply, not a regular expression",
                    )),
                }
            }
            ["connect", ..] => unsupported.push((
                rule.at,
                "coexist connects to the server's own address and port, without options",
            )),
            _ => unsupported.push((
                rule.at,
                "coexist checks with one send and the start of one reply",
            )),
        }
    }
    if !unsupported.is_empty() || (send.is_some() != expect.is_some()) {
        for (at, why) in unsupported {
            tally.not_carried(at, format!("{why}; a connect check takes the rules' place"));
        }
        for at in send
            .iter()
            .map(|(_, at)| *at)
            .chain(expect.iter().map(|(_, at, _)| *at))
        {
            tally.not_carried(
                at,
                "a connect check takes the rules' place (see the other tcp-check lines)",
            );
        }
        return CheckKind::Tcp;
    }
    match (send, expect) {
        (Some((send, send_at)), Some((expect, expect_at, anchored)))
            if !send.is_empty() && !expect.is_empty() =>
        {
            tally.carried(send_at);
            tally.carried(expect_at);
            if !anchored {
                tally.changed(
                    expect_at,
                    "HAProxy finds the string anywhere in the reply; coexist expects the reply to start with it",
                );
            }
            CheckKind::SendExpect { send, expect }
        }
        _ => CheckKind::Tcp,
    }
}

/// `^literal` with no other regular-expression syntax (a metacharacter
/// may be escaped): a prefix.
fn anchored_literal(re: &str) -> Option<String> {
    const META: &str = ".*+?()[]{}|\\$^";
    let mut out = String::new();
    let mut chars = re.strip_prefix('^')?.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(m) if META.contains(m) => out.push(m),
                _ => return None,
            },
            c if META.contains(c) => return None,
            c => out.push(c),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Hex digits → text, when the bytes are UTF-8.
fn hex_text(hex: &str) -> Option<String> {
    if hex.len() % 2 != 0 || hex.is_empty() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn http(
    option_at: Loc,
    method: &str,
    uri: &str,
    version: &str,
    rules: &[Line],
    tally: &mut Tally,
) -> CheckKind {
    let mut method = method.to_owned();
    let mut uri = uri.to_owned();
    let mut method_at = option_at;
    // The old way of adding headers: "HTTP/1.1\r\nHost:\ www" in the version.
    let mut host = version
        .split("\r\n")
        .skip(1)
        .find_map(|h| h.strip_prefix("Host:").or_else(|| h.strip_prefix("host:")))
        .map(|h| h.trim().to_owned());
    let mut expect_status = None;
    for rule in rules {
        let words = rule_words(rule);
        match words.first().copied() {
            Some("send") => {
                tally.carried(rule.at);
                let mut i = 1;
                while i < words.len() {
                    let (key, arg) = (words[i], words.get(i + 1).copied().unwrap_or(""));
                    match key {
                        "meth" => {
                            method = arg.to_owned();
                            method_at = rule.at;
                        }
                        "uri" => uri = arg.to_owned(),
                        "ver" => {}
                        "hdr" if arg.eq_ignore_ascii_case("host") => {
                            host = words.get(i + 2).map(|h| (*h).to_owned());
                            i += 1;
                        }
                        "hdr" => {
                            let shown = format!("hdr {arg} {}", words.get(i + 2).unwrap_or(&""));
                            tally.part_not_carried(rule.at, &shown, "coexist's HTTP check sends Host only");
                            i += 1;
                        }
                        _ => tally.part_not_carried(
                            rule.at,
                            &format!("{key} {arg}"),
                            "coexist's HTTP check sends no body and no other request parts",
                        ),
                    }
                    i += 2;
                }
            }
            Some("expect") => match status(&words[1..]) {
                Some(s) => {
                    tally.carried(rule.at);
                    expect_status = Some(s);
                }
                None => tally.not_carried(
                    rule.at,
                    "coexist's HTTP check expects a status (a code, a range or a class like 2xx); it accepts 200-399",
                ),
            },
            Some("comment") | Some("connect") if words.len() == 1 => tally.carried(rule.at),
            _ => tally.not_carried(rule.at, "no counterpart in coexist's HTTP check"),
        }
    }
    if !method.eq_ignore_ascii_case("GET") {
        tally.changed(
            method_at,
            format!("coexist's HTTP check sends GET, not {method}"),
        );
    }
    let path =
        if uri.starts_with('/') && !uri.contains(|c: char| c.is_whitespace() || c.is_control()) {
            uri
        } else {
            tally.changed(
                option_at,
                format!("coexist checks path \"/\" instead of {uri:?}"),
            );
            "/".to_owned()
        };
    let host = host
        .filter(|h| !h.is_empty() && !h.contains(|c: char| c.is_whitespace() || c.is_control()));
    CheckKind::Http {
        path,
        host,
        expect_status,
    }
}

/// `status 200`, `status 200-399`, `rstatus ^2` → coexist's expect_status.
fn status(words: &[&str]) -> Option<String> {
    let code = |t: &str| t.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    match words {
        ["status", s] => {
            if let Some((a, b)) = s.split_once('-') {
                let (a, b) = (code(a)?, code(b)?);
                (a <= b).then(|| format!("{a}-{b}"))
            } else {
                code(s).map(|c| c.to_string())
            }
        }
        ["rstatus", re] => {
            let digit = re
                .strip_prefix('^')?
                .trim_end_matches('$')
                .trim_end_matches("[0-9][0-9]");
            match digit.as_bytes() {
                [d @ b'1'..=b'5'] => Some(format!("{}xx", *d as char)),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_expectations() {
        assert_eq!(status(&["status", "200"]).as_deref(), Some("200"));
        assert_eq!(status(&["status", "200-399"]).as_deref(), Some("200-399"));
        assert_eq!(status(&["rstatus", "^2"]).as_deref(), Some("2xx"));
        assert_eq!(
            status(&["rstatus", "^3[0-9][0-9]$"]).as_deref(),
            Some("3xx")
        );
        assert_eq!(status(&["rstatus", "^(2|3)"]), None);
        assert_eq!(status(&["!", "status", "500"]), None);
        assert_eq!(status(&["string", "OK"]), None);
    }

    #[test]
    fn binary_and_anchored_expectations() {
        assert_eq!(hex_text("50494e470d0a").as_deref(), Some("PING\r\n"));
        assert_eq!(hex_text("ff00"), None);
        assert_eq!(hex_text("abc"), None);
        assert_eq!(anchored_literal(r"^\+OK").as_deref(), Some("+OK"));
        assert_eq!(anchored_literal("^220 ").as_deref(), Some("220 "));
        assert_eq!(anchored_literal("^+OK"), None);
        assert_eq!(anchored_literal("^a.b"), None);
        assert_eq!(anchored_literal("OK"), None);
    }
}
