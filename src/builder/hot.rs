//! The hot path: changed `.kt` files → the Kotlin compiler → d8 → one `classes.dex` for devices.
//!
//! With the app's recorded compile inputs ([`super::inputs`]) a file compiles exactly as Gradle
//! compiled the app: the same compiler version (run from its recorded classpath on a JVM), the
//! compiler plugins (Compose) with their options, the classpath, `jvmTarget`, module name and
//! free arguments; d8 gets the app's `minSdk`, boot classpath and classpath. Without them (no full
//! build recorded yet, or a Gradle file changed since) it falls back to `kotlinc`, the SDK's
//! `android.jar` and whatever the last build left under `app/build/`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inputs::{HotInputs, Unusable};
use super::process::{self, Exit, Finished};
use super::tools::Found;

/// The Kotlin compiler's command-line entry point, as the `kotlinc` script and Gradle run it.
pub const K2JVM_COMPILER: &str = "org.jetbrains.kotlin.cli.jvm.K2JVMCompiler";

/// How one batch is compiled and dexed: the command lines without the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The compiler's program and leading arguments: `kotlinc`, or `java -cp … K2JVMCompiler`.
    pub compiler: Vec<OsString>,
    /// The jars of that compiler, for a compile worker to load (empty when unknown).
    pub compiler_classpath: Vec<PathBuf>,
    /// Arguments before the sources and `-d`.
    pub compile_args: Vec<OsString>,
    pub d8: PathBuf,
    /// Arguments before `--output` and the class files.
    pub d8_args: Vec<OsString>,
    /// Why the app's recorded inputs are not (fully) used; `None` when they are.
    pub degraded: Option<String>,
}

/// The plan for this project, or why there is no hot path (every missing tool named).
pub fn plan(found: &Found, inputs: Result<&HotInputs, &Unusable>, project: &Path) -> Result<Plan, String> {
    match inputs {
        Ok(inputs) => plan_recorded(found, inputs),
        Err(why) => plan_discovered(found, project, why),
    }
}

fn plan_recorded(found: &Found, inputs: &HotInputs) -> Result<Plan, String> {
    let mut degraded = None;
    let mut compiler_classpath = inputs.compiler_classpath.clone();
    let compiler = match (&found.java, &found.kotlinc) {
        (Some(java), _) if !inputs.compiler_classpath.is_empty() => vec![
            java.clone().into_os_string(),
            "-cp".into(),
            join_paths(&inputs.compiler_classpath)?,
            K2JVM_COMPILER.into(),
        ],
        (_, Some(kotlinc)) => {
            compiler_classpath.clone_from(&found.kotlin_distribution);
            degraded = Some(if inputs.compiler_classpath.is_empty() {
                "the record names no compiler, so kotlinc compiles".to_owned()
            } else {
                "java not found ($JAVA_HOME/bin or PATH), so kotlinc compiles instead of the app's \
                 Kotlin compiler"
                    .to_owned()
            });
            vec![kotlinc.clone().into_os_string()]
        }
        (_, None) => {
            return Err(if inputs.compiler_classpath.is_empty() {
                "kotlinc not found ($KOTLIN_HOME/bin or PATH)".to_owned()
            } else {
                "java not found ($JAVA_HOME/bin or PATH) to run the app's Kotlin compiler".to_owned()
            })
        }
    };
    let boot: Vec<PathBuf> = if inputs.boot_classpath.is_empty() {
        found.android_jar.iter().cloned().collect()
    } else {
        inputs.boot_classpath.clone()
    };
    let d8 = match (&found.d8, boot.is_empty()) {
        (Some(d8), false) => d8.clone(),
        (d8, _) => {
            let mut missing = Vec::new();
            if d8.is_none() {
                missing.push("d8 ($ANDROID_HOME/build-tools/<version> or PATH)");
            }
            if boot.is_empty() {
                missing.push("android.jar ($ANDROID_HOME/platforms/android-<n>)");
            }
            return Err(format!("{} not found", missing.join(" and ")));
        }
    };

    // The app's own classes first (a changed file refers to the rest of the app), then its
    // libraries, then the boot classpath where the libraries don't hold it already.
    let mut classpath: Vec<PathBuf> = inputs.outputs.clone();
    classpath.extend(inputs.classpath.iter().cloned());
    for jar in &boot {
        if !classpath.contains(jar) {
            classpath.push(jar.clone());
        }
    }
    // Gradle always passes these: the stdlib comes from the libraries, of the app's version.
    let mut args: Vec<OsString> = vec!["-no-stdlib".into(), "-no-reflect".into()];
    if inputs.no_jdk {
        args.push("-no-jdk".into());
    }
    if let Some(target) = &inputs.jvm_target {
        args.extend(["-jvm-target".into(), target.into()]);
    }
    if let Some(module) = &inputs.module_name {
        args.extend(["-module-name".into(), module.into()]);
    }
    args.extend(["-classpath".into(), join_paths(&classpath)?]);
    // `internal` declarations of the rest of the module stay visible.
    let friends: Vec<&PathBuf> = inputs.outputs.iter().chain(&inputs.friend_paths).collect();
    if !friends.is_empty() {
        args.push(comma_list("-Xfriend-paths=", &friends)?);
    }
    for jar in &inputs.plugin_classpath {
        args.push(comma_list("-Xplugin=", &[jar])?);
    }
    for option in &inputs.plugin_options {
        args.extend(["-P".into(), option.into()]);
    }
    args.extend(inputs.free_compiler_args.iter().map(OsString::from));

    let mut d8_args: Vec<OsString> = Vec::new();
    if let Some(min_sdk) = inputs.min_sdk {
        d8_args.extend(["--min-api".into(), min_sdk.to_string().into()]);
    }
    for jar in &boot {
        d8_args.extend(["--lib".into(), jar.clone().into_os_string()]);
    }
    // For desugaring (default and static interface methods below API 24), as AGP does.
    for entry in inputs.outputs.iter().chain(&inputs.classpath) {
        if !boot.contains(entry) && entry.exists() {
            d8_args.extend(["--classpath".into(), entry.clone().into_os_string()]);
        }
    }
    Ok(Plan {
        compiler,
        compiler_classpath,
        compile_args: args,
        d8,
        d8_args,
        degraded,
    })
}

