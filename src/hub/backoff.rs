//! Per-address back-off on failed authentication: slows a credential guesser down without
//! costing a real device anything.
//!
//! Only wrong credentials (4001, 4002) count: they are the guesses. A 4003 (no or malformed
//! `client:connect`) tests no credential, so it neither counts nor resets. Past
//! [`BACKOFF_THRESHOLD`] consecutive failures from one address, each further rejection from
//! it is held back before the close frame goes out, doubling from [`FIRST_DELAY`] up to
//! [`MAX_DELAY`]. With `--max-clients` capping how many sockets can wait at once, that caps
//! the guess rate of one address. Successes are never delayed (nor are other addresses), and
//! a success clears its address.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Failures from one address that are rejected at once: enough for a device retrying with
/// stale credentials after a rotation, or a developer mistyping, never to notice.
pub const BACKOFF_THRESHOLD: u32 = 10;
/// Delay of the first rejection past the threshold; each further one doubles it.
pub const FIRST_DELAY: Duration = Duration::from_millis(50);
/// Longest delay: long enough to cut a guesser to about `--max-clients` guesses a second,
/// short enough that a device stuck on old credentials still hears 4001/4002 promptly.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// An address that has not failed for this long starts again from zero.
pub const QUIET_PERIOD: Duration = Duration::from_secs(60);
/// Addresses tracked at most, so that a spray of source addresses can't grow the table
/// without bound (4096 entries are well under a megabyte).
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// The outcome of recording one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Consecutive failures from the address, this one included.
    pub failures: u32,
    /// How long to hold the rejection back.
    pub delay: Duration,
    /// True for the first delayed failure of a run: the moment to log, once.
    pub entered_backoff: bool,
}

/// Consecutive failures per address; pure (the caller passes the time).
#[derive(Debug)]
pub struct FailureTable {
    entries: HashMap<IpAddr, Entry>,
    capacity: usize,
}

impl FailureTable {
    /// A table that tracks at most `capacity` addresses (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records a failed authentication from `ip` at `now`.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> Failure {
        let key = address_key(ip);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) >= QUIET_PERIOD {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        Failure {
            failures: entry.failures,
            delay: delay_for(entry.failures),
            entered_backoff: entry.failures == BACKOFF_THRESHOLD + 1,
        }
    }

    /// Records a successful authentication from `ip`: its slate is wiped. O(1).
    pub fn record_success(&mut self, ip: IpAddr) {
        self.entries.remove(&address_key(ip));
    }

    /// Number of addresses tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops expired entries; if the table is still full, the one that failed longest ago.
    /// O(n), but only reached when a new address arrives at a full table.
    fn make_room(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last) < QUIET_PERIOD);
        if self.entries.len() >= self.capacity {
            let oldest = self.entries.iter().min_by_key(|(_, e)| e.last).map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.entries.remove(&ip);
            }
        }
    }
}

/// The delay for the `failures`-th consecutive failure.
pub fn delay_for(failures: u32) -> Duration {
    let Some(past) = failures.checked_sub(BACKOFF_THRESHOLD + 1) else {
        return Duration::ZERO;
    };
    // 2^5 × 50 ms is past the cap already; the min keeps the shift from overflowing.
    FIRST_DELAY.saturating_mul(1 << past.min(16)).min(MAX_DELAY)
}

/// The table key: IPv4 as is (also when it arrives IPv4-mapped on a dual-stack socket), IPv6
/// by its /64, because one host holds a whole /64 and can pick a fresh address per guess.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// The shared table. The lock is held for a map operation only, never across an await.
#[derive(Debug)]
pub struct AuthBackoff {
    table: Mutex<FailureTable>,
}

impl Default for AuthBackoff {
    fn default() -> Self {
        Self {
            table: Mutex::new(FailureTable::new(MAX_TRACKED)),
        }
    }
}

