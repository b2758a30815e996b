//! The service's one error type and the one place that turns it into a response: a
//! `service_kit` [`Problem`], i.e. RFC 9457 `application/problem+json` with `type`
//! (`urn:problem-type:auth-service:<slug>`), `title`, `status`, `detail` and `request_id`.
//!
//! Internal details (SQL errors, crypto failures) are logged with the request's span and
//! replaced by a generic `detail` in the body. The service's name and the request id are filled
//! in by service-kit's request middleware, which finds the [`Problem`] in the response's
//! extensions.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use service_kit::json::BodyRejection;
use service_kit::{FieldError, Problem};

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
        AppError::Validation(vec![FieldError::new(field, message)])
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

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, slug, title, detail) = self.parts();
        match &self {
            AppError::Internal(msg) => tracing::error!(error = %msg, "internal error"),
            AppError::Unavailable(msg) => tracing::warn!(error = %msg, "unavailable"),
            _ => {}
        }
        let mut problem = Problem::new(status, slug, title, detail);
        match self {
            AppError::Validation(errors) => problem.errors = errors,
            AppError::Throttled { retry_after } => {
                problem = problem.with_header(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(retry_after)),
                );
            }
            AppError::MissingBearer => {
                problem = problem
                    .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::InvalidAccessToken => {
                problem = problem.with_header(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            AppError::Unavailable(_) => {
                problem = problem.with_header(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        problem.into_response()
    }
}

impl From<BodyRejection> for AppError {
    /// 415 without a JSON content type, 413 over the body limit, 400 for bytes that are not
    /// one JSON document, 422 naming the field (`body`: the whole document) for a wrong shape.
    fn from(rejection: BodyRejection) -> Self {
        match rejection {
            BodyRejection::NotJson => AppError::UnsupportedMediaType,
            BodyRejection::Unreadable {
                too_large: true, ..
            } => AppError::PayloadTooLarge,
            BodyRejection::Unreadable { message, .. } => AppError::BadRequest(message),
            BodyRejection::Malformed(e) => {
                AppError::BadRequest(format!("invalid JSON: {}", e.error))
            }
            BodyRejection::Invalid(e) => {
                AppError::validation(e.path.as_deref().unwrap_or("body"), e.error.to_string())
            }
        }
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
