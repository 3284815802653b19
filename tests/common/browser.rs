//! A real browser for the dashboard tests: Debian's Chromium, headless, with a fresh profile, in
//! a process group of its own that is killed on drop; and a Node.js driver script that attaches
//! Playwright (playwright-core from npm) to it over the DevTools protocol. `.ci/run` installs
//! both; elsewhere a test without them says it is skipped (and fails where
//! `JETSTART_REQUIRE_REAL_TOOLS` is set).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::build::missing_real_tool;
use super::WAIT;

/// Chromium's flags for a quiet, reproducible headless run that dials nothing but what the page
/// asks for (no updates, sync, QUIC or background requests).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

/// Where `.ci/run` installs playwright-core (`npm install --prefix target/browser-tools`).
const PLAYWRIGHT_DIR: &str = "target/browser-tools/node_modules/playwright-core";

/// The programs a browser test needs.
pub struct BrowserTools {
    pub chromium: PathBuf,
    pub node: PathBuf,
    /// The playwright-core package folder.
    pub playwright: PathBuf,
}

/// The browser tools, or `None` (the test is skipped) when one is missing, unless real tools are
/// required. `JETSTART_CHROMIUM` and `JETSTART_PLAYWRIGHT_CORE` override where they are looked for.
pub fn browser_tools() -> Option<BrowserTools> {
    let chromium = std::env::var_os("JETSTART_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path("chromium"))
        .or_else(|| on_path("chromium-browser"));
    let node = on_path("node");
    let playwright = std::env::var_os("JETSTART_PLAYWRIGHT_CORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(PLAYWRIGHT_DIR));
    match (chromium, node, playwright.join("package.json").is_file()) {
        (Some(chromium), Some(node), true) => Some(BrowserTools {
            chromium,
            node,
            playwright,
        }),
        _ => {
            missing_real_tool(
                "Chromium, Node.js and playwright-core (apt-get install chromium nodejs; \
                 npm install --prefix target/browser-tools playwright-core)",
            );
            None
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Kills a child's whole process group on drop (Chromium's renderers and helpers, a driver's
/// children), then reaps the child.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.start_kill();
        let _ = self.0.try_wait();
    }
}

/// A headless Chromium listening for the DevTools protocol on a loopback port.
pub struct Chromium {
    _process: Group,
    _profile: tempfile::TempDir,
    /// `ws://127.0.0.1:<port>/devtools/browser/<id>`.
    pub endpoint: String,
    stderr: Arc<Mutex<String>>,
}

impl Chromium {
    /// Starts Chromium with a new empty profile and waits for its DevTools endpoint.
    pub async fn launch(tools: &BrowserTools) -> Self {
        let profile = tempfile::Builder::new()
            .prefix("jetstart-chromium-")
            .tempdir()
            .expect("tempdir");
        let mut child = Command::new(&tools.chromium)
            .args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let pipe = child.stderr.take().expect("stderr");
        let process = Group(child);
        let stderr = Arc::new(Mutex::new(String::new()));
        let (endpoint_tx, mut endpoint_rx) = mpsc::unbounded_channel();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("ws://") {
                    let _ = endpoint_tx.send(line[at..].trim().to_owned());
                }
                let mut all = sink.lock().expect("lock");
                all.push_str(&line);
                all.push('\n');
            }
        });
        let endpoint = tokio::time::timeout(WAIT, endpoint_rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                panic!(
                    "Chromium printed no DevTools endpoint; stderr:\n{}",
                    stderr.lock().expect("lock")
                )
            });
        Self {
            _process: process,
            _profile: profile,
            endpoint,
            stderr,
        }
    }

    /// What Chromium wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }
}

/// A Node.js script driving the browser: it prints `<kind> <json>` lines on stdout.
pub struct Driver {
    _process: Group,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Driver {
    /// Runs `node <script> <args>` with `PLAYWRIGHT_CORE` naming the package to load.
    pub fn spawn(tools: &BrowserTools, script: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(&tools.node)
            .arg(script)
            .args(args)
            .env("PLAYWRIGHT_CORE", &tools.playwright)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = super::collect_lines(stderr_pipe);
        Self {
            _process: Group(child),
            lines,
            stderr,
        }
    }

    /// Waits (at most `limit`) for the driver's next line of `kind` and returns its JSON value;
    /// an `error` line, an exit or the time limit fails the test.
    pub async fn expect(&mut self, kind: &str, limit: Duration) -> serde_json::Value {
        let lines = &mut self.lines;
        let found = tokio::time::timeout(limit, async {
            while let Some(line) = lines.recv().await {
                let (head, value) = line.split_once(' ').unwrap_or((line.as_str(), "null"));
                if head == kind || head == "error" {
                    return Some((head.to_owned(), value.to_owned()));
                }
            }
            None
        })
        .await;
        let stderr = self.stderr.lock().expect("lock").clone();
        match found {
            Ok(Some((head, value))) if head == kind => serde_json::from_str(&value)
                .unwrap_or_else(|e| panic!("driver line is not JSON ({e}): {value}")),
            Ok(Some((_, error))) => panic!("the browser driver failed: {error}\nstderr:\n{stderr}"),
            Ok(None) => panic!("the browser driver exited before `{kind}`; stderr:\n{stderr}"),
            Err(_) => panic!("timed out waiting for the driver's `{kind}`; stderr:\n{stderr}"),
        }
    }
}
