//! The one place where gateway errors become HTTP responses: RFC 9457 problem+json with
//! `type`, `title`, `status`, `detail` and `request_id`. Used by early rejections in
//! `request_filter` and by `fail_to_proxy`. Internal details (addresses, error chains) go to
//! the log, never into a body.

use std::borrow::Cow;

use bytes::Bytes;
use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::auth::AuthError;
use crate::path::PathError;
use crate::ratelimit::RateLimitError;
use crate::request_head::HeadError;

/// Everything the gateway itself can answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    NoRoute,
    BadPath(PathError),
    AmbiguousFraming,
    BadRequest,
    /// A request head refused before pingora parsed it (`edge`).
    BadHead(HeadError),
    /// Every target of the upstream (and of the route's fallback) is open or unhealthy.
    NoTargetAvailable {
        upstream: String,
        /// When one may be back: sent as `Retry-After`.
        retry_after: std::time::Duration,
    },
    UpstreamUnreachable,
    UpstreamTimeout,
    /// The route's `timeouts.total` ran out across its attempts.
    TotalTimeout,
    UpstreamBadResponse,
    Internal,
    Auth(AuthError),
    /// 429 (a policy refused) or 503 (the store is unreachable and `on_store_error: deny`).
    RateLimit(RateLimitError),
    /// A status decided elsewhere (e.g. an `HTTPStatus` error from pingora).
    Status(u16),
}

/// The `type` of every gateway problem is this prefix and the problem's slug: the
/// `urn:problem-type:<service>:<slug>` scheme all services of this repository share.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:problem-type:gateway:";

/// An RFC 9457 problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    /// The last segment of the `type` URI (`urn:problem-type:gateway:<slug>`).
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
}

