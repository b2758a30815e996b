//! The request path: pingora's `ProxyHttp` phases. Each phase only delegates to the modules
//! that own the logic (`routing`, `path`, `forwarding`, `upstream`, `respond`, `metrics`), which
//! never touch a `Session` and are unit-tested with plain data.
//!
//! | phase | does |
//! |---|---|
//! | `request_filter` | admit: request id → framing check → normalise path → route → authenticate → rate-limit; reject early with problem+json; then plan the route's shadow copy (`mirror`) |
//! | `upstream_peer` | choose the upstream (split weights, stickiness) and a target that is healthy and whose breaker admits it; else the route's fallback; else 503 + `Retry-After`. Each attempt: the side and backoff `failover` decided, timeouts capped by the route's `total` |
//! | `upstream_request_filter` | rewrite the path, set `X-Forwarded-*` and `X-Request-ID`, strip client identity headers (and `X-Gateway-Shadow`) and add the verified ones; the first attempt's request is the shadow copy's (sent now when it has no body), a later attempt starts its tee over |
//! | `request_body_filter` | tee the body to the shadow copy (up to `max_body`), which is sent at the body's end |
//! | `upstream_response_filter` | record the attempt's outcome on its target's breaker (5xx → failure unless configured otherwise; a `101` is a success); time to upstream headers (metric, client span); a status the fallback takes: drop the answer and replay (`failover::Attempts::on_status`) |
//! | `upstream_response_body_filter` | keep the primary's answer for the shadow comparison (up to `max_response`; the client's bytes untouched) |
//! | `response_filter` | echo `X-Request-ID`, `X-Gateway-Fallback` on the fallback's answers, add the `RateLimit-Policy` / `RateLimit` fields |
//! | `fail_to_connect` / `error_while_proxy` | close the attempt's client span with `error.type`; record breaker failures; ask `failover` what next (retry, fall back, answer) |
//! | `fail_to_proxy` | turn every error into problem+json (via `respond`) |
//! | `logging` | hand the primary's answer (or how the request ended) to the shadow copy; metrics, access log, span end (via `observability`) |

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::{self, HeaderName};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::auth::verify::Verified;
use crate::breaker::{Outcome, Permit};
use crate::config::model::{
    CohortSplit, Effective, FallbackSpec, RouteSpec, RouteTarget, StickyKey,
};
use crate::failover::{self, Failure, Next, Side};
use crate::mirror::copy::{End, ShadowCopy};
use crate::observability::access_log::Line;
use crate::observability::{self, RequestTrace, ServerFacts};
use crate::respond::{self, GatewayError};
use crate::routing::{self, RequestFacts};
use crate::state::{InFlight, Runtime, Shared};
use crate::upstream::{self, Target, Upstream};
use crate::{auth, cohort, forwarding, mirror, path, ratelimit, request_head, request_id, sticky};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static(request_id::HEADER);
static TRACEPARENT: HeaderName = HeaderName::from_static(observability::TRACEPARENT);
static TRACESTATE: HeaderName = HeaderName::from_static(observability::TRACESTATE);
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
// The spellings written on the wire. pingora keeps each header's case; inserting by a `&'static
// str` name costs no allocation for it (a `HeaderName` would be copied and title-cased).
const XFF_WIRE: &str = "X-Forwarded-For";
const XFP_WIRE: &str = "X-Forwarded-Proto";
const XFH_WIRE: &str = "X-Forwarded-Host";
const REQUEST_ID_WIRE: &str = "X-Request-ID";
const TRACEPARENT_WIRE: &str = observability::TRACEPARENT;
const TRACESTATE_WIRE: &str = observability::TRACESTATE;
const FALLBACK_WIRE: &str = "X-Gateway-Fallback";

pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn new(shared: Arc<Shared>) -> Self {
        Proxy { shared }
    }
}

/// Everything known about one request, from admission to logging.
pub struct RequestCtx {
    /// The config this request started with; a reload does not change it mid-request.
    rt: Arc<Runtime>,
    started: Instant,
    request_id: String,
    client_ip: Option<IpAddr>,
    route: Option<Arc<RouteSpec>>,
    /// Normalised and rewritten path plus the original query, when it differs from the
    /// incoming request target.
    upstream_target: Option<String>,
    /// The route's upstream for this request (the split side, chosen once).
    primary: Option<Arc<Upstream>>,
    /// The attempts so far, as failover remembers them between attempts.
    failover: failover::Attempts,
    /// The current attempt.
    attempt: Attempt,
    /// The `Set-Cookie` value of a cohort pin to send with the answer.
    pin_cookie: Option<String>,
    /// The verified token, when the route checked one and the request carried one.
    identity: Option<Arc<Verified>>,
    /// What the upstream's `Authorization` header becomes (auth routes: verified or absent).
    authorization: auth::ForwardAuthorization,
    /// `RateLimit-Policy` / `RateLimit` for the response, when the route has policies.
    rate_limit: Option<ratelimit::Fields>,
    /// An error decided by a phase (e.g. no target available) for `fail_to_proxy` to answer.
    failure: Option<GatewayError>,
    /// The normalised path (no query) when it differs from the request's path.
    path: Option<String>,
    /// The server span and the current attempt's client span.
    trace: RequestTrace,
    /// The route's shadow copy of this request, when it is copied.
    /// Boxed: most requests have none, and the context is moved around whole.
    shadow: Option<Box<ShadowCopy>>,
    _in_flight: InFlight,
}

