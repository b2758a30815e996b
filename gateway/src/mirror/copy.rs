//! The shadow at run time: one [`RouteShadow`] per shadowed route (its verdict counts, its
//! semaphore of `max_in_flight`, its own HTTP client and breakers for the candidate), and one
//! [`Copy`] per copied request, which the proxy feeds (the request body as it streams, the
//! primary's answer as it streams) and which sends, compares and counts in a task of its own.
//!
//! ## What never touches the primary
//! The copy goes through a client of its own (hyper's, with its own connection pool), not
//! through pingora: the primary's connections, breakers, retry and fallback budgets, rate
//! limits and access-log line are never involved. The candidate's targets get breakers of
//! their own here (the candidate upstream's `circuit_breaker` settings, or the defaults),
//! fed only by copies, so copies never open or close a breaker that routes the candidate
//! serves as a primary use, and those routes' failures never stop the copies. The proxy only
//! copies bytes it passes on anyway (the request body up to `max_body`, the answer up to
//! `max_response`); the client's answer is never delayed by the copy, whose task starts,
//! waits and compares on its own. A copy's whole exchange (connect, answer, body) has one
//! deadline, `timeout`.
//!
//! ## The life of a copy
//! 1. `request_filter`, after admission: [`RouteShadow::plan`] (the rules of [`plan`]) and a
//!    permit of the semaphore make a [`ShadowCopy`].
//! 2. `upstream_request_filter`: [`ShadowCopy::attempt`] takes the first attempt's request as
//!    the proxy prepared it for the primary (path, `X-Forwarded-*`, `X-Request-ID`, identity
//!    headers: prepared once for both); a request without a body starts now
//!    ([`ShadowCopy::start`]). A later attempt (a retry) replays the body from pingora's
//!    buffer: the tee starts over. A request whose primary is never reached (no target,
//!    refused connections) is never copied: its verdict is `primary_error`; one on the route's
//!    fallback before the copy left is skipped (`fallback`).
//!    `request_body_filter`: [`ShadowCopy::tee`] keeps the body up to `max_body` and starts the
//!    copy at its end.
//! 3. `upstream_response_filter` / `upstream_response_body_filter`: [`ShadowCopy::primary_head`],
//!    [`ShadowCopy::primary_body`] keep the primary's answer (each attempt's anew) up to
//!    `max_response`; past it the copy's task is told at once and ends.
//! 4. `logging`: [`ShadowCopy::finish`] hands the primary's answer over, or says how the
//!    request ended ([`End`]).
//! 5. The task: sends the copy (and, for the `noise` share, the request again to the primary),
//!    waits for the primary's answer, compares ([`compare`]), classifies and
//!    records ([`verdicts`](crate::shadow::verdicts)). The semaphore's permit is held until then
//!    (the wait for the primary is bounded by [`PRIMARY_WAIT`]), so at most `max_in_flight`
//!    copies, and their answers, exist at once. A large comparison runs on tokio's blocking
//!    pool, never on the proxy's worker threads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use super::plan::{self, Capped, Facts, Plan, Skip};
use crate::breaker::{Breaker, Outcome, State};
use crate::config::model::{RouteSpec, ShadowSpec};
use crate::metrics::Metrics;
use crate::observability::{RequestTrace, SideSpan};
use crate::shadow::compare::{self, Answer, BodyMode};
use crate::shadow::encoding::{self, DecodeError};
use crate::shadow::verdicts::{Exchange, Limits, RouteStats, Verdict};
use crate::upstream::Upstream;

/// The header that marks a copy (`1`), a copied write under `writes: dry_run` (`dry-run`) and
/// the second call to the primary (`noise`). Removed from every request a client sends.
pub const HEADER: &str = "x-gateway-shadow";

/// How long a copy's comparison waits for the primary's whole answer after its own arrived: a
/// long poll or an event stream must not hold a copy's in-flight permit for its whole life.
pub const PRIMARY_WAIT: Duration = Duration::from_secs(60);

