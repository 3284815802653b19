//! JetStart's in-app hot-reload runtime against the real binary: it connects to
//! `BuildConfig.JETSTART_SERVER_URL` exactly as the server wrote it (the token in the URL's
//! query) and sends a `client:connect` with only `sessionId` and `clientType`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::build::{env_refs, Toolchain};
use common::gradle::copy_fixture;
use common::{recv_close, recv_json, recv_type, send_json, within, ws_connect, Dev, Ws};
use serde_json::{json, Value};

/// What `HotReloadClient.connect()` sends once the socket is open.
fn runtime_hello(session_id: &str) -> Value {
    json!({"type": "client:connect", "sessionId": session_id, "clientType": "test-app"})
}

/// `ws://127.0.0.1:<wsPort>/?token=<token>`, as the server writes `JETSTART_SERVER_URL`.
fn url_with_token(dev: &Dev, token: &str) -> String {
    format!("ws://127.0.0.1:{}/?token={token}", dev.ready.ws_port)
}

/// Connects to `url`, sends `hello`, returns the socket.
async fn open(url: &str, hello: &Value) -> Ws {
    let mut ws = ws_connect(url).await;
    send_json(&mut ws, hello).await;
    ws
}

/// The close code a socket opened at `url` with `hello` gets.
async fn close_code(url: &str, hello: &Value) -> u16 {
    let mut ws = open(url, hello).await;
    let (code, _, before) = recv_close(&mut ws).await;
    assert!(
        before.is_empty(),
        "a rejected socket receives nothing: {before:?}"
    );
    code
}

/// A token of the right shape that is not the session's.
fn wrong_token(real: &str) -> String {
    let wrong: String = real.chars().rev().collect();
    if wrong == real {
        "WrongWrongWrongWrong12".to_owned()
    } else {
        wrong
    }
}

#[tokio::test]
async fn the_token_in_the_url_authenticates_and_never_reaches_any_output() {
    let project = common::project();
    let mut dev =
        Dev::start_with_env(project.path(), &["--no-initial-build"], &[("RUST_LOG", "trace")]).await;
    let token = dev.ready.token.clone();
    let session = dev.ready.session_id.clone();
    let wrong = wrong_token(&token);

    // Rejections: wrong, missing, mismatching tokens → 4002; a wrong session is checked first.
    assert_eq!(
        close_code(&url_with_token(&dev, &wrong), &runtime_hello(&session)).await,
        4002
    );
    assert_eq!(close_code(&dev.ws_url(), &runtime_hello(&session)).await, 4002);
    let both = json!({"type": "client:connect", "sessionId": session, "token": wrong});
    assert_eq!(close_code(&url_with_token(&dev, &token), &both).await, 4002);
    let both = json!({"type": "client:connect", "sessionId": session, "token": token});
    assert_eq!(close_code(&url_with_token(&dev, &wrong), &both).await, 4002);
    let conflicting = format!("{}&token={wrong}", url_with_token(&dev, &token));
    assert_eq!(close_code(&conflicting, &runtime_hello(&session)).await, 4002);
    assert_eq!(
        close_code(&url_with_token(&dev, &token), &runtime_hello("wrongses")).await,
        4001
    );

    // Accepted: the URL token alone, and the same token in both places.
    let mut runtime = open(&url_with_token(&dev, &token), &runtime_hello(&session)).await;
    let connected = recv_type(&mut runtime, "core:connected").await;
    assert_eq!(connected["sessionId"], session.as_str());
    let mut both_ways = open(&url_with_token(&dev, &token), &both).await;
    recv_type(&mut both_ways, "core:connected").await;

    // Everything printed after `ready` (stdout events and all of stderr at trace level).
    let mut events = Vec::new();
    for _ in 0..6 {
        events.push(dev.event("client-rejected").await.to_string());
    }
    for _ in 0..2 {
        events.push(dev.event("client-connected").await.to_string());
    }
    events.extend(dev.drain_events().iter().map(Value::to_string));
    let stderr = dev.stderr();
    for (what, secret) in [("the real token", &token), ("a presented token", &wrong)] {
        assert!(
            !stderr.contains(secret.as_str()),
            "{what} reached stderr:\n{stderr}"
        );
        for event in &events {
            assert!(
                !event.contains(secret.as_str()),
                "{what} reached a --json event: {event}"
            );
        }
    }
    assert!(
        !stderr.contains("?token") && !stderr.contains("GET /"),
        "the request line was logged"
    );
}

#[tokio::test]
async fn wrong_url_tokens_count_towards_the_back_off() {
    const GUESSER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let url = url_with_token(&dev, &wrong_token(&dev.ready.token));
    let hello = runtime_hello(&dev.ready.session_id);
    let mut last = Duration::ZERO;
    for attempt in 1..=11 {
        let mut ws = common::ws_connect_from(GUESSER, dev.ready.ws_port, &url).await;
        let sent = Instant::now();
        send_json(&mut ws, &hello).await;
        let (code, _, _) = recv_close(&mut ws).await;
        assert_eq!(code, 4002, "attempt {attempt}");
        last = sent.elapsed();
    }
    assert!(
        last >= Duration::from_millis(50),
        "the 11th wrong URL token was answered after {last:?}: not held back"
    );
    dev.wait_stderr("failed authentications in a row from 127.0.0.4")
        .await;
}

/// The `JETSTART_SERVER_URL` value in the marker block of `build_gradle`.
fn marker_server_url(build_gradle: &str) -> String {
    let line = build_gradle
        .lines()
        .find(|l| l.contains("\"JETSTART_SERVER_URL\""))
        .expect("JETSTART_SERVER_URL line");
    // buildConfigField "String", "JETSTART_SERVER_URL", "\"ws://…\""
    let start = line.find("\"\\\"").expect("value start") + 3;
    let end = line.rfind("\\\"\"").expect("value end");
    line[start..end].to_owned()
}

#[tokio::test]
async fn jetstarts_runtime_connects_with_the_marker_block_url_and_gets_dex_reloads() {
    let project = copy_fixture("gradle-marker");
    let tools = Toolchain::new();
    let env = tools.env();
    let mut dev = Dev::start_with_env(project.path(), &["--no-initial-build"], &env_refs(&env)).await;
    let build_gradle = std::fs::read_to_string(project.path().join("app/build.gradle")).expect("read");
    let url = marker_server_url(&build_gradle);
    assert_eq!(url, url_with_token(&dev, &dev.ready.token));

    let mut runtime = open(&url, &runtime_hello(&dev.ready.session_id)).await;
    recv_type(&mut runtime, "core:connected").await;
    dev.event("client-connected").await;

    let source = project
        .path()
        .join("app/src/main/java/com/example/markerdemo/Screen.kt");
    std::fs::create_dir_all(source.parent().expect("parent")).expect("mkdir");
    std::fs::write(&source, "package com.example.markerdemo\n\nclass Screen\n").expect("save");
    let reload = within("a dex-reload", async {
        loop {
            let message = recv_json(&mut runtime).await;
            if message["type"] == "core:dex-reload" {
                return message;
            }
        }
    })
    .await;
    assert_eq!(reload["classNames"], json!(["com.example.markerdemo.Screen"]));
    assert!(reload["dexBase64"].as_str().is_some_and(|d| !d.is_empty()));
}
