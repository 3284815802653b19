//! Chaos (issue #9): the real binary under connection churn with resets and abandoned
//! handshakes, resets in the middle of a multi-megabyte broadcast, a storm of saves, a build
//! that floods its output, SIGTERM in the middle of a build, and a credential brute force.
//!
//! Every case is bounded in time. They run one at a time ([`SERIAL`]): they measure memory
//! and latency, and on a 2-core machine two of them side by side would measure each other.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::build::{alive, build_leader, env_refs, hanging_child, wait_dead, BuildProject, Toolchain};
use common::chaos::{
    assert_healthy, group_members, open_fds, reset, reset_tcp, rss_kib, wait_clients, Socket, Target,
};
use common::{connect_message, fixture, http, recv_close, recv_json, recv_type, send_json, within, Dev, Ws};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// One chaos case at a time (tokio's mutex: no poisoning, so one failure doesn't fail the rest).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const STRINGS: &str = "app/src/main/res/values/strings.xml";
const GREETING_KT: &str = "app/src/main/java/com/example/demo/Greeting.kt";
const GREETING_SRC: &str = "package com.example.demo\n\nclass Greeting {\n    class Inner\n}\n";

/// How long a check for "no further build" watches for one.
const QUIET: Duration = Duration::from_millis(1200);

const MIB: u64 = 1024;

fn log_message(text: &str) -> Value {
    json!({"type": "client:log", "log": {"id": "1", "timestamp": 1, "level": "info", "tag": "Chaos",
           "message": text, "source": "client"}})
}