/// One attempt: where it went and what came of it so far.
#[derive(Default)]
struct Attempt {
    /// The route's upstream or its fallback.
    upstream: Option<Arc<Upstream>>,
    target: Option<Arc<Target>>,
    /// The breaker permit, until the attempt's outcome is recorded.
    permit: Option<Permit>,
    /// The answer's headers arrived (nothing may be retried after that).
    answered: bool,
    /// The answer was `101 Switching Protocols`: the connection is a tunnel now, and its end is
    /// not a failure.
    upgraded: bool,
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            rt: self.shared.runtime(),
            started: Instant::now(),
            request_id: String::new(),
            client_ip: None,
            route: None,
            upstream_target: None,
            primary: None,
            failover: failover::Attempts::default(),
            attempt: Attempt::default(),
            pin_cookie: None,
            identity: None,
            authorization: auth::ForwardAuthorization::AsSent,
            rate_limit: None,
            failure: None,
            path: None,
            trace: RequestTrace::default(),
            shadow: None,
            _in_flight: self.shared.enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = incoming_request_id(session);
        close_if_asked(session);
        ctx.client_ip = client_ip(session, &ctx.rt);
        let admitted = {
            let req = session.req_header();
            let mut host_buf = String::new();
            let host = routing::request_host(&req.uri, &req.headers, &mut host_buf);
            ctx.trace = start_trace(&self.shared.telemetry, session, ctx, host);
            admit(session, ctx, host)
        };
        // Cheapest rejection first; rate limiting needs the route and the verified identity.
        let admitted = match admitted {
            Ok(()) => match authenticate(session, ctx).await {
                Ok(()) => rate_limit(session, ctx).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match admitted {
            Ok(()) => {
                self.begin_shadow(session, ctx);
                Ok(false)
            }
            Err(e) => {
                if let GatewayError::Auth(a) = &e {
                    let route = ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("");
                    self.shared
                        .metrics
                        .auth_rejections
                        .with_label_values(&[route, a.reason()])
                        .inc();
                }
                if matches!(e, GatewayError::AmbiguousFraming | GatewayError::BadPath(_)) {
                    // The body's framing can't be trusted: never read another request from it.
                    session.set_keepalive(None);
                }
                respond::send(session, &e, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        let primary = self.primary(session, ctx, &route)?;
        let plan = match ctx.failover.start(route.timeouts.total) {
            Ok(plan) => plan,
            Err(failover::Expired) => return Err(total_timeout(ctx)),
        };
        if !plan.backoff.is_zero() {
            tokio::time::sleep(plan.backoff).await;
        }
        let rt = ctx.rt.clone();
        let fallback = fallback_of(&route, &primary, &rt);
        let side = match (ctx.failover.side(), fallback) {
            (Side::Fallback(_), Some((_, fb))) => fb,
            _ => &primary,
        };
        let (up, pick) = match side.pick(ctx.failover.avoid()) {
            Ok(pick) => (side.clone(), pick),
            Err(unavailable) => {
                let rules = self.fallback_rules(&rt, &ctx.failover, &route, &primary);
                let replay = replay_facts(session, ctx, route.fallback.as_ref());
                let decision = ctx.failover.on_unavailable(rules, replay);
                self.count_decision(&decision, &route, &primary);
                let picked = match (decision.next, fallback) {
                    (Next::Fallback(_), Some((_, fb))) => {
                        fb.pick(ctx.failover.avoid()).map(|p| (fb.clone(), p))
                    }
                    _ => Err(unavailable),
                };
                match picked {
                    Ok(picked) => picked,
                    Err(also) => {
                        ctx.failure = Some(GatewayError::NoTargetAvailable {
                            upstream: primary.spec.name.clone(),
                            retry_after: also.retry_after.min(unavailable.retry_after),
                        });
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(503),
                            "no target available",
                        ));
                    }
                }
            }
        };
        ctx.attempt = Attempt::default();
        if let Some(reason) = ctx.failover.fallback_started() {
            self.shared
                .metrics
                .fallbacks
                .with_label_values(&[
                    route.name.as_str(),
                    primary.spec.name.as_str(),
                    up.spec.name.as_str(),
                    reason.as_str(),
                ])
                .inc();
        }
        let timeouts = attempt_timeouts(
            route.timeouts.over(&up.spec.timeouts),
            plan.remaining,
            session.is_upgrade_req(),
        );
        let peer = up.peer(&pick.target, &timeouts);
        ctx.trace.start_attempt(
            &session.req_header().method,
            &up.spec.name,
            pick.target.addr,
        );
        ctx.failover.picked(pick.target.addr);
        ctx.attempt.target = Some(pick.target);
        ctx.attempt.permit = pick.permit;
        ctx.attempt.upstream = Some(up);
        Ok(Box::new(peer))
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        if status == 101 && session.is_upgrade_req() {
            // A tunnel from here on: the handshake succeeded, and the connection's end is not
            // the target's failure. The client side may now be as quiet as the upstream side.
            // (A 101 to a request that asked for no upgrade is pingora's to refuse.)
            ctx.attempt.upgraded = true;
            if let Some(permit) = ctx.attempt.permit.take() {
                permit.record(Outcome::Success);
            }
            if let (Some(route), Some(up)) = (&ctx.route, &ctx.attempt.upstream) {
                let idle = route.timeouts.over(&up.spec.timeouts).upgraded_idle;
                session.set_read_timeout(Some(idle));
            }
            return Ok(());
        }
        if status < 200 {
            return Ok(());
        }
        if let (Some(permit), Some(target)) = (ctx.attempt.permit.take(), &ctx.attempt.target) {
            permit.record(target.outcome_of_status(status));
        }
        if let Some(took) = ctx.trace.attempt_response(status) {
            let route = ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("");
            let upstream = ctx.attempt.upstream.as_ref().map(|u| u.spec.name.as_str());
            self.shared
                .metrics
                .upstream_duration
                .with_label_values(&[route, upstream.unwrap_or("")])
                .observe(took.as_secs_f64());
        }
        if status >= 400 && self.falls_back_on_status(session, ctx, status) {
            // Dropped before anything reached the client: pingora ends this attempt with the
            // error and, since `error_while_proxy` marks it for retry, replays the request.
            return Err(Error::explain(
                ErrorType::Custom("fallback on status"),
                format!("status {status}: replayed to the fallback"),
            ));
        }
        ctx.attempt.answered = true;
        if let Some(copy) = &mut ctx.shadow {
            copy.primary_head(status, &resp.headers);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.trace.attempt_failed(e.etype().as_str());
        if let Some(permit) = ctx.attempt.permit.take() {
            permit.record(Outcome::Failure);
        }
        let again = self.after_failure(session, ctx, failover::classify(e.etype()), false);
        e.set_retry(again);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.failover.replay_pending() {
            // `upstream_response_filter` dropped a failure answer (already on the breaker and
            // the client span) to replay the request on the fallback.
            e.set_retry(true);
            return e;
        }
        if ctx.attempt.upgraded {
            // The end of a tunnel (either side closed, or went quiet for `upgraded_idle`): not
            // a failed request, and nothing to retry.
            e.set_retry(false);
            return e;
        }
        ctx.trace.attempt_failed(e.etype().as_str());
        let upstream_fault = *e.esource() == ErrorSource::Upstream;
        // pingora marks errors that a reused (possibly server-closed) pooled connection explains:
        // not the target's fault, and the same target may be tried again on a fresh connection.
        e.retry.decide_reuse(client_reused);
        let stale_connection = e.retry();
        if let Some(permit) = ctx.attempt.permit.take()
            && upstream_fault
            && !stale_connection
        {
            permit.record(Outcome::Failure);
        }
        let again = upstream_fault
            && self.after_failure(
                session,
                ctx,
                failover::classify(e.etype()),
                stale_connection,
            );
        e.set_retry(again);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        prepare_upstream_request(session, req, ctx)?;
        if let Some(copy) = &mut ctx.shadow {
            if ctx.failover.side() != Side::Route {
                // On the fallback before the copy left: the answer will be the fallback's,
                // nothing to compare the candidate's with (and the fallback may be the candidate).
                copy.fallback();
            }
            // The first attempt's request is the copy's; without a body the copy leaves now.
            copy.attempt(req);
            if session.as_downstream_mut().is_body_empty() {
                copy.start(&ctx.trace);
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(copy) = &mut ctx.shadow {
            copy.tee(body.as_deref(), end_of_stream, &ctx.trace);
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let (Some(copy), Some(chunk)) = (&mut ctx.shadow, body.as_deref()) {
            copy.primary_body(chunk);
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        resp.insert_header(REQUEST_ID_WIRE, ctx.request_id.as_str())?;
        if let Some(reason) = ctx.failover.answered_by_fallback() {
            resp.insert_header(FALLBACK_WIRE, reason.as_str())?;
        }
        // Not on a 100 Continue or 103 Early Hints: browsers keep cookies of the final answer.
        if !resp.status.is_informational()
            && let Some(pin) = ctx.pin_cookie.take()
        {
            resp.append_header(header::SET_COOKIE, pin)?;
        }
        if let Some(fields) = &ctx.rate_limit {
            for (name, value) in fields.pairs() {
                resp.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = ctx.failure.take().or_else(|| GatewayError::from_pingora(e));
        if ctx.request_id.is_empty() {
            ctx.request_id = request_id::generate();
        }
        let mut code = 0;
        if is_tunnel(session, ctx) {
            // A tunnel ended (its 101 was the answer): nothing failed.
            tracing::debug!(request_id = %ctx.request_id, error = %e, "upgraded connection closed");
            return FailToProxy {
                error_code: 101,
                can_reuse_downstream: false,
            };
        }
        if let Some(err) = err {
            tracing::warn!(
                request_id = %ctx.request_id,
                route = ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-"),
                upstream = ctx.attempt.upstream.as_ref().map(|u| u.spec.name.as_str()).unwrap_or("-"),
                error = %e,
                "request failed"
            );
            if session.response_written().is_none() {
                // pingora closes the connection after this (`can_reuse_downstream` is not
                // honoured past peer selection): say so, or the client reuses a dead socket.
                session.set_keepalive(None);
                code = respond::send(session, &err, &ctx.request_id)
                    .await
                    .unwrap_or(0);
            } else {
                // Headers already went out: the only honest signal left is closing the
                // connection mid-body.
                code = session
                    .response_written()
                    .map(|r| r.status.as_u16())
                    .unwrap_or(0);
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        // An attempt that never got an outcome (the client left) counts as nothing.
        drop(ctx.attempt.permit.take());
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        // The end of a tunnel is how a tunnel ends, not an error of the request.
        let e = e.filter(|_| !is_tunnel(session, ctx));
        if let Some(copy) = ctx.shadow.take() {
            let end = match e {
                None if ctx.failover.answered_by_fallback().is_some() => End::Fallback,
                None => End::Whole,
                Some(e) if *e.esource() == ErrorSource::Downstream => End::ClientGone,
                Some(_) => End::Failed,
            };
            copy.finish(end, ctx.started.elapsed());
        }
        ctx.trace.finish(status, e.map(|e| e.etype().as_str()));
        if let Some(log) = self.shared.telemetry.access_log()
            && log.wants(status)
        {
            log.write(&access_line(session, ctx, status));
        }
        let route = ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("");
        let upstream = ctx
            .attempt
            .upstream
            .as_ref()
            .map(|u| u.spec.name.as_str())
            .unwrap_or("");
        let m = &self.shared.metrics;
        let method = crate::metrics::method_label(&session.req_header().method);
        let mut buf = [0u8; 3];
        m.requests
            .with_label_values(&[
                route,
                method,
                crate::metrics::status_str(status, &mut buf),
                upstream,
            ])
            .inc();
        m.request_duration
            .with_label_values(&[route])
            .observe(ctx.started.elapsed().as_secs_f64());
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // `fail_to_proxy` logs failures with the request id and route.
        true
    }

    /// What pingora's own log lines (e.g. "Fail to proxy ..., retry: true") say about the
    /// request: never the query string (it may carry secrets) nor the Host, only the method, the
    /// path, the route and the request id.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!(
            "{} {} route={} request_id={}",
            req.method,
            req.uri.path(),
            ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-"),
            ctx.request_id
        )
    }
}

/// `Connection: close` in any field closes the connection after the answer (RFC 9110 §7.6.1);
/// pingora itself reads only the first `Connection` field.
fn close_if_asked(session: &mut Session) {
    let mut fields = session
        .req_header()
        .headers
        .get_all(header::CONNECTION)
        .iter();
    if fields.next().is_some() && request_head::asks_to_close(fields.map(|v| v.as_bytes())) {
        session.set_keepalive(None);
    }
}

/// Starts the request's server span from the incoming `traceparent` and what the request says
/// about itself.
fn start_trace(
    telemetry: &observability::Telemetry,
    session: &Session,
    ctx: &RequestCtx,
    host: Option<&str>,
) -> RequestTrace {
    let req = session.req_header();
    let facts = ServerFacts {
        method: &req.method,
        path: req.uri.path(),
        host,
        client_ip: ctx.client_ip,
        http_version: req.version,
        user_agent: req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        request_id: &ctx.request_id,
        scheme: if session.digest().is_some_and(|d| d.ssl_digest.is_some()) {
            "https"
        } else {
            "http"
        },
    };
    telemetry.server_span(&req.headers, &facts)
}

/// `traceparent` of the attempt's client span; `tracestate` only when the caller's trace was
/// continued (a client's tracestate without a valid traceparent belongs to no trace).
fn set_trace_headers(req: &mut RequestHeader, trace: &RequestTrace) -> Result<()> {
    match trace.traceparent() {
        Some(tp) => req.insert_header(TRACEPARENT_WIRE, tp)?,
        None => remove_if_present(req, &TRACEPARENT),
    }
    match trace.tracestate().filter(|_| trace.continued()) {
        Some(ts) => req.insert_header(TRACESTATE_WIRE, ts)?,
        None => remove_if_present(req, &TRACESTATE),
    }
    Ok(())
}

/// Looked up by a parsed `HeaderName` before any removal: a removal parses and probes more, and
/// most requests carry none of the headers this is called for.
fn remove_if_present(req: &mut RequestHeader, name: &HeaderName) {
    if req.headers.contains_key(name) {
        req.remove_header(name);
    }
}

/// The access-log line of a finished request.
fn access_line<'a>(session: &'a Session, ctx: &'a RequestCtx, status: u16) -> Line<'a> {
    let req = session.req_header();
    let trace_id = ctx.trace.trace_id();
    Line {
        time: Line::time_now(),
        request_id: &ctx.request_id,
        trace_id,
        client_ip: ctx.client_ip.map(forwarding::ip_text),
        method: crate::metrics::method_label(&req.method),
        route: ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or(""),
        path: ctx.path.as_deref().unwrap_or(req.uri.path()),
        status,
        upstream: ctx
            .attempt
            .upstream
            .as_ref()
            .map(|u| u.spec.name.as_str())
            .unwrap_or(""),
        side: match ctx.route.as_deref().map(|r| &r.target) {
            Some(RouteTarget::Split { .. } | RouteTarget::Cohort(_)) => {
                ctx.primary.as_ref().map(|p| p.spec.name.as_str())
            }
            _ => None,
        },
        target: ctx.attempt.target.as_ref().map(|t| t.addr_text.as_str()),
        duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
        bytes_sent: session.as_downstream().body_bytes_sent(),
        bytes_received: session.as_downstream().body_bytes_read(),
        attempts: ctx.failover.count(),
        fallback: ctx
            .failover
            .answered_by_fallback()
            .map(failover::Reason::as_str),
        user_id: ctx.identity.as_ref().and_then(|v| v.sub.as_deref()),
    }
}

impl Proxy {
    /// Plans the route's shadow copy of an admitted request (see [`mirror::copy`]); the first
    /// attempt's prepared request becomes the copy's. Nothing here can fail the request.
    fn begin_shadow(&self, session: &mut Session, ctx: &mut RequestCtx) {
        let Some(index) = ctx
            .route
            .as_ref()
            .filter(|r| r.shadow.is_some())
            .map(|r| r.index)
        else {
            return;
        };
        let (Some(route), Some(shadow)) = (ctx.route.clone(), ctx.rt.shadow(index).cloned()) else {
            return;
        };
        let Ok(primary) = self.primary(session, ctx, &route) else {
            // `upstream_peer` meets the same error and answers it.
            return;
        };
        let req = session.req_header();
        let facts = mirror::plan::Facts {
            method: &req.method,
            upgrade: session.is_upgrade_req(),
            primary: &primary.spec.name,
            content_length: content_length(req),
            draws: (rand::random(), rand::random()),
        };
        let Some(planned) = shadow.plan(&facts) else {
            return;
        };
        let req = session.req_header();
        let path = ctx.path.as_deref().unwrap_or(req.uri.path());
        let copy = ShadowCopy::new(shadow, planned, primary, &req.method, path, &ctx.request_id);
        ctx.shadow = Some(Box::new(copy));
    }

    /// The route's upstream for this request: the split side, chosen at the first attempt
    /// (which also counts the request on the retry and fallback budgets).
    fn primary(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        route: &RouteSpec,
    ) -> Result<Arc<Upstream>> {
        if let Some(p) = &ctx.primary {
            return Ok(p.clone());
        }
        let name = match &route.target {
            RouteTarget::Single(name) => name.as_str(),
            RouteTarget::Split { sides, sticky_by } => {
                let key = sticky_by.as_ref().and_then(|k| sticky_key(k, session, ctx));
                upstream::pick_side(sides, key.as_deref()).upstream.as_str()
            }
            RouteTarget::Cohort(split) => self.place(session, ctx, split),
        };
        if !matches!(route.target, RouteTarget::Single(_)) {
            ctx.trace.attributes(|| {
                vec![opentelemetry::KeyValue::new(
                    "gateway.split.side",
                    name.to_string(),
                )]
            });
        }
        let up = upstream_named(&ctx.rt, name)?;
        up.budget.record_request();
        // The fallback budget counts the route's requests only where a replay can spend it.
        if let Some((spec, _)) = fallback_of(route, &up, &ctx.rt)
            && spec.on.replays()
            && let Some(budget) = ctx.rt.fallback_budget(route.index)
        {
            budget.record_request();
        }
        ctx.primary = Some(up.clone());
        Ok(up)
    }

    /// The side of a percent split (see [`cohort`]): by a valid pin, else by the cohort's keys,
    /// else `rest`. A cohort with a pin gets one on the answer when it had none.
    fn place<'a>(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        split: &'a CohortSplit,
    ) -> &'a str {
        let cohort = &split.cohort;
        // The clock only matters to a pin (the cohort routes without one never read it).
        let now = cohort.pin.as_ref().map(|_| std::time::SystemTime::now());
        let headers = &session.req_header().headers;
        let pinned = cohort.pin.as_ref().and_then(|pin| {
            let value = std::str::from_utf8(sticky::cookie(headers, &pin.cookie)?).ok()?;
            cohort::verify_pin(cohort, pin, value, now?)
        });
        let placed = cohort::place(split, pinned.map(|p| p.position), |k| {
            sticky_key(k, session, ctx)
        });
        if let Some(p) = placed.position {
            ctx.trace.attributes(|| {
                vec![opentelemetry::KeyValue::new(
                    "gateway.cohort.bucket",
                    i64::from(p.bucket()),
                )]
            });
        }
        let pin_due = pinned.is_none_or(|p| p.renew);
        if let (Some(pin), Some(p), Some(now), true) = (&cohort.pin, placed.position, now, pin_due)
        {
            let value = cohort::sign_pin(cohort, pin, p, now);
            let secure = request_scheme(session, &ctx.rt) == "https";
            ctx.pin_cookie = Some(cohort::set_cookie(pin, &value, secure));
        }
        placed.upstream
    }

    /// Whether the failed attempt is tried again (failover decides; this gathers its inputs
    /// and counts its refusals).
    fn after_failure(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        failure: Failure,
        stale: bool,
    ) -> bool {
        let (Some(route), Some(primary)) = (ctx.route.clone(), ctx.primary.clone()) else {
            return false;
        };
        let current = ctx.attempt.upstream.clone().unwrap_or(primary.clone());
        let rt = ctx.rt.clone();
        let fallback = self.fallback_rules(&rt, &ctx.failover, &route, &primary);
        let rules = failover::Rules {
            retries: &current.spec.retries,
            retry_budget: &current.budget,
            untried_target: current.has_candidate(ctx.failover.tried()),
            fallback,
        };
        let replay = replay_facts(session, ctx, route.fallback.as_ref());
        let decision = ctx.failover.decide(failure, stale, rules, replay);
        self.count_decision(&decision, &route, &current);
        match decision.next {
            Next::Retry { .. } | Next::Fallback(_) => true,
            Next::Answer => false,
            Next::Expired => {
                ctx.failure = Some(GatewayError::TotalTimeout);
                false
            }
        }
    }

    /// Whether a failure answer is dropped and the request replayed to the fallback.
    fn falls_back_on_status(&self, session: &Session, ctx: &mut RequestCtx, status: u16) -> bool {
        let listed = ctx.route.as_ref().and_then(|r| r.fallback.as_ref());
        if !listed.is_some_and(|f| f.on.statuses.contains(status)) {
            return false;
        }
        let (Some(route), Some(primary)) = (ctx.route.clone(), ctx.primary.clone()) else {
            return false;
        };
        let rt = ctx.rt.clone();
        let Some(fallback) = self.fallback_rules(&rt, &ctx.failover, &route, &primary) else {
            return false;
        };
        let replay = replay_facts(session, ctx, Some(fallback.spec));
        let decision = ctx.failover.on_status(status, Some(fallback), replay);
        self.count_decision(&decision, &route, &primary);
        matches!(decision.next, Next::Fallback(_))
    }

    /// The route's fallback as failover sees it, while the request is still on the route's
    /// upstream.
    fn fallback_rules<'a>(
        &self,
        rt: &'a Runtime,
        attempts: &failover::Attempts,
        route: &'a RouteSpec,
        primary: &Upstream,
    ) -> Option<failover::Fallback<'a>> {
        if attempts.side() != Side::Route {
            return None;
        }
        let (spec, up) = fallback_of(route, primary, rt)?;
        Some(failover::Fallback {
            spec,
            budget: rt.fallback_budget(route.index)?,
            has_target: up.has_candidate(attempts.tried()),
        })
    }

    fn count_decision(&self, d: &failover::Decision, route: &RouteSpec, on: &Upstream) {
        let m = &self.shared.metrics;
        if d.retry_budget_exhausted {
            m.retry_budget_exhausted
                .with_label_values(&[on.spec.name.as_str()])
                .inc();
        }
        if let Some(why) = d.fallback_skipped {
            m.fallbacks_skipped
                .with_label_values(&[route.name.as_str(), why.as_str()])
                .inc();
        }
        if let Next::Retry { .. } = d.next {
            m.retries
                .with_label_values(&[route.name.as_str(), on.spec.name.as_str()])
                .inc();
        }
    }
}

/// What every attempt's upstream request carries, and a shadow copy too: the rewritten path,
/// `X-Forwarded-*`, `X-Request-ID`, the trace context, the verified identity headers (a
/// client's own stripped, and its `X-Gateway-Shadow`, in any spelling: only the gateway marks
/// copies) and the `Authorization` the route forwards.
///
/// Not `take()`: pingora calls `upstream_request_filter` again for each retry of the request,
/// and every attempt must carry the same rewritten path and credentials.
fn prepare_upstream_request(
    session: &Session,
    req: &mut RequestHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    if let Some(target) = &ctx.upstream_target {
        req.set_raw_path(target.as_bytes())?;
    }
    set_forwarded_headers(session, req, ctx)?;
    req.insert_header(REQUEST_ID_WIRE, ctx.request_id.as_str())?;
    set_trace_headers(req, &ctx.trace)?;
    auth::identity::strip(req, &ctx.rt.identity_headers);
    if let Some(v) = &ctx.identity {
        for (name, value) in &v.headers {
            req.insert_header(name.clone(), value.clone())?;
        }
    }
    ctx.authorization.apply(req)?;
    Ok(())
}

/// The request's `Content-Length`, when it has a valid one.
fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The request's answer was a `101` and its connection a tunnel, now ended.
fn is_tunnel(session: &Session, ctx: &RequestCtx) -> bool {
    ctx.attempt.upgraded && session.response_written().is_some_and(|r| r.status == 101)
}

/// What the request allows a replay (see [`failover::Replay`]).
fn replay_facts(
    session: &Session,
    ctx: &RequestCtx,
    fallback: Option<&FallbackSpec>,
) -> failover::Replay {
    let req = session.req_header();
    let keyed = req
        .headers
        .get(&IDEMPOTENCY_KEY)
        .is_some_and(|v| !v.is_empty());
    failover::Replay {
        retry_safe: keyed || req.method.is_idempotent(),
        fallback_safe: keyed || fallback.is_some_and(|f| f.methods.contains(&req.method)),
        body_kept: !session.as_ref().retry_buffer_truncated(),
        nothing_sent: !ctx.attempt.answered && session.response_written().is_none(),
    }
}

/// The timeouts an attempt runs with: the route's over the upstream's, each wait capped by what
/// is left of `total`. An upgrade request's reads wait `upgraded_idle` instead (pingora applies
/// one read timeout to the whole attempt, tunnel included), and `total` does not shorten it.
fn attempt_timeouts(
    t: Effective,
    remaining: Option<Duration>,
    upgrade: bool,
) -> upstream::AttemptTimeouts {
    let cap = |d: Duration| remaining.map_or(d, |r| d.min(r));
    let read = if upgrade {
        t.upgraded_idle
    } else {
        cap(t.response)
    };
    upstream::AttemptTimeouts {
        connect: cap(t.connect),
        read,
    }
}

/// The 504 of a route whose `timeouts.total` ran out before an attempt could start.
fn total_timeout(ctx: &mut RequestCtx) -> Box<Error> {
    ctx.failure = Some(GatewayError::TotalTimeout);
    Error::explain(
        ErrorType::HTTPStatus(504),
        "the route's total timeout ran out",
    )
}

fn upstream_named(rt: &Runtime, name: &str) -> Result<Arc<Upstream>> {
    rt.upstreams
        .get(name)
        .cloned()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "upstream missing from runtime"))
}

/// The route's fallback and its upstream, unless that is the upstream already chosen (a split
/// side, or a route flipped back to the monolith).
fn fallback_of<'a>(
    route: &'a RouteSpec,
    primary: &Upstream,
    rt: &'a Runtime,
) -> Option<(&'a FallbackSpec, &'a Arc<Upstream>)> {
    let spec = route.fallback.as_ref()?;
    if spec.upstream == primary.spec.name {
        return None;
    }
    Some((spec, rt.upstreams.get(&spec.upstream)?))
}

/// Admission, in order: framing → path normalisation → route. `host`: `routing::request_host`.
fn admit(session: &Session, ctx: &mut RequestCtx, host: Option<&str>) -> Result<(), GatewayError> {
    if has_content_length_and_chunked(session) {
        return Err(GatewayError::AmbiguousFraming);
    }
    let req = session.req_header();
    let normalised = path::normalize(req.uri.path(), ctx.rt.loaded.config.encoded_slashes)
        .map_err(GatewayError::BadPath)?;
    let facts = RequestFacts {
        method: &req.method,
        path: &normalised,
        host,
        headers: &req.headers,
    };
    let route = ctx
        .rt
        .routes
        .find(&facts)
        .cloned()
        .ok_or(GatewayError::NoRoute)?;
    let forwarded_path = routing::rewrite_path(route.rewrite.as_ref(), &normalised);
    let path_out: &str = forwarded_path.as_deref().unwrap_or(&normalised);
    let target = match req.uri.query() {
        Some(q) => format!("{path_out}?{q}"),
        None => path_out.to_string(),
    };
    if target.as_bytes() != req.raw_path() {
        ctx.upstream_target = Some(target);
    }
    ctx.trace.set_route(&req.method, &route);
    ctx.route = Some(route);
    // Borrowed: the request's own path was already normal (the access log reads it there).
    if let std::borrow::Cow::Owned(p) = normalised {
        ctx.path = Some(p);
    }
    Ok(())
}

/// Authentication, after routing (the route says what it requires).
async fn authenticate(session: &Session, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let (Some(route), Some(auth)) = (ctx.route.as_ref(), ctx.rt.auth.as_ref()) else {
        return Ok(());
    };
    let admitted = auth.admit(&session.req_header().headers, &route.auth).await;
    trace_auth(&ctx.trace, &admitted);
    let admitted = admitted.map_err(GatewayError::Auth)?;
    ctx.identity = admitted.identity;
    ctx.authorization = admitted.authorization;
    Ok(())
}

/// The authentication decision as a span event `auth` (`auth.result`: `allowed`, `anonymous`
/// or `rejected`, with `auth.reason` for a rejection). The subject is not recorded on spans.
fn trace_auth(trace: &RequestTrace, admitted: &Result<auth::Admitted, auth::AuthError>) {
    use opentelemetry::KeyValue;
    trace.event("auth", || match admitted {
        Ok(a) if a.identity.is_some() => vec![KeyValue::new("auth.result", "allowed")],
        Ok(_) => vec![KeyValue::new("auth.result", "anonymous")],
        Err(e) => vec![
            KeyValue::new("auth.result", "rejected"),
            KeyValue::new("auth.reason", e.reason()),
        ],
    });
}

/// Rate limiting, after authentication (a policy may count by a claim).
async fn rate_limit(session: &Session, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let (Some(route), Some(limits)) = (ctx.route.as_ref(), ctx.rt.limits.as_ref()) else {
        return Ok(());
    };
    if route.rate_limit.is_empty() {
        return Ok(());
    }
    let inputs = ratelimit::KeyInputs {
        client_ip: ctx.client_ip,
        identity: ctx.identity.as_deref(),
        headers: &session.req_header().headers,
        route: &route.name,
    };
    let checked = limits.check(route, &inputs).await;
    if let Err(ratelimit::RateLimitError::Limited(r)) = &checked {
        ctx.trace.event("rate_limit", || {
            vec![
                opentelemetry::KeyValue::new("rate_limit.result", "rejected"),
                opentelemetry::KeyValue::new("rate_limit.policy", r.policy.clone()),
            ]
        });
    }
    ctx.rate_limit = checked.map_err(GatewayError::RateLimit)?;
    Ok(())
}

/// pingora accepts `Content-Length` together with `Transfer-Encoding` (dropping the length, as
/// RFC 9112 allows); we refuse it, because a proxy chain that disagrees on framing is how
/// request smuggling starts. The check reads the raw header block only when TE is present.
fn has_content_length_and_chunked(session: &Session) -> bool {
    if !session
        .req_header()
        .headers
        .contains_key(header::TRANSFER_ENCODING)
    {
        return false;
    }
    let Some(h1) = session.as_downstream().as_http1() else {
        return false;
    };
    let raw = h1.get_headers_raw_bytes();
    raw.split(|&b| b == b'\n')
        .skip(1)
        .any(|line| line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
}

fn incoming_request_id(session: &Session) -> String {
    session
        .req_header()
        .headers
        .get(&X_REQUEST_ID)
        .and_then(|v| request_id::accept(v.as_bytes()))
        .map(str::to_string)
        .unwrap_or_else(request_id::generate)
}

fn client_ip(session: &Session, rt: &Runtime) -> Option<IpAddr> {
    let peer = session.client_addr()?.as_inet()?.ip();
    let xff = session.req_header().headers.get_all(&X_FORWARDED_FOR);
    Some(forwarding::client_ip(
        peer,
        xff.iter().map(|v| v.as_bytes()),
        &rt.loaded.config.trusted_proxies,
    ))
}

fn set_forwarded_headers(
    session: &Session,
    req: &mut RequestHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    let trusted = &ctx.rt.loaded.config.trusted_proxies;
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let peer_trusted = peer.is_some_and(|p| forwarding::is_trusted(p, trusted));
    if let Some(peer) = peer {
        let xff = forwarding::forwarded_for(
            peer,
            session
                .req_header()
                .headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes()),
            trusted,
        );
        req.insert_header(XFF_WIRE, xff)?;
    }
    req.insert_header(XFP_WIRE, scheme(session, peer_trusted))?;
    let incoming_host = session.req_header().headers.get(&X_FORWARDED_HOST).cloned();
    let host = match incoming_host {
        Some(h) if peer_trusted => Some(h),
        _ => session
            .req_header()
            .headers
            .get(header::HOST)
            .cloned()
            .or_else(|| {
                session
                    .req_header()
                    .uri
                    .authority()
                    .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            }),
    };
    match host {
        Some(h) => req.insert_header(XFH_WIRE, h)?,
        None => {
            req.remove_header(&X_FORWARDED_HOST);
        }
    }
    Ok(())
}

/// The scheme the client used: the TLS listener's `https`, or a trusted proxy's
/// `X-Forwarded-Proto`.
fn scheme(session: &Session, peer_trusted: bool) -> &'static str {
    let incoming = session.req_header().headers.get(&X_FORWARDED_PROTO);
    match incoming.map(|v| v.as_bytes()) {
        Some(b"https") if peer_trusted => "https",
        Some(b"http") if peer_trusted => "http",
        _ if session.digest().is_some_and(|d| d.ssl_digest.is_some()) => "https",
        _ => "http",
    }
}

/// [`scheme`], working out whether the peer is trusted.
fn request_scheme(session: &Session, rt: &Runtime) -> &'static str {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let trusted =
        peer.is_some_and(|p| forwarding::is_trusted(p, &rt.loaded.config.trusted_proxies));
    scheme(session, trusted)
}

/// The request's value for a split key (see [`sticky::key`], which `explain` reads keys with
/// too).
fn sticky_key(key: &StickyKey, session: &Session, ctx: &RequestCtx) -> Option<Vec<u8>> {
    let inputs = sticky::Inputs {
        headers: &session.req_header().headers,
        client_ip: ctx.client_ip,
        identity: ctx.identity.as_deref(),
    };
    sticky::key(key, &inputs)
}
