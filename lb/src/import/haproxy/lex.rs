//! HAProxy's line grammar: a line is cut into words at spaces and tabs; a
//! backslash escapes one character (`\ `, `\#`, `\\`, `\'`, `\"`, `\$`) or
//! writes one (`\n`, `\r`, `\t`, `\xNN`); double quotes group words and
//! still expand `$VAR`; single quotes group words literally; `#` outside
//! quotes starts a comment.

/// The words of one line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Words {
    pub words: Vec<String>,
    /// A `$VARIABLE` inside double quotes: HAProxy takes its value from the
    /// environment at start-up, which the import cannot know.
    pub environment: bool,
    /// A `\xNN` escape produced bytes that are not UTF-8.
    pub binary: bool,
}

pub(super) fn words(line: &str) -> Result<Words, String> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Double,
        Single,
    }
    let mut out = Words::default();
    let mut word: Vec<u8> = Vec::new();
    // A word exists once something (even an empty pair of quotes) began it.
    let mut started = false;
    let mut quote = Quote::None;
    let bytes = line.as_bytes();
    let mut i = 0;
    let finish = |word: &mut Vec<u8>, started: &mut bool, out: &mut Words| {
        if *started {
            match String::from_utf8(std::mem::take(word)) {
                Ok(w) => out.words.push(w),
                Err(e) => {
                    out.binary = true;
                    out.words
                        .push(String::from_utf8_lossy(e.as_bytes()).into_owned());
                }
            }
            *started = false;
        }
    };
    while i < bytes.len() {
        let c = bytes[i];
        match (&quote, c) {
            (Quote::Single, b'\'') => quote = Quote::None,
            (Quote::Single, _) => word.push(c),
            (Quote::Double, b'"') => quote = Quote::None,
            (Quote::None, b'"') => {
                quote = Quote::Double;
                started = true;
            }
            (Quote::None, b'\'') => {
                quote = Quote::Single;
                started = true;
            }
            (Quote::None, b' ' | b'\t' | b'\r' | b'\n') => {
                finish(&mut word, &mut started, &mut out);
            }
            (Quote::None, b'#') => break,
            (Quote::Double, b'$') => {
                out.environment = true;
                word.push(c);
            }
            (_, b'\\') => {
                started = true;
                let Some(&next) = bytes.get(i + 1) else {
                    return Err("a backslash ends the line".into());
                };
                i += 1;
                match next {
                    b'n' => word.push(b'\n'),
                    b'r' => word.push(b'\r'),
                    b't' => word.push(b'\t'),
                    b'x' => {
                        let hex = line
                            .get(i + 1..i + 3)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                            .ok_or("\\x needs two hexadecimal digits")?;
                        word.push(hex);
                        i += 2;
                    }
                    b' ' | b'#' | b'\\' | b'\'' | b'"' | b'$' => word.push(next),
                    // Anything else keeps its backslash (regular expressions).
                    other => {
                        word.push(b'\\');
                        word.push(other);
                    }
                }
            }
            _ => {
                started = true;
                word.push(c);
            }
        }
        i += 1;
    }
    if quote != Quote::None {
        return Err("a quote is not closed".into());
    }
    finish(&mut word, &mut started, &mut out);
    Ok(out)
}

/// The line without its comment, for notes.
pub(super) fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            _ if escaped => escaped = false,
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), _) => {}
            (_, '\\') => escaped = true,
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => return line[..i].trim(),
            _ => {}
        }
    }
    line.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(line: &str) -> Vec<String> {
        words(line).unwrap().words
    }

    #[test]
    fn words_split_at_blanks_and_stop_at_comments() {
        assert_eq!(
            w("  server s1 192.0.2.1:80\tcheck # a comment"),
            ["server", "s1", "192.0.2.1:80", "check"]
        );
        assert_eq!(w("# only a comment"), Vec::<String>::new());
    }

    #[test]
    fn escapes_and_quotes_follow_section_2_2() {
        assert_eq!(
            w(r"tcp-check send PING\r\n"),
            ["tcp-check", "send", "PING\r\n"]
        );
        assert_eq!(
            w(r"tcp-check send info\ replication\r\n"),
            ["tcp-check", "send", "info replication\r\n"]
        );
        assert_eq!(
            w(r#"x "a b" 'c d' "e"'f' \#g"#),
            ["x", "a b", "c d", "ef", "#g"]
        );
        assert_eq!(w(r#"x '\n' "\n""#), ["x", "\\n", "\n"]);
        assert_eq!(w(r"x \x41\x0a"), ["x", "A\n"]);
        assert_eq!(w(r#"x "" y"#), ["x", "", "y"]);
        assert_eq!(
            w(r"acl a path_reg ^/a\.b"),
            ["acl", "a", "path_reg", r"^/a\.b"]
        );
    }

    #[test]
    fn environment_and_binary_are_flagged() {
        assert!(words(r#"bind "${ADDR}:80""#).unwrap().environment);
        assert!(!words(r"bind $ADDR:80").unwrap().environment);
        assert!(words(r"tcp-check send-binary \xff").unwrap().binary);
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(words(r#"x "open"#).is_err());
        assert!(words(r"x \").is_err());
        assert!(words(r"x \xZZ").is_err());
    }

    #[test]
    fn comments_are_cut_outside_quotes_only() {
        assert_eq!(without_comment(r#"  log "a#b" # c"#), r#"log "a#b""#);
        assert_eq!(without_comment(r"x \# y # z"), r"x \# y");
    }
}
