//! The validated runtime model: what the proxy runs on, so the proxy never sees raw YAML. Only
//! [`super::load_str`] (and [`super::load_file`] through it) builds a [`Config`], and only from a
//! file that passed every check. The raw structs are in [`super::file`], the checks in the
//! `config/` section files, the defaults in [`super::defaults`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use ipnet::IpNet;

use super::defaults;
pub use super::file::{EncodedSlashes, LoadBalancing, OnStoreError, OtlpProtocol};

#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls: Option<TlsListener>,
    pub admin_listen: SocketAddr,
    /// `admin.token_file`: the bearer token every admin write needs (`None`: writes refused).
    pub admin_token: Option<AdminToken>,
    /// `migration_state:`: where migration stages are kept (see `docs/migration.md`).
    pub migration_state: MigrationStore,
    pub server: ServerSettings,
    pub trusted_proxies: Vec<IpNet>,
    pub encoded_slashes: EncodedSlashes,
    pub auth: Option<AuthConfig>,
    pub rate_limits: Option<RateLimits>,
    pub upstreams: BTreeMap<String, Arc<UpstreamSpec>>,
    /// The top-level `cohorts:`, by name.
    pub cohorts: BTreeMap<String, Arc<Cohort>>,
    /// In file order; [`crate::routing::RouteTable`] orders them by precedence.
    pub routes: Vec<Arc<RouteSpec>>,
    pub observability: Observability,
    /// The targets' addresses, as the load's [`crate::config::Host`] resolved them (empty for a
    /// file-only load): what the runtime connects to, looked up once per load.
    pub addresses: BTreeMap<String, SocketAddr>,
}

/// The validated `observability:` block. What a reload can change: `otlp.sample_ratio` and
/// `access_log.sample_successful`; the rest is fixed at start (see `docs/observability.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct Observability {
    pub service_name: String,
    pub access_log: Option<AccessLog>,
    pub otlp: Option<Otlp>,
}

/// The block left out: [`defaults::SERVICE_NAME`], no access log, no span export.
impl Default for Observability {
    fn default() -> Self {
        Observability {
            service_name: defaults::SERVICE_NAME.to_string(),
            access_log: None,
            otlp: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    pub output: AccessLogOutput,
    /// 0.0 to 1.0.
    pub sample_successful: f64,
    pub buffer: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogOutput {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Otlp {
    /// `http://host:port[/path]`, checked.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// 0.0 to 1.0.
    pub sample_ratio: f64,
    pub timeout: Duration,
    pub queue_size: usize,
}

#[derive(Debug, Clone)]
pub struct TlsListener {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub drain_timeout: Duration,
    pub reload_debounce: Duration,
    pub upstream_keepalive_pool: usize,
}

#[derive(Debug)]
pub struct UpstreamSpec {
    pub name: String,
    /// `host:port` as written; resolved once per load (see [`Config::addresses`]).
    pub targets: Vec<String>,
    pub load_balancing: LoadBalancing,
    pub timeouts: Timeouts,
    pub retries: RetryPolicy,
    pub health_check: Option<HealthCheckSpec>,
    /// `None` when `circuit_breaker.enabled: false`.
    pub circuit_breaker: Option<BreakerSpec>,
}

/// When a failed attempt may be tried again (the *which* is fixed: see `proxy.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub budget: crate::retry_budget::BudgetConfig,
}

impl RetryPolicy {
    /// The wait before retry number `n` (1-based): `backoff × 2^(n-1)`, capped.
    pub fn backoff_for(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub path: String,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy target healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy target unhealthy.
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSpec {
    pub config: crate::breaker::BreakerConfig,
    /// Response statuses counted as failures (connect errors and timeouts always are).
    pub failure_statuses: StatusSet,
}

/// A set of HTTP status codes (100–599).
#[derive(Clone, PartialEq, Eq)]
pub struct StatusSet([u64; 10]);

impl StatusSet {
    pub fn empty() -> Self {
        StatusSet([0; 10])
    }

    /// `5xx`.
    pub fn server_errors() -> Self {
        let mut s = Self::empty();
        s.insert_range(500, 599);
        s
    }

    pub fn insert_range(&mut self, from: u16, to: u16) {
        for code in from..=to.min(639) {
            self.0[usize::from(code / 64)] |= 1 << (code % 64);
        }
    }

    pub fn union(&mut self, other: &StatusSet) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine |= theirs;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn contains(&self, code: u16) -> bool {
        code < 640 && self.0[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }

    /// Compact text: `500-599`, `429,502-504`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut code = 100u16;
        while code < 600 {
            if self.contains(code) {
                let start = code;
                while code + 1 < 600 && self.contains(code + 1) {
                    code += 1;
                }
                parts.push(if start == code {
                    start.to_string()
                } else {
                    format!("{start}-{code}")
                });
            }
            code += 1;
        }
        parts.join(",")
    }
}

impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StatusSet({})", self.describe())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// From the request being sent to the response headers (and between body reads).
    pub response: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub idle: Duration,
    /// How long an upgraded connection (WebSocket) may stay silent.
    pub upgraded_idle: Duration,
}

/// A route's `timeouts:`: each, when set, overrides the upstream's for the route's requests
/// (on its fallback too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub response: Option<Duration>,
    pub upgraded_idle: Option<Duration>,
    /// Bounds all attempts together, backoffs included, until the answer's headers.
    pub total: Option<Duration>,
}

/// The timeouts one attempt runs with: the route's where it sets them, else the upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub connect: Duration,
    pub response: Duration,
    pub upgraded_idle: Duration,
    pub total: Option<Duration>,
}

impl RouteTimeouts {
    pub fn over(&self, upstream: &Timeouts) -> Effective {
        Effective {
            connect: upstream.connect,
            response: self.response.unwrap_or(upstream.response),
            upgraded_idle: self.upgraded_idle.unwrap_or(upstream.upgraded_idle),
            total: self.total,
        }
    }
}

/// A route's `fallback:`: the upstream that answers when the route's own fails, and on which
/// failures (see [`crate::failover`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackSpec {
    pub upstream: String,
    pub on: FallbackOn,
    /// Methods a replay (after `timeout`, `reset`, a status) may repeat; any method with an
    /// `Idempotency-Key`.
    pub methods: Vec<Method>,
    /// Caps replays; `min_retries_per_second` is the file's `min_per_second`.
    pub budget: crate::retry_budget::BudgetConfig,
}

/// The failures a fallback takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackOn {
    /// No target of the route's upstream can take the request.
    pub unavailable: bool,
    /// The connection failed: nothing was sent.
    pub connect_error: bool,
    /// No answer within the response timeout.
    pub timeout: bool,
    /// The connection broke before the answer.
    pub reset: bool,
    /// Answers dropped and replayed (400-599 only).
    pub statuses: StatusSet,
}

