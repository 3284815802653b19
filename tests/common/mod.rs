//! Shared helpers for integration tests: the real binary on ephemeral ports, real WebSocket
//! clients, bounded waits. Every child process is killed on drop.
#![allow(dead_code)]

pub mod browser;
pub mod build;
pub mod chaos;
pub mod gradle;
pub mod http;
#[cfg(target_os = "linux")]
pub mod threads;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// `dev` flags every test server uses: ephemeral ports, loopback only.
pub const LOOPBACK: &[&str] = &[
    "--port",
    "0",
    "--ws-port",
    "0",
    "--bind",
    "127.0.0.1",
    "--host",
    "127.0.0.1",
];

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Field `n` (from 1) of a `/proc/<pid>/stat` line (proc_pid_stat(5)). The `(comm)` field may
/// hold spaces and parentheses; the fields after its last `)` hold neither.
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)
}

/// Awaits `fut` at most [`WAIT`], failing the test with `what` otherwise.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A minimal Android project in a temp dir (settings.gradle, app/build.gradle, sources).
pub fn project() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("jetstart-test-")
        .tempdir()
        .expect("tempdir");
    write_project(dir.path());
    dir
}

/// Writes the minimal project files into `root`.
pub fn write_project(root: &Path) {
    let files: &[(&str, &str)] = &[
        ("settings.gradle", "rootProject.name = \"demo\"\ninclude ':app'\n"),
        (
            "app/build.gradle",
            "android {\n    namespace 'com.example.demo'\n    defaultConfig {\n        applicationId \"com.example.demo\"\n        minSdk 24\n        targetSdk 34\n        versionCode 7\n        versionName \"1.2.3\"\n    }\n}\n",
        ),
        ("app/src/main/java/com/example/demo/MainActivity.kt", "package com.example.demo\n\nclass MainActivity\n"),
        ("app/src/main/res/values/strings.xml", "<resources><string name=\"app_name\">Demo</string></resources>\n"),
        ("jetstart.config.json", "{\"projectName\":\"demo\"}\n"),
    ];
    for (path, contents) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write project file");
    }
}

/// Path of a stand-in tool in `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The `ready` event's contents.
#[derive(Debug, Clone)]
pub struct Ready {
    pub session_id: String,
    pub token: String,
    pub project_name: String,
    pub host: String,
    pub http_port: u16,
    pub ws_port: u16,
    pub qr: String,
}

impl Ready {
    fn from_event(event: &Value) -> Self {
        let s = |v: &Value| v.as_str().expect("string field").to_owned();
        let port = |v: &Value| u16::try_from(v.as_u64().expect("port")).expect("port range");
        Self {
            session_id: s(&event["session"]["id"]),
            token: s(&event["session"]["token"]),
            project_name: s(&event["session"]["projectName"]),
            host: s(&event["host"]),
            http_port: port(&event["httpPort"]),
            ws_port: port(&event["wsPort"]),
            qr: s(&event["qr"]),
        }
    }
}

/// A running `jetstart-rs dev --json` on ephemeral loopback ports.
pub struct Dev {
    pub child: Child,
    pub ready: Ready,
    events: mpsc::UnboundedReceiver<Value>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl Dev {
    /// Starts `dev --json` for `project` with `extra` flags and waits for `ready`.
    pub async fn start(project: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(project, extra, &[]).await
    }

    /// Like [`Dev::start`] with extra environment variables.
    pub async fn start_with_env(project: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(&[], project, extra, env).await
    }

    /// Like [`Dev::start_with_env`], started through `wrapper` (a program and its arguments, the
    /// binary's path and arguments following), e.g. `sh -c 'ulimit -n 64 && exec "$0" "$@"'`.
    /// The wrapper must `exec` the binary, so that the child is the server itself.
    pub async fn start_wrapped(
        wrapper: &[&str],
        project: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_jetstart-rs");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.arg("dev")
            .arg("--project")
            .arg(project)
            .arg("--json")
            .args(LOOPBACK)
            .args(extra)
            .env("RUST_LOG", "jetstart=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn jetstart-rs");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, mut events) = mpsc::unbounded_channel();
        let raw_stdout = Arc::new(Mutex::new(String::new()));
        let raw_sink = raw_stdout.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                {
                    let mut all = raw_sink.lock().expect("stdout lock");
                    all.push_str(&line);
                    all.push('\n');
                }
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = collect_lines(stderr_pipe);
        let first = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no ready event; stderr:\n{}", stderr.lock().expect("lock")))
            .unwrap_or_else(|| {
                panic!(
                    "dev exited before ready; stderr:\n{}",
                    stderr.lock().expect("lock")
                )
            });
        assert_eq!(first["event"], "ready", "first event must be ready: {first}");
        Self {
            child,
            ready: Ready::from_event(&first),
            events,
            stderr,
            stdout: raw_stdout,
        }
    }

