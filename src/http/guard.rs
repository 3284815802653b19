//! The "loopback only" access rule (docs/protocol.md, "HTTP"): loopback peer, plus a `Host` check against DNS
//! rebinding, plus a same-origin check against cross-site requests from the developer's browser.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::pairing::host::is_loopback_peer;

/// The peer's socket address, when the server was started with connect info (tests without
/// a socket may leave it out; the guard then refuses).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
        ))
    }
}

/// Proof that a request may use a loopback-only route. Used as a route layer
/// (`middleware::from_extractor_with_state`) on every such route.
///
/// A request passes when
/// 1. the peer address is loopback (127.0.0.0/8, `::1`, or IPv4-mapped loopback);
/// 2. the `Host` header names `localhost`, an IP literal, or the advertised host — a web page
///    that rebinds its own DNS name to 127.0.0.1 still sends its own name, and is refused;
/// 3. for methods other than GET/HEAD, an `Origin` header, if any, is this very origin — a
///    page on another site can send a "simple" POST to 127.0.0.1 without a CORS preflight;
///    this stops it from rotating the session or reloading devices. Tools like curl send no
///    `Origin` and are unaffected.
#[derive(Debug, Clone, Copy)]
pub struct LoopbackOnly;

/// Why a request was refused; answered with 403 JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    NotLoopback,
    ForeignHost,
    CrossOrigin,
}

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        let message = match self {
            Self::NotLoopback => "this route is only available from this computer (loopback)",
            Self::ForeignHost => {
                "this route is only available as localhost, an IP address or the advertised host"
            }
            Self::CrossOrigin => "cross-origin requests are not allowed on this route",
        };
        super::error_response(StatusCode::FORBIDDEN, message)
    }
}

impl FromRequestParts<Arc<AppState>> for LoopbackOnly {
    type Rejection = Forbidden;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Forbidden> {
        let Ok(Peer(peer)) = Peer::from_request_parts(parts, state).await;
        if !peer.is_some_and(|addr| is_loopback_peer(addr.ip())) {
            return Err(Forbidden::NotLoopback);
        }
        let advertised = state.advertised.host.as_str();
        let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !host.is_some_and(|host| is_allowed_host(host, advertised)) {
            return Err(Forbidden::ForeignHost);
        }
        // An absolute-form request target carries its own authority; hold it to the same rule.
        if let Some(authority) = parts.uri.authority() {
            if !is_allowed_host(authority.as_str(), advertised) {
                return Err(Forbidden::ForeignHost);
            }
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            if let Some(origin) = parts.headers.get(header::ORIGIN) {
                let same = host.is_some_and(|host| {
                    origin
                        .to_str()
                        .is_ok_and(|o| o.eq_ignore_ascii_case(&format!("http://{host}")))
                });
                if !same {
                    return Err(Forbidden::CrossOrigin);
                }
            }
        }
        Ok(Self)
    }
}

/// True if a `Host` header value (`name`, `name:port`, `[v6]`, `[v6]:port`) names `localhost`,
/// an IP literal, or `advertised` (case-insensitive). Anything malformed is refused.
pub fn is_allowed_host(value: &str, advertised: &str) -> bool {
    let Some(name) = crate::authority::host(value.trim()) else {
        return false;
    };
    if name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok() {
        return true;
    }
    !name.is_empty() && name.eq_ignore_ascii_case(crate::authority::unbracketed(advertised))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts() {
        let ok = [
            "localhost",
            "LOCALHOST:8765",
            "127.0.0.1",
            "127.0.0.1:8765",
            "[::1]",
            "[::1]:8765",
            "192.168.1.100:8765",
            "devbox.local",
            "DevBox.Local:8765",
        ];
        for host in ok {
            assert!(is_allowed_host(host, "devbox.local"), "{host}");
        }
        let refused = [
            "",
            ":8765",
            "evil.example",
            "evil.example:8765",
            "localhost.evil.example",
            "localhost:",
            "localhost:abc",
            "localhost:8765:1",
            "::1",
            "[::1",
            "[::1]x",
            "[evil]:80",
            "user@localhost",
            "devbox.local.evil.example",
        ];
        for host in refused {
            assert!(!is_allowed_host(host, "devbox.local"), "{host:?}");
        }
    }

    #[test]
    fn advertised_ipv6_in_brackets() {
        assert!(is_allowed_host("[fd00::1]:8765", "[fd00::1]"));
    }
}
