//! `notifications`: the seed's NotificationService, the first service extracted from the Django
//! monolith. It serves the same API as the monolith's `notifications` app (see [`api`]), behind
//! the gateway, which verifies the caller's JWT and passes the identity as headers.
//!
//! | module | what |
//! |---|---|
//! | [`api`] | the handlers: create, list, health, metrics |
//! | [`store`] | bounded in-memory storage (newest 10,000 by default) |
//! | [`http`] | request ids, `X-Served-By`, identity from trusted peers, problem+json |
//! | [`metrics`] | `notifications_http_requests_total`, `notifications_http_request_duration_seconds` |
//!
//! Run it / curl it:
//!
//! ```text
//! cargo run -p notifications -- --listen 127.0.0.1:8002
//! curl -s localhost:8002/api/notifications/ -H 'X-User-Id: service:me' -H 'X-User-Roles: service' \
//!      -H 'content-type: application/json' -d '{"user_id":"u1","kind":"hello","message":"hi"}'
//! curl -s localhost:8002/api/notifications/ -H 'X-User-Id: u1'
//! ```

pub mod api;
pub use service_kit::{http, metrics};
pub mod store;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

use crate::http::TrustedPeers;
use crate::metrics::HttpMetrics;
use crate::store::Store;

/// The name in `X-Served-By`, metric names and problem types.
pub const SERVICE: &str = "notifications";
/// Where it listens unless told otherwise (`--listen` / `NOTIFICATIONS_LISTEN`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8002";

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub trusted: TrustedPeers,
    pub metrics: HttpMetrics,
}

impl AppState {
    pub fn new(capacity: usize, trusted: TrustedPeers) -> Result<Self, prometheus::Error> {
        Ok(AppState {
            store: Arc::new(Store::new(capacity)),
            trusted,
            metrics: HttpMetrics::new(SERVICE)?,
        })
    }
}

impl FromRef<AppState> for TrustedPeers {
    fn from_ref(state: &AppState) -> Self {
        state.trusted.clone()
    }
}

impl FromRef<AppState> for HttpMetrics {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/notifications/", get(api::list).post(api::create))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            http::request_context,
        ))
        .with_state(state)
}
