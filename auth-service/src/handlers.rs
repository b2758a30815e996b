//! One function per endpoint. Each reads its input (JSON bodies through service-kit's
//! [`JsonBody`], the caller through [`crate::client`]), validates it, calls into
//! [`crate::users`], [`crate::refresh`], [`crate::keys`], [`crate::tokens`] and
//! [`crate::throttle`], records its metric, and answers JSON (errors: [`AppError`]).
//!
//! Logs carry user ids, family ids and key ids only — never passwords, tokens or keys.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use service_kit::{FieldError, JsonBody};

use crate::client::{PeerAddr, bearer_token, client_ip};
use crate::db::now_ms;
use crate::error::AppError;
use crate::refresh::{self, Rejected};
use crate::state::AppState;
use crate::tokens::{Subject, issue_access_token, verify_access_token};
use crate::users::{self, normalize_email, validate_registration};

/// `{email, password}`: both required (checked here, so a missing one is a 422 naming it).
#[derive(Deserialize)]
pub struct Credentials {
    email: Option<String>,
    password: Option<String>,
}

impl Credentials {
    fn required(self) -> Result<(String, String), AppError> {
        let mut errors = Vec::new();
        if self.email.as_deref().is_none_or(|e| e.trim().is_empty()) {
            errors.push(FieldError::new("email", "is required"));
        }
        if self.password.as_deref().is_none_or(str::is_empty) {
            errors.push(FieldError::new("password", "is required"));
        }
        match (self.email, self.password) {
            (Some(e), Some(p)) if errors.is_empty() => Ok((e, p)),
            _ => Err(AppError::Validation(errors)),
        }
    }
}

#[derive(Deserialize)]
pub struct RefreshRequest {
    refresh_token: Option<String>,
}

impl RefreshRequest {
    fn required(self) -> Result<String, AppError> {
        self.refresh_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AppError::validation("refresh_token", "is required"))
    }
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    scope: String,
}

#[derive(Serialize)]
struct UserResponse {
    id: String,
    email: String,
}

#[derive(Serialize)]
struct MeResponse {
    id: String,
    email: String,
    roles: Vec<String>,
}

