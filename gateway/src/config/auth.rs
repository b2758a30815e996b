//! Checks of `auth:`: where the keys come from and what a valid token looks like. Which routes
//! check tokens is a route's own `auth:` (see `routes.rs`).

use std::str::FromStr;
use std::sync::Arc;

use http::HeaderName;

use super::model::{AuthConfig, LimitKey, RateLimits, RouteSpec, RouteTarget, StickyKey};
use super::yaml::{index, join};
use super::{Problem, Validator, defaults, duration, file};

impl Validator<'_> {
    pub(super) fn auth(&mut self, v: serde_json::Value) -> Option<AuthConfig> {
        let a: file::Auth = self.decode(v, "auth")?;
        let before = self.count();
        if a.issuer.trim().is_empty() {
            self.err("auth.issuer", Problem::EmptyIssuer);
        }
        if a.audiences.is_empty() || a.audiences.iter().any(|s| s.trim().is_empty()) {
            self.err("auth.audiences", Problem::NoAudiences);
        }
        match http::Uri::from_str(&a.jwks_url) {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => self.err("auth.jwks_url", Problem::BadJwksUrl(a.jwks_url.clone())),
        }
        let mut algorithms = Vec::new();
        if a.algorithms.is_empty() {
            self.err("auth.algorithms", Problem::NoAlgorithms);
        }
        for (i, name) in a.algorithms.iter().enumerate() {
            let at = index("auth.algorithms", i);
            match jsonwebtoken::Algorithm::from_str(name) {
                Ok(_) if name.starts_with("HS") => {
                    self.err(&at, Problem::SharedSecretAlgorithm(name.clone()));
                }
                Ok(alg) => algorithms.push(alg),
                Err(_) => self.err(&at, Problem::UnknownAlgorithm(name.clone())),
            }
        }
        let mut claims_to_headers = Vec::new();
        for (claim, header) in &a.claims_to_headers {
            match HeaderName::from_str(header) {
                Ok(h) => claims_to_headers.push((claim.clone(), h)),
                Err(_) => self.err(
                    &join("auth.claims_to_headers", claim),
                    Problem::BadHeaderName(header.clone()),
                ),
            }
        }
        let leeway = duration::or(a.leeway, defaults::AUTH_LEEWAY);
        let jwks_refresh_interval =
            duration::or(a.jwks_refresh_interval, defaults::JWKS_REFRESH_INTERVAL);
        let jwks_min_refresh_interval = duration::or(
            a.jwks_min_refresh_interval,
            defaults::JWKS_MIN_REFRESH_INTERVAL,
        );
        let jwks_unknown_kid_cooldown = duration::or(
            a.jwks_unknown_kid_cooldown,
            defaults::JWKS_UNKNOWN_KID_COOLDOWN,
        );
        let jwks_timeout = duration::or(a.jwks_timeout, defaults::JWKS_TIMEOUT);
        for (field, d, range) in [
            ("leeway", leeway, defaults::AUTH_LEEWAY_RANGE),
            (
                "jwks_refresh_interval",
                jwks_refresh_interval,
                defaults::JWKS_REFRESH_INTERVAL_RANGE,
            ),
            (
                "jwks_min_refresh_interval",
                jwks_min_refresh_interval,
                defaults::JWKS_MIN_REFRESH_INTERVAL_RANGE,
            ),
            (
                "jwks_unknown_kid_cooldown",
                jwks_unknown_kid_cooldown,
                defaults::JWKS_UNKNOWN_KID_COOLDOWN_RANGE,
            ),
            ("jwks_timeout", jwks_timeout, defaults::JWKS_TIMEOUT_RANGE),
        ] {
            self.within(&join("auth", field), d, range);
        }
        let max_token_bytes = a.max_token_bytes.unwrap_or(defaults::MAX_TOKEN_BYTES);
        self.within(
            "auth.max_token_bytes",
            max_token_bytes,
            defaults::MAX_TOKEN_BYTES_RANGE,
        );
        let token_cache_size = a.token_cache_size.unwrap_or(defaults::TOKEN_CACHE_SIZE);
        self.within(
            "auth.token_cache_size",
            token_cache_size,
            defaults::TOKEN_CACHE_SIZE_RANGE,
        );
        if self.count() > before {
            return None;
        }
        Some(AuthConfig {
            issuer: a.issuer,
            audiences: a.audiences,
            jwks_url: a.jwks_url,
            algorithms,
            leeway,
            claims_to_headers,
            jwks_refresh_interval,
            jwks_min_refresh_interval,
            jwks_unknown_kid_cooldown,
            jwks_timeout,
            max_token_bytes,
            token_cache_size,
            // Filled in once the routes and rate limits are known: `claims_read_by`.
            kept_claims: Vec::new(),
        })
    }
}

