//! The service's one error type and the one place that turns it into a response:
//! RFC 9457 `application/problem+json` with `type`, `title`, `status`, `detail` and `request_id`.
//!
//! Internal details (SQL errors, crypto failures) are logged with the request's span and
//! replaced by a generic `detail` in the body. The request id is filled in by the request-id
//! middleware ([`crate::http`]), which finds the [`Problem`] in the response's extensions.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Base of the `type` URIs (URNs: they identify, they are not fetched).
pub const PROBLEM_TYPE_PREFIX: &str = "urn:problem-type:auth-service:";

/// A field-level validation error (HTTP 422).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("missing bearer token")]
    MissingBearer,
    #[error("invalid access token")]
    InvalidAccessToken,
    #[error("too many attempts")]
    Throttled { retry_after: Duration },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Internal: the string goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn validation(field: &str, message: impl Into<String>) -> AppError {
        AppError::Validation(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    pub fn internal(context: &str, e: impl std::fmt::Display) -> AppError {
        AppError::Internal(format!("{context}: {e}"))
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        use AppError::*;
        match self {
            Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-error",
                "Request validation failed",
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
                m.clone(),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "expected Content-Type: application/json".into(),
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                "the request body is too large".into(),
            ),
            EmailTaken => (
                StatusCode::CONFLICT,
                "email-taken",
                "Email already registered",
                "an account with this email already exists".into(),
            ),
            InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "Invalid credentials",
                "the email or password is incorrect".into(),
            ),
            InvalidRefreshToken => (
                StatusCode::UNAUTHORIZED,
                "invalid-refresh-token",
                "Invalid refresh token",
                "the refresh token is invalid, expired, revoked or already used".into(),
            ),
            MissingBearer => (
                StatusCode::UNAUTHORIZED,
                "missing-token",
                "Authentication required",
                "send an access token as `Authorization: Bearer <token>`".into(),
            ),
            InvalidAccessToken => (
                StatusCode::UNAUTHORIZED,
                "invalid-token",
                "Invalid access token",
                "the access token is invalid or expired".into(),
            ),
            Throttled { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-attempts",
                "Too many attempts",
                format!(
                    "too many failed logins; retry after {} s",
                    retry_after_secs(*retry_after)
                ),
            ),
            NotFound => (
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "no such endpoint".into(),
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this endpoint does not support the request method".into(),
            ),
            Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                m.clone(),
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal server error",
                "an internal error occurred; quote the request_id when reporting it".into(),
            ),
        }
    }
}

fn retry_after_secs(d: Duration) -> u64 {
    // Round up: a client that waits exactly Retry-After seconds must not be early.
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The problem document. Kept in the response's extensions so the middleware can add the
/// request id and re-render it.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// The response for this problem (status, content type, body, the problem in extensions).
    pub fn into_response_with(
        self,
        status: StatusCode,
        mut headers: Vec<(header::HeaderName, HeaderValue)>,
    ) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (k, v) in headers.drain(..) {
            resp.headers_mut().insert(k, v);
        }
        resp.extensions_mut().insert(self);
        resp
    }

    /// Re-renders the body with a request id.
    pub fn with_request_id(mut self, request_id: &str, mut resp: Response) -> Response {
        self.request_id = Some(request_id.to_string());
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        let (parts, _) = resp.into_parts();
        Response::from_parts(parts, axum::body::Body::from(body))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, slug, title, detail) = self.parts();
        match &self {
            AppError::Internal(msg) => tracing::error!(error = %msg, "internal error"),
            AppError::Unavailable(msg) => tracing::warn!(error = %msg, "unavailable"),
            _ => {}
        }
        let mut headers = Vec::new();
        match &self {
            AppError::Throttled { retry_after } => {
                headers.push((
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                ));
            }
            AppError::MissingBearer => {
                headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            AppError::InvalidAccessToken => headers.push((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            )),
            AppError::Unavailable(_) => {
                headers.push((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            _ => {}
        }
        let errors = match self {
            AppError::Validation(errors) => errors,
            _ => Vec::new(),
        };
        Problem {
            type_uri: format!("{PROBLEM_TYPE_PREFIX}{slug}"),
            title,
            status: status.as_u16(),
            detail,
            request_id: None,
            errors,
        }
        .into_response_with(status, headers)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                AppError::Unavailable(format!("database: {e}"))
            }
            _ => AppError::Internal(format!("database: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn internal_details_stay_out_of_the_body() {
        let resp = AppError::Internal("SELECT secret FROM x failed".into()).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let p = resp.extensions().get::<Problem>().unwrap();
        assert!(!p.detail.contains("SELECT"));
    }
}
