//! A bounded queue between threads that allocates only for what is waiting in it.
//!
//! std's `sync_channel(n)` allocates and touches all `n` slots when it is made: for the output
//! queue (8192 lines) and the watcher's (4096 changes), a large share of an idle server's memory
//! (BENCHMARKS.md, idle RSS). This one is std's list channel, which grows in small blocks as
//! items wait, with the bound kept by a shared count.
//!
//! Not `flume`: its bounded channel doesn't preallocate either (crossbeam's does), but the
//! terminal's flush must get in behind a full queue ([`Sender::send_past_bound`]), which it
//! doesn't offer; this is std's channel plus one counter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvError, RecvTimeoutError, SendError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// A queue that holds at most `bound` items (see [`Sender::send_past_bound`]).
pub fn channel<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Sender {
            tx,
            queued: queued.clone(),
            bound,
        },
        Receiver { rx, queued },
    )
}

pub struct Sender<T> {
    tx: mpsc::Sender<T>,
    queued: Arc<AtomicUsize>,
    bound: usize,
}

pub struct Receiver<T> {
    rx: mpsc::Receiver<T>,
    queued: Arc<AtomicUsize>,
}

impl<T> Sender<T> {
    /// Queues `value` unless the queue is full or its receiver is gone; never waits.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.bound {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(TrySendError::Full(value));
        }
        self.tx.send(value).map_err(|SendError(value)| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            TrySendError::Disconnected(value)
        })
    }

    /// Queues `value` even when the queue is full: for a control message that must get in
    /// behind whatever is waiting.
    pub fn send_past_bound(&self, value: T) -> Result<(), SendError<T>> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(value).inspect_err(|_| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        })
    }
}

impl<T> Receiver<T> {
    /// Waits for the next item; an error once every sender is gone and the queue is empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.rx.recv().inspect(|_| self.taken())
    }

    /// Waits at most `timeout` for the next item.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).inspect(|_| self.taken())
    }

    fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_bound() {
        let (tx, rx) = channel(3);
        assert!((0..3).all(|i| tx.try_send(i).is_ok()));
        assert!(
            matches!(tx.try_send(3), Err(TrySendError::Full(3))),
            "one past the bound"
        );
        assert_eq!(rx.recv(), Ok(0));
        assert!(tx.try_send(4).is_ok(), "taking one makes room for one");
        assert!(matches!(tx.try_send(5), Err(TrySendError::Full(5))));
        assert_eq!(
            std::iter::from_fn(|| rx.recv_timeout(Duration::ZERO).ok()).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
    }

    #[test]
    fn a_control_message_gets_in_behind_a_full_queue() {
        let (tx, rx) = channel(1);
        assert!(tx.try_send("line").is_ok());
        assert!(tx.send_past_bound("flush").is_ok());
        assert_eq!(rx.recv(), Ok("line"));
        assert_eq!(rx.recv(), Ok("flush"));
        assert!(tx.try_send("next").is_ok(), "the count is back to empty");
        assert!(matches!(tx.try_send("more"), Err(TrySendError::Full(_))));
    }

    #[test]
    fn a_gone_receiver_gives_the_value_back() {
        let (tx, rx) = channel(1);
        drop(rx);
        assert!(matches!(tx.try_send(7), Err(TrySendError::Disconnected(7))));
        // The failed sends took no place: with a receiver, this would still fit.
        assert_eq!(tx.queued.load(Ordering::Relaxed), 0);
    }
}
