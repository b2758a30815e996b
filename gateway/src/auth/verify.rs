//! Verifying one token against a key set, following RFC 8725:
//!
//! - the size cap is checked before anything is decoded;
//! - the algorithm must be in the configured allowlist (never "whatever the token says"), so
//!   `alg: none` and HS256-signed-with-the-public-key tokens are refused;
//! - a non-empty `crit` header is refused (we understand no extensions);
//! - the key is found only by `kid` in our JWKS: `jku`, `x5u`, `jwk` and `x5c` headers are never
//!   followed;
//! - `iss`, `aud` and `exp` are required and checked (jsonwebtoken lets an absent `iss`/`aud`
//!   pass unless they are listed as required claims, so they are); `nbf` and `exp` allow the
//!   configured leeway; an `iat` in the future (beyond the leeway) is refused;
//! - every failure is an [`AuthFailure`], never a panic.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::KeySet;
use crate::config::model::AuthConfig;

/// Why a token was refused. `label()` is the `reason` label of the rejection metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
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
    BadClaimValue,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
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
            AuthFailure::BadClaimValue => "bad_claim_value",
        }
    }

    /// A short, safe explanation for the response body (no token contents).
    pub fn detail(self) -> &'static str {
        match self {
            AuthFailure::Missing => "A bearer token is required.",
            AuthFailure::TooLarge => "The token is too large.",
            AuthFailure::Expired => "The token has expired.",
            AuthFailure::NotYetValid => "The token is not valid yet.",
            _ => "The token is not valid.",
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
    let leeway = cfg.leeway.as_secs();
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = leeway;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_issuer(&[cfg.issuer.as_str()]);
    validation.set_audience(&cfg.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthFailure::BadSignature,
            ErrorKind::ExpiredSignature => AuthFailure::Expired,
            ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
            ErrorKind::InvalidIssuer => AuthFailure::BadIssuer,
            ErrorKind::InvalidAudience => AuthFailure::BadAudience,
            ErrorKind::MissingRequiredClaim(_) => AuthFailure::MissingClaim,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                AuthFailure::DisallowedAlgorithm
            }
            _ => AuthFailure::Malformed,
        })?;
    let claims = data.claims;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(AuthFailure::BadClaimValue)?;
    match claims.get("iat") {
        None => {}
        Some(v) => {
            let iat = v.as_u64().ok_or(AuthFailure::BadClaimValue)?;
            if iat > now.saturating_add(leeway) {
                return Err(AuthFailure::IssuedInFuture);
            }
        }
    }
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
