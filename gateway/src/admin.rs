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

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

use crate::config::model::{HostMatch, PathMatch, Rewrite, RouteAuth, RouteSpec, RouteTarget};
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
                json_response(json!({
                    "path": rt.loaded.path.display().to_string(),
                    "hash": rt.loaded.hash,
                    "loaded_at": humantime::format_rfc3339_seconds(rt.loaded_at).to_string(),
                    "last_reload_error": self.shared.last_reload_error(),
                    // A `redis_url` may carry a password: masked.
                    "source": crate::ratelimit::redis::mask_url_passwords(&rt.loaded.source),
                }))
            }
            "/admin/routes" => {
                let rt = self.shared.runtime();
                let routes: Vec<_> = rt.routes.iter().map(|r| route_json(r)).collect();
                json_response(json!({ "hash": rt.loaded.hash, "routes": routes }))
            }
            "/admin/upstreams" => {
                let rt = self.shared.runtime();
                let mut names: Vec<&String> = rt.upstreams.keys().collect();
                names.sort();
                let upstreams: Vec<_> = names
                    .into_iter()
                    .filter_map(|n| rt.upstreams.get(n))
                    .map(|u| upstream_json(u))
                    .collect();
                json_response(json!({ "hash": rt.loaded.hash, "upstreams": upstreams }))
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

/// A route as JSON (shared by `/admin/routes` and `gateway explain --json`).
pub fn route_json(r: &RouteSpec) -> serde_json::Value {
    let path = match &r.matcher.path {
        PathMatch::Any => json!(null),
        PathMatch::Prefix(p) => json!({ "path_prefix": p }),
        PathMatch::Exact(p) => json!({ "path": p }),
    };
    let host = r.matcher.host.as_ref().map(|h| match h {
        HostMatch::Exact(h) => h.clone(),
        HostMatch::Suffix(s) => format!("*{s}"),
    });
    let target = match &r.target {
        RouteTarget::Single(u) => json!({ "upstream": u }),
        RouteTarget::Split { sides, sticky_by } => json!({
            "split": sides.iter().map(|s| json!({ "upstream": s.upstream, "weight": s.weight })).collect::<Vec<_>>(),
            "sticky_by": sticky_by.as_ref().map(|k| k.to_string()),
        }),
    };
    let rewrite = r.rewrite.as_ref().map(|rw| match rw {
        Rewrite::Strip { prefix } => json!({ "strip_prefix": prefix }),
        Rewrite::Replace { prefix, to } => {
            json!({ "prefix_rewrite": { "from": prefix, "to": to } })
        }
    });
    json!({
        "name": r.name,
        "line": r.line,
        "match": {
            "path": path,
            "host": host,
            "methods": r.matcher.methods.as_ref().map(|m| m.iter().map(|m| m.as_str().to_string()).collect::<Vec<_>>()),
            "headers": r.matcher.headers.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        },
        "target": target,
        "rewrite": rewrite,
        "auth": auth_json(&r.auth),
        "fallback": r.fallback,
    })
}

/// One upstream's live state for `/admin/upstreams`.
fn upstream_json(u: &Upstream) -> serde_json::Value {
    let spec = &u.spec;
    let targets: Vec<_> = u
        .targets
        .iter()
        .map(|t| {
            let breaker = t.breaker.as_ref().map(|b| b.snapshot());
            // From the same snapshot the response shows, not a second read of the breaker.
            let available =
                crate::upstream::available(t.health.is_healthy(), breaker.map(|b| b.state));
            json!({
                "target": t.name,
                "address": t.addr.to_string(),
                "available": available,
                "health": t.health.snapshot(),
                "circuit_breaker": breaker,
            })
        })
        .collect();
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    json!({
        "name": spec.name,
        "load_balancing": match spec.load_balancing {
            crate::config::model::LoadBalancing::RoundRobin => "round_robin",
            crate::config::model::LoadBalancing::Random => "random",
        },
        "timeouts_ms": {
            "connect": ms(spec.timeouts.connect),
            "response": ms(spec.timeouts.response),
            "idle": ms(spec.timeouts.idle),
        },
        "retries": {
            "attempts": spec.retries.attempts,
            "backoff_ms": ms(spec.retries.backoff),
            "max_backoff_ms": ms(spec.retries.max_backoff),
            "budget": u.budget.snapshot(),
        },
        "health_check": spec.health_check.as_ref().map(|h| json!({
            "path": h.path,
            "interval_ms": ms(h.interval),
            "timeout_ms": ms(h.timeout),
            "healthy_threshold": h.healthy_threshold,
            "unhealthy_threshold": h.unhealthy_threshold,
        })),
        "circuit_breaker": spec.circuit_breaker.as_ref().map(|b| json!({
            "failure_ratio": b.config.failure_ratio,
            "min_requests": b.config.min_requests,
            "window_ms": ms(b.config.window),
            "open_for_ms": ms(b.config.open_for),
            "max_open_for_ms": ms(b.config.max_open_for),
            "half_open_requests": b.config.half_open_requests,
            "failure_statuses": b.failure_statuses.describe(),
        })),
        "targets": targets,
    })
}

/// A route's auth rule as JSON / text.
pub fn auth_json(a: &RouteAuth) -> serde_json::Value {
    match a {
        RouteAuth::None => json!("none"),
        RouteAuth::Optional => json!("optional"),
        RouteAuth::Required { roles, scopes } if roles.is_empty() && scopes.is_empty() => {
            json!("required")
        }
        RouteAuth::Required { roles, scopes } => json!({ "roles": roles, "scopes": scopes }),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body.as_bytes().to_vec())
        .unwrap_or_default()
}

fn json_response(v: serde_json::Value) -> Response<Vec<u8>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(serde_json::to_vec_pretty(&v).unwrap_or_default())
        .unwrap_or_default()
}
