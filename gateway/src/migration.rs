//! A route's migration plan, run by the gateway itself: stages from a shadow through canaries
//! to `extracted`, promoted when their gates clear and rolled back when the new service does
//! worse than the monolith *in the same window* (a paired baseline). This module is the plain
//! data and the decisions: the [`Plan`] (checked by [`Plan::new`]), both sides' [`Measurements`]
//! over the guard's window, the [`decide()`] function and every [`Transition`], what the proxy
//! asks ([`Plan::percent_on_to`], [`Plan::shadow_on`]) and the admin [`Snapshot`]. Nothing here
//! touches a pingora `Session`, reads the config, or does I/O; time is read from
//! [`tokio::time`] (paused-time tested).
//!
//! | module | owns |
//! |---|---|
//! | [`plan`] | stages, the guard, `auto_promote`; the rules of a plan, with field paths |
//! | [`window`] | both sides over the sliding window: requests, 5xx, the p99 (fixed log-linear buckets, 1.6%) |
//! | [`decide`](mod@decide) | the state, the decision, transitions on a decision, an operator's action or a reload |
//! | this file | [`Migration`]: a plan, its state and last transition, driven by a ticker; the [`Snapshot`] |
//!
//! ## The plan (the `migration:` block the config layer will read)
//! ```yaml
//! migration:
//!   from: monolith                     # these three are the config layer's and the proxy's:
//!   to: payments                       # the plan below never names an upstream or a cohort
//!   cohort: early
//!   plan:
//!     - shadow:    { until: { parity: 0.999, min_compared: 5000 } }   # Stage::Shadow
//!     - canary:    { percent: 1,  hold: 10m }                         # Stage::Canary, 100 basis points
//!     - canary:    { percent: 10, hold: 30m }
//!     - extracted: {}                                                 # Stage::Extracted
//!   guard: { window: 5m, min_requests: 200, max_error_ratio_delta: 0.01, max_p99_ratio: 1.5, on_breach: rollback }
//!   auto_promote: true
//! ```
//! The rules a plan must keep (a shadow stage only first, `extracted` only last, canary
//! percents increasing within 0–100 exclusive…) are in [`plan`].
//!
//! ## The decision rules
//! [`decide()`] reads the state, the plan, `now`, both sides over the window and the shadow's
//! parity since the stage began, top to bottom:
//!
//! ```text
//!  rolled back ────────────────────────────────────────────────────▶ stay: an operator's promote
//!  a canary stage, at least min_requests on each side, and
//!     to's 5xx ratio > from's 5xx ratio + max_error_ratio_delta ───▶ breach (error_ratio): on_breach, at once
//!     to's p99       > max_p99_ratio × from's p99 ─────────────────▶ breach (p99): on_breach, at once
//!  every gate below open ──────────────────────────────────────────▶ promote
//!  otherwise ──────────────────────────────────────────────────────▶ stay, naming the gates still closed
//! ```
//!
//! | gate ([`Gate`]) | closed while |
//! |---|---|
//! | `hold_left` | a canary stage began less than its `hold` ago |
//! | `requests` | a canary stage has fewer than `min_requests` on either side in the window: no decision at all, neither promotion nor breach (the hold extends) |
//! | `parity` | a shadow stage's compared answers are below `min_compared`, or parity's Wilson lower bound below `parity` |
//! | `operator` | paused; or `auto_promote: false` (a promotion is then an operator's) |
//! | `last_stage` | the plan's last stage: nothing to promote to |
//!
//! Both comparisons are strict: `to` exactly at its limit passes. The guard is relative, so a
//! slow monolith does not trip it: `from` at 2 s and `to` at 2.5 s pass a `max_p99_ratio` of
//! 1.5. The guard is checked on canary stages only: on a shadow stage `to` answers no client,
//! and on `extracted` `from` gets only fallbacks, so there is no baseline to pair with (an
//! operator rolls an extracted route back by hand). A breach acts even when the stage is
//! paused or `auto_promote` is off: those hold promotions back, never a rollback.
//!
//! What a breach does ([`on_decision`]):
//!
//! | `on_breach` | on stage *i* | becomes |
//! |---|---|---|
//! | `rollback` | any | rolled back: 0% on `to`, the shadow off |
//! | `step_back` | *i* > 0 | stage *i* − 1, **paused** (else it would promote again after the hold and flap) |
//! | `step_back` | the first | rolled back |
//! | `pause` | any | stage *i*, paused (its `since` kept); already paused: nothing |
//!
//! An operator's [`Action`] ([`operate`]; [`Refused`] when it changes nothing):
//!
//! | action | on a running stage *i* | paused on stage *i* | rolled back |
//! |---|---|---|---|
//! | `promote` | stage *i* + 1 now, whatever its gates (refused on the last stage) | the same, still paused | the first stage, running |
//! | `rollback` | rolled back | rolled back | refused |
//! | `pause` | paused | refused | refused |
//! | `resume` | refused | running (its `since` kept: an elapsed hold promotes at the next tick) | refused: `promote` starts again |
//!
//! A reload ([`replan`]): a plan whose *stages* changed starts again at its first stage,
//! running (`plan_changed`); a change of the guard or of `auto_promote` alone keeps the stage
//! and applies from the next decision.
//!
//! Every stage entered (a promotion, a step back, a rollback, a manual promote, a changed plan)
//! starts its measurements afresh ([`Measurements::restart`]), so a stage is judged on its own
//! traffic only: a step back is not breached again by the data that breached the stage above,
//! and a promotion is not carried by the stage below's. A pause or a resume keeps them.
//!
//! ## Labels
//! `gateway_migration_transitions_total{route,from,to,reason}`: `from` and `to` are stage labels,
//! `shadow`, `canary_` and the percent with `_` for its point (`canary_1`, `canary_12_5`,
//! `canary_0_05`: Prometheus-friendly, unique in a valid plan), `extracted`, and `rolled_back`;
//! `reason` is one of [`Reason::ALL`]: `promoted`, `guard_breach`, `manual_promote`,
//! `manual_rollback`, `paused`, `resumed`, `plan_changed` (a pause or a resume has `from` =
//! `to`). `gateway_migration_stage{route}` is the stage's index, −1 when rolled back
//! ([`At::gauge_value`]). `gateway_migration_guard_value{route,signal}` takes the six values of
//! [`GuardView::values`]: `error_ratio_from`, `error_ratio_to`, `error_ratio_limit`, `p99_from`,
//! `p99_to`, `p99_limit` (p99s in seconds), so a dashboard plots `to` against its limit.
//!
//! ## The window and the p99
//! Each side is measured in a ring of 10 buckets of `window / 10` ([`window`]): a sample counts
//! for between 9/10 of the window and the whole of it. Recording takes no lock on its usual
//! path and allocates nothing; memory is fixed (about 58 KiB a migrating route). The p99 is
//! the nearest-rank one over a fixed log-linear histogram, within 1/64 (1.6%) of the exact one
//! from 32 µs to 134 s; no sketch crate is in `Cargo.lock`, and fixed buckets merge across the
//! ring by addition and count with one atomic increment (the reasons in [`window`]).
//!
//! ## What the proxy will ask
//! [`Plan::percent_on_to`]: the basis points of the route's cohort split on `to` (0 on a shadow
//! stage and rolled back, the canary's, 10,000 on `extracted`; a pause changes nothing), and
//! [`Plan::shadow_on`]: whether to copy requests to `to` (a shadow stage only).
//!
//! ## Left for later (in this order, each its own change)
//! 1. **Config**: a route's `migration:` block (`from`, `to`, `cohort`, `plan`, `guard`,
//!    `auto_promote`) in `config/file.rs` with `deny_unknown_fields` and documented defaults
//!    ([`Guard::default`] holds the issue's values), converted to [`Plan::new`] with `percent`
//!    to basis points as `split:` does, each [`PlanError::path`] prefixed with the route's
//!    (`routes[3].migration.plan[2].canary.percent`), asserted to the line in the CLI tests;
//!    `from`/`to` known upstreams, `cohort` a known cohort, a shadow stage only on a route
//!    that can shadow. A changed `from`, `to` or `cohort` counts as a changed plan.
//! 2. **State persistence**: `migration_state: memory | file:PATH | redis`. What is stored is a
//!    [`State`] (with `since` as wall-clock time: an `Instant` does not survive a restart), the
//!    last transition, and a digest of the plan's stages to tell a changed plan ([`replan`]).
//!    With Redis: one replica decides at a time under a lease (the ticker runs only while it
//!    holds it), every replica reads the same state, each transition is written once (a
//!    compare-and-set on the state it was decided from). Each replica keeps its own
//!    [`Measurements`] and restarts them when it sees the stage change; the deciding replica's
//!    are the ones judged (to be revisited if replicas' traffic differs much). The shadow's
//!    parity is counted from the first tick after a stage is entered or the gateway starts
//!    (see [`Migration::tick`]).
//! 3. **The ticker**: a background service that calls [`Migration::tick`] every second (or
//!    `window / 10`), logs and counts each transition.
//! 4. **Proxy wiring**: the route's cohort split at [`Plan::percent_on_to`] (the percent form,
//!    `to` first, so a promotion only moves users onto `to`: [`crate::split`]); the shadow on
//!    when [`Plan::shadow_on`]; each answer recorded with [`Measurements::record`] on its side
//!    (an error: a 5xx or no answer; a request that fell back from `to` to `from` counts as a
//!    `to` error, its fallback not on `from`); the stage and side in the access log, the spans
//!    and `gateway explain`.
//! 5. **Admin and CLI**: `GET /admin/migrations` ([`Snapshot`] per route, by name);
//!    `POST /admin/migrations/ROUTE/{promote|rollback|pause|resume}` ([`Action::parse`],
//!    [`Refused`] as 409) behind a bearer token from `admin.token_file` (none configured: writes
//!    refused; missing or wrong: 401, compared in constant time, never logged); `gateway
//!    migrate status|promote|rollback|pause|resume ROUTE --admin ADDR`.
//! 6. **Metrics, dashboard, alerts**: the three metrics above registered in `metrics`, their
//!    series set up with [`Reason::ALL`]; a dashboard row per route (stage timeline, guard
//!    values against their limits) checked by the dashboard test; an alert on a rollback
//!    (`reason="guard_breach"`, `to="rolled_back"`) with a runbook entry.
//! 7. **The stack**: the payments route with a plan (short holds), the README walkthrough of a
//!    promotion and a rollback, and integration tests with real processes and short windows.

