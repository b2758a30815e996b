//! Circuit breaker for one upstream target: stop sending requests to a target that is failing,
//! then let a few probes find out whether it has recovered.
//!
//! Plain data in, plain data out: no `Session`, no metrics, no timers. Time is read from
//! [`tokio::time::Instant`], so tests drive it with `#[tokio::test(start_paused = true)]`.
//!
//! ## The state machine
//! ```text
//!                 failures / requests > failure_ratio
//!                 and requests >= min_requests (over `window`)
//!     ┌────────┐ ─────────────────────────────────────────▶ ┌──────┐
//!     │ Closed │                                            │ Open │ ◀──┐
//!     └────────┘ ◀──────────┐                               └──────┘    │ any probe fails
//!                           │ all `half_open_requests`          │       │ (open_for grows)
//!                           │ probes succeed                    │ open period elapsed
//!                           │                                   ▼       │
//!                           └──────────────────────────── ┌──────────┐  │
//!                                                         │ HalfOpen │ ─┘
//!                                                         └──────────┘
//! ```
//!
//! ## The exact rules
//! * **Closed.** Every request is admitted. Each recorded [`Outcome`] goes into a sliding window
//!   of length `window`. After recording a *failure*, the breaker trips to Open when
//!   `requests >= min_requests` **and** `failures / requests > failure_ratio` (strictly greater:
//!   with the default 0.5, 10 failures in 20 requests keep it closed, 11 in 21 trip it).
//! * **Open.** [`Breaker::try_acquire`] answers `Err` at once (no connect attempt), with the
//!   time left until half-open for a `Retry-After`. The open period of the *n*-th consecutive
//!   trip is `open_for × 2^(n-1)`, capped at `max_open_for`: 10 s, 20 s, 40 s, 80 s, 80 s, … with
//!   the defaults. "Consecutive" means without a close in between; closing resets it.
//! * **Open → HalfOpen** happens lazily, on the first call that reads the state after the open
//!   period has elapsed (the breaker owns no timer task).
//! * **HalfOpen.** At most `half_open_requests` probes are admitted *in total* for this half-open
//!   period; the rest are rejected (with no `Retry-After` estimate: the answer depends on the
//!   probes in flight). When **all** `half_open_requests` probes have succeeded the breaker
//!   closes, with an empty window and the trip count reset. The **first** probe failure re-opens
//!   it with the grown open period. (We chose "all probes succeed" over "first success closes":
//!   one lucky request should not put full traffic back on a target that is still flapping.)
//! * **Cancelled requests.** A [`Permit`] dropped without [`Permit::record`] (the client went away,
//!   the request future was dropped) counts as nothing. If it was a half-open probe, its slot is
//!   given back, so a cancelled probe cannot wedge the breaker in HalfOpen with no probe able to
//!   run. A probe that *hangs* keeps its slot until it ends, so requests to a breaker-protected
//!   target must have timeouts (they do: the peer's connect/read timeouts).
//! * **Stale permits.** Every transition starts a new *generation*; a permit only counts in the
//!   generation it was issued in. Requests admitted while closed that finish after the trip do
//!   not count against the probes, and a slow success from before the trip cannot close the
//!   breaker.
//!
//! ## The sliding window
//! The crate-private `Window` keeps 10 buckets of `window / 10` each (O(1) memory, no
//! allocation). An outcome counts from the moment it is recorded until its bucket falls out of
//! the window, i.e. for at least `window × 9/10` and at most `window` (with the default 10 s
//! window: 9–10 s). The window is emptied whenever the breaker opens, and is only used while
//! closed.
//!
//! ## Wiring (per upstream target)
//! `try_acquire` while a target is chosen (`Upstream::pick` in `upstream.rs` walks the targets
//! and asks each healthy one's breaker; pingora's `LoadBalancer` is not used, because the walk
//! needs the permit itself and the soonest `Retry-After` of the targets it skipped), keep the
//! [`Permit`] in the request context, and [`Permit::record`] it once the outcome is
//! known (connect failure, or the response status / error in `logging`). Transitions are
//! returned from `record` and reported to the optional observer given to
//! [`Breaker::with_observer`], which sees every transition including the lazy Open → HalfOpen.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Breaker settings (the runtime model; the YAML mirror lives in `config`).
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Trip when failures / requests over `window` is strictly greater than this. In `[0, 1)`.
    /// Default 0.5.
    pub failure_ratio: f64,
    /// Fewer outcomes than this in the window never trip the breaker. Default 20.
    pub min_requests: u32,
    /// Length of the sliding window of outcomes (granularity `window / 10`). Default 10 s.
    pub window: Duration,
    /// How long the first trip stays open. Default 10 s.
    pub open_for: Duration,
    /// Cap for the open period as it doubles on consecutive trips. Default 80 s (8 × `open_for`).
    pub max_open_for: Duration,
    /// Probes admitted while half-open, all of which must succeed to close. Default 3.
    pub half_open_requests: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(80),
            half_open_requests: 3,
        }
    }
}

