//! The Gradle scripts in `templates/`, run. No Gradle, Android Gradle plugin or Kotlin Gradle
//! plugin can be installed here, so `tests/fixtures/gradle-api/harness.groovy` stands in for
//! exactly the API they use and drives them as Gradle does (the script's delegate, closures for
//! Actions, lazy tasks, task actions after configuration), on Debian's Groovy. These tests install
//! the scripts as `dev` does and check what they did: above all `.jetstart/hot-inputs.json`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

/// One harness run: a JVM start and a few compiled scripts, with room for a loaded machine.
const HARNESS_TIMEOUT: Duration = Duration::from_secs(120);

fn harness_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gradle-api/harness.groovy")
}

/// `tool` on `PATH`.
fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// `groovy`, or `None` (the test then does nothing) unless `JETSTART_REQUIRE_REAL_TOOLS` is set,
/// as CI does: there the test must run.
fn groovy() -> Option<PathBuf> {
    let groovy = on_path("groovy");
    if groovy.is_none() {
        assert!(
            std::env::var_os("JETSTART_REQUIRE_REAL_TOOLS").is_none(),
            "no `groovy` on PATH: install Debian's `groovy` package"
        );
        eprintln!("skipped: groovy not installed (apt-get install groovy)");
    }
    groovy
}

/// A project with the scripts where `dev` and `init` put them, and a session file for
/// `jetstart.gradle`. Its path has a space and quotes, which the record must carry through.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("jetstart gradle \"api\" ")
            .tempdir()
            .expect("tempdir");
        jetstart::gradle::capture::install(dir.path()).expect("install the hot-inputs scripts");
        std::fs::create_dir_all(dir.path().join("gradle")).expect("mkdir gradle");
        std::fs::write(
            dir.path().join("gradle/jetstart.gradle"),
            jetstart::gradle::SCRIPT,
        )
        .expect("write");
        std::fs::write(
            dir.path().join(".jetstart/session.properties"),
            "serverUrl=ws\\://10.0.0.2\\:8766/?token\\=tok\nsessionId=s1\ntoken=tok\"\\\\\nhttpUrl=http\\://10.0.0.2\\:8765\n",
        )
        .expect("write session file");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn script(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    fn record_path(&self) -> PathBuf {
        self.path().join(".jetstart/hot-inputs.json")
    }

    fn record(&self) -> Value {
        let text = std::fs::read_to_string(self.record_path()).expect("no .jetstart/hot-inputs.json");
        serde_json::from_str(&text).expect("the record is not JSON")
    }

    /// An absolute path inside the project, as the script writes it.
    fn at(&self, rel: &str) -> String {
        self.path().join(rel).display().to_string()
    }
}

