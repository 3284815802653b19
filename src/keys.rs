//! Keyboard shortcuts for `dev` on an interactive terminal, and the raw mode they need.
//!
//! Keys are read on a dedicated blocking thread (crossterm's reader blocks) and handed to a
//! tokio task over a channel. Raw mode is undone by a guard's `Drop` on every normal exit path
//! (quit key, signals, errors) and by a panic hook that restores the terminal before the
//! panic message is printed.

use std::io::IsTerminal;
use std::sync::{Arc, Once};

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::builder::artifacts::{Artifacts, Requests};
use crate::events::Trigger;
use crate::hub::Hub;
use crate::pairing::Advertised;
use crate::protocol::{CoreMessage, ReloadType};
use crate::session::SessionStore;
use crate::term::reporter::Reporter;
use crate::term::{clock, Caps, Style};

/// The shortcuts as listed by `?`.
const HELP: &[(&str, &str)] = &[
    ("r", "reload every device (full reload)"),
    ("b", "rebuild now"),
    (
        "a",
        "adb: reverse both ports, install the last APK and start it on every device/emulator",
    ),
    ("c", "show the QR code and connection details again"),
    ("d", "list connected devices"),
    ("q", "quit (also Ctrl+C)"),
    ("?", "show this help"),
];

/// What the shortcuts act on.
pub struct KeyParts {
    pub hub: Hub,
    pub reporter: Arc<Reporter>,
    pub store: Arc<SessionStore>,
    pub advertised: Advertised,
    pub requests: Requests,
    pub artifacts: Artifacts,
}

/// Installed shortcuts. Dropping this restores the terminal.
pub struct Shortcuts {
    quit: CancellationToken,
    _raw: RawMode,
}

impl Shortcuts {
    /// Enables raw mode and starts listening for keys, if stdin and stdout are terminals and
    /// the server is in human mode; otherwise does nothing and returns `None`.
    pub fn install(parts: KeyParts) -> Option<Self> {
        let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if !interactive || parts.reporter.is_json() {
            return None;
        }
        let raw = match RawMode::enable() {
            Ok(raw) => raw,
            Err(e) => {
                tracing::debug!("keyboard shortcuts off: could not enter raw mode: {e}");
                return None;
            }
        };
        let style = Style::new(Caps::detect(false).color);
        parts.reporter.set_hint(hint(style));
        let quit = CancellationToken::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let spawned = std::thread::Builder::new()
            .name("keys".into())
            .spawn(move || read_keys(&tx));
        if let Err(e) = spawned {
            tracing::debug!("keyboard shortcuts off: {e}");
            return None;
        }
        tokio::spawn(handle_keys(Arc::new(parts), rx, quit.clone(), style));
        Some(Self { quit, _raw: raw })
    }
}

/// Completes when `signal` does or, with shortcuts installed, when `q` (or Ctrl+C) is pressed.
pub fn quit_or(
    shortcuts: Option<&Shortcuts>,
    signal: impl std::future::Future<Output = ()>,
) -> impl std::future::Future<Output = ()> {
    let quit = shortcuts.map(|s| s.quit.clone());
    async move {
        match quit {
            Some(quit) => tokio::select! {
                () = quit.cancelled() => {},
                () = signal => {},
            },
            None => signal.await,
        }
    }
}

/// The one-line hint printed under the QR code.
fn hint(style: Style) -> String {
    let keys = [
        ("r", "reload"),
        ("b", "rebuild"),
        ("a", "adb"),
        ("c", "QR code"),
        ("d", "devices"),
        ("q", "quit"),
        ("?", "help"),
    ];
    let list: Vec<String> = keys
        .iter()
        .map(|(key, what)| format!("{} {what}", style.bold(key)))
        .collect();
    format!("{} {}", style.dim("Press"), list.join(" · "))
}

/// Blocking loop on the `keys` thread; ends when the terminal goes away or `dev` stops.
fn read_keys(tx: &mpsc::UnboundedSender<KeyEvent>) {
    loop {
        match event::read() {
            Ok(TermEvent::Key(key)) if key.kind == KeyEventKind::Press => {
                if tx.send(key).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("keyboard input ended: {e}");
                return;
            }
        }
    }
}

