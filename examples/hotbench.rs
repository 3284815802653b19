//! Hot-reload benchmark: save a `.kt` file → `core:dex-reload` at a connected device, with the
//! real Kotlin compiler in the warm compile worker; and, in the same run, one cold `kotlinc`
//! process compiling the same file (what every save cost before the worker).
//!
//! Needs the real `kotlinc` on `PATH` (or `$KOTLIN_HOME`), and a JDK (`javac`, `jar`) to build
//! the stand-in `d8.jar` of `tests/fixtures/d8-jar` (no real d8 can be installed here; it only
//! writes a few bytes, so the figure is the compiler's and the server's).
//!
//! ```text
//! cargo build --release --bins --examples
//! ./target/release/examples/hotbench                 # 3 warm-up saves, then 12 timed
//! ./target/release/examples/hotbench --quick         # CI smoke: 1 warm-up, 2 timed
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[path = "shared/mod.rs"]
mod shared;
use shared::default_server;

/// Bound for any single wait (a first compile on a cold JVM takes seconds).
const WAIT: Duration = Duration::from_secs(120);
const SOURCE: &str = "app/src/main/java/dev/bench/Screen.kt";

#[derive(Parser)]
#[command(about = "Save → dex-reload with the warm compile worker vs one cold kotlinc process")]
struct Args {
    /// Server binary [default: target/<profile>/jetstart-rs next to this example].
    #[arg(long)]
    server: Option<PathBuf>,
    /// Saves before timing starts.
    #[arg(long, default_value_t = 3)]
    warmups: usize,
    /// Timed saves; the median is reported.
    #[arg(long, default_value_t = 12)]
    saves: usize,
    /// Cold `kotlinc` runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    cold_runs: usize,
    /// Smoke mode for CI: 1 warm-up, 2 timed saves, 1 cold run, no target checked.
    #[arg(long)]
    quick: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        (args.warmups, args.saves, args.cold_runs) = (1, 2, 1);
    }
    let server = match args.server.clone() {
        Some(path) => path,
        None => default_server()?,
    };
    let kotlinc = kotlinc().context("no kotlinc on PATH or in $KOTLIN_HOME/bin (apt-get install kotlin)")?;
    let work = tempfile::Builder::new().prefix("hotbench-").tempdir()?;
    let project = work.path().join("project");
    let sdk = work.path().join("sdk");
    write_project(&project)?;
    write_sdk(&sdk, &work.path().join("d8-build"))?;

    let hot = hot_saves(&server, &project, &sdk, args.warmups, args.saves).await?;
    let mut cold = Vec::new();
    for _ in 0..args.cold_runs {
        cold.push(cold_kotlinc(&kotlinc, &project, &sdk, &work.path().join("cold"))?);
    }

    let save = median(&mut hot.iter().map(|s| s.total).collect::<Vec<_>>());
    let compile = median(&mut hot.iter().map(|s| s.compile).collect::<Vec<_>>());
    let dex = median(&mut hot.iter().map(|s| s.dex).collect::<Vec<_>>());
    let (min, max) = hot
        .iter()
        .map(|s| s.total)
        .fold((f64::MAX, 0.0f64), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let cold_median = median(&mut cold);
    println!(
        "save → dex-reload at the device (warm worker, real kotlinc {}): median {save:.0} ms \
         (min {min:.0}, max {max:.0}) over {} saves after {} warm-ups; in the worker: compile {compile:.0} ms, dex {dex:.0} ms \
         (the rest: 50 ms debounce, server, socket)",
        kotlin_version(&kotlinc),
        hot.len(),
        args.warmups
    );
    println!(
        "one cold kotlinc process on the same file: median {cold_median:.0} ms over {} run(s) {:?}",
        cold.len(),
        cold.iter().map(|c| c.round() as u64).collect::<Vec<_>>()
    );
    println!("speed-up: {:.1}x", cold_median / save);
    if !args.quick && (save > 400.0 || cold_median / save < 4.0) {
        println!("TARGET MISSED: median ≤ 400 ms and ≥ 4x faster than a cold kotlinc process");
    }
    Ok(())
}

/// One timed save.
struct Save {
    /// Save → `core:dex-reload` at the device, ms.
    total: f64,
    /// The worker's compile and dex times, ms.
    compile: f64,
    dex: f64,
}

