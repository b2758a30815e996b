//! The YAML file as written by users: plain serde structs, every one `deny_unknown_fields`
//! (serde would otherwise ignore a typo such as `path_prefx` silently).
//!
//! Nothing here is trusted: the section checks (`config/listeners.rs`, `auth.rs`,
//! `upstreams.rs`, `routes.rs`, `rate_limits.rs`, `observability.rs`) turn these into the
//! runtime [`super::model`] and name the field path of every problem. A key left out is `None`
//! here; what it means is in [`super::defaults`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

pub use crate::path::EncodedSlashes;

#[cfg(doc)]
use super::defaults;
use super::duration::Dur;

/// The top level. Each section is deserialised on its own (see [`super::load_str`]), so a
/// broken route does not hide a broken upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Top {
    pub listen: Option<serde_json::Value>,
    pub tls: Option<serde_json::Value>,
    pub admin: Option<serde_json::Value>,
    pub server: Option<serde_json::Value>,
    pub trusted_proxies: Option<serde_json::Value>,
    pub path_normalization: Option<serde_json::Value>,
    pub auth: Option<serde_json::Value>,
    pub rate_limits: Option<serde_json::Value>,
    pub upstreams: Option<serde_json::Map<String, serde_json::Value>>,
    pub cohorts: Option<serde_json::Map<String, serde_json::Value>>,
    pub routes: Option<Vec<serde_json::Value>>,
    pub observability: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub listen: String,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Worker threads for the proxy. Default: [`defaults::server_threads`].
    pub threads: Option<usize>,
    /// How long SIGTERM waits for in-flight requests. Default: [`defaults::DRAIN_TIMEOUT`].
    pub drain_timeout: Option<Dur>,
    /// Quiet time after a file event before the reload runs. Default:
    /// [`defaults::RELOAD_DEBOUNCE`].
    pub reload_debounce: Option<Dur>,
    /// Idle upstream connections kept per process. Default:
    /// [`defaults::UPSTREAM_KEEPALIVE_POOL`].
    pub upstream_keepalive_pool: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathNormalization {
    /// `reject` answers 400 to a path with `%2F` or `%5C`; `keep` forwards them encoded and
    /// matches routes on the encoded form. Default: [`defaults::ENCODED_SLASHES`].
    pub encoded_slashes: Option<EncodedSlashes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub targets: Vec<String>,
    /// Default: [`defaults::LOAD_BALANCING`].
    #[serde(default)]
    pub load_balancing: Option<LoadBalancing>,
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
    pub retries: Option<Retries>,
    pub health_check: Option<HealthCheck>,
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// `retries:` of an upstream. Which requests may be retried is fixed (see docs/resilience.md);
/// how many times, how fast and how often overall is configured here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Retries after the first attempt; 0 turns retries off. Default:
    /// [`defaults::RETRY_ATTEMPTS`].
    pub attempts: Option<u32>,
    /// Wait before the first retry; doubles per retry. Default: [`defaults::RETRY_BACKOFF`].
    pub backoff: Option<Dur>,
    /// Cap of the doubled wait. Default: [`defaults::RETRY_MAX_BACKOFF`].
    pub max_backoff: Option<Dur>,
    pub budget: Option<RetryBudget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Default: [`defaults::RETRY_BUDGET_RATIO`].
    pub ratio: Option<f64>,
    /// Default: [`defaults::RETRY_BUDGET_MIN_RETRIES_PER_SECOND`].
    pub min_retries_per_second: Option<u32>,
    /// Default: [`defaults::RETRY_BUDGET_WINDOW`].
    pub window: Option<Dur>,
}

/// `health_check:` of an upstream: an HTTP GET to every target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    /// `Host` header of the check. Default: the target's `host:port`.
    pub host: Option<String>,
    /// Default: [`defaults::HEALTH_INTERVAL`].
    pub interval: Option<Dur>,
    /// Default: [`defaults::HEALTH_TIMEOUT`].
    pub timeout: Option<Dur>,
    /// Default: [`defaults::HEALTHY_THRESHOLD`].
    pub healthy_threshold: Option<u32>,
    /// Default: [`defaults::UNHEALTHY_THRESHOLD`].
    pub unhealthy_threshold: Option<u32>,
}

