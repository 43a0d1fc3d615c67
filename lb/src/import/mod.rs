//! `coexist import`: an HAProxy and/or keepalived configuration in, an
//! equivalent `coexist.toml` out.
//!
//! A pure translator: texts come in as strings, a TOML text and the list of
//! what could not be carried over come out. Each dialect is read into the
//! shape its own daemon gives it (sections and defaults for HAProxy, a tree
//! of blocks for keepalived), then mapped onto a [`plan::Plan`] of coexist
//! frontends, backends and VRRP instances, which [`emit`] writes as TOML.
//!
//! Nothing is dropped silently: every directive of the input is accounted
//! for in a [`Tally`] — carried over, carried with a difference the operator
//! must know about, or not carried, each with its `file:line`. A directive
//! that nothing claimed is reported too ("nothing carried over uses it").

mod emit;
mod haproxy;
mod keepalived;
mod plan;
mod tally;
mod values;

#[cfg(test)]
mod tests;

pub use tally::{Note, NoteKind};

use tally::Tally;

/// Which daemon's grammar a text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Haproxy,
    Keepalived,
}

/// One input text and the name its notes are reported under.
#[derive(Debug, Clone)]
pub struct Source {
    pub dialect: Dialect,
    /// Usually the file name as the operator gave it.
    pub origin: String,
    pub text: String,
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The coexist configuration, with the notes as a comment at its top.
    pub toml: String,
    /// Everything not carried over, or carried with a difference, in
    /// source order.
    pub notes: Vec<Note>,
    /// Whether the output has anything to run (a frontend or a VRRP
    /// instance). When not, it is not a valid configuration: coexist
    /// refuses a file with nothing to run.
    pub runnable: bool,
    carried: Vec<(String, usize)>,
}

impl Imported {
    /// How many directives of `origin` were carried over (possibly with a
    /// difference, then also in [`Self::notes`]).
    pub fn carried_in(&self, origin: &str) -> usize {
        self.carried.iter().filter(|(o, _)| o == origin).count()
    }

    /// The notes about `origin`.
    pub fn notes_in<'s>(&'s self, origin: &'s str) -> impl Iterator<Item = &'s Note> + 's {
        self.notes.iter().filter(move |n| n.origin == origin)
    }

    /// One line on what became of `origin`.
    pub fn summary(&self, origin: &str) -> String {
        let count = |kind| self.notes_in(origin).filter(|n| n.kind == kind).count();
        format!(
            "{origin}: {} directive(s) carried over, {} with a difference; {} not carried",
            self.carried_in(origin),
            count(NoteKind::Changed),
            count(NoteKind::NotCarried)
        )
    }
}

/// Translates `sources` (any mix of HAProxy and keepalived texts) into one
/// coexist configuration.
pub fn import(sources: &[Source]) -> Imported {
    let mut tally = Tally::new(sources.iter().map(|s| s.origin.clone()).collect());
    let mut plan = plan::Plan::default();
    for (index, source) in sources.iter().enumerate() {
        match source.dialect {
            Dialect::Haproxy => haproxy::translate(index, &source.text, &mut tally, &mut plan),
            Dialect::Keepalived => {
                keepalived::translate(index, &source.text, &mut tally, &mut plan)
            }
        }
    }
    let (notes, carried) = tally.finish();
    let origins: Vec<&str> = sources.iter().map(|s| s.origin.as_str()).collect();
    Imported {
        toml: emit::render(&plan, &notes, &origins),
        runnable: plan.runnable(),
        notes,
        carried,
    }
}
