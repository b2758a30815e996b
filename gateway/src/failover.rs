//! Failover as plain data: after an attempt fails, what happens next. Given the route's rules,
//! the request's attempt history and the outcome of the last attempt, [`Attempts::decide`]
//! answers one of: try the same upstream again (another target, or the same one after a broken
//! pooled connection), go to the route's fallback, or let the error stand. `proxy.rs` only asks;
//! no pingora `Session` reaches this module, and time is `tokio::time` (paused-time tested).
//!
//! ## The rules, in order (docs/resilience.md has the table)
//!
//! ```text
//!  attempt failed ──▶ total time left? ── no ──▶ answer 504
//!        │ yes
//!  safe to send again? (nothing ever delivered: any request; else idempotent or
//!        │              Idempotency-Key, nothing sent to the client; and the body still in
//!        │              the replay buffer) ── no ──▶ the fallback's rules below, or answer
//!        │ yes
//!  a reused pooled connection broke, first time? ── yes ──▶ same upstream, any target, at once, uncounted
//!        │ no
//!  retries left, an untried target, the backoff fits in `total`, retry budget ── yes ──▶ same upstream, another target, after backoff
//!        │ no
//!  on the route's upstream, fallback takes this failure (`on:`), and, for a request that may
//!  have been delivered, replay allowed (`methods:` or Idempotency-Key, body kept, fallback
//!  budget); the fallback has a target ── yes ──▶ fallback
//!        │ no
//!  answer the error
//! ```
//!
//! A failure *answer* (a status listed in the fallback's `on:`) is decided at the response
//! header by [`Attempts::on_status`]: the fallback or nothing; answers are never retried on the
//! same upstream.
//!
//! ## What "replay" means
//! A request is *delivered* once an attempt failed in a way that may have let the service act
//! on it: a `timeout`, a `reset`, a broken pooled connection or a failure answer. Until then
//! (only refused connections, or no target at all) the fallback gets it for the first time:
//! any method, no budget. After that, every further send is a *replay*, whatever the later
//! failure is (a retry's refused connection, a breaker that opened meanwhile): only methods in
//! the fallback's `methods` (or requests carrying `Idempotency-Key`), only bodies still in the
//! replay buffer, and only within the fallback's budget (the extra load the monolith takes on).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::model::{FallbackOn, FallbackSpec, RetryPolicy};
use crate::retry_budget::RetryBudget;

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing was sent: refused, connect timeout, TLS handshake failure.
    Connect,
    /// The request was sent; no answer headers came within the response timeout.
    Timeout,
    /// The request was sent; the connection closed, reset or sent something unreadable before
    /// the answer headers.
    Reset,
}

/// Why a request went to the fallback: the `reason` label of `gateway_fallbacks_total` and the
/// value of `X-Gateway-Fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unavailable,
    ConnectError,
    Timeout,
    Reset,
    Status,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Unavailable,
        Reason::ConnectError,
        Reason::Timeout,
        Reason::Reset,
        Reason::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unavailable => "unavailable",
            Reason::ConnectError => "connect_error",
            Reason::Timeout => "timeout",
            Reason::Reset => "reset",
            Reason::Status => "status",
        }
    }

    /// A replay: the failing service may already have acted on the request.
    pub fn is_replay(self) -> bool {
        matches!(self, Reason::Timeout | Reason::Reset | Reason::Status)
    }

    fn of(failure: Failure) -> Reason {
        match failure {
            Failure::Connect => Reason::ConnectError,
            Failure::Timeout => Reason::Timeout,
            Failure::Reset => Reason::Reset,
        }
    }
}

/// Why a fallback the route's `on:` asked for was not taken: the `reason` label of
/// `gateway_fallbacks_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Not safe to replay: the method is not in `methods` and there is no `Idempotency-Key`.
    Method,
    /// The request body outgrew the replay buffer.
    BodyTooLarge,
    /// The fallback budget is spent.
    Budget,
    /// No target of the fallback can take the request.
    NoTarget,
}

