//! Roles (README, Roles): a client whose `deviceInfo.role` is `"viewer"` (`jetstart-rs logs`, the
//! dashboard) follows builds, reloads and logs like a device, but is not one: not listed, not
//! counted, no initial build, no hold on the session. JetStart's clients, which send no role, stay
//! devices.

mod common;

use std::time::Duration;

use common::build::{env_refs, BuildProject, Toolchain};
use common::http::{get, request};
use common::term::{PtyDev, Tool};
use common::{connect_message, recv_close, recv_json, recv_type, send_json, ws_connect, Dev, Ws};
use serde_json::{json, Value};

/// Long enough for a build the viewer wrongly started to show up (the scheduler reacts within
/// milliseconds; CI machines are slow).
const QUIET: Duration = Duration::from_millis(1200);
const GREETING_KT: &str = "app/src/main/java/com/example/demo/Greeting.kt";

/// A `client:connect` of a viewer.
fn viewer_message(session_id: &str, token: &str) -> Value {
    json!({"type": "client:connect", "sessionId": session_id, "token": token,
           "deviceInfo": {"id": "viewer-1", "model": "Test viewer", "platform": "web", "role": "viewer"}})
}

/// Connects an authenticated viewer; returns it after `core:connected`.
async fn viewer(dev: &Dev) -> Ws {
    let mut ws = ws_connect(&dev.ws_url()).await;
    send_json(&mut ws, &viewer_message(&dev.ready.session_id, &dev.ready.token)).await;
    recv_type(&mut ws, "core:connected").await;
    ws
}

async fn start(project: &BuildProject, flags: &[&str], env: &[(&'static str, String)]) -> Dev {
    let env = project.env(env);
    Dev::start_with_env(project.path(), flags, &env_refs(&env)).await
}

fn log(message: &str) -> Value {
    json!({"type": "client:log", "log": {"level": "info", "tag": "T", "message": message}})
}

#[tokio::test]
async fn a_viewer_follows_builds_and_logs_but_is_not_a_device() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(&project, &[], &[]).await;

    let mut watcher = viewer(&dev).await;
    let connected = dev.event("client-connected").await;
    assert_eq!(connected["role"], "viewer", "{connected}");
    tokio::time::sleep(QUIET).await;
    let builds: Vec<Value> = dev
        .drain_events()
        .into_iter()
        .filter(|e| e["event"] == "build-start")
        .collect();
    assert!(builds.is_empty(), "a viewer started a build: {builds:?}");
    assert_eq!(project.gradle_runs(), 0);
    let session = get(dev.ready.http_port, "/session").await.json();
    assert_eq!(session["clients"], json!([]), "a viewer is not listed: {session}");
    let reload = request(dev.ready.http_port, "POST", "/reload", &[]).await.json();
    assert_eq!(reload["devices"], 0, "a viewer is not counted: {reload}");
    recv_type(&mut watcher, "core:reload").await;

    // The first device starts the initial build, which the viewer follows.
    let (mut phone, _) = dev.connect().await;
    let connected = dev.event("client-connected").await;
    assert_eq!(connected["role"], "device", "{connected}");
    dev.event("build-start").await;
    recv_type(&mut watcher, "core:build-start").await;
    let complete = recv_type(&mut watcher, "core:build-complete").await;
    assert!(complete["downloadUrl"].is_string());
    let session = get(dev.ready.http_port, "/session").await.json();
    let clients = session["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), 1, "{session}");
    assert_eq!(clients[0]["deviceInfo"]["model"], "Pixel Test");

    // Device logs reach the viewer; a viewer's own "logs" go nowhere: it has none. Its close
    // comes after its messages are handled, so the log was dropped (or relayed) before it.
    send_json(&mut watcher, &log("from the viewer")).await;
    send_json(&mut watcher, &json!({"type": "client:disconnect"})).await;
    let (code, _, _) = recv_close(&mut watcher).await;
    assert_eq!(code, 1000);
    let gone = dev.event("client-disconnected").await;
    assert_eq!(gone["role"], "viewer", "{gone}");
    send_json(&mut phone, &log("from the phone")).await;
    let relayed = recv_type(&mut phone, "core:log").await;
    assert_eq!(relayed["log"]["message"], "from the phone", "{relayed}");

    let mut second = viewer(&dev).await;
    send_json(&mut phone, &log("for the viewer")).await;
    let seen = recv_type(&mut second, "core:log").await;
    assert_eq!(seen["log"]["message"], "for the viewer");
}

#[tokio::test]
async fn a_hot_reload_counts_devices_and_tells_local_viewers_its_timing() {
    let project = BuildProject::with_wrapper();
    let tools = Toolchain::new();
    let mut dev = start(
        &project,
        &["--no-initial-build", "--no-compile-worker"],
        &tools.env(),
    )
    .await;
    let mut watcher = viewer(&dev).await;
    let (mut phone, _) = dev.connect().await;
    project.save(GREETING_KT, "package com.example.demo\n\nclass Greeting\n");

    recv_type(&mut phone, "core:dex-reload").await;
    let event = dev.event("dex-reload").await;
    assert_eq!(event["devices"], 1, "the viewer is not a device: {event}");
    // The viewer gets what devices get, then the event with the timing.
    recv_type(&mut watcher, "core:dex-reload").await;
    let feed = loop {
        let message = recv_type(&mut watcher, "jetstart-rs:event").await;
        if message["event"]["event"] == "dex-reload" {
            break message;
        }
    };
    let timing = &feed["event"];
    assert_eq!(timing["devices"], 1);
    assert!(timing["durationMs"].is_u64() && timing["compileMs"].is_u64() && timing["dexMs"].is_u64());
    assert_eq!(timing["classNames"], json!(["com.example.demo.Greeting"]));
    // Devices never get the feed.
    send_json(&mut phone, &log("marker")).await;
    loop {
        let message = recv_json(&mut phone).await;
        assert_ne!(message["type"], "jetstart-rs:event", "{message}");
        if message["type"] == "core:log" {
            break;
        }
    }
}

#[tokio::test]
async fn a_viewer_opened_after_a_failed_build_is_shown_the_error_and_a_device_is_not() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(&project, &[], &[("FAKE_GRADLE_MODE", "fail".into())]).await;
    let (mut phone, _) = dev.connect().await;
    recv_type(&mut phone, "core:build-error").await;
    dev.event("build-error").await;

    let mut ws = ws_connect(&dev.ws_url()).await;
    send_json(&mut ws, &viewer_message(&dev.ready.session_id, &dev.ready.token)).await;
    assert_eq!(recv_json(&mut ws).await["type"], "core:connected");
    let error = recv_json(&mut ws).await;
    assert_eq!(error["type"], "core:build-error", "{error}");
    assert!(error["details"]["log"]
        .as_str()
        .is_some_and(|log| log.contains("Unresolved reference: missingThing")));

    let mut late = ws_connect(&dev.ws_url()).await;
    send_json(
        &mut late,
        &connect_message(&dev.ready.session_id, &dev.ready.token),
    )
    .await;
    assert_eq!(recv_json(&mut late).await["type"], "core:connected");
    send_json(&mut late, &log("next")).await;
    let next = recv_json(&mut late).await;
    assert_eq!(
        next["type"], "core:log",
        "a device is not replayed the error: {next}"
    );
}

#[tokio::test]
async fn the_logs_tool_connects_as_a_viewer() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(&project, &[], &[]).await;
    let logs = Tool::spawn(&["logs", &dev.ready.qr], &[]);
    let connected = dev.event("client-connected").await;
    assert_eq!(connected["role"], "viewer", "{connected}");
    assert_eq!(connected["deviceInfo"]["model"], "jetstart-rs logs");
    logs.wait_for("following device logs", true).await;
    let session = get(dev.ready.http_port, "/session").await.json();
    assert_eq!(session["clients"], json!([]), "{session}");
    tokio::time::sleep(QUIET).await;
    assert!(
        !dev.drain_events().iter().any(|e| e["event"] == "build-start"),
        "`logs` started a build"
    );
    assert_eq!(project.gradle_runs(), 0);
}