/// Runs a harness scenario with `JAVA_OPTS` set to `java_opts`; its stdout, or a failure with
/// its stderr. The JVM is killed if the run outlives the bound or the test fails (dropping the
/// child kills it: the `groovy` launcher `exec`s java, so that is the JVM itself).
async fn harness_with(
    groovy: &Path,
    scenario: &str,
    script: &Path,
    project: &Path,
    java_opts: &str,
) -> String {
    let child = tokio::process::Command::new(groovy)
        .arg(harness_file())
        .arg(scenario)
        .arg(script)
        .arg(project)
        .env("JAVA_OPTS", java_opts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start groovy");
    let out = tokio::time::timeout(HARNESS_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("harness {scenario} still running after {HARNESS_TIMEOUT:?}"))
        .expect("wait for groovy");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "harness {scenario} failed ({}):\n{}{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("ok {scenario}\n")), "{stdout}");
    stdout
}

async fn harness(groovy: &Path, scenario: &str, script: &Path, project: &Path) -> String {
    harness_with(groovy, scenario, script, project, "").await
}

/// Runs `scenario` with `.jetstart/hot-inputs.gradle` applied to the stand-in app module.
async fn capture(groovy: &Path, scenario: &str) -> (Project, String) {
    let project = Project::new();
    let stdout = harness(
        groovy,
        scenario,
        &project.script(".jetstart/hot-inputs.gradle"),
        project.path(),
    )
    .await;
    (project, stdout)
}

/// The record for what the harness's stand-ins feed in (see `App` in harness.groovy).
fn expected(project: &Project, variant: &str, min_sdk: u32) -> Value {
    let cache = |jar: &str| project.at(&format!("gradle-cache/{jar}"));
    json!({
        "format": 1,
        "variant": variant,
        "kotlinVersion": "2.0.21",
        // The compiler of the plugin's version, resolved with its dependencies.
        "compilerClasspath": [
            cache("kotlin-compiler-embeddable-2.0.21.jar"),
            cache("kotlin-stdlib-2.0.21.jar"),
            cache("trove4j-1.0.20200330.jar"),
        ],
        "pluginClasspath": [cache("kotlin-compose-compiler-plugin-embeddable-2.0.21.jar")],
        // Two CompilerPluginConfigs, the first with two options for one plugin.
        "pluginOptions": [
            "plugin:androidx.compose.compiler.plugins.kotlin:sourceInformation=true",
            "plugin:androidx.compose.compiler.plugins.kotlin:traceMarkersEnabled=false",
            "plugin:org.jetbrains.kotlin.parcelize:additionalAnnotation=com.example.Parcel",
        ],
        "freeCompilerArgs": ["-Xjvm-default=all", "-opt-in=kotlin.RequiresOptIn"],
        "classpath": [
            project.at(&format!(
                "app/build/intermediates/compile_and_runtime_not_namespaced_r_class_jar/{variant}/R.jar"
            )),
            cache("compose-ui-1.7.0.jar"),
            cache("kotlin-stdlib-2.0.21.jar"),
        ],
        "friendPaths": [project.at(&format!("lib/build/tmp/kotlin-classes/{variant}"))],
        "outputs": [
            project.at(&format!("app/build/tmp/kotlin-classes/{variant}")),
            project.at(&format!("app/build/intermediates/javac/{variant}/classes")),
        ],
        "jvmTarget": "17",
        "moduleName": format!("app_{variant}"),
        "noJdk": true,
        "minSdk": min_sdk,
        "bootClasspath": [
            project.at("sdk/platforms/android-34/android.jar"),
            project.at("sdk/platforms/android-34/optional/org.apache.http.legacy.jar"),
        ],
    })
}

#[tokio::test]
async fn the_record_holds_what_the_kotlin_compile_used() {
    let Some(groovy) = groovy() else { return };
    let (project, stdout) = capture(&groovy, "record").await;
    assert!(
        stdout.contains(&format!("record {}\n", project.record_path().display())),
        "{stdout}"
    );
    assert_eq!(project.record(), expected(&project, "debug", 24));
    // Written through a temporary file moved into place: none is left behind.
    assert!(!project.path().join(".jetstart/hot-inputs.json.partial").exists());
}

#[tokio::test]
async fn without_a_module_name_the_kotlin_module_file_names_it() {
    let Some(groovy) = groovy() else { return };
    // compilerOptions.moduleName has no value; the compile wrote META-INF/app_debug.kotlin_module.
    let (project, _) = capture(&groovy, "module-fallback").await;
    assert_eq!(project.record(), expected(&project, "debug", 24));
}

#[tokio::test]
async fn an_agp7_variant_gives_its_min_sdk_version_and_flavoured_task_names() {
    let Some(groovy) = groovy() else { return };
    // Variant `internalDebug` with only `minSdkVersion`: compileInternalDebugKotlin is finalized.
    let (project, _) = capture(&groovy, "agp7").await;
    assert_eq!(project.record(), expected(&project, "internalDebug", 21));
}

#[tokio::test]
async fn applied_twice_it_registers_once() {
    let Some(groovy) = groovy() else { return };
    // The harness fails if onVariants is called twice or the Kotlin compile gets two finalizers.
    let (project, _) = capture(&groovy, "twice").await;
    assert_eq!(project.record(), expected(&project, "debug", 24));
}

#[tokio::test]
async fn without_android_it_does_nothing() {
    let Some(groovy) = groovy() else { return };
    // No `androidComponents`: no task, no mark, no record.
    let (project, stdout) = capture(&groovy, "no-android").await;
    assert!(!stdout.contains("record "), "{stdout}");
    assert!(!project.record_path().exists());
}

#[tokio::test]
async fn without_kotlin_the_task_records_nothing() {
    let Some(groovy) = groovy() else { return };
    // The task exists (and has no action); run by name, it writes nothing.
    let (project, stdout) = capture(&groovy, "no-kotlin").await;
    assert!(!stdout.contains("record "), "{stdout}");
    assert!(!project.record_path().exists());
}

#[tokio::test]
async fn a_kotlin_plugin_without_compiler_options_is_said_once_and_skipped() {
    let Some(groovy) = groovy() else { return };
    // KGP before 1.8: one warning (checked by the harness), no action, no record.
    let (project, _) = capture(&groovy, "old-kgp").await;
    assert!(!project.record_path().exists());
}

#[tokio::test]
async fn the_init_script_applies_the_capture_to_android_applications_only() {
    let Some(groovy) = groovy() else { return };
    // The harness checks `app` (com.android.application) got it once, and neither the root
    // project nor `lib` (com.android.library) did.
    let project = Project::new();
    let init = project.script(".jetstart/hot-inputs.init.gradle");
    harness(&groovy, "init", &init, project.path()).await;
}

#[tokio::test]
async fn jetstart_gradle_applies_the_capture_once_and_fills_build_config() {
    let Some(groovy) = groovy() else { return };
    let project = Project::new();
    let stdout = harness(
        &groovy,
        "jetstart",
        &project.script("gradle/jetstart.gradle"),
        project.path(),
    )
    .await;
    let fields: Vec<&str> = stdout.lines().filter(|l| l.starts_with("field ")).collect();
    assert_eq!(
        fields,
        [
            r#"field debug JETSTART_SERVER_URL "ws://10.0.0.2:8766/?token=tok""#,
            r#"field debug JETSTART_SESSION_ID "s1""#,
            r#"field debug JETSTART_TOKEN "tok\"\\""#,
            r#"field debug JETSTART_HTTP_URL "http://10.0.0.2:8765""#,
            r#"field release JETSTART_SERVER_URL """#,
            r#"field release JETSTART_SESSION_ID """#,
            r#"field release JETSTART_TOKEN """#,
            r#"field release JETSTART_HTTP_URL """#,
        ]
    );
}

#[tokio::test]
async fn the_templates_compile() {
    let Some(groovy) = groovy() else { return };
    let groovyc = groovy.with_file_name("groovyc");
    assert!(groovyc.is_file(), "no groovyc next to {}", groovy.display());
    let out = tempfile::tempdir().expect("tempdir");
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let child = tokio::process::Command::new(&groovyc)
        .arg("-d")
        .arg(out.path())
        .args(["hot-inputs.gradle", "hot-inputs.init.gradle", "jetstart.gradle"].map(|t| templates.join(t)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start groovyc");
    let done = tokio::time::timeout(HARNESS_TIMEOUT, child.wait_with_output())
        .await
        .expect("groovyc still running")
        .expect("wait for groovyc");
    assert!(
        done.status.success(),
        "groovyc rejected a template:\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
}

#[tokio::test]
async fn the_task_action_keeps_to_the_configuration_cache_rules() {
    let Some(groovy) = groovy() else { return };
    // Gradle model types (Project, Task, Configuration) in what a task action captured can't be
    // stored: https://docs.gradle.org/current/userguide/configuration_cache_requirements.html
    capture(&groovy, "config-cache").await;
}

#[tokio::test]
async fn task_names_do_not_depend_on_the_locale() {
    let Some(groovy) = groovy() else { return };
    // In Turkish, "i".toUpperCase() is "İ": the capture must still finalize compileInternalDebugKotlin.
    let project = Project::new();
    let script = project.script(".jetstart/hot-inputs.gradle");
    harness_with(
        &groovy,
        "agp7",
        &script,
        project.path(),
        "-Duser.language=tr -Duser.country=TR",
    )
    .await;
    assert_eq!(project.record(), expected(&project, "internalDebug", 21));
}
