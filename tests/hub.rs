//! The WebSocket hub against real tokio-tungstenite clients: authentication and close codes,
//! handshake checks, broadcast fan-out, back-pressure, liveness and shutdown.

mod common;

use std::time::Duration;

use common::{connect_message, recv_close, recv_json, recv_type, send_json, within, ws_connect, Dev};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

async fn start(extra: &[&str]) -> (tempfile::TempDir, Dev) {
    let project = common::project();
    let dev = Dev::start(project.path(), extra).await;
    (project, dev)
}

/// Sends `message` as the first frame and returns the close code and reason.
async fn first_message_closes_with(dev: &Dev, message: Message) -> (u16, String) {
    let mut ws = ws_connect(&dev.ws_url()).await;
    within("send", ws.send(message)).await.expect("send");
    let (code, reason, before) = recv_close(&mut ws).await;
    assert!(
        before.is_empty(),
        "a rejected socket receives nothing: {before:?}"
    );
    (code, reason)
}

fn log_message(tag: &str, level: &str, text: &str) -> Value {
    json!({"type": "client:log", "log": {"id": "1", "timestamp": 1, "level": level, "tag": tag,
           "message": text, "source": "client"}})
}

#[tokio::test]
async fn right_credentials_get_core_connected_with_project_and_client_id() {
    let (_p, mut dev) = start(&[]).await;
    let (_ws, connected) = dev.connect().await;
    assert_eq!(connected["type"], "core:connected");
    assert_eq!(connected["sessionId"], dev.ready.session_id.as_str());
    assert_eq!(connected["projectName"], "demo");
    assert!(connected["clientId"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(connected["timestamp"].as_u64().is_some());
    let event = dev.event("client-connected").await;
    assert_eq!(event["clientId"], connected["clientId"]);
    assert_eq!(
        event["deviceInfo"]["manufacturer"], "Google",
        "free-form deviceInfo is kept"
    );
}

#[tokio::test]
async fn client_ids_are_unique() {
    let (_p, dev) = start(&[]).await;
    let (_a, first) = dev.connect().await;
    let (_b, second) = dev.connect().await;
    assert_ne!(first["clientId"], second["clientId"]);
}

#[tokio::test]
async fn wrong_or_missing_session_is_4001() {
    let (_p, mut dev) = start(&[]).await;
    let wrong = connect_message("AAAAAAAA", &dev.ready.token);
    let (code, reason) = first_message_closes_with(&dev, Message::text(wrong.to_string())).await;
    assert_eq!((code, reason.as_str()), (4001, "wrong session — rescan QR code"));
    let missing = json!({"type": "client:connect", "token": dev.ready.token});
    let (code, _) = first_message_closes_with(&dev, Message::text(missing.to_string())).await;
    assert_eq!(code, 4001);
    let event = dev.event("client-rejected").await;
    assert_eq!(event["code"], 4001);
}

#[tokio::test]
async fn wrong_or_missing_token_is_4002_and_no_token_is_logged() {
    let (_p, mut dev) = start(&[]).await;
    let presented = "WrongWrongWrongWrong12";
    let wrong = connect_message(&dev.ready.session_id, presented);
    let (code, reason) = first_message_closes_with(&dev, Message::text(wrong.to_string())).await;
    assert_eq!((code, reason.as_str()), (4002, "wrong token — rescan QR code"));
    let missing = json!({"type": "client:connect", "sessionId": dev.ready.session_id});
    let (code, _) = first_message_closes_with(&dev, Message::text(missing.to_string())).await;
    assert_eq!(code, 4002);
    assert_eq!(dev.event("client-rejected").await["code"], 4002);
    let stderr = dev
        .wait_stderr("Rejected client: wrong token — rescan QR code")
        .await;
    assert!(
        !stderr.contains(presented),
        "the presented token must never be logged"
    );
    assert!(
        !stderr.contains(&dev.ready.token),
        "the real token must never be logged"
    );
}

#[tokio::test]
async fn wrong_first_message_is_4003() {
    let (_p, dev) = start(&[]).await;
    let heartbeat = json!({"type": "client:heartbeat"}).to_string();
    let (code, reason) = first_message_closes_with(&dev, Message::text(heartbeat)).await;
    assert_eq!((code, reason.as_str()), (4003, "authentication required"));
}

#[tokio::test]
async fn garbage_first_message_is_4003() {
    let (_p, dev) = start(&[]).await;
    let (code, _) = first_message_closes_with(&dev, Message::text("{not json")).await;
    assert_eq!(code, 4003);
    let (code, _) = first_message_closes_with(&dev, Message::binary(vec![1, 2, 3])).await;
    assert_eq!(code, 4003);
}

#[tokio::test]
async fn no_authentication_in_time_is_4003() {
    let (_p, dev) = start(&["--auth-timeout", "300ms"]).await;
    let mut ws = ws_connect(&dev.ws_url()).await;
    let (code, _, before) = recv_close(&mut ws).await;
    assert_eq!(code, 4003);
    assert!(before.is_empty());
}

#[tokio::test]
async fn foreign_browser_origin_is_refused_with_403() {
    let (_p, dev) = start(&[]).await;
    let mut request = dev.ws_url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().expect("header"));
    let err = within("refusal", tokio_tungstenite::connect_async(request))
        .await
        .expect_err("refused");
    match err {
        tungstenite::Error::Http(response) => assert_eq!(response.status(), 403),
        other => panic!("expected HTTP 403, got {other:?}"),
    }
}

#[tokio::test]
async fn localhost_and_allowed_origins_are_accepted() {
    let (_p, dev) = start(&["--allow-origin", "https://tools.example.dev"]).await;
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1",
        "https://tools.example.dev",
    ] {
        let mut request = dev.ws_url().into_client_request().expect("request");
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("header"));
        let (mut ws, _) = within("upgrade", tokio_tungstenite::connect_async(request))
            .await
            .expect(origin);
        send_json(&mut ws, &connect_message(&dev.ready.session_id, &dev.ready.token)).await;
        assert_eq!(recv_json(&mut ws).await["type"], "core:connected", "{origin}");
    }
}

