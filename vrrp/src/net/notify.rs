//! The `notify` command: run on every state change with `<instance>
//! <state> <priority>`, one at a time per instance so a script sees the
//! changes in order, off the protocol's task so it never delays adverts.

use std::process::Stdio;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

/// A hung script is killed after this long, so calls do not pile up.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Notifier {
    tx: mpsc::UnboundedSender<(String, u8)>,
}

impl Notifier {
    /// `command` is run through `sh -c`, so it may carry its own
    /// arguments; the three values are appended as positional arguments.
    pub(super) fn spawn(command: String, instance: String, timeout: Duration) -> Notifier {
        let (tx, rx) = mpsc::unbounded_channel();
        // Its lines belong to the instance that spawns it.
        tokio::spawn(run(command, instance, timeout, rx).instrument(tracing::Span::current()));
        Notifier { tx }
    }

    pub(super) fn notify(&self, state: &str, priority: u8) {
        // The queue ends only with the instance; nothing to report then.
        let _ = self.tx.send((state.to_owned(), priority));
    }
}

async fn run(
    command: String,
    instance: String,
    timeout: Duration,
    mut rx: mpsc::UnboundedReceiver<(String, u8)>,
) {
    while let Some((state, priority)) = rx.recv().await {
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{command} \"$@\""))
            .arg("coexist-notify")
            .arg(&instance)
            .arg(&state)
            .arg(priority.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(command, error = %e, "notify command could not start");
                continue;
            }
        };
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => tracing::warn!(command, state, %status, "notify command failed"),
            Ok(Err(e)) => tracing::warn!(command, error = %e, "notify command failed"),
            Err(_) => {
                let _ = child.kill().await;
                tracing::warn!(command, state, ?timeout, "notify command killed: too slow");
            }
        }
    }
}
