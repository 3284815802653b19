//! Issue 21, the network half: nobody on the Wi-Fi can keep phones from pairing or exhaust the
//! server, against the real binary. Other hosts are other loopback addresses (127.0.0.2 and up
//! stand for machines on the network); everything stays on this machine.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::chaos::{open_fds, Socket, Target};
use common::{connect_message, recv_close, recv_type, send_json, within, Dev, Ws};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn stranger(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, n))
}

/// Opens `n` TCP connections from `source` to `port` and sends nothing on them.
async fn idle_connections(source: IpAddr, port: u16, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(Socket::from(source).connect(port).await);
    }
    held
}

/// A device from `source`: authenticates and gets `core:connected`.
async fn device_from(target: &Target, source: IpAddr) -> Ws {
    target.device_with(Socket::from(source)).await.0
}

/// A one-request HTTP/1.1 exchange from `source`: the status code and how long it took.
async fn http_get_from(source: IpAddr, port: u16, path: &str) -> (u16, Duration) {
    let mut stream = Socket::from(source).connect(port).await;
    let started = Instant::now();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    within("the request", stream.write_all(request.as_bytes()))
        .await
        .expect("write");
    let mut answer = Vec::new();
    within("the answer", stream.read_to_end(&mut answer))
        .await
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, started.elapsed())
}

/// True once the server has closed `stream` (EOF or reset), waiting at most `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

// ---------------------------------------------------------------------------------------------
// Admission
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn strangers_holding_every_socket_can_not_keep_a_phone_out() {
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let target = Target::of(&dev);
    let mut paired = device_from(&target, Ipv4Addr::LOCALHOST.into()).await;

    // One other host opens --max-clients (64) idle connections: it can hold a quarter of them.
    let _one_host = idle_connections(STRANGER, target.ws_port, 64).await;
    let mut phone = device_from(&target, BYSTANDER).await;
    // Eight hosts with sixteen each fill every place: a phone takes the oldest stranger's.
    let mut many = Vec::new();
    for n in 1..=8 {
        many.push(idle_connections(stranger(n), target.ws_port, 16).await);
    }
    let mut late_phone = device_from(&target, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4))).await;

    // The devices never counted against anyone and were never evicted.
    common::chaos::wait_clients(target.http_port, 3).await;
    let reply = common::http::request(target.http_port, "POST", "/reload", &[]).await;
    assert_eq!(reply.json()["devices"], 3);
    for ws in [&mut paired, &mut phone, &mut late_phone] {
        recv_type(ws, "core:reload").await;
    }
}

#[tokio::test]
async fn a_new_socket_takes_the_place_of_the_oldest_unauthenticated_one() {
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build", "--max-clients", "2"]).await;
    let target = Target::of(&dev);
    let _device = device_from(&target, Ipv4Addr::LOCALHOST.into()).await;
    let mut pending = target.open(Socket::from(STRANGER)).await;
    let _phone = device_from(&target, BYSTANDER).await;
    let (code, reason, before) = recv_close(&mut pending).await;
    assert_eq!((code, reason.as_str()), (1013, "server full"));
    assert!(before.is_empty(), "{before:?}");
}

#[tokio::test]
async fn when_every_socket_is_an_authenticated_device_a_new_one_gets_503() {
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build", "--max-clients", "2"]).await;
    let target = Target::of(&dev);
    let _a = device_from(&target, Ipv4Addr::LOCALHOST.into()).await;
    let _b = device_from(&target, BYSTANDER).await;
    let refused = within("a refusal", tokio_tungstenite::connect_async(target.ws_url()))
        .await
        .expect_err("refused");
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
}