#[tokio::test]
async fn binary_frame_after_auth_is_1003() {
    let (_p, dev) = start(&[]).await;
    let (mut ws, _) = dev.connect().await;
    within("send", ws.send(Message::binary(vec![0u8; 16])))
        .await
        .expect("send");
    assert_eq!(recv_close(&mut ws).await.0, 1003);
}

#[tokio::test]
async fn message_over_one_mebibyte_is_1009() {
    let (_p, dev) = start(&[]).await;
    let (mut ws, _) = dev.connect().await;
    let huge = log_message("big", "info", &"x".repeat(1024 * 1024 + 10));
    within("send", ws.send(Message::text(huge.to_string())))
        .await
        .expect("send");
    assert_eq!(recv_close(&mut ws).await.0, 1009);
}

#[tokio::test]
async fn sockets_beyond_max_clients_are_refused_with_503() {
    let (_p, dev) = start(&["--max-clients", "2"]).await;
    let (_a, _) = dev.connect().await;
    // An unauthenticated socket would make room for a new one (tests/hostile_network.rs); two
    // devices don't.
    let (_b, _) = dev.connect().await;
    let err = within("refusal", tokio_tungstenite::connect_async(dev.ws_url()))
        .await
        .expect_err("refused");
    match err {
        tungstenite::Error::Http(response) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
}

#[tokio::test]
async fn a_freed_slot_can_be_used_again() {
    let (_p, dev) = start(&["--max-clients", "1"]).await;
    let (mut a, _) = dev.connect().await;
    send_json(&mut a, &json!({"type": "client:disconnect", "reason": "bye"})).await;
    assert_eq!(recv_close(&mut a).await.0, 1000);
    drop(a);
    // The slot is released when the server finishes with the socket; retry until then.
    within("a slot to free up", async {
        loop {
            if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(dev.ws_url()).await {
                send_json(&mut ws, &connect_message(&dev.ready.session_id, &dev.ready.token)).await;
                if recv_json(&mut ws).await["type"] == "core:connected" {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn broadcast_reaches_every_authenticated_client_and_no_unauthenticated_one() {
    let (_p, dev) = start(&["--auth-timeout", "1500ms"]).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(dev.connect().await.0);
    }
    let mut stranger = ws_connect(&dev.ws_url()).await;
    send_json(&mut clients[0], &log_message("Fanout", "info", "hello everyone")).await;
    let mut received = Vec::new();
    for ws in &mut clients {
        let message = recv_type(ws, "core:log").await;
        assert_eq!(message["log"]["message"], "hello everyone");
        assert_eq!(message["sessionId"], dev.ready.session_id.as_str());
        received.push(message.to_string());
    }
    assert!(
        received.windows(2).all(|w| w[0] == w[1]),
        "every client gets the same bytes"
    );
    let (code, _, before) = recv_close(&mut stranger).await;
    assert_eq!(code, 4003);
    assert!(before.is_empty(), "the unauthenticated socket got {before:?}");
}

#[tokio::test]
async fn client_log_reaches_other_clients_and_the_terminal() {
    let (_p, dev) = start(&[]).await;
    let (mut phone, _) = dev.connect().await;
    let (mut tablet, _) = dev.connect().await;
    send_json(&mut phone, &log_message("MainActivity", "warn", "low memory")).await;
    let log = recv_type(&mut tablet, "core:log").await;
    assert_eq!(log["log"]["tag"], "MainActivity");
    assert_eq!(log["log"]["level"], "warn");
    let stderr = dev.wait_stderr("low memory").await;
    let line = stderr.lines().find(|l| l.contains("low memory")).expect("line");
    assert!(
        line.contains("warn") && line.contains("MainActivity") && line.contains("Pixel Test"),
        "{line}"
    );
}

/// What a device sends is kept and passed on within budgets: a huge `deviceInfo` keeps its short
/// top-level values, and a huge log reaches the other devices cut, saying so.
#[tokio::test]
async fn oversized_device_info_and_logs_are_kept_and_relayed_within_their_budgets() {
    let (_p, mut dev) = start(&[]).await;
    let (mut phone, _) = dev.connect().await;
    dev.event("client-connected").await;
    let mut big = ws_connect(&dev.ws_url()).await;
    let mut hello = connect_message(&dev.ready.session_id, &dev.ready.token);
    hello["deviceInfo"]["padding"] = json!("x".repeat(512 * 1024));
    hello["deviceInfo"]["nested"] = json!({"deep": "y".repeat(64 * 1024)});
    send_json(&mut big, &hello).await;
    recv_type(&mut big, "core:connected").await;
    let info = &dev.event("client-connected").await["deviceInfo"];
    assert_eq!(info["model"], "Pixel Test");
    assert_eq!(info["truncated"], true);
    assert!(info.get("nested").is_none());
    assert!(
        info.to_string().len() <= 8 * 1024,
        "{} bytes",
        info.to_string().len()
    );

    let trace = "at com.example.Foo.bar(Foo.kt:1)\n".repeat(20_000); // ~680 KB
    send_json(&mut big, &log_message("Crash", "error", &trace)).await;
    let relayed = recv_type(&mut phone, "core:log").await;
    assert!(
        relayed.to_string().len() <= 64 * 1024 + 256,
        "{} bytes",
        relayed.to_string().len()
    );
    assert_eq!(relayed["log"]["tag"], "Crash");
    assert_eq!(relayed["log"]["level"], "error");
    let message = relayed["log"]["message"].as_str().expect("message");
    assert!(message.starts_with("at com.example.Foo") && message.ends_with("bytes cut]"));
}

#[tokio::test]
async fn heartbeat_status_unknown_and_malformed_messages_keep_the_socket_open() {
    let (_p, dev) = start(&[]).await;
    let (mut ws, _) = dev.connect().await;
    send_json(&mut ws, &json!({"type": "client:heartbeat"})).await;
    send_json(
        &mut ws,
        &json!({"type": "client:status", "status": "ready", "message": "idle"}),
    )
    .await;
    send_json(&mut ws, &json!({"type": "client:click", "action": "tap"})).await;
    within("send", ws.send(Message::text("{oops")))
        .await
        .expect("send");
    send_json(&mut ws, &log_message("Still", "info", "alive")).await;
    assert_eq!(recv_type(&mut ws, "core:log").await["log"]["message"], "alive");
}

#[tokio::test]
async fn client_disconnect_closes_with_1000() {
    let (_p, mut dev) = start(&[]).await;
    let (mut ws, connected) = dev.connect().await;
    send_json(
        &mut ws,
        &json!({"type": "client:disconnect", "reason": "user left"}),
    )
    .await;
    assert_eq!(recv_close(&mut ws).await.0, 1000);
    let event = dev.event("client-disconnected").await;
    assert_eq!(event["clientId"], connected["clientId"]);
    assert_eq!(event["code"], 1000);
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_with_1013_and_others_get_everything() {
    let (_p, dev) = start(&[]).await;
    let (mut slow, _) = dev.connect().await;
    let (fast, _) = dev.connect().await;
    // Enough 64 KiB messages to fill the kernel buffers and the 256-message queue.
    const COUNT: usize = 700;
    let filler = "y".repeat(64 * 1024);
    let (mut sink, mut stream) = fast.split();
    let sender = async {
        for i in 0..COUNT {
            let message = log_message("Load", "info", &format!("{i} {filler}"));
            sink.send(Message::text(message.to_string())).await.expect("send");
        }
    };
    let receiver = async {
        let mut seen = 0;
        let mut last = std::time::Instant::now();
        let mut longest_gap = Duration::ZERO;
        while seen < COUNT {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    if value["type"] == "core:log" {
                        let expected = format!("{seen} ");
                        assert!(value["log"]["message"]
                            .as_str()
                            .expect("message")
                            .starts_with(&expected));
                        seen += 1;
                        longest_gap = longest_gap.max(last.elapsed());
                        last = std::time::Instant::now();
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("fast client lost its connection: {other:?}"),
            }
        }
        longest_gap
    };
    let ((), longest_gap) = within("every message at the fast client", async {
        tokio::join!(sender, receiver)
    })
    .await;
    // The slow device holds the fast one up once, for the half second it is given to catch up
    // before it is cut off; never for long.
    assert!(
        longest_gap < Duration::from_secs(2),
        "stalled for {longest_gap:?}"
    );
    let (code, reason, before) = recv_close(&mut slow).await;
    assert_eq!(code, 1013, "{reason}");
    assert!(
        before.len() < COUNT,
        "the slow client was cut off early, after {} messages",
        before.len()
    );
}

/// Reads until `count` `core:log` messages arrived and returns their texts in arrival order;
/// panics if the connection ends first.
/// Asserts that no device was disconnected so far.
fn assert_none_closed(dev: &mut Dev) {
    let events = dev.drain_events();
    assert!(
        events.iter().all(|e| e["event"] != "client-disconnected"),
        "a healthy device was closed: {events:?}"
    );
}

async fn expect_logs<S>(ws: &mut S, count: usize) -> Vec<String>
where
    S: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut texts = Vec::with_capacity(count);
    while texts.len() < count {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] == "core:log" {
                    texts.push(value["log"]["message"].as_str().unwrap_or_default().to_owned());
                }
            }
            Some(Ok(_)) => {}
            other => panic!("connection lost after {} of {count} logs: {other:?}", texts.len()),
        }
    }
    texts
}

#[tokio::test]
async fn a_burst_of_logs_in_one_write_reaches_every_device_and_closes_none() {
    let (_p, mut dev) = start(&[]).await;
    let (chatty, _) = dev.connect().await;
    let (mut reader, _) = dev.connect().await;
    dev.drain_events();
    // More logs than a device's queue holds, all in one TCP write: an app starting up.
    const COUNT: usize = 300;
    let (mut sink, mut chatty_rx) = chatty.split();
    for i in 0..COUNT {
        let message = log_message("Startup", "info", &format!("line {i}"));
        sink.feed(Message::text(message.to_string())).await.expect("feed");
    }
    sink.flush().await.expect("one write");
    let (at_sender, at_reader) = within("every log at both devices", async {
        tokio::join!(
            expect_logs(&mut chatty_rx, COUNT),
            expect_logs(&mut reader, COUNT)
        )
    })
    .await;
    let sent: Vec<String> = (0..COUNT).map(|i| format!("line {i}")).collect();
    assert_eq!(at_sender, sent, "in the order sent, at the sender");
    assert_eq!(at_reader, sent, "in the order sent, at the other device");
    assert_none_closed(&mut dev);
}

/// Broadcasts are written as raw frames, pongs by tungstenite. A device that stops reading (its
/// receive buffer is tiny) while megabytes of broadcasts are queued for it leaves a frame
/// half-written in a full socket; pings it sends meanwhile must not be answered in the middle of
/// that frame. Once it reads, every frame must be whole, every broadcast there, pongs in order.
#[tokio::test]
async fn a_device_that_stops_reading_gets_whole_frames_and_its_pongs_afterwards() {
    // 5.7 MB in all, more than a socket buffers; each device's own task writes frames this big
    // (under the 64 KiB a relayed log may have).
    stop_reading_then_catch_up(95, 60 * 1024).await;
}

/// The same with small frames, which a broadcast writes straight to the socket of a device that
/// waits for one: the socket fills up while the device doesn't read, one frame goes in only in
/// part, and its rest must still come before any other frame or pong.
#[tokio::test]
async fn a_device_that_stops_reading_gets_whole_small_frames_and_its_pongs_afterwards() {
    // 2.9 MB: 191 logs, so that even a socket that takes none leaves the queue under the mark
    // where relays would wait (192). On the machines we run on, the socket takes some 180
    // whole and then one in part.
    stop_reading_then_catch_up(191, 15 * 1024).await;
}

/// A device with a tiny receive buffer stops reading while another sends `log_count` logs of
/// `log_bytes` each and it sends pings; then it reads everything.
async fn stop_reading_then_catch_up(log_count: usize, log_bytes: usize) {
    const PINGS: usize = 50;
    let (_p, dev) = start(&[]).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let addr = format!("127.0.0.1:{}", dev.ready.ws_port)
        .parse()
        .expect("address");
    let stream = within("connect", socket.connect(addr)).await.expect("connect");
    let plain = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut slow, _) = within("upgrade", tokio_tungstenite::client_async(dev.ws_url(), plain))
        .await
        .expect("upgrade");
    send_json(
        &mut slow,
        &connect_message(&dev.ready.session_id, &dev.ready.token),
    )
    .await;
    recv_type(&mut slow, "core:connected").await;
    let (mut logger, _) = dev.connect().await;

    // Broadcasts reach every device's queue at once: once the logger has its own back, the slow
    // device's queue holds them too (or its socket does, as far as it takes them).
    let text = |i: usize| format!("{i}:{}", "x".repeat(log_bytes));
    for i in 0..log_count {
        send_json(&mut logger, &log_message("Big", "info", &text(i))).await;
    }
    within("the logger's own logs", expect_logs(&mut logger, log_count)).await;
    for i in 0..PINGS {
        let ping = Message::Ping(format!("{i}").into_bytes().into());
        within("ping", slow.send(ping)).await.expect("ping");
    }

    let (mut pongs, mut logs) = (Vec::new(), Vec::new());
    within("the slow device's logs and pongs", async {
        while pongs.last() != Some(&(PINGS - 1)) || logs.len() < log_count {
            match slow.next().await {
                Some(Ok(Message::Pong(data))) => {
                    let n = String::from_utf8_lossy(&data)
                        .parse::<usize>()
                        .expect("a numbered pong");
                    pongs.push(n);
                }
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("every text frame is whole JSON");
                    if value["type"] == "core:log" {
                        logs.push(value["log"]["message"].as_str().unwrap_or_default().to_owned());
                    }
                }
                Some(Ok(_)) => {}
                other => panic!(
                    "the stream broke after {} logs and {} pongs: {other:?}",
                    logs.len(),
                    pongs.len()
                ),
            }
        }
    })
    .await;
    assert!(
        logs.iter().enumerate().all(|(i, log)| *log == text(i)),
        "logs whole and in order"
    );
    // tungstenite answers only the newest ping it has read when several wait: pongs may skip
    // numbers, never go back.
    assert!(
        pongs.windows(2).all(|w| w[0] < w[1]),
        "pongs out of order: {pongs:?}"
    );
}

/// A small broadcast may go straight to the socket of a device waiting for one; a large one
/// always goes through the device's queue. A small one sent right after a large one must still
/// arrive second.
#[tokio::test]
async fn large_and_small_logs_reach_a_waiting_device_in_the_order_sent() {
    const PAIRS: usize = 20;
    let (_p, mut dev) = start(&[]).await;
    let (chatty, _) = dev.connect().await;
    let (mut reader, _) = dev.connect().await;
    let big = "b".repeat(20 * 1024);
    let (mut sink, mut chatty_rx) = chatty.split();
    for i in 0..PAIRS {
        for text in [format!("large {i} {big}"), format!("small {i}")] {
            let message = log_message("Mixed", "info", &text);
            sink.feed(Message::text(message.to_string())).await.expect("feed");
        }
    }
    sink.flush().await.expect("one write");
    let (_, at_reader) = within("every log at both devices", async {
        tokio::join!(
            expect_logs(&mut chatty_rx, 2 * PAIRS),
            expect_logs(&mut reader, 2 * PAIRS)
        )
    })
    .await;
    let labels: Vec<String> = at_reader
        .iter()
        .map(|text| text.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let sent: Vec<String> = (0..PAIRS)
        .flat_map(|i| [format!("large {i}"), format!("small {i}")])
        .collect();
    assert_eq!(labels, sent);
    assert_none_closed(&mut dev);
}

/// A device waiting for broadcasts lets them write to its socket directly; a ping it sends
/// meanwhile must still be answered, without waiting for the next broadcast.
#[tokio::test]
async fn a_ping_from_a_device_waiting_for_broadcasts_is_answered() {
    let (_p, dev) = start(&[]).await;
    let (mut ws, _) = dev.connect().await;
    for i in 0..3 {
        let payload = format!("ping {i}");
        within(
            "ping",
            ws.send(Message::Ping(payload.clone().into_bytes().into())),
        )
        .await
        .expect("ping");
        let pong = within("pong", async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Pong(data))) => break data,
                    Some(Ok(_)) => {}
                    other => panic!("connection lost: {other:?}"),
                }
            }
        })
        .await;
        assert_eq!(&pong[..], payload.as_bytes());
    }
}

