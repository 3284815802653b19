//! Watching and building (README, "How builds work") end to end: the real binary, stand-in gradlew / kotlinc /
//! d8 from `tests/fixtures`, real file saves, real devices on the WebSocket.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::build::{
    alive, env_refs, hanging_child, log_lines, recv_until, sha256_hex, wait_dead, BuildProject, Toolchain,
};
use common::{fixture, recv_json, recv_type, Dev};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a negative check ("no second build") watches for something that must not happen.
const QUIET: Duration = Duration::from_millis(1200);
/// Longer than a build-status interval (250 ms): a status held back for its interval's end
/// would have gone out by then.
const STATUS_QUIET: Duration = Duration::from_millis(400);

const STRINGS: &str = "app/src/main/res/values/strings.xml";
const MAIN_KT: &str = "app/src/main/java/com/example/demo/MainActivity.kt";
const GREETING_KT: &str = "app/src/main/java/com/example/demo/Greeting.kt";
const GREETING_SRC: &str = "package com.example.demo\n\nclass Greeting {\n    class Inner\n}\n";

fn strings(text: &str) -> String {
    format!("<resources><string name=\"app_name\">{text}</string></resources>\n")
}

async fn start(project: &BuildProject, flags: &[&str], env: &[(&'static str, String)]) -> Dev {
    let env = project.env(env);
    Dev::start_with_env(project.path(), flags, &env_refs(&env)).await
}

/// Asserts no further `build-start` event arrives within [`QUIET`].
async fn assert_no_more_builds(dev: &mut Dev) {
    tokio::time::sleep(QUIET).await;
    let late: Vec<_> = dev
        .drain_events()
        .into_iter()
        .filter(|e| e["event"] == "build-start")
        .collect();
    assert!(late.is_empty(), "unexpected builds: {late:?}");
}

#[tokio::test]
async fn saved_strings_xml_gives_start_status_complete_with_apk_info() {
    let project = BuildProject::with_wrapper();
    // A pause mid-build, so that some task lines come after the first status interval.
    let mut dev = start(
        &project,
        &["--no-initial-build"],
        &[("FAKE_GRADLE_SLEEP", "0.6".into())],
    )
    .await;
    let (mut ws, _) = dev.connect().await;
    project.save(STRINGS, &strings("Saved"));

    assert_eq!(recv_json(&mut ws).await["type"], "core:build-start");
    let started_at = std::time::Instant::now();
    let status = recv_json(&mut ws).await;
    assert_eq!(status["type"], "core:build-status");
    // The start already made the device redraw: the task lines printed right after it don't
    // each send a status. The server waits 250 ms; 50 ms here leaves room for this test being
    // slow to read the start (the old throttle sent the first status ~2 ms after it).
    let waited = started_at.elapsed();
    assert!(
        waited >= Duration::from_millis(50),
        "first status {waited:?} after the start"
    );
    let messages = recv_until(&mut ws, "core:build-complete").await;
    assert_eq!(status["sessionId"], dev.ready.session_id.as_str());
    assert!(status["status"]["progress"].as_u64().expect("progress") <= 100);
    // The stand-in prints its first task lines at once, ending with the compile, then pauses.
    // However late that burst comes, its last line reaches the device before the pause ends:
    // the device shows the task that is running, not one from before it (nor nothing).
    let statuses: Vec<_> = std::iter::once(&status)
        .chain(&messages)
        .filter(|m| m["type"] == "core:build-status")
        .collect();
    let after_pause = statuses
        .iter()
        .position(|s| s["status"]["message"] == "> Task :app:dexBuilderDebug")
        .expect("a status after the pause");
    let before_pause = statuses[..after_pause].last().expect("a status before the pause");
    assert_eq!(
        before_pause["status"]["message"], "> Task :app:compileDebugKotlin",
        "{statuses:?}"
    );
    assert_eq!(before_pause["status"]["phase"], "compiling");
    // A line kept for the end of its interval never follows the end of the build (one is kept
    // now: the stand-in's last task lines come at once after the pause).
    let late = tokio::time::timeout(STATUS_QUIET, recv_type(&mut ws, "core:build-status")).await;
    assert!(late.is_err(), "a status after build-complete: {late:?}");

    let complete = messages.last().expect("complete");
    let info = &complete["apkInfo"];
    let apk = project.apk();
    assert_eq!(info["size"], std::fs::metadata(&apk).expect("apk").len());
    assert_eq!(info["hash"], sha256_hex(&apk));
    assert_eq!(info["applicationId"], "com.example.demo");
    assert_eq!(info["versionCode"], 7);
    assert_eq!(info["versionName"], "1.2.3");
    assert_eq!(info["minSdkVersion"], 24);
    assert_eq!(info["targetSdkVersion"], 34);
    assert_eq!(
        complete["downloadUrl"],
        format!(
            "http://127.0.0.1:{}/download/app.apk?token={}",
            dev.ready.http_port, dev.ready.token
        )
    );

    let start = dev.event("build-start").await;
    assert_eq!(start["kind"], "full");
    assert_eq!(start["files"][0], STRINGS);
    let done = dev.event("build-complete").await;
    assert_eq!(done["apkInfo"]["hash"], sha256_hex(&apk));
    assert_eq!(project.gradle_runs(), 1);
    assert!(log_lines(&project.log)[0].starts_with("gradlew assembleDebug --console=plain"));
}

#[tokio::test]
async fn failing_build_cmd_reports_exit_code_and_log_tail() {
    let project = BuildProject::without_wrapper();
    let cmd = fixture("gradlew").display().to_string();
    let mut dev = start(
        &project,
        &["--no-initial-build", "--build-cmd", &cmd],
        &[("FAKE_GRADLE_MODE", "fail".into())],
    )
    .await;
    let (mut ws, _) = dev.connect().await;
    project.save(STRINGS, &strings("Broken"));

    let error = recv_type(&mut ws, "core:build-error").await;
    assert_eq!(error["details"]["exitCode"], 1);
    let log = error["details"]["log"].as_str().expect("log");
    assert!(log.contains("Unresolved reference: missingThing"), "{log}");
    assert!(
        log.contains("> Task :app:compileDebugKotlin FAILED"),
        "stdout and stderr interleaved: {log}"
    );
    assert!(log.ends_with("BUILD FAILED in 1s"), "{log}");
    let message = error["error"].as_str().expect("error");
    assert!(
        message.contains("exit code 1") && !message.contains('\n'),
        "{message}"
    );

    let event = dev.event("build-error").await;
    assert_eq!(event["exitCode"], 1);
    assert!(project.apk().metadata().is_err(), "no APK from a failed build");
    assert!(
        dev.stderr().contains("Unresolved reference"),
        "the terminal shows the error"
    );
}

#[tokio::test]
async fn hanging_build_is_killed_at_the_timeout_with_its_children() {
    let project = BuildProject::with_wrapper();
    let pidfile = project.log.with_file_name("child.pid");
    let mut dev = start(
        &project,
        &["--no-initial-build", "--build-timeout", "1s"],
        &[
            ("FAKE_GRADLE_MODE", "hang".into()),
            ("FAKE_GRADLE_PIDFILE", pidfile.display().to_string()),
        ],
    )
    .await;
    let (mut ws, _) = dev.connect().await;
    project.save(STRINGS, &strings("Hang"));

    let error = recv_type(&mut ws, "core:build-error").await;
    assert!(
        error["error"].as_str().expect("error").contains("timed out"),
        "{error}"
    );
    assert_eq!(error["details"]["exitCode"], serde_json::Value::Null);
    assert!(error["details"]["log"]
        .as_str()
        .expect("log")
        .contains("mergeExtDexDebug"));

    let child: i32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    let script: i32 = log_lines(&project.log)[0]
        .rsplit("pid ")
        .next()
        .and_then(|p| p.trim_end_matches(')').parse().ok())
        .expect("script pid");
    assert!(
        wait_dead(child).await,
        "the build's child process {child} survived"
    );
    assert!(!alive(script), "the build script {script} survived");
    dev.event("build-error").await;
}

#[tokio::test]
async fn huge_output_keeps_a_bounded_tail() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(
        &project,
        &["--no-initial-build"],
        &[("FAKE_GRADLE_MODE", "spam".into())],
    )
    .await;
    let (mut ws, _) = dev.connect().await;
    project.save(STRINGS, &strings("Spam"));

    let error = recv_type(&mut ws, "core:build-error").await;
    assert_eq!(error["details"]["exitCode"], 3);
    let log = error["details"]["log"].as_str().expect("log");
    assert!(log.len() <= 64 * 1024, "tail is {} bytes", log.len());
    assert!(log.lines().count() <= 200);
    assert!(log.contains("spam line 200000") && log.contains("e: the real error comes last"));
    assert!(!log.contains("spam line 1\n"));
    dev.event("build-error").await;
}

#[tokio::test]
async fn burst_of_saves_makes_one_build() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(&project, &["--no-initial-build"], &[]).await;
    for i in 0..20 {
        project.save(STRINGS, &strings(&format!("Burst {i}")));
    }
    let start = dev.event("build-start").await;
    assert_eq!(start["files"], serde_json::json!([STRINGS]));
    dev.event("build-complete").await;
    assert_no_more_builds(&mut dev).await;
    assert_eq!(project.gradle_runs(), 1);
}

