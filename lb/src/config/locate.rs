//! From a byte offset in the config text to what an operator needs to find
//! the mistake: a line and column, and a dotted key path like
//! `backend[0].servers[2].address`.
//!
//! Validation knows its key paths; this module serves the errors that come
//! from the TOML parser and serde, which only know a byte span.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Value};

/// 1-based line and column (in characters) of `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The dotted key path of the deepest key or value whose span holds `offset`.
///
/// Uses a span-preserving parse when the text is valid TOML (serde errors:
/// unknown field, wrong type, missing field); falls back to reading the
/// table headers above the offset for syntax errors.
pub(crate) fn key_path(text: &str, offset: usize) -> String {
    match ImDocument::parse(text) {
        Ok(doc) => {
            let mut best = Best::default();
            visit_table(
                doc.as_table().iter_spanned(),
                offset,
                &mut Vec::new(),
                &mut best,
            );
            best.path.map_or_else(String::new, |p| join(&p))
        }
        Err(_) => key_path_by_headers(text, offset),
    }
}

/// The span of the value at `path` (`vrrp[0].track[1].weight`), or, when
/// the text does not have it (a key left out), of its deepest ancestor
/// that it has. `None` when the text is not valid TOML.
pub(crate) fn span_of(text: &str, path: &str) -> Option<Range<usize>> {
    let doc = ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut best = 0..0;
    for segment in parse_path(path) {
        let next = match &segment {
            Segment::Key(k) => item.get(k.as_str()),
            Segment::Index(i) => item.get(*i),
        };
        let Some(next) = next else { break };
        item = next;
        if let Some(span) = item.span() {
            best = span;
        }
    }
    Some(best)
}

/// `a[1].b` → `a`, `1`, `b`: the inverse of [`join`].
fn parse_path(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            out.push(Segment::Key(key.to_owned()));
        }
        out.extend(
            pieces
                .filter_map(|p| p.strip_suffix(']')?.parse().ok())
                .map(Segment::Index),
        );
    }
    out
}

#[derive(Default)]
struct Best {
    path: Option<Vec<Segment>>,
}

impl Best {
    fn offer(&mut self, path: &[Segment]) {
        // Nested items have longer paths, so the longest match is the deepest.
        if self.path.as_ref().is_none_or(|p| p.len() < path.len()) {
            self.path = Some(path.to_vec());
        }
    }
}

#[derive(Clone, Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

fn join(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn holds(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset) || (s.is_empty() && s.start == offset))
}

/// Uniform view of a table's entries: (key, key span, item).
type Entries<'a> = Vec<(&'a str, Option<Range<usize>>, &'a Item)>;

trait IterSpanned {
    fn iter_spanned(&self) -> Entries<'_>;
}

impl IterSpanned for toml_edit::Table {
    fn iter_spanned(&self) -> Entries<'_> {
        self.iter()
            .filter_map(|(k, _)| self.get_key_value(k))
            .map(|(k, v)| (k.get(), k.span(), v))
            .collect()
    }
}

impl IterSpanned for toml_edit::InlineTable {
    fn iter_spanned(&self) -> Entries<'_> {
        self.iter()
            .filter_map(|(k, _)| self.get_key_value(k))
            .map(|(k, v)| (k.get(), k.span(), v))
            .collect()
    }
}

// Header tables' spans may not cover sub-tables declared later in the file,
// so the walk descends everywhere and keeps the deepest hit.
fn visit_table(entries: Entries<'_>, offset: usize, path: &mut Vec<Segment>, best: &mut Best) {
    for (key, key_span, item) in entries {
        path.push(Segment::Key(key.to_owned()));
        if holds(key_span, offset) || holds(item.span(), offset) {
            best.offer(path);
        }
        visit_item(item, offset, path, best);
        path.pop();
    }
}

