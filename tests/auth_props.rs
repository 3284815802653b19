//! Property tests of the decoder and the authentication verdict under arbitrary and hostile
//! input: never a panic, and always the close code docs/protocol.md documents, with the expected code
//! derived here independently from the shape of the message.

use std::sync::LazyLock;

use jetstart::hub::auth::{verdict, FirstFrame, UrlToken, Verdict};
use jetstart::protocol::close::{AUTH_REQUIRED, WRONG_SESSION, WRONG_TOKEN};
use jetstart::protocol::ClientMessage;
use jetstart::session::SessionStore;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// One session for the whole run; its credentials are random, so every test reads them.
static STORE: LazyLock<SessionStore> = LazyLock::new(SessionStore::new);

fn real_id() -> String {
    STORE.current().id.clone()
}

fn real_token() -> String {
    STORE.current().token.clone()
}

/// What the spec says must happen to a first text message.
#[derive(Debug, PartialEq)]
enum Expected {
    Accept(Value),
    Close(u16),
}

/// docs/protocol.md ("Authentication") read literally: not a JSON object whose `type` is the string `client:connect` →
/// 4003; `sessionId` not the right string → 4001; otherwise `token` not the right string →
/// 4002; otherwise accepted, `deviceInfo` kept as sent (absent or null → null).
fn expected(message: &Value) -> Expected {
    let Some(object) = message.as_object() else {
        return Expected::Close(4003);
    };
    if object.get("type").and_then(Value::as_str) != Some("client:connect") {
        return Expected::Close(4003);
    }
    if object.get("sessionId").and_then(Value::as_str) != Some(real_id().as_str()) {
        return Expected::Close(4001);
    }
    if object.get("token").and_then(Value::as_str) != Some(real_token().as_str()) {
        return Expected::Close(4002);
    }
    Expected::Accept(object.get("deviceInfo").cloned().unwrap_or(Value::Null))
}

/// [`expected`] for a text frame, its shape read by serde_json's plain `Value` parser (not the
/// tagged-enum decoder under test). Reading the text, not the generated value, matters for
/// floats: serde_json parses them best-effort, a unit in the last place off for extreme values.
fn expected_for(text: &str) -> Expected {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => expected(&value),
        Err(_) => Expected::Close(4003),
    }
}

/// Round-trips `value` through JSON text, as the server sees it.
fn as_received(value: &Value) -> Value {
    serde_json::from_str(&value.to_string()).expect("valid JSON")
}

fn actual(text: &str) -> Expected {
    match verdict(FirstFrame::Text(text), &UrlToken::Absent, &STORE) {
        Verdict::Accept {
            session_id,
            device_info,
        } => {
            assert_eq!(session_id, real_id());
            Expected::Accept(device_info)
        }
        Verdict::Reject(rejection) => Expected::Close(rejection.code),
        other => panic!("a text message must be decided, got {other:?}"),
    }
}

/// Strings that stress a decoder: any Unicode, escapes, lookalikes, control characters.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,16}",
        "[\"\\\\/\u{0}\u{1f}\u{7f}\u{200b}\u{feff}\u{d7ff}\u{e000}\u{10ffff}é𝄞a-z]{0,12}",
    ]
}

/// The keys that matter to the decoder, plus arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["type", "sessionId", "token", "deviceInfo", "timestamp", "log"])
            .prop_map(str::to_owned),
        1 => any_string(),
    ]
}

/// Any JSON value (depth and size bounded so a case stays fast in a debug build).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        any_string().prop_map(Value::String),
        prop::sample::select(vec!["client:connect", "client:heartbeat", "client:log"]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A string that differs from `real` (in one character, its length, case, or entirely).
fn differing_from(real: String) -> impl Strategy<Value = String> {
    let len = real.len();
    let keep = real.clone();
    prop_oneof![
        (0..len, any::<char>()).prop_map({
            let real = real.clone();
            move |(i, c)| {
                let mut chars: Vec<char> = real.chars().collect();
                chars[i] = c;
                chars.into_iter().collect()
            }
        }),
        (0..len).prop_map({
            let real = real.clone();
            move |n| real[..n].to_owned()
        }),
        (0..=len, any::<char>()).prop_map({
            let real = real.clone();
            move |(i, c)| {
                let mut s = real.clone();
                s.insert(i, c);
                s
            }
        }),
        Just(real.to_lowercase()),
        Just(real.to_uppercase()),
        Just(format!(" {real}")),
        Just(format!("{real}\u{0}")),
        Just(real.repeat(2)),
        any_string(),
    ]
    .prop_filter("must differ from the real value", move |s| *s != keep)
}

/// A field value near what a right `client:connect` carries: right, slightly wrong, wrong type.
fn field(real: String) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => Just(Some(Value::String(real.clone()))),
        2 => differing_from(real).prop_map(|s| Some(Value::String(s))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
    ]
}

