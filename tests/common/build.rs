//! Helpers for build tests: projects with the stand-in `gradlew`, a stand-in Android
//! toolchain (kotlinc, d8, android.jar), build logs, process checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{fixture, project, recv_json, Ws, WAIT};

/// A test project holding a copy of the stand-in `gradlew` (mode 755 kept by `fs::copy`).
pub struct BuildProject {
    pub dir: tempfile::TempDir,
    /// Where the stand-in tools log their invocations (`FAKE_GRADLE_LOG`, `FAKE_TOOL_LOG`).
    pub log: PathBuf,
    pub tool_log: PathBuf,
    _logs: tempfile::TempDir,
}

impl BuildProject {
    /// A project with `gradlew` in its root.
    pub fn with_wrapper() -> Self {
        let project = Self::without_wrapper();
        std::fs::copy(fixture("gradlew"), project.path().join("gradlew")).expect("copy gradlew");
        project
    }

    /// A project with no build command of its own (tests pass `--build-cmd`).
    pub fn without_wrapper() -> Self {
        let dir = project();
        // Logs live outside the project so writing them never looks like a source change.
        let logs = tempfile::Builder::new()
            .prefix("jetstart-logs-")
            .tempdir()
            .expect("tempdir");
        Self {
            dir,
            log: logs.path().join("gradle.log"),
            tool_log: logs.path().join("tools.log"),
            _logs: logs,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to the project-relative `rel`, creating folders.
    pub fn save(&self, rel: &str, contents: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("save");
    }

    /// Lines the stand-in gradlew logged: one per build.
    pub fn gradle_runs(&self) -> usize {
        log_lines(&self.log).len()
    }

    /// The built APK's path.
    pub fn apk(&self) -> PathBuf {
        self.path().join("app/build/outputs/apk/debug/app-debug.apk")
    }

    /// The `FAKE_GRADLE_LOG` / `FAKE_TOOL_LOG` environment, plus `extra`.
    pub fn env(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("FAKE_GRADLE_LOG", self.log.display().to_string()),
            ("FAKE_TOOL_LOG", self.tool_log.display().to_string()),
        ];
        env.extend(extra.iter().cloned());
        env
    }
}

/// Lines of a log file (none if it doesn't exist).
pub fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A stand-in Android toolchain: `bin/kotlinc`, `sdk/build-tools/34.0.0/d8` (plus an older
/// 30.0.3 that must not be chosen), `sdk/platforms/android-34/android.jar`.
pub struct Toolchain {
    pub dir: tempfile::TempDir,
}

impl Toolchain {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("jetstart-sdk-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        for (from, to) in [
            ("kotlinc", "bin/kotlinc"),
            ("d8", "sdk/build-tools/34.0.0/d8"),
            ("d8", "sdk/build-tools/30.0.3/d8"),
        ] {
            let to = root.join(to);
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            std::fs::copy(fixture(from), to).expect("copy tool");
        }
        std::fs::create_dir_all(root.join("sdk/platforms/android-34")).expect("mkdir");
        std::fs::create_dir_all(root.join("sdk/platforms/android-9")).expect("mkdir");
        std::fs::write(root.join("sdk/platforms/android-34/android.jar"), b"PK\x05\x06").expect("jar");
        Self { dir }
    }

    /// `PATH` (with `kotlinc`) and `ANDROID_HOME` for `dev`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        vec![
            ("PATH", path),
            ("ANDROID_HOME", self.dir.path().join("sdk").display().to_string()),
        ]
    }

    pub fn android_jar(&self) -> PathBuf {
        self.dir.path().join("sdk/platforms/android-34/android.jar")
    }

    /// Adds the Java stand-in D8 as `sdk/build-tools/34.0.0/lib/d8.jar`, where the SDK keeps the
    /// real one (next to the `d8` script). `None` when it can't be built (no JDK, outside CI).
    pub fn with_d8_jar(self) -> Option<Self> {
        let jar = stand_in_d8_jar()?;
        let lib = self.dir.path().join("sdk/build-tools/34.0.0/lib");
        std::fs::create_dir_all(&lib).expect("mkdir");
        std::fs::copy(jar, lib.join("d8.jar")).expect("copy d8.jar");
        Some(self)
    }

    /// Like [`Toolchain::env`] but without the stand-in `kotlinc`: the real one on `PATH` (and
    /// its distribution's jars) compiles.
    pub fn env_with_real_kotlin(&self) -> Vec<(&'static str, String)> {
        vec![("ANDROID_HOME", self.dir.path().join("sdk").display().to_string())]
    }
}

