//! Counting what one host on the network holds (keyed by [`super::address_key`]: an IPv4
//! address, an IPv6 /64), so that no host can take more than its share of a limit.

use std::collections::HashMap;
use std::net::IpAddr;

/// One host may hold at most this share of a limit (a quarter): unauthenticated WebSocket
/// sockets of `--max-clients`, HTTP connections of their cap.
pub const SHARE: usize = 4;

/// How many of something each host holds; a host holding none takes no room.
#[derive(Debug, Default)]
pub struct Counts(HashMap<IpAddr, usize>);

impl Counts {
    pub fn get(&self, key: IpAddr) -> usize {
        self.0.get(&key).copied().unwrap_or(0)
    }

    pub fn add(&mut self, key: IpAddr) {
        *self.0.entry(key).or_insert(0) += 1;
    }

    pub fn remove(&mut self, key: IpAddr) {
        if let Some(count) = self.0.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_holding_none_takes_no_room() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "::1".parse().expect("ip"));
        let mut counts = Counts::default();
        counts.add(a);
        counts.add(a);
        counts.add(b);
        assert_eq!((counts.get(a), counts.get(b)), (2, 1));
        counts.remove(a);
        counts.remove(b);
        counts.remove(b); // more removals than additions change nothing
        assert_eq!((counts.get(a), counts.get(b)), (1, 0));
        counts.remove(a);
        assert!(counts.0.is_empty());
    }
}
