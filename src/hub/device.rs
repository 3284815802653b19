//! Serving one authenticated device: a single task that reads its frames, writes queued
//! broadcasts zero-copy, pings it, and closes it the way the close request says. While it
//! waits with nothing to write, broadcasts write small messages to its socket themselves
//! (see [`super::wire`]).

use std::future::Future;
use std::pin::{pin, Pin};
use std::time::Duration;

use futures_util::future::{FusedFuture, FutureExt};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::frame::RawFrame;
use super::heartbeat::Heartbeat;
use super::registry::{ClientInfo, CloseRequest, CloseSignal, RELAY_STALL};
use super::violation;
use super::wire::Socket;
use super::Hub;
use crate::protocol::{close, ClientMessage, CoreMessage};
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
/// Frames written in one go before the loop looks at the device's side again.
const WRITE_BURST: usize = 64;

/// What woke the loop up.
enum Step {
    Close,
    Frame(Option<Result<Message, WsError>>),
    Queued(Option<RawFrame>),
    Ping,
    Wrote(Result<bool, std::io::Error>),
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

/// Writes what is queued for a device that just registered (its greeting) if the socket takes
/// it at once; returns a frame left half-written. Whatever it can't write now, [`serve`] does.
pub fn greet(
    ws: &mut Socket,
    rx: &mut mpsc::Receiver<RawFrame>,
    close_signal: &CloseSignal,
    info: &ClientInfo,
) -> Option<RawFrame> {
    // Raw frames may only follow once tungstenite has nothing of its own half-sent (a pong).
    if !matches!(ws.flush().now_or_never(), Some(Ok(()))) {
        return None;
    }
    let first = rx.try_recv().ok()?;
    write_ready(ws, rx, first, close_signal, info)
}

/// Serves a registered device until its connection ends; `in_flight` is a frame [`greet`] left
/// half-written.
pub async fn serve(
    hub: &Hub,
    ws: &mut Socket,
    rx: &mut mpsc::Receiver<RawFrame>,
    mut in_flight: Option<RawFrame>,
    close_signal: &CloseSignal,
    info: &ClientInfo,
) {
    let settings = &hub.inner.settings;
    // One future for the whole connection: registering a fresh waiter on every turn of the loop
    // would take the signal's lock twice per message, a thousand times per broadcast.
    let mut closing = pin!(wait_closing(close_signal.subscribe()).fuse());
    let mut ping = tokio::time::interval_at(Instant::now() + settings.ping_interval, settings.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut relay: Option<PendingRelay> = None;
    let mut heartbeat = Heartbeat::new(settings.ping_interval, unix_ms());
    // False while tungstenite may hold bytes of its own (a pong, the answer to a close): every
    // frame read may queue one, every completed flush sends them. Raw frames must wait for
    // those, but the flush is only needed then: a broadcast to a thousand devices skips it.
    let mut tungstenite_clean = false;
    let wire = ws.get_ref().wire().clone();

    while !closing.is_terminated() {
        // Writes come first: the device's own queue drains before more of its frames are read,
        // and reads wait while a frame is being written (the kernel buffers what the device
        // sends meanwhile). So a device that floods us without reading is slowed by its own
        // socket. A write that makes no progress for the client timeout means a device that
        // stopped reading. While a relayed log waits for room, reads wait too, but the device
        // keeps taking its own messages (two senders never wait on each other).
        let step = match in_flight.as_mut() {
            Some(frame) => tokio::select! {
                biased;
                () = &mut closing => Step::Close,
                wrote = timeout(settings.client_timeout, frame.write_some(wire.stream())) => {
                    Step::Wrote(wrote.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())))
                }
            },
            None => {
                // Parking with nothing to write. Once tungstenite has sent what it holds (a pong
                // to the frame just read), broadcasts may write to the socket directly.
                if !tungstenite_clean {
                    match ws.flush().now_or_never() {
                        Some(Ok(())) => tungstenite_clean = true,
                        Some(Err(_)) => {
                            close_signal.request(CloseRequest::Abort); // the select ends the loop
                        }
                        None => {} // the socket is full: broadcasts keep queuing
                    }
                }
                if tungstenite_clean {
                    wire.open(|| rx.is_empty());
                }
                tokio::select! {
                    biased;
                    () = &mut closing => Step::Close,
                    queued = rx.recv() => Step::Queued(queued),
                    // A fixed deadline: messages written meanwhile don't push the retry back.
                    () = sleep_until_retry(relay.as_ref()), if relay.is_some() => Step::RetryRelay,
                    frame = ws.next(), if relay.is_none() => Step::Frame(frame),
                    _ = ping.tick() => Step::Ping,
                }
            }
        };
        // Awake: the socket is this task's again.
        let Some(step) = half_written_first(wire.take(), step, &mut in_flight, rx) else {
            continue;
        };
        match step {
            Step::Close => break,
            Step::Frame(frame) => {
                tungstenite_clean = false;
                match on_frame(hub, info, frame) {
                    Reply::Nothing => {}
                    Reply::Close(request) => {
                        close_signal.request(request);
                    }
                    Reply::Relay(bytes) => {
                        relay = try_relay(hub, info, PendingRelay::new(bytes));
                    }
                }
            }
            Step::RetryRelay => {
                relay = relay.and_then(|pending| try_relay(hub, info, pending));
            }
            Step::Queued(None) => {
                // Dropped from the registry without a request: the server is stopping.
                close_signal.request(CloseRequest::frame(close::GOING_AWAY, close::REASON_STOPPING));
            }
            Step::Queued(Some(frame)) => {
                // Only a half-written frame is in flight at a wake-up, and it is first in the queue.
                debug_assert!(
                    in_flight.is_none(),
                    "a queued frame would overtake the one in flight"
                );
                // tungstenite may hold a pong or close answer; it must reach the wire first. A
                // device that takes nothing for the client timeout is gone (as for raw writes).
                if !tungstenite_clean {
                    let flushed =
                        timeout(settings.client_timeout, flush_tungstenite(ws, closing.as_mut())).await;
                    if !matches!(flushed, Ok(Ok(()))) {
                        close_signal.request(CloseRequest::Abort);
                        continue;
                    }
                    // A close request cuts the flush short; then `finish` flushes.
                    tungstenite_clean = !closing.is_terminated();
                }
                in_flight = if closing.is_terminated() {
                    Some(frame) // `finish` decides whether it still goes out
                } else {
                    write_ready(ws, rx, frame, close_signal, info)
                };
            }
            Step::Wrote(Ok(done)) => {
                info.wrote(); // `write_some` only returns Ok after moving some bytes
                if done {
                    in_flight = match rx.try_recv() {
                        Ok(next) => write_ready(ws, rx, next, close_signal, info),
                        Err(_) => None,
                    };
                }
            }
            Step::Wrote(Err(e)) => {
                tracing::debug!(client = %info.client_id, "write failed: {e}");
                close_signal.request(CloseRequest::Abort);
            }
            Step::Ping => {
                let now = unix_ms();
                if heartbeat.paused(now) {
                    tracing::debug!(client = %info.client_id, "resumed after a pause; pinging before judging silence");
                }
                let silent = heartbeat.silence(now, info.last_activity());
                if silent >= settings.client_timeout {
                    tracing::info!(client = %info.client_id, "no sign of life for {silent:?}; dropping the device");
                    close_signal.request(CloseRequest::frame(
                        close::GOING_AWAY,
                        close::REASON_HEARTBEAT_TIMEOUT,
                    ));
                } else if in_flight.is_some() {
                    // A frame a broadcast left half-written goes first; the next tick pings.
                } else if !matches!(
                    timeout(CLOSE_WRITE_TIMEOUT, ws.send(Message::Ping(Default::default()))).await,
                    Ok(Ok(()))
                ) {
                    // Timed out or failed: the ping may be half-written, so nothing else may
                    // follow it on this connection.
                    close_signal.request(CloseRequest::Abort);
                }
            }
        }
    }
    // Off the list before the close handshake: a closing device gets no more broadcasts and
    // no longer counts as connected (session expiry waits for none to be connected).
    hub.inner.registry.remove(&info.client_id);
    hub.publish_presence();
    finish(ws, rx, in_flight, close_signal.get()).await;
}

