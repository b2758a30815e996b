//! Prometheus metrics, registered once per process in the service's own registry (no globals).
//! Names (the same in every extracted service, prefixed with the service's name):
//!
//! | metric | labels |
//! |---|---|
//! | `<service>_http_requests_total` | `route` (the matched route pattern, `unmatched` otherwise), `method`, `status` |
//! | `<service>_http_request_duration_seconds` | `route`, `method` |

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct HttpMetrics {
    service: &'static str,
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Metrics for the service called `service` (also its `X-Served-By` and problem type prefix).
    pub fn new(service: &'static str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                format!("{service}_http_requests_total"),
                "HTTP requests served, by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                format!("{service}_http_request_duration_seconds"),
                "Time to answer HTTP requests, by route pattern and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics {
            service,
            registry,
            requests,
            duration,
        })
    }

    /// The service's name.
    pub fn service(&self) -> &'static str {
        self.service
    }

    pub fn record(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
