//! The hot path: changed `.kt` files → `kotlinc` → `d8` → one `classes.dex` for devices.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::process::{self, Exit, Finished};

/// The tools the hot path needs. Found anew for each batch: installing an SDK while the server
/// runs is picked up without a restart.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub kotlinc: PathBuf,
    pub d8: PathBuf,
    pub android_jar: PathBuf,
}

impl Toolchain {
    /// `kotlinc` from `PATH` or `$KOTLIN_HOME/bin`, `d8` from the highest
    /// `$ANDROID_HOME/build-tools/<version>` or `PATH`, `android.jar` from the highest
    /// `$ANDROID_HOME/platforms/android-<n>`. `Err` says which is missing.
    pub fn discover() -> Result<Self> {
        let sdk = std::env::var_os("ANDROID_HOME")
            .or_else(|| std::env::var_os("ANDROID_SDK_ROOT"))
            .map(PathBuf::from);
        let kotlinc = which("kotlinc")
            .or_else(|| {
                let home = PathBuf::from(std::env::var_os("KOTLIN_HOME")?);
                Some(home.join("bin/kotlinc")).filter(|p| is_executable(p))
            })
            .context("kotlinc not found on PATH or in $KOTLIN_HOME/bin")?;
        let d8 = sdk
            .as_deref()
            .and_then(|sdk| highest(&sdk.join("build-tools"), |name| Some(name.to_owned())))
            .map(|dir| dir.join("d8"))
            .filter(|p| is_executable(p))
            .or_else(|| which("d8"))
            .context("d8 not found in $ANDROID_HOME/build-tools/<version> or on PATH")?;
        let android_jar = sdk
            .as_deref()
            .and_then(|sdk| {
                highest(&sdk.join("platforms"), |name| {
                    name.strip_prefix("android-")
                        .filter(|n| n.parse::<u64>().is_ok())
                        .map(str::to_owned)
                })
            })
            .map(|dir| dir.join("android.jar"))
            .filter(|p| p.is_file())
            .context("android.jar not found in $ANDROID_HOME/platforms/android-<n>")?;
        Ok(Self {
            kotlinc,
            d8,
            android_jar,
        })
    }
}

/// A compiled patch ready for `core:dex-reload`.
#[derive(Debug)]
pub struct DexPatch {
    pub dex: Vec<u8>,
    pub class_names: Vec<String>,
}

/// Compiles `files` and dexes the result. Any `Err` means "do a full build instead".
pub async fn compile(
    tools: &Toolchain,
    project: &Path,
    files: &[PathBuf],
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<DexPatch> {
    let work = tempfile::Builder::new()
        .prefix("jetstart-hot-")
        .tempdir()
        .context("could not create a temporary folder")?;
    let classes = work.path().join("classes");
    let dex_dir = work.path().join("dex");
    std::fs::create_dir_all(&classes)?;
    std::fs::create_dir_all(&dex_dir)?;

    let mut classpath = vec![tools.android_jar.clone()];
    classpath.extend(app_classpath(&project.join("app/build")));
    let mut kotlinc = Command::new(&tools.kotlinc);
    kotlinc
        .current_dir(project)
        .args(files)
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(std::env::join_paths(&classpath).context("a classpath entry contains ':'")?);
    check("kotlinc", process::run(kotlinc, deadline, cancel, |_| {}).await?)?;

    let class_files = class_files(&classes);
    if class_files.is_empty() {
        bail!("kotlinc produced no class files");
    }
    let mut d8 = Command::new(&tools.d8);
    d8.current_dir(project)
        .arg("--lib")
        .arg(&tools.android_jar)
        .arg("--output")
        .arg(&dex_dir)
        .args(&class_files);
    check("d8", process::run(d8, deadline, cancel, |_| {}).await?)?;

    let dex_path = dex_dir.join("classes.dex");
    let dex = std::fs::read(&dex_path).context("d8 produced no classes.dex")?;
    let class_names = class_files
        .iter()
        .filter_map(|f| class_name(&classes, f))
        .collect();
    Ok(DexPatch { dex, class_names })
}

/// Turns a tool run into `Err` with the useful part of its output unless it succeeded.
fn check(tool: &str, done: Finished) -> Result<()> {
    if done.success() {
        return Ok(());
    }
    match &done.exit {
        Exit::TimedOut => bail!("{tool} ran past --build-timeout"),
        Exit::Cancelled => bail!("server stopping"),
        Exit::Exited(status) => {
            let errors: Vec<&str> = done
                .tail
                .lines()
                .filter(|l| l.starts_with("e: ") || l.contains("error"))
                .take(5)
                .collect();
            bail!("{tool} failed ({status}): {}", errors.join(" | "))
        }
    }
}

/// The app's compiled classes and dependency jars under `app/build/` (when it was built once),
/// so changed files can refer to the rest of the app.
fn app_classpath(app_build: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for variant_dirs in [
        app_build.join("tmp/kotlin-classes"),
        app_build.join("intermediates/javac"),
    ] {
        let Ok(entries) = std::fs::read_dir(&variant_dirs) else {
            continue;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let javac_classes = dir.join("classes");
            out.push(if javac_classes.is_dir() {
                javac_classes
            } else {
                dir
            });
        }
    }
    let mut stack = vec![app_build.join("intermediates")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jar") {
                out.push(path);
            }
        }
    }
    out
}

/// Every `.class` file under `dir`, sorted.
fn class_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "class") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `<root>/com/x/Foo$Bar.class` → `com.x.Foo$Bar`.
pub fn class_name(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let text = rel.to_str()?.strip_suffix(".class")?;
    if text.starts_with("META-INF") {
        return None;
    }
    Some(text.replace(std::path::MAIN_SEPARATOR, "."))
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
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
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
    fn class_names_come_from_class_files() {
        let root = Path::new("/tmp/c");
        assert_eq!(
            class_name(root, Path::new("/tmp/c/com/x/Foo$Bar.class")).as_deref(),
            Some("com.x.Foo$Bar")
        );
        assert_eq!(
            class_name(root, Path::new("/tmp/c/Top.class")).as_deref(),
            Some("Top")
        );
        assert_eq!(class_name(root, Path::new("/tmp/c/META-INF/x.class")), None);
        assert_eq!(class_name(root, Path::new("/tmp/c/com/x/Foo.kt")), None);
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
