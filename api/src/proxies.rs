//! Whose `X-Forwarded-For` is believed (`KRUG_TRUSTED_PROXIES`), and the client's address
//! it gives: the TCP peer, or — when the peer is one of our own proxies — the address that
//! proxy reports.
//!
//! `X-Forwarded-For` is written by the client first and appended to by each proxy on the
//! way, so only the entries our own proxies appended can be believed. They are read from the
//! right: the first address that is not one of our proxies is the client. From any other
//! peer the header is ignored: anyone can send it, and believing it would let a script
//! choose the address every per-address limit is counted against.

use ipnet::IpNet;
use std::{net::IpAddr, str::FromStr};

/// Our reverse proxies and load balancers: addresses or CIDR blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// An entry of `KRUG_TRUSTED_PROXIES` that is neither an address nor a CIDR block.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is neither an IP address nor a CIDR block (10.0.0.0/8)")]
pub struct BadProxy(pub String);

impl TrustedProxies {
    /// Parses a comma-separated list: `127.0.0.1, 10.0.0.0/8, ::1`.
    pub fn parse(list: &str) -> Result<Self, BadProxy> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                IpNet::from_str(entry)
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map_err(|_| BadProxy(entry.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, given the peer and the `X-Forwarded-For` values it sent.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for entry in forwarded_for
            .iter()
            .rev()
            .flat_map(|value| value.rsplit(','))
        {
            let Some(ip) = parse_entry(entry) else {
                // Garbage where a proxy's entry should be: stop at the last address believed.
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// An entry as proxies write it: `203.0.113.7`, `203.0.113.7:5123`, `[2001:db8::1]:443`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = IpAddr::from_str(entry) {
        return Some(canonical(ip));
    }
    let host = match entry.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => entry.rsplit_once(':')?.0,
    };
    IpAddr::from_str(host).ok().map(canonical)
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:10.0.0.1`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        // Straight from the internet: the header is the attacker's own words.
        assert_eq!(
            proxies.client(ip("203.0.113.9"), &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        // Through our proxy: the last address it appended.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &["198.51.100.1"]),
            ip("198.51.100.1")
        );
        // A client that writes its own header first gains nothing: read from the right.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &["1.2.3.4, 198.51.100.1"]),
            ip("198.51.100.1")
        );
        // Two of our proxies in a row.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &["198.51.100.1", "10.9.9.9"]),
            ip("198.51.100.1")
        );
        // Ports and brackets as some proxies write them; IPv4 behind an IPv6 socket.
        assert_eq!(
            proxies.client(ip("::ffff:127.0.0.1"), &["198.51.100.1:5123"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        // Garbage stops the walk at what was believed so far.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &["198.51.100.1, nonsense"]),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn proxies_parse_from_addresses_and_blocks() {
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
        assert!(TrustedProxies::parse("127.0.0.1,::1,10.0.0.0/8").is_ok());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert!(
            !TrustedProxies::default().contains(ip("127.0.0.1")),
            "nothing is trusted unless listed"
        );
    }
}
