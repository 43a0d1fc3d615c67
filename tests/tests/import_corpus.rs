//! `coexist import` on configurations nobody here wrote: those Debian's
//! haproxy and keepalived packages install (/etc/haproxy/haproxy.cfg, the
//! example configurations under /usr/share/doc/haproxy/examples, the
//! keepalived samples), and the examples of HAProxy's configuration manual
//! that use `mode tcp`. They are read where the packages put them (CI
//! installs the packages); none is copied here.
//!
//! For each: the import ends, every note names its file and line, the
//! per-file summary adds up, and either the output passes `coexist check`
//! (exit 0) or the import says there is nothing to run (exit 1, every
//! directive listed). The table of the corpus is printed
//! (`cargo test --test import_corpus -- --nocapture`).

use std::path::{Path, PathBuf};
use std::process::Command;

const HAPROXY_CFG: &str = "/etc/haproxy/haproxy.cfg";
const HAPROXY_EXAMPLES: &str = "/usr/share/doc/haproxy/examples";
const HAPROXY_MANUAL: &str = "/usr/share/doc/haproxy/configuration.txt.gz";
const KEEPALIVED_SAMPLES: &str = "/usr/share/doc/keepalived/samples";

#[derive(Debug)]
struct Row {
    name: String,
    exit: i32,
    carried: usize,
    changed: usize,
    not_carried: usize,
    /// `coexist check`'s verdict, or why there is none.
    outcome: String,
}

/// The corpus files, or why they are missing (a failure under CI).
fn corpus() -> Option<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut haproxy = vec![PathBuf::from(HAPROXY_CFG)];
    haproxy.extend(files(HAPROXY_EXAMPLES, |n| n.ends_with(".cfg")));
    let keepalived = files(KEEPALIVED_SAMPLES, |n| n.starts_with("keepalived.conf"));
    let missing = if !Path::new(HAPROXY_CFG).exists() {
        Some("haproxy is not installed")
    } else if keepalived.is_empty() {
        Some("keepalived is not installed")
    } else {
        None
    };
    match missing {
        Some(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the import corpus must run under CI, but {why}"
            );
            eprintln!("SKIP import corpus: {why}");
            None
        }
        None => Some((haproxy, keepalived)),
    }
}

fn files(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Runs `coexist import --<dialect> path` and checks what it says.
fn import(dialect: &str, path: &Path, name: &str) -> Row {
    let coexist = coexist_tests::daemon::coexist_binary();
    let out = Command::new(&coexist)
        .args(["import", &format!("--{dialect}")])
        .arg(path)
        .output()
        .expect("run coexist import");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let exit = out.status.code().expect("exited");
    let origin = path.display().to_string();
    let context = || format!("{name}:\n--- stderr\n{stderr}--- stdout\n{stdout}");

    // Every note: coexist: FILE:LINE: not carried|changed: `directive`: reason
    let prefix = format!("coexist: {origin}:");
    let notes: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
    let summary_start = format!("coexist: {origin}: ");
    let (mut changed, mut not_carried) = (0, 0);
    for note in notes.iter().filter(|n| !n.starts_with(&summary_start)) {
        let rest = &note[prefix.len()..];
        let (line, what) = rest
            .split_once(": ")
            .unwrap_or_else(|| panic!("{note}\n{}", context()));
        assert!(
            line.parse::<usize>().is_ok_and(|l| l > 0),
            "no line in {note}\n{}",
            context()
        );
        if what.starts_with("changed: `") {
            changed += 1;
        } else if what.starts_with("not carried: `") {
            not_carried += 1;
        } else {
            panic!("unexpected note {note}\n{}", context());
        }
    }
    let summary = stderr
        .lines()
        .find(|l| l.starts_with(&summary_start) && l.contains("directive(s) carried over"))
        .unwrap_or_else(|| panic!("no summary\n{}", context()));
    let numbers: Vec<usize> = summary[summary_start.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 3, "{summary}");
    assert_eq!(
        (numbers[1], numbers[2]),
        (changed, not_carried),
        "the summary does not add up\n{}",
        context()
    );
    // The output lists the same notes as a comment.
    let commented = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("#   {origin}:")))
        .count();
    assert_eq!(commented, changed + not_carried, "{}", context());

    let outcome = match exit {
        0 => {
            let dir = tempfile::tempdir().expect("temp dir");
            let file = dir.path().join("coexist.toml");
            std::fs::write(&file, &stdout).expect("write output");
            let check = Command::new(&coexist)
                .args(["check", "--config"])
                .arg(&file)
                .output()
                .expect("run coexist check");
            assert!(
                check.status.success(),
                "coexist check refuses the import: {}\n{}",
                String::from_utf8_lossy(&check.stderr),
                context()
            );
            let said = String::from_utf8_lossy(&check.stdout);
            let counts = said.split_once("ok (").map(|(_, r)| r.trim_end());
            counts
                .and_then(|c| c.strip_suffix(')'))
                .unwrap_or(&said)
                .to_owned()
        }
        1 => {
            assert!(stderr.contains("nothing to run"), "{}", context());
            assert!(
                not_carried > 0,
                "nothing to run, nothing listed\n{}",
                context()
            );
            "nothing to run: no frontend, no VRRP".to_owned()
        }
        other => panic!("exit {other}\n{}", context()),
    };
    Row {
        name: name.to_owned(),
        exit,
        carried: numbers[0],
        changed,
        not_carried,
        outcome,
    }
}

