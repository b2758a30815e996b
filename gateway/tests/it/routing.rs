//! Matching rules, precedence, rewrites, load balancing, splits and stickiness, forwarded
//! headers and path normalisation, through the real gateway.

use std::collections::HashMap;

use crate::support::{Echo, Gateway, get_json, one_route, raw};

async fn two_origins() -> (Echo, Echo) {
    (Echo::start("a").await, Echo::start("b").await)
}

#[tokio::test]
async fn each_matching_rule_and_the_precedence_rule() {
    let (a, b) = two_origins().await;
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  a: {{ targets: [{a}] }}
  b: {{ targets: [{b}] }}
routes:
  - name: catch-all
    match: {{ path_prefix: / }}
    upstream: a
  - name: api
    match: {{ path_prefix: /api/ }}
    upstream: b
  - name: api-exact
    match: {{ path: /api/status }}
    upstream: a
  - name: api-post
    match: {{ path_prefix: /api/, methods: [POST] }}
    upstream: a
  - name: api-host
    match: {{ path_prefix: /api/, host: "*.example.test" }}
    upstream: a
  - name: api-header
    match: {{ path_prefix: /api/, headers: {{ x-version: 2 }} }}
    upstream: a
  - name: api-dup
    match: {{ path_prefix: /api/ }}
    upstream: a
"#,
        a = a.addr(),
        b = b.addr()
    ))
    .await;
    let server = |v: &serde_json::Value| v["server"].as_str().unwrap().to_string();

    // Longest prefix wins over `/`; a tie (api vs api-dup) goes to the first in the file.
    let (s, v) = get_json(&gw.url("/api/x"), &[]).await;
    assert_eq!((s, server(&v)), (200, "b".into()));
    // Exact path beats any prefix.
    assert_eq!(server(&get_json(&gw.url("/api/status"), &[]).await.1), "a");
    // Methods.
    let resp = testkit::http_client()
        .post(gw.url("/api/x"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(server(&v), "a");
    // Host (wildcard), with the port and in another case.
    assert_eq!(
        server(
            &get_json(&gw.url("/api/x"), &[("host", "Shop.Example.test:8080")])
                .await
                .1
        ),
        "a"
    );
    assert_eq!(
        server(
            &get_json(&gw.url("/api/x"), &[("host", "example.test")])
                .await
                .1
        ),
        "b"
    );
    // Headers (a YAML number matches its text).
    assert_eq!(
        server(&get_json(&gw.url("/api/x"), &[("x-version", "2")]).await.1),
        "a"
    );
    assert_eq!(
        server(&get_json(&gw.url("/api/x"), &[("x-version", "3")]).await.1),
        "b"
    );
    // Segment boundary: `/apix` is not under `/api/`.
    assert_eq!(server(&get_json(&gw.url("/apix"), &[]).await.1), "a");

    // The admin view lists routes in precedence order.
    let routes = gw.admin_json("/admin/routes").await;
    let names: Vec<&str> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "api-exact",
            "api-host",
            "api-header",
            "api-post",
            "api",
            "api-dup",
            "catch-all"
        ]
    );
}

#[tokio::test]
async fn strip_prefix_and_prefix_rewrite_keep_the_query() {
    let a = Echo::start("a").await;
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  a: {{ targets: [{a}] }}
routes:
  - name: strip
    match: {{ path_prefix: /svc/ }}
    upstream: a
    strip_prefix: true
  - name: rewrite
    match: {{ path_prefix: /old }}
    upstream: a
    prefix_rewrite: /new/v2/
  - name: plain
    match: {{ path_prefix: / }}
    upstream: a
"#,
        a = a.addr()
    ))
    .await;
    let (_, v) = get_json(&gw.url("/svc/users/7?expand=orders&x=%20y"), &[]).await;
    assert_eq!(v["path"], "/users/7");
    assert_eq!(v["query"], "expand=orders&x=%20y");
    let (_, v) = get_json(&gw.url("/old/items?page=2"), &[]).await;
    assert_eq!(v["path"], "/new/v2/items");
    assert_eq!(v["query"], "page=2");
    let (_, v) = get_json(&gw.url("/old"), &[]).await;
    assert_eq!(v["path"], "/new/v2/");
    let (_, v) = get_json(&gw.url("/keep/me?q=1"), &[]).await;
    assert_eq!(
        (v["path"].as_str(), v["query"].as_str()),
        (Some("/keep/me"), Some("q=1"))
    );
}

