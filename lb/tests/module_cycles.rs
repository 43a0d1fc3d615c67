//! No module of `lb` depends on itself through others: the modules under
//! each parent form a directed acyclic graph.
//!
//! The check reads the sources: every `crate::…` and `super::…` path
//! (in `use` lines and in code, groups `{a, b}` included) is an edge from
//! the module of the file to the module the path names, lifted to the two
//! siblings under their closest common parent (`config::validate` naming
//! `config::raw` is an edge validate → raw under `config`). Test modules
//! are left out: they may reach anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

#[test]
fn lb_has_no_module_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src);
    let modules: BTreeSet<ModPath> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges = BTreeSet::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for target in references(module, &without_tests(&text)) {
            let Some(target) = resolve(&modules, &target) else {
                continue;
            };
            if let Some(edge) = lift(module, &target) {
                edges.insert(edge);
            }
        }
    }
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "module cycles in lb:\n{}",
        cycles.join("\n")
    );
}

// The checker itself: the two cycles this test was written against.
#[test]
fn the_check_finds_a_cycle_between_siblings_and_below_them() {
    let m = |s: &str| -> ModPath { s.split("::").map(str::to_owned).collect() };
    let modules: BTreeSet<ModPath> = [
        "config",
        "config::validate",
        "balance",
        "health",
        "health::check",
        "runtime",
    ]
    .iter()
    .map(|s| m(s))
    .collect();
    let refs = [
        ("config::validate", "crate::balance::is_prime"),
        ("balance", "crate::config::Balance"),
        ("health::check", "crate::runtime::{ServerRuntime, Snapshot}"),
        ("runtime", "use crate::health::{self, ServerHealth};"),
    ];
    let mut edges = BTreeSet::new();
    for (from, line) in refs {
        for target in references(&m(from), line) {
            let target = resolve(&modules, &target).unwrap();
            edges.extend(lift(&m(from), &target));
        }
    }
    assert_eq!(
        cycles(&edges),
        [
            "balance -> config -> balance",
            "health -> runtime -> health"
        ]
    );
}

/// Every `.rs` file of the library with its module path (`src/lib.rs` is
/// the root; the binary's `main.rs` and `tests` modules are left out).
fn sources(src: &Path) -> Vec<(ModPath, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: ModPath = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            if module == ["main"] || module.iter().any(|m| m == "tests") {
                continue;
            }
            out.push((module, path));
        }
    }
    out.sort();
    out
}

/// The text without comments and without an inline `#[cfg(test)] mod`.
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            match lines.peek() {
                Some(next) if next.trim_end().ends_with(';') => {
                    lines.next();
                    continue;
                }
                _ => break,
            }
        }
        let code = line.split("//").next().unwrap_or_default();
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The absolute paths named from `module` by `crate::` and `super::`.
fn references(module: &ModPath, text: &str) -> Vec<ModPath> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let starts_path = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        let base = if !starts_path {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            let mut base = module.clone();
            let mut len = 0;
            while text[i + len..].starts_with("super::") {
                base.pop();
                len += "super::".len();
            }
            Some((base, len))
        } else {
            None
        };
        match base {
            Some((base, len)) => {
                let (paths, used) = tree(&text[i + len..]);
                out.extend(paths.into_iter().map(|p| [base.clone(), p].concat()));
                i += len + used.max(1);
            }
            None => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    out
}

/// A use tree (`a::b`, `a::{b, c::d}`, `self`) at the start of `text`:
/// its paths, and how many bytes it took.
fn tree(text: &str) -> (Vec<ModPath>, usize) {
    let ident_end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    if ident_end > 0 {
        let ident = text[..ident_end].to_owned();
        let after = &text[ident_end..];
        if let Some(rest) = after.strip_prefix("::") {
            let (paths, used) = tree(rest);
            let paths = paths
                .into_iter()
                .map(|p| [vec![ident.clone()], p].concat())
                .collect();
            return (paths, ident_end + 2 + used);
        }
        let path = if ident == "self" { vec![] } else { vec![ident] };
        return (vec![path], ident_end);
    }
    if let Some(inner) = text.strip_prefix('{') {
        let mut paths = Vec::new();
        let mut pos = 0;
        loop {
            let item = &inner[pos..];
            let skip = item.len() - item.trim_start().len();
            pos += skip;
            if inner[pos..].starts_with('}') {
                return (paths, 1 + pos + 1);
            }
            let (sub, used) = tree(&inner[pos..]);
            paths.extend(sub);
            pos += used.max(1);
            let item = &inner[pos..];
            let skip = item.len() - item.trim_start().len();
            pos += skip;
            if inner[pos..].starts_with(',') {
                pos += 1;
            }
            if pos >= inner.len() {
                return (paths, 1 + pos);
            }
        }
    }
    (vec![vec![]], 0)
}

/// The deepest known module a path is in.
fn resolve(modules: &BTreeSet<ModPath>, path: &ModPath) -> Option<ModPath> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

/// `from` → `to` as an edge between the two siblings under their closest
/// common parent; `None` between a module and its own ancestors or
/// descendants.
fn lift(from: &ModPath, to: &ModPath) -> Option<(ModPath, ModPath)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((from[..=common].to_vec(), to[..=common].to_vec()))
}

/// Each cycle once, as `a -> b -> a`, from its smallest module.
fn cycles(edges: &BTreeSet<(ModPath, ModPath)>) -> Vec<String> {
    let mut next: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    let mut found = BTreeSet::new();
    for start in next.keys() {
        let mut stack = vec![(*start, vec![*start])];
        while let Some((at, path)) = stack.pop() {
            for &n in next.get(at).into_iter().flatten() {
                if n == *start {
                    let names: Vec<String> =
                        path.iter().chain([&n]).map(|m| m.join("::")).collect();
                    if path.iter().all(|m| *m >= *start) {
                        found.insert(names.join(" -> "));
                    }
                } else if !path.contains(&n) && n > *start {
                    let mut longer = path.clone();
                    longer.push(n);
                    stack.push((n, longer));
                }
            }
        }
    }
    found.into_iter().collect()
}
