//! The admin listener (127.0.0.1 by default): health, readiness, metrics and a read-only view
//! of the active config.
//!
//! | path | answers |
//! |---|---|
//! | `/healthz` | 200 while the process runs |
//! | `/readyz` | 200 when the gateway is not draining and (with `auth:`) the JWKS is loaded, else 503 |
//! | `/metrics` | Prometheus text format |
//! | `/admin/config` | path, hash and load time of the active config, the last reload error, the YAML |
//! | `/admin/routes` | routes in precedence order, with their match, upstreams and rewrite |
//! | `/admin/upstreams` | every upstream's targets with their health and circuit breaker, and its retry budget |
//! | `/admin/cohorts` | every cohort: its keys, its pin (cookie and ttl, never the secret), the routes that name it with their percent |
//! | `/admin/cohorts/NAME/assign?key=K` | where a request whose `by` key is `K` goes: its bucket and each route's side ([`cohort::place`], as the proxy) |
//! | `/admin/shadow` | every shadowed route: its candidate, verdict counts, parity with its Wilson 95% lower bound, noise ratio, top differing pointers, what its noise model learned |
//! | `/admin/shadow/ROUTE/mismatches` | the route's recent mismatches, newest first, values redacted (`record.redact`) |
//!
//! A page that cannot answer (an unknown cohort, a missing key) is a problem+json
//! ([`respond::body`]), as the proxy's own refusals are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde::Serialize;

use crate::config::model::{
    Cohort, Config, HostMatch, LoadBalancing, PathMatch, Rewrite, RouteAuth, RouteSpec, RouteTarget,
};
use crate::health::HealthSnapshot;
use crate::respond::Problem;
use crate::retry_budget::BudgetSnapshot;
use crate::split::Position;
use crate::state::Shared;
use crate::upstream::Upstream;
use crate::{breaker, cohort, failover, request_id, respond};

pub struct AdminApp {
    shared: Arc<Shared>,
}

impl AdminApp {
    pub fn new(shared: Arc<Shared>) -> Self {
        AdminApp { shared }
    }

    fn route(&self, method: &http::Method, path: &str, query: Option<&str>) -> Response<Vec<u8>> {
        if method != http::Method::GET && method != http::Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.shared.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {why}\n"),
                ),
            },
            "/metrics" => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(self.shared.metrics.encode())
                .unwrap_or_default(),
            "/admin/config" => {
                let rt = self.shared.runtime();
                json_response(&ConfigView {
                    path: rt.loaded.path.display().to_string(),
                    hash: &rt.loaded.hash,
                    loaded_at: humantime::format_rfc3339_seconds(rt.loaded_at).to_string(),
                    last_reload_error: self.shared.last_reload_error(),
                    // A `redis_url` may carry a password: masked.
                    source: crate::ratelimit::redis::mask_url_passwords(&rt.loaded.source),
                })
            }
            "/admin/routes" => {
                let rt = self.shared.runtime();
                json_response(&RoutesView {
                    hash: &rt.loaded.hash,
                    routes: rt
                        .routes
                        .iter()
                        .map(|r| RouteView::of(r, &rt.loaded.config))
                        .collect(),
                })
            }
            "/admin/upstreams" => {
                let rt = self.shared.runtime();
                let mut upstreams: Vec<&Upstream> = rt.upstreams.values().map(|u| &**u).collect();
                upstreams.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
                json_response(&UpstreamsView {
                    hash: &rt.loaded.hash,
                    upstreams: upstreams.into_iter().map(UpstreamView::of).collect(),
                })
            }
            "/admin/cohorts" => {
                let rt = self.shared.runtime();
                json_response(&CohortsView::of(&rt.loaded.hash, &rt.loaded.config))
            }
            "/admin/shadow" => {
                let rt = self.shared.runtime();
                json_response(&ShadowsView {
                    hash: &rt.loaded.hash,
                    routes: rt
                        .shadows
                        .iter()
                        .flatten()
                        .map(|s| ShadowRouteView {
                            upstream: &s.spec.upstream,
                            sample: s.spec.sample,
                            noise: s.spec.noise,
                            view: s.stats.view(&s.route, TOP_POINTERS),
                        })
                        .collect(),
                })
            }
            _ if path.starts_with("/admin/shadow/") => {
                let name = path
                    .strip_prefix("/admin/shadow/")
                    .and_then(|p| p.strip_suffix("/mismatches"))
                    .unwrap_or_default();
                let rt = self.shared.runtime();
                match rt.shadows.iter().flatten().find(|s| s.route == name) {
                    Some(s) => json_response(&s.stats.mismatches(&s.route)),
                    None => problem_response(&Problem {
                        status: 404,
                        slug: "no-shadow",
                        title: "No shadow",
                        detail: "The active config has no route of that name with a shadow: \
                                 GET /admin/shadow lists them."
                            .to_string(),
                    }),
                }
            }
            _ => match path
                .strip_prefix("/admin/cohorts/")
                .and_then(|p| p.strip_suffix("/assign"))
                .filter(|name| !name.is_empty() && !name.contains('/'))
            {
                Some(name) => {
                    let rt = self.shared.runtime();
                    match AssignView::of(&rt.loaded.config, name, query) {
                        Ok(view) => json_response(&view),
                        Err(e) => problem_response(&e.problem()),
                    }
                }
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        self.route(&req.method, req.uri.path(), req.uri.query())
    }
}

