//! Rate limits through the real gateway: exact bursts, per-user and per-IP buckets with real
//! tokens from the real auth-service, spoofed `X-Forwarded-For`, several gateway processes
//! sharing one real `redis-server`, and that server killed and restarted mid-run under each
//! `on_store_error` mode.

use std::time::{Duration, Instant};

use http::HeaderMap;
use testkit::eventually;

use crate::support::{AuthService, Echo, Gateway, Redis, WAIT, Want};

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = testkit::http_client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("send {url}: {e:?}"));
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

/// The statuses of `n` GETs.
async fn statuses(url: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(url, headers).await.status);
    }
    out
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn memory_store_admits_the_burst_then_rejects_with_problem_and_fields() {
    let echo = Echo::start("a").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  a: {{ targets: [{}] }}\nrate_limits:\n  policies:\n    per_ip: {{ key: client_ip, limit: 3, per: 1m }}\nroutes:\n  - name: limited\n    match: {{ path_prefix: /limited/ }}\n    upstream: a\n    rate_limit: [per_ip]\n  - name: free\n    match: {{ path_prefix: / }}\n    upstream: a\n",
        echo.addr()
    ))
    .await;
    // Exported before anything was refused.
    assert_eq!(
        gw.metric("gateway_rate_limit_rejections_total{policy=\"per_ip\",route=\"limited\"}")
            .await,
        Some(0.0)
    );
    // One request every 20s, bursts of 3: three pass, the fourth is refused.
    for (i, expected_t) in [20, 40, 60].into_iter().enumerate() {
        let r = get(&gw.url("/limited/x"), &[]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.header("ratelimit-policy"), Some("\"per_ip\";q=3;w=60"));
        assert_eq!(
            r.header("ratelimit"),
            Some(format!("\"per_ip\";r={};t={expected_t}", 2 - i).as_str())
        );
    }
    let r = get(&gw.url("/limited/x"), &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("retry-after"), Some("20"));
    assert_eq!(r.header("ratelimit-policy"), Some("\"per_ip\";q=3;w=60"));
    assert_eq!(r.header("ratelimit"), Some("\"per_ip\";r=0;t=60"));
    let p = r.json();
    assert_eq!(p["type"], "urn:problem-type:gateway:rate-limited");
    assert_eq!(p["status"], 429);
    assert_eq!(
        p["request_id"].as_str(),
        r.header("x-request-id"),
        "the problem names the request"
    );
    assert_eq!(statuses(&gw.url("/limited/y"), &[], 3).await, vec![429; 3]);
    // Another route without policies is not limited and gets no fields.
    let free = get(&gw.url("/other"), &[]).await;
    assert_eq!(free.status, 200);
    assert_eq!(free.header("ratelimit"), None);
    assert_eq!(
        gw.metric("gateway_rate_limit_rejections_total{policy=\"per_ip\",route=\"limited\"}")
            .await,
        Some(4.0)
    );
}

#[tokio::test]
async fn per_user_and_per_ip_buckets_are_independent_with_real_tokens() {
    let auth = AuthService::start().await;
    let echo = Echo::start("a").await;
    let gw = Gateway::start(&format!(
        "{}upstreams:\n  a: {{ targets: [{}] }}\nrate_limits:\n  policies:\n    per_user: {{ key: claim.sub, limit: 2, per: 1m }}\n    per_ip: {{ key: client_ip, limit: 3, per: 1m }}\nroutes:\n  - name: users\n    match: {{ path_prefix: /u/ }}\n    upstream: a\n    auth: optional\n    rate_limit: [per_user]\n  - name: ips\n    match: {{ path_prefix: /ip/ }}\n    upstream: a\n    rate_limit: [per_ip]\n",
        auth.gateway_auth_block(),
        echo.addr()
    ))
    .await;
    let alice = bearer(&auth.register_and_login("alice@example.com").await);
    let bob = bearer(&auth.register_and_login("bob@example.com").await);
    let a = [("authorization", alice.as_str())];
    let b = [("authorization", bob.as_str())];

    // Alice spends her two; Bob, from the same address, still has his.
    assert_eq!(statuses(&gw.url("/u/1"), &a, 3).await, vec![200, 200, 429]);
    assert_eq!(statuses(&gw.url("/u/1"), &b, 2).await, vec![200, 200]);
    assert_eq!(statuses(&gw.url("/u/1"), &b, 1).await, vec![429]);
    // The per-IP policy of another route counts on its own: the users' requests above did
    // not touch it, and spending it does not touch theirs.
    assert_eq!(
        statuses(&gw.url("/ip/1"), &[], 4).await,
        vec![200, 200, 200, 429]
    );
    let carol = bearer(&auth.register_and_login("carol@example.com").await);
    let c = [("authorization", carol.as_str())];
    assert_eq!(statuses(&gw.url("/u/1"), &c, 1).await, vec![200]);
    // A new token for the same user is the same `sub`: the same bucket.
    let alice_again = bearer(&auth.login("alice@example.com").await);
    assert_eq!(
        statuses(
            &gw.url("/u/1"),
            &[("authorization", alice_again.as_str())],
            1
        )
        .await,
        vec![429]
    );
    // Requests without a token share one "missing" bucket: never unlimited.
    assert_eq!(statuses(&gw.url("/u/1"), &[], 3).await, vec![200, 200, 429]);
    assert_eq!(statuses(&gw.url("/u/1"), &c, 1).await, vec![200]);
}

