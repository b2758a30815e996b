//! The HTTP surface: [`app`] (the router), the middleware every request goes through, and the
//! small extractors the handlers share.
//!
//! Order, outermost first, and why:
//! 1. [`observe`]: assigns the request id first so every later log line and error carries it;
//!    measures the whole request (including body-limit rejections) for metrics and the access
//!    log; adds the request id to problem bodies and the `X-Request-ID` response header.
//! 2. `DefaultBodyLimit` (64 KiB): bodies are tiny JSON documents.
//! 3. the routes, with [`remember_route`] as a route layer: only after routing is the matched
//!    route template known, and metrics must label by template, never by raw path.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::error::{AppError, Problem};
use crate::handlers;
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The service's router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/auth/register", post(handlers::register))
        .route("/api/auth/login", post(handlers::login))
        .route("/api/auth/refresh", post(handlers::refresh))
        .route("/api/auth/logout", post(handlers::logout))
        .route("/api/auth/me", get(handlers::me))
        .route("/.well-known/jwks.json", get(handlers::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(handlers::openid_configuration),
        )
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .route_layer(middleware::from_fn(remember_route))
        .fallback(|| async { AppError::NotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The request id of the current request (in the request's extensions).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The matched route template, carried from the route layer out to [`observe`].
#[derive(Debug, Clone)]
struct RouteLabel(String);

/// A well-formed incoming request id: the gateway's rule (1–128 characters of
/// `[A-Za-z0-9._:+-]`), so an id the gateway kept is kept here too.
pub fn valid_request_id(s: &str) -> bool {
    service_kit::http::is_well_formed_request_id(s)
}

async fn remember_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let mut resp = next.run(req).await;
    if let Some(route) = route {
        resp.extensions_mut().insert(RouteLabel(route));
    }
    resp
}

async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| valid_request_id(s))
        .map(str::to_string)
        .unwrap_or_else(crate::db::new_id);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().as_str().to_string();
    let span = service_kit::telemetry::request_span(
        &method,
        req.uri().path(),
        None,
        &request_id,
        req.headers(),
    );

    let mut resp = next.run(req).instrument(span.clone()).await;

    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map_or_else(|| "unmatched".to_string(), |r| r.0.clone());
    if route != "unmatched" {
        service_kit::telemetry::record_route(&span, &method, &route);
    }
    if let Some(problem) = resp.extensions_mut().remove::<Problem>() {
        resp = problem.with_request_id(&request_id, resp);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let m = &state.metrics;
    m.http_requests
        .with_label_values(&[route.as_str(), method.as_str(), &status.to_string()])
        .inc();
    m.http_request_duration
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(elapsed.as_secs_f64());
    service_kit::telemetry::record_status(&span, status);
    span.in_scope(|| {
        tracing::info!(
            route = %route,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    resp
}

/// The socket peer, when the server runs with connect info (it does; `oneshot` tests may not).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// The client's address: the socket peer, or — only when the peer is a trusted proxy — the
/// `X-Forwarded-For` chain walked from the right past trusted proxies. An unknown peer is
/// `0.0.0.0` (never trusted).
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&canonical(*ip)));
    let Some(mut ip) = peer.map(canonical) else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    if !is_trusted(&ip) {
        return ip;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for hop in hops.into_iter().rev() {
        let parsed = hop
            .parse::<IpAddr>()
            .ok()
            .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()));
        match parsed {
            Some(h) => {
                ip = canonical(h);
                if !is_trusted(&ip) {
                    return ip;
                }
            }
            None => return ip,
        }
    }
    ip
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// JSON body extractor whose rejections are [`AppError`]s: 415 without a JSON content type,
/// 413 over the body limit, 400 for malformed JSON, 422 naming the field for a wrong shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::BadRequest(e.body_text())
            }
        })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(ApiJson)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    AppError::BadRequest(format!("invalid JSON: {inner}"))
                } else {
                    let field = if path == "." {
                        "body".to_string()
                    } else {
                        path
                    };
                    AppError::validation(&field, inner.to_string())
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn client_ip_trusts_forwarded_for_only_from_trusted_proxies() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        // Untrusted peer: its XFF is ignored.
        assert_eq!(
            client_ip(Some(outsider), &xff("1.2.3.4"), &trusted),
            outsider
        );
        // Trusted peer: walk from the right past trusted hops.
        assert_eq!(
            client_ip(
                Some(local),
                &xff("1.2.3.4, 198.51.100.7, 10.1.1.1"),
                &trusted
            )
            .to_string(),
            "198.51.100.7"
        );
        // Everything trusted: the leftmost.
        assert_eq!(
            client_ip(Some(local), &xff("10.0.0.5"), &trusted).to_string(),
            "10.0.0.5"
        );
        // No header: the peer.
        assert_eq!(client_ip(Some(local), &HeaderMap::new(), &trusted), local);
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client_ip(Some(local), &xff("1.2.3.4, bogus"), &trusted),
            local
        );
        // IPv4-mapped IPv6 peers are treated as IPv4.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(Some(mapped), &xff("192.0.2.1"), &trusted).to_string(),
            "192.0.2.1"
        );
        assert_eq!(
            client_ip(None, &xff("192.0.2.1"), &trusted).to_string(),
            "0.0.0.0"
        );
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id("abc-123_x.y"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("has space"));
        assert!(!valid_request_id(&"a".repeat(129)));
        assert!(valid_request_id(&"a".repeat(128)));
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc.def"),
        );
        assert_eq!(bearer_token(&h), Some("abc.def"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }
}
