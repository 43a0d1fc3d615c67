//! Whether one group's prefixes of one family should be announced: a pure
//! state machine over the inputs (listener readiness, tracked frontends'
//! health, the operator's word, shutdown) with time passed in, so every
//! rule is tested without a socket, a BIRD or a clock.
//!
//! Withdrawing is immediate; announcing waits until the group has been able
//! to serve for `announce_after`, so a flapping server does not make the
//! router move flows back and forth.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// What the routers should see from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Withdrawn,
    Announced,
}

impl Wanted {
    pub fn as_str(self) -> &'static str {
        match self {
            Wanted::Withdrawn => "withdrawn",
            Wanted::Announced => "announced",
        }
    }
}

/// Why the group is in its state, most decisive first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The daemon is stopping: routers move flows away before it drains.
    Shutdown,
    /// `coexist announce NAME withdraw`.
    AdminWithdrawn,
    /// No listener of the family is serving yet.
    NotListening,
    /// A tracked frontend has no usable server.
    TrackDown { frontend: String },
    /// Able to serve, waiting out `announce_after` (since `since`).
    Damping,
    /// Announced: every condition holds.
    Serving,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Shutdown => f.write_str("shutting down"),
            Reason::AdminWithdrawn => f.write_str("withdrawn by the operator"),
            Reason::NotListening => f.write_str("not listening yet"),
            Reason::TrackDown { frontend } => {
                write!(f, "frontend {frontend:?} has no usable server")
            }
            Reason::Damping => f.write_str("healthy, waiting for announce_after"),
            Reason::Serving => f.write_str("serving"),
        }
    }
}

/// A change of [`Wanted`], as the shell applies and counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub to: Wanted,
    pub reason: Reason,
}

/// One group and family.
#[derive(Debug, Clone)]
pub struct Machine {
    announce_after: Duration,
    listening: bool,
    /// Tracked frontends and whether each has a usable server, in the
    /// order the config lists them (the first one down is the reason).
    tracks: Vec<(String, bool)>,
    admin_withdrawn: bool,
    shutting_down: bool,
    wanted: Wanted,
    reason: Reason,
    /// When `wanted` or `reason` last changed.
    since: Instant,
    /// Since when nothing has blocked the announcement.
    clear_since: Option<Instant>,
}

impl Machine {
    /// A machine for a group tracking `tracks`, withdrawn until listening.
    pub fn new(now: Instant, announce_after: Duration, tracks: &[String]) -> Machine {
        Machine {
            announce_after,
            listening: false,
            // Unknown health counts as down: announce only what is known good.
            tracks: tracks.iter().map(|t| (t.clone(), false)).collect(),
            admin_withdrawn: false,
            shutting_down: false,
            wanted: Wanted::Withdrawn,
            reason: Reason::NotListening,
            since: now,
            clear_since: None,
        }
    }

    pub fn wanted(&self) -> Wanted {
        self.wanted
    }

    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    pub fn since(&self) -> Instant {
        self.since
    }

    /// When [`Machine::poll`] has something to do without new input.
    pub fn deadline(&self) -> Option<Instant> {
        match self.wanted {
            Wanted::Withdrawn => self.clear_since.map(|t| t + self.announce_after),
            Wanted::Announced => None,
        }
    }

    pub fn set_listening(&mut self, now: Instant, listening: bool) -> Option<Transition> {
        self.listening = listening;
        self.poll(now)
    }

    /// Records a tracked frontend's health; unknown names change nothing.
    pub fn set_track(&mut self, now: Instant, frontend: &str, up: bool) -> Option<Transition> {
        if let Some(slot) = self.tracks.iter_mut().find(|(name, _)| name == frontend) {
            slot.1 = up;
        }
        self.poll(now)
    }

    pub fn set_admin_withdrawn(&mut self, now: Instant, withdrawn: bool) -> Option<Transition> {
        self.admin_withdrawn = withdrawn;
        self.poll(now)
    }

    /// Withdraws for good: nothing announces again.
    pub fn shutdown(&mut self, now: Instant) -> Option<Transition> {
        self.shutting_down = true;
        self.poll(now)
    }

