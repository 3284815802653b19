//! A device's TCP socket, shared by the device's task and by broadcasts, and the gate that says
//! which of them may write to it now (the rules are at the top of [`super`]).

use parking_lot::Mutex;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;

use super::frame::RawFrame;
use crate::session::unix_ms;

/// A device's WebSocket, over its shared socket.
pub type Socket = WebSocketStream<WireIo>;

/// Who may write to the socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// The device's task writes and decides the order; broadcasts queue.
    Task,
    /// The task is parked with its queue empty and nothing in flight or held by tungstenite:
    /// broadcasts write whole small frames directly.
    Open,
    /// A direct write left a frame half-written. Its rest is first in the queue, and the task
    /// must finish it before anything else reaches the socket.
    HalfWritten,
}

#[derive(Debug)]
struct GateState {
    gate: Gate,
    /// tungstenite's write waiting for the task to take back a half-written socket (see
    /// [`WireIo`]); woken by [`Wire::take`], the only way out of [`Gate::HalfWritten`].
    waiting_writer: Option<Waker>,
}

/// One device's socket, the gate that says who writes to it, and when it last took bytes.
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    state: Mutex<GateState>,
    /// Unix ms when bytes last reached the socket.
    last_progress: AtomicU64,
}

/// What [`Wire::send_or_queue`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// Written whole to the socket.
    Direct,
    /// Written in part; the rest is queued for the device's task.
    Partly,
    /// Queued for the device's task.
    Queued,
}

impl Wire {
    pub fn new(stream: TcpStream) -> Arc<Self> {
        Arc::new(Self {
            stream,
            state: Mutex::new(GateState {
                gate: Gate::Task,
                waiting_writer: None,
            }),
            last_progress: AtomicU64::new(unix_ms()),
        })
    }

    pub(in crate::hub) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Records that bytes reached the socket.
    pub(super) fn progressed(&self) {
        self.last_progress.store(unix_ms(), Ordering::Relaxed);
    }

    /// How long since bytes last reached the socket.
    pub(in crate::hub) fn stuck_for(&self) -> Duration {
        Duration::from_millis(unix_ms().saturating_sub(self.last_progress.load(Ordering::Relaxed)))
    }

    /// Pretends nothing reached the socket for `quiet`.
    #[cfg(test)]
    pub(in crate::hub) fn stalled_for_test(&self, quiet: Duration) {
        let then = unix_ms().saturating_sub(u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX));
        self.last_progress.store(then, Ordering::Relaxed);
    }

    /// A broadcast's write: directly if `direct` and the gate is open, otherwise (and for
    /// whatever the socket doesn't take at once) through `queue`. Every message for the device
    /// is queued here, under the gate's lock: queuing shuts an open gate, so a later message
    /// can't be written directly past one still queued, and the task, parking, sees it. A write
    /// error is left for the task to meet: the frame is queued, and the task's own write fails
    /// and closes the connection.
    pub(super) fn send_or_queue(
        &self,
        mut frame: RawFrame,
        queue: &mpsc::Sender<RawFrame>,
        direct: bool,
    ) -> Result<Sent, mpsc::error::TrySendError<RawFrame>> {
        let mut state = self.state.lock();
        if !direct || state.gate != Gate::Open {
            if state.gate == Gate::Open {
                state.gate = Gate::Task; // the task wakes for the queued message and takes it anyway
            }
            return queue.try_send(frame).map(|()| Sent::Queued);
        }
        // A socket write under this lock (and the registry's): it can't wait. `try_write` is
        // `try_write_vectored` on a socket tokio keeps non-blocking, repeated only while it
        // makes progress on a frame of at most `DIRECT_MAX` bytes; "the socket is full"
        // comes back as `Ok(false)`, never as a wait (the proof in full: "Locks", in `super`).
        let written = frame.try_write(&self.stream);
        if frame.written() > 0 {
            self.progressed();
        }
        if let Ok(true) = written {
            return Ok(Sent::Direct);
        }
        let (next, sent) = if frame.is_partial() {
            (Gate::HalfWritten, Sent::Partly)
        } else {
            (Gate::Task, Sent::Queued)
        };
        state.gate = next;
        // The gate was open, so the queue is empty and has room (only a task that is gone
        // refuses it).
        queue.try_send(frame).map(|()| sent)
    }

    /// The task takes the socket back. Returns true if a direct write left a frame half-written:
    /// it is first in the task's queue and must be finished before anything else is written.
    pub(super) fn take(&self) -> bool {
        let mut state = self.state.lock();
        let half_written = state.gate == Gate::HalfWritten;
        state.gate = Gate::Task;
        let waiting = state.waiting_writer.take();
        drop(state);
        if let Some(writer) = waiting {
            writer.wake(); // the task itself: it polls its socket again once it is done here
        }
        half_written
    }

    /// The task parks with nothing of its own in flight or held by tungstenite: broadcasts may
    /// write directly from now on, unless something is queued (`queue_empty` is asked under the
    /// gate's lock, so a broadcast either queued before this or sees the gate open).
    pub(super) fn open(&self, queue_empty: impl FnOnce() -> bool) {
        let mut state = self.state.lock();
        if state.gate == Gate::Task && queue_empty() {
            state.gate = Gate::Open;
        }
    }

    /// For tungstenite's writes, which only the task makes: true if the task may write now. An
    /// open gate is taken back at once (its queue is empty and nothing is half-written, so the
    /// socket is at a frame boundary and nothing queued is overtaken); a half-written one makes
    /// the write wait, with `cx`'s waker kept for [`Wire::take`].
    fn claim_for_tungstenite(&self, cx: &Context<'_>) -> bool {
        let mut state = self.state.lock();
        match state.gate {
            Gate::Task => true,
            Gate::Open => {
                state.gate = Gate::Task;
                true
            }
            Gate::HalfWritten => {
                match &mut state.waiting_writer {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                false
            }
        }
    }
}

