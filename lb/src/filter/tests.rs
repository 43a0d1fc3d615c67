//! The owner task against a recorder instead of `nft`: what it applies
//! when, and what `/status` shows.

use std::sync::{Arc, Mutex};

use coexist_support::wait_until_async;

use super::*;
use crate::config;

/// Records every script; fails while `failing` is set.
#[derive(Clone, Default)]
struct Recorder {
    scripts: Arc<Mutex<Vec<String>>>,
    failing: Arc<Mutex<bool>>,
}

impl Apply for Recorder {
    fn apply(&mut self, script: String) -> impl Future<Output = Result<(), NftError>> + Send {
        let recorder = self.clone();
        async move {
            recorder.scripts.lock().unwrap().push(script);
            if *recorder.failing.lock().unwrap() {
                Err(NftError::Missing)
            } else {
                Ok(())
            }
        }
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.scripts.lock().unwrap().len()
    }

    fn last(&self) -> String {
        self.scripts
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    fn fail(&self, failing: bool) {
        *self.failing.lock().unwrap() = failing;
    }
}

fn ruleset(accept_mode: bool, port: u16) -> Ruleset {
    let text = format!(
        "[[frontend]]\nname = \"web\"\nlisten = [\"0.0.0.0:{port}\"]\nbackend = \"b\"\n\
         [[backend]]\nname = \"b\"\nservers = [{{ address = \"127.0.0.1:9000\" }}]\n\
         [[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 51\naccept_mode = {accept_mode}\naddresses = [\"192.0.2.10/24\"]\n"
    );
    Ruleset::for_config(&config::parse(&text, "t.toml").unwrap())
}

fn state(board: &FilterBoard) -> AcceptFilterStatus {
    board.lock().unwrap().clone()
}

const REMOVAL: &str = "add table inet coexist\ndelete table inet coexist\n";

#[tokio::test]
async fn start_replaces_a_stale_table_and_shutdown_removes_it() {
    let nft = Recorder::default();
    let board = FilterBoard::default();
    let filter =
        AcceptFilter::start_with(nft.clone(), ruleset(false, 80), board.clone(), RETRY).await;
    assert_eq!(nft.count(), 1);
    assert!(nft.last().starts_with(REMOVAL) && nft.last().contains("192.0.2.10 . tcp . 80"));
    let s = state(&board);
    assert_eq!(s.state, FilterState::On);
    assert_eq!(
        (s.addresses, s.open),
        (
            vec!["192.0.2.10".to_owned()],
            vec!["192.0.2.10 tcp/80".to_owned()]
        )
    );

    // Unchanged: nft is not run again. Changed: the whole table is.
    filter.apply(ruleset(false, 80)).await;
    assert_eq!(nft.count(), 1);
    filter.apply(ruleset(false, 443)).await;
    assert_eq!(nft.count(), 2);
    assert!(nft.last().contains("192.0.2.10 . tcp . 443"));
    // accept_mode turned on: the table goes.
    filter.apply(ruleset(true, 443)).await;
    assert_eq!(nft.last(), REMOVAL);
    assert_eq!(state(&board).state, FilterState::Off);
    filter.apply(ruleset(false, 443)).await;
    filter.shutdown().await;
    assert_eq!((nft.count(), nft.last().as_str()), (5, REMOVAL));
    assert_eq!(state(&board).state, FilterState::Off);
}

// Nothing to filter: one removal at start (a crashed run's table), none at
// shutdown.
#[tokio::test]
async fn with_nothing_to_filter_only_a_stale_table_is_removed() {
    let nft = Recorder::default();
    let board = FilterBoard::default();
    let filter =
        AcceptFilter::start_with(nft.clone(), ruleset(true, 80), board.clone(), RETRY).await;
    assert_eq!((nft.count(), nft.last().as_str()), (1, REMOVAL));
    filter.shutdown().await;
    assert_eq!(nft.count(), 1);
    assert_eq!(state(&board).state, FilterState::Off);
}

// Without nft the daemon runs, says `failed` with the reason, and retries.
#[tokio::test]
async fn a_failed_install_is_shown_and_retried() {
    let nft = Recorder::default();
    nft.fail(true);
    let board = FilterBoard::default();
    let retry = Duration::from_millis(50);
    let filter =
        AcceptFilter::start_with(nft.clone(), ruleset(false, 80), board.clone(), retry).await;
    let s = state(&board);
    assert_eq!(s.state, FilterState::Failed);
    assert_eq!(
        s.error.as_deref(),
        Some("nft is not installed (Debian package nftables)")
    );
    assert_eq!(s.addresses, ["192.0.2.10"], "what should be filtered");
    let retried = wait_until_async(
        Duration::from_secs(2),
        Duration::from_millis(10),
        async || nft.count() >= 2,
    )
    .await;
    assert!(retried.is_some(), "no retry");
    nft.fail(false);
    let installed = wait_until_async(
        Duration::from_secs(2),
        Duration::from_millis(10),
        async || state(&board).state == FilterState::On,
    )
    .await;
    assert!(installed.is_some(), "never installed after nft came back");
    assert_eq!(state(&board).error, None);
    let settled = nft.count();
    tokio::time::sleep(retry * 3).await;
    assert_eq!(nft.count(), settled, "retries stop once installed");
    filter.shutdown().await;
}

// Without nft and with nothing to filter, nothing is wrong.
#[tokio::test]
async fn no_nft_and_nothing_to_filter_is_off_not_failed() {
    let nft = Recorder::default();
    nft.fail(true);
    let board = FilterBoard::default();
    let filter = AcceptFilter::start_with(
        nft.clone(),
        ruleset(true, 80),
        board.clone(),
        Duration::from_millis(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(nft.count(), 1, "no retry for nothing");
    assert_eq!(state(&board).state, FilterState::Off);
    assert_eq!(state(&board).error, None);
    filter.shutdown().await;
}
