//! A device's TCP socket, shared by the device's task and by broadcasts.
//!
//! A broadcast of a small message writes it straight to the socket when the device's task is
//! parked with nothing of its own to write, instead of queuing it and waking the task: with a
//! thousand devices that is a thousand task wake-ups and polls saved per message, and the first
//! device gets the message before the last one is even queued. Everything else (a device that
//! is behind, large messages, the devices a broadcast hands to the runtime's other workers, pings,
//! pongs, the close handshake) goes through the task and its queue, as before.
//!
//! Who may write is decided by the [`Gate`], under its lock. The task takes the socket back
//! whenever it wakes up, and opens it again only when it parks with its queue empty and nothing
//! of its own half-sent, so a direct write always starts on a frame boundary and never overtakes
//! a queued message. A direct write the socket took only in part leaves the rest first in the
//! queue, and nothing else is written before it.

use parking_lot::Mutex;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;

use super::frame::RawFrame;

/// A device's WebSocket, over its shared socket.
pub type Socket = WebSocketStream<WireIo>;

/// Largest message a broadcast writes directly. Small messages (build events, logs) nearly
/// always fit in the socket buffer whole; a DEX patch is written by each device's own task,
/// so that the devices' writes overlap and no broadcast holds the registry for long.
pub const DIRECT_MAX: usize = 16 * 1024;

/// Who may write to the socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// The device's task writes and decides the order; broadcasts queue.
    Task,
    /// The task is parked with its queue empty and nothing half-sent: broadcasts write directly.
    Open,
    /// A direct write left a frame half-written. Its rest is first in the queue, and the task
    /// must finish it before anything else reaches the socket.
    HalfWritten,
}

/// One device's socket and the gate that says who writes to it.
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    gate: Mutex<Gate>,
}

/// What [`Wire::send_or_queue`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written whole to the socket.
    Direct,
    /// Written in part; the rest is queued for the device's task.
    Partly,
    /// Queued for the device's task.
    Queued,
}

impl Sent {
    /// True if bytes reached the socket.
    pub fn wrote_some(self) -> bool {
        self != Self::Queued
    }
}