    /// A reload's new `announce_after` and tracked frontends (kept health
    /// for frontends still tracked, unknown for new ones).
    pub fn reconfigure(
        &mut self,
        now: Instant,
        announce_after: Duration,
        tracks: &[String],
    ) -> Option<Transition> {
        self.announce_after = announce_after;
        let old = std::mem::take(&mut self.tracks);
        let known: BTreeMap<_, _> = old.into_iter().collect();
        self.tracks = tracks
            .iter()
            .map(|t| (t.clone(), known.get(t).copied().unwrap_or(false)))
            .collect();
        self.poll(now)
    }

    /// Re-evaluates at `now`: returns the transition if `wanted` changed.
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        let (wanted, reason) = match self.blocker() {
            Some(reason) => {
                self.clear_since = None;
                (Wanted::Withdrawn, reason)
            }
            None => {
                let clear_since = *self.clear_since.get_or_insert(now);
                let held = now.saturating_duration_since(clear_since);
                if self.wanted == Wanted::Announced || held >= self.announce_after {
                    (Wanted::Announced, Reason::Serving)
                } else {
                    (Wanted::Withdrawn, Reason::Damping)
                }
            }
        };
        if reason != self.reason {
            self.since = now;
            self.reason = reason.clone();
        }
        if wanted == self.wanted {
            return None;
        }
        self.wanted = wanted;
        Some(Transition { to: wanted, reason })
    }

    fn blocker(&self) -> Option<Reason> {
        if self.shutting_down {
            return Some(Reason::Shutdown);
        }
        if self.admin_withdrawn {
            return Some(Reason::AdminWithdrawn);
        }
        if !self.listening {
            return Some(Reason::NotListening);
        }
        let down = self.tracks.iter().find(|(_, up)| !up);
        down.map(|(frontend, _)| Reason::TrackDown {
            frontend: frontend.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn announced() -> Option<Transition> {
        Some(Transition {
            to: Wanted::Announced,
            reason: Reason::Serving,
        })
    }

    fn withdrawn(reason: Reason) -> Option<Transition> {
        Some(Transition {
            to: Wanted::Withdrawn,
            reason,
        })
    }

    fn web_down() -> Reason {
        Reason::TrackDown {
            frontend: "web".into(),
        }
    }

    /// A machine tracking "web", listening and healthy since `t0`,
    /// announced at `t0 + AFTER`.
    fn serving(t0: Instant) -> Machine {
        let mut m = Machine::new(t0, AFTER, &["web".into()]);
        m.set_track(t0, "web", true);
        m.set_listening(t0, true);
        assert_eq!(m.poll(t0 + AFTER), announced());
        m
    }

    // Input: a new group, nothing known. Output: withdrawn, not listening.
    #[test]
    fn starts_withdrawn_until_listening() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, AFTER, &[]);
        assert_eq!(m.wanted(), Wanted::Withdrawn);
        assert_eq!(m.reason(), &Reason::NotListening);
        assert_eq!(m.deadline(), None);
        assert_eq!(m.poll(t0 + ms(5000)), None);
        assert_eq!(m.set_listening(t0 + ms(5000), true), None);
        assert_eq!(m.reason(), &Reason::Damping);
        assert_eq!(m.deadline(), Some(t0 + ms(6000)));
    }

    // Input: listening, tracked frontend healthy, then time passes.
    // Output: announced exactly at announce_after, not a tick before.
    #[test]
    fn announces_after_holding_healthy_for_announce_after() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, AFTER, &["web".into()]);
        assert_eq!(m.set_listening(t0, true), None);
        assert_eq!(m.reason(), &web_down(), "unknown health counts as down");
        assert_eq!(m.set_track(t0 + ms(100), "web", true), None);
        assert_eq!(m.since(), t0 + ms(100));
        assert_eq!(m.poll(t0 + ms(1099)), None);
        assert_eq!(m.poll(t0 + ms(1100)), announced());
        assert_eq!(m.wanted(), Wanted::Announced);
        assert_eq!(m.since(), t0 + ms(1100));
        assert_eq!(m.deadline(), None);
    }

    // Input: the tracked frontend loses its last server while announced.
    // Output: withdrawn at once, with the frontend as the reason.
    #[test]
    fn withdraws_at_once_when_a_tracked_frontend_goes_down() {
        let t0 = Instant::now();
        let mut m = serving(t0);
        let t1 = t0 + ms(5000);
        assert_eq!(m.set_track(t1, "web", false), withdrawn(web_down()));
        assert_eq!(m.since(), t1);
    }

    // Input: the server flaps back up, down, up within announce_after.
    // Output: the damping period restarts at every recovery.
    #[test]
    fn a_flap_restarts_the_damping_period() {
        let t0 = Instant::now();
        let mut m = serving(t0);
        let t1 = t0 + ms(5000);
        m.set_track(t1, "web", false);
        assert_eq!(m.set_track(t1 + ms(200), "web", true), None);
        assert_eq!(m.set_track(t1 + ms(700), "web", false), None);
        assert_eq!(m.set_track(t1 + ms(900), "web", true), None);
        assert_eq!(m.poll(t1 + ms(1200)), None, "1 s after the first recovery");
        assert_eq!(m.deadline(), Some(t1 + ms(1900)));
        assert_eq!(m.poll(t1 + ms(1900)), announced());
    }

    // Input: two tracked frontends, both must be up.
    // Output: the first one down (in config order) is the reason.
    #[test]
    fn every_tracked_frontend_must_be_up() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, Duration::ZERO, &["web".into(), "api".into()]);
        m.set_listening(t0, true);
        assert_eq!(m.set_track(t0, "api", true), None);
        assert_eq!(m.reason(), &web_down());
        assert_eq!(m.set_track(t0, "web", true), announced(), "zero damping");
        let api_down = Reason::TrackDown {
            frontend: "api".into(),
        };
        assert_eq!(m.set_track(t0, "api", false), withdrawn(api_down));
        assert_eq!(
            m.set_track(t0, "nope", true),
            None,
            "untracked names are ignored"
        );
    }

    // Input: the operator withdraws a healthy node, then announces again.
    // Output: withdrawn at once; announced again after announce_after.
    #[test]
    fn the_operator_can_drain_a_healthy_node() {
        let t0 = Instant::now();
        let mut m = serving(t0);
        let t1 = t0 + ms(3000);
        assert_eq!(
            m.set_admin_withdrawn(t1, true),
            withdrawn(Reason::AdminWithdrawn)
        );
        // Health changes under an admin withdrawal do not announce.
        assert_eq!(m.set_track(t1 + ms(10), "web", false), None);
        assert_eq!(m.reason(), &Reason::AdminWithdrawn);
        m.set_track(t1 + ms(20), "web", true);
        assert_eq!(m.set_admin_withdrawn(t1 + ms(50), false), None);
        assert_eq!(m.reason(), &Reason::Damping);
        assert_eq!(m.poll(t1 + ms(1050)), announced());
    }

    // Input: shutdown, then everything healthy and the operator's announce.
    // Output: withdrawn for good.
    #[test]
    fn shutdown_withdraws_for_good() {
        let t0 = Instant::now();
        let mut m = serving(t0);
        let t1 = t0 + ms(2000);
        assert_eq!(m.shutdown(t1), withdrawn(Reason::Shutdown));
        assert_eq!(m.set_admin_withdrawn(t1, false), None);
        assert_eq!(m.set_track(t1, "web", true), None);
        assert_eq!(m.poll(t1 + ms(60_000)), None);
        assert_eq!(m.deadline(), None);
        assert_eq!(m.reason(), &Reason::Shutdown);
    }

    // Input: a reload adds a tracked frontend and keeps the known one.
    // Output: the new one is unknown (down) until its health arrives.
    #[test]
    fn reconfigure_keeps_known_health_and_distrusts_new_tracks() {
        let t0 = Instant::now();
        let mut m = serving(t0);
        let t1 = t0 + ms(2000);
        let tracks = ["web".to_owned(), "api".to_owned()];
        let api_down = Reason::TrackDown {
            frontend: "api".into(),
        };
        assert_eq!(m.reconfigure(t1, AFTER, &tracks), withdrawn(api_down));
        assert_eq!(m.set_track(t1, "api", true), None);
        assert_eq!(m.reason(), &Reason::Damping, "web's health was kept");
        // Dropping every track with a shorter damping announces sooner.
        assert_eq!(m.reconfigure(t1 + ms(300), ms(200), &[]), announced());
    }
}
