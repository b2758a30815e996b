//! Authentication: the gateway decides identity; backends receive verified identity headers.
//!
//! [`Authenticator::admit`] runs in `request_filter` after routing:
//! 1. find the credential: exactly one `Authorization` header (two → 400 `invalid_request`),
//!    scheme `Bearer` in any case;
//! 2. apply the route's rule: `none` looks at nothing; `optional` lets a request without a token
//!    through anonymously but refuses a bad one; `required` needs a valid token with one of the
//!    listed roles (if any) and all the listed scopes (403 otherwise);
//! 3. verify: the verified-token cache first (keyed by SHA-256 of the token, valid until the
//!    token's `exp` and while its `kid` is still published), then [`verify::verify`]; an unknown
//!    `kid` triggers one shared JWKS re-fetch ([`jwks::JwksStore::refetch_for`]).
//!
//! [`identity`] strips client-sent identity headers from every request and adds the verified
//! ones.

pub mod identity;
pub mod jwks;
pub mod verify;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::model::{AuthConfig, RouteAuth};
use crate::metrics::Metrics;
use jwks::JwksStore;
use verify::{AuthFailure, Verified};

/// Why admission failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"` (or no error code when the
    /// token is simply missing).
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
    /// The token, when the client spelled the scheme other than `Bearer` (forwarded as
    /// `Bearer <token>`).
    pub normalized_authorization: Option<String>,
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
                RouteAuth::Optional => Ok(Admitted::default()),
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
            normalized_authorization: (!credential.canonical)
                .then(|| format!("Bearer {}", credential.token)),
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