/// `circuit_breaker:` of an upstream (one breaker per target).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Default: [`defaults::BREAKER_ENABLED`].
    pub enabled: Option<bool>,
    /// Default: [`defaults::BREAKER_FAILURE_RATIO`].
    pub failure_ratio: Option<f64>,
    /// Default: [`defaults::BREAKER_MIN_REQUESTS`].
    pub min_requests: Option<u32>,
    /// Default: [`defaults::BREAKER_WINDOW`].
    pub window: Option<Dur>,
    /// Default: [`defaults::BREAKER_OPEN_FOR`].
    pub open_for: Option<Dur>,
    /// Default: [`defaults::breaker_max_open_for`] (of `open_for`).
    pub max_open_for: Option<Dur>,
    /// Default: [`defaults::BREAKER_HALF_OPEN_REQUESTS`].
    pub half_open_requests: Option<u32>,
    /// Response statuses that count as failures: codes (`503`) or classes (`5xx`). Default:
    /// [`defaults::breaker_failure_statuses`].
    pub failure_statuses: Option<Vec<StatusEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusEntry {
    Code(u16),
    Class(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    RoundRobin,
    Random,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Default: [`defaults::CONNECT_TIMEOUT`].
    pub connect: Option<Dur>,
    /// Default: [`defaults::RESPONSE_TIMEOUT`].
    pub response: Option<Dur>,
    /// Default: [`defaults::IDLE_TIMEOUT`].
    pub idle: Option<Dur>,
    /// Default: [`defaults::UPGRADED_IDLE_TIMEOUT`].
    pub upgraded_idle: Option<Dur>,
}

/// A route's `timeouts:`: each overrides the upstream's (the keep-alive pool's `idle` is the
/// upstream's alone).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTimeouts {
    pub response: Option<Dur>,
    pub upgraded_idle: Option<Dur>,
    /// All attempts together. Default: none.
    pub total: Option<Dur>,
}

/// `fallback: NAME` or `fallback: { upstream, on, methods, budget }`.
#[derive(Debug)]
pub enum Fallback {
    Upstream(String),
    Rules(FallbackRules),
}

