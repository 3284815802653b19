//! Compiling a saved file as Gradle compiled the app: the full builds `dev` runs record the
//! compile's inputs (`--init-script` → `.jetstart/hot-inputs.json`), and the hot path builds its
//! command lines from them; without a fresh record it falls back to discovery and says why once.
//! Stand-in gradlew / kotlinc / d8, and the real Kotlin compiler on a real JVM.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::build::{env_refs, jars_in, log_lines, real_kotlin_lib, BuildProject, Toolchain};
use common::{recv_type, Dev};
use serde_json::{json, Value};

const STRINGS: &str = "app/src/main/res/values/strings.xml";
const GREETING_KT: &str = "app/src/main/java/com/example/demo/Greeting.kt";
const GREETING_SRC: &str = "package com.example.demo\n\nclass Greeting\n";
const RECORD: &str = ".jetstart/hot-inputs.json";

async fn start(project: &BuildProject, flags: &[&str], env: &[(&'static str, String)]) -> Dev {
    let env = project.env(env);
    Dev::start_with_env(project.path(), flags, &env_refs(&env)).await
}

/// The arguments of the last logged call of `tool` (`kotlinc` or `d8`), split on spaces.
fn last_call(project: &BuildProject, tool: &str) -> Vec<String> {
    let calls = log_lines(&project.tool_log);
    let call = calls
        .iter()
        .rev()
        .find(|c| c.starts_with(&format!("{tool} ")))
        .unwrap_or_else(|| panic!("no {tool} call in {calls:?}"));
    let call = call.split(" (path ").next().unwrap_or(call);
    call.split(' ').skip(1).map(str::to_owned).collect()
}

/// The value after `flag` in `args`.
fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing from {args:?}"));
    &args[at + 1]
}

fn strings_xml(text: &str) -> String {
    format!("<resources><string name=\"app_name\">{text}</string></resources>\n")
}

#[tokio::test]
async fn a_full_build_records_the_inputs_and_the_hot_path_compiles_with_them() {
    let project = BuildProject::with_wrapper();
    let tools = Toolchain::new();
    let mut dev = start(&project, &["--no-initial-build"], &tools.env()).await;
    let (mut ws, _) = dev.connect().await;

    project.save(STRINGS, &strings_xml("Full"));
    dev.event("build-complete").await;
    let init = project.path().join(".jetstart/hot-inputs.init.gradle");
    let gradle = log_lines(&project.log);
    assert!(
        gradle[0].contains(&format!("--init-script {}", init.display())),
        "{gradle:?}"
    );
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(project.path().join(RECORD)).expect("record"))
            .expect("JSON");
    assert_eq!(record["format"], 1);
    assert_eq!(record["moduleName"], "app_debug");

    project.save(GREETING_KT, GREETING_SRC);
    let reload = recv_type(&mut ws, "core:dex-reload").await;
    assert_eq!(reload["classNames"], json!(["com.example.demo.Greeting"]));

    let cache = project.path().join("app/build/fake-gradle-cache");
    let classes = project.path().join("app/build/tmp/kotlin-classes/debug");
    let android_jar = tools.android_jar();
    let kotlinc = last_call(&project, "kotlinc");
    assert_eq!(after(&kotlinc, "-jvm-target"), "17");
    assert_eq!(after(&kotlinc, "-module-name"), "app_debug");
    assert_eq!(
        after(&kotlinc, "-classpath"),
        format!(
            "{}:{}:{}",
            classes.display(),
            cache.join("ui.jar").display(),
            android_jar.display()
        )
    );
    assert!(kotlinc.contains(&format!(
        "-Xplugin={}",
        cache.join("compose-compiler-plugin.jar").display()
    )));
    assert_eq!(
        after(&kotlinc, "-P"),
        "plugin:androidx.compose.compiler.plugins.kotlin:sourceInformation=true"
    );
    assert!(kotlinc.contains(&format!("-Xfriend-paths={}", classes.display())));
    for flag in ["-no-stdlib", "-no-reflect", "-no-jdk", "-Xjvm-default=all"] {
        assert!(
            kotlinc.contains(&flag.to_owned()),
            "{flag} missing from {kotlinc:?}"
        );
    }
    let d8 = last_call(&project, "d8");
    assert_eq!(after(&d8, "--min-api"), "24");
    assert_eq!(after(&d8, "--lib"), android_jar.display().to_string());
    let classpath: Vec<&str> = d8
        .windows(2)
        .filter(|w| w[0] == "--classpath")
        .map(|w| w[1].as_str())
        .collect();
    assert_eq!(
        classpath,
        [
            classes.display().to_string(),
            cache.join("ui.jar").display().to_string()
        ]
    );
    // The stand-in record names no compiler, so the JVM isn't used: said once.
    dev.wait_stderr("hot reload compiles without the app's Gradle settings: the record names no compiler")
        .await;
    assert_eq!(project.gradle_runs(), 1, "the save was hot-reloaded");

    // A Gradle file newer than the record: back to discovery, said once, with the reason.
    let record = std::fs::File::options()
        .write(true)
        .open(project.path().join(RECORD))
        .expect("open record");
    record
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .expect("age the record");
    project.save(
        GREETING_KT,
        "package com.example.demo\n\nclass Greeting { class Again }\n",
    );
    recv_type(&mut ws, "core:dex-reload").await;
    dev.wait_stderr("changed after .jetstart/hot-inputs.json was written")
        .await;
    let kotlinc = last_call(&project, "kotlinc");
    assert_eq!(kotlinc[0], "-cp", "discovery again: {kotlinc:?}");
    assert_eq!(
        last_call(&project, "d8")[..2],
        ["--lib", &android_jar.display().to_string()]
    );
}

