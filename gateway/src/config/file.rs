//! The YAML file as written by users: plain serde structs, every one `deny_unknown_fields`
//! (serde would otherwise ignore a typo such as `path_prefx` silently).
//!
//! Nothing here is trusted: [`super::model`] turns these into the runtime model, and every
//! check that can fail lives there and names the field path.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

pub use crate::path::EncodedSlashes;

use super::duration::Dur;

/// The top level. Each section is deserialised on its own (see [`super::load`]), so a broken
/// route does not hide a broken upstream.
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
    /// Worker threads for the proxy. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// How long SIGTERM waits for in-flight requests. Default 10s.
    pub drain_timeout: Option<Dur>,
    /// Quiet time after a file event before the reload runs. Default 200ms.
    pub reload_debounce: Option<Dur>,
    /// Idle upstream connections kept per process. Default 128.
    pub upstream_keepalive_pool: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathNormalization {
    /// `reject` (default) answers 400 to a path with `%2F` or `%5C`; `keep` forwards them
    /// encoded and matches routes on the encoded form.
    pub encoded_slashes: Option<EncodedSlashes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub targets: Vec<String>,
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
    /// Retries after the first attempt. Default 1; 0 turns retries off.
    pub attempts: Option<u32>,
    /// Wait before the first retry; doubles per retry. Default 25ms.
    pub backoff: Option<Dur>,
    /// Cap of the doubled wait. Default 250ms.
    pub max_backoff: Option<Dur>,
    pub budget: Option<RetryBudget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    pub ratio: Option<f64>,
    pub min_retries_per_second: Option<u32>,
    pub window: Option<Dur>,
}

/// `health_check:` of an upstream: an HTTP GET to every target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    /// `Host` header of the check. Default: the target's `host:port`.
    pub host: Option<String>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

/// `circuit_breaker:` of an upstream (one breaker per target).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    pub enabled: Option<bool>,
    pub failure_ratio: Option<f64>,
    pub min_requests: Option<u32>,
    pub window: Option<Dur>,
    pub open_for: Option<Dur>,
    pub max_open_for: Option<Dur>,
    pub half_open_requests: Option<u32>,
    /// Response statuses that count as failures: codes (`503`) or classes (`5xx`). Default
    /// `[5xx]`.
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
    pub connect: Option<Dur>,
    pub response: Option<Dur>,
    pub idle: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: Match,
    pub upstream: Option<String>,
    pub split: Option<Vec<SplitSide>>,
    pub sticky_by: Option<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub prefix_rewrite: Option<String>,
    pub auth: Option<RouteAuth>,
    /// The upstream that serves the route while every target of its own upstream is open or
    /// unhealthy.
    pub fallback: Option<String>,
    /// Names of `rate_limits.policies`; every one must admit the request.
    #[serde(default)]
    pub rate_limit: Vec<String>,
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
    pub leeway: Option<Dur>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    pub jwks_refresh_interval: Option<Dur>,
    pub jwks_min_refresh_interval: Option<Dur>,
    pub jwks_unknown_kid_cooldown: Option<Dur>,
    pub jwks_timeout: Option<Dur>,
    pub max_token_bytes: Option<usize>,
    pub token_cache_size: Option<usize>,
}

/// The `rate_limits:` block (see `docs/rate-limiting.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// `memory` (default): per process; `redis`: shared by every replica.
    pub store: Option<RateLimitStore>,
    pub redis_url: Option<String>,
    /// Multiplexed Redis connections per process. Default 4.
    pub redis_pool_size: Option<usize>,
    /// Bound on one store call (and on a reconnect). Default 50ms.
    pub store_timeout: Option<Dur>,
    /// What a request meets while the store is unreachable. Default `local`.
    pub on_store_error: Option<OnStoreError>,
    /// `RateLimit-Policy` / `RateLimit` on admitted responses. Default true.
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

/// The `observability:` block (see `docs/observability.md`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observability {
    /// `service.name` of exported spans. Default `gateway`.
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
    /// `stdout` (default), `stderr`, or a file path (appended to).
    pub output: Option<String>,
    /// Fraction of successful (< 400) requests logged, 0.0 to 1.0. Default 1.0. Errors are
    /// always logged.
    pub sample_successful: Option<f64>,
    /// Lines waiting for the writer before new ones are dropped. Default 8192.
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
    /// `grpc` (default) or `http` (HTTP/protobuf).
    pub protocol: Option<OtlpProtocol>,
    /// Fraction of new traces sampled, 0.0 to 1.0 (default 1.0); a caller's sampled flag wins.
    pub sample_ratio: Option<f64>,
    /// One export attempt's deadline. Default 5s.
    pub timeout: Option<Dur>,
    /// Finished spans waiting for export before new ones are dropped. Default 4096.
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
