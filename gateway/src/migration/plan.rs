//! A route's migration plan as plain data: its [`Stage`]s, its [`Guard`] and `auto_promote`,
//! reached only through [`Plan::new`], which checks the rules below and returns every broken
//! one as a [`PlanError`] with its field path inside the `migration:` block. The config layer
//! converts its YAML mirror into these types and prefixes the paths with the route's
//! (`routes[3].migration.plan[2].canary.percent`).
//!
//! ## The rules of a plan
//! | rule | path | why |
//! |---|---|---|
//! | at least one stage | `plan` | an empty plan moves nothing |
//! | a `shadow` stage only as the first stage | `plan[i]` | it moves no traffic: after a canary it would take traffic back without a breach |
//! | `extracted` only as the last stage | `plan[i]` | it moves all of it: nothing can follow |
//! | a canary's percent above 0 and below 100 | `plan[i].canary.percent` | 0 measures nothing on `to`, 100 is `extracted` |
//! | each canary's percent above the previous canary's | `plan[i].canary.percent` | a promotion only ever moves users onto `to` (see [`crate::split`]) |
//! | a canary's hold longer than 0s | `plan[i].canary.hold` | a stage is held to be watched: with none, the first tick with enough requests would promote it |
//! | `until.parity` above 0 and below 1 | `plan[i].shadow.until.parity` | it is compared with the Wilson lower bound, which never reaches 1 |
//! | `guard.window` longer than 0s | `guard.window` | |
//! | `guard.min_requests` at least 1 | `guard.min_requests` | no decision on no data |
//! | `guard.max_error_ratio_delta` from 0 to 1 | `guard.max_error_ratio_delta` | a difference of two ratios |
//! | `guard.max_p99_ratio` above 0 (and finite) | `guard.max_p99_ratio` | |
//!
//! A plan need not end with `extracted`: one that ends with a canary stays there (a lasting
//! split), its guard still checked.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::shadow::verdicts::Parity;

/// All of a route's traffic, in basis points (hundredths of a percent), as cohort splits count.
pub const ALL: u32 = 10_000;

/// A shadow stage's `until`: how much agreement between the two sides, over how many compared
/// answers, lets the plan move on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParityGate {
    /// The Wilson 95% lower bound of parity must be at least this (`until.parity`): not the
    /// raw ratio, which with few trials means little (3 of 3 is 100%).
    pub min_parity: f64,
    /// At least this many compared answers (matches + mismatches: noise and errors are not
    /// trials) (`until.min_compared`).
    pub min_compared: u64,
}

impl ParityGate {
    /// Whether `parity` clears the gate.
    pub fn met(&self, parity: &Parity) -> bool {
        parity.trials >= self.min_compared && parity.lower_bound >= self.min_parity
    }
}

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// Every request on `from`, a copy to `to` and the answers compared, until the parity gate
    /// is met. No hold, no guard (`to` answers no client).
    Shadow { until: ParityGate },
    /// `basis_points` of the cohort on `to` (1 to 9,999: `percent: 12.5` is 1,250), for at
    /// least `hold`, the guard checked all along.
    Canary { basis_points: u32, hold: Duration },
    /// Everything on `to`; `from` stays the fallback. The end of the plan.
    Extracted,
}

impl Stage {
    /// The stage's label in metrics and views: `shadow`, `extracted`, and `canary_` followed
    /// by the percent with `_` for its decimal point: `canary_1`, `canary_12_5`, `canary_0_05`.
    /// Unique within a valid plan (one shadow stage at most, percents increasing, one
    /// `extracted` at most).
    pub fn label(&self) -> Cow<'static, str> {
        match self {
            Stage::Shadow { .. } => Cow::Borrowed("shadow"),
            Stage::Canary { basis_points, .. } => Cow::Owned(format!(
                "canary_{}",
                percent_text(*basis_points).replace('.', "_")
            )),
            Stage::Extracted => Cow::Borrowed("extracted"),
        }
    }

    /// The share of the cohort this stage puts on `to`, in basis points.
    pub fn basis_points(&self) -> u32 {
        match self {
            Stage::Shadow { .. } => 0,
            Stage::Canary { basis_points, .. } => *basis_points,
            Stage::Extracted => ALL,
        }
    }
}

/// `10`, `12.5`, `0.05`: basis points as a percent, as written in the config.
pub fn percent_text(basis_points: u32) -> String {
    let (whole, hundredths) = (basis_points / 100, basis_points % 100);
    match hundredths {
        0 => whole.to_string(),
        h if h % 10 == 0 => format!("{whole}.{}", h / 10),
        h => format!("{whole}.{h:02}"),
    }
}

