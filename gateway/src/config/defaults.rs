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
//! Every number and duration of the file also has a [`Range`] here, next to its default (the
//! `_RANGE` items), which validation enforces with one helper. A range is what real use needs
//! (durations up to hours or days, counts well above any real deployment), and no more: nothing
//! inside it can overflow a timer (an `Instant` plus a duration), a counter or an allocation sized
//! by it. `docs/configuration.md` lists the same ranges (a test compares them). Bounds that relate
//! two fields (`health_check.timeout` at most its `interval`, `max_backoff` at least `backoff`, a
//! policy's rate and refill time) sit next to the check that enforces them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::file::RateLimitStore;
use super::model::{
    AccessLogOutput, EncodedSlashes, FallbackOn, LoadBalancing, OnStoreError, OtlpProtocol,
    RouteAuth, StatusSet,
};

/// The values a number or a duration of the file may take: `min` to `max`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range<T> {
    pub min: T,
    pub max: T,
}

impl<T: PartialOrd + Copy> Range<T> {
    pub const fn new(min: T, max: T) -> Self {
        Range { min, max }
    }

    pub fn contains(&self, v: T) -> bool {
        self.min <= v && v <= self.max
    }
}

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// As `humantime` counts it (`1y`, `1year`): 365.25 days.
const YEAR: Duration = Duration::from_secs(31_557_600);

// ---- listeners and server -------------------------------------------------------------------

/// `listen`.
pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));
/// `admin.listen`, when there is no `admin:` block.
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9901));
/// `server.drain_timeout`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DRAIN_TIMEOUT_RANGE: Range<Duration> = Range::new(Duration::ZERO, HOUR);
/// `server.reload_debounce`.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(200);
pub const RELOAD_DEBOUNCE_RANGE: Range<Duration> = Range::new(Duration::ZERO, HOUR);
/// `server.upstream_keepalive_pool`.
pub const UPSTREAM_KEEPALIVE_POOL: usize = 128;
/// Per worker thread (pingora sizes its pool as this times `threads`, up front).
pub const UPSTREAM_KEEPALIVE_POOL_RANGE: Range<usize> = Range::new(0, 1024);
/// `path_normalization.encoded_slashes`.
pub const ENCODED_SLASHES: EncodedSlashes = EncodedSlashes::Reject;

/// `server.threads`: the number of CPUs (1 where that is unknown), within the range.
pub fn server_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(SERVER_THREADS_RANGE.max)
}
pub const SERVER_THREADS_RANGE: Range<usize> = Range::new(1, 1024);

// ---- auth -----------------------------------------------------------------------------------

/// `auth.leeway`.
pub const AUTH_LEEWAY: Duration = Duration::from_secs(30);
pub const AUTH_LEEWAY_RANGE: Range<Duration> = Range::new(Duration::ZERO, HOUR);
/// `auth.jwks_refresh_interval`.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
pub const JWKS_REFRESH_INTERVAL_RANGE: Range<Duration> = Range::new(SECOND, DAY);
/// `auth.jwks_min_refresh_interval`.
pub const JWKS_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
pub const JWKS_MIN_REFRESH_INTERVAL_RANGE: Range<Duration> = Range::new(Duration::ZERO, DAY);
/// `auth.jwks_unknown_kid_cooldown`.
pub const JWKS_UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(10);
pub const JWKS_UNKNOWN_KID_COOLDOWN_RANGE: Range<Duration> = Range::new(Duration::ZERO, DAY);
/// `auth.jwks_timeout`.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Not 0: a fetch that may take no time never succeeds, and every token route would answer 503.
pub const JWKS_TIMEOUT_RANGE: Range<Duration> = Range::new(MS, Duration::from_secs(300));
/// `auth.max_token_bytes`.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
pub const MAX_TOKEN_BYTES_RANGE: Range<usize> = Range::new(256, 64 * 1024);
/// `auth.token_cache_size`.
pub const TOKEN_CACHE_SIZE: usize = 10_000;
/// 0 keeps one entry (the cache's least).
pub const TOKEN_CACHE_SIZE_RANGE: Range<usize> = Range::new(0, 1_000_000);
/// `routes[].auth`.
pub const ROUTE_AUTH: RouteAuth = RouteAuth::None;