/// Right after a wake-up, with `half_written` from [`super::wire::Wire::take`]: a frame a
/// broadcast left half-written is first in the queue, and becomes the frame in flight, so that
/// nothing (not even the pong to a ping just read) reaches the socket before its rest. Returns
/// the step still to handle, if any.
fn half_written_first(
    half_written: bool,
    step: Step,
    in_flight: &mut Option<RawFrame>,
    rx: &mut mpsc::Receiver<RawFrame>,
) -> Option<Step> {
    match step {
        Step::Queued(Some(frame)) if frame.is_partial() => {
            *in_flight = Some(frame);
            None
        }
        step => {
            if half_written && in_flight.is_none() {
                *in_flight = rx.try_recv().ok();
            }
            Some(step)
        }
    }
}

/// Relays if every other device has room; gives the message back if it must wait longer.
fn try_relay(hub: &Hub, info: &ClientInfo, mut pending: PendingRelay) -> Option<PendingRelay> {
    let give_up = pending.since.elapsed() >= RELAY_STALL;
    match hub.relay(&pending.bytes, &info.client_id, give_up) {
        Some(_) => None,
        None => {
            pending.backoff = (pending.backoff * 2).min(RELAY_RETRY_MAX);
            pending.retry_at = Instant::now() + pending.backoff;
            Some(pending)
        }
    }
}