#[tokio::test]
async fn targets_are_balanced_and_splits_follow_weights_and_stickiness() {
    let (a, b) = two_origins().await;
    let c = Echo::start("c").await;
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  pool: {{ targets: [{a}, {b}] }}
  canary: {{ targets: [{c}] }}
routes:
  - name: balanced
    match: {{ path_prefix: /pool/ }}
    upstream: pool
  - name: split
    match: {{ path_prefix: /split/ }}
    split: [ {{ upstream: canary, weight: 20 }}, {{ upstream: pool, weight: 80 }} ]
  - name: sticky-header
    match: {{ path_prefix: /sticky/ }}
    split: [ {{ upstream: canary, weight: 50 }}, {{ upstream: pool, weight: 50 }} ]
    sticky_by: header.x-user
  - name: sticky-cookie
    match: {{ path_prefix: /cookie/ }}
    split: [ {{ upstream: canary, weight: 50 }}, {{ upstream: pool, weight: 50 }} ]
    sticky_by: cookie.session
"#,
        a = a.addr(),
        b = b.addr(),
        c = c.addr()
    ))
    .await;
    let client = testkit::http_client();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        let v: serde_json::Value = client
            .get(gw.url("/pool/x"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        *seen
            .entry(v["server"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    // Round robin: an even share.
    assert_eq!(seen.get("a"), Some(&50), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&50), "{seen:?}");

    // Weights: 20% canary over 2000 requests. Binomial sd = sqrt(2000*.2*.8) ≈ 17.9; ±5 sd.
    let n = 2000;
    let mut canary = 0;
    for _ in 0..n {
        let v: serde_json::Value = client
            .get(gw.url("/split/x"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["server"] == "c" {
            canary += 1;
        }
    }
    assert!(
        (400 - 90..=400 + 90).contains(&canary),
        "canary got {canary} of {n}"
    );

    // Stickiness: each user always lands on the same side; users are spread over both sides.
    let mut sides: HashMap<&str, usize> = HashMap::new();
    for user in 0..40 {
        let id = format!("user-{user}");
        let mut first = None;
        for _ in 0..5 {
            let v: serde_json::Value = client
                .get(gw.url("/sticky/x"))
                .header("x-user", &id)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let side = if v["server"] == "c" { "canary" } else { "pool" };
            assert_eq!(*first.get_or_insert(side), side, "{id} moved between sides");
        }
        *sides.entry(first.unwrap()).or_default() += 1;
        let mut cookie_first = None;
        for _ in 0..3 {
            let v: serde_json::Value = client
                .get(gw.url("/cookie/x"))
                .header("cookie", format!("theme=dark; session={id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let side = v["server"] == "c";
            assert_eq!(
                *cookie_first.get_or_insert(side),
                side,
                "{id} moved between sides by cookie"
            );
        }
    }
    assert!(
        sides.len() == 2 && sides.values().all(|&n| n >= 8),
        "{sides:?}"
    );
}

#[tokio::test]
async fn forwarded_headers_and_request_id() {
    let a = Echo::start("a").await;
    let gw = Gateway::start(&one_route(&a.addr())).await;
    // The client is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
    let resp = testkit::http_client()
        .get(gw.url("/x"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.test")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "client-chosen-id-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-id-1");
    let v: serde_json::Value = resp.json().await.unwrap();
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], format!("127.0.0.1:{}", gw.port));
    assert_eq!(h["x-request-id"], "client-chosen-id-1");
    // A malformed id is replaced by a generated one, which the client gets back.
    let resp = testkit::http_client()
        .get(gw.url("/x"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(echoed.len(), 32, "{echoed}");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["headers"]["x-request-id"], echoed.as_str());
}

#[tokio::test]
async fn trusted_proxies_let_the_client_ip_through() {
    let a = Echo::start("a").await;
    let gw = Gateway::start(&format!(
        r#"
trusted_proxies: [127.0.0.1/32]
upstreams:
  a: {{ targets: [{a}] }}
  b: {{ targets: [{a}] }}
routes:
  - name: by-ip
    match: {{ path_prefix: / }}
    split: [ {{ upstream: a, weight: 1 }}, {{ upstream: b, weight: 1 }} ]
    sticky_by: client_ip
"#,
        a = a.addr()
    ))
    .await;
    let (_, v) = get_json(
        &gw.url("/x"),
        &[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(v["headers"]["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
}

/// Every spelling of a path that normalises into `/admin/` reaches the admin route (and its
/// policies) or is refused: none reaches the upstream while skipping the route.
#[tokio::test]
async fn path_normalisation_cannot_be_used_to_skip_a_route() {
    let (public, admin) = two_origins().await;
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  public: {{ targets: [{p}] }}
  admin: {{ targets: [{a}] }}
routes:
  - name: admin
    match: {{ path_prefix: /admin/ }}
    upstream: admin
  - name: public
    match: {{ path_prefix: / }}
    upstream: public
"#,
        p = public.addr(),
        a = admin.addr()
    ))
    .await;
    let ask = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
    };
    for (target, forwarded) in [
        ("/public/../admin/users", "/admin/users"),
        ("/public/%2e%2e/admin/users", "/admin/users"),
        ("/public/%2E%2e/admin/users", "/admin/users"),
        ("//admin//users", "/admin/users"),
        ("/./admin/./users", "/admin/users"),
        ("/%61dmin/users", "/admin/users"),
        ("/../../admin/users", "/admin/users"),
        ("/admin/x/../users?q=1", "/admin/users"),
    ] {
        let r = raw(gw.port, &ask(target)).await;
        assert_eq!(r.status, 200, "{target}: {r:?}");
        let v = r.json();
        assert_eq!(v["server"], "b", "{target} reached {v}");
        assert_eq!(v["path"], forwarded, "{target}");
    }
    for target in [
        "/public/..%2fadmin/users",
        "/admin%2Fusers",
        "/a%5cb",
        "/bad%zz",
        "/nul%00",
    ] {
        let r = raw(gw.port, &ask(target)).await;
        assert_eq!(r.status, 400, "{target}: {r:?}");
        let v = r.json();
        assert_eq!(v["status"], 400, "{target}");
        assert!(v["request_id"].is_string());
    }
}
