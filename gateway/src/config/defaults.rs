//! Every default of the config file: what a key means when it is left out.
//!
//! Each item names the YAML field it is the default of (`NAME` stands for an upstream's or a
//! policy's name, `[]` for any item of a list). `docs/configuration.md` shows the same values.
//!
//! Two rules cover what has no item here: a block or key that switches something on (`tls`,
//! `auth`, `rate_limits`, `health_check`, `access_log`, `otlp`, a route's `fallback`,
//! `sticky_by`, `strip_prefix`, ...) is off when left out, and a left-out list or map is empty
//! (`trusted_proxies`, `claims_to_headers`, a route's `rate_limit`, ...).
//!
//! Bounds (`retries.attempts` at most 10, `health_check.interval` at least 100ms, ...) are not
//! defaults: they sit next to the check that enforces them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::file::RateLimitStore;
use super::model::{
    AccessLogOutput, EncodedSlashes, LoadBalancing, OnStoreError, OtlpProtocol, RouteAuth,
    StatusSet,
};

// ---- listeners and server -------------------------------------------------------------------

/// `listen`.
pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));
/// `admin.listen`, when there is no `admin:` block.
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9901));
/// `server.drain_timeout`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// `server.reload_debounce`.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(200);
/// `server.upstream_keepalive_pool`.
pub const UPSTREAM_KEEPALIVE_POOL: usize = 128;
/// `path_normalization.encoded_slashes`.
pub const ENCODED_SLASHES: EncodedSlashes = EncodedSlashes::Reject;

/// `server.threads`: the number of CPUs (1 where that is unknown).
pub fn server_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

// ---- auth -----------------------------------------------------------------------------------

/// `auth.leeway`.
pub const AUTH_LEEWAY: Duration = Duration::from_secs(30);
/// `auth.jwks_refresh_interval`.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// `auth.jwks_min_refresh_interval`.
pub const JWKS_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// `auth.jwks_unknown_kid_cooldown`.
pub const JWKS_UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(10);
/// `auth.jwks_timeout`.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// `auth.max_token_bytes`.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// `auth.token_cache_size`.
pub const TOKEN_CACHE_SIZE: usize = 10_000;
/// `routes[].auth`.
pub const ROUTE_AUTH: RouteAuth = RouteAuth::None;

// ---- upstreams ------------------------------------------------------------------------------

/// `upstreams.NAME.load_balancing`.
pub const LOAD_BALANCING: LoadBalancing = LoadBalancing::RoundRobin;
/// `upstreams.NAME.timeouts.connect`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// `upstreams.NAME.timeouts.response`.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// `upstreams.NAME.timeouts.idle`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `upstreams.NAME.retries.attempts`.
pub const RETRY_ATTEMPTS: u32 = 1;
/// `upstreams.NAME.retries.backoff`.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(25);
/// `upstreams.NAME.retries.max_backoff`.
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_millis(250);
/// `upstreams.NAME.retries.budget.ratio`.
pub const RETRY_BUDGET_RATIO: f64 = 0.2;
/// `upstreams.NAME.retries.budget.min_retries_per_second`.
pub const RETRY_BUDGET_MIN_RETRIES_PER_SECOND: u32 = 10;
/// `upstreams.NAME.retries.budget.window`.
pub const RETRY_BUDGET_WINDOW: Duration = Duration::from_secs(10);
/// `upstreams.NAME.health_check.interval`.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// `upstreams.NAME.health_check.timeout`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// `upstreams.NAME.health_check.healthy_threshold`.
pub const HEALTHY_THRESHOLD: u32 = 2;
/// `upstreams.NAME.health_check.unhealthy_threshold`.
pub const UNHEALTHY_THRESHOLD: u32 = 3;
/// `upstreams.NAME.circuit_breaker.enabled`: every target has a breaker unless switched off.
pub const BREAKER_ENABLED: bool = true;
/// `upstreams.NAME.circuit_breaker.failure_ratio`.
pub const BREAKER_FAILURE_RATIO: f64 = 0.5;
/// `upstreams.NAME.circuit_breaker.min_requests`.
pub const BREAKER_MIN_REQUESTS: u32 = 20;
/// `upstreams.NAME.circuit_breaker.window`.
pub const BREAKER_WINDOW: Duration = Duration::from_secs(10);
/// `upstreams.NAME.circuit_breaker.open_for`.
pub const BREAKER_OPEN_FOR: Duration = Duration::from_secs(10);
/// `upstreams.NAME.circuit_breaker.half_open_requests`.
pub const BREAKER_HALF_OPEN_REQUESTS: u32 = 3;

