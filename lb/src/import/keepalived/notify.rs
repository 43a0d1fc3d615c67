//! keepalived's notify scripts as coexist's one `notify` command.
//!
//! keepalived runs `notify_master`, `notify_backup` and `notify_stop` on
//! entering that state, and `notify` with `INSTANCE <name> <STATE>
//! <priority>` on every change. coexist runs its command through `sh -c`
//! with `<instance> <state> <priority>` appended, state being `master`,
//! `backup` or `initialize` (when stopping). A small shell function
//! dispatches on the state and calls the scripts as keepalived would.

use super::tree::Node;
use crate::import::tally::Tally;

/// The shell function's name in the command.
const FUNCTION: &str = "keepalived_notify";

/// The notify command for the notify statements of an instance, if any
/// could be carried.
pub(super) fn command(statements: &[&Node], tally: &mut Tally) -> Option<String> {
    let mut master = None;
    let mut backup = None;
    let mut stop = None;
    let mut every = None;
    for node in statements {
        let at = node.at;
        let slot = match node.keyword() {
            "notify_master" => &mut master,
            "notify_backup" => &mut backup,
            "notify_stop" => &mut stop,
            "notify" => &mut every,
            "notify_fault" => {
                tally.not_carried(
                    at,
                    "coexist has no fault state: an instance stays backup while it cannot run",
                );
                continue;
            }
            _ => {
                tally.not_carried(at, "no counterpart among coexist's notifications");
                continue;
            }
        };
        let script = node.word(1);
        if script.is_empty() || !script.chars().all(plain) {
            tally.not_carried(
                at,
                "the script has characters a shell would interpret: coexist runs notify through sh; wrap it in a script file",
            );
            continue;
        }
        if node.words.len() > 2 {
            tally.part_changed(
                at,
                &node.words[2..].join(" "),
                "the script runs as coexist's user (the service's User=), not as this user",
            );
        }
        tally.carried(at);
        *slot = Some(script.to_owned());
    }
    if master.is_none() && backup.is_none() && stop.is_none() && every.is_none() {
        return None;
    }
    let assign = |state: &str| {
        if every.is_some() {
            format!("s={state}; ")
        } else {
            String::new()
        }
    };
    let run = |script: &Option<String>| script.as_ref().map_or(String::new(), |s| format!("{s}; "));
    let mut body = format!(
        "case \"$2\" in master) {}{};; backup) {}{};; initialize) {}{};; *) return 0 ;; esac",
        assign("MASTER"),
        run(&master),
        assign("BACKUP"),
        run(&backup),
        assign("STOP"),
        run(&stop),
    );
    if let Some(script) = &every {
        body.push_str(&format!("; {script} INSTANCE \"$1\" \"$s\" \"$3\""));
    }
    Some(format!("{FUNCTION}() {{ {body}; }}; {FUNCTION}"))
}

/// Characters that mean nothing special to sh.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || " /._-+=:,@%".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::tally::Loc;
    use std::process::Command;

    fn node(line: usize, words: &[&str]) -> Node {
        Node {
            at: Loc { source: 0, line },
            words: words.iter().map(|w| (*w).to_owned()).collect(),
            children: Vec::new(),
            end: line,
        }
    }

    /// Runs `command` as coexist does for a change to `state`, with scripts
    /// that print their arguments.
    fn run(command: &str, state: &str) -> String {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{command} \"$@\""))
            .args(["coexist-notify", "VI_1", state, "150"])
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn scripts_run_on_the_states_keepalived_runs_them_on() {
        let mut tally = Tally::new(vec!["k".into()]);
        let statements = [
            node(1, &["notify_master", "echo master-script a1"]),
            node(2, &["notify_backup", "echo backup-script"]),
            node(3, &["notify", "echo every"]),
            node(4, &["notify_fault", "echo fault"]),
        ];
        let refs: Vec<&Node> = statements.iter().collect();
        let command = command(&refs, &mut tally).expect("a command");
        assert_eq!(
            run(&command, "master"),
            "master-script a1\nevery INSTANCE VI_1 MASTER 150\n"
        );
        assert_eq!(
            run(&command, "backup"),
            "backup-script\nevery INSTANCE VI_1 BACKUP 150\n"
        );
        assert_eq!(
            run(&command, "initialize"),
            "every INSTANCE VI_1 STOP 150\n"
        );
        let notes = tally.finish().0;
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].line, 4);
    }

    #[test]
    fn a_single_script_runs_only_on_its_state() {
        let mut tally = Tally::new(vec!["k".into()]);
        let statements = [node(1, &["notify_master", "echo up", "root"])];
        let refs: Vec<&Node> = statements.iter().collect();
        let command = command(&refs, &mut tally).expect("a command");
        assert_eq!(run(&command, "master"), "up\n");
        assert_eq!(run(&command, "backup"), "");
        let notes = tally.finish().0;
        assert!(notes[0]
            .to_string()
            .contains("`root`: the script runs as coexist's user"));
    }

    #[test]
    fn scripts_a_shell_would_read_differently_are_not_carried() {
        let mut tally = Tally::new(vec!["k".into()]);
        let statements = [node(1, &["notify_master", "/bin/x; rm -rf /"])];
        let refs: Vec<&Node> = statements.iter().collect();
        assert_eq!(command(&refs, &mut tally), None);
        assert_eq!(tally.finish().0.len(), 1);
    }
}
