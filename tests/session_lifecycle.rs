//! Session expiry and rotation end to end (docs/protocol.md, "Pairing"): idle and too-old sessions are retired only
//! when no device is connected, old credentials get 4001, the session file follows.

mod common;

use std::time::{Duration, Instant};

use common::build::{env_refs, BuildProject};
use common::gradle::*;
use common::{send_json, within, Dev};
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

/// The session id the marker block in `app/build.gradle` holds now.
fn marker_session_id(project: &BuildProject) -> String {
    let text = std::fs::read_to_string(project.path().join("app/build.gradle")).expect("read");
    let fields = marker_fields(&text);
    assert_eq!(fields[1].0, "JETSTART_SESSION_ID", "{fields:?}");
    fields[1].1.clone()
}

#[tokio::test]
async fn the_servers_own_marker_block_writes_never_start_a_build() {
    // A real build command this time (the stand-in gradlew counts its runs), so a build
    // wrongly started by the server's own writes would show.
    let project = BuildProject::with_wrapper();
    let marker = std::fs::read_to_string(common::fixture("gradle-marker/app/build.gradle")).expect("fixture");
    project.save("app/build.gradle", &marker);
    let env = project.env(&[]);
    let mut dev = Dev::start_with_env(
        project.path(),
        &[
            "--no-initial-build",
            "--idle-timeout",
            "1s",
            "--cleanup-interval",
            "100ms",
        ],
        &env_refs(&env),
    )
    .await;
    // First write: before ready.
    assert_eq!(
        marker_session_id(&project),
        groovy_java_string(&dev.ready.session_id)
    );

    // Second write: the idle rotation. Keep every event seen on the way.
    let mut seen: Vec<Value> = Vec::new();
    within("session-rotated", async {
        while !seen.iter().any(|e| e["event"] == "session-rotated") {
            seen.extend(dev.drain_events());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let rotated = seen
        .iter()
        .find(|e| e["event"] == "session-rotated")
        .expect("rotated");
    let (id, _) = rotated_credentials(rotated, &dev);
    assert_eq!(marker_session_id(&project), groovy_java_string(&id));

    // A wrongly triggered build would start one debounce (50ms) after a write; watch for 1 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    seen.extend(dev.drain_events());
    let builds: Vec<&Value> = seen.iter().filter(|e| e["event"] == "build-start").collect();
    assert!(
        builds.is_empty(),
        "the server's own writes started a build: {builds:?}"
    );
    assert_eq!(project.gradle_runs(), 0, "the stand-in gradlew never ran");

    // Not a vacuous pass: in this very setup a developer's save does build.
    project.save(
        "app/src/main/res/values/strings.xml",
        "<resources><string name=\"app_name\">Saved</string></resources>\n",
    );
    dev.event("build-start").await;
    dev.event("build-complete").await;
    assert_eq!(project.gradle_runs(), 1);
}

/// A rotation that comes after shutdown's clean-up (an expiry tick or `POST /session/rotate`
/// racing Ctrl+C) must not write live credentials back into the project.
#[test]
fn no_rotation_rewrites_the_session_file_after_shutdown_removed_it() {
    use std::sync::Arc;

    use jetstart::dev::Parts;
    use jetstart::term::reporter::Reporter;

    let project = common::project();
    let config = jetstart::cli::config::for_project(project.path()).expect("config");
    let server = Parts::new(Arc::new(config), 8765, 8766, Arc::new(Reporter::new(true, false)));
    let session_file = project.path().join(".jetstart/session.properties");
    let first = server.store.current();
    server.rotation.write_files().expect("write the session file");
    assert!(session_file.exists());

    server.rotation.stop().expect("clean up");
    assert!(!session_file.exists());
    let after = server.rotation.rotate("late tick");
    assert_eq!(after.id, first.id, "no new session once stopped");
    assert_eq!(server.store.current().id, first.id);
    assert!(!session_file.exists(), "the session file stays removed");
}
