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

/// Paces statuses for devices: at most one per [`STATUS_INTERVAL`], and the last one that had to
/// wait goes out when its interval ends (unless the build ends first: then `core:build-complete`
/// or `core:build-error` says more). Gradle prints a burst of up-to-date task lines, then is
/// silent for the seconds a compile takes: dropping the burst would leave phones showing an older
/// task all that time instead of the one running.
#[derive(Debug)]
pub struct Pacer<T> {
    last: Instant,
    waiting: Option<T>,
}

impl<T> Pacer<T> {
    /// A pacer for a build announced at `start`: `core:build-start` already made every device
    /// redraw, so the first status waits its turn like any other. (Otherwise the first task
    /// line, printed within milliseconds, doubles the writes to every device just while the
    /// start is going out, and tells them nothing new.)
    pub fn since(start: Instant) -> Self {
        Self {
            last: start,
            waiting: None,
        }
    }

    /// Offers the newest status at `now`: returns it if it may go out now; otherwise keeps it,
    /// in place of any older one, until [`Pacer::due`].
    pub fn offer(&mut self, now: Instant, status: T) -> Option<T> {
        if now.duration_since(self.last) >= STATUS_INTERVAL {
            self.last = now;
            self.waiting = None;
            Some(status)
        } else {
            self.waiting = Some(status);
            None
        }
    }

    /// When the kept status may go out, if one is kept.
    pub fn due(&self) -> Option<Instant> {
        self.waiting.as_ref().map(|_| self.last + STATUS_INTERVAL)
    }

    /// The kept status, if it may go out at `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<T> {
        let due = self.due()?;
        if now < due {
            return None;
        }
        self.last = now;
        self.waiting.take()
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
        let mut pacer = Pacer::since(start);
        assert_eq!(pacer.offer(start + ms(5), "preBuild"), None);
        assert_eq!(pacer.offer(start + STATUS_INTERVAL, "compile"), Some("compile"));
        assert_eq!(pacer.offer(start + STATUS_INTERVAL + ms(5), "dex"), None);
    }

    #[test]
    fn at_most_one_status_goes_out_per_interval() {
        let start = Instant::now();
        let mut pacer = Pacer::since(start - STATUS_INTERVAL);
        assert_eq!(pacer.offer(start, 1), Some(1));
        assert_eq!(pacer.offer(start + ms(100), 2), None);
        assert_eq!(pacer.take_due(start + ms(200)), None, "not yet due");
        assert_eq!(pacer.offer(start + STATUS_INTERVAL, 3), Some(3));
        assert_eq!(pacer.due(), None, "the newer status replaced the one kept");
    }

    #[test]
    fn the_last_status_of_a_burst_goes_out_when_its_interval_ends() {
        let start = Instant::now();
        let mut pacer = Pacer::since(start);
        for (i, task) in ["preBuild", "mergeDebugResources", "compileDebugKotlin"]
            .into_iter()
            .enumerate()
        {
            assert_eq!(pacer.offer(start + ms(i as u64), task), None);
        }
        assert_eq!(pacer.due(), Some(start + STATUS_INTERVAL));
        assert_eq!(
            pacer.take_due(start + STATUS_INTERVAL),
            Some("compileDebugKotlin")
        );
        assert_eq!(pacer.due(), None, "sent once");
        // The send starts the next interval.
        assert_eq!(
            pacer.offer(start + STATUS_INTERVAL + ms(100), "dexBuilderDebug"),
            None
        );
        assert_eq!(pacer.due(), Some(start + STATUS_INTERVAL * 2));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}
