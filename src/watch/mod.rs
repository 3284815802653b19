//! Watching the project: ignore rules, debounce, and classification of a batch of changes.
//! Watching degrades, never dies: an unwatchable folder is skipped ([`tree`]), and a project
//! folder deleted and created again is watched again.

mod self_writes;
mod tree;

pub use self_writes::SelfWrites;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use notify::event::{CreateKind, EventKind, ModifyKind, RemoveKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tree::Tree;

use crate::bounded;

/// Folders never watched for changes, wherever they are (build outputs, tool state, VCS).
pub const IGNORED_DIRS: &[&str] = &["build", ".gradle", ".git", ".idea", ".jetstart", "node_modules"];
/// File name endings that matter to an Android build.
const WATCHED_SUFFIXES: &[&str] = &[".kt", ".java", ".xml", ".gradle", ".gradle.kts", ".properties"];
/// Changes waiting between notify's thread and the batcher. Only relevant paths are sent
/// (Gradle's own churn in `build/` is filtered on notify's thread), so this is seldom more than
/// a few.
const CHANNEL_CAPACITY: usize = 4096;
/// A steady stream of changes (a generator rewriting sources in a loop) would otherwise
/// postpone a batch forever; past this, the batch goes out and the rest makes the next one.
const MAX_BATCH_WAIT: Duration = Duration::from_secs(2);
/// How often the batcher, idle, checks that the project folder is still there (its removal
/// usually arrives as an event; this also catches a missed one), and how often, once it is
/// gone, it looks for it to come back.
const ROOT_CHECK: Duration = Duration::from_secs(1);
const ROOT_POLL: Duration = Duration::from_millis(250);
/// The hint for the most common reason watching fails on Linux.
const INOTIFY_HINT: &str = "the OS limit on watched folders was reached; raise it with \
    `sudo sysctl fs.inotify.max_user_watches=524288` (add it to /etc/sysctl.conf to keep it), \
    then restart";

/// True if a change to `path` (under `root`) may affect the build.
pub fn is_relevant(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !in_ignored_dir(rel) && name != "local.properties" && WATCHED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// True if any folder of the relative path `rel` (its last part included) is ignored.
fn in_ignored_dir(rel: &Path) -> bool {
    rel.components()
        .any(|c| IGNORED_DIRS.iter().any(|d| c.as_os_str() == *d))
}

/// Changes collected over one debounce window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Changed (created, modified, removed) files.
    pub files: BTreeSet<PathBuf>,
    /// Something only a full build covers: events were lost, or a folder was removed.
    pub full: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && !self.full
    }

    /// True if only existing `.kt` files changed: the hot path may handle it. A removed
    /// `.kt` file can't be compiled, so it needs a full build.
    pub fn is_kotlin_only(&self) -> bool {
        !self.full
            && !self.files.is_empty()
            && self
                .files
                .iter()
                .all(|f| f.extension().is_some_and(|e| e == "kt") && f.is_file())
    }

    /// Adds `other` to this batch.
    pub fn merge(&mut self, other: Batch) {
        self.files.extend(other.files);
        self.full |= other.full;
    }
}

/// What notify's thread hands to tokio.
#[derive(Debug)]
enum Change {
    File(PathBuf),
    /// A folder appeared: files written into it before its watch was added have no events.
    NewDir(PathBuf),
    /// A folder went away, or notify lost events: only a full build is safe.
    Structure,
    /// The project folder itself was removed or moved away.
    RootGone,
}

/// The running watcher: notify on its thread, debouncing on another, batches on a tokio channel.
pub struct WatchSystem {
    tree: Arc<Tree>,
    batcher: Batcher,
}

/// A change and when notify's thread saw it.
type Seen = (Change, Instant);

/// Collects changes into batches; runs on a thread of its own.
struct Batcher {
    changes: bounded::Receiver<Seen>,
    overflowed: Arc<AtomicBool>,
    /// The project folder, canonicalized.
    root: PathBuf,
    debounce: Duration,
    self_writes: Arc<SelfWrites>,
    /// `None` in unit tests of the debounce, which watch nothing.
    tree: Option<Arc<Tree>>,
}

