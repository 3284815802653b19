//! The registry of authenticated devices: per-client bounded queues, close requests, snapshots.

use parking_lot::Mutex;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::fanout::{Broadcast, Handed};
// The types of `ClientEntry`'s fields, for those who build one (the benches); what they do is
// the fan-out's business.
pub use super::fanout::{RawFrame, Wire};
use crate::protocol::{close, ApkInfo, Role};
use crate::session::unix_ms;

/// Messages that may wait for one device (docs/protocol.md, "Flow control"). A device further
/// behind is closed with 1013.
pub const CLIENT_QUEUE_CAPACITY: usize = 256;
/// Queue slots that relayed device logs leave free. A burst of `client:log` (an app starting
/// up, a crash dump) is relayed only while every other device has this much room, so the
/// burst is paced by the devices' own draining (the sender's reads wait meanwhile) instead of
/// overflowing healthy queues; the server's own events always find room.
pub const RELAY_HEADROOM: usize = 64;
/// How long a device's log may wait for room at the other devices. A device without room that
/// took nothing off its queue for this long is stuck, and is closed with 1013; one that is
/// draining, however slowly, gets the log (a queue that is full is closed as for any broadcast).
pub const RELAY_STALL: Duration = Duration::from_millis(500);

/// Why and how a connection should end. The first request wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseRequest {
    /// Send a close frame; with `drain`, queued messages go out first.
    Frame {
        code: u16,
        reason: Cow<'static, str>,
        drain: bool,
    },
    /// The device sent a close frame; tungstenite answers it on the next flush.
    PeerClosed,
    /// The connection is already broken: just drop it.
    Abort,
}

impl CloseRequest {
    /// A close frame after everything queued.
    pub fn frame(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Frame {
            code,
            reason: reason.into(),
            drain: true,
        }
    }

    /// A close frame at once: what is queued is dropped with the connection.
    pub fn frame_now(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Frame {
            code,
            reason: reason.into(),
            drain: false,
        }
    }

    /// The close code reported in events, if a frame is involved.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Frame { code, .. } => Some(*code),
            Self::PeerClosed | Self::Abort => None,
        }
    }
}

/// One connection's close latch, shared by its reader, its writer and the registry.
#[derive(Debug, Clone)]
pub struct CloseSignal(Arc<watch::Sender<Option<CloseRequest>>>);

impl CloseSignal {
    pub fn new() -> Self {
        Self(Arc::new(watch::Sender::new(None)))
    }

    /// Asks the connection to close; ignored if a close was already requested.
    pub fn request(&self, request: CloseRequest) -> bool {
        self.0.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(request);
            true
        })
    }

    pub fn get(&self) -> Option<CloseRequest> {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<CloseRequest>> {
        self.0.subscribe()
    }
}

impl Default for CloseSignal {
    fn default() -> Self {
        Self::new()
    }
}

/// What is known about one authenticated client (a device or a viewer).
#[derive(Debug)]
pub struct ClientInfo {
    pub client_id: String,
    pub device_info: Value,
    /// From `deviceInfo.role`: viewers get broadcasts but are never listed or counted.
    pub role: Role,
    pub addr: SocketAddr,
    /// Unix ms.
    pub connected_at: u64,
    last_activity: AtomicU64,
}

impl ClientInfo {
    pub fn new(client_id: String, device_info: Value, addr: SocketAddr) -> Self {
        let now = unix_ms();
        Self {
            client_id,
            role: Role::of(&device_info),
            device_info,
            addr,
            connected_at: now,
            last_activity: AtomicU64::new(now),
        }
    }

    pub fn touch(&self) {
        self.last_activity.store(unix_ms(), Ordering::Relaxed);
    }

    pub fn last_activity(&self) -> u64 {
        self.last_activity.load(Ordering::Relaxed)
    }

    pub fn is_device(&self) -> bool {
        self.role == Role::Device
    }

    /// A viewer on this computer: the only kind that gets the `--json` event feed.
    pub fn is_local_viewer(&self) -> bool {
        self.role == Role::Viewer && crate::pairing::host::is_loopback_peer(self.addr.ip())
    }

    /// The device model for human output, or its client id.
    pub fn label(&self) -> &str {
        self.device_info
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(&self.client_id)
    }
}

/// A device as listed by `GET /session`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSnapshot {
    pub client_id: String,
    pub device_info: Value,
    pub addr: String,
    pub connected_at: u64,
    pub last_activity: u64,
}

