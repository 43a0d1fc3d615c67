//! What a package installs besides the binary that is written from the
//! command-line definition itself, so it never drifts from `--help`: man
//! pages (section 8, system administration) and shell completions.

use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// Writes into `dir`: `man/coexist.8` and one page per subcommand
/// (`man/coexist-run.8`, ...), and `completions/` for bash (`coexist`),
/// zsh (`_coexist`) and fish (`coexist.fish`). Hidden subcommands are left
/// out of both. Returns the files written.
pub fn write_assets(cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cmd = visible(&cmd).disable_help_subcommand(true);
    cmd.build();
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut written = Vec::new();
    man_pages(&cmd, &man, &mut written)?;
    let name = cmd.get_name().to_owned();
    for (shell, file) in [
        (Shell::Bash, name.clone()),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let path = completions.join(file);
        let mut out = std::fs::File::create(&path)?;
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut out);
        written.push(path);
    }
    Ok(written)
}

fn man_pages(cmd: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    for sub in cmd.get_subcommands() {
        man_pages(sub, dir, written)?;
    }
    let page = clap_mangen::Man::new(cmd.clone()).section("8");
    written.push(page.generate_to(dir)?);
    Ok(())
}

/// `cmd` without its hidden subcommands (clap_complete would offer them).
fn visible(cmd: &Command) -> Command {
    let mut out = Command::new(cmd.get_name().to_owned())
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_owned());
    }
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    if let Some(a) = cmd.get_long_about() {
        out = out.long_about(a.clone());
    }
    out.subcommand_required(cmd.is_subcommand_required_set())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Command {
        Command::new("coexist")
            .version("1.2.3")
            .about("A balancer")
            .arg(clap::Arg::new("log-format").long("log-format").global(true))
            .subcommand(Command::new("run").about("Run it"))
            .subcommand(Command::new("secret").hide(true))
            .subcommand_required(true)
    }

    #[test]
    fn pages_and_completions_leave_hidden_subcommands_out() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_assets(cli(), dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "man/coexist-run.8",
                "man/coexist.8",
                "completions/coexist",
                "completions/_coexist",
                "completions/coexist.fish"
            ]
        );
        let page = std::fs::read_to_string(dir.path().join("man/coexist.8")).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
        assert!(page.contains(".TH coexist 8"), "{page}");
        assert!(
            page.contains("coexist\\-run(8)") && page.contains("1.2.3"),
            "{page}"
        );
        assert!(page.contains("log\\-format"), "{page}");
        for file in &written {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(!text.contains("secret"), "{}: {text}", file.display());
        }
        let bash = std::fs::read_to_string(dir.path().join("completions/coexist")).unwrap();
        assert!(bash.contains("run") && bash.contains("--log-format"));
    }
}