async fn handle_keys(
    parts: Arc<KeyParts>,
    mut keys: mpsc::UnboundedReceiver<KeyEvent>,
    quit: CancellationToken,
    style: Style,
) {
    while let Some(key) = keys.recv().await {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let say = |text: String| parts.reporter.print(&format!("{text}\n"));
        match key.code {
            // Raw mode turns Ctrl+C into a key instead of SIGINT; it must still quit.
            KeyCode::Char('c' | 'd') if ctrl => quit.cancel(),
            KeyCode::Char('q') => quit.cancel(),
            KeyCode::Char('r') => {
                let session = parts.store.current();
                let sent = parts.hub.broadcast(&CoreMessage::Reload {
                    session_id: session.id.clone(),
                    reload_type: ReloadType::Full,
                });
                crate::term::progress::line(
                    style,
                    &format!("full reload → {sent} device{}", if sent == 1 { "" } else { "s" }),
                );
            }
            // Answered by the build itself: `rebuild requested → full build` (or why none runs).
            KeyCode::Char('b') => parts.requests.request(Trigger::Manual),
            KeyCode::Char('a') => {
                let parts = parts.clone();
                let stop = quit.clone();
                // adb calls take seconds: the keys stay live meanwhile.
                tokio::spawn(async move {
                    let (http_port, ws_port) = (parts.advertised.http_port, parts.advertised.ws_port);
                    crate::adb::answer(&parts.artifacts, http_port, ws_port, &stop).await;
                });
            }
            KeyCode::Char('c') => {
                let session = parts.store.current();
                parts.reporter.banner(&parts.advertised.pairing(&session));
            }
            KeyCode::Char('d') => say(devices(&parts.hub, style)),
            KeyCode::Char('?' | 'h') => say(help(style)),
            KeyCode::Enter => say(String::new()),
            _ => {}
        }
        if quit.is_cancelled() {
            return;
        }
    }
}

fn devices(hub: &Hub, style: Style) -> String {
    let clients = hub.clients();
    if clients.is_empty() {
        return "No device connected. Scan the QR code, or run `jetstart-rs connect`.".to_owned();
    }
    let mut text = format!("{} device(s) connected:", clients.len());
    for client in clients {
        // Chosen by the device: made printable and cut, like every device-supplied text.
        let field = |name: &str| {
            let value = client.device_info.get(name).and_then(serde_json::Value::as_str);
            crate::sanitize::shown(value.unwrap_or("?"), crate::sanitize::FIELD_MAX)
        };
        let since = std::time::UNIX_EPOCH + std::time::Duration::from_millis(client.connected_at);
        text.push_str(&format!(
            "\n  {}  {}  {}  {}  since {}",
            style.bold(&field("model")),
            field("platform"),
            style.dim(&client.client_id),
            client.addr,
            clock(since),
        ));
    }
    text
}

fn help(style: Style) -> String {
    let mut text = String::from("Keyboard shortcuts:");
    for (key, what) in HELP {
        text.push_str(&format!("\n  {}  {what}", style.bold(key)));
    }
    text
}

/// Raw mode for the lifetime of the guard.
struct RawMode;

impl RawMode {
    fn enable() -> std::io::Result<Self> {
        install_panic_hook();
        crossterm::terminal::enable_raw_mode()?;
        let guard = Self;
        keep_output_processing();
        Ok(guard)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode; a no-op when it isn't on (crossterm keeps the original settings).
fn restore() {
    let _ = crossterm::terminal::disable_raw_mode();
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// crossterm's raw mode also turns off output processing (OPOST), so `\n` would no longer
/// return the carriage and every log line, ours or a library's, would stair-step. Only input
/// needs to be raw: turn output processing back on. crossterm restores the original settings,
/// this included, when raw mode ends.
#[cfg(unix)]
fn keep_output_processing() {
    use nix::sys::termios::{tcgetattr, tcsetattr, OutputFlags, SetArg};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    match tcgetattr(fd) {
        Ok(mut termios) => {
            termios.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
            if let Err(e) = tcsetattr(fd, SetArg::TCSANOW, &termios) {
                tracing::debug!("could not keep output processing on: {e}");
            }
        }
        Err(e) => tracing::debug!("could not read terminal settings: {e}"),
    }
}

#[cfg(not(unix))]
fn keep_output_processing() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_is_one_plain_line_without_colours() {
        let text = hint(Style::new(false));
        assert!(!text.contains('\n'));
        assert!(!text.contains('\x1b'));
        for key in [
            "r reload",
            "b rebuild",
            "c QR code",
            "d devices",
            "q quit",
            "? help",
        ] {
            assert!(text.contains(key), "{text}");
        }
    }
}
