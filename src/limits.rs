//! The open-files budget: every device and every HTTP connection is a descriptor, and a server
//! out of descriptors answers nobody (not even with 503). So `--max-clients` is lowered to what
//! the limit allows, with a warning, and HTTP connections get a share of their own that always
//! leaves the devices theirs.

/// Descriptors the server needs besides its sockets: stdio, two listeners, the runtime's epoll
/// and wakers, signal pipes, inotify, a build's and the compile worker's pipes, files being
/// read or written. An idle server holds about 16.
const RESERVED: u64 = 32;
/// HTTP connections at most: the pairing page, `/health` and downloads need a handful.
const HTTP_MAX: usize = 128;
/// HTTP connections at least, however low the limit.
const HTTP_MIN: usize = 4;

/// How many descriptors each kind of connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Open WebSocket connections at most (`--max-clients`, perhaps lowered).
    pub max_clients: usize,
    /// Open HTTP connections at most.
    pub http_connections: usize,
}

/// The budget for `asked` devices under an open-files limit of `limit` (`None`: unlimited).
/// `refusals` descriptors are kept for answering connections with 503.
fn budget(limit: Option<u64>, asked: usize, refusals: usize) -> Budget {
    let Some(limit) = limit else {
        return Budget {
            max_clients: asked,
            http_connections: HTTP_MAX,
        };
    };
    let available = usize::try_from(limit.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
    let http_connections = (available / 8).clamp(HTTP_MIN, HTTP_MAX);
    let for_devices = available.saturating_sub(http_connections + refusals).max(1);
    Budget {
        max_clients: asked.min(for_devices),
        http_connections,
    }
}

/// The soft open-files limit of this process (`main` lifts it to the hard limit first).
fn fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft != RLIM_INFINITY => Some(soft),
        _ => None,
    }
}

/// The budget for this process, warning once if `--max-clients` had to be lowered.
pub fn for_this_process(asked: usize, refusals: usize) -> Budget {
    let limit = fd_limit();
    let budget = budget(limit, asked, refusals);
    if budget.max_clients < asked {
        tracing::warn!(
            "--max-clients {asked} lowered to {}: the open-files limit is {} (raise it with `ulimit -n`)",
            budget.max_clients,
            limit.unwrap_or_default()
        );
    }
    budget
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_limit_lowers_max_clients_and_keeps_room_for_http() {
        let low = budget(Some(64), 64, 8);
        assert_eq!(low.http_connections, 4);
        assert_eq!(low.max_clients, 64 - 32 - 4 - 8);
        assert!(low.max_clients as u64 + low.http_connections as u64 + 8 + RESERVED <= 64);
    }

    #[test]
    fn a_high_limit_changes_nothing() {
        assert_eq!(
            budget(Some(1 << 20), 5000, 8),
            Budget {
                max_clients: 5000,
                http_connections: HTTP_MAX
            }
        );
        assert_eq!(budget(None, 64, 8).max_clients, 64);
    }

    #[test]
    fn even_an_absurd_limit_leaves_one_device() {
        assert_eq!(budget(Some(10), 64, 8).max_clients, 1);
    }
}
