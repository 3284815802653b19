//! Load generator for jetstart-rs: reproduces every figure in BENCHMARKS.md.
//!
//! It starts the real server binary itself (on ephemeral loopback ports, with the stand-in
//! build tools from `tests/fixtures`), drives it with real WebSocket devices, and prints
//! medians. Every wait is bounded. Build first: `cargo build --profile dist --bins --examples`
//! (the profile of the figures in BENCHMARKS.md; `--release` works too).
//!
//! ```text
//! cargo run --profile dist --example loadgen -- all            # every figure, 3 runs each
//! cargo run --profile dist --example loadgen -- all --quick    # smoke mode (tiny N, 1 run)
//! cargo run --profile dist --example loadgen -- fanout --clients 1000 --hot --dex-size 1400000
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, Barrier};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[path = "shared/mod.rs"]
mod shared;
use shared::default_server;

/// Bound for any single wait.
const WAIT: Duration = Duration::from_secs(60);
/// Debounce the server is started with; subtracted from save-to-device figures.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// Pause before each fan-out round, so that it starts on a quiet machine.
const SETTLE: Duration = Duration::from_millis(200);
/// How long the stand-in Gradle build takes. Without a pause it finishes in a few milliseconds:
/// its packaging processes and the `core:build-complete` to every device would then run while the
/// `core:build-start` being timed is still going out, which no real build (seconds) does. With
/// 1000 devices that race added 0.4–2 ms to the figure (BENCHMARKS.md); `--build-time 0s` brings
/// it back.
const BUILD_TIME: &str = "200ms";

#[derive(Parser)]
#[command(about = "Load generator for jetstart-rs (see BENCHMARKS.md)")]
struct Args {
    /// Server binary [default: target/<profile>/jetstart-rs next to this example].
    #[arg(long, global = true)]
    server: Option<PathBuf>,
    /// Runs per figure; the median is reported.
    #[arg(long, global = true, default_value_t = 3)]
    runs: usize,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Spawn → WebSocket port accepting.
    Startup,
    /// Idle RSS, then RSS with N authenticated devices.
    Rss {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
    },
    /// Sequential connect + authenticate round trips (percentiles).
    Auth {
        #[arg(long, default_value_t = 2000)]
        count: usize,
    },
    /// N devices connect and authenticate concurrently.
    Connect {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
    },
    /// Save a watched file; time until the event reaches the first and the last device.
    Fanout {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// `.kt` save → DEX hot reload (otherwise `strings.xml` → full build).
        #[arg(long)]
        hot: bool,
        /// Size of the stand-in `classes.dex` in bytes.
        #[arg(long, default_value_t = 1_400_000)]
        dex_size: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// How long each stand-in Gradle build takes (full builds only).
        #[arg(long, value_parser = humantime::parse_duration, default_value = BUILD_TIME)]
        build_time: Duration,
    },
    /// Every figure of BENCHMARKS.md.
    All {
        /// Smoke mode for CI: tiny N, one run, no targets checked.
        #[arg(long)]
        quick: bool,
    },
}

// One thread: a client that competes with the server for the two cores as little as it can, and
// whose wake-ups don't hop between threads (which alone added ~30 µs to each auth round trip).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let server = match args.server.clone() {
        Some(path) => path,
        None => default_server()?,
    };
    let runs = args.runs.max(1);
    match args.command {
        Cmd::Startup => report(
            "start-up: spawn → WS accepting",
            "ms",
            median_of(runs, || startup(&server)).await?,
        ),
        Cmd::Rss { clients } => {
            let (idle, loaded) = rss(&server, clients).await?;
            println!("idle RSS: {idle:.1} MB; with {clients} devices: {loaded:.1} MB");
        }
        Cmd::Auth { count } => {
            let (p50, p90, p99) = auth(&server, count).await?;
            println!("auth round trip over {count}: p50 {p50:.0} µs, p90 {p90:.0} µs, p99 {p99:.0} µs");
        }
        Cmd::Connect { clients } => report(
            &format!("connect+auth {clients} concurrently"),
            "ms",
            median_of(runs, || connect_many(&server, clients)).await?,
        ),
        Cmd::Fanout {
            clients,
            hot,
            dex_size,
            rounds,
            build_time,
        } => {
            let builds = if hot {
                Builds::Hot { dex_size }
            } else {
                Builds::Full { build_time }
            };
            let (first, last) = fanout(&server, clients, builds, rounds).await?;
            println!(
                "fanout {clients} devices ({}): first {first:.2} ms, last {last:.2} ms",
                builds.kind()
            );
        }
        Cmd::All { quick } => all(&server, quick, runs).await?,
    }
    Ok(())
}

