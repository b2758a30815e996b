//! Where a migration stands ([`State`]), what its measurements mean ([`decide`]), and every
//! way it moves ([`Transition`]: on a decision with [`on_decision`], on an operator's
//! [`Action`] with [`operate`], on a reload with [`replan`]). Pure functions over plain data;
//! the rules are the table in the [`crate::migration`] module doc.

use std::borrow::Cow;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::plan::{OnBreach, Plan, Stage};
use super::window::{Summaries, Summary};
use crate::seconds;
use crate::shadow::verdicts::Parity;

/// Where a migration stands: on a stage of its plan, or rolled back off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum At {
    /// The plan's stage at this index.
    Stage(usize),
    /// Everyone on `from`, the shadow off, until an operator promotes (to the first stage).
    RolledBack,
}

impl At {
    /// The value of `gateway_migration_stage{route}`: the stage's index, −1 when rolled back.
    pub fn gauge_value(self) -> i64 {
        match self {
            At::Stage(i) => i64::try_from(i).unwrap_or(i64::MAX),
            At::RolledBack => -1,
        }
    }
}

/// A migration's state: what persistence will store and replicas share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub at: At,
    /// When `at` was entered (a pause or a resume leaves it as it is).
    pub since: Instant,
    /// No promotion by itself until an operator resumes (the guard still acts).
    pub paused: bool,
}

impl State {
    /// A plan's start: its first stage, now, running.
    pub fn start(now: Instant) -> State {
        State {
            at: At::Stage(0),
            since: now,
            paused: false,
        }
    }
}

impl Plan {
    /// The label of `at` in metrics and views: the stage's ([`Stage::label`]), or `rolled_back`.
    pub fn label(&self, at: At) -> Cow<'static, str> {
        match at {
            At::Stage(i) => self.stage(i).label(),
            At::RolledBack => Cow::Borrowed("rolled_back"),
        }
    }

    /// The cohort's share on `to`, in basis points (0 to 10,000), for the route's cohort split:
    /// 0 on a shadow stage and when rolled back, the canary's percent, all on `extracted`. A
    /// pause changes nothing.
    pub fn percent_on_to(&self, at: At) -> u32 {
        match at {
            At::Stage(i) => self.stage(i).basis_points(),
            At::RolledBack => 0,
        }
    }

    /// Whether the migration asks for the shadow (copies to `to`, compared): on a shadow stage
    /// only.
    pub fn shadow_on(&self, at: At) -> bool {
        matches!(at, At::Stage(i) if matches!(self.stage(i), Stage::Shadow { .. }))
    }
}

/// A guard signal: the `signal` of a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The 5xx ratio (errors / requests).
    ErrorRatio,
    /// The p99 latency, in seconds.
    P99,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::ErrorRatio => "error_ratio",
            Signal::P99 => "p99",
        }
    }
}

/// A guard that failed: which signal, both sides' values and the limit `to` went over.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Breach {
    pub action: OnBreach,
    pub signal: Signal,
    /// `from`'s value (a ratio, or seconds for the p99).
    pub from: f64,
    /// `to`'s value.
    pub to: f64,
    /// What `to` may be at most: `from + max_error_ratio_delta`, or `max_p99_ratio × from`.
    pub limit: f64,
}

/// Fewer requests than `min` on a side in the window: no decision yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RequestsGate {
    pub from: u64,
    pub to: u64,
    pub min: u32,
}

/// A shadow stage's `until` not met yet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ParityWait {
    /// The Wilson lower bound now, and the bar.
    pub lower_bound: f64,
    pub min_parity: f64,
    /// Compared answers now, and the bar.
    pub compared: u64,
    pub min_compared: u64,
}

/// What only an operator can clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorGate {
    /// `auto_promote: false`: a promotion is an operator's.
    AutoPromoteOff,
    /// Paused (by an operator or a breach): `resume`, or `promote` a stage by hand.
    Paused,
    /// Rolled back: `promote` starts the plan again at its first stage.
    RolledBack,
}