/// The claim names that splits (`sticky_by: claim.X`) and rate-limit policies (`key: claim.X`)
/// read from a verified token, sorted and without repeats: what [`AuthConfig::kept_claims`]
/// holds.
pub(super) fn claims_read_by(
    routes: &[Arc<RouteSpec>],
    limits: Option<&RateLimits>,
) -> Vec<String> {
    let sticky = routes.iter().flat_map(|r| match &r.target {
        RouteTarget::Split {
            sticky_by: Some(k), ..
        } => vec![k],
        RouteTarget::Cohort(c) => c.cohort.keys().collect(),
        _ => vec![],
    });
    let sticky = sticky.filter_map(|k| match k {
        StickyKey::Claim(c) => Some(c),
        _ => None,
    });
    let limited = limits
        .into_iter()
        .flat_map(|l| l.policies.values())
        .filter_map(|p| match &p.key {
            LimitKey::Claim(c) => Some(c),
            _ => None,
        });
    let mut names: Vec<String> = sticky.chain(limited).cloned().collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::tests::{MINIMAL, at, errors, load, problems};

    const BLOCK: &str = "auth:\n  issuer: i\n  audiences: [x]\n  algorithms: [RS256, ES256]\n  jwks_url: \"https://idp.example/jwks\"\n";

    #[test]
    fn a_minimal_block_gets_every_default() {
        let a = load(&format!("{MINIMAL}{BLOCK}")).auth.unwrap();
        assert_eq!(a.issuer, "i");
        assert_eq!(a.audiences, ["x"]);
        assert_eq!(
            a.algorithms,
            [
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::Algorithm::ES256
            ]
        );
        assert_eq!(a.leeway, defaults::AUTH_LEEWAY);
        assert!(a.claims_to_headers.is_empty());
        assert_eq!(a.jwks_refresh_interval, defaults::JWKS_REFRESH_INTERVAL);
        assert_eq!(
            a.jwks_min_refresh_interval,
            defaults::JWKS_MIN_REFRESH_INTERVAL
        );
        assert_eq!(
            a.jwks_unknown_kid_cooldown,
            defaults::JWKS_UNKNOWN_KID_COOLDOWN
        );
        assert_eq!(a.jwks_timeout, defaults::JWKS_TIMEOUT);
        assert_eq!(a.max_token_bytes, defaults::MAX_TOKEN_BYTES);
        assert_eq!(a.token_cache_size, defaults::TOKEN_CACHE_SIZE);
        assert!(a.kept_claims.is_empty());
    }

    #[test]
    fn configured_values_are_kept() {
        let a = load(&format!(
            "{MINIMAL}{BLOCK}  leeway: 5s\n  claims_to_headers: {{ sub: X-User-Id }}\n  max_token_bytes: 256\n  token_cache_size: 0\n"
        ))
        .auth
        .unwrap();
        assert_eq!(a.leeway, Duration::from_secs(5));
        assert_eq!(
            a.claims_to_headers,
            [("sub".to_string(), HeaderName::from_static("x-user-id"))]
        );
        assert_eq!((a.max_token_bytes, a.token_cache_size), (256, 0));
    }

    #[test]
    fn every_field_is_checked() {
        let src = format!(
            "{MINIMAL}auth:\n  issuer: \" \"\n  audiences: [api, \"\"]\n  algorithms: []\n  jwks_url: /jwks\n  claims_to_headers: {{ sub: \"bad header\" }}\n  max_token_bytes: 255\n"
        );
        assert_eq!(
            problems(&src),
            at([
                ("auth.issuer", Problem::EmptyIssuer),
                ("auth.audiences", Problem::NoAudiences),
                ("auth.algorithms", Problem::NoAlgorithms),
                ("auth.jwks_url", Problem::BadJwksUrl("/jwks".into())),
                (
                    "auth.claims_to_headers.sub",
                    Problem::BadHeaderName("bad header".into())
                ),
                (
                    "auth.max_token_bytes",
                    Problem::OutOfRange {
                        min: 256usize.into(),
                        max: 65536usize.into(),
                        got: 255usize.into()
                    }
                ),
            ])
        );
        assert_eq!(
            errors(&src).lines().next(),
            Some(
                "gw.yaml:6:11: auth.issuer: must not be empty: it is compared with every token's `iss`"
            )
        );
    }

    #[test]
    fn shared_secret_and_unknown_algorithms_are_refused() {
        let src = format!(
            "{MINIMAL}auth: {{ issuer: i, audiences: [x], algorithms: [RS256, HS256, none], jwks_url: \"http://a/jwks\" }}\n"
        );
        assert_eq!(
            problems(&src),
            at([
                (
                    "auth.algorithms[1]",
                    Problem::SharedSecretAlgorithm("HS256".into())
                ),
                (
                    "auth.algorithms[2]",
                    Problem::UnknownAlgorithm("none".into())
                ),
            ])
        );
    }

    #[test]
    fn a_broken_block_is_reported_once_not_by_every_route() {
        let src = "auth: { issuer: i }\nupstreams:\n  a: { targets: [127.0.0.1:9] }\nroutes:\n  - { name: r, match: {}, upstream: a, auth: required }\n";
        let p = problems(src);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "auth");
        assert!(
            matches!(&p[0].1, Problem::Decode(m) if m.starts_with("missing field")),
            "{p:?}"
        );
    }
}
