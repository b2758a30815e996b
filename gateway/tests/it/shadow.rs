//! Shadow traffic with verdicts (issue 19, `docs/shadow.md`): a route's copy of each request goes
//! to a candidate, whose answer is compared with the primary's and never returned. Real gateway,
//! real origins: scripted axum origins in this process (an answer per request, every request
//! recorded, holding requests until the test lets them go) and `echo` processes where one must
//! be killed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use testkit::eventually;

use crate::support::{
    AuthService, Canned, Echo, Gateway, Scripted, Seen, WAIT, WsOrigin, metric_sum,
};

const REQUESTS: &str = "gateway_shadow_requests_total";
const SKIPPED: &str = "gateway_shadow_skipped_total";

/// `gateway_shadow_requests_total{route,result}`.
fn verdict(route: &str, result: &str) -> String {
    format!("{REQUESTS}{{route=\"{route}\",result=\"{result}\"}}")
}

/// `gateway_shadow_skipped_total{route,reason}`.
fn skipped(route: &str, reason: &str) -> String {
    format!("{SKIPPED}{{route=\"{route}\",reason=\"{reason}\"}}")
}

/// The route's entry in `GET /admin/shadow`.
async fn shadow_view(gw: &Gateway, route: &str) -> Value {
    let v = gw.admin_json("/admin/shadow").await;
    v["routes"]
        .as_array()
        .unwrap_or_else(|| panic!("no routes in {v}"))
        .iter()
        .find(|r| r["route"] == route)
        .cloned()
        .unwrap_or_else(|| panic!("no shadowed route {route} in {v}"))
}

/// `GET /admin/shadow/ROUTE/mismatches`.
async fn mismatches(gw: &Gateway, route: &str) -> Value {
    gw.admin_json(&format!("/admin/shadow/{route}/mismatches"))
        .await
}

/// Waits until `n` copies of `route` have a verdict (every `result` of
/// `gateway_shadow_requests_total` together), then checks no more than `n` do.
async fn wait_judged(gw: &Gateway, route: &str, n: f64) {
    let total = eventually(&format!("{n} verdicts on route {route}"), WAIT, || async {
        let total = gw.metric_sum(REQUESTS, &[("route", route)]).await;
        if total >= n { Ok(total) } else { Err(total) }
    })
    .await;
    assert_eq!(total, n, "more verdicts than copies on {route}");
}

/// The route's counts in `/admin/shadow`, as `{match, mismatch, noise, shadow_error,
/// primary_error}`.
async fn counts(gw: &Gateway, route: &str) -> Value {
    shadow_view(gw, route).await["counts"].clone()
}

fn counts_of(matched: u64, mismatch: u64, noise: u64, shadow_error: u64) -> Value {
    json!({ "match": matched, "mismatch": mismatch, "noise": noise,
            "shadow_error": shadow_error, "primary_error": 0 })
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut req = testkit::http_client().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// The trace id and span id of a `traceparent`.
fn trace_parts(tp: &str) -> (String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "not a traceparent: {tp}");
    assert_eq!(parts[1].len(), 32, "{tp}");
    assert_eq!(parts[2].len(), 16, "{tp}");
    (parts[1].to_string(), parts[2].to_string())
}

// ---- 1. identical origins -------------------------------------------------------------------

/// A small catalogue service; two instances of it are identical origins. `…/big` is a ~300 KB
/// JSON document sent chunked (no `Content-Length`), `…/missing` a 404.
fn catalogue(seen: &Seen) -> Canned {
    match seen.path.as_str() {
        p if p.ends_with("/big") => {
            let items: Vec<Value> = (0..5_000)
                .map(|i| json!({ "id": i, "sku": format!("SKU-{i:06}"), "price": "12.50" }))
                .collect();
            Canned {
                chunked: true,
                ..Canned::json(&json!({ "items": items }))
            }
        }
        p if p.ends_with("/missing") => Canned {
            status: 404,
            ..Canned::json(&json!({ "error": "not found" }))
        },
        path => {
            let mut c = Canned::json(&json!({
                "path": path, "query": seen.query, "items": [1, 2, 3], "price": "12.50",
            }));
            c.headers.push(("etag".into(), "\"v1\"".into()));
            c.headers.push(("x-catalogue".into(), "yes".into()));
            c
        }
    }
}

/// What a client sees of one answer: status, every header but `Date` (in order), body bytes.
type ClientView = (u16, Vec<(String, String)>, Vec<u8>);

async fn client_sees(gw: &Gateway, method: &str, path: &str, request_id: &str) -> ClientView {
    let client = testkit::http_client();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = client
        .request(method, gw.url(path))
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(k, _)| *k != "date")
        .map(|(k, v)| {
            let v = v.to_str().unwrap_or_else(|_| panic!("{k}: not text"));
            (k.to_string(), v.to_string())
        })
        .collect();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn identical_origins_all_match_and_the_client_answer_is_the_same_as_without_a_shadow() {
    let (primary, candidate) = (
        Scripted::start(catalogue).await,
        Scripted::start(catalogue).await,
    );
    let upstreams = format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\n",
        primary.addr(),
        candidate.addr()
    );
    let route = "routes:\n  - name: all\n    match: { path_prefix: / }\n    upstream: p\n";
    let shadow = "    shadow: { upstream: c, compare: { headers: [content-type, etag] } }\n";
    let (with, without) = (
        Gateway::start(&format!("{upstreams}{route}{shadow}")).await,
        Gateway::start(&format!("{upstreams}{route}")).await,
    );

    let requests = [
        ("GET", "/a?x=1"),
        ("GET", "/b"),
        ("GET", "/big"),
        ("GET", "/missing"),
        ("HEAD", "/a?x=1"),
    ];
    for (i, (method, path)) in requests.iter().enumerate() {
        let rid = format!("rid-same-{i}");
        let shadowed = client_sees(&with, method, path, &rid).await;
        let plain = client_sees(&without, method, path, &rid).await;
        assert_eq!(shadowed.0, plain.0, "{method} {path}: status");
        assert_eq!(shadowed.1, plain.1, "{method} {path}: headers");
        assert!(
            shadowed.2 == plain.2,
            "{method} {path}: body ({} bytes against {})",
            shadowed.2.len(),
            plain.2.len()
        );
        if *path == "/big" {
            assert!(shadowed.2.len() > 200_000, "{}", shadowed.2.len());
        }
    }

    let n = requests.len() as f64;
    wait_judged(&with, "all", n).await;
    assert_eq!(with.metric(&verdict("all", "match")).await, Some(n));
    let view = shadow_view(&with, "all").await;
    assert_eq!(view["upstream"], "c");
    assert_eq!(view["counts"], counts_of(5, 0, 0, 0), "{view}");
    assert_eq!(view["parity"]["matched"], 5);
    assert_eq!(view["parity"]["trials"], 5);
    assert_eq!(view["parity"]["ratio"], 1.0);
    assert_eq!(view["top_pointers"], json!([]));
    assert_eq!(view["mismatches_recorded"], 0);
    assert_eq!(with.metric_sum(SKIPPED, &[("route", "all")]).await, 0.0);
    for side in ["primary", "shadow"] {
        let count =
            format!("gateway_shadow_duration_seconds_count{{route=\"all\",side=\"{side}\"}}");
        assert_eq!(with.metric(&count).await, Some(n), "{count}");
    }
    // The candidate got each request the shadowed gateway's primary got, and nothing else.
    let copied: Vec<(String, String, Option<String>)> = candidate
        .seen()
        .into_iter()
        .map(|s| (s.method, s.path, s.query))
        .collect();
    let expected: Vec<(String, String, Option<String>)> = requests
        .iter()
        .map(|(m, p)| {
            let (path, query) = match p.split_once('?') {
                Some((path, q)) => (path.to_string(), Some(q.to_string())),
                None => (p.to_string(), None),
            };
            (m.to_string(), path, query)
        })
        .collect();
    assert_eq!(
        copied.iter().collect::<BTreeSet<_>>(),
        expected.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(copied.len(), expected.len());
}

