//! Upstreams at run time: resolved targets with their breakers and health, target selection
//! (round robin or random, skipping unavailable targets), and the peer options
//! (timeouts, keep-alive) every connection to them uses. Also the weighted, sticky split.
//!
//! Target selection is our own ([`Upstream::pick`]) rather than pingora's `LoadBalancer`: the
//! walk needs each visited breaker's permit (kept for the request) and, when every target is
//! out, the soonest moment one may be back (the 503's `Retry-After`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::health_check::HttpHealthCheck;

use crate::breaker::{Breaker, Outcome, Permit, State};
use crate::config::model::{
    BreakerSpec, HealthCheckSpec, LoadBalancing, SplitSide, StatusSet, UpstreamSpec,
};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::retry_budget::RetryBudget;
use crate::split::{Position, side_of};

pub struct Upstream {
    pub spec: Arc<UpstreamSpec>,
    /// Round-robin position (the next request starts at `next % targets.len()`).
    next: AtomicUsize,
    /// In config order.
    pub targets: Vec<Arc<Target>>,
    /// Shared by every request to this upstream (and kept across reloads while unchanged).
    pub budget: Arc<RetryBudget>,
}

/// One target and what is known about it: its circuit breaker (passive signal) and its active
/// health. Kept across reloads while the target and both settings are unchanged, so a reload
/// does not close an open breaker or forget an unhealthy target.
pub struct Target {
    /// As written in the config (`127.0.0.1:8002`, `payments:8080`): the metric label.
    pub name: String,
    pub addr: SocketAddr,
    /// `addr` as text (`127.0.0.1:8002`), formatted once: the access log writes it per request.
    pub addr_text: String,
    pub breaker: Option<Breaker>,
    /// Statuses recorded as breaker failures.
    failure_statuses: Option<StatusSet>,
    pub health: Health,
    /// The active check (`Host: <target>` unless `health_check.host` says otherwise).
    pub probe: Option<Arc<HttpHealthCheck>>,
    breaker_spec: Option<BreakerSpec>,
    health_spec: Option<HealthCheckSpec>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).finish()
    }
}

impl Target {
    /// How a response status counts for the breaker.
    pub fn outcome_of_status(&self, status: u16) -> Outcome {
        match &self.failure_statuses {
            Some(set) if set.contains(status) => Outcome::Failure,
            _ => Outcome::Success,
        }
    }

    /// Healthy and not refused by its breaker right now (a peek: takes no probe slot).
    pub fn looks_available(&self) -> bool {
        available(
            self.health.is_healthy(),
            self.breaker.as_ref().map(Breaker::state),
        )
    }
}

/// The one rule for "can take traffic": healthy, and its breaker (if any) not open. Half-open
/// counts as available (its probes decide).
pub fn available(healthy: bool, breaker: Option<State>) -> bool {
    healthy && breaker != Some(State::Open)
}

/// No target of the upstream can take the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// The soonest a target may be back (an open breaker's half-open time, or a health-check
    /// interval); for `Retry-After`.
    pub retry_after: Duration,
}

/// The timeouts of one attempt (`proxy` derives them from the route's and the upstream's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimeouts {
    pub connect: Duration,
    /// Each read and write: the wait for the answer, then every read of its body (or of a
    /// tunnel).
    pub read: Duration,
}

/// A chosen target and, when it has a breaker, the permit to record the outcome on.
pub struct Pick {
    pub target: Arc<Target>,
    pub permit: Option<Permit>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.spec.name)
            .finish()
    }
}

/// A target's address: the first one its name resolves to (one backend per target). Names are
/// looked up here, once per config load, by the config's host checks (`state::ThisMachine`),
/// for `run`, a reload and `gateway validate` alike, so they agree on which names work.
pub fn resolve(target: &str) -> Result<SocketAddr, String> {
    let mut resolved = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve target \"{target}\": {e}"))?;
    resolved
        .next()
        .ok_or_else(|| format!("target \"{target}\" resolves to no address"))
}

