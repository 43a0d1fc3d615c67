//! The IO shell that keeps BIRD's `protocol static` of every group and
//! family enabled or disabled as wanted, over BIRD's control socket.
//!
//! One task owns the connection. It only ever sends `enable` / `disable`
//! of coexist's own static protocols, so the operator's BGP sessions are
//! never reset. When BIRD restarts (the socket closes) or the connection
//! fails, it reconnects and asserts every wanted state again; it also
//! re-asserts now and then, so a `birdc disable` or a `configure` that
//! changed a protocol behind its back is repaired.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::reply::{self, Reply, ReplyParser, Toggle, ToggleError};

/// How long BIRD may take to answer one command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How often every wanted state is asserted again without a change.
const REASSERT_EVERY: Duration = Duration::from_secs(10);
/// BIRD's longest reply line is far shorter; a longer one is not BIRD.
const MAX_LINE: usize = 64 * 1024;

impl From<io::Error> for LinkError {
    fn from(error: io::Error) -> Self {
        LinkError::Io(error)
    }
}

/// Why a conversation with BIRD ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach BIRD at {path}: {error}")]
    Connect { path: PathBuf, error: io::Error },
    /// A leaf: the io error is in the message, so it is not a `source()`
    /// as well (a chain would print it twice).
    #[error("BIRD connection failed: {0}")]
    Io(io::Error),
    #[error("BIRD closed the control connection")]
    Closed,
    #[error(
        "BIRD did not answer within {}",
        humantime::format_duration(COMMAND_TIMEOUT)
    )]
    Timeout,
    #[error(transparent)]
    Malformed(#[from] reply::Malformed),
    #[error("BIRD's greeting was {:?}, not 0001", .0.lines)]
    Greeting(Reply),
}

/// One connection to BIRD's CLI.
pub struct BirdClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    parser: ReplyParser,
    line: String,
}

impl BirdClient {
    /// Connects and reads BIRD's greeting.
    pub async fn connect(path: &Path) -> Result<BirdClient, LinkError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|error| LinkError::Connect {
                path: path.to_owned(),
                error,
            })?;
        let (read, writer) = stream.into_split();
        let mut client = BirdClient {
            reader: BufReader::new(read),
            writer,
            parser: ReplyParser::default(),
            line: String::new(),
        };
        let greeting = client.reply().await?;
        if !greeting.has_code(reply::WELCOME) {
            return Err(LinkError::Greeting(greeting));
        }
        Ok(client)
    }

    /// Sends one command line and returns BIRD's complete reply.
    pub async fn command(&mut self, command: &str) -> Result<Reply, LinkError> {
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.reply().await
    }

    /// `enable` or `disable` of one protocol.
    pub async fn toggle(
        &mut self,
        protocol: &str,
        enable: bool,
    ) -> Result<Result<Toggle, ToggleError>, LinkError> {
        let verb = if enable { "enable" } else { "disable" };
        // A quoted name is a pattern to BIRD: it matches the protocol
        // whatever characters its name has.
        let reply = self.command(&format!("{verb} \"{protocol}\"")).await?;
        Ok(reply::toggle_outcome(&reply, enable))
    }

    async fn reply(&mut self) -> Result<Reply, LinkError> {
        tokio::time::timeout(COMMAND_TIMEOUT, async {
            loop {
                self.line.clear();
                let n = (&mut self.reader)
                    .take(MAX_LINE as u64)
                    .read_line(&mut self.line)
                    .await?;
                if n == 0 {
                    return Err(LinkError::Closed);
                }
                let line = self.line.trim_end_matches(['\n', '\r']);
                if let Some(reply) = self.parser.push(line)? {
                    return Ok(reply);
                }
            }
        })
        .await
        .map_err(|_| LinkError::Timeout)?
    }

    /// Returns when BIRD closes the connection (it says nothing unasked,
    /// so anything else it sends is a protocol error too).
    async fn closed(&mut self) -> LinkError {
        let mut byte = String::new();
        match self.reader.read_line(&mut byte).await {
            Ok(0) => LinkError::Closed,
            Ok(_) => LinkError::Malformed(reply::Malformed { line: byte }),
            Err(e) => LinkError::Io(e),
        }
    }
}

/// Protocol name → enabled.
pub type Protocols = BTreeMap<String, bool>;

/// The handle of the task that applies wanted states.
pub struct BirdLink {
    wanted: watch::Sender<Protocols>,
    applied: watch::Receiver<Protocols>,
    task: tokio::task::JoinHandle<()>,
}

impl BirdLink {
    pub fn start(socket: PathBuf) -> BirdLink {
        let (wanted, wanted_rx) = watch::channel(Protocols::new());
        let (applied_tx, applied) = watch::channel(Protocols::new());
        let task = tokio::spawn(run(socket, wanted_rx, applied_tx));
        BirdLink {
            wanted,
            applied,
            task,
        }
    }

