//! Authentication at the gateway: RFC 8725 validation against a JWKS, identity headers, the
//! JWKS lifecycle, and end to end with the real auth-service.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use testkit::{eventually, pem};

use crate::support::{AuthService, Echo, Gateway, WAIT, Want, get_json, kid_of};

pub(crate) const ISSUER: &str = "https://issuer.test";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until `cooldown` (the gateway's `jwks_unknown_kid_cooldown`) has passed since its last
/// JWKS fetch, so that a token with an unknown `kid` makes it fetch again. The cooldown runs
/// from the start of the last fetch; the gateway exports the end of the last successful one,
/// which is later: waiting from that is enough while no fetch has failed since (true where
/// this is called).
async fn wait_out_unknown_kid_cooldown(gw: &Gateway, cooldown: Duration) {
    eventually(
        "the unknown-kid cooldown since the last JWKS fetch",
        WAIT,
        || async {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            match gw
                .metric("gateway_jwks_last_success_timestamp_seconds")
                .await
            {
                Some(at) if now >= at + cooldown.as_secs_f64() => Ok(()),
                at => Err(format!("last fetch at {at:?}, now {now:.3}")),
            }
        },
    )
    .await
}

/// A signing key the test holds, and its public JWK.
pub(crate) struct TestKey {
    kid: String,
    alg: Algorithm,
    enc: EncodingKey,
    public_pem_like: Vec<u8>,
    pub(crate) jwk: Value,
}

pub(crate) fn rsa_key(kid: &str) -> TestKey {
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).unwrap();
    let enc = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", der.as_ref()).as_bytes()).unwrap();
    finish(kid, Algorithm::RS256, enc)
}

fn ec_key(kid: &str) -> TestKey {
    let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .unwrap();
    let der = kp.to_pkcs8v1().unwrap();
    finish(
        kid,
        Algorithm::ES256,
        EncodingKey::from_ec_der(der.as_ref()),
    )
}

fn finish(kid: &str, alg: Algorithm, enc: EncodingKey) -> TestKey {
    let mut jwk: Value = serde_json::to_value(Jwk::from_encoding_key(&enc, alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    // What an attacker would use as an HMAC secret: the public key as published.
    let public_pem_like = serde_json::to_vec(&jwk).unwrap();
    TestKey {
        kid: kid.into(),
        alg,
        enc,
        public_pem_like,
        jwk,
    }
}

pub(crate) fn good_claims() -> Value {
    let t = now();
    json!({ "iss": ISSUER, "aud": "api", "sub": "user-42", "email": "ada@example.test",
            "roles": ["user", "beta"], "scope": "api read", "iat": t, "nbf": t, "exp": t + 300 })
}

pub(crate) fn sign(key: &TestKey, claims: &Value) -> String {
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, claims, &key.enc).unwrap()
}

fn sign_with_header(key: &TestKey, header: Value, claims: &Value) -> String {
    // Build the signing input by hand so any header member can be set.
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key.enc, key.alg).unwrap();
    format!("{input}.{sig}")
}

/// A JWKS endpoint the test controls, counting fetches.
pub(crate) struct JwksServer {
    pub(crate) port: u16,
    keys: Arc<std::sync::Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub(crate) async fn start(keys: Vec<Value>) -> JwksServer {
        Self::start_on(testkit::free_port(), keys).await
    }

