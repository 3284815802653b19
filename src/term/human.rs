//! Human text for events: what the terminal says about builds, devices and sessions when it
//! shows no spinner (a pipe, a log file), and how a build's cause reads.

use serde_json::Value;

use crate::events::{BuildKind, Event, Trigger};
use crate::protocol::Role;
use crate::sanitize;

/// How a build's cause reads in the terminal: the saved files' names (`MainActivity.kt`,
/// `A.kt, B.kt and 2 more`), or what asked for it.
pub fn subject(trigger: Trigger, files: &[String]) -> String {
    match trigger {
        Trigger::Manual => "rebuild requested".to_owned(),
        Trigger::FirstDevice => "first device connected".to_owned(),
        Trigger::Save => {
            const SHOWN: usize = 3;
            let names: Vec<&str> = files
                .iter()
                .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f))
                .collect();
            match names.len() {
                0 => "files saved".to_owned(),
                n if n <= SHOWN => names.join(", "),
                n => format!("{} and {} more", names[..SHOWN - 1].join(", "), n - (SHOWN - 1)),
            }
        }
    }
}

/// The words a build's start, a skipped build and a hot reload read as, the same on the spinner
/// and in the log: `Greeting.kt → hot reload → 2 devices in 212 ms (compile 150, dex 40)`.
pub fn headline(event: &Event) -> Option<String> {
    Some(match event {
        Event::BuildStart { kind, trigger, files } => {
            let way = match kind {
                BuildKind::Full => "full build",
                BuildKind::Hot => "hot reload",
            };
            format!("{} → {way}", subject(*trigger, files))
        }
        Event::BuildSkipped {
            trigger,
            files,
            reason,
        } => format!("{} → {reason}", subject(*trigger, files)),
        Event::DexReload {
            files,
            devices,
            duration_ms,
            compile_ms,
            dex_ms,
            ..
        } => format!(
            "{} → hot reload → {devices} device{} in {duration_ms} ms (compile {compile_ms}, dex {dex_ms})",
            subject(Trigger::Save, files),
            if *devices == 1 { "" } else { "s" }
        ),
        _ => return None,
    })
}

/// Logs `event` as a human line (stderr, through tracing).
pub fn log_human(event: &Event) {
    match event {
        Event::Ready { .. } | Event::SessionRotated { .. } | Event::Stopped {} => {}
        Event::ClientConnected {
            client_id,
            device_info,
            addr,
            role,
        } => {
            let model = device_name(device_info);
            match role {
                Role::Device => tracing::info!("device connected: {model} ({client_id}, {addr})"),
                // The dashboard opens one on every page load: not worth a line of its own.
                Role::Viewer => tracing::debug!("viewer connected: {model} ({client_id}, {addr})"),
            }
        }
        Event::ClientRejected {
            code,
            reason,
            addr,
            origin: None,
        } => {
            tracing::warn!(code, %addr, "Rejected client: {reason}");
        }
        Event::ClientRejected {
            addr,
            origin: Some(origin),
            ..
        } => {
            tracing::warn!(
                %addr,
                "Rejected a browser from {origin}: origin not allowed; to let it connect, \
                 restart with --allow-origin {origin}"
            );
        }
        Event::ClientDisconnected {
            client_id,
            reason,
            role,
            ..
        } => match role {
            Role::Device => tracing::info!("device disconnected: {client_id} ({reason})"),
            Role::Viewer => tracing::debug!("viewer disconnected: {client_id} ({reason})"),
        },
        Event::BuildStart {
            kind: BuildKind::Hot, ..
        } => tracing::debug!("{}", headline(event).unwrap_or_default()),
        Event::BuildStart { .. } | Event::BuildSkipped { .. } | Event::DexReload { .. } => {
            tracing::info!("{}", headline(event).unwrap_or_default());
        }
        Event::BuildComplete {
            apk_info,
            duration_ms,
            ..
        } => {
            tracing::info!("build finished in {} ({} bytes)", ms(*duration_ms), apk_info.size);
        }
        Event::BuildError {
            error, duration_ms, ..
        } => {
            tracing::error!("build failed after {}: {error}", ms(*duration_ms));
        }
    }
}

/// The device's model for the terminal, made printable: the device chooses it, so it may hold
/// escape sequences or line breaks.
fn device_name(device_info: &Value) -> String {
    let model = device_info
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("device");
    sanitize::shown(model, sanitize::FIELD_MAX)
}

/// A build's duration as the spinner says it too (`850ms`, `3.4s`, `2m 05s`).
pub fn ms(duration_ms: u64) -> String {
    super::human_duration(std::time::Duration::from_millis(duration_ms))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_build_cause_reads_as_file_names_or_what_asked_for_it() {
        let files = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            subject(Trigger::Save, &files(&["app/src/main/java/a/MainActivity.kt"])),
            "MainActivity.kt"
        );
        assert_eq!(
            subject(Trigger::Save, &files(&["a/A.kt", "b/B.xml"])),
            "A.kt, B.xml"
        );
        assert_eq!(
            subject(Trigger::Save, &files(&["A.kt", "B.kt", "C.kt", "D.kt", "E.kt"])),
            "A.kt, B.kt and 3 more"
        );
        assert_eq!(subject(Trigger::Manual, &files(&["A.kt"])), "rebuild requested");
        assert_eq!(subject(Trigger::FirstDevice, &[]), "first device connected");
        let start = Event::BuildStart {
            kind: BuildKind::Full,
            trigger: Trigger::FirstDevice,
            files: Vec::new(),
        };
        let json: Value = serde_json::from_str(&serde_json::to_string(&start).expect("json")).expect("json");
        assert_eq!(
            json,
            json!({"event": "build-start", "kind": "full", "trigger": "first-device", "files": []})
        );
    }

    #[test]
    fn device_names_are_printable() {
        let evil = json!({"model": "Pixel\x1b[2J\x1b[H\n INFO device connected: fake\r"});
        let name = device_name(&evil);
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert_eq!(name, "Pixel [2J [H  INFO device connected: fake ");
        assert_eq!(device_name(&json!({"model": "Pixel 7"})), "Pixel 7");
        assert_eq!(device_name(&json!({"model": 7})), "device");
        assert_eq!(device_name(&json!({})), "device");
    }
}
