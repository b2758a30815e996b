//! A route's `fallback:` (short and long form: which failures, which methods, the replay budget)
//! and its `timeouts:` (`response`, `total`), end to end. The headline: an extracted service
//! killed under load loses no request that was safe to replay, and no request that may already
//! have reached it is replayed.
//!
//! Each test starts its own gateway and origins: in-process [`Origin`]s where a failure must
//! happen on cue (close after reading, hang, a fixed status), real `echo` processes where the
//! failure is a process dying.

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{eventually, free_port};

use crate::support::{Echo, Gateway, Load, Mode, Origin, Reply, WAIT, Want, send};

/// Every kind of failure, with the statuses a dying service answers.
const ALL_KINDS: &str =
    "[unavailable, connect_error, timeout, reset, { status: [500, 502, 503, 504] }]";

/// For tests that count every attempt: no breaker opening half-way (then later requests would
/// go `unavailable`, which is another path).
const NO_BREAKER: &str = "circuit_breaker: { enabled: false }";

const TIMEOUT_PROBLEM: &str = "urn:problem-type:gateway:upstream-timeout";

/// `gateway_fallbacks_total` for one route, upstream, fallback and reason.
fn fallbacks(route: &str, upstream: &str, fallback: &str, reason: &str) -> String {
    format!(
        r#"gateway_fallbacks_total{{fallback="{fallback}",reason="{reason}",route="{route}",upstream="{upstream}"}}"#
    )
}