#[tokio::test]
async fn saves_during_a_build_give_exactly_one_follow_up_build() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(
        &project,
        &["--no-initial-build"],
        &[("FAKE_GRADLE_SLEEP", "1.5".into())],
    )
    .await;
    project.save(STRINGS, &strings("First"));
    dev.event("build-start").await;

    project.save(STRINGS, &strings("Second"));
    project.save(MAIN_KT, "package com.example.demo\n\nclass MainActivity { }\n");
    tokio::time::sleep(Duration::from_millis(200)).await; // two separate debounce windows
    project.save("app/src/main/res/values/colors.xml", "<resources/>\n");

    dev.event("build-complete").await;
    let follow_up = dev.event("build-start").await;
    assert_eq!(follow_up["kind"], "full");
    let files: Vec<&str> = follow_up["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    for file in [STRINGS, MAIN_KT, "app/src/main/res/values/colors.xml"] {
        assert!(
            files.contains(&file),
            "{file} missing from the follow-up: {files:?}"
        );
    }
    dev.event("build-complete").await;
    assert_no_more_builds(&mut dev).await;
    assert_eq!(project.gradle_runs(), 2);
}

#[tokio::test]
async fn kotlin_save_sends_dex_reload() {
    let project = BuildProject::with_wrapper();
    let tools = Toolchain::new();
    let mut env = tools.env();
    env.push(("FAKE_DEX_SIZE", "300000".into()));
    let mut dev = start(&project, &["--no-initial-build"], &env).await;
    let (mut ws, _) = dev.connect().await;
    project.save(GREETING_KT, GREETING_SRC);

    let reload = recv_json(&mut ws).await;
    assert_eq!(
        reload["type"], "core:dex-reload",
        "no build-start for a hot reload: {reload}"
    );
    assert_eq!(reload["sessionId"], dev.ready.session_id.as_str());
    assert_eq!(
        reload["classNames"],
        serde_json::json!(["com.example.demo.Greeting$Inner", "com.example.demo.Greeting"])
    );
    let dex = base64::engine::general_purpose::STANDARD
        .decode(reload["dexBase64"].as_str().expect("base64"))
        .expect("valid base64");
    let mut expected = b"dex\n035\0Greeting$Inner.class\nGreeting.class\n".to_vec();
    expected.extend(std::iter::repeat_n(b'z', 300_000));
    assert!(
        dex == expected,
        "DEX differs from the stand-in's output ({} bytes)",
        dex.len()
    );

    let start = dev.event("build-start").await;
    assert_eq!(start["kind"], "hot");
    let event = dev.event("dex-reload").await;
    assert_eq!(event["classNames"][0], "com.example.demo.Greeting$Inner");
    assert_eq!(event["bytes"], expected.len());
    let (total, compile, dex) = (
        event["durationMs"].as_u64(),
        event["compileMs"].as_u64(),
        event["dexMs"].as_u64(),
    );
    assert!(
        matches!((total, compile, dex), (Some(t), Some(c), Some(d)) if c + d <= t),
        "compile and dex times are part of the total: {event}"
    );
    assert_eq!(event["devices"], 1);
    dev.wait_stderr("Greeting.kt → hot reload → 1 device in ").await;

    let calls = log_lines(&project.tool_log);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let jar = tools.android_jar().display().to_string();
    assert!(calls[0].starts_with("kotlinc ") && calls[0].contains(GREETING_KT) && calls[0].contains(&jar));
    assert!(
        calls[1].starts_with(&format!("d8 --lib {jar} --output ")),
        "{}",
        calls[1]
    );
    // Two versions are installed (see `Toolchain`); the highest one must run.
    let d8 = calls[1]
        .rsplit_once(" (path ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the stand-in logs its own path: {}", calls[1]));
    assert_eq!(
        Path::new(d8),
        tools.dir.path().join("sdk/build-tools/34.0.0/d8"),
        "d8 from the highest build-tools version"
    );
    assert_eq!(project.gradle_runs(), 0, "no full build");
}

