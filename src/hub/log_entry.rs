//! A device's `client:log` entry completed to JetStart's `LogEntry` before it is relayed.
//!
//! JetStart's `LogEntry` (packages/shared/src/types/log.ts) is `{id, timestamp, level, tag,
//! message, source, sessionId?, metadata?}`, every one of the first six required. Its browser
//! clients rely on that: the web emulator renders `log.level.toUpperCase()` and
//! `log.source.toLowerCase()` and keys its list by `log.id`, so a relayed log holding only a
//! `message` throws inside its render and blanks the page. A device may send less (a hand-written
//! client, an older app), so the server fills in what is missing or of the wrong type; what is
//! there and well-typed is kept as sent, and so are extra fields.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use crate::session::unix_ms;
use crate::term::logline::Level;

/// `source` of an entry that names none: it came from a client (JetStart's `LogSource.CLIENT`).
const DEFAULT_SOURCE: &str = "client";
/// `level` of an entry that names none (JetStart's `LogLevel.INFO`).
const DEFAULT_LEVEL: &str = "info";

/// Numbers the ids the server makes up, so that two entries never share one.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Completes `log` to a `LogEntry`. `default_tag` (the device's name) stands for a missing tag,
/// so a line without one still says where it came from. A known level is written as JetStart's
/// lowercase name (`W`, `WARN` → `warn`); an unknown one is kept.
pub fn complete(log: Value, default_tag: &str) -> Value {
    let mut entry = match log {
        Value::Object(map) => map,
        other => {
            // Not an object at all: keep what was sent as the message.
            let mut map = Map::new();
            map.insert("message".to_owned(), other);
            map
        }
    };
    let now = unix_ms();
    if !entry.get("id").is_some_and(|id| id.is_string() || id.is_number()) {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        entry.insert("id".to_owned(), Value::String(format!("{now}-{n}")));
    }
    if !entry.get("timestamp").is_some_and(Value::is_number) {
        entry.insert("timestamp".to_owned(), now.into());
    }
    let level = match entry.get("level") {
        Some(Value::String(level)) => {
            Level::parse(level).map_or_else(|| level.clone(), |l| l.name().to_owned())
        }
        _ => DEFAULT_LEVEL.to_owned(),
    };
    entry.insert("level".to_owned(), Value::String(level));
    for (field, default) in [("tag", default_tag), ("source", DEFAULT_SOURCE)] {
        if !entry.get(field).is_some_and(Value::is_string) {
            entry.insert(field.to_owned(), Value::String(default.to_owned()));
        }
    }
    let message = match entry.remove("message") {
        Some(Value::String(text)) => text,
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    };
    entry.insert("message".to_owned(), Value::String(message));
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn is_log_entry(entry: &Value) -> bool {
        ["id", "level", "tag", "message", "source"]
            .iter()
            .all(|f| entry[f].is_string() || (*f == "id" && entry[f].is_number()))
            && entry["timestamp"].is_number()
    }

    #[test]
    fn a_message_alone_gets_every_field() {
        let entry = complete(json!({"message": "hello"}), "Pixel 7");
        assert!(is_log_entry(&entry), "{entry}");
        assert_eq!(entry["message"], "hello");
        assert_eq!(entry["level"], "info");
        assert_eq!(entry["tag"], "Pixel 7");
        assert_eq!(entry["source"], "client");
        assert!(entry["timestamp"].as_u64().expect("ms") > 1_600_000_000_000);
        let other = complete(json!({"message": "again"}), "Pixel 7");
        assert_ne!(entry["id"], other["id"], "ids are unique");
    }

    #[test]
    fn what_is_sent_and_well_typed_is_kept() {
        let sent = json!({"id": "7", "timestamp": 1_700_000_000_000u64, "level": "warn",
            "tag": "Net", "message": "slow\n  at Foo", "source": "app", "metadata": {"k": 1}});
        assert_eq!(complete(sent.clone(), "Pixel 7"), sent);
    }

    #[test]
    fn levels_are_jetstart_names_and_wrong_types_get_defaults() {
        let entry = complete(
            json!({"level": "W", "tag": 5, "source": null, "message": 42}),
            "d",
        );
        assert!(is_log_entry(&entry), "{entry}");
        assert_eq!(entry["level"], "warn");
        assert_eq!(
            (entry["tag"].as_str(), entry["source"].as_str()),
            (Some("d"), Some("client"))
        );
        assert_eq!(entry["message"], "42");
        assert_eq!(complete(json!({"level": "ERROR"}), "d")["level"], "error");
        assert_eq!(complete(json!({"level": "loud"}), "d")["level"], "loud");
        assert_eq!(complete(json!({"level": ["x"]}), "d")["level"], "info");
    }

    #[test]
    fn a_log_that_is_not_an_object_becomes_the_message() {
        let entry = complete(json!("just text"), "d");
        assert!(is_log_entry(&entry), "{entry}");
        assert_eq!(entry["message"], "just text");
        assert_eq!(complete(Value::Null, "d")["message"], "");
    }
}