/// What a breach of the guard does, at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBreach {
    /// Everyone back on `from`, the shadow off; only an operator starts the plan again.
    Rollback,
    /// Back to the previous stage, paused there (before the first stage: rolled back).
    StepBack,
    /// Stay on this stage, paused: no promotion until an operator resumes.
    Pause,
}

impl OnBreach {
    pub fn as_str(self) -> &'static str {
        match self {
            OnBreach::Rollback => "rollback",
            OnBreach::StepBack => "step_back",
            OnBreach::Pause => "pause",
        }
    }
}

/// The guard: `to` against `from` in the same window (a paired baseline), during canary stages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// The sliding window both sides are measured over (10 buckets of `window / 10`).
    pub window: Duration,
    /// Per side: with fewer requests than this on either side in the window, no decision.
    pub min_requests: u32,
    /// `to`'s 5xx ratio may be at most `from`'s plus this (0.01: one point).
    pub max_error_ratio_delta: f64,
    /// `to`'s p99 may be at most this times `from`'s.
    pub max_p99_ratio: f64,
    pub on_breach: OnBreach,
}

impl Default for Guard {
    /// The issue's example: `5m`, `200`, `0.01`, `1.5`, `rollback`.
    fn default() -> Self {
        Guard {
            window: Duration::from_secs(300),
            min_requests: 200,
            max_error_ratio_delta: 0.01,
            max_p99_ratio: 1.5,
            on_breach: OnBreach::Rollback,
        }
    }
}

/// A validated plan: non-empty, its stages in an order that only ever moves users onto `to`
/// (see the module doc). Only [`Plan::new`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    stages: Vec<Stage>,
    guard: Guard,
    auto_promote: bool,
}

/// A rule of a plan that the given values break: [`PlanError::path`] names the field inside
/// the `migration:` block, `Display` says what it must be.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("must have at least one stage")]
    Empty,
    #[error("a shadow stage must be the first stage (it moves no traffic)")]
    ShadowNotFirst { stage: usize },
    #[error("extracted must be the last stage (it moves all traffic)")]
    ExtractedNotLast { stage: usize },
    #[error(
        "must be above 0 and below 100 (all traffic is the `extracted` stage), got {}",
        percent_text(*basis_points)
    )]
    CanaryPercent { stage: usize, basis_points: u32 },
    #[error(
        "must be above the previous canary's {}, got {}",
        percent_text(*previous),
        percent_text(*basis_points)
    )]
    PercentNotIncreasing {
        stage: usize,
        previous: u32,
        basis_points: u32,
    },
    #[error("must be longer than 0s")]
    CanaryHold { stage: usize },
    #[error(
        "must be above 0 and below 1 (it is compared with the Wilson lower bound, which never reaches 1), got {got}"
    )]
    MinParity { stage: usize, got: f64 },
    #[error("must be longer than 0s")]
    Window,
    #[error("must be at least 1")]
    MinRequests,
    #[error("must be at least 0 and at most 1, got {0}")]
    ErrorRatioDelta(f64),
    #[error("must be above 0, got {0}")]
    P99Ratio(f64),
}

impl PlanError {
    /// The field the rule is about, inside the `migration:` block: `plan`, `plan[2]`,
    /// `plan[2].canary.percent`, `guard.window`…
    pub fn path(&self) -> String {
        match self {
            PlanError::Empty => "plan".into(),
            PlanError::ShadowNotFirst { stage } | PlanError::ExtractedNotLast { stage } => {
                format!("plan[{stage}]")
            }
            PlanError::CanaryPercent { stage, .. }
            | PlanError::PercentNotIncreasing { stage, .. } => {
                format!("plan[{stage}].canary.percent")
            }
            PlanError::CanaryHold { stage } => format!("plan[{stage}].canary.hold"),
            PlanError::MinParity { stage, .. } => format!("plan[{stage}].shadow.until.parity"),
            PlanError::Window => "guard.window".into(),
            PlanError::MinRequests => "guard.min_requests".into(),
            PlanError::ErrorRatioDelta(_) => "guard.max_error_ratio_delta".into(),
            PlanError::P99Ratio(_) => "guard.max_p99_ratio".into(),
        }
    }
}