/// A registered device: its socket, where to queue its messages and how to close it.
pub struct ClientEntry {
    pub info: Arc<ClientInfo>,
    pub wire: Arc<Wire>,
    /// Written to only through the fan-out's [`Broadcast`] once registered (the greeting goes
    /// in before the device's task runs): that keeps a direct write from overtaking a queued one.
    pub queue: mpsc::Sender<RawFrame>,
    pub close: CloseSignal,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<String, ClientEntry>,
    /// The last successful build, replayed to devices that connect later.
    last_apk: Option<ApkInfo>,
    /// The `core:build-error` of the last build if it failed, replayed to viewers only (a device
    /// is told of the last APK, as in JetStart; a dashboard opened after a failure shows it).
    last_error: Option<Utf8Bytes>,
}

/// Authenticated devices. The lock is only held for non-blocking work (no awaits).
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    /// Adds a device. `greet` runs under the registry lock with the last APK, and returns the
    /// messages to queue before any broadcast can reach the device (`core:connected`, the last
    /// build), or `None` to refuse the registration. Returns the number of registered devices.
    pub fn register(
        &self,
        entry: ClientEntry,
        greet: impl FnOnce(Option<&ApkInfo>) -> Option<Vec<Utf8Bytes>>,
    ) -> Option<usize> {
        let mut inner = self.inner.lock();
        let mut greeting = greet(inner.last_apk.as_ref())?;
        if !entry.info.is_device() {
            greeting.extend(inner.last_error.clone());
        }
        for message in greeting {
            // A fresh queue has room for the greeting.
            let _ = entry.queue.try_send(RawFrame::text(message.into()));
        }
        inner.clients.insert(entry.info.client_id.clone(), entry);
        Some(inner.clients.len())
    }

    /// Removes a device; returns the number still registered.
    pub fn remove(&self, client_id: &str) -> usize {
        let mut inner = self.inner.lock();
        inner.clients.remove(client_id);
        inner.clients.len()
    }

    /// Sends the same bytes to every client, viewers included (see [`broadcast_locked`]); a
    /// client whose queue is full is closed with 1013 and dropped, so it can't slow the others.
    /// Returns how many devices (not viewers) got the message.
    pub fn broadcast(&self, bytes: &Utf8Bytes) -> usize {
        self.broadcast_with(bytes, |_| true, |_| {})
    }

    /// [`Registry::broadcast`] of a `core:build-error`, remembered for viewers that connect
    /// later (until a build succeeds).
    pub fn broadcast_build_error(&self, bytes: &Utf8Bytes) -> usize {
        self.broadcast_with(bytes, |_| true, |inner| inner.last_error = Some(bytes.clone()))
    }

    /// Sends the same bytes to the viewers on this computer only (the `--json` event feed, which
    /// names devices' addresses: nothing for token holders elsewhere on the network). The hub
    /// calls it only while there are such viewers.
    pub fn broadcast_local_viewers(&self, bytes: &Utf8Bytes) {
        self.broadcast_with(bytes, ClientInfo::is_local_viewer, |_| {});
    }

    /// [`Registry::broadcast`] of a `core:build-complete`, remembered for devices that connect
    /// later in the same step: a device registering meanwhile gets it once, not twice.
    pub fn broadcast_build(&self, bytes: &Utf8Bytes, apk: ApkInfo) -> usize {
        self.broadcast_with(
            bytes,
            |_| true,
            |inner| {
                inner.last_apk = Some(apk);
                inner.last_error = None;
            },
        )
    }

    /// Under one lock, `remember` updates what later clients are greeted with and `bytes` go to
    /// the clients in `audience`; the clients too slow for it are named once the lock is free.
    fn broadcast_with(
        &self,
        bytes: &Utf8Bytes,
        audience: impl Fn(&ClientInfo) -> bool,
        remember: impl FnOnce(&mut Inner),
    ) -> usize {
        let mut inner = self.inner.lock();
        remember(&mut inner);
        let (delivered, full) = broadcast_locked(&mut inner, bytes, audience);
        drop(inner);
        warn_too_slow(&full, "can't keep up (its queue is full)");
        delivered
    }

    /// Broadcasts a message a device sent (`from`), if every other device has
    /// [`RELAY_HEADROOM`] free; otherwise queues nothing and returns `None`, so the sender can
    /// wait. With `give_up` (the sender waited [`RELAY_STALL`]), the devices still without room
    /// that took nothing meanwhile are closed with 1013; the others get the message anyway.
    pub fn relay(&self, bytes: &Utf8Bytes, from: &str, give_up: bool) -> Option<usize> {
        let mut inner = self.inner.lock();
        // Checked and queued under one lock: concurrent relays can't overshoot the mark together.
        let behind = |id: &str, entry: &ClientEntry| id != from && entry.queue.capacity() <= RELAY_HEADROOM;
        let mut stuck = Vec::new();
        if inner.clients.iter().any(|(id, entry)| behind(id, entry)) {
            if !give_up {
                return None;
            }
            inner.clients.retain(|id, entry| {
                let keep = !(behind(id, entry) && entry.wire.stuck_for() >= RELAY_STALL);
                if !keep {
                    entry.close.request(too_slow());
                    stuck.push(id.clone());
                }
                keep
            });
        }
        let (delivered, full) = broadcast_locked(&mut inner, bytes, |_| true);
        drop(inner);
        warn_too_slow(&stuck, "took nothing from its queue while logs waited for it");
        warn_too_slow(&full, "can't keep up (its queue is full)");
        Some(delivered)
    }

    /// Asks one device to close; false if no such device.
    pub fn close(&self, client_id: &str, request: CloseRequest) -> bool {
        let mut inner = self.inner.lock();
        match inner.clients.remove(client_id) {
            Some(entry) => entry.close.request(request),
            None => false,
        }
    }

    /// Asks every device to close and empties the registry; returns how many there were.
    pub fn close_all(&self, request: &CloseRequest) -> usize {
        let mut inner = self.inner.lock();
        let count = inner.clients.len();
        for (_, entry) in inner.clients.drain() {
            entry.close.request(request.clone());
        }
        count
    }

    /// The number of devices (viewers are not counted).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .clients
            .values()
            .filter(|e| e.info.is_device())
            .count()
    }

    /// True when no device is registered (viewers may be). Stops at the first device, so it
    /// stays cheap with a thousand of them.
    pub fn is_empty(&self) -> bool {
        !self.inner.lock().clients.values().any(|e| e.info.is_device())
    }

    /// The devices (not the viewers), oldest connection first.
    pub fn snapshot(&self) -> Vec<ClientSnapshot> {
        let mut list: Vec<ClientSnapshot> = self
            .inner
            .lock()
            .clients
            .values()
            .filter(|e| e.info.is_device())
            .map(|e| ClientSnapshot {
                client_id: e.info.client_id.clone(),
                device_info: e.info.device_info.clone(),
                addr: e.info.addr.to_string(),
                connected_at: e.info.connected_at,
                last_activity: e.info.last_activity(),
            })
            .collect();
        list.sort_by_key(|c| c.connected_at);
        list
    }
}

