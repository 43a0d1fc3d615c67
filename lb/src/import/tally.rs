//! The account of every input directive: carried over, carried with a
//! difference, not carried, or part of a block reported as a whole.

use std::collections::BTreeMap;
use std::fmt;

/// Where a directive is: the index of its source and its 1-based line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Loc {
    pub source: usize,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// Nothing of the directive is in the output.
    NotCarried,
    /// It is in the output, but coexist behaves differently in a way the
    /// operator should check.
    Changed,
}

/// One directive the output does not (exactly) carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub origin: String,
    pub line: usize,
    /// The directive as written (comments and surrounding space removed).
    pub directive: String,
    pub kind: NoteKind,
    pub reason: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NoteKind::NotCarried => "not carried",
            NoteKind::Changed => "changed",
        };
        write!(
            f,
            "{}:{}: {kind}: `{}`: {}",
            self.origin, self.line, self.directive, self.reason
        )
    }
}

#[derive(Debug, Default)]
struct Line {
    text: String,
    carried: bool,
    /// Reported as part of an enclosing block's note.
    covered: bool,
    noted: bool,
}

/// Collects the account while the translators run.
#[derive(Debug)]
pub(super) struct Tally {
    origins: Vec<String>,
    lines: BTreeMap<Loc, Line>,
    notes: Vec<(Loc, Note)>,
}

/// Said of a directive nothing claimed: understood, but no part of the
/// output depends on it (e.g. defaults that no carried proxy inherits).
const UNUSED: &str = "nothing carried over uses it";

impl Tally {
    pub fn new(origins: Vec<String>) -> Tally {
        Tally {
            origins,
            lines: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// Registers a directive; every registered one ends up accounted for.
    /// The first text registered for a line names it in notes.
    pub fn seen(&mut self, at: Loc, text: &str) {
        let line = self.lines.entry(at).or_default();
        if line.text.is_empty() {
            // Tabs and runs of blanks read badly in a one-line note.
            line.text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        }
    }

    pub fn carried(&mut self, at: Loc) {
        self.lines.entry(at).or_default().carried = true;
    }

    /// The directive at `at` is part of a block that a note reports whole.
    pub fn cover(&mut self, at: Loc) {
        self.lines.entry(at).or_default().covered = true;
    }

    pub fn not_carried(&mut self, at: Loc, reason: impl Into<String>) {
        self.note(at, NoteKind::NotCarried, None, reason.into());
    }

    /// Like [`Self::not_carried`], naming a part of the line (an option of
    /// a `server` line, say) rather than the whole line.
    pub fn part_not_carried(&mut self, at: Loc, part: &str, reason: impl Into<String>) {
        self.note(at, NoteKind::NotCarried, Some(part), reason.into());
    }

    pub fn changed(&mut self, at: Loc, reason: impl Into<String>) {
        self.note(at, NoteKind::Changed, None, reason.into());
    }

    pub fn part_changed(&mut self, at: Loc, part: &str, reason: impl Into<String>) {
        self.note(at, NoteKind::Changed, Some(part), reason.into());
    }

    fn note(&mut self, at: Loc, kind: NoteKind, part: Option<&str>, reason: String) {
        let line = self.lines.entry(at).or_default();
        line.noted = true;
        let directive = match part {
            Some(p) => p.to_owned(),
            None => line.text.clone(),
        };
        let duplicate = self.notes.iter().any(|(l, n)| {
            *l == at && n.kind == kind && n.directive == directive && n.reason == reason
        });
        if !duplicate {
            let origin = self.origins[at.source].clone();
            self.notes.push((
                at,
                Note {
                    origin,
                    line: at.line,
                    directive,
                    kind,
                    reason,
                },
            ));
        }
    }

    /// The notes in source order (unclaimed directives reported), and the
    /// origin and line of every directive carried over.
    pub fn finish(mut self) -> (Vec<Note>, Vec<(String, usize)>) {
        let unclaimed: Vec<Loc> = self
            .lines
            .iter()
            .filter(|(_, l)| !l.carried && !l.covered && !l.noted && !l.text.is_empty())
            .map(|(at, _)| *at)
            .collect();
        for at in unclaimed {
            self.not_carried(at, UNUSED);
        }
        // Stable: notes about one line keep the order they were made in.
        self.notes.sort_by_key(|(at, _)| *at);
        let carried = self
            .lines
            .iter()
            .filter(|(_, l)| l.carried)
            .map(|(at, _)| (self.origins[at.source].clone(), at.line))
            .collect();
        (self.notes.into_iter().map(|(_, n)| n).collect(), carried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize) -> Loc {
        Loc { source: 0, line }
    }

    #[test]
    fn every_seen_line_is_accounted_for() {
        let mut t = Tally::new(vec!["h.cfg".into()]);
        t.seen(at(1), "  mode\t\ttcp ");
        t.seen(at(2), "log global");
        t.seen(at(3), "server s1 192.0.2.1:80 check");
        t.seen(at(4), "stick-table type ip size 1k");
        t.seen(at(5), "timeout queue 5s");
        t.carried(at(1));
        t.carried(at(3));
        t.part_not_carried(at(3), "slowstart 10s", "no slow start");
        t.cover(at(4));
        t.not_carried(at(2), "logs go to the journal");
        let (notes, carried) = t.finish();
        let shown: Vec<String> = notes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "h.cfg:2: not carried: `log global`: logs go to the journal",
                "h.cfg:3: not carried: `slowstart 10s`: no slow start",
                "h.cfg:5: not carried: `timeout queue 5s`: nothing carried over uses it",
            ]
        );
        assert_eq!(carried, [("h.cfg".to_owned(), 1), ("h.cfg".to_owned(), 3)]);
    }

    #[test]
    fn the_same_note_twice_is_kept_once() {
        let mut t = Tally::new(vec!["k.conf".into()]);
        t.seen(at(7), "default-server ssl");
        t.not_carried(at(7), "TLS");
        t.not_carried(at(7), "TLS");
        assert_eq!(t.finish().0.len(), 1);
    }
}
