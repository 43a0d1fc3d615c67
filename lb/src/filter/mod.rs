//! `accept_mode` on the wire: the kernel's packet filter (nftables) keeps
//! a non-owner master without accept mode from accepting traffic to its
//! virtual addresses, except its frontends' (RFC 9568 §6.4.3).
//!
//! [`ruleset`] says what the rules are, from the configuration alone (why
//! they need not follow the VRRP state is explained there); [`nft`] hands
//! them to the kernel. One task owns coexist's table (`inet coexist`, see
//! [`TABLE`]) and nothing else touches it: [`AcceptFilter`] is its handle.
//! It lives in lb, not in the vrrp crate, because the open ports are the
//! frontends', which the vrrp crate knows nothing of.
//!
//! The table is replaced whole in one transaction on every change, so a
//! run that died (SIGKILL, crash) and left its table behind is cleaned up
//! by the next start's first apply. When the rules cannot be installed
//! (`nft` missing, no permission, a kernel without nf_tables) the daemon
//! keeps running — an HA pair that cannot take over is worse than one that
//! does not filter — and says so: an error in the log, `failed` in
//! `/status`, and a retry every [`RETRY`].

pub mod nft;
pub mod ruleset;

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admin::status::{AcceptFilterStatus, FilterState};
use crate::admin::FilterBoard;
pub use nft::NftError;
pub use ruleset::{Ruleset, Service, Transport, TABLE};

/// How long after a failed install the owner tries again.
pub const RETRY: Duration = Duration::from_secs(30);

/// Carries a script out; the daemon's runs `nft`, tests record them.
pub trait Apply: Send + 'static {
    fn apply(&mut self, script: String) -> impl Future<Output = Result<(), NftError>> + Send;
}

/// The `nft` program.
pub struct Nft;

impl Apply for Nft {
    async fn apply(&mut self, script: String) -> Result<(), NftError> {
        nft::apply(&script).await
    }
}

enum Request {
    Apply(Ruleset, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The handle of the task that owns the table.
pub struct AcceptFilter {
    tx: mpsc::UnboundedSender<Request>,
    task: JoinHandle<()>,
}

impl AcceptFilter {
    /// Spawns the owner with `nft` and applies `ruleset`, replacing (or,
    /// when it is empty, removing) whatever table a previous run left.
    /// Returns once that was tried.
    pub async fn start(ruleset: Ruleset, board: FilterBoard) -> AcceptFilter {
        AcceptFilter::start_with(Nft, ruleset, board, RETRY).await
    }

    /// [`AcceptFilter::start`] with another way to apply scripts and
    /// another retry delay.
    pub async fn start_with(
        applier: impl Apply,
        ruleset: Ruleset,
        board: FilterBoard,
        retry: Duration,
    ) -> AcceptFilter {
        let (tx, rx) = mpsc::unbounded_channel();
        let owner = Owner {
            applier,
            want: Ruleset::default(),
            have: None,
            retry,
            retry_at: None,
            last_error: None,
            board,
        };
        let task = tokio::spawn(owner.run(rx));
        let filter = AcceptFilter { tx, task };
        filter.apply(ruleset).await;
        filter
    }

    /// Makes the table `ruleset` (nothing when it is unchanged). Returns
    /// once that was tried; a failure is logged and shown in `/status`.
    pub async fn apply(&self, ruleset: Ruleset) {
        let (done, applied) = oneshot::channel();
        if self.tx.send(Request::Apply(ruleset, done)).is_ok() {
            let _ = applied.await;
        }
    }

    /// Removes the table and stops the owner. Call it once the virtual
    /// addresses are gone, so that none is ever held unfiltered.
    pub async fn shutdown(self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Request::Shutdown(done)).is_ok() {
            let _ = finished.await;
        }
        let _ = self.task.await;
    }
}

struct Owner<A> {
    applier: A,
    want: Ruleset,
    /// What the kernel holds, as far as this task knows: `None` before the
    /// first apply (a dead run may have left anything) and after a failure.
    have: Option<Ruleset>,
    retry: Duration,
    retry_at: Option<Instant>,
    /// The last failure, logged once until it changes or clears.
    last_error: Option<String>,
    board: FilterBoard,
}

impl<A: Apply> Owner<A> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        loop {
            let retry_at = self.retry_at;
            let retry = async move {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                request = rx.recv() => match request {
                    Some(Request::Apply(ruleset, done)) => {
                        self.want = ruleset;
                        self.converge().await;
                        let _ = done.send(());
                    }
                    Some(Request::Shutdown(done)) => {
                        self.remove().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return self.remove().await,
                },
                () = retry => self.converge().await,
            }
        }
    }

    async fn remove(&mut self) {
        self.want = Ruleset::default();
        self.converge().await;
    }

    async fn converge(&mut self) {
        if self.have.as_ref() == Some(&self.want) {
            return;
        }
        let was_on = self.have.as_ref().is_some_and(|h| !h.is_empty());
        let result = self.applier.apply(self.want.script()).await;
        let addresses = list(self.want.refused());
        match result {
            Ok(()) => {
                self.have = Some(self.want.clone());
                self.retry_at = None;
                self.last_error = None;
                if !self.want.is_empty() {
                    let open = list(self.want.open());
                    tracing::info!(table = TABLE, %addresses, %open, "accept filter installed");
                } else if was_on {
                    tracing::info!(table = TABLE, "accept filter removed");
                } else {
                    tracing::debug!(table = TABLE, "no accept filter needed; none left behind");
                }
            }
            Err(error) if self.want.is_empty() => {
                // Nothing is to be filtered; without a working nft there
                // is no table of ours to remove either.
                self.have = None;
                self.retry_at = None;
                tracing::debug!(table = TABLE, %error, "no accept filter needed; none removed");
            }
            Err(error) => {
                self.have = None;
                self.retry_at = Some(Instant::now() + self.retry);
                let message = error.to_string();
                if self.last_error.as_ref() != Some(&message) {
                    tracing::error!(
                        table = TABLE,
                        %addresses,
                        %error,
                        "accept filter not installed: while master these virtual addresses accept all traffic (accept_mode = false is not enforced)"
                    );
                }
                self.last_error = Some(message);
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let state = if self.want.is_empty() {
            FilterState::Off
        } else if self.have.as_ref() == Some(&self.want) {
            FilterState::On
        } else {
            FilterState::Failed
        };
        let status = AcceptFilterStatus {
            state,
            table: TABLE.to_owned(),
            addresses: self.want.refused().map(ToString::to_string).collect(),
            open: self.want.open().map(ToString::to_string).collect(),
            error: (state == FilterState::Failed)
                .then(|| self.last_error.clone())
                .flatten(),
        };
        *self.board.lock().expect("filter board lock") = status;
    }
}

fn list<T: ToString>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
