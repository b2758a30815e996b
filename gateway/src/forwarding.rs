//! Who the client is, and the `X-Forwarded-*` headers sent upstream.
//!
//! The client IP is the socket peer, unless that peer is one of `trusted_proxies`: then
//! `X-Forwarded-For` is walked from the right, skipping trusted hops, and the first untrusted
//! address is the client. A client that is not a trusted proxy cannot choose its IP by sending
//! `X-Forwarded-For`: its header is replaced, not appended to.

use std::net::IpAddr;

use ipnet::IpNet;

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is treated as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Resolves the client IP from the socket peer and the incoming `X-Forwarded-For` values.
pub fn client_ip<'a>(
    peer: IpAddr,
    xff: impl Iterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let hops: Vec<&[u8]> = xff.collect();
    let mut client = peer;
    for value in hops.iter().rev() {
        for hop in value.rsplit(|&b| b == b',') {
            let Some(ip) = std::str::from_utf8(hop)
                .ok()
                .and_then(|s| parse_hop(s.trim()))
            else {
                // Garbage in the chain: stop at the last address we could trust.
                return client;
            };
            client = canonical(ip);
            if !is_trusted(client, trusted) {
                return client;
            }
        }
    }
    client
}

/// An `X-Forwarded-For` element: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]:443` or `1.2.3.4:80`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    s.rsplit_once(':')
        .and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))
}

/// The `X-Forwarded-For` value to send upstream: the trusted chain plus the peer, or only the
/// peer when the peer is not trusted.
pub fn forwarded_for<'a>(
    peer: IpAddr,
    incoming: impl Iterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> String {
    let peer = canonical(peer);
    if is_trusted(peer, trusted) {
        let mut chain: Vec<String> = incoming
            .filter_map(|v| std::str::from_utf8(v).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        chain.push(ip_text(peer));
        chain.join(", ")
    } else {
        ip_text(peer)
    }
}

/// An IP address as text. IPv4 is written by hand: `Ipv4Addr`'s `Display` goes through the
/// formatting machinery, which showed up in the per-request profile.
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "100.9.90.109",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let ip = client_ip(
            "203.0.113.9".parse().unwrap(),
            [b"1.1.1.1".as_slice()].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip.to_string(), "203.0.113.9");
        let xff = forwarded_for(
            "203.0.113.9".parse().unwrap(),
            [b"1.1.1.1".as_slice()].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(xff, "203.0.113.9");
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        let ip = client_ip(
            "127.0.0.1".parse().unwrap(),
            [b"6.6.6.6, 198.51.100.7".as_slice(), b"10.1.2.3".as_slice()].into_iter(),
            &trusted,
        );
        assert_eq!(ip.to_string(), "198.51.100.7");
        let xff = forwarded_for(
            "127.0.0.1".parse().unwrap(),
            [b"198.51.100.7".as_slice()].into_iter(),
            &trusted,
        );
        assert_eq!(xff, "198.51.100.7, 127.0.0.1");
    }

    #[test]
    fn garbage_stops_the_walk() {
        let trusted = nets(&["127.0.0.1/32"]);
        let ip = client_ip(
            "127.0.0.1".parse().unwrap(),
            [b"1.2.3.4, junk".as_slice()].into_iter(),
            &trusted,
        );
        assert_eq!(ip.to_string(), "127.0.0.1");
        let mapped = client_ip(
            "::ffff:127.0.0.1".parse().unwrap(),
            std::iter::empty(),
            &trusted,
        );
        assert_eq!(mapped.to_string(), "127.0.0.1");
    }
}