impl FallbackOn {
    /// Whether a failure it takes may replay a request the service may have acted on (and so
    /// spend the budget).
    pub fn replays(&self) -> bool {
        self.timeout || self.reset || !self.statuses.is_empty()
    }

    /// `unavailable, connect_error, timeout, reset, status 500-504`: as written in `explain`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = [
            (self.unavailable, "unavailable"),
            (self.connect_error, "connect_error"),
            (self.timeout, "timeout"),
            (self.reset, "reset"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_string())
        .collect();
        let statuses = self.statuses.describe();
        if !statuses.is_empty() {
            parts.push(format!("status {statuses}"));
        }
        parts.join(", ")
    }
}

#[derive(Debug)]
pub struct RouteSpec {
    /// Position in the file (`routes[index]`), the tie-breaker of the precedence rule.
    pub index: usize,
    /// The line of the route in the file (for `explain` and `/admin/routes`).
    pub line: usize,
    pub name: String,
    pub matcher: Matcher,
    pub target: RouteTarget,
    pub rewrite: Option<Rewrite>,
    pub auth: RouteAuth,
    /// Answers when the chosen upstream fails (see [`crate::failover`]).
    pub fallback: Option<FallbackSpec>,
    pub timeouts: RouteTimeouts,
    /// Policy names (all exist in `rate_limits.policies`), checked in this order.
    pub rate_limit: Vec<String>,
    /// Copies of the route's requests to a candidate, compared (see [`crate::shadow`]). On a
    /// route with a `migration:` whose plan has a shadow stage, the copy runs only while the
    /// migration asks for it ([`crate::migration::Plan::shadow_on`]).
    pub shadow: Option<Arc<ShadowSpec>>,
    /// A plan moving the route from one upstream to another (`docs/migration.md`). Its target
    /// is then a [`RouteTarget::Cohort`] split (`to` = `migration.to`, `rest` =
    /// `migration.from`) whose percent the running migration sets, not `basis_points`.
    pub migration: Option<Arc<MigrationSpec>>,
}

/// A route's validated `migration:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationSpec {
    /// The upstream the route moves away from (the split's `rest`, and the default fallback).
    pub from: String,
    /// The upstream it moves to (the split's `to`, and the shadow's candidate).
    pub to: String,
    /// The cohort that moves first, by name (the split's cohort).
    pub cohort: String,
    pub plan: crate::migration::Plan,
}

