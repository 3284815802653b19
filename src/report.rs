//! What the server tells whoever runs it: the pairing banner and events, as human text or
//! as newline-delimited JSON on stdout (`--json`, SPEC §6).

use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use serde_json::Value;

use crate::pairing::{qr, Pairing};
use crate::protocol::{ApkInfo, Role};
use crate::term::{self, Caps, Progress, Style};

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

/// What started a build, besides saved files.
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

/// How a build's cause reads in the terminal: the saved files' names (`MainActivity.kt`,
/// `A.kt, B.kt and 2 more`), or what asked for it.
pub fn subject(trigger: Trigger, files: &[String]) -> String {
    match trigger {
        Trigger::Manual => "rebuild requested".to_owned(),
        Trigger::FirstDevice => "first device connected".to_owned(),
        Trigger::Save => {
            const SHOWN: usize = 3;
            let names: Vec<&str> = files
                .iter()
                .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f))
                .collect();
            match names.len() {
                0 => "files saved".to_owned(),
                n if n <= SHOWN => names.join(", "),
                n => format!("{} and {} more", names[..SHOWN - 1].join(", "), n - (SHOWN - 1)),
            }
        }
    }
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

/// Where pairing details and events go. Cheap to share behind an `Arc`.
pub struct Reporter {
    json: bool,
    show_qr: bool,
    /// The terminal's background is light: the QR code is drawn the other way round.
    qr_light_background: bool,
    /// What the terminal can show (colours, spinner); all off in `--json` mode.
    caps: Caps,
    /// The running build's spinner.
    progress: Mutex<Option<Progress>>,
    /// The keyboard-shortcut hint shown under the banner, once shortcuts are on.
    hint: OnceLock<String>,
    /// Also given every event: the hub's feed to viewers on this computer (the dashboard).
    tap: OnceLock<EventTap>,
}

/// A receiver of every event, besides the terminal and `--json` output.
pub type EventTap = Box<dyn Fn(&Event) + Send + Sync>;

impl Reporter {
    pub fn new(json: bool, show_qr: bool) -> Self {
        Self {
            json,
            show_qr,
            qr_light_background: false,
            caps: Caps::detect(json),
            progress: Mutex::new(None),
            hint: OnceLock::new(),
            tap: OnceLock::new(),
        }
    }

    /// Draws the terminal QR code for a light background (`--qr-invert`, or `COLORFGBG`).
    pub fn with_light_background(mut self, light: bool) -> Self {
        self.qr_light_background = light;
        self
    }

    /// Gives every event from now on to `tap` as well (set once; later calls are ignored).
    pub fn set_tap(&self, tap: EventTap) {
        let _ = self.tap.set(tap);
    }

    /// Shows `hint` (one line) under every banner from now on.
    pub fn set_hint(&self, hint: String) {
        let _ = self.hint.set(hint);
    }

    /// Prints human text on stdout (nothing in `--json` mode, where stdout is for events).
    pub fn print(&self, text: &str) {
        if !self.json {
            self.write_stdout(text);
        }
    }

    /// True in `--json` mode.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Reports an event: a human log line on stderr and, in `--json` mode, one JSON line on stdout.
    pub fn emit(&self, event: Event) {
        // On a terminal, builds get a spinner and a result line instead of log lines.
        if !(self.caps.animate && term::progress::show(&self.progress, &event, self.caps)) {
            log_human(&event);
        }
        if self.json {
            // Event serialization can't fail: string keys only.
            // Device-supplied text (deviceInfo) is escaped beyond what JSON requires.
            let line = term::sanitize::json_line(&event).unwrap_or_default();
            self.write_stdout(&format!("{line}\n"));
        }
        if let Some(tap) = self.tap.get() {
            tap(&event);
        }
    }

    /// Prints the pairing banner: QR code (unless `--no-qr`), URLs, project and credentials.
    /// In `--json` mode nothing is printed (the `ready` event carries it all).
    pub fn banner(&self, pairing: &Pairing<'_>) {
        if self.json {
            return;
        }
        let qr = self.show_qr.then(|| QrLayout {
            light_background: self.qr_light_background,
            // Only a terminal has a width to fit; a pipe or file takes any line.
            columns: self
                .caps
                .animate
                .then(|| crossterm::terminal::size().ok().map(|(columns, _)| columns))
                .flatten(),
        });
        let mut text = banner_text(pairing, qr);
        if let Some(hint) = self.hint.get() {
            text.push_str(&format!("\n{hint}\n"));
        }
        self.write_stdout(&text);
    }

