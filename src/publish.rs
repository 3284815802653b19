//! One place turns each build outcome into everything it becomes: the message every device gets
//! (through the hub) and the `--json` event and terminal line (through the reporter). Devices go
//! first: they are waiting; the terminal and `--json` readers can take a moment more.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::events::{BuildKind, Event, Trigger};
use crate::hub::Hub;
use crate::protocol::{ApkInfo, BuildErrorDetails, BuildStatus, CoreMessage};
use crate::term::reporter::Reporter;

/// Publishes build outcomes; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    hub: Hub,
    reporter: Arc<Reporter>,
}

/// A compiled hot reload, as published.
#[derive(Debug)]
pub struct HotReload<'a> {
    /// The saved files, relative to the project.
    pub files: Vec<String>,
    pub dex: &'a [u8],
    pub class_names: Vec<String>,
    /// When the batch started; the event's `durationMs` runs to the end of the broadcast.
    pub started: tokio::time::Instant,
    pub compile: Duration,
    pub dex_time: Duration,
}

impl Publisher {
    pub fn new(hub: Hub, reporter: Arc<Reporter>) -> Self {
        Self { hub, reporter }
    }

    /// A full build starts.
    pub fn full_build_started(&self, trigger: Trigger, files: Vec<String>) {
        self.hub.broadcast(&CoreMessage::BuildStart {
            session_id: self.hub.session().id.clone(),
        });
        self.reporter.emit(Event::BuildStart {
            kind: BuildKind::Full,
            trigger,
            files,
        });
    }

    /// A hot reload starts: said here only; devices hear of it when the patch comes.
    pub fn hot_reload_started(&self, files: Vec<String>) {
        self.reporter.emit(Event::BuildStart {
            kind: BuildKind::Hot,
            trigger: Trigger::Save,
            files,
        });
    }

    /// A build was due but none can run.
    pub fn build_skipped(&self, trigger: Trigger, files: Vec<String>, reason: &str) {
        self.reporter.emit(Event::BuildSkipped {
            trigger,
            files,
            reason: reason.to_owned(),
        });
    }

    /// A full build's progress (devices only; the terminal has its spinner).
    pub fn build_status(&self, status: BuildStatus) {
        self.hub.broadcast(&CoreMessage::BuildStatus {
            session_id: self.hub.session().id.clone(),
            status,
        });
    }

    /// A full build produced an APK, now downloadable.
    pub fn build_complete(&self, apk_info: ApkInfo, elapsed: Duration) {
        let session = self.hub.session();
        let download_url = self.hub.download_url(&session);
        self.hub.broadcast(&CoreMessage::BuildComplete {
            session_id: session.id.clone(),
            apk_info: apk_info.clone(),
            download_url: download_url.clone(),
        });
        self.reporter.emit(Event::BuildComplete {
            apk_info,
            download_url,
            duration_ms: millis(elapsed),
        });
    }

    /// A full build failed: `error` is one line, `log` the tail of its output.
    pub fn build_failed(&self, error: String, exit_code: Option<i32>, log: String, elapsed: Duration) {
        self.hub.broadcast(&CoreMessage::BuildError {
            session_id: self.hub.session().id.clone(),
            error: error.clone(),
            details: BuildErrorDetails { exit_code, log },
        });
        self.reporter.emit(Event::BuildError {
            error,
            exit_code,
            duration_ms: millis(elapsed),
        });
    }

    /// A hot reload's patch, to every device.
    pub fn hot_reload(&self, reload: HotReload<'_>) {
        let devices = self.hub.broadcast(&CoreMessage::DexReload {
            session_id: self.hub.session().id.clone(),
            dex_base64: base64::engine::general_purpose::STANDARD.encode(reload.dex),
            class_names: reload.class_names.clone(),
        });
        self.reporter.emit(Event::DexReload {
            files: reload.files,
            class_names: reload.class_names,
            bytes: reload.dex.len(),
            devices,
            duration_ms: millis(reload.started.elapsed()),
            compile_ms: millis(reload.compile),
            dex_ms: millis(reload.dex_time),
        });
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
