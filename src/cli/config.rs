//! `dev`'s settings: [`Config`], the plain struct the parts read, and how the flags become it
//! ([`from_args`]): the project folder checked, the name read from `jetstart.config.json`, the
//! host detected, mistakes told apart from choices (usage errors exit 2; what may be deliberate
//! gets a warning). Each default is clap's (`super`), written once; a new flag is a field in
//! `super::DevArgs` and one here.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use super::{Cli, Command, DevArgs};
use crate::pairing::{self, host};

/// Everything `dev` needs to know, as plain values: no part sees clap.
#[derive(Debug, Clone)]
pub struct Config {
    /// Android project root, canonicalized.
    pub project_dir: PathBuf,
    /// Sanitized project name (docs/protocol.md, "Pairing"), used everywhere the name appears.
    pub project_name: String,
    /// Requested HTTP port (0 = any).
    pub http_port: Port,
    /// Requested WebSocket port (0 = any).
    pub ws_port: Port,
    /// Address advertised in the QR code and BuildConfig.
    pub host: String,
    /// Address both servers listen on.
    pub bind: IpAddr,
    pub show_qr: bool,
    /// Draw the terminal QR code for a light background.
    pub qr_light_background: bool,
    pub json: bool,
    /// Open the dashboard in the default browser once ready (`--open`, `--web`).
    pub open_dashboard: bool,
    pub debounce: Duration,
    pub build_cmd: Option<String>,
    pub hot_reload: bool,
    /// `-Xmx` of the compile worker; `None` with `--no-compile-worker` (fresh processes).
    pub worker_heap: Option<String>,
    pub initial_build: bool,
    /// Run the `a` (adb) action at start-up and after every build.
    pub adb: bool,
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

/// A mistake in how `jetstart-rs` was called (a flag's value, a missing folder): exit code 2,
/// like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A port as asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Given on the command line or in the environment (0 = any): that one or an error.
    Exact(u16),
    /// The default: that one, else the next free one (said).
    Preferred(u16),
}

impl Port {
    /// `Exact` when the flag (or its environment variable) gave it, else the default, `Preferred`.
    pub fn from_flag(value: Option<u16>, default: u16) -> Self {
        value.map_or(Self::Preferred(default), Self::Exact)
    }

    /// The number asked for.
    pub fn number(self) -> u16 {
        match self {
            Self::Exact(port) | Self::Preferred(port) => port,
        }
    }
}

/// The folder `--project` names, canonicalized; a missing folder or a file is a usage error.
fn project_folder(path: &Path) -> Result<PathBuf> {
    let canonical = path.canonicalize().map_err(|_| {
        UsageError(format!(
            "--project {}: no such folder; pass your Android project's root folder",
            path.display()
        ))
    })?;
    if !canonical.is_dir() {
        return Err(UsageError(format!(
            "--project {} is a file; pass the folder that holds settings.gradle or app/",
            path.display()
        ))
        .into());
    }
    Ok(canonical)
}

/// True if `dir` looks like an Android (Gradle) project root.
fn looks_like_android_project(dir: &Path) -> bool {
    [
        "settings.gradle",
        "settings.gradle.kts",
        "build.gradle",
        "build.gradle.kts",
    ]
    .iter()
    .any(|f| dir.join(f).is_file())
        || dir.join("app").is_dir()
}