/// Fails the test where real tools are required (CI sets `JETSTART_REQUIRE_REAL_TOOLS`), else
/// says the test is skipped.
pub fn missing_real_tool(what: &str) {
    assert!(
        std::env::var_os("JETSTART_REQUIRE_REAL_TOOLS").is_none(),
        "{what} is required here (JETSTART_REQUIRE_REAL_TOOLS is set)"
    );
    eprintln!("skipped: {what} not installed");
}

/// `tests/fixtures/d8-jar` compiled with `javac` and packed with `jar`, once per test binary.
pub fn stand_in_d8_jar() -> Option<&'static Path> {
    static JAR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let jar = JAR.get_or_init(|| {
        let jdk_tool = |name: &str| {
            std::env::var_os("JAVA_HOME")
                .map(|home| PathBuf::from(home).join("bin").join(name))
                .filter(|p| p.is_file())
                .unwrap_or_else(|| PathBuf::from(name))
        };
        // Kept for the whole test run: every test of this binary copies from it.
        let dir = tempfile::Builder::new()
            .prefix("jetstart-d8-jar-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let sources: Vec<PathBuf> = ["D8", "D8Command", "CompilationFailedException", "origin/Origin"]
            .iter()
            .map(|c| fixture(&format!("d8-jar/com/android/tools/r8/{c}.java")))
            .collect();
        let compiled = std::process::Command::new(jdk_tool("javac"))
            .arg("-d")
            .arg(dir.join("classes"))
            .args(&sources)
            .status();
        if !compiled.is_ok_and(|s| s.success()) {
            return None;
        }
        let jar = dir.join("d8.jar");
        let packed = std::process::Command::new(jdk_tool("jar"))
            .arg("cf")
            .arg(&jar)
            .arg("-C")
            .arg(dir.join("classes"))
            .arg(".")
            .status();
        packed.is_ok_and(|s| s.success()).then_some(jar)
    });
    if jar.is_none() {
        missing_real_tool("a JDK (javac and jar, to build the stand-in d8.jar)");
    }
    jar.as_deref()
}

/// Borrowed view of an env list for `Dev::start_with_env`.
pub fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Messages up to and including the first of type `ty`.
pub async fn recv_until(ws: &mut Ws, ty: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = recv_json(ws).await;
        let done = message["type"] == ty;
        seen.push(message);
        if done {
            return seen;
        }
    }
}

/// True if `pid` is a running (not zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 is the state: `Z` is a zombie, `X` dead.
        Ok(stat) => super::stat_field(&stat, 3).is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

/// Waits (bounded) until `pid` is gone.
pub async fn wait_dead(pid: i32) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Lowercase-hex SHA-256 of a file.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read file");
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The pid of the first build's script: the stand-in gradlew logs its own pid, and it leads
/// the build's process group.
pub fn build_leader(project: &BuildProject) -> i32 {
    log_lines(&project.log)[0]
        .rsplit("pid ")
        .next()
        .and_then(|p| p.trim_end_matches(')').parse().ok())
        .expect("the build script's pid")
}

/// The pid the stand-in `gradlew` in hang mode writes to `FAKE_GRADLE_PIDFILE` (its child), once
/// it is there.
pub async fn hanging_child(pidfile: &Path) -> i32 {
    super::within("the hanging child's pid", async {
        loop {
            if let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                return pid;
            }
            // The file appears once the script has started its child: nothing to await but it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The `lib/` folder of a real Kotlin compiler distribution (Debian's `kotlin` package, or the
/// one `$KOTLIN_HOME` names), holding `kotlin-compiler.jar` and the Kotlin stdlib. `None` when
/// there is none, unless `JETSTART_REQUIRE_REAL_TOOLS` is set (as CI does), where that fails
/// the test: there, the tests that use it must run.
pub fn real_kotlin_lib() -> Option<PathBuf> {
    let kotlinc = std::env::var_os("KOTLIN_HOME")
        .map(|home| PathBuf::from(home).join("bin/kotlinc"))
        .filter(|p| p.is_file())
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join("kotlinc"))
                .find(|p| p.is_file())
        });
    let lib = kotlinc
        .and_then(|k| std::fs::canonicalize(k).ok())
        .and_then(|k| Some(k.parent()?.parent()?.join("lib")))
        .filter(|lib| lib.join("kotlin-compiler.jar").is_file() && lib.join("kotlin-stdlib.jar").is_file());
    if lib.is_none() {
        missing_real_tool("a real Kotlin compiler (Debian's `kotlin` package, or KOTLIN_HOME)");
    }
    lib
}

/// Every jar of a Kotlin distribution's `lib/`: the compiler's classpath, as its script has it.
pub fn jars_in(lib: &Path) -> Vec<PathBuf> {
    let mut jars: Vec<PathBuf> = std::fs::read_dir(lib)
        .expect("read lib")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jar"))
        .collect();
    jars.sort();
    jars
}