#[tokio::test]
async fn a_spoofed_x_forwarded_for_does_not_evade_the_ip_limit() {
    let echo = Echo::start("a").await;
    let limits = "rate_limits:\n  policies:\n    per_ip: { key: client_ip, limit: 3, per: 1m }\nroutes:\n  - name: all\n    match: { path_prefix: / }\n    upstream: a\n    rate_limit: [per_ip]\n";
    // No trusted proxies: X-Forwarded-For is the client's word and is ignored.
    let gw = Gateway::start(&format!(
        "upstreams:\n  a: {{ targets: [{}] }}\n{limits}",
        echo.addr()
    ))
    .await;
    let mut got = Vec::new();
    for i in 0..6 {
        let spoof = format!("203.0.113.{i}");
        got.push(
            get(&gw.url("/x"), &[("x-forwarded-for", spoof.as_str())])
                .await
                .status,
        );
    }
    assert_eq!(got, vec![200, 200, 200, 429, 429, 429]);

    // Behind a trusted proxy (127.0.0.1 here), the hop it appends is the client; what the
    // client wrote to the left of it is still ignored.
    let gw = Gateway::start(&format!(
        "trusted_proxies: [127.0.0.1/32]\nupstreams:\n  a: {{ targets: [{}] }}\n{limits}",
        echo.addr()
    ))
    .await;
    let mut got = Vec::new();
    for i in 0..4 {
        let xff = format!("198.51.100.{i}, 192.0.2.7");
        got.push(
            get(&gw.url("/x"), &[("x-forwarded-for", xff.as_str())])
                .await
                .status,
        );
    }
    assert_eq!(got, vec![200, 200, 200, 429], "one client, 192.0.2.7");
    // A different real client (as the trusted proxy reports it) has its own bucket.
    assert_eq!(
        get(&gw.url("/x"), &[("x-forwarded-for", "192.0.2.8")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn buckets_survive_a_reload_when_the_policy_is_unchanged() {
    let echo = Echo::start("a").await;
    let body = |limit: u32, headers: bool, extra: &str| {
        format!(
            "upstreams:\n  a: {{ targets: [{}] }}\nrate_limits:\n  headers: {headers}\n  policies:\n    per_ip: {{ key: client_ip, limit: {limit}, per: 1m }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: a\n    rate_limit: [per_ip]\n{extra}",
            echo.addr(),
        )
    };
    let gw = Gateway::start(&body(2, true, "")).await;
    assert_eq!(statuses(&gw.url("/x"), &[], 3).await, vec![200, 200, 429]);
    let reloads = r#"gateway_config_reloads_total{result="success"}"#;
    // Another route and `headers: false`; the policy is the same: still refused.
    gw.write_config(&body(
        2,
        false,
        "  - name: other\n    match: { path_prefix: /other/ }\n    upstream: a\n",
    ));
    gw.wait_metric(reloads, Want::Eq(1.0)).await;
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!(r.status, 429, "the bucket was kept");
    assert!(
        r.header("ratelimit").is_some(),
        "429s always carry the fields"
    );
    // A changed policy starts with fresh buckets; admitted responses now carry no fields.
    gw.write_config(&body(5, false, ""));
    gw.wait_metric(reloads, Want::Eq(2.0)).await;
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit"), None);
    assert_eq!(r.header("ratelimit-policy"), None);
}

/// A gateway config sharing `redis` with the given policy and mode. The store timeout is
/// raised from its 50ms default: test machines are busy, and a timeout here would be noise.
fn redis_config(echo: &str, redis: &Redis, policy: &str, mode: &str) -> String {
    format!(
        "upstreams:\n  a: {{ targets: [{echo}] }}\nrate_limits:\n  store: redis\n  redis_url: {}\n  store_timeout: 500ms\n  on_store_error: {mode}\n  policies:\n{policy}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: a\n    rate_limit: [shared]\n",
        redis.url()
    )
}

#[tokio::test]
async fn gateways_sharing_redis_admit_the_limit_once_together() {
    let redis = Redis::start().await;
    let echo = Echo::start("a").await;
    // No refill during the test (one per 6s): the count admitted must be exactly the burst.
    let policy = "    shared: { key: client_ip, limit: 10, per: 1m, burst: 12 }";
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(Gateway::start(&redis_config(&echo.addr(), &redis, policy, "deny")).await);
    }
    let mut admitted = 0;
    for i in 0..60 {
        let r = get(&gateways[i % 3].url("/x"), &[]).await;
        match r.status {
            200 => admitted += 1,
            429 => assert!(r.header("retry-after").is_some()),
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert_eq!(admitted, 12, "three gateways, one bucket of 12");
    let keys = redis.keys("gateway:rl:shared:*").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].len(), "gateway:rl:shared:".len() + 32);
    let ttl = redis.pttl(&keys[0]).await;
    assert!(
        ttl > 0 && ttl <= 72_000,
        "the key expires when the bucket is full again: {ttl}"
    );
}

/// Sends requests round robin over `gateways` for `window`; returns (admitted, elapsed).
async fn hammer(gateways: &[&Gateway], window: Duration) -> (u64, Duration) {
    let started = Instant::now();
    let mut admitted = 0;
    let mut i = 0;
    // Bounded in time and in count.
    while started.elapsed() < window && i < 20_000 {
        let r = get(&gateways[i % gateways.len()].url("/x"), &[]).await;
        match r.status {
            200 => admitted += 1,
            429 => {}
            s => panic!("unexpected {s}: {}", r.body),
        }
        i += 1;
    }
    (admitted, started.elapsed())
}

#[tokio::test]
async fn two_and_three_gateways_hold_the_rate_over_a_window() {
    let redis = Redis::start().await;
    let echo = Echo::start("a").await;
    // 20 per second, bursts of 5. Over a window W the bucket admits 5 + 20·W (GCRA, Redis's
    // clock), whatever the number of replicas; separate per-process limiters would admit
    // N times that. Tolerance: ±3 requests, for where the window's edges fall between two
    // emission intervals and the client-side measurement of W.
    let policy = "    shared: { key: route, limit: 20, per: 1s, burst: 5 }";
    let mut two = Vec::new();
    for _ in 0..2 {
        two.push(Gateway::start(&redis_config(&echo.addr(), &redis, policy, "deny")).await);
    }
    let (admitted, elapsed) = hammer(&two.iter().collect::<Vec<_>>(), Duration::from_secs(2)).await;
    let expected = 5.0 + 20.0 * elapsed.as_secs_f64();
    eprintln!("two gateways: admitted {admitted} in {elapsed:?}, expected {expected:.1}");
    assert!(
        (admitted as f64 - expected).abs() <= 3.0,
        "two gateways admitted {admitted} in {elapsed:?}, expected {expected:.1} ± 3"
    );
    // Let the bucket refill, then three gateways. Its Redis key expires when the bucket is
    // full again (the key's TTL is the time until then).
    eventually(
        "the shared bucket to be full (its Redis key gone)",
        WAIT,
        || async {
            let keys = redis.keys("gateway:rl:shared:*").await;
            if keys.is_empty() { Ok(()) } else { Err(keys) }
        },
    )
    .await;
    let three = Gateway::start(&redis_config(&echo.addr(), &redis, policy, "deny")).await;
    let all: Vec<&Gateway> = two.iter().chain(std::iter::once(&three)).collect();
    let (admitted, elapsed) = hammer(&all, Duration::from_secs(2)).await;
    let expected = 5.0 + 20.0 * elapsed.as_secs_f64();
    eprintln!("three gateways: admitted {admitted} in {elapsed:?}, expected {expected:.1}");
    assert!(
        (admitted as f64 - expected).abs() <= 3.0,
        "three gateways admitted {admitted} in {elapsed:?}, expected {expected:.1} ± 3"
    );
}

#[tokio::test]
async fn redis_outage_under_each_mode_and_recovery_on_restart() {
    let mut redis = Redis::start().await;
    let echo = Echo::start("a").await;
    let policy = "    shared: { key: client_ip, limit: 2, per: 1m }";
    let local = Gateway::start(&redis_config(&echo.addr(), &redis, policy, "local")).await;
    let allow = Gateway::start(&redis_config(&echo.addr(), &redis, policy, "allow")).await;
    let deny = Gateway::start(&redis_config(&echo.addr(), &redis, policy, "deny")).await;

    // Up: the three share one bucket of 2.
    assert_eq!(statuses(&local.url("/x"), &[], 1).await, vec![200]);
    assert_eq!(statuses(&allow.url("/x"), &[], 1).await, vec![200]);
    assert_eq!(statuses(&deny.url("/x"), &[], 1).await, vec![429]);

    redis.kill();
    // local: this process's own bucket of 2, fresh.
    assert_eq!(
        statuses(&local.url("/x"), &[], 4).await,
        vec![200, 200, 429, 429]
    );
    // allow: everything passes, without fields (nothing was counted).
    for _ in 0..4 {
        let r = get(&allow.url("/x"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit"), None);
    }
    // deny: 503 problem+json.
    let r = get(&deny.url("/x"), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.json()["type"],
        "urn:problem-type:gateway:rate-limit-unavailable"
    );
    for gw in [&local, &allow, &deny] {
        let errors = gw
            .metric("gateway_rate_limit_store_errors_total{policy=\"shared\"}")
            .await
            .unwrap();
        assert!(errors >= 1.0, "store errors are counted: {errors}");
        assert!(
            gw.metrics()
                .await
                .contains("gateway_rate_limit_store_duration_seconds_count"),
        );
    }

    // Back, empty, on the same port: each gateway returns to Redis by itself (after its
    // backoff). A request went to Redis when it added no store error.
    redis.restart().await;
    let mut admitted = 0;
    for (name, gw) in [("deny", &deny), ("allow", &allow), ("local", &local)] {
        let status = eventually(
            &format!("{name} to use Redis again"),
            Duration::from_secs(15),
            || async move {
                let before = store_errors(gw).await;
                let status = get(&gw.url("/x"), &[]).await.status;
                (store_errors(gw).await == before).then_some(status)
            },
        )
        .await;
        admitted += usize::from(status == 200);
    }
    // All three count in one bucket of 2 again.
    for gw in [&deny, &allow, &local] {
        admitted += usize::from(get(&gw.url("/x"), &[]).await.status == 200);
    }
    assert_eq!(
        admitted, 2,
        "six requests counted in Redis, one bucket of 2"
    );
    assert_eq!(redis.keys("gateway:rl:shared:*").await.len(), 1);
}

#[tokio::test]
async fn a_frozen_redis_costs_a_timeout_not_a_hang() {
    let redis = Redis::start().await;
    let echo = Echo::start("a").await;
    let policy = "    shared: { key: client_ip, limit: 100, per: 1s }";
    let gw = Gateway::start(&redis_config(&echo.addr(), &redis, policy, "deny")).await;
    assert_eq!(get(&gw.url("/x"), &[]).await.status, 200);
    // Frozen: the TCP connection stays up and nothing answers. Each request is decided by
    // on_store_error once store_timeout (500ms here) expires, or at once during the backoff.
    redis.signal("STOP");
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.json()["type"],
        "urn:problem-type:gateway:rate-limit-unavailable"
    );
    assert!(store_errors(&gw).await >= 1.0);
    redis.signal("CONT");
    eventually(
        "the gateway to use Redis again",
        Duration::from_secs(15),
        || async { (get(&gw.url("/x"), &[]).await.status == 200).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_password_protected_redis_works_and_its_password_is_never_shown() {
    let redis = Redis::start_with_password(Some("s3cret-pw")).await;
    let echo = Echo::start("a").await;
    let policy = "    shared: { key: client_ip, limit: 1, per: 1m }";
    let gw = Gateway::start(&redis_config(&echo.addr(), &redis, policy, "deny")).await;
    // deny: a 200 then a 429 means the gateway authenticated to Redis and counted there.
    assert_eq!(statuses(&gw.url("/x"), &[], 2).await, vec![200, 429]);
    assert_eq!(redis.keys("gateway:rl:shared:*").await.len(), 1);
    let config = get(&gw.admin_url("/admin/config"), &[]).await.body;
    assert!(config.contains("redis://:***@127.0.0.1"), "{config}");
    assert!(!config.contains("s3cret-pw"), "{config}");
    assert!(!gw.proc.stderr().contains("s3cret-pw"));
    assert!(!gw.proc.stdout().contains("s3cret-pw"));
}

async fn store_errors(gw: &Gateway) -> f64 {
    gw.metric("gateway_rate_limit_store_errors_total{policy=\"shared\"}")
        .await
        .unwrap_or(0.0)
}

#[test]
fn explain_lists_the_policies_of_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.yaml");
    std::fs::write(
        &file,
        "upstreams:\n  a: { targets: [127.0.0.1:9] }\nrate_limits:\n  policies:\n    per_ip: { key: client_ip, limit: 20, per: 1s, burst: 40 }\n    per_route: { key: route, limit: 1000, per: 1m }\nroutes:\n  - name: all\n    match: { path_prefix: / }\n    upstream: a\n    rate_limit: [per_ip, per_route]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["explain", "--config"])
        .arg(&file)
        .args(["GET", "/x"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "limits:    per_ip (by client_ip: 20 per 1s, burst 40), per_route (by route: 1000 per 1m, burst 1000) (all must admit; store memory)\n"
        ),
        "{stdout}"
    );
}
