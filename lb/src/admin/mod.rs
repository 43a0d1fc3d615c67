//! The admin HTTP API: `/metrics`, `/status`, the status page, and
//! run-time server control.
//!
//! One router serves two listeners ([`serve`]): the TCP endpoint (loopback
//! by default; an operator must configure another address explicitly to
//! expose it), where writes need a bearer token, and the control socket,
//! where the file's permissions decide ([`access`]).

pub mod access;
pub mod client;
pub mod counters;
mod page;
pub mod serve;
pub mod status;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::health::AdminState;
use crate::runtime::Snapshot;
use access::Access;
use counters::Counters;
use status::{AcceptFilterStatus, ServerStatus, Status, VrrpStatus};

/// VRRP instances publish their state here; the admin API only reads it.
pub type VrrpBoard = Arc<Mutex<BTreeMap<String, VrrpStatus>>>;

/// The accept filter's owner publishes its state here.
pub type FilterBoard = Arc<Mutex<AcceptFilterStatus>>;

#[derive(Clone)]
pub struct AdminContext {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Option<crate::metrics::MetricsHandle>,
    pub vrrp: VrrpBoard,
    pub filter: FilterBoard,
    /// Session counters of the UDP frontends.
    pub udp: crate::udp::StatsBoard,
    /// `[[announce]]` groups' state.
    pub announce: crate::announce::AnnounceBoard,
}

impl AdminContext {
    pub fn status(&self) -> Status {
        let vrrp = self
            .vrrp
            .lock()
            .expect("vrrp board lock")
            .values()
            .cloned()
            .collect();
        let counters = self
            .metrics
            .as_ref()
            .map(|handle| Counters::parse(&handle.render(), &status::COUNTER_NAMES));
        let mut status = Status::from_snapshot(
            &self.snapshot.load(),
            vrrp,
            counters.as_ref(),
            SystemTime::now(),
        );
        status.add_udp_sessions(&self.udp);
        status.process = Some(crate::pressure::process().status());
        status.announce = self.announce.status();
        status.accept_filter = self.filter.lock().expect("filter board lock").clone();
        status
    }
}

/// Body of `POST /servers/{backend}/{server}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerChange {
    /// "ready", "drain" or "maint".
    pub state: Option<AdminState>,
    pub weight: Option<u32>,
}

/// Largest request body: a write's JSON is a few dozen bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The API as served on a listener with `access`. Every route that changes
/// state goes in `writes`, behind [`access::authorize`]; `timeout` bounds
/// the time from a request's head to its answer (a body sent slowly).
pub fn router(context: AdminContext, access: Access, timeout: Duration) -> Router {
    let writes = Router::new()
        .route("/servers/{backend}/{server}", post(change_server))
        .route("/announce/{name}", post(change_announce))
        .route_layer(middleware::from_fn_with_state(access, access::authorize));
    Router::new()
        .route("/", get(page::serve))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .merge(writes)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(timeout, within))
        .with_state(context)
}

/// Answers 408 when a request (its body included) is not done in time.
async fn within(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request not complete within {}\n",
                humantime::format_duration(timeout)
            ),
        )
            .into_response(),
    }
}

async fn metrics(State(context): State<AdminContext>) -> Response {
    let Some(handle) = context.metrics else {
        return (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response();
    };
    // Off the async workers: a page of many servers takes a while to write,
    // and connections must not wait for it.
    match tokio::task::spawn_blocking(move || handle.render()).await {
        Ok(page) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering /metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn status_json(State(context): State<AdminContext>) -> impl IntoResponse {
    // The page polls it: never serve it from a cache.
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(context.status()),
    )
}

async fn change_server(
    State(context): State<AdminContext>,
    Path((backend, server)): Path<(String, String)>,
    Json(change): Json<ServerChange>,
) -> Response {
    if change.weight.is_some_and(|w| w > 256) {
        return (
            StatusCode::BAD_REQUEST,
            "weight must be 0..=256\n".to_owned(),
        )
            .into_response();
    }
    let snapshot = context.snapshot.load();
    let Some(runtime) = snapshot
        .backend(&backend)
        .and_then(|b| b.servers.iter().find(|s| *s.name() == server).cloned())
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("no server {backend}/{server}\n"),
        )
            .into_response();
    };
    if let Some(admin) = change.state {
        runtime.set_admin(admin);
    }
    if let Some(weight) = change.weight {
        runtime.set_weight(weight);
    }
    let status = context.status();
    let found: Option<ServerStatus> = status
        .backends
        .into_iter()
        .find(|b| b.name == backend)
        .and_then(|b| b.servers.into_iter().find(|s| s.name == server));
    Json(found).into_response()
}

/// Body of `POST /announce/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceChange {
    pub action: crate::announce::AdminAction,
}

async fn change_announce(
    State(context): State<AdminContext>,
    Path(name): Path<String>,
    Json(change): Json<AnnounceChange>,
) -> Response {
    use crate::announce::AdminError;
    match context.announce.admin(&name, change.action).await {
        Ok(groups) => Json(groups).into_response(),
        Err(e @ AdminError::UnknownGroup(_)) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The API takes the names the CLI takes.
    #[test]
    fn server_change_names_the_admin_state_as_the_cli_does() {
        let change: ServerChange = serde_json::from_str(r#"{"state": "drain"}"#).unwrap();
        assert_eq!(change.state, Some(AdminState::Drain));
        for state in [AdminState::Ready, AdminState::Drain, AdminState::Maint] {
            let cli = clap::ValueEnum::to_possible_value(&state).unwrap();
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", cli.get_name()));
            assert_eq!(cli.get_name(), state.as_str());
        }
        assert!(serde_json::from_str::<ServerChange>(r#"{"state": "up"}"#).is_err());
    }
}
