//! The wire protocol shared with JetStart: every message as serde types, close codes as constants.
//!
//! Lenient in what devices send (optional `timestamp`, unknown fields ignored, free-form
//! `deviceInfo`), exact in what the server sends (camelCase, `type` tag, `timestamp` in ms).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::session::unix_ms;

/// WebSocket close codes used by the server (docs/protocol.md, "Close codes").
pub mod close {
    /// `client:disconnect`.
    pub const NORMAL: u16 = 1000;
    /// Server stopping, or heartbeat timeout.
    pub const GOING_AWAY: u16 = 1001;
    /// The device broke RFC 6455 (unmasked frame, reserved bits or opcodes, a fragmented or
    /// oversized control frame).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame arrived.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text message that is not valid UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message over the size limit arrived.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Server full, or client too slow to keep up.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Wrong session id, also after rotation.
    pub const WRONG_SESSION: u16 = 4001;
    /// Wrong token.
    pub const WRONG_TOKEN: u16 = 4002;
    /// First message was not a valid `client:connect`, or none came in time.
    pub const AUTH_REQUIRED: u16 = 4003;
    /// Closed by the developer (`DELETE /clients/<id>`).
    pub const REVOKED: u16 = 4004;

    pub const REASON_WRONG_SESSION: &str = "wrong session — rescan QR code";
    pub const REASON_WRONG_TOKEN: &str = "wrong token — rescan QR code";
    pub const REASON_AUTH_REQUIRED: &str = "authentication required";
    pub const REASON_TOO_BIG: &str = "message too big";
    pub const REASON_PROTOCOL_ERROR: &str = "protocol error";
    pub const REASON_INVALID_DATA: &str = "text message is not valid UTF-8";
    /// 1013 to an unauthenticated socket that made room for a newer one (server full).
    pub const REASON_SERVER_FULL: &str = "server full";
    /// 1001 on shutdown, to every socket, authenticated or not.
    pub const REASON_STOPPING: &str = "server stopping";
    /// 1001 to a device silent past the client timeout.
    pub const REASON_HEARTBEAT_TIMEOUT: &str = "heartbeat timeout";
    /// 1003 after authentication.
    pub const REASON_BINARY: &str = "binary frames are not supported";
    /// 1013 to a device whose queue stayed full.
    pub const REASON_TOO_SLOW: &str = "client too slow";
    /// 4004, `DELETE /clients/<id>`.
    pub const REASON_REVOKED: &str = "revoked by the developer";
    /// 1000, the answer to `client:disconnect` (the client's own reason is only logged).
    pub const REASON_CLIENT_DISCONNECTED: &str = "client disconnected";

    /// Every close code the server sends and what it means to the person whose client got it
    /// (`jetstart-rs connect` says it; docs/protocol.md lists the same).
    pub const MEANINGS: &[(u16, &str)] = &[
        (NORMAL, "normal close"),
        (GOING_AWAY, "server stopped (or the device was silent too long)"),
        (PROTOCOL_ERROR, "the server saw a WebSocket protocol violation"),
        (UNSUPPORTED_DATA, "binary frames are not accepted"),
        (INVALID_DATA, REASON_INVALID_DATA),
        (MESSAGE_TOO_BIG, REASON_TOO_BIG),
        (
            TRY_AGAIN_LATER,
            "server full, or client too slow — try again later",
        ),
        (WRONG_SESSION, REASON_WRONG_SESSION),
        (WRONG_TOKEN, REASON_WRONG_TOKEN),
        (AUTH_REQUIRED, REASON_AUTH_REQUIRED),
        (REVOKED, REASON_REVOKED),
    ];

    /// What `code` means, from [`MEANINGS`].
    pub fn meaning(code: u16) -> &'static str {
        MEANINGS
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("unknown close code", |(_, meaning)| *meaning)
    }
}

/// Largest message a device may send (docs/protocol.md, "The WebSocket"); bigger ones are closed with 1009.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 1024 * 1024;

/// A message from a device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    #[serde(rename = "client:connect", rename_all = "camelCase")]
    Connect {
        #[serde(default, deserialize_with = "lenient_string")]
        session_id: Option<String>,
        #[serde(default, deserialize_with = "lenient_string")]
        token: Option<String>,
        /// Free-form: JetStart's app sends more than the documented fields; keep all of it.
        #[serde(default)]
        device_info: Option<Value>,
    },
    #[serde(rename = "client:heartbeat")]
    Heartbeat {},
    #[serde(rename = "client:status")]
    Status {
        #[serde(default)]
        status: Value,
        #[serde(default, deserialize_with = "lenient_string")]
        message: Option<String>,
    },
    #[serde(rename = "client:log")]
    Log { log: Value },
    #[serde(rename = "client:disconnect")]
    Disconnect {
        #[serde(default, deserialize_with = "lenient_string")]
        reason: Option<String>,
    },
    /// Any other `type` (e.g. JetStart's `client:click`): ignored, the socket stays open.
    #[serde(other)]
    Unknown,
}