impl BreakerConfig {
    /// Checks the settings; the error starts with the field name, for the config layer to prefix
    /// with its path (`upstreams.payments.circuit_breaker.`).
    pub fn validate(&self) -> Result<(), BreakerRule> {
        let r = self.failure_ratio;
        if !(0.0..1.0).contains(&r) {
            return Err(BreakerRule::FailureRatio(r));
        }
        if self.min_requests == 0 {
            return Err(BreakerRule::MinRequests);
        }
        if self.window.is_zero() {
            return Err(BreakerRule::Window);
        }
        if self.open_for.is_zero() {
            return Err(BreakerRule::OpenFor);
        }
        if self.max_open_for < self.open_for {
            return Err(BreakerRule::MaxOpenFor {
                open_for: self.open_for,
                got: self.max_open_for,
            });
        }
        if self.half_open_requests == 0 {
            return Err(BreakerRule::HalfOpenRequests);
        }
        Ok(())
    }
}

/// A rule of [`BreakerConfig`] that a value breaks: [`BreakerRule::field`] names the field,
/// `Display` says what it must be.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum BreakerRule {
    #[error("must be at least 0 and below 1, got {0}")]
    FailureRatio(f64),
    #[error("must be at least 1")]
    MinRequests,
    #[error("must be longer than 0s")]
    Window,
    #[error("must be longer than 0s")]
    OpenFor,
    #[error("must be at least open_for ({open_for:?}), got {got:?}")]
    MaxOpenFor { open_for: Duration, got: Duration },
    #[error("must be at least 1")]
    HalfOpenRequests,
}

impl BreakerRule {
    /// The field of `circuit_breaker` the rule is about.
    pub fn field(&self) -> &'static str {
        match self {
            BreakerRule::FailureRatio(_) => "failure_ratio",
            BreakerRule::MinRequests => "min_requests",
            BreakerRule::Window => "window",
            BreakerRule::OpenFor => "open_for",
            BreakerRule::MaxOpenFor { .. } => "max_open_for",
            BreakerRule::HalfOpenRequests => "half_open_requests",
        }
    }
}

/// What the breaker is doing (as reported; see the module docs for the rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// `closed`, `open`, `half_open`: for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request went, as classified by the caller (connect errors, timeouts and 5xx are
/// failures unless the route says otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// A state change, for the caller to log and count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

/// Why [`Breaker::try_acquire`] said no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// `Open`, or `HalfOpen` when all probe slots are taken.
    pub state: State,
    /// Time until the breaker turns half-open (for `Retry-After`); `None` when half-open.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            State::HalfOpen => f.write_str("circuit breaker half-open: all probes in use"),
            _ => f.write_str("circuit breaker open"),
        }
    }
}

impl std::error::Error for Rejected {}

/// What `/admin/upstreams` shows for one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub state: State,
    /// Outcomes in the window (always 0 unless closed: the window is emptied on opening).
    pub requests: u32,
    /// Failures among them.
    pub failures: u32,
    /// Trips since the last close (sets the open period); 0 when closed.
    pub consecutive_trips: u32,
    /// Time until half-open, when open.
    #[serde(rename = "retry_after_ms", serialize_with = "opt_millis")]
    pub retry_after: Option<Duration>,
    /// Half-open only: probes admitted and not yet reported.
    pub probes_in_flight: u32,
    /// Half-open only: probes that succeeded so far.
    pub probes_succeeded: u32,
}

fn opt_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

type Observer = Box<dyn Fn(Transition) + Send + Sync>;

/// One target's circuit breaker. `Send + Sync`; every call takes one short, uncontended-in-practice
/// lock and allocates nothing.
pub struct Breaker {
    shared: Arc<Shared>,
}

struct Shared {
    cfg: BreakerConfig,
    core: Mutex<Core>,
    observer: Option<Observer>,
}