pub mod decide;
pub mod plan;
pub mod window;

use std::borrow::Cow;

use serde::Serialize;
use tokio::time::Instant;

pub use decide::{
    Action, At, Breach, Decision, Gate, OperatorGate, ParityWait, Reason, Refused, RequestsGate,
    Signal, State, Transition, decide, on_decision, operate, parity_since, replan,
};
pub use plan::{Guard, OnBreach, ParityGate, Plan, PlanError, Stage};
pub use window::{Measurements, Side, Summaries, Summary};

use crate::seconds;
use crate::shadow::verdicts::Parity;

/// One route's migration: its plan, where it stands, and its last transition. A ticker calls
/// [`Migration::tick`]; operators call [`Migration::operate`]; a reload calls
/// [`Migration::replan`]. Each returns the transition made, for the caller to log and count.
/// The [`Measurements`] passed in are the route's, made for the plan's `guard.window`.
#[derive(Debug, Clone)]
pub struct Migration {
    plan: Plan,
    state: State,
    /// The shadow's running parity when the stage's parity started counting (the first tick
    /// on the stage); `None` until then.
    parity_base: Option<Parity>,
    last: Option<Transition>,
}

impl Migration {
    /// A plan at its first stage, from `now`.
    pub fn new(plan: Plan, now: Instant) -> Migration {
        Migration::restore(plan, State::start(now), None)
    }