// ---- upstreams ------------------------------------------------------------------------------

/// `upstreams.NAME.load_balancing`.
pub const LOAD_BALANCING: LoadBalancing = LoadBalancing::RoundRobin;
/// `upstreams.NAME.timeouts.connect`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const CONNECT_TIMEOUT_RANGE: Range<Duration> = Range::new(MS, Duration::from_secs(300));
/// `upstreams.NAME.timeouts.response`.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
pub const RESPONSE_TIMEOUT_RANGE: Range<Duration> = Range::new(MS, DAY);
/// `upstreams.NAME.timeouts.idle`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const IDLE_TIMEOUT_RANGE: Range<Duration> = Range::new(Duration::ZERO, DAY);
/// `upstreams.NAME.timeouts.upgraded_idle` (and a route's): how long an upgraded connection
/// (WebSocket) may stay silent.
pub const UPGRADED_IDLE_TIMEOUT: Duration = HOUR;
pub const UPGRADED_IDLE_TIMEOUT_RANGE: Range<Duration> =
    Range::new(SECOND, Duration::from_secs(7 * 24 * 3600));
/// `routes[].timeouts.total`: no default (each attempt has its own timeouts).
pub const TOTAL_TIMEOUT_RANGE: Range<Duration> = Range::new(MS, DAY);
/// `upstreams.NAME.retries.attempts`.
pub const RETRY_ATTEMPTS: u32 = 1;
/// More retries per request multiply an outage instead of riding it out.
pub const RETRY_ATTEMPTS_RANGE: Range<u32> = Range::new(0, 10);
/// `upstreams.NAME.retries.backoff`.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(25);
pub const RETRY_BACKOFF_RANGE: Range<Duration> = Range::new(Duration::ZERO, MINUTE);
/// `upstreams.NAME.retries.max_backoff`.
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_millis(250);
pub const RETRY_MAX_BACKOFF_RANGE: Range<Duration> =
    Range::new(Duration::ZERO, Duration::from_secs(600));
/// `upstreams.NAME.retries.budget.ratio`.
pub const RETRY_BUDGET_RATIO: f64 = 0.2;
/// `upstreams.NAME.retries.budget.min_retries_per_second`.
pub const RETRY_BUDGET_MIN_RETRIES_PER_SECOND: u32 = 10;
pub const RETRY_BUDGET_MIN_RETRIES_PER_SECOND_RANGE: Range<u32> = Range::new(0, 100_000);
/// `upstreams.NAME.retries.budget.window`.
pub const RETRY_BUDGET_WINDOW: Duration = Duration::from_secs(10);
pub const RETRY_BUDGET_WINDOW_RANGE: Range<Duration> = Range::new(MS, HOUR);
/// `upstreams.NAME.health_check.interval`.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Checks more often than 100ms would be load, not monitoring.
pub const HEALTH_INTERVAL_RANGE: Range<Duration> = Range::new(Duration::from_millis(100), DAY);
/// `upstreams.NAME.health_check.timeout`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Also at most the `interval`.
pub const HEALTH_TIMEOUT_RANGE: Range<Duration> = Range::new(MS, DAY);
/// `upstreams.NAME.health_check.healthy_threshold`.
pub const HEALTHY_THRESHOLD: u32 = 2;
pub const HEALTHY_THRESHOLD_RANGE: Range<u32> = Range::new(1, 10_000);
/// `upstreams.NAME.health_check.unhealthy_threshold`.
pub const UNHEALTHY_THRESHOLD: u32 = 3;
pub const UNHEALTHY_THRESHOLD_RANGE: Range<u32> = Range::new(1, 10_000);
/// `upstreams.NAME.circuit_breaker.enabled`: every target has a breaker unless switched off.
pub const BREAKER_ENABLED: bool = true;
/// `upstreams.NAME.circuit_breaker.failure_ratio`.
pub const BREAKER_FAILURE_RATIO: f64 = 0.5;
/// `upstreams.NAME.circuit_breaker.min_requests`.
pub const BREAKER_MIN_REQUESTS: u32 = 20;
pub const BREAKER_MIN_REQUESTS_RANGE: Range<u32> = Range::new(1, 1_000_000);
/// `upstreams.NAME.circuit_breaker.window`.
pub const BREAKER_WINDOW: Duration = Duration::from_secs(10);
pub const BREAKER_WINDOW_RANGE: Range<Duration> = Range::new(MS, HOUR);
/// `upstreams.NAME.circuit_breaker.open_for`.
pub const BREAKER_OPEN_FOR: Duration = Duration::from_secs(10);
pub const BREAKER_OPEN_FOR_RANGE: Range<Duration> = Range::new(MS, DAY);
/// `upstreams.NAME.circuit_breaker.half_open_requests`.
pub const BREAKER_HALF_OPEN_REQUESTS: u32 = 3;
pub const BREAKER_HALF_OPEN_REQUESTS_RANGE: Range<u32> = Range::new(1, 1000);
/// `upstreams.NAME.circuit_breaker.max_open_for` (also at least `open_for`).
pub const BREAKER_MAX_OPEN_FOR_RANGE: Range<Duration> = Range::new(MS, DAY);