#[tokio::test]
async fn failing_d8_falls_back_to_a_full_build() {
    let project = BuildProject::with_wrapper();
    let tools = Toolchain::new();
    let mut env = tools.env();
    env.push(("FAKE_D8_FAIL", "1".into()));
    let mut dev = start(&project, &["--no-initial-build"], &env).await;
    let (mut ws, _) = dev.connect().await;
    project.save(GREETING_KT, GREETING_SRC);

    assert_eq!(dev.event("build-start").await["kind"], "hot");
    assert_eq!(dev.event("build-start").await["kind"], "full");
    let messages = recv_until(&mut ws, "core:build-complete").await;
    assert_eq!(messages[0]["type"], "core:build-start");
    assert!(messages.iter().all(|m| m["type"] != "core:dex-reload"));
    dev.event("build-complete").await;
    assert_eq!(project.gradle_runs(), 1);
    dev.wait_stderr("full build instead of hot reload: Error: stand-in d8 told to fail")
        .await;
}

#[tokio::test]
async fn initial_build_runs_when_the_first_device_connects() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(&project, &[], &[]).await;
    let (mut ws, _) = dev.connect().await;
    let start = dev.event("build-start").await;
    assert_eq!(start["files"], serde_json::json!([]));
    recv_type(&mut ws, "core:build-start").await;
    let complete = recv_type(&mut ws, "core:build-complete").await;
    dev.event("build-complete").await;

    // A second device doesn't build again; it gets the last build-complete on connect.
    let (mut second, _) = dev.connect().await;
    let replay = recv_type(&mut second, "core:build-complete").await;
    assert_eq!(replay["apkInfo"], complete["apkInfo"]);
    assert_no_more_builds(&mut dev).await;
    assert_eq!(project.gradle_runs(), 1);
}

