//! Gradle integration end to end: the BuildConfig session file, `init`, and the marker block.

mod common;

use std::path::Path;

use common::gradle::*;
use common::Dev;

const TEMPLATE: &str = include_str!("../templates/jetstart.gradle");

// ---------------------------------------------------------------- session file

#[tokio::test]
async fn session_file_has_the_credentials_escaped_private_and_gone_after_sigterm() {
    let project = common::project();
    let name = "my \"app\" \\ café 🚀 = #1";
    let mut dev = Dev::start(project.path(), &["--name", name]).await;
    let r = dev.ready.clone();
    assert_eq!(r.project_name, name);

    let file = project.path().join(".jetstart/session.properties");
    assert_eq!(mode_of(&file), 0o600, "the session file holds a token");
    let props = read_properties(&file);
    let expected: Vec<(&str, String)> = vec![
        ("httpUrl", format!("http://127.0.0.1:{}", r.http_port)),
        ("projectName", name.to_owned()),
        (
            "serverUrl",
            format!("ws://127.0.0.1:{}/?token={}", r.ws_port, r.token),
        ),
        ("sessionId", r.session_id.clone()),
        ("token", r.token.clone()),
    ];
    assert_eq!(
        props
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect::<Vec<_>>(),
        expected
    );
    let raw = std::fs::read_to_string(&file).expect("read");
    assert!(
        raw.contains(r#"projectName=my "app" \\ caf\u00E9 \uD83D\uDE80 \= \#1"#),
        "{raw}"
    );
    check_with_java_properties(&file, name);

    let gitignore = project.path().join(".jetstart/.gitignore");
    assert_eq!(
        std::fs::read_to_string(&gitignore).expect("gitignore").trim(),
        "*"
    );
    assert!(!dev.stderr().contains(&r.token), "the token must never be logged");

    dev.sigterm();
    let status = dev.wait_exit().await;
    assert!(
        status.success(),
        "dev did not stop cleanly: {status:?}\n{}",
        dev.stderr()
    );
    assert!(
        !file.exists(),
        "the session file must be removed on clean shutdown"
    );
    assert!(gitignore.exists());
}

/// If a JDK is installed, `java.util.Properties` itself must read the project name back.
fn check_with_java_properties(file: &Path, expected: &str) {
    let Ok(version) = std::process::Command::new("java").arg("-version").output() else {
        eprintln!("skipping the java.util.Properties cross-check: no `java` on PATH");
        return;
    };
    if !version.status.success() {
        eprintln!("skipping the java.util.Properties cross-check: `java -version` failed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("ReadProps.java");
    // Code points in hex, so the terminal's charset can't get in the way.
    std::fs::write(
        &source,
        "import java.io.*; import java.util.*;\n\
         public class ReadProps { public static void main(String[] a) throws Exception {\n\
           Properties p = new Properties(); try (InputStream in = new FileInputStream(a[0])) { p.load(in); }\n\
           StringBuilder b = new StringBuilder(); p.getProperty(\"projectName\").codePoints().forEach(c -> b.append(Integer.toHexString(c)).append(' '));\n\
           System.out.println(b.toString().trim()); } }\n",
    )
    .expect("write java");
    let out = std::process::Command::new("java")
        .arg(&source)
        .arg(file)
        .output()
        .expect("run java");
    assert!(
        out.status.success(),
        "java failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<String> = expected.chars().map(|c| format!("{:x}", u32::from(c))).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want.join(" "));
}

// ---------------------------------------------------------------- init

fn init_twice(fixture: &str, build_file: &str, apply_line: &str) {
    let project = copy_fixture(fixture);
    let build_path = project.path().join(build_file);
    chmod(&build_path, 0o640);
    let original = std::fs::read_to_string(&build_path).expect("read");

    let first = run_init(project.path());
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("created gradle/jetstart.gradle"), "{stdout}");
    assert!(stdout.contains(apply_line), "{stdout}");

    let installed = std::fs::read_to_string(project.path().join("gradle/jetstart.gradle")).expect("script");
    assert_eq!(installed, TEMPLATE);
    let build = std::fs::read_to_string(&build_path).expect("read");
    assert_eq!(
        build,
        format!("{original}{apply_line}\n"),
        "exactly one line appended"
    );
    assert_eq!(mode_of(&build_path), 0o640, "permissions are kept");
    let after_first = snapshot(project.path());

    let second = run_init(project.path());
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(stdout.contains("already installed"), "{stdout}");
    assert_eq!(
        snapshot(project.path()),
        after_first,
        "a second init changes nothing"
    );
}

#[test]
fn init_installs_into_a_groovy_project_once() {
    init_twice(
        "gradle-groovy",
        "app/build.gradle",
        "apply from: rootProject.file('gradle/jetstart.gradle')",
    );
}

#[test]
fn init_installs_into_a_kts_project_once() {
    init_twice(
        "gradle-kts",
        "app/build.gradle.kts",
        "apply(from = rootProject.file(\"gradle/jetstart.gradle\"))",
    );
}

#[test]
fn init_without_an_app_module_says_what_it_looked_for() {
    let project = tempfile::tempdir().expect("tempdir");
    std::fs::write(project.path().join("settings.gradle"), "rootProject.name = 'x'\n").expect("write");
    let out = run_init(project.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("app/build.gradle") && stderr.contains("app/build.gradle.kts"),
        "{stderr}"
    );
    assert!(stderr.contains("--project"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!project.path().join("gradle").exists(), "nothing written");
}

#[test]
fn init_with_a_read_only_app_module_leaves_it_untouched() {
    let project = copy_fixture("gradle-groovy");
    let app = project.path().join("app");
    let build = app.join("build.gradle");
    chmod(&build, 0o444);
    chmod(&app, 0o555);
    let before = std::fs::read(&build).expect("read");

    let out = run_init(project.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    chmod(&app, 0o755);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("read-only") && stderr.contains("build.gradle"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&build).expect("read"), before);
    assert_eq!(mode_of(&build), 0o444);
    assert_eq!(
        std::fs::read_dir(&app).expect("ls").count(),
        1,
        "no temporary file left"
    );
    assert!(
        !project.path().join("gradle").exists(),
        "nothing written when the build file can't be"
    );
}

#[test]
fn init_with_a_read_only_app_folder_changes_nothing() {
    let project = copy_fixture("gradle-groovy");
    let app = project.path().join("app");
    let build = app.join("build.gradle");
    let before = std::fs::read(&build).expect("read");
    // Permission bits where they count; as root (CI) only the immutable attribute stops writes.
    let immutable = if permissions_are_enforced() {
        chmod(&app, 0o555);
        None
    } else {
        match Immutable::set(&app) {
            Some(lock) => Some(lock),
            None => {
                eprintln!(
                    "skipping: running as root, where permission bits don't stop writes, and \
                     `chattr +i` is not available to make app/ unwritable"
                );
                return;
            }
        }
    };
    let out = run_init(project.path());
    match immutable {
        Some(lock) => drop(lock),
        None => chmod(&app, 0o755),
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("writable"), "{stderr}");
    assert_eq!(std::fs::read(&build).expect("read"), before);
    assert_eq!(
        std::fs::read_dir(&app).expect("ls").count(),
        1,
        "no temporary file left"
    );
    assert!(
        !project.path().join("gradle").exists(),
        "no half-install: the script is not written when the build file can't be"
    );
}

#[test]
fn init_that_cannot_replace_the_build_file_takes_the_script_back() {
    let project = copy_fixture("gradle-groovy");
    let build = project.path().join("app/build.gradle");
    let before = std::fs::read(&build).expect("read");
    // An immutable file: its folder takes the temporary file, only the final rename fails.
    let Some(lock) = Immutable::set(&build) else {
        eprintln!("skipping: `chattr +i` is not available here (it needs root and ext4 or similar)");
        return;
    };
    let out = run_init(project.path());
    drop(lock);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("could not replace"), "{stderr}");
    assert_eq!(std::fs::read(&build).expect("read"), before);
    assert!(
        !project.path().join("gradle").exists(),
        "the script written before the failed rename is removed again"
    );
    assert_eq!(
        std::fs::read_dir(project.path().join("app")).expect("ls").count(),
        1,
        "no temporary file left"
    );
}

// ---------------------------------------------------------------- marker block

/// The bytes before and after the lines inside the block.
fn outside_block(text: &str) -> (String, String) {
    let start = text.find("// JetStart injected fields").expect("start");
    let body = start + text[start..].find('\n').expect("line end") + 1;
    let end = text.find("// End JetStart fields").expect("end");
    let end_line = text[..end].rfind('\n').expect("line start") + 1;
    (text[..body].to_owned(), text[end_line..].to_owned())
}

async fn marker_block_round_trip(crlf: bool) {
    let project = copy_fixture("gradle-marker");
    let build = project.path().join("app/build.gradle");
    if crlf {
        let text = std::fs::read_to_string(&build)
            .expect("read")
            .replace('\n', "\r\n");
        std::fs::write(&build, text).expect("write");
    }
    let original = std::fs::read_to_string(&build).expect("read");
    let (head, tail) = outside_block(&original);

    let mut dev = Dev::start(project.path(), &[]).await;
    let r = dev.ready.clone();
    let during = std::fs::read_to_string(&build).expect("read");
    assert_eq!(
        outside_block(&during),
        (head.clone(), tail.clone()),
        "bytes outside the block changed"
    );
    let eol = if crlf { "\r\n" } else { "\n" };
    let expected_body: String = [
        (
            "JETSTART_SERVER_URL",
            format!("ws://127.0.0.1:{}/?token={}", r.ws_port, r.token),
        ),
        ("JETSTART_SESSION_ID", r.session_id.clone()),
        ("JETSTART_TOKEN", r.token.clone()),
        ("JETSTART_HTTP_URL", format!("http://127.0.0.1:{}", r.http_port)),
    ]
    .iter()
    .map(|(name, value)| {
        format!(
            "        buildConfigField \"String\", \"{name}\", {}{eol}",
            groovy_java_string(value)
        )
    })
    .collect();
    assert_eq!(during, format!("{head}{expected_body}{tail}"));

    dev.sigterm();
    let status = dev.wait_exit().await;
    assert!(
        status.success(),
        "dev did not stop cleanly: {status:?}\n{}",
        dev.stderr()
    );
    let after = std::fs::read_to_string(&build).expect("read");
    assert_eq!(outside_block(&after), (head, tail));
    let fields = marker_fields(&after);
    assert_eq!(fields.len(), 4, "{after}");
    for (name, value) in fields {
        assert_eq!(
            value,
            groovy_java_string(""),
            "{name} must be emptied on shutdown"
        );
    }
}

#[tokio::test]
async fn marker_block_is_rewritten_and_emptied_on_shutdown() {
    marker_block_round_trip(false).await;
}

#[tokio::test]
async fn marker_block_keeps_crlf_line_endings() {
    marker_block_round_trip(true).await;
}

#[tokio::test]
async fn a_project_without_marker_block_is_left_alone() {
    let project = common::project();
    let build = project.path().join("app/build.gradle");
    let before = std::fs::read(&build).expect("read");
    let mut dev = Dev::start(project.path(), &[]).await;
    assert_eq!(std::fs::read(&build).expect("read"), before);
    dev.sigterm();
    let status = dev.wait_exit().await;
    assert!(
        status.success(),
        "dev did not stop cleanly: {status:?}\n{}",
        dev.stderr()
    );
    assert_eq!(std::fs::read(&build).expect("read"), before);
}

// ---------------------------------------------------------------- Java literals

/// If a JDK is installed, the literals written into `BuildConfig` must compile to the original
/// string (unicode escapes, octal escapes, surrogate pairs).
#[test]
fn java_literals_compile_to_the_original_string() {
    let tricky = "a\"b\\c\nd\r\te\u{0}\u{1f}\u{7f} é 🚀 \\u0022 $x";
    let Ok(version) = std::process::Command::new("java").arg("-version").output() else {
        eprintln!("skipping: no `java` on PATH");
        return;
    };
    if !version.status.success() {
        eprintln!("skipping: `java -version` failed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("Lit.java");
    std::fs::write(
        &source,
        format!(
            "public class Lit {{ public static void main(String[] a) {{\n\
               String s = {};\n\
               StringBuilder b = new StringBuilder(); s.codePoints().forEach(c -> b.append(Integer.toHexString(c)).append(' '));\n\
               System.out.println(b.toString().trim()); }} }}\n",
            jetstart::gradle::escape::java_literal(tricky)
        ),
    )
    .expect("write java");
    let out = std::process::Command::new("java")
        .arg(&source)
        .output()
        .expect("run java");
    assert!(
        out.status.success(),
        "javac rejected the literal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<String> = tricky.chars().map(|c| format!("{:x}", u32::from(c))).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want.join(" "));
}
