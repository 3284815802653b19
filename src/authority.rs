//! The host part of a `Host` header or an `Origin`'s authority (`name`, `name:port`, `[v6]`,
//! `[v6]:port`), parsed strictly.
//!
//! `http::uri::Authority` is not used: it accepts what these security checks must refuse
//! (`user@localhost`, a port `1x`, `[::1]junk`, `[zz]`), so the Host guard and the origin check
//! would each need a second pass anyway.

use std::net::Ipv6Addr;

/// The host of `host[:port]` / `[v6][:port]` (an IPv6 literal without its brackets), or `None`
/// if the value is malformed: a bad port, a bracketed value that is not an IPv6 address, or a
/// bare IPv6 address.
pub fn host(authority: &str) -> Option<&str> {
    let valid_port = |port: &str| port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        match after {
            "" => Some(v6),
            _ => after.strip_prefix(':').filter(|p| valid_port(p)).map(|_| v6),
        }
    } else {
        let (name, port) = match authority.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        };
        if name.contains(':') || port.is_some_and(|p| !valid_port(p)) {
            return None;
        }
        Some(name)
    }
}

/// `host` without the brackets of an IPv6 literal (`[::1]` → `::1`); other hosts unchanged.
pub fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_with_and_without_ports() {
        for (value, host_part) in [
            ("localhost", "localhost"),
            ("LOCALHOST:8765", "LOCALHOST"),
            ("192.168.1.5:65535", "192.168.1.5"),
            ("[::1]", "::1"),
            ("[::1]:80", "::1"),
            ("my-laptop.local:1", "my-laptop.local"),
        ] {
            assert_eq!(host(value), Some(host_part), "{value}");
        }
    }

    #[test]
    fn what_authority_would_let_through_is_refused() {
        for value in [
            "::1",
            "a:65536",
            "a:",
            "a:1x",
            "a:+1",
            "[::1]x",
            "[::1]:",
            "[zz]:1",
            "[::1",
            "u@localhost:x",
        ] {
            assert_eq!(host(value), None, "{value}");
        }
    }
}
