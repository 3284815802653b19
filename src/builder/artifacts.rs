//! What comes out of the builder and what goes into it from outside the watcher: the APK the
//! last full build published (for `/download`, adb and the initial-build rule), and build
//! requests (the `b` key).

use std::path::PathBuf;

use tokio::sync::{mpsc, watch};

use crate::events::Trigger;
use crate::protocol::ApkInfo;

/// The APK that `/download` serves.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    pub info: ApkInfo,
}

/// The latest APK, shared: the builder publishes, the others read or follow it. A `watch`
/// channel: only the latest one matters.
#[derive(Debug, Clone)]
pub struct Artifacts {
    latest: watch::Sender<Option<Artifact>>,
}

impl Default for Artifacts {
    fn default() -> Self {
        Self {
            latest: watch::Sender::new(None),
        }
    }
}

impl Artifacts {
    /// The APK built by this run, if any.
    pub fn latest(&self) -> Option<Artifact> {
        self.latest.borrow().clone()
    }

    /// True once this run has built an APK.
    pub fn any(&self) -> bool {
        self.latest.borrow().is_some()
    }

    /// Publishes a freshly built APK. (Devices that connect later get its `core:build-complete`:
    /// the hub remembers the one it broadcast.)
    pub fn publish(&self, artifact: Artifact) {
        self.latest.send_replace(Some(artifact));
    }

    /// Follows every APK published from now on.
    pub fn subscribe(&self) -> watch::Receiver<Option<Artifact>> {
        self.latest.subscribe()
    }
}

/// Asks the build scheduler for a full build (coalesced with any pending one), naming why.
#[derive(Debug, Clone)]
pub struct Requests(mpsc::UnboundedSender<Trigger>);

impl Requests {
    pub fn request(&self, request: Trigger) {
        // Fails only once the scheduler is gone, i.e. while shutting down.
        let _ = self.0.send(request);
    }
}

/// The scheduler's end of [`Requests`].
#[derive(Debug)]
pub struct Inbox(pub(super) mpsc::UnboundedReceiver<Trigger>);

/// A request line: the handle for those who ask, the inbox for the scheduler.
pub fn requests() -> (Requests, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Requests(tx), Inbox(rx))
}
