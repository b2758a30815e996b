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
//! 1. `request_filter`, after admission: [`RouteShadow::plan`] (the rules of
//!    [`plan`](super::plan)) and a permit of the semaphore; the proxy prepares the head the
//!    primary will get (path, `X-Forwarded-*`, `X-Request-ID`, identity headers) and makes a
//!    [`Copy`]. A request without a body starts at once ([`Copy::start`]).
//! 2. `request_body_filter`: [`Copy::tee`] keeps the body up to `max_body` and starts the copy
//!    at its end.
//! 3. `upstream_response_filter` / `upstream_response_body_filter`: [`Copy::primary_head`],
//!    [`Copy::primary_body`] keep the primary's answer (each attempt's anew) up to
//!    `max_response`.
//! 4. `logging`: [`Copy::finish`] hands the primary's answer over (or says it failed).
//! 5. The task: sends the copy (and, for the `noise` share, the request again to the primary),
//!    waits for the primary's answer, compares ([`compare`](crate::shadow::compare)), classifies and
//!    records ([`verdicts`](crate::shadow::verdicts)). The semaphore's permit is held until then, so
//!    at most `max_in_flight` copies, and their answers, exist at once.

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
use hyper_util::rt::TokioExecutor;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use super::plan::{self, Capped, Facts, Plan, Skip};
use crate::breaker::{Breaker, Outcome};
use crate::config::model::{RouteSpec, ShadowSpec};
use crate::metrics::Metrics;
use crate::observability::{RequestTrace, SideSpan};
use crate::shadow::compare::{self, Answer, BodyMode};
use crate::shadow::verdicts::{Exchange, Limits, RouteStats, Verdict};
use crate::upstream::Upstream;

