//! Atomic file replacement: a temporary file in the same folder, fsync, rename.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Permissions of the file being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Owner read/write only (0600), set before the first byte is written: for secrets.
    Private,
    /// A user's file: keep its permissions; a new file gets 0644. A read-only file is refused
    /// rather than replaced behind the user's back (a rename would succeed in a writable folder).
    Preserve,
}

/// Permissions of a file created with [`Mode::Preserve`].
#[cfg(unix)]
const NEW_FILE_MODE: u32 = 0o644;
#[cfg(unix)]
const PRIVATE_MODE: u32 = 0o600;

/// Replaces `path` with `contents` so that a reader sees either the old or the new file, never
/// a half-written one, even if the process dies mid-way.
pub fn write(path: &Path, contents: &[u8], mode: Mode) -> Result<()> {
    stage(path, contents, mode)?.commit()
}

/// A replacement for a file, complete and synced in a temporary file next to it but not visible
/// yet. Dropping it without [`Staged::commit`] removes the temporary file and changes nothing.
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    dir: PathBuf,
}

impl Staged {
    /// Puts the new file in place (a rename, atomic on the same filesystem).
    pub fn commit(self) -> Result<()> {
        let Self { tmp, path, dir } = self;
        tmp.persist(&path).map_err(|e| e.error).with_context(|| {
            format!(
                "could not replace {} (is the folder writable?); the file was left untouched",
                path.display()
            )
        })?;
        // Make the rename itself durable. Best effort: some filesystems can't fsync a directory,
        // and the file is already complete either way.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The first half of [`write`]: everything that can fail for lack of permissions or space
/// (checks, the temporary file, the bytes, fsync), so that callers changing several files can
/// find out before any of them changes.
pub fn stage(path: &Path, contents: &[u8], mode: Mode) -> Result<Staged> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let existing = match fs::metadata(path) {
        Ok(meta) => Some(meta.permissions()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("could not read the permissions of {}", path.display()))
        }
    };
    if mode == Mode::Preserve && existing.as_ref().is_some_and(|p| p.readonly()) {
        anyhow::bail!(
            "{} is read-only; make it writable (e.g. chmod u+w) and run again; it was left untouched",
            path.display()
        );
    }

    // tempfile creates the file with mode 0600 on unix, so a secret is never readable by others,
    // not even for an instant; the final mode is set before anything is written.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "could not create a temporary file in {} to update {}; make the folder writable and run again",
                dir.display(),
                path.display()
            )
        })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let bits = match (mode, &existing) {
            (Mode::Private, _) => PRIVATE_MODE,
            (Mode::Preserve, Some(perms)) => perms.mode() & 0o7777,
            (Mode::Preserve, None) => NEW_FILE_MODE,
        };
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(bits))
            .with_context(|| {
                format!(
                    "could not set the permissions of a temporary file in {}",
                    dir.display()
                )
            })?;
    }
    #[cfg(not(unix))]
    if let (Mode::Preserve, Some(perms)) = (mode, existing) {
        // Best effort: only the read-only flag exists here, and a read-only file was refused above.
        let _ = tmp.as_file().set_permissions(perms);
    }

    let failed = || {
        format!(
            "could not write {}; check free disk space and permissions",
            path.display()
        )
    };
    tmp.write_all(contents).with_context(failed)?;
    tmp.as_file().sync_all().with_context(failed)?;
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    #[test]
    fn writes_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.txt");
        write(&path, b"one", Mode::Preserve).expect("write");
        write(&path, b"two", Mode::Preserve).expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.txt")]);
    }

    #[test]
    fn a_staged_file_changes_nothing_until_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.txt");
        fs::write(&path, b"old").expect("write");
        let count = || fs::read_dir(dir.path()).expect("ls").count();
        drop(stage(&path, b"dropped", Mode::Preserve).expect("stage"));
        assert_eq!((fs::read(&path).expect("read"), count()), (b"old".to_vec(), 1));
        let staged = stage(&path, b"new", Mode::Preserve).expect("stage");
        assert_eq!(fs::read(&path).expect("read"), b"old");
        staged.commit().expect("commit");
        assert_eq!((fs::read(&path).expect("read"), count()), (b"new".to_vec(), 1));
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_and_others_keep_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        write(&secret, b"x", Mode::Private).expect("write");
        assert_eq!(mode_of(&secret), 0o600);

        let fresh = dir.path().join("fresh");
        write(&fresh, b"x", Mode::Preserve).expect("write");
        assert_eq!(mode_of(&fresh), 0o644);

        let user = dir.path().join("user");
        fs::write(&user, b"x").expect("write");
        fs::set_permissions(&user, fs::Permissions::from_mode(0o640)).expect("chmod");
        write(&user, b"y", Mode::Preserve).expect("write");
        assert_eq!(mode_of(&user), 0o640);
    }

    #[cfg(unix)]
    #[test]
    fn read_only_files_are_refused_and_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("build.gradle");
        fs::write(&path, b"original").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).expect("chmod");
        let err = write(&path, b"new", Mode::Preserve).expect_err("must refuse");
        assert!(format!("{err:#}").contains("read-only"), "{err:#}");
        assert_eq!(fs::read(&path).expect("read"), b"original");
    }
}
