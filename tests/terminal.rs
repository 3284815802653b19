//! The terminal experience end to end: `dev`'s keyboard shortcuts under a pseudo-terminal,
//! the `connect` and `logs` device tools, plain output without a terminal or with `NO_COLOR`.

mod common;

use common::term::{qr_blocks, stty_has, PtyDev, Tool};
use common::{connect_message, recv_type, send_json, within, ws_connect, Dev};
use serde_json::json;

/// Connects an authenticated device to a `dev` running on a pty.
async fn device_for(dev: &PtyDev) -> common::Ws {
    let (session, token, ws_port) = dev.credentials();
    let mut ws = ws_connect(&format!("ws://127.0.0.1:{ws_port}")).await;
    send_json(&mut ws, &connect_message(&session, &token)).await;
    recv_type(&mut ws, "core:connected").await;
    ws
}

fn log(level: &str, message: &str) -> serde_json::Value {
    json!({"type": "client:log", "log": {"id": "1", "timestamp": 1_700_000_000_000u64,
        "level": level, "tag": "MainActivity", "message": message, "source": "app"}})
}

#[tokio::test]
async fn keys_reload_reprint_and_quit_restoring_the_terminal() {
    let project = common::project();
    let mut dev = PtyDev::start(project.path(), &[]);
    let output = dev.wait_for("Press", 1).await;
    assert!(
        output.contains("Session: ") && output.contains("Token: "),
        "{output}"
    );
    assert_eq!(qr_blocks(&output), 1, "one QR code at start-up:\n{output}");
    let running = dev.stty();
    assert!(
        stty_has(&running, "-icanon") && stty_has(&running, "-echo"),
        "raw mode on: {running}"
    );

    let mut ws = device_for(&dev).await;
    dev.press("r");
    let reload = recv_type(&mut ws, "core:reload").await;
    assert_eq!(reload["reloadType"], "full");
    dev.wait_for("full reload → 1 device", 1).await;

    dev.press("c");
    dev.wait_for("Session: ", 2).await;
    dev.wait_for("Press", 2).await;
    dev.wait_until("a second QR code", |out| qr_blocks(out) == 2)
        .await;

    dev.press("d");
    dev.wait_for("Pixel Test", 1).await;
    dev.press("?");
    dev.wait_for("Keyboard shortcuts:", 1).await;

    dev.press("q");
    assert_eq!(dev.wait_exit().await, 0, "{}", dev.output());
    let after = dev.stty();
    assert!(
        stty_has(&after, "icanon") && stty_has(&after, "echo"),
        "restored: {after}"
    );
    assert!(stty_has(&after, "opost"), "{after}");
    // The device was told the server stopped, as on SIGTERM.
    let bye = recv_type(&mut ws, "core:disconnect").await;
    assert_eq!(bye["reason"], "Server stopped");
}

#[tokio::test]
async fn sigterm_restores_the_terminal_and_exits_0() {
    let project = common::project();
    let mut dev = PtyDev::start(project.path(), &[]);
    dev.wait_for("Press", 1).await;
    let running = dev.stty();
    assert!(
        stty_has(&running, "-icanon") && stty_has(&running, "-echo"),
        "raw mode on: {running}"
    );
    let mut ws = device_for(&dev).await;

    dev.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(dev.wait_exit().await, 0, "{}", dev.output());
    let after = dev.stty();
    assert!(
        stty_has(&after, "icanon") && stty_has(&after, "echo") && stty_has(&after, "opost"),
        "restored: {after}"
    );
    let bye = recv_type(&mut ws, "core:disconnect").await;
    assert_eq!(bye["reason"], "Server stopped");
}

