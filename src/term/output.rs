//! Writes human output so that it never collides with the spinner's live line.
//!
//! The spinner redraws one line in place with `\r`; anything else printed meanwhile (events,
//! tracing logs, device logs) first blanks that line, and the spinner draws itself again on
//! its next tick. Blanking uses spaces, not escape codes, so `NO_COLOR` output stays plain.

use std::io::Write;
use std::sync::Mutex;

/// Width, in characters, of the live line on screen (0: none). Also serializes all writers.
static LIVE: Mutex<usize> = Mutex::new(0);

fn live() -> std::sync::MutexGuard<'static, usize> {
    // A panic while printing leaves a usable width; recover rather than go silent.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn blank(width: &mut usize) {
    if *width > 0 {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r{:width$}\r", "", width = *width);
        let _ = out.flush();
        *width = 0;
    }
}

/// Prints `text` on stdout (best effort: a closed stdout, e.g. `| head`, must not stop the server).
pub fn print_stdout(text: &str) {
    let mut width = live();
    blank(&mut width);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints `text` on stderr, best effort.
pub fn print_stderr(text: &str) {
    let mut width = live();
    blank(&mut width);
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Draws `text` (one line, no newline) as the live line, replacing the previous one.
pub fn draw_live(text: &str) {
    let mut width = live();
    let chars = text.chars().count();
    let pad = width.saturating_sub(chars);
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\r{text}{:pad$}", "");
    let _ = out.flush();
    *width = chars.max(*width);
}

/// Removes the live line, if any.
pub fn clear_live() {
    blank(&mut live());
}

/// A stderr writer for `tracing_subscriber` that blanks the live line first.
pub struct Stderr;

/// `tracing_subscriber::fmt().with_writer(jetstart::term::output::stderr)`.
pub fn stderr() -> Stderr {
    Stderr
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut width = live();
        blank(&mut width);
        std::io::stderr().lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // One lock for the whole record, so a log line is never split by a spinner tick.
        let mut width = live();
        blank(&mut width);
        std::io::stderr().lock().write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