/// Top differing pointers shown per route in `/admin/shadow`.
const TOP_POINTERS: usize = 10;

/// `/admin/shadow`.
#[derive(Serialize)]
struct ShadowsView<'a> {
    hash: &'a str,
    /// In file order.
    routes: Vec<ShadowRouteView<'a>>,
}

#[derive(Serialize)]
struct ShadowRouteView<'a> {
    upstream: &'a str,
    sample: f64,
    noise: f64,
    #[serde(flatten)]
    view: crate::shadow::verdicts::RouteView,
}

/// `/admin/config`.
#[derive(Serialize)]
struct ConfigView<'a> {
    path: String,
    hash: &'a str,
    loaded_at: String,
    last_reload_error: Option<String>,
    source: String,
}

/// `/admin/routes`: routes in precedence order.
#[derive(Serialize)]
struct RoutesView<'a> {
    hash: &'a str,
    routes: Vec<RouteView<'a>>,
}

#[derive(Serialize)]
struct RouteView<'a> {
    name: &'a str,
    line: usize,
    #[serde(rename = "match")]
    matcher: MatchView<'a>,
    target: TargetView<'a>,
    rewrite: Option<RewriteView<'a>>,
    auth: AuthView<'a>,
    fallback: Option<FallbackView<'a>>,
    /// What is copied to the route's shadow (`/admin/shadow` has its verdicts).
    shadow: Option<ShadowBriefView<'a>>,
    /// The effective timeouts of an attempt on each upstream the route may use (its own, each
    /// split side, its fallback), in whole milliseconds; `total_ms` is `null` when unset.
    timeouts_ms: BTreeMap<&'a str, RouteTimeoutsView>,
}

#[derive(Serialize)]
struct ShadowBriefView<'a> {
    upstream: &'a str,
    sample: f64,
    methods: Vec<&'a str>,
    writes: &'static str,
    noise: f64,
}

#[derive(Serialize)]
struct FallbackView<'a> {
    upstream: &'a str,
    on: Vec<&'static str>,
    /// The statuses that are replayed (`502-504`), empty for none.
    statuses: String,
    methods: Vec<&'a str>,
    budget: FallbackBudgetView,
}

#[derive(Serialize)]
struct FallbackBudgetView {
    ratio: f64,
    min_per_second: u32,
    window_ms: u64,
}

#[derive(Serialize)]
struct RouteTimeoutsView {
    connect: u64,
    response: u64,
    upgraded_idle: u64,
    total: Option<u64>,
}

