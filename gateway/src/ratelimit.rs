//! Rate limiting: named policies from `rate_limits:`, checked in `request_filter` after
//! authentication, every policy a route lists in order; the first that refuses answers 429.
//!
//! - **Algorithm**: GCRA (the generic cell rate algorithm, a token bucket kept as one
//!   timestamp per key). A policy `{ limit: L, per: P, burst: B }` admits one request every
//!   `P / L` on average and up to `B` at once (`B` defaults to `L`).
//! - **Stores**: [`memory`] (default) keeps one `governor` keyed limiter per policy in this
//!   process; [`redis`] runs the same algorithm atomically in Redis (one Lua script, one round
//!   trip) so every gateway replica enforces one shared limit. While Redis is unreachable,
//!   `on_store_error` decides: `local` (this process's memory limiter), `allow` or `deny` (503).
//! - **Keys** ([`bucket_key`]): `client_ip` (after `trusted_proxies`; IPv6 by /64), `claim.NAME`,
//!   `header.NAME`, `route`. Every key is hashed (SHA-256, 128 bits kept): the memory per key
//!   and the Redis key length are fixed whatever the client sends. A request *without* the key
//!   (no token on an `auth: optional` route, header absent) is counted in one shared "missing"
//!   bucket of that policy: it is never let through unlimited.
//! - **Fields** ([`headers`]): `RateLimit-Policy` and `RateLimit`
//!   (draft-ietf-httpapi-ratelimit-headers-10) on 429s and, unless `headers: false`, on admitted
//!   responses; `Retry-After` on 429.
//!
//! Nothing here touches a pingora `Session`: [`Limiter::check`] takes plain [`KeyInputs`].

pub mod headers;
pub mod memory;
pub mod redis;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use self::redis::RedisStore;
use crate::auth::verify::Verified;
use crate::config::model::{
    LimitKey, LimitPolicy, LimitStore, OnStoreError, RateLimits, RouteSpec,
};
use crate::metrics::Metrics;
pub use headers::Fields;
use memory::MemoryLimiter;

/// Why the limiter refused a request. Like [`crate::auth::AuthError`], it says what happened;
/// [`crate::respond`] decides what the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitError {
    /// 429: a policy refused (its fields and `Retry-After` go with it).
    Limited(headers::Rejection),
    /// 503: the store is unreachable and `on_store_error: deny`.
    StoreUnavailable,
}

/// One policy's verdict on one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests that would still be admitted right now, after this one.
    pub remaining: u64,
    /// Until the bucket is full again (the whole burst available).
    pub reset: Duration,
    /// Until the next request can be admitted (zero when admitted).
    pub retry_after: Duration,
}

/// A bucket: the policy's key value, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketKey(pub [u8; 16]);

impl BucketKey {
    pub fn hex(&self) -> String {
        crate::hex::lower(&self.0)
    }
}

/// What a key is computed from.
pub struct KeyInputs<'a> {
    pub client_ip: Option<IpAddr>,
    pub identity: Option<&'a Verified>,
    pub headers: &'a HeaderMap,
    pub route: &'a str,
}