/// Shapes of `client:connect` with fields right, wrong, of the wrong type, missing, extra.
fn near_miss_connect() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        6 => Just(Some(json!("client:connect"))),
        1 => prop::sample::select(vec![
            "client:Connect", "CLIENT:CONNECT", "client:connect ", " client:connect",
            "client:connect\u{0}", "client：connect", "connect", "client:heartbeat", "",
        ])
        .prop_map(|s| Some(json!(s))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ];
    let device_info = prop_oneof![
        Just(None),
        json_value().prop_map(Some),
        Just(Some(
            json!({"id": "x", "model": "Pixel 7", "architecture": "arm64-v8a",
                         "isEmulator": false, "density": 2.75, "apiLevel": 34})
        )),
    ];
    let extras = prop::collection::btree_map(any_string(), json_value(), 0..4);
    (ty, field(real_id()), field(real_token()), device_info, extras).prop_map(
        |(ty, session_id, token, device_info, extras)| {
            let mut object: Map<String, Value> = extras.into_iter().collect();
            for (name, value) in [
                ("type", ty),
                ("sessionId", session_id),
                ("token", token),
                ("deviceInfo", device_info),
            ] {
                match value {
                    Some(value) => object.insert(name.to_owned(), value),
                    None => object.remove(name),
                };
            }
            Value::Object(object)
        },
    )
}

/// `value` as compact or pretty JSON: whitespace must not matter.
fn encoded(value: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(value).expect("serializable")
    } else {
        value.to_string()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics_and_is_never_accepted(text in any_string()) {
        let _ = ClientMessage::decode(&text);
        let got = actual(&text);
        prop_assert!(matches!(got, Expected::Close(WRONG_SESSION | WRONG_TOKEN | AUTH_REQUIRED)), "{got:?}");
        if serde_json::from_str::<Value>(&text).is_err() {
            prop_assert_eq!(got, Expected::Close(4003));
        }
    }

    #[test]
    fn arbitrary_bytes_as_lossy_utf8_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = ClientMessage::decode(&text);
        prop_assert!(matches!(actual(&text), Expected::Close(WRONG_SESSION | WRONG_TOKEN | AUTH_REQUIRED)));
    }

    #[test]
    fn json_like_garbage_is_4003_unless_it_is_a_connect(
        tail in "[{}\\[\\]\":,0-9a-zA-Z \\\\]{0,48}",
        prefix in prop::sample::select(vec!["", "{", "{\"type\":\"client:connect\",", "[", "{\"type\":"]),
    ) {
        let text = format!("{prefix}{tail}");
        prop_assert_eq!(actual(&text), expected_for(&text));
    }

    #[test]
    fn arbitrary_json_gets_the_documented_code(value in json_value(), pretty in any::<bool>()) {
        let text = encoded(&value, pretty);
        prop_assert_eq!(actual(&text), expected_for(&text));
    }

    #[test]
    fn near_miss_connects_get_the_documented_code(value in near_miss_connect(), pretty in any::<bool>()) {
        let text = encoded(&value, pretty);
        prop_assert_eq!(actual(&text), expected_for(&text));
    }

    #[test]
    fn decode_agrees_with_the_type_tag(value in near_miss_connect()) {
        let decoded = ClientMessage::decode(&value.to_string());
        let is_connect = value["type"] == "client:connect";
        prop_assert_eq!(matches!(decoded, Ok(ClientMessage::Connect { .. })), is_connect);
        if is_connect {
            let Ok(ClientMessage::Connect { session_id, token, device_info }) = decoded else {
                unreachable!()
            };
            // Lenient: a field of the wrong type reads as missing, never as an error.
            prop_assert_eq!(session_id.as_deref(), value["sessionId"].as_str());
            prop_assert_eq!(token.as_deref(), value["token"].as_str());
            let received = as_received(&value);
            let info = received.get("deviceInfo").filter(|v| !v.is_null());
            prop_assert_eq!(device_info.as_ref(), info);
        }
    }

    #[test]
    fn right_credentials_with_any_device_info_succeed(
        device_info in json_value(),
        extras in prop::collection::btree_map("[a-zA-Z]{1,12}", json_value(), 0..4),
    ) {
        let mut object: Map<String, Value> = extras.into_iter().collect();
        object.insert("type".into(), json!("client:connect"));
        object.insert("sessionId".into(), json!(real_id()));
        object.insert("token".into(), json!(real_token()));
        object.insert("deviceInfo".into(), device_info.clone());
        prop_assert_eq!(
            actual(&Value::Object(object).to_string()),
            Expected::Accept(as_received(&device_info))
        );
    }

    #[test]
    fn any_other_token_is_4002(token in differing_from(real_token())) {
        let message = json!({"type": "client:connect", "sessionId": real_id(), "token": token});
        prop_assert_eq!(actual(&message.to_string()), Expected::Close(4002));
    }

    #[test]
    fn any_other_session_is_4001_whatever_the_token(
        session_id in differing_from(real_id()),
        right_token in any::<bool>(),
    ) {
        let token = if right_token { real_token() } else { "x".to_owned() };
        let message = json!({"type": "client:connect", "sessionId": session_id, "token": token});
        prop_assert_eq!(actual(&message.to_string()), Expected::Close(4001));
    }

    #[test]
    fn non_text_first_frames_get_their_codes(
        kind in prop::sample::select(vec![
            FirstFrame::Binary, FirstFrame::Control, FirstFrame::TooBig,
            FirstFrame::Closed, FirstFrame::Failed, FirstFrame::TimedOut,
        ])
    ) {
        let code = match verdict(kind, &UrlToken::Absent, &STORE) {
            Verdict::Reject(r) => Some(r.code),
            Verdict::Wait | Verdict::Drop => None,
            Verdict::Accept { .. } => panic!("accepted a {kind:?}"),
        };
        let want = match kind {
            FirstFrame::Binary | FirstFrame::TimedOut => Some(4003),
            FirstFrame::TooBig => Some(1009),
            _ => None,
        };
        prop_assert_eq!(code, want);
    }
}