impl<'de> Deserialize<'de> for Fallback {
    /// By hand, for the long form's own messages (see [`Split`]'s).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Fallback::Upstream(s)),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(Fallback::Rules)
                .map_err(|e| D::Error::custom(e.to_string())),
            other => Err(D::Error::custom(format!(
                "expected an upstream name or a mapping {{ upstream, on, methods, budget }}, found {}",
                kind(&other)
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackRules {
    pub upstream: String,
    /// Default: [`defaults::fallback_on`].
    pub on: Option<Vec<FallbackWhen>>,
    /// Default: [`defaults::FALLBACK_METHODS`].
    pub methods: Option<Vec<String>>,
    pub budget: Option<FallbackBudget>,
}

/// One entry of `fallback.on`: `unavailable`, `connect_error`, `timeout`, `reset`, or
/// `{ status: [503, 5xx] }`.
#[derive(Debug)]
pub enum FallbackWhen {
    Kind(String),
    Status(FallbackStatuses),
}

impl<'de> Deserialize<'de> for FallbackWhen {
    /// By hand, for a message that lists what is accepted (see [`Split`]'s).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(FallbackWhen::Kind(s)),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(FallbackWhen::Status)
                .map_err(|e| D::Error::custom(e.to_string())),
            other => Err(D::Error::custom(format!(
                "expected unavailable, connect_error, timeout, reset or {{ status: [502, 503] }}, found {}",
                kind(&other)
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackStatuses {
    pub status: Vec<StatusEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackBudget {
    /// Default: [`defaults::FALLBACK_BUDGET_RATIO`].
    pub ratio: Option<f64>,
    /// Default: [`defaults::FALLBACK_BUDGET_MIN_PER_SECOND`].
    pub min_per_second: Option<u32>,
    /// Default: [`defaults::FALLBACK_BUDGET_WINDOW`].
    pub window: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: Match,
    pub upstream: Option<String>,
    pub split: Option<Split>,
    pub sticky_by: Option<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub prefix_rewrite: Option<String>,
    /// Default: [`defaults::ROUTE_AUTH`].
    pub auth: Option<RouteAuth>,
    /// The upstream that serves the route when its own fails (see `docs/resilience.md`).
    pub fallback: Option<Fallback>,
    pub timeouts: Option<RouteTimeouts>,
    /// Names of `rate_limits.policies`; every one must admit the request.
    #[serde(default)]
    pub rate_limit: Vec<String>,
    /// A copy of the route's requests to a candidate upstream, whose answers are compared with
    /// the primary's (see `docs/shadow.md`).
    pub shadow: Option<Shadow>,
}

/// A route's `shadow:` block. Defaults: [`defaults`]' `SHADOW_*` items.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    pub upstream: String,
    pub sample: Option<f64>,
    pub methods: Option<Vec<String>>,
    /// `off` or `dry_run`.
    pub writes: Option<String>,
    pub max_body: Option<Size>,
    pub max_response: Option<Size>,
    pub timeout: Option<Dur>,
    pub max_in_flight: Option<usize>,
    #[serde(default)]
    pub compare: ShadowCompare,
    pub noise: Option<f64>,
    #[serde(default)]
    pub record: ShadowRecord,
}

/// `shadow.compare`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowCompare {
    /// `exact` or `class`.
    pub status: Option<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    /// `json`, `bytes` or `none`.
    pub body: Option<String>,
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub unordered: Vec<String>,
    /// `exact` or `decimal`.
    pub numbers: Option<String>,
}

/// `shadow.record`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRecord {
    pub mismatches: Option<usize>,
    #[serde(default)]
    pub redact: Vec<String>,
}

/// A size in bytes as users write it: `64KiB`, `1MiB`, `1.5 MB`, or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let expected = "a size such as `64KiB`, `1MiB` or a number of bytes";
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(Size)
                .ok_or_else(|| D::Error::custom(format!("expected {expected}, found {n}"))),
            serde_json::Value::String(s) => s
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| Size(b.as_u64()))
                .map_err(|_| D::Error::custom(format!("invalid size `{s}`: expected {expected}"))),
            other => Err(D::Error::custom(format!(
                "expected {expected}, found {}",
                kind(&other)
            ))),
        }
    }
}

/// `auth: none | optional | required | { roles: [...], scopes: [...] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteAuth {
    Mode(AuthMode),
    Rules(AuthRules),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    None,
    Optional,
    Required,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRules {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The `auth:` block: where keys come from and what a valid token looks like.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_url: String,
    pub algorithms: Vec<String>,
    /// Default: [`defaults::AUTH_LEEWAY`].
    pub leeway: Option<Dur>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// Default: [`defaults::JWKS_REFRESH_INTERVAL`].
    pub jwks_refresh_interval: Option<Dur>,
    /// Default: [`defaults::JWKS_MIN_REFRESH_INTERVAL`].
    pub jwks_min_refresh_interval: Option<Dur>,
    /// Default: [`defaults::JWKS_UNKNOWN_KID_COOLDOWN`].
    pub jwks_unknown_kid_cooldown: Option<Dur>,
    /// Default: [`defaults::JWKS_TIMEOUT`].
    pub jwks_timeout: Option<Dur>,
    /// Default: [`defaults::MAX_TOKEN_BYTES`].
    pub max_token_bytes: Option<usize>,
    /// Default: [`defaults::TOKEN_CACHE_SIZE`].
    pub token_cache_size: Option<usize>,
}

/// The `rate_limits:` block (see `docs/rate-limiting.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// `memory`: per process; `redis`: shared by every replica. Default:
    /// [`defaults::RATE_LIMIT_STORE`].
    pub store: Option<RateLimitStore>,
    pub redis_url: Option<String>,
    /// Multiplexed Redis connections per process. Default: [`defaults::REDIS_POOL_SIZE`].
    pub redis_pool_size: Option<usize>,
    /// Bound on one store call (and on a reconnect). Default:
    /// [`defaults::RATE_LIMIT_STORE_TIMEOUT`].
    pub store_timeout: Option<Dur>,
    /// What a request meets while the store is unreachable. Default:
    /// [`defaults::ON_STORE_ERROR`].
    pub on_store_error: Option<OnStoreError>,
    /// `RateLimit-Policy` / `RateLimit` on admitted responses. Default:
    /// [`defaults::RATE_LIMIT_HEADERS`].
    pub headers: Option<bool>,
    #[serde(default)]
    pub policies: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitStore {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Fall back to this process's in-memory limiter.
    Local,
    /// Admit.
    Allow,
    /// Refuse with 503.
    Deny,
}

/// One named policy: `{ key: claim.sub, limit: 100, per: 1s, burst: 50 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    pub key: String,
    pub limit: u32,
    pub per: Dur,
    /// Default: [`defaults::rate_limit_burst`] (the `limit`).
    pub burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub path_prefix: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSide {
    pub upstream: String,
    pub weight: u32,
}

/// `split: [ { upstream, weight }, ... ]` or `split: { to, percent, cohort, rest }`.
#[derive(Debug)]
pub enum Split {
    Sides(Vec<SplitSide>),
    Percent(PercentSplit),
}

impl<'de> Deserialize<'de> for Split {
    /// By hand, so a mistake in either form gets that form's message (`unknown field
    /// \`percnt\``), not an untagged enum's "did not match any variant".
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            v @ serde_json::Value::Array(_) => serde_json::from_value(v).map(Split::Sides),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v).map(Split::Percent),
            other => {
                return Err(D::Error::custom(format!(
                    "expected a list of {{ upstream, weight }} or a mapping {{ to, percent, cohort, rest }}, found {}",
                    kind(&other)
                )));
            }
        }
        .map_err(|e| D::Error::custom(e.to_string()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PercentSplit {
    /// The new service.
    pub to: String,
    /// 0 to 100, in hundredths at most.
    pub percent: f64,
    /// A name of `cohorts:`: whose users move first.
    pub cohort: String,
    /// Everyone else, and every request without the cohort's key.
    pub rest: String,
}

/// One entry of the top-level `cohorts:`: who moves first (see `docs/routing.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cohort {
    /// `claim.NAME`, `header.NAME`, `cookie.NAME` or `client_ip`.
    pub by: String,
    /// Used when the request has no `by` key.
    pub fallback_by: Option<String>,
    /// Default: the cohort's name.
    pub salt: Option<String>,
    pub pin: Option<Pin>,
}

/// `pin:` of a cohort: an HMAC-signed cookie that keeps a visitor's place.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Default: `gw_cohort_<cohort>`.
    pub cookie: Option<String>,
    /// Default: [`defaults::PIN_TTL`].
    pub ttl: Option<Dur>,
    /// A file of at least 32 bytes: the HMAC key (every replica needs the same).
    pub secret_file: String,
}

/// The `observability:` block (see `docs/observability.md`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observability {
    /// `service.name` of exported spans. Default: [`defaults::SERVICE_NAME`].
    pub service_name: Option<String>,
    pub access_log: Option<AccessLog>,
    pub otlp: Option<Otlp>,
}

