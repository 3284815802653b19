//! Gradle task lines → build phase and a best-estimate progress, throttled for devices.

use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::BuildPhase;

/// Devices redraw on every `core:build-status`; a few per second is plenty and keeps a
/// 1000-task build from flooding every phone.
pub const STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// The task path of a Gradle `--console=plain` task line:
/// `> Task :app:compileDebugKotlin UP-TO-DATE` → `:app:compileDebugKotlin`.
pub fn task_name(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("> Task ")?;
    let name = rest.split_whitespace().next()?;
    name.starts_with(':').then_some(name)
}

/// The phase a task belongs to, guessed from its name.
pub fn phase_of(task: &str) -> BuildPhase {
    let name = task.rsplit(':').next().unwrap_or(task).to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| name.contains(w));
    // `validateSigningDebug` runs early as a check; it isn't the signing step.
    if name.starts_with("validate") || name.starts_with("check") {
        BuildPhase::Initializing
    } else if has(&["sign"]) {
        BuildPhase::Signing
    } else if has(&["dex", "minify", "r8", "proguard", "shrink", "optimize"]) {
        BuildPhase::Optimizing
    } else if has(&["compile", "kapt", "ksp", "javac", "kotlin"]) {
        BuildPhase::Compiling
    } else if has(&["package", "assemble", "zip", "bundle", "apklisting"]) {
        BuildPhase::Packaging
    } else {
        BuildPhase::Initializing
    }
}

/// Where a phase's progress starts: the rough share of an `assembleDebug` spent before it.
fn floor(phase: BuildPhase) -> u8 {
    match phase {
        BuildPhase::Initializing => 0,
        BuildPhase::Compiling => 20,
        BuildPhase::Optimizing => 60,
        BuildPhase::Packaging => 80,
        BuildPhase::Signing => 90,
    }
}

/// A monotone progress estimate: each task moves it a step, a later phase jumps to that
/// phase's floor; it never reaches 100 before the build has actually finished.
#[derive(Debug, Default)]
pub struct Progress {
    percent: u8,
}

impl Progress {
    /// Accounts for one more task in `phase`; returns the new estimate.
    pub fn advance(&mut self, phase: BuildPhase) -> u8 {
        self.percent = self.percent.saturating_add(1).max(floor(phase)).min(99);
        self.percent
    }
}

/// Lets at most one status through per [`STATUS_INTERVAL`].
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle for a build announced at `start`: `core:build-start` already made every
    /// device redraw, so the first status waits its turn like any other. (Otherwise the first
    /// task line, printed within milliseconds, doubles the writes to every device just while
    /// the start is going out, and tells them nothing new.)
    pub fn since(start: Instant) -> Self {
        Self { last: Some(start) }
    }

    /// True if a status may be sent at `now` (and records that it was).
    pub fn ready(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.duration_since(last) < STATUS_INTERVAL => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_lines_are_recognized() {
        assert_eq!(
            task_name("> Task :app:compileDebugKotlin"),
            Some(":app:compileDebugKotlin")
        );
        assert_eq!(
            task_name("> Task :app:preBuild UP-TO-DATE"),
            Some(":app:preBuild")
        );
        assert_eq!(task_name("> Configure project :app"), None);
        assert_eq!(task_name("BUILD SUCCESSFUL in 3s"), None);
    }

    #[test]
    fn phases_follow_task_names() {
        assert_eq!(phase_of(":app:preBuild"), BuildPhase::Initializing);
        assert_eq!(phase_of(":app:mergeDebugResources"), BuildPhase::Initializing);
        assert_eq!(phase_of(":app:validateSigningDebug"), BuildPhase::Initializing);
        assert_eq!(phase_of(":app:compileDebugKotlin"), BuildPhase::Compiling);
        assert_eq!(phase_of(":app:kaptDebugKotlin"), BuildPhase::Compiling);
        assert_eq!(phase_of(":app:mergeExtDexDebug"), BuildPhase::Optimizing);
        assert_eq!(phase_of(":app:minifyReleaseWithR8"), BuildPhase::Optimizing);
        assert_eq!(phase_of(":app:packageDebug"), BuildPhase::Packaging);
        assert_eq!(phase_of(":app:assembleDebug"), BuildPhase::Packaging);
        assert_eq!(phase_of(":app:signingReportDebug"), BuildPhase::Signing);
    }

    #[test]
    fn progress_is_monotone_and_below_100() {
        let mut p = Progress::default();
        assert_eq!(p.advance(BuildPhase::Initializing), 1);
        assert_eq!(p.advance(BuildPhase::Compiling), 20);
        assert_eq!(p.advance(BuildPhase::Compiling), 21);
        assert_eq!(p.advance(BuildPhase::Initializing), 22, "never goes back");
        assert_eq!(p.advance(BuildPhase::Packaging), 80);
        for _ in 0..100 {
            p.advance(BuildPhase::Packaging);
        }
        assert_eq!(p.advance(BuildPhase::Signing), 99);
    }

    #[test]
    fn the_first_status_waits_an_interval_after_the_start() {
        let start = Instant::now();
        let mut t = Throttle::since(start);
        assert!(!t.ready(start + Duration::from_millis(5)));
        assert!(t.ready(start + STATUS_INTERVAL));
        assert!(!t.ready(start + STATUS_INTERVAL + Duration::from_millis(5)));
    }

    #[test]
    fn throttle_lets_a_few_per_second_through() {
        let start = Instant::now();
        let mut t = Throttle::default();
        assert!(t.ready(start));
        assert!(!t.ready(start + Duration::from_millis(100)));
        assert!(t.ready(start + STATUS_INTERVAL));
    }
}