/// What a save makes the server do.
#[derive(Clone, Copy)]
enum Builds {
    /// A full build with the stand-in Gradle, taking this long.
    Full { build_time: Duration },
    /// A DEX hot reload with the stand-in `kotlinc` and `d8`, the dex this big.
    Hot { dex_size: usize },
}

impl Builds {
    /// For figures that never save.
    fn idle() -> Self {
        Self::Full {
            build_time: Duration::ZERO,
        }
    }

    fn is_hot(self) -> bool {
        matches!(self, Self::Hot { .. })
    }

    fn kind(self) -> String {
        match self {
            Self::Hot { dex_size } => format!("dex-reload, {dex_size} B dex"),
            Self::Full { .. } => "build-start".to_owned(),
        }
    }
}

fn report(what: &str, unit: &str, value: f64) {
    println!("{what}: {value:.3} {unit}");
}

async fn median_of<F, Fut>(runs: usize, mut f: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<f64>>,
{
    let mut values = Vec::with_capacity(runs);
    for _ in 0..runs {
        values.push(f().await?);
    }
    Ok(median(&mut values))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A server started for a measurement; killed on drop.
struct Server {
    child: Child,
    ws_port: u16,
    session_id: String,
    token: String,
    project: tempfile::TempDir,
    events: mpsc::UnboundedReceiver<Value>,
    _tools: Option<tempfile::TempDir>,
}

impl Server {
    async fn start(binary: &Path, builds: Builds) -> Result<Self> {
        let project = tempfile::Builder::new().prefix("loadgen-").tempdir()?;
        write_project(project.path())?;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        if !fixtures.is_dir() {
            // Builds would fail silently and every fan-out wait time out.
            bail!(
                "{} is gone (this loadgen was built in another checkout): rebuild it here",
                fixtures.display()
            );
        }
        let mut cmd = Command::new(binary);
        cmd.arg("dev")
            .arg("--project")
            .arg(project.path())
            .args(shared::LOOPBACK_JSON)
            .args(["--no-initial-build", "--max-clients", "5000", "-q"])
            .arg("--debounce")
            .arg(format!("{}ms", DEBOUNCE.as_millis()))
            .arg("--build-cmd")
            .arg(fixtures.join("gradlew"))
            .env_remove("RUST_LOG")
            .env_remove("FAKE_GRADLE_SLEEP")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let tools = match builds {
            Builds::Hot { dex_size } => {
                let tools = toolchain(&fixtures)?;
                let path = format!(
                    "{}:{}",
                    tools.path().join("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                );
                cmd.env("PATH", path)
                    .env("ANDROID_HOME", tools.path().join("sdk"))
                    .env("FAKE_DEX_SIZE", dex_size.to_string());
                Some(tools)
            }
            Builds::Full { build_time } => {
                cmd.arg("--no-hot-reload");
                if !build_time.is_zero() {
                    cmd.env("FAKE_GRADLE_SLEEP", format!("{:.3}", build_time.as_secs_f64()));
                }
                None
            }
        };
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
            }
        });
        let ready = tokio::time::timeout(WAIT, events.recv())
            .await?
            .context("server exited before ready")?;
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Ok(Self {
            ws_port: ready["wsPort"].as_u64().context("wsPort")? as u16,
            session_id: s(&ready["session"]["id"]),
            token: s(&ready["session"]["token"]),
            child,
            project,
            events,
            _tools: tools,
        })
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    fn rss_mb(&self) -> Result<f64> {
        let pid = self.child.id().context("server exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS")?;
        Ok(kb / 1024.0)
    }

    async fn event(&mut self, name: &str) -> Result<Value> {
        tokio::time::timeout(WAIT, async {
            while let Some(event) = self.events.recv().await {
                if event["event"] == name {
                    return Ok(event);
                }
            }
            bail!("server exited while waiting for {name}")
        })
        .await
        .with_context(|| format!("timed out waiting for {name}"))?
    }
}

/// A stand-in Android toolchain: `kotlinc` on PATH, `d8` and `android.jar` under ANDROID_HOME.
fn toolchain(fixtures: &Path) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("loadgen-tools-").tempdir()?;
    let bin = dir.path().join("bin");
    let build_tools = dir.path().join("sdk/build-tools/34.0.0");
    let platform = dir.path().join("sdk/platforms/android-34");
    for d in [&bin, &build_tools, &platform] {
        std::fs::create_dir_all(d)?;
    }
    std::os::unix::fs::symlink(fixtures.join("kotlinc"), bin.join("kotlinc"))?;
    std::os::unix::fs::symlink(fixtures.join("d8"), build_tools.join("d8"))?;
    std::fs::write(
        platform.join("android.jar"),
        b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    )?;
    Ok(dir)
}

fn write_project(root: &Path) -> Result<()> {
    let files: &[(&str, &str)] = &[
        ("settings.gradle", "rootProject.name = \"bench\"\ninclude ':app'\n"),
        ("app/build.gradle", "android {\n    defaultConfig {\n        applicationId \"dev.bench\"\n        minSdk 24\n        targetSdk 34\n        versionCode 1\n        versionName \"1.0\"\n    }\n}\n"),
        ("app/src/main/java/dev/bench/Screen.kt", "package dev.bench\n\nclass Screen\n"),
        ("app/src/main/res/values/strings.xml", "<resources><string name=\"app_name\">Bench</string></resources>\n"),
    ];
    for (path, contents) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        std::fs::write(path, contents)?;
    }
    Ok(())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Connects and authenticates one device; returns it after `core:connected`.
/// The client's read buffer: small for small messages. tungstenite zero-fills the whole buffer
/// before each read, and its 128 KiB default made every 76-byte message cost a 256 KiB memset
/// (half the load generator's time, and so a third of the figure it measured).
const SMALL_READS: usize = 4 * 1024;
/// For megabyte DEX patches: fewer read calls.
const LARGE_READS: usize = 128 * 1024;

async fn device(url: &str, session_id: &str, token: &str, n: usize, read_buffer: usize) -> Result<Ws> {
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false).await?;
    let connect = json!({"type": "client:connect", "sessionId": session_id, "token": token,
        "deviceInfo": {"id": format!("loadgen-{n}"), "model": "loadgen", "platform": "android"}});
    ws.send(Message::text(connect.to_string())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with("{\"type\":\"core:connected\"") => {
                return Ok(ws)
            }
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => bail!("device {n} not accepted: {other:?}"),
        }
    }
}

