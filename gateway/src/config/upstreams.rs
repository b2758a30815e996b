//! Checks of `upstreams:`: names, targets, timeouts, retries (and their budget), active health
//! checks and circuit breakers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use super::model::{BreakerSpec, HealthCheckSpec, RetryPolicy, StatusSet, Timeouts, UpstreamSpec};
use super::problem::Named;
use super::yaml::{index, join};
use super::{Problem, Validator, defaults, duration, file, valid_name};
use crate::breaker::BreakerConfig;
use crate::retry_budget::BudgetConfig;

/// The upstreams that passed their checks, and every name declared (valid or not), so a route
/// naming an upstream that failed is not also told it is unknown.
pub(super) struct Upstreams {
    pub(super) valid: BTreeMap<String, Arc<UpstreamSpec>>,
    declared: std::collections::BTreeSet<String>,
}

impl Upstreams {
    pub(super) fn is_declared(&self, name: &str) -> bool {
        self.declared.contains(name)
    }
}

/// `host:port`, `[v6]:port`. Whether the host resolves is a check of the host, not of the text
/// (`Validator::resolvable`).
fn check_target(t: &str) -> Result<(), Problem> {
    if SocketAddr::from_str(t).is_ok() {
        return Ok(());
    }
    let bad = || Problem::BadTarget(t.to_string());
    let (host, port) = t.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(bad());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(bad());
    }
    Ok(())
}

