//! `--open` (`--web`): the dashboard opened in the developer's default browser.

use std::net::IpAddr;
use std::process::{Command, Stdio};

/// Opens `http://localhost:<port>/` in the default browser, in the background: `$BROWSER` when
/// set, else the desktop's opener (`xdg-open`, `open` on macOS). The browser's output never
/// reaches ours, so `--json` stays clean. Whether it worked is said in one line either way.
pub fn open_dashboard(bind: IpAddr, port: u16) {
    // The dashboard answers loopback peers only; a server bound elsewhere isn't reachable there.
    if !(bind.is_unspecified() || bind.is_loopback()) {
        tracing::warn!(
            "not opening the dashboard: it is served to this computer only (loopback), and \
             --bind {bind} doesn't listen there"
        );
        return;
    }
    let url = format!("http://localhost:{port}/");
    // A text-mode browser runs in the foreground until it exits: never on the async workers.
    tokio::task::spawn_blocking(move || match open(&url) {
        Ok(()) => tracing::info!("opened the dashboard in your browser: {url}"),
        Err(e) => tracing::warn!("could not open a browser ({e}); open {url} yourself"),
    });
}

/// `$BROWSER` (the convention `xdg-open` and `webbrowser` follow: `:`-separated commands, the
/// first that works wins, `%s` standing for the URL, else the URL appended), then the desktop's
/// opener. The URL reaches the shell as an argument, never spliced into the command line.
fn open(url: &str) -> std::io::Result<()> {
    let browsers = std::env::var("BROWSER").unwrap_or_default();
    for browser in browsers.split(':').map(str::trim).filter(|b| !b.is_empty()) {
        let line = if browser.contains("%s") {
            browser.replace("%s", "\"$1\"")
        } else {
            format!("{browser} \"$1\"")
        };
        if quiet(Command::new("sh").arg("-c").arg(line).arg("sh").arg(url))?.success() {
            return Ok(());
        }
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match quiet(Command::new(opener).arg(url))? {
        status if status.success() => Ok(()),
        status => Err(std::io::Error::other(format!("{opener} {status}"))),
    }
}

/// Runs `cmd` to its end with no input and its output discarded (stdout may be `--json`'s).
fn quiet(cmd: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}
