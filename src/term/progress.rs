//! The build spinner: an animated line with elapsed time, then one result line with the duration.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::human::{headline, ms};
use super::{human_bytes, human_duration, output, Caps, Style};
use crate::events::{BuildKind, Event};

/// How often the spinner redraws: smooth enough to look alive, rare enough to cost nothing.
const TICK: Duration = Duration::from_millis(80);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// A running task shown as a spinner (only when stdout is a terminal; otherwise silent).
pub struct Progress {
    style: Style,
    spinner: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Progress {
    /// Starts showing `label` with a spinner and the elapsed time, if `caps` allow animation.
    pub fn start(label: impl Into<String>, caps: Caps) -> Self {
        let label = label.into();
        let started = Instant::now();
        let style = Style::new(caps.color);
        let spinner = caps.animate.then(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let thread = std::thread::Builder::new().name("spinner".into()).spawn(move || {
                let mut frame = 0;
                while !flag.load(Ordering::Acquire) {
                    let elapsed = human_duration(started.elapsed());
                    let mark = style.cyan(&FRAMES[frame % FRAMES.len()].to_string());
                    output::draw_live(&format!("{mark} {label} {}", style.dim(&elapsed)));
                    frame += 1;
                    std::thread::park_timeout(TICK);
                }
            });
            // Without a thread there is no animation, which is harmless.
            thread.ok().map(|handle| (stop, handle))
        });
        Self {
            style,
            spinner: spinner.flatten(),
        }
    }

    /// Stops the spinner and prints one line: `12:04:05 ✓ message` or `12:04:05 ✗ message`.
    pub fn finish(mut self, ok: bool, message: &str) {
        self.stop();
        let mark = if ok {
            self.style.green("✓")
        } else {
            self.style.red("✗")
        };
        line(self.style, &format!("{mark} {message}"));
    }

    fn stop(&mut self) {
        if let Some((flag, handle)) = self.spinner.take() {
            flag.store(true, Ordering::Release);
            handle.thread().unpark();
            let _ = handle.join();
            output::clear_live();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Renders a build event the terminal way (spinner on start, one result line at the end).
/// Returns false for events it doesn't render, which are then logged as usual.
pub fn show(slot: &Mutex<Option<Progress>>, event: &Event, caps: Caps) -> bool {
    let style = Style::new(caps.color);
    let mut slot = slot.lock();
    let (ok, message) = match event {
        Event::BuildStart { kind, .. } => {
            let headline = headline(event).unwrap_or_default();
            let label = match kind {
                BuildKind::Full => {
                    // Said at once: the developer learns which way the save went before the
                    // build (seconds to minutes) ends.
                    line(style, &headline);
                    "building".to_owned()
                }
                BuildKind::Hot => headline,
            };
            *slot = Some(Progress::start(label, caps));
            return true;
        }
        Event::BuildSkipped { .. } => {
            line(style, &headline(event).unwrap_or_default());
            return true;
        }
        Event::BuildComplete {
            apk_info,
            duration_ms,
            ..
        } => {
            let name = apk_info.path.rsplit(['/', '\\']).next().unwrap_or("app.apk");
            (
                true,
                format!(
                    "built {} ({}) {}",
                    style.bold(name),
                    human_bytes(apk_info.size),
                    style.dim(&format!("in {}", ms(*duration_ms)))
                ),
            )
        }
        Event::BuildError {
            error, duration_ms, ..
        } => (
            false,
            format!(
                "build failed: {error} {}",
                style.dim(&format!("after {}", ms(*duration_ms)))
            ),
        ),
        Event::DexReload {
            class_names, bytes, ..
        } => (
            true,
            format!(
                "{} {}",
                headline(event).unwrap_or_default(),
                style.dim(&format!(
                    "{} class(es), {} of DEX",
                    class_names.len(),
                    human_bytes(u64::try_from(*bytes).unwrap_or(u64::MAX)),
                ))
            ),
        ),
        _ => return false,
    };
    match slot.take() {
        Some(progress) => progress.finish(ok, &message),
        // A result without a start (e.g. a build started before this reporter): still one line.
        None => Progress { style, spinner: None }.finish(ok, &message),
    }
    true
}

/// One line on stdout after the local time of day, as the server's log lines have.
pub fn line(style: Style, text: &str) {
    output::print_stdout(&format!(
        "{} {text}\n",
        style.dim(&super::clock(std::time::SystemTime::now()))
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Trigger;
    use crate::protocol::ApkInfo;

    #[test]
    fn spinner_starts_and_finishes_without_deadlock() {
        let caps = Caps {
            color: false,
            color_stderr: false,
            animate: true,
        };
        let slot = Mutex::new(None);
        let start = Event::BuildStart {
            kind: BuildKind::Full,
            trigger: Trigger::Manual,
            files: vec![],
        };
        assert!(show(&slot, &start, caps));
        std::thread::sleep(TICK * 2);
        output::print_stderr("a log line while spinning\n");
        let done = Event::BuildComplete {
            apk_info: ApkInfo {
                path: "app/build/outputs/apk/debug/app-debug.apk".into(),
                size: 1_200_000,
                hash: String::new(),
                version_code: None,
                version_name: None,
                min_sdk_version: None,
                target_sdk_version: None,
                application_id: None,
            },
            download_url: String::new(),
            duration_ms: 3_400,
        };
        assert!(show(&slot, &done, caps));
        assert!(slot.lock().is_none());
        assert!(!show(&slot, &Event::Stopped {}, caps));
    }
}