/// The header that marks a copy (`1`), a copied write under `writes: dry_run` (`dry-run`) and
/// the second call to the primary (`noise`). Removed from every request a client sends.
pub const HEADER: &str = "x-gateway-shadow";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One shadowed route at run time.
pub struct RouteShadow {
    pub route: String,
    pub spec: Arc<ShadowSpec>,
    /// Kept across a reload while the comparison and recording settings are unchanged.
    pub stats: Arc<RouteStats>,
    /// `max_in_flight` permits (kept across a reload while it is unchanged).
    permits: Arc<Semaphore>,
    candidate: Arc<Upstream>,
    /// The copies' own breaker for each candidate target, in the same order.
    breakers: Vec<Arc<Breaker>>,
    next: AtomicUsize,
    client: HttpClient,
    metrics: Arc<Metrics>,
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
        let permits = match previous {
            Some(p) if p.spec.max_in_flight == spec.max_in_flight => p.permits.clone(),
            _ => Arc::new(Semaphore::new(spec.max_in_flight)),
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
                kept.unwrap_or_else(|| Arc::new(Breaker::new(breaker_config.clone())))
            })
            .collect();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(candidate.spec.timeouts.connect.min(spec.timeout)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(spec.max_in_flight)
            .pool_idle_timeout(candidate.spec.timeouts.idle)
            .build(connector);
        RouteShadow {
            route: route.name.clone(),
            spec,
            stats,
            permits,
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
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some((plan, permit)),
            Err(_) => {
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
    fn pick(&self) -> Option<(SocketAddr, crate::breaker::Permit)> {
        let n = self.candidate.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| {
            let at = (start + i) % n;
            let target = &self.candidate.targets[at];
            if !target.health.is_healthy() {
                return None;
            }
            let permit = self.breakers.get(at)?.try_acquire().ok()?;
            Some((target.addr, permit))
        })
    }
}

/// The primary's answer as the proxy saw it, handed to the copy's task at the request's end.
struct Primary {
    /// Status and headers of the answer that reached the client, if an upstream gave one.
    head: Option<(u16, HeaderMap)>,
    body: Capped,
    /// The answer arrived whole (no error ended the request).
    complete: bool,
    took: Duration,
}

/// What one side's exchange came to.
enum Exchanged {
    Answer {
        status: u16,
        headers: HeaderMap,
        body: Bytes,
    },
    TooLarge,
    Failed(&'static str),
}

/// One copied request, from admission to the request's end (held in the request context).
pub struct Copy {
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
    Pending {
        head: Box<Head>,
        body: Capped,
        permit: OwnedSemaphorePermit,
        facts: Recorded,
    },
    /// Sent; the task waits for the primary's answer.
    Started(oneshot::Sender<Primary>),
    /// Skipped or over.
    Done,
}

/// The request the copy repeats: the primary's, as the proxy prepared it.
struct Head {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
}

/// Hop-by-hop fields and those the copy sets itself.
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

impl Copy {
    /// A planned copy of the request whose upstream head is `prepared` (what the primary gets).
    pub fn new(
        shadow: Arc<RouteShadow>,
        (plan, permit): (Plan, OwnedSemaphorePermit),
        primary: Arc<Upstream>,
        prepared: &pingora_http::RequestHeader,
        path: &str,
        request_id: &str,
    ) -> Copy {
        let path_and_query = PathAndQuery::try_from(prepared.raw_path().to_vec())
            .ok()
            .or_else(|| prepared.uri.path_and_query().cloned())
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut headers = HeaderMap::with_capacity(prepared.headers.len() + 2);
        for (name, value) in &prepared.headers {
            if !NOT_COPIED.contains(name) && name.as_str() != HEADER {
                headers.append(name.clone(), value.clone());
            }
        }
        let max_body = shadow.spec.max_body;
        let max_response = shadow.spec.max_response;
        Copy {
            plan,
            primary,
            stage: Stage::Pending {
                head: Box::new(Head {
                    method: prepared.method.clone(),
                    path: path_and_query,
                    headers,
                }),
                body: Capped::new(max_body),
                permit,
                facts: Recorded {
                    request_id: request_id.to_string(),
                    method: prepared.method.clone(),
                    path: path.to_string(),
                },
            },
            answer: None,
            answer_body: Capped::new(max_response),
            shadow,
        }
    }

    /// A chunk of the request body as it streams to the primary; the copy starts at its end.
    pub fn tee(&mut self, chunk: Option<&[u8]>, end: bool, trace: &RequestTrace) {
        let Stage::Pending { body, .. } = &mut self.stage else {
            return;
        };
        if let Some(chunk) = chunk
            && !body.push(chunk)
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
        let Stage::Pending {
            head,
            body,
            permit,
            facts,
        } = std::mem::replace(&mut self.stage, Stage::Done)
        else {
            return;
        };
        let shadow = self.shadow.clone();
        let Some((addr, breaker)) = shadow.pick() else {
            shadow.skipped(Skip::Unavailable);
            return;
        };
        let body = Bytes::from(body.into_bytes());
        let tag = if self.plan.write { "dry-run" } else { "1" };
        let span = trace.side_span(&head.method, &shadow.spec.upstream, addr, "candidate");
        let candidate = request(&head, addr, tag, span.traceparent(), body.clone());
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
        tokio::spawn(task.run(candidate, (breaker, span), noise, rx));
    }

    /// The primary's answer head arrived (a later attempt's replaces an earlier one's).
    pub fn primary_head(&mut self, status: u16, headers: &HeaderMap) {
        if matches!(self.stage, Stage::Done) {
            return;
        }
        self.answer = Some((status, headers.clone()));
        self.answer_body.clear();
    }

    /// A chunk of the primary's answer body.
    pub fn primary_body(&mut self, chunk: &[u8]) {
        if self.answer.is_some() && !matches!(self.stage, Stage::Done) {
            self.answer_body.push(chunk);
        }
    }

    /// The request is over: hands the primary's answer to the copy's task. `complete`: no
    /// error ended the request; `took`: from its start.
    pub fn finish(self, complete: bool, took: Duration) {
        match self.stage {
            Stage::Pending { .. } => self.shadow.skipped(Skip::RequestIncomplete),
            Stage::Started(tx) => {
                let _ = tx.send(Primary {
                    head: self.answer,
                    body: self.answer_body,
                    complete,
                    took,
                });
            }
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
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Exchanged::Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: collected.to_bytes(),
            },
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Exchanged::TooLarge,
            Err(_) => Exchanged::Failed("reset"),
        }
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or(Exchanged::Failed("timeout"))
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
        (breaker, span): (crate::breaker::Permit, SideSpan),
        noise: Option<(Option<Request<Full<Bytes>>>, SideSpan)>,
        primary: oneshot::Receiver<Primary>,
    ) {
        let shadow = &self.shadow;
        let spec = &shadow.spec;
        let started = Instant::now();
        let candidate_call = async {
            let answer = exchange(&shadow.client, candidate, spec.timeout, spec.max_response).await;
            (answer, started.elapsed())
        };
        let noise_call = async {
            match noise {
                Some((req, span)) => {
                    let answer =
                        exchange(&shadow.client, req, spec.timeout, spec.max_response).await;
                    finish_span(span, &answer);
                    Some(answer)
                }
                None => None,
            }
        };
        let ((answer, took), noise) = tokio::join!(candidate_call, noise_call);
        breaker.record(match &answer {
            Exchanged::Answer { status, .. } if *status >= 500 => Outcome::Failure,
            Exchanged::Failed(_) => Outcome::Failure,
            _ => Outcome::Success,
        });
        finish_span(span, &answer);
        if !matches!(answer, Exchanged::Failed(_)) {
            shadow.observe("shadow", took);
        }
        let primary = primary.await.ok();
        let verdict = self.judge(answer, noise, primary);
        if let Some(verdict) = verdict {
            shadow.counted(verdict);
        }
    }

    /// The verdict (`None`: not compared, a skip already counted).
    fn judge(
        &self,
        candidate: Exchanged,
        noise: Option<Exchanged>,
        primary: Option<Primary>,
    ) -> Option<Verdict> {
        let shadow = &self.shadow;
        let stats = &shadow.stats;
        let primary = match primary {
            Some(p) if p.complete && p.head.is_some() => p,
            _ => return Some(stats.record_primary_error()),
        };
        shadow.observe("primary", primary.took);
        if primary.body.is_over() {
            shadow.skipped(Skip::ResponseTooLarge);
            return None;
        }
        let (status, headers) = primary.head?;
        let primary_body = primary.body.into_bytes();
        let primary_answer = Answer {
            status,
            headers: &headers,
            body: &primary_body,
        };
        let (c_status, c_headers, c_body) = match candidate {
            Exchanged::Answer {
                status,
                headers,
                body,
            } => (status, headers, body),
            Exchanged::TooLarge => {
                shadow.skipped(Skip::ResponseTooLarge);
                return None;
            }
            Exchanged::Failed(why) => {
                tracing::debug!(
                    route = %shadow.route,
                    request_id = %self.facts.request_id,
                    error = why,
                    "shadow copy failed"
                );
                return Some(stats.record_shadow_error());
            }
        };
        let compare_spec = &shadow.spec.compare;
        if let Some(Exchanged::Answer {
            status,
            headers,
            body,
        }) = &noise
        {
            let again = Answer {
                status: *status,
                headers,
                body,
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
        let json = |b: &[u8]| -> Option<serde_json::Value> {
            (!differences.is_empty() && compare_spec.body == BodyMode::Json)
                .then(|| serde_json::from_slice(b).ok())
                .flatten()
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
        Some(stats.record_comparison(&exchange, differences.entries()))
    }
}

fn finish_span(span: SideSpan, answer: &Exchanged) {
    match answer {
        Exchanged::Answer { status, .. } => span.finish(Some(*status), None),
        Exchanged::TooLarge => span.finish(None, None),
        Exchanged::Failed(why) => span.finish(None, Some(why)),
    }
}
