//! Per-address back-off on failed authentication, against the real binary: a guesser from one
//! loopback address (127.0.0.2) is slowed down past the threshold, while real devices — from
//! another address or from the same one — and other addresses are not.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{connect_message, recv_close, recv_type, send_json, Dev, Ws};

const GUESSER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const WRONG_TOKEN: &str = "WrongWrongWrongWrong12";
/// Start of the server's warning when an address enters back-off.
const BACKOFF_WARNING: &str = "failed authentications in a row from 127.0.0.2";

/// Sends a wrong token from `source`; returns the socket and when the message went out.
async fn send_wrong_token(dev: &Dev, source: IpAddr) -> (Ws, Instant) {
    let mut ws = common::ws_connect_from(source, dev.ready.ws_port, &dev.ws_url()).await;
    let sent = Instant::now();
    send_json(&mut ws, &connect_message(&dev.ready.session_id, WRONG_TOKEN)).await;
    (ws, sent)
}

/// One wrong-token attempt: the close code and how long the rejection took.
async fn wrong_token_attempt(dev: &Dev, source: IpAddr) -> (u16, Duration) {
    let (mut ws, sent) = send_wrong_token(dev, source).await;
    let (code, _, before) = recv_close(&mut ws).await;
    assert!(
        before.is_empty(),
        "a rejected socket receives nothing: {before:?}"
    );
    (code, sent.elapsed())
}

/// A real device from `source`: authenticates and gets `core:connected`.
async fn device_from(dev: &Dev, source: IpAddr) -> Ws {
    let mut ws = common::ws_connect_from(source, dev.ready.ws_port, &dev.ws_url()).await;
    send_json(&mut ws, &connect_message(&dev.ready.session_id, &dev.ready.token)).await;
    recv_type(&mut ws, "core:connected").await;
    ws
}

/// Waits until stderr holds `needle` `times` times.
async fn wait_stderr_count(dev: &Dev, needle: &str, times: usize) {
    let found = tokio::time::timeout(common::WAIT, async {
        while dev.stderr().matches(needle).count() < times {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "stderr never held {needle:?} {times} times:\n{}",
        dev.stderr()
    );
}

#[tokio::test]
async fn a_guessing_address_is_slowed_down_and_nobody_else_is() {
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build"]).await;

    // Up to the threshold (10) a failure is answered at once, like any other.
    for attempt in 1..=10 {
        let (code, _) = wrong_token_attempt(&dev, GUESSER).await;
        assert_eq!(code, 4002, "attempt {attempt}");
    }
    // Past it, each rejection is held back, doubling from 50 ms.
    for (attempt, at_least_ms) in (11..).zip([50, 100, 200, 400, 800]) {
        let (code, took) = wrong_token_attempt(&dev, GUESSER).await;
        assert_eq!(code, 4002, "attempt {attempt}");
        assert!(
            took >= Duration::from_millis(at_least_ms),
            "attempt {attempt} was rejected after {took:?}, expected at least {at_least_ms} ms"
        );
    }
    wait_stderr_count(&dev, BACKOFF_WARNING, 1).await;

    // The 16th is held back for the cap (1 s). Meanwhile a real device from another address,
    // a real device from the guessing address itself, and a failure from a third address are
    // all answered before that rejection goes out.
    let (mut pending, sent) = send_wrong_token(&dev, GUESSER).await;
    let others = async {
        tokio::join!(
            device_from(&dev, IpAddr::V4(Ipv4Addr::LOCALHOST)),
            device_from(&dev, GUESSER),
            wrong_token_attempt(&dev, BYSTANDER),
        )
    };
    let (_local_device, _guesser_device, (bystander_code, _)) = tokio::select! {
        biased;
        others = others => others,
        close = recv_close(&mut pending) => {
            panic!("the held-back rejection {close:?} came first: others were slowed down too")
        }
    };
    assert_eq!(bystander_code, 4002);
    let (code, _, _) = recv_close(&mut pending).await;
    assert_eq!(code, 4002);
    assert!(sent.elapsed() >= Duration::from_secs(1), "{:?}", sent.elapsed());

    // The device's success from 127.0.0.2 wiped its slate: ten more failures pass undelayed,
    // the eleventh enters back-off again (and is logged again).
    for _ in 1..=10 {
        assert_eq!(wrong_token_attempt(&dev, GUESSER).await.0, 4002);
    }
    assert_eq!(dev.stderr().matches(BACKOFF_WARNING).count(), 1);
    let (code, took) = wrong_token_attempt(&dev, GUESSER).await;
    assert_eq!(code, 4002);
    assert!(took >= Duration::from_millis(50), "{took:?}");
    wait_stderr_count(&dev, BACKOFF_WARNING, 2).await;

    let stderr = dev.stderr();
    assert!(!stderr.contains(WRONG_TOKEN), "a presented token was logged");
    assert!(!stderr.contains(&dev.ready.token), "the real token was logged");
}
