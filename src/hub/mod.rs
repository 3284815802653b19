//! The WebSocket hub: accepts devices, authenticates them, and fans reload events out to them.

mod admission;
pub mod auth;
pub mod backoff;
mod budget;
mod connection;
mod device;
mod fanout;
pub mod handshake;
mod heartbeat;
mod log_entry;
pub mod per_address;
pub mod registry;
mod violation;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::Event;
use crate::pairing::Advertised;
use crate::protocol::{close, CoreMessage};
use crate::session::{Session, SessionStore};
use crate::term::reporter::Reporter;
use admission::{Admission, Admit};
pub use backoff::address_key;
pub use handshake::normalize_origin;
use registry::Registry;
pub use registry::{ClientInfo, ClientSnapshot, CloseRequest};

/// How long shutdown waits for devices to receive `core:disconnect` and the close frame.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);
/// Connections answered with HTTP 503 at once (each reads a request head for up to 2 s); past
/// that, a connection the server has no room for is closed without an answer, so refusals can't
/// use up descriptors either.
pub const REFUSALS_AT_ONCE: usize = 8;

/// The hub's share of the settings.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// The host, ports and project name phones are given (download URLs, `core:connected`).
    pub advertised: Advertised,
    pub allowed_origins: Vec<String>,
    pub auth_timeout: Duration,
    pub max_clients: usize,
    pub ping_interval: Duration,
    pub client_timeout: Duration,
}

struct Inner {
    settings: HubSettings,
    session: Arc<SessionStore>,
    reporter: Arc<Reporter>,
    registry: Registry,
    /// Every accepted TCP connection holds a ticket, also during its handshake.
    admission: Arc<Admission>,
    /// Permits to answer a connection with 503.
    refusals: Arc<Semaphore>,
    connections: TaskTracker,
    stopping: CancellationToken,
    next_client: AtomicU64,
    /// Whether any device is authenticated; changes only when that flips, so a thousand devices
    /// coming and going don't wake its followers a thousand times.
    any_device: watch::Sender<bool>,
    /// Failed authentications per peer address, to slow down guessing.
    auth_backoff: backoff::AuthBackoff,
    /// Viewers connected from this computer: while there are none, events are not encoded for
    /// them at all (a thousand devices connecting cost nothing extra). Only a shortcut: the
    /// registry decides who gets an event.
    local_viewers: AtomicUsize,
}

/// Handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Hub {
    pub fn new(settings: HubSettings, session: Arc<SessionStore>, reporter: Arc<Reporter>) -> Self {
        let admission = Admission::new(settings.max_clients);
        Self {
            inner: Arc::new(Inner {
                settings,
                session,
                reporter,
                registry: Registry::default(),
                admission,
                refusals: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
                connections: TaskTracker::new(),
                stopping: CancellationToken::new(),
                next_client: AtomicU64::new(1),
                any_device: watch::Sender::new(false),
                auth_backoff: backoff::AuthBackoff::default(),
                local_viewers: AtomicUsize::new(0),
            }),
        }
    }

    /// Accepts connections until [`Hub::shutdown`].
    pub async fn serve(&self, listener: TcpListener) {
        let inner = &self.inner;
        loop {
            let accepted = tokio::select! {
                () = inner.stopping.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, addr) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: report, breathe, go on.
                    tracing::warn!("WebSocket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match inner.admission.admit(addr.ip()) {
                Admit::Open(ticket) => {
                    let hub = self.clone();
                    inner
                        .connections
                        .spawn(async move { connection::handle(hub, stream, addr, ticket).await });
                }
                // Closed at once: the address is holding sockets it has not used, and answers to
                // it must not use up the refusals that devices get when the server is full.
                Admit::AddressFull => {
                    tracing::debug!(%addr, "closed a connection at once: its address holds its share of unauthenticated sockets");
                    drop(stream);
                }
                Admit::Full => match inner.refusals.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tracing::warn!(%addr, "refused a connection: {} devices connected (--max-clients)", inner.settings.max_clients);
                        inner.connections.spawn(async move {
                            handshake::refuse_full(stream).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::debug!(%addr, "closed a connection at once: server full");
                        drop(stream);
                    }
                },
            }
            // Let the task just spawned run before the next `accept`: the device's upgrade
            // request has usually arrived with the connection, while the next `accept` usually
            // finds nothing. `yield_now` resumes us after this worker's other ready tasks and a
            // driver poll. A latency preference only: nothing depends on the order.
            tokio::task::yield_now().await;
        }
    }

    /// Serializes `message` once and sends the same bytes to every authenticated client;
    /// returns how many devices (viewers aside) it went to. A `core:build-complete` is also
    /// remembered for clients that connect later, a `core:build-error` for viewers.
    pub fn broadcast(&self, message: &CoreMessage) -> usize {
        let bytes = Utf8Bytes::from(message.encode());
        match message {
            CoreMessage::BuildComplete { apk_info, .. } => {
                self.inner.registry.broadcast_build(&bytes, apk_info.clone())
            }
            CoreMessage::BuildError { .. } => self.inner.registry.broadcast_build_error(&bytes),
            _ => self.broadcast_encoded(&bytes),
        }
    }

    /// Sends a `--json` event to the viewers on this computer as `jetstart-rs:event`. The
    /// events that carry the token (`ready`, `session-rotated`) are never sent.
    pub fn send_event(&self, event: &Event) {
        if self.inner.local_viewers.load(Ordering::Relaxed) == 0
            || matches!(event, Event::Ready { .. } | Event::SessionRotated { .. })
        {
            return;
        }
        // Serializing an event can't fail: string keys only.
        let event = serde_json::to_value(event).unwrap_or_default();
        let bytes = Utf8Bytes::from(CoreMessage::Event { event }.encode());
        self.inner.registry.broadcast_local_viewers(&bytes);
    }

    /// A handle that doesn't keep the hub alive (for the reporter, which the hub holds).
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// Sends already-encoded bytes to every authenticated device.
    pub fn broadcast_encoded(&self, bytes: &Utf8Bytes) -> usize {
        self.inner.registry.broadcast(bytes)
    }

    /// Relays a message a device sent to every device, if they all have room for it (see
    /// [`registry::RELAY_HEADROOM`]); `None` means "not yet, try again".
    pub fn relay(&self, bytes: &Utf8Bytes, from: &str, give_up: bool) -> Option<usize> {
        self.inner.registry.relay(bytes, from, give_up)
    }

    /// The current session.
    pub fn session(&self) -> Arc<Session> {
        self.inner.session.current()
    }

    /// `http://<host>:<port>/download/app.apk?token=<token>` for a session.
    pub fn download_url(&self, session: &Session) -> String {
        format!(
            "{}/download/app.apk?token={}",
            self.inner.settings.advertised.http_base(),
            session.token
        )
    }

    /// The authenticated devices.
    pub fn clients(&self) -> Vec<ClientSnapshot> {
        self.inner.registry.snapshot()
    }

    /// Number of authenticated devices.
    pub fn client_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// The per-address back-off on wrong credentials, shared with `/download`.
    pub fn auth_backoff(&self) -> &backoff::AuthBackoff {
        &self.inner.auth_backoff
    }

    /// Follows whether any device is authenticated (e.g. to start the first build).
    pub fn subscribe_any_device(&self) -> watch::Receiver<bool> {
        self.inner.any_device.subscribe()
    }

    /// Closes one device; false if it isn't connected.
    pub fn close_client(&self, client_id: &str, code: u16, reason: &'static str) -> bool {
        let closed = self
            .inner
            .registry
            .close(client_id, CloseRequest::frame(code, reason));
        self.publish_presence();
        closed
    }

    /// Closes every authenticated device, e.g. with 4001 after a rotation.
    pub fn close_all(&self, code: u16, reason: &'static str) -> usize {
        let closed = self.inner.registry.close_all(&CloseRequest::frame(code, reason));
        self.publish_presence();
        closed
    }

    /// Stops accepting, tells every device `core:disconnect`, closes them with 1001 and waits
    /// (bounded) for the close frames to go out.
    pub async fn shutdown(&self, reason: &str) {
        let inner = &self.inner;
        inner.stopping.cancel();
        self.broadcast(&CoreMessage::Disconnect {
            reason: reason.to_owned(),
        });
        inner
            .registry
            .close_all(&CloseRequest::frame(close::GOING_AWAY, close::REASON_STOPPING));
        inner.connections.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, inner.connections.wait())
            .await
            .is_err()
        {
            tracing::debug!("some devices did not finish closing in time");
        }
    }

    fn publish_presence(&self) {
        // Read inside the watch's lock: two devices coming and going at once can't publish
        // their views out of order.
        self.inner.any_device.send_if_modified(|current| {
            let any = !self.inner.registry.is_empty();
            std::mem::replace(current, any) != any
        });
    }

    /// Counts a viewer on this computer in or out (see `Inner::local_viewers`).
    fn count_local_viewer(&self, info: &ClientInfo, joined: bool) {
        if info.is_local_viewer() {
            if joined {
                self.inner.local_viewers.fetch_add(1, Ordering::Relaxed);
            } else {
                self.inner.local_viewers.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn next_client_id(&self) -> String {
        format!(
            "client-{}",
            self.inner.next_client.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// A [`Hub`] handle that doesn't keep it alive.
#[derive(Clone)]
pub struct WeakHub(Weak<Inner>);

impl WeakHub {
    /// The hub, while it exists.
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}
