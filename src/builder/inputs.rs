//! The compile inputs Gradle recorded for the app (`.jetstart/hot-inputs.json`, written by
//! `templates/hot-inputs.gradle` after the debug Kotlin compile), read for the hot path, and
//! whether they still describe the build.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use crate::gradle::capture;

/// The only format this version reads; the script writes `"format": 1`.
pub const FORMAT: u32 = 1;

/// What the app's debug Kotlin compile used (see the README's "Hot reload" section).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HotInputs {
    pub format: u32,
    /// The Android variant (`debug`, `freeDebug`, …).
    #[serde(default)]
    pub variant: String,
    /// The Kotlin Gradle plugin's version, which is the compiler's.
    #[serde(default)]
    pub kotlin_version: Option<String>,
    /// `kotlin-compiler-embeddable` of that version and its dependencies.
    #[serde(default)]
    pub compiler_classpath: Vec<PathBuf>,
    /// Compiler plugin jars (the Compose compiler among them).
    #[serde(default)]
    pub plugin_classpath: Vec<PathBuf>,
    /// `plugin:<id>:<key>=<value>`, one per `-P`.
    #[serde(default)]
    pub plugin_options: Vec<String>,
    /// `compilerOptions.freeCompilerArgs`, passed as they are.
    #[serde(default)]
    pub free_compiler_args: Vec<String>,
    /// The compile's libraries: AndroidX/Compose jars, `R.jar`, the Kotlin stdlib, …
    #[serde(default)]
    pub classpath: Vec<PathBuf>,
    #[serde(default)]
    pub friend_paths: Vec<PathBuf>,
    /// The app's own compiled classes (Kotlin, then javac), so a changed file sees the rest.
    #[serde(default)]
    pub outputs: Vec<PathBuf>,
    #[serde(default)]
    pub jvm_target: Option<String>,
    #[serde(default)]
    pub module_name: Option<String>,
    #[serde(default)]
    pub no_jdk: bool,
    #[serde(default)]
    pub min_sdk: Option<u32>,
    /// `android.jar` of the compile SDK.
    #[serde(default)]
    pub boot_classpath: Vec<PathBuf>,
}

/// Why the record can't be used; said to the user as "… : {self}".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error(
        "no .jetstart/hot-inputs.json yet (the next full build writes it: a build run by \
         `jetstart-rs dev`, or one that applies gradle/jetstart.gradle)"
    )]
    Missing,
    #[error("{0} changed after .jetstart/hot-inputs.json was written (the next full build refreshes it)")]
    Stale(String),
    #[error("could not read .jetstart/hot-inputs.json: {0}")]
    Unreadable(String),
}

/// Reads the record of `project_dir`, unless it is missing, unreadable, of another format, or
/// older than a Gradle file of the project.
pub fn load(project_dir: &Path) -> Result<HotInputs, Unusable> {
    let path = capture::record_path(project_dir);
    let text = match crate::project_file::read_regular_string(&path, crate::project_file::STATE_MAX) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Unreadable(e.to_string())),
    };
    let written = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|e| Unusable::Unreadable(e.to_string()))?;
    if let Some((changed, _)) = newest_gradle_file(project_dir).filter(|(_, at)| *at > written) {
        let shown = changed.strip_prefix(project_dir).unwrap_or(&changed);
        return Err(Unusable::Stale(shown.display().to_string()));
    }
    let inputs: HotInputs = serde_json::from_str(&text).map_err(|e| Unusable::Unreadable(e.to_string()))?;
    if inputs.format != FORMAT {
        return Err(Unusable::Unreadable(format!(
            "it has format {}, this jetstart-rs reads format {FORMAT}",
            inputs.format
        )));
    }
    Ok(inputs)
}

/// True for the files that configure a Gradle build.
fn is_gradle_file(name: &str) -> bool {
    name.ends_with(".gradle")
        || name.ends_with(".gradle.kts")
        || name == "gradle.properties"
        || name.ends_with(".versions.toml")
}

