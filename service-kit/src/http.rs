//! HTTP plumbing shared by the extracted services (`backends/notifications`,
//! `backends/payments`); the service's own name comes from [`HttpMetrics::service`]:
//!
//! - [`request_context`]: the middleware around every request: request id in and out,
//!   `X-Served-By`, the access log line, metrics, problem bodies stamped with the request id;
//! - [`Caller`]: the identity the gateway passed (`X-User-Id`, `X-User-Email`, `X-User-Roles`),
//!   believed only from a peer in [`TrustedPeers`];
//! - [`Problem`]: every error as RFC 9457 `application/problem+json`;
//! - [`JsonBody`]: a JSON body extractor whose rejections are [`Problem`]s.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{
    ConnectInfo, FromRef, FromRequest, FromRequestParts, MatchedPath, Request, State,
};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde::Serialize;
use tracing::Instrument;

use crate::metrics::HttpMetrics;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const SERVED_BY_HEADER: &str = "x-served-by";
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the request being served (set by [`request_context`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A well-formed incoming id (1-128 characters of `[A-Za-z0-9._:+-]`, the gateway's rule) is
/// kept; anything else is replaced by a new random one.
pub fn request_id_from(headers: &HeaderMap) -> RequestId {
    let incoming = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_well_formed_request_id(v));
    RequestId(incoming.map_or_else(new_request_id, str::to_string))
}

pub fn is_well_formed_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'+'))
}

fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Runs around every request. Order matters: the id is settled first so that every log line
/// of the request (inside the span) and every problem body carries it; metrics and the
/// access line come last, when the status is known.
pub async fn request_context(
    State(metrics): State<HttpMetrics>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let request_id = request_id_from(req.headers());
    req.extensions_mut().insert(request_id.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let span = crate::telemetry::request_span(
        method.as_str(),
        &path,
        Some(&route),
        &request_id.0,
        req.headers(),
    );

    let mut resp = next.run(req).instrument(span.clone()).await;

    if let Some(problem) = resp.extensions_mut().remove::<Problem>() {
        resp = problem.render(metrics.service(), Some(&request_id.0), resp);
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id.0) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    headers.insert(
        SERVED_BY_HEADER,
        HeaderValue::from_static(metrics.service()),
    );

    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    metrics.record(&route, method.as_str(), status, elapsed);
    crate::telemetry::record_status(&span, status);
    span.in_scope(|| {
        tracing::info!(
            request_id = %request_id.0,
            route = %route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    resp
}

/// Networks whose identity headers are believed: the gateway and sibling services.
#[derive(Debug, Clone)]
pub struct TrustedPeers(Arc<[IpNet]>);

impl TrustedPeers {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedPeers(nets.into())
    }

    /// `127.0.0.1/32` and `::1/128`: a gateway on the same host.
    pub fn loopback() -> Self {
        Self::parse("127.0.0.1/32,::1/128").unwrap_or_else(|_| TrustedPeers::new(Vec::new()))
    }

    /// Comma-separated CIDRs or bare addresses (`10.0.0.0/8, 127.0.0.1`).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an IP address or CIDR"))?;
            nets.push(net);
        }
        Ok(TrustedPeers::new(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

/// The caller, as the gateway verified it. Extracting it fails with 401 when the request has
/// no identity, or when the identity headers come from a peer outside [`TrustedPeers`] (any
/// client can write them; only the gateway's copies are believed, and the gateway strips the
/// client's). A `oneshot` request without connect info counts as untrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `X-User-Id`: the token's `sub` (a UUID for users; `service:NAME` for services).
    pub subject: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn has_any_role(&self, roles: &[&str]) -> bool {
        roles.iter().any(|r| self.has_role(r))
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    TrustedPeers: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        let Some(subject) = headers.get("x-user-id") else {
            return Err(Problem::unauthorized(
                "no identity: call through the gateway with a token",
            ));
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if !peer.is_some_and(|ip| TrustedPeers::from_ref(state).contains(ip)) {
            tracing::warn!(peer = ?peer, "ignored identity headers from an untrusted peer");
            return Err(Problem::unauthorized(
                "no identity: call through the gateway with a token",
            ));
        }
        let subject = subject
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|s| is_valid_subject(s))
            .ok_or_else(|| Problem::unauthorized("X-User-Id is not a valid subject"))?;
        let email = match headers.get("x-user-email").map(|v| v.to_str()) {
            None => None,
            Some(Ok(v)) if v.trim().is_empty() => None,
            Some(Ok(v)) => Some(v.trim().to_string()),
            Some(Err(_)) => return Err(Problem::unauthorized("X-User-Email is not valid text")),
        };
        let roles = match headers.get("x-user-roles").map(|v| v.to_str()) {
            None => Vec::new(),
            Some(Ok(v)) => parse_roles(v)
                .ok_or_else(|| Problem::unauthorized("X-User-Roles holds a malformed role"))?,
            Some(Err(_)) => return Err(Problem::unauthorized("X-User-Roles is not valid text")),
        };
        Ok(Caller {
            subject: subject.to_string(),
            email,
            roles,
        })
    }
}

/// Subjects: 1-128 characters of `[A-Za-z0-9._:@|+-]` (OIDC leaves `sub` opaque).
pub fn is_valid_subject(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@|+-".contains(&b))
}

/// `"user, admin"` → `["user", "admin"]`; `None` when a role is malformed.
pub fn parse_roles(raw: &str) -> Option<Vec<String>> {
    let mut roles: Vec<String> = Vec::new();
    for role in raw.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let ok = role.len() <= 64
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !ok {
            return None;
        }
        if !roles.iter().any(|r| r == role) {
            roles.push(role.to_string());
        }
    }
    Some(roles)
}

/// One field's complaint in a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem: `{"type": "urn:problem-type:<service>:<slug>", "title", "status",
/// "detail", "request_id"}`, plus `errors: [{field, message}]` on 422. The same shape as the
/// monolith's and the auth-service's errors.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            slug,
            title,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this method is not allowed on this path",
        )
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send JSON with Content-Type: application/json",
        )
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            "Invalid input",
            "the request body is invalid",
        );
        p.errors = errors;
        p
    }

    fn body(&self, service: &str, request_id: Option<&str>) -> serde_json::Value {
        let mut body = serde_json::json!({
            "type": format!("urn:problem-type:{service}:{}", self.slug),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "request_id": request_id,
        });
        if !self.errors.is_empty() {
            body["errors"] = serde_json::json!(self.errors);
        }
        body
    }

    /// The response for this problem, keeping `resp`'s extra headers.
    fn render(&self, service: &str, request_id: Option<&str>, resp: Response) -> Response {
        let (mut parts, _) = resp.into_parts();
        let bytes = serde_json::to_vec(&self.body(service, request_id)).unwrap_or_default();
        parts.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        Response::from_parts(parts, axum::body::Body::from(bytes))
    }
}

impl IntoResponse for Problem {
    /// Rendered without the service name and request id here; [`request_context`] (on every
    /// route of the services) re-renders it with both.
    fn into_response(self) -> Response {
        let mut resp = self.status.into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api\""),
            );
        }
        let mut resp = self.render("service", None, resp);
        resp.extensions_mut().insert(self);
        resp
    }
}

/// `Json<T>` whose rejections are problems: 415 without a JSON content type, 400 for bytes
/// that are not JSON, 422 for JSON of the wrong shape.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Problem::unsupported_media_type()),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(Problem::validation(vec![FieldError::new(
                    "",
                    e.body_text(),
                )]))
            }
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

/// 404 for unknown paths, as a problem.
pub async fn not_found(req: Request) -> Problem {
    Problem::not_found(format!("no route for {}", req.uri().path()))
}

/// 405 for known paths with another method, as a problem.
pub async fn method_not_allowed() -> Problem {
    Problem::method_not_allowed()
}
