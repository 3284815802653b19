//! One hot reload from start to end: which tools and settings compile the batch (the app's
//! recorded Gradle inputs, else discovery), warm in the compile worker or cold in fresh
//! processes, and the patch to every device. Reasons that hold save after save (no record yet,
//! a tool missing, the worker off) are said once, and again only when they change.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::hot::{self, DexPatch, Plan};
use super::inputs;
use super::tools::Found;
use super::worker::{self, Failure, Job, Spec, Warm};
use super::Settings;
use crate::publish::{HotReload, Publisher};

/// What a hot batch came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Devices got the patch, or the server is stopping: nothing more to do.
    Done,
    /// A full build must cover the batch.
    FullBuild,
}

/// The hot path of one server: its settings, its compile worker, what it said last.
#[derive(Debug)]
pub struct HotPath {
    settings: Arc<Settings>,
    warm: Warm,
    notes: Notes,
}

impl HotPath {
    pub fn new(settings: Arc<Settings>) -> Self {
        Self {
            settings,
            warm: Warm::default(),
            notes: Notes::default(),
        }
    }

    /// Compiles the batch of `.kt` files (`shown`: their names for the terminal) and sends the
    /// patch to every device; or says why it can't, for the full build that follows.
    pub async fn reload(
        &self,
        publish: &Publisher,
        sources: &[PathBuf],
        shown: Vec<String>,
        cancel: &CancellationToken,
    ) -> Outcome {
        if !self.settings.hot_reload {
            tracing::debug!("hot reload is off (--no-hot-reload): full build");
            return Outcome::FullBuild;
        }
        let Some((plan, spec)) = self.prepare().await else {
            return Outcome::FullBuild;
        };
        let started = Instant::now();
        publish.hot_reload_started(shown.clone());
        let deadline = started + self.settings.build_timeout;
        let patch = match self
            .compile(&plan, spec.as_ref(), sources, deadline, cancel)
            .await
        {
            Ok(patch) => patch,
            Err(_) if cancel.is_cancelled() => return Outcome::Done,
            Err(e) => {
                tracing::warn!("full build instead of hot reload: {e:#}");
                return Outcome::FullBuild;
            }
        };
        publish.hot_reload(HotReload {
            files: shown,
            dex: &patch.dex,
            class_names: patch.class_names,
            started,
            compile: patch.compile,
            dex_time: patch.dex_time,
        });
        Outcome::Done
    }

    /// Starts the compile worker (or replaces it, if the compiler inputs changed) and warms it
    /// up with a tiny file, so the next save finds it warm. Called once the server is ready and
    /// after every full build; a failure is met (and said) by the next batch.
    pub async fn warm_up(&self, cancel: &CancellationToken) {
        if !self.settings.hot_reload || cancel.is_cancelled() {
            return;
        }
        let Some((plan, Some(spec))) = self.prepare().await else {
            return;
        };
        let Ok(scratch) = tempfile::Builder::new().prefix("jetstart-warmup-").tempdir() else {
            return;
        };
        let source = scratch.path().join("JetstartWarmup.kt");
        let (classes, dex) = (scratch.path().join("classes"), scratch.path().join("dex"));
        let written = std::fs::write(
            &source,
            "package jetstart.warmup\n\ninternal object JetstartWarmup\n",
        )
        .and_then(|()| std::fs::create_dir_all(&classes))
        .and_then(|()| std::fs::create_dir_all(&dex));
        let job = written.is_ok().then(|| Job {
            plan: &plan,
            sources: std::slice::from_ref(&source),
            classes: &classes,
            dex: &dex,
        });
        self.warm
            .prepare(&spec, &self.settings.project_dir, job, cancel)
            .await;
    }

    /// Stops the compile worker (on shutdown).
    pub async fn stop(&self) {
        self.warm.stop().await;
    }

    /// The compile worker's process id, if one runs.
    pub async fn worker_pid(&self) -> Option<u32> {
        self.warm.pid().await
    }

