//! What the benchmark examples share (included with `#[path]`: each example is a crate root).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// `dev` flags every measurement uses: `--json` events, ephemeral ports, loopback only.
pub const LOOPBACK_JSON: &[&str] = &[
    "--json",
    "--port",
    "0",
    "--ws-port",
    "0",
    "--bind",
    "127.0.0.1",
    "--host",
    "127.0.0.1",
];

/// The server binary built next to this example: `target/<profile>/examples/<example>` →
/// `target/<profile>/jetstart-rs`, so an example measures the binary of its own profile.
pub fn default_server() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("jetstart-rs"))
        .context("can't locate the target directory")?;
    if !path.exists() {
        bail!(
            "{} not found; build it first: cargo build --profile dist --bins --examples",
            path.display()
        );
    }
    Ok(path)
}