#[tokio::test]
async fn device_logs_are_coloured_on_a_terminal_and_plain_with_no_color() {
    let project = common::project();
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        let env: Vec<(&str, &str)> = no_color.map(|v| ("NO_COLOR", v)).into_iter().collect();
        let mut dev = PtyDev::start(project.path(), &env);
        dev.wait_for("Press", 1).await;
        let mut ws = device_for(&dev).await;
        send_json(&mut ws, &log("warn", "disk nearly full")).await;
        dev.wait_for("disk nearly full", 1).await;
        dev.press("d?");
        dev.wait_for("Keyboard shortcuts:", 1).await;
        let output = dev.output();
        assert!(output.contains("MainActivity"), "{output}");
        assert_eq!(
            output.contains("\x1b["),
            coloured,
            "NO_COLOR={no_color:?}:\n{output:?}"
        );
        dev.press("q");
        assert_eq!(dev.wait_exit().await, 0);
    }
}

#[tokio::test]
async fn no_escape_codes_when_stdout_is_not_a_terminal() {
    let project = common::project();
    let project_dir = project.path().to_str().expect("utf-8 path");
    let args: Vec<&str> = ["dev", "--project", project_dir]
        .into_iter()
        .chain(common::LOOPBACK.iter().copied())
        .chain(["--no-initial-build"])
        .collect();
    let mut dev = Tool::spawn(&args, &[]);
    let banner = dev.wait_for("Token: ", false).await;
    assert!(
        !banner.contains("Press"),
        "no shortcuts without a terminal: {banner}"
    );
    let line = |prefix: &str| {
        banner
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(prefix))
            .expect("banner line")
            .trim()
            .to_owned()
    };
    let port = line("Socket:").rsplit(':').next().expect("port").to_owned();
    let mut ws = ws_connect(&format!("ws://127.0.0.1:{port}")).await;
    send_json(&mut ws, &connect_message(&line("Session: "), &line("Token: "))).await;
    recv_type(&mut ws, "core:connected").await;
    send_json(&mut ws, &log("error", "boom")).await;
    dev.wait_for("boom", true).await;
    assert!(!dev.stdout().contains('\x1b') && !dev.stderr().contains('\x1b'));
    let _ = dev.child.start_kill();
}

#[tokio::test]
async fn device_chosen_names_reach_the_terminal_as_one_printable_line() {
    let project = common::project();
    let dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let mut ws = ws_connect(&dev.ws_url()).await;
    let mut hello = connect_message(&dev.ready.session_id, &dev.ready.token);
    hello["deviceInfo"]["model"] = json!("Evil\x1b[2J\x1b[H\nERROR forged line\r");
    send_json(&mut ws, &hello).await;
    recv_type(&mut ws, "core:connected").await;
    send_json(&mut ws, &log("info", "from the evil device")).await;

    let stderr = dev.wait_stderr("from the evil device").await;
    let connected = stderr
        .lines()
        .find(|l| l.contains("device connected:"))
        .expect("device connected line");
    assert!(
        connected.contains("Evil [2J [H ERROR forged line"),
        "the whole name on the one line: {connected:?}"
    );
    let logged = stderr
        .lines()
        .find(|l| l.contains("from the evil device"))
        .expect("log line");
    assert!(logged.contains("[Evil [2J [H ERROR forged line ]"), "{logged:?}");
    assert!(
        !stderr.lines().any(|l| l.starts_with("ERROR forged")),
        "no forged line:\n{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "no escape sequence from the device:\n{stderr:?}"
    );
}

