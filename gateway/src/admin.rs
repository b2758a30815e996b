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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde::Serialize;

use crate::breaker;
use crate::config::model::{
    Config, HostMatch, LoadBalancing, PathMatch, Rewrite, RouteAuth, RouteSpec, RouteTarget,
};
use crate::failover;
use crate::health::HealthSnapshot;
use crate::retry_budget::BudgetSnapshot;
use crate::state::Shared;
use crate::upstream::Upstream;

pub struct AdminApp {
    shared: Arc<Shared>,
}

impl AdminApp {
    pub fn new(shared: Arc<Shared>) -> Self {
        AdminApp { shared }
    }

    fn route(&self, method: &http::Method, path: &str) -> Response<Vec<u8>> {
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
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        self.route(&req.method, req.uri.path())
    }
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
    /// The effective timeouts of an attempt on each upstream the route may use (its own, each
    /// split side, its fallback), in whole milliseconds; `total_ms` is `null` when unset.
    timeouts_ms: BTreeMap<&'a str, RouteTimeoutsView>,
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
        let plain = view(1).unwrap();
        assert_eq!(plain["fallback"], serde_json::Value::Null);
        assert_eq!(
            plain["timeouts_ms"]["old"],
            serde_json::json!({ "connect": 1000, "response": 30_000, "upgraded_idle": 600_000, "total": null })
        );
    }
}
