//! BIRD's CLI replies, parsed without a socket.
//!
//! Every reply line starts with a four-digit code and a separator: `-` when
//! more lines follow, a space on the last line. A line starting with a space
//! continues the previous code. Codes 0xxx report success, 1xxx and 2xxx
//! carry data, 8xxx are run-time errors (no such protocol, access denied)
//! and 9xxx parse errors.

use std::fmt;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Each line's code and text (continuations carry their code on).
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    /// The first error line, if BIRD refused the command.
    pub fn error(&self) -> Option<BirdRefusal> {
        (self.lines.iter())
            .find(|(code, _)| *code >= 8000)
            .map(|(code, text)| BirdRefusal {
                code: *code,
                text: text.clone(),
            })
    }

    pub fn has_code(&self, code: u16) -> bool {
        self.lines.iter().any(|(c, _)| *c == code)
    }
}

/// A reply code BIRD uses for an error, with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdRefusal {
    pub code: u16,
    pub text: String,
}

impl fmt::Display for BirdRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BIRD replied {:04} {}", self.code, self.text)
    }
}

/// The greeting BIRD sends on connect.
pub const WELCOME: u16 = 1;
/// `enable`: the protocol was disabled and is now enabled.
pub const ENABLED: u16 = 11;
/// `enable`: it was enabled already.
pub const ALREADY_ENABLED: u16 = 10;
/// `disable`: the protocol was enabled and is now disabled.
pub const DISABLED: u16 = 9;
/// `disable`: it was disabled already.
pub const ALREADY_DISABLED: u16 = 8;

/// A line that is not BIRD's reply format: the peer is not BIRD's CLI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a BIRD reply line: {line:?}")]
pub struct Malformed {
    pub line: String,
}

/// Assembles replies from lines (without their line ending).
#[derive(Debug, Default)]
pub struct ReplyParser {
    lines: Vec<(u16, String)>,
}

