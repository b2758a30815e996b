//! What a request says about its caller: the socket peer, the client IP behind trusted
//! proxies, the bearer token. Plain functions of the headers and the peer, for the handlers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use ipnet::IpNet;

/// The socket peer, when the server runs with connect info (it does; `oneshot` tests may not).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// The client's address: the socket peer, or — only when the peer is a trusted proxy — the
/// `X-Forwarded-For` chain walked from the right past trusted proxies. An unknown peer is
/// `0.0.0.0` (never trusted).
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&ip.to_canonical()));
    let Some(mut ip) = peer.map(|p| p.to_canonical()) else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    if !is_trusted(&ip) {
        return ip;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for hop in hops.into_iter().rev() {
        let parsed = hop
            .parse::<IpAddr>()
            .ok()
            .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()));
        match parsed {
            Some(h) => {
                ip = h.to_canonical();
                if !is_trusted(&ip) {
                    return ip;
                }
            }
            None => return ip,
        }
    }
    ip
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn client_ip_trusts_forwarded_for_only_from_trusted_proxies() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        // Untrusted peer: its XFF is ignored.
        assert_eq!(
            client_ip(Some(outsider), &xff("1.2.3.4"), &trusted),
            outsider
        );
        // Trusted peer: walk from the right past trusted hops.
        assert_eq!(
            client_ip(
                Some(local),
                &xff("1.2.3.4, 198.51.100.7, 10.1.1.1"),
                &trusted
            )
            .to_string(),
            "198.51.100.7"
        );
        // Everything trusted: the leftmost.
        assert_eq!(
            client_ip(Some(local), &xff("10.0.0.5"), &trusted).to_string(),
            "10.0.0.5"
        );
        // No header: the peer.
        assert_eq!(client_ip(Some(local), &HeaderMap::new(), &trusted), local);
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client_ip(Some(local), &xff("1.2.3.4, bogus"), &trusted),
            local
        );
        // IPv4-mapped IPv6 peers are treated as IPv4.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(Some(mapped), &xff("192.0.2.1"), &trusted).to_string(),
            "192.0.2.1"
        );
        assert_eq!(
            client_ip(None, &xff("192.0.2.1"), &trusted).to_string(),
            "0.0.0.0"
        );
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc.def"),
        );
        assert_eq!(bearer_token(&h), Some("abc.def"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }
}
