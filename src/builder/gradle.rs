//! The full build: `--build-cmd`, `./gradlew` or `gradle`, streamed into `core:build-status`
//! and ending in `core:build-complete` (the APK published for `/download`) or `core:build-error`.

use parking_lot::Mutex;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::Command;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::apk;
use super::artifacts::Artifact;
use super::process::{self, Exit, Tail};
use super::progress::{phase_of, task_name, Pacer, Progress};
use super::{Context, Settings};
use crate::events::Trigger;
use crate::gradle::capture;
use crate::protocol::BuildStatus;
use crate::session::unix_ms;

/// Lines of a failed build shown in the terminal: enough for a compiler error and its context.
const SHOWN_ERROR_LINES: usize = 20;
/// `error` of `core:build-error` is one line; phones show it in a banner.
const MAX_ERROR_CHARS: usize = 300;

/// How full builds are run in this project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildCommand {
    /// `--build-cmd`, run with `sh -c`.
    Custom(String),
    /// `./gradlew assembleDebug --console=plain`.
    Wrapper,
    /// `gradle assembleDebug --console=plain` from `PATH`.
    Gradle(PathBuf),
}

impl BuildCommand {
    /// The command (README, "How builds work"), or `None`: builds are off.
    pub fn resolve(build_cmd: Option<&str>, project: &Path) -> Option<Self> {
        if let Some(cmd) = build_cmd {
            return Some(Self::Custom(cmd.to_owned()));
        }
        if project.join("gradlew").is_file() {
            return Some(Self::Wrapper);
        }
        super::tools::which("gradle").map(Self::Gradle)
    }

    /// The command to run; `init_script` is passed to Gradle (never to a custom command, which
    /// may not be Gradle at all).
    fn command(&self, project: &Path, init_script: Option<&Path>) -> Command {
        let mut cmd = match self {
            Self::Custom(line) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(line);
                cmd
            }
            // Through `sh` when a wrapper was checked out without its executable bit.
            Self::Wrapper if !super::tools::is_executable(&project.join("gradlew")) => {
                let mut cmd = Command::new("sh");
                cmd.arg("./gradlew");
                cmd
            }
            Self::Wrapper => Command::new("./gradlew"),
            Self::Gradle(gradle) => Command::new(gradle),
        };
        if !matches!(self, Self::Custom(_)) {
            cmd.args(["assembleDebug", "--console=plain"]);
            if let Some(script) = init_script {
                cmd.arg("--init-script").arg(script);
            }
        }
        cmd.current_dir(project);
        cmd
    }

    fn describe(&self) -> String {
        match self {
            Self::Custom(line) => line.clone(),
            Self::Wrapper => "./gradlew assembleDebug --console=plain".to_owned(),
            Self::Gradle(_) => "gradle assembleDebug --console=plain".to_owned(),
        }
    }
}

/// Installs the scripts that record the app's compile inputs for the hot path and returns the
/// init script to pass to Gradle; `None` for a custom command (its builds record them only
/// through `gradle/jetstart.gradle`) or when `.jetstart/` can't be written (said, and the build
/// goes on without).
fn record_hot_inputs(command: &BuildCommand, project: &Path) -> Option<PathBuf> {
    if matches!(command, BuildCommand::Custom(_)) {
        return None;
    }
    capture::install(project)
        .inspect_err(|e| {
            tracing::warn!("hot reload will compile without the app's Gradle settings: {e:#}");
        })
        .ok()
}

/// The build command, or `None` after saying "builds are off" (once per run: `off_said` is set
/// by the first caller, at start-up or at the first build, whichever comes first).
pub fn resolve_or_say_off(settings: &Settings, off_said: &AtomicBool) -> Option<BuildCommand> {
    let command = BuildCommand::resolve(settings.build_cmd.as_deref(), &settings.project_dir);
    if command.is_none() && !off_said.swap(true, Ordering::SeqCst) {
        tracing::warn!(
            "builds are off: no gradlew in {} and no gradle on PATH; pass --build-cmd to \
             choose how to build",
            settings.project_dir.display()
        );
    }
    command
}