impl GatewayError {
    pub fn problem(&self) -> Problem {
        let p = |status, slug, title, detail: &str| Problem {
            status,
            slug,
            title,
            detail: detail.to_string(),
        };
        match self {
            GatewayError::NoRoute => p(
                404,
                "no-route",
                "No route",
                "No route matches this request.",
            ),
            GatewayError::BadPath(e) => p(400, "bad-path", "Bad request path", &e.to_string()),
            GatewayError::AmbiguousFraming => p(
                400,
                "ambiguous-framing",
                "Ambiguous message framing",
                "The request has both Content-Length and Transfer-Encoding.",
            ),
            GatewayError::BadRequest => p(
                400,
                "bad-request",
                "Bad request",
                "The request could not be read.",
            ),
            GatewayError::BadHead(e) => {
                let (slug, title) = match e {
                    HeadError::Malformed(_) => ("malformed-request", "Bad request"),
                    HeadError::Target(_) => ("bad-request-target", "Bad request target"),
                    HeadError::TargetTooLong => ("target-too-long", "URI too long"),
                    HeadError::HeadTooLarge => {
                        ("head-too-large", "Request header fields too large")
                    }
                    HeadError::Connect => ("method-not-allowed", "Method not allowed"),
                    HeadError::Framing(_) => ("ambiguous-framing", "Ambiguous message framing"),
                };
                p(e.status(), slug, title, &e.to_string())
            }
            GatewayError::NoTargetAvailable { .. } => p(
                503,
                "upstream-unavailable",
                "Service unavailable",
                "No target of the upstream can take the request right now.",
            ),
            GatewayError::UpstreamUnreachable => p(
                502,
                "upstream-unreachable",
                "Bad gateway",
                "The upstream service could not be reached.",
            ),
            GatewayError::UpstreamTimeout => p(
                504,
                "upstream-timeout",
                "Gateway timeout",
                "The upstream service did not answer in time.",
            ),
            GatewayError::TotalTimeout => p(
                504,
                "upstream-timeout",
                "Gateway timeout",
                "The upstream service did not answer within the route's time limit.",
            ),
            GatewayError::UpstreamBadResponse => p(
                502,
                "upstream-bad-response",
                "Bad gateway",
                "The upstream service sent an invalid response.",
            ),
            GatewayError::Internal => p(
                500,
                "internal",
                "Internal error",
                "The gateway failed to handle the request.",
            ),
            GatewayError::Auth(AuthError::Unauthorized(f)) => {
                p(401, "invalid-token", "Unauthorized", f.detail())
            }
            GatewayError::Auth(AuthError::Forbidden) => p(
                403,
                "insufficient-scope",
                "Forbidden",
                "The token does not carry the role or scope this route requires.",
            ),
            GatewayError::Auth(AuthError::InvalidRequest) => p(
                400,
                "invalid-request",
                "Bad request",
                "The request carries more than one credential.",
            ),
            GatewayError::Auth(AuthError::Unavailable) => p(
                503,
                "auth-unavailable",
                "Service unavailable",
                "Tokens cannot be checked right now.",
            ),
            GatewayError::RateLimit(RateLimitError::Limited(r)) => Problem {
                status: 429,
                slug: "rate-limited",
                title: "Too many requests",
                detail: format!(
                    "Rate limit \"{}\" exceeded; retry in {} s.",
                    r.policy, r.retry_after_secs
                ),
            },
            GatewayError::RateLimit(RateLimitError::StoreUnavailable) => p(
                503,
                "rate-limit-unavailable",
                "Service unavailable",
                "Rate limits cannot be checked right now.",
            ),
            GatewayError::Status(code) => {
                let title = http::StatusCode::from_u16(*code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Error");
                Problem {
                    status: *code,
                    slug: "status",
                    title,
                    detail: title.to_string(),
                }
            }
        }
    }

    /// Classifies a pingora error. `None`: the client connection is gone, answer nothing.
    pub fn from_pingora(e: &Error) -> Option<GatewayError> {
        use ErrorType::*;
        if let HTTPStatus(code) = e.etype() {
            return Some(GatewayError::Status(*code));
        }
        match e.esource() {
            ErrorSource::Upstream => Some(match e.etype() {
                ConnectTimedout | ReadTimedout | WriteTimedout => GatewayError::UpstreamTimeout,
                ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
                | TLSHandshakeFailure | TLSHandshakeTimedout | BindError | SocketError => {
                    GatewayError::UpstreamUnreachable
                }
                InvalidHTTPHeader | H1Error | H2Error | InvalidH2 => {
                    GatewayError::UpstreamBadResponse
                }
                _ => GatewayError::UpstreamUnreachable,
            }),
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed | WriteTimedout | ReadTimedout => None,
                _ => Some(GatewayError::BadRequest),
            },
            ErrorSource::Internal | ErrorSource::Unset => Some(GatewayError::Internal),
        }
    }
}

impl GatewayError {
    /// Headers that belong with this error (RFC 6750 §3 challenges, `Retry-After`).
    pub fn extra_headers(&self) -> Vec<(&'static str, Cow<'static, str>)> {
        let fixed = |v: &'static str| vec![("www-authenticate", Cow::Borrowed(v))];
        match self {
            GatewayError::Auth(AuthError::Unauthorized(f)) => fixed(f.challenge()),
            GatewayError::Auth(AuthError::Forbidden) => {
                fixed("Bearer error=\"insufficient_scope\"")
            }
            GatewayError::Auth(AuthError::InvalidRequest) => {
                fixed("Bearer error=\"invalid_request\"")
            }
            GatewayError::Auth(AuthError::Unavailable) => vec![("retry-after", Cow::Borrowed("5"))],
            GatewayError::NoTargetAvailable { retry_after, .. } => {
                vec![(
                    "retry-after",
                    Cow::Owned(crate::seconds::retry_after(*retry_after).to_string()),
                )]
            }
            GatewayError::RateLimit(RateLimitError::Limited(r)) => {
                let mut v = vec![("retry-after", Cow::Owned(r.retry_after_secs.to_string()))];
                v.extend(
                    r.fields
                        .pairs()
                        .map(|(k, field)| (k, Cow::Owned(field.to_string()))),
                );
                v
            }
            GatewayError::RateLimit(RateLimitError::StoreUnavailable) => {
                vec![("retry-after", Cow::Borrowed("1"))]
            }
            _ => Vec::new(),
        }
    }
}

