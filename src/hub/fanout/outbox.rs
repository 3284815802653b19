//! The device task's side of the fan-out: its queue, the frame it is writing, and when it lends
//! its socket to broadcasts (the rules are at the top of [`super`]).

use std::io;
use std::sync::Arc;

use futures_util::{FutureExt, SinkExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::frame::RawFrame;
use super::wire::{Socket, Wire};

/// Frames written in one go before the task looks at the device's side again.
const WRITE_BURST: usize = 64;

/// What a device's task holds of the fan-out. The task drives it in a loop: [`Outbox::park`]
/// before it waits, [`Outbox::take_socket`] as soon as it wakes, then whichever of the writing
/// methods its wake-up calls for.
pub struct Outbox {
    wire: Arc<Wire>,
    queue: mpsc::Receiver<RawFrame>,
    /// The frame being written: taken off the queue, perhaps partly on the socket. While there
    /// is one, the task writes nothing else (tungstenite's bytes included) until it is done.
    in_flight: Option<RawFrame>,
    /// False while tungstenite may hold bytes of its own (a pong, the answer to a close): every
    /// frame read may queue one, every completed flush sends them. Raw frames must wait for
    /// those, but the flush is only needed then: a broadcast to a thousand devices skips it.
    tungstenite_clean: bool,
}

impl Outbox {
    pub fn new(wire: Arc<Wire>, queue: mpsc::Receiver<RawFrame>) -> Self {
        Self {
            wire,
            queue,
            in_flight: None,
            tungstenite_clean: false,
        }
    }

    /// Writes what is queued for a device that just registered (its greeting) if the socket
    /// takes it at once; the loop writes the rest.
    pub fn greet(&mut self, ws: &mut Socket) -> io::Result<()> {
        // Raw frames may only follow once tungstenite has nothing of its own half-sent.
        if !matches!(ws.flush().now_or_never(), Some(Ok(()))) {
            return Ok(());
        }
        self.tungstenite_clean = true;
        self.in_flight = self.queue.try_recv().ok();
        self.write_ready()
    }

    /// True while a frame is being written: the task waits for the socket, not for news.
    pub fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// A frame was read from the device: tungstenite may now hold an answer to it.
    pub fn frame_read(&mut self) {
        self.tungstenite_clean = false;
    }

    /// About to wait with nothing in flight: once tungstenite has written what it holds (the
    /// pong to a frame just read), broadcasts may write to the socket directly. An error means
    /// the socket is broken.
    pub fn park(&mut self, ws: &mut Socket) -> Result<(), WsError> {
        debug_assert!(self.in_flight.is_none(), "parking with a frame half-written");
        if !self.tungstenite_clean {
            match ws.flush().now_or_never() {
                Some(Ok(())) => self.tungstenite_clean = true,
                Some(Err(e)) => return Err(e),
                None => {} // the socket is full: broadcasts keep queuing
            }
        }
        if self.tungstenite_clean {
            self.wire.open(|| self.queue.is_empty());
        }
        Ok(())
    }

    /// Waits for a queued frame and makes it the frame in flight; false once the queue's
    /// sender is gone (the registry dropped the device). Cancel-safe.
    pub async fn recv(&mut self) -> bool {
        debug_assert!(
            self.in_flight.is_none(),
            "a queued frame would overtake the one in flight"
        );
        match self.queue.recv().await {
            Some(frame) => {
                self.in_flight = Some(frame);
                true
            }
            None => false,
        }
    }

    /// Awake: the socket is the task's again, before it acts on whatever woke it. A frame a
    /// broadcast left half-written is first in the queue (or was just received) and becomes
    /// the frame in flight, so that nothing (not even the pong to a ping just read) reaches the
    /// socket before its rest.
    pub fn take_socket(&mut self) {
        if self.wire.take() && self.in_flight.is_none() {
            self.in_flight = self.queue.try_recv().ok();
        }
    }

    /// True if tungstenite may hold bytes that must reach the socket before the frame in flight
    /// (the rest of a half-written frame never waits for them: it must come first).
    pub fn must_flush_first(&self) -> bool {
        !self.tungstenite_clean && self.in_flight.as_ref().is_some_and(|frame| !frame.is_partial())
    }

    /// Writes out what tungstenite holds. Cancel-safe: tungstenite keeps what it didn't write.
    pub async fn flush_tungstenite(&mut self, ws: &mut Socket) -> Result<(), WsError> {
        ws.flush().await?;
        self.tungstenite_clean = true;
        Ok(())
    }

    /// Writes the frame in flight, then whatever else is queued, as far as the socket takes it
    /// without waiting: most broadcasts fit in the socket buffer whole, and then they need no
    /// timer and no further trip through the task's select. What the socket doesn't take stays
    /// in flight; after [`WRITE_BURST`] frames the task looks at its other work first. On an
    /// error the connection is over.
    pub fn write_ready(&mut self) -> io::Result<()> {
        let Some(mut frame) = self.in_flight.take() else {
            return Ok(());
        };
        for _ in 0..WRITE_BURST {
            let before = frame.written();
            let wrote = frame.try_write(self.wire.stream());
            if frame.written() > before {
                self.wire.progressed();
            }
            if !wrote? {
                break;
            }
            match self.queue.try_recv() {
                Ok(next) => frame = next,
                Err(_) => return Ok(()),
            }
        }
        self.in_flight = Some(frame);
        Ok(())
    }

    /// Waits until the socket takes more of the frame in flight; once it is done, writes what
    /// else is queued as far as the socket takes it at once. Cancel-safe: progress is kept in
    /// the frame.
    pub async fn write_some(&mut self) -> io::Result<()> {
        let Some(frame) = self.in_flight.as_mut() else {
            return Ok(());
        };
        let done = frame.write_some(self.wire.stream()).await?;
        self.wire.progressed(); // `write_some` only returns Ok after moving some bytes
        if done {
            self.in_flight = self.queue.try_recv().ok();
            self.write_ready()?;
        }
        Ok(())
    }

    /// Before a close frame: the rest of a half-written frame (a cut frame would corrupt the
    /// stream), then what tungstenite holds (a half-sent pong, the answer to the device's
    /// close), then, with `drain`, every frame still queued. Waits for the socket as long as it
    /// takes; the caller bounds it.
    pub async fn write_out(&mut self, ws: &mut Socket, drain: bool) -> Result<(), WsError> {
        let mut unstarted = None;
        if let Some(mut frame) = self.in_flight.take() {
            if frame.is_partial() {
                frame.finish(self.wire.stream()).await?;
            } else {
                unstarted = Some(frame);
            }
        }
        ws.flush().await?;
        if drain {
            let queued = std::iter::from_fn(|| self.queue.try_recv().ok());
            for mut frame in unstarted.into_iter().chain(queued) {
                frame.finish(self.wire.stream()).await?;
            }
        }
        Ok(())
    }
}
