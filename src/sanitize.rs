//! The one place where text a device chose (its model and platform, log lines, status messages,
//! disconnect reasons) is made safe for every output: the terminal, the pairing page and the
//! `--json` events. A device must not be able to move the cursor, recolour or clear the screen,
//! write the clipboard (OSC 52), set the window title, forge a line of its own (a fake `Token:`
//! line) or reorder what is shown with bidirectional controls.

use std::io;

use serde::Serialize;

/// Characters of one short device field (model, platform, tag) shown in the terminal or on the
/// pairing page: a model name is a few dozen.
pub const FIELD_MAX: usize = 64;
/// Characters of one device log message shown in the terminal. Longer ones are cut (the full
/// text still reaches the devices as `core:log`): a 1 MiB line is unreadable on a terminal and
/// would hold a megabyte of memory per line while the terminal is paused.
pub const LINE_MAX: usize = 2000;

/// True for characters that change how text is displayed rather than being displayed: C0 and C1
/// controls, DEL, and Unicode's invisible format and bidirectional controls.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `text` with every unsafe character but tab replaced by a space: one printable line.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c != '\t' && is_unsafe(c) { ' ' } else { c })
        .collect()
}

/// [`printable`], cut to `max` characters with a note of how much was left out.
pub fn shown(text: &str, max: usize) -> String {
    let (kept, left_out) = cut(text, max);
    format!("{}{}", printable(kept), cut_note(left_out))
}

/// `text` cut to its first `max` characters, and how many characters were left out.
pub fn cut(text: &str, max: usize) -> (&str, usize) {
    match text.char_indices().nth(max) {
        Some((at, _)) => (&text[..at], text[at..].chars().count()),
        None => (text, 0),
    }
}

/// What follows a text [`cut`] short: `… (N more characters)`, or nothing if nothing was.
pub fn cut_note(left_out: usize) -> String {
    if left_out == 0 {
        String::new()
    } else {
        format!("… ({left_out} more characters)")
    }
}

/// `value` as one line of JSON in which every unsafe character is escaped (`\u009b`), not only
/// the C0 controls JSON requires: a `--json` reader that prints a string field as it is still
/// shows nothing a device smuggled in, and parsing gives back the exact text.
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, EscapeUnsafe);
    value.serialize(&mut serializer)?;
    // serde_json writes UTF-8 only; the fallback never runs.
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// serde_json's compact formatter, escaping [`is_unsafe`] characters as well.
struct EscapeUnsafe;

impl serde_json::ser::Formatter for EscapeUnsafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Every trick from the issue: OSC 52, a window title, clear screen, a forged line, C1 CSI,
    /// DEL, a right-to-left override.
    const EVIL: &str =
        "Pixel\x1b]52;c;ZXZpbA==\x07\x1b]0;title\x07\x1b[2J\nToken: forged\r\u{9b}31m\u{7f}\u{202e}kcab";

    #[test]
    fn printable_leaves_one_plain_line() {
        let text = printable(EVIL);
        assert!(!text.chars().any(is_unsafe), "{text:?}");
        assert!(!text.contains('\n') && !text.contains('\x1b'));
        assert_eq!(printable("Pixel 7 — café\tx"), "Pixel 7 — café\tx");
    }

    #[test]
    fn long_text_is_cut_with_a_note() {
        assert_eq!(shown("abcdef", 6), "abcdef");
        assert_eq!(shown("abcdef\x1b", 3), "abc… (4 more characters)");
        assert_eq!(shown(&"é".repeat(10), 4), "éééé… (6 more characters)");
    }

    #[test]
    fn json_lines_escape_every_unsafe_character_and_parse_back_exactly() {
        let value = json!({"model": EVIL, "ok": "café ✓"});
        let line = json_line(&value).expect("serialize");
        assert!(!line.chars().any(is_unsafe), "{line:?}");
        assert!(line.contains("\\u009b") && line.contains("\\u202e") && line.contains("café ✓"));
        let back: serde_json::Value = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, value);
        assert_eq!(json_line(&json!({"a": 1})).expect("serialize"), r#"{"a":1}"#);
    }
}
