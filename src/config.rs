//! Resolved settings of `dev`, as a plain struct: what the parts read, with no trace of clap
//! (`cli/resolve.rs` makes one from the flags, the environment and `jetstart.config.json`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `dev` needs to know, with no trace of clap.
#[derive(Debug, Clone)]
pub struct Config {
    /// Android project root, canonicalized.
    pub project_dir: PathBuf,
    /// Sanitized project name (SPEC §2), used everywhere the name appears.
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
