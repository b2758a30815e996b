//! The request path: pingora's `ProxyHttp` phases. Each phase only delegates to the modules
//! that own the logic (`routing`, `path`, `forwarding`, `upstream`, `respond`, `metrics`), which
//! never touch a `Session` and are unit-tested with plain data.
//!
//! | phase | does |
//! |---|---|
//! | `request_filter` | admit: request id → framing check → normalise path → route → authenticate → rate-limit; reject early with problem+json |
//! | `upstream_peer` | choose the upstream (split weights, stickiness) and a target that is healthy and whose breaker admits it; else the route's fallback; else 503 + `Retry-After`. On a retry: back off, prefer an untried target |
//! | `upstream_request_filter` | rewrite the path, set `X-Forwarded-*` and `X-Request-ID`, strip client identity headers and add the verified ones |
//! | `upstream_response_filter` | record the attempt's outcome on its target's breaker (5xx → failure unless configured otherwise); time to upstream headers (metric, client span) |
//! | `response_filter` | echo `X-Request-ID`, add the `RateLimit-Policy` / `RateLimit` fields |
//! | `fail_to_connect` / `error_while_proxy` | close the attempt's client span with `error.type`; record breaker failures; decide retries (see `Proxy::may_retry`) |
//! | `fail_to_proxy` | turn every error into problem+json (via `respond`) |
//! | `logging` | metrics, access log, span end (via `observability`) |

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::header::{self, HeaderName};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::auth::verify::Verified;
use crate::breaker::{Outcome, Permit};
use crate::config::model::{RouteSpec, RouteTarget, StickyKey};
use crate::observability::access_log::Line;
use crate::observability::{self, RequestTrace, ServerFacts};
use crate::respond::{self, GatewayError};
use crate::routing::{self, RequestFacts};
use crate::state::{InFlight, Runtime, Shared};
use crate::upstream::{self, Target, Upstream};
use crate::{auth, forwarding, path, ratelimit, request_head, request_id};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static(request_id::HEADER);
static TRACEPARENT: HeaderName = HeaderName::from_static(observability::TRACEPARENT);
static TRACESTATE: HeaderName = HeaderName::from_static(observability::TRACESTATE);
// The spellings written on the wire. pingora keeps each header's case; inserting by a `&'static
// str` name costs no allocation for it (a `HeaderName` would be copied and title-cased).
const XFF_WIRE: &str = "X-Forwarded-For";
const XFP_WIRE: &str = "X-Forwarded-Proto";
const XFH_WIRE: &str = "X-Forwarded-Host";
const REQUEST_ID_WIRE: &str = "X-Request-ID";
const TRACEPARENT_WIRE: &str = observability::TRACEPARENT;
const TRACESTATE_WIRE: &str = observability::TRACESTATE;

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
    /// The upstream serving the current attempt (the route's, or its fallback).
    upstream: Option<Arc<Upstream>>,
    /// The route's upstream for this request (the split side, chosen once).
    primary: Option<Arc<Upstream>>,
    /// The current attempt's target.
    target: Option<Arc<Target>>,
    /// The current attempt's breaker permit, until its outcome is recorded.
    permit: Option<Permit>,
    /// Upstream attempts made so far (1 = the first).
    attempts: u32,
    /// Retries counted against `retries.attempts` (and the budget).
    retries_spent: u32,
    /// The one free retry of a broken pooled connection has been used.
    stale_retry_used: bool,
    /// Targets already tried, so that a retry goes elsewhere when it can.
    tried: Vec<SocketAddr>,
    /// The failed attempt broke on a reused pooled connection: the same target may be retried.
    retry_same_target: bool,
    /// The current attempt's response headers arrived (nothing may be retried after that).
    response_started: bool,
    /// The request was sent to the route's fallback.
    fell_back: bool,
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
    _in_flight: InFlight,
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
            upstream: None,
            primary: None,
            target: None,
            permit: None,
            attempts: 0,
            retries_spent: 0,
            stale_retry_used: false,
            tried: Vec::new(),
            retry_same_target: false,
            response_started: false,
            fell_back: false,
            identity: None,
            authorization: auth::ForwardAuthorization::AsSent,
            rate_limit: None,
            failure: None,
            path: None,
            trace: RequestTrace::default(),
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
            Ok(()) => Ok(false),
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
        let primary = match &ctx.primary {
            Some(p) => p.clone(),
            None => {
                let name = match &route.target {
                    RouteTarget::Single(name) => name.as_str(),
                    RouteTarget::Split { sides, sticky_by } => {
                        let key = sticky_by.as_ref().and_then(|k| sticky_key(k, session, ctx));
                        upstream::pick_side(sides, key.as_deref()).upstream.as_str()
                    }
                };
                let up = upstream_named(&ctx.rt, name)?;
                up.budget.record_request();
                ctx.primary = Some(up.clone());
                up
            }
        };
        ctx.attempts += 1;
        let same_target_ok = std::mem::take(&mut ctx.retry_same_target);
        if ctx.attempts > 1 {
            let failed_on = ctx.upstream.as_ref().unwrap_or(&primary);
            self.shared
                .metrics
                .retries
                .with_label_values(&[route.name.as_str(), failed_on.spec.name.as_str()])
                .inc();
            // A broken pooled connection is retried at once; a failure waits its backoff.
            let wait = match same_target_ok {
                true => std::time::Duration::ZERO,
                false => primary.spec.retries.backoff_for(ctx.retries_spent),
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        ctx.response_started = false;
        let avoid: &[SocketAddr] = if same_target_ok { &[] } else { &ctx.tried };
        let fallback = fallback_of(&route, &primary, &ctx.rt);
        let (up, pick) = match primary.pick(avoid) {
            Ok(pick) => (primary, pick),
            Err(unavailable) => {
                let alternative = fallback.map(|fb| (fb.pick(avoid), fb));
                match alternative {
                    Some((Ok(pick), fb)) => {
                        if !ctx.fell_back {
                            ctx.fell_back = true;
                            self.shared
                                .metrics
                                .fallbacks
                                .with_label_values(&[
                                    route.name.as_str(),
                                    primary.spec.name.as_str(),
                                    fb.spec.name.as_str(),
                                ])
                                .inc();
                        }
                        (fb.clone(), pick)
                    }
                    other => {
                        let retry_after = match other {
                            Some((Err(u), _)) => u.retry_after.min(unavailable.retry_after),
                            _ => unavailable.retry_after,
                        };
                        ctx.failure = Some(GatewayError::NoTargetAvailable {
                            upstream: primary.spec.name.clone(),
                            retry_after,
                        });
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(503),
                            "no target available",
                        ));
                    }
                }
            }
        };
        let peer = up.peer(&pick.target);
        ctx.trace.start_attempt(
            &session.req_header().method,
            &up.spec.name,
            pick.target.addr,
        );
        ctx.tried.push(pick.target.addr);
        ctx.target = Some(pick.target);
        ctx.permit = pick.permit;
        ctx.upstream = Some(up);
        Ok(Box::new(peer))
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        if status >= 200 {
            ctx.response_started = true;
            if let (Some(permit), Some(target)) = (ctx.permit.take(), &ctx.target) {
                permit.record(target.outcome_of_status(status));
            }
            if let Some(took) = ctx.trace.attempt_response(status) {
                let route = ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("");
                let upstream = ctx.upstream.as_ref().map(|u| u.spec.name.as_str());
                self.shared
                    .metrics
                    .upstream_duration
                    .with_label_values(&[route, upstream.unwrap_or("")])
                    .observe(took.as_secs_f64());
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.trace.attempt_failed(e.etype().as_str());
        if let Some(permit) = ctx.permit.take() {
            permit.record(Outcome::Failure);
        }
        // Nothing was sent: any method may go again.
        let retry = self.may_retry(ctx, false);
        e.set_retry(retry);
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
        ctx.trace.attempt_failed(e.etype().as_str());
        let mut e = e.more_context(format!("Peer: {peer}"));
        let upstream_fault = *e.esource() == ErrorSource::Upstream;
        // pingora marks errors that a reused (possibly server-closed) pooled connection explains:
        // not the target's fault, and the same target may be tried again on a fresh connection.
        e.retry.decide_reuse(client_reused);
        let stale_connection = e.retry();
        if let Some(permit) = ctx.permit.take()
            && upstream_fault
            && !stale_connection
        {
            permit.record(Outcome::Failure);
        }
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && !ctx.response_started
            && session.response_written().is_none();
        let retry = upstream_fault && replayable && self.may_retry(ctx, stale_connection);
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Not `take()`: pingora calls this phase again for each retry of the request, and every
        // attempt must carry the same rewritten path and credentials.
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

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        resp.insert_header(REQUEST_ID_WIRE, ctx.request_id.as_str())?;
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
        if let Some(err) = err {
            tracing::warn!(
                request_id = %ctx.request_id,
                route = ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-"),
                upstream = ctx.upstream.as_ref().map(|u| u.spec.name.as_str()).unwrap_or("-"),
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
        drop(ctx.permit.take());
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        ctx.trace.finish(status, e.map(|e| e.etype().as_str()));
        if let Some(log) = self.shared.telemetry.access_log()
            && log.wants(status)
        {
            log.write(&access_line(session, ctx, status));
        }
        let route = ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("");
        let upstream = ctx
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
            .upstream
            .as_ref()
            .map(|u| u.spec.name.as_str())
            .unwrap_or(""),
        target: ctx.target.as_ref().map(|t| t.addr_text.as_str()),
        duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
        bytes_sent: session.as_downstream().body_bytes_sent(),
        bytes_received: session.as_downstream().body_bytes_read(),
        attempts: ctx.attempts,
        user_id: ctx.identity.as_ref().and_then(|v| v.sub.as_deref()),
    }
}

impl Proxy {
    /// Whether a failed attempt is tried again. The caller has already decided the request is
    /// safe to repeat (nothing sent, or an idempotent method with a replayable body and no
    /// response yet).
    ///
    /// * `stale_connection`: the attempt broke on a reused pooled connection (the origin closed
    ///   it while idle; pingora's `ReusedOnly` errors). The first such failure of a request is
    ///   retried at once, on any target including the same one, without counting as a retry:
    ///   it says nothing about the target. (If the target is really gone, that retry fails to
    ///   connect and the counted retry below takes over.)
    /// * Otherwise a counted retry happens when `retries.attempts` are left, there is somewhere
    ///   to send it (an untried, available target of the route's upstream or of its fallback),
    ///   and the upstream's retry budget allows it (checked last: only retries that would happen
    ///   spend it).
    fn may_retry(&self, ctx: &mut RequestCtx, stale_connection: bool) -> bool {
        if stale_connection && !ctx.stale_retry_used {
            ctx.stale_retry_used = true;
            ctx.retry_same_target = true;
            return true;
        }
        let (Some(primary), Some(route)) = (&ctx.primary, &ctx.route) else {
            return false;
        };
        if ctx.retries_spent >= primary.spec.retries.attempts {
            return false;
        }
        let somewhere = primary.has_candidate(&ctx.tried)
            || fallback_of(route, primary, &ctx.rt).is_some_and(|fb| fb.has_candidate(&ctx.tried));
        if !somewhere {
            return false;
        }
        if !primary.budget.try_retry() {
            self.shared
                .metrics
                .retry_budget_exhausted
                .with_label_values(&[primary.spec.name.as_str()])
                .inc();
            return false;
        }
        ctx.retries_spent += 1;
        true
    }
}

fn upstream_named(rt: &Runtime, name: &str) -> Result<Arc<Upstream>> {
    rt.upstreams
        .get(name)
        .cloned()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "upstream missing from runtime"))
}

