//! Resolved settings of `dev`: flags + environment + `jetstart.config.json`, as a plain struct.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::DevArgs;
use crate::pairing::{self, host};

/// Everything `dev` needs to know, with no trace of clap.
#[derive(Debug, Clone)]
pub struct Config {
    /// Android project root, canonicalized.
    pub project_dir: PathBuf,
    /// Sanitized project name (SPEC §2), used everywhere the name appears.
    pub project_name: String,
    /// Requested HTTP port (0 = any).
    pub http_port: u16,
    /// Requested WebSocket port (0 = any).
    pub ws_port: u16,
    /// Address advertised in the QR code and BuildConfig.
    pub host: String,
    /// Address both servers listen on.
    pub bind: IpAddr,
    pub show_qr: bool,
    pub json: bool,
    pub debounce: Duration,
    pub build_cmd: Option<String>,
    pub hot_reload: bool,
    /// `-Xmx` of the compile worker; `None` with `--no-compile-worker` (fresh processes).
    pub worker_heap: Option<String>,
    pub initial_build: bool,
    pub build_timeout: Duration,
    pub auth_timeout: Duration,
    pub idle_timeout: Duration,
    pub token_ttl: Duration,
    pub cleanup_interval: Duration,
    pub max_clients: usize,
    /// Extra browser origins allowed on the WebSocket, normalized (lowercase, no trailing `/`).
    pub allowed_origins: Vec<String>,
    pub ping_interval: Duration,
    pub client_timeout: Duration,
    /// How long an HTTP client may take to send a request head.
    pub http_header_timeout: Duration,
}

impl Config {
    /// Resolves the `dev` flags into settings; fails on a missing project folder.
    pub fn from_args(args: DevArgs) -> Result<Self> {
        let project_dir = args.project.canonicalize().with_context(|| {
            format!(
                "project folder {} does not exist; pass the Android project root with --project",
                args.project.display()
            )
        })?;
        let raw_name = match args.name {
            Some(name) => name,
            None => name_from_config_file(&project_dir).unwrap_or_else(|| folder_name(&project_dir)),
        };
        let host = match args.host {
            Some(host) => host,
            None => match host::detect_lan_ipv4() {
                Some(ip) => ip.to_string(),
                None => {
                    tracing::warn!(
                        "no private LAN IPv4 address found; advertising 127.0.0.1 (only an emulator \
                         on this machine can connect; pass --host to choose the address)"
                    );
                    "127.0.0.1".to_owned()
                }
            },
        };
        Ok(Self {
            project_dir,
            project_name: pairing::sanitize_project_name(&raw_name),
            http_port: args.port,
            ws_port: args.ws_port,
            host,
            bind: args.bind,
            show_qr: !args.no_qr,
            json: args.json,
            debounce: args.debounce,
            build_cmd: args.build_cmd,
            hot_reload: !args.no_hot_reload,
            worker_heap: (!args.no_compile_worker).then_some(args.worker_heap),
            initial_build: !args.no_initial_build,
            build_timeout: args.build_timeout,
            auth_timeout: args.auth_timeout,
            idle_timeout: args.idle_timeout,
            token_ttl: args.token_ttl,
            cleanup_interval: args.cleanup_interval,
            max_clients: args.max_clients as usize,
            allowed_origins: args.allow_origin.iter().map(|o| normalize_origin(o)).collect(),
            ping_interval: args.ping_interval,
            client_timeout: args.client_timeout,
            http_header_timeout: args.http_header_timeout,
        })
    }

    /// Settings for tests and embedding: every default of SPEC §1, ephemeral ports on loopback.
    pub fn for_project(project_dir: impl Into<PathBuf>) -> Self {
        let project_dir = project_dir.into();
        Self {
            project_name: pairing::sanitize_project_name(&folder_name(&project_dir)),
            project_dir,
            http_port: 0,
            ws_port: 0,
            host: "127.0.0.1".to_owned(),
            bind: IpAddr::from([127, 0, 0, 1]),
            show_qr: false,
            json: false,
            debounce: Duration::from_millis(50),
            build_cmd: None,
            hot_reload: true,
            worker_heap: Some("1g".to_owned()),
            initial_build: true,
            build_timeout: Duration::from_secs(300),
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30 * 60),
            token_ttl: Duration::from_secs(60 * 60),
            cleanup_interval: Duration::from_secs(60),
            max_clients: 64,
            allowed_origins: Vec::new(),
            ping_interval: Duration::from_secs(30),
            client_timeout: Duration::from_secs(90),
            http_header_timeout: crate::http::serve::HEADER_TIMEOUT,
        }
    }
}

/// `projectName` from `<project>/jetstart.config.json`, if the file exists and has one. A file
/// that is not a regular file of the project, or too big, is ignored with a warning.
fn name_from_config_file(project_dir: &Path) -> Option<String> {
    use crate::project_file::{self, CONFIG_MAX};
    let path = project_dir.join("jetstart.config.json");
    let text = match project_file::read_to_string(project_dir, &path, CONFIG_MAX) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return None,
        Err(e) => {
            tracing::warn!("ignoring the project name in it: {e}");
            return None;
        }
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => value.get("projectName")?.as_str().map(str::to_owned),
        Err(e) => {
            tracing::warn!("ignoring {}: not valid JSON ({e})", path.display());
            None
        }
    }
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".to_owned())
}

/// Lowercases an origin and drops a trailing `/`, so `--allow-origin` compares like browsers send.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_comes_from_config_file_then_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(name_from_config_file(dir.path()), None);
        std::fs::write(
            dir.path().join("jetstart.config.json"),
            r#"{"projectName":"demo|app"}"#,
        )
        .expect("write");
        assert_eq!(name_from_config_file(dir.path()).as_deref(), Some("demo|app"));
        std::fs::write(dir.path().join("jetstart.config.json"), "{not json").expect("write");
        assert_eq!(name_from_config_file(dir.path()), None);
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            normalize_origin(" HTTP://Laptop.local:3000/ "),
            "http://laptop.local:3000"
        );
    }
}
