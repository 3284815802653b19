//! Helpers for the chaos tests: abrupt TCP resets, sockets from a chosen source address or
//! with a tiny receive buffer, the server's resident memory, and its device registry as seen
//! through the loopback-only `GET /session`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::MaybeTlsStream;

use super::{connect_message, http, recv_type, send_json, within, Ws, WAIT};

/// What a test task needs to reach one running server; cheap to clone into spawned tasks.
#[derive(Debug, Clone)]
pub struct Target {
    pub ws_port: u16,
    pub http_port: u16,
    pub session_id: String,
    pub token: String,
}

impl Target {
    pub fn of(dev: &super::Dev) -> Self {
        Self {
            ws_port: dev.ready.ws_port,
            http_port: dev.ready.http_port,
            session_id: dev.ready.session_id.clone(),
            token: dev.ready.token.clone(),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    /// Connects from 127.0.0.1 and authenticates; returns the device after `core:connected`.
    pub async fn device(&self) -> (Ws, Value) {
        self.device_with(Socket::default()).await
    }

    /// Like [`Target::device`] over a socket set up as `socket` says.
    pub async fn device_with(&self, socket: Socket) -> (Ws, Value) {
        let mut ws = self.open(socket).await;
        send_json(&mut ws, &connect_message(&self.session_id, &self.token)).await;
        let connected = recv_type(&mut ws, "core:connected").await;
        (ws, connected)
    }

    /// Opens a WebSocket (no authentication) over a socket set up as `socket` says.
    pub async fn open(&self, socket: Socket) -> Ws {
        let stream = socket.connect(self.ws_port).await;
        let config = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let (ws, _) = within(
            "WebSocket upgrade",
            tokio_tungstenite::client_async_with_config(
                self.ws_url(),
                MaybeTlsStream::Plain(stream),
                Some(config),
            ),
        )
        .await
        .expect("upgrade");
        ws
    }
}

/// How a test socket is made before it connects to `127.0.0.1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Socket {
    /// Source address (any loopback address works on Linux: the whole 127/8 is local).
    pub source: Option<IpAddr>,
    /// `SO_RCVBUF`; setting it turns off the kernel's receive-window autotuning, so a peer
    /// that doesn't read stalls the server's writes after a few KiB instead of megabytes.
    pub recv_buffer: Option<u32>,
}

impl Socket {
    pub fn from(source: IpAddr) -> Self {
        Self {
            source: Some(source),
            ..Self::default()
        }
    }

    /// Connects a TCP stream to `127.0.0.1:port`.
    pub async fn connect(self, port: u16) -> tokio::net::TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = self.recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        if let Some(source) = self.source {
            socket
                .bind(SocketAddr::new(source, 0))
                .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        }
        within(
            "TCP connect",
            socket.connect(SocketAddr::from(([127, 0, 0, 1], port))),
        )
        .await
        .expect("connect")
    }
}

/// Drops the connection with a TCP reset instead of a close frame or FIN: `SO_LINGER` 0 makes
/// `close()` send RST and discard unsent data, like a phone losing its network mid-message.
pub fn reset(ws: Ws) {
    match ws.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.set_zero_linger().expect("SO_LINGER 0"),
        _ => panic!("test sockets are plain TCP"),
    }
    drop(ws);
}

/// Same as [`reset`] for a raw TCP stream.
pub fn reset_tcp(stream: tokio::net::TcpStream) {
    stream.set_zero_linger().expect("SO_LINGER 0");
    drop(stream);
}

/// The resident memory of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS line in /proc/{pid}/status"))
}

/// How many file descriptors process `pid` has open (`/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .count()
}

/// The `clients` array of `GET /session`.
pub async fn session_clients(http_port: u16) -> Vec<Value> {
    let response = http::get(http_port, "/session").await;
    assert_eq!(response.status, 200, "GET /session: {}", response.text());
    response.json()["clients"]
        .as_array()
        .expect("clients array")
        .clone()
}

/// Polls `GET /session` (bounded by [`WAIT`]) until exactly `n` devices are registered;
/// returns them.
pub async fn wait_clients(http_port: u16, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let clients = session_clients(http_port).await;
        if clients.len() == n {
            return clients;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the registry never got to {n} devices; it holds {}: {clients:?}",
            clients.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Asserts `GET /health` answers `{"status":"ok"}`.
pub async fn assert_healthy(http_port: u16) {
    let health = http::get(http_port, "/health").await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");
}

/// Live (not zombie) processes whose process group is `pgid`, from `/proc/*/stat`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false; // gone meanwhile
            };
            // After `(comm)`: state, ppid, pgrp, ...
            let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(pgid) && !matches!(state, Some("Z" | "X"))
        })
        .collect()
}
