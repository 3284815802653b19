//! Helpers for the Gradle-integration and session-lifecycle tests: fixture copies, file
//! snapshots, a `.properties` reader, `init` runs, and connecting with given credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::{connect_message, recv_close, recv_type, send_json, within, ws_connect, Ws};

/// A temp copy of `tests/fixtures/<name>`.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("jetstart-gradle-")
        .tempdir()
        .expect("tempdir");
    copy_dir(&super::fixture(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

/// Every file under `root` (relative path → bytes).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, std::fs::read(&path).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Permission bits of `path`.
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

/// Sets the permission bits of `path`.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// True if permission bits stop this process from writing (false when running as root).
pub fn permissions_are_enforced() -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    chmod(dir.path(), 0o555);
    let enforced = std::fs::write(dir.path().join("probe"), b"x").is_err();
    chmod(dir.path(), 0o755);
    enforced
}

/// `path` made immutable with `chattr +i` until dropped. Unlike permission bits this stops root
/// too: no file can be created in an immutable folder, and an immutable file can't be replaced.
pub struct Immutable(PathBuf);

impl Immutable {
    /// `None` where `chattr` is missing, the filesystem has no such attribute, or this process
    /// may not set it (it needs CAP_LINUX_IMMUTABLE, i.e. root).
    pub fn set(path: &Path) -> Option<Self> {
        let done = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        done.success().then(|| Self(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        // Must run even when the test failed, or the temp dir could not be removed.
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// Runs `jetstart-rs init --project <dir>` (blocking; init never waits on anything).
pub fn run_init(project: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_jetstart-rs"))
        .arg("init")
        .arg("--project")
        .arg(project)
        .output()
        .expect("run jetstart-rs init")
}

/// Reads a `.properties` file the way `java.util.Properties.load` does, for the subset of the
/// format the server writes: one `key=value` per line, `#` comments, backslash escapes.
pub fn read_properties(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).expect("read properties");
    assert!(
        text.is_ascii(),
        "a .properties file must be ASCII (ISO-8859-1 readers): {text:?}"
    );
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with('!') || line.trim().is_empty() {
            continue;
        }
        let (key, value) = split_unescaped_equals(line);
        out.insert(unescape(key), unescape(value));
    }
    out
}

fn split_unescaped_equals(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' => return (&line[..i], &line[i + 1..]),
            _ => i += 1,
        }
    }
    panic!("no `=` in properties line {line:?}")
}

fn unescape(text: &str) -> String {
    let mut units: Vec<u16> = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            units.extend(c.encode_utf16(&mut [0; 2]).iter());
            continue;
        }
        let escaped = chars.next().expect("escape at end of line");
        let unit = match escaped {
            't' => '\t' as u16,
            'n' => '\n' as u16,
            'r' => '\r' as u16,
            'f' => 0x0c,
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                u16::from_str_radix(&hex, 16).expect("\\u escape")
            }
            other => other as u16,
        };
        units.push(unit);
    }
    String::from_utf16(&units).expect("valid UTF-16")
}

/// Values of the marker block lines (`NAME` → Java literal text as written in the file).
pub fn marker_fields(build_file: &str) -> Vec<(String, String)> {
    let start = build_file
        .find("// JetStart injected fields")
        .expect("start marker");
    let end = build_file.find("// End JetStart fields").expect("end marker");
    build_file[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let rest = line
                .trim()
                .strip_prefix("buildConfigField \"String\", \"")
                .unwrap_or_else(|| panic!("unexpected line in marker block: {line:?}"));
            let (name, value) = rest.split_once("\", ").expect("name then value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The Groovy string `"\"value\""` of a plain (escape-free) value, as the marker block holds it.
pub fn groovy_java_string(value: &str) -> String {
    format!("\"\\\"{value}\\\"\"")
}

/// Connects with `session_id`/`token` and returns the socket after `core:connected`.
pub async fn connect_with(ws_url: &str, session_id: &str, token: &str) -> (Ws, Value) {
    let mut ws = ws_connect(ws_url).await;
    send_json(&mut ws, &connect_message(session_id, token)).await;
    let connected = recv_type(&mut ws, "core:connected").await;
    (ws, connected)
}

/// Connects with `session_id`/`token` and returns the close code the server answers with.
pub async fn rejected_with(ws_url: &str, session_id: &str, token: &str) -> u16 {
    let mut ws = ws_connect(ws_url).await;
    send_json(&mut ws, &connect_message(session_id, token)).await;
    let (code, _, before) = recv_close(&mut ws).await;
    assert!(before.is_empty(), "rejected socket got messages: {before:?}");
    code
}

/// Polls `cond` every 20 ms until it holds (bounded by [`super::WAIT`]).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
