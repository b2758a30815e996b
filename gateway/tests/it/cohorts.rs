//! Cohorts (issue 18) against the running gateway: for every user, the side `gateway explain`
//! prints and the side `/admin/cohorts/NAME/assign` reports are the side that served them; a
//! user keeps their side; a request without a key goes to `rest`; raising the percent by
//! rewriting the file keeps every user on the new side and moves the expected share of the
//! others; a `--claim` places like the verified token that carries it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::json;
use testkit::eventually;

use crate::auth::{ISSUER, JwksServer, good_claims, rsa_key, sign};
use crate::support::{Echo, Gateway, WAIT, get_json};

const USERS: usize = 200;

/// 200 users, every seventh with characters a query string must encode.
fn users() -> Vec<String> {
    (0..USERS)
        .map(|i| {
            if i % 7 == 0 {
                format!("user {i}+&=%/;#")
            } else {
                format!("user-{i}")
            }
        })
        .collect()
}

/// `payments` at `percent` and `orders` at 10 % of cohort `early` (by `header.x-user`).
fn body(payments: &Echo, monolith: &Echo, percent: u32) -> String {
    format!(
        r#"upstreams:
  payments: {{ targets: [{}] }}
  monolith: {{ targets: [{}] }}
cohorts:
  early: {{ by: header.x-user, salt: it-cohorts }}
routes:
  - name: payments
    match: {{ path_prefix: /api/payments/ }}
    split: {{ to: payments, percent: {percent}, cohort: early, rest: monolith }}
  - name: orders
    match: {{ path_prefix: /api/orders/ }}
    split: {{ to: payments, percent: 10, cohort: early, rest: monolith }}
"#,
        payments.addr(),
        monolith.addr()
    )
}

