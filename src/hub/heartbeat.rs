//! Liveness of one device: when its silence counts against it.

use std::time::Duration;

/// Judges a device's silence fairly across pauses of the whole server (a suspended laptop, a
/// stopped process, a starved scheduler): time the server did not run is not the device's
/// silence. When a ping tick comes much later than due, silence is counted from that tick, so
/// the device is pinged first and gets a full `--client-timeout` to answer.
pub struct Heartbeat {
    interval: u64,
    last_tick: u64,
    /// Silence counts from here at the earliest (unix ms).
    judged_from: u64,
}

impl Heartbeat {
    pub fn new(interval: Duration, now: u64) -> Self {
        Self {
            interval: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last_tick: now,
            judged_from: now,
        }
    }

    /// Records a tick at `now` (wall clock, which also runs while a laptop sleeps, unlike the
    /// timer); true if it came after a pause of more than one extra interval.
    pub fn paused(&mut self, now: u64) -> bool {
        let gap = now.saturating_sub(self.last_tick);
        self.last_tick = now;
        let paused = gap > self.interval.saturating_mul(2);
        if paused {
            self.judged_from = now;
        }
        paused
    }

    /// How long the device has been silent, as far as it can be blamed for it.
    pub fn silence(&self, now: u64, last_activity: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(last_activity.max(self.judged_from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_after_a_pause_counts_from_the_first_tick_after_it() {
        let mut heartbeat = Heartbeat::new(Duration::from_millis(100), 1_000);
        assert!(!heartbeat.paused(1_100));
        assert_eq!(heartbeat.silence(1_100, 1_000), Duration::from_millis(100));
        // The server slept for 10 s: the device's last word is old, but it gets its chance.
        assert!(heartbeat.paused(11_100));
        assert_eq!(heartbeat.silence(11_100, 1_000), Duration::ZERO);
        assert!(!heartbeat.paused(11_200));
        assert_eq!(heartbeat.silence(11_200, 1_000), Duration::from_millis(100));
        assert_eq!(heartbeat.silence(11_200, 11_150), Duration::from_millis(50));
    }
}