#[tokio::test]
async fn the_d_key_lists_devices_and_leaves_viewers_out() {
    let project = common::project();
    let mut dev = PtyDev::start(project.path(), &[]);
    dev.wait_for("Press", 1).await;
    let (session, token, ws_port) = dev.credentials();
    let url = format!("ws://127.0.0.1:{ws_port}");
    let mut watcher = ws_connect(&url).await;
    send_json(&mut watcher, &viewer_message(&session, &token)).await;
    recv_type(&mut watcher, "core:connected").await;
    dev.press("d");
    dev.wait_for("No device connected", 1).await;

    let mut phone = ws_connect(&url).await;
    send_json(&mut phone, &connect_message(&session, &token)).await;
    recv_type(&mut phone, "core:connected").await;
    dev.press("d");
    let output = dev.wait_for("1 device(s) connected:", 1).await;
    assert!(output.contains("Pixel Test"), "{output}");
    assert!(!output.contains("Test viewer"), "a viewer is listed:\n{output}");
}

#[tokio::test]
async fn a_viewer_does_not_keep_an_idle_session_alive() {
    let project = common::project();
    let mut dev = Dev::start(
        project.path(),
        &["--idle-timeout", "1s", "--cleanup-interval", "100ms"],
    )
    .await;
    let mut watcher = viewer(&dev).await;
    // Heartbeats are a device's sign of life, not a viewer's.
    send_json(&mut watcher, &json!({"type": "client:heartbeat"})).await;
    let rotated = dev.event("session-rotated").await;
    assert_eq!(rotated["reason"], "idle", "{rotated}");
    let (code, _, _) = recv_close(&mut watcher).await;
    assert_eq!(code, 4001, "the old credentials are closed as for any holder");
}
