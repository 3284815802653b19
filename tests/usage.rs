//! Mistakes a user makes calling the tools, and what they get: one clear line and exit code 2
//! for bad usage, a warning (and a working server) where the mistake may be deliberate.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::{within, Dev};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

fn jetstart(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jetstart-rs"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("JETSTART_PORT")
        .env_remove("JETSTART_WS_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(args: &[&str]) -> Output {
    within("the command to end", jetstart(args).output())
        .await
        .expect("run")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_file_for_project_is_bad_usage_in_one_line() {
    let project = common::project();
    let file = project.path().join("settings.gradle");
    let output = run(&[
        "dev",
        "--project",
        file.to_str().expect("utf-8"),
        "--port",
        "0",
        "--ws-port",
        "0",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("is a file") && text.contains("settings.gradle"),
        "{text}"
    );
}

#[tokio::test]
async fn equal_ports_are_bad_usage() {
    let project = common::project();
    let dir = project.path().to_str().expect("utf-8");
    let output = run(&["dev", "--project", dir, "--port", "18792", "--ws-port", "18792"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--port and --ws-port must differ (both are 18792)"),
        "{}",
        stderr(&output)
    );
}

/// Starts `dev --json` with `args` and waits for `ready`; returns the child and the event.
async fn start_json(args: &[&str]) -> (tokio::process::Child, serde_json::Value) {
    let mut cmd = jetstart(&["dev", "--json", "--bind", "127.0.0.1"]);
    cmd.args(args);
    spawn_until_ready(cmd).await
}

/// Spawns a `dev --json` command and waits for its `ready` event.
async fn spawn_until_ready(mut cmd: Command) -> (tokio::process::Child, serde_json::Value) {
    let mut child = cmd.spawn().expect("spawn");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    within(
        "ready",
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await
    .expect("read");
    let ready = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a ready event ({e}): {line:?}"));
    (child, ready)
}

/// Stops `child` and returns everything it wrote to stderr.
async fn stop_and_read_stderr(mut child: tokio::process::Child) -> String {
    child.kill().await.expect("kill");
    let mut err = String::new();
    let mut stderr = child.stderr.take().expect("stderr");
    let _ = within("stderr", stderr.read_to_string(&mut err)).await;
    err
}

#[tokio::test]
async fn a_non_android_folder_and_a_foreign_host_are_warned_about_and_the_server_runs() {
    let empty = tempfile::tempdir().expect("tempdir");
    let dir = empty.path().to_str().expect("utf-8");
    // 10.255.255.1 is a private address that no interface here has (it is never dialled).
    let (child, ready) = start_json(&[
        "--project",
        dir,
        "--host",
        "10.255.255.1",
        "--port",
        "0",
        "--ws-port",
        "0",
    ])
    .await;
    assert_eq!(ready["host"], "10.255.255.1");
    let err = stop_and_read_stderr(child).await;
    assert!(err.contains("doesn't look like an Android project"), "{err}");
    assert!(
        err.contains("--host 10.255.255.1 is not an address of this computer"),
        "{err}"
    );
}

#[tokio::test]
async fn a_taken_default_port_moves_on_and_says_so() {
    // Hold the default HTTP port (or find it held already by something else: the same case).
    let _held = std::net::TcpListener::bind(("127.0.0.1", 8765)).ok();
    let project = common::project();
    let dir = project.path().to_str().expect("utf-8");
    let (child, ready) = start_json(&["--project", dir, "--host", "127.0.0.1", "--ws-port", "0"]).await;
    let port = ready["httpPort"].as_u64().expect("port");
    assert!(
        (8766..=8785).contains(&port),
        "the next free port after 8765: {ready}"
    );
    let err = stop_and_read_stderr(child).await;
    assert!(
        err.contains("port 8765 is in use") && err.contains(&format!("using {port}")),
        "{err}"
    );
}

#[tokio::test]
async fn plain_http_on_the_websocket_port_gets_426_and_a_hint() {
    let project = common::project();
    let dev = Dev::start(project.path(), &[]).await;
    let mut stream = within("connect", TcpStream::connect(("127.0.0.1", dev.ready.ws_port)))
        .await
        .expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    within("the answer", stream.read_to_string(&mut answer))
        .await
        .expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!(
            "Its HTTP port is http://127.0.0.1:{}/",
            dev.ready.http_port
        )),
        "{answer}"
    );
}

#[tokio::test]
async fn connect_mistakes_are_said_once_with_what_to_do() {
    // A payload that isn't one: bad usage.
    let output = run(&["connect", "garbage"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    // A stopped server: the OS error once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let payload = format!("127.0.0.1|1|{port}|s|t|demo");
    let output = run(&["connect", &payload]).await;
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
    assert!(text.contains("is `jetstart-rs dev` running?"), "{text}");

    // The HTTP port by mistake: a hint, not "HTTP error: 200 OK".
    let project = common::project();
    let dev = Dev::start(project.path(), &[]).await;
    let payload = format!("127.0.0.1|1|{}|s|t|demo", dev.ready.http_port);
    let output = tokio::time::timeout(Duration::from_secs(20), run(&["connect", &payload]))
        .await
        .expect("connect ends");
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("probably the server's HTTP port"), "{text}");
}

/// `dev` as a user who can read the project but not write to it: as root (which writes
/// anywhere) through `setpriv` as `nobody`, else directly with the folder made read-only.
fn read_only_dev(project: &std::path::Path) -> Option<Command> {
    use std::os::unix::fs::PermissionsExt;
    // Files this process creates are owned by its user: 0 is root.
    let running_as_root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(project).expect("metadata").uid() == 0
    };
    let mut cmd = if running_as_root {
        if !std::path::Path::new("/usr/bin/setpriv").exists() {
            eprintln!("skipped: running as root without setpriv");
            return None;
        }
        let mut cmd = Command::new("/usr/bin/setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_jetstart-rs"));
        cmd
    } else {
        Command::new(env!("CARGO_BIN_EXE_jetstart-rs"))
    };
    std::fs::set_permissions(project, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    cmd.args([
        "dev",
        "--json",
        "--bind",
        "127.0.0.1",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--ws-port",
        "0",
    ])
    .arg("--project")
    .arg(project)
    .env_remove("RUST_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    Some(cmd)
}

#[tokio::test]
async fn a_read_only_project_still_pairs_devices() {
    use std::os::unix::fs::PermissionsExt;
    // A folder `nobody` can enter (a temp dir is private to its owner).
    let parent = tempfile::Builder::new()
        .prefix("jetstart-ro-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let project = parent.path().join("project");
    common::write_project(&project);
    for entry in [
        "",
        "app",
        "app/src",
        "app/src/main",
        "app/src/main/java",
        "app/src/main/java/com",
        "app/src/main/java/com/example",
        "app/src/main/java/com/example/demo",
        "app/src/main/res",
        "app/src/main/res/values",
    ] {
        std::fs::set_permissions(project.join(entry), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let Some(cmd) = read_only_dev(&project) else {
        return;
    };
    let (child, ready) = spawn_until_ready(cmd).await;
    let ws_port = ready["wsPort"].as_u64().expect("wsPort");
    let mut ws = common::ws_connect(&format!("ws://127.0.0.1:{ws_port}")).await;
    let id = ready["session"]["id"].as_str().expect("id");
    let token = ready["session"]["token"].as_str().expect("token");
    common::send_json(&mut ws, &common::connect_message(id, token)).await;
    common::recv_type(&mut ws, "core:connected").await;
    let err = stop_and_read_stderr(child).await;
    assert!(err.contains("scanning the QR code still pairs a device"), "{err}");
    assert!(!project.join(".jetstart/session.properties").exists());
    std::fs::set_permissions(&project, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
}

#[tokio::test]
async fn one_server_per_project_and_a_dead_ones_lock_is_taken_over() {
    let project = common::project();
    let mut first = Dev::start(project.path(), &[]).await;
    let session_file = project.path().join(".jetstart/session.properties");
    let before = std::fs::read(&session_file).expect("session file");

    let dir = project.path().to_str().expect("utf-8");
    let args: Vec<&str> = ["dev", "--project", dir]
        .into_iter()
        .chain(common::LOOPBACK.iter().copied())
        .collect();
    let output = run(&args).await;
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    let pid = first.child.id().expect("running");
    assert!(
        text.contains("another jetstart-rs dev is already running for this project")
            && text.contains(&format!("pid {pid}"))
            && text.contains(&format!("http://localhost:{}", first.ready.http_port)),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&session_file).expect("session file"),
        before,
        "the first one's file untouched"
    );

    // Killed outright, the first leaves its lock file behind; the next server takes it.
    first.child.start_kill().expect("SIGKILL");
    first.wait_exit().await;
    let second = Dev::start(project.path(), &[]).await;
    assert_ne!(second.ready.session_id, first.ready.session_id);
}