    /// Prints a device log line (`client:log`) on stderr: time, level, tag, device, message,
    /// coloured by level on a terminal.
    pub fn device_log(&self, device: &str, log: &Value) {
        let style = Style::new(self.caps.color_stderr);
        let line = term::logline::format(log, Some(device), style);
        term::output::print_stderr(&format!("{line}\n"));
    }

    fn write_stdout(&self, text: &str) {
        // One message to the output thread per line or banner: they never interleave.
        term::output::print_stdout(text);
    }
}

/// How the banner's QR code is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrLayout {
    /// Dark modules drawn as blocks, for a light terminal background.
    pub light_background: bool,
    /// The terminal's width, when known: a QR code wider than that would wrap into noise.
    pub columns: Option<u16>,
}

/// The human pairing banner; `qr` is `None` with `--no-qr`.
pub fn banner_text(pairing: &Pairing<'_>, qr: Option<QrLayout>) -> String {
    let mut text = String::from("\n");
    if let Some(layout) = qr {
        let payload = pairing.payload();
        let needed = qr::terminal_width(&payload).unwrap_or(0);
        match layout.columns.map(usize::from) {
            Some(columns) if columns < needed => text.push_str(&format!(
                "(This terminal is {columns} columns wide and the QR code needs {needed}: widen it, \
                 or open http://localhost:{} on this computer and scan it there.)\n",
                pairing.http_port
            )),
            _ => match qr::terminal(&payload, layout.light_background) {
                Ok(block) => text.push_str(&block),
                Err(e) => text.push_str(&format!("(QR code unavailable: {e:#})\n")),
            },
        }
        text.push('\n');
    }
    let host = url_host(pairing.host);
    let port = pairing.http_port;
    // A loopback host (the fallback when no LAN address was found, or asked for) would repeat the
    // Local line and suggest phones can use it; say what to do instead.
    let network = if is_loopback_host(pairing.host) {
        format!(
            "none ({} is reachable from this computer only; pass --host <LAN address> for phones)",
            pairing.host
        )
    } else {
        format!("http://{host}:{port}")
    };
    text.push_str(&format!(
        "  Local:    http://localhost:{port}\n  Network:  {network}\n  \
         Socket:   ws://{host}:{ws_port}\n  Project:  {name}\n\n\
         Session: {id}\nToken: {token}\n\n\
         Scan the QR code with the JetStart app, or open http://localhost:{port} on this computer.\n",
        ws_port = pairing.ws_port,
        name = pairing.project_name,
        id = pairing.session_id,
        token = pairing.token,
    ));
    text
}

/// True for `localhost` and loopback IP literals: addresses no phone can reach.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A host as it goes into a URL: IPv6 literals get brackets.
pub fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn log_human(event: &Event) {
    match event {
        Event::Ready { .. } | Event::SessionRotated { .. } | Event::Stopped {} => {}
        Event::ClientConnected {
            client_id,
            device_info,
            addr,
            role,
        } => {
            let model = device_name(device_info);
            match role {
                Role::Device => tracing::info!("device connected: {model} ({client_id}, {addr})"),
                // The dashboard opens one on every page load: not worth a line of its own.
                Role::Viewer => tracing::debug!("viewer connected: {model} ({client_id}, {addr})"),
            }
        }
        Event::ClientRejected {
            code,
            reason,
            addr,
            origin: None,
        } => {
            tracing::warn!(code, %addr, "Rejected client: {reason}");
        }
        Event::ClientRejected {
            addr,
            origin: Some(origin),
            ..
        } => {
            tracing::warn!(
                %addr,
                "Rejected a browser from {origin}: origin not allowed; to let it connect, \
                 restart with --allow-origin {origin}"
            );
        }
        Event::ClientDisconnected {
            client_id,
            reason,
            role,
            ..
        } => match role {
            Role::Device => tracing::info!("device disconnected: {client_id} ({reason})"),
            Role::Viewer => tracing::debug!("viewer disconnected: {client_id} ({reason})"),
        },
        Event::BuildStart {
            kind: BuildKind::Full,
            trigger,
            files,
        } => tracing::info!("{} → full build", subject(*trigger, files)),
        Event::BuildStart {
            kind: BuildKind::Hot,
            files,
            ..
        } => tracing::debug!("{} → hot reload", subject(Trigger::Save, files)),
        Event::BuildSkipped {
            trigger,
            files,
            reason,
        } => tracing::info!("{} → {reason}", subject(*trigger, files)),
        Event::BuildComplete {
            apk_info,
            duration_ms,
            ..
        } => {
            tracing::info!("build finished in {} ({} bytes)", ms(*duration_ms), apk_info.size);
        }
        Event::BuildError {
            error, duration_ms, ..
        } => {
            tracing::error!("build failed after {}: {error}", ms(*duration_ms));
        }
        Event::DexReload {
            files,
            devices,
            duration_ms,
            compile_ms,
            dex_ms,
            ..
        } => {
            tracing::info!(
                "{} → hot reload → {devices} device{} in {duration_ms} ms (compile {compile_ms}, dex {dex_ms})",
                subject(Trigger::Save, files),
                if *devices == 1 { "" } else { "s" }
            );
        }
    }
}

