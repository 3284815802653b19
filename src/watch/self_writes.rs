//! The server's own writes inside the project (the session file, the Gradle marker block), so
//! that the watcher tells them from the developer's and never builds because of them.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Files the server itself wrote inside the project (session file, Gradle marker block), so
/// the watcher can tell its own writes from the developer's and never build because of them.
#[derive(Debug, Default)]
pub struct SelfWrites {
    written: Mutex<HashMap<PathBuf, [u8; 32]>>,
}

impl SelfWrites {
    /// Records that the server wrote `contents` to `path`.
    pub fn record(&self, path: &Path, contents: &[u8]) {
        let digest: [u8; 32] = Sha256::digest(contents).into();
        self.written.lock().insert(path.to_path_buf(), digest);
    }

    /// True if `path` still holds exactly what the server last wrote there.
    pub fn is_own(&self, path: &Path) -> bool {
        let Some(expected) = self.written.lock().get(path).copied() else {
            return false;
        };
        crate::project_file::read_regular(path, crate::project_file::BUILD_FILE_MAX)
            .is_ok_and(|now| <[u8; 32]>::from(Sha256::digest(&now)) == expected)
    }
}