/// `upstreams.NAME.circuit_breaker.max_open_for`: 8 doublings' worth of the configured
/// `open_for`.
pub fn breaker_max_open_for(open_for: Duration) -> Duration {
    open_for.saturating_mul(8)
}

/// `upstreams.NAME.circuit_breaker.failure_statuses`: `[5xx]`.
pub fn breaker_failure_statuses() -> StatusSet {
    StatusSet::server_errors()
}

// ---- rate limits ----------------------------------------------------------------------------

/// `rate_limits.store`.
pub const RATE_LIMIT_STORE: RateLimitStore = RateLimitStore::Memory;
/// `rate_limits.redis_pool_size`.
pub const REDIS_POOL_SIZE: usize = 4;
/// `rate_limits.store_timeout`.
pub const RATE_LIMIT_STORE_TIMEOUT: Duration = Duration::from_millis(50);
/// `rate_limits.on_store_error`.
pub const ON_STORE_ERROR: OnStoreError = OnStoreError::Local;
/// `rate_limits.headers`.
pub const RATE_LIMIT_HEADERS: bool = true;

/// `rate_limits.policies.NAME.burst`: the policy's `limit`.
pub const fn rate_limit_burst(limit: u32) -> u32 {
    limit
}

// ---- observability --------------------------------------------------------------------------

/// `observability.service_name`.
pub const SERVICE_NAME: &str = "gateway";
/// `observability.access_log.output` (also what `access_log: json` writes to).
pub const ACCESS_LOG_OUTPUT: AccessLogOutput = AccessLogOutput::Stdout;
/// `observability.access_log.sample_successful` (also what `access_log: json` samples).
pub const ACCESS_LOG_SAMPLE_SUCCESSFUL: f64 = 1.0;
/// `observability.access_log.buffer` (also what `access_log: json` buffers).
pub const ACCESS_LOG_BUFFER: usize = 8192;
/// `observability.otlp.protocol`.
pub const OTLP_PROTOCOL: OtlpProtocol = OtlpProtocol::Grpc;
/// `observability.otlp.sample_ratio`.
pub const OTLP_SAMPLE_RATIO: f64 = 1.0;
/// `observability.otlp.timeout`.
pub const OTLP_TIMEOUT: Duration = Duration::from_secs(5);
/// `observability.otlp.queue_size`.
pub const OTLP_QUEUE_SIZE: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerConfig;
    use crate::retry_budget::BudgetConfig;

    /// The runtime types keep `Default` impls of their own (their tests use them): they must
    /// say what the config says.
    #[test]
    fn the_runtime_defaults_are_the_config_defaults() {
        assert_eq!(
            BreakerConfig::default(),
            BreakerConfig {
                failure_ratio: BREAKER_FAILURE_RATIO,
                min_requests: BREAKER_MIN_REQUESTS,
                window: BREAKER_WINDOW,
                open_for: BREAKER_OPEN_FOR,
                max_open_for: breaker_max_open_for(BREAKER_OPEN_FOR),
                half_open_requests: BREAKER_HALF_OPEN_REQUESTS,
            }
        );
        assert_eq!(
            BudgetConfig::default(),
            BudgetConfig {
                ratio: RETRY_BUDGET_RATIO,
                min_retries_per_second: RETRY_BUDGET_MIN_RETRIES_PER_SECOND,
                window: RETRY_BUDGET_WINDOW,
            }
        );
    }

    #[test]
    fn the_addresses_are_the_documented_ones() {
        assert_eq!(LISTEN.to_string(), "0.0.0.0:8080");
        assert_eq!(ADMIN_LISTEN.to_string(), "127.0.0.1:9901");
    }
}