/// The device's model for the terminal, made printable: the device chooses it, so it may hold
/// escape sequences or line breaks.
fn device_name(device_info: &Value) -> String {
    let model = device_info
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("device");
    term::sanitize::shown(model, term::sanitize::FIELD_MAX)
}

fn ms(duration_ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(duration_ms)).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pairing(host: &str) -> Pairing<'_> {
        Pairing {
            host,
            http_port: 8765,
            ws_port: 8766,
            session_id: "a1b2c3d4",
            token: "Zk3abcdefghijklmnopqrs",
            project_name: "demo",
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{text}"))
    }

    #[test]
    fn a_build_cause_reads_as_file_names_or_what_asked_for_it() {
        let files = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            subject(Trigger::Save, &files(&["app/src/main/java/a/MainActivity.kt"])),
            "MainActivity.kt"
        );
        assert_eq!(
            subject(Trigger::Save, &files(&["a/A.kt", "b/B.xml"])),
            "A.kt, B.xml"
        );
        assert_eq!(
            subject(Trigger::Save, &files(&["A.kt", "B.kt", "C.kt", "D.kt", "E.kt"])),
            "A.kt, B.kt and 3 more"
        );
        assert_eq!(subject(Trigger::Manual, &files(&["A.kt"])), "rebuild requested");
        assert_eq!(subject(Trigger::FirstDevice, &[]), "first device connected");
        let start = Event::BuildStart {
            kind: BuildKind::Full,
            trigger: Trigger::FirstDevice,
            files: Vec::new(),
        };
        let json: Value = serde_json::from_str(&serde_json::to_string(&start).expect("json")).expect("json");
        assert_eq!(
            json,
            json!({"event": "build-start", "kind": "full", "trigger": "first-device", "files": []})
        );
    }

    #[test]
    fn a_terminal_too_narrow_for_the_qr_code_gets_a_line_instead() {
        let layout = |columns| {
            Some(QrLayout {
                light_background: false,
                columns,
            })
        };
        let narrow = banner_text(&pairing("192.168.1.5"), layout(Some(36)));
        assert!(!narrow.contains('█'), "no QR code:\n{narrow}");
        let line = line(&narrow, "(This terminal is 36 columns wide");
        assert!(line.contains("open http://localhost:8765"), "{line}");
        for wide in [layout(Some(200)), layout(None)] {
            assert!(banner_text(&pairing("192.168.1.5"), wide).contains('█'));
        }
    }

    #[test]
    fn banner_lists_the_network_url_of_a_lan_host() {
        let text = banner_text(&pairing("192.168.1.5"), None);
        assert_eq!(line(&text, "  Network:"), "  Network:  http://192.168.1.5:8765");
        assert_eq!(line(&text, "  Local:"), "  Local:    http://localhost:8765");
        assert_eq!(line(&text, "Session: "), "Session: a1b2c3d4");
        assert_eq!(line(&text, "Token: "), "Token: Zk3abcdefghijklmnopqrs");
    }

    #[test]
    fn banner_says_there_is_no_network_url_for_a_loopback_host() {
        for host in ["127.0.0.1", "::1", "localhost"] {
            let text = banner_text(&pairing(host), None);
            let network = line(&text, "  Network:");
            assert!(
                network.starts_with("  Network:  none (") && network.contains("--host"),
                "{network}"
            );
            assert!(!network.contains("http://"), "{network}");
            assert!(text.contains("\nSession: a1b2c3d4\nToken: Zk3abcdefghijklmnopqrs\n"));
            assert!(line(&text, "  Socket:").contains(":8766"));
        }
        assert!(!is_loopback_host("192.168.1.5") && !is_loopback_host("my-laptop.local"));
        assert!(is_loopback_host("[::1]") && is_loopback_host("127.8.9.10"));
    }

    #[test]
    fn device_names_are_printable() {
        let evil = json!({"model": "Pixel\x1b[2J\x1b[H\n INFO device connected: fake\r"});
        let name = device_name(&evil);
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert_eq!(name, "Pixel [2J [H  INFO device connected: fake ");
        assert_eq!(device_name(&json!({"model": "Pixel 7"})), "Pixel 7");
        assert_eq!(device_name(&json!({"model": 7})), "device");
        assert_eq!(device_name(&json!({})), "device");
    }
}
