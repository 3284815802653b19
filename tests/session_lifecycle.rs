//! Session expiry and rotation end to end (SPEC §3): idle and too-old sessions are retired only
//! when no device is connected, old credentials get 4001, the session file follows.

mod common;

use std::time::{Duration, Instant};

use common::gradle::*;
use common::{send_json, Dev};
use serde_json::{json, Value};

/// Checks that a `session-rotated` event has `ready`'s session shape plus a matching `qr`, and
/// returns `(id, token)`.
fn rotated_credentials(event: &Value, dev: &Dev) -> (String, String) {
    let session = event["session"].as_object().expect("session object");
    let mut keys: Vec<&str> = session.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["id", "projectName", "token"],
        "same shape as ready's session: {event}"
    );
    let id = session["id"].as_str().expect("id").to_owned();
    let token = session["token"].as_str().expect("token").to_owned();
    let r = &dev.ready;
    assert_eq!(session["projectName"], r.project_name.as_str());
    assert_eq!(
        event["qr"],
        format!(
            "{}|{}|{}|{id}|{token}|{}",
            r.host, r.http_port, r.ws_port, r.project_name
        )
        .as_str()
    );
    assert_ne!(id, r.session_id);
    assert_ne!(token, r.token);
    (id, token)
}

#[tokio::test]
async fn an_idle_session_rotates_and_old_credentials_get_4001() {
    let project = common::project();
    // A JetStart-style marker block, so rotation must rewrite it too.
    let build = project.path().join("app/build.gradle");
    std::fs::write(
        &build,
        "android {\n    defaultConfig {\n        // JetStart injected fields\n        // End JetStart fields\n    }\n}\n",
    )
    .expect("write");
    let started = Instant::now();
    let mut dev = Dev::start(
        project.path(),
        &["--idle-timeout", "1s", "--cleanup-interval", "100ms"],
    )
    .await;
    let old = dev.ready.clone();

    let event = dev.event("session-rotated").await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "rotated before --idle-timeout"
    );
    assert_eq!(event["reason"], "idle");
    let (id, token) = rotated_credentials(&event, &dev);

    let props = read_properties(&project.path().join(".jetstart/session.properties"));
    assert_eq!(props["sessionId"], id, "the session file follows the rotation");
    assert_eq!(props["token"], token);
    let fields = marker_fields(&std::fs::read_to_string(&build).expect("read"));
    assert_eq!(
        fields[1],
        ("JETSTART_SESSION_ID".to_owned(), groovy_java_string(&id))
    );
    assert_eq!(
        fields[2],
        ("JETSTART_TOKEN".to_owned(), groovy_java_string(&token))
    );

    assert_eq!(
        rejected_with(&dev.ws_url(), &old.session_id, &old.token).await,
        4001
    );
    let (_ws, connected) = connect_with(&dev.ws_url(), &id, &token).await;
    assert_eq!(connected["sessionId"], id.as_str());
    assert!(!dev.stderr().contains(&token), "the token must never be logged");

    dev.sigterm();
    assert!(dev.wait_exit().await.success());
    assert!(!project.path().join(".jetstart/session.properties").exists());
}

#[tokio::test]
async fn a_connected_device_keeps_its_session_past_the_token_ttl() {
    let project = common::project();
    let mut dev = Dev::start(
        project.path(),
        &[
            "--token-ttl",
            "500ms",
            "--cleanup-interval",
            "100ms",
            "--no-initial-build",
        ],
    )
    .await;
    let (mut device, _) = dev.connect().await;

    // Well past the TTL, with many checks in between: still the same session.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        send_json(&mut device, &json!({"type": "client:heartbeat"})).await;
    }
    let early: Vec<Value> = dev.drain_events();
    assert!(
        early.iter().all(|e| e["event"] != "session-rotated"),
        "rotated under a connected device: {early:?}"
    );
    // The device is still there, and the old credentials still work.
    let (_second, connected) = connect_with(&dev.ws_url(), &dev.ready.session_id, &dev.ready.token).await;
    assert_eq!(connected["sessionId"], dev.ready.session_id.as_str());
    drop(_second);

    // Once every device has left, the expired token is retired.
    send_json(
        &mut device,
        &json!({"type": "client:disconnect", "reason": "done"}),
    )
    .await;
    let (code, _, _) = common::recv_close(&mut device).await;
    assert_eq!(code, 1000);
    drop(device);
    let event = dev.event("session-rotated").await;
    assert_eq!(event["reason"], "token expired");
    let (id, token) = rotated_credentials(&event, &dev);
    assert_eq!(
        rejected_with(&dev.ws_url(), &dev.ready.session_id, &dev.ready.token).await,
        4001
    );
    connect_with(&dev.ws_url(), &id, &token).await;
}