/// Answers larger than this together are compared on tokio's blocking pool.
const INLINE_COMPARE_BYTES: usize = 64 * 1024;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One shadowed route at run time.
pub struct RouteShadow {
    pub route: String,
    pub spec: Arc<ShadowSpec>,
    /// Kept across a reload while the comparison and recording settings are unchanged.
    pub stats: Arc<RouteStats>,
    /// `max_in_flight` permits, kept across reloads (see [`InFlight`]).
    in_flight: Arc<InFlight>,
    candidate: Arc<Upstream>,
    /// The copies' own breaker for each candidate target, in the same order.
    breakers: Vec<Arc<Breaker>>,
    next: AtomicUsize,
    client: HttpClient,
    metrics: Arc<Metrics>,
}

/// The in-flight permits of a route's copies. One semaphore lives as long as the route's name,
/// so copies started before a reload count against the limit after it; a lower limit is
/// reached by forgetting permits as they come back (the `debt`).
#[derive(Debug)]
struct InFlight {
    permits: Arc<Semaphore>,
    /// The configured limit.
    limit: AtomicUsize,
    /// Permits still to forget after the limit went down.
    debt: AtomicUsize,
}

impl InFlight {
    fn new(limit: usize) -> InFlight {
        InFlight {
            permits: Arc::new(Semaphore::new(limit)),
            limit: AtomicUsize::new(limit),
            debt: AtomicUsize::new(0),
        }
    }

    /// Moves the limit to `limit`; copies under way keep their permits.
    fn resize(&self, limit: usize) {
        let before = self.limit.swap(limit, Ordering::AcqRel);
        if limit > before {
            let mut more = limit - before;
            // Pay off an earlier cut first.
            while more > 0 {
                let debt = self.debt.load(Ordering::Acquire);
                if debt == 0 {
                    break;
                }
                let paid = debt.min(more);
                if self
                    .debt
                    .compare_exchange(debt, debt - paid, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    more -= paid;
                }
            }
            self.permits.add_permits(more);
        } else if limit < before {
            let cut = before - limit;
            let forgotten = self.permits.forget_permits(cut);
            self.debt.fetch_add(cut - forgotten, Ordering::AcqRel);
        }
    }

    fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            let permit = self.permits.clone().try_acquire_owned().ok()?;
            let debt = self.debt.load(Ordering::Acquire);
            if debt == 0 {
                return Some(permit);
            }
            if self
                .debt
                .compare_exchange(debt, debt - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                permit.forget();
            }
        }
    }
}

impl std::fmt::Debug for RouteShadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteShadow")
            .field("route", &self.route)
            .finish()
    }
}