/// `POST /api/auth/register` → 201 `{id, email}`.
pub async fn register(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, AppError> {
    let (email, password) = body.required()?;
    validate_registration(&email, &password)?;
    if users::find_by_email(&state.db, &email).await?.is_some() {
        return Err(AppError::EmailTaken);
    }
    let hash = state.hasher.hash(password).await?;
    let user = users::create(&state.db, &email, &hash).await?;
    state.metrics.registrations.inc();
    tracing::info!(user_id = %user.id, "user registered");
    Ok((
        StatusCode::CREATED,
        Json(UserResponse {
            id: user.id,
            email: user.email,
        }),
    )
        .into_response())
}

/// `POST /api/auth/login` → 200 tokens; 401 for a wrong email or password alike; 429 when
/// throttled.
pub async fn login(
    State(state): State<AppState>,
    peer: PeerAddr,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, AppError> {
    let (email, password) = body.required()?;
    let ip = client_ip(
        peer.0.map(|s| s.ip()),
        &headers,
        &state.settings.trusted_proxies,
    );
    let key = normalize_email(&email);
    if let Err(retry_after) = state.throttle.check(&key, ip) {
        state.metrics.logins.with_label_values(&["throttled"]).inc();
        tracing::warn!(client_ip = %ip, retry_after_ms = retry_after.as_millis() as u64, "login throttled");
        return Err(AppError::Throttled { retry_after });
    }
    let user = users::find_by_email(&state.db, &email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = state.hasher.verify_or_dummy(password, stored).await?;
    let Some(user) = user.filter(|_| ok) else {
        state.throttle.record_failure(&key, ip);
        state
            .metrics
            .logins
            .with_label_values(&["invalid_credentials"])
            .inc();
        tracing::info!(client_ip = %ip, "login failed: invalid credentials");
        return Err(AppError::InvalidCredentials);
    };
    state.throttle.record_success(&key, ip);
    if state.keys.current().signing().is_none() {
        return Err(AppError::Unavailable("no active signing key".into()));
    }
    let issued = refresh::issue(&state.db, &user.id, state.settings.refresh_ttl).await?;
    let resp = token_response(&state, &user.id, &user.email, issued.token).await?;
    state.metrics.logins.with_label_values(&["success"]).inc();
    tracing::info!(user_id = %user.id, family_id = %issued.family_id, client_ip = %ip, "login succeeded");
    Ok(resp)
}

/// `POST /api/auth/refresh` → 200 new tokens; the presented token stops working. Presenting an
/// already-rotated token revokes its family → 401.
pub async fn refresh(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Response, AppError> {
    let presented = body.required()?;
    match refresh::rotate(&state.db, &presented, state.settings.refresh_ttl).await? {
        Ok(issued) => {
            let Some(user) = users::find_by_id(&state.db, &issued.user_id).await? else {
                refresh::revoke_family(&state.db, &issued.family_id).await?;
                state
                    .metrics
                    .refreshes
                    .with_label_values(&["invalid"])
                    .inc();
                return Err(AppError::InvalidRefreshToken);
            };
            let resp = token_response(&state, &user.id, &user.email, issued.token).await?;
            state
                .metrics
                .refreshes
                .with_label_values(&["success"])
                .inc();
            tracing::info!(user_id = %user.id, family_id = %issued.family_id, "refresh token rotated");
            Ok(resp)
        }
        Err(rejected) => {
            state
                .metrics
                .refreshes
                .with_label_values(&[rejected.label()])
                .inc();
            if let Rejected::Reused { family_id, user_id } = &rejected {
                state.metrics.refresh_reuse_detected.inc();
                tracing::warn!(%user_id, %family_id, "refresh token reuse detected: family revoked");
            } else {
                tracing::info!(reason = rejected.label(), "refresh rejected");
            }
            Err(AppError::InvalidRefreshToken)
        }
    }
}

/// `POST /api/auth/logout` → 204; the token's family is revoked. An unknown token also gives
/// 204 (as RFC 7009 revocation does): logout is idempotent and is no token oracle.
pub async fn logout(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Response, AppError> {
    let presented = body.required()?;
    if let Some((user_id, family_id)) = refresh::logout(&state.db, &presented).await? {
        state.metrics.logouts.inc();
        tracing::info!(%user_id, %family_id, "logout: family revoked");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/auth/me` with a Bearer access token → `{id, email, roles}` (current roles).
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let token = bearer_token(&headers).ok_or(AppError::MissingBearer)?;
    let keys = state.keys.current();
    let claims = verify_access_token(
        &keys,
        &state.settings.issuer,
        &state.settings.audience,
        token,
    )
    .map_err(|e| {
        tracing::info!(reason = %e, "access token rejected");
        AppError::InvalidAccessToken
    })?;
    let user = users::find_by_id(&state.db, &claims.sub)
        .await?
        .ok_or(AppError::InvalidAccessToken)?;
    let roles = users::roles(&state.db, &user.id).await?;
    Ok(Json(MeResponse {
        id: user.id,
        email: user.email,
        roles,
    })
    .into_response())
}

/// `GET /.well-known/jwks.json`: the active key and every retired key still in its overlap.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.keys.current().jwks(now_ms());
    let max_age = state.settings.jwks_max_age.as_secs();
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    resp
}

/// `GET /.well-known/openid-configuration`: issuer, JWKS URL, algorithms, endpoints.
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    let s = &state.settings;
    let iss = &s.issuer;
    let mut algs = state.keys.current().algorithms(now_ms());
    if !algs.contains(&s.signing_alg.as_str()) {
        algs.push(s.signing_alg.as_str());
    }
    let body = json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/api/auth/login"),
        // Our endpoints take and return JSON (not OAuth form posts), so apart from
        // token_endpoint they are listed under a name of our own rather than the OAuth /
        // OIDC ones (userinfo_endpoint, revocation_endpoint, ...) that imply other formats.
        "endpoints": {
            "register": format!("{iss}/api/auth/register"),
            "login": format!("{iss}/api/auth/login"),
            "refresh": format!("{iss}/api/auth/refresh"),
            "logout": format!("{iss}/api/auth/logout"),
            "me": format!("{iss}/api/auth/me"),
        },
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "token_endpoint_auth_methods_supported": ["none"],
        "id_token_signing_alg_values_supported": algs,
        "access_token_signing_alg_values_supported": algs,
        "scopes_supported": s.scope.split_whitespace().collect::<Vec<_>>(),
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "email", "roles", "scope", "token_type"],
    });
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={}", s.jwks_max_age.as_secs())) {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// `GET /healthz`: 200 when the database answers and a signing key is loaded, else 503.
pub async fn healthz(State(state): State<AppState>) -> Result<Response, AppError> {
    state
        .db
        .ping()
        .await
        .map_err(|e| AppError::Unavailable(format!("database: {e}")))?;
    if state.keys.current().signing().is_none() {
        return Err(AppError::Unavailable("no active signing key".into()));
    }
    Ok(Json(json!({ "status": "ok" })).into_response())
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let text = state.metrics.render().map_err(AppError::Internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Signs an access token for the user and pairs it with the refresh token.
async fn token_response(
    state: &AppState,
    user_id: &str,
    email: &str,
    refresh_token: String,
) -> Result<Response, AppError> {
    let roles = users::roles(&state.db, user_id).await?;
    let s = &state.settings;
    let keys = state.keys.current();
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let started = Instant::now();
    let (access_token, kid) = issue_access_token(
        &keys,
        &s.issuer,
        &s.audience,
        &s.scope,
        s.access_ttl,
        &Subject {
            user_id,
            email,
            roles: &roles,
        },
        now_secs,
    )
    .map_err(|e| match e {
        crate::tokens::TokenError::NoSigningKey => {
            AppError::Unavailable("no active signing key".into())
        }
        other => AppError::internal("issuing access token", other),
    })?;
    state
        .metrics
        .token_issue_duration
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(%user_id, %kid, "access token issued");
    let body = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: s.access_ttl.as_secs().max(1),
        refresh_token,
        scope: s.scope.clone(),
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}