/// Writes `frame`, then whatever else is queued, as far as the socket takes it without waiting:
/// most broadcasts fit in the socket buffer whole, and then they need no timer and no further
/// trip through the select. Returns the frame still to write, if any; on a write error the
/// connection is asked to abort.
fn write_ready(
    ws: &Socket,
    rx: &mut mpsc::Receiver<RawFrame>,
    mut frame: RawFrame,
    close_signal: &CloseSignal,
    info: &ClientInfo,
) -> Option<RawFrame> {
    for _ in 0..WRITE_BURST {
        let before = frame.written();
        let wrote = frame.try_write(ws.get_ref().stream());
        if frame.written() > before {
            info.wrote();
        }
        match wrote {
            Ok(true) => match rx.try_recv() {
                Ok(next) => frame = next,
                Err(_) => return None,
            },
            Ok(false) => return Some(frame),
            Err(e) => {
                tracing::debug!(client = %info.client_id, "write failed: {e}");
                close_signal.request(CloseRequest::Abort);
                return None;
            }
        }
    }
    // Burst spent: the rest goes through the select, where a close request can cut in. (Reads
    // and pings wait until the queue is empty: writes come first.)
    Some(frame)
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

async fn flush_tungstenite(ws: &mut Socket, closing: Pin<&mut impl Future<Output = ()>>) -> Result<(), ()> {
    tokio::select! {
        biased;
        () = closing => Ok(()),
        flushed = ws.flush() => flushed.map_err(|_| ()),
    }
}

/// Ends the connection as requested: finish a half-written frame (a cut frame would corrupt
/// the stream), send what is queued if draining, send the close frame, wait for the answer.
async fn finish(
    ws: &mut Socket,
    rx: &mut mpsc::Receiver<RawFrame>,
    in_flight: Option<RawFrame>,
    request: Option<CloseRequest>,
) {
    // No request: the server is going away under us. Abort: the connection is already broken.
    let Some(request) = request.filter(|r| *r != CloseRequest::Abort) else {
        return;
    };
    let send = async {
        let mut unstarted = None;
        if let Some(mut frame) = in_flight {
            if frame.is_partial() {
                // Started on a clean stream (see `Step::Queued`): complete it before anything else.
                frame.finish(ws.get_ref().stream()).await.map_err(WsError::Io)?;
            } else {
                unstarted = Some(frame);
            }
        }
        // tungstenite may hold a half-sent pong, or the answer to the device's close frame: it
        // goes out before any more raw frames.
        ws.flush().await?;
        let CloseRequest::Frame { code, reason, drain } = &request else {
            return Ok(()); // PeerClosed: the answer was just flushed
        };
        if *drain {
            let queued = std::iter::from_fn(|| rx.try_recv().ok());
            for mut frame in unstarted.into_iter().chain(queued) {
                frame.finish(ws.get_ref().stream()).await.map_err(WsError::Io)?;
            }
        }
        let frame = CloseFrame {
            code: CloseCode::from(*code),
            reason: reason.as_ref().into(),
        };
        ws.close(Some(frame)).await
    };
    let sent = timeout(CLOSE_WRITE_TIMEOUT, send).await;
    if matches!(request, CloseRequest::Frame { .. }) && matches!(sent, Ok(Ok(()))) {
        // Let the device's close answer arrive so that it sees a clean close, not a reset.
        let _ = timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    }
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
            let message = CoreMessage::Log {
                session_id: hub.session().id.clone(),
                log,
            };
            Reply::Relay(Utf8Bytes::from(message.encode()))
        }
        ClientMessage::Disconnect { reason } => {
            let reason = crate::sanitize::shown(
                reason.as_deref().unwrap_or("no reason given"),
                crate::sanitize::FIELD_MAX,
            );
            tracing::debug!(client = %info.client_id, "device disconnecting: {reason}");
            Reply::Close(CloseRequest::frame(close::NORMAL, "client disconnected"))
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
        ClientMessage::Disconnect { .. } => {
            Reply::Close(CloseRequest::frame(close::NORMAL, "client disconnected"))
        }
        ClientMessage::Heartbeat {} => Reply::Nothing,
        _ => {
            tracing::debug!(client = %info.client_id, "ignoring a viewer's message other than heartbeat or disconnect");
            Reply::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn frame(text: &'static str) -> RawFrame {
        RawFrame::text(Bytes::from(text))
    }

    #[test]
    fn a_half_written_frame_goes_before_the_pong_to_a_ping_read_meanwhile() {
        let (tx, mut rx) = mpsc::channel(4);
        tx.try_send(frame("half").written_for_test(3)).expect("room");
        tx.try_send(frame("next")).expect("room");
        let mut in_flight = None;
        let ping = Step::Frame(Some(Ok(Message::Ping(Default::default()))));
        let step = half_written_first(true, ping, &mut in_flight, &mut rx);
        assert!(matches!(step, Some(Step::Frame(_))), "the ping is still handled");
        let first = in_flight.expect("the half-written frame is in flight");
        assert_eq!((first.payload_str(), first.written()), ("half", 3));
        assert_eq!(rx.try_recv().expect("still queued").payload_str(), "next");
    }

    #[test]
    fn a_half_written_frame_taken_from_the_queue_goes_out_before_anything_else() {
        let (_tx, mut rx) = mpsc::channel(4);
        let mut in_flight = None;
        let queued = Step::Queued(Some(frame("half").written_for_test(1)));
        assert!(half_written_first(true, queued, &mut in_flight, &mut rx).is_none());
        assert_eq!(in_flight.expect("in flight").written(), 1);
    }

    #[test]
    fn without_a_half_written_frame_the_queue_is_left_alone() {
        let (tx, mut rx) = mpsc::channel(4);
        tx.try_send(frame("queued")).expect("room");
        let mut in_flight = None;
        let step = half_written_first(false, Step::Ping, &mut in_flight, &mut rx);
        assert!(matches!(step, Some(Step::Ping)));
        assert!(in_flight.is_none());
        assert_eq!(rx.len(), 1);
    }
}