proptest! {
    // Big inputs cost milliseconds each in a debug build: few cases.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn huge_fields_get_the_documented_code(
        size in 10_000usize..400_000,
        which in 0..4u8,
        filler in any::<char>(),
    ) {
        let huge: String = std::iter::repeat_n(filler, size / filler.len_utf8()).collect();
        let (session_id, token, device_info) = match which {
            0 => (huge.clone(), real_token(), Value::Null),
            1 => (real_id(), huge.clone(), Value::Null),
            2 => (real_id(), real_token(), json!({"model": huge})),
            _ => (real_id(), format!("{}{huge}", real_token()), json!([huge])),
        };
        let message = json!({"type": "client:connect", "sessionId": session_id, "token": token,
                             "deviceInfo": device_info});
        let text = message.to_string();
        prop_assert_eq!(actual(&text), expected_for(&text));
    }
}

/// A credential as it may be presented: absent, right, empty, or some other string.
#[derive(Debug, Clone)]
enum Presented {
    Absent,
    Right,
    Empty,
    Other(String),
}

impl Presented {
    fn value(&self) -> Option<String> {
        match self {
            Self::Absent => None,
            Self::Right => Some(real_token()),
            Self::Empty => Some(String::new()),
            Self::Other(s) => Some(s.clone()),
        }
    }
}

fn presented() -> impl Strategy<Value = Presented> {
    prop_oneof![
        Just(Presented::Absent),
        Just(Presented::Right),
        Just(Presented::Empty),
        "[A-Za-z0-9]{0,24}".prop_map(Presented::Other),
    ]
}

proptest! {
    /// The token in the URL (JetStart's runtime) and in the message: the session is checked
    /// first; then the token is right only if one place carries the real token and the other
    /// carries none or the same (an empty message token counts as none).
    #[test]
    fn url_and_message_tokens_combine_as_documented(
        right_session in any::<bool>(),
        in_message in presented(),
        in_url in presented(),
    ) {
        let session_id = if right_session { real_id() } else { "wrong-id".to_owned() };
        let mut message = json!({"type": "client:connect", "sessionId": session_id,
                                 "clientType": "test-app"});
        if let Some(token) = in_message.value() {
            message["token"] = json!(token);
        }
        let url = match in_url.value() {
            None => UrlToken::Absent,
            Some(token) => UrlToken::Present(token),
        };
        let message_token = in_message.value().filter(|t| !t.is_empty());
        let presented = match (message_token, in_url.value()) {
            (None, url) => url,
            (message, None) => message,
            (Some(m), Some(u)) => (m == u).then_some(m),
        };
        let want = if !right_session {
            Some(WRONG_SESSION)
        } else if presented != Some(real_token()) {
            Some(WRONG_TOKEN)
        } else {
            None
        };
        let got = match verdict(FirstFrame::Text(&message.to_string()), &url, &STORE) {
            Verdict::Reject(r) => Some(r.code),
            Verdict::Accept { .. } => None,
            other => panic!("unexpected {other:?}"),
        };
        prop_assert_eq!(got, want);
    }
}
