//! Who is calling: the identity the gateway verified and passed as headers (`X-User-Id`,
//! `X-User-Email`, `X-User-Roles`), believed only from a peer in [`TrustedPeers`] (the gateway
//! strips the client's copies; any client that reaches a service directly could write them).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::problem::Problem;

/// Networks whose identity headers are believed: the gateway and sibling services.
#[derive(Debug, Clone)]
pub struct TrustedPeers(Arc<[IpNet]>);

impl TrustedPeers {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedPeers(nets.into())
    }

    /// `127.0.0.1/32` and `::1/128`: a gateway on the same host.
    pub fn loopback() -> Self {
        Self::parse("127.0.0.1/32,::1/128").unwrap_or_else(|_| TrustedPeers::new(Vec::new()))
    }

    /// Comma-separated CIDRs or bare addresses (`10.0.0.0/8, 127.0.0.1`).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an IP address or CIDR"))?;
            nets.push(net);
        }
        Ok(TrustedPeers::new(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

/// The caller, as the gateway verified it. Extracting it fails with 401 when the request has
/// no identity, or when the identity headers come from a peer outside [`TrustedPeers`] (any
/// client can write them; only the gateway's copies are believed, and the gateway strips the
/// client's). A `oneshot` request without connect info counts as untrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `X-User-Id`: the token's `sub` (a UUID for users; `service:NAME` for services).
    pub subject: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn has_any_role(&self, roles: &[&str]) -> bool {
        roles.iter().any(|r| self.has_role(r))
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    TrustedPeers: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        let Some(subject) = headers.get("x-user-id") else {
            return Err(Problem::unauthorized(
                "no identity: call through the gateway with a token",
            ));
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if !peer.is_some_and(|ip| TrustedPeers::from_ref(state).contains(ip)) {
            tracing::warn!(peer = ?peer, "ignored identity headers from an untrusted peer");
            return Err(Problem::unauthorized(
                "no identity: call through the gateway with a token",
            ));
        }
        let subject = subject
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|s| is_valid_subject(s))
            .ok_or_else(|| Problem::unauthorized("X-User-Id is not a valid subject"))?;
        let email = match headers.get("x-user-email").map(|v| v.to_str()) {
            None => None,
            Some(Ok(v)) if v.trim().is_empty() => None,
            Some(Ok(v)) => Some(v.trim().to_string()),
            Some(Err(_)) => return Err(Problem::unauthorized("X-User-Email is not valid text")),
        };
        let roles = match headers.get("x-user-roles").map(|v| v.to_str()) {
            None => Vec::new(),
            Some(Ok(v)) => parse_roles(v)
                .ok_or_else(|| Problem::unauthorized("X-User-Roles holds a malformed role"))?,
            Some(Err(_)) => return Err(Problem::unauthorized("X-User-Roles is not valid text")),
        };
        Ok(Caller {
            subject: subject.to_string(),
            email,
            roles,
        })
    }
}

/// Subjects: 1-128 characters of `[A-Za-z0-9._:@|+-]` (OIDC leaves `sub` opaque).
pub fn is_valid_subject(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@|+-".contains(&b))
}

/// `"user, admin"` → `["user", "admin"]`; `None` when a role is malformed.
pub fn parse_roles(raw: &str) -> Option<Vec<String>> {
    let mut roles: Vec<String> = Vec::new();
    for role in raw.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let ok = role.len() <= 64
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !ok {
            return None;
        }
        if !roles.iter().any(|r| r == role) {
            roles.push(role.to_string());
        }
    }
    Some(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_peers_are_cidrs_or_addresses_and_mapped_v4_counts_as_v4() {
        let peers = TrustedPeers::parse("10.0.0.0/8, 127.0.0.1").expect("valid list");
        for ip in ["10.1.2.3", "127.0.0.1", "::ffff:127.0.0.1"] {
            assert!(peers.contains(ip.parse().expect("ip")), "{ip}");
        }
        assert!(!peers.contains("192.0.2.1".parse().expect("ip")));
        assert!(TrustedPeers::loopback().contains("::1".parse().expect("ip")));
        assert_eq!(
            TrustedPeers::parse("10.0.0.0/8,gateway").err().as_deref(),
            Some("\"gateway\" is not an IP address or CIDR")
        );
    }

    #[test]
    fn roles_and_subjects() {
        assert_eq!(
            parse_roles(" user, admin,user ,"),
            Some(vec!["user".to_string(), "admin".to_string()])
        );
        assert_eq!(parse_roles("user,has space"), None);
        assert!(is_valid_subject("service:monolith"));
        assert!(!is_valid_subject("has space"));
        assert!(!is_valid_subject(""));
    }
}
