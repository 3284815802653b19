//! The pairing session: credentials from the OS CSPRNG, constant-time checks, activity, rotation.

use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::OsRng;
use rand::TryRngCore;
use subtle::ConstantTimeEq;

/// Length of a session id (docs/protocol.md, "Pairing").
pub const SESSION_ID_LEN: usize = 8;
/// Length of a token: 22 base62 characters ≈ 131 bits.
pub const TOKEN_LEN: usize = 22;

/// `len` base62 characters drawn from the operating system's CSPRNG.
pub fn random_base62(len: usize) -> String {
    // OsRng only fails if the OS has no entropy source at all; nothing safe can run then.
    let mut rng = OsRng.unwrap_err();
    Alphanumeric
        .sample_iter(&mut rng)
        .take(len)
        .map(char::from)
        .collect()
}

/// Compares a presented secret with the real one in time independent of where they differ.
pub fn ct_eq(presented: &str, real: &str) -> bool {
    presented.as_bytes().ct_eq(real.as_bytes()).into()
}

/// Unix time in milliseconds, the timestamp unit of the wire protocol.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One set of credentials. Immutable: rotation replaces the whole session.
#[derive(Clone)]
pub struct Session {
    pub id: String,
    pub token: String,
    /// Unix ms.
    pub created_at: u64,
    created: Instant,
}

impl std::fmt::Debug for Session {
    // Hand-written so that no `{:?}` can ever put the token in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Session {
    /// A fresh session with new random credentials.
    pub fn generate() -> Self {
        Self {
            id: random_base62(SESSION_ID_LEN),
            token: random_base62(TOKEN_LEN),
            created_at: unix_ms(),
            created: Instant::now(),
        }
    }

    /// How long ago the token was issued.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }
}

/// Result of checking presented credentials against the current session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("wrong session — rescan QR code")]
    WrongSession,
    #[error("wrong token — rescan QR code")]
    WrongToken,
}

/// The current session, shared by every part of the server. Locks are never held across awaits.
pub struct SessionStore {
    current: RwLock<Arc<Session>>,
    /// Unix ms of the last device activity (auth or message), for idle expiry.
    last_activity: AtomicU64,
}

impl SessionStore {
    pub fn new() -> Self {
        let session = Session::generate();
        let now = session.created_at;
        Self {
            current: RwLock::new(Arc::new(session)),
            last_activity: AtomicU64::new(now),
        }
    }

    /// The current session.
    pub fn current(&self) -> Arc<Session> {
        self.current.read().clone()
    }

    /// Checks credentials: the session id first (4001), then the token (4002), both in constant time.
    pub fn authenticate(
        &self,
        session_id: Option<&str>,
        token: Option<&str>,
    ) -> Result<Arc<Session>, AuthError> {
        let session = self.current();
        if !session_id.is_some_and(|id| ct_eq(id, &session.id)) {
            return Err(AuthError::WrongSession);
        }
        if !token.is_some_and(|t| ct_eq(t, &session.token)) {
            return Err(AuthError::WrongToken);
        }
        Ok(session)
    }

    /// Records device activity now.
    pub fn touch(&self) {
        self.last_activity.store(unix_ms(), Ordering::Relaxed);
    }

    /// Unix ms of the last activity.
    pub fn last_activity(&self) -> u64 {
        self.last_activity.load(Ordering::Relaxed)
    }

    /// Time since the last activity.
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(unix_ms().saturating_sub(self.last_activity()))
    }

    /// Replaces the session with a fresh one and returns it; old credentials stop working at once.
    pub fn rotate(&self) -> Arc<Session> {
        let fresh = Arc::new(Session::generate());
        *self.current.write() = fresh.clone();
        self.last_activity.store(fresh.created_at, Ordering::Relaxed);
        fresh
    }
}

impl Default for SessionStore {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_and_tokens_have_the_right_length_and_alphabet() {
        for _ in 0..200 {
            let s = Session::generate();
            assert_eq!(s.id.len(), SESSION_ID_LEN);
            assert_eq!(s.token.len(), TOKEN_LEN);
            assert!(s
                .id
                .chars()
                .chain(s.token.chars())
                .all(|c| c.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn draws_are_unique_and_use_the_whole_alphabet() {
        let tokens: HashSet<String> = (0..10_000).map(|_| random_base62(TOKEN_LEN)).collect();
        assert_eq!(tokens.len(), 10_000);
        let ids: HashSet<String> = (0..10_000).map(|_| random_base62(SESSION_ID_LEN)).collect();
        assert_eq!(
            ids.len(),
            10_000,
            "62^8 ids: a collision in 10k draws would mean a broken RNG"
        );
        let seen: HashSet<char> = tokens.iter().flat_map(|t| t.chars()).collect();
        assert_eq!(seen.len(), 62);
    }

    #[test]
    fn authenticate_checks_session_before_token() {
        let store = SessionStore::new();
        let s = store.current();
        assert_eq!(
            store.authenticate(None, Some(&s.token)).unwrap_err(),
            AuthError::WrongSession
        );
        assert_eq!(
            store.authenticate(Some("nope"), Some(&s.token)).unwrap_err(),
            AuthError::WrongSession
        );
        assert_eq!(
            store.authenticate(Some(&s.id), None).unwrap_err(),
            AuthError::WrongToken
        );
        assert_eq!(
            store.authenticate(Some(&s.id), Some("x")).unwrap_err(),
            AuthError::WrongToken
        );
        assert!(store.authenticate(Some(&s.id), Some(&s.token)).is_ok());
    }

    #[test]
    fn rotation_retires_old_credentials() {
        let store = SessionStore::new();
        let old = store.current();
        let new = store.rotate();
        assert_ne!(old.id, new.id);
        assert_eq!(
            store.authenticate(Some(&old.id), Some(&old.token)).unwrap_err(),
            AuthError::WrongSession
        );
        assert!(store.authenticate(Some(&new.id), Some(&new.token)).is_ok());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let s = Session::generate();
        assert!(!format!("{s:?}").contains(&s.token));
    }
}
