//! Handler tests through `app().oneshot(..)`. Every test runs twice: `api::sqlite::NAME` and
//! `api::postgres::NAME`.

use std::time::{Duration, Instant};

use auth_service::config::SigningAlg;
use auth_service::keys;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::support::{Backend, PASSWORD, TestApp, jwt_parts, tamper_signature, verify_with_jwks};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                tokio::time::timeout(std::time::Duration::from_secs(60), super::$name(super::Backend::Sqlite))
                    .await
                    .expect("test timed out");
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                tokio::time::timeout(std::time::Duration::from_secs(60), super::$name(super::Backend::Postgres))
                    .await
                    .expect("test timed out");
            })*
        }
    };
}

on_both_backends!(
    register_returns_201_with_id_and_email,
    register_duplicate_email_is_409_case_insensitively,
    register_invalid_input_is_422_naming_the_field,
    malformed_requests_are_problems,
    login_issues_tokens_with_the_documented_claims,
    login_failures_are_indistinguishable,
    login_is_throttled_per_account_and_client_without_locking_out_others,
    login_is_throttled_per_client_ip_across_accounts,
    refresh_rotates_and_the_old_token_stops_working,
    refresh_reuse_revokes_the_whole_family,
    concurrent_refreshes_of_one_token_cannot_both_succeed,
    refresh_rejects_unknown_and_missing_tokens,
    logout_revokes_the_family,
    me_returns_the_user_and_current_roles,
    me_rejects_missing_tampered_expired_and_foreign_tokens,
    jwks_and_openid_configuration_describe_the_keys,
    key_rotation_keeps_the_old_key_for_the_overlap_window,
    es256_and_eddsa_are_selectable,
    healthz_and_metrics,
    healthz_is_503_without_a_signing_key,
    errors_carry_the_request_id,
);

