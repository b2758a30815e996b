//! Active health checks: an HTTP GET to every target of every upstream that has a
//! `health_check:`, on its interval. This module holds the per-target state and the probe;
//! [`crate::background`]'s health checker runs the due checks.
//!
//! A target turns unhealthy after `unhealthy_threshold` consecutive failed checks and healthy
//! again after `healthy_threshold` consecutive good ones; a check is good when the target answers
//! 2xx or 3xx within `timeout`. Targets start healthy (a new target is not kept out of rotation
//! for a whole interval; the passive signal, its circuit breaker, protects it meanwhile).
//!
//! The state lives with the target (see `upstream.rs`), so it survives a config reload that keeps
//! the target and its `health_check:` unchanged. The probe itself is pingora's
//! [`HttpHealthCheck`] (pingora's connector, the check's own timeouts, a fresh connection each
//! time so a dead listener is noticed); the thresholds are counted here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use pingora_load_balancing::health_check::HttpHealthCheck;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::model::HealthCheckSpec;

/// One target's health, as the active checks see it. `Send + Sync`.
#[derive(Debug)]
pub struct Health {
    healthy: AtomicBool,
    core: Mutex<Core>,
}

#[derive(Debug)]
struct Core {
    /// Consecutive results of the current kind (successes while the last check passed).
    streak: u32,
    last_ok: Option<bool>,
    last_checked: Option<SystemTime>,
    last_error: Option<String>,
    /// When the next check is due; `None` while one runs.
    next_due: Option<Instant>,
}

/// What `/admin/upstreams` shows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub healthy: bool,
    /// Consecutive passes (or failures, when the last check failed).
    pub streak: u32,
    pub last_check_ok: Option<bool>,
    pub last_checked: Option<String>,
    /// Why the last check failed (kind of error or status, never a body).
    pub last_error: Option<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthy: AtomicBool::new(true),
            core: Mutex::new(Core {
                streak: 0,
                last_ok: None,
                last_checked: None,
                last_error: None,
                next_due: Some(Instant::now()),
            }),
        }
    }
}

impl Health {
    /// False only after the active checks have failed `unhealthy_threshold` times in a row.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        // Nothing panics under this lock.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims the next check if it is due at `now` (then no other claim succeeds until
    /// [`Health::observe`] reports it).
    pub fn claim_if_due(&self, now: Instant) -> bool {
        let mut core = self.lock();
        match core.next_due {
            Some(due) if due <= now => {
                core.next_due = None;
                true
            }
            _ => false,
        }
    }

    /// Records a check's result; the next one is due `interval` after `started`. Returns the new
    /// health when it flipped.
    pub fn observe(
        &self,
        result: Result<(), String>,
        spec: &HealthCheckSpec,
        started: Instant,
    ) -> Option<bool> {
        let mut core = self.lock();
        let ok = result.is_ok();
        core.streak = if core.last_ok == Some(ok) {
            core.streak.saturating_add(1)
        } else {
            1
        };
        core.last_ok = Some(ok);
        core.last_checked = Some(SystemTime::now());
        core.last_error = result.err();
        core.next_due = Some(started + spec.interval);
        let healthy = self.is_healthy();
        let flip = if healthy && !ok && core.streak >= spec.unhealthy_threshold {
            Some(false)
        } else if !healthy && ok && core.streak >= spec.healthy_threshold {
            Some(true)
        } else {
            None
        };
        if let Some(h) = flip {
            self.healthy.store(h, Ordering::Relaxed);
        }
        flip
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let core = self.lock();
        HealthSnapshot {
            healthy: self.is_healthy(),
            streak: core.streak,
            last_check_ok: core.last_ok,
            last_checked: core
                .last_checked
                .map(|t| humantime::format_rfc3339_millis(t).to_string()),
            last_error: core.last_error.clone(),
        }
    }
}

/// The pingora probe of one target (`target` as written in the config, the default `Host`).
pub fn probe(spec: &HealthCheckSpec, target: &str) -> HttpHealthCheck {
    let mut check = HttpHealthCheck::new(spec.host.as_deref().unwrap_or(target), false);
    let _ = check
        .req
        .insert_header(http::header::USER_AGENT, "gateway-health-check");
    check.consecutive_success = 1;
    check.consecutive_failure = 1;
    check.peer_template.options.connection_timeout = Some(spec.timeout);
    check.peer_template.options.read_timeout = Some(spec.timeout);
    check.peer_template.options.write_timeout = Some(spec.timeout);
    check.peer_template.options.total_connection_timeout = Some(spec.timeout);
    check.reuse_connection = false;
    // `new` sets `GET /`; our path instead. Validated in config (starts with '/').
    if let Ok(uri) = spec.path.parse::<http::Uri>() {
        check.req.set_uri(uri);
    }
    check.validator = Some(Box::new(|resp| {
        if resp.status.is_success() || resp.status.is_redirection() {
            Ok(())
        } else {
            pingora_error::Error::e_explain(
                pingora_error::ErrorType::CustomCode("unhealthy status", resp.status.as_u16()),
                "during health check",
            )
        }
    }));
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec() -> HealthCheckSpec {
        HealthCheckSpec {
            path: "/healthz".into(),
            host: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    fn fail() -> Result<(), String> {
        Err("connection refused".into())
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_flip_both_ways_and_a_good_check_resets_the_failure_streak() {
        let h = Health::default();
        let s = spec();
        let t = Instant::now();
        assert!(h.is_healthy(), "targets start healthy");
        assert_eq!(h.observe(fail(), &s, t), None);
        assert_eq!(h.observe(fail(), &s, t), None);
        assert_eq!(h.observe(Ok(()), &s, t), None, "a pass breaks the streak");
        assert_eq!(h.observe(fail(), &s, t), None);
        assert_eq!(h.observe(fail(), &s, t), None);
        assert!(h.is_healthy());
        assert_eq!(
            h.observe(fail(), &s, t),
            Some(false),
            "third failure in a row"
        );
        assert!(!h.is_healthy());
        assert_eq!(h.observe(fail(), &s, t), None, "already unhealthy");
        assert_eq!(h.observe(Ok(()), &s, t), None);
        assert_eq!(h.observe(fail(), &s, t), None);
        assert_eq!(h.observe(Ok(()), &s, t), None);
        assert_eq!(h.observe(Ok(()), &s, t), Some(true), "second pass in a row");
        let snap = h.snapshot();
        assert!(snap.healthy);
        assert_eq!(snap.streak, 2);
        assert_eq!(snap.last_error, None);
    }

    #[tokio::test(start_paused = true)]
    async fn one_check_at_a_time_and_the_next_is_due_an_interval_after_the_start() {
        let h = Health::default();
        let s = spec();
        let t0 = Instant::now();
        assert!(h.claim_if_due(t0), "the first check is due at once");
        assert!(
            !h.claim_if_due(t0),
            "claimed: no second check while it runs"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!h.claim_if_due(Instant::now()), "still running");
        h.observe(fail(), &s, t0);
        assert!(h.claim_if_due(Instant::now()), "t0 + 5s has passed");
        let t1 = Instant::now();
        h.observe(Ok(()), &s, t1);
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert!(!h.claim_if_due(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(h.claim_if_due(Instant::now()));
    }

    #[test]
    fn last_error_is_kept_for_the_admin_view() {
        let h = Health::default();
        h.observe(Err("status 503".into()), &spec(), Instant::now());
        let snap = h.snapshot();
        assert_eq!(snap.last_check_ok, Some(false));
        assert_eq!(snap.last_error.as_deref(), Some("status 503"));
        assert!(snap.last_checked.is_some());
    }
}