/// The examples of HAProxy's manual that configure a proxy in `mode tcp`:
/// each indented block after an "Example" line, kept at its line in the
/// manual (earlier lines blank) so notes point into the manual.
fn manual_tcp_examples(manual: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = manual.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let header = lines[i];
        i += 1;
        if !header.trim_start().starts_with("Example") {
            continue;
        }
        let start = i;
        while i < lines.len()
            && (lines[i].trim().is_empty() || indent(lines[i]) > indent(header))
            && !lines[i].trim_start().starts_with(">>>")
            && !lines[i].trim_start().starts_with("Example")
        {
            i += 1;
        }
        let block = &lines[start..i];
        let tcp = block.iter().any(|l| l.trim() == "mode tcp");
        let proxy = block.iter().any(|l| {
            let w = l.split_whitespace().next().unwrap_or("");
            matches!(w, "listen" | "frontend" | "backend")
        });
        if tcp && proxy {
            let mut text = "\n".repeat(start);
            for l in block {
                text.push_str(l);
                text.push('\n');
            }
            out.push((start + 1, text));
        }
    }
    out
}

fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<52} {:>4} {:>7} {:>7} {:>11}  {}\n",
        "corpus file", "exit", "carried", "changed", "not carried", "coexist check"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<52} {:>4} {:>7} {:>7} {:>11}  {}\n",
            r.name, r.exit, r.carried, r.changed, r.not_carried, r.outcome
        ));
    }
    out
}

#[test]
fn import_corpus_of_debian_packages() {
    let Some((haproxy, keepalived)) = corpus() else {
        return;
    };
    let mut rows = Vec::new();
    for path in &haproxy {
        rows.push(import("haproxy", path, &path.display().to_string()));
    }
    for path in &keepalived {
        let name = path.file_name().unwrap().to_string_lossy();
        rows.push(import("keepalived", path, &format!("samples/{name}")));
    }
    if Path::new(HAPROXY_MANUAL).exists() {
        let manual = Command::new("gzip")
            .args(["-dc", HAPROXY_MANUAL])
            .output()
            .expect("gzip -dc");
        let manual = String::from_utf8_lossy(&manual.stdout);
        let examples = manual_tcp_examples(&manual);
        assert!(
            examples.len() >= 5,
            "the manual's TCP examples were not found: {}",
            examples.len()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        for (line, text) in examples {
            let path = dir.path().join("configuration.txt");
            std::fs::write(&path, text).expect("write example");
            rows.push(import(
                "haproxy",
                &path,
                &format!("configuration.txt example at line {line}"),
            ));
        }
    }
    println!("{}", table(&rows));
    // What an operator would run coexist for is carried: the VRRP and
    // TCP services of the samples.
    let runnable = rows.iter().filter(|r| r.exit == 0).count();
    assert!(runnable * 2 > rows.len(), "{}", table(&rows));
    let sample = rows
        .iter()
        .find(|r| r.name == "samples/keepalived.conf.sample")
        .expect("the main keepalived sample");
    assert_eq!(sample.exit, 0, "{}", table(&rows));
    assert!(
        sample.outcome.contains("1 VRRP instance"),
        "{}",
        table(&rows)
    );
}