    /// A plan at a stored state (a stage index past the plan's end counts as its last stage).
    pub fn restore(plan: Plan, state: State, last: Option<Transition>) -> Migration {
        Migration {
            plan,
            state,
            parity_base: None,
            last,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn last_transition(&self) -> Option<&Transition> {
        self.last.as_ref()
    }

    /// The cohort's share on `to` now, in basis points ([`Plan::percent_on_to`]).
    pub fn percent_on_to(&self) -> u32 {
        self.plan.percent_on_to(self.state.at)
    }

    /// Whether the migration asks for the shadow now ([`Plan::shadow_on`]).
    pub fn shadow_on(&self) -> bool {
        self.plan.shadow_on(self.state.at)
    }

    /// The parity since the stage's parity started counting.
    fn parity(&self, running: &Parity) -> Parity {
        match &self.parity_base {
            Some(base) => parity_since(running, base),
            None => Parity::new(0, 0),
        }
    }

    /// The decision now, without acting on it. `parity`: the route's running shadow parity.
    pub fn decision(&self, now: Instant, sides: &Summaries, parity: &Parity) -> Decision {
        decide(&self.plan, &self.state, now, sides, &self.parity(parity))
    }

    /// Decides at `now` and acts on it. `parity` is the route's running shadow parity
    /// (`RouteStats::parity`); the stage counts it from its first tick.
    pub fn tick(
        &mut self,
        now: Instant,
        measurements: &Measurements,
        parity: &Parity,
    ) -> Option<Transition> {
        if self.parity_base.is_none() {
            self.parity_base = Some(*parity);
        }
        let decision = self.decision(now, &measurements.summaries(now), parity);
        let transition = on_decision(&self.plan, &self.state, &decision, now)?;
        Some(self.apply(transition, measurements))
    }

    /// An operator's action ([`operate`]).
    pub fn operate(
        &mut self,
        action: Action,
        now: Instant,
        measurements: &Measurements,
    ) -> Result<Transition, Refused> {
        let transition = operate(&self.plan, &self.state, action, now)?;
        Ok(self.apply(transition, measurements))
    }

    /// A reload's plan ([`replan`]): the new plan is kept either way; the first stage again if
    /// its stages changed. A changed `guard.window` needs new [`Measurements`] (the caller's).
    pub fn replan(
        &mut self,
        plan: Plan,
        now: Instant,
        measurements: &Measurements,
    ) -> Option<Transition> {
        let transition = replan(&self.plan, &plan, &self.state, now);
        self.plan = plan;
        Some(self.apply(transition?, measurements))
    }

    fn apply(&mut self, transition: Transition, measurements: &Measurements) -> Transition {
        if transition.enters() {
            measurements.restart();
            self.parity_base = None;
        }
        self.state = transition.to;
        self.last = Some(transition.clone());
        transition
    }

    /// `GET /admin/migrations`, for one route.
    pub fn snapshot(
        &self,
        route: &str,
        now: Instant,
        measurements: &Measurements,
        parity: &Parity,
    ) -> Snapshot {
        let sides = measurements.summaries(now);
        let guard = self.plan.guard();
        let at = self.state.at;
        let checked =
            matches!(at, At::Stage(i) if matches!(self.plan.stage(i), Stage::Canary { .. }));
        Snapshot {
            route: route.to_string(),
            stage: self.plan.label(at),
            stage_index: at.gauge_value(),
            plan: self.plan.labels(),
            paused: self.state.paused,
            since_seconds: now.saturating_duration_since(self.state.since).as_secs(),
            percent_on_to: f64::from(self.percent_on_to()) / 100.0,
            shadow: self.shadow_on(),
            auto_promote: self.plan.auto_promote(),
            next: self.decision(now, &sides, parity),
            guard: GuardView {
                window_seconds: seconds::ceil(guard.window),
                min_requests: guard.min_requests,
                max_error_ratio_delta: guard.max_error_ratio_delta,
                max_p99_ratio: guard.max_p99_ratio,
                on_breach: guard.on_breach,
                checked,
                from: SideView::of(&sides.from),
                to: SideView::of(&sides.to),
            },
            last_transition: self.last.as_ref().map(|t| TransitionView {
                from: t.from_label.clone(),
                to: t.to_label.clone(),
                reason: t.reason,
                seconds_ago: now.saturating_duration_since(t.at).as_secs(),
            }),
        }
    }
}

/// One route in `GET /admin/migrations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub route: String,
    /// The stage's label, or `rolled_back`.
    pub stage: Cow<'static, str>,
    /// The stage's index, −1 when rolled back.
    pub stage_index: i64,
    /// Every stage's label, in order.
    pub plan: Vec<Cow<'static, str>>,
    pub paused: bool,
    /// Since the stage (or the rollback) began, in whole seconds.
    pub since_seconds: u64,
    /// The cohort's share on `to`, in percent.
    pub percent_on_to: f64,
    /// Whether the migration asks for the shadow.
    pub shadow: bool,
    pub auto_promote: bool,
    /// What the next tick will do: stay (and the next gate), promote, or breach.
    pub next: Decision,
    pub guard: GuardView,
    pub last_transition: Option<TransitionView>,
}

/// The guard's settings and both sides' values over its window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardView {
    pub window_seconds: u64,
    pub min_requests: u32,
    pub max_error_ratio_delta: f64,
    pub max_p99_ratio: f64,
    pub on_breach: OnBreach,
    /// Whether the stage is guarded (canary stages only).
    pub checked: bool,
    pub from: SideView,
    pub to: SideView,
}

