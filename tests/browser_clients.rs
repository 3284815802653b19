//! Browser clients of the protocol (README, Browsers): relayed logs in JetStart's `LogEntry` shape
//! (its web emulator reads every field), a refused `Origin` reported as an event naming the flag
//! that lets it in, and `--open`/`--web` opening the dashboard.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{recv_type, send_json, within, Dev};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::test]
async fn relayed_logs_have_every_field_of_jetstarts_log_entry() {
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let (mut phone, _) = dev.connect().await;
    let (mut emulator, _) = dev.connect().await;
    send_json(
        &mut phone,
        &json!({"type": "client:log", "log": {"message": "only a message"}}),
    )
    .await;
    let relayed = recv_type(&mut emulator, "core:log").await;
    let log = &relayed["log"];
    for field in ["id", "level", "tag", "message", "source"] {
        assert!(log[field].is_string(), "{field} missing: {relayed}");
    }
    assert!(
        log["timestamp"].as_u64().is_some_and(|ms| ms > 1_600_000_000_000),
        "{relayed}"
    );
    assert_eq!(log["message"], "only a message");
    assert_eq!(log["level"], "info");
    assert_eq!(log["source"], "client");
    assert_eq!(log["tag"], "Pixel Test", "the device's name stands in for a tag");

    // What a device sends is kept; a level in another spelling becomes JetStart's.
    let sent = json!({"id": "42", "timestamp": 1_700_000_000_000u64, "level": "W", "tag": "Net",
                      "message": "slow\n  at Foo", "source": "app", "metadata": {"k": 1}});
    send_json(&mut phone, &json!({"type": "client:log", "log": sent})).await;
    let relayed = recv_type(&mut emulator, "core:log").await;
    let mut expected = sent.clone();
    expected["level"] = "warn".into();
    assert_eq!(relayed["log"], expected);
}

/// Sends a WebSocket upgrade with `origin` and returns the HTTP status of the refusal.
async fn upgrade_with_origin(ws_url: &str, origin: &str) -> u16 {
    let mut request = ws_url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_str(origin).expect("header"));
    match within("upgrade", tokio_tungstenite::connect_async(request)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| "a socket")),
    }
}

#[tokio::test]
async fn a_refused_origin_is_a_client_rejected_event_naming_allow_origin() {
    let project = common::project();
    let mut dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let origin = "http://emulator.example:3000";
    assert_eq!(upgrade_with_origin(&dev.ws_url(), origin).await, 403);
    let event = dev.event("client-rejected").await;
    assert_eq!(event["code"], 403, "{event}");
    assert_eq!(event["origin"], origin);
    assert!(
        event["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{event}"
    );
    let stderr = dev.wait_stderr("--allow-origin").await;
    let line = stderr
        .lines()
        .find(|l| l.contains("--allow-origin"))
        .expect("warning");
    assert!(line.contains(&format!("--allow-origin {origin}")), "{line}");

    // With the flag, the same browser gets in (a second server needs a project of its own).
    let other = common::project();
    let mut allowed = Dev::start(other.path(), &["--no-initial-build", "--allow-origin", origin]).await;
    let mut request = allowed.ws_url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_static("http://emulator.example:3000"));
    within("upgrade", tokio_tungstenite::connect_async(request))
        .await
        .expect("allowed origin");
    let rejected = allowed.drain_events();
    assert!(
        !rejected.iter().any(|e| e["event"] == "client-rejected"),
        "{rejected:?}"
    );
}

/// A stand-in browser: records the URL it was asked to open in `opened`.
fn stand_in_browser(dir: &Path) -> (String, std::path::PathBuf) {
    let opened = dir.join("opened");
    let script = dir.join("browser");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}.partial'\nmv '{0}.partial' '{0}'\n",
            opened.display()
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script.display().to_string(), opened)
}

/// Waits (bounded) for the stand-in browser's record.
async fn opened_url(opened: &Path) -> String {
    within("the browser to be opened", async {
        loop {
            if let Ok(text) = std::fs::read_to_string(opened) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn open_and_web_open_the_dashboard_in_the_browser() {
    for flag in ["--open", "--web"] {
        let project = common::project();
        let tools = tempfile::tempdir().expect("tempdir");
        let (browser, opened) = stand_in_browser(tools.path());
        let dev = Dev::start_with_env(
            project.path(),
            &["--no-initial-build", flag],
            &[("BROWSER", &browser)],
        )
        .await;
        let url = opened_url(&opened).await;
        assert_eq!(
            url.trim(),
            format!("http://localhost:{}/", dev.ready.http_port),
            "{flag}"
        );
        dev.wait_stderr("opened the dashboard").await;
    }
    // Without the flag, no browser.
    let project = common::project();
    let tools = tempfile::tempdir().expect("tempdir");
    let (browser, opened) = stand_in_browser(tools.path());
    let dev = Dev::start_with_env(project.path(), &["--no-initial-build"], &[("BROWSER", &browser)]).await;
    // A bounded look: by the time a device has connected, a browser would have been opened.
    let (_phone, _) = dev.connect().await;
    dev.wait_stderr("device connected").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!opened.exists(), "a browser was opened without --open");
}

#[tokio::test]
async fn a_missing_browser_is_said_with_the_url_to_open() {
    let project = common::project();
    let dev = Dev::start_with_env(
        project.path(),
        &["--no-initial-build", "--open"],
        &[("BROWSER", "/nonexistent/browser"), ("PATH", "/nonexistent")],
    )
    .await;
    let url = format!("http://localhost:{}/", dev.ready.http_port);
    let stderr = dev.wait_stderr("could not open a browser").await;
    assert!(stderr.contains(&format!("open {url} yourself")), "{stderr}");
}
