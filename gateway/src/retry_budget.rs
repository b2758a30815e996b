//! Retry budget: retries may add at most a fraction of live traffic, so retrying cannot
//! multiply an outage (the scheme of Envoy's `retry_budget`, Finagle's `RetryBudget` and
//! linkerd's budgets).
//!
//! Plain data, no `Session`, no metrics; time from [`tokio::time::Instant`].
//!
//! ## The rule
//! Over a sliding `window`, count the *requests* (first attempts, one per client request) and
//! the *retries* that were allowed. A retry is allowed only if
//!
//! ```text
//!   retries_in_window < max( min_retries_per_second × window_secs, ratio × requests_in_window )
//!                            └────────────── the floor ───────────┘  └──── the ratio part ────┘
//! ```
//!
//! and an allowed retry is counted at once (check and count are one atomic step). Denied retries
//! are not counted. With the defaults (`ratio: 0.2, min_retries_per_second: 10, window: 10s`):
//! a quiet upstream may still retry 100 times per window (so low traffic is not starved), and a
//! busy one may add at most 20 % on top of its traffic: even when every request fails and wants
//! several retries, the upstream sees at most 1.2 × the offered load (or the load plus the
//! floor, when the floor is larger), not 2× or 3×.
//!
//! ```text
//!  client request ──▶ record_request()        (deposit)
//!        │
//!   attempt fails ──▶ try_retry()? ── yes ──▶ retry (counted)
//!                         │
//!                         no ──▶ give up: return the failure to the client
//! ```
//!
//! The window is the crate-private `breaker::Window`: 10 buckets of `window / 10`, so a count
//! ages out between `window × 9/10` and `window` after it is made.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::breaker::Window;

/// Retry budget settings (the runtime model; the YAML mirror lives in `config`).
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    /// Retries allowed as a fraction of requests in the window, in `[0, 1]`. Default 0.2.
    pub ratio: f64,
    /// Retries allowed regardless of traffic, per second of `window`. Default 10.
    pub min_retries_per_second: u32,
    /// Length of the sliding window (granularity `window / 10`). Default 10 s.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ratio: 0.2,
            min_retries_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

impl BudgetConfig {
    /// Checks the settings; the error starts with the field name, for the config layer to prefix
    /// with its path (`upstreams.payments.retry_budget.`).
    pub fn validate(&self) -> Result<(), BudgetRule> {
        let r = self.ratio;
        if !(0.0..=1.0).contains(&r) {
            return Err(BudgetRule::Ratio(r));
        }
        if self.window.is_zero() {
            return Err(BudgetRule::Window);
        }
        Ok(())
    }

    /// `min_retries_per_second × window_secs`.
    fn floor(&self) -> f64 {
        f64::from(self.min_retries_per_second) * self.window.as_secs_f64()
    }
}

/// A rule of [`BudgetConfig`] that a value breaks: [`BudgetRule::field`] names the field,
/// `Display` says what it must be.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum BudgetRule {
    #[error("must be between 0 and 1, got {0}")]
    Ratio(f64),
    #[error("must be longer than 0s")]
    Window,
}

impl BudgetRule {
    /// The field of `retries.budget` the rule is about.
    pub fn field(&self) -> &'static str {
        match self {
            BudgetRule::Ratio(_) => "ratio",
            BudgetRule::Window => "window",
        }
    }
}

/// What `/admin/upstreams` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetSnapshot {
    /// Requests (first attempts) in the window.
    pub requests: u32,
    /// Retries allowed in the window.
    pub retries: u32,
    /// Retries that would still be allowed now.
    pub available: u32,
}

/// One budget, shared by every request it covers (per upstream, like Envoy's per cluster).
/// `Send + Sync`; each call takes one short lock and allocates nothing.
#[derive(Debug)]
pub struct RetryBudget {
    cfg: BudgetConfig,
    /// (requests, retries).
    window: Mutex<Window>,
}

impl RetryBudget {
    /// An empty budget. The config should have passed [`BudgetConfig::validate`]; if not, nothing
    /// panics (a NaN ratio allows only the floor; a zero window expires counts at once).
    pub fn new(cfg: BudgetConfig) -> Self {
        let window = Mutex::new(Window::new(cfg.window, Instant::now()));
        RetryBudget { cfg, window }
    }