/// `upstreams.NAME.circuit_breaker.max_open_for`: 8 doublings' worth of the configured
/// `open_for`, within its range (and never below `open_for`).
pub fn breaker_max_open_for(open_for: Duration) -> Duration {
    open_for
        .saturating_mul(8)
        .min(BREAKER_MAX_OPEN_FOR_RANGE.max)
        .max(open_for)
}

/// `upstreams.NAME.circuit_breaker.failure_statuses`: `[5xx]`.
pub fn breaker_failure_statuses() -> StatusSet {
    StatusSet::server_errors()
}

// ---- cohorts ----------------------------------------------------------------------------------

/// `cohorts.NAME.pin.ttl`.
pub const PIN_TTL: Duration = DAY;
pub const PIN_TTL_RANGE: Range<Duration> = Range::new(MINUTE, YEAR);
/// The shortest `cohorts.NAME.pin.secret_file` (bytes): an HMAC-SHA256 key of full strength.
pub const PIN_SECRET_MIN_BYTES: usize = 32;
/// The longest: a key, not a file of anything.
pub const PIN_SECRET_MAX_BYTES: usize = 4096;

/// `cohorts.NAME.pin.cookie`: `gw_cohort_<name>`.
pub fn pin_cookie(cohort: &str) -> String {
    format!("gw_cohort_{cohort}")
}

// ---- fallback -------------------------------------------------------------------------------

/// `routes[].fallback.on` (and the whole meaning of `fallback: NAME`): every failure that
/// leaves no answer, no failure answer.
pub fn fallback_on() -> FallbackOn {
    FallbackOn {
        unavailable: true,
        connect_error: true,
        timeout: true,
        reset: true,
        statuses: StatusSet::empty(),
    }
}
/// `routes[].fallback.methods`: the methods a replay may repeat (RFC 9110's idempotent ones but
/// TRACE). POST and PATCH only with an `Idempotency-Key`.
pub const FALLBACK_METHODS: [http::Method; 5] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::OPTIONS,
    http::Method::PUT,
    http::Method::DELETE,
];
/// `routes[].fallback.budget.ratio`: replays may add 10% of the route's requests.
pub const FALLBACK_BUDGET_RATIO: f64 = 0.1;
/// `routes[].fallback.budget.min_per_second`.
pub const FALLBACK_BUDGET_MIN_PER_SECOND: u32 = 10;
pub const FALLBACK_BUDGET_MIN_PER_SECOND_RANGE: Range<u32> = Range::new(0, 100_000);
/// `routes[].fallback.budget.window`.
pub const FALLBACK_BUDGET_WINDOW: Duration = Duration::from_secs(10);
pub const FALLBACK_BUDGET_WINDOW_RANGE: Range<Duration> = Range::new(MS, HOUR);

// ---- shadow traffic -------------------------------------------------------------------------