impl WatchSystem {
    /// Starts watching the folders of `root` (the project, canonicalized); a batch closes after
    /// `debounce` of quiet and leaves out the server's own writes. Fails only if no watcher can
    /// be made at all; the OS limit on watches is reported with how to raise it, and what could
    /// be watched is.
    pub fn new(root: PathBuf, debounce: Duration, self_writes: Arc<SelfWrites>) -> Result<Self> {
        let (tx, changes) = bounded::channel(CHANNEL_CAPACITY);
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let callback_root = root.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let event = match res {
                Ok(event) => event,
                Err(e) => {
                    report_error(&e);
                    return;
                }
            };
            let seen = Instant::now();
            for change in changes_of(&callback_root, &event) {
                match tx.try_send((change, seen)) {
                    Ok(()) => {}
                    // Full: the batcher is behind. The change is not lost: the flag makes the
                    // next batch a full build, which covers every change, this one included.
                    Err(std::sync::mpsc::TrySendError::Full(_)) => flag.store(true, Ordering::SeqCst),
                    // Disconnected: the server is stopping.
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
                }
            }
        })?;
        let tree = Arc::new(Tree::new(root.clone(), watcher));
        if tree.add(&root).is_err() {
            tracing::error!(
                "some folders of {} are not watched: {INOTIFY_HINT}",
                root.display()
            );
        }
        Ok(Self {
            tree: tree.clone(),
            batcher: Batcher {
                changes,
                overflowed,
                root,
                debounce,
                self_writes,
                tree: Some(tree),
            },
        })
    }

    /// Sends one [`Batch`] per burst of changes to `batches` until `stop`.
    ///
    /// Debouncing runs on a thread of its own: a std channel's timeout wakes within tens of
    /// microseconds of the end of the window, where tokio's timer rounds every wait up to the
    /// next millisecond (and then some), and a batch's checks (files in a new folder, the
    /// server's own writes) are blocking file I/O.
    pub async fn run(self, batches: mpsc::Sender<Batch>, stop: CancellationToken) {
        let Self { tree, batcher } = self;
        let spawned = std::thread::Builder::new()
            .name("jetstart-watch".into())
            .spawn(move || {
                no_timer_slack();
                while let Some(batch) = batcher.next_batch() {
                    if batches.blocking_send(batch).is_err() {
                        return; // the scheduler is gone: the server is stopping
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("file watching is off: could not start its thread: {e}");
            return;
        }
        stop.cancelled().await;
        // Stops notify's thread, which drops the sending side: the batcher's wait ends.
        tree.stop();
    }
}

/// The end of the debounce window is the start of the build: the thread that waits for it asks
/// for no timer slack (by default Linux lets a timeout fire up to 50 µs late, to group wake-ups).
/// It says what it got: only the thread itself may read its slack without `CAP_SYS_NICE`.
fn no_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::prctl;
        match prctl::set_timerslack(1).and_then(|()| prctl::get_timerslack()) {
            Ok(ns) => tracing::debug!("debounce thread: timer slack {ns} ns"),
            Err(e) => tracing::debug!("debounce thread: timer slack left as it is: {e}"),
        }
    }
}