fn plan_discovered(found: &Found, project: &Path, why: &Unusable) -> Result<Plan, String> {
    let (Some(kotlinc), Some(d8), Some(android_jar)) = (&found.kotlinc, &found.d8, &found.android_jar) else {
        let missing: Vec<&str> = [
            (found.kotlinc.is_none(), "kotlinc ($KOTLIN_HOME/bin or PATH)"),
            (
                found.d8.is_none(),
                "d8 ($ANDROID_HOME/build-tools/<version> or PATH)",
            ),
            (
                found.android_jar.is_none(),
                "android.jar ($ANDROID_HOME/platforms/android-<n>)",
            ),
        ]
        .into_iter()
        .filter_map(|(missing, what)| missing.then_some(what))
        .collect();
        return Err(format!("{} not found", missing.join(", ")));
    };
    let mut classpath = vec![android_jar.clone()];
    classpath.extend(app_classpath(&project.join("app/build")));
    Ok(Plan {
        compiler: vec![kotlinc.clone().into_os_string()],
        compiler_classpath: found.kotlin_distribution.clone(),
        compile_args: vec!["-cp".into(), join_paths(&classpath)?],
        d8: d8.clone(),
        d8_args: vec!["--lib".into(), android_jar.clone().into_os_string()],
        degraded: Some(why.to_string()),
    })
}

fn join_paths(paths: &[PathBuf]) -> Result<OsString, String> {
    std::env::join_paths(paths).map_err(|_| "a classpath entry contains ':'".to_owned())
}

/// `<flag><a>,<b>…`; the compiler splits these values on commas.
fn comma_list(flag: &str, paths: &[&PathBuf]) -> Result<OsString, String> {
    let mut out = OsString::from(flag);
    for (i, path) in paths.iter().enumerate() {
        if path.as_os_str().to_string_lossy().contains(',') {
            return Err(format!(
                "{} contains ',', which {flag} cannot carry",
                path.display()
            ));
        }
        if i > 0 {
            out.push(",");
        }
        out.push(path.as_os_str());
    }
    Ok(out)
}

/// A compiled patch ready for `core:dex-reload`.
#[derive(Debug)]
pub struct DexPatch {
    pub dex: Vec<u8>,
    pub class_names: Vec<String>,
    /// Time in the Kotlin compiler.
    pub compile: std::time::Duration,
    /// Time in d8.
    pub dex_time: std::time::Duration,
}

/// The private folders of one batch: compiled classes, then `classes.dex`. Removed on drop.
pub(super) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub(super) fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("jetstart-hot-")
            .tempdir()
            .context("could not create a temporary folder")?;
        std::fs::create_dir_all(dir.path().join("classes"))?;
        std::fs::create_dir_all(dir.path().join("dex"))?;
        Ok(Self { dir })
    }

    pub(super) fn classes(&self) -> PathBuf {
        self.dir.path().join("classes")
    }

    pub(super) fn dex(&self) -> PathBuf {
        self.dir.path().join("dex")
    }

    pub(super) fn read_dex(&self) -> Result<Vec<u8>> {
        std::fs::read(self.dex().join("classes.dex")).context("d8 produced no classes.dex")
    }
}