impl ClientMessage {
    /// Decodes one text frame. Only a JSON object is a message: serde would also read a
    /// tagged enum from an array (`["client:connect", id, token, {..}]`), a shape no client
    /// sends and the spec doesn't allow.
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        if !text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{') {
            return Err(serde::de::Error::custom("a message must be a JSON object"));
        }
        serde_json::from_str(text)
    }
}

/// A string field that is `None` when absent, null, or not a string (never a decode error).
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// What a connected client is, from `deviceInfo.role` in its `client:connect` (a jetstart-rs
/// extension: JetStart's clients send no role and are devices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A phone, an emulator, JetStart's web emulator, `jetstart-rs connect`: listed, counted,
    /// its first connection starts the initial build.
    Device,
    /// A follower of events and logs (`jetstart-rs logs`, the browser dashboard): authenticated
    /// like a device but never listed or counted as one, and it starts no build.
    Viewer,
}

impl Role {
    /// The `deviceInfo.role` value that makes a viewer.
    pub const VIEWER: &'static str = "viewer";

    /// Reads the role from a `deviceInfo` as sent: `"viewer"` (any case) is a viewer; anything
    /// else, or nothing, is a device, so that no client becomes invisible by accident.
    pub fn of(device_info: &Value) -> Self {
        match device_info.get("role").and_then(Value::as_str) {
            Some(role) if role.eq_ignore_ascii_case(Self::VIEWER) => Self::Viewer,
            _ => Self::Device,
        }
    }
}

/// Build phases, as in JetStart's `BuildPhase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildPhase {
    Initializing,
    Compiling,
    Packaging,
    Signing,
    Optimizing,
}

/// Progress of a running build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildStatus {
    pub phase: BuildPhase,
    /// 0–100, a best estimate.
    pub progress: u8,
    /// The current task line.
    pub message: String,
    pub timestamp: u64,
}

/// What a device needs to know about a built APK. Unknown values are `null`, never invented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApkInfo {
    pub path: String,
    pub size: u64,
    /// SHA-256 of the file, lowercase hex.
    pub hash: String,
    pub version_code: Option<u64>,
    pub version_name: Option<String>,
    pub min_sdk_version: Option<u32>,
    pub target_sdk_version: Option<u32>,
    pub application_id: Option<String>,
}

/// `details` of `core:build-error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildErrorDetails {
    /// `None` when the build was killed (timeout) or could not start.
    pub exit_code: Option<i32>,
    /// The last lines of output, stdout and stderr interleaved.
    pub log: String,
}

/// `reloadType` of `core:reload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadType {
    Hot,
    Full,
}

/// A message from the server to devices.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum CoreMessage {
    #[serde(rename = "core:connected", rename_all = "camelCase")]
    Connected {
        session_id: String,
        project_name: String,
        client_id: String,
    },
    #[serde(rename = "core:build-start", rename_all = "camelCase")]
    BuildStart { session_id: String },
    #[serde(rename = "core:build-status", rename_all = "camelCase")]
    BuildStatus { session_id: String, status: BuildStatus },
    #[serde(rename = "core:build-complete", rename_all = "camelCase")]
    BuildComplete {
        session_id: String,
        apk_info: ApkInfo,
        download_url: String,
    },
    #[serde(rename = "core:build-error", rename_all = "camelCase")]
    BuildError {
        session_id: String,
        error: String,
        details: BuildErrorDetails,
    },
    #[serde(rename = "core:dex-reload", rename_all = "camelCase")]
    DexReload {
        session_id: String,
        dex_base64: String,
        class_names: Vec<String>,
    },
    #[serde(rename = "core:reload", rename_all = "camelCase")]
    Reload {
        session_id: String,
        reload_type: ReloadType,
    },
    #[serde(rename = "core:log", rename_all = "camelCase")]
    Log { session_id: String, log: Value },
    #[serde(rename = "core:disconnect", rename_all = "camelCase")]
    Disconnect { reason: String },
    /// A jetstart-rs extension, sent only to viewers on this computer (loopback): one `--json`
    /// event (README, `--json` mode), for what JetStart's messages don't carry, such as a hot
    /// reload's timing. Never the `ready` or `session-rotated` events (they hold the token).
    #[serde(rename = "jetstart-rs:event", rename_all = "camelCase")]
    Event { event: Value },
}