/// Sends `bytes` to every client in `audience` through the fan-out (which decides, per device,
/// between writing directly and queuing); returns how many devices got it and the clients
/// closed because their queue was full (logged by the caller, once the lock is released).
fn broadcast_locked(
    inner: &mut Inner,
    bytes: &Utf8Bytes,
    audience: impl Fn(&ClientInfo) -> bool,
) -> (usize, Vec<String>) {
    let mut delivered = 0;
    let mut full = Vec::new();
    let mut broadcast = Broadcast::new(bytes, inner.clients.len());
    inner.clients.retain(|id, entry| {
        if !audience(&entry.info) {
            return true;
        }
        match broadcast.hand_to(&entry.wire, &entry.queue) {
            Handed::Delivered => {
                delivered += usize::from(entry.info.is_device());
                true
            }
            Handed::Full => {
                entry.close.request(too_slow());
                full.push(id.clone());
                false
            }
            Handed::Gone => false,
        }
    });
    (delivered, full)
}

fn warn_too_slow(ids: &[String], why: &str) {
    for id in ids {
        tracing::warn!("device {id} {why}; closing it with 1013");
    }
}

/// 1013 without draining: what is queued is what the device couldn't take.
fn too_slow() -> CloseRequest {
    CloseRequest::frame_now(close::TRY_AGAIN_LATER, close::REASON_TOO_SLOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apk() -> ApkInfo {
        ApkInfo {
            path: "app-debug.apk".into(),
            size: 3,
            hash: "00".repeat(32),
            version_code: None,
            version_name: None,
            min_sdk_version: None,
            target_sdk_version: None,
            application_id: None,
        }
    }

    /// A device with a real socket whose task never parks: every message is queued.
    async fn entry(id: &str, capacity: usize) -> (ClientEntry, mpsc::Receiver<RawFrame>) {
        entry_as(id, capacity, Value::Null, "127.0.0.1:1").await
    }

    /// A viewer (`deviceInfo.role` "viewer") connected from `addr`.
    async fn viewer(id: &str, addr: &str) -> (ClientEntry, mpsc::Receiver<RawFrame>) {
        entry_as(id, 8, serde_json::json!({"role": "viewer"}), addr).await
    }

    async fn entry_as(
        id: &str,
        capacity: usize,
        device_info: Value,
        peer: &str,
    ) -> (ClientEntry, mpsc::Receiver<RawFrame>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (_client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let wire = Wire::new(server.expect("accept").0);
        let (queue, rx) = mpsc::channel(capacity);
        let info = Arc::new(ClientInfo::new(
            id.into(),
            device_info,
            peer.parse().expect("peer address"),
        ));
        (
            ClientEntry {
                info,
                wire,
                queue,
                close: CloseSignal::new(),
            },
            rx,
        )
    }

    #[tokio::test]
    async fn greeting_is_queued_before_broadcasts() {
        let registry = Registry::default();
        let (e, mut rx) = entry("a", 4).await;
        registry.register(e, |_| Some(vec!["hello".into()]));
        registry.broadcast(&"news".into());
        assert_eq!(rx.try_recv().expect("greeting").payload_str(), "hello");
        assert_eq!(rx.try_recv().expect("broadcast").payload_str(), "news");
    }

    #[tokio::test]
    async fn refused_registration_adds_nothing() {
        let registry = Registry::default();
        let (e, _rx) = entry("a", 4).await;
        assert_eq!(registry.register(e, |_| None), None);
        assert!(registry.is_empty());
    }

    #[tokio::test]
    async fn full_queue_closes_only_that_client_with_1013() {
        let registry = Registry::default();
        let (slow, _slow_rx) = entry("slow", 1).await;
        let slow_close = slow.close.clone();
        let (fast, mut fast_rx) = entry("fast", 8).await;
        registry.register(slow, |_| Some(vec![]));
        registry.register(fast, |_| Some(vec![]));
        assert_eq!(registry.broadcast(&"1".into()), 2);
        assert_eq!(registry.broadcast(&"2".into()), 1);
        assert_eq!(
            slow_close.get().and_then(|r| r.code()),
            Some(close::TRY_AGAIN_LATER)
        );
        assert_eq!(registry.len(), 1);
        assert_eq!(fast_rx.try_recv().expect("1").payload_str(), "1");
        assert_eq!(fast_rx.try_recv().expect("2").payload_str(), "2");
    }

    #[tokio::test]
    async fn relays_wait_for_headroom_at_every_other_device() {
        let registry = Registry::default();
        let (sender, mut sender_rx) = entry("sender", CLIENT_QUEUE_CAPACITY).await;
        let (other, mut other_rx) = entry("other", CLIENT_QUEUE_CAPACITY).await;
        let other_close = other.close.clone();
        let other_wire = other.wire.clone();
        registry.register(sender, |_| Some(vec![]));
        registry.register(other, |_| Some(vec![]));
        let room = CLIENT_QUEUE_CAPACITY - RELAY_HEADROOM;
        for _ in 0..room {
            assert_eq!(registry.relay(&"log".into(), "sender", false), Some(2));
        }
        // "other" is at the mark: the relay waits, and queues nothing meanwhile.
        assert_eq!(registry.relay(&"log".into(), "sender", false), None);
        assert_eq!(other_rx.len(), room);
        // A device's own backlog never holds its relays up (it drains it itself).
        while sender_rx.try_recv().is_ok() {}
        assert_eq!(registry.relay(&"log".into(), "other", false), Some(2));
        // The server's own events still find room.
        assert_eq!(registry.broadcast(&"build".into()), 2);
        // Those two went past the mark; once "other" takes three, there is room for one more.
        for _ in 0..3 {
            other_rx.try_recv().expect("queued");
        }
        assert_eq!(registry.relay(&"log".into(), "sender", false), Some(2));
        assert_eq!(registry.relay(&"log".into(), "sender", false), None);
        // Given up on, but "other" is still taking messages: it gets the log anyway.
        assert_eq!(registry.relay(&"log".into(), "sender", true), Some(2));
        assert_eq!(other_close.get(), None);
        // Given up on, and "other" took nothing for the whole wait: closed with 1013, and the
        // log goes to the rest.
        other_wire.stalled_for_test(RELAY_STALL);
        assert_eq!(registry.relay(&"log".into(), "sender", true), Some(1));
        assert_eq!(
            other_close.get().and_then(|r| r.code()),
            Some(close::TRY_AGAIN_LATER)
        );
        assert_eq!(registry.len(), 1);
        assert_eq!(sender_rx.len(), 5);
    }

    #[tokio::test]
    async fn a_build_is_remembered_by_the_broadcast_that_announces_it() {
        let registry = Registry::default();
        let (early, mut early_rx) = entry("early", 4).await;
        registry.register(early, |last| {
            assert!(last.is_none(), "nothing built yet");
            Some(vec![])
        });
        let apk = apk();
        assert_eq!(registry.broadcast_build(&"complete".into(), apk.clone()), 1);
        // A device that registers afterwards gets the build in its greeting instead.
        let (late, mut late_rx) = entry("late", 4).await;
        registry.register(late, |last| {
            assert_eq!(last, Some(&apk));
            Some(vec!["greeting with the build".into()])
        });
        assert_eq!(early_rx.try_recv().expect("broadcast").payload_str(), "complete");
        assert!(early_rx.try_recv().is_err(), "once");
        assert_eq!(
            late_rx.try_recv().expect("greeting").payload_str(),
            "greeting with the build"
        );
        assert!(late_rx.try_recv().is_err(), "once");
    }

    #[tokio::test]
    async fn viewers_get_broadcasts_but_are_neither_listed_nor_counted() {
        let registry = Registry::default();
        let (watcher, mut watcher_rx) = viewer("viewer", "127.0.0.1:2").await;
        registry.register(watcher, |_| Some(vec![]));
        assert_eq!((registry.is_empty(), registry.len()), (true, 0));
        assert!(registry.snapshot().is_empty());
        assert_eq!(registry.broadcast(&"news".into()), 0, "no device got it");
        assert_eq!(watcher_rx.try_recv().expect("viewer").payload_str(), "news");
        let (device, _device_rx) = entry("device", 8).await;
        registry.register(device, |_| Some(vec![]));
        assert!(!registry.is_empty() && registry.len() == 1);
        let listed: Vec<String> = registry.snapshot().into_iter().map(|c| c.client_id).collect();
        assert_eq!(listed, ["device"]);
        assert_eq!(registry.broadcast(&"more".into()), 1);
        assert_eq!(watcher_rx.try_recv().expect("viewer").payload_str(), "more");
    }

    #[tokio::test]
    async fn the_event_feed_goes_to_viewers_on_this_computer_only() {
        let registry = Registry::default();
        let (local, mut local_rx) = viewer("local", "127.0.0.1:2").await;
        let (mapped, mut mapped_rx) = viewer("mapped", "[::ffff:127.0.0.1]:3").await;
        let (remote, mut remote_rx) = viewer("remote", "192.168.1.20:4").await;
        let (device, mut device_rx) = entry("device", 8).await;
        for e in [local, mapped, remote, device] {
            registry.register(e, |_| Some(vec![]));
        }
        registry.broadcast_local_viewers(&"event".into());
        assert_eq!(local_rx.try_recv().expect("local").payload_str(), "event");
        assert_eq!(mapped_rx.try_recv().expect("mapped").payload_str(), "event");
        assert!(
            remote_rx.try_recv().is_err(),
            "a viewer on the network gets no feed"
        );
        assert!(device_rx.try_recv().is_err(), "devices get no feed");
    }

    #[tokio::test]
    async fn a_failed_build_is_replayed_to_viewers_until_a_build_succeeds() {
        let registry = Registry::default();
        registry.broadcast_build_error(&"failed".into());
        let (first, mut first_rx) = viewer("first", "127.0.0.1:2").await;
        registry.register(first, |_| Some(vec!["hello".into()]));
        assert_eq!(first_rx.try_recv().expect("greeting").payload_str(), "hello");
        assert_eq!(first_rx.try_recv().expect("replay").payload_str(), "failed");
        let (device, mut device_rx) = entry("device", 8).await;
        registry.register(device, |_| Some(vec!["hello".into()]));
        assert_eq!(device_rx.try_recv().expect("greeting").payload_str(), "hello");
        assert!(device_rx.try_recv().is_err(), "a device gets no replayed error");
        let apk = apk();
        registry.broadcast_build(&"complete".into(), apk);
        let (later, mut later_rx) = viewer("later", "127.0.0.1:3").await;
        registry.register(later, |_| Some(vec!["hello".into()]));
        assert_eq!(later_rx.try_recv().expect("greeting").payload_str(), "hello");
        assert!(
            later_rx.try_recv().is_err(),
            "the error was fixed by a successful build"
        );
    }

    #[test]
    fn first_close_request_wins() {
        let signal = CloseSignal::new();
        assert!(signal.request(CloseRequest::frame(4001, "x")));
        assert!(!signal.request(CloseRequest::Abort));
        assert_eq!(signal.get().and_then(|r| r.code()), Some(4001));
    }
}