/// `routes[].shadow.sample`: every eligible request is copied.
pub const SHADOW_SAMPLE: f64 = 1.0;
/// `routes[].shadow.methods`: reads only. A write (any other method but OPTIONS) is copied
/// only under `writes: dry_run`.
pub const SHADOW_METHODS: [http::Method; 2] = [http::Method::GET, http::Method::HEAD];
/// `routes[].shadow.max_body`: larger request bodies are not copied.
pub const SHADOW_MAX_BODY: u64 = 64 * 1024;
pub const SHADOW_MAX_BODY_RANGE: Range<u64> = Range::new(0, 16 * 1024 * 1024);
/// `routes[].shadow.max_response`: larger answers (either side) are not compared.
pub const SHADOW_MAX_RESPONSE: u64 = 1024 * 1024;
pub const SHADOW_MAX_RESPONSE_RANGE: Range<u64> = Range::new(0, 64 * 1024 * 1024);
/// `routes[].shadow.timeout`: the copy's whole deadline (connect, answer and body).
pub const SHADOW_TIMEOUT: Duration = Duration::from_secs(2);
pub const SHADOW_TIMEOUT_RANGE: Range<Duration> = Range::new(MS, Duration::from_secs(300));
/// `routes[].shadow.max_in_flight`: copies under way at once, per route.
pub const SHADOW_MAX_IN_FLIGHT: usize = 64;
pub const SHADOW_MAX_IN_FLIGHT_RANGE: Range<usize> = Range::new(1, 100_000);
/// `routes[].shadow.noise`: no second call to the primary.
pub const SHADOW_NOISE: f64 = 0.0;
/// `routes[].shadow.record.mismatches`: the recent mismatches kept for the admin view.
pub const SHADOW_RECORD_MISMATCHES: usize = 200;
pub const SHADOW_RECORD_MISMATCHES_RANGE: Range<usize> = Range::new(0, 10_000);

// ---- rate limits ----------------------------------------------------------------------------

/// `rate_limits.store`.
pub const RATE_LIMIT_STORE: RateLimitStore = RateLimitStore::Memory;
/// `rate_limits.redis_pool_size`.
pub const REDIS_POOL_SIZE: usize = 4;
pub const REDIS_POOL_SIZE_RANGE: Range<usize> = Range::new(1, 256);
/// `rate_limits.store_timeout`.
pub const RATE_LIMIT_STORE_TIMEOUT: Duration = Duration::from_millis(50);
pub const RATE_LIMIT_STORE_TIMEOUT_RANGE: Range<Duration> = Range::new(MS, MINUTE);
/// `rate_limits.on_store_error`.
pub const ON_STORE_ERROR: OnStoreError = OnStoreError::Local;
/// `rate_limits.headers`.
pub const RATE_LIMIT_HEADERS: bool = true;

/// `rate_limits.policies.NAME.burst`: the policy's `limit`.
pub const fn rate_limit_burst(limit: u32) -> u32 {
    limit
}
/// `rate_limits.policies.NAME.limit` (no default). Also: at most 1,000,000 per second.
pub const RATE_LIMIT_LIMIT_RANGE: Range<u32> = Range::new(1, 1_000_000_000);
/// `rate_limits.policies.NAME.per` (no default).
pub const RATE_LIMIT_PER_RANGE: Range<Duration> = Range::new(MS, YEAR);
/// `rate_limits.policies.NAME.burst`. Also: an empty bucket refills within
/// [`RATE_LIMIT_MAX_REFILL`].
pub const RATE_LIMIT_BURST_RANGE: Range<u32> = Range::new(1, 1_000_000_000);
/// The longest time an empty bucket takes to refill (`burst × per / limit`): the limiters
/// count it in nanoseconds (u64, 584 years).
pub const RATE_LIMIT_MAX_REFILL: Duration = YEAR;

// ---- routes ---------------------------------------------------------------------------------

/// `routes[].split[].weight` (no default): relative, 0 never picked.
pub const SPLIT_WEIGHT_RANGE: Range<u32> = Range::new(0, 1_000_000);

// ---- observability --------------------------------------------------------------------------

