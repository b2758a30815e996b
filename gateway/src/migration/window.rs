//! Both sides of a migrating route measured over the guard's sliding window: requests, 5xx
//! and a latency histogram for the p99, per side, in a ring of [`SLOTS`] time buckets.
//!
//! ## The ring
//! Like the breaker's window: [`SLOTS`] buckets of `window / 10`, each stamped with the slice of
//! time it holds. A sample counts from when it is recorded until its bucket leaves the window:
//! for at least `window × 9/10` and at most `window`. A bucket is emptied when it is reused for
//! a newer slice, so memory is fixed: per side, 10 × ([`LATENCY_BUCKETS`] + 1) 32-bit counters
//! and a stamp, about 29 KiB; 58 KiB per migrating route, whatever the traffic.
//!
//! ## Recording is cheap
//! [`Measurements::record`] allocates nothing and takes no lock on its usual path: one load of
//! the bucket's stamp and one or two relaxed `fetch_add`s. The first sample of a new slice of
//! time empties the reused bucket under a per-side lock (once per `window / 10`, about a
//! microsecond). Races are benign and bounded: a sample recorded by a thread that read the
//! stamp just before another emptied the bucket may land in the newer slice, or be lost with
//! the older one; a sample older than the bucket it maps to is dropped. [`Measurements::summaries`]
//! reads the counters without a lock (about 15,000 relaxed loads: meant for a ticker, not per
//! request); a read racing an emptying may miss some of that bucket's counts. These are
//! monitoring values, not invariants.
//!
//! ## The p99 and its error
//! Latencies are counted in a fixed log-linear histogram (HdrHistogram's layout, with 5 bits
//! of sub-bucket): whole microseconds, exact below 64 µs; above, each power of two is cut into
//! 32 equal buckets, so a bucket is at most 1/32 of its lower edge wide. The p99 is the
//! nearest-rank one (the ⌈0.99 n⌉-th smallest of the `n` samples in the window), reported as
//! the midpoint of its bucket: within **1/64 (1.6%)** of the exact nearest-rank p99 for
//! latencies from 32 µs to 134 s, and within half a microsecond below that
//! ([`P99_RELATIVE_ERROR`]). Latencies of 2²⁷ µs (134 s) and more are counted in the last
//! bucket, reported as 133 s: a p99 that long says enough. So `to`'s p99
//! over `from`'s is known to within about 3.2%: near `max_p99_ratio` the guard may go either
//! way by that much.
//!
//! Why not a sketch crate: none is in `Cargo.lock` (`hdrhistogram`, `sketches-ddsketch` would
//! be new dependencies), and what the guard needs is small. Fixed buckets merge across the
//! ring by plain addition, take an atomic increment each (a crate's histogram would need a
//! lock per record, or one histogram per thread), and give a documented bound; a DDSketch with
//! the same 1.6% error would need `ln` per record and still a fixed range to stay bounded.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Time buckets in the window.
pub const SLOTS: usize = 10;
/// Bits of sub-bucket per power of two (32 buckets each).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// The largest latency told apart, in microseconds (2²⁷ − 1: about 134 s).
const MAX_MICROS: u64 = (1 << 27) - 1;
/// Latency buckets: one more than the index of the largest latency told apart (2²⁷ − 1 µs).
pub const LATENCY_BUCKETS: usize = 736;
/// The p99's bound, relative to the exact one, from 32 µs to 134 s (see the module doc).
pub const P99_RELATIVE_ERROR: f64 = 1.0 / 64.0;

/// A side of a migrating route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The monolith (or whatever the route moves away from).
    From,
    /// The new service.
    To,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::From => "from",
            Side::To => "to",
        }
    }
}

/// One side over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Summary {
    pub requests: u64,
    /// Answers counted as errors (5xx, or none at all: the caller's call).
    pub errors: u64,
    /// The nearest-rank p99, within [`P99_RELATIVE_ERROR`]; `None` with no requests.
    #[serde(rename = "p99_seconds", serialize_with = "opt_seconds")]
    pub p99: Option<Duration>,
}

impl Summary {
    /// errors / requests; `None` with no requests.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// Both sides over the same window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Summaries {
    pub from: Summary,
    pub to: Summary,
}

