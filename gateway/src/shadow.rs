//! Shadow traffic with verdicts (issue 19; groundwork: the plain-data parts). A route's copy
//! of a request goes to a candidate upstream, and its answer is compared with the primary's.
//! These modules decide and count, from plain data; the proxy side (teeing the request,
//! sending the copy, capturing the primary's answer) is not written yet.
//!
//! | module | owns |
//! |---|---|
//! | [`pointer`](mod@pointer) | JSON Pointers and the `*` patterns of `ignore`, `unordered`, `redact` |
//! | [`compare`] | a route's `compare:` settings and where two answers differ: status, headers, JSON pointers (ignore, unordered, decimal numbers), bounded |
//! | [`verdicts`] | a comparison's verdict (noise learned from primary-vs-primary), per-route counts, parity with its Wilson bound, top differing pointers, the redacted mismatch ring, the admin views |

//!
//! ## What is left, and the plan (for the next session)
//! 1. **Config**: a route's `shadow:` block (issue 19's shape) → a `ShadowSpec` in
//!    `config/model.rs` holding a [`compare::CompareSpec`], the sample share, methods, `writes:
//!    off | dry_run`, `max_body`, `max_response`, `timeout`, `max_in_flight`, `noise`,
//!    `record: { mismatches, redact }` (→ [`verdicts::Limits`] and the redact patterns, parsed
//!    with [`pointer::Pattern::parse`], errors at their field). Not accepted before the proxy
//!    side works: a block that silently did nothing would mislead.
//! 2. **Runtime**: per shadowed route a `verdicts::RouteStats` (kept across a reload only while
//!    the compare settings are unchanged), a semaphore of `max_in_flight`, and a client of its
//!    own for the candidate (its own pool, breaker and deadline; never the primary's breaker,
//!    retry budget or rate limits).
//! 3. **Proxy** (pingora 0.9 hooks, checked in pingora-proxy's `proxy_trait.rs` and
//!    `proxy_h1.rs`): decide the copy in `request_filter` after admission (method, sample,
//!    `Content-Length` against `max_body`, a semaphore permit, else
//!    `gateway_shadow_skipped_total{route,reason}`); tee the body in `request_body_filter`
//!    (it sees each chunk as it is read; a retry replays pingora's buffer, so tee only the
//!    first pass, by counting bytes); start the copy when the request head is known (GETs) or
//!    the body ends, with the primary's `X-Request-ID`, identity headers, `X-Gateway-Shadow: 1`
//!    (`dry-run` for writes) and a client span in the same trace; capture the primary's answer
//!    in `response_body_filter` up to `max_response` (bytes are copied, the client's stream is
//!    untouched); when both are in (a spawned task, never on the client's path), `compare`,
//!    `classify`, count `gateway_shadow_requests_total{route,result}` and
//!    `gateway_shadow_duration_seconds{route,side}`. The `noise` share sends the request to the
//!    primary a second time (GET/HEAD only) and feeds `RouteStats::learn_noise`.
//! 4. **Admin**: `GET /admin/shadow` ([`verdicts::shadow_view`]) and
//!    `GET /admin/shadow/ROUTE/mismatches` ([`verdicts::RouteStats::mismatches`]).
//! 5. **Tests with real processes** (issue 19 item 6), the migration dashboard's parity and
//!    latency-delta panels, the stack's payments shadow, and a `bench/` scenario with a shadow
//!    that sleeps 3 s (the client's p99 against a run without).

pub mod compare;
pub mod pointer;
pub mod verdicts;
