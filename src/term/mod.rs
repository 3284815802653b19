//! The terminal experience: what the terminal can show, colours, the build spinner, shortcuts.
//!
//! Everything here degrades to plain text: no escape code is written in `--json` mode, when
//! stdout is not a terminal, or when `NO_COLOR` is set.

pub mod keys;
pub mod logline;
pub mod output;
pub mod progress;
pub mod sanitize;
pub mod style;

use std::io::IsTerminal;

pub use progress::Progress;
pub use style::Style;

/// What human output may use on this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    /// ANSI colours on stdout.
    pub color: bool,
    /// ANSI colours on stderr (device logs); also needs stdout to be a terminal.
    pub color_stderr: bool,
    /// Redrawn lines (the build spinner): stdout is an interactive terminal.
    pub animate: bool,
}

impl Caps {
    /// Detects what the terminal supports. `json` turns everything off: stdout is for machines.
    pub fn detect(json: bool) -> Self {
        if json || !std::io::stdout().is_terminal() {
            return Self::default();
        }
        let color = color_allowed();
        Self {
            color,
            color_stderr: color && std::io::stderr().is_terminal(),
            animate: true,
        }
    }
}

/// False when `NO_COLOR` is set to anything non-empty (no-color.org) or `TERM=dumb`.
pub fn color_allowed() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb
}

/// Wall-clock time of day, `HH:MM:SS` (UTC: the standard library knows no time zones, and
/// device timestamps are compared with each other, not with the wall clock).
pub fn clock(time: std::time::SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.get(11..19).unwrap_or(&text).to_owned()
}

/// A byte count for people: `812 B`, `12.3 KB`, `1.2 MB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    // Precision loss is irrelevant for display.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration for people: `850ms`, `3.4s`, `2m 05s`.
pub fn human_duration(duration: std::time::Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{}.{}s", ms / 1000, (ms % 1000) / 100),
        _ => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(12_345), "12.3 KB");
        assert_eq!(human_bytes(1_200_000), "1.2 MB");
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(3_456)), "3.4s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m 05s");
    }

    #[test]
    fn json_mode_disables_everything() {
        assert_eq!(Caps::detect(true), Caps::default());
    }
}