impl MigrationSpec {
    /// Whether `other` is the same plan for the state machine: same sides, cohort and stages.
    /// A change of any of them starts the plan again at its first stage; a change of the guard
    /// or `auto_promote` alone does not (see [`crate::migration::replan`]).
    pub fn same_course(&self, other: &MigrationSpec) -> bool {
        self.from == other.from
            && self.to == other.to
            && self.cohort == other.cohort
            && self.plan.stages() == other.plan.stages()
    }
}

/// Where migration states are kept: `migration_state:`.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum MigrationStore {
    /// In this process only: a restart starts every plan again.
    #[default]
    Memory,
    /// `file:PATH`: one JSON file, rewritten (atomically) on every transition; one gateway.
    File(PathBuf),
    /// `redis` (the rate limits' Redis) or `redis://…`: shared by replicas, one decides at a
    /// time under a lease.
    Redis { url: String },
}

/// Never prints the URL: it may carry a password.
impl std::fmt::Debug for MigrationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrationStore::Memory => write!(f, "Memory"),
            MigrationStore::File(p) => write!(f, "File({})", p.display()),
            MigrationStore::Redis { .. } => write!(f, "Redis"),
        }
    }
}

/// The admin write token, read from `admin.token_file` by the load (a reload rotates it):
/// only its SHA-256 is kept, compared in constant time; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl AdminToken {
    pub fn new(token: &[u8]) -> AdminToken {
        AdminToken {
            digest: sha256(token),
        }
    }

    /// Whether `presented` is the token, in time that does not depend on where they differ
    /// (both are hashed first, so not on their lengths either).
    pub fn matches(&self, presented: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.digest, &sha256(presented)).is_ok()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminToken(..)")
    }
}

/// A route's validated `shadow:` block (`docs/shadow.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowSpec {
    /// The candidate: gets a copy, its answer is compared, never returned.
    pub upstream: String,
    /// Share of eligible requests copied, 0 to 1.
    pub sample: f64,
    pub methods: Vec<Method>,
    /// `writes: dry_run`: writes are copied, with `X-Gateway-Shadow: dry-run`.
    pub dry_run: bool,
    pub max_body: u64,
    pub max_response: u64,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub compare: crate::shadow::compare::CompareSpec,
    /// Share of copied reads also sent a second time to the primary, 0 to 1.
    pub noise: f64,
    /// `record.mismatches`: recent mismatches kept.
    pub mismatches: usize,
    /// `record.redact`.
    pub redact: Vec<crate::shadow::pointer::Pattern>,
}

/// The validated `rate_limits:` block.
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub store: LimitStore,
    pub on_store_error: OnStoreError,
    pub store_timeout: Duration,
    /// Send `RateLimit-Policy` / `RateLimit` on admitted responses too.
    pub headers: bool,
    pub policies: BTreeMap<String, Arc<LimitPolicy>>,
}

#[derive(Clone, PartialEq, Eq)]
pub enum LimitStore {
    Memory,
    Redis { url: String, pool_size: usize },
}

/// Never prints the URL: it may carry a password.
impl std::fmt::Debug for LimitStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitStore::Memory => write!(f, "Memory"),
            LimitStore::Redis { pool_size, .. } => write!(f, "Redis {{ pool_size: {pool_size} }}"),
        }
    }
}

/// `limit` requests per `per`, with up to `burst` at once (GCRA: one request every
/// `per / limit`, bucket depth `burst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPolicy {
    pub name: String,
    pub key: LimitKey,
    pub limit: u32,
    pub per: Duration,
    pub burst: u32,
}

impl LimitPolicy {
    /// The emission interval: the time one request's worth of quota takes to come back.
    pub fn interval(&self) -> Duration {
        self.per / self.limit.max(1)
    }
}

/// What a policy counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client address, after `trusted_proxies`.
    ClientIp,
    /// A claim of the verified token.
    Claim(String),
    /// A request header's value.
    Header(HeaderName),
    /// One bucket per route.
    Route,
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitKey::ClientIp => write!(f, "client_ip"),
            LimitKey::Claim(c) => write!(f, "claim.{c}"),
            LimitKey::Header(h) => write!(f, "header.{h}"),
            LimitKey::Route => write!(f, "route"),
        }
    }
}

/// What a route asks of the caller's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// No token is looked at (identity headers are still stripped).
    None,
    /// No token: anonymous. A token: it must be valid (a bad token is a 401).
    Optional,
    /// A valid token with at least one of `roles` (when any are listed) and every one of
    /// `scopes`.
    Required {
        roles: Vec<String>,
        scopes: Vec<String>,
    },
}

/// [`defaults::ROUTE_AUTH`].
impl Default for RouteAuth {
    fn default() -> Self {
        defaults::ROUTE_AUTH
    }
}

