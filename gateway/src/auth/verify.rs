//! Verifying one token against a key set, following RFC 8725:
//!
//! - the size cap is checked before anything is decoded;
//! - the algorithm must be in the configured allowlist (never "whatever the token says"), so
//!   `alg: none` and HS256-signed-with-the-public-key tokens are refused;
//! - a non-empty `crit` header is refused (we understand no extensions);
//! - the key is found only by `kid` in our JWKS: `jku`, `x5u`, `jwk` and `x5c` headers are never
//!   followed;
//! - jsonwebtoken does the cryptography and nothing else (`crypto::verify`, over the exact
//!   bytes of the first two segments; base64url is decoded strictly: no padding, no stray
//!   trailing bits); the claim set is parsed here, once, after the signature;
//! - the registered claims are checked here (`registered_claims`), type first (RFC 7519
//!   §4.1: `iss` a string equal to the configured issuer — an array naming it is refused —,
//!   `aud` a string or an array of strings, `sub`/`jti` strings, `exp`/`nbf`/`iat` numbers),
//!   then value; `iss`, `aud` and `exp` are required; `nbf` and `exp` allow the configured
//!   leeway; an `iat` in the future (beyond the leeway) is refused;
//! - every failure is an [`AuthFailure`], never a panic.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use serde_json::{Map, Value};

use super::jwks::KeySet;
use crate::config::model::AuthConfig;

/// Why a token was refused. `label()` is the `reason` label of the rejection metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    /// An `Authorization` header with another scheme (`Basic …`).
    UnsupportedScheme,
    /// An `Authorization` header that is not `Bearer`, one space, a token68.
    MalformedCredential,
    TooLarge,
    Malformed,
    DisallowedAlgorithm,
    CriticalHeader,
    BadType,
    MissingKid,
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    BadIssuer,
    BadAudience,
    MissingClaim,
    /// A registered claim of the wrong JSON type (`iss` an array, `sub` a number…).
    BadClaimType,
    BadClaimValue,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::UnsupportedScheme => "unsupported_scheme",
            AuthFailure::MalformedCredential => "malformed_credential",
            AuthFailure::TooLarge => "too_large",
            AuthFailure::Malformed => "malformed",
            AuthFailure::DisallowedAlgorithm => "disallowed_algorithm",
            AuthFailure::CriticalHeader => "critical_header",
            AuthFailure::BadType => "bad_type",
            AuthFailure::MissingKid => "missing_kid",
            AuthFailure::UnknownKid => "unknown_kid",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::IssuedInFuture => "issued_in_future",
            AuthFailure::BadIssuer => "bad_issuer",
            AuthFailure::BadAudience => "bad_audience",
            AuthFailure::MissingClaim => "missing_claim",
            AuthFailure::BadClaimType => "bad_claim_type",
            AuthFailure::BadClaimValue => "bad_claim_value",
        }
    }

    /// A short, safe explanation for the response body (no token contents).
    pub fn detail(self) -> &'static str {
        match self {
            AuthFailure::Missing => "A bearer token is required.",
            AuthFailure::UnsupportedScheme => "Only bearer tokens are accepted.",
            AuthFailure::MalformedCredential => {
                "The Authorization header is not a well-formed bearer token."
            }
            AuthFailure::TooLarge => "The token is too large.",
            AuthFailure::Expired => "The token has expired.",
            AuthFailure::NotYetValid => "The token is not valid yet.",
            _ => "The token is not valid.",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3.1): no error code when the request
    /// carries no bearer credential at all — none, or one of another scheme — and
    /// `invalid_token` (401) for every credential that is one but cannot be accepted,
    /// a malformed `Authorization` header included.
    pub fn challenge(self) -> &'static str {
        match self {
            AuthFailure::Missing | AuthFailure::UnsupportedScheme => "Bearer realm=\"gateway\"",
            _ => "Bearer error=\"invalid_token\"",
        }
    }
}

/// A verified token: what the request path needs from it, computed once (and cached).
#[derive(Debug)]
pub struct Verified {
    pub kid: String,
    pub exp: u64,
    pub sub: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// `claims_to_headers`, ready to insert upstream.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Only the claims the config reads by name (`AuthConfig::kept_claims`): this struct is
    /// what the token cache holds, once per token.
    pub claims: Map<String, Value>,
}

impl Verified {
    /// A claim as sticky-split key bytes (strings as-is, other scalars as JSON text).
    pub fn claim_key(&self, name: &str) -> Option<Vec<u8>> {
        match self.claims.get(name)? {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            Value::Null => None,
            other => Some(other.to_string().into_bytes()),
        }
    }
}

