//! Login throttling, in memory, bounded.
//!
//! Two tables, each capped at `max_entries` keys:
//!
//! - **per (normalised email, client IP)**: the first `free_failures` failures cost nothing;
//!   each further failure locks that pair out for `base_delay × 2^(n-1)` (capped at
//!   `max_delay`). While locked, attempts get 429 with `Retry-After` without checking the
//!   password. A success clears the record; a record idle for `max_delay` is forgotten. The key
//!   includes the client IP, so an attacker hammering an account locks out only themselves:
//!   the owner, from another address, still logs in.
//! - **per client IP** (coarser): more than `ip_max_failures` failed logins from one address,
//!   over any accounts, within `ip_window` → 429 for the rest of the window.
//!
//! When a table is full, expired records go first, then the least recently touched one. State
//! is per process: with several replicas each keeps its own (a client spread over N replicas
//! gets up to N× the budget). Time comes from `tokio::time`, so tests run with paused time.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ThrottleSettings;

#[derive(Debug, Clone, Copy)]
struct PairRecord {
    failures: u32,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

#[derive(Debug, Clone, Copy)]
struct IpRecord {
    window_start: Instant,
    failures: u32,
    last_seen: Instant,
}

#[derive(Debug)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    pairs: Mutex<HashMap<(String, IpAddr), PairRecord>>,
    ips: Mutex<HashMap<IpAddr, IpRecord>>,
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> LoginThrottle {
        LoginThrottle {
            settings,
            pairs: Mutex::new(HashMap::new()),
            ips: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when this attempt must be refused.
    pub fn check(&self, email: &str, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        if let Some(r) = lock(&self.ips).get(&ip) {
            let window_end = r.window_start + self.settings.ip_window;
            if now < window_end && r.failures >= self.settings.ip_max_failures {
                return Err(window_end - now);
            }
        }
        if let Some(until) = lock(&self.pairs)
            .get(&(email.to_string(), ip))
            .and_then(|r| r.locked_until)
            && now < until
        {
            return Err(until - now);
        }
        Ok(())
    }

    /// Records a failed login.
    pub fn record_failure(&self, email: &str, ip: IpAddr) {
        let now = Instant::now();
        let s = self.settings;
        {
            let mut pairs = lock(&self.pairs);
            let key = (email.to_string(), ip);
            if !pairs.contains_key(&key) {
                make_room(
                    &mut pairs,
                    s.max_entries,
                    |r| pair_expired(r, s, now),
                    |r| r.last_seen,
                );
            }
            let r = pairs.entry(key).or_insert(PairRecord {
                failures: 0,
                locked_until: None,
                last_seen: now,
            });
            if pair_expired(r, s, now) {
                *r = PairRecord {
                    failures: 0,
                    locked_until: None,
                    last_seen: now,
                };
            }
            r.failures = r.failures.saturating_add(1);
            r.last_seen = now;
            if r.failures > s.free_failures {
                let exp = (r.failures - s.free_failures - 1).min(30);
                let delay = s.base_delay.saturating_mul(1u32 << exp).min(s.max_delay);
                r.locked_until = Some(now + delay);
            }
        }
        let mut ips = lock(&self.ips);
        if !ips.contains_key(&ip) {
            make_room(
                &mut ips,
                s.max_entries,
                |r| now >= r.window_start + s.ip_window,
                |r| r.last_seen,
            );
        }
        let r = ips.entry(ip).or_insert(IpRecord {
            window_start: now,
            failures: 0,
            last_seen: now,
        });
        if now >= r.window_start + s.ip_window {
            *r = IpRecord {
                window_start: now,
                failures: 0,
                last_seen: now,
            };
        }
        r.failures = r.failures.saturating_add(1);
        r.last_seen = now;
    }

    /// Records a successful login: the (account, IP) record is cleared.
    pub fn record_success(&self, email: &str, ip: IpAddr) {
        lock(&self.pairs).remove(&(email.to_string(), ip));
    }

    /// (pair records, IP records) currently held.
    pub fn len(&self) -> (usize, usize) {
        (lock(&self.pairs).len(), lock(&self.ips).len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

fn pair_expired(r: &PairRecord, s: ThrottleSettings, now: Instant) -> bool {
    let quiet_since = r.locked_until.map_or(r.last_seen, |u| u.max(r.last_seen));
    now >= quiet_since + s.max_delay
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps inconsistent: keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ensures there is room for one more key: drop expired records, then the oldest.
fn make_room<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    expired: impl Fn(&V) -> bool,
    last_seen: impl Fn(&V) -> Instant,
) {
    if map.len() < max {
        return;
    }
    map.retain(|_, v| !expired(v));
    while map.len() >= max {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| last_seen(v))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            free_failures: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            ip_max_failures: 10,
            ip_window: Duration::from_secs(300),
            max_entries: 4,
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[tokio::test(start_paused = true)]
    async fn lockout_grows_exponentially_and_is_per_client() {
        let t = LoginThrottle::new(settings());
        for _ in 0..3 {
            assert!(t.check("u", A).is_ok());
            t.record_failure("u", A);
        }
        assert!(t.check("u", A).is_ok(), "free failures do not lock");
        t.record_failure("u", A);
        assert_eq!(t.check("u", A), Err(Duration::from_secs(1)));
        assert!(t.check("u", B).is_ok(), "another client is not locked out");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.check("u", A).is_ok());
        t.record_failure("u", A);
        assert_eq!(t.check("u", A), Err(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        t.record_failure("u", A);
        assert_eq!(t.check("u", A), Err(Duration::from_secs(4)));
        t.record_success("u", A);
        assert!(t.check("u", A).is_ok(), "success clears the record");
    }

    #[tokio::test(start_paused = true)]
    async fn lockout_is_capped_and_forgotten_when_idle() {
        let t = LoginThrottle::new(ThrottleSettings {
            ip_max_failures: 1000,
            ..settings()
        });
        for _ in 0..40 {
            t.record_failure("u", A);
        }
        assert_eq!(t.check("u", A), Err(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(120)).await;
        t.record_failure("u", A);
        assert!(t.check("u", A).is_ok(), "an idle record starts over");
    }

    #[tokio::test(start_paused = true)]
    async fn per_ip_limit_spans_accounts() {
        let t = LoginThrottle::new(ThrottleSettings {
            max_entries: 100,
            ..settings()
        });
        for i in 0..10 {
            t.record_failure(&format!("user{i}"), A);
        }
        assert_eq!(t.check("someone-else", A), Err(Duration::from_secs(300)));
        assert!(t.check("someone-else", B).is_ok());
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(t.check("someone-else", A).is_ok(), "the window ends");
    }

    #[tokio::test(start_paused = true)]
    async fn tables_are_bounded() {
        let t = LoginThrottle::new(settings());
        for i in 0..50u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, i));
            t.record_failure(&format!("user{i}"), ip);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let (pairs, ips) = t.len();
        assert!(pairs <= 4 && ips <= 4, "{pairs} {ips}");
    }
}
