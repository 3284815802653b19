//! The fan-out: how one broadcast's bytes reach every device's socket.
//!
//! A message is serialized once. Its bytes go, framed but not copied ([`RawFrame`]), either
//! straight to the socket of a device whose task waits with nothing to write, written by the
//! broadcasting thread itself, or into the device's bounded queue for its task to write. That
//! saves a task wake-up per device and message, and the first device gets a message before the
//! last one is queued. The rest of the hub hands this module bytes, queues and sockets, and
//! needs to know none of the rules below. docs/architecture.md ("The fan-out") shows where it
//! sits; docs/protocol.md ("Flow control") is what devices are promised.
//!
//! # Who may write to a socket, and when
//!
//! Every device's socket has a gate ([`Wire`]), a state behind a small lock:
//!
//! - *Task*: only the device's task writes: tungstenite's own frames (the handshake, pings,
//!   pongs, the close handshake) and the raw frames from its queue. Broadcasts queue.
//! - *Open*: the task is parked with its queue empty, no frame in flight and nothing held by
//!   tungstenite. A broadcast of a small message ([`DIRECT_MAX`]) writes it directly, whole
//!   or as far as the socket takes it, under the gate's lock.
//! - *HalfWritten*: a direct write left a frame partly on the socket. Its rest is first in the
//!   queue; only the task writes, and it starts with that rest.
//!
//! The gate starts as the task's (handshake and authentication are the task's alone). Only the
//! task opens it, when it parks ([`Outbox::park`]); it takes it back as soon as it wakes,
//! before it acts on whatever woke it ([`Outbox::take_socket`]). A broadcast that queues shuts
//! an open gate, so the gate opens again only once the task has emptied its queue. tungstenite
//! is driven only by the task: if it writes while the gate is open (the pong to a ping read
//! while parked), it takes the gate back first, which is safe because an open socket is at a
//! frame boundary with nothing queued. While a frame is half-written its write waits, and its
//! waker is kept and woken when the task takes the gate back: a `Pending` always has a wake-up
//! arranged. Once the gate is the task's, only the task changes it again.
//!
//! # Order
//!
//! - Broadcasts are handed out under the registry's lock, one after the other, so every device
//!   gets them in the same order; a device's greeting (`core:connected`, the last build) is
//!   queued under the same lock when it registers, so it comes before all of them.
//! - For one device, a direct write happens only with its queue empty, and queuing shuts the
//!   gate: no message overtakes one handed out before it.
//! - Frames never interleave. The rest of a half-written frame goes out before anything else,
//!   even a pong, a ping or a close frame. A raw frame from the queue starts only once
//!   tungstenite has written what it held; tungstenite's frames may be overtaken by raw ones
//!   only while none of their bytes are on the socket.
//!
//! # A slow or full client
//!
//! - A direct write takes only what the socket buffer takes at once; the rest goes to the task
//!   (*HalfWritten*), so a device that reads slowly costs a broadcast no more than one write.
//! - Messages over [`DIRECT_MAX`] (a DEX patch) always go through the queue: each task writes
//!   the shared bytes itself, the devices' writes overlap, and no lock is held meanwhile.
//! - A queue holds at most `registry::CLIENT_QUEUE_CAPACITY` frames. A broadcast that finds one
//!   full gets it back ([`Handed::Full`]); the registry closes that client with 1013 without
//!   draining and drops it, and the other devices never wait for it.
//! - A task whose write makes no progress for the client timeout drops the connection.
//!   [`Wire::stuck_for`] tells how long since bytes last reached a socket, by either writer.
//!
//! # Closes and broadcasts
//!
//! - A close request wakes the task, which takes the gate back: from then on broadcasts only
//!   queue for it. It leaves the registry (if the request did not already remove it) before its
//!   close handshake; after that no broadcast reaches it at all.
//! - The close frame is written by the task alone, after the rest of a half-written frame,
//!   after tungstenite's bytes and, when the close drains, after every frame still queued
//!   ([`Outbox::write_out`]). A close for a client that is too slow or broken does not drain:
//!   what is queued is dropped with the connection.
//!
//! # Locks
//!
//! Lock order: the registry's, then a gate's. A device's task takes its gate's lock on its own
//! and takes no other lock while holding it (the queue check in [`Wire::open`] takes none of
//! ours). Nothing done under these locks waits: queuing is `try_send`, which may schedule the
//! device's task but never waits; the waker kept for tungstenite's write is woken after the
//! gate's lock is released.
//!
//! A direct write happens under both locks, and it cannot wait for the network either: it is
//! `TcpStream::try_write_vectored` on a socket that tokio keeps non-blocking, which returns
//! `WouldBlock` when the socket buffer is full instead of waiting (and registers no interest);
//! [`RawFrame::try_write`] repeats it only while it makes progress on a frame of at most
//! [`DIRECT_MAX`] bytes plus its header; there is no `.await` under either lock. What it costs
//! is the kernel's CPU time for one `writev` (on loopback that includes the receiving side's
//! TCP path). So a broadcast holds the registry's lock for about one `writev` per device it
//! writes to directly: registration, removal, relays and listings wait that long, never for a
//! device.
//!
//! # The split ([`Broadcast`])
//!
//! One thread writing to a thousand sockets would leave the runtime's other workers idle. So of
//! every `workers` devices, all but one are queued for their own tasks, which the other workers
//! run meanwhile, and the broadcasting thread writes to the one; the last devices (one in
//! [`DIRECT_TAIL_SHARE`]) it writes to itself. BENCHMARKS.md has the measurements behind it.

