//! Byte budgets for what a device sends that the server keeps or passes on to others.
//!
//! A frame may hold up to 1 MiB. Kept as sent, one device's `deviceInfo` would be held for its
//! whole connection and repeated in every device listing, and one device's logs, relayed, would
//! sit in every other device's queue (up to 192 of them each). So what is kept or relayed is cut
//! to a budget: a `deviceInfo` beyond [`DEVICE_INFO_MAX`] keeps only its short top-level values;
//! a relayed log entry beyond [`RELAY_ENTRY_MAX`] keeps JetStart's `LogEntry` fields with its
//! message cut. The terminal and `--json` still get a log as sent (their output is bounded by
//! bytes on its own, `term/output.rs`).

use serde_json::{Map, Value};

use crate::protocol::CoreMessage;

/// The most bytes of a device's `deviceInfo` (as JSON) kept as sent.
pub const DEVICE_INFO_MAX: usize = 8 * 1024;
/// The most bytes of a top-level string kept from a `deviceInfo` over [`DEVICE_INFO_MAX`].
const DEVICE_INFO_VALUE_MAX: usize = 256;
/// The most bytes of a relayed log entry (as JSON). A long stack trace fits.
pub const RELAY_ENTRY_MAX: usize = 64 * 1024;
/// The most bytes of each short field (`id`, `level`, `tag`, `source`) of a cut log entry.
const ENTRY_FIELD_MAX: usize = 256;
/// The fields of JetStart's `LogEntry` that a cut entry keeps.
const ENTRY_FIELDS: [&str; 6] = ["id", "timestamp", "level", "tag", "message", "source"];

/// What is kept of a device's `deviceInfo`: as sent if small; otherwise its top-level numbers,
/// booleans and strings (cut to [`DEVICE_INFO_VALUE_MAX`]), with `"truncated": true`. Its `role`
/// and the fields the device list shows (`model`, `platform`…) are such values.
pub fn device_info(info: Value) -> Value {
    if encoded_len(&info) <= DEVICE_INFO_MAX {
        return info;
    }
    let Value::Object(fields) = info else {
        return Value::Null; // a huge array or string says nothing the server reads
    };
    let mut kept = Map::new();
    for (key, value) in fields {
        if kept.len() >= DEVICE_INFO_MAX / (2 * DEVICE_INFO_VALUE_MAX) || key.len() > DEVICE_INFO_VALUE_MAX {
            continue;
        }
        let value = match value {
            Value::String(mut text) => {
                cut(&mut text, DEVICE_INFO_VALUE_MAX);
                Value::String(text)
            }
            Value::Number(_) | Value::Bool(_) => value,
            _ => continue,
        };
        kept.insert(key, value);
    }
    kept.insert("truncated".to_owned(), Value::Bool(true));
    Value::Object(kept)
}

/// The `core:log` message other devices get for a completed entry, encoded once; only an entry
/// too big for [`RELAY_ENTRY_MAX`] is cut ([`relayed_entry`]) and encoded again.
pub fn relayed_log(session_id: String, entry: Value) -> String {
    let message = CoreMessage::Log {
        session_id,
        log: entry,
    };
    let text = message.encode();
    if text.len() <= RELAY_ENTRY_MAX {
        return text; // the entry, part of it, is smaller still
    }
    let CoreMessage::Log { session_id, log } = message else {
        unreachable!("made as a log just above")
    };
    CoreMessage::Log {
        session_id,
        log: relayed_entry(log),
    }
    .encode()
}

