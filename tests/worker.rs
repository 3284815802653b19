//! The warm compile worker against the real binary: the real Kotlin compiler (Debian's `kotlin`)
//! in one long-lived JVM, and a Java stand-in for D8 in the SDK's `build-tools/<v>/lib/d8.jar`.
//! A change compiles warm; a syntax error comes back as a diagnostic and falls back to a full
//! build; a worker killed mid-request is replaced and the save still arrives; a hung worker is
//! killed at the deadline.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::build::{env_refs, log_lines, real_kotlin_lib, wait_dead, BuildProject, Toolchain};
use common::{recv_json, Dev, Ws};
use serde_json::Value;

const GREETING_KT: &str = "app/src/main/java/com/example/demo/Greeting.kt";
/// Starting a JVM, compiling the worker's source and a first compile take seconds, more on a
/// loaded two-core machine running other tests.
const WORKER_WAIT: Duration = Duration::from_secs(90);

/// A project with the stand-in gradlew, an SDK with the stand-in d8.jar, and the real kotlinc
/// on PATH; `None` (test skipped) where those can't be had.
fn setup() -> Option<(BuildProject, Toolchain)> {
    real_kotlin_lib()?;
    let tools = Toolchain::new().with_d8_jar()?;
    Some((BuildProject::with_wrapper(), tools))
}

