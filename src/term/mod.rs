//! The terminal experience: what the terminal can show, colours, the build spinner, the banner,
//! device log lines and human text for events; the output thread they all write through.
//!
//! Everything here degrades to plain text: no escape code is written in `--json` mode, when
//! stdout is not a terminal, or when `NO_COLOR` is set.

pub mod banner;
pub mod human;
pub mod logline;
pub mod output;
pub mod progress;
pub mod reporter;
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

/// True if the terminal says its background is light: `COLORFGBG` (set by rxvt, Konsole,
/// iTerm2 and others) as `fg;bg` or `fg;default;bg`, the background one of the light ANSI
/// colours (7 white, 9-15 the bright ones but 8, bright black).
pub fn light_background() -> bool {
    std::env::var("COLORFGBG").is_ok_and(|value| is_light_colorfgbg(&value))
}

fn is_light_colorfgbg(value: &str) -> bool {
    value
        .rsplit(';')
        .next()
        .and_then(|bg| bg.trim().parse::<u8>().ok())
        .is_some_and(|bg| bg == 7 || (9..=15).contains(&bg))
}

/// False when `NO_COLOR` is set to anything non-empty (no-color.org) or `TERM=dumb`.
pub fn color_allowed() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb
}

/// Local wall-clock time of day, `HH:MM:SS`: what the developer's own clock shows, so that
/// server lines and device logs can be matched with what happened on the desk.
pub fn clock(time: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(time)
        .format("%H:%M:%S")
        .to_string()
}

/// The time stamp of the server's own log lines: [`clock`] now.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalClock;

impl tracing_subscriber::fmt::time::FormatTime for LocalClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(&clock(std::time::SystemTime::now()))
    }
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
    fn colorfgbg_names_light_backgrounds() {
        for light in ["0;15", "0;7", "15;default;15", "0;11"] {
            assert!(is_light_colorfgbg(light), "{light}");
        }
        for dark in ["15;0", "7;8", "default;default", "", "15;black"] {
            assert!(!is_light_colorfgbg(dark), "{dark}");
        }
    }

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