/// The `signal` labels of `gateway_migration_guard_value`, in [`GuardView::values`]'s order.
pub const GUARD_SIGNALS: [&str; 6] = [
    "error_ratio_from",
    "error_ratio_to",
    "error_ratio_limit",
    "p99_from",
    "p99_to",
    "p99_limit",
];

impl GuardView {
    /// The gauge's values by [`GUARD_SIGNALS`] label (p99s in seconds); `None` for a side with
    /// no requests in the window (and the limit it sets).
    pub fn values(&self) -> [(&'static str, Option<f64>); 6] {
        let (from, to) = (&self.from, &self.to);
        let values = [
            from.error_ratio,
            to.error_ratio,
            from.error_ratio.map(|r| r + self.max_error_ratio_delta),
            from.p99_seconds,
            to.p99_seconds,
            from.p99_seconds.map(|p| p * self.max_p99_ratio),
        ];
        std::array::from_fn(|i| (GUARD_SIGNALS[i], values[i]))
    }
}

/// One side over the guard's window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SideView {
    pub requests: u64,
    pub errors: u64,
    pub error_ratio: Option<f64>,
    pub p99_seconds: Option<f64>,
}

impl SideView {
    fn of(s: &Summary) -> SideView {
        SideView {
            requests: s.requests,
            errors: s.errors,
            error_ratio: s.error_ratio(),
            p99_seconds: s.p99.map(|d| d.as_secs_f64()),
        }
    }
}

