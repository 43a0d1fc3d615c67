//! A server's state as a pure state machine.
//!
//! Two independent inputs decide whether a server takes new connections:
//! its *health* (fed by active checks and by connect results the data plane
//! observes) and its *admin* state (set by the operator at run time). The
//! state shown to operators combines both, and every change of it comes out
//! as a [`Transition`] carrying the reason, so the caller can log exactly
//! why a server left or joined the rotation.

use std::fmt;
use std::time::{Duration, Instant};

/// What an operator set for the server: the one type of the command line
/// (`coexist server B/S ready|drain|maint`), the admin API's JSON
/// (`{"state": "drain"}`) and the health state machine.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// In rotation while healthy.
    Ready,
    /// No new connections; existing ones continue; still checked.
    Drain,
    /// Out of rotation and not checked.
    Maint,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

/// The state shown in logs, `/status` and `lb_server_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Up,
    Down,
    Drain,
    Maint,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Up => "up",
            ServerState::Down => "down",
            ServerState::Drain => "drain",
            ServerState::Maint => "maint",
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of evidence about a server's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// An active check passed.
    CheckPassed,
    /// An active check failed, e.g. "connect refused", "expected HTTP 2xx, got 503".
    CheckFailed(String),
    /// The data plane connected to the server for a client.
    ConnectSucceeded,
    /// The data plane failed to connect for a client.
    ConnectFailed(String),
}

/// A change of [`ServerState`], with why it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: ServerState,
    pub to: ServerState,
    pub reason: String,
}

/// How a server's health is judged; taken from the backend's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub rise: u32,
    pub fall: u32,
    /// Active checks run for this server. Without them a server taken down
    /// by failed connects is offered traffic again after `passive_retry`,
    /// since nothing else could ever bring it back.
    pub active_checks: bool,
    /// Whether the server takes traffic before its first check completes.
    pub start_up: bool,
    pub passive_retry: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerHealth {
    policy: Policy,
    healthy: bool,
    admin: AdminState,
    weight: u32,
    /// No check has completed yet: the first result decides at once, so a
    /// fresh daemon serves without waiting `rise × interval`.
    first_check_pending: bool,
    successes: u32,
    failures: u32,
    down_since: Option<Instant>,
    last_result: Option<String>,
}

impl ServerHealth {
    pub fn new(policy: Policy, weight: u32) -> Self {
        let healthy = if policy.active_checks {
            policy.start_up
        } else {
            true
        };
        Self {
            policy,
            healthy,
            admin: AdminState::Ready,
            weight,
            first_check_pending: policy.active_checks,
            successes: 0,
            failures: 0,
            down_since: None,
            last_result: None,
        }
    }

    pub fn state(&self) -> ServerState {
        match (self.admin, self.healthy) {
            (AdminState::Maint, _) => ServerState::Maint,
            (_, false) => ServerState::Down,
            (AdminState::Drain, true) => ServerState::Drain,
            (AdminState::Ready, true) if self.weight == 0 => ServerState::Drain,
            (AdminState::Ready, true) => ServerState::Up,
        }
    }

    /// Healthy and not in maintenance: counts as "up" for backup selection
    /// and VRRP tracking even while drained.
    pub fn is_healthy(&self) -> bool {
        self.healthy && self.admin != AdminState::Maint
    }

    /// May receive a new connection now.
    pub fn accepts_new(&self) -> bool {
        self.state() == ServerState::Up
    }

    pub fn admin(&self) -> AdminState {
        self.admin
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether active checks should probe the server now.
    pub fn wants_checks(&self) -> bool {
        self.policy.active_checks && self.admin != AdminState::Maint
    }

    /// Consecutive failures seen since the last success.
    pub fn failure_streak(&self) -> u32 {
        self.failures
    }

    /// The last check or connect result, as shown in `/status`.
    pub fn last_result(&self) -> Option<&str> {
        self.last_result.as_deref()
    }

    pub fn observe(&mut self, observation: Observation, now: Instant) -> Option<Transition> {
        let before = self.state();
        let reason = match observation {
            Observation::CheckPassed => {
                self.last_result = Some("ok".to_owned());
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                let needed = if self.first_check_pending {
                    1
                } else {
                    self.policy.rise
                };
                self.first_check_pending = false;
                if !self.healthy && self.successes >= needed {
                    self.set_healthy(true, now);
                }
                format!("check passed ({} in a row)", self.successes)
            }
            Observation::CheckFailed(why) => {
                self.last_result = Some(why.clone());
                let first = std::mem::take(&mut self.first_check_pending);
                self.record_failure(now, first);
                why
            }
            Observation::ConnectSucceeded => {
                // Proof of life for the failure streak, but not a check: a
                // down server gets no client traffic to rise with.
                self.failures = 0;
                return None;
            }
            Observation::ConnectFailed(why) => {
                self.last_result = Some(why.clone());
                self.record_failure(now, false);
                why
            }
        };
        self.transition_from(before, reason)
    }

    /// Re-admits a server taken down passively when no active checks could
    /// bring it back. Call periodically.
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        if self.policy.active_checks || self.healthy {
            return None;
        }
        let since = self.down_since?;
        if now.saturating_duration_since(since) < self.policy.passive_retry {
            return None;
        }
        let before = self.state();
        self.set_healthy(true, now);
        self.transition_from(
            before,
            format!(
                "retrying after {} without active checks",
                humantime::format_duration(self.policy.passive_retry)
            ),
        )
    }

