//! The Gradle scripts that record what the app's debug Kotlin compile used (compiler, plugins,
//! classpath, jvmTarget, minSdk…) into `.jetstart/hot-inputs.json`, for the hot path.
//!
//! `hot-inputs.gradle` holds the logic and is applied to the app module; the init script applies
//! it without touching the user's build files and is passed (`--init-script`) to the full
//! builds `dev` runs itself. `gradle/jetstart.gradle` (from `init`) applies the same script, so a
//! custom `--build-cmd` records the inputs too.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{atomic, session_file};

/// The script applied to the app module.
pub const SCRIPT: &str = include_str!("../../templates/hot-inputs.gradle");
/// The init script that applies [`SCRIPT`] to every Android application module.
pub const INIT_SCRIPT: &str = include_str!("../../templates/hot-inputs.init.gradle");
/// [`SCRIPT`]'s name inside `.jetstart/` (the templates refer to it by this name).
pub const SCRIPT_FILE: &str = "hot-inputs.gradle";
/// [`INIT_SCRIPT`]'s name inside `.jetstart/`.
pub const INIT_FILE: &str = "hot-inputs.init.gradle";
/// What the script writes, inside `.jetstart/`.
pub const RECORD_FILE: &str = "hot-inputs.json";

/// `<project>/.jetstart/hot-inputs.json`.
pub fn record_path(project_dir: &Path) -> PathBuf {
    project_dir.join(session_file::DIR).join(RECORD_FILE)
}

/// Writes both scripts into `<project>/.jetstart/` (each only when it differs, atomically) and
/// returns the init script's path, for `--init-script`.
pub fn install(project_dir: &Path) -> Result<PathBuf> {
    let dir = project_dir.join(session_file::DIR);
    session_file::create_private_dir(&dir)?;
    for (name, text) in [(SCRIPT_FILE, SCRIPT), (INIT_FILE, INIT_SCRIPT)] {
        let path = dir.join(name);
        let current = crate::project_file::read_regular(&path, crate::project_file::STATE_MAX).ok();
        if current.as_deref() != Some(text.as_bytes()) {
            atomic::write(&path, text.as_bytes(), atomic::Mode::Preserve)?;
        }
    }
    Ok(dir.join(INIT_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_agree_on_names() {
        assert!(INIT_SCRIPT.contains(&format!("'.jetstart/{SCRIPT_FILE}'")));
        assert!(SCRIPT.contains(&format!("'.jetstart/{RECORD_FILE}'")));
        assert!(super::super::SCRIPT.contains(&format!("'.jetstart/{SCRIPT_FILE}'")));
    }

    #[test]
    fn install_writes_both_scripts_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let init = install(dir.path()).expect("install");
        assert_eq!(init, dir.path().join(".jetstart").join(INIT_FILE));
        assert_eq!(std::fs::read_to_string(&init).expect("init"), INIT_SCRIPT);
        let script = dir.path().join(".jetstart").join(SCRIPT_FILE);
        assert_eq!(std::fs::read_to_string(&script).expect("script"), SCRIPT);
        let before = std::fs::metadata(&script)
            .and_then(|m| m.modified())
            .expect("mtime");
        install(dir.path()).expect("again");
        let after = std::fs::metadata(&script)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(before, after, "an unchanged script is not rewritten");
    }
}