/// The route's fallback upstream, unless it is the upstream already chosen (a split side).
fn fallback_of<'a>(
    route: &RouteSpec,
    primary: &Upstream,
    rt: &'a Runtime,
) -> Option<&'a Arc<Upstream>> {
    let name = route.fallback.as_deref()?;
    if name == primary.spec.name {
        return None;
    }
    rt.upstreams.get(name)
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
    let is_tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    let incoming_proto = session
        .req_header()
        .headers
        .get(&X_FORWARDED_PROTO)
        .map(|v| v.as_bytes());
    let proto = match incoming_proto {
        Some(p @ (b"http" | b"https")) if peer_trusted => std::str::from_utf8(p).unwrap_or("http"),
        _ if is_tls => "https",
        _ => "http",
    };
    req.insert_header(XFP_WIRE, proto)?;
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

/// The stickiness key of a request, if it has one.
fn sticky_key(key: &StickyKey, session: &Session, ctx: &RequestCtx) -> Option<Vec<u8>> {
    let headers = &session.req_header().headers;
    match key {
        StickyKey::Header(name) => headers.get(name).map(|v| v.as_bytes().to_vec()),
        StickyKey::Cookie(name) => headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes().to_vec()),
        StickyKey::ClientIp => ctx.client_ip.map(|ip| ip.to_string().into_bytes()),
        StickyKey::Claim(name) => ctx.identity.as_ref().and_then(|v| v.claim_key(name)),
    }
}
