//! Correlation, traces and access logs: everything the `observability:` block configures.
//!
//! - [`Telemetry`] (one per process, in [`crate::state::Shared`]): the OpenTelemetry tracer,
//!   its sampler (parent-based, ratio reloadable) and span export ([`export`]: a bounded queue
//!   and one exporter thread, so a slow or dead collector never touches a request), and the
//!   access-log writer ([`access_log`]).
//! - [`RequestTrace`] (one per request, in the proxy's `RequestCtx`): the server span, the client
//!   span of the current upstream attempt, and the timing of that attempt.
//!
//! The proxy builds spans with the OpenTelemetry API directly, not through `tracing`: the hot
//! path pays for a span only when it is sampled (an unsampled span is a span context and
//! nothing else), and attribute lists are only built for recording spans.
//!
//! Nothing here touches a pingora `Session`: the proxy hands over plain data.
//! Span names and attributes are listed in `docs/observability.md`.

pub mod access_log;
pub mod export;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider, ShouldSample, Span,
};

use crate::config::model::{Observability, PathMatch, RouteSpec};
use crate::metrics::Metrics;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Per-process telemetry: the tracer and the access-log writer.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    ratio: Arc<AtomicU64>,
    access_log: Option<access_log::Writer>,
    exporting: bool,
}

impl Telemetry {
    /// Starts the exporter thread (when `otlp` is set) and the access-log writer (when
    /// `access_log` is set). Never fails: an unreachable collector is found out at export time
    /// and only counted; an access-log file that cannot be opened is an error at start.
    pub fn start(cfg: &Observability, metrics: &Metrics) -> Result<Telemetry, String> {
        // Without an exporter nothing new is sampled (ratio 0), but a caller's sampled flag is
        // still passed on, so a trace stays whole through a gateway that does not export.
        let ratio = Arc::new(AtomicU64::new(
            cfg.otlp.as_ref().map_or(0.0, |o| o.sample_ratio).to_bits(),
        ));
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_sampler(ParentOrRatio(ratio.clone()))
            .with_resource(resource.clone());
        if let Some(otlp) = &cfg.otlp {
            builder = builder.with_span_processor(export::QueueProcessor::start(
                otlp.clone(),
                resource,
                metrics.trace_spans_dropped.clone(),
            ));
        }
        let provider = builder.build();
        let tracer = provider.tracer("gateway");
        let access_log = match &cfg.access_log {
            Some(a) => Some(access_log::Writer::start(
                a,
                metrics.access_log_lines_dropped.clone(),
            )?),
            None => None,
        };
        Ok(Telemetry {
            provider,
            tracer,
            ratio,
            access_log,
            exporting: cfg.otlp.is_some(),
        })
    }

    /// Applies what a reload may change: the sampling ratios.
    pub fn apply(&self, cfg: &Observability) {
        if let Some(o) = &cfg.otlp
            && self.exporting
        {
            self.ratio
                .store(o.sample_ratio.to_bits(), Ordering::Relaxed);
        }
        if let (Some(w), Some(a)) = (&self.access_log, &cfg.access_log) {
            w.set_sample_successful(a.sample_successful);
        }
    }

    pub fn access_log(&self) -> Option<&access_log::Writer> {
        self.access_log.as_ref()
    }

    /// Starts the server span of a request, continuing the caller's trace when its
    /// `traceparent` is valid (a new trace starts otherwise).
    pub fn server_span(&self, headers: &HeaderMap, facts: &ServerFacts<'_>) -> RequestTrace {
        let parent = extract_parent(headers);
        let name = facts.method.to_string();
        let continued = parent.span().span_context().is_valid();
        // The sampler needs no attributes; building them for an unsampled span is wasted work,
        // so they are added after the decision.
        let builder = self.tracer.span_builder(name).with_kind(SpanKind::Server);
        let mut span = self.tracer.build_with_context(builder, &parent);
        if span.is_recording() {
            span.set_attributes(facts.attributes());
        }
        RequestTrace {
            tracer: Some(self.tracer.clone()),
            cx: parent.with_span(span),
            client: None,
            attempts: 0,
            attempt_started: None,
            continued,
        }
    }