// ---- 2. a candidate adding a field, then a reload that ignores it ----------------------------

fn added_field_config(p: &str, c: &str, ignore: &str, timeout: &str) -> String {
    format!(
        "upstreams:\n  p: {{ targets: [{p}] }}\n  c: {{ targets: [{c}] }}\nroutes:\n  - name: users\n    match: {{ path_prefix: /users/ }}\n    upstream: p\n    shadow: {{ upstream: c, timeout: {timeout}, compare: {{ ignore: [{ignore}] }}, record: {{ mismatches: 10 }} }}\n"
    )
}

/// Rewrites the config and waits until the gateway runs it (`/admin/shadow`'s hash changes).
async fn reload(gw: &Gateway, body: &str) {
    let hash = gw.admin_json("/admin/shadow").await["hash"].clone();
    gw.write_config(body);
    eventually("the reload to apply", WAIT, || async {
        let now = gw.admin_json("/admin/shadow").await["hash"].clone();
        if now != hash { Ok(()) } else { Err(now) }
    })
    .await;
    assert_eq!(
        gw.metric("gateway_config_last_reload_successful").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_candidate_adding_a_field_mismatches_there_until_a_reload_ignores_it() {
    let user = json!({ "id": 7, "name": "ada", "tags": ["a"] });
    let primary = Scripted::start({
        let user = user.clone();
        move |_| Canned::json(&user)
    })
    .await;
    let candidate = Scripted::start(move |_| {
        let mut u = user.clone();
        u["extra"] = json!({ "beta": true });
        Canned::json(&u)
    })
    .await;
    let gw = Gateway::start(&added_field_config(
        &primary.addr(),
        &candidate.addr(),
        "/created_at",
        "2s",
    ))
    .await;

    for i in 0..3 {
        let rid = format!("rid-add-{i}");
        let (status, body) = get(&gw, "/users/7?token=q-secret", &[("x-request-id", &rid)]).await;
        assert_eq!(status, 200);
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            got.get("extra").is_none(),
            "the client got the primary's answer: {got}"
        );
    }
    wait_judged(&gw, "users", 3.0).await;
    assert_eq!(gw.metric(&verdict("users", "mismatch")).await, Some(3.0));

    let view = shadow_view(&gw, "users").await;
    assert_eq!(view["counts"], counts_of(0, 3, 0, 0), "{view}");
    assert_eq!(view["parity"]["trials"], 3);
    assert_eq!(view["parity"]["ratio"], 0.0);
    assert_eq!(
        view["top_pointers"],
        json!([{ "pointer": "/extra", "count": 3, "overcount": 0 }])
    );
    assert_eq!(view["mismatches_recorded"], 3);

    let recorded = mismatches(&gw, "users").await;
    assert_eq!(recorded["route"], "users");
    assert_eq!(recorded["capacity"], 10);
    assert_eq!(recorded["recorded_total"], 3);
    let list = recorded["mismatches"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{recorded}");
    // The trace id each request had at the primary, by request id.
    let traces: std::collections::HashMap<String, String> = primary
        .seen()
        .iter()
        .map(|s| {
            let rid = s.header("x-request-id").unwrap().to_string();
            (rid, trace_parts(s.header("traceparent").unwrap()).0)
        })
        .collect();
    let mut ids = BTreeSet::new();
    for m in list {
        let rid = m["request_id"].as_str().unwrap();
        ids.insert(rid.to_string());
        assert_eq!(m["method"], "GET");
        assert_eq!(m["path"], "/users/7", "never the query string");
        assert_eq!(m["status"], json!({ "primary": 200, "candidate": 200 }));
        assert_eq!(
            m["differences"],
            json!([{ "pointer": "/extra", "candidate": { "beta": true } }]),
            "{m}"
        );
        assert_eq!(m["more_differences"], 0);
        assert_eq!(m["noise_differences"], 0);
        assert_eq!(
            m["trace_id"].as_str(),
            traces.get(rid).map(String::as_str),
            "{m}"
        );
        assert!(m["age_seconds"].is_u64(), "{m}");
    }
    assert_eq!(
        ids,
        BTreeSet::from(["rid-add-0", "rid-add-1", "rid-add-2"].map(String::from))
    );
    let text = testkit::http_client()
        .get(gw.admin_url("/admin/shadow/users/mismatches"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("q-secret"), "{text}");

    // A reload that leaves the comparison as it was keeps what the route learned.
    reload(
        &gw,
        &added_field_config(&primary.addr(), &candidate.addr(), "/created_at", "3s"),
    )
    .await;
    let view = shadow_view(&gw, "users").await;
    assert_eq!(view["counts"], counts_of(0, 3, 0, 0), "{view}");
    assert_eq!(mismatches(&gw, "users").await["recorded_total"], 3);

    // A reload that ignores the new field: the next copies match.
    reload(
        &gw,
        &added_field_config(
            &primary.addr(),
            &candidate.addr(),
            "/created_at, /extra",
            "3s",
        ),
    )
    .await;
    for i in 0..2 {
        let (status, _) = get(
            &gw,
            "/users/7",
            &[("x-request-id", &format!("rid-ign-{i}"))],
        )
        .await;
        assert_eq!(status, 200);
    }
    wait_judged(&gw, "users", 5.0).await;
    assert_eq!(gw.metric(&verdict("users", "match")).await, Some(2.0));
    assert_eq!(gw.metric(&verdict("users", "mismatch")).await, Some(3.0));
    // Another comparison, counted afresh (docs/shadow.md, Reloads).
    let view = shadow_view(&gw, "users").await;
    assert_eq!(view["counts"], counts_of(2, 0, 0, 0), "{view}");
    assert_eq!(view["top_pointers"], json!([]));
}

// ---- 3. reordered arrays ---------------------------------------------------------------------

#[tokio::test]
async fn reordered_arrays_mismatch_unless_the_pointer_is_unordered() {
    let primary = Scripted::start(|_| {
        Canned::json(&json!({ "items": [{ "id": 1 }, { "id": 2 }, { "id": 3 }], "total": 3 }))
    })
    .await;
    // The same items in another order; under `/dropped`, one item fewer (a real difference
    // that `unordered` must still report).
    let candidate = Scripted::start(|s| {
        let items = if s.path.ends_with("/dropped") {
            json!([{ "id": 3 }, { "id": 1 }])
        } else {
            json!([{ "id": 3 }, { "id": 1 }, { "id": 2 }])
        };
        Canned::json(&json!({ "total": 3, "items": items }))
    })
    .await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\nroutes:\n  - name: ordered\n    match: {{ path_prefix: /ordered/ }}\n    upstream: p\n    shadow: {{ upstream: c }}\n  - name: unordered\n    match: {{ path_prefix: /unordered/ }}\n    upstream: p\n    shadow: {{ upstream: c, compare: {{ unordered: [/items] }} }}\n",
        primary.addr(),
        candidate.addr()
    ))
    .await;

    for path in ["/ordered/a", "/ordered/b", "/unordered/a", "/unordered/b"] {
        assert_eq!(get(&gw, path, &[]).await.0, 200);
    }
    wait_judged(&gw, "ordered", 2.0).await;
    wait_judged(&gw, "unordered", 2.0).await;
    assert_eq!(gw.metric(&verdict("ordered", "mismatch")).await, Some(2.0));
    assert_eq!(gw.metric(&verdict("unordered", "match")).await, Some(2.0));
    assert_eq!(counts(&gw, "unordered").await, counts_of(2, 0, 0, 0));
    let ordered = shadow_view(&gw, "ordered").await;
    assert_eq!(ordered["counts"], counts_of(0, 2, 0, 0));
    assert_eq!(
        ordered["top_pointers"][0]["pointer"], "/items/*/id",
        "{ordered}"
    );
    let m = &mismatches(&gw, "ordered").await["mismatches"][0];
    assert_eq!(
        m["differences"],
        json!([
            { "pointer": "/items/0/id", "primary": 1, "candidate": 3 },
            { "pointer": "/items/1/id", "primary": 2, "candidate": 1 },
            { "pointer": "/items/2/id", "primary": 3, "candidate": 2 },
        ]),
        "{m}"
    );

    // A multiset that differs still differs, reported once at the array.
    assert_eq!(get(&gw, "/unordered/dropped", &[]).await.0, 200);
    wait_judged(&gw, "unordered", 3.0).await;
    assert_eq!(
        gw.metric(&verdict("unordered", "mismatch")).await,
        Some(1.0)
    );
    let m = &mismatches(&gw, "unordered").await["mismatches"][0];
    assert_eq!(m["path"], "/unordered/dropped");
    let pointers: Vec<&Value> = m["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["pointer"])
        .collect();
    assert_eq!(pointers, [&json!("/items")], "{m}");
}

// ---- 4. noise --------------------------------------------------------------------------------

#[tokio::test]
async fn a_primary_with_a_random_id_is_learned_as_noise_not_mismatch() {
    // Every answer of either side carries a new `/id` (a counter: never the same twice, which
    // is all "random" needs to mean here).
    let ids = Arc::new(AtomicU64::new(1_000));
    let next = {
        let ids = ids.clone();
        move || ids.fetch_add(1, Ordering::SeqCst)
    };
    let primary = Scripted::start({
        let next = next.clone();
        move |_| Canned::json(&json!({ "id": next(), "name": "ada" }))
    })
    .await;
    // Under `/renamed`, the candidate also answers another name: a real difference.
    let candidate = Scripted::start(move |s| {
        let name = if s.path.ends_with("/renamed") {
            "grace"
        } else {
            "ada"
        };
        Canned::json(&json!({ "id": next(), "name": name }))
    })
    .await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\nroutes:\n  - name: noisy\n    match: {{ path_prefix: / }}\n    upstream: p\n    shadow: {{ upstream: c, noise: 1.0 }}\n",
        primary.addr(),
        candidate.addr()
    ))
    .await;

    for _ in 0..3 {
        assert_eq!(get(&gw, "/things/1", &[]).await.0, 200);
    }
    wait_judged(&gw, "noisy", 3.0).await;
    assert_eq!(gw.metric(&verdict("noisy", "noise")).await, Some(3.0));
    let view = shadow_view(&gw, "noisy").await;
    assert_eq!(view["counts"], counts_of(0, 0, 3, 0), "{view}");
    assert_eq!(view["noise_ratio"], 1.0);
    assert_eq!(view["noise"], 1.0);
    let learned: Vec<&Value> = view["noise_model"]["learned"]
        .as_array()
        .unwrap_or_else(|| panic!("{view}"))
        .iter()
        .map(|l| &l["pointer"])
        .collect();
    assert_eq!(learned, [&json!("/id")], "{view}");
    assert_eq!(view["top_pointers"], json!([]));
    // The second call to the primary is marked as such; each copied read made one.
    let marks: Vec<Option<String>> = primary
        .seen()
        .iter()
        .map(|s| s.header("x-gateway-shadow").map(str::to_string))
        .collect();
    assert_eq!(marks.iter().filter(|m| m.is_none()).count(), 3, "{marks:?}");
    assert_eq!(
        marks
            .iter()
            .filter(|m| m.as_deref() == Some("noise"))
            .count(),
        3,
        "{marks:?}"
    );

    // A difference the primary never shows against itself is still a mismatch, reported
    // without the noise.
    assert_eq!(get(&gw, "/things/renamed", &[]).await.0, 200);
    wait_judged(&gw, "noisy", 4.0).await;
    assert_eq!(gw.metric(&verdict("noisy", "mismatch")).await, Some(1.0));
    let m = &mismatches(&gw, "noisy").await["mismatches"][0];
    assert_eq!(
        m["differences"],
        json!([{ "pointer": "/name", "primary": "ada", "candidate": "grace" }]),
        "{m}"
    );
    assert_eq!(m["noise_differences"], 1);
    assert_eq!(
        shadow_view(&gw, "noisy").await["top_pointers"],
        json!([{ "pointer": "/name", "count": 1, "overcount": 0 }])
    );
}