/// The parts of the JOSE header we act on, read before any crypto.
struct JoseHeader {
    alg: Algorithm,
    kid: String,
}

fn jose_header(token: &str, allowed: &[Algorithm]) -> Result<JoseHeader, AuthFailure> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| AuthFailure::Malformed)?;
    let v: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthFailure::Malformed)?;
    let alg_name = v
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthFailure::Malformed)?;
    let alg = alg_name
        .parse::<Algorithm>()
        .ok()
        .filter(|a| allowed.contains(a))
        .ok_or(AuthFailure::DisallowedAlgorithm)?;
    match v.get("crit") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(_) => return Err(AuthFailure::CriticalHeader),
    }
    if let Some(typ) = v.get("typ") {
        let typ = typ
            .as_str()
            .ok_or(AuthFailure::BadType)?
            .to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        if typ != "jwt" && typ != "at+jwt" {
            return Err(AuthFailure::BadType);
        }
    }
    let kid = v
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(AuthFailure::MissingKid)?;
    Ok(JoseHeader {
        alg,
        kid: kid.to_string(),
    })
}

/// The key id of a token whose header passes the checks (used to decide on a JWKS re-fetch).
pub fn kid_of(token: &str, cfg: &AuthConfig) -> Result<String, AuthFailure> {
    if token.len() > cfg.max_token_bytes {
        return Err(AuthFailure::TooLarge);
    }
    jose_header(token, &cfg.algorithms).map(|h| h.kid)
}

/// Verifies `token` with `keys` at unix time `now`.
pub fn verify(
    token: &str,
    keys: &KeySet,
    cfg: &AuthConfig,
    now: u64,
) -> Result<Verified, AuthFailure> {
    if token.len() > cfg.max_token_bytes {
        return Err(AuthFailure::TooLarge);
    }
    let header = jose_header(token, &cfg.algorithms)?;
    let key = keys.get(&header.kid).ok_or(AuthFailure::UnknownKid)?;
    if !key.accepts(header.alg) {
        return Err(AuthFailure::DisallowedAlgorithm);
    }
    // jsonwebtoken does the cryptography only. Its `decode` would also read the claims, and
    // leniently: an `iss` array passes as "one of these", a `sub` of the wrong type reads as
    // absent, a compound `sub`/`exp`/`nbf` fails the whole parse as if it were malformed.
    let (message, signature) = token.rsplit_once('.').ok_or(AuthFailure::Malformed)?;
    match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.decoding, header.alg) {
        Ok(true) => {}
        Ok(false) => return Err(AuthFailure::BadSignature),
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::InvalidKeyFormat | ErrorKind::InvalidAlgorithm => {
                    AuthFailure::DisallowedAlgorithm
                }
                // The signature is not canonical base64url.
                _ => AuthFailure::Malformed,
            });
        }
    }
    let (_, payload) = message.split_once('.').ok_or(AuthFailure::Malformed)?;
    let claims: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(AuthFailure::Malformed)?;
    let exp = registered_claims(&claims, cfg, now)?;
    let mut headers = Vec::with_capacity(cfg.claims_to_headers.len());
    for (claim, name) in &cfg.claims_to_headers {
        if let Some(v) = claims.get(claim)
            && let Some(text) = header_text(v)
        {
            let value = HeaderValue::from_str(&text).map_err(|_| AuthFailure::BadClaimValue)?;
            headers.push((name.clone(), value));
        }
    }
    let mut verified = Verified {
        kid: header.kid,
        exp,
        sub: claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string),
        roles: string_list(claims.get("roles"), &[',', ' ']),
        scopes: match claims.get("scope") {
            Some(v) => string_list(Some(v), &[' ']),
            None => string_list(claims.get("scp"), &[' ']),
        },
        headers,
        claims,
    };
    // What is cached per token: only the claims the config reads by name.
    verified
        .claims
        .retain(|name, _| cfg.kept_claims.iter().any(|k| k == name));
    Ok(verified)
}