    /// Exports what is queued (each export bounded by `otlp.timeout`); used at shutdown.
    pub fn flush(&self) {
        if self.exporting {
            let _ = self.provider.force_flush();
        }
        if let Some(w) = &self.access_log {
            w.flush();
        }
    }
}

/// The caller's trace context, when its `traceparent` is well-formed (W3C Trace Context
/// level 1: the SDK's parser alone accepts short ids, so the shape is checked first).
pub fn extract_parent(headers: &HeaderMap) -> Context {
    let ok = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(well_formed_traceparent);
    if ok {
        TraceContextPropagator::new().extract(&HeaderExtractor(headers))
    } else {
        Context::new()
    }
}

/// `vv-<32 hex>-<16 hex>-<2 hex>` in lower case, version not `ff`; version `00` has exactly
/// these four fields, a later version may append `-…`.
pub fn well_formed_traceparent(v: &str) -> bool {
    let v = v.trim();
    let b = v.as_bytes();
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if b.len() < 55 || !hex(&b[0..2]) || &b[0..2] == b"ff" {
        return false;
    }
    let fields_ok = b[2] == b'-'
        && hex(&b[3..35])
        && b[35] == b'-'
        && hex(&b[36..52])
        && b[52] == b'-'
        && hex(&b[53..55]);
    let tail_ok = if &b[0..2] == b"00" {
        b.len() == 55
    } else {
        b.len() == 55 || b[55] == b'-'
    };
    fields_ok && tail_ok
}

/// What the proxy knows about a request when it arrives.
pub struct ServerFacts<'a> {
    pub method: &'a http::Method,
    /// The path without the query (a query may hold secrets; it is never recorded).
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    pub http_version: http::Version,
    pub user_agent: Option<&'a str>,
    pub request_id: &'a str,
    pub scheme: &'static str,
}

impl ServerFacts<'_> {
    fn attributes(&self) -> Vec<KeyValue> {
        let mut a = Vec::with_capacity(10);
        a.push(KeyValue::new(
            "http.request.method",
            crate::metrics::method_label(self.method).replace("OTHER", "_OTHER"),
        ));
        a.push(KeyValue::new("url.path", self.path.to_string()));
        a.push(KeyValue::new("url.scheme", self.scheme));
        if let Some(h) = self.host {
            let (host, port) = split_host_port(h);
            a.push(KeyValue::new("server.address", host.to_string()));
            if let Some(p) = port {
                a.push(KeyValue::new("server.port", i64::from(p)));
            }
        }
        if let Some(ip) = self.client_ip {
            a.push(KeyValue::new("client.address", ip.to_string()));
        }
        a.push(KeyValue::new(
            "network.protocol.version",
            protocol_version(self.http_version),
        ));
        if let Some(ua) = self.user_agent {
            a.push(KeyValue::new("user_agent.original", ua.to_string()));
        }
        a.push(KeyValue::new("request_id", self.request_id.to_string()));
        a
    }
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `host[:port]` (and `[v6]:port`) → host and port.
pub fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

/// `http.route` for a route: its path template (`/api/users/*` for a prefix).
pub fn route_template(route: &RouteSpec) -> String {
    match &route.matcher.path {
        PathMatch::Any => "/*".to_string(),
        PathMatch::Exact(p) => p.clone(),
        PathMatch::Prefix(p) if p.ends_with('/') => format!("{p}*"),
        PathMatch::Prefix(p) => format!("{p}/*"),
    }
}

/// One request's spans: the server span (in `cx`) and the client span of the current
/// upstream attempt.
pub struct RequestTrace {
    tracer: Option<SdkTracer>,
    cx: Context,
    client: Option<Span>,
    attempts: u32,
    attempt_started: Option<Instant>,
    continued: bool,
}

impl Default for RequestTrace {
    /// No span yet (before `request_filter`).
    fn default() -> Self {
        RequestTrace {
            tracer: None,
            cx: Context::new(),
            client: None,
            attempts: 0,
            attempt_started: None,
            continued: false,
        }
    }
}

impl RequestTrace {
    /// The trace id (32 hex characters); empty before the server span starts.
    pub fn trace_id(&self) -> Option<String> {
        let span = self.cx.span();
        let sc = span.span_context();
        sc.is_valid()
            .then(|| crate::hex::lower(&sc.trace_id().to_bytes()))
    }

