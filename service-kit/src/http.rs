//! The middleware around every request of every Rust service, [`request_context`]: the request
//! id in and out, the request's span (continuing the caller's trace), `X-Served-By`, problem
//! bodies stamped with the service and the request id, HTTP metrics and the access log line.
//!
//! It is added with `Router::layer` after the routes and fallbacks, so axum runs it inside the
//! routing: the matched route template ([`MatchedPath`]) is known before the handler runs.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::HttpMetrics;
use crate::problem::Problem;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const SERVED_BY_HEADER: &str = "x-served-by";
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request's id: a well-formed incoming one (1-128 characters of `[A-Za-z0-9._:+-]`, the
/// gateway's rule, so an id the gateway kept is kept here too), or else `new()`.
pub fn request_id_from(headers: &HeaderMap, new: fn() -> String) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_well_formed_request_id(v))
        .map_or_else(new, str::to_string)
}

pub fn is_well_formed_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'+'))
}

/// 128 random bits as 32 hex digits.
pub fn random_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// What [`request_context`] needs to know about the service (its state).
#[derive(Clone)]
pub struct RequestContext {
    service: &'static str,
    metrics: HttpMetrics,
    new_request_id: fn() -> String,
    served_by: bool,
}

impl RequestContext {
    /// For the service called `service` (its problem types; its `X-Served-By`), counting in
    /// `metrics`; new request ids are [`random_request_id`]s.
    pub fn new(service: &'static str, metrics: HttpMetrics) -> Self {
        RequestContext {
            service,
            metrics,
            new_request_id: random_request_id,
            served_by: true,
        }
    }

    /// New request ids are made by `new` (the auth-service's are UUIDs).
    pub fn request_ids(mut self, new: fn() -> String) -> Self {
        self.new_request_id = new;
        self
    }

    /// No `X-Served-By` (only the services a route is split between need to say who answered).
    pub fn without_served_by(mut self) -> Self {
        self.served_by = false;
        self
    }
}

/// Runs around every request. Order matters: the id is settled first so that every log line
/// of the request (inside the span) and every problem body carries it; metrics and the
/// access line come last, when the status is known.
pub async fn request_context(
    State(ctx): State<RequestContext>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let request_id = request_id_from(req.headers(), ctx.new_request_id);
    let method = req.method().clone();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let span = crate::telemetry::request_span(
        method.as_str(),
        req.uri().path(),
        matched.as_deref(),
        &request_id,
        req.headers(),
    );

    let mut resp = next.run(req).instrument(span.clone()).await;

    if let Some(problem) = resp.extensions_mut().remove::<Problem>() {
        resp = problem.render(ctx.service, Some(&request_id), resp);
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    if ctx.served_by {
        headers.insert(SERVED_BY_HEADER, HeaderValue::from_static(ctx.service));
    }

    // Metrics label by route template, never by raw path (bounded label values).
    let route = matched.as_deref().unwrap_or("unmatched");
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    ctx.metrics.record(route, method.as_str(), status, elapsed);
    crate::telemetry::record_status(&span, status);
    span.in_scope(|| {
        tracing::info!(
            request_id = %request_id,
            route = %route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_follow_the_gateways_rule() {
        assert!(is_well_formed_request_id("abc-123_x.y"));
        assert!(is_well_formed_request_id("rid:1+2"));
        assert!(!is_well_formed_request_id(""));
        assert!(!is_well_formed_request_id("has space"));
        assert!(!is_well_formed_request_id(&"a".repeat(129)));
        assert!(is_well_formed_request_id(&"a".repeat(128)));
    }

    #[test]
    fn an_incoming_id_is_kept_only_when_well_formed() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("rid-1"));
        assert_eq!(request_id_from(&headers, random_request_id), "rid-1");
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("bad id"));
        let made = request_id_from(&headers, random_request_id);
        assert_eq!(made.len(), 32);
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
        assert_eq!(request_id_from(&HeaderMap::new(), || "x".into()), "x");
    }
}
