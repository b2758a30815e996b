//! # service-kit
//!
//! The shell of the Rust services behind the gateway — the auth-service and the services
//! extracted from the monolith (`backends/notifications`, `backends/payments`) — written once,
//! so that each service keeps only its domain.
//!
//! ## Module map
//! | module | what | used by |
//! |---|---|---|
//! | [`http`] | the middleware around every request: request id in and out, the request span, `X-Served-By`, problem bodies stamped with service and request id, metrics, the access log line | all |
//! | [`problem`] | RFC 9457 problems and [`problem_type`], the one place a problem `type` is made | all |
//! | [`json`] | [`JsonBody`]: a JSON body extractor whose rejections become the service's own errors | all |
//! | [`metrics`] | `<prefix>_http_requests_total`, `<prefix>_http_request_duration_seconds` | all |
//! | [`telemetry`] | JSON logs, the request span continuing the caller's W3C trace, OTLP export | all |
//! | [`serve`] | the listener, the ready line, graceful shutdown | all |
//! | [`identity`] | [`Caller`]: the identity the gateway passed, believed from [`TrustedPeers`] only | the extracted services |
//! | [`store`] | a bounded, newest-first in-memory [`Store`] | the extracted services |
//! | [`shell`] | an extracted service from its [`ServiceSpec`]: state, router, command line, `main` | the extracted services |
//! | `testing` | (feature `testing`) `oneshot` requests and answers for the services' tests | their tests |
//!
//! Layering: `shell` uses the others; `http` uses `problem`, `metrics` and `telemetry`; `json`
//! and `identity` use `problem`; `problem`, `metrics`, `telemetry`, `serve` and `store` use
//! nothing here. Nothing here knows a service's domain. The auth-service uses everything but
//! `identity`, `store` and `shell`: it keeps its own router, state and error enum (whose
//! `IntoResponse` makes a [`Problem`]).
//!
//! ## Problem types
//! Every error answer is `application/problem+json` whose `type` is
//! **`urn:problem-type:<service>:<slug>`**: `<service>` is the name the service answers as
//! (`auth-service`, `notifications`, `payments`; the Django monolith's is `monolith`), `<slug>`
//! the kind of error in kebab case (`not-found`, `validation-failed`, `email-taken`). One scheme
//! for every service, so a client or a dashboard tells errors apart by one rule; the gateway's own
//! answers are `urn:problem-type:gateway:<slug>` (`gateway::respond`). A handler
//! builds a [`Problem`] with a slug only; [`http::request_context`] adds the service's name
//! through [`problem_type`].

pub mod http;
pub mod identity;
pub mod json;
pub mod metrics;
pub mod problem;
pub mod serve;
pub mod shell;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use identity::{Caller, TrustedPeers};
pub use json::JsonBody;
pub use problem::{FieldError, Problem, problem_type};
pub use shell::ServiceSpec;
pub use store::Store;