/// `gateway_fallbacks_skipped_total` for one route and reason.
fn skipped(route: &str, reason: &str) -> String {
    format!(r#"gateway_fallbacks_skipped_total{{reason="{reason}",route="{route}"}}"#)
}

fn target_up(upstream: &str, target: &str) -> String {
    format!(r#"gateway_upstream_target_up{{target="{target}",upstream="{upstream}"}}"#)
}

/// Upstreams `new` (one target, `new_extra` under it) and `old`, and route `r` on `/` to `new`
/// with `route_extra` (lines indented four spaces, e.g. its `fallback:`).
fn new_and_old(new: &str, old: &str, new_extra: &str, route_extra: &str) -> String {
    format!(
        "upstreams:
  new:
    targets: [{new}]
    {new_extra}
  old: {{ targets: [{old}] }}
routes:
  - name: r
    match: {{ path_prefix: / }}
    upstream: new
{route_extra}"
    )
}

/// An address nothing listens on: connecting is refused.
fn refused_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Asserts `reply` is the gateway's own problem+json answer with `status` and problem `type`.
fn assert_problem(reply: &Reply, status: u16, problem_type: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/problem+json"),
        "{reply:?}"
    );
    assert_eq!(reply.json()["type"], problem_type, "{reply:?}");
}

/// Asserts `reply` was served by `by` with status 200 after a fallback for `reason`.
#[track_caller]
fn assert_fell_back(reply: &Reply, by: &str, reason: &str) {
    assert_eq!(
        (reply.status, reply.by.as_str(), reply.fallback.as_deref()),
        (200, by, Some(reason)),
        "{reply:?}"
    );
}

// --- The headline: nothing lost when a service dies ---------------------------------------

/// `new`: one echo process with a health check and the default breaker; `old` another echo.
fn headline_config(new: &Echo, old: &Echo) -> String {
    format!(
        "upstreams:
  new:
    targets: [{n}]
    health_check: {{ path: /healthz, interval: 2s, unhealthy_threshold: 2 }}
  old: {{ targets: [{o}] }}
routes:
  - name: r
    match: {{ path_prefix: / }}
    upstream: new
    fallback: {{ upstream: old, on: [unavailable, connect_error, timeout, reset, {{ status: [502, 503, 504] }}] }}
",
        n = new.addr(),
        o = old.addr()
    )
}

#[tokio::test]
async fn a_service_killed_under_get_load_loses_no_request() {
    let mut new = Echo::start("new").await;
    let old = Echo::start("old").await;
    let gw = Gateway::start(&headline_config(&new, &old)).await;
    let url = gw.url("/api/orders?page=1");
    // About 100 requests a second from 4 keep-alive clients, for about 4 s before the kill:
    // the breaker's 10 s window then holds so many successes that it cannot open before the
    // health check takes the target out (up to 4 s), so every request of those seconds meets
    // the dead service (a connect error, a reset, a broken pooled connection) and must still
    // be answered: the scenario that cost clients 502s when fallbacks spent the retry budget.
    let load = Load::start(4, Duration::from_millis(40), move |c| c.get(&url));
    load.wait_for("answers from new", 400, |a| a.by == "new")
        .await;

    let killed = Instant::now();
    new.kill();
    gw.wait_metric(&target_up("new", &new.addr()), Want::Eq(0.0))
        .await;
    let out = Instant::now();
    // The scenario: the load goes on for about 2 s after the target left the rotation.
    load.wait_for("200 requests sent after the target left", 200, move |a| {
        a.sent > out
    })
    .await;
    let seen = load.finish().await;

    let lost: Vec<_> = seen.iter().filter(|a| a.status != 200).collect();
    assert!(
        lost.is_empty(),
        "{} of {} GETs were not answered 200 (the first: {:?})",
        lost.len(),
        seen.len(),
        &lost[..lost.len().min(5)]
    );
    let stranger: Vec<_> = seen
        .iter()
        .filter(|a| a.by != "new" && a.by != "old")
        .collect();
    assert!(stranger.is_empty(), "{stranger:?}");
    let early: Vec<_> = seen
        .iter()
        .filter(|a| a.done < killed && a.by != "new")
        .collect();
    assert!(early.is_empty(), "fell back before the kill: {early:?}");
    let late: Vec<_> = seen
        .iter()
        .filter(|a| a.sent > out && a.by != "old")
        .collect();
    assert!(late.is_empty(), "served by new after it left: {late:?}");
    // Every answer from old is one request sent to the fallback, whatever its reason.
    let by_old = seen.iter().filter(|a| a.by == "old").count() as f64;
    assert!(by_old >= 200.0, "{by_old}");
    let labels = [("route", "r"), ("upstream", "new"), ("fallback", "old")];
    eventually(
        "gateway_fallbacks_total to count every answer from old",
        WAIT,
        || async {
            let sum = gw.metric_sum("gateway_fallbacks_total", &labels).await;
            if sum == by_old { Ok(()) } else { Err(sum) }
        },
    )
    .await;
}

#[tokio::test]
async fn a_service_killed_under_keyless_post_load_fails_only_posts_it_may_have_received() {
    let mut new = Echo::start("new").await;
    let old = Echo::start("old").await;
    let gw = Gateway::start(&headline_config(&new, &old)).await;
    let url = gw.url("/api/orders");
    let load = Load::start(4, Duration::from_millis(40), move |c| {
        c.post(&url).body(r#"{"order": 1}"#)
    });
    load.wait_for("answers from new", 50, |a| a.by == "new")
        .await;

    let killed = Instant::now();
    new.kill();
    gw.wait_metric(&target_up("new", &new.addr()), Want::Eq(0.0))
        .await;
    let out = Instant::now();
    // The scenario: the load goes on for about 2 s after the target left the rotation.
    load.wait_for("200 requests sent after the target left", 200, move |a| {
        a.sent > out
    })
    .await;
    let seen = load.finish().await;

    // A POST that may have reached new fails (502); one that cannot have (refused, or new out
    // of rotation) goes to old.
    let odd: Vec<_> = seen
        .iter()
        .filter(|a| !matches!((a.status, a.by.as_str()), (200, "new" | "old") | (502, _)))
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    let early: Vec<_> = seen
        .iter()
        .filter(|a| a.done < killed && (a.status, a.by.as_str()) != (200, "new"))
        .collect();
    assert!(early.is_empty(), "failed before the kill: {early:?}");
    let late: Vec<_> = seen
        .iter()
        .filter(|a| a.sent > out && (a.status, a.by.as_str()) != (200, "old"))
        .collect();
    assert!(
        late.is_empty(),
        "not served by old after new left: {late:?}"
    );
    let failed = seen.iter().filter(|a| a.status == 502).count();
    assert!(
        failed <= 20,
        "{failed} POSTs failed: only those in flight or on a pooled connection at the kill may"
    );
}

#[tokio::test]
async fn a_keyless_post_that_reached_a_closing_origin_is_not_replayed_a_keyed_one_is() {
    let new = Origin::start("new", Mode::Close).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&new_and_old(
        &new.addr(),
        &old.addr(),
        "",
        &format!("    fallback: {{ upstream: old, on: {ALL_KINDS} }}\n"),
    ))
    .await;
    let client = testkit::http_client();

    let reply = send(client.post(gw.url("/pay")).body("amount=10")).await;
    assert_problem(&reply, 502, "urn:problem-type:gateway:upstream-unreachable");
    assert_eq!(reply.fallback, None, "{reply:?}");
    assert_eq!(new.requests(), 1, "the POST reached new");
    assert_eq!(
        old.requests(),
        0,
        "a POST new may have acted on went to old"
    );
    gw.wait_metric(&skipped("r", "method"), Want::Eq(1.0)).await;

    let reply = send(
        client
            .post(gw.url("/pay"))
            .header("Idempotency-Key", "order-7")
            .body("amount=10"),
    )
    .await;
    assert_fell_back(&reply, "old", "reset");
    assert_eq!((new.requests(), old.requests()), (2, 1));
    let got = &old.received()[0];
    assert_eq!(got.method(), "POST");
    assert!(got.head.starts_with("post /pay "), "{got:?}");
    assert_eq!(got.header("idempotency-key"), Some("order-7"));
    assert_eq!(got.body, b"amount=10", "the replay carries the whole body");
    gw.wait_metric(&fallbacks("r", "new", "old", "reset"), Want::Eq(1.0))
        .await;
    gw.wait_metric(&skipped("r", "method"), Want::Eq(1.0)).await;
}

// --- Which failures: the kinds of `on:` ----------------------------------------------------

#[tokio::test]
async fn a_refused_connection_sends_any_method_and_a_large_body_to_the_short_form_fallback() {
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&new_and_old(
        &refused_addr(),
        &old.addr(),
        NO_BREAKER,
        "    fallback: old\n",
    ))
    .await;
    let client = testkit::http_client();

    // Nothing was sent to new, so even a keyless POST goes on, with a body far over the
    // replay buffer (connect errors are not replays).
    let body: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = send(client.post(gw.url("/upload")).body(body.clone())).await;
    assert_fell_back(&reply, "old", "connect_error");
    let got = old.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method(), "POST");
    assert!(got[0].body == body, "the body reached old intact");

    let reply = send(client.get(gw.url("/read"))).await;
    assert_fell_back(&reply, "old", "connect_error");
    gw.wait_metric(
        &fallbacks("r", "new", "old", "connect_error"),
        Want::Eq(2.0),
    )
    .await;
}

