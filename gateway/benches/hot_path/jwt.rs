//! Token verification per algorithm (RS256, ES256, EdDSA): the full RFC 8725 check without the
//! cache (`jwt/verify`), and an admission whose token is in the verified-token cache
//! (`jwt/admit_cached`, what a client reusing its token pays), against a static JWKS.

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use criterion::Criterion;
use gateway::auth::Authenticator;
use gateway::auth::jwks::KeySet;
use gateway::auth::verify;
use gateway::config::model::{AuthConfig, RouteAuth};
use gateway::metrics::Metrics;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "http://127.0.0.1:8001";

struct Key {
    name: &'static str,
    alg: Algorithm,
    enc: EncodingKey,
}

fn keys() -> Vec<Key> {
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let rsa_der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).expect("rsa der");
    let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .expect("p-256");
    let ed = aws_lc_rs::signature::Ed25519KeyPair::generate().expect("ed25519");
    vec![
        Key {
            name: "RS256",
            alg: Algorithm::RS256,
            enc: EncodingKey::from_rsa_pem(
                testkit::pem("PRIVATE KEY", rsa_der.as_ref()).as_bytes(),
            )
            .expect("rsa"),
        },
        Key {
            name: "ES256",
            alg: Algorithm::ES256,
            enc: EncodingKey::from_ec_der(ec.to_pkcs8v1().expect("ec der").as_ref()),
        },
        Key {
            name: "EdDSA",
            alg: Algorithm::EdDSA,
            enc: EncodingKey::from_ed_der(ed.to_pkcs8v1().expect("ed der").as_ref()),
        },
    ]
}

fn jwks(keys: &[Key]) -> KeySet {
    let list: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&k.enc, k.alg).expect("jwk"))
                .expect("jwk json");
            jwk["kid"] = json!(k.name);
            jwk["use"] = json!("sig");
            jwk
        })
        .collect();
    KeySet::parse(&serde_json::to_vec(&json!({ "keys": list })).expect("json")).expect("jwks")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// What the auth-service puts in an access token.
fn token(key: &Key, user: u32) -> String {
    let t = now();
    let claims = json!({
        "iss": ISSUER, "sub": (100_000 + user).to_string(), "aud": "api",
        "exp": t + 3600, "iat": t, "nbf": t, "jti": format!("jti-{user:016}"),
        "email": format!("u{}@example.com", 100_000 + user), "roles": ["user"],
        "scope": "api", "token_type": "access",
    });
    let mut h = Header::new(key.alg);
    h.kid = Some(key.name.to_string());
    h.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&h, &claims, &key.enc).expect("sign")
}

fn auth_config() -> AuthConfig {
    AuthConfig {
        issuer: ISSUER.into(),
        audiences: vec!["api".into()],
        jwks_url: "http://127.0.0.1:9/jwks.json".into(),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        leeway: Duration::from_secs(30),
        claims_to_headers: ["sub", "email", "roles"]
            .into_iter()
            .zip(["x-user-id", "x-user-email", "x-user-roles"])
            .map(|(c, h)| (c.to_string(), HeaderName::from_static(h)))
            .collect(),
        jwks_refresh_interval: Duration::from_secs(300),
        jwks_min_refresh_interval: Duration::from_secs(10),
        jwks_unknown_kid_cooldown: Duration::from_secs(10),
        jwks_timeout: Duration::from_secs(1),
        max_token_bytes: 8192,
        token_cache_size: 10_000,
        kept_claims: Vec::new(),
    }
}

/// Runs a future that must not wait (a cache hit never does).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("admission waited: the token should have been in the cache"),
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    h
}

pub fn bench(c: &mut Criterion) {
    let keys = keys();
    let cfg = auth_config();
    let set = jwks(&keys);
    let auth = Authenticator::new(&cfg, None, Arc::new(Metrics::new())).expect("authenticator");
    auth.jwks.install(jwks(&keys));
    let rule = RouteAuth::Required {
        roles: vec!["user".into()],
        scopes: vec![],
    };

    let mut g = c.benchmark_group("jwt/verify");
    for k in &keys {
        let t = token(k, 42);
        let n = now();
        verify::verify(&t, &set, &cfg, n).expect("valid token");
        g.bench_function(k.name, |b| {
            b.iter(|| black_box(verify::verify(black_box(&t), &set, &cfg, n)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("jwt/admit_cached");
    for k in &keys {
        let headers = bearer(&token(k, 42));
        ready(auth.admit(&headers, &rule)).expect("admitted");
        g.bench_function(k.name, |b| {
            b.iter(|| black_box(ready(auth.admit(black_box(&headers), &rule))))
        });
    }
    // 1,000 distinct tokens, all cached: the lookup with a populated cache.
    let rs = &keys[0];
    let many: Vec<HeaderMap> = (0..1000).map(|u| bearer(&token(rs, u))).collect();
    for h in &many {
        ready(auth.admit(h, &rule)).expect("admitted");
    }
    g.bench_function("RS256_1000_tokens", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % many.len();
            black_box(ready(auth.admit(black_box(&many[i]), &rule)))
        })
    });
    g.finish();
}