struct Core {
    phase: Phase,
    /// Bumped on every transition; permits only count in their own generation.
    generation: u64,
    /// Trips since the last close.
    trips: u32,
    /// (requests, failures) while closed.
    window: Window,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    /// `issued` counts probes admitted and not given back (succeeded, or in flight);
    /// `issued - succeeded` are in flight (a failed probe ends the phase).
    HalfOpen {
        issued: u32,
        succeeded: u32,
    },
}

impl Phase {
    fn state(self) -> State {
        match self {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("cfg", &self.shared.cfg)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl Breaker {
    /// A closed breaker. The config should have passed [`BreakerConfig::validate`]; if it has
    /// not, nonsense is clamped rather than panicked on (`half_open_requests: 0` acts as 1,
    /// `max_open_for` below `open_for` acts as `open_for`).
    pub fn new(cfg: BreakerConfig) -> Self {
        Self::build(cfg, None)
    }

    /// Like [`Breaker::new`], and calls `observer` on every transition, including the lazy
    /// Open → HalfOpen one (reported by whichever call first notices it). It runs under the
    /// breaker's lock, so transitions are reported in order: keep it to a log line and a
    /// counter, and never call back into this breaker from it (that would deadlock).
    pub fn with_observer(
        cfg: BreakerConfig,
        observer: impl Fn(Transition) + Send + Sync + 'static,
    ) -> Self {
        Self::build(cfg, Some(Box::new(observer)))
    }

    fn build(mut cfg: BreakerConfig, observer: Option<Observer>) -> Self {
        cfg.half_open_requests = cfg.half_open_requests.max(1);
        cfg.max_open_for = cfg.max_open_for.max(cfg.open_for);
        let core = Core {
            phase: Phase::Closed,
            generation: 0,
            trips: 0,
            window: Window::new(cfg.window, Instant::now()),
        };
        Breaker {
            shared: Arc::new(Shared {
                cfg,
                core: Mutex::new(core),
                observer,
            }),
        }
    }

    /// The settings in effect (after clamping).
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.cfg
    }

    /// May a request go to this target now? Answers at once; on `Ok` the [`Permit`] must travel
    /// with the request and be [`recorded`](Permit::record) (or dropped, if the request is
    /// abandoned).
    pub fn try_acquire(&self) -> Result<Permit, Rejected> {
        let now = Instant::now();
        let mut core = self.shared.lock();
        self.shared.advance(&mut core, now);
        let probe = match &mut core.phase {
            Phase::Closed => false,
            Phase::Open { until } => {
                return Err(Rejected {
                    state: State::Open,
                    retry_after: Some(until.saturating_duration_since(now)),
                });
            }
            Phase::HalfOpen { issued, .. } => {
                if *issued >= self.shared.cfg.half_open_requests {
                    return Err(Rejected {
                        state: State::HalfOpen,
                        retry_after: None,
                    });
                }
                *issued += 1;
                true
            }
        };
        let generation = core.generation;
        drop(core);
        Ok(Permit {
            shared: Arc::clone(&self.shared),
            generation,
            probe,
            settled: false,
        })
    }

    /// The current state (turning Open into HalfOpen if the open period is over).
    pub fn state(&self) -> State {
        let now = Instant::now();
        let mut core = self.shared.lock();
        self.shared.advance(&mut core, now);
        core.phase.state()
    }

    /// Time until half-open while open (for `Retry-After` on a 503); `None` otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        self.snapshot().retry_after
    }

    /// Everything at once, consistently.
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let mut core = self.shared.lock();
        self.shared.advance(&mut core, now);
        let (requests, failures) = core.window.totals(now);
        let (retry_after, probes_in_flight, probes_succeeded) = match core.phase {
            Phase::Closed => (None, 0, 0),
            Phase::Open { until } => (Some(until.saturating_duration_since(now)), 0, 0),
            Phase::HalfOpen { issued, succeeded } => {
                (None, issued.saturating_sub(succeeded), succeeded)
            }
        };
        Snapshot {
            state: core.phase.state(),
            requests,
            failures,
            consecutive_trips: core.trips,
            retry_after,
            probes_in_flight,
            probes_succeeded,
        }
    }
}

