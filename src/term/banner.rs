//! The pairing banner: the QR code (fitted to the terminal and its background), the URLs, the
//! project and the credentials.

use crate::pairing::host::is_loopback_host;
use crate::pairing::{qr, url_host, Pairing};

/// How the banner's QR code is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrLayout {
    /// Dark modules drawn as blocks, for a light terminal background.
    pub light_background: bool,
    /// The terminal's width, when known: a QR code wider than that would wrap into noise.
    pub columns: Option<u16>,
}

/// The human pairing banner; `qr` is `None` with `--no-qr`.
pub fn banner_text(pairing: &Pairing<'_>, qr: Option<QrLayout>) -> String {
    let mut text = String::from("\n");
    if let Some(layout) = qr {
        let payload = pairing.payload();
        let needed = qr::terminal_width(&payload).unwrap_or(0);
        match layout.columns.map(usize::from) {
            Some(columns) if columns < needed => text.push_str(&format!(
                "(This terminal is {columns} columns wide and the QR code needs {needed}: widen it, \
                 or open http://localhost:{} on this computer and scan it there.)\n",
                pairing.http_port
            )),
            _ => match qr::terminal(&payload, layout.light_background) {
                Ok(block) => text.push_str(&block),
                Err(e) => text.push_str(&format!("(QR code unavailable: {e:#})\n")),
            },
        }
        text.push('\n');
    }
    let host = url_host(pairing.host);
    let port = pairing.http_port;
    // A loopback host (the fallback when no LAN address was found, or asked for) would repeat the
    // Local line and suggest phones can use it; say what to do instead.
    let network = if is_loopback_host(pairing.host) {
        format!(
            "none ({} is reachable from this computer only; pass --host <LAN address> for phones)",
            pairing.host
        )
    } else {
        format!("http://{host}:{port}")
    };
    text.push_str(&format!(
        "  Local:    http://localhost:{port}\n  Network:  {network}\n  \
         Socket:   ws://{host}:{ws_port}\n  Project:  {name}\n\n\
         Session: {id}\nToken: {token}\n\n\
         Scan the QR code with the JetStart app, or open http://localhost:{port} on this computer.\n",
        ws_port = pairing.ws_port,
        name = pairing.project_name,
        id = pairing.session_id,
        token = pairing.token,
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairing(host: &str) -> Pairing<'_> {
        Pairing {
            host,
            http_port: 8765,
            ws_port: 8766,
            session_id: "a1b2c3d4",
            token: "Zk3abcdefghijklmnopqrs",
            project_name: "demo",
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{text}"))
    }

    #[test]
    fn a_terminal_too_narrow_for_the_qr_code_gets_a_line_instead() {
        let layout = |columns| {
            Some(QrLayout {
                light_background: false,
                columns,
            })
        };
        let narrow = banner_text(&pairing("192.168.1.5"), layout(Some(36)));
        assert!(!narrow.contains('█'), "no QR code:\n{narrow}");
        let line = line(&narrow, "(This terminal is 36 columns wide");
        assert!(line.contains("open http://localhost:8765"), "{line}");
        for wide in [layout(Some(200)), layout(None)] {
            assert!(banner_text(&pairing("192.168.1.5"), wide).contains('█'));
        }
    }

    #[test]
    fn banner_lists_the_network_url_of_a_lan_host() {
        let text = banner_text(&pairing("192.168.1.5"), None);
        assert_eq!(line(&text, "  Network:"), "  Network:  http://192.168.1.5:8765");
        assert_eq!(line(&text, "  Local:"), "  Local:    http://localhost:8765");
        assert_eq!(line(&text, "Session: "), "Session: a1b2c3d4");
        assert_eq!(line(&text, "Token: "), "Token: Zk3abcdefghijklmnopqrs");
    }

    #[test]
    fn banner_says_there_is_no_network_url_for_a_loopback_host() {
        for host in ["127.0.0.1", "::1", "localhost"] {
            let text = banner_text(&pairing(host), None);
            let network = line(&text, "  Network:");
            assert!(
                network.starts_with("  Network:  none (") && network.contains("--host"),
                "{network}"
            );
            assert!(!network.contains("http://"), "{network}");
            assert!(text.contains("\nSession: a1b2c3d4\nToken: Zk3abcdefghijklmnopqrs\n"));
            assert!(line(&text, "  Socket:").contains(":8766"));
        }
        assert!(!is_loopback_host("192.168.1.5") && !is_loopback_host("my-laptop.local"));
        assert!(is_loopback_host("[::1]") && is_loopback_host("127.8.9.10"));
    }
}
