//! Checks of `rate_limits:` and of each route's `rate_limit: [...]` list (those run once the
//! routes are known).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::model::{
    AuthConfig, LimitKey, LimitPolicy, LimitStore, RateLimits, RouteAuth, RouteSpec,
};
use super::problem::Named;
use super::yaml::{index, join};
use super::{Problem, Validator, defaults, duration, file, some_names, valid_name};

/// The shortest emission interval (`per / limit`): the Redis script counts in microseconds.
const MIN_INTERVAL: Duration = Duration::from_micros(1);

/// Policy names as written, even when the block fails validation (so routes naming them are
/// not also reported as unknown), sorted. `None`: no `rate_limits:` block at all.
pub(super) fn declared_policies(v: Option<&serde_json::Value>) -> Option<Vec<String>> {
    let v = v?;
    let mut names: Vec<String> = v
        .get("policies")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    Some(names)
}

/// `client_ip`, `route`, `claim.NAME`, `header.NAME`.
pub fn parse_key(s: &str) -> Result<LimitKey, Problem> {
    let bad = || Problem::BadLimitKey(s.to_string());
    match s {
        "client_ip" => return Ok(LimitKey::ClientIp),
        "route" => return Ok(LimitKey::Route),
        _ => {}
    }
    let (kind, name) = s.split_once('.').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    match kind {
        "claim" if name.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(LimitKey::Claim(name.to_string()))
        }
        "header" => HeaderName::from_bytes(name.as_bytes())
            .map(LimitKey::Header)
            .map_err(|_| bad()),
        _ => Err(bad()),
    }
}

