//! Command-line definitions (clap), and [`config`], which turns `dev`'s flags into the plain
//! [`Config`] the parts read.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub mod config;
pub use config::{Config, Port, UsageError};

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "jetstart-rs",
    version,
    about = "A fast, safe development server for Android Jetpack Compose apps",
    long_about = "jetstart-rs runs next to your Android project: it shows a QR code that \
                  the JetStart app scans, authenticates devices over WebSocket, watches your \
                  sources, builds, and pushes every reload to every connected device."
)]
pub struct Cli {
    // Global flags are listed in every subcommand's help; a heading of their own puts them after
    // the subcommand's flags instead of between its first ones.
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = LOGGING)]
    pub verbose: u8,
    /// Less log output (-q warnings only, -qq errors only).
    #[arg(
        short,
        long,
        action = clap::ArgAction::Count,
        global = true,
        conflicts_with = "verbose",
        help_heading = LOGGING
    )]
    pub quiet: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Help heading of the global -v/-q flags.
const LOGGING: &str = "Logging";

// Parsed once per run; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the development server for a project.
    #[command(after_help = DEV_EXAMPLES)]
    Dev(DevArgs),
    /// Install the Gradle integration (BuildConfig fields) into a project.
    Init(InitArgs),
    /// Connect to a running server as a simulated device and print every message it sends.
    #[command(after_help = CONNECT_EXAMPLES)]
    Connect(ConnectArgs),
    /// Follow the device logs (core:log) of a running server, filtered.
    #[command(after_help = LOGS_EXAMPLES)]
    Logs(LogsArgs),
    /// Print a shell completion script.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
}

const DEV_EXAMPLES: &str = "Examples:
  jetstart-rs dev                          serve the project in this folder
  jetstart-rs dev --project ~/apps/notes   serve another project
  jetstart-rs dev -p 9000 --ws-port 9001   other ports (0 picks free ones)
  jetstart-rs dev --host 192.168.1.20      advertise this address in the QR code
  jetstart-rs dev --json | jq .            machine-readable events

Keys (on a terminal): r reload devices, b rebuild, a adb (reverse, install, start), c show the QR code, d devices, q quit, ? help";

const CONNECT_EXAMPLES: &str = "Examples:
  jetstart-rs connect                       use ./.jetstart/session.properties
  jetstart-rs connect --project ~/apps/notes
  jetstart-rs connect '192.168.1.20|8765|8766|a1b2c3d4|<token>|notes'
  jetstart-rs connect --json | jq .type

Exit status: 0 when you press Ctrl+C or the server stops, 1 when the server rejects or drops the
connection (the message names the close code, e.g. 4002 wrong token — rescan QR code).";

const LOGS_EXAMPLES: &str = "Examples:
  jetstart-rs logs --level warn             warnings, errors and fatal only
  jetstart-rs logs --tag MainActivity
  jetstart-rs logs --project ~/apps/notes --json";

const COMPLETIONS_EXAMPLES: &str = "Examples:
  jetstart-rs completions bash > ~/.local/share/bash-completion/completions/jetstart-rs
  jetstart-rs completions zsh > \"${fpath[1]}/_jetstart-rs\"
  jetstart-rs completions fish > ~/.config/fish/completions/jetstart-rs.fish";

/// `--port` when not given: the ports JetStart uses, so its app's habits carry over. Taken
/// (another server, or an earlier run not yet gone), the next free one is used instead.
pub const DEFAULT_PORT: u16 = 8765;
/// `--ws-port` when not given.
pub const DEFAULT_WS_PORT: u16 = 8766;

/// Where `connect` and `logs` find the server: a QR payload, or a project's session file.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The QR code's payload, host|port|wsPort|sessionId|token|projectName
    /// [default: read <project>/.jetstart/session.properties].
    #[arg(value_name = "PAYLOAD", env = "JETSTART_PAYLOAD", hide_env_values = true)]
    pub payload: Option<String>,
    /// Project whose running `dev` to connect to (reads .jetstart/session.properties).
    #[arg(long, value_name = "DIR", default_value = ".", conflicts_with = "payload")]
    pub project: PathBuf,
}

/// Flags of `jetstart-rs connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print each message as received, raw JSON, one per line.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `jetstart-rs logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Show this level and above: verbose, debug, info, warn, error, fatal (lines with another
    /// level are always shown) [default: everything].
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    pub level: Option<crate::term::logline::Level>,
    /// Show only this tag (exact match, any case).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Print each matching core:log message as raw JSON, one per line.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `jetstart-rs completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    pub shell: clap_complete::Shell,
}

/// Writes the completion script for `shell` to stdout.
pub fn print_completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "jetstart-rs", &mut std::io::stdout());
}

fn parse_level(s: &str) -> Result<crate::term::logline::Level, String> {
    crate::term::logline::Level::parse(s)
        .ok_or_else(|| format!("unknown level {s:?} (use verbose, debug, info, warn, error or fatal)"))
}