impl RouteShadow {
    /// The route's shadow, keeping what `previous` (the same route before a reload) learned
    /// while its settings allow.
    pub fn build(
        route: &RouteSpec,
        spec: Arc<ShadowSpec>,
        candidate: Arc<Upstream>,
        previous: Option<&RouteShadow>,
        metrics: &Arc<Metrics>,
    ) -> RouteShadow {
        let same_verdicts = previous.is_some_and(|p| {
            p.spec.upstream == spec.upstream
                && p.spec.compare == spec.compare
                && p.spec.redact == spec.redact
                && p.spec.mismatches == spec.mismatches
        });
        let stats = match previous {
            Some(p) if same_verdicts => p.stats.clone(),
            _ => Arc::new(RouteStats::new(
                Limits {
                    mismatches: spec.mismatches,
                    ..Limits::default()
                },
                spec.redact.clone(),
            )),
        };
        let in_flight = match previous {
            Some(p) => {
                p.in_flight.resize(spec.max_in_flight);
                p.in_flight.clone()
            }
            None => Arc::new(InFlight::new(spec.max_in_flight)),
        };
        let breaker_config = candidate
            .spec
            .circuit_breaker
            .as_ref()
            .map(|b| b.config.clone())
            .unwrap_or_default();
        let breakers = candidate
            .targets
            .iter()
            .map(|t| {
                let kept = previous.and_then(|p| {
                    let i = p.candidate.targets.iter().position(|o| o.addr == t.addr)?;
                    let b = p.breakers.get(i)?;
                    (*b.config() == breaker_config).then(|| b.clone())
                });
                kept.unwrap_or_else(|| {
                    let (route, upstream, target) =
                        (route.name.clone(), candidate.spec.name.clone(), t.name.clone());
                    Arc::new(Breaker::with_observer(breaker_config.clone(), move |t| {
                        if t.to == State::Open {
                            tracing::warn!(route, upstream, target, "shadow copies' circuit breaker opened");
                        } else {
                            tracing::info!(route, upstream, target, to = %t.to, "shadow copies' circuit breaker");
                        }
                    }))
                })
            })
            .collect();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(candidate.spec.timeouts.connect.min(spec.timeout)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(spec.max_in_flight)
            .pool_idle_timeout(candidate.spec.timeouts.idle)
            .build(connector);
        RouteShadow {
            route: route.name.clone(),
            spec,
            stats,
            in_flight,
            candidate,
            breakers,
            next: AtomicUsize::new(0),
            client,
            metrics: metrics.clone(),
        }
    }

    /// Whether to copy this request (the rules of [`plan::decide`]), with the in-flight permit
    /// the copy holds; counts the skipped ones.
    pub fn plan(&self, facts: &Facts<'_>) -> Option<(Plan, OwnedSemaphorePermit)> {
        let plan = match plan::decide(&self.spec, facts) {
            Ok(Some(plan)) => plan,
            Ok(None) => return None,
            Err(skip) => {
                self.skipped(skip);
                return None;
            }
        };
        match self.in_flight.try_acquire() {
            Some(permit) => Some((plan, permit)),
            None => {
                self.skipped(Skip::InFlight);
                None
            }
        }
    }

    fn skipped(&self, why: Skip) {
        self.metrics
            .shadow_skipped
            .with_label_values(&[self.route.as_str(), why.as_str()])
            .inc();
    }

    fn counted(&self, verdict: Verdict) {
        self.metrics
            .shadow_requests
            .with_label_values(&[self.route.as_str(), verdict.as_str()])
            .inc();
    }

    fn observe(&self, side: &str, took: Duration) {
        self.metrics
            .shadow_duration
            .with_label_values(&[self.route.as_str(), side])
            .observe(took.as_secs_f64());
    }

    /// A candidate target for a copy: healthy and its copies' breaker admitting, round robin.
    fn pick(&self) -> Option<Picked> {
        let n = self.candidate.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| {
            let at = (start + i) % n;
            let target = &self.candidate.targets[at];
            if !target.health.is_healthy() {
                return None;
            }
            let permit = self.breakers.get(at)?.try_acquire().ok()?;
            Some(Picked {
                addr: target.addr,
                index: at,
                permit,
            })
        })
    }

    /// How an answer of the candidate's target counts for the copies' breaker: by the
    /// candidate's `circuit_breaker.failure_statuses` when it has a breaker, else 5xx.
    fn outcome_of(&self, index: usize, status: u16) -> Outcome {
        match (
            &self.candidate.spec.circuit_breaker,
            self.candidate.targets.get(index),
        ) {
            (Some(_), Some(t)) => t.outcome_of_status(status),
            _ if status >= 500 => Outcome::Failure,
            _ => Outcome::Success,
        }
    }
}

/// The candidate target a copy goes to.
struct Picked {
    addr: SocketAddr,
    index: usize,
    permit: crate::breaker::Permit,
}

/// How the client's request ended, as `logging` saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// No error: the primary's answer reached the client whole.
    Whole,
    /// The answer came from the route's fallback.
    Fallback,
    /// The gateway or the primary failed (the gateway's own error answer, a broken answer).
    Failed,
    /// The client went away first.
    ClientGone,
}

/// What the copy's task learns of the primary.
enum Primary {
    /// Its whole answer, decoded as sent (the body up to `max_response`).
    Answer {
        status: u16,
        headers: HeaderMap,
        body: Vec<u8>,
        took: Duration,
    },
    /// Nothing to compare (a skip or the primary's error).
    Not(Result<Skip, ()>),
}

