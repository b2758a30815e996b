//! RFC 9457 problems: every error answer of the Rust services is `application/problem+json`
//!
//! ```json
//! {"type": "urn:problem-type:<service>:<slug>", "title": "...", "status": 422, "detail": "...",
//!  "request_id": "...", "errors": [{"field": "...", "message": "..."}]}
//! ```
//!
//! (`errors` only on validation failures). The `type` is always made by [`problem_type`]; a
//! handler or extractor builds a [`Problem`] without knowing its service, and
//! [`request_context`](crate::http::request_context) renders it again with the service's name
//! and the request id.

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The `type` of a problem: `urn:problem-type:<service>:<slug>`, the one scheme of every service
/// (the Rust services, the Django monolith, and the gateway's own answers,
/// `urn:problem-type:gateway:<slug>`). A URN identifies the kind of error; nothing is fetched.
pub fn problem_type(service: &str, slug: &str) -> String {
    format!("urn:problem-type:{service}:{slug}")
}

/// One field's complaint in a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error answer. The response keeps the problem in its extensions until the middleware
/// renders the final body.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// The last part of the `type` URN (`not-found`, `email-taken`).
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Headers the answer carries besides the content type (`WWW-Authenticate`, `Retry-After`).
    pub headers: HeaderMap,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            slug,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            headers: HeaderMap::new(),
        }
    }

    /// The same problem answered with `name: value` as well.
    pub fn with_header(mut self, name: axum::http::HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// 401 for a request without a (believable) identity, with `WWW-Authenticate: Bearer
    /// realm="api"`: the client should come back through the gateway with a token.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
        .with_header(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"api\""),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this method is not allowed on this path",
        )
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send JSON with Content-Type: application/json",
        )
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            "Invalid input",
            "the request body is invalid",
        );
        p.errors = errors;
        p
    }

    /// The JSON body, as `service` answers it to the request `request_id`.
    pub fn body(&self, service: &str, request_id: Option<&str>) -> Vec<u8> {
        let body = Document {
            kind: problem_type(service, self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            request_id,
            errors: &self.errors,
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// `resp` (status and headers kept) with this problem's body.
    pub(crate) fn render(
        &self,
        service: &str,
        request_id: Option<&str>,
        resp: Response,
    ) -> Response {
        let (mut parts, _) = resp.into_parts();
        parts.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        parts.headers.remove(CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(self.body(service, request_id)))
    }
}

/// The members in RFC 9457's order, then ours.
#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for Problem {
    /// Status, headers and a provisional body (the service's name and the request id are not
    /// known here); [`request_context`](crate::http::request_context), on every route of the
    /// services, renders it again with both.
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.headers.clone()).into_response();
        resp = self.render("service", None, resp);
        resp.extensions_mut().insert(self);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_is_the_services_urn() {
        assert_eq!(
            problem_type("payments", "unauthorized"),
            "urn:problem-type:payments:unauthorized"
        );
    }

    #[test]
    fn the_body_lists_the_members_in_order_and_errors_only_when_there_are_some() {
        let p = Problem::validation(vec![FieldError::new("amount", "is required")]);
        assert_eq!(
            String::from_utf8(p.body("payments", Some("rid-1"))).unwrap_or_default(),
            r#"{"type":"urn:problem-type:payments:validation-failed","title":"Invalid input","status":422,"detail":"the request body is invalid","request_id":"rid-1","errors":[{"field":"amount","message":"is required"}]}"#
        );
        let p = Problem::forbidden("no");
        assert_eq!(
            String::from_utf8(p.body("notifications", Some("r"))).unwrap_or_default(),
            r#"{"type":"urn:problem-type:notifications:forbidden","title":"Forbidden","status":403,"detail":"no","request_id":"r"}"#
        );
    }

    #[test]
    fn a_problem_answers_with_its_status_headers_and_content_type() {
        let resp = Problem::unauthorized("who are you").into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer realm=\"api\"");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/problem+json");
        assert!(resp.extensions().get::<Problem>().is_some());
    }
}