#[tokio::test]
async fn the_short_form_falls_back_on_a_reset_but_not_on_a_status() {
    let closing = Origin::start("closing", Mode::Close).await;
    let failing = Origin::start("failing", Mode::Status(503)).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&format!(
        "upstreams:
  closing: {{ targets: [{c}] }}
  failing: {{ targets: [{f}] }}
  old: {{ targets: [{o}] }}
routes:
  - name: reset
    match: {{ path: /reset }}
    upstream: closing
    fallback: old
  - name: status
    match: {{ path: /status }}
    upstream: failing
    fallback: old
",
        c = closing.addr(),
        f = failing.addr(),
        o = old.addr()
    ))
    .await;
    let client = testkit::http_client();

    let reply = send(client.get(gw.url("/status"))).await;
    assert_eq!(
        (reply.status, reply.by.as_str(), reply.fallback.as_deref()),
        (503, "failing", None),
        "the short form has no status fallback: {reply:?}"
    );
    assert_eq!(old.requests(), 0);

    let reply = send(client.get(gw.url("/reset"))).await;
    assert_fell_back(&reply, "old", "reset");
    assert_eq!((closing.requests(), old.requests()), (1, 1));
}

#[tokio::test]
async fn listed_statuses_and_classes_are_replayed_and_unlisted_ones_pass_through() {
    let s503 = Origin::start("s503", Mode::Status(503)).await;
    let s500 = Origin::start("s500", Mode::Status(500)).await;
    let s404 = Origin::start("s404", Mode::Status(404)).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&format!(
        "upstreams:
  s503: {{ targets: [{a}] }}
  s500: {{ targets: [{b}] }}
  s404: {{ targets: [{c}] }}
  old: {{ targets: [{o}] }}
routes:
  - name: listed
    match: {{ path: /listed }}
    upstream: s503
    fallback: {{ upstream: old, on: [{{ status: [502, 503] }}] }}
  - name: unlisted
    match: {{ path: /unlisted }}
    upstream: s500
    fallback: {{ upstream: old, on: [reset, {{ status: [502, 503] }}] }}
  - name: class
    match: {{ path: /class }}
    upstream: s500
    fallback: {{ upstream: old, on: [{{ status: [5xx] }}] }}
  - name: gone
    match: {{ path: /gone }}
    upstream: s404
    fallback: {{ upstream: old, on: [{{ status: [404] }}] }}
",
        a = s503.addr(),
        b = s500.addr(),
        c = s404.addr(),
        o = old.addr()
    ))
    .await;
    let client = testkit::http_client();

    let reply = send(client.get(gw.url("/listed"))).await;
    assert_fell_back(&reply, "old", "status");
    assert_eq!((s503.requests(), old.requests()), (1, 1));
    // The dropped answer still counts against new's breaker.
    eventually("s503's breaker to count the dropped 503", WAIT, || async {
        let t = gw.target_state("s503", &s503.addr()).await;
        if t["circuit_breaker"]["failures"] == 1 {
            Ok(())
        } else {
            Err(t)
        }
    })
    .await;

    let reply = send(client.get(gw.url("/unlisted"))).await;
    assert_eq!(
        (reply.status, reply.by.as_str(), reply.fallback.as_deref()),
        (500, "s500", None),
        "{reply:?}"
    );
    assert_eq!(old.requests(), 1, "an unlisted status is the answer");

    let reply = send(client.get(gw.url("/class"))).await;
    assert_fell_back(&reply, "old", "status");
    assert_eq!((s500.requests(), old.requests()), (2, 2));

    let reply = send(client.get(gw.url("/gone"))).await;
    assert_fell_back(&reply, "old", "status");
    assert_eq!((s404.requests(), old.requests()), (1, 3));

    for (route, upstream) in [("listed", "s503"), ("class", "s500"), ("gone", "s404")] {
        gw.wait_metric(&fallbacks(route, upstream, "old", "status"), Want::Eq(1.0))
            .await;
    }
    let unlisted = gw
        .metric_sum("gateway_fallbacks_total", &[("route", "unlisted")])
        .await;
    assert_eq!(unlisted, 0.0);
}