/// A low open-files limit (here 64, as with `ulimit -n 64`): `--max-clients` is lowered with a
/// warning, and when a stranger floods both ports, `/health` and devices up to the lowered
/// limit are still answered, the next device with 503.
#[tokio::test]
async fn a_low_open_files_limit_lowers_max_clients_and_everyone_is_still_answered() {
    let project = common::project();
    let limit = ["sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\""];
    let dev = Dev::start_wrapped(&limit, project.path(), &["--no-initial-build"], &[]).await;
    let target = Target::of(&dev);
    let warning = dev.wait_stderr("--max-clients 64 lowered to").await;
    let lowered: usize = warning
        .split("--max-clients 64 lowered to ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .expect("the lowered number");
    assert!((1..64).contains(&lowered), "{warning}");

    let _http_flood = idle_connections(STRANGER, target.http_port, 100).await;
    let _ws_flood = idle_connections(STRANGER, target.ws_port, 100).await;
    let (status, _) = http_get_from(Ipv4Addr::LOCALHOST.into(), target.http_port, "/health").await;
    assert_eq!(status, 200);
    let mut devices = Vec::new();
    for _ in 0..lowered {
        devices.push(device_from(&target, BYSTANDER).await);
    }
    let refused = within(
        "a refusal",
        tokio_tungstenite::client_async(
            target.ws_url(),
            MaybeTlsStream::Plain(Socket::from(BYSTANDER).connect(target.ws_port).await),
        ),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(&refused, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 503),
        "{refused:?}"
    );
    assert!(!dev.stderr().contains("Too many open files"), "{}", dev.stderr());
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_http_request_head_that_never_ends_is_cut_off() {
    let project = common::project();
    let dev = Dev::start(
        project.path(),
        &["--no-initial-build", "--http-header-timeout", "500ms"],
    )
    .await;
    let mut trickle = Socket::from(STRANGER).connect(dev.ready.http_port).await;
    trickle
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        .await
        .expect("write");
    let mut silent = Socket::from(STRANGER).connect(dev.ready.http_port).await;
    assert!(
        closed_within(&mut trickle, Duration::from_secs(5)).await,
        "a trickled head stays open"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a silent connection stays open"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_http_connection_is_closed() {
    let project = common::project();
    let dev = Dev::start(
        project.path(),
        &["--no-initial-build", "--http-header-timeout", "500ms"],
    )
    .await;
    let mut stream = Socket::from(STRANGER).connect(dev.ready.http_port).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 512];
    let n = within("the answer", stream.read(&mut answer))
        .await
        .expect("read");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "an idle connection stays open"
    );
}

#[tokio::test]
async fn one_address_can_not_take_every_http_connection() {
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let before = open_fds(dev.pid());
    let _flood = idle_connections(STRANGER, dev.ready.http_port, 300).await;
    let (status, took) = http_get_from(BYSTANDER, dev.ready.http_port, "/health").await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "/health took {took:?}");
    // A share of the HTTP connections (a quarter of 128) at most, not 300.
    let held = open_fds(dev.pid()).saturating_sub(before);
    assert!(held <= 40, "the stranger holds {held} descriptors");
}

#[tokio::test]
async fn wrong_download_tokens_are_slowed_down_per_address_like_the_websocket() {
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let port = dev.ready.http_port;
    let guess = "/download/app.apk?token=WrongWrongWrongWrong12";
    for attempt in 1..=10 {
        let (status, _) = http_get_from(STRANGER, port, guess).await;
        assert_eq!(status, 401, "attempt {attempt}");
    }
    for (attempt, at_least) in (11..).zip([50, 100, 200]) {
        let (status, took) = http_get_from(STRANGER, port, guess).await;
        assert_eq!(status, 401, "attempt {attempt}");
        assert!(
            took >= Duration::from_millis(at_least),
            "attempt {attempt} was answered after {took:?}, expected at least {at_least} ms"
        );
    }
    // Another address is not slowed, and the WebSocket counts the same failures.
    let (status, took) = http_get_from(BYSTANDER, port, guess).await;
    assert_eq!(status, 401);
    assert!(
        took < Duration::from_millis(300),
        "the stranger's next wait is 400 ms; this took {took:?}"
    );
    let target = Target::of(&dev);
    let mut ws = target.open(Socket::from(STRANGER)).await;
    let sent = Instant::now();
    send_json(
        &mut ws,
        &connect_message(&target.session_id, "WrongWrongWrongWrong12"),
    )
    .await;
    assert_eq!(recv_close(&mut ws).await.0, 4002);
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        !dev.stderr().contains("WrongWrongWrongWrong12"),
        "a presented token was logged"
    );
}

