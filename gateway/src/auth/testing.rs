//! Test support for the auth modules: a config, a signing key with its JWKS, and the case
//! count of the `fuzz_` properties (`PROPTEST_CASES` overrides the default, see
//! `docs/fuzzing.md`).

use std::sync::OnceLock;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderName;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::jwks::KeySet;
use crate::config::model::AuthConfig;

pub const ISSUER: &str = "https://issuer.test";
/// The unix time the tests verify at.
pub const NOW: u64 = 1_800_000_000;
pub const KID: &str = "k1";

pub fn config() -> AuthConfig {
    AuthConfig {
        issuer: ISSUER.into(),
        audiences: vec!["api".into(), "other".into()],
        jwks_url: "http://127.0.0.1:1/jwks".into(),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        leeway: Duration::from_secs(5),
        claims_to_headers: vec![("sub".to_string(), HeaderName::from_static("x-user-id"))],
        jwks_refresh_interval: Duration::from_secs(300),
        jwks_min_refresh_interval: Duration::from_secs(10),
        jwks_unknown_kid_cooldown: Duration::from_secs(10),
        jwks_timeout: Duration::from_secs(5),
        max_token_bytes: 8192,
        token_cache_size: 100,
        kept_claims: Vec::new(),
    }
}

/// An RS256 key published as [`KID`] (generated once per test binary), and its key set.
pub struct Signer {
    enc: EncodingKey,
    pub keys: KeySet,
    /// The JWKS document `keys` was parsed from.
    pub jwks: String,
}

pub fn signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let kp =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa key");
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).expect("der");
        let enc = EncodingKey::from_rsa_pem(testkit::pem("PRIVATE KEY", der.as_ref()).as_bytes())
            .expect("rsa pem");
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap()).unwrap();
        jwk["kid"] = json!(KID);
        jwk["use"] = json!("sig");
        let jwks = json!({ "keys": [jwk] }).to_string();
        let keys = KeySet::parse(jwks.as_bytes()).unwrap();
        Signer { enc, keys, jwks }
    })
}

impl Signer {
    /// A token with this JOSE header and claim set (any JSON), validly signed.
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.enc, Algorithm::RS256)
            .expect("sign");
        format!("{input}.{sig}")
    }

    /// A token with the usual header, validly signed.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_raw(&json!({ "alg": "RS256", "typ": "JWT", "kid": KID }), claims)
    }
}

pub fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

/// Claims every check accepts at [`NOW`].
pub fn good_claims() -> Value {
    json!({ "iss": ISSUER, "aud": "api", "sub": "user-42", "jti": "j-1", "roles": ["user"],
            "scope": "api read", "iat": NOW, "nbf": NOW, "exp": NOW + 300 })
}