    /// Everything the server wrote to stdout so far, as written.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    /// `ws://127.0.0.1:<wsPort>`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ready.ws_port)
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ready.http_port)
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until stderr contains `needle`; returns all of stderr.
    pub async fn wait_stderr(&self, needle: &str) -> String {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let stderr = self.stderr();
                if stderr.contains(needle) {
                    return stderr;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("stderr never contained {needle:?}:\n{}", self.stderr()))
    }

    /// Waits for the next JSON event named `name`, skipping others.
    pub async fn event(&mut self, name: &str) -> Value {
        self.event_within(name, WAIT).await
    }

    /// Like [`Dev::event`], waiting up to `wait` (for what follows a compile on a cold JVM).
    pub async fn event_within(&mut self, name: &str, wait: Duration) -> Value {
        let events = &mut self.events;
        let found = tokio::time::timeout(wait, async {
            while let Some(event) = events.recv().await {
                if event["event"] == name {
                    return Some(event);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(event)) => event,
            Ok(None) => panic!("dev exited before event {name}; stderr:\n{}", self.stderr()),
            Err(_) => panic!("timed out waiting for event {name}; stderr:\n{}", self.stderr()),
        }
    }

    /// Events received so far without waiting.
    pub fn drain_events(&mut self) -> Vec<Value> {
        let mut all = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            all.push(event);
        }
        all
    }

    /// Connects and authenticates a device; returns it after `core:connected`.
    pub async fn connect(&self) -> (Ws, Value) {
        let mut ws = ws_connect(&self.ws_url()).await;
        send_json(
            &mut ws,
            &connect_message(&self.ready.session_id, &self.ready.token),
        )
        .await;
        let connected = recv_type(&mut ws, "core:connected").await;
        (ws, connected)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.id().expect("running child");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("send a signal");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running child")
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        within("dev to exit", self.child.wait()).await.expect("wait")
    }
}

/// Collects every line `pipe` gives, as it comes, into the returned text.
pub fn collect_lines(pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut all = sink.lock().expect("lines lock");
            all.push_str(&line);
            all.push('\n');
        }
    });
    text
}

/// A `client:connect` message as JetStart's app sends it (no timestamp).
pub fn connect_message(session_id: &str, token: &str) -> Value {
    json!({
        "type": "client:connect",
        "sessionId": session_id,
        "token": token,
        "deviceInfo": {"id": "test-device", "model": "Pixel Test", "platform": "android",
                       "architecture": "arm64-v8a", "manufacturer": "Google", "apiLevel": 34}
    })
}

/// Opens a WebSocket to `url` on loopback port `port` from the source address `source`
/// (127.0.0.x standing in for another machine on the Wi-Fi).
pub async fn ws_connect_from(source: std::net::IpAddr, port: u16, url: &str) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::new(source, 0))
        .expect("bind a loopback source address");
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = within("TCP connect", socket.connect(server))
        .await
        .expect("connect");
    let upgrade = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream));
    within("WebSocket upgrade", upgrade).await.expect("upgrade").0
}

/// Opens a WebSocket (no authentication).
pub async fn ws_connect(url: &str) -> Ws {
    let (ws, _) = within("WebSocket connect", tokio_tungstenite::connect_async(url))
        .await
        .expect("connect");
    ws
}

pub async fn send_json(ws: &mut Ws, value: &Value) {
    within("send", ws.send(Message::text(value.to_string())))
        .await
        .expect("send");
}

/// Next text message as JSON, skipping pings and pongs; panics on close or timeout.
pub async fn recv_json(ws: &mut Ws) -> Value {
    loop {
        match within("a message", ws.next()).await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON message"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Next message of type `ty`, skipping other types.
pub async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let message = recv_json(ws).await;
        if message["type"] == ty {
            return message;
        }
    }
}

/// Reads until the close frame; returns its code and reason. Text messages before it are
/// returned too, in order.
pub async fn recv_close(ws: &mut Ws) -> (u16, String, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        match within("a close frame", ws.next()).await {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code.into(), frame.reason.to_string(), before)
            }
            Some(Ok(Message::Close(None))) => return (1005, String::new(), before),
            Some(Ok(Message::Text(text))) => before.push(serde_json::from_str(&text).expect("JSON message")),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
pub mod term;