impl Validator<'_> {
    /// `upstreams:`, each on its own.
    pub(super) fn upstreams(
        &mut self,
        raw: serde_json::Map<String, serde_json::Value>,
    ) -> Upstreams {
        let declared = raw.keys().cloned().collect();
        let mut valid = BTreeMap::new();
        for (name, v) in raw {
            let path = join("upstreams", &name);
            if let Some(u) = self.upstream(&name, v, &path) {
                valid.insert(name, Arc::new(u));
            }
        }
        Upstreams { valid, declared }
    }

    fn upstream(&mut self, name: &str, v: serde_json::Value, path: &str) -> Option<UpstreamSpec> {
        if !valid_name(name) {
            self.err(path, Problem::BadName(Named::Upstream, name.to_string()));
        }
        let u: file::Upstream = self.decode(v, path)?;
        let targets_path = join(path, "targets");
        if u.targets.is_empty() {
            self.err(&targets_path, Problem::NoTargets);
        }
        for (i, t) in u.targets.iter().enumerate() {
            let at = index(&targets_path, i);
            match check_target(t) {
                Ok(()) => self.resolvable(t, &at),
                Err(problem) => self.err(&at, problem),
            }
        }
        let t = u.timeouts.unwrap_or_default();
        let timeouts = Timeouts {
            connect: duration::or(t.connect, defaults::CONNECT_TIMEOUT),
            response: duration::or(t.response, defaults::RESPONSE_TIMEOUT),
            idle: duration::or(t.idle, defaults::IDLE_TIMEOUT),
            upgraded_idle: duration::or(t.upgraded_idle, defaults::UPGRADED_IDLE_TIMEOUT),
        };
        let timeouts_path = join(path, "timeouts");
        for (field, d, range) in [
            ("connect", timeouts.connect, defaults::CONNECT_TIMEOUT_RANGE),
            (
                "response",
                timeouts.response,
                defaults::RESPONSE_TIMEOUT_RANGE,
            ),
            ("idle", timeouts.idle, defaults::IDLE_TIMEOUT_RANGE),
            (
                "upgraded_idle",
                timeouts.upgraded_idle,
                defaults::UPGRADED_IDLE_TIMEOUT_RANGE,
            ),
        ] {
            self.within(&join(&timeouts_path, field), d, range);
        }
        let retries = self.retries(u.retries.unwrap_or_default(), &join(path, "retries"));
        let health_check = u
            .health_check
            .and_then(|h| self.health_check(h, &join(path, "health_check")));
        let circuit_breaker = self.circuit_breaker(
            u.circuit_breaker.unwrap_or_default(),
            &join(path, "circuit_breaker"),
        );
        Some(UpstreamSpec {
            name: name.to_string(),
            targets: u.targets,
            load_balancing: u.load_balancing.unwrap_or(defaults::LOAD_BALANCING),
            timeouts,
            retries: retries?,
            health_check,
            circuit_breaker: circuit_breaker?,
        })
    }

    /// With a [`super::Host`]: the target resolves there; each name is looked up once per load.
    fn resolvable(&mut self, target: &str, path: &str) {
        let Some(host) = self.host else {
            return;
        };
        let outcome = self
            .resolved
            .entry(target.to_string())
            .or_insert_with(|| host.resolve(target))
            .clone();
        if let Err(e) = outcome {
            self.err(path, Problem::Unresolvable(e));
        }
    }

    fn retries(&mut self, r: file::Retries, path: &str) -> Option<RetryPolicy> {
        let before = self.count();
        let b = r.budget.unwrap_or_default();
        let budget = BudgetConfig {
            ratio: b.ratio.unwrap_or(defaults::RETRY_BUDGET_RATIO),
            min_retries_per_second: b
                .min_retries_per_second
                .unwrap_or(defaults::RETRY_BUDGET_MIN_RETRIES_PER_SECOND),
            window: duration::or(b.window, defaults::RETRY_BUDGET_WINDOW),
        };
        self.budget(
            &budget,
            &join(path, "budget"),
            "min_retries_per_second",
            defaults::RETRY_BUDGET_MIN_RETRIES_PER_SECOND_RANGE,
            defaults::RETRY_BUDGET_WINDOW_RANGE,
        );
        let policy = RetryPolicy {
            attempts: r.attempts.unwrap_or(defaults::RETRY_ATTEMPTS),
            backoff: duration::or(r.backoff, defaults::RETRY_BACKOFF),
            max_backoff: duration::or(r.max_backoff, defaults::RETRY_MAX_BACKOFF),
            budget,
        };
        self.within(
            &join(path, "attempts"),
            policy.attempts,
            defaults::RETRY_ATTEMPTS_RANGE,
        );
        self.within(
            &join(path, "backoff"),
            policy.backoff,
            defaults::RETRY_BACKOFF_RANGE,
        );
        if self.within(
            &join(path, "max_backoff"),
            policy.max_backoff,
            defaults::RETRY_MAX_BACKOFF_RANGE,
        ) && policy.max_backoff < policy.backoff
        {
            self.err(
                &join(path, "max_backoff"),
                Problem::BelowBackoff {
                    backoff: policy.backoff,
                    got: policy.max_backoff,
                },
            );
        }
        (self.count() == before).then_some(policy)
    }

    fn health_check(&mut self, h: file::HealthCheck, path: &str) -> Option<HealthCheckSpec> {
        let before = self.count();
        if !h.path.starts_with('/') {
            self.err(&join(path, "path"), Problem::NoLeadingSlash(h.path.clone()));
        } else if http::uri::PathAndQuery::from_str(&h.path).is_err() {
            self.err(&join(path, "path"), Problem::BadRequestPath(h.path.clone()));
        }
        if let Some(host) = &h.host
            && http::HeaderValue::from_str(host).is_err()
        {
            self.err(&join(path, "host"), Problem::BadHostHeader);
        }
        let spec = HealthCheckSpec {
            path: h.path,
            host: h.host,
            interval: duration::or(h.interval, defaults::HEALTH_INTERVAL),
            timeout: duration::or(h.timeout, defaults::HEALTH_TIMEOUT),
            healthy_threshold: h.healthy_threshold.unwrap_or(defaults::HEALTHY_THRESHOLD),
            unhealthy_threshold: h
                .unhealthy_threshold
                .unwrap_or(defaults::UNHEALTHY_THRESHOLD),
        };
        let interval_ok = self.within(
            &join(path, "interval"),
            spec.interval,
            defaults::HEALTH_INTERVAL_RANGE,
        );
        if self.within(
            &join(path, "timeout"),
            spec.timeout,
            defaults::HEALTH_TIMEOUT_RANGE,
        ) && interval_ok
            && spec.timeout > spec.interval
        {
            self.err(
                &join(path, "timeout"),
                Problem::TimeoutAboveInterval {
                    interval: spec.interval,
                    got: spec.timeout,
                },
            );
        }
        for (field, v, range) in [
            (
                "healthy_threshold",
                spec.healthy_threshold,
                defaults::HEALTHY_THRESHOLD_RANGE,
            ),
            (
                "unhealthy_threshold",
                spec.unhealthy_threshold,
                defaults::UNHEALTHY_THRESHOLD_RANGE,
            ),
        ] {
            self.within(&join(path, field), v, range);
        }
        (self.count() == before).then_some(spec)
    }

    /// `Some(None)`: valid and switched off; `None`: invalid (errors recorded).
    fn circuit_breaker(
        &mut self,
        c: file::CircuitBreaker,
        path: &str,
    ) -> Option<Option<BreakerSpec>> {
        let before = self.count();
        let open_for = duration::or(c.open_for, defaults::BREAKER_OPEN_FOR);
        let config = BreakerConfig {
            failure_ratio: c.failure_ratio.unwrap_or(defaults::BREAKER_FAILURE_RATIO),
            min_requests: c.min_requests.unwrap_or(defaults::BREAKER_MIN_REQUESTS),
            window: duration::or(c.window, defaults::BREAKER_WINDOW),
            open_for,
            max_open_for: duration::or(c.max_open_for, defaults::breaker_max_open_for(open_for)),
            half_open_requests: c
                .half_open_requests
                .unwrap_or(defaults::BREAKER_HALF_OPEN_REQUESTS),
        };
        for (field, v, range) in [
            (
                "min_requests",
                config.min_requests,
                defaults::BREAKER_MIN_REQUESTS_RANGE,
            ),
            (
                "half_open_requests",
                config.half_open_requests,
                defaults::BREAKER_HALF_OPEN_REQUESTS_RANGE,
            ),
        ] {
            self.within(&join(path, field), v, range);
        }
        for (field, d, range) in [
            ("window", config.window, defaults::BREAKER_WINDOW_RANGE),
            (
                "open_for",
                config.open_for,
                defaults::BREAKER_OPEN_FOR_RANGE,
            ),
            (
                "max_open_for",
                config.max_open_for,
                defaults::BREAKER_MAX_OPEN_FOR_RANGE,
            ),
        ] {
            self.within(&join(path, field), d, range);
        }
        // The runtime type's own rules (the ratio, max_open_for >= open_for).
        if let Err(rule) = config.validate() {
            self.refused(path, rule.field(), Problem::Breaker(rule));
        }
        let failure_statuses = match c.failure_statuses {
            None => defaults::breaker_failure_statuses(),
            Some(entries) => self.statuses(&entries, &join(path, "failure_statuses")),
        };
        if self.count() > before {
            return None;
        }
        Some(
            c.enabled
                .unwrap_or(defaults::BREAKER_ENABLED)
                .then_some(BreakerSpec {
                    config,
                    failure_statuses,
                }),
        )
    }

    /// A budget (`retries.budget`, `fallback.budget`) at `path`: the ranges of its floor (named
    /// `min_field` in the file) and window, and the runtime type's own rules (the ratio).
    pub(super) fn budget(
        &mut self,
        budget: &BudgetConfig,
        path: &str,
        min_field: &str,
        min_range: defaults::Range<u32>,
        window_range: defaults::Range<std::time::Duration>,
    ) {
        self.within(
            &join(path, min_field),
            budget.min_retries_per_second,
            min_range,
        );
        self.within(&join(path, "window"), budget.window, window_range);
        if let Err(rule) = budget.validate() {
            self.refused(path, rule.field(), Problem::Budget(rule));
        }
    }

    /// `failure_statuses: [503, 5xx]`.
    pub(super) fn statuses(&mut self, entries: &[file::StatusEntry], path: &str) -> StatusSet {
        let mut set = StatusSet::empty();
        for (i, e) in entries.iter().enumerate() {
            match e {
                file::StatusEntry::Code(code @ 100..=599) => set.insert_range(*code, *code),
                file::StatusEntry::Code(code) => {
                    self.err(&index(path, i), Problem::NotAStatus(*code))
                }
                file::StatusEntry::Class(class) => match class.as_str() {
                    "4xx" => set.insert_range(400, 499),
                    "5xx" => set.insert_range(500, 599),
                    other => self.err(&index(path, i), Problem::BadStatusClass(other.to_string())),
                },
            }
        }
        set
    }

    /// A rule of a runtime type's own `validate()`, reported at `path.<its field>` unless that
    /// field's range check has already reported it.
    pub(super) fn refused(&mut self, path: &str, field: &str, problem: Problem) {
        let at = join(path, field);
        if !self.errors.iter().any(|e| e.path == at) {
            self.err(&at, problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::model::LoadBalancing;
    use crate::config::tests::{at, load, out_of_range, problems};

    /// One upstream `a` written as the flow mapping `upstream`, and a route to it.
    fn one_upstream(upstream: &str) -> String {
        format!(
            "upstreams:\n  a: {{ {upstream} }}\nroutes:\n  - {{ name: r, match: {{}}, upstream: a }}\n"
        )
    }

    #[test]
    fn targets_parse() {
        for good in ["127.0.0.1:80", "[::1]:80", "monolith:8000", "a-b.c:1"] {
            assert_eq!(check_target(good), Ok(()), "{good}");
        }
        for bad in [
            "monolith", ":80", "a:0", "a:x", "a b:80", "a:65536", "a_b:80",
        ] {
            assert_eq!(
                check_target(bad),
                Err(Problem::BadTarget(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_bare_upstream_gets_every_default() {
        let c = load(&one_upstream("targets: [127.0.0.1:9]"));
        let u = &c.upstreams["a"];
        assert_eq!(u.load_balancing, defaults::LOAD_BALANCING);
        assert_eq!(u.timeouts.connect, defaults::CONNECT_TIMEOUT);
        assert_eq!(u.timeouts.response, defaults::RESPONSE_TIMEOUT);
        assert_eq!(u.timeouts.idle, defaults::IDLE_TIMEOUT);
        assert_eq!(
            u.retries,
            RetryPolicy {
                attempts: defaults::RETRY_ATTEMPTS,
                backoff: defaults::RETRY_BACKOFF,
                max_backoff: defaults::RETRY_MAX_BACKOFF,
                budget: BudgetConfig::default(),
            }
        );
        assert_eq!(u.health_check, None);
        assert_eq!(
            u.circuit_breaker,
            Some(BreakerSpec {
                config: BreakerConfig::default(),
                failure_statuses: StatusSet::server_errors(),
            })
        );
    }

    #[test]
    fn configured_values_are_kept() {
        let c = load(&one_upstream(
            "targets: [127.0.0.1:9], load_balancing: random, health_check: { path: /h }, \
             circuit_breaker: { open_for: 1s, failure_statuses: [429, 5xx] }",
        ));
        let u = &c.upstreams["a"];
        assert_eq!(u.load_balancing, LoadBalancing::Random);
        let h = u.health_check.as_ref().unwrap();
        assert_eq!(
            (
                h.interval,
                h.timeout,
                h.healthy_threshold,
                h.unhealthy_threshold
            ),
            (
                defaults::HEALTH_INTERVAL,
                defaults::HEALTH_TIMEOUT,
                defaults::HEALTHY_THRESHOLD,
                defaults::UNHEALTHY_THRESHOLD
            )
        );
        let b = u.circuit_breaker.as_ref().unwrap();
        assert_eq!(
            b.config.max_open_for,
            Duration::from_secs(8),
            "follows open_for"
        );
        assert_eq!(b.failure_statuses.describe(), "429,500-599");
        let off = load(&one_upstream(
            "targets: [127.0.0.1:9], circuit_breaker: { enabled: false }",
        ));
        assert_eq!(off.upstreams["a"].circuit_breaker, None);
    }

    #[test]
    fn the_breaker_and_budget_rules_no_range_covers_are_typed_and_placed() {
        use crate::breaker::BreakerRule;
        let only = |upstream: &str| problems(&one_upstream(upstream));
        assert_eq!(
            only("targets: [127.0.0.1:9], circuit_breaker: { failure_ratio: 1.0 }"),
            at([(
                "upstreams.a.circuit_breaker.failure_ratio",
                Problem::Breaker(BreakerRule::FailureRatio(1.0))
            )])
        );
        assert_eq!(
            only("targets: [127.0.0.1:9], circuit_breaker: { open_for: 10s, max_open_for: 5s }"),
            at([(
                "upstreams.a.circuit_breaker.max_open_for",
                Problem::Breaker(BreakerRule::MaxOpenFor {
                    open_for: Duration::from_secs(10),
                    got: Duration::from_secs(5)
                })
            )])
        );
        let budget = only("targets: [127.0.0.1:9], retries: { budget: { ratio: 1.5 } }");
        assert_eq!(budget.len(), 1, "{budget:?}");
        assert_eq!(budget[0].0, "upstreams.a.retries.budget.ratio");
        assert_eq!(budget[0].1.to_string(), "must be between 0 and 1, got 1.5");
    }

    #[test]
    fn names_targets_and_timeouts_are_checked() {
        let src = "upstreams:\n  \"a b\": { targets: [nohost], timeouts: { connect: 0s, response: 0s } }\n  c: { targets: [] }\nroutes:\n  - { name: r, match: {}, upstream: c }\n";
        assert_eq!(
            problems(src),
            at([
                (
                    "upstreams.a b",
                    Problem::BadName(Named::Upstream, "a b".into())
                ),
                (
                    "upstreams.a b.targets[0]",
                    Problem::BadTarget("nohost".into())
                ),
                (
                    "upstreams.a b.timeouts.connect",
                    out_of_range(defaults::CONNECT_TIMEOUT_RANGE, Duration::ZERO)
                ),
                (
                    "upstreams.a b.timeouts.response",
                    out_of_range(defaults::RESPONSE_TIMEOUT_RANGE, Duration::ZERO)
                ),
                ("upstreams.c.targets", Problem::NoTargets),
            ])
        );
    }

    #[test]
    fn retries_health_checks_and_breakers_are_checked() {
        let src = one_upstream(
            "targets: [127.0.0.1:9], \
             retries: { attempts: 11, backoff: 1s, max_backoff: 10ms, budget: { window: 0s } }, \
             health_check: { path: \"/a b\", host: \"a\\nb\", interval: 1s, timeout: 0s, unhealthy_threshold: 0 }, \
             circuit_breaker: { min_requests: 0, failure_statuses: [99, 3xx] }",
        );
        let ms = Duration::from_millis;
        assert_eq!(
            problems(&src),
            at([
                (
                    "upstreams.a.retries.attempts",
                    out_of_range(defaults::RETRY_ATTEMPTS_RANGE, 11)
                ),
                (
                    "upstreams.a.retries.max_backoff",
                    Problem::BelowBackoff {
                        backoff: ms(1000),
                        got: ms(10)
                    }
                ),
                (
                    "upstreams.a.retries.budget.window",
                    out_of_range(defaults::RETRY_BUDGET_WINDOW_RANGE, Duration::ZERO)
                ),
                (
                    "upstreams.a.health_check.path",
                    Problem::BadRequestPath("/a b".into())
                ),
                ("upstreams.a.health_check.host", Problem::BadHostHeader),
                (
                    "upstreams.a.health_check.timeout",
                    out_of_range(defaults::HEALTH_TIMEOUT_RANGE, Duration::ZERO)
                ),
                (
                    "upstreams.a.health_check.unhealthy_threshold",
                    out_of_range(defaults::UNHEALTHY_THRESHOLD_RANGE, 0)
                ),
                (
                    "upstreams.a.circuit_breaker.min_requests",
                    out_of_range(defaults::BREAKER_MIN_REQUESTS_RANGE, 0)
                ),
                (
                    "upstreams.a.circuit_breaker.failure_statuses[0]",
                    Problem::NotAStatus(99)
                ),
                (
                    "upstreams.a.circuit_breaker.failure_statuses[1]",
                    Problem::BadStatusClass("3xx".into())
                ),
            ])
        );
    }
}