/// Flags of `jetstart-rs dev` (README, "Usage").
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Android project root (holds settings.gradle[.kts] and/or app/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub project: PathBuf,
    /// Project name shown to devices [default: projectName from jetstart.config.json, else the folder's name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// HTTP port; 0 picks any free port [default: 8765, else the next free one].
    #[arg(short = 'p', long, env = "JETSTART_PORT")]
    pub port: Option<u16>,
    /// WebSocket port; 0 picks any free port [default: 8766, else the next free one].
    #[arg(long, env = "JETSTART_WS_PORT")]
    pub ws_port: Option<u16>,
    /// Address advertised in the QR code and BuildConfig [default: auto-detected LAN IPv4].
    /// Must not be a public IP address; hostnames are taken as they are.
    #[arg(short = 'H', long, env = "JETSTART_HOST", value_parser = crate::pairing::host::parse_host_flag)]
    pub host: Option<String>,
    /// Address the two servers listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Don't render the QR code (the connection details are still printed).
    #[arg(long, env = "JETSTART_NO_QR", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_qr: bool,
    /// Draw the QR code for a light terminal background (detected where the terminal sets
    /// COLORFGBG).
    #[arg(long, env = "JETSTART_QR_INVERT", value_parser = clap::builder::FalseyValueParser::new())]
    pub qr_invert: bool,
    /// Machine-readable mode: stdout carries only newline-delimited JSON events.
    #[arg(long)]
    pub json: bool,
    /// Open the browser dashboard (http://localhost:<port>) once the server is ready.
    #[arg(long, visible_alias = "web")]
    pub open: bool,
    /// File-change debounce window (editors write one save as several events).
    #[arg(long, value_name = "DUR", default_value = "50ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Full-build command, run with `sh -c` in the project root
    /// [default: ./gradlew assembleDebug --console=plain, else gradle on PATH].
    #[arg(long, value_name = "CMD")]
    pub build_cmd: Option<String>,
    /// Always use full builds (no DEX hot reload).
    #[arg(long)]
    pub no_hot_reload: bool,
    /// Compile each save in fresh compiler processes instead of the warm compile worker.
    #[arg(long)]
    pub no_compile_worker: bool,
    /// Maximum heap of the compile worker's JVM (its -Xmx), e.g. 512m, 2g.
    #[arg(long, value_name = "SIZE", default_value = "1g", value_parser = parse_heap)]
    pub worker_heap: String,
    /// With adb: at start-up and after every build, `adb reverse` both ports, install the APK
    /// and start it on every connected device and emulator (what the `a` key does once).
    #[arg(long)]
    pub adb: bool,
    /// Don't build when the first device connects.
    #[arg(long)]
    pub no_initial_build: bool,
    /// A build running longer is killed and reported as failed.
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_duration)]
    pub build_timeout: Duration,
    /// A socket that hasn't authenticated by then is closed (4003).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub auth_timeout: Duration,
    /// Retire the session after this long without activity (when no device is connected).
    #[arg(long, value_name = "DUR", default_value = "30m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Retire the session once its token is this old (when no device is connected).
    #[arg(long, value_name = "DUR", default_value = "1h", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// How often session expiry is checked.
    #[arg(long, value_name = "DUR", default_value = "1m", value_parser = parse_duration)]
    pub cleanup_interval: Duration,
    /// Open WebSocket connections at most (authenticated or not).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_clients: u32,
    /// Extra browser origin allowed on the WebSocket (repeatable), e.g. http://my-laptop.local:3000.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// WebSocket ping interval (internal; tests shorten it).
    #[arg(long, hide = true, default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// A device silent for this long is dropped (internal; tests shorten it).
    #[arg(long, hide = true, default_value = "90s", value_parser = parse_duration)]
    pub client_timeout: Duration,
    /// How long an HTTP client may take to send a request head, also between requests on a
    /// kept-alive connection: a browser sends one at once; a connection that trickles bytes or
    /// sits idle only holds a descriptor (internal; tests shorten it).
    #[arg(long, hide = true, default_value = "15s", value_parser = parse_duration)]
    pub http_header_timeout: Duration,
}

/// Flags of `jetstart-rs init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Android project root.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub project: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 300ms, 10s, 30m, 1h)"))
}

/// A JVM heap size as `-Xmx` takes it: a number of bytes with an optional k, m or g, at least
/// 64m (the Kotlin compiler does not start in less).
fn parse_heap(s: &str) -> Result<String, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&s[..at], c.to_ascii_lowercase()),
        _ => (s, 'b'),
    };
    let scale: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return Err(format!("{s:?} is not a heap size (use e.g. 512m or 2g)")),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{s:?} is not a heap size (use e.g. 512m or 2g)"))?;
    if bytes < 64 << 20 {
        return Err(format!("{s} is too small for the Kotlin compiler (at least 64m)"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn heap_sizes_are_what_the_jvm_takes() {
        assert_eq!(parse_heap("1g").as_deref(), Ok("1g"));
        assert_eq!(parse_heap("512M").as_deref(), Ok("512M"));
        assert_eq!(parse_heap("1073741824").as_deref(), Ok("1073741824"));
        for bad in [
            "",
            "g",
            "1.5g",
            "12x",
            "-1g",
            "1gb",
            "1m",
            "99999999999999999999g",
        ] {
            assert!(parse_heap(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_are_human_readable() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("soon").is_err());
    }
}
