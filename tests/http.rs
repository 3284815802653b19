//! HTTP routes (docs/protocol.md, "HTTP"): router-level tests without a socket (`oneshot`), then real-socket
//! tests against the `dev` binary.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use common::http::{get, request};
use common::{connect_message, recv_close, recv_type, send_json, within, ws_connect};
use jetstart::builder::artifacts::Artifact;
use jetstart::dev::Parts;
use jetstart::protocol::{close, ApkInfo};
use jetstart::term::reporter::Reporter;

const HTTP_PORT: u16 = 8765;
const LOCAL: &str = "127.0.0.1:50000";
const REMOTE: &str = "192.168.1.20:50000";
const LOCAL_HOST: &str = "127.0.0.1:8765";

/// Every loopback-only route with its method.
const LOOPBACK_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/qr.svg"),
    ("GET", "/session"),
    ("DELETE", "/clients/client-1"),
    ("POST", "/session/rotate"),
    ("POST", "/reload"),
];

struct Fixture {
    _dir: tempfile::TempDir,
    server: Arc<Parts>,
}

fn fixture() -> Fixture {
    fixture_with_ws_port(8766)
}

fn fixture_with_ws_port(ws_port: u16) -> Fixture {
    let dir = common::project();
    let mut config = jetstart::cli::config::for_project(dir.path()).expect("config");
    config.host = "devbox.local".to_owned();
    let server = Arc::new(Parts::new(
        Arc::new(config),
        HTTP_PORT,
        ws_port,
        Arc::new(Reporter::new(false, false)),
    ));
    Fixture { _dir: dir, server }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request through the router. `peer: None` leaves out `ConnectInfo`. Every answer is
/// checked for the headers every response must (not) have.
async fn call_with(
    server: &Arc<Parts>,
    method: &str,
    uri: &str,
    peer: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let mut req = builder.body(Body::empty()).expect("request");
    if let Some(peer) = peer {
        let addr: SocketAddr = peer.parse().expect("peer address");
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let response = jetstart::http::router(server.http_state())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = within("response body", response.into_body().collect())
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "{method} {uri}: no CORS header, ever"
    );
    assert_eq!(
        headers.get("x-content-type-options").map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{method} {uri}"
    );
    Answer {
        status,
        headers,
        body,
    }
}

/// A request from the developer's own machine with a proper `Host`.
async fn local(server: &Arc<Parts>, method: &str, uri: &str) -> Answer {
    call_with(server, method, uri, Some(LOCAL), &[("host", LOCAL_HOST)]).await
}

fn write_apk(server: &Parts, dir: &std::path::Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("app-debug.apk");
    std::fs::write(&path, bytes).expect("write apk");
    server.artifacts.publish(Artifact {
        path: path.clone(),
        info: ApkInfo {
            path: path.display().to_string(),
            size: bytes.len() as u64,
            hash: "00".repeat(32),
            version_code: Some(7),
            version_name: Some("1.2.3".into()),
            min_sdk_version: Some(24),
            target_sdk_version: Some(34),
            application_id: Some("com.example.demo".into()),
        },
    });
    path
}

// ---------------------------------------------------------------- public routes

#[tokio::test]
async fn health_and_version_answer_anyone() {
    let f = fixture();
    let health = call_with(
        &f.server,
        "GET",
        "/health",
        Some(REMOTE),
        &[("host", "evil.example")],
    )
    .await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");
    assert!(health.json()["uptime"].is_u64());
    let version = call_with(&f.server, "GET", "/version", Some(REMOTE), &[]).await;
    assert_eq!(version.status, StatusCode::OK);
    assert_eq!(version.json()["version"], jetstart::http::VERSION);
    assert!(
        version.json()["uptime"].is_u64(),
        "the README promises version and uptime"
    );
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let f = fixture();
    for uri in [
        "/nope",
        "/download",
        "/download/a/b.apk",
        "/clients",
        "/session/x",
    ] {
        let answer = local(&f.server, "GET", uri).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(answer.json()["error"].is_string(), "{uri}");
    }
}

#[tokio::test]
async fn wrong_methods_are_405_json_with_allow() {
    let f = fixture();
    let cases = [
        ("POST", "/health", "GET"),
        ("DELETE", "/version", "GET"),
        ("POST", "/download/app.apk", "GET"),
        ("POST", "/", "GET"),
        ("PUT", "/qr.svg", "GET"),
        ("POST", "/session", "GET"),
        ("GET", "/session/rotate", "POST"),
        ("GET", "/clients/client-1", "DELETE"),
        ("GET", "/reload", "POST"),
    ];
    for (method, uri, allowed) in cases {
        let answer = local(&f.server, method, uri).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(answer.json()["error"], "method not allowed", "{method} {uri}");
        let allow = answer.header("allow").unwrap_or_default();
        assert!(allow.contains(allowed), "{method} {uri}: Allow is {allow:?}");
    }
}

// ---------------------------------------------------------------- download

#[tokio::test]
async fn download_needs_the_token() {
    let f = fixture();
    write_apk(&f.server, f._dir.path(), b"PK apk bytes");
    let token = f.server.store.current().token.clone();
    // The last character changed (to one it is not: a token may well end in `x`).
    let last = if token.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &token[..token.len() - 1]);
    for uri in [
        "/download/app.apk".to_owned(),
        "/download/app.apk?token=".to_owned(),
        format!("/download/app.apk?token={wrong}"),
        format!("/download/app.apk?token={}", &token[..10]),
        format!("/download/app.apk?tok={token}"),
        "/download/app.apk?token=%ZZ".to_owned(),
    ] {
        let answer = call_with(&f.server, "GET", &uri, Some(REMOTE), &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(answer.json()["error"].is_string());
        assert!(!answer.text().contains(&token));
    }
}

#[tokio::test]
async fn download_is_404_json_before_any_build() {
    let f = fixture();
    let token = f.server.store.current().token.clone();
    let answer = call_with(
        &f.server,
        "GET",
        &format!("/download/app.apk?token={token}"),
        Some(REMOTE),
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json()["error"], "no APK has been built yet");
}

#[tokio::test]
async fn download_only_serves_apk_names() {
    let f = fixture();
    write_apk(&f.server, f._dir.path(), b"PK");
    let token = f.server.store.current().token.clone();
    for name in ["app.zip", "apk", ".apk", "app.apk.txt"] {
        let answer = call_with(
            &f.server,
            "GET",
            &format!("/download/{name}?token={token}"),
            Some(REMOTE),
            &[],
        )
        .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{name}");
        assert!(answer.json()["error"].is_string());
    }
}

#[tokio::test]
async fn download_streams_the_apk_to_any_peer() {
    let f = fixture();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    write_apk(&f.server, f._dir.path(), &bytes);
    let token = f.server.store.current().token.clone();
    for name in ["app.apk", "Other-Name.APK"] {
        let uri = format!("/download/{name}?token={token}");
        // A phone on the Wi-Fi, whatever Host it uses.
        let answer = call_with(
            &f.server,
            "GET",
            &uri,
            Some(REMOTE),
            &[("host", "192.168.1.100:8765")],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.header("content-type"),
            Some("application/vnd.android.package-archive")
        );
        assert_eq!(
            answer.header("content-length"),
            Some(bytes.len().to_string().as_str())
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        let disposition = answer.header("content-disposition").expect("content-disposition");
        assert_eq!(disposition, format!("attachment; filename=\"{name}\""));
        assert!(answer.body == bytes, "downloaded bytes differ");
    }
}

#[tokio::test]
async fn download_after_rotation_needs_the_new_token() {
    let f = fixture();
    write_apk(&f.server, f._dir.path(), b"PK");
    let old = f.server.store.current().token.clone();
    let new = f.server.rotation.rotate("test").token.clone();
    let answer = call_with(
        &f.server,
        "GET",
        &format!("/download/app.apk?token={old}"),
        Some(REMOTE),
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = call_with(
        &f.server,
        "GET",
        &format!("/download/app.apk?token={new}"),
        Some(REMOTE),
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn download_of_a_vanished_file_is_404() {
    let f = fixture();
    let path = write_apk(&f.server, f._dir.path(), b"PK");
    std::fs::remove_file(path).expect("rm");
    let token = f.server.store.current().token.clone();
    let answer = call_with(
        &f.server,
        "GET",
        &format!("/download/app.apk?token={token}"),
        Some(REMOTE),
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.json()["error"].is_string());
}

// ---------------------------------------------------------------- the loopback guard

#[tokio::test]
async fn every_loopback_route_refuses_other_peers_and_foreign_hosts() {
    let f = fixture();
    let id_before = f.server.store.current().id.clone();
    let refused: &[(Option<&str>, Option<&str>)] = &[
        // A phone on the LAN, even naming localhost.
        (Some(REMOTE), Some(LOCAL_HOST)),
        (Some(REMOTE), Some("localhost:8765")),
        (Some("[::ffff:192.168.1.20]:50000"), Some(LOCAL_HOST)),
        (Some("[fe80::1]:50000"), Some(LOCAL_HOST)),
        // DNS rebinding: a loopback peer, but the browser names the attacker's host.
        (Some(LOCAL), Some("evil.example")),
        (Some(LOCAL), Some("evil.example:8765")),
        (Some(LOCAL), Some("localhost.evil.example:8765")),
        (Some("[::1]:50000"), Some("evil.example")),
        (Some(LOCAL), None),
        // No peer address known: refused, not assumed local.
        (None, Some(LOCAL_HOST)),
    ];
    for (method, uri) in LOOPBACK_ROUTES {
        for (peer, host) in refused {
            let headers: Vec<(&str, &str)> = host.iter().map(|h| ("host", *h)).collect();
            let answer = call_with(&f.server, method, uri, *peer, &headers).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {uri} from {peer:?} as {host:?}"
            );
            assert!(answer.json()["error"].is_string());
            assert!(!answer.text().contains(&f.server.store.current().token));
        }
    }
    assert_eq!(
        f.server.store.current().id,
        id_before,
        "a refused rotate must not rotate"
    );
}

#[tokio::test]
async fn loopback_routes_accept_every_local_spelling() {
    let f = fixture();
    let ok: &[(&str, &str)] = &[
        (LOCAL, "localhost"),
        (LOCAL, "LocalHost:8765"),
        (LOCAL, "127.0.0.1:8765"),
        ("127.1.2.3:1", "127.0.0.1"),
        ("[::1]:50000", "[::1]:8765"),
        ("[::ffff:127.0.0.1]:50000", "localhost:8765"),
        (LOCAL, "devbox.local:8765"),
        (LOCAL, "DEVBOX.LOCAL"),
        (LOCAL, "192.168.1.100:8765"),
    ];
    for (peer, host) in ok {
        let answer = call_with(&f.server, "GET", "/session", Some(peer), &[("host", host)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{peer} as {host}");
    }
}

#[tokio::test]
async fn cross_site_posts_are_refused_same_origin_ones_pass() {
    let f = fixture();
    let id_before = f.server.store.current().id.clone();
    for origin in [
        "http://evil.example",
        "null",
        "http://127.0.0.1:9999",
        "https://127.0.0.1:8765",
    ] {
        for uri in ["/session/rotate", "/reload"] {
            let answer = call_with(
                &f.server,
                "POST",
                uri,
                Some(LOCAL),
                &[("host", LOCAL_HOST), ("origin", origin)],
            )
            .await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{uri} from {origin}");
        }
    }
    assert_eq!(f.server.store.current().id, id_before);
    let answer = call_with(
        &f.server,
        "POST",
        "/reload",
        Some(LOCAL),
        &[("host", LOCAL_HOST), ("origin", "http://127.0.0.1:8765")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

// ---------------------------------------------------------------- pages

#[tokio::test]
async fn pairing_page_shows_qr_details_and_a_strict_csp() {
    let f = fixture();
    let session = f.server.store.current();
    let answer = local(&f.server, "GET", "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let html = answer.text();
    assert!(html.contains("<svg "), "inline QR code");
    assert!(html.contains(&session.id));
    assert!(
        html.contains(&session.token),
        "the page is loopback-only and shows the token"
    );
    let payload = f.server.advertised.pairing(&session).payload();
    assert!(html.contains(&payload), "the copyable payload");
    assert!(html.contains("devbox.local") && html.contains("8765") && html.contains("8766"));
    assert!(html.contains("@media print"));
    assert!(!html.contains("{{"), "every placeholder substituted");

    let csp = answer.header("content-security-policy").expect("CSP");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("nonce");
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(html.contains(&format!("<style nonce=\"{nonce}\">")));
    let again = local(&f.server, "GET", "/").await;
    assert_ne!(
        again.header("content-security-policy"),
        Some(csp),
        "a fresh nonce per response"
    );
}

#[tokio::test]
async fn pairing_page_escapes_the_project_name() {
    let dir = common::project();
    let mut config = jetstart::cli::config::for_project(dir.path()).expect("config");
    config.project_name = "<script>alert(1)</script>".to_owned();
    let server = Arc::new(Parts::new(
        Arc::new(config),
        HTTP_PORT,
        8766,
        Arc::new(Reporter::new(false, false)),
    ));
    let html = local(&server, "GET", "/").await.text();
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test]
async fn qr_svg_decodes_to_the_payload() {
    let f = fixture();
    let answer = local(&f.server, "GET", "/qr.svg").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("image/svg+xml"));
    let svg = answer.text();
    assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
    let payload = f.server.advertised.pairing(&f.server.store.current()).payload();
    assert_eq!(decode_svg(&svg), payload);
}

/// Rasterizes the SVG's `M{x} {y}h1v1h-1z` modules and decodes them with rqrr.
fn decode_svg(svg: &str) -> String {
    let size: usize = svg
        .split("viewBox=\"0 0 ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("viewBox");
    let path = svg
        .split(" d=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("path");
    let scale = 4;
    let mut dark = vec![false; size * size];
    for module in path.split('M').filter(|m| !m.is_empty()) {
        let coords = module.trim_end_matches("h1v1h-1z");
        let (x, y) = coords.split_once(' ').expect("x y");
        let (x, y): (usize, usize) = (x.parse().expect("x"), y.parse().expect("y"));
        dark[y * size + x] = true;
    }
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(size * scale, size * scale, |x, y| {
        if dark[(y / scale) * size + x / scale] {
            0
        } else {
            255
        }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().expect("decodes").1
}

// ---------------------------------------------------------------- management

#[tokio::test]
async fn session_lists_metadata_but_never_the_token() {
    let f = fixture();
    let session = f.server.store.current();
    let answer = local(&f.server, "GET", "/session").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(!answer.text().contains(&session.token));
    let json = answer.json();
    assert_eq!(json["id"], session.id.as_str());
    assert_eq!(json["projectName"], f.server.config.project_name.as_str());
    assert_eq!(json["createdAt"], session.created_at);
    assert!(json["lastActivity"].is_u64());
    assert_eq!(json["clients"], serde_json::json!([]));
    assert!(json.get("token").is_none());
}

#[tokio::test]
async fn rotate_answers_with_the_new_session_without_its_token() {
    let f = fixture();
    let old = f.server.store.current();
    let answer = local(&f.server, "POST", "/session/rotate").await;
    assert_eq!(answer.status, StatusCode::OK);
    let new = f.server.store.current();
    assert_ne!(new.id, old.id);
    assert_ne!(new.token, old.token);
    let json = answer.json();
    assert_eq!(json["id"], new.id.as_str());
    assert!(json.get("token").is_none());
    assert!(!answer.text().contains(&new.token) && !answer.text().contains(&old.token));
}

#[tokio::test]
async fn reload_reports_zero_devices_when_none_is_connected() {
    let f = fixture();
    let answer = local(&f.server, "POST", "/reload").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        serde_json::json!({"reloadType": "full", "devices": 0})
    );
}

#[tokio::test]
async fn revoke_unknown_client_is_404_json() {
    let f = fixture();
    let answer = local(&f.server, "DELETE", "/clients/client-999").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.json()["error"].is_string());
}

/// The library's hub on an ephemeral port with real WebSocket devices, driven by the router.
#[tokio::test]
async fn revoke_closes_the_device_with_4004_and_session_lists_devices() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ws_port = listener.local_addr().expect("addr").port();
    let f = fixture_with_ws_port(ws_port);
    let hub = f.server.hub.clone();
    let serving = tokio::spawn(async move { hub.serve(listener).await });
    let session = f.server.store.current();
    let url = format!("ws://127.0.0.1:{ws_port}");

    let mut first = ws_connect(&url).await;
    send_json(&mut first, &connect_message(&session.id, &session.token)).await;
    let first_id = recv_type(&mut first, "core:connected").await["clientId"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut second = ws_connect(&url).await;
    send_json(&mut second, &connect_message(&session.id, &session.token)).await;
    recv_type(&mut second, "core:connected").await;

    let listed = local(&f.server, "GET", "/session").await;
    let clients = listed.json()["clients"].as_array().expect("clients").clone();
    assert_eq!(clients.len(), 2);
    assert!(clients.iter().any(|c| c["clientId"] == first_id.as_str()));
    assert_eq!(clients[0]["deviceInfo"]["model"], "Pixel Test");
    assert!(clients[0]["addr"]
        .as_str()
        .expect("addr")
        .starts_with("127.0.0.1:"));
    assert!(clients[0]["connectedAt"].is_u64() && clients[0]["lastActivity"].is_u64());
    assert!(!listed.text().contains(&session.token));
    let page = local(&f.server, "GET", "/").await.text();
    assert!(page.contains("Pixel Test") && page.contains(&first_id));

    let answer = local(&f.server, "DELETE", &format!("/clients/{first_id}")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["clientId"], first_id.as_str());
    let (code, reason, _) = recv_close(&mut first).await;
    assert_eq!(code, close::REVOKED);
    assert_eq!(reason, "revoked by the developer");

    let again = local(&f.server, "DELETE", &format!("/clients/{first_id}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let reload = local(&f.server, "POST", "/reload").await;
    assert_eq!(reload.json()["devices"], 1);
    let message = recv_type(&mut second, "core:reload").await;
    assert_eq!(message["reloadType"], "full");
    assert_eq!(message["sessionId"], session.id.as_str());
    serving.abort();
}

// ---------------------------------------------------------------- real sockets, real binary

#[tokio::test]
async fn real_guard_and_pages_over_tcp() {
    let project = common::project();
    let dev = common::Dev::start(project.path(), &[]).await;
    let port = dev.ready.http_port;
    let page = get(port, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains(&dev.ready.session_id));
    assert!(page.header("content-security-policy").is_some());
    let rebound = request(port, "GET", "/session", &[("Host", "evil.example:1234")]).await;
    assert_eq!(rebound.status, 403);
    assert!(rebound.header("access-control-allow-origin").is_none());
    let missing = get(port, "/nothing-here").await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());
    let wrong = request(port, "PUT", "/health", &[]).await;
    assert_eq!(wrong.status, 405);
}

#[tokio::test]
async fn real_rotate_closes_devices_with_4001_and_new_credentials_work() {
    let project = common::project();
    let mut dev = common::Dev::start(project.path(), &["--no-initial-build"]).await;
    let (mut device, _) = dev.connect().await;

    let answer = request(dev.ready.http_port, "POST", "/session/rotate", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(!answer.text().contains(&dev.ready.token));

    let (code, _, _) = recv_close(&mut device).await;
    assert_eq!(code, close::WRONG_SESSION);
    let rotated = dev.event("session-rotated").await;
    let new_id = rotated["session"]["id"].as_str().expect("id").to_owned();
    let new_token = rotated["session"]["token"].as_str().expect("token").to_owned();
    assert_eq!(answer.json()["id"], new_id.as_str());
    assert!(
        !answer.text().contains(&new_token),
        "the JSON API never returns a token"
    );
    assert_ne!(new_id, dev.ready.session_id);

    // The new credentials work, the old ones get 4001.
    let mut fresh = ws_connect(&dev.ws_url()).await;
    send_json(&mut fresh, &connect_message(&new_id, &new_token)).await;
    let connected = recv_type(&mut fresh, "core:connected").await;
    assert_eq!(connected["sessionId"], new_id.as_str());
    let mut stale = ws_connect(&dev.ws_url()).await;
    send_json(
        &mut stale,
        &connect_message(&dev.ready.session_id, &dev.ready.token),
    )
    .await;
    assert_eq!(recv_close(&mut stale).await.0, close::WRONG_SESSION);
    // And the download route follows the rotation.
    let old = get(
        dev.ready.http_port,
        &format!("/download/app.apk?token={}", dev.ready.token),
    )
    .await;
    assert_eq!(old.status, 401);
}

#[tokio::test]
async fn real_revoke_closes_one_device_with_4004_and_keeps_the_other() {
    let project = common::project();
    let dev = common::Dev::start(project.path(), &["--no-initial-build"]).await;
    let (mut revoked, connected) = dev.connect().await;
    let revoked_id = connected["clientId"].as_str().expect("clientId").to_owned();
    let (mut kept, _) = dev.connect().await;

    let answer = request(
        dev.ready.http_port,
        "DELETE",
        &format!("/clients/{revoked_id}"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let (code, reason, _) = recv_close(&mut revoked).await;
    assert_eq!(code, close::REVOKED);
    assert_eq!(reason, "revoked by the developer");

    let unknown = request(
        dev.ready.http_port,
        "DELETE",
        &format!("/clients/{revoked_id}"),
        &[],
    )
    .await;
    assert_eq!(unknown.status, 404);

    let reload = request(dev.ready.http_port, "POST", "/reload", &[]).await;
    assert_eq!(reload.status, 200);
    assert_eq!(reload.json()["devices"], 1);
    let message = recv_type(&mut kept, "core:reload").await;
    assert_eq!(message["reloadType"], "full");
    assert_eq!(message["sessionId"], dev.ready.session_id.as_str());
}

/// A `--build-cmd` that "builds" an APK with known bytes.
const FAKE_BUILD: &str = "mkdir -p app/build/outputs/apk/debug && \
    printf 'PK\\003\\004 fake apk from the test build' > app/build/outputs/apk/debug/app-debug.apk";

#[tokio::test]
async fn real_download_of_a_built_apk() {
    let project = common::project();
    let dev = common::Dev::start(project.path(), &["--build-cmd", FAKE_BUILD]).await;
    // The first device triggers the initial build.
    let (mut device, _) = dev.connect().await;
    let complete = recv_type(&mut device, "core:build-complete").await;
    let url = complete["downloadUrl"].as_str().expect("downloadUrl");
    let path = url
        .split_once(&format!(":{}", dev.ready.http_port))
        .expect("url has the port")
        .1;
    assert!(path.contains(&format!("token={}", dev.ready.token)));
    let expected =
        std::fs::read(project.path().join("app/build/outputs/apk/debug/app-debug.apk")).expect("apk");

    let answer = get(dev.ready.http_port, path).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/vnd.android.package-archive")
    );
    assert_eq!(
        answer.header("content-length"),
        Some(expected.len().to_string().as_str())
    );
    assert_eq!(answer.body, expected);
    let no_token = get(dev.ready.http_port, "/download/app.apk").await;
    assert_eq!(no_token.status, 401);
}
