//! Logs and traces of a service: JSON log lines on stderr (every line of a request carries
//! its `request_id` and `trace_id`, through the request span) and, when OTLP is configured,
//! spans exported to a collector through `tracing-opentelemetry`.
//!
//! A request continues the caller's W3C trace ([`request_span`] extracts `traceparent`), so a
//! request that went client → gateway → service is one trace. OTLP settings come from the
//! service's config or from the standard environment variables ([`OtlpSettings::from_env`]):
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://host:port` of the collector; unset: no export |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` (default) or `http/protobuf` |
//! | `OTEL_TRACES_SAMPLER_ARG` | ratio of new traces sampled, default 1.0 (a caller's decision wins) |
//!
//! Export runs on the tokio runtime in batches; a dead collector costs failed exports in the
//! background, never a request.

use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How long a finished span waits for its batch before export.
const EXPORT_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    Http,
}

/// Where and how much to export.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// `http://host:port` (HTTP: `/v1/traces` is added).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// 0.0 to 1.0: the share of new traces sampled.
    pub sample_ratio: f64,
}

impl OtlpSettings {
    /// Checks the three settings; errors name the setting.
    pub fn new(endpoint: &str, protocol: &str, sample_ratio: f64) -> Result<Self, String> {
        let endpoint = endpoint.trim().trim_end_matches('/');
        let ok = endpoint
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '@', ' ']));
        if !ok {
            return Err(format!(
                "endpoint {endpoint:?}: expected http://host:port such as http://127.0.0.1:4317"
            ));
        }
        let protocol = match protocol {
            "grpc" => OtlpProtocol::Grpc,
            "http" | "http/protobuf" => OtlpProtocol::Http,
            other => {
                return Err(format!(
                    "protocol {other:?}: expected grpc or http (HTTP/protobuf)"
                ));
            }
        };
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(format!("sample_ratio {sample_ratio}: use 0.0 to 1.0"));
        }
        Ok(OtlpSettings {
            endpoint: endpoint.to_string(),
            protocol,
            sample_ratio,
        })
    }

    /// From `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` and
    /// `OTEL_TRACES_SAMPLER_ARG`; `None` when no endpoint is set.
    pub fn from_env() -> Result<Option<Self>, String> {
        let Some(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|s| !s.trim().is_empty())
        else {
            return Ok(None);
        };
        let protocol =
            std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|_| "grpc".into());
        let ratio = match std::env::var("OTEL_TRACES_SAMPLER_ARG") {
            Ok(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("OTEL_TRACES_SAMPLER_ARG {s:?}: expected 0.0 to 1.0"))?,
            Err(_) => 1.0,
        };
        Self::new(&endpoint, &protocol, ratio)
            .map(Some)
            .map_err(|e| format!("OTEL_EXPORTER_OTLP_*: {e}"))
    }
}

/// Keeps the tracer provider; [`Telemetry::shutdown`] exports what is still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued. Call from a blocking context (not a runtime thread of a
    /// current-thread runtime), e.g. `tokio::task::spawn_blocking`.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: JSON logs on stderr (`RUST_LOG` overrides
/// `default_level`), plus span export when `otlp` is set. Must run inside a tokio runtime when
/// `otlp` is set (the exporter runs on it).
pub fn init(
    service: &'static str,
    default_level: &str,
    otlp: Option<&OtlpSettings>,
) -> Result<Telemetry, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let fmt = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr);
    let provider = otlp.map(|o| provider(service, o)).transpose()?;
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| format!("logging: {e}"))?;
    Ok(Telemetry { provider })
}

fn provider(service: &'static str, o: &OtlpSettings) -> Result<SdkTracerProvider, String> {
    let exporter = match o.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(o.endpoint.clone())
            .with_protocol(Protocol::Grpc)
            .with_timeout(Duration::from_secs(5))
            .build(),
        OtlpProtocol::Http => SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", o.endpoint))
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(Duration::from_secs(5))
            .build(),
    }
    .map_err(|e| format!("OTLP exporter: {e}"))?;
    let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_DELAY)
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            o.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The server span of one request: named `{method} {route}` with the matched route template
/// (`{method}` alone when no route matched), continuing the caller's trace from `traceparent`
/// (a new trace starts when it is missing or invalid). Its fields (`request_id`, `trace_id`)
/// are on every log line written inside it.
pub fn request_span(
    method: &str,
    path: &str,
    route: Option<&str>,
    request_id: &str,
    headers: &HeaderMap,
) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %method,
        otel.kind = "server",
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        http.request.method = %method,
        url.path = %path,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let incoming = parent.span().span_context().trace_id();
    let continued = parent.span().span_context().is_valid();
    // Before anything reads the span's context: once started, its parent is fixed.
    let _ = span.set_parent(parent);
    if let Some(route) = route {
        record_route(&span, method, route);
    }
    // With export on, the span's own context has the (continued or new) trace id; without
    // it, the caller's id is still worth logging.
    let own = span.context().span().span_context().clone();
    if own.is_valid() {
        span.record("trace_id", tracing::field::display(own.trace_id()));
    } else if continued {
        span.record("trace_id", tracing::field::display(incoming));
    }
    span
}

/// The matched route template: names the span `{method} {route}` and sets `http.route`.
fn record_route(span: &tracing::Span, method: &str, route: &str) {
    let name = format!("{method} {route}");
    // The OpenTelemetry span already exists (its trace id was read at the start), so it is
    // renamed directly; the field keeps the log lines in step.
    span.context().span().update_name(name.clone());
    span.record("otel.name", name);
    span.record("http.route", route);
}

/// Records the response status on the request span.
pub fn record_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}
