//! `jetstart-rs logs`: follow `core:log` from a running server, filtered by level and tag.

use anyhow::Result;

use super::{connect, Target};
use crate::term::logline::{self, Filter};
use crate::term::{output, Caps, Style};

/// Prints every `core:log` that passes `filter`: a readable line, or the raw JSON.
pub async fn run(target: Target, filter: Filter, json: bool) -> Result<()> {
    let style = Style::new(Caps::detect(json).color);
    // A viewer: it follows the logs without being one of the devices.
    connect::follow(
        &target,
        connect::viewer_info("jetstart-rs logs"),
        |raw, message| match message.get("type").and_then(serde_json::Value::as_str) {
            Some("core:connected") => eprintln!("following device logs (Ctrl+C to stop)"),
            Some("core:log") => {
                let log = message.get("log").cloned().unwrap_or_default();
                if filter.accepts(&log) {
                    let text = if json {
                        raw.to_owned()
                    } else {
                        logline::format(&log, None, style)
                    };
                    output::print_stdout(&format!("{text}\n"));
                }
            }
            _ => {}
        },
    )
    .await
}