#[derive(Serialize)]
struct MatchView<'a> {
    /// `null` for a route that matches every path.
    path: Option<PathView<'a>>,
    /// `*.example.com` for a suffix match.
    host: Option<String>,
    methods: Option<Vec<&'a str>>,
    headers: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum PathView<'a> {
    PathPrefix(&'a str),
    Path(&'a str),
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum TargetView<'a> {
    Upstream(&'a str),
    /// `{ "cohort_split": { "to", "rest", "percent", "cohort" } }`.
    CohortSplit {
        to: &'a str,
        rest: &'a str,
        /// As written (`12.5`).
        percent: f64,
        cohort: &'a str,
    },
    #[serde(untagged)]
    Split {
        split: Vec<SideView<'a>>,
        sticky_by: Option<String>,
    },
}

#[derive(Serialize)]
struct SideView<'a> {
    upstream: &'a str,
    weight: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum RewriteView<'a> {
    StripPrefix(&'a str),
    PrefixRewrite { from: &'a str, to: &'a str },
}

/// A route's auth rule: `"none"`, `"optional"`, `"required"`, or `{roles, scopes}`.
#[derive(Serialize)]
#[serde(untagged)]
enum AuthView<'a> {
    Word(&'static str),
    Required {
        roles: &'a [String],
        scopes: &'a [String],
    },
}

impl<'a> RouteView<'a> {
    fn of(r: &'a RouteSpec, config: &'a Config) -> Self {
        let m = &r.matcher;
        RouteView {
            name: &r.name,
            line: r.line,
            matcher: MatchView {
                path: match &m.path {
                    PathMatch::Any => None,
                    PathMatch::Prefix(p) => Some(PathView::PathPrefix(p)),
                    PathMatch::Exact(p) => Some(PathView::Path(p)),
                },
                host: m.host.as_ref().map(|h| match h {
                    HostMatch::Exact(h) => h.clone(),
                    HostMatch::Suffix(s) => format!("*{s}"),
                }),
                methods: m
                    .methods
                    .as_ref()
                    .map(|ms| ms.iter().map(|m| m.as_str()).collect()),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            },
            target: match &r.target {
                RouteTarget::Single(u) => TargetView::Upstream(u),
                RouteTarget::Split { sides, sticky_by } => TargetView::Split {
                    split: sides
                        .iter()
                        .map(|s| SideView {
                            upstream: &s.upstream,
                            weight: s.weight,
                        })
                        .collect(),
                    sticky_by: sticky_by.as_ref().map(|k| k.to_string()),
                },
                RouteTarget::Cohort(c) => TargetView::CohortSplit {
                    to: &c.to,
                    rest: &c.rest,
                    percent: f64::from(c.basis_points) / 100.0,
                    cohort: &c.cohort.name,
                },
            },
            rewrite: r.rewrite.as_ref().map(|rw| match rw {
                Rewrite::Strip { prefix } => RewriteView::StripPrefix(prefix),
                Rewrite::Replace { prefix, to } => RewriteView::PrefixRewrite { from: prefix, to },
            }),
            auth: match &r.auth {
                RouteAuth::None => AuthView::Word("none"),
                RouteAuth::Optional => AuthView::Word("optional"),
                RouteAuth::Required { roles, scopes } if roles.is_empty() && scopes.is_empty() => {
                    AuthView::Word("required")
                }
                RouteAuth::Required { roles, scopes } => AuthView::Required { roles, scopes },
            },
            fallback: r.fallback.as_ref().map(|fb| FallbackView {
                upstream: &fb.upstream,
                on: failover::Reason::ALL
                    .into_iter()
                    .filter(|reason| {
                        *reason != failover::Reason::Status && failover::takes(&fb.on, *reason)
                    })
                    .map(failover::Reason::as_str)
                    .collect(),
                statuses: fb.on.statuses.describe(),
                methods: fb.methods.iter().map(|m| m.as_str()).collect(),
                budget: FallbackBudgetView {
                    ratio: fb.budget.ratio,
                    min_per_second: fb.budget.min_retries_per_second,
                    window_ms: ms(fb.budget.window),
                },
            }),
            shadow: r.shadow.as_ref().map(|sh| ShadowBriefView {
                upstream: &sh.upstream,
                sample: sh.sample,
                methods: sh.methods.iter().map(|m| m.as_str()).collect(),
                writes: if sh.dry_run { "dry_run" } else { "off" },
                noise: sh.noise,
            }),
            timeouts_ms: r
                .target
                .upstream_names()
                .into_iter()
                .chain(r.fallback.as_ref().map(|f| f.upstream.as_str()))
                .filter_map(|name| {
                    let t = r.timeouts.over(&config.upstreams.get(name)?.timeouts);
                    Some((
                        name,
                        RouteTimeoutsView {
                            connect: ms(t.connect),
                            response: ms(t.response),
                            upgraded_idle: ms(t.upgraded_idle),
                            total: t.total.map(ms),
                        },
                    ))
                })
                .collect(),
        }
    }
}

/// `/admin/upstreams`: every upstream (by name) with its settings and live state.
#[derive(Serialize)]
struct UpstreamsView<'a> {
    hash: &'a str,
    upstreams: Vec<UpstreamView<'a>>,
}

/// Durations are whole milliseconds (`_ms` fields).
#[derive(Serialize)]
struct UpstreamView<'a> {
    name: &'a str,
    load_balancing: &'static str,
    timeouts_ms: TimeoutsView,
    retries: RetriesView,
    health_check: Option<HealthCheckView<'a>>,
    circuit_breaker: Option<BreakerSpecView>,
    targets: Vec<TargetStateView<'a>>,
}