#[tokio::test]
async fn a_listed_status_to_a_keyless_post_is_the_origins_own_answer() {
    let new = Origin::start("new", Mode::Status(503)).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&new_and_old(
        &new.addr(),
        &old.addr(),
        "",
        "    fallback: { upstream: old, on: [{ status: [503] }] }\n",
    ))
    .await;
    let client = testkit::http_client();

    let reply = send(client.post(gw.url("/orders")).body("x")).await;
    assert_eq!(
        (reply.status, reply.by.as_str(), reply.body.as_str()),
        (503, "new", "new"),
        "{reply:?}"
    );
    assert_eq!(reply.fallback, None);
    assert_eq!((new.requests(), old.requests()), (1, 0));
    gw.wait_metric(&skipped("r", "method"), Want::Eq(1.0)).await;

    let reply = send(
        client
            .post(gw.url("/orders"))
            .header("idempotency-key", "k1")
            .body("x"),
    )
    .await;
    assert_fell_back(&reply, "old", "status");
    assert_eq!((new.requests(), old.requests()), (2, 1));
    assert_eq!(old.received()[0].body, b"x");
}

#[tokio::test]
async fn a_request_the_origin_sat_on_past_the_response_timeout_goes_to_the_fallback() {
    let new = Origin::start("new", Mode::Hang).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&new_and_old(
        &new.addr(),
        &old.addr(),
        "timeouts: { response: 300ms }",
        "    fallback: { upstream: old, on: [timeout] }\n",
    ))
    .await;
    let client = testkit::http_client();

    let started = Instant::now();
    let reply = send(client.get(gw.url("/slow"))).await;
    assert_fell_back(&reply, "old", "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((new.requests(), old.requests()), (1, 1));

    // A keyless POST that timed out may be in progress at new: its 504 reaches the client.
    let reply = send(client.post(gw.url("/slow")).body("x")).await;
    assert_problem(&reply, 504, TIMEOUT_PROBLEM);
    assert_eq!(reply.fallback, None);
    assert_eq!((new.requests(), old.requests()), (2, 1));
    gw.wait_metric(&fallbacks("r", "new", "old", "timeout"), Want::Eq(1.0))
        .await;
    gw.wait_metric(&skipped("r", "method"), Want::Eq(1.0)).await;
}

#[tokio::test]
async fn a_target_out_of_rotation_sends_any_method_to_the_fallback() {
    let new = Origin::start("new", Mode::Ok).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&new_and_old(
        &new.addr(),
        &old.addr(),
        "health_check: { path: /healthz, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1 }",
        &format!("    fallback: {{ upstream: old, on: {ALL_KINDS} }}\n"),
    ))
    .await;
    new.set_healthy(false);
    gw.wait_metric(&target_up("new", &new.addr()), Want::Eq(0.0))
        .await;
    let client = testkit::http_client();

    let reply = send(client.post(gw.url("/orders")).body("x")).await;
    assert_fell_back(&reply, "old", "unavailable");
    let reply = send(client.delete(gw.url("/orders/1"))).await;
    assert_fell_back(&reply, "old", "unavailable");
    assert_eq!((new.requests(), old.requests()), (0, 2));
    gw.wait_metric(&fallbacks("r", "new", "old", "unavailable"), Want::Eq(2.0))
        .await;
}

