//! The `dev` command: binds the ports, creates the session, starts every part, shuts down.

mod parts;
mod ports;
mod signals;

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

pub use parts::Parts;
pub use signals::shutdown_signal;

use self::ports::bind_port;
use crate::cli::Config;
use crate::events::Event;
use crate::lock::{AlreadyRunning, ProjectLock};
use crate::protocol::close;
use crate::term::reporter::Reporter;
use crate::watch::WatchSystem;

/// The reason devices are given on shutdown.
const STOP_REASON: &str = "Server stopped";

/// A server that has bound its ports and is ready to run.
pub struct Dev {
    parts: Arc<Parts>,
    http: TcpListener,
    ws: TcpListener,
    /// This project's one-server lock, held until the server has cleaned up.
    lock: Option<ProjectLock>,
    http_limits: crate::http::serve::Limits,
}

impl Dev {
    /// Takes the project's lock (another server on it is a one-line error naming it), binds both
    /// ports (a port in use is a one-line error naming the flag) and creates the session.
    pub async fn bind(mut config: Config) -> Result<Self> {
        let mut lock = match ProjectLock::acquire(&config.project_dir) {
            Ok(lock) => Some(lock),
            Err(e) if e.is::<AlreadyRunning>() => return Err(e),
            // A read-only project: nothing of ours can be written there to clash either.
            Err(e) => {
                tracing::debug!("running without the project lock: {e:#}");
                None
            }
        };
        let budget = crate::limits::for_this_process(config.max_clients, crate::hub::REFUSALS_AT_ONCE);
        config.max_clients = budget.max_clients;
        let http_limits = crate::http::serve::Limits {
            max_connections: budget.http_connections,
            header_timeout: config.http_header_timeout,
            write_stall: crate::http::serve::WRITE_STALL,
        };
        // The HTTP port keeps clear of the WebSocket port's number and vice versa, so that
        // moving one on to a free port never takes the other's.
        let http = bind_port(config.bind, config.http_port, "--port", config.ws_port.number())?;
        let http_port = http.local_addr()?.port();
        let ws = bind_port(config.bind, config.ws_port, "--ws-port", http_port)?;
        let ws_port = ws.local_addr()?.port();
        if let Some(lock) = lock.as_mut() {
            if let Err(e) = lock.describe(std::process::id(), &format!("http://localhost:{http_port}")) {
                tracing::debug!("could not describe the project lock: {e:#}");
            }
        }
        let reporter = Arc::new(
            Reporter::new(config.json, config.show_qr).with_light_background(config.qr_light_background),
        );
        let parts = Arc::new(Parts::new(Arc::new(config), http_port, ws_port, reporter));
        Ok(Self {
            parts,
            http,
            ws,
            lock,
            http_limits,
        })
    }

    /// The shared parts (for tests and embedding).
    pub fn parts(&self) -> Arc<Parts> {
        self.parts.clone()
    }

    /// Runs until `shutdown` completes, then stops cleanly (docs/architecture.md, "Shutdown").
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let Self {
            parts,
            http,
            ws,
            lock,
            http_limits,
        } = self;
        let config = parts.config.clone();
        // Pairing needs no file: a read-only project still serves devices that scan the QR code.
        if let Err(e) = parts.rotation.write_files() {
            tracing::warn!(
                "{e:#}; apps built now get no credentials in BuildConfig (scanning the QR code \
                 still pairs a device)"
            );
        }
        // For builds that apply gradle/jetstart.gradle (a custom --build-cmd): it applies this
        // script when present. Builds run by `dev` itself install it again before each build.
        if let Err(e) = crate::gradle::capture::install(&config.project_dir) {
            tracing::debug!("could not write the hot-inputs scripts: {e:#}");
        }

