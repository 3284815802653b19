//! The state every part of a running server shares: settings, session, hub, latest build.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Config;
use crate::hub::Hub;
use crate::pairing::Pairing;
use crate::protocol::{close, ApkInfo};
use crate::report::{Event, Reporter, SessionView};
use crate::session::{Session, SessionStore};

/// The APK that `/download` serves.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    pub info: ApkInfo,
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
    artifact: Mutex<Option<Artifact>>,
}

impl Server {
    pub fn new(config: Arc<Config>, http_port: u16, ws_port: u16, reporter: Arc<Reporter>) -> Self {
        let session = Arc::new(SessionStore::new());
        let hub = Hub::new(
            crate::hub::HubSettings::new(&config, http_port),
            session.clone(),
            reporter.clone(),
        );
        Self {
            config,
            session,
            hub,
            reporter,
            http_port,
            ws_port,
            started: Instant::now(),
            artifact: Mutex::new(None),
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

    /// Publishes a freshly built APK (for `/download` and late-joining devices).
    pub fn set_artifact(&self, artifact: Artifact) {
        self.hub.set_last_apk(Some(artifact.info.clone()));
        *self.artifact.lock().unwrap_or_else(|e| e.into_inner()) = Some(artifact);
    }

    /// Replaces the session (SPEC §3): old credentials get 4001 from now on, connected devices
    /// are closed with 4001, the new pairing details are printed and reported.
    pub fn rotate_session(&self, reason: &str) -> Arc<Session> {
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
        session
    }
}