async fn register_returns_201_with_id_and_email(b: Backend) {
    let t = TestApp::new(b).await;
    let r = t
        .post(
            "/api/auth/register",
            json!({"email": "Alice@Example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["email"], "Alice@Example.com");
    assert_eq!(r.body["id"].as_str().map(str::len), Some(36));
    assert_eq!(
        r.body.as_object().map(|o| o.len()),
        Some(2),
        "only id and email: {}",
        r.body
    );
    assert_eq!(t.state.metrics.registrations.get(), 1);
}

async fn register_duplicate_email_is_409_case_insensitively(b: Backend) {
    let t = TestApp::new(b).await;
    t.register("bob@example.com").await;
    let r = t
        .post(
            "/api/auth/register",
            json!({"email": " BOB@example.COM ", "password": "another good passphrase"}),
        )
        .await;
    r.problem(409);
    assert_eq!(r.body["type"], "urn:problem-type:auth-service:email-taken");
}

async fn register_invalid_input_is_422_naming_the_field(b: Backend) {
    let t = TestApp::new(b).await;
    let r = t
        .post(
            "/api/auth/register",
            json!({"email": "not-an-email", "password": PASSWORD}),
        )
        .await;
    let p = r.problem(422);
    assert_eq!(p["errors"][0]["field"], "email");
    assert!(p["detail"].as_str().unwrap().starts_with("email: "), "{p}");

    for weak in ["short", "password123", "aaaaaaaaaaaaaaaa"] {
        let r = t
            .post(
                "/api/auth/register",
                json!({"email": "c@example.com", "password": weak}),
            )
            .await;
        let p = r.problem(422);
        assert_eq!(p["errors"][0]["field"], "password", "{weak}: {p}");
        assert_eq!(p["errors"].as_array().unwrap().len(), 1);
    }

    let r = t
        .post("/api/auth/register", json!({"email": "c@example.com"}))
        .await;
    let p = r.problem(422);
    assert_eq!(p["errors"][0]["field"], "password");
    assert_eq!(p["errors"][0]["message"], "is required");

    let r = t
        .post(
            "/api/auth/register",
            json!({"email": 42, "password": PASSWORD}),
        )
        .await;
    let p = r.problem(422);
    assert_eq!(p["errors"][0]["field"], "email", "{p}");
    assert_eq!(t.state.metrics.registrations.get(), 0);
}

async fn malformed_requests_are_problems(b: Backend) {
    let t = TestApp::new(b).await;
    let bad_json = Request::builder()
        .method(Method::POST)
        .uri("/api/auth/login")
        .header("content-type", "application/json")
        .body(Body::from("{\"email\": "))
        .unwrap();
    t.send(bad_json).await.problem(400);

    let not_json = Request::builder()
        .method(Method::POST)
        .uri("/api/auth/register")
        .header("content-type", "text/plain")
        .body(Body::from("hello"))
        .unwrap();
    t.send(not_json).await.problem(415);

    let huge = Request::builder()
        .method(Method::POST)
        .uri("/api/auth/register")
        .header("content-type", "application/json")
        .body(Body::from(format!(
            "{{\"email\":\"{}\"}}",
            "a".repeat(100_000)
        )))
        .unwrap();
    t.send(huge).await.problem(413);
}

async fn login_issues_tokens_with_the_documented_claims(b: Backend) {
    let t = TestApp::new(b).await;
    let id = t.register("carol@example.com").await;
    let r = t
        .post(
            "/api/auth/login",
            json!({"email": "CAROL@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = &r.body;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh.len(), 43, "32 bytes base64url");

    let access = body["access_token"].as_str().unwrap();
    let (header, claims) = jwt_parts(access);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let active_kid = t.state.keys.current().signing().unwrap().kid.clone();
    assert_eq!(header["kid"], active_kid.as_str());

    let jwks = t.get("/.well-known/jwks.json", None).await.body;
    let issuer = &t.state.settings.issuer;
    let verified =
        verify_with_jwks(access, &jwks, issuer, "api").expect("verifies against the JWKS");
    assert_eq!(verified, claims);
    for k in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "email",
        "roles",
        "scope",
        "token_type",
    ] {
        assert!(claims.get(k).is_some(), "claim {k} missing: {claims}");
    }
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["aud"], "api");
    assert_eq!(claims["email"], "carol@example.com");
    assert_eq!(claims["roles"], json!(["user"]));
    assert_eq!(claims["scope"], "api");
    assert_eq!(claims["token_type"], "access");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_eq!(
        t.state.metrics.logins.with_label_values(&["success"]).get(),
        1
    );
    assert_eq!(t.state.metrics.token_issue_duration.get_sample_count(), 1);
}

async fn login_failures_are_indistinguishable(b: Backend) {
    // Real-ish argon2 cost so that hashing dominates and timing can be compared.
    let t = TestApp::with_config(
        b,
        "password_hash: { memory_kib: 4096, iterations: 2, parallelism: 1 }",
    )
    .await;
    t.register("dave@example.com").await;
    let wrong_password =
        json!({"email": "dave@example.com", "password": "not the password at all"});
    let unknown_email =
        json!({"email": "nobody@example.com", "password": "not the password at all"});

    let a = t.post("/api/auth/login", wrong_password.clone()).await;
    let b2 = t.post("/api/auth/login", unknown_email.clone()).await;
    a.problem(401);
    b2.problem(401);
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(
        strip(&a.body),
        strip(&b2.body),
        "same body for both failures"
    );
    assert_eq!(a.header("www-authenticate"), b2.header("www-authenticate"));

    // Median of interleaved timings: the unknown email still pays for an argon2 verification
    // (without the dummy hash it would answer ~100x faster). A wide band: the CI machine is shared
    // and noisy, and a real leak is an order of magnitude. (Five pairs: the login throttle's free
    // failures per account.)
    async fn timed(t: &TestApp, body: &Value) -> Duration {
        let start = Instant::now();
        let r = t.post("/api/auth/login", body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        start.elapsed()
    }
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        wrong.push(timed(&t, &wrong_password).await);
        unknown.push(timed(&t, &unknown_email).await);
    }
    wrong.sort();
    unknown.sort();
    let (wrong, unknown) = (wrong[2], unknown[2]);
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.33..3.0).contains(&ratio),
        "wrong password {wrong:?} vs unknown email {unknown:?}"
    );
    assert_eq!(
        t.state
            .metrics
            .logins
            .with_label_values(&["invalid_credentials"])
            .get(),
        12
    );
}

async fn login_is_throttled_per_account_and_client_without_locking_out_others(b: Backend) {
    let t = TestApp::with_config(
        b,
        "login_throttle: { free_failures: 3, base_delay: 30s, max_delay: 5m, ip_max_failures: 100, ip_window: 15m }",
    )
    .await;
    t.register("erin@example.com").await;
    let attacker = "198.51.100.66:5555";
    let bad = json!({"email": "erin@example.com", "password": "guess guess guess"});
    for _ in 0..4 {
        t.post_from("/api/auth/login", bad.clone(), attacker)
            .await
            .problem(401);
    }
    // The attacker is now locked out of this account, even with the right password.
    let good = json!({"email": "ERIN@example.com", "password": PASSWORD});
    let r = t.post_from("/api/auth/login", good.clone(), attacker).await;
    r.problem(429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "retry-after {retry}");
    // The owner, from another address, still gets in.
    let r = t
        .post_from("/api/auth/login", good, "203.0.113.7:1234")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let m = &t.state.metrics.logins;
    assert_eq!(m.with_label_values(&["throttled"]).get(), 1);
    assert_eq!(m.with_label_values(&["invalid_credentials"]).get(), 4);
}

async fn login_is_throttled_per_client_ip_across_accounts(b: Backend) {
    let t = TestApp::with_config(
        b,
        "login_throttle: { free_failures: 100, ip_max_failures: 5, ip_window: 10m }",
    )
    .await;
    t.register("frank@example.com").await;
    let sprayer = "198.51.100.99:1";
    for i in 0..5 {
        let r = t
            .post_from(
                "/api/auth/login",
                json!({"email": format!("u{i}@example.com"), "password": "spray spray spray"}),
                sprayer,
            )
            .await;
        r.problem(401);
    }
    let good = json!({"email": "frank@example.com", "password": PASSWORD});
    let r = t.post_from("/api/auth/login", good.clone(), sprayer).await;
    r.problem(429);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 500);
    let r = t.post_from("/api/auth/login", good, "203.0.113.8:1").await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn refresh_rotates_and_the_old_token_stops_working(b: Backend) {
    let t = TestApp::new(b).await;
    t.register("gina@example.com").await;
    let first = t.login("gina@example.com").await;
    let old = first["refresh_token"].as_str().unwrap();
    let r = t
        .post("/api/auth/refresh", json!({"refresh_token": old}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let new = r.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(r.body["token_type"], "Bearer");
    let (_, claims) = jwt_parts(r.body["access_token"].as_str().unwrap());
    assert_eq!(claims["email"], "gina@example.com");
    assert_ne!(r.body["access_token"], first["access_token"]);

    // The new one works once more…
    let r2 = t
        .post("/api/auth/refresh", json!({"refresh_token": new}))
        .await;
    assert_eq!(r2.status, StatusCode::OK);
    assert_eq!(
        t.state
            .metrics
            .refreshes
            .with_label_values(&["success"])
            .get(),
        2
    );

    // …and only the hash is stored.
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM refresh_tokens")
        .fetch_all(&t.state.db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    assert!(!stored.iter().any(|h| h == old || h == &new));
    assert!(stored.contains(&auth_service::refresh::sha256_hex(old.as_bytes())));
}

async fn refresh_reuse_revokes_the_whole_family(b: Backend) {
    let t = TestApp::new(b).await;
    t.register("hank@example.com").await;
    let login = t.login("hank@example.com").await;
    let stolen = login["refresh_token"].as_str().unwrap().to_string();
    // The legitimate client rotates.
    let r = t
        .post("/api/auth/refresh", json!({"refresh_token": stolen}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let current = r.body["refresh_token"].as_str().unwrap().to_string();
    // The thief presents the rotated one: 401, and the family is gone.
    let r = t
        .post("/api/auth/refresh", json!({"refresh_token": stolen}))
        .await;
    r.problem(401);
    assert_eq!(
        r.body["type"],
        "urn:problem-type:auth-service:invalid-refresh-token"
    );
    let r = t
        .post("/api/auth/refresh", json!({"refresh_token": current}))
        .await;
    r.problem(401);
    assert_eq!(t.state.metrics.refresh_reuse_detected.get(), 1);
    assert_eq!(
        t.state
            .metrics
            .refreshes
            .with_label_values(&["reused"])
            .get(),
        1
    );
    assert_eq!(
        t.state
            .metrics
            .refreshes
            .with_label_values(&["revoked"])
            .get(),
        1
    );
    // Another login (another family) is unaffected.
    let other = t.login("hank@example.com").await;
    let r = t
        .post(
            "/api/auth/refresh",
            json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn concurrent_refreshes_of_one_token_cannot_both_succeed(b: Backend) {
    let t = TestApp::new(b).await;
    t.register("ivy@example.com").await;
    let login = t.login("ivy@example.com").await;
    let token = login["refresh_token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let router = t.router.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let mut req =
                crate::support::json_request("/api/auth/refresh", &json!({"refresh_token": token}));
            req.extensions_mut().insert(axum::extract::ConnectInfo(
                "192.0.2.1:1".parse::<std::net::SocketAddr>().unwrap(),
            ));
            router.oneshot(req).await.unwrap().status()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let status = task.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
            "{status}"
        );
        ok += usize::from(status == StatusCode::OK);
    }
    assert!(ok <= 1, "{ok} concurrent refreshes succeeded");
    let won: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens WHERE parent_id IS NOT NULL")
            .fetch_one(&t.state.db.pool)
            .await
            .unwrap();
    assert!(won <= 1, "{won} successors issued");
}

async fn refresh_rejects_unknown_and_missing_tokens(b: Backend) {
    let t = TestApp::new(b).await;
    t.post(
        "/api/auth/refresh",
        json!({"refresh_token": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
    )
    .await
    .problem(401);
    let p = t
        .post("/api/auth/refresh", json!({}))
        .await
        .problem(422)
        .clone();
    assert_eq!(p["errors"][0]["field"], "refresh_token");
    assert_eq!(
        t.state
            .metrics
            .refreshes
            .with_label_values(&["invalid"])
            .get(),
        1
    );

    // An expired one.
    let t = TestApp::with_config(b, "refresh_ttl: 1ms").await;
    t.register("jack@example.com").await;
    let login = t.login("jack@example.com").await;
    // Expired once the service's clock reaches its `expires_at_ms` (`refresh::rotate`).
    let token = login["refresh_token"].as_str().unwrap();
    let expires_at_ms: i64 =
        sqlx::query_scalar("SELECT expires_at_ms FROM refresh_tokens WHERE token_hash = $1")
            .bind(auth_service::refresh::sha256_hex(token.as_bytes()))
            .fetch_one(&t.state.db.pool)
            .await
            .unwrap();
    testkit::eventually(
        "the 1ms refresh TTL to run out",
        Duration::from_secs(5),
        || {
            let now = auth_service::db::now_ms();
            async move {
                if expires_at_ms <= now {
                    Ok(())
                } else {
                    Err(format!("expires at {expires_at_ms}, now {now}"))
                }
            }
        },
    )
    .await;
    t.post(
        "/api/auth/refresh",
        json!({"refresh_token": login["refresh_token"]}),
    )
    .await
    .problem(401);
    assert_eq!(
        t.state
            .metrics
            .refreshes
            .with_label_values(&["expired"])
            .get(),
        1
    );
}

async fn logout_revokes_the_family(b: Backend) {
    let t = TestApp::new(b).await;
    t.register("kate@example.com").await;
    let login = t.login("kate@example.com").await;
    let r1 = t
        .post(
            "/api/auth/refresh",
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    let current = r1.body["refresh_token"].clone();
    let r = t
        .post("/api/auth/logout", json!({"refresh_token": current}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.header("x-request-id").is_some());
    t.post("/api/auth/refresh", json!({"refresh_token": current}))
        .await
        .problem(401);
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens WHERE revoked_at_ms IS NULL")
            .fetch_one(&t.state.db.pool)
            .await
            .unwrap();
    assert_eq!(live, 0, "every token of the family is revoked");
    // Idempotent, and no oracle for unknown tokens.
    let r = t
        .post("/api/auth/logout", json!({"refresh_token": current}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = t
        .post("/api/auth/logout", json!({"refresh_token": "unknown"}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    t.post("/api/auth/logout", json!({"token": "x"}))
        .await
        .problem(422);
    assert_eq!(t.state.metrics.logouts.get(), 2);
}

async fn me_returns_the_user_and_current_roles(b: Backend) {
    let t = TestApp::new(b).await;
    let id = t.register("liam@example.com").await;
    let login = t.login("liam@example.com").await;
    let access = login["access_token"].as_str().unwrap();
    let r = t.get("/api/auth/me", Some(access)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"id": id, "email": "liam@example.com", "roles": ["user"]})
    );

    assert!(
        auth_service::users::grant_role(&t.state.db, "LIAM@example.com", "admin")
            .await
            .unwrap()
    );
    assert!(
        !auth_service::users::grant_role(&t.state.db, "liam@example.com", "admin")
            .await
            .unwrap()
    );
    let r = t.get("/api/auth/me", Some(access)).await;
    assert_eq!(r.body["roles"], json!(["admin", "user"]));
    let (_, claims) = jwt_parts(
        t.login("liam@example.com").await["access_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        claims["roles"],
        json!(["admin", "user"]),
        "new tokens carry the role"
    );
    assert!(
        auth_service::users::grant_role(&t.state.db, "nobody@example.com", "admin")
            .await
            .is_err()
    );
    assert!(
        auth_service::users::revoke_role(&t.state.db, "liam@example.com", "admin")
            .await
            .unwrap()
    );
    assert_eq!(
        t.get("/api/auth/me", Some(access)).await.body["roles"],
        json!(["user"])
    );
}

async fn me_rejects_missing_tampered_expired_and_foreign_tokens(b: Backend) {
    let t = TestApp::new(b).await;
    let id = t.register("mia@example.com").await;
    let login = t.login("mia@example.com").await;
    let access = login["access_token"].as_str().unwrap();

    let r = t.get("/api/auth/me", None).await;
    r.problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    let r = t.get("/api/auth/me", Some(&tamper_signature(access))).await;
    r.problem(401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    t.get("/api/auth/me", Some("not.a.jwt")).await.problem(401);
    // The refresh token is not an access token.
    t.get(
        "/api/auth/me",
        Some(login["refresh_token"].as_str().unwrap()),
    )
    .await
    .problem(401);

    let keys = t.state.keys.current();
    let s = &t.state.settings;
    let roles = vec!["user".to_string()];
    let subject = auth_service::tokens::Subject {
        user_id: &id,
        email: "mia@example.com",
        roles: &roles,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |iss: &str, aud: &str, ttl: u64, at: u64| {
        auth_service::tokens::issue_access_token(
            &keys,
            iss,
            aud,
            "api",
            Duration::from_secs(ttl),
            &subject,
            at,
        )
        .unwrap()
        .0
    };
    // Control: a well-formed token passes.
    assert_eq!(
        t.get("/api/auth/me", Some(&sign(&s.issuer, "api", 60, now)))
            .await
            .status,
        StatusCode::OK
    );
    // Expired (beyond the 30 s leeway), wrong audience, wrong issuer, not yet valid.
    t.get("/api/auth/me", Some(&sign(&s.issuer, "api", 60, now - 200)))
        .await
        .problem(401);
    t.get("/api/auth/me", Some(&sign(&s.issuer, "other", 60, now)))
        .await
        .problem(401);
    t.get(
        "/api/auth/me",
        Some(&sign("https://evil.example", "api", 60, now)),
    )
    .await
    .problem(401);
    t.get("/api/auth/me", Some(&sign(&s.issuer, "api", 60, now + 600)))
        .await
        .problem(401);
    // Signed by a key this service never published.
    let other = TestApp::new(Backend::Sqlite).await;
    let foreign_keys = other.state.keys.current();
    let foreign = auth_service::tokens::issue_access_token(
        &foreign_keys,
        &s.issuer,
        "api",
        "api",
        Duration::from_secs(60),
        &subject,
        now,
    )
    .unwrap()
    .0;
    t.get("/api/auth/me", Some(&foreign)).await.problem(401);
}

async fn jwks_and_openid_configuration_describe_the_keys(b: Backend) {
    let t = TestApp::new(b).await;
    let r = t.get("/.well-known/jwks.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    let keys = r.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["kty"], "RSA");
    assert_eq!(k["alg"], "RS256");
    assert_eq!(k["use"], "sig");
    assert_eq!(
        k["kid"],
        t.state.keys.current().signing().unwrap().kid.as_str()
    );
    assert!(k["n"].is_string() && k["e"].is_string());
    assert!(
        k.get("d").is_none() && k.get("p").is_none(),
        "no private parts"
    );

    let r = t.get("/.well-known/openid-configuration", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let c = &r.body;
    let iss = t.state.settings.issuer.clone();
    assert_eq!(c["issuer"], iss.as_str());
    assert_eq!(c["jwks_uri"], format!("{iss}/.well-known/jwks.json"));
    assert_eq!(c["token_endpoint"], format!("{iss}/api/auth/login"));
    for (name, path) in [
        ("register", "/api/auth/register"),
        ("login", "/api/auth/login"),
        ("refresh", "/api/auth/refresh"),
        ("logout", "/api/auth/logout"),
        ("me", "/api/auth/me"),
    ] {
        assert_eq!(c["endpoints"][name], format!("{iss}{path}"));
    }
    assert_eq!(c["id_token_signing_alg_values_supported"], json!(["RS256"]));
    // The issuer in discovery is the tokens' iss.
    t.register("noah@example.com").await;
    let (_, claims) = jwt_parts(
        t.login("noah@example.com").await["access_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(claims["iss"], c["issuer"]);
}

async fn key_rotation_keeps_the_old_key_for_the_overlap_window(b: Backend) {
    // overlap = access_ttl + jwks_max_age = 2 s
    let t = TestApp::with_config(b, "access_ttl: 1s\njwks_max_age: 1s").await;
    t.register("olga@example.com").await;
    let old_token = t.login("olga@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let old_kid = jwt_parts(&old_token).0["kid"].as_str().unwrap().to_string();

    let rotated = keys::rotate(&t.state.db, SigningAlg::Rs256).await.unwrap();
    assert_eq!(rotated.retired, 1);
    assert!(
        t.state.keys.reload().await.unwrap(),
        "the reload sees the rotation"
    );
    let jwks = t.get("/.well-known/jwks.json", None).await.body;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        vec![rotated.kid.as_str(), old_kid.as_str()],
        "new key first, old key still published"
    );

    let new_token = t.login("olga@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(jwt_parts(&new_token).0["kid"], rotated.kid.as_str());
    assert_eq!(
        t.get("/api/auth/me", Some(&old_token)).await.status,
        StatusCode::OK,
        "old token valid in overlap"
    );

    let listed = keys::list(&t.state.db, t.state.settings.key_overlap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        matches!(listed[0].status, keys::KeyStatus::Overlap { .. }),
        "{listed:?}"
    );
    assert_eq!(listed[1].status, keys::KeyStatus::Active);

    // After the overlap, the old key is gone from the JWKS (no reload needed: filtered by time).
    let start = Instant::now();
    testkit::eventually(
        "old key to leave the JWKS",
        Duration::from_secs(10),
        || async {
            let jwks = t.get("/.well-known/jwks.json", None).await.body;
            (jwks["keys"].as_array().unwrap().len() == 1).then_some(())
        },
    )
    .await;
    assert!(
        start.elapsed() >= Duration::from_millis(1000),
        "not before the overlap ends"
    );
    assert_eq!(
        t.get("/.well-known/jwks.json", None).await.body["keys"][0]["kid"],
        rotated.kid.as_str()
    );
    t.get("/api/auth/me", Some(&old_token)).await.problem(401);
    t.state.keys.reload().await.unwrap();
    assert_eq!(
        t.state
            .metrics
            .signing_keys
            .with_label_values(&["retired"])
            .get(),
        1
    );
    assert_eq!(
        t.state
            .metrics
            .signing_keys
            .with_label_values(&["active"])
            .get(),
        1
    );
}

async fn es256_and_eddsa_are_selectable(b: Backend) {
    for (alg, kty) in [("ES256", "EC"), ("EdDSA", "OKP")] {
        let t = TestApp::with_config(b, &format!("signing_alg: {alg}")).await;
        t.register("pat@example.com").await;
        let access = t.login("pat@example.com").await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(jwt_parts(&access).0["alg"], alg);
        let jwks = t.get("/.well-known/jwks.json", None).await.body;
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(jwks["keys"][0]["alg"], alg);
        verify_with_jwks(&access, &jwks, &t.state.settings.issuer, "api").unwrap();
        assert_eq!(
            t.get("/api/auth/me", Some(&access)).await.status,
            StatusCode::OK
        );
        let c = t.get("/.well-known/openid-configuration", None).await.body;
        assert_eq!(c["id_token_signing_alg_values_supported"], json!([alg]));
    }
}

async fn healthz_is_503_without_a_signing_key(b: Backend) {
    let db = crate::support::TestDb::new(b).await;
    let settings = crate::support::settings(&db.url, "");
    let conn = auth_service::db::Db::connect(&settings.database_url, 2)
        .await
        .unwrap();
    // with_db does not generate a key (AppState::new does).
    let state = auth_service::AppState::with_db(settings, conn)
        .await
        .unwrap();
    let t = TestApp {
        router: auth_service::app(state.clone()),
        state,
        db,
        peer: "192.0.2.1:1".parse().unwrap(),
    };
    let r = t.get("/healthz", None).await;
    r.problem(503);
    assert!(r.header("retry-after").is_some());
    t.register("rae@example.com").await;
    t.post(
        "/api/auth/login",
        json!({"email": "rae@example.com", "password": PASSWORD}),
    )
    .await
    .problem(503);
    assert_eq!(
        t.get("/.well-known/jwks.json", None).await.body,
        json!({"keys": []})
    );
}

async fn healthz_and_metrics(b: Backend) {
    let t = TestApp::new(b).await;
    let r = t.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    t.register("quinn@example.com").await;
    t.login("quinn@example.com").await;
    t.get("/api/auth/me/../nope", None).await;
    let r = t.get("/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = &r.text;
    for line in [
        "auth_registrations_total 1",
        "auth_logins_total{result=\"success\"} 1",
        "auth_logins_total{result=\"throttled\"} 0",
        "auth_refresh_reuse_detected_total 0",
        "auth_token_issue_duration_seconds_count 1",
        "auth_signing_keys{status=\"active\"} 1",
        "auth_http_requests_total{method=\"POST\",route=\"/api/auth/login\",status=\"200\"} 1",
        "auth_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
        "auth_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "auth_http_request_duration_seconds_count{method=\"POST\",route=\"/api/auth/register\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("auth_refreshes_total{result=\"success\"} 0"));
}

async fn errors_carry_the_request_id(b: Backend) {
    let t = TestApp::new(b).await;
    let r = t.get("/nope", None).await;
    r.problem(404);
    let generated = r.header("x-request-id").unwrap().to_string();
    assert_eq!(generated.len(), 36);

    let req = Request::builder()
        .method(Method::GET)
        .uri("/api/auth/me")
        .header("x-request-id", "client-abc.123_X")
        .body(Body::empty())
        .unwrap();
    let r = t.send(req).await;
    r.problem(401);
    assert_eq!(r.header("x-request-id"), Some("client-abc.123_X"));

    let req = Request::builder()
        .method(Method::GET)
        .uri("/healthz")
        .header("x-request-id", "bad id with spaces")
        .body(Body::empty())
        .unwrap();
    let r = t.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.header("x-request-id"), Some("bad id with spaces"));

    let r = t
        .send(
            Request::builder()
                .method(Method::DELETE)
                .uri("/api/auth/login")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.problem(405);
}
