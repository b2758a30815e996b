//! `payments`: the payments app being extracted from the Django monolith. The gateway sends a
//! weighted, sticky share of `/api/payments/` here (the canary) and the rest to the monolith; both
//! serve the same API (see [`api`]), and every answer says who served it (`served_by` in the
//! body, `X-Served-By` in the headers), so the split is visible from outside.
//!
//! Known difference during the canary: the monolith checks that the order exists and belongs to
//! the caller and marks it paid; this service cannot see orders yet (they live in the monolith's
//! database), so it records the capture only. Reconciling captures into the monolith is the next
//! step of the extraction.
//!
//! | module | what |
//! |---|---|
//! | [`api`] | the handlers: capture, list, health, metrics |
//! | [`store`] | bounded in-memory storage (newest 10,000 by default), money in cents |
//! | [`http`] | request ids, `X-Served-By`, identity from trusted peers, problem+json |
//! | [`metrics`] | `payments_http_requests_total`, `payments_http_request_duration_seconds` |
//!
//! Run it / curl it:
//!
//! ```text
//! cargo run -p payments -- --listen 127.0.0.1:8003
//! curl -s localhost:8003/api/payments/ -H 'X-User-Id: u1' -H 'content-type: application/json' \
//!      -d '{"order_id": 1, "amount": "12.50"}'
//! curl -s localhost:8003/api/payments/ -H 'X-User-Id: u1'
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
pub const SERVICE: &str = "payments";
/// Where it listens unless told otherwise (`--listen` / `PAYMENTS_LISTEN`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8003";

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
        .route("/api/payments/", get(api::list).post(api::capture))
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