#[tokio::test]
async fn every_device_logging_at_once_closes_none() {
    let (_p, mut dev) = start(&["--max-clients", "100"]).await;
    const DEVICES: usize = 40;
    const EACH: usize = 8;
    let mut devices = Vec::new();
    for _ in 0..DEVICES {
        devices.push(dev.connect().await.0);
    }
    let runs = devices.into_iter().enumerate().map(|(n, ws)| async move {
        let (mut sink, mut stream) = ws.split();
        let send = async {
            for i in 0..EACH {
                let message = log_message("Load", "debug", &format!("{n}/{i}"));
                sink.feed(Message::text(message.to_string())).await.expect("feed");
            }
            sink.flush().await.expect("flush");
        };
        let ((), texts) = tokio::join!(send, expect_logs(&mut stream, DEVICES * EACH));
        // Each sender's logs arrive in the order it sent them.
        for sender in 0..DEVICES {
            let prefix = format!("{sender}/");
            let from: Vec<&String> = texts.iter().filter(|t| t.starts_with(&prefix)).collect();
            let sent: Vec<String> = (0..EACH).map(|i| format!("{sender}/{i}")).collect();
            assert_eq!(from, sent.iter().collect::<Vec<_>>());
        }
        (sink, stream) // still connected while the events are checked
    });
    let _devices = within("every log at every device", futures_util::future::join_all(runs)).await;
    assert_none_closed(&mut dev);
}