impl Wire {
    pub fn new(stream: TcpStream) -> Arc<Self> {
        Arc::new(Self {
            stream,
            gate: Mutex::new(Gate::Task),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// A broadcast's write: directly if `direct` and the gate is open, otherwise (and for
    /// whatever the socket doesn't take at once) through `queue`. Every message for the device
    /// is queued here, under the gate's lock: queuing shuts an open gate, so a later message
    /// can't be written directly past one still queued, and the task, parking, sees it. A write
    /// error is left for the task to meet: the frame is queued, and the task's own write fails
    /// and closes the connection.
    pub fn send_or_queue(
        &self,
        mut frame: RawFrame,
        queue: &mpsc::Sender<RawFrame>,
        direct: bool,
    ) -> Result<Sent, mpsc::error::TrySendError<RawFrame>> {
        let mut gate = self.gate.lock();
        if !direct || *gate != Gate::Open {
            if *gate == Gate::Open {
                *gate = Gate::Task; // the task wakes for the queued message and takes it anyway
            }
            return queue.try_send(frame).map(|()| Sent::Queued);
        }
        if let Ok(true) = frame.try_write(&self.stream) {
            return Ok(Sent::Direct);
        }
        let (next, sent) = if frame.is_partial() {
            (Gate::HalfWritten, Sent::Partly)
        } else {
            (Gate::Task, Sent::Queued)
        };
        *gate = next;
        // The gate was open, so the queue is empty and has room (only a task that is gone
        // refuses it).
        queue.try_send(frame).map(|()| sent)
    }

    /// The task takes the socket back. Returns true if a direct write left a frame half-written:
    /// it is first in the task's queue and must be finished before anything else is written.
    pub fn take(&self) -> bool {
        let mut gate = self.gate.lock();
        let half_written = *gate == Gate::HalfWritten;
        *gate = Gate::Task;
        half_written
    }

    /// The task parks with nothing of its own half-sent: broadcasts may write directly from now
    /// on, unless something is queued (`queue_empty` is asked under the gate's lock, so a
    /// broadcast either queued before this or sees the gate open).
    pub fn open(&self, queue_empty: impl FnOnce() -> bool) {
        let mut gate = self.gate.lock();
        if *gate == Gate::Task && queue_empty() {
            *gate = Gate::Open;
        }
    }

    fn task_writes(&self) -> bool {
        *self.gate.lock() == Gate::Task
    }
}

/// The socket as tungstenite reads and writes it: reads as usual; writes (the handshake, pongs,
/// pings, the close handshake) only while the task holds the gate. While the gate is open, a
/// pong tungstenite wants to send while reading waits: its write reports `Pending` and
/// tungstenite keeps the frame, whole, until the task flushes it after taking the gate back.
#[derive(Debug)]
pub struct WireIo(pub Arc<Wire>);

impl WireIo {
    pub fn wire(&self) -> &Arc<Wire> {
        &self.0
    }

    pub fn stream(&self) -> &TcpStream {
        &self.0.stream
    }
}

impl AsyncRead for WireIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let stream = self.stream();
        loop {
            ready!(stream.poll_read_ready(cx))?;
            match stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for WireIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !self.0.task_writes() {
            // Only reached while the task reads with the gate open (see the type's doc); the
            // task flushes once it holds the gate, so no wake-up is needed.
            return Poll::Pending;
        }
        let stream = self.stream();
        loop {
            ready!(stream.poll_write_ready(cx))?;
            match stream.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // TCP writes are not buffered here
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let fd = self.stream().as_raw_fd();
        Poll::Ready(
            nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write).map_err(io::Error::from),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::task::Waker;

    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket};
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    use super::*;

    /// A wire and its peer, whose receive buffer is small so that the wire fills up quickly.
    async fn pair() -> (Arc<Wire>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let addr = listener.local_addr().expect("addr");
        let (peer, accepted) = tokio::join!(socket.connect(addr), listener.accept());
        let wire = Wire::new(accepted.expect("accept").0);
        // Until tokio has seen the socket writable, its `try_write` doesn't even try.
        wire.stream().writable().await.expect("writable");
        (wire, peer.expect("connect"))
    }

    fn numbered(i: usize) -> RawFrame {
        RawFrame::text(Bytes::from(format!("{i:06}{}", "z".repeat(9000))))
    }

    /// The numbers of the text frames in `wire`, which must hold whole frames only.
    fn frame_numbers(wire: &[u8]) -> Vec<usize> {
        let mut cursor = Cursor::new(wire);
        let mut numbers = Vec::new();
        while (cursor.position() as usize) < wire.len() {
            let (header, len) = FrameHeader::parse(&mut cursor).expect("a header").expect("whole");
            assert!(header.is_final && header.mask.is_none());
            let start = cursor.position() as usize;
            let payload = &wire[start..start + len as usize];
            numbers.push(
                std::str::from_utf8(&payload[..6])
                    .expect("text")
                    .parse()
                    .expect("number"),
            );
            cursor.set_position((start + len as usize) as u64);
        }
        numbers
    }

    #[tokio::test]
    async fn broadcasts_queue_until_the_task_opens_the_gate_with_its_queue_empty() {
        let (wire, _peer) = pair().await;
        let (queue, mut rx) = mpsc::channel(8);
        assert_eq!(
            wire.send_or_queue(numbered(0), &queue, true).expect("room"),
            Sent::Queued
        );
        wire.open(|| rx.is_empty());
        assert_eq!(
            wire.send_or_queue(numbered(1), &queue, true).expect("room"),
            Sent::Queued,
            "something was queued: the gate stays shut"
        );
        while rx.try_recv().is_ok() {}
        wire.open(|| rx.is_empty());
        assert_eq!(
            wire.send_or_queue(numbered(2), &queue, true).expect("room"),
            Sent::Direct
        );
        assert!(!wire.take(), "nothing half-written");
        assert_eq!(
            wire.send_or_queue(numbered(3), &queue, true).expect("room"),
            Sent::Queued
        );
    }

    #[tokio::test]
    async fn a_message_handed_to_the_task_shuts_the_gate_so_none_overtakes_it() {
        let (wire, _peer) = pair().await;
        let (queue, mut rx) = mpsc::channel(8);
        wire.open(|| rx.is_empty());
        // A DEX patch, say: always the task's to write.
        assert_eq!(
            wire.send_or_queue(numbered(0), &queue, false).expect("room"),
            Sent::Queued
        );
        assert_eq!(
            wire.send_or_queue(numbered(1), &queue, true).expect("room"),
            Sent::Queued,
            "a small message after it waits its turn"
        );
        assert!(!wire.take());
        let order: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|frame| frame.payload_str()[..6].to_owned())
            .collect();
        assert_eq!(order, ["000000", "000001"]);
    }

    #[tokio::test]
    async fn a_frame_the_socket_took_in_part_is_finished_first_and_every_frame_arrives_whole() {
        let (wire, mut peer) = pair().await;
        let (queue, mut rx) = mpsc::channel(8);
        // Nobody reads: direct writes go out whole until the socket can't take one whole.
        let mut next = 0;
        let last_direct = loop {
            wire.open(|| rx.is_empty());
            let sent = wire.send_or_queue(numbered(next), &queue, true).expect("room");
            next += 1;
            if sent != Sent::Direct {
                break sent;
            }
            assert!(next < 10_000, "the socket never filled up");
        };
        assert!(next > 1, "some frames went out whole first");
        assert_eq!(wire.take(), last_direct == Sent::Partly);
        // Meanwhile the gate is the task's: the next broadcast queues behind the rest.
        assert_eq!(
            wire.send_or_queue(numbered(next), &queue, true).expect("room"),
            Sent::Queued
        );
        let reader = tokio::spawn(async move {
            let mut bytes = Vec::new();
            peer.read_to_end(&mut bytes).await.expect("read");
            bytes
        });
        // The task's part: the queue in order, starting with the rest of the half-written frame.
        while let Ok(mut frame) = rx.try_recv() {
            frame.finish(wire.stream()).await.expect("write");
        }
        drop(wire);
        let bytes = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
            .await
            .expect("the peer reads everything")
            .expect("reader");
        assert_eq!(frame_numbers(&bytes), (0..=next).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn tungstenite_writes_only_while_the_task_holds_the_gate() {
        let (wire, mut peer) = pair().await;
        let mut io = WireIo(wire.clone());
        let mut cx = Context::from_waker(Waker::noop());
        wire.open(|| true);
        assert!(
            Pin::new(&mut io).poll_write(&mut cx, b"pong").is_pending(),
            "a pong waits while broadcasts may write"
        );
        assert!(!wire.take());
        assert!(matches!(
            Pin::new(&mut io).poll_write(&mut cx, b"pong"),
            Poll::Ready(Ok(4))
        ));
        let mut bytes = [0; 4];
        peer.read_exact(&mut bytes).await.expect("read");
        assert_eq!(&bytes, b"pong");
    }
}