/// Runs one full build and reports it. Returns true if it published an APK.
/// `off_said` makes the "builds are off" message appear once per run, not per save.
pub async fn run(
    ctx: &Context,
    trigger: Trigger,
    files: Vec<String>,
    cancel: &CancellationToken,
    off_said: &AtomicBool,
) -> bool {
    let settings = &ctx.settings;
    let project = &settings.project_dir;
    let Some(command) = resolve_or_say_off(settings, off_said) else {
        ctx.publish.build_skipped(
            trigger,
            files,
            "builds are off: no gradlew and no gradle on PATH (use --build-cmd)",
        );
        return false;
    };

    let started = Instant::now();
    ctx.publish.full_build_started(trigger, files);
    tracing::info!("building: {}", command.describe());

    let mut progress = Progress::default();
    // Shared by the line handler and `send_kept`, both in this task; a `Mutex` rather than a
    // `RefCell` only so that the build's future stays `Send`.
    let pacer = Mutex::new(Pacer::since(started));
    let kept = Notify::new();
    let send = |status: BuildStatus| {
        let task = task_name(&status.message).unwrap_or(&status.message);
        tracing::info!("{:>3}% {task}", status.progress);
        ctx.publish.build_status(status);
    };
    let on_line = |line: &str| {
        tracing::debug!(target: "jetstart::builder::output", "{line}");
        let Some(task) = task_name(line) else { return };
        let phase = phase_of(task);
        // Stamped when the line came, also if it goes out at the end of its interval.
        let status = BuildStatus {
            phase,
            progress: progress.advance(phase),
            message: line.trim().to_owned(),
            timestamp: unix_ms(),
        };
        let ready = pacer.lock().offer(Instant::now(), status);
        match ready {
            Some(status) => send(status),
            // Wakes `send_kept` if it waits for something to be kept (else one spare turn).
            None => kept.notify_one(),
        }
    };
    let deadline = started + settings.build_timeout;
    let init_script = record_hot_inputs(&command, project);
    let finished = tokio::select! {
        finished = process::run(command.command(project, init_script.as_deref()), deadline, cancel, on_line) => finished,
        never = send_kept(&pacer, &kept, send) => match never {},
    };
    let elapsed = started.elapsed();

    let done = match finished {
        Ok(done) => done,
        Err(e) => {
            let error = format!(
                "could not start the build command `{}`: {e:#}",
                command.describe()
            );
            fail(ctx, error, None, &Tail::default(), elapsed);
            return false;
        }
    };
    match &done.exit {
        Exit::Cancelled => {
            tracing::debug!("build stopped: the server is shutting down");
            false
        }
        Exit::TimedOut => {
            let error = format!(
                "build timed out after {} and was stopped; raise --build-timeout if your builds need longer",
                humantime::format_duration(settings.build_timeout)
            );
            fail(ctx, error, None, &done.tail, elapsed);
            false
        }
        Exit::Exited(_) if done.success() => publish(ctx, elapsed).await,
        Exit::Exited(status) => {
            let code = status.code();
            let summary = match code {
                Some(code) => format!("build failed with exit code {code}"),
                None => format!("build failed ({status})"),
            };
            let error = match first_error(&done.tail) {
                Some(line) => format!("{summary}: {line}"),
                None => summary,
            };
            fail(ctx, error, code, &done.tail, elapsed);
            false
        }
    }
}

/// Sends the status the pacer kept once its interval is over; runs until dropped with the build.
async fn send_kept(
    pacer: &Mutex<Pacer<BuildStatus>>,
    kept: &Notify,
    send: impl Fn(BuildStatus),
) -> Infallible {
    loop {
        let due = pacer.lock().due();
        match due {
            Some(due) => tokio::time::sleep_until(due).await,
            None => kept.notified().await,
        }
        let status = pacer.lock().take_due(Instant::now());
        if let Some(status) = status {
            send(status);
        }
    }
}

/// After a successful build: finds the APK, publishes it, tells devices.
async fn publish(ctx: &Context, elapsed: Duration) -> bool {
    let project = ctx.settings.project_dir.clone();
    let found = tokio::task::spawn_blocking(move || {
        let path = apk::newest_apk(&project.join(apk::APK_DIR))
            .with_context(|| format!("the build succeeded but no APK was found under {}", apk::APK_DIR))?;
        let info = apk::apk_info(&project, &path)?;
        anyhow::Ok(Artifact { path, info })
    })
    .await
    .context("the APK inspection task failed")
    .and_then(|r| r);
    let artifact = match found {
        Ok(artifact) => artifact,
        Err(e) => {
            fail(ctx, format!("{e:#}"), Some(0), &Tail::default(), elapsed);
            return false;
        }
    };
    ctx.artifacts.publish(artifact.clone());
    ctx.publish.build_complete(artifact.info, elapsed);
    true
}

/// Reports a failed build to devices, `--json` and the terminal (with the useful lines).
fn fail(ctx: &Context, error: String, exit_code: Option<i32>, tail: &Tail, elapsed: Duration) {
    let error = one_line(&error);
    let excerpt = useful_lines(tail);
    if !excerpt.is_empty() {
        tracing::error!("build output:\n{}", excerpt.join("\n"));
    }
    ctx.publish.build_failed(error, exit_code, tail.text(), elapsed);
}

/// Compiler and Gradle error lines, or else the last lines.
fn useful_lines(tail: &Tail) -> Vec<&str> {
    let errors: Vec<&str> = tail
        .lines()
        .filter(|l| is_error_line(l))
        .take(SHOWN_ERROR_LINES)
        .collect();
    if !errors.is_empty() {
        return errors;
    }
    let all: Vec<&str> = tail.lines().collect();
    all[all.len().saturating_sub(SHOWN_ERROR_LINES)..].to_vec()
}

fn is_error_line(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("e: ") || line.contains("error:") || line.starts_with("* What went wrong")
}

fn first_error(tail: &Tail) -> Option<&str> {
    tail.lines().find(|l| is_error_line(l)).map(str::trim)
}

fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_resolution_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            BuildCommand::resolve(Some("make apk"), dir.path()),
            Some(BuildCommand::Custom("make apk".into()))
        );
        std::fs::write(dir.path().join("gradlew"), "#!/bin/sh\n").expect("write");
        assert_eq!(
            BuildCommand::resolve(None, dir.path()),
            Some(BuildCommand::Wrapper)
        );
    }

    #[test]
    fn errors_are_one_short_line_and_excerpts_prefer_error_lines() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert_eq!(one_line(&"x".repeat(1000)).chars().count(), MAX_ERROR_CHARS + 1);
        let mut tail = Tail::default();
        for line in [
            "> Task :app:compileDebugKotlin",
            "e: Foo.kt:3:5 Unresolved reference: bar",
            "BUILD FAILED",
        ] {
            tail.push(line.to_owned());
        }
        assert_eq!(
            useful_lines(&tail),
            vec!["e: Foo.kt:3:5 Unresolved reference: bar"]
        );
        assert_eq!(
            first_error(&tail),
            Some("e: Foo.kt:3:5 Unresolved reference: bar")
        );
        let mut plain = Tail::default();
        plain.push("just output".to_owned());
        assert_eq!(useful_lines(&plain), vec!["just output"]);
    }
}