    /// The plan for this batch and, when the worker can serve it, the worker's spec; `None`
    /// (after saying why, once) when there is no hot path.
    async fn prepare(&self) -> Option<(Plan, Option<Spec>)> {
        let project = self.settings.project_dir.clone();
        // A few folders and files are read: off the runtime's workers.
        let looked = tokio::task::spawn_blocking(move || {
            let found = Found::discover();
            let recorded = inputs::load(&project);
            let plan = hot::plan(&found, recorded.as_ref(), &project);
            (found, plan)
        })
        .await;
        let Ok((found, plan)) = looked else {
            return None;
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(missing) => {
                self.notes.say(
                    "tools",
                    &format!("no hot reload: {missing}; saved Kotlin files get a full build"),
                );
                return None;
            }
        };
        match &plan.degraded {
            Some(why) => self.notes.say(
                "inputs",
                &format!("hot reload compiles without the app's Gradle settings: {why}"),
            ),
            None => self.notes.say(
                "inputs",
                "hot reload compiles as Gradle did (.jetstart/hot-inputs.json)",
            ),
        }
        self.notes.forget("tools");
        let spec = match self.worker_spec(&found, &plan) {
            Ok(spec) => Some(spec),
            Err(why) => {
                self.notes.say(
                    "worker",
                    &format!("no compile worker ({why}): each save starts the compiler afresh"),
                );
                None
            }
        };
        Some((plan, spec))
    }

    fn worker_spec(&self, found: &Found, plan: &Plan) -> Result<Spec, String> {
        let heap = self.settings.worker_heap.clone().ok_or("--no-compile-worker")?;
        let java = found
            .java
            .clone()
            .ok_or("java not found in $JAVA_HOME/bin or on PATH")?;
        let d8_jar = found
            .d8_jar
            .clone()
            .ok_or("no d8.jar in $ANDROID_HOME/build-tools/<version>/lib")?;
        if plan.compiler_classpath.is_empty() {
            return Err("the Kotlin compiler's jars were not found next to kotlinc".to_owned());
        }
        Ok(Spec {
            java,
            compiler_classpath: plan.compiler_classpath.clone(),
            d8_jar,
            heap,
        })
    }

    /// Warm when there is a worker for this plan; cold in fresh processes otherwise, and when
    /// the worker fails (said once per reason).
    async fn compile(
        &self,
        plan: &Plan,
        spec: Option<&Spec>,
        sources: &[PathBuf],
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> anyhow::Result<DexPatch> {
        if let Some(spec) = spec {
            match worker::compile(
                &self.warm,
                spec,
                plan,
                &self.settings.project_dir,
                sources,
                deadline,
                cancel,
            )
            .await
            {
                Ok(patch) => {
                    self.notes.forget("worker");
                    return Ok(patch);
                }
                Err(Failure::Broken(why)) => {
                    self.notes.say(
                        "worker",
                        &format!("compile worker: {why}; this save compiles afresh"),
                    );
                }
                Err(other) => return Err(other.into()),
            }
        }
        hot::compile_cold(plan, &self.settings.project_dir, sources, deadline, cancel).await
    }
}

/// What was said last per topic.
#[derive(Debug, Default)]
struct Notes {
    last: Mutex<HashMap<&'static str, String>>,
}

impl Notes {
    /// Logs `note` unless it is what was said last about `topic`.
    fn say(&self, topic: &'static str, note: &str) {
        let mut last = self.last.lock();
        if last.get(topic).map(String::as_str) != Some(note) {
            tracing::info!("{note}");
            last.insert(topic, note.to_owned());
        }
    }

    /// The condition behind `topic` is over: say it again if it comes back.
    fn forget(&self, topic: &'static str) {
        self.last.lock().remove(topic);
    }
}

/// `file` relative to `project` for display.
pub fn relative(project: &Path, file: &Path) -> String {
    file.strip_prefix(project).unwrap_or(file).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_said_once_per_change() {
        let notes = Notes::default();
        notes.say("a", "one");
        notes.say("a", "one");
        assert_eq!(notes.last.lock().get("a").map(String::as_str), Some("one"));
        notes.forget("a");
        assert!(notes.last.lock().get("a").is_none());
    }
}
