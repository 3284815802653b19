//! Checks made before a socket is upgraded: the browser `Origin` rule and the connection limit;
//! and the one thing kept from the request, a token in its URL.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::auth::UrlToken;

/// How long a refused connection (server full) may take to send its request and read the answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read from a refused connection before answering.
const MAX_REFUSED_HEAD: usize = 8 * 1024;
/// A refused `Origin` is reported up to this many characters (a header may be kilobytes).
const MAX_REPORTED_ORIGIN: usize = 200;

/// Lowercases an origin and drops a trailing `/`, so `--allow-origin` compares like browsers send.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether a browser `Origin` may open a socket: localhost in any form on any port, the
/// advertised host on any port, or one of the `--allow-origin` values (normalized).
pub fn origin_allowed(origin: &str, advertised_host: &str, extra: &[String]) -> bool {
    let normalized = normalize_origin(origin);
    if extra.contains(&normalized) {
        return true;
    }
    let Some(authority) = normalized
        .strip_prefix("http://")
        .or_else(|| normalized.strip_prefix("https://"))
    else {
        return false;
    };
    let Some(host) = crate::authority::host(authority) else {
        return false;
    };
    let advertised = advertised_host.to_ascii_lowercase();
    matches!(host, "localhost" | "127.0.0.1" | "::1") || host == crate::authority::unbracketed(&advertised)
}

/// tungstenite handshake callback refusing foreign browser origins with HTTP 403, and keeping
/// the URL's `token` parameter for authentication. Nothing else of the request (whose URI may
/// hold that token) is kept or logged.
pub struct UpgradeCheck<'a> {
    pub advertised_host: &'a str,
    pub allowed: &'a [String],
    pub url_token: &'a mut UrlToken,
    /// Set to the `Origin` (normalized, printable, cut short) when it was refused, for the
    /// caller to report as a `client-rejected` event.
    pub refused_origin: &'a mut Option<String>,
}

impl Callback for UpgradeCheck<'_> {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        *self.url_token = UrlToken::from_query(request.uri().query());
        let Some(origin) = request.headers().get("origin") else {
            // No Origin: not a browser (the Android app, a CLI); the token does the guarding.
            return Ok(response);
        };
        let allowed = origin
            .to_str()
            .is_ok_and(|o| origin_allowed(o, self.advertised_host, self.allowed));
        if allowed {
            return Ok(response);
        }
        let shown = normalize_origin(&String::from_utf8_lossy(origin.as_bytes()));
        let shown: String = crate::sanitize::printable(&shown)
            .chars()
            .take(MAX_REPORTED_ORIGIN)
            .collect();
        *self.refused_origin = Some(shown);
        let mut refusal = ErrorResponse::new(Some(
            "origin not allowed; start the server with --allow-origin <ORIGIN> to allow it".to_owned(),
        ));
        *refusal.status_mut() = StatusCode::FORBIDDEN;
        Err(refusal)
    }
}

/// True for an upgrade that failed because the request was plain HTTP (no WebSocket headers):
/// a browser or `curl` pointed at the WebSocket port.
pub fn is_plain_http(error: &WsError) -> bool {
    matches!(
        error,
        WsError::Protocol(
            ProtocolError::MissingConnectionUpgradeHeader
                | ProtocolError::MissingUpgradeWebSocketHeader
                | ProtocolError::MissingSecWebSocketVersionHeader
                | ProtocolError::MissingSecWebSocketKey
                | ProtocolError::WrongHttpMethod
        )
    )
}

/// Answers plain HTTP on the WebSocket port with 426 and one line saying where the HTTP port
/// is, rather than an empty reply (tungstenite writes nothing for such a request).
pub async fn refuse_plain_http(stream: &TcpStream, http_base: &str) {
    let body = format!(
        "This is jetstart-rs's WebSocket port, for devices (the JetStart app). Its HTTP port is \
         {http_base}/ (the pairing page opens on the computer running the server).\n"
    );
    let answer = format!(
        "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        let mut rest = answer.as_bytes();
        while !rest.is_empty() {
            stream.writable().await?;
            match stream.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, write).await;
}

/// Answers a connection beyond `--max-clients` with HTTP 503 and closes it. The request head
/// is read first so that the client sees the answer rather than a connection reset.
pub async fn refuse_full(mut stream: TcpStream) {
    let refuse = async {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REFUSED_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let body = "server full: too many devices connected (see --max-clients)\n";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refuse).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            normalize_origin(" HTTP://Laptop.local:3000/ "),
            "http://laptop.local:3000"
        );
    }

    #[test]
    fn localhost_origins_on_any_port_are_allowed() {
        for origin in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:1",
            "http://[::1]:8080",
        ] {
            assert!(origin_allowed(origin, "192.168.1.5", &[]), "{origin}");
        }
    }

    #[test]
    fn advertised_host_and_extras_are_allowed() {
        assert!(origin_allowed("http://192.168.1.5:9000", "192.168.1.5", &[]));
        assert!(origin_allowed("HTTP://My-Laptop.local", "my-laptop.local", &[]));
        let extra = vec!["https://tools.example.dev".to_owned()];
        assert!(origin_allowed(
            "https://tools.example.dev/",
            "192.168.1.5",
            &extra
        ));
    }

    #[test]
    fn foreign_and_tricky_origins_are_refused() {
        for origin in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example",
            "http://localhost:80@evil.example",
            "file://localhost",
            "null",
            "http://192.168.1.50",
            "http://localhost:abc",
        ] {
            assert!(!origin_allowed(origin, "192.168.1.5", &[]), "{origin}");
        }
    }
}
