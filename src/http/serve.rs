//! Serving the HTTP port with limits, so that connections from the network can't pile up:
//! a request head must arrive within a timeout (also the next one on a kept-alive connection),
//! a response the client stops reading is dropped after [`WRITE_STALL`], open connections are
//! capped (by the open-files budget, [`crate::limits`]), and one address may hold only a share
//! of them.
//!
//! axum's own `serve` runs hyper without a timer, so it has no header timeout at all; this is the
//! same hyper connection with one, over a socket whose writes time out.

use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::hub::per_address::{self, Counts};

/// Connections one address may hold at least, whatever its share of the cap
/// ([`per_address::SHARE`]): a browser opens a few connections to one page.
const PER_ADDRESS_MIN: usize = 2;

/// How long a response may make no progress before its connection is dropped: a phone
/// downloading an APK over slow Wi-Fi still takes some bytes every few seconds; a client that
/// stopped reading only holds a descriptor and the body.
pub const WRITE_STALL: Duration = Duration::from_secs(30);

/// The HTTP port's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// [`WRITE_STALL`], shorter in tests.
    pub write_stall: Duration,
}

/// Connections per address; an entry lives as long as its connections.
#[derive(Default)]
struct PerAddress(Mutex<Counts>);

impl PerAddress {
    /// Counts a connection from `key` unless it already holds `share`.
    fn enter(self: &Arc<Self>, key: IpAddr, share: usize) -> Option<AddressSlot> {
        let mut counts = self.0.lock();
        if counts.get(key) >= share {
            return None;
        }
        counts.add(key);
        Some(AddressSlot {
            table: self.clone(),
            key,
        })
    }
}

struct AddressSlot {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.table.0.lock().remove(self.key);
    }
}

/// Serves `router` on `listener` until `stop`, then lets open connections finish their request.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let share = (limits.max_connections / per_address::SHARE).max(PER_ADDRESS_MIN);
    let per_address = Arc::new(PerAddress::default());
    let connections = TaskTracker::new();
    loop {
        // A slot first: past the cap, connections wait in the kernel's backlog, not as open files.
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (stream, addr) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(address_slot) = per_address.enter(crate::hub::address_key(addr.ip()), share) else {
            tracing::debug!(%addr, "closed an HTTP connection at once: its address holds {share} already");
            continue;
        };
        let router = router.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            serve_connection(stream, addr, router, limits, stop).await;
            drop((slot, address_slot));
        });
    }
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        // What `into_make_service_with_connect_info` would add: the guard reads the peer here.
        request.extensions_mut().insert(ConnectInfo(addr));
        router.clone().oneshot(request)
    });
    // A write that makes no progress for the stall time fails, and the connection with it.
    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
    stream.set_write_timeout(Some(limits.write_stall));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(Box::pin(stream)), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(%addr, "HTTP connection ended: {e}");
            }
            return;
        }
        () = stop.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    if let Err(e) = connection.await {
        tracing::debug!(%addr, "HTTP connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    use super::*;

    /// A client with a small receive buffer that asks for `path` and reads nothing.
    async fn request_without_reading(addr: SocketAddr, path: &str) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let mut stream = socket.connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("request");
        stream
    }

    /// One connection at a time: the second client is answered only once the first, which
    /// stopped reading a large response, has been dropped for its stall.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_after_the_stall() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new()
            .route("/big", get(|| async { vec![b'x'; 64 << 20] }))
            .route("/small", get(|| async { "ok" }));
        let limits = Limits {
            max_connections: 1,
            header_timeout: Duration::from_secs(30),
            write_stall: Duration::from_millis(300),
        };
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router, limits, stop.clone()));

        let _stalled = request_without_reading(addr, "/big").await;
        let mut second = request_without_reading(addr, "/small").await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while !answer.ends_with(b"ok") {
                let mut buf = [0; 1024];
                let n = second.read(&mut buf).await.expect("read");
                assert!(
                    n > 0,
                    "closed without an answer: {:?}",
                    String::from_utf8_lossy(&answer)
                );
                answer.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(read.is_ok(), "the stalled connection kept the only slot");
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops")
            .expect("server task");
    }
}
