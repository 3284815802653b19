//! Where events and the banner go: human text on the terminal (a spinner and result lines for
//! builds when stdout is one), and the `--json` lines on stdout; every event also to a tap (the
//! hub's feed to the dashboard).

use parking_lot::Mutex;
use std::sync::OnceLock;

use serde_json::Value;

use super::banner::{banner_text, QrLayout};
use super::human::log_human;
use super::{Caps, Progress, Style};
use crate::events::Event;
use crate::pairing::Pairing;

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
        if !(self.caps.animate && super::progress::show(&self.progress, &event, self.caps)) {
            log_human(&event);
        }
        if self.json {
            // Event serialization can't fail: string keys only.
            // Device-supplied text (deviceInfo) is escaped beyond what JSON requires.
            let line = crate::sanitize::json_line(&event).unwrap_or_default();
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
        let line = super::logline::format(log, Some(device), style);
        super::output::print_stderr(&format!("{line}\n"));
    }

    fn write_stdout(&self, text: &str) {
        // One message to the output thread per line or banner: they never interleave.
        super::output::print_stdout(text);
    }
}
