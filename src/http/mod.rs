//! HTTP routes on `port` (docs/protocol.md, "HTTP"), with axum: health, APK download, and the loopback-only
//! dashboard (the pairing page) and device management.

pub mod browser;
mod download;
mod guard;
mod manage;
mod pages;
pub mod serve;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{middleware, Json, Router};
use serde_json::json;

use crate::builder::artifacts::Artifacts;
use crate::hub::Hub;
use crate::pairing::Advertised;
use crate::rotate::Rotation;
use crate::session::SessionStore;
use guard::{LoopbackOnly, Peer};

/// The crate version reported by `/health` and `/version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the routes work with; shared by every request.
pub struct AppState {
    pub hub: Hub,
    pub store: Arc<SessionStore>,
    pub rotation: Arc<Rotation>,
    pub artifacts: Artifacts,
    pub advertised: Advertised,
    /// When the server started, for `uptime`.
    pub started: std::time::Instant,
}

/// All routes. Tests call `router(state).oneshot(request)` without a socket.
///
/// There is deliberately no CORS layer (no `Access-Control-Allow-Origin` anywhere) and no
/// request-tracing layer: download URLs carry the token in their query string.
pub fn router(state: Arc<AppState>) -> Router {
    // Everything in here passes the loopback + Host guard first (docs/protocol.md, "HTTP").
    let loopback = Router::new()
        .route("/", get(pages::dashboard))
        .route("/qr.svg", get(pages::qr_svg))
        .route("/session", get(manage::session))
        .route("/session/rotate", post(manage::rotate))
        .route("/clients/{client_id}", delete(manage::revoke))
        .route("/reload", post(manage::reload))
        .route_layer(middleware::from_extractor_with_state::<LoopbackOnly, _>(
            state.clone(),
        ));
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/download/{file}", get(download::download))
        .merge(loopback)
        // After every route is added: it applies to the routes that exist when it is called.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::map_response(common_headers))
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "version": VERSION, "uptime": state.started.elapsed().as_secs()}))
}

async fn version(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({"version": VERSION, "uptime": state.started.elapsed().as_secs()}))
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not found")
}

async fn method_not_allowed() -> Response {
    // axum adds the `Allow` header to this response itself.
    error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// Headers every response gets. Nothing the server sends is worth caching: the page and the
/// JSON carry live state and credentials, downloads are per-session.
async fn common_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A JSON error body: `{"error": message}`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// An unexpected failure inside a handler: logged in full, answered with a bare 500 so no
/// internals (paths, OS errors) reach the client.
pub(crate) struct AppError(anyhow::Error);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!("HTTP request failed: {:#}", self.0);
        error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }
}

impl<E: Into<anyhow::Error>> From<E> for AppError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}