        let stop = tokio_util::sync::CancellationToken::new();
        // Watching starts now, before `ready`, so that no save made after it is missed.
        let watcher = WatchSystem::new(
            config.project_dir.clone(),
            config.debounce,
            parts.self_writes.clone(),
        )
        .inspect_err(|e| {
            // Report and go on: devices still connect, manual and initial builds still work.
            tracing::error!("file watching is off: {e:#}");
        })
        .ok();
        let triggers = crate::builder::Triggers {
            watcher,
            inbox: parts
                .take_inbox()
                .context("the build requests were taken already")?,
            any_device: parts.hub.subscribe_any_device(),
        };
        let mut builder = crate::builder::spawn(parts.builder_context(), triggers, stop.clone());
        let expiry = tokio::spawn(crate::expiry::run(
            crate::expiry::Limits {
                idle_timeout: config.idle_timeout,
                token_ttl: config.token_ttl,
            },
            config.cleanup_interval,
            parts.store.clone(),
            parts.hub.clone(),
            parts.rotation.clone(),
            stop.clone(),
        ));

        let hub = parts.hub.clone();
        let hub_task = tokio::spawn(async move { hub.serve(ws).await });
        let stop_http = tokio_util::sync::CancellationToken::new();
        let app = crate::http::router(parts.http_state());
        let http_task = tokio::spawn(crate::http::serve::serve(
            http,
            app,
            http_limits,
            stop_http.clone(),
        ));

        let session = parts.store.current();
        parts
            .reporter
            .emit(crate::rotate::ready_event(&session, &parts.advertised));
        parts.reporter.banner(&parts.advertised.pairing(&session));
        tracing::info!("ready in {} ms", parts.started.elapsed().as_millis());
        builder.server_ready();
        if config.adb {
            follow_with_adb(&parts, &stop);
        }
        if config.open_dashboard {
            crate::http::browser::open_dashboard(config.bind, parts.advertised.http_port);
        }

        shutdown.await;
        tracing::info!("stopping");
        // Everything stops at once, so the slowest part alone sets the time (within 2 s: docs/architecture.md, "Shutdown").
        // The builder kills a running build's process group when `stop` fires.
        stop.cancel();
        stop_http.cancel();
        let part = std::time::Duration::from_millis(300);
        // A build or HTTP connection that outlives its share is dropped with the runtime.
        // The expiry task is not aborted: a rotation in flight runs on a blocking thread that an
        // abort would not stop, and it must finish before the session file is removed below.
        let _ = tokio::join!(
            parts.hub.shutdown(STOP_REASON),
            tokio::time::timeout(part, builder.task),
            tokio::time::timeout(part, expiry),
            tokio::time::timeout(part, http_task),
        );
        hub_task.abort();
        if let Err(e) = parts.rotation.stop() {
            tracing::warn!("could not clean up the session file: {e:#}");
        }
        debug_assert_eq!(close::GOING_AWAY, 1001);
        parts.reporter.emit(Event::Stopped {});
        // Only now may another server take the project: this one's files are gone.
        drop(lock);
        Ok(())
    }
}

/// `--adb`: the `a` action now, and again for every APK the builder publishes (not part of the
/// build: the next one may start while adb installs this one).
fn follow_with_adb(parts: &Parts, stop: &tokio_util::sync::CancellationToken) {
    let artifacts = parts.artifacts.clone();
    let (http_port, ws_port) = (parts.advertised.http_port, parts.advertised.ws_port);
    let mut published = artifacts.subscribe();
    let stop = stop.clone();
    tokio::spawn(async move {
        loop {
            crate::adb::answer(&artifacts, http_port, ws_port, &stop).await;
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
        }
    });
}

/// `jetstart-rs dev`: resolve, bind, run until a signal.
pub async fn run(config: Config) -> Result<()> {
    let dev = Dev::bind(config).await.context("could not start the server")?;
    // Keyboard shortcuts on an interactive terminal; `shortcuts` restores the terminal on drop.
    let shortcuts = crate::keys::Shortcuts::install(dev.parts().keys());
    let result = dev
        .run(crate::keys::quit_or(shortcuts.as_ref(), shutdown_signal()))
        .await;
    drop(shortcuts);
    result
}