/// The JSON body of a problem.
pub fn body(problem: &Problem, request_id: &str) -> Vec<u8> {
    /// RFC 9457 members plus our `request_id`, in this order.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        type_: String,
        title: &'a str,
        status: u16,
        detail: &'a str,
        request_id: &'a str,
    }
    serde_json::to_vec(&Body {
        type_: format!("{PROBLEM_TYPE_PREFIX}{}", problem.slug),
        title: problem.title,
        status: problem.status,
        detail: &problem.detail,
        request_id,
    })
    .unwrap_or_default()
}

/// The response header of a problem with `len` bytes of body.
pub fn header(
    problem: &Problem,
    request_id: &str,
    len: usize,
) -> pingora_error::Result<ResponseHeader> {
    let mut h = ResponseHeader::build(problem.status, Some(5))?;
    h.insert_header(http::header::CONTENT_TYPE, "application/problem+json")?;
    h.insert_header(http::header::CONTENT_LENGTH, len.to_string())?;
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    h.insert_header(crate::request_id::HEADER, request_id)?;
    Ok(h)
}

/// `err` as a whole HTTP/1.1 response that closes the connection, for answers written to the
/// socket before pingora has a session (`edge`).
pub fn raw_close(err: &GatewayError, request_id: &str) -> Vec<u8> {
    let problem = err.problem();
    let body = body(&problem, request_id);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\ncache-control: no-store\r\n{}: {request_id}\r\nconnection: close\r\n",
        problem.status,
        http::StatusCode::from_u16(problem.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or(""),
        body.len(),
        crate::request_id::HEADER,
    );
    for (k, v) in err.extra_headers() {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Writes `err` as the whole response. Returns the status written.
pub async fn send(
    session: &mut Session,
    err: &GatewayError,
    request_id: &str,
) -> pingora_error::Result<u16> {
    let problem = err.problem();
    let body = body(&problem, request_id);
    let mut header = header(&problem, request_id, body.len())?;
    for (k, v) in err.extra_headers() {
        header.insert_header(k, v.as_ref())?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await?;
    Ok(problem.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_refusals_502() {
        let mut e = Error::new(ErrorType::ConnectTimedout);
        e.as_up();
        assert_eq!(
            GatewayError::from_pingora(&e),
            Some(GatewayError::UpstreamTimeout)
        );
        let mut e = Error::new(ErrorType::ConnectRefused);
        e.as_up();
        assert_eq!(
            GatewayError::from_pingora(&e).unwrap().problem().status,
            502
        );
        let mut e = Error::new(ErrorType::ReadError);
        e.as_down();
        assert_eq!(GatewayError::from_pingora(&e), None);
    }

    #[test]
    fn no_target_available_carries_retry_after_rounded_up() {
        use std::time::Duration;
        let e = GatewayError::NoTargetAvailable {
            upstream: "payments".into(),
            retry_after: Duration::from_millis(2_500),
        };
        assert_eq!(e.problem().status, 503);
        assert_eq!(e.extra_headers(), vec![("retry-after", Cow::Borrowed("3"))]);
    }

    #[test]
    fn a_refused_head_is_a_whole_response_that_closes() {
        use crate::request_head::{HeadError, TargetError};
        let e = GatewayError::BadHead(HeadError::Target(TargetError::Byte(b'#')));
        let raw = raw_close(&e, "rid-2");
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains("\r\nx-request-id: rid-2"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["type"], "urn:problem-type:gateway:bad-request-target");
        assert_eq!(
            v["detail"],
            "The request-target contains '#', which must be percent-encoded."
        );
        let statuses = [
            (HeadError::TargetTooLong, 414),
            (HeadError::HeadTooLarge, 431),
            (HeadError::Connect, 405),
            (HeadError::Malformed("x"), 400),
        ];
        for (e, status) in statuses {
            assert_eq!(GatewayError::BadHead(e).problem().status, status, "{e:?}");
        }
    }

    #[test]
    fn body_has_every_member() {
        let b = body(&GatewayError::NoRoute.problem(), "rid-1");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(v["type"], "urn:problem-type:gateway:no-route");
        assert_eq!(v["request_id"], "rid-1");
        assert!(v["title"].is_string() && v["detail"].is_string());
    }
}
