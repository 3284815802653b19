//! The loopback-only dashboard (`GET /`: pairing, builds, hot reloads, devices, logs) and QR code
//! (`GET /qr.svg`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Result};
use axum::extract::State;
use axum::http::header::{self, HeaderValue};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::AppError;
use super::AppState;
use crate::hub::ClientSnapshot;
use crate::pairing::qr;
use crate::session::random_base62;

/// The page, embedded in the binary.
const TEMPLATE: &str = include_str!("../../templates/dashboard.html");

/// Length of the per-response CSP nonce (base62, ≈ 131 bits like a token).
const NONCE_LEN: usize = 22;

/// `GET /`: the QR code, the connection details (token included: loopback only), the devices,
/// and (live, once its script connects to the hub as a viewer) builds, hot reloads and device
/// logs. Its one inline `<style>` and `<script>` are allowed by a per-response nonce; nothing
/// else may load or run, and it may connect to this server only.
pub async fn dashboard(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, AppError> {
    let session = state.store.current();
    let pairing = state.advertised.pairing(&session);
    let payload = pairing.payload();
    let svg = qr::svg(&payload)?;
    let clients = state.hub.clients();
    let nonce = random_base62(NONCE_LEN);
    let host = crate::pairing::url_host(&state.advertised.host);
    let values = [
        ("nonce", Value::Raw(&nonce)),
        ("project_name", Value::Text(&state.advertised.project_name)),
        ("version", Value::Text(super::VERSION)),
        ("qr_svg", Value::Raw(&svg)),
        ("host", Value::Text(&state.advertised.host)),
        ("http_port", Value::Text(&state.advertised.http_port.to_string())),
        ("ws_port", Value::Text(&state.advertised.ws_port.to_string())),
        (
            "ws_url",
            Value::Text(&format!("ws://{host}:{}", state.advertised.ws_port)),
        ),
        ("http_url", Value::Text(&state.advertised.http_base())),
        ("session_id", Value::Text(&session.id)),
        ("token", Value::Text(&session.token)),
        ("payload", Value::Text(&payload)),
        ("device_count", Value::Text(&clients.len().to_string())),
        ("device_rows", Value::Raw(&device_rows(&clients))),
        (
            "no_devices_hidden",
            Value::Raw(if clients.is_empty() { "" } else { " hidden" }),
        ),
        (
            "loopback_warning_hidden",
            Value::Raw(
                if crate::pairing::host::is_loopback_host(&state.advertised.host) {
                    ""
                } else {
                    " hidden"
                },
            ),
        ),
    ];
    let html = render(TEMPLATE, &values)?;
    let socket = socket_source(&headers, state.advertised.ws_port);
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self' {socket}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let headers = response.headers_mut();
    // Only base62 and ASCII punctuation: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Ok(response)
}

/// `GET /qr.svg`: the pairing QR code alone.
pub async fn qr_svg(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    let session = state.store.current();
    let svg = qr::svg(&state.advertised.pairing(&session).payload())?;
    let mut response = ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response();
    // An SVG can hold script; this one doesn't, and must never be able to run any.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    Ok(response)
}

/// The CSP source the page's WebSocket needs: the hub's port on the host the browser asked for
/// (the page connects to `ws://<its own host>:<wsPort>`; CSP's `'self'` covers only its own
/// port). The guard has let only `localhost`, an IP literal or the advertised host through; a
/// name CSP can't spell (an IPv6 literal) gets any host on that port.
fn socket_source(headers: &HeaderMap, ws_port: u16) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::authority::host)
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        })
        .unwrap_or("*");
    format!("ws://{host}:{ws_port}")
}

/// The server-rendered rows of the device table (the page's script keeps them fresh).
fn device_rows(clients: &[ClientSnapshot]) -> String {
    let mut rows = String::new();
    for client in clients {
        let model = client
            .device_info
            .get("model")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&client.client_id);
        let since =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(client.connected_at));
        // Writing to a String can't fail.
        let _ = write!(
            rows,
            "<tr><td>{}</td><td class=\"addr\">{}</td><td><time datetime=\"{since}\" data-ms=\"{}\">{since}</time></td>\
             <td class=\"noprint\"><button type=\"button\" class=\"danger\" data-client-id=\"{}\">Disconnect</button></td></tr>",
            escape(&crate::sanitize::shown(model, crate::sanitize::FIELD_MAX)),
            escape(&client.addr),
            client.connected_at,
            escape(&client.client_id),
        );
    }
    rows
}

/// A value for a `{{name}}` placeholder.
enum Value<'a> {
    /// Text, HTML-escaped on the way in.
    Text(&'a str),
    /// Markup the server generated itself (the SVG, table rows built with [`escape`]).
    Raw(&'a str),
}

/// Replaces every `{{name}}` in one pass, so a substituted value is never scanned for
/// placeholders itself. An unknown or unclosed placeholder is a bug in the template.
fn render(template: &str, values: &[(&str, Value<'_>)]) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 8 * 1024);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unclosed placeholder in the page template");
        };
        let name = &after[..end];
        match values.iter().find(|(key, _)| *key == name) {
            Some((_, Value::Text(text))) => out.push_str(&escape(text)),
            Some((_, Value::Raw(raw))) => out.push_str(raw),
            None => bail!("the page template uses an unknown placeholder {name:?}"),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_but_not_raw_values() {
        let html = render(
            "<p>{{a}}</p>{{b}}",
            &[
                ("a", Value::Text("<b>\"x\" & 'y'</b>")),
                ("b", Value::Raw("<svg/>")),
            ],
        )
        .expect("render");
        assert_eq!(
            html,
            "<p>&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;</p><svg/>"
        );
    }

    #[test]
    fn values_are_not_rescanned_for_placeholders() {
        let html = render(
            "{{a}}{{b}}",
            &[("a", Value::Text("{{b}}")), ("b", Value::Text("x"))],
        )
        .expect("render");
        assert_eq!(html, "{{b}}x");
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_errors() {
        assert!(render("{{nope}}", &[]).is_err());
        assert!(render("{{a", &[("a", Value::Text("x"))]).is_err());
    }

    #[test]
    fn template_has_no_inline_handlers_or_external_resources() {
        let lower = TEMPLATE.to_ascii_lowercase();
        for needle in [
            " onclick=",
            " onload=",
            " onerror=",
            "javascript:",
            "src=\"http",
            "href=\"http",
            "@import",
        ] {
            assert!(!lower.contains(needle), "template contains {needle}");
        }
    }

    #[test]
    fn device_rows_escape_what_devices_send() {
        let rows = device_rows(&[ClientSnapshot {
            client_id: "client-1".into(),
            device_info: serde_json::json!({"model": "<img src=x onerror=alert(1)>"}),
            addr: "192.168.1.20:5555".into(),
            connected_at: 0,
            last_activity: 0,
        }]);
        assert!(rows.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!rows.contains("<img"));
    }
}
