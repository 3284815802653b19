//! One server per project: `.jetstart/dev.lock`, locked for the server's whole life.
//!
//! Two servers on one project would overwrite each other's session file, and the one stopped
//! first would delete it under the other. The lock is the operating system's advisory lock on
//! the open file, so it goes away with the process however it ends (a crash, SIGKILL): a lock
//! left by a dead server is simply taken. The file names the holder (pid and URLs) for the
//! message the second server gives.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::gradle::session_file;

/// The lock file's name inside `.jetstart/`.
pub const FILE: &str = "dev.lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ProjectLock {
    file: File,
}

/// Why a server may not start on this project.
#[derive(Debug, thiserror::Error)]
#[error(
    "another jetstart-rs dev is already running for this project ({holder}); stop it first \
     (q or Ctrl+C in its terminal), or use its session"
)]
pub struct AlreadyRunning {
    /// What the running one wrote about itself: `pid 1234, http://localhost:8765`.
    pub holder: String,
}

/// `<project>/.jetstart/dev.lock`.
pub fn path(project_dir: &Path) -> PathBuf {
    project_dir.join(session_file::DIR).join(FILE)
}

impl ProjectLock {
    /// Takes the project's lock. `Err` with [`AlreadyRunning`] when another server holds it;
    /// other errors (a read-only project, no `.jetstart/`) mean no lock can be had at all.
    pub fn acquire(project_dir: &Path) -> Result<Self> {
        session_file::create_private_dir(&project_dir.join(session_file::DIR))?;
        let path = path(project_dir);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("could not open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { file }),
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>();
                let holder = if holder.is_empty() {
                    "it is still starting".to_owned()
                } else {
                    holder.join(", ")
                };
                Err(AlreadyRunning { holder }.into())
            }
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("could not lock {}", path.display()))
            }
        }
    }

    /// Writes who holds the lock (`pid …`, the pairing page's URL) for a second server's message.
    pub fn describe(&mut self, pid: u32, http_url: &str) -> Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        writeln!(self.file, "pid {pid}\n{http_url}")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_project_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut first = ProjectLock::acquire(dir.path()).expect("first");
        let before = ProjectLock::acquire(dir.path()).expect_err("held");
        assert!(format!("{before:#}").contains("still starting"), "{before:#}");
        first.describe(4242, "http://localhost:8765").expect("describe");
        let e = ProjectLock::acquire(dir.path()).expect_err("held");
        let running = e.downcast_ref::<AlreadyRunning>().expect("AlreadyRunning");
        assert_eq!(running.holder, "pid 4242, http://localhost:8765");
        drop(first);
        ProjectLock::acquire(dir.path()).expect("free again once the first is gone");
    }
}