#[derive(Serialize)]
struct TimeoutsView {
    connect: u64,
    response: u64,
    idle: u64,
    upgraded_idle: u64,
}

#[derive(Serialize)]
struct RetriesView {
    attempts: u32,
    backoff_ms: u64,
    max_backoff_ms: u64,
    budget: BudgetSnapshot,
}

#[derive(Serialize)]
struct HealthCheckView<'a> {
    path: &'a str,
    interval_ms: u64,
    timeout_ms: u64,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

#[derive(Serialize)]
struct BreakerSpecView {
    failure_ratio: f64,
    min_requests: u32,
    window_ms: u64,
    open_for_ms: u64,
    max_open_for_ms: u64,
    half_open_requests: u32,
    failure_statuses: String,
}

/// One target's live state.
#[derive(Serialize)]
struct TargetStateView<'a> {
    target: &'a str,
    address: String,
    available: bool,
    health: HealthSnapshot,
    circuit_breaker: Option<breaker::Snapshot>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<'a> UpstreamView<'a> {
    fn of(u: &'a Upstream) -> Self {
        let spec = &u.spec;
        let targets = u
            .targets
            .iter()
            .map(|t| {
                let breaker = t.breaker.as_ref().map(|b| b.snapshot());
                TargetStateView {
                    target: &t.name,
                    address: t.addr.to_string(),
                    // From the same snapshot the response shows, not a second read of the
                    // breaker.
                    available: crate::upstream::available(
                        t.health.is_healthy(),
                        breaker.map(|b| b.state),
                    ),
                    health: t.health.snapshot(),
                    circuit_breaker: breaker,
                }
            })
            .collect();
        UpstreamView {
            name: &spec.name,
            load_balancing: match spec.load_balancing {
                LoadBalancing::RoundRobin => "round_robin",
                LoadBalancing::Random => "random",
            },
            timeouts_ms: TimeoutsView {
                connect: ms(spec.timeouts.connect),
                response: ms(spec.timeouts.response),
                idle: ms(spec.timeouts.idle),
                upgraded_idle: ms(spec.timeouts.upgraded_idle),
            },
            retries: RetriesView {
                attempts: spec.retries.attempts,
                backoff_ms: ms(spec.retries.backoff),
                max_backoff_ms: ms(spec.retries.max_backoff),
                budget: u.budget.snapshot(),
            },
            health_check: spec.health_check.as_ref().map(|h| HealthCheckView {
                path: &h.path,
                interval_ms: ms(h.interval),
                timeout_ms: ms(h.timeout),
                healthy_threshold: h.healthy_threshold,
                unhealthy_threshold: h.unhealthy_threshold,
            }),
            circuit_breaker: spec.circuit_breaker.as_ref().map(|b| BreakerSpecView {
                failure_ratio: b.config.failure_ratio,
                min_requests: b.config.min_requests,
                window_ms: ms(b.config.window),
                open_for_ms: ms(b.config.open_for),
                max_open_for_ms: ms(b.config.max_open_for),
                half_open_requests: b.config.half_open_requests,
                failure_statuses: b.failure_statuses.describe(),
            }),
            targets,
        }
    }
}