/// What one side's exchange came to.
enum Exchanged {
    Answer {
        status: u16,
        headers: HeaderMap,
        body: Bytes,
    },
    /// Its body passed the cap (the status kept for the copies' breaker).
    TooLarge(u16),
    Failed(&'static str),
}

/// One copied request, from admission to the request's end (held in the request context).
pub struct ShadowCopy {
    shadow: Arc<RouteShadow>,
    plan: Plan,
    /// The upstream the request went to (a noise call repeats it there).
    primary: Arc<Upstream>,
    stage: Stage,
    answer: Option<(u16, HeaderMap)>,
    answer_body: Capped,
}

/// What a mismatch record names.
struct Recorded {
    request_id: String,
    method: Method,
    path: String,
}

enum Stage {
    /// Waiting for the request body to end.
    Pending(Box<Pending>),
    /// Sent; the task waits for the primary's answer.
    Started(oneshot::Sender<Primary>),
    /// Skipped or over.
    Done,
}

struct Pending {
    /// Set by the first attempt ([`ShadowCopy::attempt`]).
    head: Option<Head>,
    body: Capped,
    permit: OwnedSemaphorePermit,
    facts: Recorded,
}

/// The request the copy repeats: the primary's, as the proxy prepared it.
struct Head {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
}

impl Head {
    fn of(prepared: &pingora_http::RequestHeader) -> Head {
        let path = PathAndQuery::try_from(prepared.raw_path().to_vec())
            .ok()
            .or_else(|| prepared.uri.path_and_query().cloned())
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let nominated: Vec<HeaderName> = prepared
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        let mut headers = HeaderMap::with_capacity(prepared.headers.len() + 2);
        for (name, value) in &prepared.headers {
            if !NOT_COPIED.contains(name) && name.as_str() != HEADER && !nominated.contains(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        // pingora writes an HTTP/2 client's `:authority` as `Host` for the primary; a request
        // without either gets the authority of its absolute-form target, if any.
        if !headers.contains_key(header::HOST)
            && let Some(host) = prepared
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, host);
        }
        Head {
            method: prepared.method.clone(),
            path,
            headers,
        }
    }
}

/// Hop-by-hop fields and those the copy sets itself (fields a `Connection` header names are
/// dropped too).
const NOT_COPIED: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    header::EXPECT,
    HeaderName::from_static(crate::observability::TRACEPARENT),
];

impl ShadowCopy {
    /// A planned copy of the request whose upstream head is `prepared` (what the primary gets).
    pub fn new(
        shadow: Arc<RouteShadow>,
        (plan, permit): (Plan, OwnedSemaphorePermit),
        primary: Arc<Upstream>,
        method: &Method,
        path: &str,
        request_id: &str,
    ) -> ShadowCopy {
        let max_response = shadow.spec.max_response;
        ShadowCopy {
            plan,
            primary,
            stage: Stage::Pending(Box::new(Pending {
                head: None,
                body: Capped::new(shadow.spec.max_body),
                permit,
                facts: Recorded {
                    request_id: request_id.to_string(),
                    method: method.clone(),
                    path: path.to_string(),
                },
            })),
            answer: None,
            answer_body: Capped::new(max_response),
            shadow,
        }
    }

    /// An attempt is about to send `prepared` (what the primary gets: path, `X-Forwarded-*`,
    /// `X-Request-ID`, identity headers). The first one gives the copy its head (the proxy
    /// prepares a request once for both). A later one (a retry, the fallback) replays the body
    /// pingora kept: the tee starts over, so the copy gets the body once.
    pub fn attempt(&mut self, prepared: &pingora_http::RequestHeader) {
        if let Stage::Pending(p) = &mut self.stage {
            match p.head {
                None => p.head = Some(Head::of(prepared)),
                Some(_) => p.body.clear(),
            }
        }
    }

    /// The request is on the route's fallback: a copy that has not left is skipped
    /// (`fallback`); one under way learns it at the end ([`End::Fallback`]).
    pub fn fallback(&mut self) {
        if matches!(self.stage, Stage::Pending(_)) {
            self.stage = Stage::Done;
            self.shadow.skipped(Skip::Fallback);
        }
    }

    /// A chunk of the request body as it streams to the primary; the copy starts at its end.
    pub fn tee(&mut self, chunk: Option<&[u8]>, end: bool, trace: &RequestTrace) {
        let Stage::Pending(p) = &mut self.stage else {
            return;
        };
        if let Some(chunk) = chunk
            && !p.body.push(chunk)
        {
            self.stage = Stage::Done;
            self.shadow.skipped(Skip::BodyTooLarge);
            return;
        }
        if end {
            self.start(trace);
        }
    }

