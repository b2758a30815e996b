//! What every extracted Rust service behind the gateway needs, written once:
//!
//! - [`http`]: the request middleware (request id in and out, `X-Served-By`, access log line,
//!   metrics), the caller's identity from the gateway's headers (trusted peers only), RFC 9457
//!   problems, a JSON extractor whose rejections are problems;
//! - [`metrics`]: `<service>_http_requests_total` and `<service>_http_request_duration_seconds`;
//! - [`serve`]: the ready line, graceful shutdown;
//! - [`telemetry`]: JSON logs, the request span continuing the caller's W3C trace, OTLP export.
//!
//! Used by `backends/notifications`, `backends/payments` and the auth-service.

pub mod http;
pub mod metrics;
pub mod serve;
pub mod telemetry;
