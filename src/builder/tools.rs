//! Finding the tools of the hot path: the Kotlin compiler, d8, `android.jar` and a JVM.
//!
//! An explicit `KOTLIN_HOME` / `ANDROID_HOME` (or `ANDROID_SDK_ROOT`) / `JAVA_HOME` wins over
//! `PATH`, as in Gradle and JetStart, so a tool on `PATH` never shadows the one the user named;
//! a variable that names no such tool falls through to `PATH`. Tools are found anew for each
//! batch: installing an SDK while the server runs is picked up without a restart.

use std::path::{Path, PathBuf};

/// What was found on this machine; `None` where a tool is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// `$KOTLIN_HOME/bin/kotlinc`, else `kotlinc` on `PATH`.
    pub kotlinc: Option<PathBuf>,
    /// `$ANDROID_HOME/build-tools/<highest>/d8`, else `d8` on `PATH`.
    pub d8: Option<PathBuf>,
    /// `$ANDROID_HOME/platforms/android-<highest>/android.jar`.
    pub android_jar: Option<PathBuf>,
    /// `$JAVA_HOME/bin/java`, else `java` on `PATH`.
    pub java: Option<PathBuf>,
    /// `$ANDROID_HOME/build-tools/<highest>/lib/d8.jar`: D8 for the compile worker, as the
    /// SDK's `d8` script runs it.
    pub d8_jar: Option<PathBuf>,
    /// The jars of the distribution `kotlinc` belongs to (`<kotlinc>/../lib/*.jar`, symlinks
    /// resolved), holding `kotlin-compiler.jar`; empty when that is not found.
    pub kotlin_distribution: Vec<PathBuf>,
}

impl Found {
    /// Looks for every tool.
    pub fn discover() -> Self {
        let sdk = android_sdk();
        let sdk = sdk.as_deref();
        let kotlinc = home_tool("KOTLIN_HOME", "bin/kotlinc").or_else(|| which("kotlinc"));
        Self {
            kotlin_distribution: kotlinc.as_deref().map(distribution_jars).unwrap_or_default(),
            kotlinc,
            d8_jar: sdk
                .and_then(build_tools)
                .map(|dir| dir.join("lib/d8.jar"))
                .filter(|p| p.is_file()),
            d8: sdk
                .and_then(build_tools)
                .map(|dir| dir.join("d8"))
                .filter(|p| is_executable(p))
                .or_else(|| which("d8")),
            android_jar: sdk
                .and_then(|sdk| {
                    highest(&sdk.join("platforms"), |name| {
                        name.strip_prefix("android-")
                            .filter(|n| n.parse::<u64>().is_ok())
                            .map(str::to_owned)
                    })
                })
                .map(|dir| dir.join("android.jar"))
                .filter(|p| p.is_file()),
            java: home_tool("JAVA_HOME", "bin/java").or_else(|| which("java")),
        }
    }
}

/// The jars in the `lib/` folder next to the `bin/` that `kotlinc` (symlinks resolved) is in,
/// sorted; empty unless `kotlin-compiler.jar` is among them.
fn distribution_jars(kotlinc: &Path) -> Vec<PathBuf> {
    let Some(lib) = std::fs::canonicalize(kotlinc)
        .ok()
        .and_then(|k| Some(k.parent()?.parent()?.join("lib")))
        .filter(|lib| lib.join("kotlin-compiler.jar").is_file())
    else {
        return Vec::new();
    };
    let mut jars: Vec<PathBuf> = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jar"))
        .collect();
    jars.sort();
    jars
}

/// `$ANDROID_HOME`, else `$ANDROID_SDK_ROOT`.
pub fn android_sdk() -> Option<PathBuf> {
    std::env::var_os("ANDROID_HOME")
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var_os("ANDROID_SDK_ROOT").filter(|v| !v.is_empty()))
        .map(PathBuf::from)
}

/// The highest `<sdk>/build-tools/<version>` folder.
pub fn build_tools(sdk: &Path) -> Option<PathBuf> {
    highest(&sdk.join("build-tools"), |name| Some(name.to_owned()))
}

/// `$<var>/<rel>` when the variable is set and that file is executable.
fn home_tool(var: &str, rel: &str) -> Option<PathBuf> {
    let home = std::env::var_os(var).filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(rel)).filter(|p| is_executable(p))
}

/// The entry of `dir` with the highest version in its name, as `key` reads it
/// (`34.0.0` > `33.0.2`, `android-34` > `android-9`).
fn highest(dir: &Path, key: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((version_key(&key(&name)?), e.path()))
        })
        .max()
        .map(|(_, path)| path)
}

/// `35.0.0-rc1` → `[35, 0, 0, 1]`-ish: numbers compared as numbers.
fn version_key(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The first executable `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}

/// True for a file with an executable bit.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kotlinc_distribution_is_its_lib_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("kotlinc");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::create_dir_all(root.join("lib")).expect("mkdir");
        std::fs::write(root.join("bin/kotlinc"), "#!/bin/sh\n").expect("write");
        assert!(
            distribution_jars(&root.join("bin/kotlinc")).is_empty(),
            "no kotlin-compiler.jar"
        );
        for jar in ["kotlin-stdlib.jar", "kotlin-compiler.jar", "notes.txt"] {
            std::fs::write(root.join("lib").join(jar), "").expect("write");
        }
        std::os::unix::fs::symlink(root.join("bin/kotlinc"), dir.path().join("kotlinc-link"))
            .expect("symlink");
        let root = std::fs::canonicalize(&root).expect("canonical");
        assert_eq!(
            distribution_jars(&dir.path().join("kotlinc-link")),
            [
                root.join("lib/kotlin-compiler.jar"),
                root.join("lib/kotlin-stdlib.jar")
            ]
        );
    }

    #[test]
    fn highest_versions_are_numeric() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "9.0.0",
            "34.0.0",
            "33.0.2",
            "35.0.0-rc1",
            "android-9",
            "android-34",
            "android-UpsideDownCake",
        ] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        let build_tools = highest(dir.path(), |n| (!n.starts_with("android")).then(|| n.to_owned()));
        assert_eq!(build_tools, Some(dir.path().join("35.0.0-rc1")));
        let platform = highest(dir.path(), |n| {
            n.strip_prefix("android-")
                .filter(|n| n.parse::<u64>().is_ok())
                .map(str::to_owned)
        });
        assert_eq!(platform, Some(dir.path().join("android-34")));
    }
}