    /// Sends the copy (in a task of its own): the request is whole.
    pub fn start(&mut self, trace: &RequestTrace) {
        if !matches!(&self.stage, Stage::Pending(p) if p.head.is_some()) {
            return;
        }
        let Stage::Pending(pending) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return;
        };
        let Pending {
            head,
            body,
            permit,
            facts,
        } = *pending;
        let Some(head) = head else {
            return;
        };
        let shadow = self.shadow.clone();
        let Some(picked) = shadow.pick() else {
            shadow.skipped(Skip::Unavailable);
            return;
        };
        let body = Bytes::from(body.into_bytes());
        let tag = if self.plan.write { "dry-run" } else { "1" };
        let span = trace.side_span(
            &head.method,
            &shadow.spec.upstream,
            picked.addr,
            "candidate",
        );
        let candidate = request(&head, picked.addr, tag, span.traceparent(), body.clone());
        let noise = self
            .plan
            .noise
            .then(|| available_target(&self.primary))
            .flatten()
            .map(|addr| {
                let span = trace.side_span(&head.method, &self.primary.spec.name, addr, "noise");
                let req = request(&head, addr, "noise", span.traceparent(), body);
                (req, span)
            });
        let (tx, rx) = oneshot::channel();
        self.stage = Stage::Started(tx);
        let task = Task {
            shadow,
            trace_id: trace.trace_id(),
            facts,
            _permit: permit,
        };
        tokio::spawn(task.run(candidate, (picked, span), noise, rx));
    }

    /// The primary's answer head arrived (a later attempt's replaces an earlier one's).
    pub fn primary_head(&mut self, status: u16, headers: &HeaderMap) {
        if matches!(self.stage, Stage::Done) {
            return;
        }
        self.answer = Some((status, headers.clone()));
        self.answer_body.clear();
    }

    /// A chunk of the primary's answer body. Past `max_response` the copy's task is told at
    /// once (it ends, and its permit with it).
    pub fn primary_body(&mut self, chunk: &[u8]) {
        if self.answer.is_none() || matches!(self.stage, Stage::Done) {
            return;
        }
        if !self.answer_body.push(chunk) {
            self.answer = None;
            self.hand_over(Primary::Not(Ok(Skip::ResponseTooLarge)));
        }
    }

    /// The request is over: hands the primary's answer to the copy's task.
    pub fn finish(mut self, end: End, took: Duration) {
        let primary = match (end, self.answer.take()) {
            (End::Whole, Some((status, headers))) => Primary::Answer {
                status,
                headers,
                body: std::mem::take(&mut self.answer_body).into_bytes(),
                took,
            },
            (End::Fallback, _) => Primary::Not(Ok(Skip::Fallback)),
            (End::ClientGone, _) => Primary::Not(Ok(Skip::RequestIncomplete)),
            (End::Whole | End::Failed, _) => Primary::Not(Err(())),
        };
        self.hand_over(primary);
    }

    /// Tells the copy's task (or, before it started, counts the outcome here).
    fn hand_over(&mut self, primary: Primary) {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Started(tx) => {
                let _ = tx.send(primary);
            }
            // The copy never left: its body never ended (the primary failed before reading it,
            // or the client left), or the primary answered before reading it all.
            Stage::Pending(_) => match primary {
                Primary::Not(Err(())) => self
                    .shadow
                    .counted(self.shadow.stats.record_primary_error()),
                Primary::Not(Ok(skip)) => self.shadow.skipped(skip),
                Primary::Answer { .. } => self.shadow.skipped(Skip::RequestIncomplete),
            },
            Stage::Done => {}
        }
    }
}

/// A target of the primary's upstream for the noise call: one that looks available (a peek:
/// the call takes no permit of the primary's breakers and records nothing on them).
fn available_target(up: &Upstream) -> Option<SocketAddr> {
    let n = up.targets.len();
    let start = rand::random_range(0..n.max(1));
    (0..n)
        .map(|i| &up.targets[(start + i) % n])
        .find(|t| t.looks_available())
        .map(|t| t.addr)
}

/// The copy of `head` for `addr`, marked with `tag`, in its own span's trace context.
fn request(
    head: &Head,
    addr: SocketAddr,
    tag: &'static str,
    traceparent: Option<String>,
    body: Bytes,
) -> Option<Request<Full<Bytes>>> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(addr.to_string())
        .path_and_query(head.path.clone())
        .build()
        .ok()?;
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    let headers = req.headers_mut();
    headers.clone_from(&head.headers);
    headers.insert(HEADER, HeaderValue::from_static(tag));
    if let Some(tp) = traceparent.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(crate::observability::TRACEPARENT, tp);
    }
    Some(req)
}

