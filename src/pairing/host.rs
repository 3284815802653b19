//! Choosing the LAN address advertised to phones, and refusing public ones.

use std::net::{IpAddr, Ipv4Addr};

/// How good an IPv4 address is as the advertised host: lower is better, `None` = never auto-pick.
pub fn auto_rank(ip: Ipv4Addr) -> Option<u8> {
    let [a, b, ..] = ip.octets();
    match (a, b) {
        (192, 168) => Some(0),
        (10, _) => Some(1),
        (172, 16..=31) => Some(2),
        _ => None,
    }
}

/// Interface names of virtual bridges and tunnels that a phone on the Wi-Fi can't reach.
fn is_virtual_interface(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "docker",
        "br-",
        "veth",
        "virbr",
        "vmnet",
        "vboxnet",
        "cni",
        "flannel",
        "podman",
        "lxc",
        "lxd",
        "tun",
        "tap",
        "utun",
        "zt",
        "tailscale",
        "wg",
    ];
    let name = name.to_ascii_lowercase();
    name == "lo" || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Picks the best private IPv4 among `(interface, address)` pairs (192.168 > 10 > 172.16/12).
pub fn choose_lan_ipv4<'a>(candidates: impl IntoIterator<Item = (&'a str, IpAddr)>) -> Option<Ipv4Addr> {
    candidates
        .into_iter()
        .filter(|(name, _)| !is_virtual_interface(name))
        .filter_map(|(_, ip)| match ip {
            IpAddr::V4(v4) => auto_rank(v4).map(|rank| (rank, v4)),
            IpAddr::V6(_) => None,
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, ip)| ip)
}

/// The machine's best LAN IPv4 address, if it has one.
pub fn detect_lan_ipv4() -> Option<Ipv4Addr> {
    let interfaces = local_ip_address::list_afinet_netifas().ok()?;
    choose_lan_ipv4(interfaces.iter().map(|(name, ip)| (name.as_str(), *ip)))
}

/// True if `host` is an IP literal that no interface of this machine has (a typo, or another
/// network's address): phones would be sent to it in vain. Hostnames, loopback and the
/// Android emulator's view of the host (10.0.2.2, which is not a local address) pass.
pub fn is_foreign_ip(host: &str) -> bool {
    let Ok(ip) = crate::authority::unbracketed(host).parse::<IpAddr>() else {
        return false;
    };
    if ip.is_loopback() || ip.is_unspecified() || ip == IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)) {
        return false;
    }
    match local_ip_address::list_afinet_netifas() {
        Ok(interfaces) => !interfaces.iter().any(|(_, local)| *local == ip),
        // Can't tell: don't warn about what may be right.
        Err(_) => false,
    }
}

/// True for addresses that are not reachable from the internet (private, loopback, link-local,
/// carrier-grade NAT, IPv6 unique-local).
pub fn is_non_routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// clap value parser for `--host`: hostnames pass as they are, public IP literals are refused.
pub fn parse_host_flag(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("the host must not be empty".to_owned());
    }
    if value.contains('|') || value.chars().any(char::is_whitespace) {
        return Err(format!("{value:?} is not a host name or IP address"));
    }
    let literal = value.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        if ip.is_unspecified() {
            return Err(format!(
                "{ip} can't be advertised: a phone can't connect to it; give the LAN address of this machine"
            ));
        }
        if !is_non_routable(ip) {
            return Err(format!(
                "{ip} is a public IP address; the QR code only ever carries an address of your local \
                 network (e.g. 192.168.x.x) or a hostname"
            ));
        }
    }
    Ok(value.to_owned())
}

/// True for 127.0.0.0/8, `::1` and `::ffff:127.x.y.z` (an IPv4 peer on a dual-stack socket).
pub fn is_loopback_peer(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// True for `localhost` and loopback IP literals (`[::1]` too): addresses no phone can reach.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || crate::authority::unbracketed(host)
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn loopback_peers() {
        for ip in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback_peer(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "192.168.1.20",
            "10.0.0.1",
            "::ffff:192.168.1.20",
            "fe80::1",
            "0.0.0.0",
            "::",
        ] {
            assert!(!is_loopback_peer(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn prefers_192_168_then_10_then_172() {
        let all = [
            ("eth1", ip("172.20.0.5")),
            ("eth0", ip("10.1.2.3")),
            ("wlan0", ip("192.168.1.7")),
        ];
        assert_eq!(choose_lan_ipv4(all), Some(Ipv4Addr::new(192, 168, 1, 7)));
        let no_192 = [("eth1", ip("172.20.0.5")), ("eth0", ip("10.1.2.3"))];
        assert_eq!(choose_lan_ipv4(no_192), Some(Ipv4Addr::new(10, 1, 2, 3)));
        let only_172 = [("eth1", ip("172.31.255.1"))];
        assert_eq!(choose_lan_ipv4(only_172), Some(Ipv4Addr::new(172, 31, 255, 1)));
    }

    #[test]
    fn never_auto_picks_loopback_link_local_public_or_virtual() {
        let rejected = [
            ("lo", ip("127.0.0.1")),
            ("eth0", ip("169.254.3.4")),
            ("eth0", ip("8.8.8.8")),
            ("eth0", ip("172.32.0.1")),
            ("docker0", ip("172.17.0.1")),
            ("br-12ab", ip("192.168.49.1")),
            ("eth0", ip("fe80::1")),
        ];
        assert_eq!(choose_lan_ipv4(rejected), None);
    }

    #[test]
    fn public_host_flag_is_refused_hostnames_and_private_pass() {
        assert!(parse_host_flag("8.8.8.8").unwrap_err().contains("public"));
        assert!(parse_host_flag("2001:4860::8888").is_err());
        assert!(parse_host_flag("0.0.0.0").is_err());
        assert!(parse_host_flag("a|b").is_err());
        assert_eq!(parse_host_flag("192.168.1.9").as_deref(), Ok("192.168.1.9"));
        assert_eq!(parse_host_flag("100.72.1.1").as_deref(), Ok("100.72.1.1"));
        assert_eq!(parse_host_flag("fd00::1").as_deref(), Ok("fd00::1"));
        assert_eq!(
            parse_host_flag("my-laptop.local").as_deref(),
            Ok("my-laptop.local")
        );
    }
}