/// What a stage still waits for before it promotes: every field must clear.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gate {
    /// What is left of a canary's hold (zero once it has elapsed, and on other stages).
    #[serde(rename = "hold_left_seconds", serialize_with = "ceil_seconds")]
    pub hold_left: Duration,
    /// A canary stage with too few requests on a side (the hold extends meanwhile).
    pub requests: Option<RequestsGate>,
    /// A shadow stage whose `until` is not met.
    pub parity: Option<ParityWait>,
    /// An operator's action is needed.
    pub operator: Option<OperatorGate>,
    /// The last stage of the plan: nothing to promote to.
    pub last_stage: bool,
}

impl Gate {
    fn clear(&self) -> bool {
        self.hold_left.is_zero()
            && self.requests.is_none()
            && self.parity.is_none()
            && self.operator.is_none()
            && !self.last_stage
    }
}

fn ceil_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(seconds::ceil(*d))
}

/// What the measurements say the migration should do now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Nothing to do; what the stage waits for.
    Stay { next_gate: Gate },
    /// On to the next stage.
    Promote,
    /// The guard failed: its `on_breach`, at once.
    Breach(Breach),
}

/// Why a migration moved: the `reason` label of `gateway_migration_transitions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Its gates cleared (`auto_promote`).
    Promoted,
    /// The guard failed; the transition is the plan's `on_breach`.
    GuardBreach,
    ManualPromote,
    ManualRollback,
    Paused,
    Resumed,
    /// A reload changed the plan's stages: back to the first stage.
    PlanChanged,
}

impl Reason {
    /// Every reason, in label order (to set up the metric's series at once).
    pub const ALL: [Reason; 7] = [
        Reason::Promoted,
        Reason::GuardBreach,
        Reason::ManualPromote,
        Reason::ManualRollback,
        Reason::Paused,
        Reason::Resumed,
        Reason::PlanChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Promoted => "promoted",
            Reason::GuardBreach => "guard_breach",
            Reason::ManualPromote => "manual_promote",
            Reason::ManualRollback => "manual_rollback",
            Reason::Paused => "paused",
            Reason::Resumed => "resumed",
            Reason::PlanChanged => "plan_changed",
        }
    }
}

/// A move of a migration, with its labels for `gateway_migration_transitions_total{route,from,to,reason}`
/// (`from` and `to` the same for a pause or a resume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: At,
    /// The label of `from` under the plan it was on.
    pub from_label: Cow<'static, str>,
    /// The state after it.
    pub to: State,
    pub to_label: Cow<'static, str>,
    pub reason: Reason,
    /// When it happened.
    pub at: Instant,
}

impl Transition {
    fn new(plan: &Plan, state: &State, to: State, reason: Reason, now: Instant) -> Transition {
        Transition {
            from: state.at,
            from_label: plan.label(state.at),
            to,
            to_label: plan.label(to.at),
            reason,
            at: now,
        }
    }

    /// Whether it enters a stage (or the rolled-back state) afresh, the plan's first stage
    /// included: its measurements start over. A pause or a resume does not.
    pub fn enters(&self) -> bool {
        self.to.at != self.from || self.reason == Reason::PlanChanged
    }
}

/// The decision for `state` at `now`, from both sides over the guard's window and the shadow's
/// parity counted since the stage began ([`parity_since`]). The rules: the module doc's table.
pub fn decide(
    plan: &Plan,
    state: &State,
    now: Instant,
    sides: &Summaries,
    parity: &Parity,
) -> Decision {
    let At::Stage(index) = state.at else {
        return Decision::Stay {
            next_gate: Gate {
                hold_left: Duration::ZERO,
                requests: None,
                parity: None,
                operator: Some(OperatorGate::RolledBack),
                last_stage: false,
            },
        };
    };
    let guard = plan.guard();
    let last_stage = plan.is_last(index);
    let mut gate = Gate {
        hold_left: Duration::ZERO,
        requests: None,
        parity: None,
        operator: if state.paused {
            Some(OperatorGate::Paused)
        } else if !plan.auto_promote() && !last_stage {
            Some(OperatorGate::AutoPromoteOff)
        } else {
            None
        },
        last_stage,
    };
    match *plan.stage(index) {
        Stage::Shadow { until } => {
            if !until.met(parity) {
                gate.parity = Some(ParityWait {
                    lower_bound: parity.lower_bound,
                    min_parity: until.min_parity,
                    compared: parity.trials,
                    min_compared: until.min_compared,
                });
            }
        }
        Stage::Canary { hold, .. } => {
            let min = u64::from(guard.min_requests);
            if sides.from.requests < min || sides.to.requests < min {
                gate.requests = Some(RequestsGate {
                    from: sides.from.requests,
                    to: sides.to.requests,
                    min: guard.min_requests,
                });
            } else if let Some(breach) = check(plan, sides)
                // Pausing what is paused changes nothing.
                && !(state.paused && breach.action == OnBreach::Pause)
            {
                return Decision::Breach(breach);
            }
            gate.hold_left = (state.since + hold).saturating_duration_since(now);
        }
        Stage::Extracted => {}
    }
    if gate.clear() {
        Decision::Promote
    } else {
        Decision::Stay { next_gate: gate }
    }
}

