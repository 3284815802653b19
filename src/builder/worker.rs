//! The compile worker: one long-lived JVM per server hosting the Kotlin compiler and D8
//! (`templates/CompileWorker.java`, run with the JDK's single-file source launcher), so a save
//! compiles warm instead of starting two fresh JVMs. Line-delimited JSON over its stdin/stdout.
//!
//! [`Warm`] owns it: started in the background once the hot-path tools are found, restarted when
//! its compiler or d8 changes or it died, killed (its whole process group) when a request passes
//! the deadline or the server stops. Whatever goes wrong with it is a [`Failure::Broken`], and the
//! batch takes the cold path; a save is never lost to the worker.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::hot::{DexPatch, Plan, Scratch};

/// The worker's Java source, written next to nothing else in a private temporary folder.
pub const SOURCE: &str = include_str!("../../templates/CompileWorker.java");
/// How long a new worker may take to start its JVM, compile its source and load the tools.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest worker stderr line logged; the rest is cut (a stack trace line can be huge).
const MAX_LOG_LINE: usize = 2000;

/// What a worker runs with; a different spec needs a new worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub java: PathBuf,
    /// The Kotlin compiler's classpath (the app's recorded one, or the kotlinc distribution's).
    pub compiler_classpath: Vec<PathBuf>,
    /// `build-tools/<version>/lib/d8.jar`.
    pub d8_jar: PathBuf,
    /// `-Xmx` (`--worker-heap`).
    pub heap: String,
}

/// One batch for the worker: the plan's arguments plus the files and folders of this batch.
#[derive(Debug)]
pub struct Job<'a> {
    pub plan: &'a Plan,
    pub sources: &'a [PathBuf],
    pub classes: &'a Path,
    pub dex: &'a Path,
}

/// A compiled batch: `classes.dex` is in the job's `dex` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub class_names: Vec<String>,
    pub compile: Duration,
    pub dex_time: Duration,
}

/// Why a batch did not come back compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The code didn't compile, or d8 refused it: the first diagnostic, for the user.
    #[error("{0}")]
    Rejected(String),
    /// The worker itself failed (didn't start, died, answered nonsense).
    #[error("{0}")]
    Broken(String),
    /// The request ran past the deadline; the worker was killed.
    #[error("the compile ran past --build-timeout")]
    TimedOut,
    /// The server is stopping.
    #[error("server stopping")]
    Cancelled,
}

/// The worker's answer line.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    ok: bool,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    compile_ms: u64,
    #[serde(default)]
    dex_ms: u64,
    #[serde(default)]
    class_names: Vec<String>,
}