    /// Sets the whole wanted map (protocols left out are left alone).
    pub fn set(&self, protocols: Protocols) {
        self.wanted.send_if_modified(|w| {
            let changed = *w != protocols;
            *w = protocols;
            changed
        });
    }

    /// Waits until BIRD confirmed every wanted state, or `limit` passed.
    /// Returns whether it did.
    pub async fn applied_within(&self, limit: Duration) -> bool {
        let wanted = self.wanted.borrow().clone();
        let mut applied = self.applied.clone();
        let done = applied.wait_for(|a| wanted.iter().all(|(p, on)| a.get(p) == Some(on)));
        let confirmed = matches!(tokio::time::timeout(limit, done).await, Ok(Ok(_)));
        confirmed
    }
}

impl Drop for BirdLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    socket: PathBuf,
    mut wanted: watch::Receiver<Protocols>,
    applied: watch::Sender<Protocols>,
) {
    let mut backoff = RECONNECT_MIN;
    let mut reported = false;
    loop {
        match BirdClient::connect(&socket).await {
            Ok(client) => {
                tracing::info!(socket = %socket.display(), "connected to BIRD");
                backoff = RECONNECT_MIN;
                reported = false;
                let error = converse(client, &mut wanted, &applied).await;
                tracing::warn!(error = %error, "BIRD connection lost; reconnecting");
            }
            // Said once per outage, not at every retry.
            Err(error) if !reported => {
                tracing::error!(error = %error, "cannot reach BIRD; retrying");
                reported = true;
            }
            Err(_) => {}
        }
        // Whatever BIRD had confirmed may be gone with its restart.
        applied.send_replace(Protocols::new());
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Applies wanted states over one connection until it fails.
async fn converse(
    mut client: BirdClient,
    wanted: &mut watch::Receiver<Protocols>,
    applied: &watch::Sender<Protocols>,
) -> LinkError {
    let first = tokio::time::Instant::now() + REASSERT_EVERY;
    let mut reassert = tokio::time::interval_at(first, REASSERT_EVERY);
    reassert.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A fresh connection may be a restarted BIRD: assert everything.
    let mut everything = true;
    // Protocols BIRD refused: tried again at the next re-assertion only.
    let mut refused = std::collections::BTreeSet::new();
    loop {
        let target = wanted.borrow_and_update().clone();
        for (protocol, &enable) in &target {
            let known = applied.borrow().get(protocol) == Some(&enable);
            if (known || refused.contains(protocol)) && !everything {
                continue;
            }
            match client.toggle(protocol, enable).await {
                Err(e) => return e,
                Ok(Ok(outcome)) => {
                    if known && outcome == Toggle::Changed {
                        tracing::warn!(
                            protocol = %protocol,
                            enabled = enable,
                            "BIRD protocol had been changed behind coexist's back; restored"
                        );
                    } else if outcome == Toggle::Changed {
                        tracing::info!(protocol = %protocol, enabled = enable, "BIRD protocol set");
                    }
                    refused.remove(protocol);
                    applied.send_modify(|a| {
                        a.insert(protocol.clone(), enable);
                    });
                }
                Ok(Err(error)) => {
                    // Most likely bird.conf lacks the snippet: retried at
                    // the next re-assertion.
                    tracing::error!(protocol = %protocol, error = %error, "BIRD refused the change");
                    refused.insert(protocol.clone());
                    applied.send_modify(|a| {
                        a.remove(protocol);
                    });
                }
            }
        }
        everything = false;
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return LinkError::Closed;
                }
            }
            _ = reassert.tick() => everything = true,
            error = client.closed() => return error,
        }
    }
}

#[cfg(test)]
mod tests {
    /// DESIGN.md, Errors: a cause is said once, even through a chain.
    #[test]
    fn an_io_failure_says_its_cause_once() {
        let error = super::LinkError::from(std::io::Error::from_raw_os_error(104));
        assert!(std::error::Error::source(&error).is_none());
        let shown = format!("{:#}", anyhow::Error::new(error));
        assert_eq!(shown.matches("os error 104").count(), 1, "{shown}");
    }

    use super::*;
    use tokio::net::UnixListener;

    /// A fake BIRD: greets, answers enable/disable from its own table, and
    /// records every command. `drop` of a connection is a BIRD restart.
    struct FakeBird {
        listener: UnixListener,
    }

    struct FakeSession {
        lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
        writer: OwnedWriteHalf,
    }

    impl FakeBird {
        fn bind(path: &Path) -> FakeBird {
            FakeBird {
                listener: UnixListener::bind(path).unwrap(),
            }
        }

        async fn accept(&self) -> FakeSession {
            let (stream, _) = tokio::time::timeout(Duration::from_secs(5), self.listener.accept())
                .await
                .expect("the link connects")
                .unwrap();
            let (read, mut writer) = stream.into_split();
            writer
                .write_all(b"0001 BIRD 2.0.12 ready.\n")
                .await
                .unwrap();
            FakeSession {
                lines: BufReader::new(read).lines(),
                writer,
            }
        }
    }

