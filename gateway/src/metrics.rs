//! Every gateway metric, registered once per process in one registry. Names follow the
//! Prometheus conventions (`_total` counters, base units); labels are route and upstream names,
//! never raw paths or user ids.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// `gateway_requests_total{route,method,status,upstream}`
    pub requests: IntCounterVec,
    /// `gateway_request_duration_seconds{route}`
    pub request_duration: HistogramVec,
    /// `gateway_requests_in_flight`
    pub in_flight: IntGauge,
    /// `gateway_config_reloads_total{result="success|failure"}`
    pub reloads: IntCounterVec,
    /// `gateway_config_last_reload_successful`: 1 when the last reload attempt succeeded.
    pub last_reload_successful: IntGauge,
    /// `gateway_config_last_reload_success_timestamp_seconds`
    pub last_reload_success_time: Gauge,
    /// `gateway_auth_rejections_total{route,reason}`
    pub auth_rejections: IntCounterVec,
    /// `gateway_auth_token_cache_total{result="hit|miss"}`
    pub token_cache: IntCounterVec,
    /// `gateway_jwks_refreshes_total{result="success|failure"}`
    pub jwks_refreshes: IntCounterVec,
    /// `gateway_jwks_keys`: keys in the active JWKS.
    pub jwks_keys: IntGauge,
    /// `gateway_jwks_last_success_timestamp_seconds`
    pub jwks_last_success: Gauge,
    /// `gateway_upstream_duration_seconds{route,upstream}`: per upstream attempt, from
    /// choosing the target to the response headers.
    pub upstream_duration: HistogramVec,
    /// `gateway_trace_spans_dropped_total`: spans that did not reach the collector (export
    /// queue full, or the export failed).
    pub trace_spans_dropped: IntCounter,
    /// `gateway_access_log_lines_dropped_total`: lines dropped because the writer was behind.
    pub access_log_lines_dropped: IntCounter,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gateway_requests_total",
                "Requests answered, by route, method, status and upstream.",
            ),
            &["route", "method", "status", "upstream"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time from the request's arrival to the end of its response, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new("gateway_requests_in_flight", "Requests being handled now.")
            .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(
                "gateway_config_reloads_total",
                "Config reload attempts, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let last_reload_successful = IntGauge::new(
            "gateway_config_last_reload_successful",
            "1 if the last config reload attempt succeeded, 0 if it failed (the old config is still serving).",
        )
        .expect("valid metric");
        let last_reload_success_time = Gauge::new(
            "gateway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )
        .expect("valid metric");
        let auth_rejections = IntCounterVec::new(
            Opts::new(
                "gateway_auth_rejections_total",
                "Requests refused by authentication, by route and reason.",
            ),
            &["route", "reason"],
        )
        .expect("valid metric");
        let token_cache = IntCounterVec::new(
            Opts::new(
                "gateway_auth_token_cache_total",
                "Verified-token cache lookups, by result (a hit skips the signature check).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let jwks_refreshes = IntCounterVec::new(
            Opts::new("gateway_jwks_refreshes_total", "JWKS fetches, by result."),
            &["result"],
        )
        .expect("valid metric");
        let jwks_keys = IntGauge::new("gateway_jwks_keys", "Signature keys in the active JWKS.")
            .expect("valid metric");
        let jwks_last_success = Gauge::new(
            "gateway_jwks_last_success_timestamp_seconds",
            "Unix time of the last successful JWKS fetch.",
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_upstream_duration_seconds",
                "Time from choosing an upstream target to its response headers, per attempt, by route and upstream.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "upstream"],
        )
        .expect("valid metric");
        let trace_spans_dropped = IntCounter::new(
            "gateway_trace_spans_dropped_total",
            "Spans not delivered to the OTLP collector (export queue full, or the export failed).",
        )
        .expect("valid metric");
        let access_log_lines_dropped = IntCounter::new(
            "gateway_access_log_lines_dropped_total",
            "Access-log lines dropped because the writer was behind.",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(reloads.clone()),
            Box::new(last_reload_successful.clone()),
            Box::new(last_reload_success_time.clone()),
            Box::new(auth_rejections.clone()),
            Box::new(token_cache.clone()),
            Box::new(jwks_refreshes.clone()),
            Box::new(jwks_keys.clone()),
            Box::new(jwks_last_success.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(trace_spans_dropped.clone()),
            Box::new(access_log_lines_dropped.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Show both results from the start so dashboards and alerts see zeros, not gaps.
        reloads.with_label_values(&["success"]);
        reloads.with_label_values(&["failure"]);
        for r in ["success", "failure"] {
            jwks_refreshes.with_label_values(&[r]);
        }
        for r in ["hit", "miss"] {
            token_cache.with_label_values(&[r]);
        }
        Metrics {
            registry,
            requests,
            request_duration,
            in_flight,
            reloads,
            last_reload_successful,
            last_reload_success_time,
            auth_rejections,
            token_cache,
            jwks_refreshes,
            jwks_keys,
            jwks_last_success,
            upstream_duration,
            trace_spans_dropped,
            access_log_lines_dropped,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A method label that cannot explode: the standard methods by name, everything else `OTHER`.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
