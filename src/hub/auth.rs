//! The authentication decision as pure logic: what the first frame of a socket leads to.
//!
//! Kept free of sockets and clocks so that property tests and the fuzzer can drive it with
//! arbitrary input; `connection::authenticate` only reads frames and carries verdicts out.

use serde_json::Value;

use crate::protocol::{close, ClientMessage};
use crate::session::{ct_eq, AuthError, SessionStore};

/// The `token` query parameter of the upgrade request (`ws://host:port/?token=…`): how JetStart's
/// in-app runtime authenticates, since its `client:connect` carries only the session id. It is a
/// credential like the message's `token` field and is never logged.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum UrlToken {
    /// No `token` parameter.
    #[default]
    Absent,
    /// Exactly one `token` value (repeated identical values count as one).
    Present(String),
    /// Several different `token` values: no credential can be read from it.
    Conflicting,
}

impl UrlToken {
    /// Reads the `token` parameter from a request URI's query string (percent-decoded).
    pub fn from_query(query: Option<&str>) -> Self {
        let mut found = Self::Absent;
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if key != "token" {
                continue;
            }
            found = match found {
                Self::Absent => Self::Present(value.into_owned()),
                Self::Present(first) if first == value => Self::Present(first),
                _ => Self::Conflicting,
            };
        }
        found
    }
}

impl std::fmt::Debug for UrlToken {
    // Hand-written so that no `{:?}` can ever put the token in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Absent => "Absent",
            Self::Present(_) => "Present(<redacted>)",
            Self::Conflicting => "Conflicting",
        })
    }
}

/// The token a device presents: the message's, the URL's, or both if they are equal. `Err` when
/// both are given and differ, or the URL is ambiguous: that is a wrong token (4002), whatever
/// the real one is. An empty message token counts as none.
fn presented_token<'a>(message: Option<&'a str>, url: &'a UrlToken) -> Result<Option<&'a str>, ()> {
    let message = message.filter(|t| !t.is_empty());
    match (message, url) {
        (_, UrlToken::Conflicting) => Err(()),
        (message, UrlToken::Absent) => Ok(message),
        (None, UrlToken::Present(url)) => Ok(Some(url)),
        (Some(message), UrlToken::Present(url)) if ct_eq(message, url) => Ok(Some(message)),
        (Some(_), UrlToken::Present(_)) => Err(()),
    }
}

/// What an unauthenticated socket delivered first (or that nothing came in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstFrame<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary,
    /// A ping, a pong or a raw frame: not a message yet.
    Control,
    /// A message over the size limit.
    TooBig,
    /// The device sent a close frame or the stream ended.
    Closed,
    /// The connection failed (reset, protocol error, ...).
    Failed,
    /// `--auth-timeout` passed without a message.
    TimedOut,
}

/// Why a socket is closed before authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    pub reason: &'static str,
}

impl Rejection {
    const AUTH_REQUIRED: Self = Self {
        code: close::AUTH_REQUIRED,
        reason: close::REASON_AUTH_REQUIRED,
    };

    /// True for a wrong session or token: a credential guess, as opposed to a broken client.
    /// Only these feed the per-address back-off ([`super::backoff`]).
    pub fn is_wrong_credentials(&self) -> bool {
        matches!(self.code, close::WRONG_SESSION | close::WRONG_TOKEN)
    }
}

/// What happens to the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not a message yet (ping/pong): keep reading.
    Wait,
    /// The device is gone or broken: nothing can be sent, just drop the connection.
    Drop,
    /// Close with this code and reason.
    Reject(Rejection),
    /// Authenticated against this session; `device_info` as sent, `null` when absent.
    Accept { session_id: String, device_info: Value },
}

