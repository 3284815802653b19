//! `--open` (`--web`): the dashboard opened in the developer's default browser.

use std::net::IpAddr;

/// Opens `http://localhost:<port>/` in the default browser, in the background: `$BROWSER` when
/// set (as `webbrowser` reads it: `:`-separated commands, `%s` for the URL), else the desktop's
/// opener (`xdg-open`, `open` on macOS). The browser's output never reaches ours, so `--json`
/// stays clean. Whether it worked is said in one line either way.
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
    tokio::task::spawn_blocking(move || match webbrowser::open(&url) {
        Ok(()) => tracing::info!("opened the dashboard in your browser: {url}"),
        Err(e) => tracing::warn!("could not open a browser ({e}); open {url} yourself"),
    });
}
