//! The HTTP surface: [`app`], the router. Routes, fallbacks and the middleware every request
//! goes through, outermost first, and why:
//!
//! 1. service-kit's [`request_context`]: assigns the request id first so every later log line
//!    and error carries it; measures the whole request (including body-limit rejections) for
//!    metrics and the access log; renders problem bodies with the service's name and the
//!    request id and sets the `X-Request-ID` response header. Added with `Router::layer` after
//!    the routes, so the matched route template is known to it: metrics label by template,
//!    never by raw path.
//! 2. `DefaultBodyLimit` (64 KiB): bodies are tiny JSON documents.
//! 3. the routes ([`crate::handlers`]), and [`AppError`] answers for unknown paths and methods.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use service_kit::http::{RequestContext, request_context};

use crate::error::AppError;
use crate::handlers;
use crate::state::AppState;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The service's router.
pub fn app(state: AppState) -> Router {
    let context = RequestContext::new(crate::SERVICE, state.metrics.http.clone())
        .request_ids(crate::random::new_id)
        .without_served_by();
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
        .fallback(|| async { AppError::NotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(context, request_context))
        .with_state(state)
}
