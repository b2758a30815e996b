//! Authentication: the gateway decides identity; backends receive verified identity headers.
//!
//! [`Authenticator::admit`] runs in `request_filter` after routing:
//! 1. find the credential ([`identity::bearer`]): no `Authorization` header, or exactly one that
//!    is `Bearer` (any case), one space, a token68 (RFC 6750 §2.1). Two headers → 400
//!    `invalid_request`; one that is anything else — another scheme, a tab, two spaces, a
//!    non-ASCII byte — → 401, on `optional` routes too: a credential the gateway cannot check
//!    is never treated as "no credential";
//! 2. apply the route's rule: `none` looks at nothing (the header passes untouched); `optional`
//!    lets a request without a credential through anonymously but refuses a bad one;
//!    `required` needs a valid token with one of the listed roles (if any) and all the listed
//!    scopes (403 otherwise);
//! 3. verify: the verified-token cache first (keyed by SHA-256 of the token, valid until the
//!    token's `exp` and while its `kid` is still published), then [`verify::verify`]; an unknown
//!    `kid` triggers one shared JWKS re-fetch ([`jwks::JwksStore::refetch_for`]);
//! 4. say what the upstream gets ([`ForwardAuthorization`]): on a route that checks tokens,
//!    only a verified token, as `Bearer <token>`, or no `Authorization` header at all.
//!
//! [`identity`] strips client-sent identity headers from every request and adds the verified
//! ones.

pub mod identity;
pub mod jwks;
#[cfg(test)]
pub(crate) mod testing;
pub mod verify;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::AUTHORIZATION;
use pingora_http::RequestHeader;
use sha2::{Digest, Sha256};

use crate::config::model::{AuthConfig, RouteAuth};
use crate::metrics::Metrics;
use jwks::JwksStore;
use verify::{AuthFailure, Verified};

/// Why admission failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"` (or no error code when no
    /// bearer credential was sent: [`AuthFailure::challenge`]).
    Unauthorized(AuthFailure),
    /// 403 `insufficient_scope`.
    Forbidden,
    /// 400 `invalid_request`: more than one credential.
    InvalidRequest,
    /// 503: no keys have ever been loaded, so no token can be checked.
    Unavailable,
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Unauthorized(f) => f.label(),
            AuthError::Forbidden => "insufficient_scope",
            AuthError::InvalidRequest => "invalid_request",
            AuthError::Unavailable => "keys_unavailable",
        }
    }
}

/// A successful admission.
#[derive(Debug, Default)]
pub struct Admitted {
    pub identity: Option<Arc<Verified>>,
    /// What the upstream request's `Authorization` header becomes.
    pub authorization: ForwardAuthorization,
}

/// What the upstream request's `Authorization` header becomes: on a route that checks tokens,
/// the upstream sees a verified token or nothing, never a credential the gateway did not check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum ForwardAuthorization {
    /// As the client sent it: a route with `auth: none` (the backend may do its own auth), or
    /// a verified token already spelled `Bearer <token>`.
    #[default]
    AsSent,
    /// Anonymous on an `optional` route: no `Authorization` header at all.
    Remove,
    /// A verified token whose scheme the client spelled otherwise (`bearer …`): `Bearer <token>`.
    Bearer(String),
}

impl ForwardAuthorization {
    /// Applies the decision to the upstream request (called for every attempt).
    pub fn apply(&self, req: &mut RequestHeader) -> pingora_error::Result<()> {
        match self {
            ForwardAuthorization::AsSent => {}
            ForwardAuthorization::Remove => {
                req.remove_header(&AUTHORIZATION);
            }
            ForwardAuthorization::Bearer(value) => {
                req.insert_header(AUTHORIZATION, value.as_str())?;
            }
        }
        Ok(())
    }
}

/// One config's authentication settings, its token cache and the (shared) JWKS.
pub struct Authenticator {
    pub cfg: AuthConfig,
    pub jwks: Arc<JwksStore>,
    cache: quick_cache::sync::Cache<[u8; 32], Arc<Verified>>,
    metrics: Arc<Metrics>,
}

