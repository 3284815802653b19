//! Who gets one of the `--max-clients` sockets, so that nobody on the network can keep phones
//! from pairing without knowing the token.
//!
//! - Every open socket holds a [`Ticket`], also while its handshake is in progress.
//! - Sockets that have not authenticated yet ("pending") are capped per address (IPv4 address,
//!   IPv6 /64, like [`super::backoff`]) at a quarter of `--max-clients`: one host can't fill
//!   the server. A new socket from an address at its cap is refused.
//! - When every socket is taken, a new one takes the place of the oldest pending socket of any
//!   address: a stranger holding sockets open only delays a phone by one handshake. Only when
//!   every socket belongs to an authenticated device is the new one refused (HTTP 503).
//! - Authenticated devices are never evicted and never count against an address's cap.
//! - A socket whose wrong credentials are being held back ([`super::backoff`]) still counts
//!   against its address until the hold ends, even if it was evicted: otherwise a guesser
//!   could evict its own held-back guesses and never wait for an answer.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::backoff::address_key;
use super::per_address::{Counts, SHARE};

#[derive(Debug)]
struct Pending {
    key: IpAddr,
    evict: CancellationToken,
    /// While a rejection is held back: until when.
    held_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Table {
    /// Tickets alive, pending or not (an evicted one until its connection has ended).
    open: usize,
    /// Pending sockets by age (ids only grow).
    pending: BTreeMap<u64, Pending>,
    /// Pending sockets per address, held-back evicted ones included.
    per_address: Counts,
    /// Evicted sockets whose hold had not ended: their address's count until then.
    held: Vec<(IpAddr, Instant)>,
    next_id: u64,
}

impl Table {
    fn evict(&mut self, id: u64, now: Instant) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match pending.held_until.filter(|until| *until > now) {
            Some(until) => self.held.push((pending.key, until)),
            None => self.per_address.remove(pending.key),
        }
        pending.evict.cancel();
    }

    /// Takes `id` off the pending list.
    fn forget(&mut self, id: u64) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        self.per_address.remove(pending.key);
        Some(pending)
    }

    /// Ends the holds that are over.
    fn release_held(&mut self, now: Instant) {
        let mut over = Vec::new();
        self.held.retain(|(key, until)| {
            let keep = *until > now;
            if !keep {
                over.push(*key);
            }
            keep
        });
        for key in over {
            self.per_address.remove(key);
        }
    }
}

/// The admission table of one hub.
#[derive(Debug)]
pub struct Admission {
    table: Mutex<Table>,
    max: usize,
    per_address: usize,
}

/// What happened to a new connection.
#[derive(Debug)]
pub enum Admit {
    /// It has a socket (perhaps in place of an older pending one).
    Open(Ticket),
    /// Every socket belongs to an authenticated device.
    Full,
    /// The address holds its share of unauthenticated sockets.
    AddressFull,
}

impl Admission {
    pub fn new(max_clients: usize) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table::default()),
            max: max_clients.max(1),
            per_address: (max_clients / SHARE).max(1),
        })
    }

    /// Admits a new connection from `ip`, evicting an older pending socket if need be.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admit {
        let key = address_key(ip);
        let now = Instant::now();
        let mut table = self.table.lock();
        if !table.held.is_empty() {
            table.release_held(now);
        }
        if table.per_address.get(key) >= self.per_address {
            return Admit::AddressFull;
        }
        let victim = if table.open >= self.max {
            match table.pending.keys().next() {
                Some(id) => Some(*id),
                None => return Admit::Full,
            }
        } else {
            None
        };
        if let Some(id) = victim {
            table.evict(id, now);
        }
        let id = table.next_id;
        table.next_id += 1;
        table.open += 1;
        let evict = CancellationToken::new();
        table.pending.insert(
            id,
            Pending {
                key,
                evict: evict.clone(),
                held_until: None,
            },
        );
        table.per_address.add(key);
        Admit::Open(Ticket {
            admission: self.clone(),
            id,
            evict: Some(evict),
        })
    }

    /// Sockets open (tickets alive).
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.table.lock().open
    }
}

/// One socket's place. Dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    /// `None` once authenticated: a device can't be evicted, and a thousand devices need not
    /// keep a token each.
    evict: Option<CancellationToken>,
}

