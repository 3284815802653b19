//! Fuzzes `hub::auth::verdict`. The first byte picks the kind of first frame, the rest is the
//! text; `@ID@` and `@TOKEN@` in it are replaced by the real credentials (they are random, so
//! the fuzzer could never guess them) so that 4002 and success are reachable too.

#![no_main]

use std::sync::LazyLock;

use jetstart::hub::auth::{verdict, FirstFrame, UrlToken, Verdict};
use jetstart::protocol::close;
use jetstart::session::SessionStore;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static STORE: LazyLock<SessionStore> = LazyLock::new(SessionStore::new);

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let session = STORE.current();
    let text = String::from_utf8_lossy(rest)
        .replace("@ID@", &session.id)
        .replace("@TOKEN@", &session.token);
    let first = match kind % 8 {
        0 => FirstFrame::Binary,
        1 => FirstFrame::Control,
        2 => FirstFrame::TooBig,
        3 => FirstFrame::Closed,
        4 => FirstFrame::Failed,
        5 => FirstFrame::TimedOut,
        _ => FirstFrame::Text(&text),
    };
    let outcome = verdict(first, &UrlToken::Absent, &STORE);
    let FirstFrame::Text(text) = first else {
        let code = match outcome {
            Verdict::Reject(r) => Some(r.code),
            Verdict::Wait | Verdict::Drop => None,
            Verdict::Accept { .. } => panic!("accepted without a message"),
        };
        let expected = match first {
            FirstFrame::Binary | FirstFrame::TimedOut => Some(close::AUTH_REQUIRED),
            FirstFrame::TooBig => Some(close::MESSAGE_TOO_BIG),
            _ => None,
        };
        assert_eq!(code, expected, "{first:?}");
        return;
    };
    // The spec's reading of the text, from serde_json's plain parser.
    let value: Option<Value> = serde_json::from_str(text).ok();
    let field = |name: &str| value.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str);
    match outcome {
        Verdict::Accept {
            session_id,
            device_info,
        } => {
            assert_eq!(session_id, session.id);
            assert_eq!(field("type"), Some("client:connect"));
            assert_eq!(field("sessionId"), Some(session.id.as_str()));
            assert_eq!(field("token"), Some(session.token.as_str()));
            let sent = value.as_ref().and_then(|v| v.get("deviceInfo")).cloned();
            assert_eq!(device_info, sent.unwrap_or(Value::Null));
        }
        Verdict::Reject(r) => match r.code {
            close::AUTH_REQUIRED => {}
            close::WRONG_SESSION => {
                assert_eq!(field("type"), Some("client:connect"));
                assert_ne!(field("sessionId"), Some(session.id.as_str()));
            }
            close::WRONG_TOKEN => {
                assert_eq!(field("type"), Some("client:connect"));
                assert_eq!(field("sessionId"), Some(session.id.as_str()));
                assert_ne!(field("token"), Some(session.token.as_str()));
            }
            other => panic!("a text message closed with {other}"),
        },
        Verdict::Wait | Verdict::Drop => panic!("a text message must be decided"),
    }
});
