//! One device connection: upgrade, authenticate, then read and write until it closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::handshake::OriginCheck;
use super::registry::{ClientEntry, ClientInfo, CloseRequest, CloseSignal, CLIENT_QUEUE_CAPACITY};
use super::Hub;
use crate::protocol::{close, ClientMessage, CoreMessage, MAX_CLIENT_MESSAGE_BYTES};
use crate::report::Event;
use crate::session::{unix_ms, AuthError};

type Socket = WebSocketStream<TcpStream>;

/// How long a close frame may take to go out before the TCP connection is simply dropped.
/// Generous, so that a device that was too slow still learns why (1013) once it reads again.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the device's answer to our close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Queued messages written before one flush: fewer syscalls when a burst is waiting.
const MAX_WRITE_BATCH: usize = 32;

/// Small buffers: a thousand idle devices must not cost a thousand 128 KiB buffers.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_CLIENT_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE_BYTES))
}

/// Runs one accepted TCP connection to its end.
pub(super) async fn handle(hub: Hub, stream: TcpStream, addr: SocketAddr) {
    let settings = &hub.inner.settings;
    // One deadline covers the HTTP upgrade and the first message, so a slow-loris can't hold
    // a slot longer than --auth-timeout.
    let deadline = Instant::now() + settings.auth_timeout;
    let check = OriginCheck {
        advertised_host: &settings.advertised_host,
        allowed: &settings.allowed_origins,
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(socket_config()));
    let ws = match timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%addr, "WebSocket upgrade failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "WebSocket upgrade timed out");
            return;
        }
    };
    if let Some((ws, client)) = authenticate(&hub, ws, addr, deadline).await {
        run(&hub, ws, client).await;
    }
}

/// An authenticated device before registration.
struct Accepted {
    session_id: String,
    device_info: Value,
    addr: SocketAddr,
}

/// Reads the first message and checks credentials; on failure the socket is closed with the
/// documented code and `None` is returned.
async fn authenticate(
    hub: &Hub,
    mut ws: Socket,
    addr: SocketAddr,
    deadline: Instant,
) -> Option<(Socket, Accepted)> {
    let first = loop {
        match timeout_at(deadline, ws.next()).await {
            Err(_) => break None,
            Ok(None) => return None,
            Ok(Some(Ok(Message::Text(text)))) => break Some(text),
            Ok(Some(Ok(Message::Binary(_)))) => break None,
            Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(_))) => continue, // ping/pong: keep waiting for the first real message
            Ok(Some(Err(WsError::Capacity(_)))) => {
                reject(hub, ws, addr, close::MESSAGE_TOO_BIG, "message too big").await;
                return None;
            }
            Ok(Some(Err(e))) => {
                tracing::debug!(%addr, "connection failed before authentication: {e}");
                return None;
            }
        }
    };
    let connect = first.as_deref().map(ClientMessage::decode);
    let Some(Ok(ClientMessage::Connect {
        session_id,
        token,
        device_info,
    })) = connect
    else {
        reject(hub, ws, addr, close::AUTH_REQUIRED, close::REASON_AUTH_REQUIRED).await;
        return None;
    };
    match hub
        .inner
        .session
        .authenticate(session_id.as_deref(), token.as_deref())
    {
        Ok(session) => Some((
            ws,
            Accepted {
                session_id: session.id.clone(),
                device_info: device_info.unwrap_or(Value::Null),
                addr,
            },
        )),
        Err(AuthError::WrongSession) => {
            reject(hub, ws, addr, close::WRONG_SESSION, close::REASON_WRONG_SESSION).await;
            None
        }
        Err(AuthError::WrongToken) => {
            reject(hub, ws, addr, close::WRONG_TOKEN, close::REASON_WRONG_TOKEN).await;
            None
        }
    }
}

/// Closes an unauthenticated socket with `code`, reporting it (never with any token).
async fn reject(hub: &Hub, mut ws: Socket, addr: SocketAddr, code: u16, reason: &'static str) {
    hub.inner.reporter.emit(Event::ClientRejected {
        code,
        reason: reason.to_owned(),
        addr: addr.to_string(),
    });
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    if timeout(CLOSE_WRITE_TIMEOUT, ws.close(Some(frame))).await.is_ok() {
        // Let the device's close answer arrive so that it sees a clean close, not a reset.
        let _ = timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    }
}