pub(super) fn opt_seconds<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// A migrating route's two sides over the guard's window. `Send + Sync`: shared by every
/// request of the route (recording) and the ticker (reading).
pub struct Measurements {
    origin: Instant,
    bucket_nanos: u128,
    window: Duration,
    sides: [Ring; 2],
}

struct Ring {
    slots: Box<[Slot]>,
    /// Taken only to empty a reused bucket, or all of them.
    rotation: Mutex<()>,
}

struct Slot {
    /// 1 + the index of the slice of time (of `window / SLOTS`, since `origin`) held; 0: none.
    stamp: AtomicU64,
    errors: AtomicU32,
    latency: [AtomicU32; LATENCY_BUCKETS],
}

impl std::fmt::Debug for Measurements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measurements")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Measurements {
    /// Empty measurements over `window` (10 buckets of `window / 10`), starting at `now`.
    pub fn new(window: Duration, now: Instant) -> Measurements {
        let ring = || Ring {
            slots: (0..SLOTS)
                .map(|_| Slot {
                    stamp: AtomicU64::new(0),
                    errors: AtomicU32::new(0),
                    latency: std::array::from_fn(|_| AtomicU32::new(0)),
                })
                .collect(),
            rotation: Mutex::new(()),
        };
        Measurements {
            origin: now,
            bucket_nanos: (window.as_nanos() / SLOTS as u128).max(1),
            window,
            sides: [ring(), ring()],
        }
    }

    /// The window these measurements were made for.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn slice(&self, now: Instant) -> u64 {
        let i = now.saturating_duration_since(self.origin).as_nanos() / self.bucket_nanos;
        u64::try_from(i).unwrap_or(u64::MAX - 1)
    }

    fn ring(&self, side: Side) -> &Ring {
        &self.sides[match side {
            Side::From => 0,
            Side::To => 1,
        }]
    }

    /// Counts one answer of `side` at `now`: how long it took and whether it was an error.
    /// No allocation; no lock but once per `window / 10` (see the module doc).
    pub fn record(&self, side: Side, now: Instant, latency: Duration, error: bool) {
        let slice = self.slice(now);
        let ring = self.ring(side);
        let slot = &ring.slots[(slice % SLOTS as u64) as usize];
        let stamp = slice + 1;
        if slot.stamp.load(Ordering::Acquire) != stamp && !ring.rotate(slot, stamp) {
            return;
        }
        slot.latency[latency_bucket(latency)].fetch_add(1, Ordering::Relaxed);
        if error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets everything recorded so far (a new stage starts measuring afresh).
    pub fn restart(&self) {
        for ring in &self.sides {
            let _guard = ring.lock();
            for slot in ring.slots.iter() {
                slot.stamp.store(0, Ordering::Release);
            }
        }
    }

    /// Both sides over the window ending at `now`.
    pub fn summaries(&self, now: Instant) -> Summaries {
        let current = self.slice(now);
        Summaries {
            from: self.ring(Side::From).summary(current),
            to: self.ring(Side::To).summary(current),
        }
    }
}

impl Ring {
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data: a poisoned one is safe to keep using.
        self.rotation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `slot` hold the slice `stamp`, emptying it; `false` when it already holds a newer
    /// one (the sample is older than the window).
    fn rotate(&self, slot: &Slot, stamp: u64) -> bool {
        let _guard = self.lock();
        let held = slot.stamp.load(Ordering::Acquire);
        if held == stamp {
            return true;
        }
        if held > stamp {
            return false;
        }
        slot.errors.store(0, Ordering::Relaxed);
        for count in &slot.latency {
            count.store(0, Ordering::Relaxed);
        }
        slot.stamp.store(stamp, Ordering::Release);
        true
    }

