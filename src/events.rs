//! The `--json` events: what the server reports to whoever runs it, one JSON object a line on
//! stdout in `--json` mode (README, "`--json` mode"), and the same events as human lines.
//! A leaf: the schema only, no output.

use serde::Serialize;
use serde_json::Value;

use crate::protocol::{ApkInfo, Role};

/// Credentials as shown in `ready` and `session-rotated`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub token: String,
    pub project_name: String,
}

/// Full build or DEX hot reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildKind {
    Full,
    Hot,
}

/// What started a build. A new kind of request is a variant here and its words in
/// `term::human::subject`; its source calls `builder::artifacts::Requests::request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Saved files (`files`).
    Save,
    /// The `b` shortcut.
    Manual,
    /// The first device connected and this run has built no APK yet.
    FirstDevice,
}

/// One `--json` event. Human mode renders the same events as log lines.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    #[serde(rename_all = "camelCase")]
    Ready {
        session: SessionView,
        host: String,
        http_port: u16,
        ws_port: u16,
        qr: String,
    },
    #[serde(rename_all = "camelCase")]
    ClientConnected {
        client_id: String,
        device_info: Value,
        addr: String,
        role: Role,
    },
    #[serde(rename_all = "camelCase")]
    ClientRejected {
        /// A close code, or 403 for a browser refused for its `Origin` before any WebSocket.
        code: u16,
        reason: String,
        addr: String,
        /// The refused browser origin.
        #[serde(skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    ClientDisconnected {
        client_id: String,
        code: Option<u16>,
        reason: String,
        role: Role,
    },
    #[serde(rename_all = "camelCase")]
    BuildStart {
        kind: BuildKind,
        trigger: Trigger,
        files: Vec<String>,
    },
    /// A build was due but none can run (no build command): said for every save.
    #[serde(rename_all = "camelCase")]
    BuildSkipped {
        trigger: Trigger,
        files: Vec<String>,
        reason: String,
    },
    #[serde(rename_all = "camelCase")]
    BuildComplete {
        apk_info: ApkInfo,
        download_url: String,
        duration_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    BuildError {
        error: String,
        exit_code: Option<i32>,
        duration_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    DexReload {
        /// The saved files.
        files: Vec<String>,
        class_names: Vec<String>,
        bytes: usize,
        /// Devices the patch was sent to.
        devices: usize,
        /// Save to broadcast, tools included.
        duration_ms: u64,
        /// Time spent in the Kotlin compiler.
        compile_ms: u64,
        /// Time spent in d8.
        dex_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    SessionRotated {
        session: SessionView,
        qr: String,
        reason: String,
    },
    Stopped {},
}
