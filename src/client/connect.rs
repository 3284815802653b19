//! A device's connection: authenticate, heartbeat, receive, and say clearly why it ended.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::{render, Target};
use crate::protocol::{close, Role};
use crate::session::unix_ms;
use crate::term::{output, Caps, Style};

/// Clients send a heartbeat this often (docs/protocol.md, "Liveness"); the server drops a device silent for 90 s.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How long to wait for the socket to open, and for the server's close after `client:disconnect`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// `jetstart-rs connect`: prints every message received, human or raw JSON.
pub async fn run(target: Target, json: bool) -> Result<()> {
    let style = Style::new(Caps::detect(json).color);
    let token = target.token.clone();
    follow(&target, device_info("jetstart-rs connect"), |raw, message| {
        let text = if json {
            raw.to_owned()
        } else {
            // The download URL carries the token: it stays out of human output.
            render::message(message, style).replace(&token, "<token>")
        };
        output::print_stdout(&format!("{text}\n"));
    })
    .await
}

/// Why the WebSocket didn't open, said once (tungstenite's I/O error repeats its cause) and
/// with what to do.
fn connect_error(url: &str, error: tokio_tungstenite::tungstenite::Error) -> anyhow::Error {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Io(io) => anyhow!("could not connect to {url}: {io}; is `jetstart-rs dev` running?"),
        Error::Http(response) => anyhow!(
            "{url} answered HTTP {} instead of opening a WebSocket: probably the server's HTTP \
             port; the WebSocket port is the third field of the QR payload (and the port of \
             serverUrl in .jetstart/session.properties)",
            response.status()
        ),
        other => anyhow!("could not connect to {url}: {other}"),
    }
}

/// The `deviceInfo` this tool presents: enough for the server's device list to say what it is.
pub fn device_info(model: &str) -> Value {
    json!({
        "id": format!("cli-{:08x}", rand::random::<u32>()),
        "model": model,
        "platform": "cli",
        "architecture": std::env::consts::ARCH,
        "osVersion": std::env::consts::OS,
        "manufacturer": "jetstart-rs",
        "version": env!("CARGO_PKG_VERSION"),
        "isEmulator": true,
    })
}

/// The `deviceInfo` of a viewer (`jetstart-rs logs`): it follows events and logs but is not a
/// device (not listed or counted, starts no build; README, Roles).
pub fn viewer_info(model: &str) -> Value {
    let mut info = device_info(model);
    info["role"] = Role::VIEWER.into();
    info
}

/// Connects presenting `device_info` and calls `on_message` with every text message until
/// the connection ends. Ctrl+C (or SIGTERM) sends `client:disconnect` and ends with `Ok`; a
/// close by the server is `Ok` only for a normal close or a stopping server.
pub async fn follow(
    target: &Target,
    device_info: Value,
    mut on_message: impl FnMut(&str, &Value),
) -> Result<()> {
    eprintln!(
        "connecting to {} (session {}{})",
        target.ws_url,
        target.session_id,
        if target.project_name.is_empty() {
            String::new()
        } else {
            format!(", project {}", target.project_name)
        }
    );
    let (mut ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async(target.ws_url.as_str()),
    )
    .await
    .map_err(|_| anyhow!("no answer from {} within {CONNECT_TIMEOUT:?}", target.ws_url))?
    .map_err(|e| connect_error(&target.ws_url, e))?;

    let hello = json!({
        "type": "client:connect",
        "timestamp": unix_ms(),
        "sessionId": target.session_id,
        "token": target.token,
        "deviceInfo": device_info,
    });
    ws.send(Message::text(hello.to_string()))
        .await
        .context("could not send client:connect")?;

    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let stop = crate::dev::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text) {
                    Ok(message) => on_message(&text, &message),
                    Err(e) => tracing::warn!("ignoring a message that is not JSON: {e}"),
                },
                Some(Ok(Message::Close(frame))) => return closed(frame.as_ref()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow!("connection lost: {e}")),
                None => return Err(anyhow!("connection lost (no close frame)")),
            },
            _ = heartbeat.tick() => {
                let beat = json!({"type": "client:heartbeat", "timestamp": unix_ms()});
                ws.send(Message::text(beat.to_string())).await.context("connection lost")?;
            }
            () = &mut stop => {
                let bye = json!({"type": "client:disconnect", "timestamp": unix_ms(), "reason": "user quit"});
                // Best effort: the server may already be gone; we're leaving either way.
                let _ = ws.send(Message::text(bye.to_string())).await;
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    while let Some(Ok(frame)) = ws.next().await {
                        if matches!(frame, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
                eprintln!("disconnected");
                return Ok(());
            }
        }
    }
}

/// Turns the server's close into the tool's outcome: `Ok` for 1000/1001, an error otherwise.
fn closed(frame: Option<&CloseFrame>) -> Result<()> {
    let Some(frame) = frame else {
        return Err(anyhow!("closed by the server without a close code"));
    };
    let code = u16::from(frame.code);
    let mut text = format!("{code} {}", close::meaning(code));
    let reason = frame.reason.as_str();
    if !reason.is_empty() && !text.contains(reason) {
        text.push_str(&format!(" (server said: {reason})"));
    }
    match code {
        close::NORMAL | close::GOING_AWAY => {
            eprintln!("closed: {text}");
            Ok(())
        }
        4000..=4999 => Err(anyhow!("rejected: {text}")),
        _ => Err(anyhow!("closed: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    fn frame(code: u16, reason: &str) -> CloseFrame {
        CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }
    }

    #[test]
    fn close_codes_become_clear_outcomes() {
        let wrong_token = closed(Some(&frame(4002, close::REASON_WRONG_TOKEN))).unwrap_err();
        assert_eq!(
            wrong_token.to_string(),
            "rejected: 4002 wrong token — rescan QR code"
        );
        assert!(closed(Some(&frame(1000, ""))).is_ok());
        assert!(closed(Some(&frame(1001, "Server stopped"))).is_ok());
        let full = closed(Some(&frame(1013, "server full"))).unwrap_err().to_string();
        assert!(full.starts_with("closed: 1013 server full"), "{full}");
        let violation = closed(Some(&frame(1002, "protocol error")))
            .unwrap_err()
            .to_string();
        assert!(violation.contains("protocol violation"), "{violation}");
        assert_ne!(close::meaning(1007), "unknown close code");
        assert!(closed(None).is_err());
    }
}
