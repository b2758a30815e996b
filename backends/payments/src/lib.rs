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
//! This crate is the service's domain only; the shell (state, router with `/healthz` and
//! `/metrics`, request ids, `X-Served-By`, problem+json, identity from trusted peers, metrics,
//! logs, the command line, serving) is `service_kit::shell`, driven by [`Payments`].
//!
//! | module | what |
//! |---|---|
//! | [`api`] | the handlers: capture, list; amounts parsed like the monolith's |
//! | [`store`] | what is stored: [`store::Payment`] (newest 10,000 by default), money in cents |
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
pub mod store;

use axum::Router;
use axum::routing::get;
use service_kit::ServiceSpec;

pub use service_kit::shell::app;

/// The service, as the shell sees it.
pub struct Payments;

pub type AppState = service_kit::shell::AppState<Payments>;

impl ServiceSpec for Payments {
    const NAME: &'static str = "payments";
    const ABOUT: &'static str = "The payments service: the canary side of the payments split";
    const DEFAULT_LISTEN: &'static str = "127.0.0.1:8003";
    const LISTEN_ENV: &'static str = "PAYMENTS_LISTEN";
    const CAPACITY_ENV: &'static str = "PAYMENTS_CAPACITY";
    type Record = store::Payment;

    fn routes() -> Router<AppState> {
        Router::new().route("/api/payments/", get(api::list).post(api::capture))
    }
}