impl Skipped {
    pub const ALL: [Skipped; 4] = [
        Skipped::Method,
        Skipped::BodyTooLarge,
        Skipped::Budget,
        Skipped::NoTarget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skipped::Method => "method",
            Skipped::BodyTooLarge => "body_too_large",
            Skipped::Budget => "budget",
            Skipped::NoTarget => "no_target",
        }
    }
}

/// What the request allows, as the proxy sees it when an attempt fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// The method is idempotent (RFC 9110 §9.2.2) or the request carries `Idempotency-Key`:
    /// another target of the same upstream may get it again.
    pub retry_safe: bool,
    /// The method is in the fallback's `methods`, or the request carries `Idempotency-Key`.
    pub fallback_safe: bool,
    /// The whole body read so far is still in the replay buffer.
    pub body_kept: bool,
    /// Nothing of the answer has reached the client.
    pub nothing_sent: bool,
}

/// The route's rules for the upstream whose attempt just failed.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    /// `retries:` of the upstream that served the attempt.
    pub retries: &'a RetryPolicy,
    /// That upstream's retry budget.
    pub retry_budget: &'a RetryBudget,
    /// Whether that upstream has an available target this request has not tried.
    pub untried_target: bool,
    /// The route's fallback, while the request is not on it yet.
    pub fallback: Option<Fallback<'a>>,
}

/// The route's fallback, as a failed attempt sees it.
#[derive(Clone, Copy)]
pub struct Fallback<'a> {
    pub spec: &'a FallbackSpec,
    /// The route's fallback budget (replays only).
    pub budget: &'a RetryBudget,
    /// Whether the fallback upstream has an available target this request has not tried.
    pub has_target: bool,
}

/// The next step after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Another attempt on the same upstream after `backoff`; `any_target`: a tried target may
    /// be picked again (a broken pooled connection says nothing about its target).
    Retry { backoff: Duration, any_target: bool },
    /// The request goes to the route's fallback (at once).
    Fallback(Reason),
    /// The error stands.
    Answer,
    /// The route's `timeouts.total` ran out: answer 504.
    Expired,
}

/// A decision and what it refused on the way, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub next: Next,
    /// A retry was wanted and the retry budget refused it.
    pub retry_budget_exhausted: bool,
    /// A fallback was wanted (its `on:` lists the failure) and was not taken.
    pub fallback_skipped: Option<Skipped>,
}

impl Decision {
    fn just(next: Next) -> Self {
        Decision {
            next,
            retry_budget_exhausted: false,
            fallback_skipped: None,
        }
    }
}

/// Which upstream the request is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The route's upstream (the split side chosen for the request).
    Route,
    /// The route's fallback, and why.
    Fallback(Reason),
}

/// One request's attempts: everything failover remembers between them.
#[derive(Debug)]
pub struct Attempts {
    /// Attempts started (1 = the first).
    count: u32,
    /// Counted retries on the current side (reset when the request falls back).
    retries_spent: u32,
    /// The one free retry of a broken pooled connection has been used.
    stale_retry_used: bool,
    /// Targets already tried, so that a retry goes elsewhere when it can.
    tried: Vec<SocketAddr>,
    /// The next attempt may pick a tried target again.
    any_target_next: bool,
    /// The wait before the next attempt.
    backoff_next: Duration,
    side: Side,
    /// A fallback decided at a response header: the attempt is being abandoned to replay.
    replay_pending: bool,
    /// [`Attempts::fallback_started`] has answered.
    fallback_counted: bool,
    /// When the route's `timeouts.total` runs out (set by the first attempt).
    deadline: Option<Instant>,
    /// The first failure that may have delivered the request to the service (see the module
    /// docs): from then on every send is a replay.
    delivered: Option<Reason>,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts {
            count: 0,
            retries_spent: 0,
            stale_retry_used: false,
            tried: Vec::new(),
            any_target_next: false,
            backoff_next: Duration::ZERO,
            side: Side::Route,
            replay_pending: false,
            fallback_counted: false,
            deadline: None,
            delivered: None,
        }
    }
}

/// The route's `timeouts.total` runs out before another attempt could start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

/// The next attempt, as [`Attempts::start`] plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Wait this long first.
    pub backoff: Duration,
    /// What is left of `timeouts.total` after the backoff (`None`: no total).
    pub remaining: Option<Duration>,
}