/// `observability.service_name`.
pub const SERVICE_NAME: &str = "gateway";
/// `observability.access_log.output` (also what `access_log: json` writes to).
pub const ACCESS_LOG_OUTPUT: AccessLogOutput = AccessLogOutput::Stdout;
/// `observability.access_log.sample_successful` (also what `access_log: json` samples).
pub const ACCESS_LOG_SAMPLE_SUCCESSFUL: f64 = 1.0;
/// `observability.access_log.buffer` (also what `access_log: json` buffers).
pub const ACCESS_LOG_BUFFER: usize = 8192;
/// The writer's queue is allocated at this size up front.
pub const ACCESS_LOG_BUFFER_RANGE: Range<usize> = Range::new(1, 1_000_000);
/// `observability.otlp.protocol`.
pub const OTLP_PROTOCOL: OtlpProtocol = OtlpProtocol::Grpc;
/// `observability.otlp.sample_ratio`.
pub const OTLP_SAMPLE_RATIO: f64 = 1.0;
/// `observability.otlp.timeout`.
pub const OTLP_TIMEOUT: Duration = Duration::from_secs(5);
pub const OTLP_TIMEOUT_RANGE: Range<Duration> = Range::new(MS, Duration::from_secs(300));
/// `observability.otlp.queue_size`.
pub const OTLP_QUEUE_SIZE: usize = 4096;
pub const OTLP_QUEUE_SIZE_RANGE: Range<usize> = Range::new(1, 1_000_000);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerConfig;
    use crate::config::problem::Quantity;
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

    /// Every range, as `docs/configuration.md` lists it.
    fn ranges() -> Vec<(&'static str, Quantity, Quantity)> {
        fn row<T: Into<Quantity>>(
            field: &'static str,
            r: Range<T>,
        ) -> (&'static str, Quantity, Quantity) {
            (field, r.min.into(), r.max.into())
        }
        vec![
            row("server.threads", SERVER_THREADS_RANGE),
            row("server.drain_timeout", DRAIN_TIMEOUT_RANGE),
            row("server.reload_debounce", RELOAD_DEBOUNCE_RANGE),
            row(
                "server.upstream_keepalive_pool",
                UPSTREAM_KEEPALIVE_POOL_RANGE,
            ),
            row("auth.leeway", AUTH_LEEWAY_RANGE),
            row("auth.jwks_refresh_interval", JWKS_REFRESH_INTERVAL_RANGE),
            row(
                "auth.jwks_min_refresh_interval",
                JWKS_MIN_REFRESH_INTERVAL_RANGE,
            ),
            row(
                "auth.jwks_unknown_kid_cooldown",
                JWKS_UNKNOWN_KID_COOLDOWN_RANGE,
            ),
            row("auth.jwks_timeout", JWKS_TIMEOUT_RANGE),
            row("auth.max_token_bytes", MAX_TOKEN_BYTES_RANGE),
            row("auth.token_cache_size", TOKEN_CACHE_SIZE_RANGE),
            row("upstreams.NAME.timeouts.connect", CONNECT_TIMEOUT_RANGE),
            row("upstreams.NAME.timeouts.response", RESPONSE_TIMEOUT_RANGE),
            row("upstreams.NAME.timeouts.idle", IDLE_TIMEOUT_RANGE),
            row(
                "upstreams.NAME.timeouts.upgraded_idle",
                UPGRADED_IDLE_TIMEOUT_RANGE,
            ),
            row("upstreams.NAME.retries.attempts", RETRY_ATTEMPTS_RANGE),
            row("upstreams.NAME.retries.backoff", RETRY_BACKOFF_RANGE),
            row(
                "upstreams.NAME.retries.max_backoff",
                RETRY_MAX_BACKOFF_RANGE,
            ),
            row(
                "upstreams.NAME.retries.budget.min_retries_per_second",
                RETRY_BUDGET_MIN_RETRIES_PER_SECOND_RANGE,
            ),
            row(
                "upstreams.NAME.retries.budget.window",
                RETRY_BUDGET_WINDOW_RANGE,
            ),
            row(
                "upstreams.NAME.health_check.interval",
                HEALTH_INTERVAL_RANGE,
            ),
            row("upstreams.NAME.health_check.timeout", HEALTH_TIMEOUT_RANGE),
            row(
                "upstreams.NAME.health_check.healthy_threshold",
                HEALTHY_THRESHOLD_RANGE,
            ),
            row(
                "upstreams.NAME.health_check.unhealthy_threshold",
                UNHEALTHY_THRESHOLD_RANGE,
            ),
            row(
                "upstreams.NAME.circuit_breaker.min_requests",
                BREAKER_MIN_REQUESTS_RANGE,
            ),
            row(
                "upstreams.NAME.circuit_breaker.window",
                BREAKER_WINDOW_RANGE,
            ),
            row(
                "upstreams.NAME.circuit_breaker.open_for",
                BREAKER_OPEN_FOR_RANGE,
            ),
            row(
                "upstreams.NAME.circuit_breaker.max_open_for",
                BREAKER_MAX_OPEN_FOR_RANGE,
            ),
            row(
                "upstreams.NAME.circuit_breaker.half_open_requests",
                BREAKER_HALF_OPEN_REQUESTS_RANGE,
            ),
            row("rate_limits.redis_pool_size", REDIS_POOL_SIZE_RANGE),
            row("rate_limits.store_timeout", RATE_LIMIT_STORE_TIMEOUT_RANGE),
            row("rate_limits.policies.NAME.limit", RATE_LIMIT_LIMIT_RANGE),
            row("rate_limits.policies.NAME.per", RATE_LIMIT_PER_RANGE),
            row("rate_limits.policies.NAME.burst", RATE_LIMIT_BURST_RANGE),
            row("routes[].split[].weight", SPLIT_WEIGHT_RANGE),
            row("cohorts.NAME.pin.ttl", PIN_TTL_RANGE),
            row("routes[].timeouts.response", RESPONSE_TIMEOUT_RANGE),
            row(
                "routes[].timeouts.upgraded_idle",
                UPGRADED_IDLE_TIMEOUT_RANGE,
            ),
            row("routes[].timeouts.total", TOTAL_TIMEOUT_RANGE),
            row(
                "routes[].fallback.budget.min_per_second",
                FALLBACK_BUDGET_MIN_PER_SECOND_RANGE,
            ),
            row(
                "routes[].fallback.budget.window",
                FALLBACK_BUDGET_WINDOW_RANGE,
            ),
            row("routes[].shadow.max_body", SHADOW_MAX_BODY_RANGE),
            row("routes[].shadow.max_response", SHADOW_MAX_RESPONSE_RANGE),
            row("routes[].shadow.timeout", SHADOW_TIMEOUT_RANGE),
            row("routes[].shadow.max_in_flight", SHADOW_MAX_IN_FLIGHT_RANGE),
            row(
                "routes[].shadow.record.mismatches",
                SHADOW_RECORD_MISMATCHES_RANGE,
            ),
            row("observability.access_log.buffer", ACCESS_LOG_BUFFER_RANGE),
            row("observability.otlp.timeout", OTLP_TIMEOUT_RANGE),
            row("observability.otlp.queue_size", OTLP_QUEUE_SIZE_RANGE),
        ]
    }

    #[test]
    fn the_docs_list_every_range() {
        let docs = include_str!("../../../docs/configuration.md");
        let missing: Vec<String> = ranges()
            .into_iter()
            .map(|(field, min, max)| format!("| `{field}` | {min} | {max} |"))
            .filter(|row| !docs.contains(row.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/configuration.md lacks these rows:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn every_default_is_in_its_range() {
        let d = |v: Duration, r: Range<Duration>| assert!(r.contains(v), "{v:?} {r:?}");
        let n = |v: u64, r: Range<u64>| assert!(r.contains(v), "{v} {r:?}");
        let u = |r: Range<usize>| Range::new(r.min as u64, r.max as u64);
        let w = |r: Range<u32>| Range::new(u64::from(r.min), u64::from(r.max));
        n(server_threads() as u64, u(SERVER_THREADS_RANGE));
        d(DRAIN_TIMEOUT, DRAIN_TIMEOUT_RANGE);
        d(RELOAD_DEBOUNCE, RELOAD_DEBOUNCE_RANGE);
        n(
            UPSTREAM_KEEPALIVE_POOL as u64,
            u(UPSTREAM_KEEPALIVE_POOL_RANGE),
        );
        d(AUTH_LEEWAY, AUTH_LEEWAY_RANGE);
        d(JWKS_REFRESH_INTERVAL, JWKS_REFRESH_INTERVAL_RANGE);
        d(JWKS_MIN_REFRESH_INTERVAL, JWKS_MIN_REFRESH_INTERVAL_RANGE);
        d(JWKS_UNKNOWN_KID_COOLDOWN, JWKS_UNKNOWN_KID_COOLDOWN_RANGE);
        d(JWKS_TIMEOUT, JWKS_TIMEOUT_RANGE);
        n(MAX_TOKEN_BYTES as u64, u(MAX_TOKEN_BYTES_RANGE));
        n(TOKEN_CACHE_SIZE as u64, u(TOKEN_CACHE_SIZE_RANGE));
        d(CONNECT_TIMEOUT, CONNECT_TIMEOUT_RANGE);
        d(RESPONSE_TIMEOUT, RESPONSE_TIMEOUT_RANGE);
        d(IDLE_TIMEOUT, IDLE_TIMEOUT_RANGE);
        n(u64::from(RETRY_ATTEMPTS), w(RETRY_ATTEMPTS_RANGE));
        d(RETRY_BACKOFF, RETRY_BACKOFF_RANGE);
        d(RETRY_MAX_BACKOFF, RETRY_MAX_BACKOFF_RANGE);
        n(
            u64::from(RETRY_BUDGET_MIN_RETRIES_PER_SECOND),
            w(RETRY_BUDGET_MIN_RETRIES_PER_SECOND_RANGE),
        );
        d(RETRY_BUDGET_WINDOW, RETRY_BUDGET_WINDOW_RANGE);
        d(HEALTH_INTERVAL, HEALTH_INTERVAL_RANGE);
        d(HEALTH_TIMEOUT, HEALTH_TIMEOUT_RANGE);
        n(u64::from(HEALTHY_THRESHOLD), w(HEALTHY_THRESHOLD_RANGE));
        n(u64::from(UNHEALTHY_THRESHOLD), w(UNHEALTHY_THRESHOLD_RANGE));
        n(
            u64::from(BREAKER_MIN_REQUESTS),
            w(BREAKER_MIN_REQUESTS_RANGE),
        );
        d(BREAKER_WINDOW, BREAKER_WINDOW_RANGE);
        d(BREAKER_OPEN_FOR, BREAKER_OPEN_FOR_RANGE);
        d(
            breaker_max_open_for(BREAKER_OPEN_FOR),
            BREAKER_MAX_OPEN_FOR_RANGE,
        );
        d(
            breaker_max_open_for(BREAKER_OPEN_FOR_RANGE.max),
            BREAKER_MAX_OPEN_FOR_RANGE,
        );
        n(
            u64::from(BREAKER_HALF_OPEN_REQUESTS),
            w(BREAKER_HALF_OPEN_REQUESTS_RANGE),
        );
        n(REDIS_POOL_SIZE as u64, u(REDIS_POOL_SIZE_RANGE));
        d(RATE_LIMIT_STORE_TIMEOUT, RATE_LIMIT_STORE_TIMEOUT_RANGE);
        n(ACCESS_LOG_BUFFER as u64, u(ACCESS_LOG_BUFFER_RANGE));
        d(OTLP_TIMEOUT, OTLP_TIMEOUT_RANGE);
        n(OTLP_QUEUE_SIZE as u64, u(OTLP_QUEUE_SIZE_RANGE));
    }

    #[test]
    fn the_addresses_are_the_documented_ones() {
        assert_eq!(LISTEN.to_string(), "0.0.0.0:8080");
        assert_eq!(ADMIN_LISTEN.to_string(), "127.0.0.1:9901");
    }
}
