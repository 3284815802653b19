//! The state every part of a running server shares: settings, session, hub, latest build.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::events::{Event, SessionView};
use crate::hub::Hub;
use crate::pairing::Pairing;
use crate::protocol::{close, ApkInfo};
use crate::session::{Session, SessionStore};
use crate::term::reporter::Reporter;

/// The APK that `/download` serves.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    pub info: ApkInfo,
}

/// Why a build was asked for outside the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildRequest {
    /// The developer asked (keyboard `b`, HTTP).
    Manual,
}

/// Files the server itself wrote inside the project (session file, Gradle marker block), so
/// the watcher can tell its own writes from the developer's and never build because of them.
#[derive(Default)]
pub struct SelfWrites {
    written: Mutex<HashMap<PathBuf, [u8; 32]>>,
}

impl SelfWrites {
    /// Records that the server wrote `contents` to `path`.
    pub fn record(&self, path: &Path, contents: &[u8]) {
        let digest: [u8; 32] = Sha256::digest(contents).into();
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_path_buf(), digest);
    }

    /// True if `path` still holds exactly what the server last wrote there.
    pub fn is_own(&self, path: &Path) -> bool {
        let Some(expected) = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .copied()
        else {
            return false;
        };
        crate::project_file::read_regular(path, crate::project_file::BUILD_FILE_MAX)
            .is_ok_and(|now| <[u8; 32]>::from(Sha256::digest(&now)) == expected)
    }
}

/// Shared state of one `dev` run.
pub struct Server {
    pub config: Arc<Config>,
    pub session: Arc<SessionStore>,
    pub hub: Hub,
    pub reporter: Arc<Reporter>,
    /// Real bound ports.
    pub http_port: u16,
    pub ws_port: u16,
    pub started: Instant,
    /// The server's own writes inside the project, ignored by the watcher.
    pub self_writes: SelfWrites,
    artifact: Mutex<Option<Artifact>>,
    build_requests: mpsc::UnboundedSender<BuildRequest>,
    build_inbox: Mutex<Option<mpsc::UnboundedReceiver<BuildRequest>>>,
    /// True once shutdown has cleaned up the session file. Held through a whole rotation, so a
    /// rotation racing shutdown either finishes before the clean-up or doesn't happen at all.
    stopped: Mutex<bool>,
}

impl Server {
    pub fn new(config: Arc<Config>, http_port: u16, ws_port: u16, reporter: Arc<Reporter>) -> Self {
        let session = Arc::new(SessionStore::new());
        let (build_requests, build_inbox) = mpsc::unbounded_channel();
        let hub = Hub::new(
            crate::hub::HubSettings::new(&config, http_port),
            session.clone(),
            reporter.clone(),
        );
        // Every event also goes to the viewers on this computer (the dashboard). Weak: the hub
        // holds the reporter.
        let feed = hub.downgrade();
        reporter.set_tap(Box::new(move |event| {
            if let Some(hub) = feed.upgrade() {
                hub.send_event(event);
            }
        }));
        Self {
            config,
            session,
            hub,
            reporter,
            http_port,
            ws_port,
            started: Instant::now(),
            self_writes: SelfWrites::default(),
            artifact: Mutex::new(None),
            build_requests,
            build_inbox: Mutex::new(Some(build_inbox)),
            stopped: Mutex::new(false),
        }
    }

    /// The pairing details of a session.
    pub fn pairing<'a>(&'a self, session: &'a Session) -> Pairing<'a> {
        Pairing {
            host: &self.config.host,
            http_port: self.http_port,
            ws_port: self.ws_port,
            session_id: &session.id,
            token: &session.token,
            project_name: &self.config.project_name,
        }
    }

    /// Credentials as reported in `ready` and `session-rotated`.
    pub fn session_view(&self, session: &Session) -> SessionView {
        SessionView {
            id: session.id.clone(),
            token: session.token.clone(),
            project_name: self.config.project_name.clone(),
        }
    }

    /// The `ready` event for the current session.
    pub fn ready_event(&self) -> Event {
        let session = self.session.current();
        Event::Ready {
            session: self.session_view(&session),
            host: self.config.host.clone(),
            http_port: self.http_port,
            ws_port: self.ws_port,
            qr: self.pairing(&session).payload(),
        }
    }

    /// The APK `/download` serves, if one was built by this run.
    pub fn artifact(&self) -> Option<Artifact> {
        self.artifact.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes a freshly built APK for `/download`. (Devices that connect later get its
    /// `core:build-complete`: the hub remembers the one it broadcast.)
    pub fn set_artifact(&self, artifact: Artifact) {
        *self.artifact.lock().unwrap_or_else(|e| e.into_inner()) = Some(artifact);
    }

    /// Asks the build scheduler for a full build (coalesced with any pending one).
    pub fn request_build(&self, request: BuildRequest) {
        // Fails only once the scheduler is gone, i.e. while shutting down.
        let _ = self.build_requests.send(request);
    }

    /// The receiving end of [`Server::request_build`]; the build scheduler takes it once.
    pub fn take_build_inbox(&self) -> Option<mpsc::UnboundedReceiver<BuildRequest>> {
        self.build_inbox.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Replaces the session (SPEC §3): old credentials get 4001 from now on, connected devices
    /// are closed with 4001, the new pairing details are printed and reported.
    pub fn rotate_session(&self, reason: &str) -> Arc<Session> {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if *stopped {
            return self.session.current(); // shutting down: devices get 1001, not 4001
        }
        let session = self.session.rotate();
        let closed = self
            .hub
            .close_all(close::WRONG_SESSION, close::REASON_WRONG_SESSION);
        tracing::info!("session rotated ({reason}); {closed} device(s) must rescan the QR code");
        if let Err(e) = crate::gradle::write_session(self, &session) {
            tracing::error!("could not update the BuildConfig session file: {e:#}");
        }
        self.reporter.banner(&self.pairing(&session));
        self.reporter.emit(Event::SessionRotated {
            session: self.session_view(&session),
            qr: self.pairing(&session).payload(),
            reason: reason.to_owned(),
        });
        drop(stopped);
        session
    }

    /// Shutdown's clean-up of the BuildConfig session file and marker block; no rotation
    /// writes them again afterwards.
    pub fn remove_session_files(&self) -> anyhow::Result<()> {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        *stopped = true;
        crate::gradle::remove_session(self)
    }
}