/// Compiles `files` and dexes the result in fresh processes. Any `Err` means "do a full build
/// instead"; its text is one line for the user (the compiler's first error, say).
pub async fn compile_cold(
    plan: &Plan,
    project: &Path,
    files: &[PathBuf],
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<DexPatch> {
    let scratch = Scratch::new()?;
    let (classes, dex_dir) = (scratch.classes(), scratch.dex());

    let started = Instant::now();
    let (program, lead) = plan.compiler.split_first().context("no compiler")?;
    let mut kotlinc = Command::new(program);
    kotlinc
        .current_dir(project)
        .args(lead)
        .args(&plan.compile_args)
        .args(files)
        .arg("-d")
        .arg(&classes);
    check(
        "the Kotlin compiler",
        project,
        process::run(kotlinc, deadline, cancel, |_| {}).await?,
    )?;
    let compiled = Instant::now();

    let class_files = class_files(&classes);
    if class_files.is_empty() {
        bail!("the Kotlin compiler produced no class files");
    }
    let mut d8 = Command::new(&plan.d8);
    d8.current_dir(project)
        .args(&plan.d8_args)
        .arg("--output")
        .arg(&dex_dir)
        .args(&class_files);
    check("d8", project, process::run(d8, deadline, cancel, |_| {}).await?)?;

    let dex = scratch.read_dex()?;
    let class_names = class_files
        .iter()
        .filter_map(|f| class_name(&classes, f))
        .collect();
    Ok(DexPatch {
        dex,
        class_names,
        compile: compiled - started,
        dex_time: compiled.elapsed(),
    })
}

/// Turns a tool run into `Err` with its first error line unless it succeeded.
fn check(tool: &str, project: &Path, done: Finished) -> Result<()> {
    if done.success() {
        return Ok(());
    }
    match &done.exit {
        Exit::TimedOut => bail!("{tool} ran past --build-timeout"),
        Exit::Cancelled => bail!("server stopping"),
        Exit::Exited(status) => match first_error(&done.tail.text(), project) {
            Some(error) => bail!("{error}"),
            None => bail!("{tool} failed ({status})"),
        },
    }
}

/// Longest error line shown: a whole compiler message, not a stack trace.
const MAX_ERROR_CHARS: usize = 240;

/// The first error line of compiler or d8 output (`e: …`, `…: error: …`, `Error: …`), with the
/// project's path taken off file names.
pub fn first_error(output: &str, project: &Path) -> Option<String> {
    let line = output.lines().map(str::trim).find(|l| {
        l.starts_with("e: ") || l.contains(": error: ") || l.starts_with("error: ") || l.starts_with("Error")
    })?;
    let mut prefix = project.display().to_string();
    prefix.push('/');
    let line = line.replace(&format!("file://{prefix}"), "").replace(&prefix, "");
    Some(if line.chars().count() > MAX_ERROR_CHARS {
        let cut: String = line.chars().take(MAX_ERROR_CHARS).collect();
        format!("{cut}…")
    } else {
        line
    })
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
    out.extend(files_with_extension(&app_build.join("intermediates"), "jar"));
    out
}

/// Every `.class` file under `dir`, sorted.
fn class_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = files_with_extension(dir, "class");
    found.sort();
    found
}

