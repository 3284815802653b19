//! All terminal output goes through one writer thread, so that a stalled reader never stalls
//! the server, and so that human output never collides with the spinner's live line.
//!
//! A terminal paused with Ctrl+S, or a `--json` reader that stops reading its pipe, blocks
//! writes to stdout or stderr. Written from a runtime worker, that would freeze devices and
//! builds with it; here only the writer thread waits. Its queue is bounded: while it is full,
//! new lines are dropped and counted, and the count is said once output flows again.
//!
//! The spinner redraws one line in place with `\r`; anything else printed meanwhile (events,
//! tracing logs, device logs) first blanks that line, and the spinner draws itself again on
//! its next tick. Blanking uses spaces, not escape codes, so `NO_COLOR` output stays plain.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, SendError, Sender};
use std::sync::OnceLock;
use std::time::Duration;

/// Output waiting for the terminal or the reader of a pipe. Far more than a burst of device
/// logs needs; a reader stalled for longer loses lines (counted), never the server.
const QUEUE: usize = 8192;

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
/// Output queued and not yet written. The bound is kept by counting, not by a bounded channel:
/// that one allocates and touches all [`QUEUE`] slots up front (an idle server's resident memory
/// measured 7.4-7.7 MB with it, 6.7 MB without); this one grows only with what is waiting.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

fn queue() -> Option<&'static Sender<Out>> {
    static QUEUE_TX: OnceLock<Option<Sender<Out>>> = OnceLock::new();
    QUEUE_TX
        .get_or_init(|| {
            let (tx, rx) = channel();
            std::thread::Builder::new()
                .name("output".into())
                .spawn(move || write_all(&rx))
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

fn send(out: Out) {
    let Some(tx) = queue() else {
        write_now(out); // no thread to be had: write from here, as before
        return;
    };
    if !reserve(&QUEUED) {
        // The live line is redrawn on the next tick anyway; only real output counts as lost.
        if !matches!(out, Out::Live(_) | Out::ClearLive) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    if let Err(SendError(out)) = tx.send(out) {
        QUEUED.fetch_sub(1, Ordering::Relaxed);
        write_now(out);
    }
}

/// Takes a place in the queue counted by `queued`; false if all [`QUEUE`] places are taken.
fn reserve(queued: &AtomicUsize) -> bool {
    if queued.fetch_add(1, Ordering::Relaxed) < QUEUE {
        return true;
    }
    queued.fetch_sub(1, Ordering::Relaxed);
    false
}

/// The writer thread's whole life.
fn write_all(rx: &Receiver<Out>) {
    let mut width = 0;
    while let Ok(out) = rx.recv() {
        let counted = !matches!(out, Out::Flush(_));
        write_one(out, &mut width);
        if counted {
            QUEUED.fetch_sub(1, Ordering::Relaxed);
        }
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
    let (done, written) = channel();
    // Not counted against the bound: it must get in behind a full queue.
    if tx.send(Out::Flush(done)).is_ok() {
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
    fn the_queue_holds_at_most_its_bound() {
        let queued = AtomicUsize::new(0);
        assert!((0..QUEUE).all(|_| reserve(&queued)));
        assert!(!reserve(&queued), "one more than the bound");
        assert_eq!(queued.load(Ordering::Relaxed), QUEUE, "a refusal takes no place");
        queued.fetch_sub(1, Ordering::Relaxed); // the writer wrote one
        assert!(reserve(&queued));
    }

    #[test]
    fn flush_returns_once_earlier_output_is_written() {
        print_stderr("");
        let started = Instant::now();
        flush(Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(5), "the writer answered");
    }
}
