//! Helpers for terminal tests: `dev` under a pseudo-terminal, keys, output and tty state.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};

use super::WAIT;

/// `jetstart-rs dev` (human mode) running on a pseudo-terminal; killed on drop.
pub struct PtyDev {
    child: Box<dyn Child + Send + Sync>,
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    output: Arc<Mutex<String>>,
}

impl PtyDev {
    /// Starts `dev` for `project` on loopback ephemeral ports with `env` added.
    pub fn start(project: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_sized(project, env, 120)
    }

    /// Like [`PtyDev::start`] in a terminal `cols` columns wide.
    pub fn start_sized(project: &Path, env: &[(&str, &str)], cols: u16) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 50,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("openpty");
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_jetstart-rs"));
        cmd.arg("dev");
        cmd.arg("--project");
        cmd.arg(project);
        cmd.args(super::LOOPBACK);
        cmd.arg("--no-initial-build");
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("NO_COLOR");
        cmd.env("RUST_LOG", "jetstart=info");
        for (key, value) in env {
            cmd.env(key, value);
        }
        let child = pair.slave.spawn_command(cmd).expect("spawn dev on a pty");
        // The child has its own handle now; ours would keep the pty open after it exits.
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let output = Arc::new(Mutex::new(String::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("output lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            master: pair.master,
            writer,
            output,
        }
    }

    /// Everything the terminal showed so far (stdout and stderr, as a user sees them).
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    /// Waits until `needle` has appeared `times` times; returns the output.
    pub async fn wait_for(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let output = self.output();
            if output.matches(needle).count() >= times {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "terminal never showed {needle:?} {times} time(s):\n{output}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the output satisfies `done`; returns the output. `what` names it on timeout.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let output = self.output();
            if done(&output) {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "terminal never showed {what}:\n{output}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` to the `dev` process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.process_id().expect("dev is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
        nix::sys::signal::kill(pid, signal).expect("send signal");
    }

    /// Types `keys`.
    pub fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).expect("type on the pty");
        self.writer.flush().expect("flush pty");
    }

    /// `(session id, token, ws port)` from the banner.
    pub fn credentials(&self) -> (String, String, u16) {
        let output = self.output();
        let find = |prefix: &str| {
            output
                .lines()
                .find_map(|l| l.trim_end_matches('\r').trim_start().strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{output}"))
                .trim()
                .to_owned()
        };
        let socket = find("Socket:");
        let port = socket
            .rsplit(':')
            .next()
            .expect("port")
            .parse()
            .expect("ws port number");
        (find("Session: "), find("Token: "), port)
    }

    /// The terminal's settings as `stty -a` prints them.
    pub fn stty(&self) -> String {
        let tty: PathBuf = self.master.tty_name().expect("pty has a name");
        let file = std::fs::File::open(&tty).expect("open the pty's terminal");
        let out = std::process::Command::new("stty")
            .arg("-a")
            .stdin(file)
            .output()
            .expect("run stty");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) for exit; returns the exit code.
    pub async fn wait_exit(&mut self) -> u32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.exit_code();
            }
            assert!(Instant::now() < deadline, "dev did not exit:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PtyDev {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// How many QR codes the output holds: runs of at least [`QR_MIN_ROWS`] consecutive lines made
/// only of half blocks and spaces (at least one block each), as the banner draws them.
pub fn qr_blocks(output: &str) -> usize {
    let is_qr_row = |line: &str| {
        let line = line.trim_end_matches('\r');
        line.chars().any(|c| matches!(c, '█' | '▀' | '▄'))
            && line.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' '))
    };
    let (mut blocks, mut run) = (0, 0);
    for line in output.split('\n') {
        if is_qr_row(line) {
            run += 1;
            if run == QR_MIN_ROWS {
                blocks += 1;
            }
        } else {
            run = 0;
        }
    }
    blocks
}

/// A version-1 QR code with its quiet zone is 25 modules high: 13 half-block rows. Fewer
/// consecutive block rows are not a QR code.
pub const QR_MIN_ROWS: usize = 13;

/// True if `flag` appears as a word in `stty -a` output (e.g. `icanon`, not `-icanon`).
pub fn stty_has(stty: &str, flag: &str) -> bool {
    stty.split_whitespace()
        .any(|word| word.trim_end_matches(';') == flag)
}

/// A `jetstart-rs` subcommand (`connect`, `logs`) with piped output; killed on drop.
pub struct Tool {
    pub child: tokio::process::Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Tool {
    /// Runs `jetstart-rs <args>` with `env` added (stdout is a pipe, not a terminal).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetstart-rs"))
            .args(args)
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn jetstart-rs");
        let collect = |pipe: Box<dyn tokio::io::AsyncRead + Send + Unpin>| {
            let all = Arc::new(Mutex::new(String::new()));
            let sink = all.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
            all
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Waits until stdout (or stderr, with `on_stderr`) contains `needle`.
    pub async fn wait_for(&self, needle: &str, on_stderr: bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = if on_stderr { self.stderr() } else { self.stdout() };
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) for exit, then a moment for the pipes to drain; returns the status.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let status = super::within("the tool to exit", self.child.wait())
            .await
            .expect("wait");
        tokio::time::sleep(Duration::from_millis(100)).await;
        status
    }
}
