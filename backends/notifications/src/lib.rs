//! `notifications`: the seed's NotificationService, the first service extracted from the Django
//! monolith. It serves the same API as the monolith's `notifications` app (see [`api`]), behind
//! the gateway, which verifies the caller's JWT and passes the identity as headers.
//!
//! This crate is the service's domain only; the shell (state, router with `/healthz` and
//! `/metrics`, request ids, problem+json, identity from trusted peers, metrics, logs, the
//! command line, serving) is `service_kit::shell`, driven by [`Notifications`].
//!
//! | module | what |
//! |---|---|
//! | [`api`] | the handlers: create, list |
//! | [`store`] | what is stored: [`store::Notification`] (newest 10,000 by default) |
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
pub mod store;

use axum::Router;
use axum::routing::get;
use service_kit::ServiceSpec;

pub use service_kit::shell::app;

/// The service, as the shell sees it.
pub struct Notifications;

pub type AppState = service_kit::shell::AppState<Notifications>;

impl ServiceSpec for Notifications {
    const NAME: &'static str = "notifications";
    const ABOUT: &'static str = "The notifications service extracted from the monolith";
    const DEFAULT_LISTEN: &'static str = "127.0.0.1:8002";
    const LISTEN_ENV: &'static str = "NOTIFICATIONS_LISTEN";
    const CAPACITY_ENV: &'static str = "NOTIFICATIONS_CAPACITY";
    type Record = store::Notification;

    fn routes() -> Router<AppState> {
        Router::new().route("/api/notifications/", get(api::list).post(api::create))
    }
}
