//! The cluster-wide store: GCRA in Redis, one Lua script per check (`EVALSHA`, and on
//! `NOSCRIPT` — a restarted or flushed Redis — `SCRIPT LOAD` and again), so the read-decide-write
//! is atomic across every gateway replica and costs one round trip.
//!
//! - **Clock**: the script reads Redis's `TIME`, so replicas with skewed clocks still agree.
//!   Needs Redis ≥ 5 (scripts replicate their effects, so a non-deterministic command before a
//!   write is allowed).
//! - **Keys**: `gateway:rl:<policy>:<32 hex chars>` (the hashed bucket key), holding the
//!   theoretical arrival time in microseconds, with a TTL of the time until the bucket is full
//!   again: an idle key expires once it means nothing.
//! - **Connections**: `pool_size` multiplexed connections, used round robin (each pipelines
//!   any number of concurrent requests).
//! - **Failures**: every call is bounded by `store_timeout`. A failed call drops that
//!   connection; the slot then answers "unavailable" at once for a backoff (250ms, doubling to
//!   2s while reconnects keep failing) before one request starts a reconnect, so a dead Redis
//!   costs no waiting and sees no reconnect storm, and the gateway goes back to Redis by itself
//!   once it answers again. A connect runs in a background task with its own 2s timeout (TCP,
//!   TLS and AUTH may take longer than one call); the request that started it waits at most
//!   `store_timeout`, the others don't wait.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use super::{BucketKey, Decision};
use crate::config::model::LimitPolicy;
use crate::metrics::Metrics;

/// `KEYS[1]`: the bucket. `ARGV[1]`: the emission interval T (µs). `ARGV[2]`: the burst B.
/// Returns `{1, slack, reset}` when admitted (slack: µs of capacity left after this request),
/// `{0, wait, reset}` when refused (wait: µs until one request fits); reset: µs until full.
pub const GCRA_SCRIPT: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local capacity = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > capacity then
  return {0, new_tat - capacity - now, tat - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
return {1, capacity - (new_tat - now), new_tat - now}
";

const BACKOFF_START: Duration = Duration::from_millis(250);
/// A connect (TCP, TLS, AUTH) runs in the background, so it may take longer than one call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why a store call gave no decision. Never carries the URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("not connected (backing off after a failure, or connecting)")]
    NotConnected,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected script reply")]
    BadReply,
}

/// The Redis key of a bucket.
pub fn redis_key(policy: &str, key: &BucketKey) -> String {
    format!("gateway:rl:{policy}:{}", key.hex())
}

/// `scheme://user:secret@host` → `scheme://user:***@host` everywhere in `text` (for showing a
/// config file: `redis_url` may carry a password).
pub fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c == '/' || c.is_whitespace() || "\"',}]#".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                if let Some(colon) = userinfo.find(':') {
                    out.push_str(&userinfo[..=colon]);
                }
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Reads the script's reply.
pub fn decision(reply: (i64, i64, i64), interval: Duration) -> Decision {
    let (allowed, a, reset) = reply;
    let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    let interval_us = u64::try_from(interval.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    if allowed == 1 {
        Decision {
            allowed: true,
            remaining: u64::try_from(a).unwrap_or(0) / interval_us,
            reset: us(reset),
            retry_after: Duration::ZERO,
        }
    } else {
        Decision {
            allowed: false,
            remaining: 0,
            reset: us(reset),
            retry_after: us(a),
        }
    }
}

struct Slot {
    conn: ArcSwapOption<MultiplexedConnection>,
    /// A connect task is running; requests that find it so don't wait for it.
    connecting: AtomicBool,
    /// Woken when a connect task ends (connected or not).
    connected: tokio::sync::Notify,
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    retry_at: Option<Instant>,
    next: Duration,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            conn: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            connected: tokio::sync::Notify::new(),
            backoff: Mutex::new(Backoff::default()),
        }
    }

    fn may_connect(&self) -> bool {
        let b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        b.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn failed(&self) {
        self.conn.store(None);
        let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let wait = if b.next.is_zero() {
            BACKOFF_START
        } else {
            b.next
        };
        b.retry_at = Some(Instant::now() + wait);
        b.next = (wait * 2).min(BACKOFF_MAX);
    }

    fn succeeded(&self) {
        let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if b.retry_at.is_some() {
            *b = Backoff::default();
        }
    }
}

pub struct RedisStore {
    client: redis::Client,
    url: String,
    slots: Vec<Arc<Slot>>,
    next: AtomicUsize,
    timeout: Duration,
    script: redis::Script,
    metrics: Arc<Metrics>,
}

