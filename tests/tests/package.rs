//! The Debian package, as an operator meets it: `conf/package/build-deb`
//! builds it, `dpkg -i` installs it on this machine, the files, the
//! `coexist` system user and the shipped configuration are checked, and
//! `dpkg --purge` removes it without a trace but the user (kept, as
//! Debian keeps system users; see conf/package/debian/postrm).
//!
//! It installs system-wide, so it runs only where that is wanted: under CI
//! (`CI=true`) or with `COEXIST_PACKAGE_TEST=1`, as root, on a machine where
//! no coexist package or /etc/coexist exists yet. Elsewhere it says why it
//! skips; under CI a missing prerequisite is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OPT_IN: &str = "COEXIST_PACKAGE_TEST";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[track_caller]
fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `None` when the test may run here; otherwise why not.
fn unavailable() -> Option<String> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if !ci && std::env::var(OPT_IN).as_deref() != Ok("1") {
        return Some(format!(
            "installs a package system-wide: runs under CI=true or with {OPT_IN}=1"
        ));
    }
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("dpkg -i needs root".to_owned())
    } else if !succeeds("dpkg", &["--version"]) {
        Some("dpkg is not installed".to_owned())
    } else if !succeeds("cargo", &["deb", "--version"]) {
        Some("cargo-deb is not installed (cargo install cargo-deb --locked)".to_owned())
    } else if !succeeds("adduser", &["--version"]) && !Path::new("/usr/sbin/adduser").exists() {
        Some("adduser is not installed (the package depends on it)".to_owned())
    } else if succeeds("dpkg", &["-s", "coexist"]) {
        Some("a coexist package is installed already: not touching it".to_owned())
    } else if Path::new("/etc/coexist").exists() {
        Some("/etc/coexist exists already: not touching it".to_owned())
    } else {
        None
    };
    if let Some(why) = &missing {
        assert!(!ci, "the package test must run under CI, but {why}");
    }
    missing
}

/// Purges the package and removes the user this test created, whatever
/// happened: a failed run leaves the machine as it found it.
struct Installed {
    user_existed: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if succeeds("dpkg", &["-s", "coexist"]) {
            let _ = run("dpkg", &["--purge", "coexist"]);
        }
        if !self.user_existed && succeeds("getent", &["passwd", "coexist"]) {
            let _ = run("deluser", &["--system", "--quiet", "coexist"]);
        }
    }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

#[test]
fn debian_package_installs_checks_and_purges() {
    let test = "debian_package_installs_checks_and_purges";
    if let Some(why) = unavailable() {
        eprintln!("SKIP {test}: {why}");
        return;
    }
    // Build: the binary, its generated man pages and completions, the .deb.
    let build = Command::new(repository().join("conf/package/build-deb"))
        .args(["--profile", "deb-test"])
        .current_dir(repository())
        .output()
        .expect("run conf/package/build-deb");
    let stdout = String::from_utf8_lossy(&build.stdout);
    assert!(
        build.status.success(),
        "build-deb failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let deb = repository().join(stdout.lines().last().expect("the .deb path").trim());
    assert!(deb.exists(), "{} was not written", deb.display());

    let _installed = Installed {
        user_existed: succeeds("getent", &["passwd", "coexist"]),
    };
    run_ok("dpkg", &["-i", deb.to_str().expect("utf-8 path")]);

    // The files, where Debian wants them.
    let listed = run_ok("dpkg", &["-L", "coexist"]);
    let files: Vec<&str> = listed.lines().filter(|p| Path::new(p).is_file()).collect();
    for expected in [
        "/usr/bin/coexist",
        "/etc/coexist/coexist.toml",
        "/usr/lib/systemd/system/coexist.service",
        "/usr/share/man/man8/coexist.8.gz",
        "/usr/share/man/man8/coexist-import.8.gz",
        "/usr/share/bash-completion/completions/coexist",
        "/usr/share/zsh/vendor-completions/_coexist",
        "/usr/share/fish/vendor_completions.d/coexist.fish",
        "/usr/share/doc/coexist/copyright",
        "/usr/share/doc/coexist/examples/coexist.toml",
    ] {
        assert!(
            files.contains(&expected),
            "{expected} missing from {files:#?}"
        );
    }
    let conffiles = run_ok("dpkg-query", &["-W", "-f=${Conffiles}", "coexist"]);
    assert!(
        conffiles.contains("/etc/coexist/coexist.toml"),
        "not a conffile: {conffiles}"
    );
    let page = run_ok("gzip", &["-dc", "/usr/share/man/man8/coexist.8.gz"]);
    assert!(page.contains(".TH coexist 8"), "{page}");
    assert!(page.contains("coexist\\-import(8)"), "{page}");
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/coexist").unwrap();
    assert!(bash.contains("import") && !bash.contains("package-assets"));
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/coexist.service").unwrap();
    assert!(unit.contains("User=coexist") && unit.contains("ExecStart=coexist run"));

    // The system user the unit runs as.
    let user = run_ok("getent", &["passwd", "coexist"]);
    let fields: Vec<&str> = user.trim().split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "not a system user: {user}");
    assert_eq!(fields[5], "/nonexistent", "{user}");
    assert!(
        fields[6].ends_with("nologin") || fields[6].ends_with("false"),
        "{user}"
    );
    run_ok("getent", &["group", "coexist"]);

    // The shipped configuration passes, found where the package put it.
    let check = run("/usr/bin/coexist", &["check"]);
    let said = String::from_utf8_lossy(&check.stderr);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}{out}");
    assert!(said.contains("using /etc/coexist/coexist.toml"), "{said}");
    assert!(out.starts_with("/etc/coexist/coexist.toml: ok"), "{out}");
    // It binds loopback only.
    let config = std::fs::read_to_string("/etc/coexist/coexist.toml").unwrap();
    let parsed = lb::config::parse(&config, "coexist.toml").expect("valid");
    for f in &parsed.frontends {
        assert!(
            f.listen.iter().all(|a| a.ip().is_loopback()),
            "{:?}",
            f.listen
        );
    }
    assert!(parsed.admin.listen.is_some_and(|a| a.ip().is_loopback()));
    assert!(parsed.vrrp.is_empty(), "no interface may be assumed");

    // Purge: nothing of the package is left but the user.
    run_ok("dpkg", &["--purge", "coexist"]);
    assert!(!succeeds("dpkg", &["-s", "coexist"]), "still installed");
    for file in &files {
        assert!(!Path::new(file).exists(), "{file} is left after purge");
    }
    assert!(!Path::new("/etc/coexist").exists(), "/etc/coexist is left");
    assert!(
        succeeds("getent", &["passwd", "coexist"]),
        "the coexist user is kept on purge (conf/package/debian/postrm)"
    );
}