impl Plan {
    /// Checks every rule (see the module doc) and returns all the broken ones, in the order of
    /// the fields (the stages first, then the guard).
    pub fn new(
        stages: Vec<Stage>,
        guard: Guard,
        auto_promote: bool,
    ) -> Result<Plan, Vec<PlanError>> {
        let mut errors = Vec::new();
        if stages.is_empty() {
            errors.push(PlanError::Empty);
        }
        let last = stages.len().saturating_sub(1);
        let mut previous_canary: Option<u32> = None;
        for (stage, s) in stages.iter().enumerate() {
            match *s {
                Stage::Shadow { until } => {
                    if stage != 0 {
                        errors.push(PlanError::ShadowNotFirst { stage });
                    }
                    let got = until.min_parity;
                    if !(got > 0.0 && got < 1.0) {
                        errors.push(PlanError::MinParity { stage, got });
                    }
                }
                Stage::Canary { basis_points, hold } => {
                    if basis_points == 0 || basis_points >= ALL {
                        errors.push(PlanError::CanaryPercent {
                            stage,
                            basis_points,
                        });
                    } else if let Some(previous) = previous_canary
                        && basis_points <= previous
                    {
                        errors.push(PlanError::PercentNotIncreasing {
                            stage,
                            previous,
                            basis_points,
                        });
                    }
                    previous_canary = Some(basis_points);
                    if hold.is_zero() {
                        errors.push(PlanError::CanaryHold { stage });
                    }
                }
                Stage::Extracted => {
                    if stage != last {
                        errors.push(PlanError::ExtractedNotLast { stage });
                    }
                }
            }
        }
        if guard.window.is_zero() {
            errors.push(PlanError::Window);
        }
        if guard.min_requests == 0 {
            errors.push(PlanError::MinRequests);
        }
        let delta = guard.max_error_ratio_delta;
        if !(0.0..=1.0).contains(&delta) {
            errors.push(PlanError::ErrorRatioDelta(delta));
        }
        let ratio = guard.max_p99_ratio;
        if !(ratio > 0.0 && ratio.is_finite()) {
            errors.push(PlanError::P99Ratio(ratio));
        }
        if errors.is_empty() {
            Ok(Plan {
                stages,
                guard,
                auto_promote,
            })
        } else {
            Err(errors)
        }
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Whether a stage whose gates have cleared promotes by itself (else an operator does).
    pub fn auto_promote(&self) -> bool {
        self.auto_promote
    }

    /// The stage at `index`, clamped to the last one (a plan is never empty).
    pub(super) fn stage(&self, index: usize) -> &Stage {
        &self.stages[index.min(self.stages.len() - 1)]
    }

    /// Whether `index` is the last stage (or past it).
    pub(super) fn is_last(&self, index: usize) -> bool {
        index >= self.stages.len() - 1
    }

    /// The stage labels, in order.
    pub fn labels(&self) -> Vec<Cow<'static, str>> {
        self.stages.iter().map(Stage::label).collect()
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) const MIN: Duration = Duration::from_secs(60);

    pub(crate) fn shadow(min_parity: f64, min_compared: u64) -> Stage {
        Stage::Shadow {
            until: ParityGate {
                min_parity,
                min_compared,
            },
        }
    }

    pub(crate) fn canary(percent: u32, hold: Duration) -> Stage {
        Stage::Canary {
            basis_points: percent * 100,
            hold,
        }
    }

    /// The issue's plan: shadow, 1% for 10m, 10% for 30m, 50% for 1h, extracted.
    pub(crate) fn issue_plan(on_breach: OnBreach) -> Plan {
        Plan::new(
            vec![
                shadow(0.999, 5000),
                canary(1, 10 * MIN),
                canary(10, 30 * MIN),
                canary(50, 60 * MIN),
                Stage::Extracted,
            ],
            Guard {
                on_breach,
                ..Guard::default()
            },
            true,
        )
        .unwrap()
    }

    #[test]
    fn the_issue_plan_is_valid_and_labelled() {
        let plan = issue_plan(OnBreach::Rollback);
        assert_eq!(
            plan.labels(),
            ["shadow", "canary_1", "canary_10", "canary_50", "extracted"]
        );
        let fractional = [5, 50, 1250, 9_999].map(|bp| {
            Stage::Canary {
                basis_points: bp,
                hold: MIN,
            }
            .label()
        });
        assert_eq!(
            fractional,
            ["canary_0_05", "canary_0_5", "canary_12_5", "canary_99_99"]
        );
        assert_eq!(
            [OnBreach::Rollback, OnBreach::StepBack, OnBreach::Pause].map(OnBreach::as_str),
            ["rollback", "step_back", "pause"]
        );
    }

