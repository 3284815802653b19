//! Micro-benchmarks of the hot paths: message encode/decode and the broadcast fan-out.
//! `cargo bench --bench protocol`; CI runs them once each with `cargo test --benches`.

use std::net::SocketAddr;
use std::sync::Arc;

use divan::Bencher;
use jetstart::hub::registry::{ClientEntry, ClientInfo, CloseSignal, RawFrame, Registry, Wire};
use jetstart::protocol::{BuildPhase, BuildStatus, ClientMessage, CoreMessage};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

fn main() {
    divan::main();
}

const DEX_BYTES: usize = 1_400_000;

fn dex_message() -> CoreMessage {
    CoreMessage::DexReload {
        session_id: "a1b2c3d4".into(),
        dex_base64: "A".repeat(DEX_BYTES * 4 / 3),
        class_names: vec![
            "com.example.MainActivity".into(),
            "com.example.MainActivityKt".into(),
        ],
    }
}

#[divan::bench]
fn encode_build_status() -> String {
    let message = CoreMessage::BuildStatus {
        session_id: "a1b2c3d4".into(),
        status: BuildStatus {
            phase: BuildPhase::Compiling,
            progress: 42,
            message: "> Task :app:compileDebugKotlin".into(),
            timestamp: 1_700_000_000_000,
        },
    };
    divan::black_box(&message).encode()
}

#[divan::bench]
fn encode_dex_reload_1_4_mb(bencher: Bencher) {
    let message = dex_message();
    bencher
        .counter(divan::counter::BytesCount::new(DEX_BYTES))
        .bench(|| divan::black_box(&message).encode());
}

#[divan::bench]
fn decode_client_connect() -> ClientMessage {
    let text = r#"{"type":"client:connect","sessionId":"a1b2c3d4","token":"Zk3abcdefghijklmnopqrs",
        "deviceInfo":{"id":"x","model":"Pixel 8","platform":"android","architecture":"arm64-v8a",
        "manufacturer":"Google","osVersion":"14","apiLevel":34,"isEmulator":false}}"#;
    ClientMessage::decode(divan::black_box(text)).unwrap_or(ClientMessage::Unknown)
}

#[divan::bench]
fn decode_client_log() -> ClientMessage {
    let text = r#"{"type":"client:log","log":{"id":"1","timestamp":1700000000000,"level":"info",
        "tag":"MainActivity","message":"Composition took 12 ms","source":"client"}}"#;
    ClientMessage::decode(divan::black_box(text)).unwrap_or(ClientMessage::Unknown)
}

/// A registry of `n` devices, the receiving ends of their queues, and what keeps their sockets
/// open. Every device's task is busy (it never opens its socket to broadcasts), so every
/// message takes the queue: the path measured here. Direct writes to waiting devices are
/// syscalls, measured end to end by `examples/loadgen.rs`.
fn registry(n: usize) -> (Registry, Vec<mpsc::Receiver<RawFrame>>, Sockets) {
    raise_open_file_limit();
    let registry = Registry::default();
    let mut receivers = Vec::with_capacity(n);
    let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let mut peers = Vec::with_capacity(n);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let local = listener.local_addr().expect("address");
    for i in 0..n {
        let (peer, accepted) = runtime
            .block_on(async { tokio::join!(tokio::net::TcpStream::connect(local), listener.accept()) });
        peers.push(peer.expect("connect"));
        let (queue, rx) = mpsc::channel(256);
        let info = Arc::new(ClientInfo::new(format!("client-{i}"), Value::Null, addr));
        registry.register(
            ClientEntry {
                info,
                wire: Wire::new(accepted.expect("accept").0),
                queue,
                close: CloseSignal::new(),
            },
            |_| Some(Vec::new()),
        );
        receivers.push(rx);
    }
    (
        registry,
        receivers,
        Sockets {
            _peers: peers,
            _runtime: runtime,
        },
    )
}

/// The far ends of the devices' sockets and the runtime they are registered with.
struct Sockets {
    _peers: Vec<tokio::net::TcpStream>,
    _runtime: tokio::runtime::Runtime,
}

/// A thousand devices take two thousand sockets, over the usual soft limit of 1024.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Queueing one message for every device and taking it off again, as each device's writer
/// does. The cost must not depend on the message size: the bytes are shared, not copied.
#[divan::bench(args = [100, 1000])]
fn broadcast_small(bencher: Bencher, devices: usize) {
    let (registry, mut receivers, _sockets) = registry(devices);
    let bytes = Utf8Bytes::from(r#"{"type":"core:build-start","sessionId":"a1b2c3d4","timestamp":1}"#);
    bencher.bench_local(|| {
        registry.broadcast(&bytes);
        for rx in &mut receivers {
            divan::black_box(rx.try_recv().ok());
        }
    });
}

#[divan::bench(args = [100, 1000])]
fn broadcast_dex_1_4_mb(bencher: Bencher, devices: usize) {
    let (registry, mut receivers, _sockets) = registry(devices);
    let bytes = Utf8Bytes::from(dex_message().encode());
    bencher.bench_local(|| {
        registry.broadcast(&bytes);
        for rx in &mut receivers {
            divan::black_box(rx.try_recv().ok());
        }
    });
}

/// A device's log relayed to every device: the headroom check is one more pass over the queues.
#[divan::bench(args = [100, 1000])]
fn relay_log(bencher: Bencher, devices: usize) {
    let (registry, mut receivers, _sockets) = registry(devices);
    let bytes =
        Utf8Bytes::from(r#"{"type":"core:log","sessionId":"a1b2c3d4","log":{"message":"hi"},"timestamp":1}"#);
    bencher.bench_local(|| {
        registry.relay(&bytes, "client-0", false);
        for rx in &mut receivers {
            divan::black_box(rx.try_recv().ok());
        }
    });
}
