//! The admin HTTP endpoint: `/metrics`, `/status` and run-time server control.
//!
//! It binds loopback by default; an operator must configure another
//! address explicitly to expose it.

pub mod client;
pub mod counters;
mod page;
pub mod status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use crate::health::AdminState;
use crate::runtime::Snapshot;
use counters::Counters;
use status::{AcceptFilterStatus, ServerStatus, Status, VrrpStatus};

/// VRRP instances publish their state here; the admin API only reads it.
pub type VrrpBoard = Arc<Mutex<BTreeMap<String, VrrpStatus>>>;

/// The accept filter's owner publishes its state here.
pub type FilterBoard = Arc<Mutex<AcceptFilterStatus>>;

#[derive(Clone)]
pub struct AdminContext {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Option<PrometheusHandle>,
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

pub fn router(context: AdminContext) -> Router {
    Router::new()
        .route("/", get(page::serve))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .route("/servers/{backend}/{server}", post(change_server))
        .route("/announce/{name}", post(change_announce))
        .with_state(context)
}

/// Binds the admin endpoint; the caller spawns [`serve`] on the listener.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

pub async fn serve(listener: tokio::net::TcpListener, context: AdminContext) {
    if let Err(error) = axum::serve(listener, router(context)).await {
        tracing::error!(%error, "admin endpoint stopped");
    }
}

async fn metrics(State(context): State<AdminContext>) -> Response {
    match &context.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
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
