//! `coexist run --watch`: reload when the config file changes.
//!
//! Editors and configuration tools often replace a file by writing a new
//! one and renaming it over the old, which a watch on the file itself would
//! lose after the first save. Watching the directory and matching the file
//! name survives that. Bursts of events (write, chmod, rename) are
//! debounced into one reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the file must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Keeps the OS watch alive; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<()>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {} for changes: {error}", path.display())]
pub struct WatchError {
    path: PathBuf,
    error: notify::Error,
}

impl ConfigWatch {
    pub fn new(config: &Path) -> Result<Self, WatchError> {
        let config = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
        let directory = config
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let name = config.file_name().map(ToOwned::to_owned);
        let (tx, events) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                if event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
                    // A full channel already holds a pending wake-up.
                    let _ = tx.try_send(());
                }
            })
            .map_err(|error| WatchError {
                path: directory.clone(),
                error,
            })?;
        watcher
            .watch(&directory, RecursiveMode::NonRecursive)
            .map_err(|error| WatchError {
                path: directory.clone(),
                error,
            })?;
        Ok(Self {
            _watcher: watcher,
            events,
        })
    }

    /// Resolves once the file changed and then stayed quiet for [`DEBOUNCE`].
    pub async fn changed(&mut self) {
        if self.events.recv().await.is_none() {
            // The watcher thread is gone; never fire again.
            std::future::pending::<()>().await;
        }
        loop {
            match tokio::time::timeout(DEBOUNCE, self.events.recv()).await {
                Ok(Some(())) => continue,
                _ => return,
            }
        }
    }
}
