//! keepalived's grammar: words separated by blanks, `{` ... `}` around the
//! statements of a block, `#` or `!` starting a comment, quotes (`"` or `'`)
//! keeping blanks inside a word.

use crate::import::tally::{Loc, Tally};

/// A statement and, when it opens a block, the statements inside.
#[derive(Debug, Clone, Default)]
pub(super) struct Node {
    pub at: Loc,
    pub words: Vec<String>,
    pub children: Vec<Node>,
    /// The line of the closing brace of a block.
    pub end: usize,
}

impl Node {
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    pub fn word(&self, i: usize) -> &str {
        self.words.get(i).map_or("", String::as_str)
    }

    /// The statement as written, for notes.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }

    /// Every line of this statement and of the statements inside it.
    pub fn all_lines(&self) -> Vec<Loc> {
        let mut out = vec![self.at];
        for c in &self.children {
            out.extend(c.all_lines());
        }
        out
    }

    /// The last line the statement spans.
    pub fn last_line(&self) -> usize {
        self.end.max(self.at.line)
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
}

/// The words and braces of one line; `None` when a quote is not closed.
fn tokens(line: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let mut started = false;
    let flush = |word: &mut String, started: &mut bool, out: &mut Vec<Token>| {
        if *started {
            out.push(Token::Word(std::mem::take(word)));
            *started = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' if !started => break,
            c if c.is_whitespace() => flush(&mut word, &mut started, &mut out),
            '{' | '}' => {
                flush(&mut word, &mut started, &mut out);
                out.push(if c == '{' { Token::Open } else { Token::Close });
            }
            '"' | '\'' => {
                started = true;
                loop {
                    match chars.next()? {
                        q if q == c => break,
                        '\\' => match chars.next()? {
                            'n' => word.push('\n'),
                            't' => word.push('\t'),
                            'r' => word.push('\r'),
                            other => word.push(other),
                        },
                        other => word.push(other),
                    }
                }
            }
            _ => {
                started = true;
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut started, &mut out);
    Some(out)
}

/// The statements of `text`. What cannot be read is reported: unclosed
/// quotes, stray braces, `include` (the included files are inputs of their
/// own), lines that depend on the config id (`@name ...`) and parameter
/// definitions (`$NAME=...`), which keepalived resolves at start-up.
pub(super) fn parse(source: usize, text: &str, tally: &mut Tally) -> Vec<Node> {
    let mut stack: Vec<Node> = vec![Node::default()];
    let mut parameters = false;
    for (i, raw) in text.lines().enumerate() {
        let at = Loc {
            source,
            line: i + 1,
        };
        let Some(tokens) = tokens(raw) else {
            tally.seen(at, raw);
            tally.not_carried(at, "cannot be read: a quote is not closed");
            continue;
        };
        let words: Vec<&str> = tokens
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        // A line of braces only says nothing to account for.
        if !words.is_empty() {
            tally.seen(at, &words.join(" "));
        }
        if let Some(Token::Word(first)) = tokens.first() {
            if first.starts_with('@') {
                tally.not_carried(
                    at,
                    "applies only where keepalived runs with that config id (-i): copy the line that applies to this node",
                );
                continue;
            }
            if first.starts_with('$') && first.contains('=') {
                parameters = true;
                tally.not_carried(at, "parameter definitions are not expanded by the import");
                continue;
            }
        }
        let mut words: Vec<String> = Vec::new();
        for token in tokens {
            match token {
                Token::Word(w) => words.push(w),
                Token::Open => {
                    let top = stack.last_mut().expect("the root stays");
                    let node = if words.is_empty() {
                        top.children.pop()
                    } else {
                        Some(Node {
                            at,
                            words: std::mem::take(&mut words),
                            children: Vec::new(),
                            end: at.line,
                        })
                    };
                    match node {
                        Some(n) => stack.push(n),
                        None => {
                            tally.seen(at, "{");
                            tally.not_carried(at, "a block opened after nothing");
                        }
                    }
                }
                Token::Close => {
                    close_statement(&mut stack, &mut words, at, parameters, tally);
                    if stack.len() > 1 {
                        let mut done = stack.pop().expect("more than the root");
                        done.end = at.line;
                        stack
                            .last_mut()
                            .expect("the root stays")
                            .children
                            .push(done);
                    } else {
                        tally.seen(at, "}");
                        tally.not_carried(at, "a closing brace without a block");
                    }
                }
            }
        }
        close_statement(&mut stack, &mut words, at, parameters, tally);
    }
    while stack.len() > 1 {
        let open = stack.pop().expect("more than the root");
        tally.not_carried(open.at, "this block is not closed");
        stack
            .last_mut()
            .expect("the root stays")
            .children
            .push(open);
    }
    stack.pop().map(|root| root.children).unwrap_or_default()
}

fn close_statement(
    stack: &mut [Node],
    words: &mut Vec<String>,
    at: Loc,
    parameters: bool,
    tally: &mut Tally,
) {
    if words.is_empty() {
        return;
    }
    let words = std::mem::take(words);
    if parameters && words.iter().any(|w| w.contains('$')) {
        tally.not_carried(at, "uses a parameter, which the import does not expand");
        return;
    }
    // include, and includer/m/w/b/a.
    if words[0] == "include" || (words[0].starts_with("include") && words[0].len() == 8) {
        tally.not_carried(
            at,
            "included files are not read: import them too (--keepalived is repeatable)",
        );
        return;
    }
    stack
        .last_mut()
        .expect("the root stays")
        .children
        .push(Node {
            at,
            words,
            children: Vec::new(),
            end: at.line,
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> (Vec<Node>, Vec<String>) {
        let mut t = Tally::new(vec!["k".into()]);
        let nodes = parse(0, text, &mut t);
        let notes = t.finish().0.iter().map(ToString::to_string).collect();
        (nodes, notes)
    }

    #[test]
    fn blocks_nest_whatever_the_brace_placement() {
        let (nodes, notes) = tree(
            "! comment\nvrrp_instance VI_1 {\n  state BACKUP # trailing\n  virtual_ipaddress { 10.0.0.1/24 dev eth0 }\n}\nvirtual_server 10.0.0.1 80\n{\n  real_server 10.0.0.2 80 {\n  }\n}\n",
        );
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].words, ["vrrp_instance", "VI_1"]);
        assert_eq!(nodes[0].children[0].words, ["state", "BACKUP"]);
        let vip = &nodes[0].children[1];
        assert_eq!(vip.keyword(), "virtual_ipaddress");
        assert_eq!(vip.children[0].words, ["10.0.0.1/24", "dev", "eth0"]);
        assert_eq!(nodes[1].at.line, 6);
        assert_eq!(
            nodes[1].children[0].words,
            ["real_server", "10.0.0.2", "80"]
        );
        assert_eq!(nodes[0].last_line(), 5);
        // Nothing was reported: the translator decides about each line.
        assert_eq!(notes.len(), 5, "{notes:?}");
    }

    #[test]
    fn quotes_keep_blanks() {
        let (nodes, _) = tree("notify_master \"/usr/bin/x.sh a  b\" root\nscript 'a \"b\"'\n");
        assert_eq!(
            nodes[0].words,
            ["notify_master", "/usr/bin/x.sh a  b", "root"]
        );
        assert_eq!(nodes[1].words, ["script", "a \"b\""]);
    }

    #[test]
    fn what_keepalived_resolves_at_start_up_is_reported() {
        let (nodes, notes) = tree(
            "include /etc/keepalived/conf.d/*.conf\n@main priority 200\n$P=100\npriority $P\nbad \"quote\n}\nopen {\n",
        );
        assert_eq!(nodes.len(), 1);
        let joined = notes.join("\n");
        assert!(joined.contains("k:1: not carried: `include"), "{joined}");
        assert!(joined.contains("k:2: not carried: `@main priority 200`: applies only"));
        assert!(joined.contains("k:3:") && joined.contains("k:4:"));
        assert!(joined.contains("k:5: not carried: `bad \"quote`: cannot be read"));
        assert!(joined.contains("k:6:") && joined.contains("closing brace"));
        assert!(joined.contains("k:7:") && joined.contains("not closed"));
    }
}