/// One exchange under the copy's deadline, its answer kept up to `limit` bytes.
async fn exchange(
    client: &HttpClient,
    req: Option<Request<Full<Bytes>>>,
    deadline: Duration,
    limit: u64,
) -> Exchanged {
    let Some(req) = req else {
        return Exchanged::Failed("bad_request");
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let exchange = async {
        let resp = match client.request(req).await {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => return Exchanged::Failed("connect_error"),
            Err(_) => return Exchanged::Failed("reset"),
        };
        let (parts, body) = resp.into_parts();
        let status = parts.status.as_u16();
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Exchanged::Answer {
                status,
                headers: parts.headers,
                body: collected.to_bytes(),
            },
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Exchanged::TooLarge(status),
            Err(_) => Exchanged::Failed("reset"),
        }
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or(Exchanged::Failed("timeout"))
}

/// Whether judging these answers is work for tokio's blocking pool rather than a worker
/// thread: more than [`INLINE_COMPARE_BYTES`] together, or any of them compressed (decoding
/// can expand a small body up to `max_response`).
fn heavy(primary: &Primary, candidate: &Exchanged, noise: Option<&Exchanged>) -> bool {
    let (mut bytes, mut encoded) = (0, false);
    let mut add = |headers: &HeaderMap, body: &[u8]| {
        bytes += body.len();
        encoded |= headers.contains_key(header::CONTENT_ENCODING);
    };
    if let Primary::Answer { headers, body, .. } = primary {
        add(headers, body);
    }
    for side in std::iter::once(candidate).chain(noise) {
        if let Exchanged::Answer { headers, body, .. } = side {
            add(headers, body);
        }
    }
    encoded || bytes > INLINE_COMPARE_BYTES
}

/// A started copy's task: what it needs after the request context is gone.
struct Task {
    shadow: Arc<RouteShadow>,
    trace_id: Option<String>,
    facts: Recorded,
    /// Held until the comparison is over (see the module docs).
    _permit: OwnedSemaphorePermit,
}

impl Task {
    async fn run(
        self,
        candidate: Option<Request<Full<Bytes>>>,
        (picked, span): (Picked, SideSpan),
        noise: Option<(Option<Request<Full<Bytes>>>, SideSpan)>,
        primary: oneshot::Receiver<Primary>,
    ) {
        let shadow = self.shadow.clone();
        let spec = &shadow.spec;
        let started = Instant::now();
        let candidate_call = async {
            let answer = exchange(&shadow.client, candidate, spec.timeout, spec.max_response).await;
            (answer, started.elapsed())
        };
        let noise_call = async {
            let (req, span) = noise?;
            let answer = exchange(&shadow.client, req, spec.timeout, spec.max_response).await;
            finish_span(span, &answer);
            Some(answer)
        };
        let ((answer, took), noise) = tokio::join!(candidate_call, noise_call);
        match &answer {
            Exchanged::Answer { status, .. } | Exchanged::TooLarge(status) => {
                picked
                    .permit
                    .record(shadow.outcome_of(picked.index, *status));
            }
            // The gateway could not build the request: not the target's failure.
            Exchanged::Failed("bad_request") => drop(picked.permit),
            Exchanged::Failed(_) => {
                picked.permit.record(Outcome::Failure);
            }
        }
        finish_span(span, &answer);
        if !matches!(answer, Exchanged::Failed(_)) {
            shadow.observe("shadow", took);
        }
        let primary = match tokio::time::timeout(PRIMARY_WAIT, primary).await {
            Ok(Ok(primary)) => primary,
            // The request context went without a word: its request failed.
            Ok(Err(_)) => Primary::Not(Err(())),
            Err(_) => Primary::Not(Ok(Skip::PrimaryTooSlow)),
        };
        let outcome = if heavy(&primary, &answer, noise.as_ref()) {
            let route = shadow.route.clone();
            tokio::task::spawn_blocking(move || self.judge(answer, noise, primary))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(route, error = %e, "shadow comparison failed");
                    Some(Ok(shadow.stats.record_shadow_error()))
                })
        } else {
            self.judge(answer, noise, primary)
        };
        match outcome {
            Some(Ok(verdict)) => shadow.counted(verdict),
            Some(Err(skip)) => shadow.skipped(skip),
            None => {}
        }
    }

    /// The verdict, or why there is none.
    fn judge(
        &self,
        candidate: Exchanged,
        noise: Option<Exchanged>,
        primary: Primary,
    ) -> Option<Result<Verdict, Skip>> {
        let shadow = &self.shadow;
        let stats = &shadow.stats;
        let spec = &shadow.spec;
        let (status, headers, primary_body, took) = match primary {
            Primary::Answer {
                status,
                headers,
                body,
                took,
            } => (status, headers, body, took),
            Primary::Not(Ok(skip)) => return Some(Err(skip)),
            Primary::Not(Err(())) => return Some(Ok(stats.record_primary_error())),
        };
        shadow.observe("primary", took);
        if status >= 500 {
            // The primary failed: a candidate that answers is not wrong for differing.
            return Some(Ok(stats.record_primary_error()));
        }
        let (c_status, c_headers, c_body) = match candidate {
            Exchanged::Answer {
                status,
                headers,
                body,
            } => (status, headers, body),
            Exchanged::TooLarge(_) => return Some(Err(Skip::ResponseTooLarge)),
            Exchanged::Failed(why) => {
                tracing::debug!(
                    route = %shadow.route,
                    request_id = %self.facts.request_id,
                    error = why,
                    "shadow copy failed"
                );
                return Some(Ok(stats.record_shadow_error()));
            }
        };
        let limit = usize::try_from(spec.max_response).unwrap_or(usize::MAX);
        let decoded = |h: &HeaderMap, b: &[u8]| {
            if spec.compare.body == BodyMode::None {
                // The body is not compared: whatever it is, it cannot be a reason to skip.
                return Ok(Vec::new());
            }
            encoding::decode(h, b, limit)
                .map(|b| b.into_owned())
                .map_err(|e| match e {
                    DecodeError::TooLarge => Skip::ResponseTooLarge,
                    DecodeError::Undecodable => Skip::Encoding,
                })
        };
        let primary_body = match decoded(&headers, &primary_body) {
            Ok(b) => b,
            Err(skip) => return Some(Err(skip)),
        };
        let c_body = match decoded(&c_headers, &c_body) {
            Ok(b) => b,
            Err(skip) => return Some(Err(skip)),
        };
        let primary_answer = Answer {
            status,
            headers: &headers,
            body: &primary_body,
        };
        let compare_spec = &spec.compare;
        // Noise is learned only from a second answer of the same kind: a primary that failed
        // or changed its status or type the second time teaches nothing about its fields.
        if let Some(Exchanged::Answer {
            status: n_status,
            headers: n_headers,
            body: n_body,
        }) = &noise
            && *n_status == status
            && n_headers.get(header::CONTENT_TYPE) == headers.get(header::CONTENT_TYPE)
            && let Ok(n_body) = decoded(n_headers, n_body)
        {
            let again = Answer {
                status: *n_status,
                headers: n_headers,
                body: &n_body,
            };
            let noisy = compare::compare(compare_spec, &primary_answer, &again);
            stats.learn_noise(noisy.entries());
        }
        let candidate_answer = Answer {
            status: c_status,
            headers: &c_headers,
            body: &c_body,
        };
        let differences = compare::compare(compare_spec, &primary_answer, &candidate_answer);
        // Values are parsed only for a mismatch that may be recorded.
        let recorded =
            !differences.is_empty() && spec.mismatches > 0 && compare_spec.body == BodyMode::Json;
        let json = |b: &[u8]| -> Option<serde_json::Value> {
            recorded.then(|| serde_json::from_slice(b).ok()).flatten()
        };
        let (p_doc, c_doc) = (json(&primary_body), json(&c_body));
        let exchange = Exchange {
            request_id: &self.facts.request_id,
            trace_id: self.trace_id.as_deref(),
            method: self.facts.method.as_str(),
            path: &self.facts.path,
            primary_status: status,
            candidate_status: c_status,
            primary: p_doc.as_ref(),
            candidate: c_doc.as_ref(),
        };
        Some(Ok(stats.record_comparison(&exchange, differences.entries())))
    }
}