impl Validator<'_> {
    pub(super) fn rate_limits(
        &mut self,
        v: serde_json::Value,
        auth: Option<&AuthConfig>,
    ) -> Option<RateLimits> {
        let r: file::RateLimits = self.decode(v, "rate_limits")?;
        let before = self.count();
        // Checked whatever the store, so switching to `redis` later cannot surprise.
        let pool_size = r.redis_pool_size.unwrap_or(defaults::REDIS_POOL_SIZE);
        self.within(
            "rate_limits.redis_pool_size",
            pool_size,
            defaults::REDIS_POOL_SIZE_RANGE,
        );
        let store = match (r.store.unwrap_or(defaults::RATE_LIMIT_STORE), r.redis_url) {
            (file::RateLimitStore::Memory, _) => LimitStore::Memory,
            (file::RateLimitStore::Redis, None) => {
                self.err("rate_limits.store", Problem::RedisWithoutUrl);
                LimitStore::Memory
            }
            (file::RateLimitStore::Redis, Some(url)) => {
                // The URL may hold a password: never echo it.
                if redis::Client::open(url.as_str()).is_err() {
                    self.err("rate_limits.redis_url", Problem::BadRedisUrl);
                }
                LimitStore::Redis { url, pool_size }
            }
        };
        let store_timeout = duration::or(r.store_timeout, defaults::RATE_LIMIT_STORE_TIMEOUT);
        self.within(
            "rate_limits.store_timeout",
            store_timeout,
            defaults::RATE_LIMIT_STORE_TIMEOUT_RANGE,
        );
        let identity_headers: Vec<&HeaderName> = auth
            .map(|a| a.claims_to_headers.iter().map(|(_, h)| h).collect())
            .unwrap_or_default();
        let mut policies = BTreeMap::new();
        for (name, v) in r.policies {
            let path = join("rate_limits.policies", &name);
            if let Some(p) = self.policy(&name, v, &path, &identity_headers) {
                policies.insert(name, Arc::new(p));
            }
        }
        if self.count() > before {
            return None;
        }
        Some(RateLimits {
            store,
            on_store_error: r.on_store_error.unwrap_or(defaults::ON_STORE_ERROR),
            store_timeout,
            headers: r.headers.unwrap_or(defaults::RATE_LIMIT_HEADERS),
            policies,
        })
    }

    fn policy(
        &mut self,
        name: &str,
        v: serde_json::Value,
        path: &str,
        identity_headers: &[&HeaderName],
    ) -> Option<LimitPolicy> {
        if !valid_name(name) {
            self.err(path, Problem::BadName(Named::Policy, name.to_string()));
        }
        let p: file::RateLimitPolicy = self.decode(v, path)?;
        let before = self.count();
        let key = match parse_key(&p.key) {
            Ok(LimitKey::Header(h)) if identity_headers.contains(&&h) => {
                self.err(&join(path, "key"), Problem::IdentityHeaderKey(h));
                None
            }
            Ok(k) => Some(k),
            Err(e) => {
                self.err(&join(path, "key"), e);
                None
            }
        };
        let burst = p.burst.unwrap_or(defaults::rate_limit_burst(p.limit));
        let in_range = [
            self.within(
                &join(path, "limit"),
                p.limit,
                defaults::RATE_LIMIT_LIMIT_RANGE,
            ),
            self.within(&join(path, "per"), p.per.0, defaults::RATE_LIMIT_PER_RANGE),
            // Left out, it is the `limit`, checked above.
            p.burst.is_none()
                || self.within(
                    &join(path, "burst"),
                    burst,
                    defaults::RATE_LIMIT_BURST_RANGE,
                ),
        ];
        if in_range.iter().all(|ok| *ok) {
            let interval = p.per.0 / p.limit;
            if interval < MIN_INTERVAL {
                self.err(&join(path, "limit"), Problem::RateTooHigh);
            } else if interval.saturating_mul(burst) > defaults::RATE_LIMIT_MAX_REFILL {
                self.err(
                    &join(path, "burst"),
                    Problem::RefillTooLong {
                        max: defaults::RATE_LIMIT_MAX_REFILL,
                        got: interval.saturating_mul(burst),
                    },
                );
            }
        }
        if self.count() > before {
            return None;
        }
        Some(LimitPolicy {
            name: name.to_string(),
            key: key?,
            limit: p.limit,
            per: p.per.0,
            burst,
        })
    }

    /// Every route's `rate_limit` names a policy that exists, once, and whose key the route
    /// can know.
    pub(super) fn route_rate_limits(
        &mut self,
        routes: &[Arc<RouteSpec>],
        limits: Option<&RateLimits>,
        declared: Option<&[String]>,
    ) {
        for r in routes {
            let list = join(&index("routes", r.index), "rate_limit");
            let mut listed = std::collections::HashSet::new();
            for (j, name) in r.rate_limit.iter().enumerate() {
                let at = index(&list, j);
                if !listed.insert(name) {
                    self.err(&at, Problem::PolicyListedTwice(name.clone()));
                    continue;
                }
                let Some(declared) = declared else {
                    self.err(&at, Problem::NoRateLimitsBlock(name.clone()));
                    continue;
                };
                if declared.binary_search(name).is_err() {
                    self.err(
                        &at,
                        Problem::UnknownPolicy {
                            name: name.clone(),
                            known: some_names(declared),
                        },
                    );
                    continue;
                }
                let policy = limits.and_then(|l| l.policies.get(name));
                if let Some(p) = policy
                    && matches!(p.key, LimitKey::Claim(_))
                    && r.auth == RouteAuth::None
                {
                    self.err(
                        &at,
                        Problem::ClaimKeyWithoutAuth {
                            policy: name.clone(),
                            key: p.key.clone(),
                        },
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::config::model::OnStoreError;
    use crate::config::tests::{MINIMAL, at, errors, out_of_range, problems};

    const BASE: &str = "upstreams:\n  a: { targets: [127.0.0.1:9] }\n";

    #[test]
    fn keys_parse() {
        assert_eq!(parse_key("client_ip"), Ok(LimitKey::ClientIp));
        assert_eq!(parse_key("route"), Ok(LimitKey::Route));
        assert_eq!(parse_key("claim.sub"), Ok(LimitKey::Claim("sub".into())));
        assert_eq!(
            parse_key("header.X-Api-Key"),
            Ok(LimitKey::Header(HeaderName::from_static("x-api-key")))
        );
        for bad in [
            "ip",
            "claim.",
            "header.",
            "header.bad header",
            "cookie.a",
            "",
            "claim.a b",
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
            assert_eq!(
                parse_key(bad),
                Err(Problem::BadLimitKey(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_block_without_policies_gets_every_default() {
        let rl = crate::config::tests::load(&format!("{MINIMAL}rate_limits: {{}}\n"))
            .rate_limits
            .unwrap();
        assert_eq!(rl.store, LimitStore::Memory);
        assert_eq!(rl.on_store_error, defaults::ON_STORE_ERROR);
        assert_eq!(rl.store_timeout, defaults::RATE_LIMIT_STORE_TIMEOUT);
        assert_eq!(rl.headers, defaults::RATE_LIMIT_HEADERS);
        assert!(rl.policies.is_empty());
        let redis = crate::config::tests::load(&format!(
            "{MINIMAL}rate_limits: {{ store: redis, redis_url: \"redis://127.0.0.1:6379/0\" }}\n"
        ))
        .rate_limits
        .unwrap();
        assert_eq!(
            redis.store,
            LimitStore::Redis {
                url: "redis://127.0.0.1:6379/0".into(),
                pool_size: defaults::REDIS_POOL_SIZE
            }
        );
    }

    #[test]
    fn keys_rates_and_the_store_are_checked() {
        let src = format!(
            "{MINIMAL}auth: {{ issuer: i, audiences: [x], algorithms: [RS256], jwks_url: \"http://a/jwks\", claims_to_headers: {{ sub: X-User }} }}\n\
             rate_limits:\n  store_timeout: 0s\n  policies:\n    \"a b\": {{ key: header.x-user, limit: 2000001, per: 2s }}\n"
        );
        assert_eq!(
            problems(&src),
            at([
                (
                    "rate_limits.store_timeout",
                    out_of_range(defaults::RATE_LIMIT_STORE_TIMEOUT_RANGE, Duration::ZERO)
                ),
                (
                    "rate_limits.policies.a b",
                    Problem::BadName(Named::Policy, "a b".into())
                ),
                (
                    "rate_limits.policies.a b.key",
                    Problem::IdentityHeaderKey(HeaderName::from_static("x-user"))
                ),
                ("rate_limits.policies.a b.limit", Problem::RateTooHigh),
            ])
        );
    }

    #[test]
    fn a_valid_block_loads_with_defaults() {
        let src = format!(
            "{BASE}rate_limits:\n  policies:\n    per_ip: {{ key: client_ip, limit: 20, per: 1s }}\n    slow: {{ key: route, limit: 10, per: 1m, burst: 3 }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: a\n    rate_limit: [per_ip, slow]\n"
        );
        let c = load_str("gw.yaml", &src).unwrap();
        let rl = c.rate_limits.unwrap();
        assert_eq!(rl.store, LimitStore::Memory);
        assert_eq!(rl.on_store_error, OnStoreError::Local);
        assert_eq!(rl.store_timeout, Duration::from_millis(50));
        assert!(rl.headers);
        let ip = &rl.policies["per_ip"];
        assert_eq!((ip.limit, ip.burst), (20, 20));
        assert_eq!(ip.interval(), Duration::from_millis(50));
        assert_eq!(rl.policies["slow"].burst, 3);
        assert_eq!(c.routes[0].rate_limit, vec!["per_ip", "slow"]);
    }

    #[test]
    fn unknown_policy_on_a_route_points_at_the_name() {
        let src = format!(
            "{BASE}rate_limits:\n  policies:\n    per_ip: {{ key: client_ip, limit: 20, per: 1s }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: a\n    rate_limit: [per_ip, per_usr]\n"
        );
        assert_eq!(
            errors(&src),
            "gw.yaml:10:26: routes[0].rate_limit[1]: unknown policy \"per_usr\" (known: per_ip)"
        );
    }

    #[test]
    fn bad_policies_are_each_reported_at_their_line() {
        let src = format!(
            "{BASE}rate_limits:\n  policies:\n    a: {{ key: client_ip, limit: 0, per: 1s }}\n    b: {{ key: ip, limit: 5, per: 1s }}\n    c: {{ key: route, limit: 5, per: 1s, burst: 0 }}\n    d: {{ key: route, limit: 5, per: 0s }}\n    e: {{ key: route, limit: 5, per: 1s, brust: 2 }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: a\n"
        );
        let e = errors(&src);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 5, "{e}");
        assert!(
            lines[0].starts_with(
                "gw.yaml:5:33: rate_limits.policies.a.limit: must be between 1 and 1000000000, got 0"
            ),
            "{e}"
        );
        assert!(
            lines[1].starts_with("gw.yaml:6:15: rate_limits.policies.b.key: invalid key \"ip\""),
            "{e}"
        );
        assert!(
            lines[2].starts_with(
                "gw.yaml:7:48: rate_limits.policies.c.burst: must be between 1 and 1000000000, got 0"
            ),
            "{e}"
        );
        assert_eq!(
            lines[3],
            "gw.yaml:8:37: rate_limits.policies.d.per: must be between 1ms and 1year, got 0s"
        );
        assert!(
            lines[4].starts_with("gw.yaml:9:41: rate_limits.policies.e.brust: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn redis_store_needs_a_url_and_never_echoes_it() {
        let src = format!(
            "{BASE}rate_limits:\n  store: redis\n  policies: {{}}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: a\n"
        );
        assert_eq!(
            errors(&src),
            "gw.yaml:4:10: rate_limits.store: store: redis needs `redis_url` (e.g. redis://127.0.0.1:6379/0)"
        );
        let src = format!(
            "{BASE}rate_limits:\n  store: redis\n  redis_url: \"http://user:s3cret@host\"\n  policies: {{}}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: a\n"
        );
        let e = errors(&src);
        assert!(
            e.starts_with("gw.yaml:5:14: rate_limits.redis_url: invalid Redis URL"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn claim_keys_need_a_route_that_checks_tokens() {
        let src = format!(
            "{BASE}rate_limits:\n  policies:\n    per_user: {{ key: claim.sub, limit: 5, per: 1s }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: a\n    rate_limit: [per_user, per_user]\n"
        );
        let e = errors(&src);
        assert!(
            e.contains("gw.yaml:10:18: routes[0].rate_limit[0]: policy \"per_user\" counts by claim.sub, which is only known on routes that check tokens"),
            "{e}"
        );
        assert!(
            e.contains(
                "gw.yaml:10:28: routes[0].rate_limit[1]: policy \"per_user\" is listed twice"
            ),
            "{e}"
        );
    }

    #[test]
    fn verified_tokens_keep_the_claims_that_splits_and_limits_read() {
        let src = r#"upstreams:
  a: { targets: [127.0.0.1:9] }
  b: { targets: [127.0.0.1:10] }
auth: { issuer: i, audiences: [x], algorithms: [RS256], jwks_url: "http://127.0.0.1:9/jwks" }
rate_limits:
  policies:
    per_user: { key: claim.sub, limit: 5, per: 1s }
    per_org: { key: claim.org, limit: 5, per: 1s }
    per_ip: { key: client_ip, limit: 5, per: 1s }
routes:
  - name: r
    match: { path_prefix: / }
    split: [ { upstream: a, weight: 1 }, { upstream: b, weight: 1 } ]
    sticky_by: claim.tenant
    auth: required
    rate_limit: [per_user, per_org]
"#;
        let c = load_str("gw.yaml", src).unwrap();
        assert_eq!(c.auth.unwrap().kept_claims, ["org", "sub", "tenant"]);
        // Nothing reads a claim by name: nothing beyond what `Verified` extracts is kept.
        let src = format!(
            "{BASE}auth: {{ issuer: i, audiences: [x], algorithms: [RS256], jwks_url: \"http://127.0.0.1:9/jwks\" }}\n\
             routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: a, auth: required }}\n"
        );
        assert!(
            load_str("gw.yaml", &src)
                .unwrap()
                .auth
                .unwrap()
                .kept_claims
                .is_empty()
        );
    }

    #[test]
    fn a_route_limit_without_the_block_is_an_error() {
        let src = format!(
            "{BASE}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: a\n    rate_limit: [x]\n"
        );
        assert_eq!(
            errors(&src),
            "gw.yaml:7:18: routes[0].rate_limit[0]: unknown policy \"x\": there is no top-level `rate_limits:` block"
        );
    }
}
