//! HTTP routes on `port` (SPEC §5), with axum.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::server::Server;

/// The crate version reported by `/health` and `/version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// All routes. Tests call `router(state).oneshot(request)` without a socket.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .fallback(not_found)
        .with_state(server)
}

async fn health(State(server): State<Arc<Server>>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "version": VERSION, "uptime": server.started.elapsed().as_secs()}))
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({"version": VERSION}))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response()
}