    fn summary(&self, current: u64) -> Summary {
        let mut counts = [0u64; LATENCY_BUCKETS];
        let mut errors = 0u64;
        for slot in self.slots.iter() {
            let stamp = slot.stamp.load(Ordering::Acquire);
            let Some(slice) = stamp.checked_sub(1) else {
                continue;
            };
            if slice > current || current - slice >= SLOTS as u64 {
                continue;
            }
            errors += u64::from(slot.errors.load(Ordering::Relaxed));
            for (sum, count) in counts.iter_mut().zip(&slot.latency) {
                *sum += u64::from(count.load(Ordering::Relaxed));
            }
        }
        let requests: u64 = counts.iter().sum();
        Summary {
            requests,
            errors: errors.min(requests),
            p99: p99(&counts, requests),
        }
    }
}

/// The histogram bucket of `latency` (see the module doc).
fn latency_bucket(latency: Duration) -> usize {
    let v = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .min(MAX_MICROS);
    if v < SUB {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    (u64::from(shift) * SUB + (v >> shift)) as usize
}

/// The midpoint of a histogram bucket.
fn bucket_midpoint(index: usize) -> Duration {
    let index = index as u64;
    let (low, width) = if index < 2 * SUB {
        (index, 1)
    } else {
        let shift = index / SUB - 1;
        ((index % SUB + SUB) << shift, 1u64 << shift)
    };
    Duration::from_nanos(low * 1000 + width * 500)
}

/// The nearest-rank p99 of `total` samples counted in `counts`.
fn p99(counts: &[u64; LATENCY_BUCKETS], total: u64) -> Option<Duration> {
    if total == 0 {
        return None;
    }
    let rank = (total * 99).div_ceil(100);
    let mut seen = 0;
    for (index, &count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(bucket_midpoint(index));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn buckets_cover_the_range_in_order_and_the_midpoint_is_within_the_bound() {
        assert_eq!(latency_bucket(Duration::ZERO), 0);
        assert_eq!(
            latency_bucket(Duration::from_micros(MAX_MICROS)),
            LATENCY_BUCKETS - 1
        );
        assert_eq!(
            latency_bucket(Duration::from_secs(3600)),
            LATENCY_BUCKETS - 1,
            "beyond the range: the last bucket"
        );
        let mut previous = 0;
        let mut micros = 1u64;
        while micros <= MAX_MICROS {
            let latency = Duration::from_micros(micros);
            let index = latency_bucket(latency);
            assert!(index >= previous, "{micros} µs");
            previous = index;
            let estimate = bucket_midpoint(index).as_secs_f64();
            let exact = latency.as_secs_f64();
            if micros >= 32 {
                let error = (estimate - exact).abs() / exact;
                assert!(error <= P99_RELATIVE_ERROR, "{micros} µs: {error}");
            } else {
                assert!((estimate - exact).abs() <= 0.5e-6 + 1e-12, "{micros} µs");
            }
            micros = micros + 1 + micros / 97;
        }
        // Each bucket's edges map back to it.
        for index in 64..LATENCY_BUCKETS {
            let mid = bucket_midpoint(index);
            assert_eq!(latency_bucket(mid), index, "{index}");
        }
    }

    fn record_n(m: &Measurements, side: Side, now: Instant, n: u32, latency: Duration) {
        for _ in 0..n {
            m.record(side, now, latency, false);
        }
    }

    fn close(got: Option<Duration>, want: Duration) -> bool {
        let got = got.expect("a p99").as_secs_f64();
        (got - want.as_secs_f64()).abs() <= want.as_secs_f64() * P99_RELATIVE_ERROR
    }

    #[tokio::test(start_paused = true)]
    async fn the_p99_is_the_nearest_rank_one() {
        let now = Instant::now();
        let m = Measurements::new(Duration::from_secs(60), now);
        // 990 of 1,000 at 10 ms: the 990th is 10 ms.
        record_n(&m, Side::From, now, 990, 10 * MS);
        record_n(&m, Side::From, now, 10, Duration::from_secs(2));
        let from = m.summaries(now).from;
        assert_eq!(from.requests, 1000);
        assert!(close(from.p99, 10 * MS), "{from:?}");
        // One more slow one: the 991st of 1,001 (⌈990.99⌉) is slow.
        record_n(&m, Side::From, now, 1, Duration::from_secs(2));
        assert!(close(m.summaries(now).from.p99, Duration::from_secs(2)));
        // One sample is its own p99; no sample has none.
        record_n(&m, Side::To, now, 1, 250 * MS);
        assert!(close(m.summaries(now).to.p99, 250 * MS));
        let empty = Measurements::new(Duration::from_secs(60), now);
        assert_eq!(empty.summaries(now), Summaries::default());
        assert_eq!(Summary::default().error_ratio(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_counted_per_side() {
        let now = Instant::now();
        let m = Measurements::new(Duration::from_secs(60), now);
        for i in 0..100 {
            m.record(Side::To, now, MS, i % 20 == 0);
            m.record(Side::From, now, MS, false);
        }
        let s = m.summaries(now);
        assert_eq!((s.to.requests, s.to.errors), (100, 5));
        assert_eq!(s.to.error_ratio(), Some(0.05));
        assert_eq!((s.from.requests, s.from.errors), (100, 0));
        assert_eq!(s.from.error_ratio(), Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sliding_window_forgets_old_buckets() {
        let start = Instant::now();
        let m = Measurements::new(Duration::from_secs(100), start);
        m.record(Side::From, Instant::now(), MS, true);
        tokio::time::advance(Duration::from_secs(50)).await;
        m.record(Side::From, Instant::now(), Duration::from_secs(1), false);
        assert_eq!(m.summaries(Instant::now()).from.requests, 2);
        // The first sample's bucket [0, 10 s) leaves the window at 100 s.
        tokio::time::advance(Duration::from_millis(49_999)).await;
        assert_eq!(m.summaries(Instant::now()).from.requests, 2);
        tokio::time::advance(Duration::from_millis(1)).await;
        let from = m.summaries(Instant::now()).from;
        assert_eq!(
            (from.requests, from.errors),
            (1, 0),
            "the error is forgotten"
        );
        assert!(close(from.p99, Duration::from_secs(1)));
        // A bucket reused for a newer slice starts empty.
        m.record(Side::From, Instant::now(), MS, false);
        assert_eq!(m.summaries(Instant::now()).from.requests, 2);
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(m.summaries(Instant::now()).from, Summary::default());
        m.record(Side::From, Instant::now(), MS, false);
        assert_eq!(m.summaries(Instant::now()).from.requests, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sample_older_than_its_bucket_is_dropped() {
        let start = Instant::now();
        let m = Measurements::new(Duration::from_secs(10), start);
        let later = start + Duration::from_secs(10);
        m.record(Side::To, later, MS, false);
        // `start` maps to the same slot, one whole window before.
        m.record(Side::To, start, MS, true);
        let to = m.summaries(later).to;
        assert_eq!((to.requests, to.errors), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn restart_forgets_everything_and_measures_afresh() {
        let now = Instant::now();
        let m = Measurements::new(Duration::from_secs(60), now);
        record_n(&m, Side::From, now, 10, MS);
        record_n(&m, Side::To, now, 10, MS);
        m.restart();
        assert_eq!(m.summaries(now), Summaries::default());
        // The same slice of time, recorded again: only the new sample counts.
        m.record(Side::To, now, MS, false);
        assert_eq!(m.summaries(now).to.requests, 1);
        assert_eq!(m.summaries(now).from.requests, 0);
    }

    #[test]
    fn concurrent_recorders_lose_nothing_within_a_slice() {
        let now = Instant::now();
        let m = Measurements::new(Duration::from_secs(60), now);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let m = &m;
                s.spawn(move || {
                    for i in 0..10_000u32 {
                        let side = if (i + t) % 2 == 0 {
                            Side::From
                        } else {
                            Side::To
                        };
                        m.record(side, now, Duration::from_micros(u64::from(i)), i % 10 == 0);
                    }
                });
            }
        });
        let s = m.summaries(now);
        assert_eq!(s.from.requests + s.to.requests, 40_000);
        assert_eq!(s.from.errors + s.to.errors, 4_000);
    }

    #[test]
    fn measurements_are_shared_by_request_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<Measurements>();
    }

    #[test]
    fn a_summary_serializes_seconds() {
        let s = Summary {
            requests: 3,
            errors: 1,
            p99: Some(Duration::from_millis(1500)),
        };
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!({"requests": 3, "errors": 1, "p99_seconds": 1.5})
        );
    }
}