async fn start(
    project: &BuildProject,
    tools: &Toolchain,
    flags: &[&str],
    extra: &[(&'static str, String)],
) -> Dev {
    let mut env = tools.env_with_real_kotlin();
    env.extend(extra.iter().cloned());
    let env = project.env(&env);
    let mut all = vec!["--no-initial-build"];
    all.extend_from_slice(flags);
    Dev::start_with_env(project.path(), &all, &env_refs(&env)).await
}

/// Waits until stderr holds `needle`, for up to [`WORKER_WAIT`].
async fn wait_stderr_long(dev: &Dev, needle: &str) -> String {
    let found = tokio::time::timeout(WORKER_WAIT, async {
        loop {
            let stderr = dev.stderr();
            if stderr.contains(needle) {
                return stderr;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("stderr never contained {needle:?}:\n{}", dev.stderr()))
}

/// The pid of the worker that logged `compile worker <pid> ready` as the `nth` (from 0).
fn worker_pid(stderr: &str, nth: usize) -> i32 {
    stderr
        .lines()
        .filter_map(|l| {
            l.split("compile worker ")
                .nth(1)?
                .strip_suffix(" ready")?
                .parse()
                .ok()
        })
        .nth(nth)
        .unwrap_or_else(|| panic!("no worker #{nth} in:\n{stderr}"))
}

/// The next message of type `ty`, waiting up to [`WORKER_WAIT`] (a cold compile may come first).
async fn recv_long(ws: &mut Ws, ty: &str) -> Value {
    tokio::time::timeout(WORKER_WAIT, async {
        loop {
            let message = recv_json(ws).await;
            if message["type"] == ty {
                return message;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {ty} within {WORKER_WAIT:?}"))
}

fn d8_jar_calls(project: &BuildProject) -> usize {
    log_lines(&project.tool_log)
        .iter()
        .filter(|l| l.starts_with("d8.jar "))
        .count()
}

fn shell_d8_calls(project: &BuildProject) -> usize {
    log_lines(&project.tool_log)
        .iter()
        .filter(|l| l.starts_with("d8 "))
        .count()
}

#[tokio::test]
async fn saves_compile_in_the_warm_worker() {
    let Some((project, tools)) = setup() else { return };
    let mut dev = start(&project, &tools, &[], &[]).await;
    let (mut ws, _) = dev.connect().await;
    wait_stderr_long(&dev, "compile worker warmed up").await;
    let warm_up = d8_jar_calls(&project);
    assert_eq!(warm_up, 1, "the warm-up went through D8 too");

    for (round, class) in ["Greeting", "Welcome"].iter().enumerate() {
        project.save(
            GREETING_KT,
            &format!("package com.example.demo\n\nclass {class} {{ fun text() = \"hi\" }}\n"),
        );
        let reload = recv_long(&mut ws, "core:dex-reload").await;
        assert_eq!(
            reload["classNames"],
            serde_json::json!([format!("com.example.demo.{class}")])
        );
        let dex = base64::engine::general_purpose::STANDARD
            .decode(reload["dexBase64"].as_str().expect("base64"))
            .expect("valid base64");
        assert_eq!(dex, format!("dex\n035\0{class}.class\n").into_bytes());
        let event = dev.event_within("dex-reload", WORKER_WAIT).await;
        assert!(event["compileMs"].is_u64() && event["dexMs"].is_u64(), "{event}");
        assert_eq!(
            d8_jar_calls(&project),
            warm_up + round + 1,
            "D8 ran in the worker"
        );
    }
    assert_eq!(shell_d8_calls(&project), 0, "no fresh d8 process");
    let stderr = dev.stderr();
    let workers = stderr
        .lines()
        .filter(|l| l.contains("compile worker ") && l.ends_with(" ready"))
        .count();
    assert_eq!(workers, 1, "one worker served every save:\n{stderr}");
    assert!(!stderr.contains("compiles afresh"), "{stderr}");
    assert_eq!(project.gradle_runs(), 0);
}

#[tokio::test]
async fn a_syntax_error_comes_back_as_a_diagnostic_and_falls_back_to_a_full_build() {
    let Some((project, tools)) = setup() else { return };
    let mut dev = start(&project, &tools, &[], &[]).await;
    let (mut ws, _) = dev.connect().await;
    wait_stderr_long(&dev, "compile worker warmed up").await;
    project.save(
        "app/src/main/java/com/example/demo/Broken.kt",
        "package com.example.demo\n\nclass Broken {\n    fun x() = undefinedThing\n}\n",
    );
    assert_eq!(dev.event_within("build-start", WORKER_WAIT).await["kind"], "hot");
    assert_eq!(dev.event_within("build-start", WORKER_WAIT).await["kind"], "full");
    recv_long(&mut ws, "core:build-complete").await;
    let stderr = dev.stderr();
    assert!(
        stderr.contains(
            "full build instead of hot reload: app/src/main/java/com/example/demo/Broken.kt:4:15: error: unresolved reference: undefinedThing"
        ),
        "{stderr}"
    );
    assert_eq!(project.gradle_runs(), 1);
    assert!(
        !stderr.contains("compiles afresh"),
        "a compile error is not a worker failure:\n{stderr}"
    );
}

#[tokio::test]
async fn a_worker_killed_mid_request_is_replaced_and_the_save_still_arrives() {
    let Some((project, tools)) = setup() else { return };
    let hang = project.path().join("app/build/hang-d8");
    let extra = [("FAKE_D8_HANG_WHILE", hang.display().to_string())];
    let mut dev = start(&project, &tools, &[], &extra).await;
    let (mut ws, _) = dev.connect().await;
    let stderr = wait_stderr_long(&dev, "compile worker warmed up").await;
    let first = worker_pid(&stderr, 0);

    std::fs::create_dir_all(hang.parent().expect("parent")).expect("mkdir");
    std::fs::write(&hang, "").expect("hang d8");
    project.save(GREETING_KT, "package com.example.demo\n\nclass Greeting\n");
    // D8 logs its call before it hangs: the worker is mid-request.
    tokio::time::timeout(WORKER_WAIT, async {
        while d8_jar_calls(&project) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("D8 started in the worker");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill worker");
    std::fs::remove_file(&hang).expect("unhang");

    // The batch is compiled afresh (the shell d8 ignores the hang) and reaches the device.
    let reload = recv_long(&mut ws, "core:dex-reload").await;
    assert_eq!(
        reload["classNames"],
        serde_json::json!(["com.example.demo.Greeting"])
    );
    assert_eq!(shell_d8_calls(&project), 1);
    wait_stderr_long(
        &dev,
        "compile worker: the compile worker exited; this save compiles afresh",
    )
    .await;
    assert!(wait_dead(first).await, "the killed worker is gone");

    // The next save starts a new worker and compiles warm again.
    project.save(
        GREETING_KT,
        "package com.example.demo\n\nclass Greeting { class Again }\n",
    );
    recv_long(&mut ws, "core:dex-reload").await;
    dev.event_within("dex-reload", WORKER_WAIT).await;
    let stderr = dev.stderr();
    let second = worker_pid(&stderr, 1);
    assert_ne!(first, second);
    assert_eq!(
        shell_d8_calls(&project),
        1,
        "the second save went through the new worker"
    );
    assert_eq!(d8_jar_calls(&project), 3);
}

#[tokio::test]
async fn a_hung_worker_is_killed_at_the_deadline_and_the_save_gets_a_full_build() {
    let Some((project, tools)) = setup() else { return };
    let hang = project.path().join("app/build/hang-d8");
    let extra = [("FAKE_D8_HANG_WHILE", hang.display().to_string())];
    let mut dev = start(&project, &tools, &["--build-timeout", "4s"], &extra).await;
    let (mut ws, _) = dev.connect().await;
    let stderr = wait_stderr_long(&dev, "compile worker warmed up").await;
    let worker = worker_pid(&stderr, 0);

    std::fs::create_dir_all(hang.parent().expect("parent")).expect("mkdir");
    std::fs::write(&hang, "").expect("hang d8");
    project.save(GREETING_KT, "package com.example.demo\n\nclass Greeting\n");
    assert_eq!(dev.event("build-start").await["kind"], "hot");
    let full = tokio::time::timeout(WORKER_WAIT, dev.event("build-start"))
        .await
        .expect("full build");
    assert_eq!(full["kind"], "full");
    assert!(
        wait_dead(worker).await,
        "the hung worker's process group was killed"
    );
    assert!(
        dev.stderr()
            .contains("full build instead of hot reload: the compile ran past --build-timeout"),
        "{}",
        dev.stderr()
    );
    recv_long(&mut ws, "core:build-complete").await;
    std::fs::remove_file(&hang).expect("unhang");
}

/// A full build that records other compiler inputs (the first build of a project always does)
/// replaces the worker at once and warms the new one up: the save after the build finds it warm
/// instead of starting a JVM.
#[tokio::test]
async fn a_full_build_with_new_compiler_inputs_warms_the_next_worker_before_any_save() {
    let Some((project, tools)) = setup() else { return };
    let lib = real_kotlin_lib().expect("checked by setup");
    // The recorded compiler: the same jars in another order, so it is another worker's spec.
    let mut jars = common::build::jars_in(&lib);
    jars.reverse();
    let recorded = std::env::join_paths(&jars).expect("a classpath");
    let mut dev = start(
        &project,
        &tools,
        &[],
        &[("FAKE_COMPILER_CLASSPATH", recorded.to_string_lossy().into_owned())],
    )
    .await;
    let (_ws, _) = dev.connect().await;
    let stderr = wait_stderr_long(&dev, "compile worker warmed up").await;
    let first = worker_pid(&stderr, 0);

    project.save(
        "app/src/main/res/values/strings.xml",
        "<resources><string name=\"app_name\">Full</string></resources>\n",
    );
    dev.event_within("build-complete", WORKER_WAIT).await;
    let stderr = wait_stderr_long(&dev, "compile worker replaced").await;
    let found = tokio::time::timeout(WORKER_WAIT, async {
        loop {
            let stderr = dev.stderr();
            let ready = stderr
                .lines()
                .filter(|l| l.contains("compile worker ") && l.ends_with(" ready"))
                .count();
            if ready >= 2 {
                return stderr;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let stderr = found.unwrap_or_else(|_| panic!("no second worker before any save:\n{stderr}"));
    assert_ne!(worker_pid(&stderr, 1), first);
    assert!(wait_dead(first).await, "the old worker is gone");
}
