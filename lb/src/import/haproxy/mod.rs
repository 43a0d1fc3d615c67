//! HAProxy's configuration, as HAProxy reads it: lines cut into words
//! ([`lex`]), grouped into sections; `defaults` sections give their
//! settings to the proxies after them (or to those naming them with
//! `from`); `frontend`, `backend` and `listen` proxies in `mode tcp` become
//! coexist frontends and backends ([`proxy`]).

mod bind;
mod check;
mod lex;
mod proxy;
mod server;
mod settings;

use super::plan::Plan;
use super::tally::{Loc, Tally};
use settings::Settings;

/// One directive: its words, where it is, and what the lexer noticed.
#[derive(Debug, Clone)]
pub(super) struct Line {
    pub at: Loc,
    pub words: Vec<String>,
    pub environment: bool,
    pub binary: bool,
}

impl Line {
    fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// The word at `i`, or "".
    fn word(&self, i: usize) -> &str {
        self.words.get(i).map_or("", String::as_str)
    }
}

/// A value and the directive that set it.
#[derive(Debug, Clone)]
pub(super) struct At<T> {
    pub at: Loc,
    pub value: T,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
    /// peers, resolvers, userlist, mailers, program, ...
    Other,
}

const SECTIONS: [(&str, Kind); 17] = [
    ("global", Kind::Global),
    ("defaults", Kind::Defaults),
    ("frontend", Kind::Frontend),
    ("backend", Kind::Backend),
    ("listen", Kind::Listen),
    ("peers", Kind::Other),
    ("resolvers", Kind::Other),
    ("userlist", Kind::Other),
    ("mailers", Kind::Other),
    ("program", Kind::Other),
    ("http-errors", Kind::Other),
    ("ring", Kind::Other),
    ("cache", Kind::Other),
    ("log-forward", Kind::Other),
    ("fcgi-app", Kind::Other),
    ("crt-store", Kind::Other),
    ("traces", Kind::Other),
];

#[derive(Debug)]
struct Section {
    kind: Kind,
    header: Line,
    body: Vec<Line>,
}

impl Section {
    fn name(&self) -> Option<&str> {
        self.header
            .words
            .get(1)
            .map(String::as_str)
            .filter(|n| *n != "from")
    }

    /// `from NAME` on the header (HAProxy 2.4+): the defaults to inherit.
    fn from(&self) -> Option<&str> {
        let w = &self.header.words;
        let i = w.iter().position(|x| x == "from")?;
        w.get(i + 1).map(String::as_str)
    }

    fn last_line(&self) -> usize {
        self.body.last().map_or(self.header.at.line, |l| l.at.line)
    }
}

/// A proxy with everything it inherited, ready to translate.
#[derive(Debug)]
pub(super) struct Proxy {
    kind: Kind,
    name: String,
    header: Line,
    /// The last line of the section, for notes about all of it.
    last_line: usize,
    /// Where each line of the section is.
    body: Vec<Loc>,
    settings: Settings,
}

impl Proxy {
    /// `listen web`, `backend db`: how notes name it.
    fn named(&self) -> String {
        format!("{} {}", self.header.keyword(), self.name)
    }
}

pub(super) fn translate(source: usize, text: &str, tally: &mut Tally, plan: &mut Plan) {
    let lines = read(source, text, tally);
    let sections = group(lines, tally);
    let proxies = inherit(sections, tally, plan);
    proxy::translate(&proxies, tally, plan);
}