    /// True when the request continued the caller's trace.
    pub fn continued(&self) -> bool {
        self.continued
    }

    /// True when the server span is sampled (recorded and exported).
    pub fn is_recording(&self) -> bool {
        self.cx.span().is_recording()
    }

    /// The route is known: the span is renamed `{method} {route}` and gets `http.route`.
    pub fn set_route(&self, method: &http::Method, route: &RouteSpec) {
        let span = self.cx.span();
        if !span.is_recording() {
            return;
        }
        span.update_name(format!(
            "{} {}",
            crate::metrics::method_label(method),
            route.name
        ));
        span.set_attribute(KeyValue::new("http.route", route_template(route)));
        span.set_attribute(KeyValue::new("gateway.route", route.name.clone()));
    }

    /// Adds an event to the server span; `attrs` is only called when the span is recorded.
    /// Auth, rate-limit and breaker decisions are recorded with this.
    pub fn event(&self, name: &'static str, attrs: impl FnOnce() -> Vec<KeyValue>) {
        let span = self.cx.span();
        if span.is_recording() {
            span.add_event(name, attrs());
        }
    }

    /// Sets attributes on the server span; `attrs` is only called when the span is recorded.
    pub fn attributes(&self, attrs: impl FnOnce() -> Vec<KeyValue>) {
        let span = self.cx.span();
        if span.is_recording() {
            span.set_attributes(attrs());
        }
    }

    /// A new upstream attempt: ends the previous attempt's client span (if still open) and
    /// starts a child of the server span for this one.
    pub fn start_attempt(&mut self, method: &http::Method, upstream: &str, target: SocketAddr) {
        if let Some(mut previous) = self.client.take() {
            previous.set_status(Status::error("attempt abandoned"));
            previous.end();
        }
        self.attempts += 1;
        self.attempt_started = Some(Instant::now());
        let resend = (self.attempts > 1)
            .then(|| KeyValue::new("http.request.resend_count", i64::from(self.attempts - 1)));
        self.client = self.client_span(method, upstream, target, resend);
    }

    /// A client span, child of the server span, for a call to `target` of `upstream`, with
    /// one more attribute when given.
    fn client_span(
        &self,
        method: &http::Method,
        upstream: &str,
        target: SocketAddr,
        more: Option<KeyValue>,
    ) -> Option<Span> {
        let tracer = self.tracer.as_ref()?;
        let builder = tracer
            .span_builder(crate::metrics::method_label(method))
            .with_kind(SpanKind::Client);
        let mut span = tracer.build_with_context(builder, &self.cx);
        if span.is_recording() {
            let a = [
                KeyValue::new(
                    "http.request.method",
                    crate::metrics::method_label(method).replace("OTHER", "_OTHER"),
                ),
                KeyValue::new("server.address", target.ip().to_string()),
                KeyValue::new("server.port", i64::from(target.port())),
                KeyValue::new("gateway.upstream", upstream.to_string()),
            ];
            span.set_attributes(a.into_iter().chain(more));
        }
        Some(span)
    }

    /// Attempts so far (1 for a request that was sent once).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The `traceparent` the upstream gets: the current attempt's client span (the server
    /// span before any attempt).
    pub fn traceparent(&self) -> Option<String> {
        let sc = match &self.client {
            Some(c) => c.span_context().clone(),
            None => self.cx.span().span_context().clone(),
        };
        sc.is_valid().then(|| {
            traceparent_value(
                &sc.trace_id().to_bytes(),
                &sc.span_id().to_bytes(),
                sc.trace_flags().to_u8(),
            )
        })
    }

    /// The `tracestate` to forward (the caller's, when its trace was continued).
    pub fn tracestate(&self) -> Option<String> {
        let header = self.cx.span().span_context().trace_state().header();
        (!header.is_empty()).then_some(header)
    }

