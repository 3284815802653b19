//! A reader for Java `.properties` files (the format of `.jetstart/session.properties`).
//!
//! Follows `java.util.Properties.load`: `#`/`!` comments, `=`, `:` or whitespace separators,
//! backslash line continuations, and the escapes `\t \n \r \f \uXXXX` (any other escaped
//! character stands for itself, e.g. `\:` and `\=` as Java's `store` writes them).

use std::collections::HashMap;

/// Parses `.properties` text into keys and values; later keys win, as in Java.
pub fn parse(text: &str) -> HashMap<String, String> {
    let mut props = HashMap::new();
    for line in logical_lines(text) {
        let (key, value) = split(&line);
        props.insert(unescape(key), unescape(value));
    }
    props
}

/// Joins continued lines, drops comments and blank lines, strips leading whitespace.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let raw = raw.trim_start_matches([' ', '\t', '\u{c}']);
        let line = match current.take() {
            Some(mut joined) => {
                joined.push_str(raw);
                joined
            }
            None if raw.is_empty() || raw.starts_with(['#', '!']) => continue,
            None => raw.to_owned(),
        };
        if ends_with_odd_backslashes(&line) {
            current = Some(line[..line.len() - 1].to_owned());
        } else {
            lines.push(line);
        }
    }
    lines.extend(current);
    lines
}

fn ends_with_odd_backslashes(line: &str) -> bool {
    line.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace (whitespace around it is skipped).
fn split(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if matches!(c, '=' | ':' | ' ' | '\t' | '\u{c}') {
            let key = &line[..i];
            let rest = line[i..].trim_start_matches([' ', '\t', '\u{c}']);
            // One `=` or `:` may follow the key (after whitespace); it's not part of the value.
            let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
            return (key, rest.trim_start_matches([' ', '\t', '\u{c}']));
        }
    }
    (line, "")
}

/// Undoes the escapes. Like Java, it builds UTF-16: a character beyond the Basic Multilingual
/// Plane is written as a surrogate pair of `\uXXXX` escapes (`\uD83D\uDE80` for 🚀), whose
/// halves only mean something together. A lone half becomes U+FFFD.
fn unescape(text: &str) -> String {
    let mut units: Vec<u16> = Vec::with_capacity(text.len());
    let push = |c: char, units: &mut Vec<u16>| units.extend_from_slice(c.encode_utf16(&mut [0; 2]));
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            push(c, &mut units);
            continue;
        }
        match chars.next() {
            Some('t') => push('\t', &mut units),
            Some('n') => push('\n', &mut units),
            Some('r') => push('\r', &mut units),
            Some('f') => push('\u{c}', &mut units),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u16::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 4) {
                    Some(unit) => {
                        units.push(unit);
                        chars.nth(3);
                    }
                    // Java throws on a malformed \u; being a reader of our own file, keep the text.
                    None => push('u', &mut units),
                }
            }
            Some(other) => push(other, &mut units),
            None => {}
        }
    }
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_java_store_writes() {
        let props = parse(
            "#Tue Jan 02 10:00:00 UTC 2024\n! also a comment\n\n\
             serverUrl=ws\\://192.168.1.5\\:8766\n  token = abc\\=def\nname:Caf\\u00e9\n\
             spaced  value here\ntabs\\tin=a\\tb\\\\c\nempty=\nlone\n",
        );
        assert_eq!(props["serverUrl"], "ws://192.168.1.5:8766");
        assert_eq!(props["token"], "abc=def");
        assert_eq!(props["name"], "Café");
        assert_eq!(props["spaced"], "value here");
        assert_eq!(props["tabs\tin"], "a\tb\\c");
        assert_eq!(props["empty"], "");
        assert_eq!(props["lone"], "");
        assert_eq!(props.len(), 7);
    }

    #[test]
    fn joins_continuation_lines_and_handles_crlf() {
        let props = parse("long=one \\\r\n    two\r\nnext=\\\\\r\nlast=x\\\n");
        assert_eq!(props["long"], "one two");
        assert_eq!(props["next"], "\\");
        assert_eq!(props["last"], "x");
    }

    /// What the session file writer (`gradle::escape`) writes, read back: characters beyond
    /// the Basic Multilingual Plane travel as surrogate pairs.
    #[test]
    fn round_trips_what_the_session_file_writer_writes() {
        for value in [
            "🚀 rocket",
            "café — ünïcode",
            "a=b:c #!",
            "\u{1F600}\u{10FFFF}x",
            " lead",
            "tab\tnl\n",
        ] {
            let text = format!(
                "{}={}\n",
                crate::gradle::escape::properties("key", true),
                crate::gradle::escape::properties(value, false)
            );
            assert_eq!(parse(&text)["key"], value, "{text:?}");
        }
    }

    #[test]
    fn malformed_escapes_do_not_panic() {
        let props = parse("a=\\u12\nb=\\uZZZZ\nc=\\ud800x\n");
        assert_eq!(props["a"], "u12");
        assert_eq!(props["b"], "uZZZZ");
        assert_eq!(props["c"], "\u{fffd}x");
    }
}