#[tokio::test]
async fn a_fallback_with_no_available_target_is_counted_and_not_tried() {
    let down = Origin::start("down", Mode::Ok).await;
    let closing = Origin::start("closing", Mode::Close).await;
    let old = Origin::start("old", Mode::Ok).await;
    let check =
        "health_check: { path: /healthz, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1 }";
    let gw = Gateway::start(&format!(
        "upstreams:
  down:
    targets: [{d}]
    {check}
  closing: {{ targets: [{c}] }}
  old:
    targets: [{o}]
    {check}
routes:
  - name: unavailable
    match: {{ path: /unavailable }}
    upstream: down
    fallback: {{ upstream: old, on: {ALL_KINDS} }}
  - name: reset
    match: {{ path: /reset }}
    upstream: closing
    fallback: {{ upstream: old, on: {ALL_KINDS} }}
",
        d = down.addr(),
        c = closing.addr(),
        o = old.addr()
    ))
    .await;
    down.set_healthy(false);
    old.set_healthy(false);
    gw.wait_metric(&target_up("down", &down.addr()), Want::Eq(0.0))
        .await;
    gw.wait_metric(&target_up("old", &old.addr()), Want::Eq(0.0))
        .await;
    let client = testkit::http_client();

    // Both sides out: the documented 503 with Retry-After.
    let reply = send(client.get(gw.url("/unavailable"))).await;
    assert_problem(&reply, 503, "urn:problem-type:gateway:upstream-unavailable");
    gw.wait_metric(&skipped("unavailable", "no_target"), Want::Eq(1.0))
        .await;

    // The reset is the error the client gets (502, or 503 for the fallback's state: the
    // contract leaves this one open); old is not tried.
    let reply = send(client.get(gw.url("/reset"))).await;
    assert!(matches!(reply.status, 502 | 503), "{reply:?}");
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(closing.requests(), 1);
    gw.wait_metric(&skipped("reset", "no_target"), Want::Eq(1.0))
        .await;
    assert_eq!(old.requests(), 0, "a fallback out of rotation got traffic");
    assert_eq!(down.requests(), 0);
    let sent = gw
        .metric_sum("gateway_fallbacks_total", &[("fallback", "old")])
        .await;
    assert_eq!(sent, 0.0, "nothing was sent to the fallback");
}

// --- Which requests: methods, keys, body size, the budget ---------------------------------

#[tokio::test]
async fn replays_follow_the_methods_list_and_an_idempotency_key_overrides_it() {
    let new = Origin::start("new", Mode::Close).await;
    let strict = Origin::start("strict", Mode::Close).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&format!(
        "upstreams:
  new: {{ targets: [{n}], {NO_BREAKER} }}
  strict: {{ targets: [{s}], {NO_BREAKER} }}
  old: {{ targets: [{o}] }}
routes:
  - name: r
    match: {{ path_prefix: /r/ }}
    upstream: new
    fallback: {{ upstream: old, on: [reset] }}
  - name: strict
    match: {{ path_prefix: /strict/ }}
    upstream: strict
    fallback: {{ upstream: old, on: [reset], methods: [GET] }}
",
        n = new.addr(),
        s = strict.addr(),
        o = old.addr()
    ))
    .await;
    let client = testkit::http_client();
    let method = |m: &str| reqwest::Method::from_bytes(m.as_bytes()).unwrap();

    // (route, method, Idempotency-Key, replayed to old)
    let table = [
        ("/r/", "GET", None, true),
        ("/r/", "HEAD", None, true),
        ("/r/", "OPTIONS", None, true),
        ("/r/", "PUT", None, true),
        ("/r/", "DELETE", None, true),
        ("/r/", "POST", None, false),
        ("/r/", "PATCH", None, false),
        ("/r/", "PATCH", Some("p-1"), true),
        ("/r/", "POST", Some("p-2"), true),
        ("/strict/", "GET", None, true),
        ("/strict/", "PUT", None, false),
        ("/strict/", "DELETE", None, false),
        ("/strict/", "PUT", Some("s-1"), true),
    ];
    for (prefix, m, key, replayed) in table {
        let before = old.requests();
        let mut req = client.request(method(m), gw.url(&format!("{prefix}x")));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let reply = send(req).await;
        let case = format!("{m} {prefix} key {key:?}: {reply:?}");
        if replayed {
            assert_fell_back(&reply, "old", "reset");
            assert_eq!(old.requests(), before + 1, "{case}");
            assert_eq!(old.received().last().unwrap().method(), m, "{case}");
        } else {
            assert_eq!(reply.status, 502, "{case}");
            assert_eq!(reply.fallback, None, "{case}");
            assert_eq!(old.requests(), before, "{case}");
        }
    }
    assert_eq!(new.requests(), 9);
    assert_eq!(strict.requests(), 4);
    gw.wait_metric(&skipped("r", "method"), Want::Eq(2.0)).await;
    gw.wait_metric(&skipped("strict", "method"), Want::Eq(2.0))
        .await;
    gw.wait_metric(&fallbacks("r", "new", "old", "reset"), Want::Eq(7.0))
        .await;
}