/// The last transition, for the view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionView {
    pub from: Cow<'static, str>,
    pub to: Cow<'static, str>,
    pub reason: Reason,
    pub seconds_ago: u64,
}

#[cfg(test)]
mod walks {
    use std::time::Duration;

    use serde_json::json;

    use super::plan::tests::{MIN, canary, issue_plan};
    use super::*;

    /// The ticker's period in these walks.
    const STEP: Duration = Duration::from_secs(5);

    /// One step's traffic: `requests` split between the sides by the stage's percent.
    #[derive(Clone, Copy)]
    struct Traffic {
        requests: u64,
        from_latency: Duration,
        to_latency: Duration,
        /// Every n-th answer of `to` is a 500…
        to_error_every: Option<u64>,
        /// …while at least this share of the cohort is on `to` (basis points).
        errors_from: u32,
    }

    const HEALTHY: Traffic = Traffic {
        requests: 1000,
        from_latency: Duration::from_millis(50),
        to_latency: Duration::from_millis(50),
        to_error_every: None,
        errors_from: 0,
    };

    /// A route's migration driven by a ticker every [`STEP`] under paused time.
    struct Sim {
        migration: Migration,
        measurements: Measurements,
        start: Instant,
        /// The route's running shadow parity (every copy matches).
        compared: u64,
        to_answers: u64,
        /// The decision behind the last breach.
        last_breach: Option<Breach>,
        /// (from, to, reason, seconds since the start) of every transition.
        log: Vec<(String, String, &'static str, u64)>,
    }

    impl Sim {
        fn new(plan: Plan) -> Sim {
            let start = Instant::now();
            Sim {
                measurements: Measurements::new(plan.guard().window, start),
                migration: Migration::new(plan, start),
                start,
                compared: 0,
                to_answers: 0,
                last_breach: None,
                log: Vec::new(),
            }
        }

        async fn run(&mut self, duration: Duration, traffic: Traffic) {
            for _ in 0..duration.as_secs() / STEP.as_secs() {
                tokio::time::advance(STEP).await;
                let now = Instant::now();
                let basis_points = self.migration.percent_on_to();
                let to = traffic.requests * u64::from(basis_points) / 10_000;
                for _ in 0..traffic.requests - to {
                    self.measurements
                        .record(Side::From, now, traffic.from_latency, false);
                }
                for _ in 0..to {
                    self.to_answers += 1;
                    let error = basis_points >= traffic.errors_from
                        && traffic
                            .to_error_every
                            .is_some_and(|n| self.to_answers.is_multiple_of(n));
                    self.measurements
                        .record(Side::To, now, traffic.to_latency, error);
                }
                if self.migration.shadow_on() {
                    self.compared += 100;
                }
                if let Decision::Breach(b) = self.decision() {
                    self.last_breach = Some(b);
                }
                let parity = Parity::new(self.compared, self.compared);
                if let Some(t) = self.migration.tick(now, &self.measurements, &parity) {
                    self.note(&t);
                }
            }
        }

