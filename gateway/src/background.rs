//! The gateway's background services: each reads the shared [`crate::state::Shared`] (always
//! the *current* runtime, so it follows reloads) and runs as a pingora background service until
//! shutdown. They sit above the state they read: nothing below imports them; [`crate::server`]
//! starts them.
//!
//! | service | does |
//! |---|---|
//! | [`Reloader`] | watches the config file's directory (debounced) and SIGHUP; validates and swaps |
//! | [`HealthChecker`] | runs every due active health check; nudges lazy breaker transitions |
//! | [`JwksRefresher`] | keeps the active config's JWKS fresh (readiness waits for the first) |
//!
//! The telemetry exporters (OTLP spans, the access log) are not here: they read no state, only
//! the queues the request path fills; [`crate::observability`] starts them with the process.

mod health_checks;
mod jwks_refresh;
mod reloader;

pub use health_checks::HealthChecker;
pub use jwks_refresh::JwksRefresher;
pub use reloader::Reloader;