fn finish_span(span: SideSpan, answer: &Exchanged) {
    match answer {
        Exchanged::Answer { status, .. } => span.finish(Some(*status), None),
        Exchanged::TooLarge(status) => span.finish(Some(*status), None),
        Exchanged::Failed(why) => span.finish(None, Some(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    /// A candidate that sends each request body it gets down a channel and answers `{}`.
    async fn candidate() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let app = axum::Router::new().fallback(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                ([(header::CONTENT_TYPE, "application/json")], "{}")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, rx)
    }

    /// A route `r` on `mono` shadowed to `cand` at `addr`, writes copied as dry runs.
    fn shadow_at(addr: SocketAddr) -> (Arc<RouteShadow>, Arc<Upstream>) {
        let src = format!(
            "upstreams:\n  mono: {{ targets: [\"127.0.0.1:9\"] }}\n  cand: {{ targets: [\"{addr}\"] }}\nroutes:\n  - name: r\n    match: {{}}\n    upstream: mono\n    shadow: {{ upstream: cand, methods: [PUT], writes: dry_run }}\n"
        );
        let config = load_str("gw.yaml", &src).expect("valid");
        let metrics = Arc::new(Metrics::new());
        let up = |name: &str| {
            let spec = config.upstreams[name].clone();
            Arc::new(Upstream::build(spec, None, &config.addresses, &metrics).unwrap())
        };
        let route = &config.routes[0];
        let spec = route.shadow.clone().unwrap();
        let shadow = RouteShadow::build(route, spec, up("cand"), None, &metrics);
        (Arc::new(shadow), up("mono"))
    }

    #[tokio::test]
    async fn a_body_replayed_to_a_second_attempt_is_copied_once() {
        let (addr, mut bodies) = candidate().await;
        let (shadow, mono) = shadow_at(addr);
        let facts = Facts {
            method: &Method::PUT,
            upgrade: false,
            primary: "mono",
            content_length: Some(6),
            draws: (0.0, 1.0),
        };
        let planned = shadow.plan(&facts).expect("copied");
        let mut head = pingora_http::RequestHeader::build("PUT", b"/r/1", None).unwrap();
        head.insert_header("content-type", "application/json")
            .unwrap();
        let trace = RequestTrace::default();
        let mut copy = ShadowCopy::new(shadow.clone(), planned, mono, &Method::PUT, "/r/1", "rid");
        copy.attempt(&head);
        copy.tee(Some(b"{\"a\""), false, &trace);
        // The first attempt failed after reading half the body; pingora replays it all.
        copy.attempt(&head);
        copy.tee(Some(b"{\"a\""), false, &trace);
        copy.tee(Some(b":1}"), true, &trace);
        let got = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
            .await
            .expect("the candidate got the copy")
            .unwrap();
        assert_eq!(&got[..], br#"{"a":1}"#);
        let mut json = HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        copy.primary_head(200, &json);
        copy.primary_body(b"{}");
        copy.finish(End::Whole, Duration::from_millis(1));
        testkit::wait::eventually("a match", Duration::from_secs(10), || async {
            let c = shadow.stats.counts();
            if c.matched == 1 { Ok(()) } else { Err(c) }
        })
        .await;
    }

    #[tokio::test]
    async fn a_lower_limit_is_reached_as_copies_end_and_a_higher_one_at_once() {
        let f = InFlight::new(3);
        let held: Vec<_> = (0..3).map(|_| f.try_acquire().unwrap()).collect();
        assert!(f.try_acquire().is_none());
        f.resize(1);
        drop(held);
        // Two of the three returned permits are forgotten: one copy at a time now.
        let one = f.try_acquire().expect("one permit");
        assert!(f.try_acquire().is_none());
        drop(one);
        f.resize(2);
        let a = f.try_acquire().unwrap();
        let b = f.try_acquire().unwrap();
        assert!(f.try_acquire().is_none());
        // Cut while both are held (nothing to forget yet: a debt), then raised before they
        // come back: the raise pays the debt, and the limit is 3, not 5.
        f.resize(0);
        f.resize(3);
        drop((a, b));
        let all: Vec<_> = (0..3).map(|_| f.try_acquire().unwrap()).collect();
        assert!(f.try_acquire().is_none());
        drop(all);
    }
}