/// Every file under `dir` whose extension is `ext`.
fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == ext))
        .map(walkdir::DirEntry::into_path)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    fn found() -> Found {
        Found {
            kotlinc: Some("/k/bin/kotlinc".into()),
            d8: Some("/sdk/build-tools/34.0.0/d8".into()),
            android_jar: Some("/sdk/platforms/android-34/android.jar".into()),
            java: Some("/jdk/bin/java".into()),
            d8_jar: Some("/sdk/build-tools/34.0.0/lib/d8.jar".into()),
            kotlin_distribution: vec!["/k/lib/kotlin-compiler.jar".into()],
        }
    }

    fn recorded() -> HotInputs {
        HotInputs {
            format: 1,
            compiler_classpath: vec!["/c/compiler.jar".into(), "/c/stdlib.jar".into()],
            plugin_classpath: vec!["/p/compose.jar".into()],
            plugin_options: vec![
                "plugin:androidx.compose.compiler.plugins.kotlin:sourceInformation=true".into(),
            ],
            free_compiler_args: vec!["-Xjvm-default=all".into()],
            classpath: vec!["/l/ui.jar".into(), "/sdk/platforms/android-34/android.jar".into()],
            outputs: vec!["/o/kotlin-classes/debug".into()],
            jvm_target: Some("17".into()),
            module_name: Some("app_debug".into()),
            no_jdk: true,
            min_sdk: Some(24),
            boot_classpath: vec!["/sdk/platforms/android-34/android.jar".into()],
            ..HotInputs::default()
        }
    }

    #[test]
    fn a_recorded_compile_is_reproduced() {
        let plan = plan(&found(), Ok(&recorded()), Path::new("/project")).expect("plan");
        assert_eq!(
            strings(&plan.compiler),
            [
                "/jdk/bin/java",
                "-cp",
                "/c/compiler.jar:/c/stdlib.jar",
                K2JVM_COMPILER
            ]
        );
        assert_eq!(
            strings(&plan.compile_args),
            [
                "-no-stdlib",
                "-no-reflect",
                "-no-jdk",
                "-jvm-target",
                "17",
                "-module-name",
                "app_debug",
                "-classpath",
                "/o/kotlin-classes/debug:/l/ui.jar:/sdk/platforms/android-34/android.jar",
                "-Xfriend-paths=/o/kotlin-classes/debug",
                "-Xplugin=/p/compose.jar",
                "-P",
                "plugin:androidx.compose.compiler.plugins.kotlin:sourceInformation=true",
                "-Xjvm-default=all",
            ]
        );
        // Entries that don't exist are not handed to d8 (these paths don't).
        assert_eq!(
            strings(&plan.d8_args),
            [
                "--min-api",
                "24",
                "--lib",
                "/sdk/platforms/android-34/android.jar"
            ]
        );
        assert_eq!(plan.degraded, None);
        assert_eq!(
            plan.compiler_classpath,
            recorded().compiler_classpath,
            "a worker loads the same"
        );
    }

    #[test]
    fn without_a_jvm_the_recorded_settings_still_go_to_kotlinc() {
        let tools = Found {
            java: None,
            ..found()
        };
        let plan = plan(&tools, Ok(&recorded()), Path::new("/p")).expect("plan");
        assert_eq!(strings(&plan.compiler), ["/k/bin/kotlinc"]);
        assert_eq!(
            plan.compiler_classpath,
            [PathBuf::from("/k/lib/kotlin-compiler.jar")]
        );
        assert!(strings(&plan.compile_args).contains(&"-Xplugin=/p/compose.jar".to_owned()));
        assert!(plan.degraded.is_some_and(|d| d.contains("java not found")));
        let nothing = Found {
            java: None,
            kotlinc: None,
            ..found()
        };
        let why = super::plan(&nothing, Ok(&recorded()), Path::new("/p")).unwrap_err();
        assert!(why.contains("java not found"), "{why}");
    }

    #[test]
    fn without_a_record_kotlinc_and_the_sdk_are_used_and_every_missing_tool_is_named() {
        let plan = plan(&found(), Err(&Unusable::Missing), Path::new("/nonexistent")).expect("plan");
        assert_eq!(strings(&plan.compiler), ["/k/bin/kotlinc"]);
        assert_eq!(
            strings(&plan.compile_args),
            ["-cp", "/sdk/platforms/android-34/android.jar"]
        );
        assert_eq!(
            strings(&plan.d8_args),
            ["--lib", "/sdk/platforms/android-34/android.jar"]
        );
        assert!(plan
            .degraded
            .is_some_and(|d| d.contains("no .jetstart/hot-inputs.json")));

        let why = super::plan(&Found::default(), Err(&Unusable::Missing), Path::new("/p")).unwrap_err();
        assert!(
            why.contains("kotlinc") && why.contains("d8") && why.contains("android.jar"),
            "{why}"
        );
    }

    #[test]
    fn the_first_error_line_is_kept_without_the_project_path() {
        let output = "warning: something\n\
                      /work/app/src/main/java/A.kt:3:5: error: unresolved reference: foo\n\
                      /work/app/src/main/java/A.kt:4:5: error: unresolved reference: bar\n";
        assert_eq!(
            first_error(output, Path::new("/work")).as_deref(),
            Some("app/src/main/java/A.kt:3:5: error: unresolved reference: foo")
        );
        let gradle_style = "e: file:///work/app/B.kt:1:1 Expecting a top level declaration\n";
        assert_eq!(
            first_error(gradle_style, Path::new("/work")).as_deref(),
            Some("e: app/B.kt:1:1 Expecting a top level declaration")
        );
        assert_eq!(first_error("all fine\n", Path::new("/work")), None);
    }

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
}