impl Batcher {
    /// Waits for a change, then collects until the project has been quiet for `--debounce`.
    /// `None` once the watcher is gone.
    ///
    /// The quiet time counts from when notify's thread saw the last change, not from when this
    /// thread got it: waking this thread can take a large part of a millisecond on a busy or
    /// virtual machine, and that should not be added to every build.
    fn next_batch(&self) -> Option<Batch> {
        let debounce = self.debounce;
        loop {
            let mut batch = Batch::default();
            let (first, first_seen) = match self.changes.recv_timeout(ROOT_CHECK) {
                Ok(seen) => seen,
                Err(RecvTimeoutError::Timeout) => {
                    if self.root_is_gone() {
                        return self.wait_for_root();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            };
            if matches!(first, Change::RootGone) {
                return self.wait_for_root();
            }
            self.add(&mut batch, first);
            let cap = first_seen + MAX_BATCH_WAIT;
            let mut last_seen = first_seen;
            loop {
                if Instant::now() >= cap {
                    break; // what is still queued makes the next batch
                }
                let quiet_at = (last_seen + debounce).min(cap);
                match self
                    .changes
                    .recv_timeout(quiet_at.saturating_duration_since(Instant::now()))
                {
                    Ok((change, seen)) => {
                        self.add(&mut batch, change);
                        last_seen = last_seen.max(seen);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            if self.overflowed.swap(false, Ordering::SeqCst) {
                tracing::warn!("too many file changes at once to track one by one; doing a full build");
                batch.full = true;
            }
            // The server's own writes (BuildConfig marker block) must never cause a build.
            batch.files.retain(|path| !self.self_writes.is_own(path));
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }

    fn add(&self, batch: &mut Batch, change: Change) {
        match change {
            Change::File(path) => {
                batch.files.insert(path);
            }
            Change::NewDir(dir) => {
                // Watched before it is scanned: a file written in between is seen either way.
                self.watch(&dir);
                batch.files.extend(relevant_files_in(&self.root, &dir));
            }
            // Noticed at the start of the next batch (or by the periodic check).
            Change::Structure | Change::RootGone => batch.full = true,
        }
    }

    fn watch(&self, dir: &Path) {
        if let Some(tree) = &self.tree {
            if tree.add(dir).is_err() {
                tracing::error!("{} is not watched: {INOTIFY_HINT}", dir.display());
            }
        }
    }

    fn root_is_gone(&self) -> bool {
        !self.root.is_dir()
    }

    /// The project folder is gone: says so, waits for it to come back (or the watcher to stop),
    /// watches it again and asks for a full build (anything may have changed meanwhile).
    fn wait_for_root(&self) -> Option<Batch> {
        let root = &self.root;
        tracing::warn!(
            "the project folder {} is gone; watching for it to come back",
            root.display()
        );
        while self.root_is_gone() {
            match self.changes.recv_timeout(ROOT_POLL) {
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
        // Events from before the return are about the old folder.
        while self.changes.recv_timeout(Duration::ZERO).is_ok() {}
        self.watch(root);
        tracing::info!("the project folder {} is back; watching it again", root.display());
        Some(Batch {
            files: BTreeSet::new(),
            full: true,
        })
    }
}

/// The relevant changes in one notify event.
fn changes_of(root: &Path, event: &notify::Event) -> Vec<Change> {
    if event.need_rescan() {
        return vec![Change::Structure];
    }
    let mut out = Vec::new();
    for path in &event.paths {
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            if matches!(
                event.kind,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
            ) {
                out.push(Change::RootGone);
            }
            continue;
        }
        if in_ignored_dir(rel) {
            continue;
        }
        match event.kind {
            // Reads, and atime updates from compilers reading sources, change nothing.
            EventKind::Access(_)
            | EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::AccessTime)) => {}
            EventKind::Create(CreateKind::Folder) => out.push(Change::NewDir(path.clone())),
            EventKind::Remove(RemoveKind::Folder) => out.push(Change::Structure),
            _ if is_relevant(root, path) => out.push(Change::File(path.clone())),
            // A folder renamed into place or away (no extension: not one of our files).
            EventKind::Modify(ModifyKind::Name(_)) if path.is_dir() => out.push(Change::NewDir(path.clone())),
            EventKind::Modify(ModifyKind::Name(_)) if path.extension().is_none() && !path.exists() => {
                out.push(Change::Structure);
            }
            _ => {}
        }
    }
    out
}

/// Relevant files already inside a folder that just appeared (ignored folders not entered,
/// symbolic links not followed).
fn relevant_files_in(root: &Path, dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| {
            !e.file_type().is_dir() || e.path().strip_prefix(root).is_ok_and(|rel| !in_ignored_dir(rel))
        })
        .flatten()
        .filter(|e| !e.file_type().is_dir() && is_relevant(root, e.path()))
        .map(walkdir::DirEntry::into_path)
        .collect()
}

fn is_limit(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(io) => io.raw_os_error() == Some(28), // ENOSPC: inotify's way to say it
        _ => false,
    }
}

fn report_error(e: &notify::Error) {
    if is_limit(e) {
        tracing::error!("some folders are not watched: {INOTIFY_HINT}");
    } else {
        tracing::warn!("file watcher: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules_and_extensions() {
        let root = Path::new("/p");
        let yes = |p: &str| is_relevant(root, Path::new(p));
        assert!(yes("/p/app/src/main/java/com/x/Main.kt"));
        assert!(yes("/p/app/src/main/java/com/x/Main.java"));
        assert!(yes("/p/app/src/main/res/values/strings.xml"));
        assert!(yes("/p/app/build.gradle"));
        assert!(yes("/p/app/build.gradle.kts"));
        assert!(yes("/p/gradle.properties"));
        assert!(!yes("/p/local.properties"));
        assert!(!yes("/p/app/build/generated/R.java"));
        assert!(!yes("/p/.gradle/8.0/x.properties"));
        assert!(!yes("/p/.git/config.xml"));
        assert!(!yes("/p/.idea/workspace.xml"));
        assert!(!yes("/p/.jetstart/session.properties"));
        assert!(!yes("/p/lib/node_modules/a/b.kt"));
        assert!(!yes("/p/README.md"));
        assert!(!yes("/p/script.kts"));
        assert!(!yes("/elsewhere/A.kt"));
        assert!(
            yes("/p/buildSrc/src/A.kt"),
            "only a folder named exactly `build` is ignored"
        );
    }

    #[test]
    fn classification() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kt = dir.path().join("A.kt");
        let xml = dir.path().join("a.xml");
        std::fs::write(&kt, "class A").expect("write");
        std::fs::write(&xml, "<a/>").expect("write");
        let batch = |files: &[&PathBuf], full| Batch {
            files: files.iter().map(|p| (*p).clone()).collect(),
            full,
        };
        assert!(batch(&[&kt], false).is_kotlin_only());
        assert!(!batch(&[&kt, &xml], false).is_kotlin_only());
        assert!(!batch(&[&kt], true).is_kotlin_only());
        assert!(!batch(&[], false).is_kotlin_only());
        assert!(!batch(&[&dir.path().join("Gone.kt")], false).is_kotlin_only());

        let mut merged = batch(&[&kt], false);
        merged.merge(batch(&[&xml], false));
        assert_eq!(merged.files.len(), 2);
        assert!(!merged.is_kotlin_only());
    }

    /// A batcher with `debounce` whose changes come from the returned sender, as notify's
    /// thread would send them.
    fn batcher(debounce: Duration) -> (Batcher, bounded::Sender<Seen>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, changes) = bounded::channel(CHANNEL_CAPACITY);
        let overflowed = Arc::new(AtomicBool::new(false));
        (
            Batcher {
                changes,
                overflowed,
                root: dir.path().canonicalize().expect("canonical"),
                debounce,
                self_writes: Arc::new(SelfWrites::default()),
                tree: None,
            },
            tx,
            dir,
        )
    }

    #[test]
    fn quiet_time_counts_from_when_the_change_was_seen() {
        let debounce = Duration::from_secs(2);
        let (batcher, tx, dir) = batcher(debounce);
        let file = dir.path().join("A.kt");
        // Seen a whole window ago (this thread was slow to get it): the batch is due now.
        let long_ago = Instant::now()
            .checked_sub(debounce)
            .expect("the machine is up for 2 s");
        tx.try_send((Change::File(file.clone()), long_ago)).expect("send");
        let started = Instant::now();
        let batch = batcher.next_batch().expect("a batch");
        assert!(started.elapsed() < debounce / 2, "waited {:?}", started.elapsed());
        assert_eq!(batch.files.into_iter().collect::<Vec<_>>(), vec![file]);
    }

    #[test]
    fn a_later_change_restarts_the_window() {
        let debounce = Duration::from_millis(300);
        let (batcher, tx, dir) = batcher(debounce);
        let long_ago = Instant::now()
            .checked_sub(debounce * 2)
            .expect("the machine is up for 0.6 s");
        tx.try_send((Change::File(dir.path().join("A.kt")), long_ago))
            .expect("send");
        let started = Instant::now();
        tx.try_send((Change::File(dir.path().join("B.kt")), started))
            .expect("send");
        let batch = batcher.next_batch().expect("a batch");
        assert!(
            started.elapsed() >= debounce,
            "went out after {:?}",
            started.elapsed()
        );
        assert_eq!(batch.files.len(), 2);
    }

    #[test]
    fn past_the_cap_a_batch_takes_no_more_changes() {
        let (batcher, tx, dir) = batcher(Duration::from_millis(300));
        let (a, b) = (dir.path().join("A.kt"), dir.path().join("B.kt"));
        let long_ago = Instant::now()
            .checked_sub(MAX_BATCH_WAIT * 2)
            .expect("the machine is up for 4 s");
        tx.try_send((Change::File(a.clone()), long_ago)).expect("send");
        tx.try_send((Change::File(b.clone()), Instant::now()))
            .expect("send");
        let first = batcher.next_batch().expect("a batch");
        assert_eq!(first.files.into_iter().collect::<Vec<_>>(), vec![a]);
        let second = batcher.next_batch().expect("the rest");
        assert_eq!(second.files.into_iter().collect::<Vec<_>>(), vec![b]);
    }

    #[test]
    fn new_folders_are_scanned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("app/src/x/build")).expect("mkdir");
        std::fs::write(root.join("app/src/x/A.kt"), "").expect("write");
        std::fs::write(root.join("app/src/x/build/B.kt"), "").expect("write");
        std::fs::write(root.join("app/src/x/notes.txt"), "").expect("write");
        assert_eq!(
            relevant_files_in(root, &root.join("app")),
            vec![root.join("app/src/x/A.kt")]
        );
    }
}
