//! # gateway
//!
//! The edge for a monolith-to-microservices migration: a pingora reverse proxy driven by YAML
//! routes, reloaded safely while it serves.
//!
//! ## Module map, in layers
//! A module imports only from the layers above its own row in this table, never from its own
//! row or below, so the crate has no import cycles (a unit test below checks every
//! `use crate::…` against this table, with `testkit::layers`). Plain data and decisions sit at the top; whatever
//! reads the shared state (the proxy, the admin listener, the background services) sits at the
//! bottom, above only `server`, which wires it all.
//!
//! | layer | module | owns |
//! |---|---|---|
//! | 0 leaves | [`hex`] | lowercase hex for ids on the request path |
//! | | [`seconds`] | whole seconds for `Retry-After` and the `RateLimit` fields, rounded up |
//! | | [`path`] | request path normalisation (what is matched is what is forwarded) |
//! | | [`request_head`] | the HTTP/1 request head and request-target, checked strictly before pingora parses them |
//! | | [`forwarding`] | client IP through `trusted_proxies`, `X-Forwarded-*` |
//! | | [`tls`] | the TLS listener's certificate, swapped on reload |
//! | | [`breaker`] | per-target circuit breaker: closed / open / half-open, paused-time tested |
//! | | [`shadow`] | shadow traffic's plain-data parts: JSON Pointer patterns, comparison, verdicts, the admin views |
//! | | [`split`] | a key's fixed position in the split space, and the side whose contiguous share holds it |
//! | 1 | [`request_id`] | `X-Request-ID` validation and generation |
//! | | [`retry_budget`] | caps retries to a fraction of live traffic (plus a floor) |
//! | | [`migration`] | a route's migration plan as plain data: stages, the paired guard over both sides' sliding window (p99 buckets), the decision and every transition, the admin view (above `config`, which builds its [`migration::Plan`]) |
//! | 2 config | [`config`] | YAML → raw structs → validated model, with `file:line:col` errors |
//! | 3 decisions | [`failover`] | after a failed attempt: retry, fall back or answer; the fallback's rules and the total timeout, as plain data |
//! | 4 domain | [`metrics`] | every metric, registered once; series set up and removed here |
//! | | [`routing`] | the route table and its precedence rule, prefix rewriting |
//! | | [`health`] | one target's active-health state and its probe |
//! | | [`cohort`] | placing a request in a cohort (pin cookie, keys, position) and the side of a percent split |
//! | 5 | [`upstream`] | targets, load balancing, peer timeouts, weighted sticky splits |
//! | | [`auth`] | JWT validation (RFC 8725) against the JWKS, token cache, identity headers |
//! | | [`observability`] | traceparent, server/client spans exported over OTLP, the JSON access log |
//! | 6 | [`mirror`] | shadow traffic at run time: which requests are copied, the copies sent through their own client and breakers, captured and judged beside the request |
//! | | [`ratelimit`] | named GCRA policies: `governor` in memory or a Lua script in Redis, the IETF fields; its own error |
//! | | [`sticky`] | a request's value for a split key (header, cookie, client IP, claim): what the proxy and `explain` place by |
//! | 7 | [`respond`] | the one error type (wrapping auth's and rate limiting's) and its problem+json response |
//! | | [`explain`] | `gateway explain` |
//! | | [`state`] | the active runtime behind `ArcSwap`, reload, in-flight tracking, what a config needs of this machine |
//! | 8 readers of state | [`proxy`] | the pingora phases; each delegates to the modules above |
//! | | [`admin`] | `/healthz`, `/readyz`, `/metrics`, `/admin/config`, `/admin/routes`, `/admin/upstreams`, `/admin/cohorts`, `/admin/shadow` |
//! | | [`background`] | the reloader (file watch, SIGHUP), the health checker, the JWKS refresher |
//! | 9 | [`edge`] | the HTTP/1 connection loop around the proxy: each request head checked (`request_head`) before pingora reads it |
//! | 10 | [`server`] | wiring the pingora server together |
//!
//! ## The request path
//! ```text
//! edge ─── read the head ─ request_head::scan ──(refuse: problem+json, close) ─ hand the bytes to pingora
//!      │
//! request_filter ── request id ─ server span (traceparent) ─ framing check ─ normalise path ─ route ─ authenticate ─ rate-limit ──(reject: problem+json)
//!      │             └─ admitted, on a shadowed route: plan a copy (mirror), sent through its own client beside the request, the body teed, the answer kept, judged in a task
//!      │
//! upstream_peer ─── split side (weights or cohort: pin, key, position) ─ failover's side and backoff ─ target (round robin / random) ─ client span per attempt
//!      │
//! upstream_request_filter ─ rewrite path ─ X-Forwarded-* ─ X-Request-ID ─ traceparent ─ identity headers
//!      │
//! upstream_response_filter ─ breaker outcome ─ upstream duration ─ a failure answer the fallback takes: drop and replay
//!      │
//! response_filter ─ X-Request-ID, X-Gateway-Fallback, pin Set-Cookie, RateLimit fields   fail_to_proxy ─ 502 / 504 / 503 problem+json
//!      │
//! logging ─ span end ─ access log ─ metrics
//! ```

pub mod admin;
pub mod auth;
pub mod background;
pub mod breaker;
pub mod cohort;
pub mod config;
pub mod edge;
pub mod explain;
pub mod failover;
pub mod forwarding;
pub mod health;
pub mod hex;
pub mod metrics;
pub mod migration;
pub mod mirror;
pub mod observability;
pub mod path;
pub mod proxy;
pub mod ratelimit;
pub mod request_head;
pub mod request_id;
pub mod respond;
pub mod retry_budget;
pub mod routing;
pub mod seconds;
pub mod server;
pub mod shadow;
pub mod split;
pub mod state;
pub mod sticky;
pub mod tls;
pub mod upstream;

#[cfg(test)]
mod tests {
    #[test]
    fn modules_import_only_from_the_layers_above_theirs() {
        testkit::layers::assert_layered(env!("CARGO_MANIFEST_DIR"));
    }
}
