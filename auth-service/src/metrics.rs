//! Every Prometheus metric of the service, registered once in a per-process [`Registry`]
//! (no global registry: each service state owns one, so tests do not interfere).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `auth_registrations_total` | counter | |
//! | `auth_logins_total` | counter | `result` = success, invalid_credentials, throttled |
//! | `auth_refreshes_total` | counter | `result` = success, invalid, expired, revoked, reused |
//! | `auth_refresh_reuse_detected_total` | counter | |
//! | `auth_logouts_total` | counter | |
//! | `auth_token_issue_duration_seconds` | histogram | |
//! | `auth_http_requests_total` | counter | `route` (matched template or `unmatched`), `method`, `status` (service-kit's [`HttpMetrics`]) |
//! | `auth_http_request_duration_seconds` | histogram | `route`, `method` (service-kit's [`HttpMetrics`]) |
//! | `auth_signing_keys` | gauge | `status` = active, overlap, retired |

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use service_kit::metrics::HttpMetrics;

/// Buckets of `auth_http_request_duration_seconds`: up to 5 s, as a login hashes a password.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub registrations: IntCounter,
    pub logins: IntCounterVec,
    pub refreshes: IntCounterVec,
    pub refresh_reuse_detected: IntCounter,
    pub logouts: IntCounter,
    pub token_issue_duration: Histogram,
    /// Every request, counted by service-kit's request middleware.
    pub http: HttpMetrics,
    pub signing_keys: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let registrations = IntCounter::new("auth_registrations_total", "Accounts registered.")
            .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new("auth_logins_total", "Login attempts by result."),
            &["result"],
        )
        .expect("valid metric");
        let refreshes = IntCounterVec::new(
            Opts::new("auth_refreshes_total", "Refresh-token exchanges by result."),
            &["result"],
        )
        .expect("valid metric");
        let refresh_reuse_detected = IntCounter::new(
            "auth_refresh_reuse_detected_total",
            "Already-rotated refresh tokens presented (their family was revoked).",
        )
        .expect("valid metric");
        let logouts = IntCounter::new(
            "auth_logouts_total",
            "Logouts (refresh-token families revoked).",
        )
        .expect("valid metric");
        let token_issue_duration = Histogram::with_opts(
            HistogramOpts::new(
                "auth_token_issue_duration_seconds",
                "Time to build and sign one access token.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            ]),
        )
        .expect("valid metric");
        let signing_keys = IntGaugeVec::new(
            Opts::new(
                "auth_signing_keys",
                "Signing keys by status (active, overlap, retired).",
            ),
            &["status"],
        )
        .expect("valid metric");

        for c in [
            registrations.clone(),
            refresh_reuse_detected.clone(),
            logouts.clone(),
        ] {
            registry.register(Box::new(c)).expect("unique metric");
        }
        registry
            .register(Box::new(logins.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(refreshes.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(token_issue_duration.clone()))
            .expect("unique metric");
        let http = HttpMetrics::register(&registry, "auth", HTTP_BUCKETS).expect("unique metric");
        registry
            .register(Box::new(signing_keys.clone()))
            .expect("unique metric");

        // Pre-create the label values dashboards rely on, so the series exist at 0.
        for r in ["success", "invalid_credentials", "throttled"] {
            logins.with_label_values(&[r]);
        }
        for r in ["success", "invalid", "expired", "revoked", "reused"] {
            refreshes.with_label_values(&[r]);
        }
        for s in ["active", "overlap", "retired"] {
            signing_keys.with_label_values(&[s]);
        }

        Metrics {
            registry,
            registrations,
            logins,
            refreshes,
            refresh_reuse_detected,
            logouts,
            token_issue_duration,
            http,
            signing_keys,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, String> {
        service_kit::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
