//! Gradle integration: the BuildConfig session file, `init`, and JetStart's marker block.

use std::path::Path;

use anyhow::Result;

use crate::server::Server;
use crate::session::Session;

/// Writes `<project>/.jetstart/session.properties` for `session` (SPEC §7).
pub fn write_session(_server: &Server, _session: &Session) -> Result<()> {
    Ok(())
}

/// Removes the session file on clean shutdown.
pub fn remove_session(_server: &Server) -> Result<()> {
    Ok(())
}

/// `jetstart-rs init`: installs the Gradle script and its `apply from:` line.
pub fn init(_project_dir: &Path) -> Result<()> {
    anyhow::bail!("init is not implemented yet")
}