/// Registers an authenticated device, serves it, and unregisters it.
async fn run(hub: &Hub, ws: Socket, accepted: Accepted) {
    let inner = &hub.inner;
    let client_id = hub.next_client_id();
    let info = Arc::new(ClientInfo::new(
        client_id.clone(),
        accepted.device_info,
        accepted.addr,
    ));
    let (queue, rx) = mpsc::channel(CLIENT_QUEUE_CAPACITY);
    let close_signal = CloseSignal::new();
    let entry = ClientEntry {
        info: info.clone(),
        queue,
        close: close_signal.clone(),
    };

    let registered = inner.registry.register(entry, |last_apk| {
        // Checked under the registry lock: a rotation or shutdown racing this registration
        // either sees this device in the registry or this check sees the new state.
        let session = inner.session.current();
        if inner.stopping.is_cancelled() || session.id != accepted.session_id {
            return None;
        }
        let mut greeting = vec![Utf8Bytes::from(
            CoreMessage::Connected {
                session_id: session.id.clone(),
                project_name: inner.settings.project_name.clone(),
                client_id: client_id.clone(),
            }
            .encode(),
        )];
        if let Some(apk_info) = last_apk {
            greeting.push(Utf8Bytes::from(
                CoreMessage::BuildComplete {
                    session_id: session.id.clone(),
                    apk_info: apk_info.clone(),
                    download_url: hub.download_url(&session),
                }
                .encode(),
            ));
        }
        Some(greeting)
    });
    if registered.is_none() {
        let (code, reason) = if inner.stopping.is_cancelled() {
            (close::GOING_AWAY, "server stopping")
        } else {
            (close::WRONG_SESSION, close::REASON_WRONG_SESSION)
        };
        reject(hub, ws, accepted.addr, code, reason).await;
        return;
    }
    hub.publish_count();
    inner.session.touch();
    inner.reporter.emit(Event::ClientConnected {
        client_id: client_id.clone(),
        device_info: info.device_info.clone(),
        addr: info.addr.to_string(),
    });

    let (sink, stream) = ws.split();
    tokio::join!(
        write_loop(hub, sink, rx, &close_signal, &info),
        read_loop(hub, stream, &close_signal, &info),
    );

    inner.registry.remove(&client_id);
    hub.publish_count();
    let request = close_signal.get().unwrap_or(CloseRequest::Abort);
    let reason = match &request {
        CloseRequest::Frame { reason, .. } => reason.to_string(),
        CloseRequest::PeerClosed => "closed by the device".to_owned(),
        CloseRequest::Abort => "connection lost".to_owned(),
    };
    inner.reporter.emit(Event::ClientDisconnected {
        client_id,
        code: request.code(),
        reason,
    });
}

/// Writes queued messages and pings until a close is requested, then sends the close frame.
async fn write_loop(
    hub: &Hub,
    mut sink: SplitSink<Socket, Message>,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    close_signal: &CloseSignal,
    info: &ClientInfo,
) {
    let settings = &hub.inner.settings;
    let mut closing = close_signal.subscribe();
    let mut stuck = close_signal.subscribe();
    let mut ping = tokio::time::interval_at(Instant::now() + settings.ping_interval, settings.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = wait_closing(&mut closing) => break,
            message = rx.recv() => {
                let Some(first) = message else {
                    // Dropped from the registry without a request: the server is stopping.
                    close_signal.request(CloseRequest::frame(close::GOING_AWAY, "server stopping"));
                    break;
                };
                let write = write_batch(&mut sink, first, &mut rx);
                tokio::select! {
                    result = write => if result.is_err() {
                        close_signal.request(CloseRequest::Abort);
                        break;
                    },
                    // A write stuck on a device that stopped reading must not outlive its close.
                    () = wait_closing(&mut stuck) => break,
                }
            }
            _ = ping.tick() => {
                let silent = Duration::from_millis(unix_ms().saturating_sub(info.last_activity()));
                if silent >= settings.client_timeout {
                    tracing::info!(client = %info.client_id, "no sign of life for {silent:?}; dropping the device");
                    close_signal.request(CloseRequest::frame(close::GOING_AWAY, "heartbeat timeout"));
                    break;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    close_signal.request(CloseRequest::Abort);
                    break;
                }
            }
        }
    }
    finish_close(&mut sink, &mut rx, close_signal.get()).await;
}