#[tokio::test]
async fn a_body_over_the_replay_buffer_is_not_replayed() {
    let new = Origin::start("new", Mode::Close).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&new_and_old(
        &new.addr(),
        &old.addr(),
        NO_BREAKER,
        &format!("    fallback: {{ upstream: old, on: {ALL_KINDS} }}\n"),
    ))
    .await;
    let client = testkit::http_client();

    let large = vec![b'L'; 100 * 1024];
    let reply = send(client.put(gw.url("/doc")).body(large)).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(reply.fallback, None);
    assert_eq!(new.requests(), 1, "the whole body reached new");
    assert_eq!(new.received()[0].body.len(), 100 * 1024);
    assert_eq!(old.requests(), 0, "a body past 64 KiB cannot be replayed");
    gw.wait_metric(&skipped("r", "body_too_large"), Want::Eq(1.0))
        .await;

    // Well inside the buffer: replayed byte for byte.
    let fits: Vec<u8> = (0..60 * 1024).map(|i| (i % 253) as u8).collect();
    let reply = send(client.put(gw.url("/doc")).body(fits.clone())).await;
    assert_fell_back(&reply, "old", "reset");
    assert!(old.received()[0].body == fits, "the replayed body differs");
    gw.wait_metric(&skipped("r", "body_too_large"), Want::Eq(1.0))
        .await;
}

#[tokio::test]
async fn the_budget_bounds_replays_but_never_connect_errors() {
    // One target resets every request (a replay: budgeted), the other refuses (not budgeted).
    // No retries on the upstream, so each request fails once on one of them, then falls back.
    let closing = Origin::start("closing", Mode::Close).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&new_and_old(
        &format!("{}, {}", closing.addr(), refused_addr()),
        &old.addr(),
        &format!("{NO_BREAKER}\n    retries: {{ attempts: 0 }}"),
        &format!(
            "    fallback: {{ upstream: old, on: {ALL_KINDS}, budget: {{ ratio: 0, min_per_second: 1, window: 10s }} }}\n"
        ),
    ))
    .await;
    let client = testkit::http_client();

    // Until 15 requests have been reset (10 replays allowed in the 10 s window, 5 refused),
    // whatever the refused target took meanwhile. Bounded: 60 requests.
    let mut replies = Vec::new();
    while closing.requests() < 15 {
        assert!(
            replies.len() < 60,
            "the closing target got {}",
            closing.requests()
        );
        replies.push(send(client.get(gw.url("/x"))).await);
    }
    let refused = replies.len() - 15;
    assert!(
        refused >= 5,
        "round robin sent {refused} of {} to the refused target",
        replies.len()
    );
    let failed: Vec<_> = replies.iter().filter(|r| r.status != 200).collect();
    assert_eq!(failed.len(), 5, "{failed:?}");
    assert!(failed.iter().all(|r| r.status == 502), "{failed:?}");
    assert!(
        replies
            .iter()
            .filter(|r| r.status == 200)
            .all(|r| r.by == "old"
                && matches!(r.fallback.as_deref(), Some("reset" | "connect_error")))
    );
    assert_eq!(old.requests(), 10 + refused);
    gw.wait_metric(&fallbacks("r", "new", "old", "reset"), Want::Eq(10.0))
        .await;
    gw.wait_metric(
        &fallbacks("r", "new", "old", "connect_error"),
        Want::Eq(refused as f64),
    )
    .await;
    gw.wait_metric(&skipped("r", "budget"), Want::Eq(5.0)).await;
}

// --- Where: retries first, then the fallback, then nothing --------------------------------

