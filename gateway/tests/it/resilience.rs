//! Timeouts, retries and their budget, circuit breakers, fallback and active health checks, end
//! to end: the real gateway in front of real origins (echo processes, and in-process origins a
//! test can switch into a failure mode).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::eventually;

use crate::support::{Echo, Gateway, Mode, Origin, WAIT, Want, get_served_by};

/// A breaker that trips fast: 5 requests, more than half failing; open for 1s.
const FAST_BREAKER: &str = "circuit_breaker: { min_requests: 5, failure_ratio: 0.5, window: 10s, open_for: 1s, half_open_requests: 2 }";

fn breaker_series(upstream: &str, target: &str) -> String {
    format!(r#"gateway_circuit_breaker_state{{target="{target}",upstream="{upstream}"}}"#)
}

/// Steady GET traffic from a background task until stopped: every (status, served by).
struct Traffic {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(u16, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(url: String) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (flag, log) = (stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let client = testkit::http_client();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                let answer = get_served_by(&client, &url).await;
                log.lock().unwrap().push(answer);
                // Not a wait: the pause between requests is the scenario, a client sending
                // steadily (about 100 a second) rather than as fast as it can.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Traffic { stop, seen, task }
    }

    /// How many requests have been answered so far.
    fn answered(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until an answer after the first `skip` satisfies `pred`.
    async fn wait_for(&self, what: &str, skip: usize, pred: impl Fn(&(u16, String)) -> bool) {
        eventually(what, WAIT, || {
            let seen = self.seen.lock().unwrap();
            let found = seen.iter().skip(skip).any(&pred);
            let last = format!("{} answers, the last {:?}", seen.len(), seen.last());
            async move { if found { Ok(()) } else { Err(last) } }
        })
        .await
    }

    async fn finish(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

#[tokio::test]
async fn killed_origin_trips_the_breaker_the_fallback_serves_and_recovery_closes_it() {
    let notifications = Echo::start("notifications").await;
    let port = notifications.port;
    let monolith = Echo::start("monolith").await;
    let gw = Gateway::start(&format!(
        "upstreams:
  notifications:
    targets: [{n}]
    {FAST_BREAKER}
  monolith: {{ targets: [{m}] }}
routes:
  - name: notifications
    match: {{ path_prefix: / }}
    upstream: notifications
    fallback: monolith
",
        n = notifications.addr(),
        m = monolith.addr(),
    ))
    .await;
    let target = format!("127.0.0.1:{port}");
    let state = breaker_series("notifications", &target);
    let fallbacks = |reason: &str| {
        format!(
            r#"gateway_fallbacks_total{{fallback="monolith",reason="{reason}",route="notifications",upstream="notifications"}}"#
        )
    };
    // The attempts that failed on the dead service before the trip.
    let failed_over = || async {
        let mut n = 0.0;
        for reason in ["connect_error", "reset"] {
            n += gw.metric(&fallbacks(reason)).await.unwrap();
        }
        n
    };
    let client = testkit::http_client();

    let traffic = Traffic::start(gw.url("/api/notifications/"));
    traffic
        .wait_for("traffic to flow to notifications", 0, |(status, by)| {
            *status == 200 && by == "notifications"
        })
        .await;
    drop(notifications); // kills the process (SIGKILL, by PID)

    gw.wait_metric(&state, Want::Eq(2.0)).await; // open
    // While open (1s), requests go straight to the fallback: no connect attempt, so no failed
    // attempt to fall back from.
    let before = failed_over().await;
    assert!(
        before >= 1.0,
        "the failures before the trip went to the fallback"
    );
    let unavailable = gw.metric(&fallbacks("unavailable")).await.unwrap();
    for _ in 0..10 {
        let (status, by) = get_served_by(&client, &gw.url("/x")).await;
        assert_eq!((status, by.as_str()), (200, "monolith"));
    }
    assert_eq!(failed_over().await, before);
    assert!(gw.metric(&fallbacks("unavailable")).await.unwrap() >= unavailable + 10.0);
    let t = gw.target_state("notifications", &target).await;
    assert_eq!(t["circuit_breaker"]["state"], "open", "{t}");
    assert_eq!(t["available"], false);

    // Back on the same port: half-open probes succeed and close the breaker.
    let _notifications = Echo::start_on("notifications", port).await;
    eventually("traffic to return to notifications", WAIT, || async {
        let (_, by) = get_served_by(&client, &gw.url("/x")).await;
        if by == "notifications" {
            Ok(())
        } else {
            Err(by)
        }
    })
    .await;
    gw.wait_metric(&state, Want::Eq(0.0)).await; // closed
    // The answer after `answered` may be to a request sent before the close; the one after it
    // was sent after: the last answer below is one the closed breaker let through.
    let answered = traffic.answered();
    traffic
        .wait_for("a request sent after the close", answered + 1, |_| true)
        .await;
    let seen = traffic.finish().await;
    let lost: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(lost.is_empty(), "idempotent requests lost: {lost:?}");
    assert!(seen.iter().any(|(_, by)| by == "monolith"));
    assert_eq!(seen.last().unwrap().1, "notifications");
    for to in ["open", "half_open", "closed"] {
        let series = format!(
            r#"gateway_circuit_breaker_transitions_total{{target="{target}",to="{to}",upstream="notifications"}}"#
        );
        assert!(gw.metric(&series).await.unwrap() >= 1.0, "{series}");
    }
    let all = failed_over().await + gw.metric(&fallbacks("unavailable")).await.unwrap();
    assert!(all >= 10.0, "{all}");
}

#[tokio::test]
async fn a_broken_pooled_connection_to_a_dead_origin_still_reaches_the_fallback() {
    let extracted = Origin::start("extracted", Mode::Ok).await;
    let monolith = Origin::start("monolith", Mode::Ok).await;
    let gw = Gateway::start(&format!(
        "upstreams:
  extracted: {{ targets: [{e}] }}
  monolith: {{ targets: [{m}] }}
routes:
  - name: r
    match: {{ path_prefix: / }}
    upstream: extracted
    fallback: monolith
",
        e = extracted.addr(),
        m = monolith.addr()
    ))
    .await;
    let client = testkit::http_client();
    let (status, by) = get_served_by(&client, &gw.url("/a")).await;
    assert_eq!((status, by.as_str()), (200, "extracted"));
    // The gateway now holds a pooled connection to `extracted`, which dies: the next request
    // breaks on that connection (free retry on a fresh one), is refused (counted retry), and
    // ends at the fallback.
    extracted.die();
    let (status, by) = get_served_by(&client, &gw.url("/b")).await;
    assert_eq!((status, by.as_str()), (200, "monolith"));
    assert_eq!(
        extracted.requests(),
        2,
        "the second request reached the pooled connection"
    );
}

#[tokio::test]
async fn open_breaker_without_fallback_answers_503_with_retry_after_and_survives_a_reload() {
    let origin = Origin::start("payments", Mode::Status(500)).await;
    let body = format!(
        "upstreams:
  payments:
    targets: [{a}]
    circuit_breaker: {{ min_requests: 5, failure_ratio: 0.5, window: 10s, open_for: 20s }}
routes:
  - name: payments
    match: {{ path_prefix: / }}
    upstream: payments
",
        a = origin.addr()
    );
    let gw = Gateway::start(&body).await;
    let client = testkit::http_client();
    // 5xx answers pass through (and are not retried) until the breaker has seen enough.
    for _ in 0..5 {
        let (status, _) = get_served_by(&client, &gw.url("/pay")).await;
        assert_eq!(status, 500);
    }
    assert_eq!(origin.requests(), 5);
    let resp = client.get(gw.url("/pay")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "urn:problem-type:gateway:upstream-unavailable"
    );
    assert_eq!(
        origin.requests(),
        5,
        "an open breaker costs the origin nothing"
    );

    // A reload that keeps the upstream keeps its breaker (and its state).
    gw.write_config(&format!(
        "{body}  - name: other\n    match: {{ path: /other }}\n    upstream: payments\n"
    ));
    eventually("the reload", WAIT, || async {
        let v = gw.admin_json("/admin/routes").await;
        (v["routes"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    let t = gw.target_state("payments", &origin.addr()).await;
    assert_eq!(t["circuit_breaker"]["state"], "open", "{t}");
    assert_eq!(t["circuit_breaker"]["consecutive_trips"], 1, "{t}");
    let (status, _) = get_served_by(&client, &gw.url("/other")).await;
    assert_eq!(status, 503);
    assert_eq!(origin.requests(), 5);
}

#[tokio::test]
async fn slow_origin_is_a_504_at_the_response_timeout() {
    let echo = Echo::start("slow").await;
    let gw = Gateway::start(&format!(
        "upstreams:
  slow: {{ targets: [{a}], timeouts: {{ response: 300ms }} }}
routes:
  - name: slow
    match: {{ path_prefix: / }}
    upstream: slow
",
        a = echo.addr()
    ))
    .await;
    let started = Instant::now();
    let resp = testkit::http_client()
        .get(gw.url("/x"))
        .header("x-echo-delay-ms", "3000")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 504);
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(problem["type"], "urn:problem-type:gateway:upstream-timeout");
    // Answered at the timeout, not when the origin finally answers (one target: no retry).
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

fn two_targets(a: &Origin, b: &Origin, extra: &str) -> String {
    format!(
        "upstreams:
  svc:
    targets: [{a}, {b}]
    circuit_breaker: {{ enabled: false }}
    {extra}
routes:
  - name: svc
    match: {{ path_prefix: / }}
    upstream: svc
",
        a = a.addr(),
        b = b.addr()
    )
}

#[tokio::test]
async fn a_get_is_retried_on_the_second_target_a_post_is_not() {
    let bad = Origin::start("bad", Mode::Close).await;
    let good = Origin::start("good", Mode::Ok).await;
    let gw = Gateway::start(&two_targets(&bad, &good, "retries: { attempts: 1 }")).await;
    let client = testkit::http_client();

    for _ in 0..4 {
        let (status, by) = get_served_by(&client, &gw.url("/read")).await;
        assert_eq!((status, by.as_str()), (200, "good"));
    }
    assert!(
        bad.requests() >= 1,
        "round robin sent some GETs to the bad target"
    );
    assert_eq!(good.requests(), 4);
    let retries = r#"gateway_upstream_retries_total{route="svc",upstream="svc"}"#;
    assert_eq!(gw.metric(retries).await, Some(bad.requests() as f64));

    // A POST that reached the origin is not repeated: its effect may have happened.
    let (bad_before, good_before) = (bad.requests(), good.requests());
    let mut failed = 0;
    for _ in 0..4 {
        let resp = client
            .post(gw.url("/write"))
            .body("{\"amount\": 10}")
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => {}
            502 => failed += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(failed >= 1, "round robin sent some POSTs to the bad target");
    assert_eq!(bad.requests() - bad_before, failed);
    assert_eq!(good.requests() - good_before, 4 - failed);
}

#[tokio::test]
async fn a_post_whose_connection_was_refused_is_retried() {
    // Nothing was sent, so even a POST may go to the next target.
    let dead = Origin::start("dead", Mode::Ok).await;
    let dead_addr = dead.addr();
    drop(dead);
    let good = Origin::start("good", Mode::Ok).await;
    let gw = Gateway::start(&format!(
        "upstreams:
  svc: {{ targets: [{dead_addr}, {g}], circuit_breaker: {{ enabled: false }} }}
routes:
  - name: svc
    match: {{ path_prefix: / }}
    upstream: svc
",
        g = good.addr()
    ))
    .await;
    let client = testkit::http_client();
    for _ in 0..4 {
        let resp = client
            .post(gw.url("/write?api_key=s3cret-in-query"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(good.requests(), 4);
    // pingora logs each retry; its summary of the request names the route, never the query.
    let log = gw.proc.stdout() + &gw.proc.stderr();
    assert!(log.contains("POST /write route=svc request_id="), "{log}");
    assert!(
        !log.contains("s3cret"),
        "a query string reached the log:\n{log}"
    );
}

#[tokio::test]
async fn the_retry_budget_holds_under_a_full_outage() {
    let a = Origin::start("a", Mode::Close).await;
    let b = Origin::start("b", Mode::Close).await;
    let gw = Gateway::start(&two_targets(
        &a,
        &b,
        "retries: { attempts: 3, backoff: 1ms, max_backoff: 1ms, budget: { ratio: 0.2, min_retries_per_second: 0, window: 30s } }",
    ))
    .await;
    let client = testkit::http_client();
    let n = 50;
    for _ in 0..n {
        let (status, _) = get_served_by(&client, &gw.url("/x")).await;
        assert_eq!(status, 502);
    }
    // Without the budget every request would try both targets (100 attempts); with it,
    // retries add at most 20% (rounded up) to the 50 first attempts.
    let attempts = a.requests() + b.requests();
    assert!(
        (n..=n + 11).contains(&attempts),
        "{attempts} attempts for {n} requests"
    );
    let exhausted = gw
        .metric(r#"gateway_retry_budget_exhausted_total{upstream="svc"}"#)
        .await
        .unwrap();
    assert!(exhausted >= 30.0, "{exhausted}");
}

#[tokio::test]
async fn active_health_checks_take_a_target_out_of_rotation_and_bring_it_back() {
    let a = Origin::start("a", Mode::Ok).await;
    let b = Origin::start("b", Mode::Ok).await;
    let gw = Gateway::start(&two_targets(
        &a,
        &b,
        "health_check: { path: /healthz, interval: 100ms, timeout: 100ms, unhealthy_threshold: 2, healthy_threshold: 2 }",
    ))
    .await;
    let up = format!(
        r#"gateway_upstream_target_up{{target="{}",upstream="svc"}}"#,
        a.addr()
    );
    assert_eq!(gw.metric(&up).await, Some(1.0));
    a.set_healthy(false);
    gw.wait_metric(&up, Want::Eq(0.0)).await;
    let t = gw.target_state("svc", &a.addr()).await;
    assert_eq!(t["health"]["healthy"], false, "{t}");
    assert_eq!(t["health"]["last_error"], "status 503", "{t}");
    let client = testkit::http_client();
    let before = a.requests();
    for _ in 0..6 {
        let (status, by) = get_served_by(&client, &gw.url("/x")).await;
        assert_eq!((status, by.as_str()), (200, "b"));
    }
    assert_eq!(a.requests(), before, "an unhealthy target gets no traffic");

    // Both down and no fallback: 503 with Retry-After (the check interval, rounded up).
    b.set_healthy(false);
    let b_up = format!(
        r#"gateway_upstream_target_up{{target="{}",upstream="svc"}}"#,
        b.addr()
    );
    gw.wait_metric(&b_up, Want::Eq(0.0)).await;
    let resp = client.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");

    a.set_healthy(true);
    gw.wait_metric(&up, Want::Eq(1.0)).await;
    let (status, by) = get_served_by(&client, &gw.url("/x")).await;
    assert_eq!((status, by.as_str()), (200, "a"));
    let checks = format!(
        r#"gateway_health_checks_total{{result="failure",target="{}",upstream="svc"}}"#,
        a.addr()
    );
    assert!(gw.metric(&checks).await.unwrap() >= 2.0);
    assert!(a.health_checks() >= 4);
    let head = a.last_health_check();
    assert!(head.contains(&format!("host: {}\r\n", a.addr())), "{head}");
    assert!(head.contains("user-agent: gateway-health-check"), "{head}");
}
