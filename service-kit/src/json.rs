//! JSON request bodies: [`JsonBody`] reads and deserialises a body and reports every way it can
//! fail as a [`BodyRejection`]; the service turns that into its own error answer, so each keeps
//! its slugs and wording (the shell's services: [`Problem`]; the auth-service: its error enum).
//!
//! The rules, once for every service: the content type must be `application/json` or
//! `application/*+json` (415 otherwise); the body must fit the router's `DefaultBodyLimit`; it
//! must be one JSON document with nothing after it (400 otherwise); a document of the wrong
//! shape names the field where it went wrong (`items[0].quantity`; 422).

use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::problem::{FieldError, Problem};

/// The error type a state's [`JsonBody`] rejects with: the service's own error, made from a
/// [`BodyRejection`].
pub trait RejectWith {
    type Error: From<BodyRejection> + IntoResponse;
}

/// A JSON body deserialised into `T`; its rejection is the state's [`RejectWith::Error`].
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// Why a body was not accepted.
#[derive(Debug)]
pub enum BodyRejection {
    /// The content type is not `application/json` or `application/*+json`.
    NotJson,
    /// The body could not be read: it is over the size limit (`too_large`), or the stream failed.
    /// `message` is axum's account of it.
    Unreadable { too_large: bool, message: String },
    /// Not a JSON document: a syntax error, a truncated document, or text after the document.
    Malformed(JsonError),
    /// JSON of the wrong shape for the target type.
    Invalid(JsonError),
}

/// A serde error and where in the document it happened.
#[derive(Debug)]
pub struct JsonError {
    /// `items[0].quantity`; `None` for the document as a whole.
    pub path: Option<String>,
    pub error: serde_json::Error,
}

impl fmt::Display for JsonError {
    /// `path: error`, or the error alone (serde_path_to_error's and axum's format).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{path}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: RejectWith + Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = S::Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(BodyRejection::NotJson.into());
        }
        let bytes =
            Bytes::from_request(req, state)
                .await
                .map_err(|e| BodyRejection::Unreadable {
                    too_large: e.status() == StatusCode::PAYLOAD_TOO_LARGE,
                    message: e.body_text(),
                })?;
        Ok(JsonBody(parse(&bytes)?))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// One JSON document of type `T`, and nothing after it.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyRejection> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let located = e.path().iter().any(|s| !matches!(s, Segment::Unknown));
        let path = located.then(|| e.path().to_string());
        let error = JsonError {
            path,
            error: e.into_inner(),
        };
        if error.error.is_data() {
            BodyRejection::Invalid(error)
        } else {
            BodyRejection::Malformed(error)
        }
    })?;
    de.end()
        .map_err(|error| BodyRejection::Malformed(JsonError { path: None, error }))?;
    Ok(value)
}

impl From<BodyRejection> for Problem {
    /// 415, 400 or 422 with axum's wording (what these services answered when they used
    /// `axum::Json`). An oversized body is a 400 here (axum's `Json` rejection said so).
    fn from(rejection: BodyRejection) -> Self {
        match rejection {
            BodyRejection::NotJson => Problem::unsupported_media_type(),
            BodyRejection::Unreadable { message, .. } => Problem::bad_request(message),
            BodyRejection::Malformed(e) => {
                Problem::bad_request(format!("Failed to parse the request body as JSON: {e}"))
            }
            BodyRejection::Invalid(e) => Problem::validation(vec![FieldError::new(
                "",
                format!("Failed to deserialize the JSON body into the target type: {e}"),
            )]),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        quantity: u32,
    }

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, content_type.parse().expect("header value"));
        h
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json(&headers(ok)), "{ok}");
        }
        for not in ["text/plain", "application/xml", "text/json"] {
            assert!(!is_json(&headers(not)), "{not}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn wrong_shapes_name_the_field_and_syntax_errors_do_not() {
        let invalid = parse::<Order>(br#"{"items": [{"quantity": -1}]}"#);
        let Err(BodyRejection::Invalid(e)) = invalid else {
            panic!("{invalid:?}")
        };
        assert_eq!(e.path.as_deref(), Some("items[0].quantity"));
        assert!(
            e.to_string()
                .starts_with("items[0].quantity: invalid value"),
            "{e}"
        );

        let whole = parse::<Order>(b"[]");
        assert!(
            matches!(
                &whole,
                Err(BodyRejection::Invalid(JsonError { path: None, .. }))
            ),
            "{whole:?}"
        );
        let malformed: [&[u8]; 3] = [b"{\"items\": ", b"{} trailing", b""];
        for malformed in malformed {
            let r = parse::<serde_json::Value>(malformed);
            assert!(matches!(r, Err(BodyRejection::Malformed(_))), "{r:?}");
        }
    }

    #[test]
    fn problems_keep_axums_wording() {
        let Err(e) = parse::<serde_json::Value>(b"{not json") else {
            panic!("parsed")
        };
        let p = Problem::from(e);
        assert_eq!(p.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p.detail,
            "Failed to parse the request body as JSON: key must be a string at line 1 column 2"
        );
        let p = Problem::from(BodyRejection::NotJson);
        assert_eq!(p.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