/// `/admin/cohorts`: every cohort by name.
#[derive(Serialize)]
struct CohortsView<'a> {
    hash: &'a str,
    cohorts: Vec<CohortView<'a>>,
}

#[derive(Serialize)]
struct CohortView<'a> {
    name: &'a str,
    by: String,
    fallback_by: Option<String>,
    salt: &'a str,
    /// `null` when the cohort has no pin.
    pin: Option<PinView<'a>>,
    /// The routes that name the cohort, in file order.
    routes: Vec<CohortRouteView<'a>>,
}

/// A pin's cookie and lifetime; its secret (and the secret's file) are never shown.
#[derive(Serialize)]
struct PinView<'a> {
    cookie: &'a str,
    ttl_ms: u64,
}

#[derive(Serialize)]
struct CohortRouteView<'a> {
    route: &'a str,
    to: &'a str,
    rest: &'a str,
    /// As written (`12.5`).
    percent: f64,
}

/// The routes of `config` that split by `cohort`, in file order.
fn cohort_routes<'a>(
    config: &'a Config,
    cohort: &'a str,
) -> impl Iterator<Item = (&'a RouteSpec, &'a crate::config::model::CohortSplit)> {
    config.routes.iter().filter_map(move |r| match &r.target {
        RouteTarget::Cohort(c) if c.cohort.name == cohort => Some((&**r, c)),
        _ => None,
    })
}

fn percent(basis_points: u32) -> f64 {
    f64::from(basis_points) / 100.0
}

impl<'a> CohortsView<'a> {
    fn of(hash: &'a str, config: &'a Config) -> Self {
        CohortsView {
            hash,
            cohorts: config
                .cohorts
                .values()
                .map(|c| CohortView::of(c, config))
                .collect(),
        }
    }
}

impl<'a> CohortView<'a> {
    fn of(c: &'a Cohort, config: &'a Config) -> Self {
        CohortView {
            name: &c.name,
            by: c.by.to_string(),
            fallback_by: c.fallback_by.as_ref().map(|k| k.to_string()),
            salt: &c.salt,
            pin: c.pin.as_ref().map(|p| PinView {
                cookie: &p.cookie,
                ttl_ms: ms(p.ttl),
            }),
            routes: cohort_routes(config, &c.name)
                .map(|(r, split)| CohortRouteView {
                    route: &r.name,
                    to: &split.to,
                    rest: &split.rest,
                    percent: percent(split.basis_points),
                })
                .collect(),
        }
    }
}

/// `/admin/cohorts/NAME/assign?key=K`: where a request whose `by` key is `K` goes.
#[derive(Serialize, Debug)]
struct AssignView<'a> {
    cohort: &'a str,
    /// The key `K` stands for (the cohort's `by`).
    by: String,
    bucket: u32,
    routes: Vec<AssignedView<'a>>,
}

#[derive(Serialize, Debug)]
struct AssignedView<'a> {
    route: &'a str,
    percent: f64,
    /// The upstream the request goes to: the route's `to` or its `rest`.
    side: &'a str,
}