async fn startup(binary: &Path) -> Result<f64> {
    // Pick a free port, then hand it to the server so the probe knows where to knock.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args([
            "dev",
            "--json",
            "--no-qr",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--host",
            "127.0.0.1",
            "-q",
        ])
        .arg("--ws-port")
        .arg(port.to_string())
        .arg("--project")
        .arg(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let accepted = tokio::time::timeout(WAIT, async {
        loop {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await?;
    child.kill().await?;
    Ok(ms(accepted))
}

async fn rss(binary: &Path, clients: usize) -> Result<(f64, f64)> {
    let server = Server::start(binary, Builds::idle()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await; // let start-up allocations settle
    let idle = server.rss_mb()?;
    let devices = connect_all(&server, clients, SMALL_READS).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = server.rss_mb()?;
    drop(devices);
    Ok((idle, loaded))
}

async fn connect_all(server: &Server, clients: usize, read_buffer: usize) -> Result<Vec<Ws>> {
    let url = Arc::new(server.url());
    let mut tasks = Vec::with_capacity(clients);
    for n in 0..clients {
        let (url, id, token) = (url.clone(), server.session_id.clone(), server.token.clone());
        tasks.push(tokio::spawn(async move {
            device(&url, &id, &token, n, read_buffer).await
        }));
    }
    let mut devices = Vec::with_capacity(clients);
    for task in tasks {
        devices.push(tokio::time::timeout(WAIT, task).await???);
    }
    Ok(devices)
}

async fn connect_many(binary: &Path, clients: usize) -> Result<f64> {
    let server = Server::start(binary, Builds::idle()).await?;
    let started = Instant::now();
    let devices = connect_all(&server, clients, SMALL_READS).await?;
    let elapsed = started.elapsed();
    drop(devices);
    Ok(ms(elapsed))
}

/// Sequential connect + authenticate round trips: (p50, p90, p99) in µs.
async fn auth(binary: &Path, count: usize) -> Result<(f64, f64, f64)> {
    let server = Server::start(binary, Builds::idle()).await?;
    let url = server.url();
    // Warm-up: first connections pay for lazy initialization on both sides.
    for n in 0..20.min(count) {
        drop(device(&url, &server.session_id, &server.token, n, SMALL_READS).await?);
    }
    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        let started = Instant::now();
        let ws = tokio::time::timeout(
            WAIT,
            device(&url, &server.session_id, &server.token, n, SMALL_READS),
        )
        .await??;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        drop(ws);
    }
    samples.sort_by(f64::total_cmp);
    Ok((
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
    ))
}

/// One message of interest at one device.
struct Arrival {
    at: Instant,
    len: usize,
    /// The message whose latency is measured.
    timed: bool,
    /// The message that ends a round.
    done: bool,
}

/// Returns (first, last) device latency in ms, medians over rounds, minus the debounce window
/// (and, for hot reloads, minus the time kotlinc and d8 took, as reported by the server).
async fn fanout(binary: &Path, clients: usize, builds: Builds, rounds: usize) -> Result<(f64, f64)> {
    let hot = builds.is_hot();
    let mut server = Server::start(binary, builds).await?;
    let devices = connect_all(&server, clients, if hot { LARGE_READS } else { SMALL_READS }).await?;
    // The message timed, and the one that ends a round at a device.
    let (marker, last_of_round) = if hot {
        ("{\"type\":\"core:dex-reload\"", "{\"type\":\"core:dex-reload\"")
    } else {
        (
            "{\"type\":\"core:build-start\"",
            "{\"type\":\"core:build-complete\"",
        )
    };
    let (tx, mut arrivals) = mpsc::unbounded_channel::<Arrival>();
    let barrier = Arc::new(Barrier::new(clients + 1));
    for mut ws in devices {
        let (tx, barrier) = (tx.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else { continue };
                let arrival = Arrival {
                    at: Instant::now(),
                    len: text.len(),
                    timed: text.starts_with(marker),
                    done: text.starts_with(last_of_round),
                };
                if (arrival.timed || arrival.done) && tx.send(arrival).is_err() {
                    break;
                }
            }
        });
    }
    barrier.wait().await;
    let (file, edit) = if hot {
        ("app/src/main/java/dev/bench/Screen.kt", "\n// edit\n")
    } else {
        ("app/src/main/res/values/strings.xml", "\n<!-- edit -->\n")
    };
    let path = server.project.path().join(file);
    let (mut firsts, mut lasts) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Let the last round's build process and bookkeeping finish: each round starts quiet.
        tokio::time::sleep(SETTLE).await;
        let saved = Instant::now();
        let mut contents = std::fs::read_to_string(&path)?;
        contents.push_str(edit);
        std::fs::write(&path, contents)?;
        let (mut times, mut done, mut size) = (Vec::with_capacity(clients), 0, 0);
        // Every device must also have the round's last message before the next round starts, so
        // that no device is still reading this round when the next save is timed. One timer for
        // the whole round: one per arrival would cost this (the devices') thread a timer-wheel
        // insert and removal for each of 2000 messages, inside the time it measures.
        let collected = tokio::time::timeout(WAIT, async {
            while times.len() < clients || done < clients {
                let arrival = arrivals.recv().await.context("devices gone")?;
                if arrival.timed {
                    times.push(arrival.at);
                    size = arrival.len;
                }
                done += usize::from(arrival.done);
            }
            anyhow::Ok(())
        })
        .await;
        collected
            .with_context(|| format!("round {round}: {} of {clients} devices reached", times.len()))??;
        let tool_ms = if hot {
            let event = server.event("dex-reload").await?;
            event["compileMs"].as_f64().unwrap_or(0.0) + event["dexMs"].as_f64().unwrap_or(0.0)
        } else {
            server.event("build-complete").await?;
            0.0
        };
        let first = times.iter().min().map(|t| ms(*t - saved)).unwrap_or_default() - ms(DEBOUNCE) - tool_ms;
        let last = times.iter().max().map(|t| ms(*t - saved)).unwrap_or_default() - ms(DEBOUNCE) - tool_ms;
        eprintln!("  round {round}: first {first:.2} ms, last {last:.2} ms, message {size} B");
        firsts.push(first);
        lasts.push(last);
    }
    Ok((median(&mut firsts), median(&mut lasts)))
}

