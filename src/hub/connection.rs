//! One device connection: upgrade, authenticate, then read and write until it closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::admission::Ticket;
use super::auth::{self, FirstFrame, UrlToken, Verdict};
use super::device::{DeviceConnection, CLOSE_GRACE, CLOSE_WRITE_TIMEOUT};
use super::fanout::{Socket, Wire, WireIo};
use super::handshake::{self, UpgradeCheck};
use super::registry::{ClientEntry, ClientInfo, CloseRequest, CloseSignal, CLIENT_QUEUE_CAPACITY};
use super::Hub;
use crate::events::Event;
use crate::protocol::{close, CoreMessage, MAX_CLIENT_MESSAGE_BYTES};

/// The `code` of a `client-rejected` event for a browser refused for its `Origin`: the HTTP
/// status it got, as no WebSocket (and no close code) ever existed.
const HTTP_FORBIDDEN: u16 = 403;

/// Small buffers: a thousand idle devices must not cost a thousand 128 KiB buffers.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_CLIENT_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE_BYTES))
}

/// How long an evicted socket's close frame may take: its place is already someone else's.
const EVICTED_CLOSE: Duration = Duration::from_millis(200);

/// Runs one accepted TCP connection to its end; `ticket` is its place among `--max-clients`.
pub(super) async fn handle(hub: Hub, stream: TcpStream, addr: SocketAddr, mut ticket: Ticket) {
    let settings = &hub.inner.settings;
    // One deadline covers the HTTP upgrade and the first message, so a slow-loris can't hold
    // a slot longer than --auth-timeout.
    let deadline = Instant::now() + settings.auth_timeout;
    let mut url_token = UrlToken::Absent;
    let mut refused_origin = None;
    let check = UpgradeCheck {
        advertised_host: &settings.advertised.host,
        allowed: &settings.allowed_origins,
        url_token: &mut url_token,
        refused_origin: &mut refused_origin,
    };
    let wire = Wire::new(stream);
    let io = WireIo(wire.clone());
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(io, check, Some(socket_config()));
    let upgraded = tokio::select! {
        biased;
        // Not a WebSocket yet, so there is no close code to send: just drop the connection.
        () = hub.inner.stopping.cancelled() => return,
        () = ticket.evicted() => return,
        upgraded = timeout_at(deadline, upgrade) => upgraded,
    };
    let ws = match upgraded {
        Ok(Ok(ws)) => ws,
        Ok(Err(_)) if refused_origin.is_some() => {
            // Answered with 403 by the check; a browser page learns nothing more, so the
            // developer is told here, with the flag that would let it in.
            hub.inner.reporter.emit(Event::ClientRejected {
                code: HTTP_FORBIDDEN,
                reason: "origin not allowed".to_owned(),
                addr: addr.to_string(),
                origin: refused_origin,
            });
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, "WebSocket upgrade failed: {e}");
            if handshake::is_plain_http(&e) {
                handshake::refuse_plain_http(wire.stream(), &settings.advertised.http_base()).await;
            }
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "WebSocket upgrade timed out");
            return;
        }
    };
    if let Some((ws, client)) = authenticate(&hub, ws, addr, &url_token, deadline, &mut ticket).await {
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
/// documented code and `None` is returned. The decision itself is [`auth::verdict`].
async fn authenticate(
    hub: &Hub,
    mut ws: Socket,
    addr: SocketAddr,
    url_token: &UrlToken,
    deadline: Instant,
    ticket: &mut Ticket,
) -> Option<(Socket, Accepted)> {
    let verdict = loop {
        let next = tokio::select! {
            biased;
            () = hub.inner.stopping.cancelled() => None,
            () = ticket.evicted() => {
                close_evicted(ws).await;
                return None;
            }
            next = timeout_at(deadline, ws.next()) => Some(next),
        };
        let Some(next) = next else {
            // A device still pairing when the server stops learns why, like the others (1001).
            close_unauthenticated(ws, close::GOING_AWAY, close::REASON_STOPPING).await;
            return None;
        };
        let first = match &next {
            Err(_) => FirstFrame::TimedOut,
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => FirstFrame::Closed,
            Ok(Some(Ok(Message::Text(text)))) => FirstFrame::Text(text.as_str()),
            Ok(Some(Ok(Message::Binary(_)))) => FirstFrame::Binary,
            Ok(Some(Ok(_))) => FirstFrame::Control,
            Ok(Some(Err(WsError::Capacity(_)))) => FirstFrame::TooBig,
            Ok(Some(Err(e))) => {
                if let Some((code, reason)) = super::violation::close_code(e) {
                    reject(hub, ws, addr, code, reason).await;
                    return None;
                }
                tracing::debug!(%addr, "connection failed before authentication: {e}");
                FirstFrame::Failed
            }
        };
        match auth::verdict(first, url_token, &hub.inner.session) {
            Verdict::Wait => continue, // ping/pong: keep waiting for the first real message
            verdict => break verdict,
        }
    };
    match verdict {
        Verdict::Accept {
            session_id,
            device_info,
        } => {
            if !ticket.authenticated() {
                // A newer connection took this one's place just before its credentials came.
                close_evicted(ws).await;
                return None;
            }
            hub.inner.auth_backoff.succeeded(addr.ip());
            Some((
                ws,
                Accepted {
                    session_id,
                    device_info,
                    addr,
                },
            ))
        }
        Verdict::Reject(rejection) => {
            if rejection.is_wrong_credentials() {
                // Held back before the close frame so a guesser waits too; shutdown cuts it short.
                let delay = hub.inner.auth_backoff.failed(addr.ip());
                ticket.hold_until(std::time::Instant::now() + delay);
                let cut_short = async {
                    tokio::select! {
                        () = hub.inner.stopping.cancelled() => {},
                        () = ticket.evicted() => {},
                    }
                };
                let _ = timeout(delay, cut_short).await;
            }
            reject(hub, ws, addr, rejection.code, rejection.reason).await;
            None
        }
        Verdict::Wait | Verdict::Drop => None,
    }
}

/// Closes an unauthenticated socket with `code`, reporting it (never with any token).
async fn reject(hub: &Hub, ws: Socket, addr: SocketAddr, code: u16, reason: &'static str) {
    hub.inner.reporter.emit(Event::ClientRejected {
        code,
        reason: reason.to_owned(),
        addr: addr.to_string(),
        origin: None,
    });
    close_unauthenticated(ws, code, reason).await;
}

/// Closes a socket whose place a newer connection took: 1013 if the frame goes out at once, no
/// waiting for an answer (the place is someone else's already).
async fn close_evicted(mut ws: Socket) {
    let frame = CloseFrame {
        code: CloseCode::from(close::TRY_AGAIN_LATER),
        reason: close::REASON_SERVER_FULL.into(),
    };
    let _ = timeout(EVICTED_CLOSE, ws.close(Some(frame))).await;
}

/// Sends a close frame and waits (bounded) for the answer.
async fn close_unauthenticated(mut ws: Socket, code: u16, reason: &'static str) {
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
        super::budget::device_info(accepted.device_info),
        accepted.addr,
    ));
    let (queue, rx) = mpsc::channel(CLIENT_QUEUE_CAPACITY);
    let close_signal = CloseSignal::new();
    let entry = ClientEntry {
        info: info.clone(),
        wire: ws.get_ref().wire().clone(),
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
                project_name: inner.settings.advertised.project_name.clone(),
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
        if inner.stopping.is_cancelled() {
            // Not a rejection: the server is stopping, as every other device is told.
            close_unauthenticated(ws, close::GOING_AWAY, close::REASON_STOPPING).await;
        } else {
            reject(
                hub,
                ws,
                accepted.addr,
                close::WRONG_SESSION,
                close::REASON_WRONG_SESSION,
            )
            .await;
        }
        return;
    }
    // `core:connected` first: the device is waiting for it, the bookkeeping below can wait.
    let mut device = DeviceConnection::new(hub, ws, rx, close_signal.clone(), info.clone());
    device.greet();
    hub.count_local_viewer(&info, true);
    if info.is_device() {
        // A viewer neither starts the initial build nor keeps the session from expiring.
        hub.publish_presence();
        inner.session.touch();
    }
    inner.reporter.emit(Event::ClientConnected {
        client_id: client_id.clone(),
        device_info: info.device_info.clone(),
        addr: info.addr.to_string(),
        role: info.role,
    });

    // Takes the device off the registry itself, before its close handshake.
    device.run().await;

    let request = close_signal.get().unwrap_or(CloseRequest::Abort);
    let reason = match &request {
        CloseRequest::Frame { reason, .. } => reason.to_string(),
        CloseRequest::PeerClosed => "closed by the device".to_owned(),
        CloseRequest::Abort => "connection lost".to_owned(),
    };
    hub.count_local_viewer(&info, false);
    inner.reporter.emit(Event::ClientDisconnected {
        client_id,
        code: request.code(),
        reason,
        role: info.role,
    });
}