/// Leave to send one request to the target. Record how it went with [`Permit::record`]; dropping
/// it instead means "no outcome" (and gives a half-open probe slot back).
#[must_use = "a permit must be recorded, or it counts as a cancelled request"]
pub struct Permit {
    shared: Arc<Shared>,
    generation: u64,
    probe: bool,
    settled: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("generation", &self.generation)
            .field("probe", &self.probe)
            .finish()
    }
}

impl Permit {
    /// Whether this request is a half-open probe (worth a log line).
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the outcome; returns the transition it caused, if any. Outcomes of permits issued
    /// before the breaker's last transition are ignored (see "stale permits" in the module docs).
    pub fn record(mut self, outcome: Outcome) -> Option<Transition> {
        self.settled = true;
        self.shared.settle(self.generation, Some(outcome))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.settle(self.generation, None);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // Nothing panics while the lock is held except, possibly, the observer, and it runs
        // after the state is consistent: a poisoned lock is safe to keep using.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn transition(&self, core: &mut Core, to: Phase) -> Transition {
        let t = Transition {
            from: core.phase.state(),
            to: to.state(),
        };
        core.phase = to;
        core.generation = core.generation.wrapping_add(1);
        if let Some(observer) = &self.observer {
            observer(t);
        }
        t
    }

    /// Open → HalfOpen once the open period is over.
    fn advance(&self, core: &mut Core, now: Instant) {
        if let Phase::Open { until } = core.phase
            && now >= until
        {
            self.transition(
                core,
                Phase::HalfOpen {
                    issued: 0,
                    succeeded: 0,
                },
            );
        }
    }

    fn trip(&self, core: &mut Core, now: Instant) -> Transition {
        core.trips = core.trips.saturating_add(1);
        let open_for = self.open_period(core.trips);
        // Absurd durations must not panic on overflow: fall back to a year, then to "now".
        let until = now
            .checked_add(open_for)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(now);
        core.window.clear();
        self.transition(core, Phase::Open { until })
    }

    /// `open_for × 2^(trips-1)`, capped at `max_open_for`.
    fn open_period(&self, trips: u32) -> Duration {
        let doublings = trips.saturating_sub(1).min(31);
        self.cfg
            .open_for
            .saturating_mul(1 << doublings)
            .min(self.cfg.max_open_for)
    }

    /// A permit comes back: with an outcome (`record`) or without (`Drop`).
    fn settle(&self, generation: u64, outcome: Option<Outcome>) -> Option<Transition> {
        let now = Instant::now();
        let mut core = self.lock();
        self.advance(&mut core, now);
        if core.generation != generation {
            return None;
        }
        match (core.phase, outcome) {
            (Phase::Closed, None) => None,
            (Phase::Closed, Some(outcome)) => {
                let failed = outcome == Outcome::Failure;
                core.window.add(now, 1, u32::from(failed));
                let (requests, failures) = core.window.totals(now);
                let trips = failed
                    && requests >= self.cfg.min_requests
                    && f64::from(failures) > self.cfg.failure_ratio * f64::from(requests);
                trips.then(|| self.trip(&mut core, now))
            }
            (Phase::HalfOpen { issued, succeeded }, None) => {
                core.phase = Phase::HalfOpen {
                    issued: issued.saturating_sub(1),
                    succeeded,
                };
                None
            }
            (Phase::HalfOpen { issued, succeeded }, Some(Outcome::Success)) => {
                let succeeded = succeeded + 1;
                if succeeded >= self.cfg.half_open_requests {
                    core.trips = 0;
                    core.window.clear();
                    Some(self.transition(&mut core, Phase::Closed))
                } else {
                    core.phase = Phase::HalfOpen { issued, succeeded };
                    None
                }
            }
            (Phase::HalfOpen { .. }, Some(Outcome::Failure)) => Some(self.trip(&mut core, now)),
            // No permit is issued while open, so its generation never matches.
            (Phase::Open { .. }, _) => None,
        }
    }
}

const BUCKETS: usize = 10;

/// A sliding window of two counters in [`BUCKETS`] buckets of `window / BUCKETS` each: O(1)
/// memory, no allocation. A count is visible from when it is added until its bucket leaves the
/// window: for at least `window × (BUCKETS-1)/BUCKETS` and at most `window`. Also used by
/// [`crate::retry_budget`].
#[derive(Clone, Debug)]
pub(crate) struct Window {
    origin: Instant,
    bucket_nanos: u128,
    buckets: [Bucket; BUCKETS],
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket-width slice of time since `origin` this slot holds.
    index: u64,
    a: u32,
    b: u32,
}