/// The copy of a completed log entry that other devices get: as it is if small; otherwise
/// JetStart's `LogEntry` fields only, the message cut to fit [`RELAY_ENTRY_MAX`] and ending in
/// a note of how much was cut.
fn relayed_entry(entry: Value) -> Value {
    if encoded_len(&entry) <= RELAY_ENTRY_MAX {
        return entry;
    }
    let Value::Object(mut fields) = entry else {
        return entry; // `log_entry::complete` always makes an object
    };
    let mut kept = Map::new();
    for name in ENTRY_FIELDS {
        match fields.remove(name) {
            Some(Value::String(mut text)) if name != "message" => {
                cut(&mut text, ENTRY_FIELD_MAX);
                kept.insert(name.to_owned(), Value::String(text));
            }
            Some(value) => {
                kept.insert(name.to_owned(), value);
            }
            None => {}
        }
    }
    let Some(Value::String(message)) = kept.remove("message") else {
        return Value::Object(kept);
    };
    // Escaping may make a character up to six bytes long: halve until the entry fits.
    let mut room = RELAY_ENTRY_MAX - encoded_len(&Value::Object(kept.clone())) - 64;
    loop {
        let mut text = message.clone();
        let before = text.len();
        cut(&mut text, room);
        text.push_str(&format!("… [{} bytes cut]", before - text.len()));
        kept.insert("message".to_owned(), Value::String(text));
        let entry = Value::Object(kept);
        if encoded_len(&entry) <= RELAY_ENTRY_MAX || room == 0 {
            return entry;
        }
        let Value::Object(back) = entry else {
            unreachable!("just made as an object")
        };
        kept = back;
        room /= 2;
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// The length of `value` as compact JSON, without making the text.
fn encoded_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn small_values_are_kept_as_sent() {
        let info = json!({"model": "Pixel 7", "extra": {"nested": [1, 2]}});
        assert_eq!(device_info(info.clone()), info);
        let entry = json!({"id": "1", "message": "x".repeat(1000), "metadata": {"k": 1}});
        assert_eq!(relayed_entry(entry.clone()), entry);
    }

    #[test]
    fn a_relayed_log_is_encoded_whole_when_small_and_cut_when_huge() {
        let small = json!({"id": "1", "message": "hello", "metadata": {"k": 1}});
        let text = relayed_log("s1".into(), small.clone());
        let sent: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            (&sent["type"], &sent["sessionId"], &sent["log"]),
            (&json!("core:log"), &json!("s1"), &small)
        );
        let huge = json!({"id": "1", "timestamp": 1, "level": "info", "tag": "t", "source": "app",
                          "message": "m".repeat(1 << 20)});
        let text = relayed_log("s1".into(), huge);
        assert!(text.len() <= RELAY_ENTRY_MAX + 128, "{}", text.len());
        let sent: Value = serde_json::from_str(&text).expect("JSON");
        assert!(sent["log"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("bytes cut]")));
    }

    #[test]
    fn a_huge_device_info_keeps_its_short_top_level_values() {
        let info = json!({
            "model": "Pixel 7",
            "role": "viewer",
            "apiLevel": 34,
            "emulator": false,
            "padding": "é".repeat(100_000),
            "nested": {"big": "x".repeat(100_000)},
        });
        let kept = device_info(info);
        assert!(encoded_len(&kept) <= DEVICE_INFO_MAX, "{}", encoded_len(&kept));
        assert_eq!(kept["model"], "Pixel 7");
        assert_eq!(kept["role"], "viewer");
        assert_eq!(kept["apiLevel"], 34);
        assert_eq!(kept["emulator"], false);
        assert_eq!(kept["truncated"], true);
        assert!(kept.get("nested").is_none());
        let padding = kept["padding"].as_str().expect("a string");
        assert!(padding.len() <= DEVICE_INFO_VALUE_MAX && padding.starts_with('é'));
        // Many keys cannot add up past the budget either.
        let many: Map<String, Value> = (0..10_000)
            .map(|i| (format!("k{i}"), json!("v".repeat(200))))
            .collect();
        assert!(encoded_len(&device_info(Value::Object(many))) <= DEVICE_INFO_MAX);
        assert_eq!(device_info(json!("x".repeat(DEVICE_INFO_MAX))), Value::Null);
    }

    #[test]
    fn a_huge_log_entry_is_cut_to_the_relay_budget_and_says_so() {
        for filler in ["a", "\u{1}", "日"] {
            let entry = json!({
                "id": "7", "timestamp": 1, "level": "error", "tag": "t".repeat(10_000),
                "source": "app", "message": filler.repeat(1 << 20), "metadata": {"big": "x".repeat(1 << 20)},
            });
            let relayed = relayed_entry(entry);
            assert!(
                encoded_len(&relayed) <= RELAY_ENTRY_MAX,
                "{filler:?}: {}",
                encoded_len(&relayed)
            );
            for field in ENTRY_FIELDS {
                assert!(relayed.get(field).is_some(), "{filler:?}: {field} kept");
            }
            assert!(relayed.get("metadata").is_none());
            assert_eq!(relayed["tag"].as_str().map(str::len), Some(ENTRY_FIELD_MAX));
            let message = relayed["message"].as_str().expect("message");
            assert!(
                message.starts_with(filler) && message.ends_with("bytes cut]"),
                "{filler:?}"
            );
            assert!(
                message.len() >= RELAY_ENTRY_MAX / 16,
                "{filler:?}: much of the budget is used"
            );
        }
    }
}