/// The RFC 7519 §4.1 claims of a signed claim set, types first (a claim of the wrong type is
/// refused, never read as absent), then values; returns `exp`.
///
/// `exp`, `iss`, `aud` are required. `exp`, `nbf`, `iat` are NumericDates (JSON numbers;
/// fractions are dropped); `iss` a string equal to the configured issuer; `aud` a string or
/// an array of strings, one of them a configured audience; `sub` and `jti`, when present,
/// strings. Time comparisons saturate, whatever the leeway.
fn registered_claims(
    claims: &Map<String, Value>,
    cfg: &AuthConfig,
    now: u64,
) -> Result<u64, AuthFailure> {
    let (Some(exp), Some(iss), Some(aud)) =
        (claims.get("exp"), claims.get("iss"), claims.get("aud"))
    else {
        return Err(AuthFailure::MissingClaim);
    };
    let exp = numeric_date(exp)?;
    let nbf = claims.get("nbf").map(numeric_date).transpose()?;
    let iat = claims.get("iat").map(numeric_date).transpose()?;
    let Value::String(iss) = iss else {
        return Err(AuthFailure::BadClaimType);
    };
    let aud: Vec<&str> = match aud {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many
            .iter()
            .map(|a| a.as_str().ok_or(AuthFailure::BadClaimType))
            .collect::<Result<_, _>>()?,
        _ => return Err(AuthFailure::BadClaimType),
    };
    if ["sub", "jti"]
        .iter()
        .any(|name| claims.get(*name).is_some_and(|v| !v.is_string()))
    {
        return Err(AuthFailure::BadClaimType);
    }
    let late = now.saturating_add(cfg.leeway.as_secs());
    if exp.saturating_add(cfg.leeway.as_secs()) < now {
        return Err(AuthFailure::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > late) {
        return Err(AuthFailure::NotYetValid);
    }
    if *iss != cfg.issuer {
        return Err(AuthFailure::BadIssuer);
    }
    if !aud
        .iter()
        .any(|a| cfg.audiences.iter().any(|ours| ours == a))
    {
        return Err(AuthFailure::BadAudience);
    }
    if iat.is_some_and(|iat| iat > late) {
        return Err(AuthFailure::IssuedInFuture);
    }
    Ok(exp)
}

/// RFC 7519 §2 NumericDate: a JSON number of seconds; fractions dropped, negatives refused.
fn numeric_date(v: &Value) -> Result<u64, AuthFailure> {
    let Value::Number(n) = v else {
        return Err(AuthFailure::BadClaimType);
    };
    if let Some(secs) = n.as_u64() {
        return Ok(secs);
    }
    match n.as_f64() {
        // `as` saturates: 1e300 is u64::MAX.
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f as u64),
        _ => Err(AuthFailure::BadClaimValue),
    }
}

/// A claim as a header value: strings as-is, arrays joined with commas, numbers and booleans
/// as text; objects and nulls are not sent.
fn header_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Object(_) | Value::Null => None,
    }
}

fn string_list(v: Option<&Value>, seps: &[char]) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s
            .split(seps)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Shared so the cache and the request context hold the same verification.
