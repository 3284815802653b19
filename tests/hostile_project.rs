//! Issue 21, the machine half: no project file, device text, stalled terminal or signal can
//! take the server down or make it misbehave, against the real binary. Permission tests run the
//! server as `nobody` (setpriv) when the tests run as root, where permissions don't apply.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::build::{alive, build_leader, env_refs, hanging_child, wait_dead, BuildProject};
use common::chaos::{group_members, rss_kib};
use common::term::PtyDev;
use common::{recv_close, recv_type, send_json, within, ws_connect, Dev, Ws};
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const MARKER_BLOCK: &str = "\nandroid {\n    defaultConfig {\n        // JetStart injected fields\n        // End JetStart fields\n    }\n}\n";
const STRINGS: &str = "app/src/main/res/values/strings.xml";

// ---------------------------------------------------------------------------------------------
// Every way of being stopped is a clean stop
// ---------------------------------------------------------------------------------------------

/// A device connected, a build running and a marker block filled in; then `signal`: devices get
/// `core:disconnect` and 1001, the build's process group dies, the session file goes and the
/// marker block is emptied, exit 0.
async fn stops_cleanly_on(signal: Signal) {
    let project = BuildProject::with_wrapper();
    let build_file = project.path().join("app/build.gradle");
    let mut gradle = std::fs::read_to_string(&build_file).expect("build file");
    gradle.push_str(MARKER_BLOCK);
    std::fs::write(&build_file, gradle).expect("marker block");
    let pidfile = project.log.with_file_name("child.pid");
    let env = project.env(&[
        ("FAKE_GRADLE_MODE", "hang".into()),
        ("FAKE_GRADLE_PIDFILE", pidfile.display().to_string()),
    ]);
    let mut dev = Dev::start_with_env(project.path(), &["--no-initial-build"], &env_refs(&env)).await;
    let session_file = project.path().join(".jetstart/session.properties");
    assert!(session_file.is_file());
    let filled = std::fs::read_to_string(&build_file).expect("build file");
    assert!(
        filled.contains(&dev.ready.token),
        "the marker block carries the token"
    );
    let (mut device, _) = dev.connect().await;

    project.save(
        STRINGS,
        "<resources><string name=\"app_name\">Hang</string></resources>\n",
    );
    dev.event("build-start").await;
    let child = hanging_child(&pidfile).await;
    let leader = build_leader(&project);

    dev.signal(signal);
    let (code, _, before) = recv_close(&mut device).await;
    assert_eq!(code, 1001, "{signal}");
    assert!(
        before.iter().any(|m| m["type"] == "core:disconnect"),
        "{signal}: {before:?}"
    );
    let status = dev.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{signal}: {status:?}");
    assert!(!session_file.exists(), "{signal}: the session file is left");
    let after = std::fs::read_to_string(&build_file).expect("build file");
    assert!(
        !after.contains(&dev.ready.token),
        "{signal}: the token stayed in the marker block"
    );
    assert!(
        after.contains("\"JETSTART_TOKEN\", \"\\\"\\\"\""),
        "{signal}: {after}"
    );
    assert!(
        wait_dead(child).await,
        "{signal}: the build's child outlived the server"
    );
    assert!(!alive(leader), "{signal}: the build script outlived the server");
    assert_eq!(group_members(leader), Vec::<i32>::new(), "{signal}");
}

#[tokio::test]
async fn sighup_is_a_clean_stop() {
    stops_cleanly_on(Signal::SIGHUP).await;
}

#[tokio::test]
async fn sigterm_is_a_clean_stop() {
    stops_cleanly_on(Signal::SIGTERM).await;
}

#[tokio::test]
async fn sigint_is_a_clean_stop() {
    stops_cleanly_on(Signal::SIGINT).await;
}

#[tokio::test]
async fn sigquit_is_a_clean_stop() {
    stops_cleanly_on(Signal::SIGQUIT).await;
}

// ---------------------------------------------------------------------------------------------
// Files read and written safely
// ---------------------------------------------------------------------------------------------

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn a_jetstart_symlink_is_replaced_by_a_private_folder_and_nothing_is_written_through_it() {
    let project = common::project();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    std::fs::write(elsewhere.path().join(".gitignore"), "keep me\n").expect("write");
    std::fs::write(elsewhere.path().join("session.properties"), "not yours\n").expect("write");
    let link = project.path().join(".jetstart");
    symlink(elsewhere.path(), &link).expect("symlink");

    let mut dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let meta = std::fs::symlink_metadata(&link).expect("metadata");
    assert!(meta.is_dir() && !meta.file_type().is_symlink());
    assert_eq!(mode_of(&link), 0o700);
    assert!(link.join("session.properties").is_file());
    dev.wait_stderr("was a symbolic link").await;
    dev.sigterm();
    assert_eq!(dev.wait_exit().await.code(), Some(0));
    let read = |name: &str| std::fs::read_to_string(elsewhere.path().join(name)).expect(name);
    assert_eq!(read(".gitignore"), "keep me\n");
    assert_eq!(read("session.properties"), "not yours\n");
    assert_eq!(dev.stderr().matches("was a symbolic link").count(), 1);
}