impl Upstream {
    /// Builds the targets at their `addresses` (as the config's load resolved them; a name
    /// missing there is resolved here) and their breakers, taking over the targets of
    /// `previous` (the same upstream in the config being replaced) whose address and settings
    /// are unchanged.
    pub fn build(
        spec: Arc<UpstreamSpec>,
        previous: Option<&Upstream>,
        addresses: &BTreeMap<String, SocketAddr>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, String> {
        let mut targets = Vec::with_capacity(spec.targets.len());
        for t in &spec.targets {
            let addr = match addresses.get(t) {
                Some(addr) => *addr,
                None => resolve(t).map_err(|e| format!("upstreams.{}: {e}", spec.name))?,
            };
            let kept = previous.and_then(|p| {
                p.targets.iter().find(|old| {
                    old.name == *t
                        && old.addr == addr
                        && old.breaker_spec == spec.circuit_breaker
                        && old.health_spec == spec.health_check
                })
            });
            let target = match kept {
                Some(old) => old.clone(),
                None => Arc::new(new_target(&spec, t, addr, metrics)),
            };
            targets.push(target);
        }
        let budget = match previous {
            Some(p) if p.budget.config() == &spec.retries.budget => p.budget.clone(),
            _ => Arc::new(RetryBudget::new(spec.retries.budget.clone())),
        };
        Ok(Upstream {
            spec,
            next: AtomicUsize::new(0),
            targets,
            budget,
        })
    }

    /// The next target, by the upstream's load-balancing algorithm (round robin: the walk starts
    /// one further on each request; random: at a random target), that is healthy, admitted by
    /// its breaker and not in `avoid` (targets this request already tried). An open breaker
    /// costs nothing here: no connection is attempted. No allocation, no lock besides each
    /// visited breaker's.
    pub fn pick(&self, avoid: &[SocketAddr]) -> Result<Pick, Unavailable> {
        let n = self.targets.len();
        // Where the walk over the targets starts; every target is visited at most once.
        let start = match (n, self.spec.load_balancing) {
            (0 | 1, _) => 0,
            (_, LoadBalancing::RoundRobin) => self.next.fetch_add(1, Ordering::Relaxed) % n,
            (_, LoadBalancing::Random) => rand::random_range(0..n),
        };
        let mut soonest: Option<Duration> = None;
        let mut note = |d: Duration| soonest = Some(soonest.map_or(d, |s| s.min(d)));
        for i in 0..n {
            let target = &self.targets[(start + i) % n];
            if avoid.contains(&target.addr) {
                continue;
            }
            if !target.health.is_healthy() {
                if let Some(h) = &self.spec.health_check {
                    note(h.interval);
                }
                continue;
            }
            let permit = match &target.breaker {
                None => None,
                Some(b) => match b.try_acquire() {
                    Ok(p) => Some(p),
                    Err(rejected) => {
                        note(rejected.retry_after.unwrap_or(Duration::from_secs(1)));
                        continue;
                    }
                },
            };
            return Ok(Pick {
                target: target.clone(),
                permit,
            });
        }
        Err(Unavailable {
            retry_after: soonest.unwrap_or(Duration::from_secs(1)),
        })
    }

    /// Whether [`Upstream::pick`] would likely find a target outside `avoid` (for deciding to
    /// retry before giving up; the real pick may still find none).
    pub fn has_candidate(&self, avoid: &[SocketAddr]) -> bool {
        self.targets
            .iter()
            .any(|t| !avoid.contains(&t.addr) && t.looks_available())
    }

    /// A peer for `target` with one attempt's timeouts and this upstream's keep-alive. pingora
    /// pools connections by the peer's address (its reuse hash leaves the timeouts out), so
    /// attempts with different timeouts still share the target's kept-alive connections.
    pub fn peer(&self, target: &Target, t: &AttemptTimeouts) -> HttpPeer {
        let mut peer = HttpPeer::new(target.addr, false, String::new());
        peer.options.connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.read);
        peer.options.write_timeout = Some(t.read);
        peer.options.idle_timeout = Some(self.spec.timeouts.idle);
        peer
    }
}

fn new_target(spec: &UpstreamSpec, name: &str, addr: SocketAddr, metrics: &Arc<Metrics>) -> Target {
    metrics.target_added(
        &spec.name,
        name,
        spec.health_check.is_some(),
        spec.circuit_breaker.is_some(),
    );
    let breaker = spec.circuit_breaker.as_ref().map(|b| {
        let m = metrics.clone();
        let (upstream, target) = (spec.name.clone(), name.to_string());
        Breaker::with_observer(b.config.clone(), move |t| {
            m.breaker_transition(&upstream, &target, t.to);
            if t.to == State::Open {
                tracing::warn!(upstream, target, from = %t.from, "circuit breaker opened");
            } else {
                tracing::info!(upstream, target, from = %t.from, to = %t.to, "circuit breaker");
            }
        })
    });
    Target {
        name: name.to_string(),
        addr,
        addr_text: addr.to_string(),
        breaker,
        failure_statuses: spec
            .circuit_breaker
            .as_ref()
            .map(|b| b.failure_statuses.clone()),
        health: Health::default(),
        probe: spec
            .health_check
            .as_ref()
            .map(|h| Arc::new(crate::health::probe(h, name))),
        breaker_spec: spec.circuit_breaker.clone(),
        health_spec: spec.health_check.clone(),
    }
}