/// The upstream that answered `path` for a request with these headers.
async fn served(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> String {
    let (status, v) = get_json(&gw.url(path), headers).await;
    assert_eq!(status, 200, "{v}");
    v["server"].as_str().unwrap().to_string()
}

/// The side `gateway explain` prints for `GET path` with these arguments (`--header`,
/// `--claim`, ...), and the whole output.
fn explained(config: &Path, path: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("explain")
        .arg("--config")
        .arg(config)
        .args(["GET", path])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let side = text
        .lines()
        .find_map(|l| l.strip_prefix("side:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no side in:\n{text}"))
        .to_string();
    (side, text)
}

/// `/admin/cohorts/NAME/assign?key=KEY`: the bucket and each route's side.
async fn assigned(gw: &Gateway, cohort: &str, key: &str) -> (u64, BTreeMap<String, String>) {
    let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    let v = gw
        .admin_json(&format!("/admin/cohorts/{cohort}/assign?key={encoded}"))
        .await;
    assert_eq!(v["cohort"], cohort, "{v}");
    let sides = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap().to_string(),
                r["side"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (v["bucket"].as_u64().unwrap(), sides)
}

#[tokio::test]
async fn explain_and_admin_say_the_side_that_serves_each_user() {
    let (payments, monolith) = (Echo::start("payments").await, Echo::start("monolith").await);
    let gw = Gateway::start(&body(&payments, &monolith, 30)).await;
    let mut on_payments = 0;
    for user in users() {
        let header = [("x-user", user.as_str())];
        let side = served(&gw, "/api/payments/x", &header).await;
        // The same user always gets the same side.
        for _ in 0..2 {
            assert_eq!(
                served(&gw, "/api/payments/x", &header).await,
                side,
                "{user}"
            );
        }
        let (explain, text) = explained(
            &gw.config,
            "/api/payments/x",
            &["--header", &format!("x-user: {user}")],
        );
        assert_eq!(explain, side, "{user}: explain says\n{text}");
        assert!(text.contains("placed:    by header.x-user"), "{text}");
        let (bucket, sides) = assigned(&gw, "early", &user).await;
        assert_eq!(sides["payments"], side, "{user}: bucket {bucket}");
        assert_eq!(
            side == "payments",
            bucket < 3_000,
            "{user}: bucket {bucket}"
        );
        // The other route of the cohort: its own percent, the same users first.
        let orders = served(&gw, "/api/orders/x", &header).await;
        assert_eq!(sides["orders"], orders, "{user}");
        assert!(
            orders == "monolith" || side == "payments",
            "{user}: 10% ⊂ 30%"
        );
        on_payments += usize::from(side == "payments");
    }
    // About 30% of 200 (the users are fixed, so is the count).
    assert!((40..=80).contains(&on_payments), "{on_payments} of {USERS}");

    // No key: the rest side, every time, and explain says so.
    for _ in 0..20 {
        assert_eq!(served(&gw, "/api/payments/x", &[]).await, "monolith");
    }
    let (side, text) = explained(&gw.config, "/api/payments/x", &[]);
    assert_eq!(side, "monolith", "{text}");
    assert!(
        text.contains("placed:    no key (no header.x-user): the rest side, never a random one"),
        "{text}"
    );

    // The cohort and its routes, and the percent metric.
    let v = gw.admin_json("/admin/cohorts").await;
    assert_eq!(
        v["cohorts"],
        json!([{
            "name": "early",
            "by": "header.x-user",
            "fallback_by": null,
            "salt": "it-cohorts",
            "pin": null,
            "routes": [
                { "route": "payments", "to": "payments", "rest": "monolith", "percent": 30.0 },
                { "route": "orders", "to": "payments", "rest": "monolith", "percent": 10.0 },
            ],
        }])
    );
    assert_eq!(
        gw.metric(r#"gateway_cohort_percent{cohort="early",route="payments"}"#)
            .await,
        Some(30.0)
    );
    // Problems for an unknown cohort and a missing key.
    let client = testkit::http_client();
    for (path, status, kind) in [
        ("/admin/cohorts/late/assign?key=1", 404, "unknown-cohort"),
        ("/admin/cohorts/early/assign", 400, "missing-key"),
    ] {
        let resp = client.get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            v["type"],
            format!("urn:problem-type:gateway:{kind}"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn raising_the_percent_keeps_every_user_on_the_new_side() {
    let (payments, monolith) = (Echo::start("payments").await, Echo::start("monolith").await);
    let gw = Gateway::start(&body(&payments, &monolith, 30)).await;
    let mut before = Vec::new();
    for user in users() {
        before.push(served(&gw, "/api/payments/x", &[("x-user", &user)]).await);
    }

    gw.write_config(&body(&payments, &monolith, 60));
    eventually("payments at 60%", WAIT, || async {
        let v = gw.admin_json("/admin/cohorts").await;
        let percent = v["cohorts"][0]["routes"][0]["percent"].clone();
        if percent == json!(60.0) {
            Ok(())
        } else {
            Err(percent)
        }
    })
    .await;
    assert_eq!(
        gw.metric(r#"gateway_cohort_percent{cohort="early",route="payments"}"#)
            .await,
        Some(60.0)
    );

    let (mut stayed, mut others, mut moved) = (0, 0, 0);
    for (user, was) in users().iter().zip(&before) {
        let now = served(&gw, "/api/payments/x", &[("x-user", user)]).await;
        let (bucket, sides) = assigned(&gw, "early", user).await;
        assert_eq!(sides["payments"], now, "{user}");
        assert_eq!(now == "payments", bucket < 6_000, "{user}: bucket {bucket}");
        if was == "payments" {
            assert_eq!(now, "payments", "{user} left the new side");
            stayed += 1;
        } else {
            others += 1;
            moved += usize::from(now == "payments");
        }
    }
    // 30 of the 70 points left move: about 43% of the others.
    let share = moved as f64 / others as f64;
    assert!(
        (0.3..=0.56).contains(&share),
        "{moved} of {others} moved ({stayed} stayed)"
    );
    // And explain reads the new file.
    let user = &users()[1];
    let (side, _) = explained(
        &gw.config,
        "/api/payments/x",
        &["--header", &format!("x-user: {user}")],
    );
    assert_eq!(
        side,
        served(&gw, "/api/payments/x", &[("x-user", user)]).await
    );
}

/// `--claim sub=…` and `--claim uid=42` place as the verified tokens whose `sub` is that
/// string and whose `uid` is that number.
#[tokio::test]
async fn a_claim_places_like_the_token_that_carries_it() {
    let key = rsa_key("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()]).await;
    let (payments, monolith) = (Echo::start("payments").await, Echo::start("monolith").await);
    let gw = Gateway::start(&format!(
        r#"auth:
  issuer: {ISSUER}
  audiences: [api]
  jwks_url: http://127.0.0.1:{}/jwks.json
  algorithms: [RS256]
upstreams:
  payments: {{ targets: [{}] }}
  monolith: {{ targets: [{}] }}
cohorts:
  by_sub: {{ by: claim.sub }}
  by_uid: {{ by: claim.uid }}
routes:
  - {{ name: subs, match: {{ path_prefix: /s/ }}, auth: required, split: {{ to: payments, percent: 50, cohort: by_sub, rest: monolith }} }}
  - {{ name: uids, match: {{ path_prefix: /u/ }}, auth: required, split: {{ to: payments, percent: 50, cohort: by_uid, rest: monolith }} }}
"#,
        jwks.port,
        payments.addr(),
        monolith.addr()
    ))
    .await;
    let mut sides = BTreeMap::new();
    for i in 0..40u32 {
        let mut claims = good_claims();
        claims["sub"] = json!(format!("user-{i}"));
        claims["uid"] = json!(i);
        let auth = format!("Bearer {}", sign(&key, &claims));
        let headers = [("authorization", auth.as_str())];
        for (path, claim) in [
            ("/s/x", format!("sub=user-{i}")),
            ("/u/x", format!("uid={i}")),
        ] {
            let side = served(&gw, path, &headers).await;
            let (explain, text) = explained(&gw.config, path, &["--claim", &claim]);
            assert_eq!(explain, side, "{claim}: explain says\n{text}");
            *sides.entry(side).or_insert(0) += 1;
        }
    }
    assert_eq!(sides.len(), 2, "both sides served: {sides:?}");
}