    async fn start_on(port: u16, keys: Vec<Value>) -> JwksServer {
        let keys = Arc::new(std::sync::Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (k, f) = (keys.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (k, f) = (k.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = json!({ "keys": *k.lock().unwrap() }).to_string();
                    (
                        [
                            ("content-type", "application/json"),
                            ("cache-control", "public, max-age=300"),
                        ],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer {
            port,
            keys,
            fetches,
            _task: task,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn gateway_body(jwks_port: u16, origin: &str) -> String {
    format!(
        r#"
auth:
  issuer: {ISSUER}
  audiences: [api, other]
  jwks_url: http://127.0.0.1:{jwks_port}/jwks.json
  algorithms: [RS256, ES256]
  leeway: 5s
  jwks_unknown_kid_cooldown: 2s
  claims_to_headers: {{ sub: X-User-Id, email: X-User-Email, roles: X-User-Roles }}
upstreams:
  o: {{ targets: [{origin}] }}
routes:
  - {{ name: public, match: {{ path_prefix: /public/ }}, upstream: o }}
  - {{ name: optional, match: {{ path_prefix: /opt/ }}, upstream: o, auth: optional }}
  - {{ name: required, match: {{ path_prefix: /req/ }}, upstream: o, auth: required }}
  - {{ name: admin, match: {{ path_prefix: /admin/ }}, upstream: o, auth: {{ roles: [admin] }} }}
  - {{ name: writers, match: {{ path_prefix: /write/ }}, upstream: o, auth: {{ scopes: [write] }} }}
  - name: sticky
    match: {{ path_prefix: /sticky/ }}
    split: [ {{ upstream: o, weight: 1 }}, {{ upstream: o, weight: 1 }} ]
    sticky_by: claim.sub
    auth: required
"#
    )
}

async fn call(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = testkit::http_client().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    answer(req).await
}

/// Sends `req`: the status, the headers and the body (as JSON when it is).
async fn answer(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        h,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A 401 problem+json with this challenge and the request's id.
fn assert_unauthorized(
    what: &str,
    (status, h, v): (u16, &reqwest::header::HeaderMap, &Value),
    challenge: &str,
) {
    assert_eq!(status, 401, "{what}: {v}");
    assert_eq!(h["www-authenticate"], challenge, "{what}");
    assert_eq!(h["content-type"], "application/problem+json", "{what}");
    assert_eq!(
        v["type"], "urn:problem-type:gateway:invalid-token",
        "{what}"
    );
    assert_eq!(
        v["request_id"],
        h["x-request-id"].to_str().unwrap(),
        "{what}"
    );
}

#[tokio::test]
async fn hostile_tokens_are_401_and_a_good_one_passes() {
    let rsa = rsa_key("rsa-1");
    let ec = ec_key("ec-1");
    let stranger = rsa_key("not-published");
    let jwks = JwksServer::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let origin = Echo::start("o").await;
    let gw = Gateway::start(&gateway_body(jwks.port, &origin.addr())).await;

    // The good tokens, RS256 and ES256, with the scheme in any case.
    for token in [sign(&rsa, &good_claims()), sign(&ec, &good_claims())] {
        let (s, _, v) = call(
            &gw,
            "/req/x",
            &[("authorization", &format!("bearer {token}"))],
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["headers"]["x-user-id"], "user-42");
        assert_eq!(v["headers"]["x-user-email"], "ada@example.test");
        assert_eq!(v["headers"]["x-user-roles"], "user,beta");
        assert_eq!(
            v["headers"]["authorization"],
            format!("Bearer {token}"),
            "forwarded as Bearer"
        );
    }

    let t = now();
    let with = |patch: Value| {
        let mut c = good_claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let tampered = {
        let good = sign(&rsa, &good_claims());
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        parts[1] =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with(json!({ "sub": "admin" }))).unwrap());
        parts.join(".")
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "kid": "rsa-1" }).to_string()),
        URL_SAFE_NO_PAD.encode(good_claims().to_string())
    );
    let hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa-1".into());
        jsonwebtoken::encode(
            &h,
            &good_claims(),
            &EncodingKey::from_secret(&rsa.public_pem_like),
        )
        .unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                &rsa,
                &with(json!({ "exp": t - 60, "iat": t - 400, "nbf": t - 400 })),
            ),
        ),
        (
            "not yet valid",
            sign(&rsa, &with(json!({ "nbf": t + 120 }))),
        ),
        (
            "issued in the future",
            sign(&rsa, &with(json!({ "iat": t + 120 }))),
        ),
        (
            "wrong iss",
            sign(&rsa, &with(json!({ "iss": "https://evil.test" }))),
        ),
        ("missing iss", sign(&rsa, &with(json!({ "iss": null })))),
        (
            "wrong aud",
            sign(&rsa, &with(json!({ "aud": "someone-else" }))),
        ),
        ("missing aud", sign(&rsa, &with(json!({ "aud": null })))),
        ("missing exp", sign(&rsa, &with(json!({ "exp": null })))),
        (
            "iss an array naming our issuer",
            sign(&rsa, &with(json!({ "iss": ["https://evil", ISSUER] }))),
        ),
        ("sub a number", sign(&rsa, &with(json!({ "sub": 42 })))),
        (
            "jti an object",
            sign(&rsa, &with(json!({ "jti": { "id": 1 } }))),
        ),
        ("alg none", alg_none),
        ("HS256 signed with the public key", hs256_with_public_key),
        ("unknown kid", sign(&stranger, &good_claims())),
        ("tampered payload", tampered),
        (
            "crit header",
            sign_with_header(
                &rsa,
                json!({ "alg": "RS256", "kid": "rsa-1", "crit": ["exp"] }),
                &good_claims(),
            ),
        ),
        (
            "jku pointing elsewhere",
            sign_with_header(
                &stranger,
                json!({ "alg": "RS256", "kid": "not-published", "jku": format!("http://127.0.0.1:{}/jwks.json", jwks.port) }),
                &good_claims(),
            ),
        ),
        (
            "embedded jwk",
            sign_with_header(
                &stranger,
                json!({ "alg": "RS256", "kid": "not-published", "jwk": stranger.jwk }),
                &good_claims(),
            ),
        ),
        (
            "oversized",
            sign(&rsa, &with(json!({ "pad": "x".repeat(10_000) }))),
        ),
        ("garbage", "not-a-token".into()),
        ("three dots", "a.b.c".into()),
        ("empty parts", "..".into()),
        (
            "binary junk",
            "\u{1}\u{2}.\u{3}.\u{4}".replace(|c: char| c.is_control(), "A"),
        ),
    ];
    for (what, token) in &cases {
        let (s, h, v) = call(
            &gw,
            "/req/x",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_unauthorized(what, (s, &h, &v), "Bearer error=\"invalid_token\"");
        // On an optional route a bad token is still a 401.
        let (s, _, _) = call(
            &gw,
            "/opt/x",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(s, 401, "{what} on an optional route");
    }
    // `jku`/`jwk` were not followed, and forged kids did not hammer the JWKS: one initial fetch
    // plus at most one re-fetch inside the cooldown.
    assert!(jwks.fetches() <= 2, "JWKS fetched {} times", jwks.fetches());
    let m = gw.metrics().await;
    for reason in [
        "expired",
        "bad_audience",
        "disallowed_algorithm",
        "unknown_kid",
        "bad_signature",
        "too_large",
        "critical_header",
        "issued_in_future",
        "not_yet_valid",
        "bad_issuer",
        "missing_claim",
        "bad_claim_type",
        "malformed",
    ] {
        assert!(
            m.contains(&format!(
                "gateway_auth_rejections_total{{reason=\"{reason}\",route=\"required\"}}"
            )),
            "{reason} not counted:\n{m}"
        );
    }

    // Missing token: 401 with a bare challenge; two credentials: 400.
    let (s, h, _) = call(&gw, "/req/x", &[]).await;
    assert_eq!(
        (s, h["www-authenticate"].to_str().unwrap()),
        (401, "Bearer realm=\"gateway\"")
    );
    let token = sign(&rsa, &good_claims());
    let resp = testkit::http_client()
        .get(gw.url("/req/x"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "urn:problem-type:gateway:invalid-request");
}

/// A GET with these `Authorization` values (raw bytes: non-ASCII and tabs included).
async fn call_raw_authorization(
    gw: &Gateway,
    path: &str,
    values: &[&[u8]],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = testkit::http_client().get(gw.url(path));
    for v in values {
        req = req.header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(v).unwrap(),
        );
    }
    answer(req).await
}

/// On `optional` and `required` routes an `Authorization` header is a well-formed bearer token
/// that verifies, or a 401 that never reaches the origin; anonymous requests reach it with no
/// `Authorization`; routes without `auth` pass the header untouched.
#[tokio::test]
async fn authorization_is_all_or_nothing() {
    let rsa = rsa_key("rsa-1");
    let jwks = JwksServer::start(vec![rsa.jwk.clone()]).await;
    let origin = Echo::start_logging("o").await;
    let gw = Gateway::start(&gateway_body(jwks.port, &origin.addr())).await;
    let token = sign(&rsa, &good_claims());
    // The forgeries of the issue: the valid token with one character made non-ASCII, or
    // separated by a tab; then the other near-misses of the grammar.
    let mut non_ascii = format!("Bearer {token}").into_bytes();
    let last = non_ascii.len() - 1;
    non_ascii.splice(last.., "\u{e9}".bytes());
    let tab = format!("Bearer\t{token}");
    let two_spaces = format!("Bearer  {token}");
    let invalid_token = "Bearer error=\"invalid_token\"";
    let no_error_code = "Bearer realm=\"gateway\"";
    let cases: [(&str, &[u8], &str, &str); 6] = [
        (
            "non-ASCII",
            &non_ascii,
            invalid_token,
            "malformed_credential",
        ),
        ("tab", tab.as_bytes(), invalid_token, "malformed_credential"),
        (
            "two spaces",
            two_spaces.as_bytes(),
            invalid_token,
            "malformed_credential",
        ),
        (
            "empty token",
            b"Bearer ",
            invalid_token,
            "malformed_credential",
        ),
        ("no token", b"Bearer", invalid_token, "malformed_credential"),
        (
            "Basic",
            b"Basic dXNlcjpwYXNz",
            no_error_code,
            "unsupported_scheme",
        ),
    ];
    for route in ["opt", "req"] {
        for (i, (what, value, challenge, _)) in cases.iter().enumerate() {
            let (s, h, v) =
                call_raw_authorization(&gw, &format!("/{route}/forged-{i}"), &[value]).await;
            assert_unauthorized(&format!("{what} on /{route}"), (s, &h, &v), challenge);
        }
    }
    let m = gw.metrics().await;
    for route in ["optional", "required"] {
        for (_, _, _, reason) in &cases {
            assert!(
                m.contains(&format!(
                    "gateway_auth_rejections_total{{reason=\"{reason}\",route=\"{route}\"}}"
                )),
                "{reason} on {route} not counted:\n{m}"
            );
        }
    }

    // Anonymous on an optional route: the origin sees no Authorization at all; with the
    // token, the verified one.
    let (s, _, v) = call(&gw, "/opt/anonymous", &[]).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["headers"].get("authorization").is_none(), "{v}");
    assert!(v["headers"].get("x-user-id").is_none(), "{v}");
    let (s, _, v) = call_raw_authorization(
        &gw,
        "/opt/identified",
        &[format!("Bearer {token}").as_bytes()],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["headers"]["authorization"], format!("Bearer {token}"));
    assert_eq!(v["headers"]["x-user-id"], "user-42");

    // Without `auth`, Authorization is the backend's business: passed untouched, whatever it is.
    for (what, value, _, _) in &cases {
        let (s, _, v) = call_raw_authorization(&gw, "/public/x", &[value]).await;
        assert_eq!(s, 200, "{what} on /public: {v}");
        assert_eq!(
            v["headers"]["authorization"],
            // A field value ends at its last non-blank byte (RFC 9110 §5.5).
            String::from_utf8_lossy(value).trim_end(),
            "{what} on /public"
        );
    }
    // Two Authorization headers stay an error where they are looked at.
    let bearer = format!("Bearer {token}");
    let (s, _, v) =
        call_raw_authorization(&gw, "/opt/two", &[bearer.as_bytes(), bearer.as_bytes()]).await;
    assert_eq!(
        (s, &v["type"]),
        (400, &json!("urn:problem-type:gateway:invalid-request"))
    );

    // The origin saw the anonymous and identified requests, and none of the refused ones.
    let log = eventually("the origin logged /opt/identified", WAIT, || async {
        let log = origin.proc.stderr();
        if log.contains("\"/opt/identified\"") {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .await;
    assert!(log.contains("\"/opt/anonymous\""), "{log}");
    for bad in ["forged-", "/opt/two"] {
        assert!(
            !log.contains(bad),
            "a refused request reached the origin:\n{log}"
        );
    }
}

#[tokio::test]
async fn identity_headers_cannot_be_spoofed_and_rules_apply() {
    let rsa = rsa_key("rsa-1");
    let jwks = JwksServer::start(vec![rsa.jwk.clone()]).await;
    let origin = Echo::start("o").await;
    let gw = Gateway::start(&gateway_body(jwks.port, &origin.addr())).await;
    let token = sign(&rsa, &good_claims());
    let bearer = format!("Bearer {token}");

    // Every spelling of a spoofed identity header, on every kind of route.
    let spoofs = [
        ("X-User-Id", "root"),
        ("x-user-id", "root"),
        ("X_User_Id", "root"),
        ("x_user-id", "root"),
        ("X-USER-ROLES", "admin"),
        ("x_user_email", "root@evil"),
    ];
    for path in ["/public/x", "/opt/x", "/req/x"] {
        let mut req = testkit::http_client().get(gw.url(path));
        for (k, v) in spoofs {
            req = req.header(k, v);
        }
        if path == "/req/x" {
            req = req.header("authorization", &bearer);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        let headers = v["headers"].as_object().unwrap();
        for (name, value) in headers {
            let n = name.replace('_', "-");
            if n.starts_with("x-user-") {
                assert_eq!(path, "/req/x", "{name} reached the origin on {path}");
                assert!(value.is_string(), "{name} must be single-valued: {value}");
                assert_ne!(value, "root");
                assert_ne!(value, "admin");
                assert_ne!(value, "root@evil");
            }
        }
        if path == "/req/x" {
            assert_eq!(headers["x-user-id"], "user-42");
        }
    }

    // Optional: anonymous without a token, identified with one.
    let (s, _, v) = call(&gw, "/opt/x", &[]).await;
    assert_eq!(s, 200);
    assert!(v["headers"].get("x-user-id").is_none());
    let (_, _, v) = call(&gw, "/opt/x", &[("authorization", &bearer)]).await;
    assert_eq!(v["headers"]["x-user-id"], "user-42");

    // Roles and scopes: 403 insufficient_scope.
    let (s, h, v) = call(&gw, "/admin/x", &[("authorization", &bearer)]).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(h["www-authenticate"], "Bearer error=\"insufficient_scope\"");
    assert_eq!(v["type"], "urn:problem-type:gateway:insufficient-scope");
    let (s, _, _) = call(&gw, "/write/x", &[("authorization", &bearer)]).await;
    assert_eq!(s, 403);
    let mut admin_claims = good_claims();
    admin_claims["roles"] = json!(["admin"]);
    admin_claims["scope"] = json!("api write");
    let admin = format!("Bearer {}", sign(&rsa, &admin_claims));
    assert_eq!(
        call(&gw, "/admin/x", &[("authorization", &admin)]).await.0,
        200
    );
    assert_eq!(
        call(&gw, "/write/x", &[("authorization", &admin)]).await.0,
        200
    );

    // The verified-token cache: the same token again is a hit, not a new signature check.
    let hits_before = gw
        .metric(r#"gateway_auth_token_cache_total{result="hit"}"#)
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            call(&gw, "/req/x", &[("authorization", &bearer)]).await.0,
            200
        );
    }
    let hits_after = gw
        .metric(r#"gateway_auth_token_cache_total{result="hit"}"#)
        .await
        .unwrap();
    assert!(
        hits_after - hits_before >= 5.0,
        "{hits_before} -> {hits_after}"
    );
}

#[tokio::test]
async fn jwks_rotation_single_flight_and_readiness() {
    let rsa = rsa_key("rsa-1");
    let jwks_port = testkit::free_port();
    let origin = Echo::start("o").await;
    // The gateway starts before its JWKS is reachable: alive, not ready, and auth routes say
    // 503 (not 401: the token is not at fault).
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (testkit::free_port(), testkit::free_port());
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "{}{}",
            crate::support::preamble(port, admin),
            gateway_body(jwks_port, &origin.addr())
        ),
    )
    .unwrap();
    let gw = Gateway::spawn(dir, config, port, admin).await;
    let ready = testkit::http_client()
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let token = sign(&rsa, &good_claims());
    let (s, h, _) = call(
        &gw,
        "/req/x",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(s, 503);
    assert!(h.contains_key("retry-after"));

    let jwks = JwksServer::start_on(jwks_port, vec![rsa.jwk.clone()]).await;
    testkit::wait_http_ok(&gw.admin_url("/readyz"), Duration::from_secs(15)).await;
    assert_eq!(
        call(
            &gw,
            "/req/x",
            &[("authorization", &format!("Bearer {token}"))]
        )
        .await
        .0,
        200
    );
    let base = jwks.fetches();

    // Rotation: a new key is published; 30 concurrent requests with a token from it cause one
    // re-fetch between them, and all pass.
    let rsa2 = rsa_key("rsa-2");
    jwks.keys.lock().unwrap().push(rsa2.jwk.clone());
    wait_out_unknown_kid_cooldown(&gw, Duration::from_secs(2)).await;
    let new_token = format!("Bearer {}", sign(&rsa2, &good_claims()));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let url = gw.url("/req/x");
        let auth = new_token.clone();
        tasks.push(tokio::spawn(async move {
            get_json(&url, &[("authorization", &auth)]).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        jwks.fetches() - base,
        1,
        "one shared re-fetch for the new kid"
    );
    // The old key's tokens keep working.
    assert_eq!(
        call(
            &gw,
            "/req/x",
            &[("authorization", &format!("Bearer {token}"))]
        )
        .await
        .0,
        200
    );

    // A storm of forged kids inside the cooldown costs at most one more fetch.
    let forger = rsa_key("forged");
    for i in 0..40 {
        let mut c = good_claims();
        c["jti"] = json!(i);
        let (s, _, _) = call(
            &gw,
            "/req/x",
            &[("authorization", &format!("Bearer {}", sign(&forger, &c)))],
        )
        .await;
        assert_eq!(s, 401);
    }
    assert!(
        jwks.fetches() - base <= 2,
        "{} fetches",
        jwks.fetches() - base
    );

    let m = gw
        .metric(r#"gateway_jwks_refreshes_total{result="success"}"#)
        .await
        .unwrap();
    assert!(m >= 2.0);
}

/// End to end with the real auth-service: register, log in, call through the gateway; rotate
/// keys with the CLI; stop the auth-service and keep serving from the cached keys.
#[tokio::test]
async fn end_to_end_with_the_real_auth_service() {
    let mut auth = AuthService::start().await;
    let origin = Echo::start("o").await;
    let origin2 = Echo::start("o2").await;
    let gw = Gateway::start(&format!(
        "{}upstreams:\n  o: {{ targets: [{}] }}\nroutes:\n  - {{ name: me, match: {{ path_prefix: /api/ }}, upstream: o, auth: required }}\n  - {{ name: staff, match: {{ path_prefix: /staff/ }}, upstream: o, auth: {{ roles: [staff] }} }}\n  - name: canary\n    match: {{ path_prefix: /canary/ }}\n    split: [ {{ upstream: o, weight: 50 }}, {{ upstream: o2, weight: 50 }} ]\n    sticky_by: claim.sub\n    auth: required\n",
        auth.gateway_auth_block(),
        origin.addr()
    ).replace("upstreams:\n", &format!("upstreams:\n  o2: {{ targets: [{}] }}\n", origin2.addr())))
    .await;

    let token = auth.register_and_login("grace@example.test").await;
    let bearer = format!("Bearer {token}");
    let (s, v) = get_json(
        &gw.url("/api/orders"),
        &[
            ("authorization", &bearer),
            ("X-User-Id", "someone-else"),
            ("x_user_id", "someone-else"),
            ("X_USER-ID", "someone-else"),
            ("x-user-roles", "admin"),
            ("X_User_Email", "root@evil.test"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let me: Value = testkit::http_client()
        .get(auth.url("/api/auth/me"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["headers"]["x-user-id"], me["id"],
        "the origin sees the verified user id"
    );
    assert_eq!(v["headers"]["x-user-email"], "grace@example.test");
    assert_eq!(v["headers"]["x-user-roles"], "user");
    // Only the verified spellings arrive: none of the client's underscore variants survive.
    let seen: Vec<&String> = v["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.replace('_', "-").starts_with("x-user-"))
        .collect();
    assert_eq!(seen, ["x-user-email", "x-user-id", "x-user-roles"], "{v}");

    // Role-gated: 403 until the role is granted (new tokens carry it).
    assert_eq!(
        get_json(&gw.url("/staff/x"), &[("authorization", &bearer)])
            .await
            .0,
        403
    );
    auth.cli(&["users", "grant-role", "grace@example.test", "staff"]);
    let staff = format!("Bearer {}", auth.login("grace@example.test").await);
    assert_eq!(
        get_json(&gw.url("/staff/x"), &[("authorization", &staff)])
            .await
            .0,
        200
    );

    // Sticky by the verified `sub`.
    let mut first = None;
    for _ in 0..10 {
        let (_, v) = get_json(&gw.url("/canary/x"), &[("authorization", &bearer)]).await;
        let side = v["server"].as_str().unwrap().to_string();
        assert_eq!(first.get_or_insert(side.clone()), &side);
    }

    // Key rotation: tokens from the new key are accepted after one re-fetch; old ones keep
    // working through the overlap.
    let old_kid = kid_of(&token);
    let before = gw
        .metric(r#"gateway_jwks_refreshes_total{result="success"}"#)
        .await
        .unwrap();
    auth.cli(&["keys", "rotate"]);
    let new_token = eventually(
        "a token from the new key",
        Duration::from_secs(10),
        || async {
            let t = auth.login("grace@example.test").await;
            (kid_of(&t) != old_kid).then_some(t)
        },
    )
    .await;
    wait_out_unknown_kid_cooldown(&gw, Duration::from_secs(1)).await;
    let (s, v) = get_json(
        &gw.url("/api/x"),
        &[("authorization", &format!("Bearer {new_token}"))],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        get_json(&gw.url("/api/x"), &[("authorization", &bearer)])
            .await
            .0,
        200,
        "old token, overlap"
    );
    let after = gw
        .metric(r#"gateway_jwks_refreshes_total{result="success"}"#)
        .await
        .unwrap();
    assert!(after > before, "the new kid was fetched");

    // The auth-service goes away: cached keys keep serving; background refreshes fail quietly.
    auth.stop();
    for t in [&bearer, &format!("Bearer {new_token}")] {
        assert_eq!(
            get_json(&gw.url("/api/x"), &[("authorization", t)]).await.0,
            200
        );
    }
    gw.wait_metric(
        r#"gateway_jwks_refreshes_total{result="failure"}"#,
        Want::AtLeast(1.0),
    )
    .await;
    assert_eq!(
        get_json(&gw.url("/api/x"), &[("authorization", &bearer)])
            .await
            .0,
        200
    );
    let ready = testkit::http_client()
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "keys loaded once stay loaded");
}
