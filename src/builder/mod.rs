//! Builds: the scheduler that turns file changes into full builds or DEX hot reloads.
//!
//! One build at a time. Whatever arrives while a build runs (saves, manual requests, the first
//! device) is merged into one pending job that starts as soon as the slot is free, so every
//! change is covered by exactly one follow-up build and none is dropped (trunk's
//! `check_spawn_build` model).

pub mod apk;
pub mod artifacts;
pub mod gradle;
pub mod hot;
pub mod inputs;
pub mod process;
pub mod progress;
pub mod reload;
pub mod tools;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::artifacts::{Artifacts, Inbox};
use self::reload::{HotPath, Outcome};
use crate::cli::Config;
use crate::events::Trigger;
use crate::publish::Publisher;
use crate::watch::{Batch, WatchSystem};

/// Batches waiting for the scheduler; the scheduler merges them at once, so a handful is plenty
/// and a full queue only makes the watcher wait (its own queue keeps collecting meanwhile).
const BATCH_QUEUE: usize = 16;

/// The builder's share of the settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The project, canonicalized.
    pub project_dir: PathBuf,
    pub build_cmd: Option<String>,
    pub build_timeout: Duration,
    pub hot_reload: bool,
    /// `-Xmx` of the compile worker; `None` with `--no-compile-worker`.
    pub worker_heap: Option<String>,
    pub initial_build: bool,
}

impl Settings {
    pub fn new(config: &Config) -> Self {
        Self {
            project_dir: config.project_dir.clone(),
            build_cmd: config.build_cmd.clone(),
            build_timeout: config.build_timeout,
            hot_reload: config.hot_reload,
            worker_heap: config.worker_heap.clone(),
            initial_build: config.initial_build,
        }
    }
}

/// What the builder's tasks share: settings, where outcomes go, where the APK goes.
#[derive(Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    pub publish: Publisher,
    pub artifacts: Artifacts,
}

/// What sets the builder going: saves (the watcher), requests (`b`), and whether any device is
/// connected (the first one gets the initial build).
pub struct Triggers {
    pub watcher: Option<WatchSystem>,
    pub inbox: Inbox,
    pub any_device: watch::Receiver<bool>,
}

/// The running builder.
#[derive(Debug)]
pub struct Builder {
    /// The scheduler; it ends after `stop`, having killed a running build and the worker.
    pub task: JoinHandle<()>,
    ready: Option<oneshot::Sender<()>>,
}

impl Builder {
    /// The server is ready: the compile worker may start now (never delaying start-up).
    pub fn server_ready(&mut self) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
    }
}

/// Starts the scheduler (and the watcher's batching) in a task. The watcher is made by the
/// caller before `ready`, so that no save made after it is missed.
pub fn spawn(ctx: Context, triggers: Triggers, stop: CancellationToken) -> Builder {
    let off_said = say_if_builds_off(&ctx.settings);
    let (ready, ready_rx) = oneshot::channel();
    let task = tokio::spawn(schedule(ctx, triggers, off_said, ready_rx, stop));
    Builder {
        task,
        ready: Some(ready),
    }
}

/// Says "builds are off" right at start-up when no build command resolves, so a newcomer learns
/// it before connecting a phone rather than after the first save. Returns the flag that keeps
/// the message to once per run (builds check it again: a wrapper deleted later is also said).
fn say_if_builds_off(settings: &Settings) -> Arc<AtomicBool> {
    let off_said = Arc::new(AtomicBool::new(false));
    gradle::resolve_or_say_off(settings, &off_said);
    off_said
}

/// Work waiting for the build slot.
#[derive(Debug, Default)]
struct Pending {
    batch: Batch,
    /// A full build was asked for: manually, or for the first device.
    requested: Option<Trigger>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.requested.is_none()
    }

    /// True if there is work and it will certainly be a full build.
    fn is_full(&self) -> bool {
        self.requested.is_some() || (!self.batch.is_empty() && !self.batch.is_kotlin_only())
    }

    /// Asks for a full build; a manual request says more than the first device's.
    fn request(&mut self, trigger: Trigger) {
        if self.requested != Some(Trigger::Manual) {
            self.requested = Some(trigger);
        }
    }

    /// What the terminal names as the build's cause.
    fn trigger(&self) -> Trigger {
        self.requested.unwrap_or(Trigger::Save)
    }
}

struct Running {
    handle: JoinHandle<()>,
    cancel: CancellationToken,
    full: bool,
}