impl ReplyParser {
    /// Takes one line; returns the reply it completes, if it does.
    pub fn push(&mut self, line: &str) -> Result<Option<Reply>, Malformed> {
        let malformed = || Malformed {
            line: line.to_owned(),
        };
        if let Some(text) = line.strip_prefix(' ') {
            let code = self.lines.last().ok_or_else(malformed)?.0;
            self.lines.push((code, text.to_owned()));
            return Ok(None);
        }
        let digits = line.get(..4).ok_or_else(malformed)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let code: u16 = digits.parse().map_err(|_| malformed())?;
        let (last, text) = match line.get(4..5) {
            Some("-") => (false, &line[5..]),
            Some(" ") => (true, &line[5..]),
            // "0000" alone: some versions end a reply without the space.
            None => (true, ""),
            Some(_) => return Err(malformed()),
        };
        self.lines.push((code, text.to_owned()));
        if !last {
            return Ok(None);
        }
        Ok(Some(Reply {
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// The outcome of `enable` or `disable` of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    /// BIRD changed the protocol's state.
    Changed,
    /// It was in that state already.
    Unchanged,
}

/// Reads the reply to `enable` (`enable == true`) or `disable`.
pub fn toggle_outcome(reply: &Reply, enable: bool) -> Result<Toggle, ToggleError> {
    if let Some(refusal) = reply.error() {
        return Err(ToggleError::Refused(refusal));
    }
    let (changed, unchanged) = if enable {
        (ENABLED, ALREADY_ENABLED)
    } else {
        (DISABLED, ALREADY_DISABLED)
    };
    if reply.has_code(changed) {
        Ok(Toggle::Changed)
    } else if reply.has_code(unchanged) {
        Ok(Toggle::Unchanged)
    } else {
        Err(ToggleError::Unexpected(reply.clone()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToggleError {
    #[error("{0}")]
    Refused(BirdRefusal),
    #[error("unexpected BIRD reply {:?}", .0.lines)]
    Unexpected(Reply),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text`'s lines; returns every completed reply.
    fn parse(text: &str) -> Vec<Reply> {
        let mut parser = ReplyParser::default();
        (text.lines())
            .filter_map(|l| parser.push(l).expect("well-formed"))
            .collect()
    }

    fn line(code: u16, text: &str) -> (u16, String) {
        (code, text.to_owned())
    }

    // Input: the greeting and the replies BIRD 2.0.12 sent to enable,
    // enable again, disable, disable again (captured from a real BIRD).
    #[test]
    fn reads_bird_2_toggle_replies() {
        let replies = parse(
            "0001 BIRD 2.0.12 ready.\n\
             0011-coexist_web_v4: enabled\n0000 \n\
             0010-coexist_web_v4: already enabled\n0000 \n\
             0009-coexist_web_v4: disabled\n0000 \n\
             0008-coexist_web_v4: already disabled\n0000 \n",
        );
        assert_eq!(replies.len(), 5);
        assert!(replies[0].has_code(WELCOME));
        assert_eq!(
            replies[1].lines,
            [line(11, "coexist_web_v4: enabled"), line(0, "")]
        );
        assert_eq!(toggle_outcome(&replies[1], true), Ok(Toggle::Changed));
        assert_eq!(toggle_outcome(&replies[2], true), Ok(Toggle::Unchanged));
        assert_eq!(toggle_outcome(&replies[3], false), Ok(Toggle::Changed));
        assert_eq!(toggle_outcome(&replies[4], false), Ok(Toggle::Unchanged));
    }

    // Input: a multi-line table whose rows continue with a leading space.
    // Output: one reply, continuation lines carry the code on.
    #[test]
    fn continuation_lines_keep_their_code() {
        let replies = parse(
            "2002-Name       Proto      Table      State  Since         Info\n\
             1002-device1    Device     ---        up     04:29:53.525  \n \
             coexist_web_v4 Static     master4    up     04:29:55.905  \n\
             0000 \n",
        );
        assert_eq!(replies.len(), 1);
        let codes: Vec<u16> = replies[0].lines.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, [2002, 1002, 1002, 0]);
        assert!(replies[0].lines[2].1.starts_with("coexist_web_v4 Static"));
        assert_eq!(replies[0].error(), None);
    }

    // Input: the one-line errors BIRD gives for a missing protocol (8003)
    // and for a name its parser rejects (9001).
    // Output: refusals with code and text, never "unchanged".
    #[test]
    fn error_codes_are_refusals() {
        let replies = parse(
            "8003 No protocols match\n\
             9001 syntax error, unexpected CF_SYM_UNDEFINED, expecting CF_SYM_KNOWN or TEXT or ALL\n",
        );
        let refused = toggle_outcome(&replies[0], true).unwrap_err();
        assert_eq!(
            refused,
            ToggleError::Refused(BirdRefusal {
                code: 8003,
                text: "No protocols match".into()
            })
        );
        assert_eq!(refused.to_string(), "BIRD replied 8003 No protocols match");
        let parse_error = replies[1].error().unwrap();
        assert_eq!(parse_error.code, 9001);
        // 8007: access denied (a restricted socket).
        let denied = parse("8007 Access denied\n");
        assert!(matches!(
            toggle_outcome(&denied[0], false),
            Err(ToggleError::Refused(BirdRefusal { code: 8007, .. }))
        ));
    }

    // Input: a reply to `enable` that says "disabled".
    // Output: an error, not a silent success.
    #[test]
    fn a_reply_for_the_other_toggle_is_unexpected() {
        let replies = parse("0009-coexist_web_v4: disabled\n0000 \n");
        assert!(matches!(
            toggle_outcome(&replies[0], true),
            Err(ToggleError::Unexpected(_))
        ));
    }

    // Input: lines that are not BIRD's format.
    #[test]
    fn rejects_what_is_not_a_reply() {
        let mut p = ReplyParser::default();
        assert!(p.push(" continuation first").is_err());
        assert!(p.push("HTTP/1.1 200 OK").is_err());
        assert!(p.push("12").is_err());
        assert!(p.push("0011+x").is_err());
        // A bare "0000" ends a reply.
        assert_eq!(
            p.push("0000").unwrap(),
            Some(Reply {
                lines: vec![line(0, "")]
            })
        );
    }
}
