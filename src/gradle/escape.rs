//! Escaping for the three languages the Gradle integration writes: `.properties`, Java string
//! literals, and Groovy double-quoted strings.

use std::fmt::Write;

/// Escapes a `.properties` key or value exactly as `java.util.Properties.store` does, so any
/// Properties reader (which decodes the file as ISO-8859-1) gets the original string back:
/// `\`, `=`, `:`, `#`, `!` and control characters are escaped, spaces are escaped in keys and
/// at the start of values, and everything outside printable ASCII becomes `\uXXXX` UTF-16 units
/// (a surrogate pair for characters beyond the BMP).
pub fn properties(text: &str, is_key: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            ' ' if i == 0 || is_key => out.push_str("\\ "),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => push_utf16_escapes(&mut out, c, true),
        }
    }
    out
}

/// A Java string literal (quotes included) holding `text`, pure printable ASCII.
///
/// Control characters use the named or octal escapes, never `\uXXXX`: Java translates unicode
/// escapes before lexing, so `\u000a` would end the line inside the literal. Other non-ASCII
/// characters use `\uXXXX` UTF-16 units, which is safe for them.
pub fn java_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\0'..='\u{1f}' | '\u{7f}' => {
                // Writing to a String can't fail.
                let _ = write!(out, "\\{:03o}", u32::from(c));
            }
            ' '..='~' => out.push(c),
            _ => push_utf16_escapes(&mut out, c, false),
        }
    }
    out.push('"');
    out
}

/// The body of a Groovy double-quoted string (without the quotes) that evaluates to `text`:
/// `\`, `"` and `$` (GString interpolation) are escaped.
pub fn groovy_double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn push_utf16_escapes(out: &mut String, c: char, upper: bool) {
    for unit in c.encode_utf16(&mut [0u16; 2]) {
        // Writing to a String can't fail.
        let _ = if upper {
            write!(out, "\\u{unit:04X}")
        } else {
            write!(out, "\\u{unit:04x}")
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_values_match_java_store() {
        assert_eq!(properties("ws://10.0.0.2:8766", false), "ws\\://10.0.0.2\\:8766");
        assert_eq!(properties("a=b#c!d", false), "a\\=b\\#c\\!d");
        assert_eq!(properties(r#"my "app" \ x"#, false), r#"my "app" \\ x"#);
        assert_eq!(properties("  lead", false), "\\  lead");
        assert_eq!(properties("a b", true), "a\\ b");
        assert_eq!(properties("l1\nl2\r\t\u{c}", false), "l1\\nl2\\r\\t\\f");
        assert_eq!(properties("\u{1}\u{7f}", false), "\\u0001\\u007F");
        assert_eq!(properties("café", false), "caf\\u00E9");
        assert_eq!(properties("🚀", false), "\\uD83D\\uDE80");
    }

    #[test]
    fn java_literals_are_ascii_and_safe_from_unicode_preprocessing() {
        assert_eq!(java_literal("ws://h:1"), r#""ws://h:1""#);
        assert_eq!(java_literal(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(java_literal("a\nb\r\t\u{8}\u{c}"), r#""a\nb\r\t\b\f""#);
        assert_eq!(java_literal("\u{0}\u{1f}\u{7f}"), r#""\000\037\177""#);
        assert_eq!(java_literal("é🚀"), r#""\u00e9\ud83d\ude80""#);
        assert_eq!(java_literal(""), r#""""#);
        // A literal backslash before `u` stays an even run, so Java doesn't read a unicode escape.
        assert_eq!(java_literal(r"\u0022"), r#""\\u0022""#);
    }

    #[test]
    fn groovy_strings_escape_interpolation() {
        assert_eq!(groovy_double_quoted(r#""a$b\""#), r#"\"a\$b\\\""#);
        assert_eq!(groovy_double_quoted("plain"), "plain");
    }
}