/// The socket as tungstenite reads and writes it: reads as usual; writes (the handshake, pongs,
/// pings, the close handshake) once the gate is the task's. Only the device's task drives
/// tungstenite, so a write that finds the gate open takes it back; one that finds a frame
/// half-written reports `Pending` until [`Wire::take`] wakes it (tungstenite keeps the bytes,
/// whole, meanwhile). Once the gate is the task's, only the task changes it, so the write that
/// follows the check can't meet a broadcast's.
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
        if !self.0.claim_for_tungstenite(cx) {
            return Poll::Pending; // the waker is kept: `Wire::take` wakes it
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

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A FIN is a write too: never in the middle of a broadcast's frame.
        if !self.0.claim_for_tungstenite(cx) {
            return Poll::Pending;
        }
        let fd = self.stream().as_raw_fd();
        Poll::Ready(
            nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write).map_err(io::Error::from),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

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

    /// Fills the socket with direct writes until one is not taken whole; returns how many
    /// frames were handed out and what became of the last.
    fn fill(wire: &Wire, queue: &mpsc::Sender<RawFrame>, rx: &mpsc::Receiver<RawFrame>) -> (usize, Sent) {
        let mut next = 0;
        loop {
            wire.open(|| rx.is_empty());
            let sent = wire.send_or_queue(numbered(next), queue, true).expect("room");
            next += 1;
            if sent != Sent::Direct {
                return (next, sent);
            }
            assert!(next < 10_000, "the socket never filled up");
        }
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
        let (mut next, last) = fill(&wire, &queue, &rx);
        assert!(next > 1, "some frames went out whole first");
        assert_eq!(wire.take(), last == Sent::Partly);
        // Meanwhile the gate is the task's: the next broadcast queues behind the rest.
        assert_eq!(
            wire.send_or_queue(numbered(next), &queue, true).expect("room"),
            Sent::Queued
        );
        next += 1;
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
        let bytes = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the peer reads everything")
            .expect("reader");
        assert_eq!(frame_numbers(&bytes), (0..next).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn tungstenite_takes_an_open_gate_back_and_writes() {
        let (wire, mut peer) = pair().await;
        let (queue, rx) = mpsc::channel(8);
        let mut io = WireIo(wire.clone());
        let mut cx = Context::from_waker(Waker::noop());
        wire.open(|| true);
        assert!(matches!(
            Pin::new(&mut io).poll_write(&mut cx, b"pong"),
            Poll::Ready(Ok(4))
        ));
        assert_eq!(
            wire.send_or_queue(numbered(0), &queue, true).expect("room"),
            Sent::Queued,
            "the gate is the task's again: broadcasts queue"
        );
        assert_eq!(rx.len(), 1);
        let mut bytes = [0; 4];
        peer.read_exact(&mut bytes).await.expect("read");
        assert_eq!(&bytes, b"pong");
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_write_waiting_for_a_half_written_frame_is_woken_when_the_task_takes_the_socket() {
        let (wire, _peer) = pair().await;
        let (queue, rx) = mpsc::channel(8);
        // Far more than a socket buffer holds: the socket takes a part of it, never all.
        wire.open(|| rx.is_empty());
        let huge = RawFrame::text(Bytes::from("z".repeat(16 << 20)));
        assert_eq!(
            wire.send_or_queue(huge, &queue, true).expect("room"),
            Sent::Partly
        );
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut io = WireIo(wire.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(
            Pin::new(&mut io).poll_write(&mut cx, b"pong").is_pending(),
            "nothing may cut into the half-written frame"
        );
        assert!(!flag.0.load(Ordering::SeqCst));
        assert!(wire.take(), "the task learns of the half-written frame");
        assert!(
            flag.0.load(Ordering::SeqCst),
            "the pending write was woken: a Pending always has a wake-up arranged"
        );
    }
}
