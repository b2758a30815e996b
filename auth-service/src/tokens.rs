//! Access tokens: claims, signing with the active key, verification against the key set.
//!
//! Header: `alg`, `kid`, `typ: "at+jwt"` (RFC 9068). Claims: `iss sub aud exp iat nbf jti`,
//! `email`, `roles` (array), `scope` (space-separated), `token_type: "access"`.

use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::KeySet;
use crate::random::random_token;

pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Clock skew tolerated when verifying `exp` / `nbf`.
pub const VERIFY_LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
    pub email: String,
    pub roles: Vec<String>,
    pub scope: String,
    pub token_type: String,
}

/// What goes into an access token besides the service-wide settings.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
    pub roles: &'a [String],
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no active signing key")]
    NoSigningKey,
    #[error("signing with key {kid}: {source}")]
    Sign {
        kid: String,
        source: jsonwebtoken::errors::Error,
    },
}

/// Signs an access token issued at `now_secs` (unix seconds) with the key set's active key.
/// Returns the token and its key id.
#[allow(clippy::too_many_arguments)]
pub fn issue_access_token(
    keys: &KeySet,
    issuer: &str,
    audience: &str,
    scope: &str,
    ttl: Duration,
    subject: &Subject<'_>,
    now_secs: u64,
) -> Result<(String, String), TokenError> {
    let key = keys.signing().ok_or(TokenError::NoSigningKey)?;
    let mut header = Header::new(key.alg.jwt_algorithm());
    header.kid = Some(key.kid.clone());
    header.typ = Some(ACCESS_TOKEN_TYP.to_string());
    let claims = AccessClaims {
        iss: issuer.to_string(),
        sub: subject.user_id.to_string(),
        aud: audience.to_string(),
        exp: now_secs + ttl.as_secs().max(1),
        iat: now_secs,
        nbf: now_secs,
        jti: random_token(16),
        email: subject.email.to_string(),
        roles: subject.roles.to_vec(),
        scope: scope.to_string(),
        token_type: "access".to_string(),
    };
    let token = jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|source| {
        TokenError::Sign {
            kid: key.kid.clone(),
            source,
        }
    })?;
    Ok((token, key.kid.clone()))
}

/// Why a presented access token was refused (for logs; clients get one generic 401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("typ is not at+jwt")]
    WrongTyp,
    #[error("unknown or retired kid")]
    UnknownKid,
    #[error("{0}")]
    Invalid(String),
    #[error("token_type is not access")]
    NotAccess,
}

/// Verifies signature, `alg` (must be the key's), `iss`, `aud`, `exp`, `nbf`, `typ` and
/// `token_type` against the published keys.
pub fn verify_access_token(
    keys: &KeySet,
    issuer: &str,
    audience: &str,
    token: &str,
) -> Result<AccessClaims, VerifyError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
    if header
        .typ
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some(ACCESS_TOKEN_TYP)
    {
        return Err(VerifyError::WrongTyp);
    }
    let kid = header.kid.ok_or(VerifyError::UnknownKid)?;
    let key = keys.verification_key(&kid).ok_or(VerifyError::UnknownKid)?;
    let mut validation = Validation::new(key.alg.jwt_algorithm());
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = VERIFY_LEEWAY_SECS;
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
        .map_err(|e| VerifyError::Invalid(e.to_string()))?;
    if data.claims.token_type != "access" {
        return Err(VerifyError::NotAccess);
    }
    Ok(data.claims)
}