async fn schedule(
    ctx: Context,
    triggers: Triggers,
    off_said: Arc<AtomicBool>,
    ready: oneshot::Receiver<()>,
    stop: CancellationToken,
) {
    let hot = Arc::new(HotPath::new(ctx.settings.clone()));
    let warming = hot.clone();
    let warm_stop = stop.clone();
    tokio::spawn(async move {
        if ready.await.is_ok() {
            warming.warm_up(&warm_stop).await;
        }
    });
    let Triggers {
        watcher,
        inbox,
        any_device: mut devices,
    } = triggers;
    let (batch_tx, mut batches) = mpsc::channel(BATCH_QUEUE);
    let mut watching = watcher.is_some();
    if let Some(watcher) = watcher {
        tokio::spawn(watcher.run(batch_tx, stop.clone()));
    }
    let mut inbox = Some(inbox);
    let mut devices_open = true;
    // Start from "no device" and look on the first pass: on a loaded machine this task may
    // first run after a device has authenticated, and that device is still the first.
    let mut had_device = false;
    devices.mark_changed();
    let mut pending = Pending::default();
    let mut running: Option<Running> = None;

    loop {
        tokio::select! {
            () = stop.cancelled() => {
                if let Some(build) = running.take() {
                    build.cancel.cancel();
                    let _ = build.handle.await;
                }
                hot.stop().await;
                return;
            }
            batch = batches.recv(), if watching => match batch {
                Some(batch) => pending.batch.merge(batch),
                None => watching = false,
            },
            request = next_request(&mut inbox) => match request {
                Some(trigger) => pending.request(trigger),
                None => inbox = None,
            },
            changed = devices.changed(), if devices_open => {
                if changed.is_err() {
                    devices_open = false;
                    continue;
                }
                let any = *devices.borrow_and_update();
                let full_coming = running.as_ref().is_some_and(|r| r.full) || pending.is_full();
                if !had_device && any && ctx.settings.initial_build
                    && !ctx.artifacts.any() && !full_coming
                {
                    tracing::debug!("first device connected and no APK built yet: initial build");
                    pending.request(Trigger::FirstDevice);
                }
                had_device = any;
            }
            result = finished(&mut running) => {
                running = None;
                if let Err(e) = result {
                    tracing::error!("the build task failed: {e}");
                }
            }
        }
        if running.is_none() && !pending.is_empty() {
            let job = std::mem::take(&mut pending);
            let cancel = stop.child_token();
            let full = job.is_full();
            let handle = tokio::spawn(build(
                ctx.clone(),
                hot.clone(),
                job,
                off_said.clone(),
                cancel.clone(),
            ));
            running = Some(Running { handle, cancel, full });
        }
    }
}

async fn next_request(inbox: &mut Option<Inbox>) -> Option<Trigger> {
    match inbox {
        Some(inbox) => inbox.0.recv().await,
        None => std::future::pending().await,
    }
}

async fn finished(running: &mut Option<Running>) -> Result<(), tokio::task::JoinError> {
    match running {
        Some(build) => (&mut build.handle).await,
        None => std::future::pending().await,
    }
}

/// One job: the hot path when it applies and works, otherwise a full build.
async fn build(
    ctx: Context,
    hot: Arc<HotPath>,
    job: Pending,
    off_said: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let project = &ctx.settings.project_dir;
    let files: Vec<String> = job
        .batch
        .files
        .iter()
        .map(|f| reload::relative(project, f))
        .collect();
    if !job.is_full() {
        let sources: Vec<_> = job.batch.files.iter().cloned().collect();
        let outcome = hot.reload(&ctx.publish, &sources, files.clone(), &cancel).await;
        if outcome == Outcome::Done {
            return;
        }
    }
    let published = gradle::run(&ctx, job.trigger(), files, &cancel, &off_said).await;
    if published {
        // The build may have recorded new compile inputs (the first one always does): a worker
        // for them starts and warms up now, so the save after the build finds it warm instead
        // of starting it. Not part of the build: the next job needn't wait for it.
        tokio::spawn(async move { hot.warm_up(&cancel).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_work_classification() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kt = dir.path().join("A.kt");
        std::fs::write(&kt, "class A").expect("write");
        let mut pending = Pending::default();
        assert!(pending.is_empty() && !pending.is_full());
        pending.batch.files.insert(kt);
        assert!(!pending.is_empty() && !pending.is_full());
        pending.batch.files.insert(dir.path().join("strings.xml"));
        assert!(pending.is_full());
        let requested = Pending {
            requested: Some(Trigger::Manual),
            ..Pending::default()
        };
        assert!(!requested.is_empty() && requested.is_full());
    }

    /// On a loaded machine the scheduler task may first run after a device has authenticated;
    /// that device must still get the initial build.
    #[tokio::test]
    async fn a_device_connected_before_the_scheduler_runs_gets_the_initial_build() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;

        let wait = std::time::Duration::from_secs(10);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = crate::cli::config::for_project(dir.path()).expect("config");
        config.build_cmd = Some("true".to_owned());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ws_port = listener.local_addr().expect("addr").port();
        let reporter = Arc::new(crate::term::reporter::Reporter::new(false, false));
        let parts = crate::dev::Parts::new(Arc::new(config), 0, ws_port, reporter);
        let hub = parts.hub.clone();
        tokio::spawn(async move { hub.serve(listener).await });

        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{ws_port}"))
            .await
            .expect("connect");
        let session = parts.store.current();
        let hello = serde_json::json!({"type": "client:connect", "sessionId": session.id,
                                       "token": session.token});
        ws.send(Message::text(hello.to_string())).await.expect("send");
        let next_type = |message: Option<Result<Message, _>>| match message {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                value["type"].as_str().unwrap_or_default().to_owned()
            }
            other => panic!("expected a text message, got {other:?}"),
        };
        let connected = tokio::time::timeout(wait, ws.next()).await.expect("connected");
        assert_eq!(next_type(connected), "core:connected");
        tokio::time::timeout(wait, async {
            while parts.hub.client_count() == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("device registered");

        let stop = CancellationToken::new();
        let triggers = Triggers {
            watcher: None,
            inbox: parts.take_inbox().expect("inbox"),
            any_device: parts.hub.subscribe_any_device(),
        };
        let scheduler = spawn(parts.builder_context(), triggers, stop.clone());
        let started = tokio::time::timeout(wait, ws.next())
            .await
            .expect("the initial build starts");
        assert_eq!(next_type(started), "core:build-start");
        stop.cancel();
        scheduler.task.await.expect("scheduler stops");
        // The hub's tasks end with the test's runtime.
    }
}