impl Window {
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        Window {
            origin: now,
            bucket_nanos: (window.as_nanos() / BUCKETS as u128).max(1),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn index(&self, now: Instant) -> u64 {
        let i = now.saturating_duration_since(self.origin).as_nanos() / self.bucket_nanos;
        u64::try_from(i).unwrap_or(u64::MAX)
    }

    /// Adds `a` and `b` to the current bucket.
    pub(crate) fn add(&mut self, now: Instant, a: u32, b: u32) {
        let index = self.index(now);
        let bucket = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if bucket.index != index {
            *bucket = Bucket {
                index,
                ..Bucket::default()
            };
        }
        bucket.a = bucket.a.saturating_add(a);
        bucket.b = bucket.b.saturating_add(b);
    }

    /// The sums of `a` and `b` over the window ending now.
    pub(crate) fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.index(now);
        self.buckets
            .iter()
            .filter(|b| b.index <= current && current - b.index < BUCKETS as u64)
            .fold((0u32, 0u32), |(a, b), bucket| {
                (a.saturating_add(bucket.a), b.saturating_add(bucket.b))
            })
    }

    pub(crate) fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const SEC: Duration = Duration::from_secs(1);

    /// The spec's defaults, with a smaller `min_requests` where a test is about something else.
    fn small() -> BreakerConfig {
        BreakerConfig {
            min_requests: 4,
            ..BreakerConfig::default()
        }
    }

    fn record(b: &Breaker, outcome: Outcome) -> Option<Transition> {
        b.try_acquire().expect("admitted").record(outcome)
    }

    fn t(from: State, to: State) -> Option<Transition> {
        Some(Transition { from, to })
    }

    /// Trips a `small()` breaker: four failures.
    fn trip(b: &Breaker) {
        for _ in 0..3 {
            assert_eq!(record(b, Outcome::Failure), None);
        }
        assert_eq!(
            record(b, Outcome::Failure),
            t(State::Closed, State::Open),
            "4 failures in 4 requests trip"
        );
    }

    /// From half-open: all probes succeed.
    fn close(b: &Breaker) {
        let probes: Vec<Permit> = (0..b.config().half_open_requests)
            .map(|_| b.try_acquire().expect("probe"))
            .collect();
        let mut last = None;
        for p in probes {
            last = p.record(Outcome::Success);
        }
        assert_eq!(last, t(State::HalfOpen, State::Closed));
    }

    fn rejected_open(b: &Breaker) -> Duration {
        let r = b.try_acquire().expect_err("open rejects");
        assert_eq!(r.state, State::Open);
        r.retry_after.expect("open has a retry_after")
    }

    #[test]
    fn default_config_is_the_spec_and_valid() {
        let c = BreakerConfig::default();
        assert_eq!(c.failure_ratio, 0.5);
        assert_eq!(c.min_requests, 20);
        assert_eq!(c.window, 10 * SEC);
        assert_eq!(c.open_for, 10 * SEC);
        assert_eq!(c.max_open_for, 80 * SEC);
        assert_eq!(c.half_open_requests, 3);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |f: fn(&mut BreakerConfig)| {
            let mut c = BreakerConfig::default();
            f(&mut c);
            let rule = c.validate().expect_err("invalid");
            format!("{}: {rule}", rule.field())
        };
        assert_eq!(
            bad(|c| c.failure_ratio = 1.0),
            "failure_ratio: must be at least 0 and below 1, got 1"
        );
        assert!(bad(|c| c.failure_ratio = -0.1).starts_with("failure_ratio:"));
        assert!(bad(|c| c.failure_ratio = f64::NAN).starts_with("failure_ratio:"));
        assert_eq!(
            bad(|c| c.min_requests = 0),
            "min_requests: must be at least 1"
        );
        assert!(bad(|c| c.window = Duration::ZERO).starts_with("window:"));
        assert!(bad(|c| c.open_for = Duration::ZERO).starts_with("open_for:"));
        assert_eq!(
            bad(|c| c.max_open_for = 5 * SEC),
            "max_open_for: must be at least open_for (10s), got 5s"
        );
        assert!(bad(|c| c.half_open_requests = 0).starts_with("half_open_requests:"));
    }