/// Feeds `first` and whatever else is already queued, then flushes once.
async fn write_batch(
    sink: &mut SplitSink<Socket, Message>,
    first: Utf8Bytes,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
) -> Result<(), WsError> {
    sink.feed(Message::Text(first)).await?;
    for _ in 1..MAX_WRITE_BATCH {
        match rx.try_recv() {
            Ok(next) => sink.feed(Message::Text(next)).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

/// Sends what a close request calls for: queued messages (if draining) then the close frame.
async fn finish_close(
    sink: &mut SplitSink<Socket, Message>,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
    request: Option<CloseRequest>,
) {
    let send = async {
        match request {
            Some(CloseRequest::Frame { code, reason, drain }) => {
                if drain {
                    while let Ok(message) = rx.try_recv() {
                        sink.feed(Message::Text(message)).await?;
                    }
                }
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.as_ref().into(),
                };
                sink.send(Message::Close(Some(frame))).await
            }
            // tungstenite queued the answer to the device's close frame; push it out.
            Some(CloseRequest::PeerClosed) => sink.flush().await,
            Some(CloseRequest::Abort) | None => Ok(()),
        }
    };
    let _ = timeout(CLOSE_WRITE_TIMEOUT, send).await;
}

/// Reads device messages until the connection ends; once a close is under way, waits briefly
/// for the device's close answer.
async fn read_loop(
    hub: &Hub,
    mut stream: SplitStream<Socket>,
    close_signal: &CloseSignal,
    info: &ClientInfo,
) {
    let mut closing = close_signal.subscribe();
    let mut grace: Option<Instant> = None;
    loop {
        let next = match grace {
            Some(deadline) => match timeout_at(deadline, stream.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => tokio::select! {
                next = stream.next() => next,
                _ = wait_closing(&mut closing) => {
                    grace = Some(Instant::now() + CLOSE_WRITE_TIMEOUT + CLOSE_GRACE);
                    continue;
                }
            },
        };
        let request = match next {
            None => Some(CloseRequest::Abort),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                Some(CloseRequest::frame(close::MESSAGE_TOO_BIG, "message too big"))
            }
            Some(Err(e)) => {
                tracing::debug!(client = %info.client_id, "connection error: {e}");
                Some(CloseRequest::Abort)
            }
            Some(Ok(message)) => {
                info.touch();
                match message {
                    Message::Text(text) if grace.is_none() => on_text(hub, info, &text),
                    Message::Binary(_) => Some(CloseRequest::frame(
                        close::UNSUPPORTED_DATA,
                        "binary frames are not supported",
                    )),
                    Message::Close(_) => Some(CloseRequest::PeerClosed),
                    _ => None,
                }
            }
        };
        if let Some(request) = request {
            let broken = request == CloseRequest::Abort;
            close_signal.request(request);
            if broken {
                break;
            }
            grace.get_or_insert(Instant::now() + CLOSE_WRITE_TIMEOUT + CLOSE_GRACE);
        }
    }
}

async fn wait_closing(closing: &mut watch::Receiver<Option<CloseRequest>>) {
    let _ = closing.wait_for(Option::is_some).await;
}

/// Handles one text message from an authenticated device; returns a close request if it ends
/// the connection.
fn on_text(hub: &Hub, info: &ClientInfo, text: &str) -> Option<CloseRequest> {
    let inner = &hub.inner;
    let message = match ClientMessage::decode(text) {
        Ok(message) => message,
        Err(e) => {
            tracing::debug!(client = %info.client_id, "ignoring a malformed message: {e}");
            return None;
        }
    };
    inner.session.touch();
    match message {
        ClientMessage::Heartbeat {} => None,
        ClientMessage::Status { status, message } => {
            let status = status.as_str().map_or_else(|| status.to_string(), str::to_owned);
            tracing::info!(
                "{} status: {status}{}",
                info.label(),
                message.map(|m| format!(" — {m}")).unwrap_or_default()
            );
            None
        }
        ClientMessage::Log { log } => {
            inner.reporter.device_log(info.label(), &log);
            hub.broadcast(&CoreMessage::Log {
                session_id: hub.session().id.clone(),
                log,
            });
            None
        }
        ClientMessage::Disconnect { reason } => {
            tracing::debug!(client = %info.client_id, "device disconnecting: {}", reason.as_deref().unwrap_or("no reason"));
            Some(CloseRequest::frame(close::NORMAL, "client disconnected"))
        }
        ClientMessage::Connect { .. } | ClientMessage::Unknown => {
            tracing::debug!(client = %info.client_id, "ignoring an unexpected message type");
            None
        }
    }
}
