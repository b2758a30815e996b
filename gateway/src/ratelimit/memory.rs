//! The in-process store: one `governor` keyed GCRA limiter per policy (a `DashMap` from bucket
//! to its theoretical arrival time, 16-byte keys).
//!
//! **Bounded memory.** A bucket whose theoretical arrival time has passed is indistinguishable
//! from a fresh one, so it can be forgotten. Every `sweep_every` — the time a drained bucket
//! takes to fill again (`burst × per / limit`), clamped to 1s..60s — the first request to
//! notice runs `retain_recent` (drops every such bucket) and shrinks the map. Memory is
//! therefore bounded by the keys seen within about two refill periods, not by every key ever
//! seen.
//!
//! Time is `tokio::time`, so tests drive the limiter with paused time.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::{BucketKey, Decision};
use crate::config::model::LimitPolicy;

/// `tokio::time` as governor's clock: time since the limiter was made.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.origin)
    }
}

type Keyed =
    RateLimiter<BucketKey, DashMapStateStore<BucketKey>, TokioClock, StateInformationMiddleware>;

pub struct MemoryLimiter {
    limiter: Keyed,
    clock: TokioClock,
    interval: Duration,
    burst: u32,
    sweep_every: Duration,
    /// Nanoseconds since `clock.origin` at which the next sweep is due.
    next_sweep: AtomicU64,
}

impl MemoryLimiter {
    pub fn new(p: &LimitPolicy) -> MemoryLimiter {
        // Validation guarantees an interval of at least 1µs and a burst of at least 1.
        let interval = p.interval().max(Duration::from_micros(1));
        let burst = NonZeroU32::new(p.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        let limiter = RateLimiter::dashmap_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        let sweep_every =
            (interval * burst.get()).clamp(Duration::from_secs(1), Duration::from_secs(60));
        MemoryLimiter {
            limiter,
            clock,
            interval,
            burst: burst.get(),
            sweep_every,
            next_sweep: AtomicU64::new(nanos(sweep_every)),
        }
    }

    pub fn check(&self, key: &BucketKey) -> Decision {
        self.maybe_sweep();
        match self.limiter.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    remaining: u64::from(remaining),
                    // governor does not expose the arrival time; this rounds up to a whole
                    // interval.
                    reset: self.interval * self.burst.saturating_sub(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset: wait + self.interval * (self.burst - 1),
                    retry_after: wait,
                }
            }
        }
    }

    /// Buckets held now (an estimate under concurrent use).
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    fn maybe_sweep(&self) {
        let now = nanos(self.clock.now());
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        // One caller wins the sweep; the others go on.
        let next = now + nanos(self.sweep_every);
        if self
            .next_sweep
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::LimitKey;

    fn policy(limit: u32, per: Duration, burst: u32) -> LimitPolicy {
        LimitPolicy {
            name: "p".into(),
            key: LimitKey::ClientIp,
            limit,
            per,
            burst,
        }
    }

    const A: BucketKey = BucketKey([1; 16]);
    const B: BucketKey = BucketKey([2; 16]);

    #[tokio::test(start_paused = true)]
    async fn burst_then_reject_then_one_per_interval() {
        // 10 per second (one every 100ms), bursts of 3.
        let m = MemoryLimiter::new(&policy(10, Duration::from_secs(1), 3));
        let remaining: Vec<u64> = (0..3)
            .map(|_| m.check(&A))
            .map(|d| {
                assert!(d.allowed);
                d.remaining
            })
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = m.check(&A);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.reset, Duration::from_millis(300));
        // Another key has its own bucket.
        assert!(m.check(&B).allowed);

        tokio::time::advance(Duration::from_millis(99)).await;
        let d = m.check(&A);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(1));
        tokio::time::advance(Duration::from_millis(1)).await;
        let d = m.check(&A);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!m.check(&A).allowed);

        // A full refill gives the whole burst back, and no more.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!((0..4).filter(|_| m.check(&A).allowed).count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_rate_over_a_window_is_burst_plus_rate() {
        // 5 per second, burst 5: asking every 10ms from 0s to 2s inclusive, 5 + 2×5 = 15 are
        // admitted.
        let m = MemoryLimiter::new(&policy(5, Duration::from_secs(1), 5));
        let mut admitted = 0;
        for _ in 0..=200 {
            if m.check(&A).allowed {
                admitted += 1;
            }
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert_eq!(admitted, 15);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_buckets_are_swept() {
        // Refills in 1s, so the sweep runs every 1s.
        let m = MemoryLimiter::new(&policy(2, Duration::from_secs(1), 2));
        for i in 0..100u8 {
            m.check(&BucketKey([i; 16]));
        }
        assert_eq!(m.len(), 100);
        tokio::time::advance(Duration::from_millis(1500)).await;
        // The first check after the sweep is due drops every idle bucket.
        m.check(&A);
        assert!(m.len() <= 1, "{} buckets left", m.len());
        assert!(!m.is_empty());
    }
}