#[tokio::test]
async fn a_jetstart_link_to_the_project_itself_leaves_its_gitignore_alone() {
    let project = common::project();
    std::fs::write(project.path().join(".gitignore"), "build/\n").expect("write");
    symlink(".", project.path().join(".jetstart")).expect("symlink");
    let _dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    let gitignore = std::fs::read_to_string(project.path().join(".gitignore")).expect("read");
    assert_eq!(gitignore, "build/\n");
    assert!(!project.path().join("session.properties").exists());
}

#[tokio::test]
async fn an_existing_jetstart_folder_is_made_private() {
    let project = common::project();
    let dir = project.path().join(".jetstart");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _dev = Dev::start(project.path(), &["--no-initial-build"]).await;
    assert_eq!(mode_of(&dir), 0o700);
}

/// `ulimit -v` bounds the server's memory, so that the old behaviour (reading `/dev/zero` to
/// the end) fails the test quickly instead of eating the machine.
const MEMORY_BOUND: [&str; 3] = ["sh", "-c", "ulimit -v 4000000 && exec \"$0\" \"$@\""];

#[tokio::test]
async fn project_files_that_never_end_are_not_read() {
    let project = common::project();
    let config = project.path().join("jetstart.config.json");
    std::fs::remove_file(&config).expect("rm");
    symlink("/dev/zero", &config).expect("symlink");
    let build_file = project.path().join("app/build.gradle");
    std::fs::remove_file(&build_file).expect("rm");
    nix::unistd::mkfifo(&build_file, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");

    let dev = Dev::start_wrapped(&MEMORY_BOUND, project.path(), &["--no-initial-build"], &[]).await;
    let folder = project.path().file_name().and_then(|n| n.to_str()).expect("name");
    assert_eq!(dev.ready.project_name, folder, "the name comes from the folder");
    let stderr = dev.wait_stderr("jetstart.config.json").await;
    assert!(stderr.contains("not read"), "{stderr}");
    dev.wait_stderr("is not a regular file (a FIFO)").await;
    let (status, _) = (common::http::get(dev.ready.http_port, "/health").await.status, ());
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------------------------
// Watching degrades, never dies
// ---------------------------------------------------------------------------------------------

/// How to run the server so that permission bits apply to it: as `nobody` when the tests run as
/// root (the project is handed to nobody, and the binary is run from a copy nobody can reach:
/// the checkout may sit in a folder only root can enter), as it is otherwise. Returns the
/// wrapper for [`Dev::start_wrapped`] and the folder holding the copy.
fn unprivileged(project: &Path) -> (Vec<String>, Option<tempfile::TempDir>) {
    if common::gradle::permissions_are_enforced() {
        return (Vec::new(), None);
    }
    fn give(path: &Path) {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).expect("chown");
        if path.is_dir() && !path.is_symlink() {
            for entry in std::fs::read_dir(path).expect("read dir") {
                give(&entry.expect("entry").path());
            }
        }
    }
    give(project);
    let copy = tempfile::Builder::new()
        .prefix("jetstart-bin-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(copy.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let binary = copy.path().join("jetstart-rs");
    std::fs::copy(env!("CARGO_BIN_EXE_jetstart-rs"), &binary).expect("copy the binary");
    // `$0` is the test build's path, which the wrapper replaces with the copy.
    let script = format!(
        "exec setpriv --reuid=65534 --regid=65534 --clear-groups {} \"$@\"",
        binary.display()
    );
    (vec!["sh".into(), "-c".into(), script], Some(copy))
}

#[tokio::test]
async fn an_unreadable_folder_is_skipped_with_one_warning_and_the_rest_is_watched() {
    let project = common::project();
    let locked = project.path().join("app/build-tools-cache/locked");
    std::fs::create_dir_all(locked.join("inner")).expect("mkdir");
    let (wrapper, _copy) = unprivileged(project.path());
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let mut dev = Dev::start_wrapped(
        &wrapper,
        project.path(),
        &["--no-initial-build", "--build-cmd", "true"],
        &[],
    )
    .await;
    dev.wait_stderr("not watching app/build-tools-cache/locked").await;
    std::fs::write(project.path().join(STRINGS), "<resources/>\n").expect("save");
    dev.event("build-start").await;
    assert_eq!(
        dev.stderr().matches("not watching").count(),
        1,
        "{}",
        dev.stderr()
    );
    assert!(!dev.stderr().contains("file watching is off"), "{}", dev.stderr());
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
}

#[tokio::test]
async fn a_project_folder_deleted_and_recreated_is_watched_again() {
    let project = common::project();
    let root = project.path().to_path_buf();
    let mut dev = Dev::start(&root, &["--no-initial-build", "--build-cmd", "true"]).await;
    std::fs::remove_dir_all(&root).expect("rm -r");
    dev.wait_stderr("is gone; watching for it to come back").await;
    std::fs::create_dir(&root).expect("mkdir");
    common::write_project(&root);
    dev.wait_stderr("is back; watching it again").await;
    dev.event("build-start").await;
    dev.event("build-error").await;
    std::fs::write(
        root.join(STRINGS),
        "<resources><string name=\"a\">b</string></resources>\n",
    )
    .expect("save");
    dev.event("build-start").await;
}

// ---------------------------------------------------------------------------------------------
// Device text on every output path
// ---------------------------------------------------------------------------------------------

/// Every trick from the issue: OSC 52 (clipboard), a window title, clear screen, a forged
/// `Token:` line, a C1 CSI, DEL, a right-to-left override.
const EVIL: &str =
    "Pixel\x1b]52;c;ZXZpbA==\x07\x1b]0;pwned\x07\x1b[2J\r\nToken: forged\u{9b}31m\u{7f}\u{202e}kcab";
/// What must never reach the terminal or the page raw.
const RAW: &[&str] = &[
    "\x1b]52",
    "\x1b]0;pwned",
    "\x1b[2J",
    "\u{9b}",
    "\u{7f}",
    "\u{202e}",
    "\x07",
];

fn evil_connect(session_id: &str, token: &str) -> Value {
    json!({"type": "client:connect", "sessionId": session_id, "token": token,
           "deviceInfo": {"id": EVIL, "model": EVIL, "platform": EVIL, "architecture": EVIL}})
}

fn assert_clean(what: &str, text: &str) {
    for raw in RAW {
        assert!(!text.contains(raw), "{what} shows {raw:?} raw:\n{text:?}");
    }
    for line in text.split(['\n', '\r']) {
        assert!(
            !line.trim_start().starts_with("Token: forged"),
            "{what} shows a forged line"
        );
    }
}

#[tokio::test]
async fn device_text_is_sanitised_on_every_output_path() {
    let project = common::project();
    let mut term = PtyDev::start(project.path(), &[]);
    term.wait_for("Token: ", 1).await;
    let (session_id, token, ws_port) = term.credentials();
    let banner = term.output();
    let http_port: u16 = banner
        .split("http://localhost:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("the HTTP port in the banner");

    let mut ws: Ws = ws_connect(&format!("ws://127.0.0.1:{ws_port}")).await;
    send_json(&mut ws, &evil_connect(&session_id, &token)).await;
    recv_type(&mut ws, "core:connected").await;
    send_json(
        &mut ws,
        &json!({"type": "client:status", "status": EVIL, "message": EVIL}),
    )
    .await;
    send_json(
        &mut ws,
        &json!({"type": "client:log", "log": {"id": "1", "timestamp": 0, "level": EVIL, "tag": EVIL,
                "message": EVIL, "source": EVIL}}),
    )
    .await;
    recv_type(&mut ws, "core:log").await;
    term.press("d");
    // The device line of the list, the connected line, the status line and the log line.
    let output = term.wait_for("Pixel ]52;c;ZXZpbA==", 4).await;
    assert_clean("the terminal", &output);

    let page = common::http::get(http_port, "/").await.text();
    assert!(
        page.contains("Pixel ]52;c;ZXZpbA=="),
        "the device is listed on the page"
    );
    assert_clean("the pairing page", &page);

    // --json: the exact text, escaped so that printing a field shows nothing raw either.
    let json_project = common::project();
    let mut dev = Dev::start(json_project.path(), &["--no-initial-build"]).await;
    let mut ws = ws_connect(&dev.ws_url()).await;
    send_json(&mut ws, &evil_connect(&dev.ready.session_id, &dev.ready.token)).await;
    recv_type(&mut ws, "core:connected").await;
    let event = dev.event("client-connected").await;
    assert_eq!(event["deviceInfo"]["model"], EVIL);
    let stdout = dev.stdout();
    assert!(!stdout.chars().any(|c| c.is_control() && c != '\n'), "{stdout:?}");
    assert!(!stdout.contains('\u{202e}'), "{stdout:?}");
    assert_clean("the --json human log", &dev.stderr());
}

// ---------------------------------------------------------------------------------------------
// Bounded by bytes
// ---------------------------------------------------------------------------------------------

/// `dev --json` for `project` on loopback with `RUST_LOG=<log>` and stderr going to `stderr`,
/// once it is ready: the child, the rest of its stdout, and the `ready` event.
async fn json_dev(
    project: &Path,
    log: &str,
    stderr: Stdio,
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    Value,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetstart-rs"))
        .args(["dev", "--json", "--no-initial-build"])
        .args(common::LOOPBACK)
        .arg("--project")
        .arg(project)
        .env("RUST_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut events = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready: Value = serde_json::from_str(
        &within("ready", events.next_line())
            .await
            .expect("read")
            .expect("a line"),
    )
    .expect("JSON");
    (child, events, ready)
}

/// Device logs of about a megabyte each while nobody reads the server's stderr (a terminal
/// paused with Ctrl+S): the server holds a bounded amount of them, not all of them.
#[tokio::test]
async fn huge_device_lines_under_a_stalled_terminal_take_bounded_memory() {
    const LINES: usize = 100;
    const GROWTH_KIB: u64 = 48 * 1024;
    let project = common::project();
    // stderr is piped and never read.
    let (mut child, mut events, ready) = json_dev(project.path(), "jetstart=info", Stdio::piped()).await;
    let _stalled = child.stderr.take();
    // The rest of stdout is read, so only stderr stalls.
    tokio::spawn(async move { while let Ok(Some(_)) = events.next_line().await {} });
    let pid = child.id().expect("pid");
    let ws_url = format!("ws://127.0.0.1:{}", ready["wsPort"]);
    let (ws, _) = common::gradle::connect_with(
        &ws_url,
        ready["session"]["id"].as_str().expect("id"),
        ready["session"]["token"].as_str().expect("token"),
    )
    .await;
    let before = rss_kib(pid);
    let line = "x".repeat(1_000_000);
    let (mut sink, mut stream) = ws.split();
    let relayed = tokio::spawn(async move {
        let mut count = 0;
        while count < LINES {
            match stream.next().await {
                Some(Ok(message)) if message.to_text().is_ok_and(|t| t.contains("core:log")) => count += 1,
                Some(Ok(_)) => {}
                other => panic!("the device's socket ended: {other:?}"),
            }
        }
    });
    for i in 0..LINES {
        let message = json!({"type": "client:log", "log": {"id": i.to_string(), "timestamp": 0,
                             "level": "info", "tag": "Big", "message": line, "source": "app"}});
        futures_util::SinkExt::send(
            &mut sink,
            tokio_tungstenite::tungstenite::Message::text(message.to_string()),
        )
        .await
        .expect("send");
    }
    tokio::time::timeout(Duration::from_secs(60), relayed)
        .await
        .expect("every log relayed back")
        .expect("reader");
    let after = rss_kib(pid);
    assert!(
        after.saturating_sub(before) < GROWTH_KIB,
        "the server grew from {before} KiB to {after} KiB while its terminal was stalled"
    );
}

/// Devices with a huge `deviceInfo` coming and going while the `--json` reader has stopped
/// reading: the `client-connected` events waiting for it are bounded too.
#[tokio::test]
async fn huge_device_info_under_a_stalled_json_reader_takes_bounded_memory() {
    const DEVICES: usize = 100;
    const GROWTH_KIB: u64 = 40 * 1024;
    let project = common::project();
    // Only the first line is read; the pipe stays open and full from then on.
    let (child, events, ready) = json_dev(project.path(), "jetstart=warn", Stdio::null()).await;
    let pid = child.id().expect("pid");
    let ws_url = format!("ws://127.0.0.1:{}", ready["wsPort"]);
    let (id, token) = (
        ready["session"]["id"].as_str().expect("id"),
        ready["session"]["token"].as_str().expect("token"),
    );
    let before = rss_kib(pid);
    let padding = "d".repeat(700_000);
    for n in 0..DEVICES {
        let mut ws = ws_connect(&ws_url).await;
        let hello = json!({"type": "client:connect", "sessionId": id, "token": token,
                           "deviceInfo": {"id": n.to_string(), "model": "Big", "extra": padding}});
        send_json(&mut ws, &hello).await;
        recv_type(&mut ws, "core:connected").await;
        within("close", ws.close(None)).await.expect("close");
    }
    let after = rss_kib(pid);
    assert!(
        after.saturating_sub(before) < GROWTH_KIB,
        "the server grew from {before} KiB to {after} KiB while its --json reader was stalled"
    );
    drop(events);
}
