//! Prometheus HTTP metrics, the same in every Rust service (no globals: each service registers
//! them once per process, in a registry it owns):
//!
//! | metric | labels |
//! |---|---|
//! | `<prefix>_http_requests_total` | `route` (the matched route template, `unmatched` otherwise), `method`, `status` |
//! | `<prefix>_http_request_duration_seconds` | `route`, `method` |
//!
//! The prefix is the service's name (`notifications`, `payments`), or `auth` for the
//! auth-service, whose other metrics share its registry.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Duration buckets for services that answer from memory: 0.5 ms to 1 s.
pub const FAST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Clone)]
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// The metrics in a registry of their own, with [`FAST_BUCKETS`].
    pub fn new(prefix: &str) -> Result<Self, prometheus::Error> {
        Self::register(&Registry::new(), prefix, FAST_BUCKETS)
    }

    /// The metrics registered in `registry` (a service with metrics of its own besides these).
    pub fn register(
        registry: &Registry,
        prefix: &str,
        buckets: &[f64],
    ) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_http_requests_total"),
                "HTTP requests served, by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                format!("{prefix}_http_request_duration_seconds"),
                "Time to answer HTTP requests, by route pattern and method",
            )
            .buckets(buckets.to_vec()),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics {
            registry: registry.clone(),
            requests,
            duration,
        })
    }

    pub fn record(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    /// Every metric of the registry these are in, in the text exposition format (an encoding
    /// failure is logged and gives what was encoded).
    pub fn render(&self) -> String {
        render(&self.registry).unwrap_or_else(|e| {
            tracing::error!(error = %e, "encoding metrics failed");
            String::new()
        })
    }
}

/// `registry` in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> Result<String, String> {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .map_err(|e| format!("encoding metrics: {e}"))?;
    String::from_utf8(buf).map_err(|e| format!("encoding metrics: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_template() {
        let m = HttpMetrics::new("svc").expect("metrics");
        m.record("/api/x/", "POST", 201, Duration::from_millis(3));
        m.record("unmatched", "GET", 404, Duration::from_millis(1));
        let text = m.render();
        assert!(
            text.contains(
                r#"svc_http_requests_total{method="POST",route="/api/x/",status="201"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"svc_http_request_duration_seconds_count{method="GET",route="unmatched"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn they_share_a_registry_with_the_services_own_metrics() {
        let registry = Registry::new();
        let own = prometheus::IntCounter::new("svc_logins_total", "logins").expect("metric");
        registry.register(Box::new(own.clone())).expect("register");
        let m = HttpMetrics::register(&registry, "svc", &[0.1, 1.0]).expect("metrics");
        own.inc();
        m.record("/", "GET", 200, Duration::ZERO);
        let text = render(&registry).expect("render");
        assert!(text.contains("svc_logins_total 1"), "{text}");
        assert!(text.contains(r#"le="0.1""#), "{text}");
        assert_eq!(m.render(), text);
    }
}
