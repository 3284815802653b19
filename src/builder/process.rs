//! Running one build tool: its own process group, output streamed line by line with bounded
//! memory, a bounded tail, and a deadline after which the whole group is killed.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest line kept; the rest of a longer line is dropped, so one endless line (a minified
/// JS dump, a binary accidentally cat'ed) cannot grow memory without bound.
pub const MAX_LINE_BYTES: usize = 4 * 1024;
/// Lines of output kept for `core:build-error` `details.log`.
pub const TAIL_LINES: usize = 200;
/// Bytes of output kept for `core:build-error` `details.log` (a phone shows it; keep it small).
pub const TAIL_BYTES: usize = 64 * 1024;
/// How long a timed-out build gets between SIGTERM and SIGKILL to write its last words.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// On shutdown `dev` waits only 300 ms for the builder, so the grace must be shorter.
pub const STOP_GRACE: Duration = Duration::from_millis(100);
/// Lines waiting between the pipe readers and the consumer; a full queue pauses the readers,
/// which in turn makes the tool block on write: back-pressure, not buffering.
const LINE_QUEUE: usize = 256;

/// The last lines of a tool's output, bounded in lines and bytes.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    /// Appends a line, dropping the oldest ones beyond [`TAIL_LINES`] / [`TAIL_BYTES`].
    pub fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || (self.bytes > TAIL_BYTES && self.lines.len() > 1) {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len() + 1;
            }
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// The kept lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines().collect::<Vec<_>>().join("\n")
    }
}

/// How a tool run ended.
#[derive(Debug)]
pub enum Exit {
    /// It exited on its own.
    Exited(ExitStatus),
    /// It ran past its deadline and its process group was killed.
    TimedOut,
    /// The server is stopping; its process group was killed.
    Cancelled,
}

/// A finished run: how it ended and the tail of its output.
#[derive(Debug)]
pub struct Finished {
    pub exit: Exit,
    pub tail: Tail,
}

impl Finished {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        matches!(&self.exit, Exit::Exited(status) if status.success())
    }
}

/// Kills the process group if the run is abandoned (the task aborted or the runtime gone),
/// so no build outlives the server.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Runs `cmd` in its own process group until it exits, `deadline` passes, or `cancel` fires.
/// Each output line (stdout and stderr interleaved, as they arrive) is handed to `on_line`.
pub async fn run(
    cmd: Command,
    deadline: Instant,
    cancel: &CancellationToken,
    mut on_line: impl FnMut(&str),
) -> Result<Finished> {
    let mut cmd = merged_output(&cmd);
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // fork + exec stalls the calling thread for up to milliseconds (more in a process with
    // thousands of sockets): keep it off the workers that are busy telling devices "build started".
    // The guard is armed on that thread too: if this task is dropped meanwhile, the result is
    // dropped with it and the guard still takes the whole group down.
    let (mut child, pgid, mut guard) = tokio::task::spawn_blocking(move || {
        let child = cmd.spawn()?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .context("the tool exited before it could be watched")?;
        anyhow::Ok((child, pgid, GroupGuard(Some(pgid))))
    })
    .await
    .context("the build's spawning thread failed")??;

    let (tx, mut lines) = mpsc::channel(LINE_QUEUE);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, tx));
    } else {
        drop(tx);
    }

    let mut tail = Tail::default();
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    // First the output until both pipes close, then the exit status: a tool may close its
    // pipes and keep running, so the deadline covers both.
    let mut pipes_open = true;
    let exit = loop {
        tokio::select! {
            line = lines.recv(), if pipes_open => match line {
                Some(line) => {
                    on_line(&line);
                    tail.push(line);
                }
                None => pipes_open = false,
            },
            status = child.wait(), if !pipes_open => {
                break Exit::Exited(status.context("could not wait for the tool")?);
            }
            () = &mut sleep => {
                kill_group(&mut child, pgid, TERM_GRACE).await;
                break Exit::TimedOut;
            }
            () = cancel.cancelled() => {
                kill_group(&mut child, pgid, STOP_GRACE).await;
                break Exit::Cancelled;
            }
        }
    };
    // The group is dealt with: either it exited on its own (children left in the background
    // on purpose are the user's business) or it was killed above.
    guard.0 = None;
    // Lines still queued after a kill belong in the tail (a timed-out tool's last words).
    while let Ok(line) = lines.try_recv() {
        tail.push(line);
    }
    Ok(Finished { exit, tail })
}