impl Attempts {
    /// Attempts started so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn side(&self) -> Side {
        self.side
    }

    /// Targets the next pick should avoid.
    pub fn avoid(&self) -> &[SocketAddr] {
        if self.any_target_next {
            &[]
        } else {
            &self.tried
        }
    }

    pub fn tried(&self) -> &[SocketAddr] {
        &self.tried
    }

    /// Starts an attempt: its backoff and what is left of `total` (the first attempt sets the
    /// deadline). `Err(Expired)` when `total` runs out before the attempt could start.
    pub fn start(&mut self, total: Option<Duration>) -> Result<Plan, Expired> {
        if self.count == 0 {
            // The clock is read only for a route with a total (the hot path has none).
            self.deadline = total.map(|t| Instant::now() + t);
        }
        self.replay_pending = false;
        let backoff = std::mem::take(&mut self.backoff_next);
        let remaining = match self.left() {
            None => None,
            Some(left) if left <= backoff => return Err(Expired),
            Some(left) => Some(left - backoff),
        };
        self.count += 1;
        Ok(Plan { backoff, remaining })
    }

    /// The attempt's target was chosen.
    pub fn picked(&mut self, target: SocketAddr) {
        self.tried.push(target);
        self.any_target_next = false;
    }

    /// No target of the route's upstream can take the request: the fallback, if the route has
    /// one that takes `unavailable` and the request is not on it already (and, when it may have
    /// been delivered by an earlier attempt, if it may be replayed).
    pub fn on_unavailable(&mut self, fallback: Option<Fallback<'_>>, replay: Replay) -> Decision {
        match fallback {
            Some(fb) if fb.spec.on.unavailable && self.side == Side::Route => {
                self.try_fallback(fb, Reason::Unavailable, replay)
            }
            _ => Decision::just(Next::Answer),
        }
    }

    /// Why the fallback is answering: `Some` once its first attempt found a target.
    pub fn answered_by_fallback(&self) -> Option<Reason> {
        match self.side {
            Side::Fallback(reason) if self.fallback_counted => Some(reason),
            _ => None,
        }
    }

    /// The request's first attempt on the fallback found a target: `Some(reason)` once per
    /// request (for `gateway_fallbacks_total`).
    pub fn fallback_started(&mut self) -> Option<Reason> {
        match self.side {
            Side::Fallback(reason) if !self.fallback_counted => {
                self.fallback_counted = true;
                Some(reason)
            }
            _ => None,
        }
    }

    /// The attempt answered with `status` (before anything reached the client). `Some`: drop
    /// the answer and replay the request to the fallback.
    pub fn on_status(
        &mut self,
        status: u16,
        fallback: Option<Fallback<'_>>,
        replay: Replay,
    ) -> Decision {
        let Some(fb) = fallback.filter(|f| f.spec.on.statuses.contains(status)) else {
            return Decision::just(Next::Answer);
        };
        if self.side != Side::Route || !replay.nothing_sent || self.expired() {
            return Decision::just(Next::Answer);
        }
        self.delivered.get_or_insert(Reason::Status);
        let decision = self.try_fallback(fb, Reason::Status, replay);
        if decision.next != Next::Answer {
            self.replay_pending = true;
        }
        decision
    }

    /// The attempt was abandoned by [`Attempts::on_status`] to replay it on the fallback.
    pub fn replay_pending(&self) -> bool {
        self.replay_pending
    }

    /// The attempt failed: what next. `stale`: it broke on a reused pooled connection (the
    /// origin closed it while idle), which says nothing about the target.
    pub fn decide(
        &mut self,
        failure: Failure,
        stale: bool,
        rules: Rules<'_>,
        replay: Replay,
    ) -> Decision {
        if self.expired() {
            return Decision::just(Next::Expired);
        }
        // Nothing delivered yet (only refused connections so far): any request may go again
        // (its body, if pingora read any, is still in the replay buffer unless it outgrew it).
        let first_send = failure == Failure::Connect && self.delivered.is_none();
        if failure != Failure::Connect {
            self.delivered.get_or_insert(Reason::of(failure));
        }
        let again = replay.body_kept && (first_send || replay.retry_safe && replay.nothing_sent);
        if stale && !self.stale_retry_used && again {
            self.stale_retry_used = true;
            self.any_target_next = true;
            return Decision::just(Next::Retry {
                backoff: Duration::ZERO,
                any_target: true,
            });
        }
        let mut decision = Decision::just(Next::Answer);
        let backoff = rules.retries.backoff_for(self.retries_spent + 1);
        let fits = self.left().is_none_or(|left| backoff < left);
        if again && self.retries_spent < rules.retries.attempts && rules.untried_target && fits {
            if rules.retry_budget.try_retry() {
                self.retries_spent += 1;
                self.backoff_next = backoff;
                return Decision::just(Next::Retry {
                    backoff,
                    any_target: false,
                });
            }
            decision.retry_budget_exhausted = true;
        }
        let reason = Reason::of(failure);
        let wanted = rules
            .fallback
            .filter(|fb| self.side == Side::Route && takes(&fb.spec.on, reason));
        if let Some(fb) = wanted {
            let fell = self.try_fallback(fb, reason, replay);
            decision.next = fell.next;
            decision.fallback_skipped = fell.fallback_skipped;
        }
        decision
    }

    /// The fallback for `reason`, if the request may go there.
    fn try_fallback(&mut self, fb: Fallback<'_>, reason: Reason, replay: Replay) -> Decision {
        let skip = |why| Decision {
            next: Next::Answer,
            retry_budget_exhausted: false,
            fallback_skipped: Some(why),
        };
        let replaying = reason.is_replay() || self.delivered.is_some();
        if replaying {
            if !replay.nothing_sent {
                return Decision::just(Next::Answer);
            }
            if !replay.fallback_safe {
                return skip(Skipped::Method);
            }
        }
        if !replay.body_kept {
            return skip(Skipped::BodyTooLarge);
        }
        if !fb.has_target {
            return skip(Skipped::NoTarget);
        }
        if replaying && !fb.budget.try_retry() {
            return skip(Skipped::Budget);
        }
        self.fall_back(reason);
        Decision::just(Next::Fallback(reason))
    }

    fn fall_back(&mut self, reason: Reason) {
        self.side = Side::Fallback(reason);
        self.retries_spent = 0;
        self.backoff_next = Duration::ZERO;
    }

    fn expired(&self) -> bool {
        self.left().is_some_and(|left| left.is_zero())
    }

    /// What is left of `timeouts.total` (`None`: the route has none).
    fn left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// Whether a fallback's `on:` lists this kind of failure (`Status`: any status).
