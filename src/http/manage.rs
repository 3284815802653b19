//! Loopback-only device management: `GET /session`, `DELETE /clients/<id>`,
//! `POST /session/rotate`, `POST /reload`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::AppState;
use super::{error_response, AppError};
use crate::hub::ClientSnapshot;
use crate::protocol::{close, CoreMessage, ReloadType};
use crate::session::Session;

/// Why the session was rotated, as reported in the `session-rotated` event.
pub const ROTATE_REASON: &str = "rotated by the developer";

/// What `GET /session` (and `POST /session/rotate`) answer. Deliberately has no token field:
/// no JSON route ever returns the token; the terminal, the `--json` events and the pairing
/// page are where a human gets it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    pub project_name: String,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms.
    pub last_activity: u64,
    pub clients: Vec<ClientSnapshot>,
}

impl SessionInfo {
    pub fn new(state: &AppState, session: &Session) -> Self {
        Self {
            id: session.id.clone(),
            project_name: state.advertised.project_name.clone(),
            created_at: session.created_at,
            last_activity: state.store.last_activity(),
            clients: state.hub.clients(),
        }
    }
}

pub async fn session(State(state): State<Arc<AppState>>) -> Json<SessionInfo> {
    let current = state.store.current();
    Json(SessionInfo::new(&state, &current))
}

/// Closes one device with 4004; 404 if no such device is connected.
pub async fn revoke(State(state): State<Arc<AppState>>, Path(client_id): Path<String>) -> Response {
    if state
        .hub
        .close_client(&client_id, close::REVOKED, close::REASON_REVOKED)
    {
        tracing::info!("device {client_id} revoked by the developer");
        Json(json!({"clientId": client_id, "closed": true})).into_response()
    } else {
        error_response(StatusCode::NOT_FOUND, "no connected device has that client id")
    }
}

/// Rotates the session (docs/protocol.md, "HTTP") and answers with the new session, without its token.
pub async fn rotate(State(state): State<Arc<AppState>>) -> Result<Json<SessionInfo>, AppError> {
    // Rotation rewrites the BuildConfig session file: blocking I/O, kept off the async workers.
    let rotation = state.rotation.clone();
    let fresh = tokio::task::spawn_blocking(move || rotation.rotate(ROTATE_REASON)).await?;
    Ok(Json(SessionInfo::new(&state, &fresh)))
}

/// Broadcasts `core:reload` full; answers with how many devices it was queued for.
pub async fn reload(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let session = state.store.current();
    let devices = state.hub.broadcast(&CoreMessage::Reload {
        session_id: session.id.clone(),
        reload_type: ReloadType::Full,
    });
    tracing::info!("full reload sent to {devices} device(s)");
    Json(json!({"reloadType": "full", "devices": devices}))
}
