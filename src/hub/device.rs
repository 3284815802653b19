//! Serving one authenticated device: a single task that reads its frames, writes what the
//! fan-out queued for it, pings it, and closes it the way the close request says. How its
//! writes and the broadcasts' share the socket is the fan-out's part ([`super::fanout`]).

use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{FusedFuture, FutureExt};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant, Interval};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::fanout::{Outbox, RawFrame, Socket};
use super::heartbeat::Heartbeat;
use super::registry::{ClientInfo, CloseRequest, CloseSignal, RELAY_STALL};
use super::violation;
use super::Hub;
use crate::protocol::{close, ClientMessage};
use crate::session::unix_ms;

/// How long a close (and the rest of a half-written frame before it) may take to go out
/// before the TCP connection is simply dropped. Generous, so that a device that was too slow
/// still learns why (1013) once it reads again.
pub const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the device's answer to our close frame.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How soon a waiting relay looks again, at first; the wait doubles up to [`RELAY_RETRY_MAX`].
/// Waiting only happens while some device is 192 messages behind, and each look takes the
/// registry lock for one pass over the devices.
const RELAY_RETRY: Duration = Duration::from_millis(1);
const RELAY_RETRY_MAX: Duration = Duration::from_millis(16);

/// What woke the loop up.
enum Step {
    Close,
    Frame(Option<Result<Message, WsError>>),
    /// A frame was taken off the queue (false: the queue is closed).
    Queued(bool),
    Ping,
    Wrote(std::io::Result<()>),
    RetryRelay,
}

/// What a frame from the device asks for.
enum Reply {
    Nothing,
    Close(CloseRequest),
    /// Broadcast these bytes to every device (a `client:log` as `core:log`).
    Relay(Utf8Bytes),
}

/// A relayed message waiting for room at the other devices.
struct PendingRelay {
    bytes: Utf8Bytes,
    since: Instant,
    /// The next look, and the wait before the one after.
    retry_at: Instant,
    backoff: Duration,
}

impl PendingRelay {
    fn new(bytes: Utf8Bytes) -> Self {
        let now = Instant::now();
        Self {
            bytes,
            since: now,
            retry_at: now + RELAY_RETRY,
            backoff: RELAY_RETRY,
        }
    }
}

/// One registered device, served by its own task until the connection ends.
pub struct DeviceConnection<'h> {
    hub: &'h Hub,
    info: Arc<ClientInfo>,
    close: CloseSignal,
    ws: Socket,
    outbox: Outbox,
    heartbeat: Heartbeat,
    /// A device's log waiting for room at the other devices; meanwhile its frames are not read.
    relay: Option<PendingRelay>,
}

impl<'h> DeviceConnection<'h> {
    /// A device just registered with `queue`'s sender and `close`.
    pub fn new(
        hub: &'h Hub,
        ws: Socket,
        queue: mpsc::Receiver<RawFrame>,
        close: CloseSignal,
        info: Arc<ClientInfo>,
    ) -> Self {
        let outbox = Outbox::new(ws.get_ref().wire().clone(), queue);
        Self {
            heartbeat: Heartbeat::new(hub.inner.settings.ping_interval, unix_ms()),
            hub,
            info,
            close,
            ws,
            outbox,
            relay: None,
        }
    }

    /// Writes what is queued (the greeting) if the socket takes it at once; [`Self::run`]
    /// writes the rest.
    pub fn greet(&mut self) {
        if let Err(e) = self.outbox.greet(&mut self.ws) {
            self.abort(&e);
        }
    }

    /// Serves the device until its connection ends: off the registry first, then the close.
    pub async fn run(&mut self) {
        let interval = self.hub.inner.settings.ping_interval;
        // One future for the whole connection: registering a fresh waiter on every turn of the
        // loop would take the signal's lock twice per message, a thousand times per broadcast.
        let mut closing = pin!(wait_closing(self.close.subscribe()).fuse());
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !closing.is_terminated() {
            let step = self.next_step(closing.as_mut(), &mut ping).await;
            self.outbox.take_socket();
            match step {
                Step::Close => break,
                Step::Frame(frame) => self.handle_frame(frame),
                Step::RetryRelay => self.relay = self.relay.take().and_then(|r| self.try_relay(r)),
                Step::Queued(false) => {
                    // Dropped from the registry without a request: the server is stopping.
                    self.close
                        .request(CloseRequest::frame(close::GOING_AWAY, close::REASON_STOPPING));
                }
                Step::Queued(true) => self.start_writing(closing.as_mut()).await,
                Step::Wrote(Ok(())) => {}
                Step::Wrote(Err(e)) => self.abort(&e),
                Step::Ping => self.ping().await,
            }
        }
        // Off the list before the close handshake: a closing device gets no more broadcasts and
        // no longer counts as connected (session expiry waits for none to be connected).
        self.hub.inner.registry.remove(&self.info.client_id);
        self.hub.publish_presence();
        self.finish().await;
    }