/// Why an assign page cannot answer.
#[derive(Debug, PartialEq, Eq)]
enum AssignError {
    UnknownCohort(String),
    MissingKey,
    ManyKeys,
}

impl AssignError {
    fn problem(&self) -> Problem {
        match self {
            AssignError::UnknownCohort(name) => Problem {
                status: 404,
                slug: "unknown-cohort",
                title: "Unknown cohort",
                detail: format!("The active config has no cohort \"{name}\"."),
            },
            AssignError::MissingKey => Problem {
                status: 400,
                slug: "missing-key",
                title: "Missing key",
                detail: "Give the key to place as ?key=VALUE (URL-encoded).".to_string(),
            },
            AssignError::ManyKeys => Problem {
                status: 400,
                slug: "bad-key",
                title: "Bad key",
                detail: "Give exactly one key (?key=VALUE).".to_string(),
            },
        }
    }
}

impl<'a> AssignView<'a> {
    /// The placement of a request whose `by` key is the query's `key` (URL-decoded), on every
    /// route that names cohort `name`: the proxy's own [`cohort::place`], with no pin.
    fn of(config: &'a Config, name: &str, query: Option<&str>) -> Result<Self, AssignError> {
        let cohort = config
            .cohorts
            .get(name)
            .ok_or_else(|| AssignError::UnknownCohort(name.to_string()))?;
        // Decoded to bytes, not to text: a header key may hold any bytes, and `%FF` must
        // place as the byte 0xFF does in the proxy.
        let mut keys = query.unwrap_or("").split('&').filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name) == b"key").then(|| form_decode(value))
        });
        let key = keys.next().ok_or(AssignError::MissingKey)?;
        if keys.next().is_some() {
            return Err(AssignError::ManyKeys);
        }
        let by_key = |k: &crate::config::model::StickyKey| (*k == cohort.by).then(|| key.clone());
        Ok(AssignView {
            cohort: &cohort.name,
            by: cohort.by.to_string(),
            bucket: Position::of(cohort.seed, &key).bucket(),
            routes: cohort_routes(config, &cohort.name)
                .map(|(r, split)| AssignedView {
                    route: &r.name,
                    percent: percent(split.basis_points),
                    side: cohort::place(split, None, by_key).upstream,
                })
                .collect(),
        })
    }
}

/// A problem+json answer of the admin listener (a fresh request id: admin requests have none).
fn problem_response(problem: &Problem) -> Response<Vec<u8>> {
    Response::builder()
        .status(problem.status)
        .header("content-type", "application/problem+json")
        .header("cache-control", "no-store")
        .body(respond::body(problem, &request_id::generate()))
        .unwrap_or_default()
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body.as_bytes().to_vec())
        .unwrap_or_default()
}

fn json_response(v: &impl Serialize) -> Response<Vec<u8>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(serde_json::to_vec_pretty(v).unwrap_or_default())
        .unwrap_or_default()
}