/// `cmd` run as `sh -c 'exec "$@" 2>&1' sh <program> <args>`: stdout and stderr share one pipe,
/// so the tail keeps the order the tool wrote them in (compiler errors on stderr stay next to
/// the task lines on stdout). Two pipes read concurrently would let one overtake the other.
fn merged_output(cmd: &Command) -> Command {
    let std = cmd.as_std();
    let mut wrapped = Command::new("sh");
    wrapped
        .arg("-c")
        .arg("exec \"$@\" 2>&1")
        .arg("sh")
        .arg(std.get_program())
        .args(std.get_args());
    if let Some(dir) = std.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (key, value) in std.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// SIGTERM to the whole group, up to `grace` for the leader to exit, then SIGKILL to whatever
/// of the group is left (children that ignored or never got the TERM).
async fn kill_group(child: &mut Child, pgid: Pid, grace: Duration) {
    let _ = killpg(pgid, Signal::SIGTERM);
    let _ = tokio::time::timeout(grace, child.wait()).await;
    let _ = killpg(pgid, Signal::SIGKILL);
    // Reap the leader so it doesn't linger as a zombie.
    let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
}

/// Reads `reader` line by line with each line capped at [`MAX_LINE_BYTES`], so memory stays
/// bounded whatever the tool prints.
async fn pump(reader: impl AsyncRead + Unpin, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line: Vec<u8> = Vec::new();
    // A read error ends the stream like EOF: the exit status tells what happened.
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            if !line.is_empty() && tx.send(finish_line(&line)).await.is_err() {
                return;
            }
            break;
        }
        let (chunk, used, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if complete {
            if tx.send(finish_line(&line)).await.is_err() {
                return;
            }
            line.clear();
        }
    }
}

fn finish_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.strip_suffix('\r').unwrap_or(&text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_bounded_in_lines_and_bytes() {
        let mut tail = Tail::default();
        for i in 0..10_000 {
            tail.push(format!("line {i}"));
        }
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert_eq!(tail.lines().last(), Some("line 9999"));

        let mut tail = Tail::default();
        for _ in 0..1_000 {
            tail.push("x".repeat(MAX_LINE_BYTES));
        }
        assert!(tail.text().len() <= TAIL_BYTES);
        assert!(tail.lines().count() >= TAIL_BYTES / (MAX_LINE_BYTES + 1));
    }

    #[tokio::test]
    async fn long_lines_are_capped_and_crlf_trimmed() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("head -c 100000 /dev/zero | tr '\\0' a; printf '\\nok\\r\\n'; echo err >&2");
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let done = run(cmd, deadline, &CancellationToken::new(), |l| {
            seen.push(l.to_owned())
        })
        .await
        .expect("runs");
        assert!(done.success());
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen.iter().any(|l| l.len() == MAX_LINE_BYTES));
        assert!(seen.contains(&"ok".to_owned()) && seen.contains(&"err".to_owned()));
    }

    #[tokio::test]
    async fn deadline_kills_the_group() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo started; sleep 30 & wait");
        let deadline = Instant::now() + Duration::from_millis(300);
        let done = run(cmd, deadline, &CancellationToken::new(), |_| {})
            .await
            .expect("runs");
        assert!(matches!(done.exit, Exit::TimedOut));
        assert_eq!(done.tail.text(), "started");
    }
}
