//! The project's folders, registered with the OS watcher one by one rather than as one
//! recursive watch: a folder that can't be watched (unreadable, e.g. left by `sudo ./gradlew`
//! under `app/build`) is skipped with one warning instead of turning watching off for the whole
//! project, and ignored folders (build outputs, `.git`) cost no watch at all.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use super::in_ignored_dir;

/// The folders being watched, and the watcher that watches them.
pub struct Tree {
    root: PathBuf,
    /// `None` once stopped: dropping the watcher ends notify's thread, and with it the batcher.
    watcher: Mutex<Option<RecommendedWatcher>>,
    /// Folders already warned about, so each is said once.
    warned: Mutex<HashSet<PathBuf>>,
}

/// The OS limit on watches was reached (the caller says how to raise it).
#[derive(Debug)]
pub struct LimitReached;

impl Tree {
    pub fn new(root: PathBuf, watcher: RecommendedWatcher) -> Self {
        Self {
            root,
            watcher: Mutex::new(Some(watcher)),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Watches `dir` and every folder below it that is not ignored. Folders that can't be
    /// watched or listed are skipped, each with one warning; symbolic links are not followed
    /// (a link to `/` must not walk the whole disk). Stops at the OS limit on watches.
    pub fn add(&self, dir: &Path) -> Result<(), LimitReached> {
        let mut folders = walkdir::WalkDir::new(dir).into_iter().filter_entry(|e| {
            e.file_type().is_dir()
                && e.path()
                    .strip_prefix(&self.root)
                    .is_ok_and(|rel| !in_ignored_dir(rel))
        });
        while let Some(folder) = folders.next() {
            let folder = match folder {
                Ok(folder) => folder,
                // Listing it failed: what is inside it can't be watched either.
                Err(e) => {
                    if let Some(path) = e.path() {
                        self.skip(path, &e.to_string());
                    }
                    continue;
                }
            };
            // Watched before it is listed: a file written in between is seen either way.
            let watched = match self.watcher.lock().as_mut() {
                Some(watcher) => watcher.watch(folder.path(), RecursiveMode::NonRecursive),
                None => return Ok(()), // stopping
            };
            if let Err(e) = watched {
                if super::is_limit(&e) {
                    return Err(LimitReached);
                }
                self.skip(folder.path(), &e.to_string());
                folders.skip_current_dir();
            }
        }
        Ok(())
    }

    fn skip(&self, dir: &Path, why: &str) {
        let first = self.warned.lock().insert(dir.to_path_buf());
        if first {
            let shown = dir.strip_prefix(&self.root).unwrap_or(dir);
            tracing::warn!(
                "not watching {} ({why}): changes in it won't start a build; make it readable \
                 to have it watched",
                shown.display()
            );
        }
    }

    /// Stops watching for good.
    pub fn stop(&self) {
        self.watcher.lock().take();
    }
}
