//! The JWKS: fetched at start, refreshed in the background, re-fetched on an unknown `kid`.
//!
//! - **Schedule.** After a successful fetch the next one is due after the response's
//!   `Cache-Control: max-age`, clamped to `[jwks_min_refresh_interval, jwks_refresh_interval]`
//!   (`jwks_refresh_interval` when there is no max-age). After a failure: 1s, 2s, 4s, ... capped
//!   at `jwks_min_refresh_interval`, and the last good keys keep working.
//! - **Unknown `kid`.** A token signed by a key we do not know triggers one re-fetch, shared by
//!   every request that needs it (single-flight), and at most once per
//!   `jwks_unknown_kid_cooldown`, so a stream of forged `kid`s cannot hammer the auth-service.
//! - Keys are matched by `kid` only; each key carries the algorithms it may verify (its `alg`,
//!   or its key type's family when the JWK names none).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::time::Instant;

use crate::config::model::AuthConfig;
use crate::metrics::Metrics;

/// Responses larger than this are refused (a JWKS is a few KB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// One verification key.
pub struct KeyEntry {
    pub decoding: DecodingKey,
    /// The JWK's `alg`, when it names one.
    alg: Option<Algorithm>,
    family: Family,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Rsa,
    Ec,
    Okp,
}

fn family_of(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 | ES384 => Some(Family::Ec),
        EdDSA => Some(Family::Okp),
        _ => None,
    }
}

impl KeyEntry {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        match self.alg {
            Some(a) => a == alg,
            None => family_of(alg) == Some(self.family),
        }
    }
}

/// The keys of one JWKS, by `kid`.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<KeyEntry>>,
}

impl KeySet {
    pub fn get(&self, kid: &str) -> Option<&Arc<KeyEntry>> {
        self.by_kid.get(kid)
    }

    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    /// Parses a JWKS document. Keys that are not usable for signatures (no `kid`, `use` other
    /// than `sig`, unsupported type) are skipped; a document with no usable key is an error.
    pub fn parse(body: &[u8]) -> Result<KeySet, String> {
        let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no `keys` array")?;
        let mut by_kid = HashMap::new();
        for k in keys {
            let Some(kid) = k.get("kid").and_then(Value::as_str) else {
                continue;
            };
            if k.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let family = match k.get("kty").and_then(Value::as_str) {
                Some("RSA") => Family::Rsa,
                Some("EC") => Family::Ec,
                Some("OKP") => Family::Okp,
                _ => continue,
            };
            let alg = match k.get("alg").and_then(Value::as_str) {
                Some(name) => match name.parse::<Algorithm>() {
                    Ok(a) if family_of(a) == Some(family) => Some(a),
                    _ => continue,
                },
                None => None,
            };
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                continue;
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            by_kid.insert(
                kid.to_string(),
                Arc::new(KeyEntry {
                    decoding,
                    alg,
                    family,
                }),
            );
        }
        if by_kid.is_empty() {
            return Err("no usable signature key (each needs kid, kty RSA/EC/OKP, use sig)".into());
        }
        Ok(KeySet { by_kid })
    }
}

struct Schedule {
    next_refresh: Instant,
    last_attempt: Option<Instant>,
    failures: u32,
}

/// When the next refresh is due after a success with this `max-age`.
pub fn after_success(max_age: Option<Duration>, cfg: &AuthConfig) -> Duration {
    let lo = cfg.jwks_min_refresh_interval.min(cfg.jwks_refresh_interval);
    max_age
        .unwrap_or(cfg.jwks_refresh_interval)
        .clamp(lo, cfg.jwks_refresh_interval)
}

/// When the next attempt is due after `failures` consecutive failures.
pub fn after_failure(failures: u32, cfg: &AuthConfig) -> Duration {
    let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(16));
    base.min(cfg.jwks_min_refresh_interval.max(Duration::from_secs(1)))
}

/// `max-age` of a `Cache-Control` value (`no-cache` / `no-store` count as 0).
pub fn max_age(cache_control: &str) -> Option<Duration> {
    let mut out = None;
    for d in cache_control.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            out = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    out
}

