//! Gradle integration: the BuildConfig session file, `init`, and JetStart's marker block.

mod atomic;
pub mod capture;
pub mod escape;
pub mod init;
pub mod marker;
pub mod session_file;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::pairing::url_host;
use crate::pairing::Advertised;
use crate::session::Session;
use crate::watch::SelfWrites;

pub use init::init;

/// The Gradle script `init` installs as `gradle/jetstart.gradle`.
pub const SCRIPT: &str = include_str!("../../templates/jetstart.gradle");

/// The four `BuildConfig` string fields (README, "Gradle integration"), in the order they are written.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub server_url: &'a str,
    pub session_id: &'a str,
    pub token: &'a str,
    pub http_url: &'a str,
}

impl Fields<'_> {
    /// Every field empty: what a stopped server leaves behind.
    pub const EMPTY: Fields<'static> = Fields {
        server_url: "",
        session_id: "",
        token: "",
        http_url: "",
    };

    /// `(BuildConfig name, value)` pairs.
    pub fn named(&self) -> [(&'static str, &str); 4] {
        [
            ("JETSTART_SERVER_URL", self.server_url),
            ("JETSTART_SESSION_ID", self.session_id),
            ("JETSTART_TOKEN", self.token),
            ("JETSTART_HTTP_URL", self.http_url),
        ]
    }
}

/// `ws://<host>:<wsPort>/?token=<token>` and `http://<host>:<port>`, with IPv6 hosts in
/// brackets. The token rides in the WebSocket URL because JetStart's in-app runtime connects to
/// `JETSTART_SERVER_URL` exactly as written and sends no token of its own (tokens are base62, so
/// they need no escaping in a query).
pub fn urls(host: &str, http_port: u16, ws_port: u16, token: &str) -> (String, String) {
    let host = url_host(host);
    (
        format!("ws://{host}:{ws_port}/?token={token}"),
        format!("http://{host}:{http_port}"),
    )
}

/// The app module's Groovy build file, where JetStart projects keep their marker block.
fn marker_file(project_dir: &Path) -> PathBuf {
    project_dir.join("app").join("build.gradle")
}

/// The files that carry the session into Gradle builds: `<project>/.jetstart/session.properties`
/// and, in a JetStart-created project, the marker block of `app/build.gradle`.
#[derive(Debug)]
pub struct SessionFiles {
    project_dir: PathBuf,
    advertised: Advertised,
    self_writes: Arc<SelfWrites>,
}

impl SessionFiles {
    /// The files of the project at `project_dir` (canonicalized), for a server at `advertised`;
    /// every write is recorded in `self_writes` so the watcher ignores it.
    pub fn new(project_dir: PathBuf, advertised: Advertised, self_writes: Arc<SelfWrites>) -> Self {
        Self {
            project_dir,
            advertised,
            self_writes,
        }
    }

    /// Writes both for `session`.
    ///
    /// Only the session file is essential: a marker block that can't be updated is reported as
    /// a warning, so a read-only build file doesn't stop the server.
    pub fn write(&self, session: &Session) -> Result<()> {
        let a = &self.advertised;
        let (server_url, http_url) = urls(&a.host, a.http_port, a.ws_port, &session.token);
        session_file::write(
            &self.project_dir,
            &session_file::Contents {
                server_url: &server_url,
                http_url: &http_url,
                session_id: &session.id,
                token: &session.token,
                project_name: &a.project_name,
            },
            &self.self_writes,
        )?;
        let fields = Fields {
            server_url: &server_url,
            session_id: &session.id,
            token: &session.token,
            http_url: &http_url,
        };
        self.update_marker_block(&fields);
        Ok(())
    }

    /// Removes the session file and empties the marker block's values (clean shutdown).
    pub fn remove(&self) -> Result<()> {
        self.update_marker_block(&Fields::EMPTY);
        session_file::remove(&self.project_dir)
    }

    fn update_marker_block(&self, fields: &Fields<'_>) {
        let file = marker_file(&self.project_dir);
        match marker::update(&self.project_dir, &file, fields, &self.self_writes) {
            Ok(true) => tracing::debug!("updated the JetStart fields in {}", file.display()),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "could not update the JetStart fields block: {e:#}; apps built now carry stale credentials"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6_hosts() {
        assert_eq!(
            urls("192.168.1.5", 8765, 8766, "Tok3n"),
            (
                "ws://192.168.1.5:8766/?token=Tok3n".to_owned(),
                "http://192.168.1.5:8765".to_owned()
            )
        );
        assert_eq!(
            urls("fe80::1", 1, 2, "t"),
            (
                "ws://[fe80::1]:2/?token=t".to_owned(),
                "http://[fe80::1]:1".to_owned()
            )
        );
        assert_eq!(urls("laptop.local", 1, 2, "t").0, "ws://laptop.local:2/?token=t");
    }

    #[test]
    fn script_defines_every_field() {
        for (name, _) in Fields::EMPTY.named() {
            assert!(SCRIPT.contains(name), "{name} missing from the template");
        }
        assert!(SCRIPT.contains("rootProject.file('.jetstart/session.properties')"));
        assert!(SCRIPT.contains("buildConfig = true"));
        assert!(SCRIPT.contains("logger.warn"));
    }
}