    pub fn config(&self) -> &BudgetConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Window> {
        // Nothing panics while the lock is held.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a request's first attempt. Call it once per client request, not for retries.
    pub fn record_request(&self) {
        self.lock().add(Instant::now(), 1, 0);
    }

    /// May this failed request be retried? If yes, the retry is counted.
    pub fn try_retry(&self) -> bool {
        let now = Instant::now();
        let mut window = self.lock();
        let (requests, retries) = window.totals(now);
        let allowed = f64::from(retries) < self.limit(requests);
        if allowed {
            window.add(now, 0, 1);
        }
        allowed
    }

    pub fn snapshot(&self) -> BudgetSnapshot {
        let (requests, retries) = self.lock().totals(Instant::now());
        // retries < limit  ⇔  retries < ceil(limit), for whole retries.
        let limit = self.limit(requests).ceil();
        let available = (limit - f64::from(retries)).max(0.0);
        BudgetSnapshot {
            requests,
            retries,
            // Float-to-int `as` saturates; `available` is a small non-negative whole number.
            available: available as u32,
        }
    }

    /// `max(floor, ratio × requests)`.
    fn limit(&self, requests: u32) -> f64 {
        self.cfg.floor().max(self.cfg.ratio * f64::from(requests))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const SEC: Duration = Duration::from_secs(1);

    fn retries_allowed(b: &RetryBudget, wanted: u32) -> u32 {
        (0..wanted).filter(|_| b.try_retry()).count() as u32
    }

    #[test]
    fn default_config_is_the_spec_and_valid() {
        let c = BudgetConfig::default();
        assert_eq!(
            (c.ratio, c.min_retries_per_second, c.window),
            (0.2, 10, 10 * SEC)
        );
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.floor(), 100.0);
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |f: fn(&mut BudgetConfig)| {
            let mut c = BudgetConfig::default();
            f(&mut c);
            let rule = c.validate().expect_err("invalid");
            format!("{}: {rule}", rule.field())
        };
        assert_eq!(
            bad(|c| c.ratio = 1.5),
            "ratio: must be between 0 and 1, got 1.5"
        );
        assert!(bad(|c| c.ratio = f64::NAN).starts_with("ratio:"));
        assert_eq!(
            bad(|c| c.window = Duration::ZERO),
            "window: must be longer than 0s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_retries_with_no_traffic() {
        let b = RetryBudget::new(BudgetConfig::default());
        assert_eq!(retries_allowed(&b, 150), 100, "10/s × 10s");
        assert_eq!(
            b.snapshot(),
            BudgetSnapshot {
                requests: 0,
                retries: 100,
                available: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_ratio_scales_with_traffic() {
        let b = RetryBudget::new(BudgetConfig::default());
        for _ in 0..1000 {
            b.record_request();
        }
        assert_eq!(b.snapshot().available, 200);
        assert_eq!(
            retries_allowed(&b, 500),
            200,
            "20 % of 1000 is above the floor"
        );
        // More traffic, more budget.
        for _ in 0..100 {
            b.record_request();
        }
        assert_eq!(retries_allowed(&b, 500), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_floor_no_traffic_means_no_retries() {
        let b = RetryBudget::new(BudgetConfig {
            min_retries_per_second: 0,
            ..BudgetConfig::default()
        });
        assert!(!b.try_retry());
        for _ in 0..9 {
            b.record_request();
        }
        assert_eq!(retries_allowed(&b, 10), 2, "retries < 1.8: 0 and 1 pass");
    }

    #[tokio::test(start_paused = true)]
    async fn denied_retries_are_not_counted() {
        let b = RetryBudget::new(BudgetConfig::default());
        assert_eq!(retries_allowed(&b, 1000), 100);
        assert_eq!(b.snapshot().retries, 100);
        for _ in 0..1000 {
            b.record_request();
        }
        assert_eq!(
            retries_allowed(&b, 1000),
            100,
            "200 allowed in all, 100 used"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn window_expiry_restores_the_budget() {
        let b = RetryBudget::new(BudgetConfig::default());
        assert_eq!(retries_allowed(&b, 100), 100);
        assert!(!b.try_retry());
        advance(10 * SEC - Duration::from_millis(1)).await;
        assert!(!b.try_retry(), "still inside the window");
        advance(Duration::from_millis(1)).await;
        assert_eq!(b.snapshot().retries, 0);
        assert_eq!(retries_allowed(&b, 150), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_age_out_too() {
        let b = RetryBudget::new(BudgetConfig::default());
        for _ in 0..2000 {
            b.record_request();
        }
        advance(10 * SEC).await;
        assert_eq!(b.snapshot().requests, 0);
        assert_eq!(retries_allowed(&b, 1000), 100, "only the floor is left");
    }

    /// Every request fails, and every failed attempt (retries included) wants up to three
    /// retries: what the budget exists for. Returns (requests, retries).
    async fn outage(b: &RetryBudget, requests_per_second: u32, secs: u32) -> (u64, u64) {
        let (mut requests, mut retries) = (0u64, 0u64);
        let tick = SEC / requests_per_second;
        for _ in 0..secs * requests_per_second {
            b.record_request();
            requests += 1;
            for _ in 0..3 {
                if !b.try_retry() {
                    break;
                }
                retries += 1;
            }
            advance(tick).await;
        }
        (requests, retries)
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_holds_under_a_full_outage() {
        let b = RetryBudget::new(BudgetConfig::default());
        // 100 requests/s for 5 minutes: the floor (10/s) is below 20 % (20/s).
        let (requests, retries) = outage(&b, 100, 300).await;
        let ratio = retries as f64 / requests as f64;
        assert!(
            ratio <= 0.2 + 10.0 / 100.0,
            "the spec's bound: ratio + floor rate / request rate; got {ratio}"
        );
        assert!(
            (0.19..=0.205).contains(&ratio),
            "and in practice about the ratio; got {ratio} ({retries}/{requests})"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_bounds_retries_when_traffic_is_low() {
        let b = RetryBudget::new(BudgetConfig::default());
        // 5 requests/s for 5 minutes, all failing, each wanting 3 retries: the floor rules.
        let (requests, retries) = outage(&b, 5, 300).await;
        assert_eq!(requests, 1500);
        let per_second = retries as f64 / 300.0;
        assert!(
            per_second <= 10.0 * 10.0 / 9.0,
            "at most the floor per (bucketed, ≥ 9s) window; got {per_second}/s"
        );
        assert!(
            per_second >= 9.5,
            "and the floor is actually available; got {per_second}/s"
        );
    }

    #[test]
    fn budget_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RetryBudget>();
    }
}