impl Ticket {
    /// Completes when a newer connection took this pending socket's place (never, once
    /// authenticated).
    pub async fn evicted(&self) {
        match &self.evict {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// True if a newer connection took this socket's place.
    #[cfg(test)]
    pub fn is_evicted(&self) -> bool {
        self.evict.as_ref().is_some_and(CancellationToken::is_cancelled)
    }

    /// The socket's rejection is held back until `until`: it keeps counting against its address
    /// until then, even if evicted.
    pub fn hold_until(&self, until: Instant) {
        if let Some(pending) = self.admission.table.lock().pending.get_mut(&self.id) {
            pending.held_until = Some(until);
        }
    }

    /// The socket authenticated: it is no longer pending, can't be evicted, and no longer counts
    /// against its address. False if it was evicted first.
    pub fn authenticated(&mut self) -> bool {
        let was_pending = self.admission.table.lock().forget(self.id).is_some();
        if was_pending {
            self.evict = None;
        }
        was_pending
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.admission.table.lock();
        table.forget(self.id);
        table.open -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, last])
    }

    fn open(admission: &Arc<Admission>, from: IpAddr) -> Ticket {
        match admission.admit(from) {
            Admit::Open(ticket) => ticket,
            refused => panic!("refused: {refused:?}"),
        }
    }

    #[test]
    fn one_address_holds_at_most_a_quarter() {
        let admission = Admission::new(8);
        let first = open(&admission, ip(66));
        let _second = open(&admission, ip(66));
        assert!(matches!(admission.admit(ip(66)), Admit::AddressFull));
        // Another address is not affected.
        let device = open(&admission, ip(7));
        assert!(!device.is_evicted() && !first.is_evicted());
        drop(first);
        let _third = open(&admission, ip(66));
    }

    #[test]
    fn an_evicted_held_back_guess_counts_against_its_address_until_the_hold_ends() {
        let admission = Admission::new(4);
        let guess = open(&admission, ip(66));
        guess.hold_until(Instant::now() + std::time::Duration::from_millis(200));
        let _others: Vec<Ticket> = (1..=3).map(|n| open(&admission, ip(n))).collect();
        let _phone = open(&admission, ip(9));
        assert!(guess.is_evicted(), "the oldest pending socket made room");
        drop(guess);
        // Its address's share is one (4 / 4), still taken by the held-back guess.
        assert!(matches!(admission.admit(ip(66)), Admit::AddressFull));
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(!matches!(admission.admit(ip(66)), Admit::AddressFull));
    }

    #[test]
    fn a_full_server_evicts_the_oldest_pending_socket_never_a_device() {
        let admission = Admission::new(4);
        let mut devices: Vec<Ticket> = (1..=2).map(|n| open(&admission, ip(n))).collect();
        assert!(devices.iter_mut().all(Ticket::authenticated));
        let stranger_a = open(&admission, ip(66));
        let stranger_b = open(&admission, ip(67));
        let mut phone = open(&admission, ip(3));
        assert!(stranger_a.is_evicted() && !stranger_b.is_evicted() && !phone.is_evicted());
        drop(stranger_a);
        assert!(phone.authenticated());
        let mut late = open(&admission, ip(4));
        assert!(stranger_b.is_evicted());
        assert!(late.authenticated());
        drop(stranger_b);
        // Every socket is an authenticated device now.
        assert!(matches!(admission.admit(ip(5)), Admit::Full));
        assert_eq!(admission.open(), 4);
        drop(devices);
        assert_eq!(admission.open(), 2);
        assert!(matches!(admission.admit(ip(5)), Admit::Open(_)));
    }

    #[test]
    fn authenticated_devices_do_not_count_against_their_address() {
        let admission = Admission::new(8);
        let devices: Vec<Ticket> = (0..6)
            .map(|_| {
                let mut device = open(&admission, ip(9));
                assert!(device.authenticated());
                device
            })
            .collect();
        assert!(devices.iter().all(|d| !d.is_evicted()));
        let pending = open(&admission, ip(9));
        let next = open(&admission, ip(9));
        assert!(!pending.is_evicted() && !next.is_evicted());
    }

    #[test]
    fn an_evicted_socket_can_not_authenticate() {
        let admission = Admission::new(1);
        let mut first = open(&admission, ip(66));
        let _second = open(&admission, ip(7));
        assert!(first.is_evicted());
        assert!(!first.authenticated());
    }
}