#[tokio::test]
async fn no_initial_build_flag_skips_it() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(&project, &["--no-initial-build"], &[]).await;
    let _device = dev.connect().await;
    assert_no_more_builds(&mut dev).await;
    assert_eq!(project.gradle_runs(), 0);
}

#[tokio::test]
async fn folders_deleted_and_recreated_are_still_watched() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(&project, &["--no-initial-build"], &[]).await;
    let values = project.path().join("app/src/main/res/values");
    std::fs::remove_dir_all(&values).expect("remove folder");
    dev.event("build-start").await;
    dev.event("build-complete").await;

    project.save(STRINGS, &strings("Back"));
    let start = dev.event("build-start").await;
    assert_eq!(start["files"], serde_json::json!([STRINGS]));
    dev.event("build-complete").await;
}

#[tokio::test]
async fn download_route_serves_the_built_apk() {
    let project = BuildProject::with_wrapper();
    let mut dev = start(&project, &["--no-initial-build"], &[]).await;
    project.save(STRINGS, &strings("Download"));
    dev.event("build-complete").await;

    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", dev.ready.http_port))
        .await
        .expect("connect");
    let request = format!(
        "GET /download/app.apk?token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        dev.ready.token
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    common::within("the download", stream.read_to_end(&mut response))
        .await
        .expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers")
        + 4;
    let head = String::from_utf8_lossy(&response[..split]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("application/vnd.android.package-archive"));
    assert_eq!(
        &response[split..],
        std::fs::read(project.apk()).expect("apk").as_slice()
    );
}

/// Until `/download` lands, the APK `/download` will serve is checked in process.
#[tokio::test]
async fn manual_build_publishes_the_apk_for_download() {
    let project = BuildProject::without_wrapper();
    let mut config = jetstart::cli::config::for_project(project.path()).expect("config");
    config.build_cmd = Some(fixture("gradlew").display().to_string());
    config.initial_build = false;
    let dev = jetstart::dev::Dev::bind(config).await.expect("bind");
    let server = dev.parts();
    let stop = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(dev.run(async move {
        let _ = stop.1.await;
    }));
    assert!(server.artifacts.latest().is_none(), "nothing built yet");
    server.requests.request(jetstart::events::Trigger::Manual);
    let artifact = common::within("the artifact", async {
        loop {
            if let Some(artifact) = server.artifacts.latest() {
                return artifact;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(artifact.path, project.apk().canonicalize().expect("apk"));
    assert_eq!(artifact.info.hash, sha256_hex(&project.apk()));
    assert_eq!(artifact.info.version_name.as_deref(), Some("1.2.3"));
    let _ = stop.0.send(());
    common::within("shutdown", running)
        .await
        .expect("join")
        .expect("clean stop");
}

#[tokio::test]
async fn stopping_the_server_kills_a_running_build() {
    let project = BuildProject::with_wrapper();
    let pidfile = project.log.with_file_name("child.pid");
    let mut dev = start(
        &project,
        &["--no-initial-build"],
        &[
            ("FAKE_GRADLE_MODE", "hang".into()),
            ("FAKE_GRADLE_PIDFILE", pidfile.display().to_string()),
        ],
    )
    .await;
    project.save(STRINGS, &strings("Stop"));
    dev.event("build-start").await;
    let child = hanging_child(&pidfile).await;
    dev.sigterm();
    assert!(dev.wait_exit().await.success());
    assert!(
        wait_dead(child).await,
        "the build's child {child} outlived the server"
    );
}

#[tokio::test]
async fn builds_off_is_said_once_at_start_up_and_every_save_is_answered() {
    const BUILDS_OFF: &str = "builds are off: no gradlew in";
    let project = BuildProject::without_wrapper();
    // A PATH with no gradle on it (nor anything else: `dev` needs no tool to start).
    let empty = tempfile::tempdir().expect("tempdir");
    let mut dev = start(&project, &[], &[("PATH", empty.path().display().to_string())]).await;
    dev.wait_stderr(BUILDS_OFF).await;

    // The first device asks for the initial build, a save for another: each is answered with
    // what happened instead, in one line, and the start-up warning is not repeated.
    let (_ws, _) = dev.connect().await;
    let skipped = dev.event("build-skipped").await;
    assert_eq!(skipped["trigger"], "first-device");
    dev.wait_stderr(
        "first device connected → builds are off: no gradlew and no gradle on PATH (use --build-cmd)",
    )
    .await;
    project.save(STRINGS, &strings("Saved"));
    let skipped = dev.event("build-skipped").await;
    assert_eq!(skipped["trigger"], "save");
    assert_eq!(skipped["files"], serde_json::json!([STRINGS]));
    dev.wait_stderr("strings.xml → builds are off: no gradlew").await;

    let stderr = dev.stderr();
    assert_eq!(
        stderr.matches(BUILDS_OFF).count(),
        1,
        "said exactly once:\n{stderr}"
    );
    let said = stderr.find(BUILDS_OFF).expect("said");
    let connected = stderr.find("device connected").expect("device connected line");
    assert!(said < connected, "said before any device connected:\n{stderr}");
    assert!(stderr.contains("--build-cmd"), "says what to do:\n{stderr}");
    assert!(dev.drain_events().iter().all(|e| e["event"] != "build-start"));
}

/// The end of the debounce window starts the build, so the thread that waits for it asks the
/// kernel for no timer slack (50 µs by default on Linux). Only that thread may read its own slack
/// without `CAP_SYS_NICE`, so it reports it in the debug log.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_debounce_thread_waits_without_timer_slack() {
    let project = BuildProject::with_wrapper();
    let dev = start(&project, &["--no-initial-build"], &[]).await;
    dev.wait_stderr("debounce thread: timer slack 1 ns").await;
}
