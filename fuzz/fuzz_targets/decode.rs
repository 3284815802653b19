//! Fuzzes `ClientMessage::decode` with arbitrary bytes (as lossy UTF-8): it must never panic,
//! and whatever it accepts must be a JSON object whose fields it read faithfully.

#![no_main]

use jetstart::protocol::ClientMessage;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(message) = ClientMessage::decode(&text) else {
        return;
    };
    // serde_json's plain parser reads the same text as an independent check of the shape.
    let value: Value = serde_json::from_str(&text).expect("decoded, so it is valid JSON");
    assert!(value.is_object(), "only an object is a message: {text}");
    let ty = value["type"].as_str().expect("decoded, so `type` is a string");
    if let ClientMessage::Connect {
        session_id,
        token,
        device_info,
    } = message
    {
        assert_eq!(ty, "client:connect");
        assert_eq!(session_id.as_deref(), value["sessionId"].as_str());
        assert_eq!(token.as_deref(), value["token"].as_str());
        let sent = value.get("deviceInfo").filter(|v| !v.is_null());
        assert_eq!(device_info.as_ref(), sent);
    } else {
        assert_ne!(ty, "client:connect");
    }
});