#[tokio::test]
async fn a_silent_client_is_dropped_with_1001() {
    let (_p, mut dev) = start(&["--ping-interval", "100ms", "--client-timeout", "400ms"]).await;
    let (_silent, connected) = dev.connect().await;
    // Not reading means not answering pings: the server must give up on this device. (Reading
    // the socket afterwards would make the client answer the queued pings into a closed socket.)
    let event = dev.event("client-disconnected").await;
    assert_eq!(event["clientId"], connected["clientId"]);
    assert_eq!(event["code"], 1001);
    assert_eq!(event["reason"], "heartbeat timeout");
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let (_p, dev) = start(&["--ping-interval", "100ms", "--client-timeout", "400ms"]).await;
    let (mut ws, _) = dev.connect().await;
    // Reading answers pings automatically; nothing but pings should arrive for a second.
    let outcome = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_))) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(outcome.is_err(), "connection ended early: {outcome:?}");
}

#[tokio::test]
async fn shutdown_sends_core_disconnect_then_1001() {
    let (_p, mut dev) = start(&[]).await;
    let (mut a, _) = dev.connect().await;
    let (mut b, _) = dev.connect().await;
    dev.sigterm();
    for ws in [&mut a, &mut b] {
        let (code, _, before) = recv_close(ws).await;
        let last = before.last().expect("core:disconnect before the close frame");
        assert_eq!(last["type"], "core:disconnect");
        assert_eq!(last["reason"], "Server stopped");
        assert_eq!(code, 1001);
    }
    assert!(dev.wait_exit().await.success());
}