/// Between measurements: a server just killed with 1000 sockets is still being torn down by the
/// kernel for a moment, and that would land on the next figure.
async fn pause(quick: bool) {
    if !quick {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn all(binary: &Path, quick: bool, runs: usize) -> Result<()> {
    let runs = if quick { 1 } else { runs };
    let scale = |n: usize| if quick { (n / 100).max(2) } else { n };
    let dex = if quick { 10_000 } else { 1_400_000 };
    println!("| figure | jetstart-rs |\n|---|---|");
    let startup = median_of(runs, || startup(binary)).await?;
    println!("| start-up: spawn → WebSocket accepting | {startup:.1} ms |");
    // Auth first, while the load generator's own heap is small: measured after a thousand
    // devices, the same server's p50 came out 10–25 µs higher.
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (p50, _, p99) = auth(binary, scale(2000)).await?;
        pause(quick).await;
        p50s.push(p50);
        p99s.push(p99);
    }
    println!(
        "| auth round trip over {}, p50 / p99 | {:.0} µs / {:.0} µs |",
        scale(2000),
        median(&mut p50s),
        median(&mut p99s)
    );
    let mut idle = Vec::new();
    let mut loaded = Vec::new();
    for _ in 0..runs {
        let (i, l) = rss(binary, scale(1000)).await?;
        pause(quick).await;
        idle.push(i);
        loaded.push(l);
    }
    println!("| idle RSS | {:.1} MB |", median(&mut idle));
    println!(
        "| RSS with {} authenticated devices | {:.1} MB |",
        scale(1000),
        median(&mut loaded)
    );
    let connect = median_of(runs, || async {
        let elapsed = connect_many(binary, scale(1000)).await;
        pause(quick).await;
        elapsed
    })
    .await?;
    println!(
        "| connect + authenticate {} devices concurrently | {connect:.0} ms |",
        scale(1000)
    );
    let full = Builds::Full {
        build_time: humantime::parse_duration(BUILD_TIME)?,
    };
    let hot = Builds::Hot { dex_size: dex };
    for (clients, builds) in [
        (scale(1000), full),
        (scale(100), full),
        (scale(500), hot),
        (scale(1000), hot),
    ] {
        let mut lasts = Vec::new();
        for _ in 0..runs {
            lasts.push(fanout(binary, clients, builds, 3).await?.1);
            pause(quick).await;
        }
        println!(
            "| {} → last of {clients} devices | {:.2} ms |",
            builds.kind(),
            median(&mut lasts)
        );
    }
    Ok(())
}
