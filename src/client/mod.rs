//! Device-side tools (`connect`, `logs`): where to connect, and the connection itself.

pub mod connect;
pub mod logs;
pub mod properties;
mod render;

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// What a device needs to connect: from a QR payload or `.jetstart/session.properties`.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub ws_url: String,
    pub session_id: String,
    pub token: String,
    pub project_name: String,
}

// By hand so that the token never reaches a log line or an error message.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("ws_url", &self.ws_url)
            .field("session_id", &self.session_id)
            .field("token", &"<hidden>")
            .field("project_name", &self.project_name)
            .finish()
    }
}

impl Target {
    /// Parses the QR payload `host|port|wsPort|sessionId|token|projectName` (docs/protocol.md, "Pairing").
    pub fn from_payload(payload: &str) -> Result<Self> {
        let fields: Vec<&str> = payload.trim().splitn(6, '|').collect();
        let [host, http_port, ws_port, session_id, token, project_name] = fields[..] else {
            bail!(
                "not a pairing payload: expected 6 fields separated by `|` \
                 (host|port|wsPort|sessionId|token|projectName), found {}",
                fields.len()
            );
        };
        if host.is_empty() || session_id.is_empty() || token.is_empty() {
            bail!("not a pairing payload: host, session id and token must not be empty");
        }
        for (name, port) in [("port", http_port), ("wsPort", ws_port)] {
            port.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .with_context(|| format!("not a pairing payload: {name} {port:?} is not a port number"))?;
        }
        Ok(Self {
            ws_url: format!("ws://{}:{ws_port}", crate::pairing::url_host(host)),
            session_id: session_id.to_owned(),
            token: token.to_owned(),
            project_name: project_name.to_owned(),
        })
    }

    /// Reads `<project>/.jetstart/session.properties`, as written by a running `dev` (README, "Gradle integration").
    pub fn from_project(project: &Path) -> Result<Self> {
        let path = crate::gradle::session_file::path(project);
        let text = crate::project_file::read_regular_string(&path, crate::project_file::STATE_MAX)
            .with_context(|| {
                format!(
                    "could not read {}; is `jetstart-rs dev` running in {}? \
                 (or pass the QR payload instead)",
                    path.display(),
                    project.display()
                )
            })?;
        Self::from_properties(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Builds a target from the session file's contents.
    pub fn from_properties(text: &str) -> Result<Self> {
        let props = properties::parse(text);
        let get = |key: &str| {
            props
                .get(key)
                .filter(|v| !v.is_empty())
                .cloned()
                .with_context(|| format!("the session file has no {key}"))
        };
        // `ws://host:port/?token=…`: the query (the token, which this tool sends in its
        // `client:connect` instead) is cut off, so the URL can be printed.
        let server_url = get("serverUrl")?;
        let ws_url = server_url.split(['?', '#']).next().unwrap_or_default();
        let ws_url = ws_url.strip_suffix('/').unwrap_or(ws_url).to_owned();
        if !ws_url.starts_with("ws://") && !ws_url.starts_with("wss://") {
            bail!("serverUrl {ws_url:?} is not a ws:// URL");
        }
        Ok(Self {
            ws_url,
            session_id: get("sessionId")?,
            token: get("token")?,
            project_name: props.get("projectName").cloned().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_qr_payload() {
        let target = Target::from_payload("192.168.1.100|8765|8766|a1b2c3d4|Zk3abc|my|app").expect("valid");
        assert_eq!(target.ws_url, "ws://192.168.1.100:8766");
        assert_eq!(target.session_id, "a1b2c3d4");
        assert_eq!(target.token, "Zk3abc");
        // Only the first five `|` separate: the name is the rest.
        assert_eq!(target.project_name, "my|app");
        let v6 = Target::from_payload("fd00::1|1|2|s|t|n").expect("valid");
        assert_eq!(v6.ws_url, "ws://[fd00::1]:2");
    }

    #[test]
    fn rejects_bad_payloads_without_echoing_the_token() {
        for bad in [
            "",
            "a|b|c",
            "h|x|8766|s|t|n",
            "h|8765|0|s|t|n",
            "h|8765|8766|s||n",
        ] {
            assert!(Target::from_payload(bad).is_err(), "{bad:?}");
        }
        let target = Target::from_payload("h|1|2|s|secret-token|n").expect("valid");
        assert!(!format!("{target:?}").contains("secret-token"));
    }

    #[test]
    fn reads_the_session_file() {
        let text = "#written by jetstart-rs\nserverUrl=ws\\://10.0.0.2\\:8766\n\
                    httpUrl=http\\://10.0.0.2\\:8765\nsessionId=abcd1234\ntoken=T0k\nprojectName=Caf\\u00e9 app\n";
        let target = Target::from_properties(text).expect("valid");
        assert_eq!(target.ws_url, "ws://10.0.0.2:8766");
        assert_eq!(target.session_id, "abcd1234");
        assert_eq!(target.token, "T0k");
        assert_eq!(target.project_name, "Café app");
        let with_token = text.replace("8766\n", "8766/?token\\=T0k\n");
        let target = Target::from_properties(&with_token).expect("valid");
        assert_eq!(
            target.ws_url, "ws://10.0.0.2:8766",
            "the URL's token is not kept for printing"
        );
        let missing = Target::from_properties("serverUrl=ws://h:1\nsessionId=s\n").unwrap_err();
        assert!(format!("{missing:#}").contains("token"));
    }
}