// ---- 5. writes, and what the copy carries ----------------------------------------------------

#[tokio::test]
async fn copies_carry_request_id_identity_and_trace_and_writes_need_dry_run() {
    let auth = AuthService::start().await;
    let ok = |_: &Seen| Canned::json(&json!({ "ok": true }));
    let (primary, candidate) = (Scripted::start(ok).await, Scripted::start(ok).await);
    let gw = Gateway::start(&format!(
        "{}upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\nroutes:\n  - name: ro\n    match: {{ path_prefix: /ro/ }}\n    upstream: p\n    auth: required\n    shadow: {{ upstream: c }}\n  - name: rw\n    match: {{ path_prefix: /rw/ }}\n    upstream: p\n    strip_prefix: true\n    auth: required\n    shadow: {{ upstream: c, methods: [GET, POST], writes: dry_run }}\n  - name: plain\n    match: {{ path_prefix: /plain/ }}\n    upstream: p\n",
        auth.gateway_auth_block(),
        primary.addr(),
        candidate.addr()
    ))
    .await;
    let token = auth.register_and_login("shadow@example.test").await;
    let bearer = format!("Bearer {token}");
    let client = testkit::http_client();

    // A POST on a route without `writes: dry_run` is not copied.
    let r = client
        .post(gw.url("/ro/pay"))
        .header("authorization", &bearer)
        .header("x-gateway-shadow", "dry-run")
        .body(r#"{"amount":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.metric(&skipped("ro", "method")).await, Some(1.0));

    // With `writes: dry_run`, the candidate gets the POST, its body, marked as a dry run, at
    // the path the primary gets (`strip_prefix`).
    let write_body = r#"{"amount":12.5,"note":"dry"}"#;
    let r = client
        .post(gw.url("/rw/pay"))
        .header("authorization", &bearer)
        .header("x-request-id", "rid-write")
        .header("x-gateway-shadow", "1")
        .header("content-type", "application/json")
        .body(write_body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The same with a chunked body (no Content-Length): copied once it has ended.
    let pieces: Vec<Result<&'static str, std::io::Error>> = vec![Ok(r#"{"amount":"#), Ok("7}")];
    let r = client
        .post(gw.url("/rw/chunked"))
        .header("authorization", &bearer)
        .header("x-request-id", "rid-chunked")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A read, with a client that claims to be a dry run and someone else.
    let r = client
        .get(gw.url("/rw/item?x=1"))
        .header("authorization", &bearer)
        .header("x-request-id", "rid-read")
        .header("x-gateway-shadow", "dry-run")
        .header("x-user-id", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A route without a shadow forwards no client-sent mark either.
    let r = client
        .get(gw.url("/plain/x"))
        .header("x-request-id", "rid-plain")
        .header("x-gateway-shadow", "dry-run")
        // Django (and others) read `X_Gateway_Shadow` as the same header.
        .header("x_gateway_shadow", "dry-run")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    wait_judged(&gw, "rw", 3.0).await;
    assert_eq!(gw.metric(&verdict("rw", "match")).await, Some(3.0));
    assert_eq!(gw.metric_sum(REQUESTS, &[("route", "ro")]).await, 0.0);

    let by_rid = |seen: &[Seen], rid: &str| -> Seen {
        seen.iter()
            .find(|s| s.header("x-request-id") == Some(rid))
            .cloned()
            .unwrap_or_else(|| panic!("no request {rid} in {seen:#?}"))
    };
    let at_primary = primary.seen();
    let at_candidate = candidate.seen();
    // The primary never sees the mark, whatever the client sent.
    for s in &at_primary {
        assert_eq!(s.header("x-gateway-shadow"), None, "{s:#?}");
        assert_eq!(s.header("x_gateway_shadow"), None, "{s:#?}");
    }
    // The candidate got the three copies of the `rw` route, nothing of `ro` or `plain`.
    let copied: Vec<(&str, &str)> = at_candidate
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(copied.len(), 3, "{copied:?}");
    assert!(copied.contains(&("POST", "/pay")), "{copied:?}");
    assert!(copied.contains(&("POST", "/chunked")), "{copied:?}");
    assert!(copied.contains(&("GET", "/item")), "{copied:?}");

    let (p, c) = (
        by_rid(&at_primary, "rid-write"),
        by_rid(&at_candidate, "rid-write"),
    );
    assert_eq!(c.method, "POST");
    assert_eq!(c.header("x-gateway-shadow"), Some("dry-run"));
    assert_eq!(&c.body[..], write_body.as_bytes());
    assert_eq!(&p.body[..], write_body.as_bytes());
    assert_eq!(c.header("content-type"), Some("application/json"));
    let c = by_rid(&at_candidate, "rid-chunked");
    assert_eq!((c.method.as_str(), c.path.as_str()), ("POST", "/chunked"));
    assert_eq!(c.header("x-gateway-shadow"), Some("dry-run"));
    assert_eq!(&c.body[..], br#"{"amount":7}"#);

    let (p, c) = (
        by_rid(&at_primary, "rid-read"),
        by_rid(&at_candidate, "rid-read"),
    );
    assert_eq!(c.method, "GET");
    assert_eq!((p.path.as_str(), c.path.as_str()), ("/item", "/item"));
    assert_eq!(c.query.as_deref(), Some("x=1"));
    assert_eq!(p.query.as_deref(), Some("x=1"));
    assert_eq!(c.header("x-gateway-shadow"), Some("1"));
    // Verified identity, request id, credentials and forwarding headers: as the primary got.
    assert_eq!(p.header("x-user-email"), Some("shadow@example.test"));
    assert!(
        p.header("x-user-id").is_some_and(|id| id != "someone-else"),
        "{p:#?}"
    );
    for name in [
        "x-request-id",
        "x-user-id",
        "x-user-email",
        "x-user-roles",
        "authorization",
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ] {
        assert!(
            p.header(name).is_some(),
            "the primary got no {name}: {p:#?}"
        );
        assert_eq!(
            c.headers.get_all(name).iter().collect::<Vec<_>>(),
            p.headers.get_all(name).iter().collect::<Vec<_>>(),
            "{name}"
        );
    }
    // Its own client span in the same trace.
    let (p_trace, p_span) = trace_parts(p.header("traceparent").unwrap());
    let (c_trace, c_span) = trace_parts(c.header("traceparent").unwrap());
    assert_eq!(c_trace, p_trace, "the copy is in the request's trace");
    assert_ne!(c_span, p_span, "the copy has a span of its own");

    assert_eq!(
        by_rid(&at_primary, "rid-plain").header("x-gateway-shadow"),
        None
    );
}

// ---- 6. redaction ----------------------------------------------------------------------------

#[tokio::test]
async fn redacted_values_never_reach_admin_output_or_logs() {
    let primary = Scripted::start(|_| {
        Canned::json(&json!({ "id": 1, "email": "ada.primary@example.test",
                              "card": { "number": "4111111111111111" }, "plan": "gold" }))
    })
    .await;
    let candidate = Scripted::start(|_| {
        Canned::json(&json!({ "id": 1, "email": "ada.candidate@example.test",
                              "card": { "number": "5500000000000004" }, "plan": "silver" }))
    })
    .await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\nroutes:\n  - name: profile\n    match: {{ path_prefix: / }}\n    upstream: p\n    shadow: {{ upstream: c, record: {{ redact: [/email, /card/*] }} }}\nobservability:\n  access_log: json\n",
        primary.addr(),
        candidate.addr()
    ))
    .await;

    let (status, body) = get(&gw, "/me", &[("x-request-id", "rid-redact")]).await;
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("ada.primary@example.test"),
        "the client's answer is the primary's, untouched"
    );
    wait_judged(&gw, "profile", 1.0).await;
    assert_eq!(gw.metric(&verdict("profile", "mismatch")).await, Some(1.0));

    let recorded = mismatches(&gw, "profile").await;
    let m = &recorded["mismatches"][0];
    assert_eq!(m["request_id"], "rid-redact");
    assert_eq!(
        m["differences"],
        json!([
            { "pointer": "/card/number", "primary": "[redacted]", "candidate": "[redacted]" },
            { "pointer": "/email", "primary": "[redacted]", "candidate": "[redacted]" },
            { "pointer": "/plan", "primary": "gold", "candidate": "silver" },
        ]),
        "{recorded}"
    );
    let secrets = [
        "ada.primary",
        "ada.candidate",
        "4111111111111111",
        "5500000000000004",
    ];
    let mut texts = Vec::new();
    for page in [
        "/admin/shadow",
        "/admin/shadow/profile/mismatches",
        "/metrics",
    ] {
        let text = testkit::http_client()
            .get(gw.admin_url(page))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        texts.push((page.to_string(), text));
    }
    // The access log line of the request is written (so the logs are looked at after it).
    eventually("the access log line", WAIT, || async {
        gw.proc.stdout().contains("rid-redact")
    })
    .await;
    texts.push(("stdout".into(), gw.proc.stdout()));
    texts.push(("stderr".into(), gw.proc.stderr()));
    for (what, text) in &texts {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    }
}

// ---- 7. dead, killed and slow candidates -----------------------------------------------------

#[tokio::test]
async fn a_dead_killed_or_slow_candidate_costs_the_client_nothing() {
    let primary = Echo::start("twin").await;
    let mut twin = Echo::start("twin").await;
    // Holds every copy unanswered (the gate never opens): a candidate slower than any timeout.
    let held = Scripted::start_gated(false, |_| Canned::json(&json!({}))).await;
    let nobody = format!("127.0.0.1:{}", testkit::free_port());
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  twin: {{ targets: [{}] }}\n  nobody: {{ targets: [{nobody}] }}\n  held: {{ targets: [{}] }}\nroutes:\n  - name: killed\n    match: {{ path_prefix: /killed/ }}\n    upstream: p\n    shadow: {{ upstream: twin, compare: {{ ignore: [/headers, /peer] }} }}\n  - name: dead\n    match: {{ path_prefix: /dead/ }}\n    upstream: p\n    shadow: {{ upstream: nobody }}\n  - name: slow\n    match: {{ path_prefix: /slow/ }}\n    upstream: p\n    shadow: {{ upstream: held, timeout: 300ms }}\n",
        primary.addr(),
        twin.addr(),
        held.addr()
    ))
    .await;
    let answered_by_primary = |(status, body): (u16, Vec<u8>), path: &str| {
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["server"], "twin");
        assert_eq!(v["path"], path);
        assert!(v["headers"].get("x-gateway-shadow").is_none(), "{v}");
    };

    // The twin answers as the primary does until it is killed mid-run.
    for _ in 0..3 {
        answered_by_primary(get(&gw, "/killed/a", &[]).await, "/killed/a");
    }
    wait_judged(&gw, "killed", 3.0).await;
    assert_eq!(gw.metric(&verdict("killed", "match")).await, Some(3.0));
    twin.kill();
    for _ in 0..5 {
        answered_by_primary(get(&gw, "/killed/b", &[]).await, "/killed/b");
    }
    wait_judged(&gw, "killed", 8.0).await;
    assert_eq!(counts(&gw, "killed").await, counts_of(3, 0, 0, 5));
    assert_eq!(
        gw.metric(&verdict("killed", "shadow_error")).await,
        Some(5.0)
    );

    // Nothing ever listened there.
    for _ in 0..5 {
        answered_by_primary(get(&gw, "/dead/x", &[]).await, "/dead/x");
    }
    wait_judged(&gw, "dead", 5.0).await;
    assert_eq!(counts(&gw, "dead").await, counts_of(0, 0, 0, 5));

    // Slower than `timeout`: the client's answer comes while the candidate has answered
    // nothing, and the copy ends as a shadow_error at its deadline.
    for _ in 0..3 {
        answered_by_primary(get(&gw, "/slow/x", &[]).await, "/slow/x");
        assert_eq!(held.answered(), 0);
    }
    wait_judged(&gw, "slow", 3.0).await;
    assert_eq!(counts(&gw, "slow").await, counts_of(0, 0, 0, 3));
    assert_eq!(held.seen().len(), 3);
    assert_eq!(held.answered(), 0);

    // The client saw no error, and none is counted against the primary.
    assert_eq!(
        gw.metric_sum("gateway_requests_total", &[("status", "200")])
            .await,
        16.0
    );
    assert_eq!(
        gw.metric_sum(REQUESTS, &[("result", "primary_error")])
            .await,
        0.0
    );
}

// ---- 8. max_in_flight ------------------------------------------------------------------------

#[tokio::test]
async fn copies_in_flight_never_exceed_max_in_flight() {
    let ok = |_: &Seen| Canned::json(&json!({ "n": 1 }));
    let primary = Scripted::start(ok).await;
    // The candidate holds each copy until the test opens its gate, where a sleeping candidate
    // would hold it for a while: the copies under way stay under way as long as the test needs,
    // however slowly this machine runs the 20 requests.
    let candidate = Scripted::start_gated(false, ok).await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\nroutes:\n  - name: limited\n    match: {{ path_prefix: / }}\n    upstream: p\n    shadow: {{ upstream: c, max_in_flight: 2, timeout: 20s }}\n",
        primary.addr(),
        candidate.addr()
    ))
    .await;

    let requests = (0..20).map(|i| {
        let url = gw.url(&format!("/n/{i}"));
        async move {
            let r = testkit::http_client().get(url).send().await.unwrap();
            r.status().as_u16()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert_eq!(statuses, vec![200; 20], "no client waits for a copy");
    // Each request was either copied (the copy held at the candidate) or skipped.
    let copies = eventually("every request copied or skipped", WAIT, || async {
        let skips = gw
            .metric(&skipped("limited", "in_flight"))
            .await
            .unwrap_or(0.0);
        let copies = candidate.seen().len();
        if skips as usize + copies >= 20 {
            Ok(copies)
        } else {
            Err((skips, copies))
        }
    })
    .await;
    assert_eq!(
        candidate.max_in_flight(),
        2,
        "at most max_in_flight at once"
    );
    assert_eq!(copies, 2);
    assert_eq!(candidate.in_flight(), 2);
    assert_eq!(
        gw.metric(&skipped("limited", "in_flight")).await,
        Some(18.0)
    );

    // Once they are answered, their permits are free again.
    candidate.open();
    wait_judged(&gw, "limited", 2.0).await;
    assert_eq!(gw.metric(&verdict("limited", "match")).await, Some(2.0));
    assert_eq!(get(&gw, "/n/again", &[]).await.0, 200);
    wait_judged(&gw, "limited", 3.0).await;
    assert_eq!(gw.metric(&verdict("limited", "match")).await, Some(3.0));
    assert!(
        candidate.max_in_flight() <= 2,
        "{}",
        candidate.max_in_flight()
    );
    assert_eq!(
        gw.metric(&skipped("limited", "in_flight")).await,
        Some(18.0)
    );
}

// ---- 9. a 10 MB upload -----------------------------------------------------------------------

const MIB: usize = 1024 * 1024;

/// A POST of `len` bytes: with a `Content-Length`, or chunked (a stream of 64 KiB pieces).
async fn upload(gw: &Gateway, len: usize, chunked: bool) -> Value {
    let client = testkit::http_client();
    let body = if chunked {
        let piece = bytes::Bytes::from(vec![b'u'; 64 * 1024]);
        let pieces = (0..len / piece.len())
            .map(move |_| Ok::<_, std::io::Error>(piece.clone()))
            .collect::<Vec<_>>();
        reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
    } else {
        reqwest::Body::from(vec![b'u'; len])
    };
    let r = client
        .post(gw.url("/upload"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["body_bytes"], len, "the primary received every byte: {v}");
    v
}

#[tokio::test]
async fn a_10_mb_upload_streams_to_the_primary_and_is_not_copied() {
    let primary = Echo::start("big").await;
    let candidate = Scripted::start(|_| Canned::json(&json!({}))).await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\nroutes:\n  - name: upload\n    match: {{ path_prefix: / }}\n    upstream: p\n    shadow: {{ upstream: c, methods: [GET, POST], writes: dry_run, max_body: 64KiB, compare: {{ body: none }} }}\n",
        primary.addr(),
        candidate.addr()
    ))
    .await;

    // A small write is copied: the route copies POSTs, the uploads below are refused for size.
    upload(&gw, 1024, false).await;
    wait_judged(&gw, "upload", 1.0).await;
    // Warm-up, as measured below but smaller: four connections, with their pools and
    // buffers, exist before the measurement.
    let warm_up = [false, true, false, true].map(|chunked| upload(&gw, MIB, chunked));
    futures_util::future::join_all(warm_up).await;
    let (rss, hwm) = (gw.proc_status_bytes("VmRSS"), gw.proc_status_bytes("VmHWM"));

    // Four 10 MiB uploads at once, two with a Content-Length (refused at once) and two
    // chunked (dropped at their first byte past max_body).
    let uploads = [false, true, false, true].map(|chunked| upload(&gw, 10 * MIB, chunked));
    futures_util::future::join_all(uploads).await;

    assert_eq!(
        gw.metric(&skipped("upload", "body_too_large")).await,
        Some(8.0)
    );
    let copied: Vec<usize> = candidate.seen().iter().map(|s| s.body.len()).collect();
    assert_eq!(copied, [1024], "only the small write reached the candidate");
    let grew = |before: u64, now: u64| now.saturating_sub(before) as usize;
    let (rss_growth, hwm_growth) = (
        grew(rss, gw.proc_status_bytes("VmRSS")),
        grew(hwm, gw.proc_status_bytes("VmHWM")),
    );
    // 40 MiB passed through with four uploads in flight at once. Streamed, each costs pingora's
    // read buffers and at most `max_body` (64 KiB) of tee before it is dropped: well under 1 MiB
    // each. A gateway that kept any one upload whole for the copy (10 MiB, more with a growing
    // Vec's doubling) would raise its peak resident size past 8 MiB; one that kept all four,
    // past 40.
    let bound = 8 * MIB;
    assert!(
        rss_growth < bound && hwm_growth < bound,
        "VmRSS grew {rss_growth} bytes, VmHWM {hwm_growth} (bound {bound})"
    );
}

// ---- the primary's breakers and access log ---------------------------------------------------

#[tokio::test]
async fn failing_copies_open_only_their_own_breaker_and_write_no_access_log_line() {
    let primary = Scripted::start(|_| Canned::json(&json!({ "ok": true }))).await;
    // The candidate fails every copy (they come under /s/) and answers its own route's traffic.
    let candidate = Scripted::start(|s| Canned {
        status: if s.path.starts_with("/s/") { 503 } else { 200 },
        ..Canned::json(&json!({ "ok": true }))
    })
    .await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c:\n    targets: [{}]\n    retries: {{ attempts: 0 }}\n    circuit_breaker: {{ min_requests: 3, failure_ratio: 0.5, window: 1m, open_for: 1m }}\nroutes:\n  - name: own\n    match: {{ path_prefix: /own/ }}\n    upstream: c\n  - name: shadowed\n    match: {{ path_prefix: /s/ }}\n    upstream: p\n    shadow: {{ upstream: c }}\nobservability:\n  access_log: json\n",
        primary.addr(),
        candidate.addr()
    ))
    .await;

    // One request at a time, each copy over (judged, or skipped) before the next: the copies'
    // breaker (the candidate's settings: open after 3 failures) sees them in order.
    for i in 1..=8 {
        let (status, body) = get(&gw, "/s/x", &[("x-request-id", &format!("rid-brk-{i}"))]).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        eventually(&format!("copy {i} to end"), WAIT, || async {
            let text = gw.metrics().await;
            let ended = metric_sum(&text, REQUESTS, &[("route", "shadowed")])
                + metric_sum(&text, SKIPPED, &[("route", "shadowed")]);
            if ended >= f64::from(i) {
                Ok(())
            } else {
                Err(ended)
            }
        })
        .await;
    }
    assert_eq!(counts(&gw, "shadowed").await, counts_of(0, 3, 0, 0));
    assert_eq!(
        gw.metric(&skipped("shadowed", "unavailable")).await,
        Some(5.0),
        "the copies' breaker opened"
    );
    assert_eq!(candidate.seen().len(), 3);
    let m = &mismatches(&gw, "shadowed").await["mismatches"][0];
    assert_eq!(
        m["status"],
        json!({ "primary": 200, "candidate": 503 }),
        "{m}"
    );

    // The candidate's own breaker, the one its route uses, saw none of it.
    let target = gw.target_state("c", &candidate.addr()).await;
    assert_eq!(target["circuit_breaker"]["state"], "closed", "{target}");
    assert_eq!(target["available"], true, "{target}");
    assert_eq!(
        get(&gw, "/own/x", &[("x-request-id", "rid-own")]).await.0,
        200
    );
    assert_eq!(candidate.seen().len(), 4);

    // One access-log line per client request, none for a copy.
    let lines = eventually("the access log of all 9 requests", WAIT, || async {
        let lines: Vec<Value> = gw
            .proc
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l.get("request_id").is_some())
            .collect();
        if lines.len() >= 9 {
            Ok(lines)
        } else {
            Err(lines.len())
        }
    })
    .await;
    assert_eq!(lines.len(), 9);
    let to_candidate: Vec<&Value> = lines.iter().filter(|l| l["upstream"] == "c").collect();
    assert_eq!(to_candidate.len(), 1, "{to_candidate:?}");
    assert_eq!(to_candidate[0]["request_id"], "rid-own");
    assert_eq!(
        gw.metric_sum("gateway_requests_total", &[("route", "shadowed")])
            .await,
        8.0
    );
}

// ---- answers too large to compare, a primary that fails ---------------------------------------

#[tokio::test]
async fn an_answer_over_max_response_is_not_compared_and_a_failed_primary_is_a_primary_error() {
    let primary = Scripted::start(catalogue).await;
    // Small where the primary's answer is large (…/big), large where it is small (…/huge):
    // compared, either pair would mismatch.
    let candidate = Scripted::start(|s| {
        if s.path.ends_with("/big") {
            Canned::json(&json!({ "items": [] }))
        } else if s.path.ends_with("/huge") {
            catalogue(&Seen {
                path: "/big".into(),
                ..s.clone()
            })
        } else {
            catalogue(s)
        }
    })
    .await;
    let nobody = format!("127.0.0.1:{}", testkit::free_port());
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\n  nobody: {{ targets: [{nobody}] }}\nroutes:\n  - name: capped\n    match: {{ path_prefix: /capped/ }}\n    upstream: p\n    shadow: {{ upstream: c, max_response: 1KiB }}\n  - name: broken\n    match: {{ path_prefix: /broken/ }}\n    upstream: nobody\n    shadow: {{ upstream: c }}\n",
        primary.addr(),
        candidate.addr()
    ))
    .await;

    let (status, body) = get(&gw, "/capped/big", &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.len() > 200_000,
        "the client gets it all: {}",
        body.len()
    );
    assert_eq!(get(&gw, "/capped/huge", &[]).await.0, 200);
    // Each copy ends judged or skipped.
    eventually("both copies to end", WAIT, || async {
        let text = gw.metrics().await;
        let ended = metric_sum(&text, REQUESTS, &[("route", "capped")])
            + metric_sum(&text, SKIPPED, &[("route", "capped")]);
        if ended >= 2.0 { Ok(()) } else { Err(ended) }
    })
    .await;
    assert_eq!(
        gw.metric(&skipped("capped", "response_too_large")).await,
        Some(2.0)
    );
    assert_eq!(gw.metric_sum(REQUESTS, &[("route", "capped")]).await, 0.0);
    assert_eq!(get(&gw, "/capped/small", &[]).await.0, 200);
    wait_judged(&gw, "capped", 1.0).await;
    assert_eq!(gw.metric(&verdict("capped", "match")).await, Some(1.0));
    assert_eq!(candidate.seen().len(), 3);

    // The primary gives no answer: nothing to compare the candidate's with.
    let (status, _) = get(&gw, "/broken/x", &[]).await;
    assert!(status >= 500, "{status}");
    wait_judged(&gw, "broken", 1.0).await;
    assert_eq!(counts(&gw, "broken").await["primary_error"], 1);
    assert_eq!(
        gw.metric(&verdict("broken", "primary_error")).await,
        Some(1.0)
    );
}

/// The primary's own failures, and answers its fallback gave, are never counted against the
/// candidate; a primary that compresses is compared by what it compressed.
#[tokio::test]
async fn compression_is_undone_and_the_primarys_failures_and_fallback_are_not_blamed_on_the_candidate()
 {
    use std::io::Write;
    let primary = Scripted::start(|s| match s.path.as_str() {
        p if p.ends_with("/gz") => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(br#"{"a":1,"b":[1,2]}"#).unwrap();
            let mut c = Canned::json(&json!(null));
            c.body = e.finish().unwrap();
            c.headers.push(("content-encoding".into(), "gzip".into()));
            c
        }
        p if p.ends_with("/fail") => Canned {
            status: 503,
            ..Canned::json(&json!({ "error": "overloaded" }))
        },
        _ => Canned::json(&json!({ "a": 1 })),
    })
    .await;
    let candidate = Scripted::start(|s| match s.path.as_str() {
        p if p.ends_with("/gz") => Canned::json(&json!({ "a": 1, "b": [1, 2] })),
        _ => Canned::json(&json!({ "a": 2 })),
    })
    .await;
    let nobody = format!("127.0.0.1:{}", testkit::free_port());
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\n  nobody: {{ targets: [{nobody}] }}\nroutes:\n  - name: r\n    match: {{ path_prefix: /r/ }}\n    upstream: p\n    shadow: {{ upstream: c }}\n  - name: fb\n    match: {{ path_prefix: /fb/ }}\n    upstream: nobody\n    fallback: p\n    shadow: {{ upstream: c }}\n",
        primary.addr(),
        candidate.addr()
    ))
    .await;

    let (status, body) = get(&gw, "/r/gz", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        &body[..2],
        b"\x1f\x8b",
        "the client gets the primary's gzip bytes"
    );
    wait_judged(&gw, "r", 1.0).await;
    assert_eq!(gw.metric(&verdict("r", "match")).await, Some(1.0));
    // A HEAD: `Content-Encoding: gzip` on no body at all is an empty body, not undecodable.
    let head = testkit::http_client()
        .head(gw.url("/r/gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    wait_judged(&gw, "r", 2.0).await;
    assert_eq!(gw.metric(&verdict("r", "match")).await, Some(2.0));

    // A primary 503: the candidate's 200 is not a mismatch.
    assert_eq!(get(&gw, "/r/fail", &[]).await.0, 503);
    wait_judged(&gw, "r", 3.0).await;
    assert_eq!(gw.metric(&verdict("r", "primary_error")).await, Some(1.0));
    assert_eq!(gw.metric(&verdict("r", "mismatch")).await, Some(0.0));

    // The route's own upstream is down and the fallback answers: nothing of the primary's.
    let (status, _) = get(&gw, "/fb/x", &[]).await;
    assert_eq!(status, 200);
    eventually("the fallback's answer to be skipped", WAIT, || async {
        let n = gw.metric(&skipped("fb", "fallback")).await;
        if n == Some(1.0) { Ok(()) } else { Err(n) }
    })
    .await;
    assert_eq!(gw.metric_sum(REQUESTS, &[("route", "fb")]).await, 0.0);
}

// ---- 10. admin 404 and validate ----------------------------------------------------------------

#[tokio::test]
async fn no_mismatches_page_without_a_shadow_and_requests_a_shadow_does_not_copy() {
    let ok = |_: &Seen| Canned::json(&json!({}));
    let (primary, candidate) = (Scripted::start(ok).await, Scripted::start(ok).await);
    let ws_origin = WsOrigin::start().await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\n  w: {{ targets: [{}] }}\nroutes:\n  - name: ws\n    match: {{ path_prefix: /ws/ }}\n    upstream: w\n    shadow: {{ upstream: c }}\n  - name: plain\n    match: {{ path_prefix: /plain/ }}\n    upstream: p\n  - name: unsampled\n    match: {{ path_prefix: /unsampled/ }}\n    upstream: p\n    shadow: {{ upstream: c, sample: 0.0 }}\n  - name: sampled\n    match: {{ path_prefix: /sampled/ }}\n    upstream: p\n    shadow: {{ upstream: c }}\n  - name: itself\n    match: {{ path_prefix: / }}\n    upstream: p\n    shadow: {{ upstream: p }}\n",
        primary.addr(),
        candidate.addr(),
        ws_origin.addr()
    ))
    .await;
    for route in ["nope", "plain"] {
        let r = testkit::http_client()
            .get(gw.admin_url(&format!("/admin/shadow/{route}/mismatches")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{route}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{route}"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], 404, "{v}");
    }
    let v = mismatches(&gw, "itself").await;
    assert_eq!(v["capacity"], 200);
    assert_eq!(v["mismatches"], json!([]));
    let all = gw.admin_json("/admin/shadow").await;
    let names: Vec<&Value> = all["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["route"])
        .collect();
    assert_eq!(
        names,
        [
            &json!("ws"),
            &json!("unsampled"),
            &json!("sampled"),
            &json!("itself")
        ],
        "{all}"
    );
    assert_eq!(shadow_view(&gw, "unsampled").await["sample"], 0.0);

    // A request whose side is the candidate itself is not copied; neither is one the sample
    // does not draw (and that is no skip).
    assert_eq!(get(&gw, "/x", &[]).await.0, 200);
    assert_eq!(get(&gw, "/unsampled/x", &[]).await.0, 200);
    assert_eq!(
        gw.metric(&skipped("itself", "same_upstream")).await,
        Some(1.0)
    );
    assert_eq!(gw.metric_sum(SKIPPED, &[("route", "unsampled")]).await, 0.0);
    // Nor a WebSocket: the tunnel works as without a shadow.
    let url = format!("ws://127.0.0.1:{}/ws/chat", gw.port);
    let (mut ws, resp) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(resp.status(), 101);
    let hello = tokio_tungstenite::tungstenite::Message::text("hello");
    ws.send(hello.clone()).await.unwrap();
    let echoed = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, hello);
    assert_eq!(gw.metric(&skipped("ws", "upgrade")).await, Some(1.0));
    // A copied request after them, judged: had either been copied, its copy would be in too.
    assert_eq!(get(&gw, "/sampled/x", &[]).await.0, 200);
    wait_judged(&gw, "sampled", 1.0).await;
    assert_eq!(gw.metric_sum(REQUESTS, &[]).await, 1.0);
    let copied: Vec<String> = candidate.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(copied, ["/sampled/x"]);
}

#[test]
fn validate_refuses_a_shadowed_write_without_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(
        &file,
        "upstreams:\n  p: { targets: [127.0.0.1:8000] }\n  c: { targets: [127.0.0.1:8001] }\nroutes:\n  - name: pay\n    match: { path_prefix: / }\n    upstream: p\n    shadow: { upstream: c, methods: [POST] }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("routes[0].shadow.methods[0]: POST is a write")
            && stderr.contains("writes: dry_run"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