/// Decides the fate of an unauthenticated socket from its first frame (docs/protocol.md, "Authentication"): binary, a
/// message that is not `client:connect`, malformed JSON or no message in time → 4003; too big
/// → 1009; a wrong or missing `sessionId` → 4001, else a wrong or missing `token` → 4002
/// (both compared in constant time by [`SessionStore::authenticate`]). The token may come from
/// the message or from the URL (`url_token`); if both carry one they must be equal.
pub fn verdict(first: FirstFrame<'_>, url_token: &UrlToken, sessions: &SessionStore) -> Verdict {
    let text = match first {
        FirstFrame::Text(text) => text,
        FirstFrame::Control => return Verdict::Wait,
        FirstFrame::Closed | FirstFrame::Failed => return Verdict::Drop,
        FirstFrame::TooBig => {
            return Verdict::Reject(Rejection {
                code: close::MESSAGE_TOO_BIG,
                reason: close::REASON_TOO_BIG,
            })
        }
        FirstFrame::Binary | FirstFrame::TimedOut => return Verdict::Reject(Rejection::AUTH_REQUIRED),
    };
    let Ok(ClientMessage::Connect {
        session_id,
        token,
        device_info,
    }) = ClientMessage::decode(text)
    else {
        return Verdict::Reject(Rejection::AUTH_REQUIRED);
    };
    // A mismatch presents no token: the session is still checked first (4001), then 4002.
    let token = presented_token(token.as_deref(), url_token).unwrap_or(None);
    match sessions.authenticate(session_id.as_deref(), token) {
        Ok(session) => Verdict::Accept {
            session_id: session.id.clone(),
            device_info: device_info.unwrap_or(Value::Null),
        },
        Err(AuthError::WrongSession) => Verdict::Reject(Rejection {
            code: close::WRONG_SESSION,
            reason: close::REASON_WRONG_SESSION,
        }),
        Err(AuthError::WrongToken) => Verdict::Reject(Rejection {
            code: close::WRONG_TOKEN,
            reason: close::REASON_WRONG_TOKEN,
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn code(first: FirstFrame<'_>, sessions: &SessionStore) -> Option<u16> {
        match verdict(first, &UrlToken::Absent, sessions) {
            Verdict::Reject(r) => Some(r.code),
            _ => None,
        }
    }

    #[test]
    fn non_text_first_frames() {
        let store = SessionStore::new();
        assert_eq!(
            verdict(FirstFrame::Control, &UrlToken::Absent, &store),
            Verdict::Wait
        );
        assert_eq!(
            verdict(FirstFrame::Closed, &UrlToken::Absent, &store),
            Verdict::Drop
        );
        assert_eq!(
            verdict(FirstFrame::Failed, &UrlToken::Absent, &store),
            Verdict::Drop
        );
        assert_eq!(code(FirstFrame::Binary, &store), Some(4003));
        assert_eq!(code(FirstFrame::TimedOut, &store), Some(4003));
        assert_eq!(code(FirstFrame::TooBig, &store), Some(1009));
    }

    #[test]
    fn text_first_frames_follow_the_spec_order() {
        let store = SessionStore::new();
        let s = store.current();
        let text = |v: Value| v.to_string();
        let check = |v: Value| code(FirstFrame::Text(&text(v)), &store);
        assert_eq!(check(json!({"type": "client:heartbeat"})), Some(4003));
        assert_eq!(code(FirstFrame::Text("{not json"), &store), Some(4003));
        assert_eq!(
            check(json!({"type": "client:connect", "token": s.token})),
            Some(4001)
        );
        assert_eq!(
            check(json!({"type": "client:connect", "sessionId": "x", "token": s.token})),
            Some(4001)
        );
        assert_eq!(
            check(json!({"type": "client:connect", "sessionId": "x", "token": "y"})),
            Some(4001),
            "the session is checked before the token"
        );
        assert_eq!(
            check(json!({"type": "client:connect", "sessionId": s.id})),
            Some(4002)
        );
        assert_eq!(
            check(json!({"type": "client:connect", "sessionId": s.id, "token": 7})),
            Some(4002)
        );
        let right = json!({"type": "client:connect", "sessionId": s.id, "token": s.token,
                           "deviceInfo": {"model": "Pixel"}});
        assert_eq!(
            verdict(FirstFrame::Text(&text(right)), &UrlToken::Absent, &store),
            Verdict::Accept {
                session_id: s.id.clone(),
                device_info: json!({"model": "Pixel"})
            }
        );
        let bare = json!({"type": "client:connect", "sessionId": s.id, "token": s.token});
        assert!(matches!(
            verdict(FirstFrame::Text(&text(bare)), &UrlToken::Absent, &store),
            Verdict::Accept {
                device_info: Value::Null,
                ..
            }
        ));
    }

    /// JetStart's runtime: the token in the URL, a `client:connect` with only the session id.
    #[test]
    fn the_token_may_come_from_the_url() {
        let store = SessionStore::new();
        let s = store.current();
        let runtime =
            json!({"type": "client:connect", "sessionId": s.id, "clientType": "test-app"}).to_string();
        let with_url = |url: &UrlToken, text: &str| match verdict(FirstFrame::Text(text), url, &store) {
            Verdict::Reject(r) => Some(r.code),
            _ => None,
        };
        let right = UrlToken::Present(s.token.clone());
        let wrong = UrlToken::Present("x".repeat(22));
        assert_eq!(with_url(&right, &runtime), None, "URL token accepted");
        assert_eq!(with_url(&wrong, &runtime), Some(4002));
        assert_eq!(
            with_url(&UrlToken::Absent, &runtime),
            Some(4002),
            "no token anywhere"
        );
        assert_eq!(with_url(&UrlToken::Conflicting, &runtime), Some(4002));
        let foreign = json!({"type": "client:connect", "sessionId": "nope"}).to_string();
        assert_eq!(
            with_url(&right, &foreign),
            Some(4001),
            "the session is checked first"
        );

        let both =
            |token: &str| json!({"type": "client:connect", "sessionId": s.id, "token": token}).to_string();
        assert_eq!(
            with_url(&right, &both(&s.token)),
            None,
            "equal tokens in both places"
        );
        assert_eq!(
            with_url(&wrong, &both(&s.token)),
            Some(4002),
            "URL and message differ"
        );
        assert_eq!(with_url(&right, &both("y")), Some(4002), "URL and message differ");
        assert_eq!(
            with_url(&right, &both("")),
            None,
            "an empty message token counts as none"
        );
        let Verdict::Reject(r) = verdict(FirstFrame::Text(&runtime), &wrong, &store) else {
            panic!("rejected")
        };
        assert!(r.is_wrong_credentials(), "URL failures feed the back-off");
    }

    #[test]
    fn url_tokens_are_read_from_the_query() {
        assert_eq!(UrlToken::from_query(None), UrlToken::Absent);
        assert_eq!(UrlToken::from_query(Some("")), UrlToken::Absent);
        assert_eq!(UrlToken::from_query(Some("tok=1")), UrlToken::Absent);
        assert_eq!(
            UrlToken::from_query(Some("a=1&token=Zk%33+x")),
            UrlToken::Present("Zk3 x".to_owned())
        );
        assert_eq!(
            UrlToken::from_query(Some("token=a&token=a")),
            UrlToken::Present("a".to_owned())
        );
        assert_eq!(
            UrlToken::from_query(Some("token=a&token=b")),
            UrlToken::Conflicting
        );
        let debug = format!("{:?}", UrlToken::from_query(Some("token=secret")));
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn only_credential_failures_count_as_guesses() {
        let store = SessionStore::new();
        let wrong = json!({"type": "client:connect", "sessionId": "x"}).to_string();
        let Verdict::Reject(r) = verdict(FirstFrame::Text(&wrong), &UrlToken::Absent, &store) else {
            panic!("rejected")
        };
        assert!(r.is_wrong_credentials());
        for first in [FirstFrame::Binary, FirstFrame::TimedOut, FirstFrame::TooBig] {
            let Verdict::Reject(r) = verdict(first, &UrlToken::Absent, &store) else {
                panic!("rejected")
            };
            assert!(!r.is_wrong_credentials());
        }
    }

    #[test]
    fn very_deep_json_is_4003_without_overflowing_the_stack() {
        let store = SessionStore::new();
        let s = store.current();
        let deep = format!(
            r#"{{"type":"client:connect","sessionId":"{}","token":"{}","deviceInfo":{}1{}}}"#,
            s.id,
            s.token,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(code(FirstFrame::Text(&deep), &store), Some(4003));
    }
}