/// Resolves the `dev` flags into settings; a missing project folder or conflicting ports are a
/// [`UsageError`].
pub fn from_args(args: DevArgs) -> Result<Config> {
    let project_dir = project_folder(&args.project)?;
    if !looks_like_android_project(&project_dir) {
        tracing::warn!(
            "{} doesn't look like an Android project (no settings.gradle[.kts], build.gradle[.kts] \
             or app/); watching it anyway, but pass --project <your app's root folder> if it's wrong",
            project_dir.display()
        );
    }
    let http_port = Port::from_flag(args.port, super::DEFAULT_PORT);
    let ws_port = Port::from_flag(args.ws_port, super::DEFAULT_WS_PORT);
    if http_port.number() == ws_port.number() && http_port.number() != 0 {
        return Err(UsageError(format!(
            "--port and --ws-port must differ (both are {})",
            http_port.number()
        ))
        .into());
    }
    let raw_name = match args.name {
        Some(name) => name,
        None => name_from_config_file(&project_dir).unwrap_or_else(|| folder_name(&project_dir)),
    };
    let host = match args.host {
        Some(host) => {
            if host::is_foreign_ip(&host) {
                tracing::warn!(
                    "--host {host} is not an address of this computer: phones will look for the \
                     server there; pass this computer's LAN address (or leave --host out)"
                );
            }
            host
        }
        None => match host::detect_lan_ipv4() {
            Some(ip) => ip.to_string(),
            None => {
                tracing::warn!(
                    "no private LAN IPv4 address found; advertising 127.0.0.1, which only this \
                     computer reaches. The Android emulator reaches this computer as 10.0.2.2 \
                     (pass --host 10.0.2.2), a USB device after `adb reverse tcp:<port> tcp:<port>` \
                     for both ports (the `a` key does it); phones on Wi-Fi need --host <LAN address>"
                );
                "127.0.0.1".to_owned()
            }
        },
    };
    Ok(Config {
        project_dir,
        project_name: pairing::sanitize_project_name(&raw_name),
        http_port,
        ws_port,
        host,
        bind: args.bind,
        show_qr: !args.no_qr,
        qr_light_background: args.qr_invert || crate::term::light_background(),
        json: args.json,
        open_dashboard: args.open,
        debounce: args.debounce,
        build_cmd: args.build_cmd,
        hot_reload: !args.no_hot_reload,
        worker_heap: (!args.no_compile_worker).then_some(args.worker_heap),
        initial_build: !args.no_initial_build,
        adb: args.adb,
        build_timeout: args.build_timeout,
        auth_timeout: args.auth_timeout,
        idle_timeout: args.idle_timeout,
        token_ttl: args.token_ttl,
        cleanup_interval: args.cleanup_interval,
        max_clients: args.max_clients as usize,
        allowed_origins: args
            .allow_origin
            .iter()
            .map(|o| crate::hub::normalize_origin(o))
            .collect(),
        ping_interval: args.ping_interval,
        client_timeout: args.client_timeout,
        http_header_timeout: args.http_header_timeout,
    })
}

/// The settings `dev --project <dir>` gets with every default, except on ephemeral loopback
/// ports with no QR code and the loopback host: for tests and embedding. The defaults are
/// clap's, so they are written once.
pub fn for_project(project_dir: &Path) -> Result<Config> {
    let cli = Cli::try_parse_from([
        "jetstart-rs".as_ref(),
        "dev".as_ref(),
        "--project".as_ref(),
        project_dir.as_os_str(),
        "--port=0".as_ref(),
        "--ws-port=0".as_ref(),
        "--host=127.0.0.1".as_ref(),
        "--bind=127.0.0.1".as_ref(),
        "--no-qr".as_ref(),
    ] as [&std::ffi::OsStr; 9])?;
    match cli.command {
        Command::Dev(args) => from_args(args),
        _ => unreachable!("parsed as dev"),
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
    fn project_folder_mistakes_are_usage_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("build.gradle");
        std::fs::write(&file, "").expect("write");
        for (path, says) in [
            (file.clone(), "is a file"),
            (dir.path().join("nope"), "no such folder"),
        ] {
            let e = project_folder(&path).unwrap_err();
            assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
            let text = format!("{e:#}");
            assert!(
                text.contains(says) && text.matches("--project").count() == 1,
                "{text}"
            );
        }
        assert!(looks_like_android_project(dir.path()));
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(!looks_like_android_project(empty.path()));
        std::fs::create_dir(empty.path().join("app")).expect("mkdir");
        assert!(looks_like_android_project(empty.path()));
    }
}
