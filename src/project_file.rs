//! Reading files of the project, which come from whoever wrote the repository: git stores
//! symbolic links, so a cloned project can hold `app/build.gradle -> /dev/zero` or a FIFO named
//! `jetstart.config.json`. A file is read only if it is a regular file, never more than a cap,
//! and opening never waits (a FIFO with no writer would block `open` forever).

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `jetstart.config.json`: a few lines in practice.
pub const CONFIG_MAX: u64 = 1024 * 1024;
/// `app/build.gradle[.kts]`: tens of kilobytes for a large app.
pub const BUILD_FILE_MAX: u64 = 8 * 1024 * 1024;
/// Files under `.jetstart/` (the session file, the hot-inputs record: a classpath of a few
/// hundred absolute paths).
pub const STATE_MAX: u64 = 16 * 1024 * 1024;

/// Why a project file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("{} is not a regular file (a {}); it was not read", .0.display(), .1)]
    NotRegular(PathBuf, &'static str),
    #[error("{} leads outside the project (to {}); it was not read", .0.display(), .1.display())]
    Outside(PathBuf, PathBuf),
    #[error("{} is larger than {} bytes; it was not read", .0.display(), .1)]
    TooBig(PathBuf, u64),
    #[error("could not read {}: {}", .0.display(), .1)]
    Io(PathBuf, #[source] io::Error),
}

impl ReadError {
    /// True if there simply is no such file (often fine: most files are optional).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// Where `path` really is, if that is inside `root` (itself resolved: `Config` canonicalizes the
/// project folder). Symbolic links inside the project are fine.
pub fn resolve(root: &Path, path: &Path) -> Result<PathBuf, ReadError> {
    let resolved = path.canonicalize().map_err(|e| io_error(path, e))?;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    if resolved.starts_with(&root) {
        Ok(resolved)
    } else {
        Err(ReadError::Outside(path.to_path_buf(), resolved))
    }
}

/// Reads `path`, which must resolve to a regular file inside `root` of at most `max` bytes.
pub fn read(root: &Path, path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    read_resolved(root, path, max).map(|(_, bytes)| bytes)
}

/// [`read`], also returning where the file really is (for writing it back in place).
pub fn read_resolved(root: &Path, path: &Path, max: u64) -> Result<(PathBuf, Vec<u8>), ReadError> {
    let resolved = resolve(root, path)?;
    let bytes = read_regular(&resolved, max).map_err(|e| e.named(path))?;
    Ok((resolved, bytes))
}

/// [`read`] as UTF-8 text (invalid sequences replaced).
pub fn read_to_string(root: &Path, path: &Path, max: u64) -> Result<String, ReadError> {
    read(root, path, max).map(into_string)
}

/// Opens `path` (symbolic links followed) for reading if it is a regular file; for files read
/// whole elsewhere, like the APK. Never waits, whatever is there.
pub fn open_regular(path: &Path) -> Result<std::fs::File, ReadError> {
    // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer; it changes
    // nothing for a regular file. O_NOCTTY: a terminal device never becomes ours.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits() | nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(path)
        .map_err(|e| io_error(path, e))?;
    // Checked on the opened file, so nothing can be swapped in between.
    let kind = file.metadata().map_err(|e| io_error(path, e))?.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotRegular(path.to_path_buf(), kind_name(kind)));
    }
    Ok(file)
}

/// Reads `path` (symbolic links followed anywhere) if it is a regular file of at most `max`
/// bytes: for files the server wrote itself or the user named.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooBig(path.to_path_buf(), max));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text (invalid sequences replaced).
pub fn read_regular_string(path: &Path, max: u64) -> Result<String, ReadError> {
    read_regular(path, max).map(into_string)
}

fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl ReadError {
    /// The same error, naming `path` (as the project has it) instead of where it led.
    fn named(self, path: &Path) -> Self {
        let path = path.to_path_buf();
        match self {
            Self::NotFound(_) => Self::NotFound(path),
            Self::NotRegular(_, kind) => Self::NotRegular(path, kind),
            Self::TooBig(_, max) => Self::TooBig(path, max),
            Self::Io(_, e) => Self::Io(path, e),
            outside @ Self::Outside(..) => outside,
        }
    }
}

fn io_error(path: &Path, e: io::Error) -> ReadError {
    if e.kind() == io::ErrorKind::NotFound {
        ReadError::NotFound(path.to_path_buf())
    } else {
        ReadError::Io(path.to_path_buf(), e)
    }
}

fn kind_name(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "folder"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "device"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn regular_files_and_links_inside_the_project_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("root");
        std::fs::write(root.join("a.json"), b"{}").expect("write");
        symlink("a.json", root.join("link.json")).expect("symlink");
        assert_eq!(read(&root, &root.join("link.json"), 10).expect("read"), b"{}");
        assert!(read(&root, &root.join("missing"), 10)
            .expect_err("none")
            .is_not_found());
    }

    #[test]
    fn devices_fifos_folders_big_files_and_outside_links_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("root");
        symlink("/dev/zero", root.join("zero")).expect("symlink");
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        std::fs::write(root.join("big"), vec![b'x'; 11]).expect("write");
        let outside = tempfile::NamedTempFile::new().expect("outside");
        symlink(outside.path(), root.join("out")).expect("symlink");
        let err = |name: &str| read(&root, &root.join(name), 10).expect_err(name).to_string();
        assert!(err("zero").contains("outside the project"), "{}", err("zero"));
        assert!(err("fifo").contains("FIFO"), "{}", err("fifo"));
        assert!(err(".").contains("folder"), "{}", err("."));
        assert!(err("big").contains("larger than 10 bytes"), "{}", err("big"));
        assert!(err("out").contains("outside the project"), "{}", err("out"));
        let zero = read_regular(Path::new("/dev/zero"), 10)
            .expect_err("device")
            .to_string();
        assert!(zero.contains("device"), "{zero}");
    }
}