/// The guard over both sides (enough requests on each): the first failing signal, the error
/// ratio before the p99.
fn check(plan: &Plan, sides: &Summaries) -> Option<Breach> {
    let guard = plan.guard();
    let action = guard.on_breach;
    let ratio = |s: &Summary| s.error_ratio().unwrap_or(0.0);
    let (from, to) = (ratio(&sides.from), ratio(&sides.to));
    let limit = from + guard.max_error_ratio_delta;
    if to > limit {
        return Some(Breach {
            action,
            signal: Signal::ErrorRatio,
            from,
            to,
            limit,
        });
    }
    if let (Some(from), Some(to)) = (sides.from.p99, sides.to.p99) {
        let (from, to) = (from.as_secs_f64(), to.as_secs_f64());
        let limit = from * guard.max_p99_ratio;
        if to > limit {
            return Some(Breach {
                action,
                signal: Signal::P99,
                from,
                to,
                limit,
            });
        }
    }
    None
}

/// The transition a decision calls for, if any: a promotion to the next stage (running); a
/// breach's `on_breach` (rollback: rolled back; step back: the previous stage, paused, or
/// rolled back from the first; pause: this stage, paused).
pub fn on_decision(
    plan: &Plan,
    state: &State,
    decision: &Decision,
    now: Instant,
) -> Option<Transition> {
    let At::Stage(index) = state.at else {
        return None;
    };
    let (to, reason) = match decision {
        Decision::Stay { .. } => return None,
        Decision::Promote if plan.is_last(index) => return None,
        Decision::Promote => (entered(At::Stage(index + 1), now, false), Reason::Promoted),
        Decision::Breach(breach) => {
            let to = match (breach.action, index) {
                (OnBreach::Rollback, _) | (OnBreach::StepBack, 0) => {
                    entered(At::RolledBack, now, false)
                }
                (OnBreach::StepBack, i) => entered(At::Stage(i - 1), now, true),
                (OnBreach::Pause, _) if state.paused => return None,
                (OnBreach::Pause, _) => State {
                    paused: true,
                    ..*state
                },
            };
            (to, Reason::GuardBreach)
        }
    };
    Some(Transition::new(plan, state, to, reason, now))
}

fn entered(at: At, now: Instant, paused: bool) -> State {
    State {
        at,
        since: now,
        paused,
    }
}

/// An operator's action (`POST /admin/migrations/ROUTE/{action}`, `gateway migrate ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The next stage now, whatever its gates (from rolled back: the first stage).
    Promote,
    /// Everyone back on `from`.
    Rollback,
    /// No promotion by itself until resumed (the guard still acts).
    Pause,
    Resume,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Promote,
        Action::Rollback,
        Action::Pause,
        Action::Resume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::Pause => "pause",
            Action::Resume => "resume",
        }
    }

    /// The action a path segment or CLI word names.
    pub fn parse(word: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == word)
    }
}

/// Why an operator's action changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("already on the last stage ({0})")]
    LastStage(Cow<'static, str>),
    #[error("already rolled back")]
    AlreadyRolledBack,
    #[error("already paused")]
    AlreadyPaused,
    #[error("not paused")]
    NotPaused,
    #[error("rolled back: promote starts the plan again at its first stage")]
    RolledBack,
}