/// The bucket of a request under `key`. Values are tagged so that no value can collide with
/// the shared "missing" bucket.
pub fn bucket_key(key: &LimitKey, inputs: &KeyInputs<'_>) -> BucketKey {
    let mut h = Sha256::new();
    let present = match key {
        LimitKey::ClientIp => match inputs.client_ip {
            Some(IpAddr::V4(ip)) => {
                h.update(b"v4:");
                h.update(ip.octets());
                true
            }
            // One IPv6 client usually holds a whole /64: count the /64, or a single host
            // could spread its requests over 2^64 buckets.
            Some(IpAddr::V6(ip)) => {
                h.update(b"v6:");
                h.update(&ip.octets()[..8]);
                true
            }
            None => false,
        },
        LimitKey::Claim(name) => match inputs.identity.and_then(|v| v.claim_key(name)) {
            Some(v) => {
                h.update(b"claim:");
                h.update(&v);
                true
            }
            None => false,
        },
        LimitKey::Header(name) => {
            let mut any = false;
            for v in inputs.headers.get_all(name) {
                h.update(if any { &b","[..] } else { &b"header:"[..] });
                h.update(v.as_bytes());
                any = true;
            }
            any
        }
        LimitKey::Route => {
            h.update(b"route:");
            h.update(inputs.route.as_bytes());
            true
        }
    };
    if !present {
        h.update(b"\0missing");
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    BucketKey(out)
}

/// One policy at run time: its spec and this process's buckets (the memory store, and the
/// `local` fallback of the Redis store).
struct PolicyRuntime {
    spec: Arc<LimitPolicy>,
    local: Arc<MemoryLimiter>,
}

/// The rate limiter of one runtime (config).
pub struct Limiter {
    policies: HashMap<String, PolicyRuntime>,
    redis: Option<Arc<RedisStore>>,
    on_store_error: OnStoreError,
    headers: bool,
    metrics: Arc<Metrics>,
}

impl Limiter {
    /// Builds the limiter for a (re)loaded config. A policy whose parameters did not change
    /// keeps its buckets from `previous`, and an unchanged Redis store keeps its connections.
    pub fn new(
        cfg: &RateLimits,
        previous: Option<&Limiter>,
        metrics: Arc<Metrics>,
    ) -> Result<Limiter, String> {
        let policies = cfg
            .policies
            .iter()
            .map(|(name, spec)| {
                let kept = previous
                    .and_then(|p| p.policies.get(name))
                    .filter(|p| p.spec == *spec)
                    .map(|p| p.local.clone());
                let local = kept.unwrap_or_else(|| Arc::new(MemoryLimiter::new(spec)));
                (
                    name.clone(),
                    PolicyRuntime {
                        spec: spec.clone(),
                        local,
                    },
                )
            })
            .collect();
        let redis = match &cfg.store {
            LimitStore::Memory => None,
            LimitStore::Redis { url, pool_size } => {
                let kept = previous
                    .and_then(|p| p.redis.as_ref())
                    .filter(|r| r.same_settings(url, *pool_size, cfg.store_timeout))
                    .cloned();
                Some(match kept {
                    Some(r) => r,
                    None => Arc::new(RedisStore::new(
                        url,
                        *pool_size,
                        cfg.store_timeout,
                        metrics.clone(),
                    )?),
                })
            }
        };
        Ok(Limiter {
            policies,
            redis,
            on_store_error: cfg.on_store_error,
            headers: cfg.headers,
            metrics,
        })
    }

    /// Checks every policy of `route`, in order. `Ok(Some(fields))`: admitted, with the
    /// fields for the response (unless `headers: false`); `Err`: answer with it.
    pub async fn check(
        &self,
        route: &RouteSpec,
        inputs: &KeyInputs<'_>,
    ) -> Result<Option<Fields>, RateLimitError> {
        let mut seen: Vec<(&LimitPolicy, Decision)> = Vec::with_capacity(route.rate_limit.len());
        for name in &route.rate_limit {
            // Validation guarantees the name exists.
            let Some(p) = self.policies.get(name) else {
                continue;
            };
            let key = bucket_key(&p.spec.key, inputs);
            let decision = match &self.redis {
                None => p.local.check(&key),
                Some(store) => match store.check(&p.spec, &key).await {
                    Ok(d) => d,
                    Err(e) => {
                        self.metrics
                            .rate_limit_store_errors
                            .with_label_values(&[name.as_str()])
                            .inc();
                        tracing::debug!(policy = %name, error = %e, "rate-limit store call failed");
                        match self.on_store_error {
                            OnStoreError::Local => p.local.check(&key),
                            OnStoreError::Allow => continue,
                            OnStoreError::Deny => return Err(RateLimitError::StoreUnavailable),
                        }
                    }
                },
            };
            seen.push((&p.spec, decision));
            if !decision.allowed {
                self.metrics
                    .rate_limit_rejections
                    .with_label_values(&[route.name.as_str(), name.as_str()])
                    .inc();
                return Err(RateLimitError::Limited(headers::rejection(&seen)));
            }
        }
        Ok((self.headers && !seen.is_empty()).then(|| headers::fields(&seen)))
    }

    /// `name (key: L per P, burst B)` for each policy of `names` (for `gateway explain`).
    pub fn describe(cfg: &RateLimits, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter_map(|n| cfg.policies.get(n))
            .map(|p| {
                format!(
                    "{} (by {}: {} per {}, burst {})",
                    p.name,
                    p.key,
                    p.limit,
                    humantime::format_duration(p.per),
                    p.burst
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn inputs<'a>(ip: Option<&str>, headers: &'a HeaderMap) -> KeyInputs<'a> {
        KeyInputs {
            client_ip: ip.map(|s| s.parse().unwrap()),
            identity: None,
            headers,
            route: "r1",
        }
    }

    #[test]
    fn client_ip_keys_v4_per_address_and_v6_per_64() {
        let h = HeaderMap::new();
        let k = |ip| bucket_key(&LimitKey::ClientIp, &inputs(Some(ip), &h));
        assert_eq!(k("10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
    }

    #[test]
    fn missing_values_share_one_bucket_that_no_value_can_reach() {
        let empty = HeaderMap::new();
        let key = LimitKey::Header(http::HeaderName::from_static("x-api-key"));
        let missing = bucket_key(&key, &inputs(None, &empty));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static(""));
        assert_ne!(bucket_key(&key, &inputs(None, &h)), missing);
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        let k1 = bucket_key(&key, &inputs(None, &h));
        assert_ne!(k1, missing);
        h.insert("x-api-key", HeaderValue::from_static("k2"));
        assert_ne!(bucket_key(&key, &inputs(None, &h)), k1);
        // No token: the claim is missing, and so is the IP when there is no peer address.
        assert_eq!(
            bucket_key(&LimitKey::Claim("sub".into()), &inputs(None, &empty)),
            bucket_key(&LimitKey::Claim("sub".into()), &inputs(None, &h)),
        );
        assert_ne!(
            bucket_key(&LimitKey::ClientIp, &inputs(None, &empty)),
            bucket_key(&LimitKey::ClientIp, &inputs(Some("0.0.0.0"), &empty)),
        );
    }

    #[test]
    fn claim_keys_follow_the_verified_claim() {
        let verified = |sub: serde_json::Value| Verified {
            kid: "k".into(),
            exp: 0,
            sub: None,
            roles: vec![],
            scopes: vec![],
            headers: vec![],
            claims: serde_json::json!({ "sub": sub })
                .as_object()
                .unwrap()
                .clone(),
        };
        let h = HeaderMap::new();
        let key = LimitKey::Claim("sub".into());
        let with = |v: &Verified| {
            bucket_key(
                &key,
                &KeyInputs {
                    client_ip: Some("10.0.0.1".parse().unwrap()),
                    identity: Some(v),
                    headers: &h,
                    route: "r",
                },
            )
        };
        let (alice, bob) = (verified("alice".into()), verified("bob".into()));
        assert_eq!(with(&alice), with(&verified("alice".into())));
        assert_ne!(with(&alice), with(&bob));
        // A null claim is a missing one; numbers count by their JSON text.
        let missing = bucket_key(&key, &inputs(Some("10.0.0.1"), &h));
        assert_eq!(with(&verified(serde_json::Value::Null)), missing);
        assert_ne!(with(&verified(7.into())), missing);
    }

    #[test]
    fn route_keys_are_per_route_and_hex_is_fixed_length() {
        let h = HeaderMap::new();
        let a = bucket_key(&LimitKey::Route, &inputs(None, &h));
        let mut other = inputs(None, &h);
        other.route = "r2";
        assert_ne!(a, bucket_key(&LimitKey::Route, &other));
        assert_eq!(a.hex().len(), 32);
    }
}
