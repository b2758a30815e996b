//! # gateway
//!
//! The edge for a monolith-to-microservices migration: a pingora reverse proxy driven by YAML
//! routes, reloaded safely while it serves.
//!
//! ## Module map
//! | module | owns |
//! |---|---|
//! | [`config`] | YAML → raw structs → validated model, with `file:line:col` errors |
//! | [`path`] | request path normalisation (what is matched is what is forwarded) |
//! | [`routing`] | the route table and its precedence rule, prefix rewriting |
//! | [`upstream`] | targets, load balancing, peer timeouts, weighted sticky splits |
//! | [`breaker`] | per-target circuit breaker: closed / open / half-open, paused-time tested |
//! | [`retry_budget`] | caps retries to a fraction of live traffic (plus a floor) |
//! | [`forwarding`] | client IP through `trusted_proxies`, `X-Forwarded-*` |
//! | [`request_id`] | `X-Request-ID` validation and generation |
//! | [`auth`] | JWT validation (RFC 8725) against the JWKS, token cache, identity headers |
//! | [`ratelimit`] | named GCRA policies: `governor` in memory or a Lua script in Redis, the IETF fields |
//! | [`respond`] | the one error type and its problem+json response |
//! | [`proxy`] | the pingora phases; each delegates to the modules above |
//! | [`state`] | the active runtime behind `ArcSwap`, reload, in-flight tracking |
//! | [`reload`] | file watching (directory-level, debounced) and SIGHUP |
//! | [`admin`] | `/healthz`, `/readyz`, `/metrics`, `/admin/config`, `/admin/routes` |
//! | [`metrics`] | every metric, registered once |
//! | [`hex`] | lowercase hex for ids on the request path |
//! | [`observability`] | traceparent, server/client spans exported over OTLP, the JSON access log |
//! | [`tls`] | the TLS listener's certificate, swapped on reload |
//! | [`explain`] | `gateway explain` |
//! | [`server`] | wiring the pingora server together |
//!
//! ## The request path
//! ```text
//! request_filter ── request id ─ server span (traceparent) ─ framing check ─ normalise path ─ route ─ authenticate ─ rate-limit ──(reject: problem+json)
//!      │
//! upstream_peer ─── split side (weights, sticky key) ─ target (round robin / random) ─ client span per attempt
//!      │
//! upstream_request_filter ─ rewrite path ─ X-Forwarded-* ─ X-Request-ID ─ traceparent ─ identity headers
//!      │
//! upstream_response_filter ─ breaker outcome ─ upstream duration
//!      │
//! response_filter ─ X-Request-ID, RateLimit fields   fail_to_proxy ─ 502 / 504 / 503 problem+json
//!      │
//! logging ─ span end ─ access log ─ metrics
//! ```

pub mod admin;
pub mod auth;
pub mod breaker;
pub mod config;
pub mod explain;
pub mod forwarding;
pub mod health;
pub mod hex;
pub mod metrics;
pub mod observability;
pub mod path;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod request_id;
pub mod respond;
pub mod retry_budget;
pub mod routing;
pub mod server;
pub mod state;
pub mod tls;
pub mod upstream;