    /// Response headers from the upstream arrived: records the status on the client span and
    /// returns the attempt's time to headers.
    pub fn attempt_response(&mut self, status: u16) -> Option<Duration> {
        if let Some(span) = &mut self.client
            && span.is_recording()
        {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                span.set_attribute(KeyValue::new("error.type", status.to_string()));
                span.set_status(Status::error(""));
            }
        }
        self.attempt_started.take().map(|t| t.elapsed())
    }

    /// The attempt failed (connect error, timeout, broken connection).
    pub fn attempt_failed(&mut self, error_type: &str) {
        self.attempt_started = None;
        if let Some(mut span) = self.client.take() {
            if span.is_recording() {
                span.set_attribute(KeyValue::new("error.type", error_type.to_string()));
                span.set_status(Status::error(error_type.to_string()));
            }
            span.end();
        }
    }

    /// The request is over: ends the client span (if open) and the server span.
    pub fn finish(&mut self, status: u16, error_type: Option<&str>) {
        if let Some(mut span) = self.client.take() {
            span.end();
        }
        let span = self.cx.span();
        if !span.is_recording() {
            return;
        }
        if status > 0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let error_type = error_type
            .map(str::to_string)
            .or_else(|| (status >= 500 || status == 0).then(|| status.to_string()));
        if let Some(e) = error_type {
            span.set_attribute(KeyValue::new("error.type", e.clone()));
            span.set_status(Status::error(e));
        }
        span.end();
    }
}

impl RequestTrace {
    /// A client span of its own in the request's trace, for a call beside the request's
    /// attempts (a shadow copy: `role` is `candidate`, or `noise` for the second call to the
    /// primary). It lives on after the request (a copy's task ends it).
    pub fn side_span(
        &self,
        method: &http::Method,
        upstream: &str,
        target: SocketAddr,
        role: &'static str,
    ) -> SideSpan {
        let role = KeyValue::new("gateway.shadow", role);
        SideSpan(self.client_span(method, upstream, target, Some(role)))
    }
}

/// A span beside the request's own ([`RequestTrace::side_span`]).
pub struct SideSpan(Option<Span>);

impl SideSpan {
    /// The `traceparent` of the call this span stands for.
    pub fn traceparent(&self) -> Option<String> {
        let sc = self.0.as_ref()?.span_context().clone();
        sc.is_valid().then(|| {
            traceparent_value(
                &sc.trace_id().to_bytes(),
                &sc.span_id().to_bytes(),
                sc.trace_flags().to_u8(),
            )
        })
    }

    /// Ends the span with the answer's status, or the error that ended the call.
    pub fn finish(self, status: Option<u16>, error: Option<&str>) {
        let Some(mut span) = self.0 else { return };
        if span.is_recording() {
            if let Some(status) = status {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            let error = error
                .map(str::to_string)
                .or_else(|| status.filter(|s| *s >= 500).map(|s| s.to_string()));
            if let Some(e) = error {
                span.set_attribute(KeyValue::new("error.type", e.clone()));
                span.set_status(Status::error(e));
            }
        }
        span.end();
    }
}

/// `00-{trace id}-{span id}-{flags}` in lowercase hex, built for every request ([`crate::hex`]
/// rather than `format!` through the ids' `Display`, ~1,200 instructions per request).
fn traceparent_value(trace_id: &[u8; 16], span_id: &[u8; 8], flags: u8) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    crate::hex::push(&mut out, trace_id);
    out.push('-');
    crate::hex::push(&mut out, span_id);
    out.push('-');
    crate::hex::push(&mut out, &[flags]);
    out
}

/// Parent-based sampling with a ratio for new traces: a caller's sampled flag is followed;
/// a trace that starts here is sampled when its id falls under the ratio (the same rule as
/// OpenTelemetry's `TraceIdRatioBased`, so every service agrees on a given trace). The ratio
/// is an atomic so a reload can change it.
#[derive(Debug, Clone)]
struct ParentOrRatio(Arc<AtomicU64>);

impl ShouldSample for ParentOrRatio {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let parent = parent_context
            .map(|cx| cx.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        let (sampled, trace_state) = match parent {
            Some(sc) => (sc.is_sampled(), sc.trace_state().clone()),
            None => (
                ratio_samples(f64::from_bits(self.0.load(Ordering::Relaxed)), trace_id),
                TraceState::default(),
            ),
        };
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state,
        }
    }
}