impl RedisStore {
    /// Parses the URL; connects lazily (on the first check), so a gateway starts while Redis
    /// is down.
    pub fn new(
        url: &str,
        pool_size: usize,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<RedisStore, String> {
        let client = redis::Client::open(url)
            .map_err(|_| "rate_limits.redis_url: invalid Redis URL".to_string())?;
        Ok(RedisStore {
            client,
            url: url.to_string(),
            slots: (0..pool_size.max(1))
                .map(|_| Arc::new(Slot::new()))
                .collect(),
            next: AtomicUsize::new(0),
            timeout,
            script: redis::Script::new(GCRA_SCRIPT),
            metrics,
        })
    }

    pub fn same_settings(&self, url: &str, pool_size: usize, timeout: Duration) -> bool {
        self.url == url && self.slots.len() == pool_size.max(1) && self.timeout == timeout
    }

    /// One GCRA step for `key` under `policy`, bounded by the store timeout.
    pub async fn check(
        &self,
        policy: &LimitPolicy,
        key: &BucketKey,
    ) -> Result<Decision, StoreError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let started = std::time::Instant::now();
        let interval = policy.interval();
        let result = match tokio::time::timeout(self.timeout, self.eval(slot, policy, key)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        self.metrics
            .rate_limit_store_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(reply) => {
                slot.succeeded();
                Ok(decision(reply, interval))
            }
            Err(StoreError::NotConnected) => Err(StoreError::NotConnected),
            // Still connecting (in the background): not a failure of the connection.
            Err(e @ StoreError::Timeout(_)) if slot.connecting.load(Ordering::Acquire) => Err(e),
            Err(e) => {
                slot.failed();
                Err(e)
            }
        }
    }

    async fn eval(
        &self,
        slot: &Arc<Slot>,
        policy: &LimitPolicy,
        key: &BucketKey,
    ) -> Result<(i64, i64, i64), StoreError> {
        let mut conn = match slot.conn.load_full() {
            Some(c) => (*c).clone(),
            None => self.connect(slot).await?,
        };
        let interval_us = u64::try_from(policy.interval().as_micros()).unwrap_or(u64::MAX);
        let reply: Vec<i64> = self
            .script
            .key(redis_key(&policy.name, key))
            .arg(interval_us.max(1))
            .arg(policy.burst)
            .invoke_async(&mut conn)
            .await?;
        match reply[..] {
            [a, b, c] => Ok((a, b, c)),
            _ => Err(StoreError::BadReply),
        }
    }

    /// Starts connecting `slot` in the background (its own [`CONNECT_TIMEOUT`], so a slow
    /// handshake still completes) and waits for it; the caller's store timeout bounds the wait.
    /// Only the request that starts a connect waits: others fail at once.
    async fn connect(&self, slot: &Arc<Slot>) -> Result<MultiplexedConnection, StoreError> {
        if !slot.may_connect() {
            return Err(StoreError::NotConnected);
        }
        let done = slot.connected.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if slot.connecting.swap(true, Ordering::AcqRel) {
            return Err(StoreError::NotConnected);
        }
        let (task_slot, client) = (slot.clone(), self.client.clone());
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(self.timeout));
        tokio::spawn(async move {
            let attempt = tokio::time::timeout(
                CONNECT_TIMEOUT,
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await;
            match attempt {
                Ok(Ok(conn)) => {
                    task_slot.conn.store(Some(Arc::new(conn)));
                    task_slot.succeeded();
                    tracing::info!("rate-limit store: connected to Redis");
                }
                Ok(Err(e)) => {
                    task_slot.failed();
                    tracing::warn!(error = %e, "rate-limit store: cannot connect to Redis");
                }
                Err(_) => {
                    task_slot.failed();
                    tracing::warn!("rate-limit store: connecting to Redis timed out");
                }
            }
            task_slot.connecting.store(false, Ordering::Release);
            task_slot.connected.notify_waiters();
        });
        done.await;
        slot.conn
            .load_full()
            .map(|c| (*c).clone())
            .ok_or(StoreError::NotConnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_decisions() {
        let t = Duration::from_millis(100);
        // Admitted with 250ms of slack: two more fit now.
        let d = decision((1, 250_000, 150_000), t);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
        assert_eq!(d.reset, Duration::from_millis(150));
        let d = decision((0, 40_000, 340_000), t);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(40));
        assert_eq!(d.reset, Duration::from_millis(340));
        // Nonsense from the server cannot underflow.
        assert_eq!(decision((0, -5, -5), t).retry_after, Duration::ZERO);
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_url_passwords("redis_url: redis://app:s3cr:et@redis:6379/0\nx: http://h/p\n"),
            "redis_url: redis://app:***@redis:6379/0\nx: http://h/p\n"
        );
        assert_eq!(
            mask_url_passwords("u: \"rediss://:pw@r\" # and redis://tok@r"),
            "u: \"rediss://:***@r\" # and redis://***@r"
        );
        assert_eq!(mask_url_passwords("no urls"), "no urls");
    }

    #[test]
    fn keys_are_namespaced_and_fixed_length() {
        let k = redis_key("per_user", &BucketKey([0xab; 16]));
        assert_eq!(k, format!("gateway:rl:per_user:{}", "ab".repeat(16)));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_a_cap_and_resets_on_success() {
        let s = Slot::new();
        assert!(s.may_connect());
        s.failed();
        assert!(!s.may_connect());
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(s.may_connect());
        for expected in [500, 1000, 2000, 2000] {
            s.failed();
            tokio::time::advance(Duration::from_millis(expected - 1)).await;
            assert!(!s.may_connect(), "{expected}");
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(s.may_connect(), "{expected}");
        }
        s.succeeded();
        s.failed();
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(s.may_connect());
    }
}