fn visit_item(item: &Item, offset: usize, path: &mut Vec<Segment>, best: &mut Best) {
    match item {
        Item::Table(t) => visit_table(t.iter_spanned(), offset, path, best),
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                path.push(Segment::Index(i));
                if holds(t.span(), offset) {
                    best.offer(path);
                }
                visit_table(t.iter_spanned(), offset, path, best);
                path.pop();
            }
        }
        Item::Value(v) => visit_value(v, offset, path, best),
        Item::None => {}
    }
}

fn visit_value(value: &Value, offset: usize, path: &mut Vec<Segment>, best: &mut Best) {
    match value {
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Segment::Index(i));
                if holds(v.span(), offset) {
                    best.offer(path);
                }
                visit_value(v, offset, path, best);
                path.pop();
            }
        }
        Value::InlineTable(t) => visit_table(t.iter_spanned(), offset, path, best),
        _ => {}
    }
}

/// Best effort for text that is not valid TOML: the last table header above
/// the offset (counting `[[x]]` repeats into indices) plus the key assigned
/// on the offending line, if any.
pub(crate) fn key_path_by_headers(text: &str, offset: usize) -> String {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut current = String::new();
    for line in text[..line_start].lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name.clone(), 1)),
            }
            current = indexed(&name, &counts);
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = indexed(name.trim(), &counts);
        }
    }
    let line = text[line_start..line_end].trim();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('[') && !k.contains(char::is_whitespace));
    match (current.is_empty(), key) {
        (_, None) => current,
        (true, Some(k)) => k.to_owned(),
        (false, Some(k)) => format!("{current}.{k}"),
    }
}

/// `backend.health_check` with two `[[backend]]` seen → `backend[1].health_check`.
fn indexed(dotted: &str, counts: &[(String, usize)]) -> String {
    let mut out = String::new();
    let mut prefix = String::new();
    for part in dotted.split('.') {
        let part = part.trim();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(part);
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
        if let Some((_, c)) = counts.iter().find(|(n, _)| *n == prefix) {
            out.push_str(&format!("[{}]", c - 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, text.find(" = 2").unwrap()), (2, 3));
    }

    #[test]
    fn key_path_names_array_of_tables_index_and_nested_value() {
        let text = "[[backend]]\nname = \"a\"\n[[backend]]\nname = \"b\"\nservers = [{ address = \"x\" }, { address = \"y\" }]\n";
        let at = text.find("\"y\"").unwrap();
        assert_eq!(key_path(text, at), "backend[1].servers[1].address");
        let at = text.find("name = \"b\"").unwrap();
        assert_eq!(key_path(text, at), "backend[1].name");
    }

    #[test]
    fn span_of_a_path_or_its_deepest_ancestor() {
        let text = "[[vrrp]]\nname = \"a\"\n[[vrrp]]\nname = \"b\"\ntrack = [{ frontend = \"w\", weight = 9 }]\n";
        let at = |path: &str| span_of(text, path).map(|s| &text[s]);
        assert_eq!(at("vrrp[1].track[0].weight"), Some("9"));
        assert_eq!(at("vrrp[1].name"), Some("\"b\""));
        // No `priority` key: its table.
        let table = span_of(text, "vrrp[1].priority").unwrap();
        assert_eq!(table, span_of(text, "vrrp[1]").unwrap());
        assert!(table.start >= text.find("[[vrrp]]\nname = \"b").unwrap());
        assert_eq!(span_of("[[vrrp]", "vrrp"), None);
    }

    #[test]
    fn key_path_of_invalid_toml_uses_headers_above() {
        let text = "[[frontend]]\nname = \"a\"\n[[frontend]]\nname = \"b\n";
        let at = text.rfind("\"b").unwrap();
        assert_eq!(key_path(text, at), "frontend[1].name");
        let text = "[[backend]]\nname = \"a\"\n[backend.health_check]\nkind = = 1\n";
        assert_eq!(
            key_path(text, text.find("= = 1").unwrap()),
            "backend[0].health_check.kind"
        );
    }
}