/// Compiles and dexes `files` in the warm compile worker. `Failure::Broken` means "try the cold
/// path"; any other failure, "do a full build instead".
pub async fn compile(
    warm: &Warm,
    spec: &Spec,
    plan: &Plan,
    project: &Path,
    files: &[PathBuf],
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<DexPatch, Failure> {
    let scratch = Scratch::new().map_err(|e| Failure::Broken(format!("{e:#}")))?;
    let (classes, dex) = (scratch.classes(), scratch.dex());
    let job = Job {
        plan,
        sources: files,
        classes: &classes,
        dex: &dex,
    };
    let compiled = warm.compile(spec, project, &job, deadline, cancel).await?;
    let dex = scratch
        .read_dex()
        .map_err(|e| Failure::Broken(format!("{e:#}")))?;
    Ok(DexPatch {
        dex,
        class_names: compiled.class_names,
        compile: compiled.compile,
        dex_time: compiled.dex_time,
    })
}

/// The worker slot: at most one worker, used by one batch at a time.
#[derive(Debug, Default)]
pub struct Warm {
    slot: Mutex<Option<Worker>>,
}

impl Warm {
    /// Starts a worker for `spec` unless one is running; a new worker then gets a warm-up batch
    /// (`job`) that loads and exercises the compiler, so the first save finds it warm. Failures
    /// are left for the first real batch to meet (and say).
    pub async fn prepare(
        &self,
        spec: &Spec,
        project: &Path,
        job: Option<Job<'_>>,
        cancel: &CancellationToken,
    ) {
        let mut slot = self.slot.lock().await;
        let deadline = Instant::now() + READY_TIMEOUT;
        match ensure(&mut slot, spec, project, deadline, cancel).await {
            Ok(true) => {}
            Ok(false) => return, // the running worker is warm already
            Err(e) => {
                tracing::debug!("compile worker not started: {e}");
                return;
            }
        }
        if let (Some(job), Some(worker)) = (job, slot.as_mut()) {
            let started = Instant::now();
            match worker.run(&job, deadline, cancel).await {
                Ok(_) | Err(Failure::Rejected(_)) => {
                    tracing::debug!("compile worker warmed up in {:?}", started.elapsed());
                }
                Err(e) => {
                    tracing::debug!("compile worker warm-up failed: {e}");
                    *slot = None;
                }
            }
        }
    }

    /// Compiles and dexes one batch with a worker for `spec` (started or replaced as needed).
    pub async fn compile(
        &self,
        spec: &Spec,
        project: &Path,
        job: &Job<'_>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Compiled, Failure> {
        let mut slot = self.slot.lock().await;
        ensure(&mut slot, spec, project, deadline, cancel).await?;
        let worker = slot
            .as_mut()
            .ok_or_else(|| Failure::Broken("no worker".to_owned()))?;
        let result = worker.run(job, deadline, cancel).await;
        if matches!(
            result,
            Err(Failure::Broken(_) | Failure::TimedOut | Failure::Cancelled)
        ) {
            // Dropping it kills its process group: the next batch starts a fresh one.
            *slot = None;
        }
        result
    }

    /// Stops the worker (on shutdown).
    pub async fn stop(&self) {
        *self.slot.lock().await = None;
    }

    /// The worker's process id, if one runs (for logs and tests).
    pub async fn pid(&self) -> Option<u32> {
        self.slot.lock().await.as_ref().map(|w| w.pid)
    }
}

/// Makes `slot` hold a live worker for `spec`; true if it had to start one.
async fn ensure(
    slot: &mut Option<Worker>,
    spec: &Spec,
    project: &Path,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<bool, Failure> {
    if let Some(worker) = slot.as_mut() {
        if worker.spec == *spec && worker.child.try_wait().ok().flatten().is_none() {
            return Ok(false);
        }
        tracing::debug!("compile worker replaced: its compiler or d8 changed, or it exited");
        *slot = None;
    }
    let ready_by = deadline.min(Instant::now() + READY_TIMEOUT);
    tokio::select! {
        started = Worker::start(spec, project, ready_by) => {
            *slot = Some(started.map_err(|e| Failure::Broken(format!("the compile worker did not start: {e:#}")))?);
            Ok(true)
        }
        () = cancel.cancelled() => Err(Failure::Cancelled),
    }
}

/// A running worker process. Dropping it kills its process group.
#[derive(Debug)]
struct Worker {
    spec: Spec,
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    /// Holds `CompileWorker.java`; removed with the worker.
    _source: tempfile::TempDir,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

impl Worker {
    async fn start(spec: &Spec, project: &Path, ready_by: Instant) -> Result<Self> {
        let source = tempfile::Builder::new()
            .prefix("jetstart-worker-")
            .tempdir()
            .context("could not create a temporary folder")?;
        let file = source.path().join("CompileWorker.java");
        std::fs::write(&file, SOURCE).context("could not write the worker's source")?;
        let classpath =
            std::env::join_paths(&spec.compiler_classpath).context("a classpath entry contains ':'")?;
        let mut cmd = Command::new(&spec.java);
        cmd.arg(format!("-Xmx{}", spec.heap))
            // Keeps the compiler's application environment between compiles (as the Kotlin
            // daemon does): most of what makes a warm compile fast.
            .arg("-Dkotlin.environment.keepalive=true")
            .arg("-Djava.awt.headless=true")
            .arg(&file)
            .arg("--compiler")
            .arg(classpath)
            .arg("--d8")
            .arg(&spec.d8_jar)
            .current_dir(project)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // fork + exec stalls the calling thread; keep it off the runtime's workers.
        let mut child = tokio::task::spawn_blocking(move || cmd.spawn())
            .await
            .context("the spawning thread failed")?
            .with_context(|| format!("could not run {}", spec.java.display()))?;
        let pid = child.id().context("the worker exited at once")?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_stderr(stderr, pid));
        }
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut worker = Self {
            spec: spec.clone(),
            child,
            pid,
            stdin,
            answers: BufReader::new(stdout).lines(),
            next_id: 1,
            _source: source,
        };
        let first = tokio::time::timeout_at(ready_by, worker.answers.next_line()).await;
        match first {
            Ok(Ok(Some(line))) if line.trim() == r#"{"ready":true}"# => {
                tracing::debug!("compile worker {pid} ready");
                Ok(worker)
            }
            Ok(Ok(Some(line))) => bail!("it said {line:?} instead of being ready"),
            Ok(Ok(None)) => {
                bail!("it exited at start (a JDK 11 or newer is needed; run with -v to see its output)")
            }
            Ok(Err(e)) => bail!("could not read from it: {e}"),
            Err(_) => bail!("it was not ready within {READY_TIMEOUT:?}"),
        }
    }

    async fn run(
        &mut self,
        job: &Job<'_>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Compiled, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        let line = request_line(id, job).map_err(|e| Failure::Broken(format!("{e:#}")))?;
        let exchange = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await?;
            self.answers.next_line().await
        };
        let answer = tokio::select! {
            answer = tokio::time::timeout_at(deadline, exchange) => answer,
            () = cancel.cancelled() => return Err(Failure::Cancelled),
        };
        let line = match answer {
            Err(_) => return Err(Failure::TimedOut),
            Ok(Err(e)) => return Err(Failure::Broken(format!("the compile worker failed: {e}"))),
            Ok(Ok(None)) => return Err(Failure::Broken("the compile worker exited".to_owned())),
            Ok(Ok(Some(line))) => line,
        };
        let answer: Answer = serde_json::from_str(&line)
            .map_err(|e| Failure::Broken(format!("the compile worker answered nonsense ({e})")))?;
        match (answer.ok, answer.stage.as_str()) {
            (true, _) => Ok(Compiled {
                class_names: answer.class_names,
                compile: Duration::from_millis(answer.compile_ms),
                dex_time: Duration::from_millis(answer.dex_ms),
            }),
            (false, "compile" | "dex") => Err(Failure::Rejected(answer.error)),
            (false, _) => Err(Failure::Broken(answer.error)),
        }
    }
}

