//! `GET /download/<name>.apk?token=…`: streams the latest APK to whoever holds the token.

use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::AppState;
use super::{error_response, AppError, Peer};
use crate::session::ct_eq;

/// The MIME type Android's package installer expects.
pub const APK_CONTENT_TYPE: &str = "application/vnd.android.package-archive";

/// Serves the APK. The name in the URL is free (JetStart's app asks for `app.apk`) but must end
/// in `.apk`; the file is streamed, never read whole into memory.
pub async fn download(
    State(state): State<Arc<AppState>>,
    Peer(peer): Peer,
    Path(file): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, AppError> {
    let is_apk = file.len() > 4
        && file
            .get(file.len() - 4..)
            .is_some_and(|ext| ext.eq_ignore_ascii_case(".apk"));
    if !is_apk {
        return Ok(error_response(StatusCode::NOT_FOUND, "not found"));
    }
    // A query string that doesn't parse simply carries no token.
    let presented = query
        .as_ref()
        .ok()
        .and_then(|Query(pairs)| pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()));
    let session = state.store.current();
    let backoff = state.hub.auth_backoff();
    if !presented.is_some_and(|token| ct_eq(token, &session.token)) {
        // The same per-address back-off as on the WebSocket: guessing here is no faster.
        if let Some(addr) = peer {
            tokio::time::sleep(backoff.failed(addr.ip())).await;
        }
        return Ok(error_response(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token — rescan the QR code",
        ));
    }
    if let Some(addr) = peer {
        backoff.succeeded(addr.ip());
    }
    let Some(artifact) = state.artifacts.latest() else {
        return Ok(error_response(StatusCode::NOT_FOUND, "no APK has been built yet"));
    };
    let path = artifact.path.clone();
    let opened = tokio::task::spawn_blocking(move || crate::project_file::open_regular(&path)).await?;
    let file_handle = match opened.map(tokio::fs::File::from_std) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => {
            tracing::warn!("the last APK ({}) is gone from disk", artifact.path.display());
            return Ok(error_response(
                StatusCode::NOT_FOUND,
                "the last APK is no longer on disk",
            ));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("could not open {}", artifact.path.display()))
                .into())
        }
    };
    let len = file_handle
        .metadata()
        .await
        .with_context(|| format!("could not read the size of {}", artifact.path.display()))?
        .len();
    match peer {
        Some(addr) => tracing::info!("sending the APK ({len} bytes) to {}", addr.ip()),
        None => tracing::info!("sending the APK ({len} bytes)"),
    }
    // `take`: if a build rewrites the file meanwhile, never send more than Content-Length says.
    let body = Body::from_stream(ReaderStream::new(file_handle.take(len)));
    let disposition = format!("attachment; filename=\"{}\"", safe_file_name(&file));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(APK_CONTENT_TYPE));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The requested name reduced to `[A-Za-z0-9._-]`, so it can't break out of the header's quotes.
fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_made_header_safe() {
        assert_eq!(safe_file_name("app-debug.apk"), "app-debug.apk");
        assert_eq!(safe_file_name("a\"b\r\nc é.apk"), "a_b__c__.apk");
    }
}