/// Every non-empty line, cut into words. Lines that cannot be read and
/// conditional blocks (`.if` ... `.endif`, whose conditions depend on the
/// environment of the running HAProxy) are reported and left out.
fn read(source: usize, text: &str, tally: &mut Tally) -> Vec<Line> {
    let mut out = Vec::new();
    // Open `.if` blocks: where each began.
    let mut conditions: Vec<Loc> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = Loc {
            source,
            line: i + 1,
        };
        let shown = lex::without_comment(raw);
        if shown.is_empty() {
            continue;
        }
        tally.seen(at, shown);
        let words = match lex::words(raw) {
            Ok(w) => w,
            Err(problem) => {
                tally.not_carried(at, format!("cannot be read: {problem}"));
                continue;
            }
        };
        let first = words.words.first().map_or("", String::as_str);
        match first {
            ".if" => {
                conditions.push(at);
                continue;
            }
            ".endif" => {
                if let Some(start) = conditions.pop() {
                    tally.not_carried(
                        start,
                        format!(
                            "conditional block (to line {}) not carried: its condition depends on the environment HAProxy starts in; copy the lines that apply",
                            at.line
                        ),
                    );
                }
                tally.cover(at);
                continue;
            }
            _ if !conditions.is_empty() => {
                tally.cover(at);
                continue;
            }
            ".diag" | ".notice" | ".warning" | ".alert" => {
                tally.not_carried(at, "a start-up message of HAProxy");
                continue;
            }
            _ => {}
        }
        out.push(Line {
            at,
            words: words.words,
            environment: words.environment,
            binary: words.binary,
        });
    }
    for start in conditions {
        tally.not_carried(start, "conditional block without .endif");
    }
    out
}

fn group(lines: Vec<Line>, tally: &mut Tally) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in lines {
        match SECTIONS.iter().find(|(k, _)| *k == line.keyword()) {
            Some((_, kind)) => sections.push(Section {
                kind: *kind,
                header: line,
                body: Vec::new(),
            }),
            None => match sections.last_mut() {
                Some(s) => s.body.push(line),
                None => tally.not_carried(line.at, "outside of any section; HAProxy refuses it"),
            },
        }
    }
    sections
}

/// Walks the sections in order: global and other sections are reported,
/// defaults recorded, and each proxy gets the defaults it inherits.
fn inherit(sections: Vec<Section>, tally: &mut Tally, plan: &mut Plan) -> Vec<Proxy> {
    let mut named: Vec<(String, Settings)> = Vec::new();
    let mut last: Settings = Settings::default();
    let mut proxies = Vec::new();
    for section in sections {
        let base = match section.from() {
            Some(name) => {
                match named.iter().find(|(n, _)| n == name) {
                    Some((_, s)) => s.clone(),
                    None => {
                        tally.changed(
                        section.header.at,
                        format!("no defaults section named {name:?} precedes it; read without defaults"),
                    );
                        Settings::default()
                    }
                }
            }
            None => last.clone(),
        };
        match section.kind {
            Kind::Global => {
                // The header names nothing that could be carried.
                tally.cover(section.header.at);
                for line in &section.body {
                    settings::global(line, tally, plan);
                }
            }
            Kind::Other => {
                let reason = format!(
                    "{} section (to line {}): no counterpart in coexist",
                    section.header.keyword(),
                    section.last_line()
                );
                tally.not_carried(section.header.at, reason);
                for line in &section.body {
                    tally.cover(line.at);
                }
            }
            Kind::Defaults => {
                // What a defaults section says counts where a proxy uses it.
                tally.cover(section.header.at);
                let mut s = base;
                for line in &section.body {
                    s.apply(line, Kind::Defaults, tally);
                }
                if let Some(name) = section.name() {
                    named.push((name.to_owned(), s.clone()));
                }
                last = s;
            }
            Kind::Frontend | Kind::Backend | Kind::Listen => {
                let mut s = base;
                s.own_section_started();
                for line in &section.body {
                    s.apply(line, section.kind, tally);
                }
                let last_line = section.last_line();
                proxies.push(Proxy {
                    kind: section.kind,
                    name: section.name().unwrap_or("").to_owned(),
                    last_line,
                    body: section.body.iter().map(|l| l.at).collect(),
                    header: section.header,
                    settings: s,
                });
            }
        }
    }
    proxies
}