/// `access_log: json | off`, or the full mapping.
#[derive(Debug)]
pub enum AccessLog {
    Short(AccessLogShort),
    Full(AccessLogFull),
}

impl<'de> Deserialize<'de> for AccessLog {
    /// By hand, for a message that says what is accepted (an untagged enum only says that
    /// nothing matched).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => match s.as_str() {
                "json" => Ok(AccessLog::Short(AccessLogShort::Json)),
                "off" => Ok(AccessLog::Short(AccessLogShort::Off)),
                other => Err(D::Error::custom(format!(
                    "unknown access log \"{other}\": use json, off or a mapping {{ format, output, sample_successful, buffer }}"
                ))),
            },
            v @ serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(AccessLog::Full)
                .map_err(|e| D::Error::custom(e.to_string())),
            other => Err(D::Error::custom(format!(
                "expected json, off or a mapping {{ format, output, sample_successful, buffer }}, found {}",
                kind(&other)
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogShort {
    Json,
    Off,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFull {
    /// Only `json` today.
    pub format: Option<AccessLogFormat>,
    /// `stdout`, `stderr`, or a file path (appended to). Default:
    /// [`defaults::ACCESS_LOG_OUTPUT`].
    pub output: Option<String>,
    /// Fraction of successful (< 400) requests logged, 0.0 to 1.0; errors are always logged.
    /// Default: [`defaults::ACCESS_LOG_SAMPLE_SUCCESSFUL`].
    pub sample_successful: Option<f64>,
    /// Lines waiting for the writer before new ones are dropped. Default:
    /// [`defaults::ACCESS_LOG_BUFFER`].
    pub buffer: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Otlp {
    /// `http://host:port`: the collector (gRPC: usually 4317; HTTP: 4318, `/v1/traces` is added).
    pub endpoint: String,
    /// `grpc` or `http` (HTTP/protobuf). Default: [`defaults::OTLP_PROTOCOL`].
    pub protocol: Option<OtlpProtocol>,
    /// Fraction of new traces sampled, 0.0 to 1.0; a caller's sampled flag wins. Default:
    /// [`defaults::OTLP_SAMPLE_RATIO`].
    pub sample_ratio: Option<f64>,
    /// One export attempt's deadline. Default: [`defaults::OTLP_TIMEOUT`].
    pub timeout: Option<Dur>,
    /// Finished spans waiting for export before new ones are dropped. Default:
    /// [`defaults::OTLP_QUEUE_SIZE`].
    pub queue_size: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    Grpc,
    Http,
}

/// Header values in YAML are often numbers (`x-version: 2`); accept any scalar as its text.
fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "header `{k}`: expected a string, found {}",
                kind(&other)
            ))),
        })
        .collect()
}

pub fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}