/// An operator's action on `state` (the rules: the module doc's table). A manual promote skips
/// every gate and keeps a pause as it was.
pub fn operate(
    plan: &Plan,
    state: &State,
    action: Action,
    now: Instant,
) -> Result<Transition, Refused> {
    let (to, reason) = match (action, state.at) {
        (Action::Promote, At::RolledBack) => {
            (entered(At::Stage(0), now, false), Reason::ManualPromote)
        }
        (Action::Promote, At::Stage(i)) if plan.is_last(i) => {
            return Err(Refused::LastStage(plan.label(state.at)));
        }
        (Action::Promote, At::Stage(i)) => (
            entered(At::Stage(i + 1), now, state.paused),
            Reason::ManualPromote,
        ),
        (Action::Rollback, At::RolledBack) => return Err(Refused::AlreadyRolledBack),
        (Action::Rollback, At::Stage(_)) => {
            (entered(At::RolledBack, now, false), Reason::ManualRollback)
        }
        (Action::Pause | Action::Resume, At::RolledBack) => return Err(Refused::RolledBack),
        (Action::Pause, _) if state.paused => return Err(Refused::AlreadyPaused),
        (Action::Resume, _) if !state.paused => return Err(Refused::NotPaused),
        (Action::Pause, _) => (
            State {
                paused: true,
                ..*state
            },
            Reason::Paused,
        ),
        (Action::Resume, _) => (
            State {
                paused: false,
                ..*state
            },
            Reason::Resumed,
        ),
    };
    Ok(Transition::new(plan, state, to, reason, now))
}

/// A reload's new plan for a migration on `old`: if its stages differ, the first stage again,
/// running (`plan_changed`); if only the guard or `auto_promote` changed, nothing moves (they
/// apply from the next decision).
pub fn replan(old: &Plan, new: &Plan, state: &State, now: Instant) -> Option<Transition> {
    if old.stages() == new.stages() {
        return None;
    }
    let to = State::start(now);
    Some(Transition {
        from: state.at,
        from_label: old.label(state.at),
        to,
        to_label: new.label(to.at),
        reason: Reason::PlanChanged,
        at: now,
    })
}

/// The parity counted since a stage began, from the route's running counts now and when the
/// stage began. Counts lower now than then (the shadow's counts were started afresh, by a
/// reload) are all taken as since the stage.
pub fn parity_since(now: &Parity, at_start: &Parity) -> Parity {
    if now.trials < at_start.trials || now.matched < at_start.matched {
        return *now;
    }
    Parity::new(now.matched - at_start.matched, now.trials - at_start.trials)
}

#[cfg(test)]
mod tests {
    use super::super::plan::tests::{MIN, canary, shadow};
    use super::super::plan::{Guard, OnBreach, Plan, Stage};
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn plan(auto_promote: bool, on_breach: OnBreach) -> Plan {
        Plan::new(
            vec![
                shadow(0.99, 100),
                canary(1, 10 * MIN),
                canary(10, 30 * MIN),
                Stage::Extracted,
            ],
            Guard {
                min_requests: 100,
                on_breach,
                ..Guard::default()
            },
            auto_promote,
        )
        .unwrap()
    }

    fn side(requests: u64, errors: u64, p99: Duration) -> Summary {
        Summary {
            requests,
            errors,
            p99: Some(p99),
        }
    }

    #[derive(Clone, Copy)]
    struct Case {
        at: At,
        paused: bool,
        /// Since the stage began.
        elapsed: Duration,
        auto_promote: bool,
        on_breach: OnBreach,
        from: Summary,
        to: Summary,
        /// (matched, trials) since the stage began.
        parity: (u64, u64),
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Promote,
        Breach(Signal),
        Stay {
            hold_left: Duration,
            requests: bool,
            parity: bool,
            operator: Option<OperatorGate>,
            last_stage: bool,
        },
    }

    const STAY: Want = Want::Stay {
        hold_left: Duration::ZERO,
        requests: false,
        parity: false,
        operator: None,
        last_stage: false,
    };

    fn stay_with(f: impl FnOnce(&mut Want)) -> Want {
        let mut w = STAY;
        f(&mut w);
        w
    }

