//! Session expiry: every `--cleanup-interval`, retire an idle or too-old session (docs/protocol.md, "Pairing").

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::rotate::Rotation;
use crate::session::SessionStore;

/// `tokio::time::interval` panics on a zero period; `--cleanup-interval 0s` means "as often as
/// is reasonable".
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// Rotation reason for a session nobody used for `--idle-timeout`.
pub const REASON_IDLE: &str = "idle";
/// Rotation reason for a token older than `--token-ttl`.
pub const REASON_EXPIRED: &str = "token expired";

/// What expiry looks at.
#[derive(Debug, Clone, Copy)]
pub struct State {
    /// Authenticated devices connected now.
    pub devices: usize,
    /// Time since the last device activity (or since the session was created).
    pub idle_for: Duration,
    /// Age of the token.
    pub token_age: Duration,
}

/// Limits from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle_timeout: Duration,
    pub token_ttl: Duration,
}

/// Why the session must be retired now, or `None` to keep it. A session with a device connected
/// is never retired under that device.
pub fn retire_reason(state: State, limits: Limits) -> Option<&'static str> {
    if state.devices > 0 {
        None
    } else if state.token_age >= limits.token_ttl {
        Some(REASON_EXPIRED)
    } else if state.idle_for >= limits.idle_timeout {
        Some(REASON_IDLE)
    } else {
        None
    }
}

/// Checks expiry every `period` (`--cleanup-interval`) until `stop`, rotating through
/// `rotation` when [`retire_reason`] says so.
pub async fn run(
    limits: Limits,
    period: Duration,
    store: Arc<SessionStore>,
    hub: Hub,
    rotation: Arc<Rotation>,
    stop: CancellationToken,
) {
    let period = period.max(MIN_CHECK_INTERVAL);
    let mut ticker = tokio::time::interval(period);
    // After a stall (laptop asleep), check once and carry on at the normal pace.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick completes at once; a session just created has nothing to expire.
    ticker.tick().await;
    loop {
        tokio::select! {
            biased; // a stop that is due wins over a tick that is due
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let state = State {
            devices: hub.client_count(),
            idle_for: store.idle_for(),
            token_age: store.current().age(),
        };
        if let Some(reason) = retire_reason(state, limits) {
            // Rotation writes and fsyncs the BuildConfig session file: blocking I/O, kept off the
            // async workers (as `POST /session/rotate` does).
            let (hub, rotation) = (hub.clone(), rotation.clone());
            let rotated = tokio::task::spawn_blocking(move || {
                // A device may have authenticated between the check and now; look once more
                // right before rotating so it isn't cut off (the remaining window is microseconds).
                if hub.client_count() == 0 {
                    rotation.rotate(reason);
                }
            });
            if let Err(e) = rotated.await {
                tracing::error!("session rotation failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        idle_timeout: Duration::from_secs(30 * 60),
        token_ttl: Duration::from_secs(60 * 60),
    };

    fn state(devices: usize, idle_min: u64, age_min: u64) -> State {
        State {
            devices,
            idle_for: Duration::from_secs(idle_min * 60),
            token_age: Duration::from_secs(age_min * 60),
        }
    }

    #[test]
    fn fresh_session_is_kept() {
        assert_eq!(retire_reason(state(0, 0, 0), LIMITS), None);
        assert_eq!(retire_reason(state(0, 29, 59), LIMITS), None);
    }

    #[test]
    fn idle_session_without_devices_is_retired() {
        assert_eq!(retire_reason(state(0, 30, 30), LIMITS), Some(REASON_IDLE));
    }

    #[test]
    fn old_token_without_devices_is_retired_even_if_active() {
        assert_eq!(retire_reason(state(0, 0, 60), LIMITS), Some(REASON_EXPIRED));
        assert_eq!(retire_reason(state(0, 90, 90), LIMITS), Some(REASON_EXPIRED));
    }

    #[test]
    fn never_retired_under_a_connected_device() {
        assert_eq!(retire_reason(state(1, 0, 600), LIMITS), None);
        assert_eq!(retire_reason(state(3, 600, 600), LIMITS), None);
    }
}