#[tokio::test]
async fn connect_prints_connected_then_broadcasts_and_quits_cleanly() {
    let project = common::project();
    let dev = Dev::start(project.path(), &[]).await;
    let mut connect = Tool::spawn(&["connect", &dev.ready.qr], &[]);
    connect.wait_for("core:connected", false).await;
    let stderr = connect.stderr();
    assert!(stderr.contains(&dev.ready.session_id), "{stderr}");

    let (mut phone, _) = dev.connect().await;
    send_json(&mut phone, &log("info", "hello from the phone")).await;
    let stdout = connect.wait_for("hello from the phone", false).await;
    assert!(stdout.contains("core:log"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "piped stdout is plain: {stdout:?}");
    assert!(!stdout.contains(&dev.ready.token) && !connect.stderr().contains(&dev.ready.token));

    // Ctrl+C: client:disconnect, exit 0.
    let pid = connect.child.id().expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = connect.wait_exit().await;
    assert!(status.success(), "{status:?}; stderr:\n{}", connect.stderr());
}

#[tokio::test]
async fn connect_json_prints_raw_messages_and_reads_the_session_file() {
    let project = common::project();
    let dev = Dev::start(project.path(), &[]).await;
    let r = &dev.ready;
    let session_file = project.path().join(".jetstart/session.properties");
    std::fs::create_dir_all(session_file.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &session_file,
        format!(
            "#test\nserverUrl=ws\\://127.0.0.1\\:{}\nsessionId={}\ntoken={}\nprojectName=demo\n",
            r.ws_port, r.session_id, r.token
        ),
    )
    .expect("write session file");
    let project_arg = project.path().to_str().expect("utf-8 path");
    let connect = Tool::spawn(&["connect", "--project", project_arg, "--json"], &[]);
    let stdout = connect.wait_for("core:connected", false).await;
    let first: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("a line")).expect("raw JSON line");
    assert_eq!(first["type"], "core:connected");
    assert_eq!(first["projectName"], "demo");
}

#[tokio::test]
async fn connect_with_a_wrong_token_exits_non_zero_naming_4002() {
    let project = common::project();
    let dev = Dev::start(project.path(), &[]).await;
    let r = &dev.ready;
    let wrong = format!(
        "127.0.0.1|{}|{}|{}|not-the-token|demo",
        r.http_port, r.ws_port, r.session_id
    );
    let mut connect = Tool::spawn(&["connect", &wrong], &[]);
    let status = connect.wait_exit().await;
    assert!(!status.success());
    let stderr = connect.stderr();
    assert!(
        stderr.contains("4002") && stderr.contains("wrong token"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-token"),
        "the token is never echoed: {stderr}"
    );
}

#[tokio::test]
async fn logs_level_warn_shows_warnings_and_hides_info() {
    let project = common::project();
    let dev = Dev::start(project.path(), &[]).await;
    let logs = Tool::spawn(&["logs", "--level", "WARN", &dev.ready.qr], &[]);
    logs.wait_for("following device logs", true).await;
    let (mut phone, _) = dev.connect().await;
    send_json(&mut phone, &log("info", "routine info line")).await;
    send_json(&mut phone, &log("warn", "something looks off")).await;
    let stdout = logs.wait_for("something looks off", false).await;
    assert!(!stdout.contains("routine info line"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("something looks off"))
        .expect("line");
    assert!(line.contains("warn") && line.contains("MainActivity"), "{line}");
}

#[tokio::test]
async fn completions_and_help_read_well() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetstart-rs"))
            .args(args)
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(&["completions", "bash"]).contains("jetstart-rs"));
    let help = within("help", async { run(&["dev", "--help"]) }).await;
    // clap wraps long lines; compare with whitespace collapsed.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "[env: JETSTART_PORT=]",
        "[default: 8765, else the next free one]",
        "Examples:",
        "Keys (on a terminal)",
    ] {
        assert!(
            help.contains(needle),
            "{needle:?} missing from dev --help:\n{help}"
        );
    }
    // The global -v/-q come after dev's own flags (the last of which is --allow-origin).
    let at = |flag: &str| {
        help.find(flag)
            .unwrap_or_else(|| panic!("{flag} missing from dev --help:\n{help}"))
    };
    assert!(at("--project <DIR>") < at("--name <NAME>"), "{help}");
    assert!(
        at("--allow-origin") < at("-v, --verbose") && at("--allow-origin") < at("-q, --quiet"),
        "-v/-q listed among dev's own flags:\n{help}"
    );
}

