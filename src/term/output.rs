//! All terminal output goes through one writer thread, so that a stalled reader never stalls
//! the server, and so that human output never collides with the spinner's live line.
//!
//! A terminal paused with Ctrl+S, or a `--json` reader that stops reading its pipe, blocks
//! writes to stdout or stderr. Written from a runtime worker, that would freeze devices and
//! builds with it; here only the writer thread waits. Its queue is bounded in lines and in
//! bytes (devices choose how long their lines are): while it is full, new lines are dropped and
//! counted, and the count is said once output flows again.
//!
//! The spinner redraws one line in place with `\r`; anything else printed meanwhile (events,
//! tracing logs, device logs) first blanks that line, and the spinner draws itself again on
//! its next tick. Blanking uses spaces, not escape codes, so `NO_COLOR` output stays plain.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

use crate::bounded;

/// Output waiting for the terminal or the reader of a pipe. Far more than a burst of device
/// logs needs; a reader stalled for longer loses lines (counted), never the server.
const QUEUE: usize = 8192;
/// Bytes of output waiting at most. A paused terminal must not grow the server by the size of
/// whatever devices send: 8192 lines of a megabyte would be 8 GB.
const QUEUE_BYTES: usize = 4 * 1024 * 1024;

enum Out {
    Stdout(String),
    Stderr(String),
    Live(String),
    ClearLive,
    /// Answered once everything queued before it is written.
    Flush(Sender<()>),
}

/// Lines dropped because the queue was full, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Bytes of text queued for the writer thread and not yet written.
static QUEUED_BYTES: AtomicUsize = AtomicUsize::new(0);

impl Out {
    /// The text this holds, as counted against [`QUEUE_BYTES`].
    fn bytes(&self) -> usize {
        match self {
            Self::Stdout(text) | Self::Stderr(text) | Self::Live(text) => text.len(),
            Self::ClearLive | Self::Flush(_) => 0,
        }
    }
}

/// Takes `bytes` from the byte budget; false (nothing taken) if they don't fit.
fn reserve(bytes: usize) -> bool {
    QUEUED_BYTES
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
            queued.checked_add(bytes).filter(|&total| total <= QUEUE_BYTES)
        })
        .is_ok()
}

fn queue() -> Option<&'static bounded::Sender<Out>> {
    static QUEUE_TX: OnceLock<Option<bounded::Sender<Out>>> = OnceLock::new();
    QUEUE_TX
        .get_or_init(|| {
            let (tx, rx) = bounded::channel(QUEUE);
            std::thread::Builder::new()
                .name("output".into())
                .spawn(move || {
                    no_wakeup_preemption();
                    write_all(&rx);
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

fn send(out: Out) {
    let Some(tx) = queue() else {
        write_now(out); // no thread to be had: write from here
        return;
    };
    let bytes = out.bytes();
    if !reserve(bytes) {
        if !matches!(out, Out::Live(_)) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    let sent = tx.try_send(out);
    if sent.is_err() {
        QUEUED_BYTES.fetch_sub(bytes, Ordering::Relaxed);
    }
    match sent {
        Ok(()) => {}
        // The live line is redrawn on the next tick anyway; only real output counts as lost.
        Err(TrySendError::Full(Out::Live(_) | Out::ClearLive)) => {}
        Err(TrySendError::Full(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(out)) => write_now(out),
    }
}

/// Output is never urgent. On Linux the writer thread runs as `SCHED_BATCH`: the same share of
/// the CPU, but its wake-ups don't preempt a running thread. An ordinary thread is woken for
/// the "device connected" line just as that device's `core:connected` goes out, and can take the
/// CPU the device's side needs (BENCHMARKS.md, the auth round trip).
fn no_wakeup_preemption() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        };
        use thread_priority::{ThreadPriority, ThreadPriorityOsValue, ThreadSchedulePolicy};
        // The call sets a niceness along with the policy, and only 0 leaves it as it was: a
        // server started with `nice` keeps this thread as the rest of it.
        match rustix::process::getpriority_process(None) {
            Ok(0) => {}
            Ok(nice) => {
                tracing::debug!("output thread left as it is: the server runs at nice {nice}");
                return;
            }
            Err(e) => {
                tracing::debug!("output thread left as it is: could not read its niceness: {e}");
                return;
            }
        }
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Os(ThreadPriorityOsValue::default()),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
        ) {
            tracing::debug!("output thread left as it is: SCHED_BATCH refused: {e:?}");
        }
    }
}

/// The writer thread's whole life.
fn write_all(rx: &bounded::Receiver<Out>) {
    let mut width = 0;
    while let Ok(out) = rx.recv() {
        let bytes = out.bytes();
        write_one(out, &mut width);
        QUEUED_BYTES.fetch_sub(bytes, Ordering::Relaxed);
    }
}

fn write_now(out: Out) {
    // Only without a writer thread: no live line can be on screen.
    write_one(out, &mut 0);
}

fn write_one(out: Out, width: &mut usize) {
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        blank(width);
        let _ = writeln!(
            std::io::stderr().lock(),
            "({dropped} lines of output were dropped: the terminal or the program reading this \
             output did not keep up)"
        );
    }
    // Best effort throughout: a closed stdout (`| head`) must not stop the server.
    match out {
        Out::Stdout(text) => {
            blank(width);
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
        }
        Out::Stderr(text) => {
            blank(width);
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
        Out::Live(text) => {
            let chars = text.chars().count();
            let pad = width.saturating_sub(chars);
            let mut stdout = std::io::stdout().lock();
            let _ = write!(stdout, "\r{text}{:pad$}", "");
            let _ = stdout.flush();
            *width = chars.max(*width);
        }
        Out::ClearLive => blank(width),
        Out::Flush(done) => {
            let _ = done.send(());
        }
    }
}

fn blank(width: &mut usize) {
    if *width > 0 {
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "\r{:width$}\r", "", width = *width);
        let _ = stdout.flush();
        *width = 0;
    }
}

/// Prints `text` on stdout.
pub fn print_stdout(text: &str) {
    send(Out::Stdout(text.to_owned()));
}

/// Prints `text` on stderr.
pub fn print_stderr(text: &str) {
    send(Out::Stderr(text.to_owned()));
}

/// Draws `text` (one line, no newline) as the live line, replacing the previous one.
pub fn draw_live(text: &str) {
    send(Out::Live(text.to_owned()));
}

/// Removes the live line, if any.
pub fn clear_live() {
    send(Out::ClearLive);
}

/// Waits (at most `limit`) until everything printed so far is written: before the process exits.
pub fn flush(limit: Duration) {
    let Some(tx) = queue() else { return };
    let (done, written) = std::sync::mpsc::channel();
    if tx.send_past_bound(Out::Flush(done)).is_ok() {
        let _ = written.recv_timeout(limit);
    }
}

/// A stderr writer for `tracing_subscriber` that goes through the writer thread.
pub struct Stderr;

/// `tracing_subscriber::fmt().with_writer(jetstart::term::output::stderr)`.
pub fn stderr() -> Stderr {
    Stderr
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        print_stderr(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // One message for the whole record, so a log line is never split by a spinner tick.
        print_stderr(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_byte_budget_is_taken_and_given_back_whole() {
        // Other tests print meanwhile: only what this test takes is checked.
        assert!(!reserve(QUEUE_BYTES + 1), "more than the whole budget never fits");
        assert!(reserve(0));
    }

    #[test]
    fn flush_returns_once_earlier_output_is_written() {
        print_stderr("");
        let started = Instant::now();
        flush(Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(5), "the writer answered");
    }
}
