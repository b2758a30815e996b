//! Every gateway metric, registered once per process in one registry. Names follow the
//! Prometheus conventions (`_total` counters, base units); labels are route and upstream names,
//! never raw paths or user ids.
//!
//! Series are set up here too: [`Metrics::config_loaded`] and [`Metrics::target_added`] create
//! every series a config can move at zero (dashboards and alerts see 0, not a gap), and
//! [`Metrics::target_removed`] drops the series of a target a reload removed (it would otherwise
//! report its last state forever); `config_loaded` likewise drops the percent of a route that
//! left its cohort. Recording happens where the event is (the `logging` phase,
//! a breaker's transition, a health check's result).

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::breaker::State;
use crate::config::model::{Config, LimitStore, RouteTarget};
use crate::failover::{Reason, Skipped, takes};

/// The value of `gateway_circuit_breaker_state` for a state.
pub fn breaker_state_value(s: State) -> i64 {
    match s {
        State::Closed => 0,
        State::HalfOpen => 1,
        State::Open => 2,
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

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
    /// `gateway_config_file_events_total`: changes to the config file the watcher saw (each
    /// arms, or pushes back, the debounced reload).
    pub config_file_events: IntCounter,
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
    /// `gateway_rate_limit_rejections_total{route,policy}`
    pub rate_limit_rejections: IntCounterVec,
    /// `gateway_rate_limit_store_errors_total{policy}`
    pub rate_limit_store_errors: IntCounterVec,
    /// `gateway_rate_limit_store_duration_seconds`: one Redis call, failures included.
    pub rate_limit_store_duration: Histogram,
    /// `gateway_upstream_target_up{upstream,target}`: 1 healthy, 0 failing its active checks.
    pub target_up: IntGaugeVec,
    /// `gateway_health_checks_total{upstream,target,result}`
    pub health_checks: IntCounterVec,
    /// `gateway_circuit_breaker_state{upstream,target}`: 0 closed, 1 half-open, 2 open.
    pub breaker_state: IntGaugeVec,
    /// `gateway_circuit_breaker_transitions_total{upstream,target,to}`
    pub breaker_transitions: IntCounterVec,
    /// `gateway_upstream_retries_total{route,upstream}`: retry attempts made.
    pub retries: IntCounterVec,
    /// `gateway_retry_budget_exhausted_total{upstream}`: retries refused by the budget.
    pub retry_budget_exhausted: IntCounterVec,
    /// `gateway_fallbacks_total{route,upstream,fallback,reason}`: requests sent to a route's
    /// fallback (`failover::Reason`).
    pub fallbacks: IntCounterVec,
    /// `gateway_fallbacks_skipped_total{route,reason}`: fallbacks the route's `on:` asked for
    /// and that were not taken (`failover::Skipped`).
    pub fallbacks_skipped: IntCounterVec,
    /// `gateway_malformed_requests_total{reason}`: request heads refused before routing
    /// (`request_head::HeadError::reason`).
    pub malformed_requests: IntCounterVec,
    /// `gateway_cohort_percent{cohort,route}`: the percent of the cohort a route sends to its
    /// `to` side, as the active config says (set by [`Metrics::config_loaded`]).
    pub cohort_percent: GaugeVec,
    /// `gateway_shadow_requests_total{route,result}`: copies by verdict
    /// (`shadow::verdicts::Verdict`).
    pub shadow_requests: IntCounterVec,
    /// `gateway_shadow_skipped_total{route,reason}`: requests not copied, or answers not
    /// compared (`mirror::plan::Skip`).
    pub shadow_skipped: IntCounterVec,
    /// `gateway_shadow_duration_seconds{route,side}`: time to each side's whole answer, for
    /// copied requests (`primary`: from the request's arrival; `shadow`: from the copy's start).
    pub shadow_duration: HistogramVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A Redis call on a LAN takes well under a millisecond; the store timeout is ~50ms.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
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
        let config_file_events = IntCounter::new(
            "gateway_config_file_events_total",
            "Changes to the config file seen by the file watcher; each arms (or pushes back) the debounced reload.",
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
        let rate_limit_rejections = counter(
            "gateway_rate_limit_rejections_total",
            "Requests refused with 429, by route and the policy that refused.",
            &["route", "policy"],
        );
        let rate_limit_store_errors = counter(
            "gateway_rate_limit_store_errors_total",
            "Rate-limit store (Redis) calls that failed or timed out, by policy; on_store_error decided those requests.",
            &["policy"],
        );
        let rate_limit_store_duration = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_rate_limit_store_duration_seconds",
                "Time of one rate-limit store (Redis) call, failures and timeouts included.",
            )
            .buckets(STORE_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let target_up = gauge(
            "gateway_upstream_target_up",
            "1 if the target passes its active health checks (or has none), 0 if it is out of rotation.",
            &["upstream", "target"],
        );
        let health_checks = counter(
            "gateway_health_checks_total",
            "Active health checks, by upstream, target and result.",
            &["upstream", "target", "result"],
        );
        let breaker_state = gauge(
            "gateway_circuit_breaker_state",
            "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
            &["upstream", "target"],
        );
        let breaker_transitions = counter(
            "gateway_circuit_breaker_transitions_total",
            "Circuit breaker state changes, by the state entered.",
            &["upstream", "target", "to"],
        );
        let retries = counter(
            "gateway_upstream_retries_total",
            "Retry attempts sent upstream, by route and the upstream of the failed attempt.",
            &["route", "upstream"],
        );
        let retry_budget_exhausted = counter(
            "gateway_retry_budget_exhausted_total",
            "Retries not made because the upstream's retry budget was spent.",
            &["upstream"],
        );
        let fallbacks = counter(
            "gateway_fallbacks_total",
            "Requests sent to a route's fallback, by the failure of its upstream that sent them.",
            &["route", "upstream", "fallback", "reason"],
        );
        let fallbacks_skipped = counter(
            "gateway_fallbacks_skipped_total",
            "Failures a route's fallback takes that were not replayed to it, by why not.",
            &["route", "reason"],
        );
        let shadow_requests = counter(
            "gateway_shadow_requests_total",
            "Copies of a route's requests sent to its shadow, by verdict: match, mismatch, noise, shadow_error, primary_error.",
            &["route", "result"],
        );
        let shadow_skipped = counter(
            "gateway_shadow_skipped_total",
            "Requests a route's shadow did not copy, or whose answers it did not compare, by why not.",
            &["route", "reason"],
        );
        let shadow_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_shadow_duration_seconds",
                "Time to the whole answer of each side of a copied request: primary (from the request's arrival) and shadow (from the copy's start).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "side"],
        )
        .expect("valid metric");
        let malformed_requests = counter(
            "gateway_malformed_requests_total",
            "Request heads refused before routing (answered 400, 405, 414 or 431), by reason.",
            &["reason"],
        );
        let cohort_percent = GaugeVec::new(
            Opts::new(
                "gateway_cohort_percent",
                "The percent of a cohort's users a route sends to its new side (split: { to, percent, cohort, rest }), as the active config says.",
            ),
            &["cohort", "route"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cohort_percent.clone()),
            Box::new(malformed_requests.clone()),
            Box::new(target_up.clone()),
            Box::new(health_checks.clone()),
            Box::new(breaker_state.clone()),
            Box::new(breaker_transitions.clone()),
            Box::new(retries.clone()),
            Box::new(retry_budget_exhausted.clone()),
            Box::new(fallbacks.clone()),
            Box::new(fallbacks_skipped.clone()),
            Box::new(shadow_requests.clone()),
            Box::new(shadow_skipped.clone()),
            Box::new(shadow_duration.clone()),
            Box::new(request_duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(reloads.clone()),
            Box::new(config_file_events.clone()),
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
            Box::new(rate_limit_rejections.clone()),
            Box::new(rate_limit_store_errors.clone()),
            Box::new(rate_limit_store_duration.clone()),
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
            config_file_events,
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
            rate_limit_rejections,
            rate_limit_store_errors,
            rate_limit_store_duration,
            target_up,
            health_checks,
            breaker_state,
            breaker_transitions,
            retries,
            retry_budget_exhausted,
            fallbacks,
            fallbacks_skipped,
            shadow_requests,
            shadow_skipped,
            shadow_duration,
            malformed_requests,
            cohort_percent,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Setting up and tearing down series, so that what a config can produce is visible from the
/// first scrape and what a reload removed is gone.
impl Metrics {
    /// Zeros for every per-route and per-upstream series `config` can move: retries, fallbacks,
    /// retry-budget refusals, rate-limit rejections, and rate-limit store errors when the store is
    /// Redis. Series of a previous config stay (counters never go backwards). Sets each cohort
    /// route's percent, and removes the percent of a route that is gone or left its cohort (a
    /// gauge would otherwise show a split that no longer exists). Called once the config is
    /// sure to become the active one.
    pub fn config_loaded(&self, config: &Config) {
        self.cohorts_loaded(config);
        for name in config.upstreams.keys() {
            self.retry_budget_exhausted
                .with_label_values(&[name])
                .inc_by(0);
        }
        for r in &config.routes {
            for up in r.target.upstream_names() {
                self.retries.with_label_values(&[&r.name, up]).inc_by(0);
                if let Some(fb) = r.fallback.as_ref().filter(|fb| fb.upstream != up) {
                    for reason in Reason::ALL.into_iter().filter(|r| takes(&fb.on, *r)) {
                        self.fallbacks
                            .with_label_values(&[&r.name, up, &fb.upstream, reason.as_str()])
                            .inc_by(0);
                    }
                }
            }
            if r.fallback.is_some() {
                for why in Skipped::ALL {
                    self.fallbacks_skipped
                        .with_label_values(&[&r.name, why.as_str()])
                        .inc_by(0);
                }
            }
            if r.shadow.is_some() {
                for v in crate::shadow::verdicts::Verdict::ALL {
                    self.shadow_requests
                        .with_label_values(&[&r.name, v.as_str()])
                        .inc_by(0);
                }
                for why in crate::shadow::verdicts::Skip::ALL {
                    self.shadow_skipped
                        .with_label_values(&[&r.name, why.as_str()])
                        .inc_by(0);
                }
            }
            for p in &r.rate_limit {
                self.rate_limit_rejections
                    .with_label_values(&[r.name.as_str(), p.as_str()]);
            }
        }
        if let Some(limits) = &config.rate_limits
            && matches!(limits.store, LimitStore::Redis { .. })
        {
            for p in limits.policies.keys() {
                self.rate_limit_store_errors.with_label_values(&[p]);
            }
        }
    }

    /// `gateway_cohort_percent` for `config`: one series per route with a cohort split, none
    /// for any other.
    fn cohorts_loaded(&self, config: &Config) {
        let mut live = Vec::new();
        for r in &config.routes {
            if let RouteTarget::Cohort(c) = &r.target {
                let (cohort, route) = (c.cohort.name.as_str(), r.name.as_str());
                self.cohort_percent
                    .with_label_values(&[cohort, route])
                    .set(f64::from(c.basis_points) / 100.0);
                live.push((cohort, route));
            }
        }
        for family in self.cohort_percent.collect() {
            for m in family.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value())
                };
                if let (Some(cohort), Some(route)) = (label("cohort"), label("route"))
                    && !live.contains(&(cohort, route))
                {
                    let _ = self.cohort_percent.remove_label_values(&[cohort, route]);
                }
            }
        }
    }

    /// A new target of `upstream`: up, its breaker closed (when it has one), zero health
    /// checks (when the upstream has them) and zero transitions.
    pub fn target_added(&self, upstream: &str, target: &str, health_checked: bool, breaker: bool) {
        let labels = [upstream, target];
        self.target_up.with_label_values(&labels).set(1);
        if health_checked {
            for result in ["success", "failure"] {
                self.health_checks
                    .with_label_values(&[upstream, target, result])
                    .inc_by(0);
            }
        }
        if breaker {
            self.breaker_state.with_label_values(&labels).set(0);
            for to in [State::Open, State::HalfOpen, State::Closed] {
                self.breaker_transitions
                    .with_label_values(&[upstream, target, to.as_str()])
                    .inc_by(0);
            }
        }
    }

    /// A target the new config no longer has: its series go.
    pub fn target_removed(&self, upstream: &str, target: &str) {
        let labels = [upstream, target];
        let _ = self.target_up.remove_label_values(&labels);
        let _ = self.breaker_state.remove_label_values(&labels);
        for to in [State::Open, State::HalfOpen, State::Closed] {
            let _ = self
                .breaker_transitions
                .remove_label_values(&[upstream, target, to.as_str()]);
        }
        for result in ["success", "failure"] {
            let _ = self
                .health_checks
                .remove_label_values(&[upstream, target, result]);
        }
    }

    /// A breaker of `upstream`'s `target` entered `to`.
    pub fn breaker_transition(&self, upstream: &str, target: &str, to: State) {
        self.breaker_state
            .with_label_values(&[upstream, target])
            .set(breaker_state_value(to));
        self.breaker_transitions
            .with_label_values(&[upstream, target, to.as_str()])
            .inc();
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

/// The status as a 3-digit label without allocating.
pub fn status_str(status: u16, buf: &mut [u8; 3]) -> &str {
    let s = status.min(999);
    buf[0] = b'0' + (s / 100) as u8;
    buf[1] = b'0' + (s / 10 % 10) as u8;
    buf[2] = b'0' + (s % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(m: &Metrics) -> String {
        String::from_utf8(m.encode()).expect("utf-8")
    }

    #[test]
    fn a_loaded_config_shows_every_series_it_can_move_at_zero() {
        let src = r#"upstreams:
  a: { targets: [127.0.0.1:9] }
  b: { targets: [127.0.0.1:10] }
rate_limits:
  store: redis
  redis_url: redis://127.0.0.1:9/0
  policies:
    per_ip: { key: client_ip, limit: 5, per: 1s }
routes:
  - name: r
    match: { path_prefix: / }
    upstream: a
    fallback: b
    rate_limit: [per_ip]
"#;
        let config = crate::config::load_str("gw.yaml", src).expect("valid");
        let m = Metrics::new();
        m.config_loaded(&config);
        let text = exposition(&m);
        for series in [
            r#"gateway_retry_budget_exhausted_total{upstream="a"} 0"#,
            r#"gateway_retry_budget_exhausted_total{upstream="b"} 0"#,
            r#"gateway_upstream_retries_total{route="r",upstream="a"} 0"#,
            r#"gateway_fallbacks_total{fallback="b",reason="unavailable",route="r",upstream="a"} 0"#,
            r#"gateway_fallbacks_total{fallback="b",reason="reset",route="r",upstream="a"} 0"#,
            r#"gateway_fallbacks_skipped_total{reason="budget",route="r"} 0"#,
            r#"gateway_rate_limit_rejections_total{policy="per_ip",route="r"} 0"#,
            r#"gateway_rate_limit_store_errors_total{policy="per_ip"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }

    /// A cohort route's percent is set on every load; a route that changes cohort, stops
    /// splitting by one or goes keeps no series.
    #[test]
    fn cohort_percents_follow_the_loaded_config() {
        let config = |routes: &str| {
            let src = format!(
                "upstreams:\n  a: {{ targets: [127.0.0.1:9] }}\n  b: {{ targets: [127.0.0.1:10] }}\ncohorts:\n  early: {{ by: header.x-user }}\n  late: {{ by: cookie.sessionid }}\nroutes:\n{routes}"
            );
            crate::config::load_str("gw.yaml", &src).expect("valid")
        };
        let route = |name: &str, target: &str| {
            format!("  - {{ name: {name}, match: {{ path_prefix: /{name}/ }}, {target} }}\n")
        };
        let split = |percent: &str, cohort: &str| {
            format!("split: {{ to: a, percent: {percent}, cohort: {cohort}, rest: b }}")
        };
        let m = Metrics::new();
        m.config_loaded(&config(&format!(
            "{}{}{}",
            route("payments", &split("12.5", "early")),
            route("invoices", &split("10", "early")),
            route("orders", &split("0", "late")),
        )));
        let series = |m: &Metrics| {
            let mut v: Vec<String> = exposition(m)
                .lines()
                .filter(|l| l.starts_with("gateway_cohort_percent{"))
                .map(str::to_string)
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            series(&m),
            [
                r#"gateway_cohort_percent{cohort="early",route="invoices"} 10"#,
                r#"gateway_cohort_percent{cohort="early",route="payments"} 12.5"#,
                r#"gateway_cohort_percent{cohort="late",route="orders"} 0"#,
            ]
        );
        // payments is raised and moves to late; invoices is a plain route now; orders is gone.
        m.config_loaded(&config(&format!(
            "{}{}{}",
            route("payments", &split("30", "late")),
            route("invoices", "upstream: a"),
            route("refunds", &split("100", "early")),
        )));
        assert_eq!(
            series(&m),
            [
                r#"gateway_cohort_percent{cohort="early",route="refunds"} 100"#,
                r#"gateway_cohort_percent{cohort="late",route="payments"} 30"#,
            ]
        );
        m.config_loaded(&config(&route("plain", "upstream: a")));
        assert_eq!(series(&m), Vec::<String>::new());
    }

    #[test]
    fn a_memory_store_has_no_store_error_series() {
        let src = r#"upstreams: { a: { targets: [127.0.0.1:9] } }
rate_limits: { policies: { per_ip: { key: client_ip, limit: 5, per: 1s } } }
routes: [ { name: r, match: { path_prefix: / }, upstream: a, rate_limit: [per_ip] } ]
"#;
        let m = Metrics::new();
        m.config_loaded(&crate::config::load_str("gw.yaml", src).expect("valid"));
        assert!(!exposition(&m).contains("gateway_rate_limit_store_errors_total{"));
    }

    #[test]
    fn a_target_appears_with_its_series_and_goes_with_them() {
        let m = Metrics::new();
        m.target_added("u", "127.0.0.1:9", true, true);
        m.breaker_transition("u", "127.0.0.1:9", State::Open);
        let text = exposition(&m);
        for series in [
            r#"gateway_upstream_target_up{target="127.0.0.1:9",upstream="u"} 1"#,
            r#"gateway_health_checks_total{result="failure",target="127.0.0.1:9",upstream="u"} 0"#,
            r#"gateway_circuit_breaker_state{target="127.0.0.1:9",upstream="u"} 2"#,
            r#"gateway_circuit_breaker_transitions_total{target="127.0.0.1:9",to="open",upstream="u"} 1"#,
            r#"gateway_circuit_breaker_transitions_total{target="127.0.0.1:9",to="closed",upstream="u"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        m.target_removed("u", "127.0.0.1:9");
        let text = exposition(&m);
        assert!(!text.contains("127.0.0.1:9"), "left behind:\n{text}");
    }

    #[test]
    fn a_target_without_checks_or_breaker_has_only_its_up_series() {
        let m = Metrics::new();
        m.target_added("u", "t", false, false);
        let text = exposition(&m);
        assert!(text.contains(r#"gateway_upstream_target_up{target="t",upstream="u"} 1"#));
        assert!(!text.contains("gateway_health_checks_total{"));
        assert!(!text.contains("gateway_circuit_breaker_state{"));
    }
}