impl Authenticator {
    /// Builds the authenticator for a (re)loaded config, keeping the JWKS store of `previous`
    /// when it fetches the same URL the same way (a reload does not drop the keys).
    pub fn new(
        cfg: &AuthConfig,
        previous: Option<&Authenticator>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let jwks = match previous {
            Some(p) if p.jwks.compatible(cfg) => p.jwks.clone(),
            _ => Arc::new(JwksStore::new(cfg, metrics.clone())?),
        };
        Ok(Authenticator {
            cfg: cfg.clone(),
            jwks,
            cache: quick_cache::sync::Cache::new(cfg.token_cache_size.max(1)),
            metrics,
        })
    }

    pub async fn admit(
        &self,
        headers: &HeaderMap,
        rule: &RouteAuth,
    ) -> Result<Admitted, AuthError> {
        if *rule == RouteAuth::None {
            return Ok(Admitted::default());
        }
        let credential = identity::bearer(headers)?;
        let Some(credential) = credential else {
            return match rule {
                RouteAuth::Optional => Ok(Admitted {
                    identity: None,
                    // Nothing to remove today (any header is a token or a 401 above); kept so
                    // that an anonymous request can never carry a credential upstream.
                    authorization: ForwardAuthorization::Remove,
                }),
                _ => Err(AuthError::Unauthorized(AuthFailure::Missing)),
            };
        };
        let verified = self.verify(credential.token).await?;
        if let RouteAuth::Required { roles, scopes } = rule {
            let role_ok = roles.is_empty() || roles.iter().any(|r| verified.roles.contains(r));
            let scope_ok = scopes.iter().all(|s| verified.scopes.contains(s));
            if !(role_ok && scope_ok) {
                return Err(AuthError::Forbidden);
            }
        }
        Ok(Admitted {
            authorization: if credential.canonical {
                ForwardAuthorization::AsSent
            } else {
                ForwardAuthorization::Bearer(format!("Bearer {}", credential.token))
            },
            identity: Some(verified),
        })
    }

