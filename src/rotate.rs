//! Session rotation: new credentials, every client of the old ones closed with 4001, the new
//! values written for Gradle builds, the new pairing shown and reported; and the clean-up on
//! shutdown, after which no rotation writes again.

use parking_lot::Mutex;
use std::sync::Arc;

use crate::events::{Event, SessionView};
use crate::gradle::SessionFiles;
use crate::hub::Hub;
use crate::pairing::Advertised;
use crate::protocol::close;
use crate::session::{Session, SessionStore};
use crate::term::reporter::Reporter;

/// Rotates the session of one server.
pub struct Rotation {
    store: Arc<SessionStore>,
    hub: Hub,
    reporter: Arc<Reporter>,
    files: SessionFiles,
    advertised: Advertised,
    /// True once shutdown has cleaned up the session files. Held through a whole rotation, so a
    /// rotation racing shutdown either finishes before the clean-up or doesn't happen at all.
    stopped: Mutex<bool>,
}

impl Rotation {
    pub fn new(
        store: Arc<SessionStore>,
        hub: Hub,
        reporter: Arc<Reporter>,
        files: SessionFiles,
        advertised: Advertised,
    ) -> Self {
        Self {
            store,
            hub,
            reporter,
            files,
            advertised,
            stopped: Mutex::new(false),
        }
    }

    /// Writes the session files for the current session (at start-up).
    pub fn write_files(&self) -> anyhow::Result<()> {
        self.files.write(&self.store.current())
    }

    /// Replaces the session: old credentials get 4001 from now on, connected clients are closed
    /// with 4001, the new pairing details are printed and reported. Blocking (it writes files).
    pub fn rotate(&self, reason: &str) -> Arc<Session> {
        let stopped = self.stopped.lock();
        if *stopped {
            return self.store.current(); // shutting down: clients get 1001, not 4001
        }
        let session = self.store.rotate();
        let closed = self
            .hub
            .close_all(close::WRONG_SESSION, close::REASON_WRONG_SESSION);
        tracing::info!("session rotated ({reason}); {closed} device(s) must rescan the QR code");
        if let Err(e) = self.files.write(&session) {
            tracing::error!("could not update the BuildConfig session file: {e:#}");
        }
        self.reporter.banner(&self.advertised.pairing(&session));
        self.reporter.emit(Event::SessionRotated {
            session: session_view(&session, &self.advertised),
            qr: self.advertised.pairing(&session).payload(),
            reason: reason.to_owned(),
        });
        drop(stopped);
        session
    }

    /// Shutdown's clean-up of the session files; no rotation writes them again afterwards.
    pub fn stop(&self) -> anyhow::Result<()> {
        let mut stopped = self.stopped.lock();
        *stopped = true;
        self.files.remove()
    }
}

/// Credentials as reported in `ready` and `session-rotated`.
pub fn session_view(session: &Session, advertised: &Advertised) -> SessionView {
    SessionView {
        id: session.id.clone(),
        token: session.token.clone(),
        project_name: advertised.project_name.clone(),
    }
}

/// The `ready` event for `session`.
pub fn ready_event(session: &Session, advertised: &Advertised) -> Event {
    Event::Ready {
        session: session_view(session, advertised),
        host: advertised.host.clone(),
        http_port: advertised.http_port,
        ws_port: advertised.ws_port,
        qr: advertised.pairing(session).payload(),
    }
}