    /// Waits for the next thing to do. Writes come first: the device's own queue drains before
    /// more of its frames are read, and reads wait while a frame is being written (the kernel
    /// buffers what the device sends meanwhile), so a device that floods us without reading is
    /// slowed by its own socket. A write that makes no progress for the client timeout means a
    /// device that stopped reading. While a relayed log waits for room, reads wait too, but the
    /// device keeps taking its own messages (two senders never wait on each other).
    async fn next_step(
        &mut self,
        mut closing: Pin<&mut impl FusedFuture<Output = ()>>,
        ping: &mut Interval,
    ) -> Step {
        if self.outbox.is_writing() {
            let patience = self.hub.inner.settings.client_timeout;
            return tokio::select! {
                biased;
                () = &mut closing => Step::Close,
                wrote = timeout(patience, self.outbox.write_some()) => {
                    Step::Wrote(wrote.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())))
                }
            };
        }
        if let Err(e) = self.outbox.park(&mut self.ws) {
            self.abort(&e); // the select below ends the loop
        }
        tokio::select! {
            biased;
            () = &mut closing => Step::Close,
            queued = self.outbox.recv() => Step::Queued(queued),
            // A fixed deadline: messages written meanwhile don't push the retry back.
            () = sleep_until_retry(self.relay.as_ref()), if self.relay.is_some() => Step::RetryRelay,
            frame = self.ws.next(), if self.relay.is_none() => Step::Frame(frame),
            _ = ping.tick() => Step::Ping,
        }
    }

    fn handle_frame(&mut self, frame: Option<Result<Message, WsError>>) {
        self.outbox.frame_read();
        match on_frame(self.hub, &self.info, frame) {
            Reply::Nothing => {}
            Reply::Close(request) => {
                self.close.request(request);
            }
            Reply::Relay(bytes) => self.relay = self.try_relay(PendingRelay::new(bytes)),
        }
    }

    /// A frame was taken off the queue: write it, and what follows it, as far as the socket
    /// takes them now. tungstenite may hold a pong or close answer, which must reach the socket
    /// first; a device that takes nothing for the client timeout is gone (as for raw writes).
    /// A close request cuts that flush short, and `finish` takes over.
    async fn start_writing(&mut self, closing: Pin<&mut impl FusedFuture<Output = ()>>) {
        if self.outbox.must_flush_first() {
            let patience = self.hub.inner.settings.client_timeout;
            let flushed = tokio::select! {
                biased;
                () = closing => return,
                flushed = timeout(patience, self.outbox.flush_tungstenite(&mut self.ws)) => flushed,
            };
            if !matches!(flushed, Ok(Ok(()))) {
                self.close.request(CloseRequest::Abort);
                return;
            }
        }
        if let Err(e) = self.outbox.write_ready() {
            self.abort(&e);
        }
    }

    /// Relays if every other device has room; gives the message back if it must wait longer.
    fn try_relay(&self, mut pending: PendingRelay) -> Option<PendingRelay> {
        let give_up = pending.since.elapsed() >= RELAY_STALL;
        match self.hub.relay(&pending.bytes, &self.info.client_id, give_up) {
            Some(_) => None,
            None => {
                pending.backoff = (pending.backoff * 2).min(RELAY_RETRY_MAX);
                pending.retry_at = Instant::now() + pending.backoff;
                Some(pending)
            }
        }
    }

    async fn ping(&mut self) {
        let now = unix_ms();
        let info = &self.info;
        if self.heartbeat.paused(now) {
            tracing::debug!(client = %info.client_id, "resumed after a pause; pinging before judging silence");
        }
        let silent = self.heartbeat.silence(now, info.last_activity());
        if silent >= self.hub.inner.settings.client_timeout {
            tracing::info!(client = %info.client_id, "no sign of life for {silent:?}; dropping the device");
            self.close.request(CloseRequest::frame(
                close::GOING_AWAY,
                close::REASON_HEARTBEAT_TIMEOUT,
            ));
        } else if self.outbox.is_writing() {
            // A frame a broadcast left half-written goes first; the next tick pings.
        } else if !matches!(
            timeout(
                CLOSE_WRITE_TIMEOUT,
                self.ws.send(Message::Ping(Default::default()))
            )
            .await,
            Ok(Ok(()))
        ) {
            // Timed out or failed: the ping may be half-written, so nothing else may follow it
            // on this connection.
            self.close.request(CloseRequest::Abort);
        }
    }

    /// A write failed: the connection is broken.
    fn abort(&self, error: &dyn std::fmt::Display) {
        tracing::debug!(client = %self.info.client_id, "write failed: {error}");
        self.close.request(CloseRequest::Abort);
    }

    /// Ends the connection as requested: the fan-out writes out what must precede the close
    /// frame, then the close frame goes, then the device's answer is awaited (all bounded).
    async fn finish(&mut self) {
        // No request: the server is going away under us. Abort: the connection is already broken.
        let Some(request) = self.close.get().filter(|r| *r != CloseRequest::Abort) else {
            return;
        };
        let send = async {
            let drain = matches!(request, CloseRequest::Frame { drain: true, .. });
            self.outbox.write_out(&mut self.ws, drain).await?;
            let CloseRequest::Frame { code, reason, .. } = &request else {
                return Ok(()); // PeerClosed: the answer was just flushed
            };
            let frame = CloseFrame {
                code: CloseCode::from(*code),
                reason: reason.as_ref().into(),
            };
            self.ws.close(Some(frame)).await
        };
        let sent = timeout(CLOSE_WRITE_TIMEOUT, send).await;
        if matches!(request, CloseRequest::Frame { .. }) && matches!(sent, Ok(Ok(()))) {
            // Let the device's close answer arrive so that it sees a clean close, not a reset.
            let _ = timeout(CLOSE_GRACE, async {
                while let Some(Ok(_)) = self.ws.next().await {}
            })
            .await;
        }
    }
}