#[tokio::test]
async fn retries_on_the_routes_upstream_come_before_the_fallback() {
    let a = Origin::start("a", Mode::Close).await;
    let b = Origin::start("b", Mode::Ok).await;
    let c = Origin::start("c", Mode::Close).await;
    let d = Origin::start("d", Mode::Close).await;
    let old = Origin::start("old", Mode::Ok).await;
    let gw = Gateway::start(&format!(
        "upstreams:
  half: {{ targets: [{a}, {b}], retries: {{ attempts: 1, backoff: 1ms }}, {NO_BREAKER} }}
  none: {{ targets: [{c}, {d}], retries: {{ attempts: 1, backoff: 1ms }}, {NO_BREAKER} }}
  old: {{ targets: [{o}] }}
routes:
  - name: half
    match: {{ path: /half }}
    upstream: half
    fallback: {{ upstream: old, on: {ALL_KINDS} }}
  - name: none
    match: {{ path: /none }}
    upstream: none
    fallback: {{ upstream: old, on: {ALL_KINDS} }}
",
        a = a.addr(),
        b = b.addr(),
        c = c.addr(),
        d = d.addr(),
        o = old.addr()
    ))
    .await;
    let client = testkit::http_client();

    for _ in 0..4 {
        let reply = send(client.get(gw.url("/half"))).await;
        assert_eq!(
            (reply.status, reply.by.as_str(), reply.fallback.as_deref()),
            (200, "b", None),
            "{reply:?}"
        );
    }
    assert!(a.requests() >= 1, "round robin sent some GETs to a");
    assert_eq!(
        old.requests(),
        0,
        "the upstream's other target answered first"
    );

    for _ in 0..4 {
        let reply = send(client.get(gw.url("/none"))).await;
        assert_fell_back(&reply, "old", "reset");
    }
    assert_eq!(
        c.requests() + d.requests(),
        8,
        "both targets tried, once each"
    );
    assert_eq!(old.requests(), 4);
}

#[tokio::test]
async fn a_failure_at_the_fallback_is_not_replayed_anywhere() {
    let new = Origin::start("new", Mode::Close).await;
    let old = Origin::start("old", Mode::Close).await;
    let new503 = Origin::start("new503", Mode::Status(503)).await;
    let old503 = Origin::start("old503", Mode::Status(503)).await;
    let gw = Gateway::start(&format!(
        "upstreams:
  new: {{ targets: [{n}] }}
  old: {{ targets: [{o}] }}
  new503: {{ targets: [{n5}] }}
  old503: {{ targets: [{o5}] }}
routes:
  - name: reset
    match: {{ path: /reset }}
    upstream: new
    fallback: {{ upstream: old, on: {ALL_KINDS} }}
  - name: status
    match: {{ path: /status }}
    upstream: new503
    fallback: {{ upstream: old503, on: {ALL_KINDS} }}
",
        n = new.addr(),
        o = old.addr(),
        n5 = new503.addr(),
        o5 = old503.addr()
    ))
    .await;
    let client = testkit::http_client();

    let reply = send(client.get(gw.url("/reset"))).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!((new.requests(), old.requests()), (1, 1));

    // The fallback's own 503 is the answer; it is not sent back to new503 or to old503 again.
    let reply = send(client.get(gw.url("/status"))).await;
    assert_eq!(
        (reply.status, reply.by.as_str(), reply.fallback.as_deref()),
        (503, "old503", Some("status")),
        "{reply:?}"
    );
    assert_eq!((new503.requests(), old503.requests()), (1, 1));
}

// --- Route timeouts ----------------------------------------------------------------------