/// Awaits `fut` at most `limit` (for waits that legitimately exceed [`common::WAIT`]).
async fn bounded<T>(what: &str, limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

// ---------------------------------------------------------------------------------------------
// 1. Connection churn
// ---------------------------------------------------------------------------------------------

/// Connections in flight at once during the churn.
const CHURN_IN_FLIGHT: usize = 16;
/// The server's `--max-clients`: eight times what the churn has in flight, so that one address
/// (a quarter of it) has room for every handshake in flight plus sockets the server is still
/// tearing down, and no cycle is evicted or refused.
const CHURN_MAX_CLIENTS: usize = 128;
const CHURN_WARM_UP: usize = 50;
const CHURN_CYCLES: usize = 500;
/// Allowed growth of the server's resident memory over 500 cycles, measured after a warm-up
/// (which pays for the allocator's arenas and tokio's slabs). Measured growth is ~0.1-0.2 MB;
/// 4 MB fails on a leak of 8 KiB or more per cycle, e.g. a connection task kept alive with
/// its 4 KiB read buffer and tungstenite state. Leaked sockets are also caught exactly by the
/// open file count.
const CHURN_RSS_GROWTH_KIB: u64 = 4 * MIB;

/// A masked client text frame announcing a 1000-byte payload, with only four payload bytes.
const HALF_A_FRAME: [u8; 12] = [0x81, 0x80 | 126, 0x03, 0xE8, 1, 2, 3, 4, b'{', b'"', b't', b'y'];
/// An HTTP upgrade request cut off in the middle of its headers.
const HALF_AN_UPGRADE: &[u8] =
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Ver";

/// One connect → (authenticate →) disconnect cycle; the way it ends depends on `i`. Returns
/// true if the device authenticated.
async fn churn_cycle(target: Target, i: usize) -> bool {
    match i % 5 {
        // The polite way: a close frame, and the server's answer.
        0 => {
            let (mut ws, _) = target.device().await;
            within("close", ws.close(None)).await.expect("send close");
            within("the close answer", async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
            true
        }
        // Authenticated, then the network is gone: a reset, no close frame.
        1 => {
            let (ws, _) = target.device().await;
            reset(ws);
            true
        }
        // Authenticated, reset in the middle of sending a frame.
        2 => {
            let (mut ws, _) = target.device().await;
            let MaybeTlsStream::Plain(stream) = ws.get_mut() else {
                unreachable!("plain TCP")
            };
            within("half a frame", stream.write_all(&HALF_A_FRAME))
                .await
                .expect("write");
            reset(ws);
            true
        }
        // Abandoned in the middle of the HTTP upgrade: FIN or reset, alternately.
        3 => {
            let mut stream = Socket::default().connect(target.ws_port).await;
            within("half an upgrade", stream.write_all(HALF_AN_UPGRADE))
                .await
                .expect("write");
            if i.is_multiple_of(2) {
                drop(stream);
            } else {
                reset_tcp(stream);
            }
            false
        }
        // Upgraded, never sends client:connect, reset.
        _ => {
            let ws = target.open(Socket::default()).await;
            reset(ws);
            false
        }
    }
}

/// Runs cycles `range` with [`CHURN_IN_FLIGHT`] at a time; returns how many authenticated.
async fn churn(target: &Target, range: Range<usize>) -> usize {
    let limit = Arc::new(Semaphore::new(CHURN_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for i in range {
        let permit = limit.clone().acquire_owned().await.expect("semaphore");
        let target = target.clone();
        tasks.spawn(async move {
            let authenticated = churn_cycle(target, i).await;
            drop(permit);
            authenticated
        });
    }
    let mut authenticated = 0;
    while let Some(done) = tasks.join_next().await {
        authenticated += usize::from(done.expect("a cycle failed"));
    }
    authenticated
}

/// Waits (bounded) until the server has reported `n` devices connected and `n` disconnected.
async fn wait_connect_disconnect_events(dev: &mut Dev, n: usize) {
    let (mut connected, mut disconnected) = (0, 0);
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        for event in dev.drain_events() {
            match event["event"].as_str() {
                Some("client-connected") => connected += 1,
                Some("client-disconnected") => disconnected += 1,
                _ => {}
            }
        }
        if connected == n && disconnected == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline && connected <= n && disconnected <= n,
            "expected {n} client-connected and client-disconnected events, got {connected} and {disconnected}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_500_connections_with_resets_and_abandoned_handshakes_leaves_no_trace() {
    let _serial = SERIAL.lock().await;
    let project = common::project();
    let max_clients = CHURN_MAX_CLIENTS.to_string();
    let mut dev = Dev::start(project.path(), &["--max-clients", &max_clients]).await;
    let target = Target::of(&dev);
    let pid = dev.child.id().expect("running");
    let started = Instant::now();

    let warm = bounded(
        "the warm-up",
        Duration::from_secs(20),
        churn(&target, 0..CHURN_WARM_UP),
    )
    .await;
    wait_clients(target.http_port, 0).await;
    wait_connect_disconnect_events(&mut dev, warm).await;
    let rss_warm = rss_kib(pid);
    let fds_warm = open_fds(pid);

    let range = CHURN_WARM_UP..CHURN_WARM_UP + CHURN_CYCLES;
    let authenticated = bounded("500 cycles", Duration::from_secs(60), churn(&target, range)).await;
    assert_eq!(authenticated, CHURN_CYCLES * 3 / 5);
    wait_clients(target.http_port, 0).await;
    wait_connect_disconnect_events(&mut dev, authenticated).await;
    let rss_after = rss_kib(pid);
    eprintln!(
        "churn: {} cycles in {:?}; server RSS {rss_warm} KiB after the warm-up, {rss_after} KiB after; \
         {fds_warm} open files after the warm-up, {} after",
        CHURN_WARM_UP + CHURN_CYCLES,
        started.elapsed(),
        open_fds(pid)
    );
    assert!(
        rss_after.saturating_sub(rss_warm) < CHURN_RSS_GROWTH_KIB,
        "the server grew from {rss_warm} KiB to {rss_after} KiB over {CHURN_CYCLES} cycles"
    );
    // Sockets the server is still tearing down may hold a descriptor for a moment; a leaked
    // one holds it for good.
    within("the server's sockets to be closed", async {
        while open_fds(pid) > fds_warm {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;

    assert_healthy(target.http_port).await;
    // No connection slot leaked either: every one of the --max-clients slots takes a device.
    let devices = hold_every_slot(&target, CHURN_MAX_CLIENTS).await;
    let clients = wait_clients(target.http_port, CHURN_MAX_CLIENTS).await;
    assert_eq!(clients.len(), devices.len());
}

/// Connects and authenticates devices until `n` are held at once. A slot still being released
/// by the server answers 503; that is retried, bounded, so only a leaked slot fails.
async fn hold_every_slot(target: &Target, n: usize) -> Vec<Ws> {
    let mut devices = Vec::new();
    within("every slot to take a device", async {
        while devices.len() < n {
            match tokio_tungstenite::connect_async(target.ws_url()).await {
                Ok((mut ws, _)) => {
                    send_json(&mut ws, &connect_message(&target.session_id, &target.token)).await;
                    assert_eq!(recv_json(&mut ws).await["type"], "core:connected");
                    devices.push(ws);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    devices
}

// ---------------------------------------------------------------------------------------------
// 2. Resets in the middle of a large broadcast
// ---------------------------------------------------------------------------------------------

const BROADCAST_DEVICES: usize = 40;
/// The stand-in d8's DEX size: the `core:dex-reload` frame is ~8 MiB of base64. That is more
/// than the kernel buffers can absorb for a device whose receive buffer is 4 KiB (the server's
/// send buffer autotunes to at most `tcp_wmem`'s 4 MiB by default), so the server is
/// certainly still writing to those devices when they reset.
const BROADCAST_DEX_SIZE: usize = 6 << 20;

/// The DEX the stand-ins produce for [`GREETING_SRC`] with `FAKE_DEX_SIZE` = `size`.
fn expected_dex(size: usize) -> Vec<u8> {
    let mut dex = b"dex\n035\0Greeting$Inner.class\nGreeting.class\n".to_vec();
    dex.extend(std::iter::repeat_n(b'z', size));
    dex
}

/// Reads `ws` until its first message over 1 MiB (the DEX broadcast); returns it and `ws`.
async fn read_big_message(mut ws: Ws) -> (String, Ws) {
    let text = bounded("the large broadcast", Duration::from_secs(30), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.len() > 1 << 20 => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("a device that kept reading lost its connection: {other:?}"),
            }
        }
    })
    .await;
    (text, ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_half_the_devices_mid_broadcast_spares_the_other_half() {
    let _serial = SERIAL.lock().await;
    let project = BuildProject::with_wrapper();
    let tools = Toolchain::new();
    let mut env = tools.env();
    env.push(("FAKE_DEX_SIZE", BROADCAST_DEX_SIZE.to_string()));
    let env = project.env(&env);
    let mut dev = Dev::start_with_env(
        project.path(),
        &["--no-initial-build", "--max-clients", "100"],
        &env_refs(&env),
    )
    .await;
    let target = Target::of(&dev);

    let mut victims = Vec::new();
    let mut victim_ids = HashSet::new();
    let mut readers = Vec::new();
    let mut kept_ids = HashSet::new();
    for i in 0..BROADCAST_DEVICES {
        if i % 2 == 0 {
            let small = Socket {
                recv_buffer: Some(4096),
                ..Socket::default()
            };
            let (ws, connected) = target.device_with(small).await;
            victim_ids.insert(connected["clientId"].as_str().expect("clientId").to_owned());
            victims.push(ws);
        } else {
            let (ws, connected) = target.device().await;
            kept_ids.insert(connected["clientId"].as_str().expect("clientId").to_owned());
            readers.push(tokio::spawn(read_big_message(ws)));
        }
    }
    wait_clients(target.http_port, BROADCAST_DEVICES).await;

    project.save(GREETING_KT, GREETING_SRC);
    // Emitted right after the broadcast was queued for every device: the writes are under way.
    let reload = dev.event("dex-reload").await;
    assert_eq!(reload["bytes"], expected_dex(BROADCAST_DEX_SIZE).len());
    for ws in victims {
        reset(ws);
    }

    let mut first: Option<String> = None;
    let mut kept = Vec::new();
    for reader in readers {
        let (text, ws) = reader.await.expect("reader task");
        match &first {
            None => {
                let message: Value = serde_json::from_str(&text).expect("JSON");
                assert_eq!(message["type"], "core:dex-reload");
                assert_eq!(message["sessionId"], target.session_id.as_str());
                let dex = base64::engine::general_purpose::STANDARD
                    .decode(message["dexBase64"].as_str().expect("dexBase64"))
                    .expect("valid base64");
                assert!(
                    dex == expected_dex(BROADCAST_DEX_SIZE),
                    "the DEX arrived damaged ({} bytes)",
                    dex.len()
                );
                first = Some(text);
            }
            Some(first) => assert!(
                text == *first,
                "a device got different bytes ({} vs {})",
                text.len(),
                first.len()
            ),
        }
        kept.push(ws);
    }

    // The reset half is gone from the registry, the other half is all there.
    let clients = wait_clients(target.http_port, BROADCAST_DEVICES / 2).await;
    let ids: HashSet<String> = clients
        .iter()
        .map(|c| c["clientId"].as_str().expect("clientId").to_owned())
        .collect();
    assert_eq!(ids, kept_ids);
    // The server saw each reset as a lost connection (no close frame could be exchanged).
    let mut lost = HashSet::new();
    within("the victims' disconnect events", async {
        while lost.len() < victim_ids.len() {
            for event in dev.drain_events() {
                if event["event"] == "client-disconnected" {
                    let id = event["clientId"].as_str().expect("clientId").to_owned();
                    assert!(
                        victim_ids.contains(&id),
                        "a kept device was disconnected: {event}"
                    );
                    assert_eq!(event["reason"], "connection lost", "{event}");
                    lost.insert(id);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    eprintln!(
        "broadcast: {} of the reset devices were cut off in the middle of a frame (server log)",
        dev.stderr().matches("write failed").count()
    );
    assert_healthy(target.http_port).await;

    // And the hub still works: a new device, and a broadcast that reaches everyone.
    let (fresh, _) = target.device().await;
    kept.push(fresh);
    let reload = http::request(target.http_port, "POST", "/reload", &[]).await;
    assert!(
        reload.status < 300,
        "POST /reload: {} {}",
        reload.status,
        reload.text()
    );
    for ws in &mut kept {
        assert_eq!(recv_type(ws, "core:reload").await["reloadType"], "full");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A storm of saves
// ---------------------------------------------------------------------------------------------

const STORM_FILES: usize = 50;
const STORM_WRITES: usize = 500;
/// Writes are paced in bursts of 10 every 15 ms: 500 writes in ~750 ms.
const STORM_BURST: usize = 10;
const STORM_TICK: Duration = Duration::from_millis(15);
/// Longest acceptable authentication round trip while the storm and its build go on.
const STORM_AUTH_BOUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_500_saves_across_50_files_gives_one_or_two_builds() {
    let _serial = SERIAL.lock().await;
    let project = BuildProject::without_wrapper();
    let files: Vec<String> = (0..STORM_FILES)
        .map(|i| format!("app/src/main/res/values/chaos_{i:02}.xml"))
        .collect();
    for file in &files {
        project.save(file, "<resources/>\n");
    }
    let cmd = fixture("gradlew").display().to_string();
    // A build that outlasts the storm: every save that misses the first batch lands while it
    // runs, so at most one follow-up build can result, however the debounce splits the storm.
    let env = project.env(&[("FAKE_GRADLE_SLEEP", "1.5".into())]);
    let mut dev = Dev::start_with_env(
        project.path(),
        &["--no-initial-build", "--build-cmd", &cmd],
        &env_refs(&env),
    )
    .await;
    let target = Target::of(&dev);

    let root = project.path().to_path_buf();
    let storm_files = files.clone();
    let storm = std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..STORM_WRITES {
            let due = start + STORM_TICK * u32::try_from(i / STORM_BURST).expect("small");
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let contents = format!("<resources><string name=\"s{i}\">{i}</string></resources>\n");
            std::fs::write(root.join(&storm_files[i % STORM_FILES]), contents).expect("save");
        }
        start.elapsed()
    });

    let mut round_trips = Vec::new();
    while !storm.is_finished() {
        let started = Instant::now();
        let (ws, _) = target.device().await;
        round_trips.push(started.elapsed());
        reset(ws);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let storm_took = storm.join().expect("storm thread");
    assert!(!round_trips.is_empty(), "no authentication during the storm");
    let worst = round_trips.iter().max().expect("one");
    assert!(
        *worst < STORM_AUTH_BOUND,
        "an authentication took {worst:?} during the storm: {round_trips:?}"
    );

    // The storm's builds: the first, then whatever starts before a quiet window passes.
    let mut builds = vec![dev.event("build-start").await];
    dev.event("build-complete").await;
    loop {
        tokio::time::sleep(QUIET).await;
        let events = dev.drain_events();
        let starts: Vec<Value> = events
            .iter()
            .filter(|e| e["event"] == "build-start")
            .cloned()
            .collect();
        if starts.is_empty() {
            break;
        }
        builds.extend(starts);
        assert!(builds.len() <= 2, "more than two builds: {builds:?}");
        if !events.iter().any(|e| e["event"] == "build-complete") {
            dev.event("build-complete").await;
        }
    }
    eprintln!(
        "storm: {STORM_WRITES} writes in {storm_took:?}, {} build(s), {} auth round trips, worst {worst:?}",
        builds.len(),
        round_trips.len()
    );
    assert!((1..=2).contains(&builds.len()));
    assert_eq!(project.gradle_runs(), builds.len());
    let built: HashSet<&str> = builds
        .iter()
        .flat_map(|b| b["files"].as_array().expect("files"))
        .filter_map(Value::as_str)
        .collect();
    for file in &files {
        assert!(built.contains(file.as_str()), "{file} was never built: {built:?}");
    }
    assert_healthy(target.http_port).await;
}

// ---------------------------------------------------------------------------------------------
// 4. A build that prints 50 MB
// ---------------------------------------------------------------------------------------------

const SPAM_LINES: usize = 52_000;
const SPAM_WIDTH: usize = 1000;
/// Allowed growth of the server's resident memory while the build prints 50 MB: the output
/// must stream through (64 KiB pipe buffer, 256 lines of at most 4 KiB queued, a 64 KiB tail),
/// not pile up. Holding even a fifth of it would blow this bound.
const SPAM_RSS_GROWTH_KIB: u64 = 10 * MIB;

/// Bytes the stand-in prints for [`SPAM_LINES`] lines of [`SPAM_WIDTH`] padding.
fn spam_bytes() -> usize {
    (1..=SPAM_LINES)
        .map(|i| "spam line ".len() + i.to_string().len() + 1 + SPAM_WIDTH + 1)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_printing_50_mb_keeps_memory_and_the_reported_tail_bounded() {
    let _serial = SERIAL.lock().await;
    assert!(spam_bytes() >= 50 << 20, "the build must print at least 50 MiB");
    let project = BuildProject::with_wrapper();
    let env = project.env(&[
        ("FAKE_GRADLE_MODE", "spam".into()),
        ("FAKE_GRADLE_SPAM_LINES", SPAM_LINES.to_string()),
        ("FAKE_GRADLE_SPAM_WIDTH", SPAM_WIDTH.to_string()),
        // As a user runs it. At debug level every output line is also copied to stderr, which
        // would measure this test's stderr collector rather than the server.
        ("RUST_LOG", "jetstart=info".into()),
    ]);
    let mut dev = Dev::start_with_env(project.path(), &["--no-initial-build"], &env_refs(&env)).await;
    let target = Target::of(&dev);
    let pid = dev.child.id().expect("running");
    let (mut ws, _) = target.device().await;
    let baseline = rss_kib(pid);

    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (peak, sampling) = (peak.clone(), sampling.clone());
        async move {
            while sampling.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let started = Instant::now();
    project.save(
        STRINGS,
        "<resources><string name=\"app_name\">Spam</string></resources>\n",
    );
    let error = bounded(
        "the build error",
        Duration::from_secs(30),
        recv_type_unbounded(&mut ws, "core:build-error"),
    )
    .await;
    let took = started.elapsed();
    sampling.store(false, Ordering::SeqCst);
    within("the sampler", sampler).await.expect("sampler");
    let peak = peak.load(Ordering::SeqCst).max(rss_kib(pid));
    eprintln!(
        "spam: {} bytes of output in {took:?}; server RSS {baseline} KiB before, peak {peak} KiB",
        spam_bytes()
    );
    assert!(
        peak.saturating_sub(baseline) < SPAM_RSS_GROWTH_KIB,
        "the server grew from {baseline} KiB to {peak} KiB while the build printed {} bytes",
        spam_bytes()
    );

    assert_eq!(error["details"]["exitCode"], 3);
    let log = error["details"]["log"].as_str().expect("log");
    assert!(log.len() <= 64 * 1024, "the tail is {} bytes", log.len());
    assert!(
        log.lines().count() <= 200,
        "the tail is {} lines",
        log.lines().count()
    );
    assert!(
        log.ends_with("e: the real error comes last"),
        "the last line is kept: …{}",
        &log[log.len().saturating_sub(200)..]
    );
    assert!(
        log.contains(&format!("spam line {SPAM_LINES} x")),
        "the whole output was read"
    );
    assert!(!log.contains("spam line 1 x"), "the head was dropped");
    let on_the_wire = error.to_string().len();
    assert!(on_the_wire < 70 * 1024, "core:build-error is {on_the_wire} bytes");
    dev.event("build-error").await;
    assert_healthy(target.http_port).await;
}

/// [`recv_type`] without its per-message timeout (the caller bounds the whole wait).
async fn recv_type_unbounded(ws: &mut Ws, ty: &str) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).expect("JSON");
                if message["type"] == ty {
                    return message;
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("expected {ty}, the connection ended: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM in the middle of a build

/// [`recv_close`], then keeps reading until the connection ends, which sends tungstenite's
/// answer to the close frame at once, as a phone's WebSocket client does.
async fn close_like_a_phone(ws: &mut Ws) -> (u16, String, Vec<Value>) {
    let close = recv_close(ws).await;
    within("the end of the connection", async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    close
}
// ---------------------------------------------------------------------------------------------

/// Shutdown is done within 2 s (docs/architecture.md, "Shutdown").
const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_build_stops_everything_cleanly() {
    let _serial = SERIAL.lock().await;
    let project = BuildProject::with_wrapper();
    let pidfile = project.log.with_file_name("child.pid");
    let env = project.env(&[
        ("FAKE_GRADLE_MODE", "hang".into()),
        ("FAKE_GRADLE_PIDFILE", pidfile.display().to_string()),
    ]);
    let mut dev = Dev::start_with_env(project.path(), &["--no-initial-build"], &env_refs(&env)).await;
    let target = Target::of(&dev);
    let session_file = project.path().join(".jetstart/session.properties");
    assert!(session_file.is_file(), "the session file is written on start");
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(target.device().await.0);
    }

    project.save(
        STRINGS,
        "<resources><string name=\"app_name\">Hang</string></resources>\n",
    );
    dev.event("build-start").await;
    for ws in &mut devices {
        recv_type(ws, "core:build-start").await;
    }
    let child = hanging_child(&pidfile).await;
    let leader = build_leader(&project);
    let group = group_members(leader);
    assert!(
        group.contains(&leader) && group.contains(&child),
        "the build runs as process group {leader}: {group:?}"
    );

    let stopping = Instant::now();
    dev.sigterm();
    let closes = futures_util::future::join_all(devices.iter_mut().map(close_like_a_phone)).await;
    let status = dev.wait_exit().await;
    let took = stopping.elapsed();
    for (code, _, before) in closes {
        let last = before.last().expect("core:disconnect before the close frame");
        assert_eq!(last["type"], "core:disconnect", "{before:?}");
        assert_eq!(last["reason"], "Server stopped");
        assert_eq!(code, 1001);
    }
    eprintln!("sigterm: the server exited {took:?} after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(took < SHUTDOWN_BOUND, "shutdown took {took:?}");
    assert!(
        wait_dead(child).await,
        "the build's child {child} outlived the server"
    );
    assert!(!alive(leader), "the build script {leader} outlived the server");
    assert_eq!(
        group_members(leader),
        Vec::<i32>::new(),
        "left of the build's process group"
    );
    assert!(!session_file.exists(), "the session file is removed on shutdown");
    dev.event("stopped").await;
}

/// A socket that has been upgraded but has not authenticated yet when the server stops is
/// closed with 1001 too (docs/protocol.md, "Close codes"), and doesn't hold shutdown up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_a_socket_that_is_still_authenticating_with_1001() {
    let _serial = SERIAL.lock().await;
    let project = common::project();
    let mut dev = Dev::start(project.path(), &[]).await;
    let target = Target::of(&dev);
    let (mut device, _) = target.device().await;
    // Upgraded (the server answered 101), never sends client:connect: a phone mid-pairing.
    let mut pairing = target.open(Socket::default()).await;

    let stopping = Instant::now();
    dev.sigterm();
    let (code, _, _) = close_like_a_phone(&mut device).await;
    assert_eq!(code, 1001);
    let (code, reason, before) = close_like_a_phone(&mut pairing).await;
    assert_eq!(code, 1001, "{reason}");
    assert!(
        before.is_empty(),
        "an unauthenticated socket gets no broadcast: {before:?}"
    );
    let status = dev.wait_exit().await;
    assert_eq!(status.code(), Some(0));
    assert!(stopping.elapsed() < SHUTDOWN_BOUND);
}

// ---------------------------------------------------------------------------------------------
// 6. Credential brute force from one address
// ---------------------------------------------------------------------------------------------

const GUESSES: usize = 1000;
/// Guesses in flight at once. With a per-address back-off holding each rejection up to ~1 s,
/// this many in flight still finish 1000 guesses in a few seconds; `--max-clients` is set so
/// that one address's share of it (a quarter) holds them all, and none is evicted.
const GUESSES_IN_FLIGHT: usize = 250;
/// Guesses made before the real device starts measuring: past any back-off threshold.
const GUESSES_BEFORE_MEASURING: usize = 30;
/// "Without delay" for the real device, generous for a loaded 2-core machine: an
/// authentication or a broadcast normally takes a few milliseconds.
const DEVICE_BOUND: Duration = Duration::from_millis(500);

fn random_token(real: &str) -> String {
    use rand::Rng as _;
    loop {
        let token: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(22)
            .map(char::from)
            .collect();
        if token != real {
            return token;
        }
    }
}

/// One wrong guess from `source`; returns the close code and anything received before it.
async fn guess(target: Target, source: IpAddr, token: String) -> (u16, Vec<Value>) {
    let mut ws = target.open(Socket::from(source)).await;
    send_json(&mut ws, &connect_message(&target.session_id, &token)).await;
    let (code, _, before) = recv_close(&mut ws).await;
    (code, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_from_one_address_gets_4002_and_never_slows_a_real_device() {
    let _serial = SERIAL.lock().await;
    let project = common::project();
    let mut dev = Dev::start(project.path(), &["--max-clients", "1200"]).await;
    let target = Target::of(&dev);
    let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (mut watcher, _) = target.device().await;

    let tokens: Vec<String> = (0..GUESSES).map(|_| random_token(&target.token)).collect();
    let guessed = Arc::new(AtomicUsize::new(0));
    // The attack runs on its own thread and runtime, so that the real device's timings below
    // measure the server, not this test's scheduler.
    let attack = std::thread::spawn({
        let (target, tokens, guessed) = (target.clone(), tokens.clone(), guessed.clone());
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(
                futures_util::stream::iter(tokens)
                    .map(|token| {
                        let (target, guessed) = (target.clone(), guessed.clone());
                        async move {
                            let outcome = guess(target, attacker, token).await;
                            guessed.fetch_add(1, Ordering::SeqCst);
                            outcome
                        }
                    })
                    .buffer_unordered(GUESSES_IN_FLIGHT)
                    .collect::<Vec<_>>(),
            )
        }
    });
    let attack_started = Instant::now();
    within("the first guesses", async {
        while guessed.load(Ordering::SeqCst) < GUESSES_BEFORE_MEASURING && !attack.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    // Meanwhile a real device from 127.0.0.1 authenticates, and its messages reach everyone.
    let mut rounds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !attack.is_finished() {
        assert!(Instant::now() < deadline, "the attack did not end");
        let during = guessed.load(Ordering::SeqCst);
        let started = Instant::now();
        let (mut device, _) = target.device().await;
        let auth = started.elapsed();
        let text = format!("round {}", rounds.len());
        let started = Instant::now();
        send_json(&mut device, &log_message(&text)).await;
        for ws in [&mut device, &mut watcher] {
            loop {
                let log = recv_type(ws, "core:log").await;
                if log["log"]["message"] == text.as_str() {
                    break;
                }
            }
        }
        let broadcast = started.elapsed();
        reset(device);
        if guessed.load(Ordering::SeqCst) < GUESSES {
            rounds.push((during, auth, broadcast));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcomes = attack
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let attack_took = attack_started.elapsed();
    let worst_auth = rounds.iter().map(|r| r.1).max();
    let worst_broadcast = rounds.iter().map(|r| r.2).max();
    eprintln!(
        "brute force: {GUESSES} guesses in {attack_took:?}; {} real-device rounds during the attack, \
         worst authentication {worst_auth:?}, worst broadcast {worst_broadcast:?}",
        rounds.len()
    );

    assert_eq!(outcomes.len(), GUESSES);
    for (code, before) in &outcomes {
        assert_eq!(*code, 4002, "a wrong token must get 4002");
        assert!(before.is_empty(), "a wrong token received {before:?}");
    }
    assert!(
        rounds.len() >= 2,
        "the real device must be measured during the attack: {rounds:?}"
    );
    for (during, auth, broadcast) in &rounds {
        assert!(
            *auth < DEVICE_BOUND && *broadcast < DEVICE_BOUND,
            "after {during} guesses the real device took {auth:?} to authenticate and {broadcast:?} for a broadcast"
        );
    }

    // Every guess was reported as a 4002 from the attacker's address; no token was logged.
    let mut rejected = 0;
    within("every rejection to be reported", async {
        while rejected < GUESSES {
            rejected += dev
                .drain_events()
                .iter()
                .filter(|e| {
                    e["event"] == "client-rejected"
                        && e["code"] == 4002
                        && e["addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.2:"))
                })
                .count();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(rejected, GUESSES);
    let stderr = dev.stderr();
    let guessed_tokens: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let logged = stderr
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|word| guessed_tokens.contains(word) || *word == target.token);
    assert_eq!(logged, None, "a token reached the log");

    let clients = wait_clients(target.http_port, 1).await;
    assert!(clients[0]["addr"]
        .as_str()
        .expect("addr")
        .starts_with("127.0.0.1:"));
    assert_healthy(target.http_port).await;
}

// ---------------------------------------------------------------------------------------------
// 7. Whoever reads the server's output stops reading
// ---------------------------------------------------------------------------------------------

/// A `--json` reader (an IDE plugin, a script) that stops reading stdout, and nobody reading
/// stderr: once the pipes are full, every write to them blocks. The server must go on serving
/// devices regardless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_the_output_never_stalls_the_server() {
    use tokio::io::AsyncBufReadExt;

    let _serial = SERIAL.lock().await;
    let project = common::project();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetstart-rs"))
        .arg("dev")
        .arg("--project")
        .arg(project.path())
        .args(["--json", "--port", "0", "--ws-port", "0", "--bind", "127.0.0.1"])
        .args([
            "--host",
            "127.0.0.1",
            "--max-clients",
            "200",
            "--no-initial-build",
        ])
        .env("RUST_LOG", "jetstart=debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn jetstart-rs");
    // Read `ready`, then never again: both pipes are held open, unread.
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout"));
    let _stderr = child.stderr.take().expect("stderr");
    let mut line = String::new();
    within("ready", stdout.read_line(&mut line))
        .await
        .expect("ready line");
    let ready: Value = serde_json::from_str(&line).expect("ready is JSON");
    let ws_url = format!("ws://127.0.0.1:{}", ready["wsPort"]);
    let http_port = u16::try_from(ready["httpPort"].as_u64().expect("httpPort")).expect("port");
    let credentials = connect_message(
        ready["session"]["id"].as_str().expect("id"),
        ready["session"]["token"].as_str().expect("token"),
    );

    // Every device that comes and goes writes two JSON events and a few log lines: far more
    // than the 64 KiB a pipe holds.
    const CYCLES: usize = 600;
    within("devices coming and going", async {
        for _ in 0..CYCLES {
            let mut ws = common::ws_connect(&ws_url).await;
            send_json(&mut ws, &credentials).await;
            recv_type(&mut ws, "core:connected").await;
            let _ = ws.close(None).await;
        }
    })
    .await;

    // Still serving: a device gets in, and the developer's reload reaches it.
    let mut ws = common::ws_connect(&ws_url).await;
    send_json(&mut ws, &credentials).await;
    recv_type(&mut ws, "core:connected").await;
    let reload = http::request(http_port, "POST", "/reload", &[]).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(recv_type(&mut ws, "core:reload").await["reloadType"], "full");
    assert_healthy(http_port).await;
}