    async fn verify(&self, token: &str) -> Result<Arc<Verified>, AuthError> {
        if token.len() > self.cfg.max_token_bytes {
            return Err(AuthError::Unauthorized(AuthFailure::TooLarge));
        }
        let now = unix_now();
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache.get(&key) {
            if hit.exp.saturating_add(self.cfg.leeway.as_secs()) >= now
                && self.jwks.keys().get(&hit.kid).is_some()
            {
                self.metrics.token_cache.with_label_values(&["hit"]).inc();
                return Ok(hit);
            }
            self.cache.remove(&key);
        }
        self.metrics.token_cache.with_label_values(&["miss"]).inc();
        if !self.jwks.is_loaded() {
            // Without any key nothing can be verified; say so instead of blaming the token.
            // A malformed token is still the client's fault.
            verify::kid_of(token, &self.cfg).map_err(AuthError::Unauthorized)?;
            return Err(AuthError::Unavailable);
        }
        let result = verify::verify(token, &self.jwks.keys(), &self.cfg, now);
        let verified = match result {
            Err(AuthFailure::UnknownKid) => {
                let kid = verify::kid_of(token, &self.cfg).map_err(AuthError::Unauthorized)?;
                if !self.jwks.refetch_for(&kid).await {
                    return Err(AuthError::Unauthorized(AuthFailure::UnknownKid));
                }
                verify::verify(token, &self.jwks.keys(), &self.cfg, now)
            }
            other => other,
        }
        .map_err(AuthError::Unauthorized)?;
        let verified = Arc::new(verified);
        self.cache.insert(key, verified.clone());
        Ok(verified)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::testing::{config, good_claims, signer};

    /// An authenticator whose JWKS is the test signer's, installed (no fetch).
    fn authenticator() -> Authenticator {
        let a = Authenticator::new(&config(), None, Arc::new(Metrics::new())).unwrap();
        a.jwks
            .install(jwks::KeySet::parse(signer().jwks.as_bytes()).unwrap());
        a
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, http::HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    /// What admission decided, in a form a table can spell: the upstream `Authorization`
    /// and whether the request is identified, or the rejection's reason label.
    async fn decide(
        a: &Authenticator,
        rule: &RouteAuth,
        values: &[&[u8]],
    ) -> Result<(ForwardAuthorization, bool), &'static str> {
        a.admit(&headers(values), rule)
            .await
            .map(|ok| (ok.authorization, ok.identity.is_some()))
            .map_err(|e| e.reason())
    }

    #[tokio::test]
    async fn authorization_is_all_or_nothing() {
        let a = authenticator();
        let t = unix_now();
        let mut claims = good_claims();
        claims["iat"] = json!(t);
        claims["nbf"] = json!(t);
        claims["exp"] = json!(t + 300);
        let token = signer().sign(&claims);
        let bearer = format!("Bearer {token}");
        let lower = format!("bearer {token}");
        let tab = format!("Bearer\t{token}");
        let two_spaces = format!("Bearer  {token}");
        let non_ascii = format!("Bearer {token}\u{e9}");
        let required = RouteAuth::Required {
            roles: vec![],
            scopes: vec![],
        };
        use ForwardAuthorization::{AsSent, Bearer, Remove};
        let anonymous = |f| Ok((f, false));
        let identified = |f| Ok((f, true));
        let normalised = Bearer(bearer.clone());
        // (credential(s), on `optional`, on `required`)
        let table: Vec<(Vec<&[u8]>, _, _)> = vec![
            (vec![], anonymous(Remove), Err("missing")),
            (
                vec![bearer.as_bytes()],
                identified(AsSent),
                identified(AsSent),
            ),
            (
                vec![lower.as_bytes()],
                identified(normalised.clone()),
                identified(normalised),
            ),
            (
                vec![tab.as_bytes()],
                Err("malformed_credential"),
                Err("malformed_credential"),
            ),
            (
                vec![two_spaces.as_bytes()],
                Err("malformed_credential"),
                Err("malformed_credential"),
            ),
            (
                vec![non_ascii.as_bytes()],
                Err("malformed_credential"),
                Err("malformed_credential"),
            ),
            (
                vec![b"Bearer "],
                Err("malformed_credential"),
                Err("malformed_credential"),
            ),
            (
                vec![b"Basic dXNlcjpwYXNz"],
                Err("unsupported_scheme"),
                Err("unsupported_scheme"),
            ),
            (
                vec![bearer.as_bytes(), bearer.as_bytes()],
                Err("invalid_request"),
                Err("invalid_request"),
            ),
        ];
        for (values, optional, on_required) in table {
            let what = values
                .iter()
                .map(|v| {
                    String::from_utf8_lossy(v)
                        .chars()
                        .take(12)
                        .collect::<String>()
                })
                .collect::<Vec<_>>();
            assert_eq!(
                decide(&a, &RouteAuth::Optional, &values).await,
                optional,
                "optional {what:?}"
            );
            assert_eq!(
                decide(&a, &required, &values).await,
                on_required,
                "required {what:?}"
            );
            // `auth: none` looks at nothing and leaves the header as sent.
            assert_eq!(
                decide(&a, &RouteAuth::None, &values).await,
                anonymous(AsSent),
                "none {what:?}"
            );
        }
    }

    #[test]
    fn the_upstream_gets_the_verified_token_or_nothing() {
        let req = || {
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            r.insert_header(AUTHORIZATION, "bearer abc").unwrap();
            r
        };
        let after = |f: ForwardAuthorization| {
            let mut r = req();
            f.apply(&mut r).unwrap();
            r.headers
                .get_all(AUTHORIZATION)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(after(ForwardAuthorization::AsSent), ["bearer abc"]);
        assert_eq!(after(ForwardAuthorization::Remove), Vec::<String>::new());
        assert_eq!(
            after(ForwardAuthorization::Bearer("Bearer abc".into())),
            ["Bearer abc"]
        );
    }
}