/// The key set of one `jwks_url`, shared across config reloads while the URL stays the same.
pub struct JwksStore {
    pub url: String,
    cfg: AuthConfig,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    loaded: AtomicBool,
    schedule: std::sync::Mutex<Schedule>,
    fetch_lock: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl JwksStore {
    pub fn new(cfg: &AuthConfig, metrics: Arc<Metrics>) -> Result<JwksStore, String> {
        let client = reqwest::Client::builder()
            .timeout(cfg.jwks_timeout)
            .connect_timeout(cfg.jwks_timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("auth.jwks_url: cannot build an HTTP client: {e}"))?;
        Ok(JwksStore {
            url: cfg.jwks_url.clone(),
            cfg: cfg.clone(),
            client,
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: AtomicBool::new(false),
            schedule: std::sync::Mutex::new(Schedule {
                next_refresh: Instant::now(),
                last_attempt: None,
                failures: 0,
            }),
            fetch_lock: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    /// Whether this store can serve `cfg` (same URL and fetch settings) after a reload.
    pub fn compatible(&self, cfg: &AuthConfig) -> bool {
        self.cfg.jwks_url == cfg.jwks_url
            && self.cfg.jwks_timeout == cfg.jwks_timeout
            && self.cfg.jwks_refresh_interval == cfg.jwks_refresh_interval
            && self.cfg.jwks_min_refresh_interval == cfg.jwks_min_refresh_interval
            && self.cfg.jwks_unknown_kid_cooldown == cfg.jwks_unknown_kid_cooldown
    }

    /// The current keys (the last good set: a failed fetch never empties it).
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Makes `set` the current keys (what a successful fetch does). Also how benchmarks and
    /// tests give a store a fixed key set without serving a JWKS.
    pub fn install(&self, set: KeySet) {
        self.metrics.jwks_keys.set(set.len() as i64);
        self.keys.store(Arc::new(set));
        self.loaded.store(true, Ordering::Release);
    }

    /// True once a fetch has succeeded (or keys were installed).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    fn lock_schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long until the next scheduled refresh.
    pub fn due_in(&self) -> Duration {
        self.lock_schedule()
            .next_refresh
            .saturating_duration_since(Instant::now())
    }

    /// Refreshes if the schedule says so.
    pub async fn refresh_if_due(&self) {
        if self.due_in().is_zero() {
            let _g = self.fetch_lock.lock().await;
            if self.due_in().is_zero() {
                self.refresh_locked("scheduled").await;
            }
        }
    }

    /// Called for a token whose `kid` is not in the key set. Returns true when, after at most
    /// one shared re-fetch, the key is known.
    pub async fn refetch_for(&self, kid: &str) -> bool {
        if self.keys().get(kid).is_some() {
            return true;
        }
        let _guard = match self.fetch_lock.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // A fetch is in flight: wait for it and use its result (single-flight).
                let _wait = self.fetch_lock.lock().await;
                return self.keys().get(kid).is_some();
            }
        };
        if self.in_cooldown() {
            return false;
        }
        self.refresh_locked("unknown kid").await;
        self.keys().get(kid).is_some()
    }

    fn in_cooldown(&self) -> bool {
        self.lock_schedule()
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.cfg.jwks_unknown_kid_cooldown)
    }

    async fn refresh_locked(&self, trigger: &str) -> bool {
        self.lock_schedule().last_attempt = Some(Instant::now());
        let m = &self.metrics;
        match self.fetch().await {
            Ok((set, max_age)) => {
                let n = set.len();
                self.install(set);
                m.jwks_refreshes.with_label_values(&["success"]).inc();
                m.jwks_last_success.set(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                );
                let mut s = self.lock_schedule();
                s.failures = 0;
                s.next_refresh = Instant::now() + after_success(max_age, &self.cfg);
                tracing::info!(trigger, keys = n, url = %self.url, "JWKS loaded");
                true
            }
            Err(e) => {
                m.jwks_refreshes.with_label_values(&["failure"]).inc();
                let mut s = self.lock_schedule();
                s.failures += 1;
                s.next_refresh = Instant::now() + after_failure(s.failures, &self.cfg);
                tracing::warn!(
                    trigger,
                    url = %self.url,
                    failures = s.failures,
                    "JWKS fetch failed; the last good keys keep working: {e}"
                );
                false
            }
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Option<Duration>), String> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {}: status {status}", self.url));
        }
        let max_age = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        if resp
            .content_length()
            .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
        {
            return Err(format!(
                "GET {}: response larger than {MAX_JWKS_BYTES} bytes",
                self.url
            ));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("GET {}: reading the body: {e}", self.url))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "GET {}: response larger than {MAX_JWKS_BYTES} bytes",
                self.url
            ));
        }
        let set = KeySet::parse(&body).map_err(|e| format!("GET {}: {e}", self.url))?;
        Ok((set, max_age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AuthConfig {
        crate::auth::testing::config()
    }

    #[test]
    fn cache_control_is_honoured_within_bounds() {
        let c = cfg();
        assert_eq!(max_age("public, max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(
            after_success(Some(Duration::from_secs(60)), &c),
            Duration::from_secs(60)
        );
        assert_eq!(
            after_success(Some(Duration::ZERO), &c),
            Duration::from_secs(10)
        );
        assert_eq!(
            after_success(Some(Duration::from_secs(86_400)), &c),
            Duration::from_secs(300)
        );
        assert_eq!(after_success(None, &c), Duration::from_secs(300));
    }

    #[test]
    fn failures_back_off_up_to_the_minimum_interval() {
        let c = cfg();
        let steps: Vec<u64> = (1..=6).map(|f| after_failure(f, &c).as_secs()).collect();
        assert_eq!(steps, [1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_refetch_respects_the_cooldown() {
        // Port 1 refuses connections at once: every fetch fails fast, which is all this needs.
        let store = JwksStore::new(&cfg(), Arc::new(Metrics::new())).unwrap();
        assert!(
            !store.refetch_for("k1").await,
            "first unknown kid: one fetch (fails)"
        );
        let failures = || {
            store
                .metrics
                .jwks_refreshes
                .with_label_values(&["failure"])
                .get()
        };
        assert_eq!(failures(), 1);
        for _ in 0..50 {
            assert!(!store.refetch_for("forged").await);
        }
        assert_eq!(failures(), 1, "no fetch inside the cooldown");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!store.refetch_for("forged").await);
        assert_eq!(failures(), 2, "one fetch after the cooldown");
        assert!(!store.is_loaded());
    }

    #[test]
    fn parse_skips_unusable_keys_and_refuses_an_empty_set() {
        assert!(KeySet::parse(br#"{"keys":[]}"#).is_err());
        assert!(KeySet::parse(br#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#).is_err());
        assert!(KeySet::parse(b"garbage").is_err());
    }
}