/// Picks a side of a weighted split (see [`crate::split`]): with a key, the side owning the
/// key's position, which a change of weights moves only at the shares' edges; without one, a
/// random position.
pub fn pick_side<'a>(sides: &'a [SplitSide], key: Option<&[u8]>) -> &'a SplitSide {
    let p = key.map_or_else(Position::random, |k| Position::of(0, k));
    let i = side_of(sides.iter().map(|s| s.weight), p).unwrap_or(0);
    &sides[i]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerConfig;
    use crate::config::model::{RetryPolicy, Timeouts};

    fn upstream(targets: &[&str], breaker: Option<BreakerConfig>) -> Upstream {
        let spec = UpstreamSpec {
            name: "u".into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            load_balancing: LoadBalancing::RoundRobin,
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                response: Duration::from_secs(1),
                idle: Duration::from_secs(1),
                upgraded_idle: Duration::from_secs(1),
            },
            retries: RetryPolicy {
                attempts: 1,
                backoff: Duration::ZERO,
                max_backoff: Duration::ZERO,
                budget: Default::default(),
            },
            health_check: None,
            circuit_breaker: breaker.map(|config| BreakerSpec {
                config,
                failure_statuses: StatusSet::server_errors(),
            }),
        };
        Upstream::build(
            Arc::new(spec),
            None,
            &BTreeMap::new(),
            &Arc::new(Metrics::new()),
        )
        .unwrap()
    }

    fn port(p: &Pick) -> u16 {
        p.target.addr.port()
    }

    #[test]
    fn round_robin_walks_the_targets_and_skips_tried_ones() {
        let u = upstream(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], None);
        let ports: Vec<u16> = (0..6).map(|_| port(&u.pick(&[]).unwrap())).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
        let tried: Vec<SocketAddr> = vec!["127.0.0.1:1".parse().unwrap()];
        for _ in 0..4 {
            assert_ne!(port(&u.pick(&tried).unwrap()), 1);
        }
        let all: Vec<SocketAddr> = u.targets.iter().map(|t| t.addr).collect();
        assert!(u.pick(&all).is_err());
        assert!(!u.has_candidate(&all));
        assert!(u.has_candidate(&tried));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_is_skipped_and_sets_retry_after() {
        let cfg = BreakerConfig {
            min_requests: 1,
            open_for: Duration::from_secs(7),
            ..BreakerConfig::default()
        };
        let u = upstream(&["127.0.0.1:1", "127.0.0.1:2"], Some(cfg));
        let first = u.pick(&[]).unwrap();
        assert_eq!(port(&first), 1);
        first.permit.unwrap().record(Outcome::Failure); // trips target 1
        for _ in 0..4 {
            let p = u.pick(&[]).unwrap();
            assert_eq!(port(&p), 2, "the open target is never chosen");
            p.permit.unwrap().record(Outcome::Success);
        }
        let two: Vec<SocketAddr> = vec!["127.0.0.1:2".parse().unwrap()];
        let err = u.pick(&two).err().unwrap();
        assert_eq!(err.retry_after, Duration::from_secs(7));
        assert!(!u.has_candidate(&two));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(port(&u.pick(&two).unwrap()), 1, "half-open: a probe may go");
    }

    #[test]
    fn an_unhealthy_target_is_skipped() {
        let u = upstream(&["127.0.0.1:1", "127.0.0.1:2"], None);
        let spec = HealthCheckSpec {
            path: "/".into(),
            host: None,
            interval: Duration::from_secs(3),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        };
        let flipped =
            u.targets[0]
                .health
                .observe(Err("down".into()), &spec, tokio::time::Instant::now());
        assert_eq!(flipped, Some(false));
        for _ in 0..4 {
            assert_eq!(port(&u.pick(&[]).unwrap()), 2);
        }
    }

    fn sides() -> Vec<SplitSide> {
        vec![
            SplitSide {
                upstream: "a".into(),
                weight: 10,
            },
            SplitSide {
                upstream: "b".into(),
                weight: 90,
            },
            SplitSide {
                upstream: "zero".into(),
                weight: 0,
            },
        ]
    }

    #[test]
    fn same_key_same_side() {
        let s = sides();
        for i in 0..200 {
            let key = format!("user-{i}");
            let first = &pick_side(&s, Some(key.as_bytes())).upstream;
            for _ in 0..5 {
                assert_eq!(&pick_side(&s, Some(key.as_bytes())).upstream, first);
            }
        }
    }

    #[test]
    fn weights_hold_and_zero_never_wins() {
        let s = sides();
        let mut a = 0;
        for i in 0..10_000 {
            let side = &pick_side(&s, Some(format!("k{i}").as_bytes())).upstream;
            assert_ne!(side, "zero");
            if side == "a" {
                a += 1;
            }
        }
        assert!((800..1200).contains(&a), "a got {a} of 10000");
    }
}