pub type SharedVerified = Arc<Verified>;

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::time::Duration;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::auth::identity::parse_bearer;
    use crate::auth::testing::{ISSUER, KID, NOW, b64_json, config, good_claims, signer};

    /// `good_claims()` with `patch` applied; a `"<absent>"` value removes the claim.
    fn with(patch: Value) -> Value {
        let mut c = good_claims();
        for (k, v) in patch.as_object().unwrap() {
            if v == "<absent>" {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn check(claims: &Value) -> Result<(), AuthFailure> {
        verify(&signer().sign(claims), &signer().keys, &config(), NOW).map(|_| ())
    }

    #[test]
    fn registered_claims_are_checked_by_type_then_value() {
        use AuthFailure::*;
        let t = NOW;
        let table = [
            (json!({}), Ok(())),
            // iss: one string, equal to ours (RFC 7519 §4.1.1); an array naming it is refused.
            (
                json!({ "iss": ["https://evil", ISSUER] }),
                Err(BadClaimType),
            ),
            (json!({ "iss": [ISSUER] }), Err(BadClaimType)),
            (json!({ "iss": 42 }), Err(BadClaimType)),
            (json!({ "iss": null }), Err(BadClaimType)),
            (json!({ "iss": "https://evil" }), Err(BadIssuer)),
            (json!({ "iss": "<absent>" }), Err(MissingClaim)),
            // sub, jti: strings when present.
            (json!({ "sub": 42 }), Err(BadClaimType)),
            (json!({ "sub": null }), Err(BadClaimType)),
            (json!({ "sub": "<absent>" }), Ok(())),
            (json!({ "jti": { "a": 1 } }), Err(BadClaimType)),
            (json!({ "jti": ["j"] }), Err(BadClaimType)),
            (json!({ "jti": "<absent>" }), Ok(())),
            // aud: a string or an array of strings, one of them ours.
            (json!({ "aud": ["x", "api"] }), Ok(())),
            (json!({ "aud": "other" }), Ok(())),
            (json!({ "aud": [] }), Err(BadAudience)),
            (json!({ "aud": "nope" }), Err(BadAudience)),
            (json!({ "aud": ["api", 1] }), Err(BadClaimType)),
            (json!({ "aud": { "api": true } }), Err(BadClaimType)),
            (json!({ "aud": "<absent>" }), Err(MissingClaim)),
            // NumericDates: numbers, fractions dropped, the leeway (5s) on both sides.
            (json!({ "exp": (t + 300).to_string() }), Err(BadClaimType)),
            (json!({ "exp": (t + 300) as f64 + 0.5 }), Ok(())),
            (json!({ "exp": 1e300 }), Ok(())),
            (json!({ "exp": -1 }), Err(BadClaimValue)),
            (json!({ "exp": "<absent>" }), Err(MissingClaim)),
            (json!({ "exp": t - 5 }), Ok(())),
            (json!({ "exp": t - 6 }), Err(Expired)),
            (json!({ "nbf": "soon" }), Err(BadClaimType)),
            (json!({ "nbf": t + 5 }), Ok(())),
            (json!({ "nbf": t + 6 }), Err(NotYetValid)),
            (json!({ "iat": true }), Err(BadClaimType)),
            (json!({ "iat": t + 6 }), Err(IssuedInFuture)),
            // Types are checked before values: a wrong type is never "absent" or "expired".
            (json!({ "exp": t - 60, "sub": 1 }), Err(BadClaimType)),
        ];
        for (patch, want) in table {
            assert_eq!(check(&with(patch.clone())), want, "{patch}");
        }
    }

    #[test]
    fn any_leeway_is_arithmetic_without_overflow() {
        let mut cfg = config();
        cfg.leeway = Duration::from_secs(u64::MAX);
        let claims = with(json!({ "exp": 0, "nbf": u64::MAX, "iat": u64::MAX }));
        let token = signer().sign(&claims);
        assert!(verify(&token, &signer().keys, &cfg, NOW).is_ok());
        assert!(verify(&token, &signer().keys, &cfg, u64::MAX).is_ok());
    }

    /// Token bytes as the gateway meets them: through the `Authorization` parser, then here.
    fn admit_bytes(token: &[u8], cfg: &AuthConfig) -> Result<Verified, AuthFailure> {
        let value = [&b"Bearer "[..], token].concat();
        let credential = parse_bearer(&value)?;
        verify(credential.token, &signer().keys, cfg, NOW)
    }

    fn good_token() -> &'static str {
        static TOKEN: OnceLock<String> = OnceLock::new();
        TOKEN.get_or_init(|| signer().sign(&good_claims()))
    }

    /// Where a mutation applies.
    #[derive(Debug, Clone, Copy)]
    enum Pos {
        Anywhere(usize),
        /// `k` bytes before the end of segment `seg`: where base64 trailing bits and padding
        /// live, the likeliest place for bytes a decoder ignores.
        SegmentEnd(usize, usize),
    }

    impl Pos {
        /// A byte index (`insert`: a gap index, which may be the end) in `token`.
        fn resolve(self, token: &[u8], insert: bool) -> usize {
            let room = token.len() + usize::from(insert);
            match self {
                Pos::Anywhere(i) => i % room.max(1),
                Pos::SegmentEnd(seg, k) => {
                    let mut ends: Vec<usize> =
                        (0..token.len()).filter(|i| token[*i] == b'.').collect();
                    ends.push(token.len());
                    let end = ends[seg % ends.len()];
                    end.saturating_sub(k + usize::from(!insert))
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        FlipBit(Pos, u8),
        SetByte(Pos, u8),
        Truncate(Pos),
        Remove(Pos, usize),
        /// The three segments in another order (an index into the 5 other permutations).
        Permute(usize),
        /// A new JOSE header, the payload and signature kept.
        Header(Value),
        /// `n` copies of a character inserted (base64url, padding, a dot).
        Bloat(Pos, usize, u8),
    }

    fn apply(token: &mut Vec<u8>, m: &Mutation) {
        match *m {
            Mutation::FlipBit(at, bit) => {
                let i = at.resolve(token, false);
                if let Some(b) = token.get_mut(i) {
                    *b ^= 1 << (bit % 8);
                }
            }
            Mutation::SetByte(at, v) => {
                let i = at.resolve(token, false);
                if let Some(b) = token.get_mut(i) {
                    *b = v;
                }
            }
            Mutation::Truncate(at) => token.truncate(at.resolve(token, true)),
            Mutation::Remove(at, n) => {
                let i = at.resolve(token, true);
                let end = (i + n).min(token.len());
                token.drain(i..end);
            }
            Mutation::Permute(p) => {
                let parts: Vec<Vec<u8>> = token.split(|b| *b == b'.').map(<[u8]>::to_vec).collect();
                if let [a, b, c] = &parts[..] {
                    let orders = [[a, c, b], [b, a, c], [b, c, a], [c, a, b], [c, b, a]];
                    let o = orders[p % orders.len()];
                    *token = [o[0].as_slice(), o[1].as_slice(), o[2].as_slice()].join(&b'.');
                }
            }
            Mutation::Header(ref h) => {
                if let Some(dot) = token.iter().position(|b| *b == b'.') {
                    token.splice(..dot, b64_json(h).into_bytes());
                }
            }
            Mutation::Bloat(at, n, c) => {
                let i = at.resolve(token, true);
                token.splice(i..i, std::iter::repeat_n(c, n));
            }
        }
    }

    /// A leaf of hostile JSON: wrong types, near-miss values, our own issuer and audiences.
    fn json_leaf() -> impl Strategy<Value = Value> {
        proptest::sample::select(vec![
            Value::Null,
            json!(true),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(NOW),
            json!(NOW - 10),
            json!(NOW + 10),
            json!((NOW + 60) as f64 + 0.5),
            json!(1e300),
            json!(u64::MAX),
            json!(ISSUER),
            json!("https://evil"),
            json!("api"),
            json!("other"),
            json!(""),
            json!("x\ny"),
            json!("RS256"),
            json!(KID),
        ])
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map(
                    proptest::sample::select(vec!["api", "iss", "a"]).prop_map(String::from),
                    inner,
                    0..3
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn jose_headers() -> impl Strategy<Value = Value> {
        let alg = proptest::sample::select(vec![
            json!("none"),
            json!("None"),
            json!("HS256"),
            json!("RS256"),
            json!("RS512"),
            json!("PS256"),
            json!("ES256"),
            json!(""),
            json!(1),
        ]);
        let kid = proptest::sample::select(vec![json!(KID), json!("k2"), json!(""), json!(1)]);
        let extra = proptest::sample::select(vec![
            json!({}),
            json!({ "typ": "JWT" }),
            json!({ "typ": "at+jwt" }),
            json!({ "typ": "JOSE" }),
            json!({ "crit": ["exp"] }),
            json!({ "jku": "http://127.0.0.1:1/jwks" }),
            json!({ "jwk": { "kty": "oct", "k": "c2VjcmV0" } }),
            json!({ "b64": false }),
        ]);
        (proptest::option::of(alg), proptest::option::of(kid), extra).prop_map(
            |(alg, kid, mut h)| {
                if let Some(a) = alg {
                    h["alg"] = a;
                }
                if let Some(k) = kid {
                    h["kid"] = k;
                }
                h
            },
        )
    }

    fn pos() -> impl Strategy<Value = Pos> {
        prop_oneof![
            any::<usize>().prop_map(Pos::Anywhere),
            (0..3usize, 0..4usize).prop_map(|(seg, k)| Pos::SegmentEnd(seg, k)),
        ]
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let bloat = prop_oneof![3 => 1..4usize, 1 => 4..20_000usize];
        prop_oneof![
            4 => (pos(), any::<u8>()).prop_map(|(at, b)| Mutation::FlipBit(at, b)),
            2 => (pos(), any::<u8>()).prop_map(|(at, b)| Mutation::SetByte(at, b)),
            1 => pos().prop_map(Mutation::Truncate),
            1 => (pos(), 1..40usize).prop_map(|(at, n)| Mutation::Remove(at, n)),
            1 => any::<usize>().prop_map(Mutation::Permute),
            2 => jose_headers().prop_map(Mutation::Header),
            2 => (pos(), bloat, proptest::sample::select(b"A_-=.".to_vec()))
                .prop_map(|(at, n, c)| Mutation::Bloat(at, n, c)),
        ]
    }

    /// An independent reading of the claim rules (the docs' table), for generated claim sets.
    fn acceptable(c: &Map<String, Value>) -> bool {
        let leeway = 5.0;
        let now = NOW as f64;
        let date = |name: &str, required: bool, ok: &dyn Fn(f64) -> bool| match c.get(name) {
            None => !required,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f >= 0.0 && ok(f.floor())),
            Some(_) => false,
        };
        let ours = |s: &str| s == "api" || s == "other";
        let header_safe = |s: &str| {
            s.chars()
                .all(|ch| ch == '\t' || (ch >= ' ' && ch != '\x7f'))
        };
        date("exp", true, &|f| f + leeway >= now)
            && date("nbf", false, &|f| f <= now + leeway)
            && date("iat", false, &|f| f <= now + leeway)
            && c.get("iss") == Some(&json!(ISSUER))
            && match c.get("aud") {
                Some(Value::String(a)) => ours(a),
                Some(Value::Array(items)) => {
                    items.iter().all(Value::is_string)
                        && items.iter().any(|a| a.as_str().is_some_and(ours))
                }
                _ => false,
            }
            && match c.get("sub") {
                None => true,
                // `sub` is sent upstream as X-User-Id: it must be a valid header value.
                Some(Value::String(s)) => header_safe(s),
                Some(_) => false,
            }
            && c.get("jti").is_none_or(Value::is_string)
    }

    /// The good value of a claim in disguise: wrapped in an array (after another value, as in
    /// `"iss": ["https://evil", ours]`) or an object, or spelled as the other scalar type.
    fn disguised(good: Value) -> impl Strategy<Value = Value> {
        let as_other_scalar = match &good {
            Value::String(s) => s.parse::<u64>().map_or(json!(s.len()), Value::from),
            other => Value::String(other.to_string()),
        };
        proptest::sample::select(vec![
            json!([good.clone()]),
            json!(["https://evil", good.clone()]),
            json!({ "value": good }),
            as_other_scalar,
        ])
    }

    /// Each registered claim: absent, its good value, its good value disguised, or hostile JSON.
    fn claim_sets() -> impl Strategy<Value = Map<String, Value>> {
        let names = ["iss", "aud", "sub", "jti", "exp", "nbf", "iat"];
        let choices: Vec<_> = names
            .iter()
            .map(|name| {
                let good = good_claims()[*name].clone();
                prop_oneof![
                    1 => Just(None),
                    8 => Just(Some(good.clone())),
                    1 => disguised(good).prop_map(Some),
                    1 => json_value().prop_map(Some),
                ]
            })
            .collect();
        choices.prop_map(move |values| {
            names
                .iter()
                .zip(values)
                .filter_map(|(n, v)| v.map(|v| (n.to_string(), v)))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(testkit::proptest_config(10_000))]

        /// Mutated copies of a validly signed token: never a panic, never accepted unless the
        /// bytes are the original's (no part of a token is ignored).
        #[test]
        fn fuzz_verify_refuses_every_mutated_token(
            mutations in proptest::collection::vec(mutation(), 1..4),
            // Half the time without the size cap, so huge segments reach the decoders.
            uncapped in any::<bool>(),
        ) {
            let good = good_token().as_bytes();
            let mut token = good.to_vec();
            for m in &mutations {
                apply(&mut token, m);
            }
            let mut cfg = config();
            if uncapped {
                cfg.max_token_bytes = usize::MAX;
            }
            let result = admit_bytes(&token, &cfg);
            if token == good {
                prop_assert!(result.is_ok());
            } else {
                prop_assert!(result.is_err(), "accepted {:?}", String::from_utf8_lossy(&token));
            }
        }
    }

    proptest! {
        #![proptest_config(testkit::proptest_config(1_000))]

        /// Validly signed claim sets with hostile claim values: accepted exactly when the
        /// claim rules say so, never a panic.
        #[test]
        fn fuzz_verify_checks_claim_types(claims in claim_sets()) {
            let token = signer().sign(&Value::Object(claims.clone()));
            let result = verify(&token, &signer().keys, &config(), NOW);
            prop_assert_eq!(result.is_ok(), acceptable(&claims), "{:?}", result.err());
        }
    }

    #[test]
    fn the_unmutated_token_passes() {
        // The baseline of the mutation property: without it, "every mutation is refused" is
        // trivially true.
        let v = admit_bytes(good_token().as_bytes(), &config()).expect("valid");
        assert_eq!(v.sub.as_deref(), Some("user-42"));
        assert_eq!(v.exp, NOW + 300);
    }
}
