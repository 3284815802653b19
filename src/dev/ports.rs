//! Binding the two ports: a taken default moves on to the next free port (said), a port given
//! on the command line is used or fails with a line naming its flag; a backlog sized for a burst
//! of devices.

use std::net::SocketAddr;

use anyhow::Result;
use tokio::net::{TcpListener, TcpSocket};

use crate::cli::Port;

/// Connections the kernel may hold for us before `accept`. std and mio ask for 128, which a
/// burst of devices (a classroom, a load test) overflows: the extra SYNs are dropped and those
/// devices wait a full second for the retransmit. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// How many ports after a taken default port are tried before giving up.
const NEXT_FREE_PORTS: u16 = 20;

/// Binds `port` as asked: an exact port or an error naming the flag; a default one, or the next
/// free one after it (not `avoid`), said once.
pub(super) fn bind_port(addr: std::net::IpAddr, port: Port, flag: &str, avoid: u16) -> Result<TcpListener> {
    let first = match port {
        Port::Exact(port) => return bind(addr, port, flag),
        Port::Preferred(first) => first,
    };
    let candidates = (first..=first.saturating_add(NEXT_FREE_PORTS)).filter(|p| *p != avoid);
    for candidate in candidates {
        match listen(SocketAddr::new(addr, candidate)) {
            Ok(listener) => {
                if candidate != first {
                    tracing::warn!(
                        "port {first} is in use (another jetstart-rs, or something else); using \
                         {candidate} (pass {flag} <PORT> to choose)"
                    );
                }
                return Ok(listener);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "could not listen on {addr}:{candidate} (set with {flag} and --bind)"
                )))
            }
        }
    }
    anyhow::bail!(
        "ports {first} to {} are all in use; choose one with {flag} <PORT> (0 picks a free one)",
        first.saturating_add(NEXT_FREE_PORTS)
    )
}

fn bind(addr: std::net::IpAddr, port: u16, flag: &str) -> Result<TcpListener> {
    listen(SocketAddr::new(addr, port)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "port {port} is already in use; choose another with {flag} <PORT> (0 picks a free one)"
            )
        } else {
            anyhow::Error::new(e).context(format!(
                "could not listen on {addr}:{port} (set with {flag} and --bind)"
            ))
        }
    })
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and mio do: a restarted server can rebind while old connections sit in TIME_WAIT
    // (a port with a live listener still fails with AddrInUse).
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel completes handshakes for a listener nobody accepts from, up to its backlog;
    /// beyond it, SYNs are dropped and those connects stall. 300 must all get through (fewer
    /// where the kernel caps every backlog lower: nothing a server can do about that).
    #[tokio::test]
    async fn a_burst_of_connections_fits_in_the_backlog() {
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        let listener = bind([127, 0, 0, 1].into(), 0, "--port").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connects = (0..somaxconn.min(300)).map(|_| tokio::net::TcpStream::connect(addr));
        let all = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures_util::future::join_all(connects),
        )
        .await
        .expect("every connect completes without a SYN retransmit");
        assert!(all.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_default_port_in_use_moves_on_but_an_exact_one_fails() {
        let taken = bind([127, 0, 0, 1].into(), 0, "--port").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let moved = bind_port(
            [127, 0, 0, 1].into(),
            Port::Preferred(port),
            "--port",
            port.wrapping_add(1),
        )
        .expect("the next free port");
        let got = moved.local_addr().expect("addr").port();
        assert!(
            got != port && got != port.wrapping_add(1),
            "{got} (taken {port}, avoided the next)"
        );
        assert!(bind_port([127, 0, 0, 1].into(), Port::Exact(port), "--port", 0).is_err());
    }

    #[tokio::test]
    async fn a_port_in_use_names_the_port_and_the_flag() {
        let taken = bind([127, 0, 0, 1].into(), 0, "--port").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let error = bind([127, 0, 0, 1].into(), port, "--ws-port")
            .expect_err("second listener on the same port")
            .to_string();
        assert!(
            error.contains(&port.to_string()) && error.contains("--ws-port"),
            "{error}"
        );
    }
}