mod frame;
mod outbox;
mod wire;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use frame::RawFrame;
pub use outbox::Outbox;
pub use wire::{Socket, Wire, WireIo};

/// Largest message a broadcast writes directly. Small messages (build events, logs) nearly
/// always fit in the socket buffer whole; a DEX patch is written by each device's own task,
/// so that the devices' writes overlap and no broadcast holds the registry for long.
pub const DIRECT_MAX: usize = 16 * 1024;

/// The last devices of a broadcast that the broadcasting thread writes to itself, however many
/// workers there are, are one in this many. A device's own task costs a little more per write
/// than a direct write (waking and polling it), so the other workers' backlog grows with the
/// number of devices; tasks woken at the end would only queue behind it while this thread is
/// about to be free.
pub const DIRECT_TAIL_SHARE: usize = 8;

/// One broadcast on its way: the frame every device shares, and which devices the broadcasting
/// thread writes to itself. Devices are handed the frame one by one, in one pass, under the
/// registry's lock.
pub struct Broadcast {
    frame: RawFrame,
    small: bool,
    workers: usize,
    /// Devices from this position on are written to directly.
    tail_from: usize,
    next: usize,
}

/// What became of one device's copy of a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// On the socket or in the queue.
    Delivered,
    /// The device's queue is full: it can't keep up.
    Full,
    /// The device's task is gone.
    Gone,
}

impl Broadcast {
    /// A broadcast of `bytes` to at most `clients` devices.
    pub fn new(bytes: &Utf8Bytes, clients: usize) -> Self {
        Self {
            // Serialized once: each device's frame shares the bytes.
            frame: RawFrame::text(bytes.clone().into()),
            small: bytes.len() <= DIRECT_MAX,
            workers: tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers()),
            tail_from: clients - clients / DIRECT_TAIL_SHARE,
            next: 0,
        }
    }

    /// Hands the frame to the next device: written directly if it is this thread's turn and
    /// the device's task is waiting with nothing to write, queued otherwise.
    pub fn hand_to(&mut self, wire: &Wire, queue: &mpsc::Sender<RawFrame>) -> Handed {
        let position = self.next;
        self.next += 1;
        let direct = self.small && (position >= self.tail_from || position.is_multiple_of(self.workers));
        match wire.send_or_queue(self.frame.clone(), queue, direct) {
            Ok(_) => Handed::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => Handed::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Handed::Gone,
        }
    }
}
