//! Device log lines (`client:log` / `core:log`): levels, filtering and one-line rendering.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{clock, Style};
use crate::sanitize::{cut, cut_note, printable, shown, FIELD_MAX, LINE_MAX};

/// Android log priorities, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Verbose,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// Parses a level name, case-insensitively, including Logcat's one-letter forms.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "verbose" | "v" | "trace" => Self::Verbose,
            "debug" | "d" => Self::Debug,
            "info" | "i" => Self::Info,
            "warn" | "warning" | "w" => Self::Warn,
            "error" | "e" => Self::Error,
            "fatal" | "assert" | "wtf" | "f" | "a" => Self::Fatal,
            _ => return None,
        })
    }

    /// JetStart's `LogLevel` name for the level (lowercase).
    pub fn name(self) -> &'static str {
        match self {
            Self::Verbose => "verbose",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Fatal => "fatal",
        }
    }
}

/// Which log lines to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Show this level and above. Lines with an unknown level are always shown: hiding what
    /// we can't classify could hide the one line that matters.
    pub min_level: Option<Level>,
    /// Show only this tag (case-insensitive exact match).
    pub tag: Option<String>,
}

impl Filter {
    /// True if the `log` object passes the filter.
    pub fn accepts(&self, log: &Value) -> bool {
        let field = |name: &str| log.get(name).and_then(Value::as_str);
        if let Some(min) = self.min_level {
            if let Some(level) = field("level").and_then(Level::parse) {
                if level < min {
                    return false;
                }
            }
        }
        match &self.tag {
            Some(tag) => field("tag").is_some_and(|t| t.eq_ignore_ascii_case(tag)),
            None => true,
        }
    }
}

/// Starts a multi-line message's further lines (a stack trace's `at …` lines): indented, and
/// marked, so that a device's line can never pass for one of the server's (`Token: …`).
const CONTINUATION: &str = "  │ ";

/// `12:04:05 warn    MainActivity [Pixel 7] message`; the device part only when given. A
/// message of several lines keeps them, each further line indented under the first and made
/// printable like the rest (so a device still can't fake a line of its own: every line it adds
/// starts with the indent). The message as a whole is cut to [`LINE_MAX`] characters.
pub fn format(log: &Value, device: Option<&str>, style: Style) -> String {
    let text = |name: &str, max| shown(log.get(name).and_then(Value::as_str).unwrap_or(""), max);
    let field = |name: &str| text(name, FIELD_MAX);
    let level = match field("level").as_str() {
        "" => "info".to_owned(),
        level => level.to_ascii_lowercase(),
    };
    let time = log
        .get("timestamp")
        .and_then(Value::as_u64)
        .map_or_else(SystemTime::now, |ms| UNIX_EPOCH + Duration::from_millis(ms));
    let device = device.map_or_else(String::new, |d| {
        format!(" {}", style.dim(&format!("[{}]", shown(d, FIELD_MAX))))
    });
    let message = log.get("message").and_then(Value::as_str).unwrap_or("");
    let (kept, left_out) = cut(message, LINE_MAX);
    let mut lines = kept.lines();
    let first = printable(lines.next().unwrap_or(""));
    let mut rest: String = lines
        .map(|line| format!("\n{CONTINUATION}{}", printable(line)))
        .collect();
    rest.push_str(&cut_note(left_out));
    format!(
        "{} {} {}{device} {first}{rest}",
        style.dim(&clock(time)),
        style.level(&level),
        style.cyan(&field("tag")),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filter(level: &str, tag: Option<&str>) -> Filter {
        Filter {
            min_level: Level::parse(level),
            tag: tag.map(str::to_owned),
        }
    }

    #[test]
    fn levels_are_ordered_and_case_insensitive() {
        assert!(Level::Verbose < Level::Debug && Level::Debug < Level::Info);
        assert!(Level::Info < Level::Warn && Level::Warn < Level::Error && Level::Error < Level::Fatal);
        assert_eq!(Level::parse("WARN"), Some(Level::Warn));
        assert_eq!(Level::parse("Warning"), Some(Level::Warn));
        assert_eq!(Level::parse("e"), Some(Level::Error));
        assert_eq!(Level::parse("loud"), None);
    }

    #[test]
    fn level_filter_keeps_that_level_and_above_and_unknown_ones() {
        let warn = filter("warn", None);
        assert!(warn.accepts(&json!({"level": "warn", "message": "x"})));
        assert!(warn.accepts(&json!({"level": "ERROR"})));
        assert!(warn.accepts(&json!({"level": "fatal"})));
        assert!(!warn.accepts(&json!({"level": "info"})));
        assert!(!warn.accepts(&json!({"level": "Debug"})));
        assert!(warn.accepts(&json!({"level": "loud"})));
        assert!(warn.accepts(&json!({"message": "no level"})));
        assert!(Filter::default().accepts(&json!({"level": "verbose"})));
    }

    #[test]
    fn tag_filter_is_exact_and_case_insensitive() {
        let tag = filter("", Some("MainActivity"));
        assert!(tag.accepts(&json!({"tag": "mainactivity"})));
        assert!(!tag.accepts(&json!({"tag": "MainActivity2"})));
        assert!(!tag.accepts(&json!({"level": "error"})));
    }

    /// The local time of day of Unix time 0, as [`clock`] prints it here.
    fn epoch() -> String {
        clock(UNIX_EPOCH)
    }

    #[test]
    fn formats_a_plain_line() {
        let log = json!({"level": "WARN", "tag": "Net", "message": "slow response\x1b[31m",
                         "timestamp": 0});
        let line = format(&log, Some("Pixel 7"), Style::new(false));
        assert_eq!(
            line,
            format!("{} warn    Net [Pixel 7] slow response [31m", epoch())
        );
    }

    #[test]
    fn a_multi_line_message_keeps_its_lines_indented_and_printable() {
        let trace =
            "java.lang.IllegalStateException: boom\r\n\tat a.B.c(B.kt:3)\n\tat a.B.d(B.kt:9)\x1b[2J\n";
        let log = json!({"level": "error", "tag": "App", "message": trace, "timestamp": 0});
        let text = format(&log, None, Style::new(false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                format!("{} error   App java.lang.IllegalStateException: boom", epoch()).as_str(),
                "  │ \tat a.B.c(B.kt:3)",
                "  │ \tat a.B.d(B.kt:9) [2J",
            ]
        );
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{text:?}"
        );
    }

    #[test]
    fn printable_replaces_every_control_character_but_tab() {
        use crate::sanitize::printable;
        assert_eq!(
            printable("a\x1b[2Jb\r\nc\u{9b}31md\u{7f}e\tf"),
            "a [2Jb  c 31md e\tf"
        );
        assert_eq!(printable("Pixel 7 — café"), "Pixel 7 — café");
    }

    #[test]
    fn device_supplied_device_level_and_tag_are_printable_too() {
        let log = json!({"level": "warn\x1b[0m", "tag": "T\nag", "message": "m", "timestamp": 0});
        let line = format(&log, Some("Evil\x1b]0;title\x07\nINFO fake"), Style::new(false));
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert_eq!(
            line,
            format!("{} warn [0m T ag [Evil ]0;title  INFO fake] m", epoch())
        );
    }
}