// ---------------------------------------------------------------------------------------------
// Protocol violations and pauses
// ---------------------------------------------------------------------------------------------

/// Raw client frames breaking RFC 6455, with the close code each must get. A zero mask leaves
/// the payload as written.
fn violations() -> Vec<(&'static str, Vec<u8>, u16)> {
    let mut oversized_ping = vec![0x89, 0x80 | 126, 0, 126, 0, 0, 0, 0];
    oversized_ping.extend([b'x'; 126]);
    vec![
        ("an unmasked frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("a reserved bit", vec![0xC1, 0x82, 0, 0, 0, 0, b'h', b'i'], 1002),
        ("a reserved opcode", vec![0x83, 0x80, 0, 0, 0, 0], 1002),
        ("a fragmented ping", vec![0x09, 0x80, 0, 0, 0, 0], 1002),
        ("an oversized ping", oversized_ping, 1002),
        (
            "a continuation with nothing to continue",
            vec![0x80, 0x80, 0, 0, 0, 0],
            1002,
        ),
        (
            "text that is not UTF-8",
            vec![0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28],
            1007,
        ),
    ]
}

#[tokio::test]
async fn protocol_violations_get_their_close_code() {
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let target = Target::of(&dev);
    for (what, frame, expected) in violations() {
        let (mut ws, _) = target.device().await;
        let MaybeTlsStream::Plain(stream) = ws.get_mut() else {
            unreachable!("plain TCP")
        };
        stream.write_all(&frame).await.expect("write");
        let close = within(what, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    other => panic!("{what}: the connection ended without a close frame: {other:?}"),
                }
            }
        })
        .await;
        assert_eq!(close, Some(expected), "{what}");
    }
    // Before authentication too.
    let mut stranger = target.open(Socket::from(STRANGER)).await;
    let MaybeTlsStream::Plain(stream) = stranger.get_mut() else {
        unreachable!("plain TCP")
    };
    stream.write_all(&[0x81, 0x02, b'h', b'i']).await.expect("write");
    assert_eq!(recv_close(&mut stranger).await.0, 1002);
}

#[tokio::test]
async fn a_pause_longer_than_the_client_timeout_closes_no_device() {
    use nix::sys::signal::Signal;
    let project = common::project();
    let dev = Dev::start(
        project.path(),
        &[
            "--no-initial-build",
            "--ping-interval",
            "200ms",
            "--client-timeout",
            "600ms",
        ],
    )
    .await;
    let (ws, _) = dev.connect().await;
    // The device keeps reading (tungstenite answers pings as it reads) and reports what comes.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (_sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(message) = stream.next().await {
            if tx.send(message.map_err(|e| e.to_string())).is_err() {
                return;
            }
        }
    });
    // A laptop lid closed for 1.5 s, as far as the server can tell.
    dev.signal(Signal::SIGSTOP);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    dev.signal(Signal::SIGCONT);
    // Two client timeouts after the pause: pinged and answered, still connected.
    let watch_until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while let Ok(Some(message)) = tokio::time::timeout_at(watch_until, rx.recv()).await {
        if let Ok(Message::Close(frame)) = &message {
            panic!("the device was closed after the pause: {frame:?}");
        }
        assert!(message.is_ok(), "{message:?}");
    }
    let reply = common::http::request(dev.ready.http_port, "POST", "/reload", &[]).await;
    assert_eq!(reply.json()["devices"], 1);
    within("core:reload after the pause", async {
        while let Some(message) = rx.recv().await {
            if let Ok(Message::Text(text)) = message {
                if text.contains("core:reload") {
                    return;
                }
            }
        }
        panic!("the device's stream ended");
    })
    .await;
}