pub fn takes(on: &FallbackOn, reason: Reason) -> bool {
    match reason {
        Reason::Unavailable => on.unavailable,
        Reason::ConnectError => on.connect_error,
        Reason::Timeout => on.timeout,
        Reason::Reset => on.reset,
        Reason::Status => !on.statuses.is_empty(),
    }
}

/// The kind of failure a pingora error of an attempt is (the caller has checked it is the
/// upstream's).
pub fn classify(etype: &pingora_error::ErrorType) -> Failure {
    use pingora_error::ErrorType::*;
    match etype {
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
        | TLSHandshakeFailure | TLSHandshakeTimedout | TLSWantX509Lookup | InvalidCert
        | HandshakeError | BindError | SocketError => Failure::Connect,
        ReadTimedout | WriteTimedout => Failure::Timeout,
        _ => Failure::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::defaults;
    use crate::config::model::StatusSet;
    use crate::retry_budget::BudgetConfig;

    const A: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        1,
    ));

    fn retries(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(250),
            budget: BudgetConfig::default(),
        }
    }

    fn spec(statuses: &[u16]) -> FallbackSpec {
        let mut on = defaults::fallback_on();
        for s in statuses {
            on.statuses.insert_range(*s, *s);
        }
        FallbackSpec {
            upstream: "monolith".into(),
            on,
            methods: defaults::FALLBACK_METHODS.to_vec(),
            budget: BudgetConfig::default(),
        }
    }

    /// A budget that allows `n` spends per window and no more.
    fn budget(n: u32) -> RetryBudget {
        RetryBudget::new(BudgetConfig {
            ratio: 0.0,
            min_retries_per_second: n,
            window: Duration::from_secs(1),
        })
    }

    const GET: Replay = Replay {
        retry_safe: true,
        fallback_safe: true,
        body_kept: true,
        nothing_sent: true,
    };
    const POST: Replay = Replay {
        retry_safe: false,
        fallback_safe: false,
        ..GET
    };

    /// One failed first attempt under these conditions: the decision.
    struct Case {
        failure: Failure,
        stale: bool,
        replay: Replay,
        retries_left: u32,
        untried_target: bool,
        fallback: bool,
        fallback_target: bool,
        retry_budget: u32,
        fallback_budget: u32,
        want: Next,
        skipped: Option<Skipped>,
    }

    const BASE: Case = Case {
        failure: Failure::Reset,
        stale: false,
        replay: GET,
        retries_left: 1,
        untried_target: true,
        fallback: true,
        fallback_target: true,
        retry_budget: 100,
        fallback_budget: 100,
        want: Next::Answer,
        skipped: None,
    };

    const RETRY: Next = Next::Retry {
        backoff: Duration::from_millis(25),
        any_target: false,
    };
    const AT_ONCE: Next = Next::Retry {
        backoff: Duration::ZERO,
        any_target: true,
    };

    #[tokio::test(start_paused = true)]
    async fn the_rules_in_order() {
        let table = [
            (
                "another target first",
                Case {
                    want: RETRY,
                    ..BASE
                },
            ),
            (
                "a broken pooled connection: at once, any target",
                Case {
                    stale: true,
                    want: AT_ONCE,
                    ..BASE
                },
            ),
            (
                "no other target: the fallback",
                Case {
                    untried_target: false,
                    want: Next::Fallback(Reason::Reset),
                    ..BASE
                },
            ),
            (
                "no retries left: the fallback",
                Case {
                    retries_left: 0,
                    failure: Failure::Timeout,
                    want: Next::Fallback(Reason::Timeout),
                    ..BASE
                },
            ),
            (
                "a refused POST goes anywhere: nothing was sent",
                Case {
                    failure: Failure::Connect,
                    replay: POST,
                    want: RETRY,
                    ..BASE
                },
            ),
            (
                "a refused POST reaches the fallback unbudgeted",
                Case {
                    failure: Failure::Connect,
                    replay: POST,
                    untried_target: false,
                    fallback_budget: 0,
                    want: Next::Fallback(Reason::ConnectError),
                    ..BASE
                },
            ),
            (
                "a POST that may have arrived is never sent again",
                Case {
                    replay: POST,
                    want: Next::Answer,
                    skipped: Some(Skipped::Method),
                    ..BASE
                },
            ),
            (
                "nor after a broken pooled connection",
                Case {
                    replay: POST,
                    stale: true,
                    untried_target: false,
                    want: Next::Answer,
                    skipped: Some(Skipped::Method),
                    ..BASE
                },
            ),
            (
                "an Idempotency-Key makes it safe",
                Case {
                    replay: Replay {
                        retry_safe: true,
                        fallback_safe: true,
                        ..POST
                    },
                    untried_target: false,
                    want: Next::Fallback(Reason::Reset),
                    ..BASE
                },
            ),
            (
                "a body past the replay buffer stays",
                Case {
                    replay: Replay {
                        body_kept: false,
                        ..GET
                    },
                    want: Next::Answer,
                    skipped: Some(Skipped::BodyTooLarge),
                    ..BASE
                },
            ),
            (
                "an answer already sent stays",
                Case {
                    replay: Replay {
                        nothing_sent: false,
                        ..GET
                    },
                    want: Next::Answer,
                    ..BASE
                },
            ),
            (
                "replays spend the fallback budget",
                Case {
                    untried_target: false,
                    fallback_budget: 0,
                    want: Next::Answer,
                    skipped: Some(Skipped::Budget),
                    ..BASE
                },
            ),
            (
                "a fallback without a target",
                Case {
                    untried_target: false,
                    fallback_target: false,
                    want: Next::Answer,
                    skipped: Some(Skipped::NoTarget),
                    ..BASE
                },
            ),
            (
                "no fallback: the error",
                Case {
                    untried_target: false,
                    fallback: false,
                    want: Next::Answer,
                    ..BASE
                },
            ),
            (
                "a spent retry budget moves on to the fallback",
                Case {
                    retry_budget: 0,
                    want: Next::Fallback(Reason::Reset),
                    ..BASE
                },
            ),
        ];
        for (name, c) in table {
            let mut a = Attempts::default();
            a.start(None).unwrap();
            a.picked(A);
            let policy = retries(c.retries_left);
            let (rb, fbb) = (budget(c.retry_budget), budget(c.fallback_budget));
            let fb_spec = spec(&[]);
            let rules = Rules {
                retries: &policy,
                retry_budget: &rb,
                untried_target: c.untried_target,
                fallback: c.fallback.then_some(Fallback {
                    spec: &fb_spec,
                    budget: &fbb,
                    has_target: c.fallback_target,
                }),
            };
            let d = a.decide(c.failure, c.stale, rules, c.replay);
            assert_eq!(d.next, c.want, "{name}");
            assert_eq!(d.fallback_skipped, c.skipped, "{name}");
            assert_eq!(
                d.retry_budget_exhausted,
                c.retry_budget == 0 && c.retries_left > 0 && c.untried_target,
                "{name}"
            );
            if let Next::Fallback(reason) = c.want {
                assert_eq!(a.side(), Side::Fallback(reason), "{name}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_walks_retries_then_the_fallback_then_gives_up() {
        let policy = retries(2);
        let (rb, fbb) = (budget(100), budget(100));
        let fb_spec = spec(&[]);
        let mut a = Attempts::default();
        let rules = |untried: bool, on_fallback: bool| Rules {
            retries: &policy,
            retry_budget: &rb,
            untried_target: untried,
            fallback: (!on_fallback).then_some(Fallback {
                spec: &fb_spec,
                budget: &fbb,
                has_target: true,
            }),
        };
        let mut backoffs = Vec::new();
        for _ in 0..3 {
            let plan = a.start(None).unwrap();
            backoffs.push(plan.backoff);
            a.picked(A);
            let d = a.decide(Failure::Timeout, false, rules(true, false), GET);
            if d.next == Next::Fallback(Reason::Timeout) {
                break;
            }
        }
        // Two counted retries, with exponential backoff; then the fallback.
        assert_eq!(
            backoffs,
            [
                Duration::ZERO,
                Duration::from_millis(25),
                Duration::from_millis(50)
            ]
        );
        assert_eq!(a.side(), Side::Fallback(Reason::Timeout));
        let plan = a.start(None).unwrap();
        assert_eq!(
            plan.backoff,
            Duration::ZERO,
            "the fallback is tried at once"
        );
        assert_eq!(a.fallback_started(), Some(Reason::Timeout));
        assert_eq!(a.fallback_started(), None, "counted once");
        a.picked(A);
        // On the fallback, its own retries; never a second fallback.
        let d = a.decide(Failure::Reset, false, rules(false, true), GET);
        assert_eq!(d.next, Next::Answer);
        assert_eq!(a.count(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_free_retry_of_a_broken_pooled_connection_is_used_once() {
        let policy = retries(0);
        let rb = budget(0);
        let rules = Rules {
            retries: &policy,
            retry_budget: &rb,
            untried_target: false,
            fallback: None,
        };
        let mut a = Attempts::default();
        a.start(None).unwrap();
        a.picked(A);
        assert_eq!(a.decide(Failure::Reset, true, rules, GET).next, AT_ONCE);
        a.start(None).unwrap();
        assert!(a.avoid().is_empty(), "the same target may be picked again");
        a.picked(A);
        assert_eq!(
            a.decide(Failure::Reset, true, rules, GET).next,
            Next::Answer
        );
        a.start(None).unwrap();
        assert_eq!(a.avoid(), [A, A]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_answer_is_replayed_once_and_only_when_listed() {
        let fb_spec = spec(&[502, 503]);
        let fbb = budget(100);
        let fb = Fallback {
            spec: &fb_spec,
            budget: &fbb,
            has_target: true,
        };
        let mut a = Attempts::default();
        a.start(None).unwrap();
        assert_eq!(a.on_status(500, Some(fb), GET).next, Next::Answer);
        assert!(!a.replay_pending());
        let d = a.on_status(503, Some(fb), POST);
        assert_eq!(
            (d.next, d.fallback_skipped),
            (Next::Answer, Some(Skipped::Method))
        );
        let d = a.on_status(503, Some(fb), GET);
        assert_eq!(d.next, Next::Fallback(Reason::Status));
        assert!(a.replay_pending());
        a.start(None).unwrap();
        assert!(!a.replay_pending());
        assert_eq!(
            a.on_status(503, Some(fb), GET).next,
            Next::Answer,
            "the fallback's own failure answer stands"
        );
        // The budget caps replays of answers too.
        let none = budget(0);
        let mut b = Attempts::default();
        b.start(None).unwrap();
        let capped = Fallback {
            budget: &none,
            ..fb
        };
        let d = b.on_status(502, Some(capped), GET);
        assert_eq!(
            (d.next, d.fallback_skipped),
            (Next::Answer, Some(Skipped::Budget))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_goes_to_the_fallback_only_when_listed_and_once() {
        let listed = spec(&[]);
        let fbb = budget(0);
        fn fb<'a>(spec: &'a FallbackSpec, budget: &'a RetryBudget) -> Fallback<'a> {
            Fallback {
                spec,
                budget,
                has_target: true,
            }
        }
        let mut a = Attempts::default();
        a.start(None).unwrap();
        assert_eq!(a.on_unavailable(None, POST).next, Next::Answer);
        assert_eq!(
            a.on_unavailable(Some(fb(&listed, &fbb)), POST).next,
            Next::Fallback(Reason::Unavailable),
            "nothing was delivered: any method, no budget"
        );
        assert_eq!(a.answered_by_fallback(), None, "not before its pick");
        a.start(None).unwrap();
        assert_eq!(a.fallback_started(), Some(Reason::Unavailable));
        assert_eq!(a.answered_by_fallback(), Some(Reason::Unavailable));
        assert_eq!(
            a.on_unavailable(Some(fb(&listed, &fbb)), GET).next,
            Next::Answer,
            "already on it"
        );
        let mut unlisted = spec(&[]);
        unlisted.on.unavailable = false;
        let mut b = Attempts::default();
        b.start(None).unwrap();
        assert_eq!(
            b.on_unavailable(Some(fb(&unlisted, &fbb)), GET).next,
            Next::Answer
        );
    }

    /// Once an attempt may have delivered the request, a later refused connection or a
    /// breaker that opened meanwhile does not make it a first send again.
    #[tokio::test(start_paused = true)]
    async fn a_request_once_delivered_is_only_ever_replayed() {
        let policy = retries(1);
        let (rb, fbb, none) = (budget(100), budget(100), budget(0));
        let mut get_only = spec(&[]);
        get_only.methods = vec![http::Method::GET];
        fn rules<'a>(
            policy: &'a RetryPolicy,
            rb: &'a RetryBudget,
            fb: Fallback<'a>,
            untried: bool,
        ) -> Rules<'a> {
            Rules {
                retries: policy,
                retry_budget: rb,
                untried_target: untried,
                fallback: Some(fb),
            }
        }
        let fb = |budget| Fallback {
            spec: &get_only,
            budget,
            has_target: true,
        };
        let delete = Replay {
            fallback_safe: false,
            ..GET
        };
        // A DELETE resets on one target (it may have been deleted), is retried on another,
        // which refuses: the fallback's `methods` still decide.
        let mut a = Attempts::default();
        a.start(None).unwrap();
        a.picked(A);
        assert_eq!(
            a.decide(
                Failure::Reset,
                false,
                rules(&policy, &rb, fb(&fbb), true),
                delete
            )
            .next,
            RETRY
        );
        a.start(None).unwrap();
        a.picked(A);
        let d = a.decide(
            Failure::Connect,
            false,
            rules(&policy, &rb, fb(&fbb), false),
            delete,
        );
        assert_eq!(
            (d.next, d.fallback_skipped),
            (Next::Answer, Some(Skipped::Method))
        );
        // A GET times out, and by its retry every target is out: a replay, on the budget.
        let mut b = Attempts::default();
        b.start(None).unwrap();
        b.picked(A);
        assert_eq!(
            b.decide(
                Failure::Timeout,
                false,
                rules(&policy, &rb, fb(&fbb), true),
                GET
            )
            .next,
            RETRY
        );
        b.start(None).unwrap();
        let d = b.on_unavailable(Some(fb(&none)), GET);
        assert_eq!(
            (d.next, d.fallback_skipped),
            (Next::Answer, Some(Skipped::Budget))
        );
        // A refused POST, then another refused target: still a first send.
        let mut c = Attempts::default();
        c.start(None).unwrap();
        c.picked(A);
        assert_eq!(
            c.decide(
                Failure::Connect,
                false,
                rules(&policy, &rb, fb(&none), true),
                POST
            )
            .next,
            RETRY
        );
        c.start(None).unwrap();
        c.picked(A);
        assert_eq!(
            c.decide(
                Failure::Connect,
                false,
                rules(&policy, &rb, fb(&none), false),
                POST
            )
            .next,
            Next::Fallback(Reason::ConnectError)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_timeout_bounds_every_attempt_and_backoff() {
        let policy = RetryPolicy {
            backoff: Duration::from_millis(400),
            max_backoff: Duration::from_secs(1),
            ..retries(5)
        };
        let rb = budget(100);
        let rules = Rules {
            retries: &policy,
            retry_budget: &rb,
            untried_target: true,
            fallback: None,
        };
        let mut a = Attempts::default();
        let total = Some(Duration::from_secs(1));
        let plan = a.start(total).unwrap();
        assert_eq!(plan.remaining, Some(Duration::from_secs(1)));
        a.picked(A);
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(matches!(
            a.decide(Failure::Reset, false, rules, GET).next,
            Next::Retry { .. }
        ));
        // 700 ms left, a 400 ms backoff: 300 ms for the attempt itself.
        let plan = a.start(total).unwrap();
        assert_eq!(plan.backoff, Duration::from_millis(400));
        assert_eq!(plan.remaining, Some(Duration::from_millis(300)));
        tokio::time::advance(Duration::from_millis(650)).await;
        a.picked(A);
        // 50 ms left, an 800 ms backoff: no retry (nor its budget) is spent on an attempt
        // that could not start; the fallback, tried at once, still could.
        let fbb = budget(100);
        let fb_spec = spec(&[]);
        let with_fallback = Rules {
            fallback: Some(Fallback {
                spec: &fb_spec,
                budget: &fbb,
                has_target: true,
            }),
            ..rules
        };
        let spent = rb.snapshot();
        assert_eq!(
            a.decide(Failure::Reset, false, with_fallback, GET).next,
            Next::Fallback(Reason::Reset)
        );
        assert_eq!(rb.snapshot(), spent);
        let plan = a.start(total).unwrap();
        assert_eq!(plan.remaining, Some(Duration::from_millis(50)));
        assert_eq!(a.count(), 3);
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(
            a.decide(Failure::Reset, false, rules, GET).next,
            Next::Expired
        );
        assert_eq!(a.start(total), Err(Expired));
        assert_eq!(
            a.count(),
            3,
            "an attempt that could not start is not counted"
        );
    }

    #[test]
    fn pingora_errors_are_classified() {
        use pingora_error::ErrorType::*;
        for (etype, want) in [
            (ConnectRefused, Failure::Connect),
            (ConnectTimedout, Failure::Connect),
            (TLSHandshakeFailure, Failure::Connect),
            (ReadTimedout, Failure::Timeout),
            (WriteTimedout, Failure::Timeout),
            (ConnectionClosed, Failure::Reset),
            (ReadError, Failure::Reset),
            (InvalidHTTPHeader, Failure::Reset),
        ] {
            assert_eq!(classify(&etype), want, "{etype:?}");
        }
        assert_eq!(
            Reason::ALL.map(Reason::as_str),
            ["unavailable", "connect_error", "timeout", "reset", "status"]
        );
        let none = FallbackOn {
            statuses: StatusSet::empty(),
            ..defaults::fallback_on()
        };
        assert!(!takes(&none, Reason::Status));
    }
}