    impl FakeSession {
        /// Reads one command and answers it from `state`.
        async fn answer(&mut self, state: &mut Protocols) -> String {
            let line = tokio::time::timeout(Duration::from_secs(5), self.lines.next_line())
                .await
                .expect("a command arrives")
                .unwrap()
                .unwrap();
            let (verb, name) = line.split_once(' ').unwrap();
            let name = name.trim_matches('"');
            let enable = verb == "enable";
            let reply = match state.get(name) {
                None => "8003 No protocols match\n".to_owned(),
                Some(&now) => {
                    let code = match (enable, now == enable) {
                        (true, false) => "0011",
                        (true, true) => "0010",
                        (false, false) => "0009",
                        (false, true) => "0008",
                    };
                    state.insert(name.to_owned(), enable);
                    format!("{code}-{name}: done\n0000 \n")
                }
            };
            self.writer.write_all(reply.as_bytes()).await.unwrap();
            line
        }
    }

    fn protocols(entries: &[(&str, bool)]) -> Protocols {
        entries.iter().map(|(p, on)| (p.to_string(), *on)).collect()
    }

    // Input: wanted states set before and after BIRD accepts; then BIRD
    // restarts (closes the socket) with every protocol back to disabled.
    // Output: the link applies the states, reconnects, and asserts them again.
    #[tokio::test]
    async fn applies_wanted_states_and_reasserts_after_a_bird_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bird.ctl");
        let bird = FakeBird::bind(&path);
        let mut state = protocols(&[("coexist_web_v4", false), ("coexist_web_v6", false)]);
        let link = BirdLink::start(path.clone());
        link.set(protocols(&[
            ("coexist_web_v4", true),
            ("coexist_web_v6", false),
        ]));

        let mut session = bird.accept().await;
        let mut seen = vec![
            session.answer(&mut state).await,
            session.answer(&mut state).await,
        ];
        seen.sort();
        assert_eq!(
            seen,
            ["disable \"coexist_web_v6\"", "enable \"coexist_web_v4\""]
        );
        assert!(link.applied_within(Duration::from_secs(5)).await);
        assert_eq!(
            state,
            protocols(&[("coexist_web_v4", true), ("coexist_web_v6", false)])
        );

        // Only the change is sent.
        link.set(protocols(&[
            ("coexist_web_v4", false),
            ("coexist_web_v6", false),
        ]));
        assert_eq!(
            session.answer(&mut state).await,
            "disable \"coexist_web_v4\""
        );
        assert!(link.applied_within(Duration::from_secs(5)).await);

        // BIRD restarts: its protocols come back as bird.conf says (disabled).
        link.set(protocols(&[
            ("coexist_web_v4", true),
            ("coexist_web_v6", true),
        ]));
        session.answer(&mut state).await;
        session.answer(&mut state).await;
        drop(session);
        state = protocols(&[("coexist_web_v4", false), ("coexist_web_v6", false)]);
        let mut session = bird.accept().await;
        session.answer(&mut state).await;
        session.answer(&mut state).await;
        assert!(link.applied_within(Duration::from_secs(5)).await);
        assert_eq!(
            state,
            protocols(&[("coexist_web_v4", true), ("coexist_web_v6", true)])
        );
    }

    // Input: a protocol bird.conf lacks (8003) beside one it has.
    // Output: the known one is applied; the missing one is not reported as
    // applied, and the link keeps the connection.
    #[tokio::test]
    async fn a_refused_protocol_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bird.ctl");
        let bird = FakeBird::bind(&path);
        let mut state = protocols(&[("coexist_web_v4", false)]);
        let link = BirdLink::start(path.clone());
        link.set(protocols(&[
            ("coexist_missing_v4", true),
            ("coexist_web_v4", true),
        ]));
        let mut session = bird.accept().await;
        session.answer(&mut state).await;
        session.answer(&mut state).await;
        assert!(!link.applied_within(Duration::from_millis(300)).await);
        assert_eq!(state, protocols(&[("coexist_web_v4", true)]));
        assert_eq!(link.applied.borrow().get("coexist_web_v4"), Some(&true));
        // Still the same connection: the next change goes over it.
        link.set(protocols(&[("coexist_web_v4", false)]));
        assert_eq!(
            session.answer(&mut state).await,
            "disable \"coexist_web_v4\""
        );
    }

    // Input: something that is not BIRD answers on the socket.
    #[tokio::test]
    async fn a_peer_that_is_not_bird_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bird.ctl");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"SSH-2.0-OpenSSH_9.2\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let error = BirdClient::connect(&path).await.err().unwrap();
        assert!(matches!(error, LinkError::Malformed(_)), "{error}");
    }
}