#[tokio::test]
async fn without_a_record_the_hot_path_says_why_once() {
    let project = BuildProject::with_wrapper();
    let tools = Toolchain::new();
    let mut dev = start(&project, &["--no-initial-build"], &tools.env()).await;
    let (mut ws, _) = dev.connect().await;
    for round in 0..2 {
        project.save(
            GREETING_KT,
            &format!("package com.example.demo\n\nclass Greeting{round}\n"),
        );
        recv_type(&mut ws, "core:dex-reload").await;
        dev.event("dex-reload").await;
    }
    let stderr = dev.stderr();
    assert_eq!(
        stderr
            .matches(
                "hot reload compiles without the app's Gradle settings: no .jetstart/hot-inputs.json yet"
            )
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(project.gradle_runs(), 0);
}

#[tokio::test]
async fn a_custom_build_command_gets_no_init_script() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(
        &project,
        &["--no-initial-build", "--build-cmd", "./gradlew assembleDebug"],
        &[],
    )
    .await;
    project.save(STRINGS, &strings_xml("Custom"));
    dev.event("build-complete").await;
    let gradle = log_lines(&project.log);
    assert!(!gradle[0].contains("--init-script"), "{gradle:?}");
    assert!(!project.path().join(RECORD).exists());
    // The script gradle/jetstart.gradle applies is there for such builds.
    assert!(project.path().join(".jetstart/hot-inputs.gradle").is_file());
}

/// Writes a record as the Gradle script would, naming a real compiler and a real plugin.
fn write_record(project: &Path, record: &Value) {
    std::fs::create_dir_all(project.join(".jetstart")).expect("mkdir");
    std::fs::write(project.join(RECORD), record.to_string()).expect("write record");
}

/// The real Kotlin compiler, run from the recorded classpath on the real JVM, with the recorded
/// compiler plugin (allopen, standing in for Compose) and its options: the class the plugin
/// should open comes out non-final, and the compile's module name is the recorded one.
#[tokio::test]
async fn the_recorded_compiler_and_plugin_really_compile_the_saved_file() {
    let Some(lib) = real_kotlin_lib() else { return };
    let project = BuildProject::with_wrapper();
    let tools = Toolchain::new();
    let kept = project.path().join("app/build/kept-classes");
    let source = "package com.example.demo\n\nannotation class Open\n\n\
                  @Open class Opened { fun hello() = \"hi\" }\n\nclass Closed\n";
    let record = json!({
        "format": 1,
        "variant": "debug",
        "kotlinVersion": "1.3.31",
        "compilerClasspath": jars_in(&lib),
        "pluginClasspath": [lib.join("kotlin-allopen-compiler-plugin.jar")],
        "pluginOptions": ["plugin:org.jetbrains.kotlin.allopen:annotation=com.example.demo.Open"],
        "freeCompilerArgs": [],
        "classpath": [lib.join("kotlin-stdlib.jar")],
        "friendPaths": [],
        "outputs": [project.path().join("app/build/tmp/kotlin-classes/debug")],
        "jvmTarget": "1.8",
        "moduleName": "app_debug",
        "noJdk": false,
        "minSdk": 24,
        "bootClasspath": [tools.android_jar()],
    });
    write_record(project.path(), &record);
    // No kotlinc on PATH: only the recorded compiler can compile.
    let env: Vec<(&'static str, String)> = tools
        .env()
        .into_iter()
        .filter(|(k, _)| *k != "PATH")
        .chain([
            ("FAKE_D8_KEEP", kept.display().to_string()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("KOTLIN_HOME", "/nonexistent".to_owned()),
        ])
        .collect();
    let dev = start(&project, &["--no-initial-build"], &env).await;
    let (mut ws, _) = dev.connect().await;
    project.save("app/src/main/java/com/example/demo/Opened.kt", source);
    let reload = within_compile(recv_type(&mut ws, "core:dex-reload")).await;
    let mut names: Vec<String> = serde_json::from_value(reload["classNames"].clone()).expect("names");
    names.sort();
    assert_eq!(
        names,
        [
            "com.example.demo.Closed",
            "com.example.demo.Open",
            "com.example.demo.Opened"
        ]
    );
    dev.wait_stderr("hot reload compiles as Gradle did").await;
    assert!(log_lines(&project.tool_log)
        .iter()
        .all(|c| !c.starts_with("kotlinc ")));

    let javap = |class: &str| -> String {
        let out = std::process::Command::new(javap_path())
            .arg(kept.join(format!("{class}.class")))
            .output()
            .expect("run javap");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        javap("Opened").contains("public class com.example.demo.Opened"),
        "{}",
        javap("Opened")
    );
    assert!(javap("Closed").contains("public final class com.example.demo.Closed"));
    let d8 = last_call(&project, "d8");
    assert_eq!(after(&d8, "--min-api"), "24");
}

/// A real compile on a cold JVM takes seconds on a loaded machine: a longer bound than `WAIT`.
async fn within_compile<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("the real compiler finished within 60 s")
}

/// `javap` next to the `java` that runs the compiler.
fn javap_path() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/javap"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("javap"))
}
