//! Emulators and USB devices through `adb`, as Expo's `a` key: on every connected device,
//! `adb reverse` for both ports (so the device reaches this computer as `localhost`, Wi-Fi or
//! not), then the last APK installed (`adb install -r`) and its launcher activity started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::builder::artifacts::Artifacts;
use crate::builder::process::{self, Exit};
use crate::builder::tools;

/// One adb call may take this long (an install over USB of a large APK takes a while).
const ADB_TIMEOUT: Duration = Duration::from_secs(120);

/// What the `a` key (or `--adb`) works with.
#[derive(Debug, Clone)]
struct Targets<'a> {
    http_port: u16,
    ws_port: u16,
    /// The last APK built and its application id, if any.
    apk: Option<(&'a Path, Option<&'a str>)>,
}

/// The `a` action for a server on `http_port` and `ws_port` with the APK `artifacts` holds,
/// each resulting line logged with the time of day: what the `a` key and `--adb` do.
pub async fn answer(artifacts: &Artifacts, http_port: u16, ws_port: u16, cancel: &CancellationToken) {
    let artifact = artifacts.latest();
    let targets = Targets {
        http_port,
        ws_port,
        apk: artifact
            .as_ref()
            .map(|a| (a.path.as_path(), a.info.application_id.as_deref())),
    };
    for line in apply(&targets, cancel).await {
        tracing::info!("{line}");
    }
}

/// `$ANDROID_HOME/platform-tools/adb` (an explicit SDK wins), else `adb` on `PATH`.
fn find() -> Option<PathBuf> {
    tools::android_sdk()
        .map(|sdk| sdk.join("platform-tools/adb"))
        .filter(|p| tools::is_executable(p))
        .or_else(|| tools::which("adb"))
}

/// Runs the whole `a` action on every connected device; returns one line per device (or one
/// saying why nothing happened), for the terminal.
async fn apply(targets: &Targets<'_>, cancel: &CancellationToken) -> Vec<String> {
    let Some(adb) = find() else {
        return vec![
            "adb not found ($ANDROID_HOME/platform-tools or PATH): install the Android SDK's \
             platform tools to reach emulators and USB devices"
                .to_owned(),
        ];
    };
    let serials = match run(&adb, &["devices"], cancel).await {
        Ok(output) => ready_devices(&output),
        Err(e) => return vec![format!("adb devices failed: {e:#}")],
    };
    if serials.is_empty() {
        return vec!["adb: no device or emulator connected (adb devices lists none ready)".to_owned()];
    }
    let mut lines = Vec::new();
    for serial in serials {
        lines.push(format!(
            "adb {serial}: {}",
            apply_one(&adb, &serial, targets, cancel).await
        ));
    }
    lines
}

/// The action on one device, as one line: what was done, up to the first failure.
async fn apply_one(adb: &Path, serial: &str, targets: &Targets<'_>, cancel: &CancellationToken) -> String {
    let mut done = Vec::new();
    for port in [targets.http_port, targets.ws_port] {
        let tcp = format!("tcp:{port}");
        if let Err(e) = run(adb, &["-s", serial, "reverse", &tcp, &tcp], cancel).await {
            return fail(&done, &format!("adb reverse {tcp} failed: {e:#}"));
        }
    }
    done.push(format!(
        "reverse tcp:{} and tcp:{}",
        targets.http_port, targets.ws_port
    ));
    let Some((apk, application_id)) = targets.apk else {
        done.push("no APK built yet to install".to_owned());
        return done.join("; ");
    };
    let apk_text = apk.to_string_lossy();
    if let Err(e) = run(adb, &["-s", serial, "install", "-r", &apk_text], cancel).await {
        return fail(&done, &format!("adb install failed: {e:#}"));
    }
    let name = apk
        .file_name()
        .map_or_else(|| apk_text.to_string(), |n| n.to_string_lossy().into_owned());
    done.push(format!("installed {name}"));
    let Some(package) = application_id else {
        done.push("not started (no applicationId found in app/build.gradle)".to_owned());
        return done.join("; ");
    };
    // `monkey` with the launcher category starts the app's launcher activity without having
    // to know its name (what `adb shell am start` would need).
    let launch = [
        "-s",
        serial,
        "shell",
        "monkey",
        "-p",
        package,
        "-c",
        "android.intent.category.LAUNCHER",
        "1",
    ];
    match run(adb, &launch, cancel).await {
        Ok(_) => done.push(format!("started {package}")),
        Err(e) => return fail(&done, &format!("starting {package} failed: {e:#}")),
    }
    done.join("; ")
}

fn fail(done: &[String], error: &str) -> String {
    if done.is_empty() {
        error.to_owned()
    } else {
        format!("{}; {error}", done.join("; "))
    }
}

/// The serials `adb devices` lists as ready (`device`; not `unauthorized` or `offline`).
fn ready_devices(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let serial = fields.next()?;
            (fields.next() == Some("device")).then(|| serial.to_owned())
        })
        .collect()
}

/// Runs `adb args…` (bounded, its process group killed on timeout or shutdown); its output, or
/// why it failed.
async fn run(adb: &Path, args: &[&str], cancel: &CancellationToken) -> Result<String> {
    let mut cmd = Command::new(adb);
    cmd.args(args);
    let done = process::run(cmd, Instant::now() + ADB_TIMEOUT, cancel, |_| {}).await?;
    let output = done.tail.text();
    match &done.exit {
        Exit::Exited(status) if status.success() && !output.contains("Failure") => Ok(output),
        Exit::Exited(status) => {
            let last = output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            bail!("{status}: {}", last.trim())
        }
        Exit::TimedOut => bail!("no answer within {ADB_TIMEOUT:?}"),
        Exit::Cancelled => bail!("server stopping"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_devices_are_used() {
        let output =
            "List of devices attached\nemulator-5554\tdevice\nR58M123\tdevice product:x model:Pixel\n\
                      ZX1\tunauthorized\nQQ\toffline\n\n";
        assert_eq!(ready_devices(output), ["emulator-5554", "R58M123"]);
        assert!(ready_devices("List of devices attached\n\n").is_empty());
    }
}