    #[tokio::test(start_paused = true)]
    async fn trips_only_once_min_requests_is_reached() {
        let b = Breaker::new(BreakerConfig::default());
        for _ in 0..19 {
            assert_eq!(record(&b, Outcome::Failure), None);
        }
        assert_eq!(b.state(), State::Closed, "19 failures < min_requests 20");
        assert_eq!(b.snapshot().failures, 19);
        assert_eq!(record(&b, Outcome::Failure), t(State::Closed, State::Open));
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn trips_only_when_the_ratio_is_exceeded() {
        let b = Breaker::new(BreakerConfig::default());
        for _ in 0..10 {
            assert_eq!(record(&b, Outcome::Success), None);
        }
        for _ in 0..10 {
            assert_eq!(record(&b, Outcome::Failure), None);
        }
        let s = b.snapshot();
        assert_eq!((s.state, s.requests, s.failures), (State::Closed, 20, 10));
        // More successes keep the ratio below: still closed.
        assert_eq!(record(&b, Outcome::Success), None);
        assert_eq!(record(&b, Outcome::Failure), None, "11/22 is not above 0.5");
        assert_eq!(
            record(&b, Outcome::Failure),
            t(State::Closed, State::Open),
            "12/23 is"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn successes_never_trip() {
        let b = Breaker::new(BreakerConfig {
            failure_ratio: 0.0,
            ..small()
        });
        for _ in 0..100 {
            assert_eq!(record(&b, Outcome::Success), None);
        }
        assert_eq!(record(&b, Outcome::Failure), t(State::Closed, State::Open));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_outside_the_window_do_not_count() {
        let b = Breaker::new(BreakerConfig::default());
        for _ in 0..19 {
            record(&b, Outcome::Failure);
        }
        advance(10 * SEC).await;
        assert_eq!(b.snapshot().requests, 0, "all aged out");
        assert_eq!(record(&b, Outcome::Failure), None);
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_inside_the_window_do_count() {
        // Recorded at t=0, still counted at t=9.999s (the bucket [0s, 1s) leaves at 10s).
        let b = Breaker::new(BreakerConfig::default());
        for _ in 0..19 {
            record(&b, Outcome::Failure);
        }
        advance(10 * SEC - Duration::from_millis(1)).await;
        assert_eq!(b.snapshot().failures, 19);
        assert_eq!(record(&b, Outcome::Failure), t(State::Closed, State::Open));
    }

    #[tokio::test(start_paused = true)]
    async fn open_rejects_at_once_and_counts_down_retry_after() {
        let b = Breaker::new(small());
        assert_eq!(b.retry_after(), None, "closed");
        trip(&b);
        assert_eq!(rejected_open(&b), 10 * SEC);
        assert_eq!(b.retry_after(), Some(10 * SEC));
        advance(4 * SEC).await;
        assert_eq!(rejected_open(&b), 6 * SEC);
        assert_eq!(b.retry_after(), Some(6 * SEC));
        advance(6 * SEC - Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.retry_after(), Some(Duration::from_millis(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn open_turns_half_open_after_open_for() {
        let b = Breaker::new(small());
        trip(&b);
        advance(10 * SEC).await;
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.retry_after(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_exactly_half_open_requests_probes() {
        let b = Breaker::new(small());
        trip(&b);
        advance(10 * SEC).await;
        let probes: Vec<Permit> = (0..3).map(|_| b.try_acquire().expect("probe")).collect();
        assert!(probes.iter().all(Permit::is_probe));
        for _ in 0..5 {
            assert_eq!(
                b.try_acquire().expect_err("probes exhausted"),
                Rejected {
                    state: State::HalfOpen,
                    retry_after: None
                }
            );
        }
        assert_eq!(b.snapshot().probes_in_flight, 3);
        // A success does not free a slot: the limit is per half-open period, not concurrent.
        let mut probes = probes.into_iter();
        assert_eq!(
            probes.next().map(|p| p.record(Outcome::Success)),
            Some(None)
        );
        assert!(b.try_acquire().is_err());
        let s = b.snapshot();
        assert_eq!((s.probes_in_flight, s.probes_succeeded), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn all_probes_succeeding_closes_and_resets() {
        let b = Breaker::new(small());
        trip(&b);
        advance(10 * SEC).await;
        let p: Vec<Permit> = (0..3).map(|_| b.try_acquire().expect("probe")).collect();
        let mut p = p.into_iter();
        assert_eq!(p.next().map(|p| p.record(Outcome::Success)), Some(None));
        assert_eq!(p.next().map(|p| p.record(Outcome::Success)), Some(None));
        assert_eq!(b.state(), State::HalfOpen, "2 of 3 is not enough");
        assert_eq!(
            p.next().map(|p| p.record(Outcome::Success)),
            Some(t(State::HalfOpen, State::Closed))
        );
        let s = b.snapshot();
        assert_eq!(
            s,
            Snapshot {
                state: State::Closed,
                requests: 0,
                failures: 0,
                consecutive_trips: 0,
                retry_after: None,
                probes_in_flight: 0,
                probes_succeeded: 0,
            }
        );
        let normal = b.try_acquire().expect("closed admits");
        assert!(!normal.is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn probe_failure_reopens_with_doubled_open_for() {
        let b = Breaker::new(small());
        trip(&b);
        advance(10 * SEC).await;
        let ok = b.try_acquire().expect("probe");
        let bad = b.try_acquire().expect("probe");
        assert_eq!(ok.record(Outcome::Success), None);
        assert_eq!(
            bad.record(Outcome::Failure),
            t(State::HalfOpen, State::Open),
            "one failure re-opens, whatever succeeded before"
        );
        assert_eq!(rejected_open(&b), 20 * SEC);
        assert_eq!(b.snapshot().consecutive_trips, 2);
        advance(20 * SEC - Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::Open);
        advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn open_for_doubles_up_to_max_open_for() {
        let b = Breaker::new(small());
        trip(&b);
        let mut periods = vec![rejected_open(&b).as_secs()];
        for _ in 0..5 {
            advance(b.retry_after().expect("open")).await;
            let probe = b.try_acquire().expect("probe");
            assert_eq!(
                probe.record(Outcome::Failure),
                t(State::HalfOpen, State::Open)
            );
            periods.push(rejected_open(&b).as_secs());
        }
        assert_eq!(periods, [10, 20, 40, 80, 80, 80]);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_resets_the_growth() {
        let b = Breaker::new(small());
        trip(&b);
        advance(10 * SEC).await;
        let probe = b.try_acquire().expect("probe");
        assert_eq!(
            probe.record(Outcome::Failure),
            t(State::HalfOpen, State::Open)
        );
        assert_eq!(rejected_open(&b), 20 * SEC);
        advance(20 * SEC).await;
        close(&b);
        trip(&b);
        assert_eq!(rejected_open(&b), 10 * SEC, "back to open_for");
        assert_eq!(b.snapshot().consecutive_trips, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_frees_its_slot() {
        let b = Breaker::new(small());
        trip(&b);
        advance(10 * SEC).await;
        let first = b.try_acquire().expect("probe");
        let second = b.try_acquire().expect("probe");
        let third = b.try_acquire().expect("probe");
        assert!(b.try_acquire().is_err());
        drop(second); // the client went away mid-request
        assert_eq!(b.snapshot().probes_in_flight, 2);
        let replacement = b.try_acquire().expect("the slot is free again");
        assert!(replacement.is_probe());
        assert!(b.try_acquire().is_err(), "but only that one");
        // The dropped probe counted as nothing: three *recorded* successes are needed.
        assert_eq!(first.record(Outcome::Success), None);
        assert_eq!(third.record(Outcome::Success), None);
        assert_eq!(
            replacement.record(Outcome::Success),
            t(State::HalfOpen, State::Closed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_every_probe_leaves_half_open_usable() {
        let b = Breaker::new(small());
        trip(&b);
        advance(10 * SEC).await;
        for _ in 0..10 {
            let probes: Vec<Permit> = (0..3).map(|_| b.try_acquire().expect("probe")).collect();
            drop(probes);
        }
        assert_eq!(b.snapshot().probes_in_flight, 0);
        close(&b);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_permit_while_closed_counts_nothing() {
        let b = Breaker::new(small());
        for _ in 0..10 {
            drop(b.try_acquire().expect("closed"));
        }
        assert_eq!(b.snapshot().requests, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_permits_do_not_count() {
        let b = Breaker::new(small());
        // In flight when the breaker trips.
        let slow_ok = b.try_acquire().expect("closed");
        let slow_bad = b.try_acquire().expect("closed");
        let slow_dropped = b.try_acquire().expect("closed");
        trip(&b);
        advance(10 * SEC).await;
        let probe = b.try_acquire().expect("probe");
        assert_eq!(
            slow_bad.record(Outcome::Failure),
            None,
            "not a probe failure"
        );
        assert_eq!(
            slow_ok.record(Outcome::Success),
            None,
            "not a probe success"
        );
        drop(slow_dropped);
        let s = b.snapshot();
        assert_eq!(
            (s.state, s.probes_in_flight, s.probes_succeeded),
            (State::HalfOpen, 1, 0)
        );
        assert_eq!(probe.record(Outcome::Success), None);
        // A probe that outlives its half-open period does not count in the next one either.
        let late_probe = b.try_acquire().expect("probe");
        let failing = b.try_acquire().expect("probe");
        assert_eq!(
            failing.record(Outcome::Failure),
            t(State::HalfOpen, State::Open)
        );
        advance(20 * SEC).await;
        assert_eq!(late_probe.record(Outcome::Success), None);
        let s = b.snapshot();
        assert_eq!((s.state, s.probes_succeeded), (State::HalfOpen, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_observer_sees_every_transition_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let b = Breaker::with_observer(small(), move |t| {
            log.lock().unwrap().push((t.from.as_str(), t.to.as_str()));
        });
        trip(&b);
        advance(10 * SEC).await;
        let probe = b.try_acquire().expect("probe"); // notices Open → HalfOpen
        assert_eq!(
            probe.record(Outcome::Failure),
            t(State::HalfOpen, State::Open)
        );
        advance(20 * SEC).await;
        assert_eq!(b.state(), State::HalfOpen);
        close(&b);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("closed", "open"),
                ("open", "half_open"),
                ("half_open", "open"),
                ("open", "half_open"),
                ("half_open", "closed"),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn snapshot_serializes_for_the_admin_api() {
        let b = Breaker::new(small());
        trip(&b);
        advance(SEC).await;
        assert_eq!(
            serde_json::to_value(b.snapshot()).unwrap(),
            serde_json::json!({
                "state": "open",
                "requests": 0,
                "failures": 0,
                "consecutive_trips": 1,
                "retry_after_ms": 9000,
                "probes_in_flight": 0,
                "probes_succeeded": 0,
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nonsense_config_is_clamped_not_panicked_on() {
        let b = Breaker::new(BreakerConfig {
            half_open_requests: 0,
            max_open_for: Duration::ZERO,
            open_for: Duration::MAX,
            window: Duration::ZERO,
            ..small()
        });
        trip(&b);
        assert!(rejected_open(&b) > 300 * 24 * 3600 * SEC);
        assert_eq!(b.config().half_open_requests, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn window_counts_expire_bucket_by_bucket() {
        let mut w = Window::new(10 * SEC, Instant::now());
        w.add(Instant::now(), 1, 0); // bucket [0s, 1s)
        advance(Duration::from_millis(500)).await;
        w.add(Instant::now(), 1, 1); // same bucket
        advance(SEC).await; // t = 1.5s
        w.add(Instant::now(), 5, 2); // bucket [1s, 2s)
        assert_eq!(w.totals(Instant::now()), (7, 3));
        advance(Duration::from_millis(8_499)).await; // t = 9.999s
        assert_eq!(w.totals(Instant::now()), (7, 3));
        advance(Duration::from_millis(1)).await; // t = 10s: [0s, 1s) leaves
        assert_eq!(w.totals(Instant::now()), (5, 2));
        advance(SEC).await; // t = 11s
        assert_eq!(w.totals(Instant::now()), (0, 0));
        // A slot is reused for a later bucket, not added to.
        w.add(Instant::now(), 3, 0);
        assert_eq!(w.totals(Instant::now()), (3, 0));
        w.clear();
        assert_eq!(w.totals(Instant::now()), (0, 0));
    }

    #[test]
    fn breaker_and_permit_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Breaker>();
        send_sync::<Permit>();
    }

    #[test]
    fn concurrent_callers_get_exactly_half_open_requests_probes() {
        // Real threads and the real clock: open_for is tiny so the breaker is half-open at once.
        let b = Breaker::new(BreakerConfig {
            min_requests: 1,
            failure_ratio: 0.0,
            open_for: Duration::from_nanos(1),
            half_open_requests: 3,
            ..BreakerConfig::default()
        });
        assert_eq!(record(&b, Outcome::Failure), t(State::Closed, State::Open));
        while b.state() != State::HalfOpen {
            std::hint::spin_loop();
        }
        let admitted = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..100)
                            .filter_map(|_| b.try_acquire().ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(admitted.len(), 3);
        for p in admitted {
            p.record(Outcome::Success);
        }
        assert_eq!(b.state(), State::Closed);
    }
}