/// The validated `auth:` block.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_url: String,
    /// Never taken from the token: RFC 8725 §3.1.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub leeway: Duration,
    /// Claim name → header name, in a fixed order.
    pub claims_to_headers: Vec<(String, HeaderName)>,
    pub jwks_refresh_interval: Duration,
    pub jwks_min_refresh_interval: Duration,
    pub jwks_unknown_kid_cooldown: Duration,
    pub jwks_timeout: Duration,
    pub max_token_bytes: usize,
    pub token_cache_size: usize,
    /// The claims the config reads by name (`sticky_by: claim.X`, rate-limit `key: claim.X`):
    /// the only ones a verified token keeps besides what `Verified` extracts, so the token
    /// cache holds a few fields per token rather than whole claim sets.
    pub kept_claims: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Matcher {
    pub path: PathMatch,
    pub host: Option<HostMatch>,
    pub methods: Option<Vec<Method>>,
    pub headers: Vec<(HeaderName, String)>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum PathMatch {
    #[default]
    Any,
    /// A prefix ending in `/` matches as a plain string prefix; one without a trailing `/`
    /// matches the path itself or the path followed by `/...` (segment boundary).
    Prefix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com`: stored as `.example.com`.
    Suffix(String),
}

#[derive(Debug)]
pub enum RouteTarget {
    Single(String),
    Split {
        sides: Vec<SplitSide>,
        sticky_by: Option<StickyKey>,
    },
    /// `split: { to, percent, cohort, rest }`.
    Cohort(CohortSplit),
}

/// A route moving `percent` of a cohort's users to `to` (see [`crate::split`]).
#[derive(Debug, Clone)]
pub struct CohortSplit {
    pub to: String,
    pub rest: String,
    /// The percent in hundredths: 0 to 10,000.
    pub basis_points: u32,
    pub cohort: Arc<Cohort>,
}

impl CohortSplit {
    /// `10`, `12.5`, `0.01`: the percent as written.
    pub fn percent(&self) -> String {
        let (whole, hundredths) = (self.basis_points / 100, self.basis_points % 100);
        match hundredths {
            0 => whole.to_string(),
            h if h % 10 == 0 => format!("{whole}.{}", h / 10),
            h => format!("{whole}.{h:02}"),
        }
    }
}

/// A validated `cohorts:` entry: who moves first, the same on every route that names it.
#[derive(Debug)]
pub struct Cohort {
    pub name: String,
    pub by: StickyKey,
    /// Used when the request has no `by` key.
    pub fallback_by: Option<StickyKey>,
    pub salt: String,
    /// [`crate::split::seed`] of the salt.
    pub seed: u64,
    pub pin: Option<PinSpec>,
}

/// A cohort's `pin:`: the signed cookie that keeps a visitor's position.
#[derive(Debug, Clone)]
pub struct PinSpec {
    pub cookie: String,
    pub ttl: Duration,
    pub secret_file: PathBuf,
    /// The HMAC key, read from `secret_file` by the load (so a reload rotates it).
    pub secret: Secret,
}

/// A pin's HMAC-SHA256 key, set up once when the config loads (not per request): never
/// printed.
#[derive(Clone)]
pub struct Secret {
    key: aws_lc_rs::hmac::Key,
    len: usize,
}

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        Secret {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
            len: bytes.len(),
        }
    }

    pub fn key(&self) -> &aws_lc_rs::hmac::Key {
        &self.key
    }

    /// The key's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.len)
    }
}

#[derive(Debug, Clone)]
pub struct SplitSide {
    pub upstream: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
    Claim(String),
}

impl std::fmt::Display for StickyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StickyKey::Header(h) => write!(f, "header.{h}"),
            StickyKey::Cookie(c) => write!(f, "cookie.{c}"),
            StickyKey::ClientIp => write!(f, "client_ip"),
            StickyKey::Claim(c) => write!(f, "claim.{c}"),
        }
    }
}

/// What happens to the matched prefix before the request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Remove the route's `path_prefix` (`/api/users/7` with prefix `/api/` → `/users/7`).
    Strip { prefix: String },
    /// Replace the route's `path_prefix` with `to`.
    Replace { prefix: String, to: String },
}

impl RouteTarget {
    /// Every upstream name this target may send to.
    pub fn upstream_names(&self) -> Vec<&str> {
        match self {
            RouteTarget::Single(u) => vec![u.as_str()],
            RouteTarget::Split { sides, .. } => sides.iter().map(|s| s.upstream.as_str()).collect(),
            RouteTarget::Cohort(c) => vec![c.to.as_str(), c.rest.as_str()],
        }
    }
}
