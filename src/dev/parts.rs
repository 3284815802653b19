//! The shared parts of one server, made once. Each part gets the narrow handles it needs from
//! here; only `dev` (and tests that assemble a server) see them all.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

use crate::builder::artifacts::{self, Artifacts, Inbox, Requests};
use crate::cli::Config;
use crate::gradle::SessionFiles;
use crate::hub::{Hub, HubSettings};
use crate::pairing::Advertised;
use crate::publish::Publisher;
use crate::rotate::Rotation;
use crate::session::SessionStore;
use crate::term::reporter::Reporter;
use crate::watch::SelfWrites;

/// Every shared part of one `dev` run.
pub struct Parts {
    pub config: Arc<Config>,
    pub store: Arc<SessionStore>,
    pub hub: Hub,
    pub reporter: Arc<Reporter>,
    pub advertised: Advertised,
    /// The server's own writes inside the project, ignored by the watcher.
    pub self_writes: Arc<SelfWrites>,
    pub artifacts: Artifacts,
    pub requests: Requests,
    inbox: Mutex<Option<Inbox>>,
    pub rotation: Arc<Rotation>,
    pub started: Instant,
}

impl Parts {
    /// The parts of a server for `config` listening on `http_port` and `ws_port`.
    pub fn new(config: Arc<Config>, http_port: u16, ws_port: u16, reporter: Arc<Reporter>) -> Self {
        let advertised = Advertised {
            host: config.host.clone(),
            http_port,
            ws_port,
            project_name: config.project_name.clone(),
        };
        let store = Arc::new(SessionStore::new());
        let hub = Hub::new(
            hub_settings(&config, &advertised),
            store.clone(),
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
        let self_writes = Arc::new(SelfWrites::default());
        let files = SessionFiles::new(
            config.project_dir.clone(),
            advertised.clone(),
            self_writes.clone(),
        );
        let rotation = Arc::new(Rotation::new(
            store.clone(),
            hub.clone(),
            reporter.clone(),
            files,
            advertised.clone(),
        ));
        let (requests, inbox) = artifacts::requests();
        Self {
            config,
            store,
            hub,
            reporter,
            advertised,
            self_writes,
            artifacts: Artifacts::default(),
            requests,
            inbox: Mutex::new(Some(inbox)),
            rotation,
            started: Instant::now(),
        }
    }

    /// What the HTTP routes work with.
    pub fn http_state(&self) -> Arc<crate::http::AppState> {
        Arc::new(crate::http::AppState {
            hub: self.hub.clone(),
            store: self.store.clone(),
            rotation: self.rotation.clone(),
            artifacts: self.artifacts.clone(),
            advertised: self.advertised.clone(),
            started: self.started,
        })
    }

    /// What the builder's tasks work with.
    pub fn builder_context(&self) -> crate::builder::Context {
        crate::builder::Context {
            settings: Arc::new(crate::builder::Settings::new(&self.config)),
            publish: Publisher::new(self.hub.clone(), self.reporter.clone()),
            artifacts: self.artifacts.clone(),
        }
    }

    /// The build requests' receiving end, for the one scheduler (taken once).
    pub fn take_inbox(&self) -> Option<Inbox> {
        self.inbox.lock().take()
    }

    /// What the keyboard shortcuts work with.
    pub fn keys(&self) -> crate::keys::KeyParts {
        crate::keys::KeyParts {
            hub: self.hub.clone(),
            reporter: self.reporter.clone(),
            store: self.store.clone(),
            advertised: self.advertised.clone(),
            requests: self.requests.clone(),
            artifacts: self.artifacts.clone(),
        }
    }
}

/// The hub's share of the settings.
fn hub_settings(config: &Config, advertised: &Advertised) -> HubSettings {
    HubSettings {
        advertised: advertised.clone(),
        allowed_origins: config.allowed_origins.clone(),
        auth_timeout: config.auth_timeout,
        max_clients: config.max_clients,
        ping_interval: config.ping_interval,
        client_timeout: config.client_timeout,
    }
}