    pub fn set_admin(&mut self, admin: AdminState) -> Option<Transition> {
        let before = self.state();
        self.admin = admin;
        if admin == AdminState::Maint {
            // Leaving maintenance starts from fresh evidence, like a new server.
            self.successes = 0;
            self.failures = 0;
        }
        self.transition_from(before, format!("set to {} by operator", admin.as_str()))
    }

    pub fn set_weight(&mut self, weight: u32, why: &str) -> Option<Transition> {
        let before = self.state();
        self.weight = weight;
        self.transition_from(before, format!("weight set to {weight} ({why})"))
    }

    /// Carries the state over a reload: health evidence stays, the policy
    /// and configured weight follow the new config.
    pub fn reconfigure(&mut self, policy: Policy, weight: u32) -> Option<Transition> {
        let before = self.state();
        if policy.active_checks && !self.policy.active_checks {
            self.first_check_pending = true;
        }
        self.policy = policy;
        self.weight = weight;
        self.transition_from(before, "configuration reloaded".to_owned())
    }

    fn record_failure(&mut self, now: Instant, first_check: bool) {
        self.successes = 0;
        self.failures = self.failures.saturating_add(1);
        if self.healthy && (first_check || self.failures >= self.policy.fall) {
            self.set_healthy(false, now);
        }
    }

    fn set_healthy(&mut self, healthy: bool, now: Instant) {
        self.healthy = healthy;
        self.down_since = if healthy { None } else { Some(now) };
        if healthy {
            self.failures = 0;
        } else {
            self.successes = 0;
        }
    }

    fn transition_from(&self, before: ServerState, reason: String) -> Option<Transition> {
        let after = self.state();
        (after != before).then_some(Transition {
            from: before,
            to: after,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(active: bool) -> Policy {
        Policy {
            rise: 2,
            fall: 3,
            active_checks: active,
            start_up: false,
            passive_retry: Duration::from_secs(5),
        }
    }

    fn failed(why: &str) -> Observation {
        Observation::CheckFailed(why.to_owned())
    }

    #[test]
    fn with_active_checks_a_server_starts_down_and_first_pass_brings_it_up() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        assert_eq!(server.state(), ServerState::Down);
        let t = server.observe(Observation::CheckPassed, now).unwrap();
        assert_eq!((t.from, t.to), (ServerState::Down, ServerState::Up));
    }

    #[test]
    fn initial_state_up_serves_before_any_check_and_first_failure_takes_it_down() {
        let now = Instant::now();
        let mut p = policy(true);
        p.start_up = true;
        let mut server = ServerHealth::new(p, 1);
        assert_eq!(server.state(), ServerState::Up);
        let t = server.observe(failed("connect refused"), now).unwrap();
        assert_eq!(t.to, ServerState::Down);
        assert_eq!(t.reason, "connect refused");
    }

    #[test]
    fn fall_consecutive_failures_take_an_up_server_down() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        server.observe(Observation::CheckPassed, now);
        assert!(server.observe(failed("timeout after 500ms"), now).is_none());
        assert!(server.observe(failed("timeout after 500ms"), now).is_none());
        let t = server.observe(failed("timeout after 500ms"), now).unwrap();
        assert_eq!((t.from, t.to), (ServerState::Up, ServerState::Down));
        assert_eq!(t.reason, "timeout after 500ms");
    }

    #[test]
    fn a_pass_between_failures_resets_the_fall_count() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        server.observe(Observation::CheckPassed, now);
        server.observe(failed("x"), now);
        server.observe(failed("x"), now);
        server.observe(Observation::CheckPassed, now);
        server.observe(failed("x"), now);
        assert!(server.observe(failed("x"), now).is_none());
        assert_eq!(server.state(), ServerState::Up);
    }