    const HEALTHY: Summary = Summary {
        requests: 1000,
        errors: 0,
        p99: Some(Duration::from_millis(100)),
    };

    /// A healthy canary at 1% whose 10 minutes have passed.
    const BASE: Case = Case {
        at: At::Stage(1),
        paused: false,
        elapsed: Duration::from_secs(600),
        auto_promote: true,
        on_breach: OnBreach::Rollback,
        from: HEALTHY,
        to: HEALTHY,
        parity: (0, 0),
    };

    /// The rules of the module doc, top to bottom.
    #[tokio::test(start_paused = true)]
    async fn the_rules_table() {
        let now = Instant::now() + Duration::from_secs(3600);
        let table: Vec<(&str, Case, Want)> = vec![
            (
                "a healthy canary after its hold promotes",
                BASE,
                Want::Promote,
            ),
            (
                "before its hold: the time left",
                Case {
                    elapsed: 9 * MIN,
                    ..BASE
                },
                stay_with(|w| {
                    if let Want::Stay { hold_left, .. } = w {
                        *hold_left = MIN;
                    }
                }),
            ),
            (
                "to below min_requests: no decision, even all errors",
                Case {
                    to: side(99, 99, 10 * HEALTHY.p99.unwrap()),
                    ..BASE
                },
                stay_with(|w| {
                    if let Want::Stay { requests, .. } = w {
                        *requests = true;
                    }
                }),
            ),
            (
                "from below min_requests: no decision",
                Case {
                    from: side(99, 0, 100 * MS),
                    to: side(1000, 500, 100 * MS),
                    ..BASE
                },
                stay_with(|w| {
                    if let Want::Stay { requests, .. } = w {
                        *requests = true;
                    }
                }),
            ),
            (
                "to's 5xx ratio over from's + delta",
                Case {
                    to: side(1000, 50, 100 * MS),
                    ..BASE
                },
                Want::Breach(Signal::ErrorRatio),
            ),
            (
                "a breach acts before the hold is over",
                Case {
                    elapsed: MIN,
                    to: side(1000, 50, 100 * MS),
                    ..BASE
                },
                Want::Breach(Signal::ErrorRatio),
            ),
            (
                "to exactly at from's + delta passes",
                Case {
                    from: side(1000, 10, 100 * MS),
                    to: side(1000, 20, 100 * MS),
                    ..BASE
                },
                Want::Promote,
            ),
            (
                "a failing monolith is the baseline: 5% vs 5.5% passes",
                Case {
                    from: side(1000, 50, 100 * MS),
                    to: side(1000, 55, 100 * MS),
                    ..BASE
                },
                Want::Promote,
            ),
            (
                "to's p99 over ratio × from's",
                Case {
                    to: side(1000, 0, 200 * MS),
                    ..BASE
                },
                Want::Breach(Signal::P99),
            ),
            (
                "a slow monolith: 2 s vs 2.5 s passes 1.5×",
                Case {
                    from: side(1000, 0, 2000 * MS),
                    to: side(1000, 0, 2500 * MS),
                    ..BASE
                },
                Want::Promote,
            ),
            (
                "both failing: the error ratio is reported",
                Case {
                    to: side(1000, 500, 10_000 * MS),
                    ..BASE
                },
                Want::Breach(Signal::ErrorRatio),
            ),
            (
                "paused: an operator resumes",
                Case {
                    paused: true,
                    ..BASE
                },
                stay_with(|w| {
                    if let Want::Stay { operator, .. } = w {
                        *operator = Some(OperatorGate::Paused);
                    }
                }),
            ),
            (
                "paused still rolls back on a breach",
                Case {
                    paused: true,
                    to: side(1000, 50, 100 * MS),
                    ..BASE
                },
                Want::Breach(Signal::ErrorRatio),
            ),
            (
                "paused, and a breach would pause: nothing",
                Case {
                    paused: true,
                    on_breach: OnBreach::Pause,
                    to: side(1000, 50, 100 * MS),
                    ..BASE
                },
                stay_with(|w| {
                    if let Want::Stay { operator, .. } = w {
                        *operator = Some(OperatorGate::Paused);
                    }
                }),
            ),
            (
                "auto_promote off: an operator promotes",
                Case {
                    auto_promote: false,
                    ..BASE
                },
                stay_with(|w| {
                    if let Want::Stay { operator, .. } = w {
                        *operator = Some(OperatorGate::AutoPromoteOff);
                    }
                }),
            ),
            (
                "auto_promote off still breaches",
                Case {
                    auto_promote: false,
                    to: side(1000, 0, 200 * MS),
                    ..BASE
                },
                Want::Breach(Signal::P99),
            ),
            (
                "shadow: parity's lower bound met over enough compared",
                Case {
                    at: At::Stage(0),
                    elapsed: Duration::ZERO,
                    parity: (1000, 1000),
                    ..BASE
                },
                Want::Promote,
            ),
            (
                "shadow: 100 of 100 is a ratio of 1 but a lower bound of 0.963",
                Case {
                    at: At::Stage(0),
                    parity: (100, 100),
                    ..BASE
                },
                stay_with(|w| {
                    if let Want::Stay { parity, .. } = w {
                        *parity = true;
                    }
                }),
            ),
            (
                "shadow: not guarded",
                Case {
                    at: At::Stage(0),
                    parity: (1000, 1000),
                    to: side(1000, 1000, 10_000 * MS),
                    ..BASE
                },
                Want::Promote,
            ),
            (
                "extracted: the last stage, not guarded",
                Case {
                    at: At::Stage(3),
                    to: side(1000, 1000, 10_000 * MS),
                    ..BASE
                },
                stay_with(|w| {
                    if let Want::Stay { last_stage, .. } = w {
                        *last_stage = true;
                    }
                }),
            ),
            (
                "rolled back: an operator's promote",
                Case {
                    at: At::RolledBack,
                    ..BASE
                },
                stay_with(|w| {
                    if let Want::Stay { operator, .. } = w {
                        *operator = Some(OperatorGate::RolledBack);
                    }
                }),
            ),
        ];
        for (name, c, want) in table {
            let plan = plan(c.auto_promote, c.on_breach);
            let state = State {
                at: c.at,
                since: now - c.elapsed,
                paused: c.paused,
            };
            let sides = Summaries {
                from: c.from,
                to: c.to,
            };
            let parity = Parity::new(c.parity.0, c.parity.1);
            let got = match decide(&plan, &state, now, &sides, &parity) {
                Decision::Promote => Want::Promote,
                Decision::Breach(b) => {
                    assert_eq!(b.action, c.on_breach, "{name}");
                    Want::Breach(b.signal)
                }
                Decision::Stay { next_gate: g } => Want::Stay {
                    hold_left: g.hold_left,
                    requests: g.requests.is_some(),
                    parity: g.parity.is_some(),
                    operator: g.operator,
                    last_stage: g.last_stage,
                },
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_breach_and_a_gate_say_what_they_saw() {
        let plan = plan(true, OnBreach::StepBack);
        let now = Instant::now();
        let state = State {
            at: At::Stage(1),
            since: now,
            paused: false,
        };
        let sides = Summaries {
            from: side(1000, 10, 2000 * MS),
            to: side(500, 25, 2000 * MS),
        };
        let Decision::Breach(b) = decide(&plan, &state, now, &sides, &Parity::new(0, 0)) else {
            panic!("a breach");
        };
        assert_eq!(
            (b.action, b.signal),
            (OnBreach::StepBack, Signal::ErrorRatio)
        );
        assert_eq!((b.from, b.to), (0.01, 0.05));
        assert!((b.limit - 0.02).abs() < 1e-12);
        let sides = Summaries {
            from: side(1000, 0, 2000 * MS),
            to: side(500, 0, 3200 * MS),
        };
        let Decision::Breach(b) = decide(&plan, &state, now, &sides, &Parity::new(0, 0)) else {
            panic!("a breach");
        };
        assert_eq!(
            (b.signal, b.from, b.to, b.limit),
            (Signal::P99, 2.0, 3.2, 3.0)
        );

        let sides = Summaries {
            from: side(150, 0, MS),
            to: side(20, 0, MS),
        };
        let Decision::Stay { next_gate } = decide(&plan, &state, now, &sides, &Parity::new(0, 0))
        else {
            panic!("stays");
        };
        assert_eq!(
            next_gate.requests,
            Some(RequestsGate {
                from: 150,
                to: 20,
                min: 100
            })
        );
        assert_eq!(next_gate.hold_left, 10 * MIN);
        let shadow = State {
            at: At::Stage(0),
            ..state
        };
        let Decision::Stay { next_gate } =
            decide(&plan, &shadow, now, &sides, &Parity::new(50, 60))
        else {
            panic!("stays");
        };
        let wait = next_gate.parity.unwrap();
        assert_eq!((wait.compared, wait.min_compared), (60, 100));
        assert_eq!(
            wait.lower_bound,
            crate::shadow::verdicts::wilson_lower_bound(50, 60)
        );
        assert_eq!(wait.min_parity, 0.99);
    }

    #[tokio::test(start_paused = true)]
    async fn a_decision_becomes_its_transition() {
        let now = Instant::now() + Duration::from_secs(3600);
        let then = now - MIN;
        let breach = |action| {
            Decision::Breach(Breach {
                action,
                signal: Signal::ErrorRatio,
                from: 0.0,
                to: 0.05,
                limit: 0.01,
            })
        };
        let at = |i, paused| State {
            at: At::Stage(i),
            since: then,
            paused,
        };
        // (state, decision, want: (at, since is now, paused, from label, to label))
        let table = [
            (
                at(1, false),
                Decision::Promote,
                Some((At::Stage(2), true, false, "canary_1", "canary_10")),
            ),
            (at(3, false), Decision::Promote, None),
            (
                at(2, false),
                breach(OnBreach::Rollback),
                Some((At::RolledBack, true, false, "canary_10", "rolled_back")),
            ),
            (
                at(2, false),
                breach(OnBreach::StepBack),
                Some((At::Stage(1), true, true, "canary_10", "canary_1")),
            ),
            (
                at(0, true),
                breach(OnBreach::StepBack),
                Some((At::RolledBack, true, false, "shadow", "rolled_back")),
            ),
            (
                at(2, false),
                breach(OnBreach::Pause),
                Some((At::Stage(2), false, true, "canary_10", "canary_10")),
            ),
            (at(2, true), breach(OnBreach::Pause), None),
        ];
        let plan = plan(true, OnBreach::Rollback);
        for (state, decision, want) in table {
            let got = on_decision(&plan, &state, &decision, now).map(|t| {
                let reason = if decision == Decision::Promote {
                    Reason::Promoted
                } else {
                    Reason::GuardBreach
                };
                assert_eq!((t.reason, t.at), (reason, now));
                (
                    t.to.at,
                    t.to.since == now,
                    t.to.paused,
                    t.from_label.into_owned(),
                    t.to_label.into_owned(),
                )
            });
            let want = want.map(|(a, s, p, f, t)| (a, s, p, f.to_string(), t.to_string()));
            assert_eq!(got, want, "{state:?} {decision:?}");
        }
        let stay = Decision::Stay {
            next_gate: Gate {
                hold_left: MIN,
                requests: None,
                parity: None,
                operator: None,
                last_stage: false,
            },
        };
        assert_eq!(on_decision(&plan, &at(1, false), &stay, now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn operator_actions_table() {
        let now = Instant::now() + Duration::from_secs(3600);
        let then = now - MIN;
        let plan = plan(true, OnBreach::Rollback);
        let running = |i| State {
            at: At::Stage(i),
            since: then,
            paused: false,
        };
        let paused = |i| State {
            paused: true,
            ..running(i)
        };
        let rolled_back = State {
            at: At::RolledBack,
            since: then,
            paused: false,
        };
        type Want = Result<(At, bool, bool, Reason), Refused>;
        let table: [(State, Action, Want); 14] = [
            (
                running(1),
                Action::Promote,
                Ok((At::Stage(2), true, false, Reason::ManualPromote)),
            ),
            (
                paused(1),
                Action::Promote,
                Ok((At::Stage(2), true, true, Reason::ManualPromote)),
            ),
            (
                running(3),
                Action::Promote,
                Err(Refused::LastStage("extracted".into())),
            ),
            (
                rolled_back,
                Action::Promote,
                Ok((At::Stage(0), true, false, Reason::ManualPromote)),
            ),
            (
                running(2),
                Action::Rollback,
                Ok((At::RolledBack, true, false, Reason::ManualRollback)),
            ),
            (
                paused(2),
                Action::Rollback,
                Ok((At::RolledBack, true, false, Reason::ManualRollback)),
            ),
            (
                rolled_back,
                Action::Rollback,
                Err(Refused::AlreadyRolledBack),
            ),
            (
                running(2),
                Action::Pause,
                Ok((At::Stage(2), false, true, Reason::Paused)),
            ),
            (paused(2), Action::Pause, Err(Refused::AlreadyPaused)),
            (rolled_back, Action::Pause, Err(Refused::RolledBack)),
            (
                paused(2),
                Action::Resume,
                Ok((At::Stage(2), false, false, Reason::Resumed)),
            ),
            (running(2), Action::Resume, Err(Refused::NotPaused)),
            (rolled_back, Action::Resume, Err(Refused::RolledBack)),
            (
                paused(0),
                Action::Resume,
                Ok((At::Stage(0), false, false, Reason::Resumed)),
            ),
        ];
        for (state, action, want) in table {
            let got = operate(&plan, &state, action, now)
                .map(|t| (t.to.at, t.to.since == now, t.to.paused, t.reason));
            assert_eq!(got, want, "{state:?} {action:?}");
        }
        assert_eq!(
            Refused::RolledBack.to_string(),
            "rolled back: promote starts the plan again at its first stage"
        );
        assert_eq!(
            Refused::LastStage("extracted".into()).to_string(),
            "already on the last stage (extracted)"
        );
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("Promote"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_plan_starts_again_and_a_changed_guard_does_not() {
        let now = Instant::now() + Duration::from_secs(3600);
        let old = plan(true, OnBreach::Rollback);
        let state = State {
            at: At::Stage(2),
            since: now - MIN,
            paused: true,
        };
        let looser = Plan::new(
            old.stages().to_vec(),
            Guard {
                max_p99_ratio: 3.0,
                ..*old.guard()
            },
            false,
        )
        .unwrap();
        assert_eq!(replan(&old, &looser, &state, now), None);
        let shorter =
            Plan::new(vec![canary(5, MIN), Stage::Extracted], *old.guard(), true).unwrap();
        let t = replan(&old, &shorter, &state, now).unwrap();
        assert_eq!(t.to, State::start(now));
        assert_eq!(
            (t.from_label.as_ref(), t.to_label.as_ref(), t.reason),
            ("canary_10", "canary_5", Reason::PlanChanged)
        );
        assert!(t.enters());
    }

    #[test]
    fn what_the_proxy_asks_at_each_stage() {
        let plan = plan(true, OnBreach::Rollback);
        let table = [
            (At::Stage(0), 0, true),
            (At::Stage(1), 100, false),
            (At::Stage(2), 1000, false),
            (At::Stage(3), 10_000, false),
            (At::RolledBack, 0, false),
        ];
        for (at, basis_points, shadow) in table {
            assert_eq!(
                (plan.percent_on_to(at), plan.shadow_on(at)),
                (basis_points, shadow),
                "{at:?}"
            );
        }
        assert_eq!(
            [At::Stage(0), At::Stage(3), At::RolledBack].map(At::gauge_value),
            [0, 3, -1]
        );
    }

    #[test]
    fn labels_are_the_documented_ones() {
        assert_eq!(
            Reason::ALL.map(Reason::as_str),
            [
                "promoted",
                "guard_breach",
                "manual_promote",
                "manual_rollback",
                "paused",
                "resumed",
                "plan_changed"
            ]
        );
        assert_eq!(
            [Signal::ErrorRatio, Signal::P99].map(Signal::as_str),
            ["error_ratio", "p99"]
        );
    }

    #[test]
    fn parity_since_the_stage_began() {
        let since = parity_since(&Parity::new(1500, 1600), &Parity::new(500, 600));
        assert_eq!(since, Parity::new(1000, 1000));
        // Counts started afresh (a reload): all of them are since the stage.
        let reset = parity_since(&Parity::new(10, 12), &Parity::new(500, 600));
        assert_eq!(reset, Parity::new(10, 12));
    }
}
