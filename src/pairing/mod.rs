//! Pairing a phone: the QR payload, its renderings, and the advertised LAN address.

pub mod host;
pub mod qr;

/// Longest project name carried in the payload, in Unicode scalar values.
pub const MAX_PROJECT_NAME_CHARS: usize = 64;

/// Replaces `|` and control characters with `_` and cuts the name to 64 characters, so the
/// name can't break the `|`-separated payload or a terminal.
pub fn sanitize_project_name(name: &str) -> String {
    name.chars()
        // The same characters the device-text sanitiser removes: the name is shown in the
        // banner and on the pairing page, and it may come from a cloned repository.
        .map(|c| {
            if c == '|' || crate::sanitize::is_unsafe(c) {
                '_'
            } else {
                c
            }
        })
        .take(MAX_PROJECT_NAME_CHARS)
        .collect()
}

/// What a phone needs to connect, as carried by the QR code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing<'a> {
    pub host: &'a str,
    pub http_port: u16,
    pub ws_port: u16,
    pub session_id: &'a str,
    pub token: &'a str,
    /// Already sanitized (see [`sanitize_project_name`]).
    pub project_name: &'a str,
}

/// Where this server is, as devices are told: the advertised host, the real ports, the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub host: String,
    pub http_port: u16,
    pub ws_port: u16,
    /// Already sanitized (see [`sanitize_project_name`]).
    pub project_name: String,
}

impl Advertised {
    /// The pairing details of `session`.
    pub fn pairing<'a>(&'a self, session: &'a crate::session::Session) -> Pairing<'a> {
        Pairing {
            host: &self.host,
            http_port: self.http_port,
            ws_port: self.ws_port,
            session_id: &session.id,
            token: &session.token,
            project_name: &self.project_name,
        }
    }

    /// `http://<host>:<port>`, the base of download URLs (IPv6 hosts in brackets).
    pub fn http_base(&self) -> String {
        format!("http://{}:{}", url_host(&self.host), self.http_port)
    }
}

impl Pairing<'_> {
    /// `host|port|wsPort|sessionId|token|projectName` (docs/protocol.md, "Pairing").
    pub fn payload(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}",
            self.host, self.http_port, self.ws_port, self.session_id, self.token, self.project_name
        )
    }
}

/// A host as it goes into a URL: IPv6 literals get brackets.
pub fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_six_fields_in_order() {
        let pairing = Pairing {
            host: "192.168.1.100",
            http_port: 8765,
            ws_port: 8766,
            session_id: "a1b2c3d4",
            token: "Zk3abcdefghijklmnopqrs",
            project_name: "my-app",
        };
        assert_eq!(
            pairing.payload(),
            "192.168.1.100|8765|8766|a1b2c3d4|Zk3abcdefghijklmnopqrs|my-app"
        );
    }

    #[test]
    fn sanitizes_pipes_and_control_characters() {
        assert_eq!(
            sanitize_project_name("a|b\nc\td\u{7f}e\u{1b}[31m"),
            "a_b_c_d_e_[31m"
        );
        assert_eq!(sanitize_project_name("Café ☕"), "Café ☕");
        assert_eq!(sanitize_project_name("app\u{202e}kcab\u{9b}"), "app_kcab_");
    }

    #[test]
    fn cuts_to_64_scalar_values() {
        let long: String = "é".repeat(100);
        let cut = sanitize_project_name(&long);
        assert_eq!(cut.chars().count(), 64);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(sanitize_project_name(&"x".repeat(64)).len(), 64);
    }
}
