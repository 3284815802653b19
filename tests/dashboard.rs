//! The browser dashboard (`GET /`, README, Dashboard): the page as served (router level, no
//! socket), then the real thing in headless Chromium against the `dev` binary, live over the hub
//! as a viewer, measured and photographed at 1200 and 420 px wide.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::browser::{browser_tools, Chromium, Driver};
use common::build::{env_refs, BuildProject, Toolchain};
use common::{recv_type, send_json, Dev};
use jetstart::dev::Parts;
use jetstart::term::reporter::Reporter;

const GREETING_KT: &str = "app/src/main/java/com/example/demo/Greeting.kt";

/// `GET /` from a loopback peer with `host` as the `Host` header: (CSP, HTML).
async fn page(advertised: &str, host: &str) -> (String, String) {
    let dir = common::project();
    let mut config = jetstart::cli::config::for_project(dir.path()).expect("config");
    config.host = advertised.to_owned();
    let server = Arc::new(Parts::new(
        Arc::new(config),
        8765,
        8766,
        Arc::new(Reporter::new(false, false)),
    ));
    let mut request = Request::get("/")
        .header("host", host)
        .body(Body::empty())
        .expect("request");
    let peer: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = jetstart::http::router(server.http_state())
        .oneshot(request)
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let csp = response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("CSP")
        .to_owned();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (csp, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_dashboard_warns_when_the_advertised_host_is_loopback() {
    let warning = "id=\"loopback-warning\" role=\"note\">";
    for loopback in ["127.0.0.1", "localhost", "::1"] {
        let (_, html) = page(loopback, "127.0.0.1:8765").await;
        assert!(html.contains(warning), "{loopback}: the warning is shown");
        assert!(html.contains("--host 10.0.2.2") && html.contains("adb reverse tcp:8766 tcp:8766"));
    }
    let (_, html) = page("192.168.1.5", "127.0.0.1:8765").await;
    assert!(
        html.contains("id=\"loopback-warning\" role=\"note\" hidden>"),
        "no warning for a LAN host"
    );
}

#[tokio::test]
async fn the_dashboard_may_connect_to_the_hub_on_its_own_host_only() {
    for (host, source) in [
        ("127.0.0.1:8765", "ws://127.0.0.1:8766"),
        ("localhost:8765", "ws://localhost:8766"),
        ("devbox.local:8765", "ws://devbox.local:8766"),
        // CSP can't spell an IPv6 literal: any host, on the hub's port only.
        ("[::1]:8765", "ws://*:8766"),
    ] {
        let (csp, html) = page("devbox.local", host).await;
        assert!(
            csp.contains(&format!("connect-src 'self' {source};")),
            "{host}: {csp}"
        );
        assert!(html.contains("data-ws-port=\"8766\""));
    }
}

/// Checks the layout the driver measured at one width: no horizontal scrolling, every card on
/// the page, and no block touching the next.
fn assert_layout(layout: &Value, width: u64) {
    let num = |v: &Value| v.as_f64().expect("number");
    assert_eq!(layout["innerWidth"], width, "{layout}");
    assert!(
        layout["scrollWidth"].as_u64() <= layout["clientWidth"].as_u64(),
        "{width} px: the page scrolls sideways: {layout}"
    );
    for card in layout["cards"].as_array().expect("cards") {
        assert!(
            num(&card["left"]) >= 0.0 && num(&card["right"]) <= num(&layout["clientWidth"]),
            "{width} px: {card} sticks out"
        );
    }
    let blocks = layout["blocks"].as_array().expect("blocks");
    for pair in blocks.windows(2) {
        let gap = num(&pair[1]["top"]) - num(&pair[0]["bottom"]);
        assert!(
            gap >= 10.0,
            "{width} px: {} and {} are {gap} px apart",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test]
async fn the_dashboard_in_chromium_follows_builds_reloads_and_logs_at_1200_and_420_px() {
    let Some(tools) = browser_tools() else {
        return;
    };
    let project = BuildProject::with_wrapper();
    let toolchain = Toolchain::new();
    let mut env = project.env(&toolchain.env());
    env.push(("FAKE_GRADLE_MODE", "fail".into()));
    let mut dev = Dev::start_with_env(project.path(), &["--no-compile-worker"], &env_refs(&env)).await;
    let chromium = Chromium::launch(&tools).await;
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&screenshots).expect("mkdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let url = dev.http_url("/");
    let mut driver = Driver::spawn(
        &tools,
        &script,
        &[&chromium.endpoint, &url, &screenshots.display().to_string()],
    );
    driver.expect("live", Duration::from_secs(30)).await;
    let viewer = dev.event("client-connected").await;
    assert_eq!(viewer["role"], "viewer", "the page is a viewer: {viewer}");

    // A device: its first connection builds, and the build fails with a compiler error.
    let (mut phone, _) = dev.connect().await;
    dev.event("build-error").await;
    let logs = [
        json!({"message": "only a message"}),
        json!({"level": "warn", "tag": "Net", "message": "slow response"}),
        json!({"level": "E", "tag": "AndroidRuntime",
               "message": "FATAL EXCEPTION: main\njava.lang.IllegalStateException: boom\n\tat com.example.demo.MainActivity.onCreate(MainActivity.kt:12)"}),
        json!({"level": "debug", "tag": "Compose", "message": "recomposed"}),
    ];
    for log in &logs {
        send_json(&mut phone, &json!({"type": "client:log", "log": log})).await;
        recv_type(&mut phone, "core:log").await;
    }
    project.save(GREETING_KT, "package com.example.demo\n\nclass Greeting\n");
    dev.event("dex-reload").await;

    let result = driver.expect("result", Duration::from_secs(60)).await;
    eprintln!("screenshots: {}", screenshots.display());
    assert_eq!(result["errors"], json!([]), "the page logged errors: {result}");
    assert_eq!(result["live"], "live");
    assert_eq!(result["warning"], true, "127.0.0.1 is advertised: {result}");

    let build = &result["build"];
    assert_eq!(build["state"], "Build failed");
    assert_eq!(build["error"], "build failed with exit code 1", "{build}");
    assert_eq!(build["diagnosticShown"], true);
    assert_eq!(
        build["diagnostic"],
        "e: file:///project/app/src/main/java/com/example/demo/MainActivity.kt:3:5 Unresolved reference: missingThing"
    );

    let reload = result["reloads"][0].as_str().expect("a hot reload row");
    assert!(
        reload.contains(" ms")
            && reload.contains("compile ")
            && reload.contains("dex ")
            && reload.contains("1 device"),
        "{reload}"
    );
    assert!(
        reload.contains("Greeting.kt → com.example.demo.Greeting"),
        "{reload}"
    );

    let levels = |logs: &Value, shown: bool| -> Vec<String> {
        logs.as_array()
            .expect("logs")
            .iter()
            .filter(|l| l["shown"] == shown)
            .map(|l| l["level"].as_str().expect("level").to_owned())
            .collect()
    };
    assert_eq!(levels(&result["logs"], true), ["info", "warn", "error", "debug"]);
    assert_eq!(levels(&result["logsFromWarn"], true), ["warn", "error"]);
    assert_eq!(result["logCount"], "2 of 4 lines");
    let crash = result["logs"][2]["text"].as_str().expect("text");
    assert!(
        crash.contains("main\njava.lang.IllegalStateException: boom\n\tat com.example"),
        "a multi-line log keeps its lines: {crash:?}"
    );
    assert!(result["logs"][0]["text"]
        .as_str()
        .is_some_and(|t| t.contains("only a message")));

    let wide = &result["wide"];
    assert_layout(wide, 1200);
    let card = |layout: &Value, id: &str| -> Value {
        layout["cards"]
            .as_array()
            .expect("cards")
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no card {id}"))
            .clone()
    };
    let (qr, details) = (card(wide, "qr"), card(wide, "details"));
    assert_eq!(qr["top"], details["top"], "card tops line up: {qr} {details}");
    assert!(
        qr["right"].as_f64() < details["left"].as_f64(),
        "side by side at 1200 px"
    );
    assert_layout(&result["narrow"], 420);
    let narrow_qr = card(&result["narrow"], "qr");
    let narrow_details = card(&result["narrow"], "details");
    assert!(
        narrow_details["top"].as_f64() > narrow_qr["bottom"].as_f64(),
        "stacked at 420 px"
    );
    assert!(
        screenshots.join("dashboard-1200.png").is_file() && screenshots.join("dashboard-420.png").is_file()
    );
}