/// One `application/x-www-form-urlencoded` name or value, as bytes (`+` is a space).
fn form_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_shows_its_fallback_rules_and_effective_timeouts() {
        let src = r#"upstreams:
  new: { targets: [127.0.0.1:9], timeouts: { connect: 200ms, response: 5s } }
  old: { targets: [127.0.0.1:10], timeouts: { upgraded_idle: 10m } }
routes:
  - name: r
    match: { path_prefix: / }
    upstream: new
    fallback: { upstream: old, on: [reset, { status: [503, 504] }], methods: [GET] }
    timeouts: { response: 1s, total: 3s }
    shadow: { upstream: old, sample: 0.25, methods: [GET, POST], writes: dry_run }
  - { name: plain, match: { path: /x }, upstream: old }
"#;
        let config = crate::config::load_str("gw.yaml", src).expect("valid");
        let view = |i: usize| serde_json::to_value(RouteView::of(&config.routes[i], &config));
        let r = view(0).unwrap();
        assert_eq!(
            r["fallback"],
            serde_json::json!({
                "upstream": "old",
                "on": ["reset"],
                "statuses": "503-504",
                "methods": ["GET"],
                "budget": { "ratio": 0.1, "min_per_second": 10, "window_ms": 10000 },
            })
        );
        assert_eq!(
            r["timeouts_ms"],
            serde_json::json!({
                "new": { "connect": 200, "response": 1000, "upgraded_idle": 3_600_000, "total": 3000 },
                "old": { "connect": 1000, "response": 1000, "upgraded_idle": 600_000, "total": 3000 },
            })
        );
        assert_eq!(
            r["shadow"],
            serde_json::json!({
                "upstream": "old", "sample": 0.25, "methods": ["GET", "POST"],
                "writes": "dry_run", "noise": 0.0,
            })
        );
        let plain = view(1).unwrap();
        assert_eq!(plain["fallback"], serde_json::Value::Null);
        assert_eq!(plain["shadow"], serde_json::Value::Null);
        assert_eq!(
            plain["timeouts_ms"]["old"],
            serde_json::json!({ "connect": 1000, "response": 30_000, "upgraded_idle": 600_000, "total": null })
        );
    }

    /// Two cohorts, one pinned; three routes of `early` (one at 0 %), one of `late`.
    fn cohorts_config(dir: &tempfile::TempDir) -> Config {
        let secret = dir.path().join("pin.key");
        std::fs::write(&secret, "s".repeat(40)).unwrap();
        let src = format!(
            r#"upstreams:
  new: {{ targets: [127.0.0.1:9] }}
  old: {{ targets: [127.0.0.1:10] }}
cohorts:
  early: {{ by: header.x-user, fallback_by: cookie.sessionid, salt: early-2026, pin: {{ cookie: gw_cohort, ttl: 24h, secret_file: "{}" }} }}
  late: {{ by: cookie.sessionid }}
routes:
  - {{ name: payments, match: {{ path_prefix: /p/ }}, split: {{ to: new, percent: 12.5, cohort: early, rest: old }} }}
  - {{ name: invoices, match: {{ path_prefix: /i/ }}, split: {{ to: new, percent: 100, cohort: early, rest: old }} }}
  - {{ name: nobody, match: {{ path_prefix: /n/ }}, split: {{ to: new, percent: 0, cohort: early, rest: old }} }}
  - {{ name: other, match: {{ path_prefix: /o/ }}, split: {{ to: new, percent: 50, cohort: late, rest: old }} }}
  - {{ name: plain, match: {{ path_prefix: / }}, upstream: old }}
"#,
            secret.display()
        );
        crate::config::load_str("gw.yaml", &src).expect("valid")
    }

    #[test]
    fn cohorts_list_their_keys_pin_and_routes_never_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let config = cohorts_config(&dir);
        let v = serde_json::to_value(CohortsView::of("h", &config)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "hash": "h",
                "cohorts": [
                    {
                        "name": "early",
                        "by": "header.x-user",
                        "fallback_by": "cookie.sessionid",
                        "salt": "early-2026",
                        "pin": { "cookie": "gw_cohort", "ttl_ms": 86_400_000 },
                        "routes": [
                            { "route": "payments", "to": "new", "rest": "old", "percent": 12.5 },
                            { "route": "invoices", "to": "new", "rest": "old", "percent": 100.0 },
                            { "route": "nobody", "to": "new", "rest": "old", "percent": 0.0 },
                        ],
                    },
                    {
                        "name": "late",
                        "by": "cookie.sessionid",
                        "fallback_by": null,
                        "salt": "late",
                        "pin": null,
                        "routes": [
                            { "route": "other", "to": "new", "rest": "old", "percent": 50.0 },
                        ],
                    },
                ],
            })
        );
        let text = v.to_string();
        assert!(!text.contains("pin.key") && !text.contains("sss"), "{text}");
    }

    #[test]
    fn assign_decodes_a_key_to_its_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let config = cohorts_config(&dir);
        let seed = crate::split::seed("early-2026");
        for (query, key) in [
            ("key=%FF%00a", &b"\xff\x00a"[..]),
            ("key=a+b%2B", b"a b+"),
            ("k%65y=7&&x", b"7"),
        ] {
            let view = AssignView::of(&config, "early", Some(query)).unwrap();
            assert_eq!(view.bucket, Position::of(seed, key).bucket(), "{query}");
        }
    }

    #[test]
    fn assign_places_the_key_on_every_route_of_the_cohort_as_the_proxy_does() {
        let dir = tempfile::tempdir().unwrap();
        let config = cohorts_config(&dir);
        for key in ["42", "u-7", "a b+c", ""] {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("other", "x")
                .append_pair("key", key)
                .finish();
            let view = AssignView::of(&config, "early", Some(&query)).unwrap();
            let bucket = Position::of(crate::split::seed("early-2026"), key.as_bytes()).bucket();
            assert_eq!((view.cohort, view.bucket), ("early", bucket), "{key:?}");
            assert_eq!(view.by, "header.x-user");
            let sides: Vec<(&str, f64, &str)> = view
                .routes
                .iter()
                .map(|r| (r.route, r.percent, r.side))
                .collect();
            let payments = if bucket < 1_250 { "new" } else { "old" };
            assert_eq!(
                sides,
                [
                    ("payments", 12.5, payments),
                    ("invoices", 100.0, "new"),
                    ("nobody", 0.0, "old"),
                ],
                "{key:?}"
            );
            // The same side as a request carrying the key in its `by` header.
            let RouteTarget::Cohort(split) = &config.routes[0].target else {
                panic!()
            };
            let mut headers = http::HeaderMap::new();
            headers.insert("x-user", http::HeaderValue::from_str(key).unwrap());
            let inputs = crate::sticky::Inputs {
                headers: &headers,
                client_ip: None,
                identity: None,
            };
            let proxy = cohort::place(split, None, |k| crate::sticky::key(k, &inputs));
            assert_eq!(proxy.upstream, payments);
            assert_eq!(proxy.position.map(Position::bucket), Some(bucket));
        }
        // Percent-encoding and `+` are decoded.
        let encoded = AssignView::of(&config, "early", Some("key=a%20b%2Bc+d")).unwrap();
        let plain = Position::of(crate::split::seed("early-2026"), b"a b+c d").bucket();
        assert_eq!(encoded.bucket, plain);
        // Another cohort: its own key and its own routes.
        let late = AssignView::of(&config, "late", Some("key=1")).unwrap();
        assert_eq!(
            (late.routes.len(), late.by.as_str()),
            (1, "cookie.sessionid")
        );
    }

    #[test]
    fn assign_refuses_an_unknown_cohort_and_a_missing_key_as_problems() {
        let dir = tempfile::tempdir().unwrap();
        let config = cohorts_config(&dir);
        let err =
            |name: &str, query: Option<&str>| AssignView::of(&config, name, query).unwrap_err();
        assert_eq!(
            err("erly", Some("key=1")),
            AssignError::UnknownCohort("erly".into())
        );
        assert_eq!(err("early", None), AssignError::MissingKey);
        assert_eq!(err("early", Some("kee=1")), AssignError::MissingKey);
        assert_eq!(err("early", Some("key=1&key=2")), AssignError::ManyKeys);
        let resp = problem_response(&AssignError::UnknownCohort("erly".into()).problem());
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["type"], "urn:problem-type:gateway:unknown-cohort");
        assert_eq!(v["status"], 404);
        assert_eq!(v["detail"], "The active config has no cohort \"erly\".");
        assert_eq!(v["request_id"].as_str().map(str::len), Some(32));
        let missing = problem_response(&AssignError::MissingKey.problem());
        assert_eq!(missing.status(), 400);
        let v: serde_json::Value = serde_json::from_slice(missing.body()).unwrap();
        assert_eq!(v["type"], "urn:problem-type:gateway:missing-key");
    }
}