/// The output writer is woken for every event; as a `SCHED_BATCH` thread it never preempts the
/// runtime's workers or a device's side on wake-up (Linux only). A server started with `nice`
/// leaves it as its other threads.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_output_writer_is_a_batch_thread_and_the_workers_are_not() {
    use common::threads;
    const SCHED_BATCH: i64 = 3;
    let project = common::project();
    // Ready means the `ready` event went through the writer thread, so it exists.
    let dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let pid = dev.child.id().expect("running");
    let policies = |name| {
        threads::named(pid, name)
            .iter()
            .map(threads::Thread::policy)
            .collect::<Vec<_>>()
    };
    // The server inherits this test's scheduling.
    let me = threads::current();
    let (inherited, nice) = (me.policy(), me.nice());
    let workers = policies("tokio-rt-worker");
    assert!(
        !workers.is_empty() && workers.iter().all(|p| *p == inherited),
        "workers {workers:?}, inherited {inherited}"
    );
    let expected = if nice == 0 { SCHED_BATCH } else { inherited };
    assert_eq!(policies("output"), [expected], "{:?}", threads::of(pid));
}

/// The terminal line holding `needle`, without colour codes.
fn plain_line(output: &str, needle: &str) -> String {
    let line = output
        .lines()
        .rev()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{output}"));
    // What the line shows in the end: a spinner redraws it in place after each `\r`.
    let line = line.trim_end_matches('\r').rsplit('\r').next().unwrap_or(line);
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else if c != '\r' {
            plain.push(c);
        }
    }
    plain.trim_start().to_owned()
}

/// True if `line` starts with a `HH:MM:SS` time of day.
fn starts_with_clock(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 8
        && b[..8].iter().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        })
}

#[tokio::test]
async fn each_save_and_rebuild_is_answered_in_one_timestamped_line() {
    let project = common::project();
    let tools = common::build::Toolchain::new();
    let env = tools.env();
    let mut dev = PtyDev::start(project.path(), &common::build::env_refs(&env));
    dev.wait_for("Press", 1).await;
    dev.wait_for("ready in ", 1).await;
    let _ws = device_for(&dev).await;

    let greeting = project
        .path()
        .join("app/src/main/java/com/example/demo/Greeting.kt");
    std::fs::write(&greeting, "package com.example.demo\n\nclass Greeting\n").expect("save");
    let output = dev.wait_for("Greeting.kt → hot reload → 1 device in ", 1).await;
    let hot = plain_line(&output, "Greeting.kt → hot reload → 1 device in ");
    assert!(starts_with_clock(&hot) && hot.contains("(compile "), "{hot}");

    // No gradlew in this project: the rebuild is answered with why nothing builds.
    dev.press("b");
    let output = dev
        .wait_for(
            "rebuild requested → builds are off: no gradlew and no gradle on PATH (use --build-cmd)",
            1,
        )
        .await;
    let skipped = plain_line(&output, "rebuild requested → builds are off");
    assert!(starts_with_clock(&skipped), "{skipped}");
    let ready = plain_line(&output, "ready in ");
    assert!(starts_with_clock(&ready), "{ready}");

    dev.press("q");
    assert_eq!(dev.wait_exit().await, 0, "{}", dev.output());
}

#[tokio::test]
async fn a_terminal_too_narrow_for_the_qr_code_says_so_instead_of_wrapping_it() {
    let project = common::project();
    let mut dev = PtyDev::start_sized(project.path(), &[], 36);
    let output = dev.wait_for("Press", 1).await;
    assert_eq!(qr_blocks(&output), 0, "no broken QR code:\n{output}");
    let line = plain_line(&output, "columns wide");
    assert!(
        line.starts_with("(This terminal is 36 columns wide and the QR code needs")
            && line.contains("open http://localhost:"),
        "{line}"
    );
    dev.press("q");
    assert_eq!(dev.wait_exit().await, 0, "{}", dev.output());
}