/// One request as a JSON line: the compiler's arguments end with `-d <classes> <sources…>`.
fn request_line(id: u64, job: &Job<'_>) -> Result<String> {
    let text = |s: &std::ffi::OsStr| -> Result<String> {
        s.to_str()
            .map(str::to_owned)
            .with_context(|| format!("{} is not UTF-8", s.to_string_lossy()))
    };
    let mut kotlin_args = Vec::new();
    for arg in job.plan.compile_args.iter() {
        kotlin_args.push(text(arg)?);
    }
    kotlin_args.push("-d".to_owned());
    kotlin_args.push(text(job.classes.as_os_str())?);
    for source in job.sources {
        kotlin_args.push(text(source.as_os_str())?);
    }
    let d8_args = job
        .plan
        .d8_args
        .iter()
        .map(|a| text(a))
        .collect::<Result<Vec<_>>>()?;
    let mut line = json!({
        "id": id,
        "kotlinArgs": kotlin_args,
        "classes": text(job.classes.as_os_str())?,
        "d8Args": d8_args,
        "dex": text(job.dex.as_os_str())?,
    })
    .to_string();
    line.push('\n');
    Ok(line)
}

/// The worker's stderr (the tools' own chatter, a crash's stack trace) as debug log lines.
async fn log_stderr(stderr: tokio::process::ChildStderr, pid: u32) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let cut: String = line.chars().take(MAX_LOG_LINE).collect();
        tracing::debug!(target: "jetstart::builder::worker", "worker {pid}: {cut}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_the_plan_and_the_batch() {
        let plan = Plan {
            compiler: vec!["kotlinc".into()],
            compiler_classpath: Vec::new(),
            compile_args: vec!["-jvm-target".into(), "17".into()],
            d8: "d8".into(),
            d8_args: vec!["--min-api".into(), "24".into()],
            degraded: None,
        };
        let sources = [PathBuf::from("/p/A.kt")];
        let job = Job {
            plan: &plan,
            sources: &sources,
            classes: Path::new("/t/classes"),
            dex: Path::new("/t/dex"),
        };
        let line = request_line(7, &job).expect("line");
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(
            value,
            json!({"id": 7, "kotlinArgs": ["-jvm-target", "17", "-d", "/t/classes", "/p/A.kt"],
                   "classes": "/t/classes", "d8Args": ["--min-api", "24"], "dex": "/t/dex"})
        );
    }

    #[test]
    fn the_worker_source_speaks_this_protocol() {
        for needle in [
            r#"{\"ready\":true}"#,
            "\"kotlinArgs\"",
            "\"d8Args\"",
            "\"classNames\"",
            "\"compileMs\"",
            "\"dexMs\"",
            "D8Command",
            "K2JVMCompiler",
        ] {
            assert!(
                SOURCE.contains(needle),
                "{needle} missing from CompileWorker.java"
            );
        }
    }
}