#[tokio::test]
async fn a_routes_response_timeout_overrides_its_upstreams_both_ways() {
    let hang = Origin::start("hang", Mode::Hang).await;
    let echo = Echo::start("slow").await;
    let gw = Gateway::start(&format!(
        "upstreams:
  patient: {{ targets: [{h}], timeouts: {{ response: 10s }} }}
  hasty: {{ targets: [{e}], timeouts: {{ response: 300ms }} }}
routes:
  - name: shorter
    match: {{ path: /shorter }}
    upstream: patient
    timeouts: {{ response: 500ms }}
  - name: longer
    match: {{ path: /longer }}
    upstream: hasty
    timeouts: {{ response: 5s }}
",
        h = hang.addr(),
        e = echo.addr()
    ))
    .await;
    let client = testkit::http_client();

    let started = Instant::now();
    let reply = send(client.get(gw.url("/shorter"))).await;
    let took = started.elapsed();
    assert_problem(&reply, 504, TIMEOUT_PROBLEM);
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(
        took < Duration::from_secs(5),
        "the upstream's 10s applied: {took:?}"
    );
    assert_eq!(hang.requests(), 1);

    // The origin answers after 1 s: past the upstream's 300ms, inside the route's 5s.
    let reply = send(
        client
            .get(gw.url("/longer"))
            .header("x-echo-delay-ms", "1000"),
    )
    .await;
    assert_eq!(
        (reply.status, reply.by.as_str()),
        (200, "slow"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_routes_total_timeout_bounds_every_attempt_together() {
    let lone = Origin::start("lone", Mode::Hang).await;
    let a = Origin::start("a", Mode::Hang).await;
    let b = Origin::start("b", Mode::Hang).await;
    let new = Origin::start("new", Mode::Hang).await;
    let old = Origin::start("old", Mode::Hang).await;
    let gw = Gateway::start(&format!(
        "upstreams:
  lone: {{ targets: [{l}], timeouts: {{ response: 10s }} }}
  pair:
    targets: [{a}, {b}]
    timeouts: {{ response: 10s }}
    retries: {{ attempts: 3, backoff: 1ms }}
    {NO_BREAKER}
  new: {{ targets: [{n}], timeouts: {{ response: 300ms }} }}
  old: {{ targets: [{o}], timeouts: {{ response: 10s }} }}
routes:
  - name: lone
    match: {{ path: /lone }}
    upstream: lone
    timeouts: {{ total: 1s }}
  - name: pair
    match: {{ path: /pair }}
    upstream: pair
    timeouts: {{ total: 1s }}
  - name: fallback
    match: {{ path: /fallback }}
    upstream: new
    timeouts: {{ total: 1s }}
    fallback: {{ upstream: old, on: [timeout] }}
",
        l = lone.addr(),
        a = a.addr(),
        b = b.addr(),
        n = new.addr(),
        o = old.addr()
    ))
    .await;
    let client = testkit::http_client();

    // Without `total`, each would wait 10 s (an attempt at its response timeout) or more.
    for path in ["/lone", "/pair", "/fallback"] {
        let started = Instant::now();
        let reply = send(client.get(gw.url(path))).await;
        let took = started.elapsed();
        assert_problem(&reply, 504, TIMEOUT_PROBLEM);
        assert!(took >= Duration::from_millis(900), "{path}: {took:?}");
        assert!(took < Duration::from_secs(5), "{path}: {took:?}");
    }
    assert_eq!(lone.requests(), 1);
    assert!(a.requests() + b.requests() >= 1);
    assert_eq!(new.requests(), 1);
    assert_eq!(old.requests(), 1, "the fallback ran inside the total");
}

// --- Config ------------------------------------------------------------------------------

fn validate(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        file.display().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_new_keys_validate_and_their_mistakes_name_the_field() {
    let upstreams = "upstreams:
  new:
    targets: [127.0.0.1:1]
    timeouts: { connect: 1s, response: 30s, idle: 60s, upgraded_idle: 2h }
  old: { targets: [127.0.0.1:2] }
";
    let good = format!(
        "{upstreams}routes:
  - name: long
    match: {{ path_prefix: /long/ }}
    upstream: new
    timeouts: {{ response: 500ms, upgraded_idle: 1h, total: 2s }}
    fallback:
      upstream: old
      on: [unavailable, connect_error, timeout, reset, {{ status: [500, 502, 503, 504, 4xx] }}]
      methods: [GET, HEAD, OPTIONS, PUT, DELETE]
      budget: {{ ratio: 0.1, min_per_second: 10, window: 10s }}
  - name: short
    match: {{ path_prefix: /short/ }}
    upstream: new
    fallback: old
"
    );
    let (code, _, stderr) = validate(&good);
    assert_eq!(code, 0, "{stderr}");

    let bad = format!(
        "{upstreams}routes:
  - name: a
    match: {{ path_prefix: /a/ }}
    upstream: new
    timeouts: {{ idle: 5s }}
  - name: b
    match: {{ path_prefix: /b/ }}
    upstream: new
    fallback: {{ upstream: old, on: [{{ status: [302] }}] }}
  - name: c
    match: {{ path_prefix: /c/ }}
    upstream: new
    fallback: {{ upstream: old, on: [explode] }}
  - name: d
    match: {{ path_prefix: /d/ }}
    upstream: new
    fallback: {{ upstream: nope }}
"
    );
    let (code, file, stderr) = validate(&bad);
    assert_ne!(code, 0);
    let lines: Vec<&str> = stderr.lines().collect();
    for field in [
        "routes[0].timeouts",
        "routes[1].fallback.on[0]",
        "routes[2].fallback.on[0]",
        "routes[3].fallback",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{file}:")) && l.contains(&format!(" {field}"))),
            "no error for {field} in:\n{stderr}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("routes[0].timeouts") && l.contains("idle")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("routes[1].fallback.on[0]") && l.contains("302")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("routes[3].fallback") && l.contains("nope")),
        "{stderr}"
    );
}