    #[test]
    fn plan_rules_name_the_field_and_say_what_it_must_be() {
        let guard = Guard::default();
        // (case, stages, guard, every (path, message) reported)
        type Case = (
            &'static str,
            Vec<Stage>,
            Guard,
            Vec<(&'static str, &'static str)>,
        );
        let table: Vec<Case> = vec![
            (
                "empty",
                vec![],
                guard,
                vec![("plan", "must have at least one stage")],
            ),
            (
                "shadow after a canary",
                vec![canary(1, MIN), shadow(0.99, 10), Stage::Extracted],
                guard,
                vec![(
                    "plan[1]",
                    "a shadow stage must be the first stage (it moves no traffic)",
                )],
            ),
            (
                "two shadow stages",
                vec![shadow(0.9, 10), shadow(0.99, 10)],
                guard,
                vec![(
                    "plan[1]",
                    "a shadow stage must be the first stage (it moves no traffic)",
                )],
            ),
            (
                "extracted not last",
                vec![Stage::Extracted, canary(1, MIN)],
                guard,
                vec![(
                    "plan[0]",
                    "extracted must be the last stage (it moves all traffic)",
                )],
            ),
            (
                "percents not increasing",
                vec![canary(10, MIN), canary(10, MIN), canary(5, MIN)],
                guard,
                vec![
                    (
                        "plan[1].canary.percent",
                        "must be above the previous canary's 10, got 10",
                    ),
                    (
                        "plan[2].canary.percent",
                        "must be above the previous canary's 10, got 5",
                    ),
                ],
            ),
            (
                "a canary of 0% and one of 100%",
                vec![canary(0, MIN), canary(100, MIN)],
                guard,
                vec![
                    (
                        "plan[0].canary.percent",
                        "must be above 0 and below 100 (all traffic is the `extracted` stage), got 0",
                    ),
                    (
                        "plan[1].canary.percent",
                        "must be above 0 and below 100 (all traffic is the `extracted` stage), got 100",
                    ),
                ],
            ),
            (
                "no hold",
                vec![canary(1, Duration::ZERO)],
                guard,
                vec![("plan[0].canary.hold", "must be longer than 0s")],
            ),
            (
                "an unreachable parity",
                vec![shadow(1.0, 10), Stage::Extracted],
                guard,
                vec![(
                    "plan[0].shadow.until.parity",
                    "must be above 0 and below 1 (it is compared with the Wilson lower bound, which never reaches 1), got 1",
                )],
            ),
            (
                "a bad guard, every field",
                vec![Stage::Extracted],
                Guard {
                    window: Duration::ZERO,
                    min_requests: 0,
                    max_error_ratio_delta: -0.1,
                    max_p99_ratio: f64::NAN,
                    on_breach: OnBreach::Pause,
                },
                vec![
                    ("guard.window", "must be longer than 0s"),
                    ("guard.min_requests", "must be at least 1"),
                    (
                        "guard.max_error_ratio_delta",
                        "must be at least 0 and at most 1, got -0.1",
                    ),
                    ("guard.max_p99_ratio", "must be above 0, got NaN"),
                ],
            ),
        ];
        for (name, stages, guard, want) in table {
            let errors = Plan::new(stages, guard, true).unwrap_err();
            let got: Vec<(String, String)> =
                errors.iter().map(|e| (e.path(), e.to_string())).collect();
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(p, m)| (p.to_string(), m.to_string()))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn plans_that_only_move_users_onto_to_are_valid() {
        for stages in [
            vec![Stage::Extracted],
            vec![shadow(0.99, 100)],
            vec![shadow(0.99, 0), Stage::Extracted],
            vec![canary(1, MIN), canary(50, MIN)],
            vec![
                Stage::Canary {
                    basis_points: 1,
                    hold: MIN,
                },
                Stage::Canary {
                    basis_points: 9_999,
                    hold: MIN,
                },
                Stage::Extracted,
            ],
        ] {
            assert!(
                Plan::new(stages.clone(), Guard::default(), false).is_ok(),
                "{stages:?}"
            );
        }
    }

    #[test]
    fn the_parity_gate_reads_the_lower_bound_not_the_ratio() {
        let gate = ParityGate {
            min_parity: 0.99,
            min_compared: 100,
        };
        // 100 of 100 is a ratio of 1 but a lower bound of 0.963.
        assert!(!gate.met(&Parity::new(100, 100)));
        assert!(gate.met(&Parity::new(1000, 1000)));
        assert!(!gate.met(&Parity::new(99, 99)), "too few compared");
        assert!(!gate.met(&Parity::new(990, 1000)), "lower bound 0.982");
    }
}