/// `TraceIdRatioBased`: the low 64 bits of the trace id, shifted to 63 bits, under
/// `ratio × 2^63`.
fn ratio_samples(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    let x = u64::from_be_bytes(low) >> 1;
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    x < bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Observability;

    fn telemetry(ratio: f64) -> Telemetry {
        // An OTLP block makes the sampler use the ratio; the endpoint is never reached by
        // these tests (nothing is flushed), and export failures are only counted.
        let cfg = Observability {
            otlp: Some(crate::config::model::Otlp {
                endpoint: "http://127.0.0.1:9".into(),
                protocol: crate::config::model::OtlpProtocol::Grpc,
                sample_ratio: ratio,
                timeout: Duration::from_millis(100),
                queue_size: 16,
            }),
            ..Observability::default()
        };
        Telemetry::start(&cfg, &Metrics::new()).unwrap()
    }

    fn facts() -> ServerFacts<'static> {
        ServerFacts {
            method: &http::Method::GET,
            path: "/api/x",
            host: Some("example.com:8080"),
            client_ip: None,
            http_version: http::Version::HTTP_11,
            user_agent: None,
            request_id: "rid-1",
            scheme: "http",
        }
    }

    fn headers(traceparent: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, traceparent.parse().unwrap());
        h
    }

    #[test]
    fn a_valid_traceparent_is_continued_and_the_upstream_gets_a_child() {
        let t = telemetry(1.0);
        let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut rt = t.server_span(&headers(incoming), &facts());
        assert!(rt.continued());
        assert_eq!(
            rt.trace_id().as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert!(rt.is_recording());
        let server_tp = rt.traceparent().unwrap();
        rt.start_attempt(
            &http::Method::GET,
            "echo",
            "127.0.0.1:9000".parse().unwrap(),
        );
        let tp = rt.traceparent().unwrap();
        assert!(
            tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{tp}"
        );
        assert!(tp.ends_with("-01"));
        assert_ne!(
            tp, server_tp,
            "the upstream gets the client span, not the server span"
        );
        assert!(!tp.contains("b7ad6b7169203331"));
        rt.finish(200, None);
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        let t = telemetry(1.0);
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
            "garbage",
        ] {
            let rt = t.server_span(&headers(bad), &facts());
            assert!(!rt.continued(), "{bad}");
            let id = rt.trace_id().unwrap();
            assert_eq!(id.len(), 32);
            assert_ne!(id, "0af7651916cd43dd8448eb211c80319c", "{bad}");
        }
    }

    #[test]
    fn sampling_follows_the_parent_then_the_ratio() {
        let t = telemetry(0.0);
        let unsampled = t.server_span(&HeaderMap::new(), &facts());
        assert!(!unsampled.is_recording());
        // Still a valid trace id and a traceparent for the upstream, with the sampled flag off.
        assert!(unsampled.traceparent().unwrap().ends_with("-00"));
        let sampled_parent = t.server_span(
            &headers("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            &facts(),
        );
        assert!(sampled_parent.is_recording(), "the caller's decision wins");
        assert!(ratio_samples(1.0, TraceId::from(1)));
        assert!(!ratio_samples(0.0, TraceId::from(u128::MAX)));
        let sampled = (0..10_000u128)
            .filter(|i| {
                ratio_samples(
                    0.25,
                    TraceId::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)),
                )
            })
            .count();
        assert!((2000..3000).contains(&sampled), "{sampled}");
    }

    #[test]
    fn traceparent_value_matches_the_ids_display() {
        let trace = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
        let span = opentelemetry::trace::SpanId::from_hex("b7ad6b7169203331").unwrap();
        let value = traceparent_value(&trace.to_bytes(), &span.to_bytes(), 1);
        assert_eq!(value, format!("00-{trace}-{span}-01"));
        assert_eq!(
            value,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert!(well_formed_traceparent(&value));
    }

    #[test]
    fn traceparent_shape() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(well_formed_traceparent(good));
        assert!(well_formed_traceparent(
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"
        ));
        for bad in [
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-0100",
            "",
        ] {
            assert!(!well_formed_traceparent(bad), "{bad}");
        }
    }

    #[test]
    fn hosts_and_route_templates() {
        assert_eq!(split_host_port("a.example:8080"), ("a.example", Some(8080)));
        assert_eq!(split_host_port("a.example"), ("a.example", None));
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_host_port("::1"), ("::1", None));
    }
}