    #[test]
    fn rise_consecutive_passes_bring_a_down_server_back() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        server.observe(failed("refused"), now);
        assert_eq!(server.state(), ServerState::Down);
        assert!(server.observe(Observation::CheckPassed, now).is_none());
        let t = server.observe(Observation::CheckPassed, now).unwrap();
        assert_eq!(t.to, ServerState::Up);
    }

    #[test]
    fn passive_connect_failures_count_toward_fall() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        server.observe(Observation::CheckPassed, now);
        server.observe(Observation::ConnectFailed("connect refused".into()), now);
        server.observe(Observation::ConnectFailed("connect refused".into()), now);
        let t = server
            .observe(Observation::ConnectFailed("connect refused".into()), now)
            .unwrap();
        assert_eq!(t.to, ServerState::Down);
    }

    #[test]
    fn a_successful_client_connect_resets_the_failure_streak() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(false), 1);
        server.observe(Observation::ConnectFailed("refused".into()), now);
        server.observe(Observation::ConnectFailed("refused".into()), now);
        server.observe(Observation::ConnectSucceeded, now);
        server.observe(Observation::ConnectFailed("refused".into()), now);
        assert_eq!(server.state(), ServerState::Up);
    }

    #[test]
    fn without_active_checks_a_passively_downed_server_is_retried_later() {
        let start = Instant::now();
        let mut server = ServerHealth::new(policy(false), 1);
        assert_eq!(server.state(), ServerState::Up);
        for _ in 0..3 {
            server.observe(Observation::ConnectFailed("refused".into()), start);
        }
        assert_eq!(server.state(), ServerState::Down);
        assert!(server.poll(start + Duration::from_secs(4)).is_none());
        let t = server.poll(start + Duration::from_secs(5)).unwrap();
        assert_eq!(t.to, ServerState::Up);
    }

    #[test]
    fn with_active_checks_poll_never_readmits() {
        let start = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        server.observe(failed("refused"), start);
        assert!(server.poll(start + Duration::from_secs(3600)).is_none());
    }

    #[test]
    fn weight_zero_is_drain_and_takes_no_new_connections() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(false), 0);
        assert_eq!(server.state(), ServerState::Drain);
        assert!(!server.accepts_new());
        assert!(server.is_healthy());
        let t = server.set_weight(3, "operator").unwrap();
        assert_eq!((t.from, t.to), (ServerState::Drain, ServerState::Up));
        let _ = now;
    }

    #[test]
    fn operator_drain_and_ready() {
        let mut server = ServerHealth::new(policy(false), 1);
        let t = server.set_admin(AdminState::Drain).unwrap();
        assert_eq!((t.from, t.to), (ServerState::Up, ServerState::Drain));
        assert_eq!(t.reason, "set to drain by operator");
        let t = server.set_admin(AdminState::Ready).unwrap();
        assert_eq!(t.to, ServerState::Up);
    }

    #[test]
    fn maint_stops_checks_and_overrides_health() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        server.observe(Observation::CheckPassed, now);
        server.set_admin(AdminState::Maint);
        assert_eq!(server.state(), ServerState::Maint);
        assert!(!server.wants_checks());
        assert!(!server.is_healthy());
        assert!(!server.accepts_new());
    }

    #[test]
    fn a_down_server_that_is_drained_shows_down() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        server.observe(failed("refused"), now);
        assert!(server.set_admin(AdminState::Drain).is_none());
        assert_eq!(server.state(), ServerState::Down);
    }

    #[test]
    fn reconfigure_keeps_health_and_applies_the_new_weight() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        server.observe(Observation::CheckPassed, now);
        assert!(server.reconfigure(policy(true), 5).is_none());
        assert_eq!(server.state(), ServerState::Up);
        assert_eq!(server.weight(), 5);
        let t = server.reconfigure(policy(true), 0).unwrap();
        assert_eq!(t.to, ServerState::Drain);
    }

    #[test]
    fn last_result_reports_the_latest_check() {
        let now = Instant::now();
        let mut server = ServerHealth::new(policy(true), 1);
        assert_eq!(server.last_result(), None);
        server.observe(failed("expected HTTP 2xx, got 503"), now);
        assert_eq!(server.last_result(), Some("expected HTTP 2xx, got 503"));
        server.observe(Observation::CheckPassed, now);
        assert_eq!(server.last_result(), Some("ok"));
    }
}