/// The most recently modified Gradle file in the project root, its modules (folders one level
/// down) and `gradle/`; hidden folders and `build/` are skipped.
fn newest_gradle_file(project_dir: &Path) -> Option<(PathBuf, SystemTime)> {
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    let mut consider = |path: PathBuf| {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        if !is_gradle_file(name) {
            return;
        }
        if let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) {
            if newest.as_ref().is_none_or(|(_, at)| modified > *at) {
                newest = Some((path, modified));
            }
        }
    };
    let Ok(top) = std::fs::read_dir(project_dir) else {
        return None;
    };
    for entry in top.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            consider(path);
        } else if !name.starts_with('.') && name != "build" {
            for inner in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                if inner.file_type().is_ok_and(|t| t.is_file()) {
                    consider(inner.path());
                }
            }
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn set_mtime(path: &Path, at: SystemTime) {
        let file = std::fs::File::options().write(true).open(path).expect("open");
        file.set_modified(at).expect("set mtime");
    }

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("app/src")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join(".jetstart")).expect("mkdir");
        std::fs::write(dir.path().join("settings.gradle"), "include ':app'\n").expect("write");
        std::fs::write(dir.path().join("app/build.gradle"), "android {}\n").expect("write");
        dir
    }

    const RECORD: &str = r#"{"format":1,"variant":"debug","kotlinVersion":"2.0.21",
        "compilerClasspath":["/c/kotlin-compiler-embeddable.jar"],"pluginClasspath":["/p/compose.jar"],
        "pluginOptions":["plugin:androidx.compose.compiler.plugins.kotlin:sourceInformation=true"],
        "freeCompilerArgs":["-Xjvm-default=all"],"classpath":["/l/ui.jar"],"friendPaths":[],
        "outputs":["/o/kotlin-classes/debug"],"jvmTarget":"17","moduleName":"app_debug",
        "noJdk":true,"minSdk":24,"bootClasspath":["/sdk/android.jar"],"futureField":1}"#;

    #[test]
    fn a_fresh_record_is_read() {
        let dir = project();
        let old = SystemTime::now() - Duration::from_secs(60);
        set_mtime(&dir.path().join("settings.gradle"), old);
        set_mtime(&dir.path().join("app/build.gradle"), old);
        std::fs::write(capture::record_path(dir.path()), RECORD).expect("write");
        let inputs = load(dir.path()).expect("fresh");
        assert_eq!(inputs.module_name.as_deref(), Some("app_debug"));
        assert_eq!(inputs.min_sdk, Some(24));
        assert!(inputs.no_jdk);
        assert_eq!(inputs.plugin_classpath, [PathBuf::from("/p/compose.jar")]);
    }

    #[test]
    fn missing_stale_and_broken_records_say_why() {
        let dir = project();
        assert_eq!(load(dir.path()).unwrap_err(), Unusable::Missing);

        let record = capture::record_path(dir.path());
        std::fs::write(&record, RECORD).expect("write");
        set_mtime(&record, SystemTime::now() - Duration::from_secs(60));
        let stale = load(dir.path()).unwrap_err();
        assert!(
            matches!(&stale, Unusable::Stale(f) if f == "app/build.gradle" || f == "settings.gradle"),
            "{stale:?}"
        );
        assert!(stale.to_string().contains("changed after"), "{stale}");

        // A newer build file deeper than a module, or under build/, doesn't count.
        set_mtime(
            &dir.path().join("settings.gradle"),
            SystemTime::now() - Duration::from_secs(120),
        );
        set_mtime(
            &dir.path().join("app/build.gradle"),
            SystemTime::now() - Duration::from_secs(120),
        );
        std::fs::create_dir_all(dir.path().join("build")).expect("mkdir");
        std::fs::write(dir.path().join("build/x.gradle"), "").expect("write");
        std::fs::write(dir.path().join("app/src/y.gradle"), "").expect("write");
        assert!(load(dir.path()).is_ok());

        std::fs::write(&record, "{not json").expect("write");
        assert!(matches!(load(dir.path()), Err(Unusable::Unreadable(_))));
        std::fs::write(&record, r#"{"format":2}"#).expect("write");
        let other = load(dir.path()).unwrap_err().to_string();
        assert!(other.contains("format 2"), "{other}");
    }
}