async fn sleep_until_retry(relay: Option<&PendingRelay>) {
    match relay {
        Some(pending) => tokio::time::sleep_until(pending.retry_at).await,
        None => std::future::pending().await,
    }
}

async fn wait_closing(mut closing: watch::Receiver<Option<CloseRequest>>) {
    let _ = closing.wait_for(Option::is_some).await;
}

/// Handles one incoming frame.
fn on_frame(hub: &Hub, info: &ClientInfo, frame: Option<Result<Message, WsError>>) -> Reply {
    match frame {
        None => Reply::Close(CloseRequest::Abort),
        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
            Reply::Close(CloseRequest::frame(close::MESSAGE_TOO_BIG, close::REASON_TOO_BIG))
        }
        Some(Err(e)) => Reply::Close(violation::close_request(&e).unwrap_or_else(|| {
            tracing::debug!(client = %info.client_id, "connection error: {e}");
            CloseRequest::Abort
        })),
        Some(Ok(message)) => {
            info.touch();
            match message {
                Message::Text(text) => on_text(hub, info, &text),
                Message::Binary(_) => {
                    Reply::Close(CloseRequest::frame(close::UNSUPPORTED_DATA, close::REASON_BINARY))
                }
                Message::Close(_) => Reply::Close(CloseRequest::PeerClosed),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Reply::Nothing,
            }
        }
    }
}

/// Handles one text message from an authenticated client.
fn on_text(hub: &Hub, info: &ClientInfo, text: &str) -> Reply {
    let inner = &hub.inner;
    let message = match ClientMessage::decode(text) {
        Ok(message) => message,
        Err(e) => {
            tracing::debug!(client = %info.client_id, "ignoring a malformed message: {e}");
            return Reply::Nothing;
        }
    };
    if !info.is_device() {
        return on_viewer_text(info, message);
    }
    inner.session.touch();
    match message {
        ClientMessage::Heartbeat {} => Reply::Nothing,
        ClientMessage::Status { status, message } => {
            let status = status.as_str().map_or_else(|| status.to_string(), str::to_owned);
            let detail = message.map(|m| format!(" — {m}")).unwrap_or_default();
            let line = format!("{} status: {status}{detail}", info.label());
            tracing::info!("{}", crate::sanitize::shown(&line, crate::sanitize::LINE_MAX));
            Reply::Nothing
        }
        ClientMessage::Log { log } => {
            // Completed to JetStart's `LogEntry`: browser clients read every field of it.
            let log = super::log_entry::complete(log, info.label());
            inner.reporter.device_log(info.label(), &log);
            let relayed = super::budget::relayed_log(hub.session().id.clone(), log);
            Reply::Relay(Utf8Bytes::from(relayed))
        }
        ClientMessage::Disconnect { reason } => {
            let reason = crate::sanitize::shown(
                reason.as_deref().unwrap_or("no reason given"),
                crate::sanitize::FIELD_MAX,
            );
            tracing::debug!(client = %info.client_id, "device disconnecting: {reason}");
            Reply::Close(CloseRequest::frame(
                close::NORMAL,
                close::REASON_CLIENT_DISCONNECTED,
            ))
        }
        ClientMessage::Connect { .. } | ClientMessage::Unknown => {
            tracing::debug!(client = %info.client_id, "ignoring an unexpected message type");
            Reply::Nothing
        }
    }
}

/// A viewer only follows: it has no logs or status of its own to report, and its messages are
/// no sign of a device's activity (the session may expire under it).
fn on_viewer_text(info: &ClientInfo, message: ClientMessage) -> Reply {
    match message {
        ClientMessage::Disconnect { .. } => Reply::Close(CloseRequest::frame(
            close::NORMAL,
            close::REASON_CLIENT_DISCONNECTED,
        )),
        ClientMessage::Heartbeat {} => Reply::Nothing,
        _ => {
            tracing::debug!(client = %info.client_id, "ignoring a viewer's message other than heartbeat or disconnect");
            Reply::Nothing
        }
    }
}