async fn hot_saves(
    server: &Path,
    project: &Path,
    sdk: &Path,
    warmups: usize,
    saves: usize,
) -> Result<Vec<Save>> {
    let mut child = Command::new(server)
        .arg("dev")
        .arg("--project")
        .arg(project)
        .args(shared::LOOPBACK_JSON)
        .args(["--no-initial-build", "--build-cmd", "true", "-q"])
        .env("ANDROID_HOME", sdk)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", server.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, mut events) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(value) = serde_json::from_str(&line) {
                if tx.send(value).is_err() {
                    break;
                }
            }
        }
    });
    let ready = next_event(&mut events, "ready").await?;
    let url = format!("ws://127.0.0.1:{}", ready["wsPort"]);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let hello = json!({"type": "client:connect", "sessionId": ready["session"]["id"],
                       "token": ready["session"]["token"], "deviceInfo": {"model": "hotbench"}});
    ws.send(Message::text(hello.to_string())).await?;

    let mut timed = Vec::new();
    for round in 0..warmups + saves {
        let body = format!("package dev.bench\n\nclass Screen {{\n    fun title() = \"Round {round}\"\n}}\n");
        let saved = Instant::now();
        std::fs::write(project.join(SOURCE), body)?;
        tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) if text.contains("\"type\":\"core:dex-reload\"") => {
                        return Ok(())
                    }
                    Some(Ok(Message::Text(text))) if text.contains("\"type\":\"core:build-start\"") => {
                        bail!("save {round} went to a full build (see the server's output above)")
                    }
                    Some(Ok(_)) => continue,
                    other => bail!("device: {other:?}"),
                }
            }
        })
        .await
        .with_context(|| format!("save {round}: no dex-reload"))??;
        let total = saved.elapsed();
        let event = next_event(&mut events, "dex-reload").await?;
        let ms = |v: &Value| v.as_f64().unwrap_or(0.0);
        eprintln!(
            "  save {round}{}: {:.0} ms (compile {}, dex {})",
            if round < warmups { " (warm-up)" } else { "" },
            total.as_secs_f64() * 1000.0,
            event["compileMs"],
            event["dexMs"]
        );
        if round >= warmups {
            timed.push(Save {
                total: total.as_secs_f64() * 1000.0,
                compile: ms(&event["compileMs"]),
                dex: ms(&event["dexMs"]),
            });
        }
    }
    Ok(timed)
}

/// The next `--json` event called `name`.
async fn next_event(events: &mut mpsc::UnboundedReceiver<Value>, name: &str) -> Result<Value> {
    tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if event["event"] == name {
                return Ok(event);
            }
        }
        bail!("the server exited")
    })
    .await
    .with_context(|| format!("no {name} event"))?
}

/// One `kotlinc` process compiling the same file as the server does cold, ms.
fn cold_kotlinc(kotlinc: &Path, project: &Path, sdk: &Path, out: &Path) -> Result<f64> {
    let _ = std::fs::remove_dir_all(out);
    let started = Instant::now();
    let status = std::process::Command::new(kotlinc)
        .arg(project.join(SOURCE))
        .arg("-d")
        .arg(out)
        .arg("-cp")
        .arg(sdk.join("platforms/android-34/android.jar"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("cold kotlinc failed ({status})");
    }
    Ok(took.as_secs_f64() * 1000.0)
}

fn kotlinc() -> Option<PathBuf> {
    let home = std::env::var_os("KOTLIN_HOME").map(|h| PathBuf::from(h).join("bin/kotlinc"));
    home.filter(|p| p.is_file()).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join("kotlinc"))
            .find(|p| p.is_file())
    })
}

fn kotlin_version(kotlinc: &Path) -> String {
    std::process::Command::new(kotlinc)
        .arg("-version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .and_then(|text| {
            text.split_whitespace()
                .skip_while(|w| *w != "kotlinc-jvm")
                .nth(1)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".to_owned())
}

fn write_project(root: &Path) -> Result<()> {
    for (path, contents) in [
        (
            "settings.gradle",
            "rootProject.name = \"bench\"\ninclude ':app'\n",
        ),
        (
            "app/build.gradle",
            "android {\n    defaultConfig {\n        minSdk 24\n    }\n}\n",
        ),
        (SOURCE, "package dev.bench\n\nclass Screen\n"),
    ] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        std::fs::write(path, contents)?;
    }
    Ok(())
}

/// The SDK layout: `build-tools/34.0.0/{d8, lib/d8.jar}` (the stand-ins) and an empty
/// `platforms/android-34/android.jar`.
fn write_sdk(sdk: &Path, build: &Path) -> Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tools = sdk.join("build-tools/34.0.0");
    std::fs::create_dir_all(tools.join("lib"))?;
    std::fs::create_dir_all(sdk.join("platforms/android-34"))?;
    std::fs::copy(fixtures.join("d8"), tools.join("d8"))?;
    std::fs::write(
        sdk.join("platforms/android-34/android.jar"),
        b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    )?;
    let sources: Vec<PathBuf> = ["D8", "D8Command", "CompilationFailedException", "origin/Origin"]
        .iter()
        .map(|c| fixtures.join(format!("d8-jar/com/android/tools/r8/{c}.java")))
        .collect();
    let javac = std::process::Command::new("javac")
        .arg("-d")
        .arg(build)
        .args(&sources)
        .status()
        .context("javac (a JDK is needed to build the stand-in d8.jar)")?;
    let jar = std::process::Command::new("jar")
        .arg("cf")
        .arg(tools.join("lib/d8.jar"))
        .arg("-C")
        .arg(build)
        .arg(".")
        .status()
        .context("jar")?;
    if !javac.success() || !jar.success() {
        bail!("could not build the stand-in d8.jar");
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