#[derive(Serialize)]
struct Stamped<'a> {
    #[serde(flatten)]
    message: &'a CoreMessage,
    timestamp: u64,
}

impl CoreMessage {
    /// Serializes the message with the current `timestamp`, once, for every recipient.
    pub fn encode(&self) -> String {
        // Serializing these types can't fail: every map key is a string and no value is NaN-able.
        serde_json::to_string(&Stamped {
            message: self,
            timestamp: unix_ms(),
        })
        .unwrap_or_else(|e| unreachable!("core message serialization failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn connect_is_lenient_about_shape() {
        let jetstart_app = r#"{"type":"client:connect","sessionId":"abcd1234","token":"t",
            "deviceInfo":{"id":"x","model":"Pixel 7","manufacturer":"Google","architecture":"arm64-v8a",
            "isEmulator":false,"density":2.75}}"#;
        let ClientMessage::Connect {
            session_id,
            token,
            device_info,
        } = ClientMessage::decode(jetstart_app).expect("decodes")
        else {
            panic!("not a connect")
        };
        assert_eq!(session_id.as_deref(), Some("abcd1234"));
        assert_eq!(token.as_deref(), Some("t"));
        assert_eq!(device_info.expect("kept")["manufacturer"], "Google");

        let odd = r#"{"type":"client:connect","sessionId":42,"deviceInfo":"phone"}"#;
        assert_eq!(
            ClientMessage::decode(odd).expect("decodes"),
            ClientMessage::Connect {
                session_id: None,
                token: None,
                device_info: Some(json!("phone"))
            }
        );
    }

    #[test]
    fn only_a_viewer_role_makes_a_viewer() {
        assert_eq!(Role::of(&json!({"role": "viewer", "model": "x"})), Role::Viewer);
        assert_eq!(Role::of(&json!({"role": "Viewer"})), Role::Viewer);
        for device in [
            json!({"model": "Pixel 7"}),
            json!({"role": "device"}),
            json!({"role": "admin"}),
            json!({"role": 1}),
            json!("phone"),
            Value::Null,
        ] {
            assert_eq!(Role::of(&device), Role::Device, "{device}");
        }
    }

    #[test]
    fn unknown_types_and_extra_fields_are_accepted() {
        assert_eq!(
            ClientMessage::decode(r#"{"type":"client:click","action":"x"}"#).expect("decodes"),
            ClientMessage::Unknown
        );
        assert_eq!(
            ClientMessage::decode(r#"{"type":"client:heartbeat","timestamp":1,"extra":[1]}"#)
                .expect("decodes"),
            ClientMessage::Heartbeat {}
        );
        assert!(ClientMessage::decode(r#"{"no":"type"}"#).is_err());
        assert!(ClientMessage::decode(r#"["client:connect","id","token",{}]"#).is_err());
        assert!(ClientMessage::decode(r#"["client:disconnect"]"#).is_err());
        assert_eq!(
            ClientMessage::decode(" \r\n\t{\"type\":\"client:heartbeat\"}").expect("decodes"),
            ClientMessage::Heartbeat {}
        );
        assert!(ClientMessage::decode("garbage").is_err());
    }

    #[test]
    fn core_messages_are_camel_case_with_type_and_timestamp() {
        let msg = CoreMessage::DexReload {
            session_id: "s".into(),
            dex_base64: "AAA=".into(),
            class_names: vec!["com.x.Foo$Bar".into()],
        };
        let value: Value = serde_json::from_str(&msg.encode()).expect("json");
        assert_eq!(value["type"], "core:dex-reload");
        assert_eq!(value["sessionId"], "s");
        assert_eq!(value["dexBase64"], "AAA=");
        assert_eq!(value["classNames"][0], "com.x.Foo$Bar");
        assert!(value["timestamp"].as_u64().expect("timestamp") > 1_600_000_000_000);
    }

    #[test]
    fn apk_info_reports_unknown_values_as_null() {
        let msg = CoreMessage::BuildComplete {
            session_id: "s".into(),
            apk_info: ApkInfo {
                path: "app.apk".into(),
                size: 3,
                hash: "ab".into(),
                version_code: Some(1),
                version_name: None,
                min_sdk_version: Some(24),
                target_sdk_version: None,
                application_id: Some("com.x".into()),
            },
            download_url: "http://h/download/app.apk?token=t".into(),
        };
        let value: Value = serde_json::from_str(&msg.encode()).expect("json");
        assert_eq!(value["apkInfo"]["versionName"], Value::Null);
        assert_eq!(value["apkInfo"]["minSdkVersion"], 24);
        assert_eq!(value["downloadUrl"], "http://h/download/app.apk?token=t");
    }
}