        fn note(&mut self, t: &Transition) {
            self.log.push((
                t.from_label.to_string(),
                t.to_label.to_string(),
                t.reason.as_str(),
                t.at.duration_since(self.start).as_secs(),
            ));
        }

        fn operate(&mut self, action: Action) -> Result<Transition, Refused> {
            let t = self
                .migration
                .operate(action, Instant::now(), &self.measurements)?;
            self.note(&t);
            Ok(t)
        }

        fn log(&self) -> Vec<(&str, &str, &str, u64)> {
            self.log
                .iter()
                .map(|(f, t, r, s)| (f.as_str(), t.as_str(), *r, *s))
                .collect()
        }

        fn decision(&self) -> Decision {
            let now = Instant::now();
            let parity = Parity::new(self.compared, self.compared);
            self.migration
                .decision(now, &self.measurements.summaries(now), &parity)
        }
    }

    fn guarded(stages: Vec<Stage>, on_breach: OnBreach, auto_promote: bool) -> Plan {
        Plan::new(
            stages,
            Guard {
                on_breach,
                ..Guard::default()
            },
            auto_promote,
        )
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_candidate_reaches_extracted_after_its_holds() {
        let mut sim = Sim::new(issue_plan(OnBreach::Rollback));
        assert!(sim.migration.shadow_on());
        assert_eq!(sim.migration.percent_on_to(), 0);
        sim.run(3 * 3600 * Duration::from_secs(1), HEALTHY).await;
        // One transition per step. The shadow's parity counts from its first tick (100
        // copies then): 5,000 compared more, all matching (lower bound 0.9992), at 255 s; then
        // each canary exactly its hold later.
        assert_eq!(
            sim.log(),
            [
                ("shadow", "canary_1", "promoted", 255),
                ("canary_1", "canary_10", "promoted", 255 + 600),
                ("canary_10", "canary_50", "promoted", 855 + 1800),
                ("canary_50", "extracted", "promoted", 2655 + 3600),
            ]
        );
        assert_eq!(sim.migration.percent_on_to(), 10_000);
        assert!(!sim.migration.shadow_on());
        let Decision::Stay { next_gate } = sim.decision() else {
            panic!("extracted stays");
        };
        assert!(next_gate.last_stage);
    }

    /// A candidate that answers 5% 500s once it takes 10% of the cohort, against a clean
    /// monolith, under each `on_breach`.
    #[tokio::test(start_paused = true)]
    async fn a_failing_candidate_is_breached_within_one_window() {
        let failing = Traffic {
            to_error_every: Some(20),
            errors_from: 1000,
            ..HEALTHY
        };
        let stages = || vec![canary(1, 10 * MIN), canary(10, 30 * MIN), Stage::Extracted];
        let table = [
            (OnBreach::Rollback, "rolled_back", 0, false),
            (OnBreach::StepBack, "canary_1", 100, true),
            (OnBreach::Pause, "canary_10", 1000, true),
        ];
        for (on_breach, lands_on, basis_points, paused) in table {
            let mut sim = Sim::new(guarded(stages(), on_breach, true));
            sim.run(15 * MIN, failing).await;
            let log = sim.log();
            assert_eq!(
                log[0],
                ("canary_1", "canary_10", "promoted", 600),
                "{on_breach:?}"
            );
            // 200 answers of `to` (two steps at 100 a step), 10 of them 500s: 5% > 0% + 1%.
            assert_eq!(
                log[1],
                ("canary_10", lands_on, "guard_breach", 610),
                "{on_breach:?}"
            );
            assert!(log[1].3 - log[0].3 <= 300, "within one window");
            assert_eq!(log.len(), 2, "{on_breach:?}: {log:?}");
            assert_eq!(sim.migration.percent_on_to(), basis_points, "{on_breach:?}");
            assert_eq!(sim.migration.state().paused, paused, "{on_breach:?}");
            let (to_before, errors) = (
                sim.to_answers,
                sim.measurements.summaries(Instant::now()).to.errors,
            );
            // An hour on, nothing more moves.
            sim.run(60 * MIN, failing).await;
            assert_eq!(sim.log.len(), 2, "{on_breach:?}: {:?}", sim.log());
            if on_breach == OnBreach::Rollback {
                assert_eq!(
                    sim.to_answers, to_before,
                    "no more requests to the candidate"
                );
                assert_eq!(errors, 0, "its measurements start afresh");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fewer_than_min_requests_never_promotes_nor_breaches() {
        // 100 requests a step: 1 to the candidate, at most 60 in a 5-minute window, below 200; and
        // every one of them a 500.
        let sparse = Traffic {
            requests: 100,
            to_error_every: Some(1),
            ..HEALTHY
        };
        let mut sim = Sim::new(guarded(
            vec![canary(1, 10 * MIN), Stage::Extracted],
            OnBreach::Rollback,
            true,
        ));
        sim.run(180 * MIN, sparse).await;
        assert!(sim.log.is_empty(), "{:?}", sim.log());
        let Decision::Stay { next_gate } = sim.decision() else {
            panic!("stays");
        };
        assert_eq!(next_gate.hold_left, Duration::ZERO, "the hold is long over");
        let requests = next_gate.requests.expect("waits for requests");
        // The window now holds 9 whole buckets of 30 s and the step that opened the 10th.
        assert_eq!((requests.from, requests.to, requests.min), (5445, 55, 200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_monolith_does_not_trip_a_relative_guard() {
        let stages = || vec![canary(10, 10 * MIN), Stage::Extracted];
        let slow = Traffic {
            from_latency: Duration::from_secs(2),
            to_latency: Duration::from_millis(2500),
            ..HEALTHY
        };
        let mut sim = Sim::new(guarded(stages(), OnBreach::Rollback, true));
        sim.run(15 * MIN, slow).await;
        assert_eq!(sim.log(), [("canary_10", "extracted", "promoted", 600)]);
        // 3.5 s is over 1.5 × 2 s.
        let slower = Traffic {
            to_latency: Duration::from_millis(3500),
            ..slow
        };
        let mut sim = Sim::new(guarded(stages(), OnBreach::Rollback, true));
        sim.run(MIN, slower).await;
        assert_eq!(
            sim.log(),
            [("canary_10", "rolled_back", "guard_breach", 10)]
        );
        let breach = sim.last_breach.expect("a breach");
        assert_eq!(breach.signal, Signal::P99);
        let near = |got: f64, want: f64| (got - want).abs() <= want * window::P99_RELATIVE_ERROR;
        assert!(near(breach.from, 2.0) && near(breach.to, 3.5), "{breach:?}");
        assert!(near(breach.limit, 3.0), "{breach:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_auto_promote_an_operator_walks_the_plan() {
        let mut sim = Sim::new(guarded(
            vec![canary(1, 10 * MIN), canary(10, 10 * MIN), Stage::Extracted],
            OnBreach::Rollback,
            false,
        ));
        sim.run(60 * MIN, HEALTHY).await;
        assert!(sim.log.is_empty());
        let Decision::Stay { next_gate } = sim.decision() else {
            panic!("stays");
        };
        assert_eq!(next_gate.operator, Some(OperatorGate::AutoPromoteOff));
        sim.operate(Action::Promote).unwrap();
        sim.operate(Action::Pause).unwrap();
        assert_eq!(sim.operate(Action::Pause), Err(Refused::AlreadyPaused));
        sim.run(MIN, HEALTHY).await;
        sim.operate(Action::Resume).unwrap();
        assert_eq!(
            sim.migration.state().since,
            sim.start + 60 * MIN,
            "a pause and a resume keep the stage's since"
        );
        sim.operate(Action::Rollback).unwrap();
        assert_eq!(sim.migration.percent_on_to(), 0);
        sim.run(60 * MIN, HEALTHY).await;
        sim.operate(Action::Promote).unwrap();
        sim.operate(Action::Promote).unwrap();
        sim.operate(Action::Promote).unwrap();
        assert_eq!(
            sim.operate(Action::Promote),
            Err(Refused::LastStage("extracted".into()))
        );
        assert_eq!(
            sim.log(),
            [
                ("canary_1", "canary_10", "manual_promote", 3600),
                ("canary_10", "canary_10", "paused", 3600),
                ("canary_10", "canary_10", "resumed", 3660),
                ("canary_10", "rolled_back", "manual_rollback", 3660),
                ("rolled_back", "canary_1", "manual_promote", 7260),
                ("canary_1", "canary_10", "manual_promote", 7260),
                ("canary_10", "extracted", "manual_promote", 7260),
            ]
        );
        assert_eq!(sim.migration.percent_on_to(), 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_the_stage_unless_the_stages_changed() {
        let stages = || vec![canary(1, 10 * MIN), canary(10, 30 * MIN), Stage::Extracted];
        let mut sim = Sim::new(guarded(stages(), OnBreach::Rollback, true));
        sim.run(11 * MIN, HEALTHY).await;
        assert_eq!(sim.migration.state().at, At::Stage(1));
        let now = Instant::now();
        let looser = guarded(stages(), OnBreach::Pause, true);
        assert_eq!(sim.migration.replan(looser, now, &sim.measurements), None);
        assert_eq!(sim.migration.plan().guard().on_breach, OnBreach::Pause);
        assert_eq!(sim.migration.state().at, At::Stage(1));
        let changed = guarded(
            vec![canary(5, MIN), Stage::Extracted],
            OnBreach::Rollback,
            true,
        );
        let t = sim
            .migration
            .replan(changed, now, &sim.measurements)
            .unwrap();
        assert_eq!(
            (t.from_label.as_ref(), t.to_label.as_ref(), t.reason),
            ("canary_10", "canary_5", Reason::PlanChanged)
        );
        assert_eq!(sim.measurements.summaries(now), Summaries::default());
        assert_eq!(sim.migration.percent_on_to(), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn the_snapshot_has_the_documented_shape() {
        let mut sim = Sim::new(guarded(
            vec![canary(1, 10 * MIN), canary(12, 30 * MIN), Stage::Extracted],
            OnBreach::StepBack,
            true,
        ));
        sim.run(12 * MIN, HEALTHY).await;
        let now = Instant::now();
        let snapshot =
            sim.migration
                .snapshot("payments", now, &sim.measurements, &Parity::new(0, 0));
        let view = serde_json::to_value(&snapshot).unwrap();
        // 120 s into canary_12: 24 steps of 880 and 120 answers (its measurements started
        // afresh); 50 ms is counted as the midpoint of its bucket.
        let p99 = view["guard"]["from"]["p99_seconds"].as_f64().unwrap();
        assert!(
            (p99 - 0.05).abs() <= 0.05 * window::P99_RELATIVE_ERROR,
            "{p99}"
        );
        assert_eq!(
            view,
            json!({
                "route": "payments",
                "stage": "canary_12",
                "stage_index": 1,
                "plan": ["canary_1", "canary_12", "extracted"],
                "paused": false,
                "since_seconds": 120,
                "percent_on_to": 12.0,
                "shadow": false,
                "auto_promote": true,
                "next": {
                    "decision": "stay",
                    "next_gate": {
                        "hold_left_seconds": 1680,
                        "requests": null,
                        "parity": null,
                        "operator": null,
                        "last_stage": false
                    }
                },
                "guard": {
                    "window_seconds": 300,
                    "min_requests": 200,
                    "max_error_ratio_delta": 0.01,
                    "max_p99_ratio": 1.5,
                    "on_breach": "step_back",
                    "checked": true,
                    "from": {"requests": 21120, "errors": 0, "error_ratio": 0.0, "p99_seconds": p99},
                    "to": {"requests": 2880, "errors": 0, "error_ratio": 0.0, "p99_seconds": p99}
                },
                "last_transition": {
                    "from": "canary_1",
                    "to": "canary_12",
                    "reason": "promoted",
                    "seconds_ago": 120
                }
            })
        );
        let values = snapshot.guard.values();
        assert_eq!(values.map(|(label, _)| label), GUARD_SIGNALS);
        assert_eq!(values[0].1, Some(0.0));
        assert_eq!(values[2].1, Some(0.01));
        assert_eq!(values[5].1, Some(p99 * 1.5));
        // A breach is shown as the next tick's decision.
        let bad = Traffic {
            to_error_every: Some(2),
            ..HEALTHY
        };
        let now = Instant::now();
        for _ in 0..300 {
            sim.measurements.record(
                Side::To,
                now,
                HEALTHY.to_latency,
                bad.to_error_every.is_some(),
            );
        }
        let snapshot =
            sim.migration
                .snapshot("payments", now, &sim.measurements, &Parity::new(0, 0));
        let view = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(view["next"]["decision"], "breach");
        assert_eq!(view["next"]["action"], "step_back");
        assert_eq!(view["next"]["signal"], "error_ratio");
    }
}
