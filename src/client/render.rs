//! One readable line per server message, for `jetstart-rs connect`.

use serde_json::Value;

use crate::term::{clock, human_bytes, logline, Style};

/// `12:00:01 core:build-complete  app-debug.apk 1.2 MB  http://…`.
pub fn message(message: &Value, style: Style) -> String {
    let str_of = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    let kind = str_of(message, "type");
    let details = match kind.as_str() {
        "core:connected" => format!(
            "project {}, session {}, client {}",
            str_of(message, "projectName"),
            str_of(message, "sessionId"),
            str_of(message, "clientId")
        ),
        "core:build-start" => "build started".to_owned(),
        "core:build-status" => {
            let status = message.get("status").cloned().unwrap_or_default();
            format!(
                "{} {}%  {}",
                str_of(&status, "phase"),
                status.get("progress").and_then(Value::as_u64).unwrap_or(0),
                str_of(&status, "message")
            )
        }
        "core:build-complete" => {
            let apk = message.get("apkInfo").cloned().unwrap_or_default();
            let path = str_of(&apk, "path");
            let name = path.rsplit(['/', '\\']).next().unwrap_or("app.apk").to_owned();
            let size = apk.get("size").and_then(Value::as_u64).unwrap_or(0);
            format!("{name} {}  {}", human_bytes(size), str_of(message, "downloadUrl"))
        }
        "core:build-error" => {
            let exit = message
                .pointer("/details/exitCode")
                .and_then(Value::as_i64)
                .map_or_else(String::new, |code| format!(" (exit {code})"));
            style.red(&format!("{}{exit}", str_of(message, "error")))
        }
        "core:dex-reload" => {
            let classes: Vec<&str> = message
                .get("classNames")
                .and_then(Value::as_array)
                .map(|names| names.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // Base64 carries 3 bytes in 4 characters.
            let bytes = str_of(message, "dexBase64").len() as u64 * 3 / 4;
            format!(
                "{} class(es), {} of DEX: {}",
                classes.len(),
                human_bytes(bytes),
                classes.join(", ")
            )
        }
        "core:reload" => str_of(message, "reloadType"),
        "core:log" => {
            let log = message.get("log").cloned().unwrap_or_default();
            logline::format(&log, None, style)
        }
        "core:disconnect" => str_of(message, "reason"),
        _ => message.to_string(),
    };
    let time = message
        .get("timestamp")
        .and_then(Value::as_u64)
        .map_or_else(std::time::SystemTime::now, |ms| {
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
        });
    let details: String = details
        .chars()
        .map(|c| if c.is_control() && c != '\x1b' { ' ' } else { c })
        .collect();
    format!(
        "{} {} {details}",
        style.dim(&clock(time)),
        style.bold(&format!("{kind:<20}"))
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn one_line_per_message() {
        let plain = Style::new(false);
        let complete = json!({"type": "core:build-complete", "timestamp": 0, "sessionId": "s",
            "apkInfo": {"path": "app/build/outputs/apk/debug/app-debug.apk", "size": 1_200_000},
            "downloadUrl": "http://h:1/download/app.apk?token=x"});
        let epoch = clock(std::time::UNIX_EPOCH);
        assert_eq!(
            message(&complete, plain),
            format!("{epoch} core:build-complete  app-debug.apk 1.2 MB  http://h:1/download/app.apk?token=x")
        );
        let reload = json!({"type": "core:reload", "reloadType": "full", "timestamp": 0});
        assert_eq!(
            message(&reload, plain),
            format!("{epoch} core:reload          full")
        );
        let odd = json!({"type": "core:new-thing", "timestamp": 0});
        assert!(message(&odd, plain).contains("core:new-thing"));
    }
}