impl AuthBackoff {
    /// Records a wrong-credentials rejection from `ip`; returns how long to hold it back.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let failure = self.table.lock().record_failure(ip, Instant::now());
        if failure.entered_backoff {
            tracing::warn!(
                "{} failed authentications in a row from {ip}: its further rejections are \
                 delayed (up to {MAX_DELAY:?} each) until it succeeds or stays quiet for {QUIET_PERIOD:?}",
                failure.failures
            );
        }
        failure.delay
    }

    /// Records a successful authentication from `ip`.
    pub fn succeeded(&self, ip: IpAddr) {
        self.table.lock().record_success(ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 66));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 7));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_start_past_the_threshold_double_and_stop_at_the_cap() {
        let mut table = FailureTable::new(16);
        let t0 = Instant::now();
        let delays: Vec<Duration> = (0..18)
            .map(|i| table.record_failure(A, t0 + ms(i)).delay)
            .collect();
        assert!(delays[..10].iter().all(Duration::is_zero), "{delays:?}");
        assert_eq!(
            delays[10..],
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn entering_back_off_is_reported_once_per_run() {
        let mut table = FailureTable::new(16);
        let t0 = Instant::now();
        let entered: Vec<u32> = (1..=30)
            .filter(|_| table.record_failure(A, t0).entered_backoff)
            .collect();
        assert_eq!(entered, [11]);
    }

    #[test]
    fn other_addresses_are_not_delayed() {
        let mut table = FailureTable::new(16);
        let t0 = Instant::now();
        for _ in 0..20 {
            table.record_failure(A, t0);
        }
        assert_eq!(table.record_failure(B, t0).delay, Duration::ZERO);
        assert!(table.record_failure(A, t0).delay > Duration::ZERO);
    }

    #[test]
    fn a_success_resets_the_address() {
        let mut table = FailureTable::new(16);
        let t0 = Instant::now();
        for _ in 0..20 {
            table.record_failure(A, t0);
        }
        table.record_failure(B, t0);
        table.record_success(A);
        assert_eq!(table.len(), 1, "only B is left");
        let again = table.record_failure(A, t0);
        assert_eq!((again.failures, again.delay), (1, Duration::ZERO));
    }

    #[test]
    fn entries_expire_after_a_quiet_period() {
        let mut table = FailureTable::new(16);
        let t0 = Instant::now();
        for _ in 0..20 {
            table.record_failure(A, t0);
        }
        let still = table.record_failure(A, t0 + QUIET_PERIOD - ms(1));
        assert_eq!(still.delay, MAX_DELAY, "a short pause does not reset");
        let later = table.record_failure(A, t0 + QUIET_PERIOD - ms(1) + QUIET_PERIOD);
        assert_eq!((later.failures, later.delay), (1, Duration::ZERO));
    }

    #[test]
    fn the_table_is_bounded_under_a_spray_of_addresses() {
        let mut table = FailureTable::new(64);
        let t0 = Instant::now();
        for _ in 0..15 {
            table.record_failure(A, t0);
        }
        for i in 0..10_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            table.record_failure(ip, t0 + ms(1 + u64::from(i)));
            assert!(table.len() <= 64);
        }
        // A, the oldest, made room for the spray: it starts again from one.
        assert_eq!(table.record_failure(A, t0 + ms(20_000)).failures, 1);
        // Once the spray has been quiet long enough, a fresh address prunes all of it at once.
        table.record_failure(B, t0 + ms(10_001) + QUIET_PERIOD);
        assert_eq!(table.len(), 2, "only A (recent) and B are left");
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        let mut table = FailureTable::new(16);
        let t0 = Instant::now();
        for i in 0..11u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().expect("ip");
            table.record_failure(ip, t0);
        }
        let neighbour: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        assert_eq!(table.record_failure(neighbour, t0).failures, 12);
        let other_net: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(table.record_failure(other_net, t0).failures, 1);
        let mapped: IpAddr = "::ffff:192.168.1.66".parse().expect("ip");
        table.record_failure(mapped, t0);
        assert_eq!(table.record_failure(A, t0).failures, 2);
    }

    #[test]
    fn the_shared_table_reports_delays() {
        let backoff = AuthBackoff::default();
        let delays: Vec<Duration> = (0..12).map(|_| backoff.failed(A)).collect();
        assert_eq!(delays[10..], [ms(50), ms(100)]);
        backoff.succeeded(A);
        assert_eq!(backoff.failed(A), Duration::ZERO);
    }
}
