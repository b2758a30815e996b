//! Whether a request is copied, and what of the primary's answer is kept: plain data in, a
//! decision out. The proxy gathers the facts; [`super::copy`] carries the decision out.
//!
//! ## Which requests are copied
//! In this order, the first rule that refuses names the `reason` of
//! `gateway_shadow_skipped_total{route,reason}`:
//!
//! | rule | reason |
//! |---|---|
//! | the method is not in `methods` | `method` |
//! | the request asks for a protocol upgrade (a WebSocket) | `upgrade` |
//! | the request's side is the candidate itself (a split moved it there) | `same_upstream` |
//! | not drawn by `sample` | *(not counted: sampling is the plan, not a loss)* |
//! | its `Content-Length` is over `max_body` | `body_too_large` |
//! | `max_in_flight` copies are under way | `in_flight` (the runtime's semaphore) |
//!
//! A body without a length (chunked) is teed while it streams to the primary and dropped at the
//! first byte past `max_body` (`body_too_large` too). A copied read (GET, HEAD, OPTIONS) is also
//! sent a second time to the primary when drawn by `noise`; a write never is.

use http::Method;

use crate::config::model::ShadowSpec;
pub use crate::shadow::verdicts::Skip;

/// What the proxy knows of a request when it decides.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub method: &'a Method,
    pub upgrade: bool,
    /// The upstream the request goes to (its split side).
    pub primary: &'a str,
    /// `Content-Length`, when the request has one.
    pub content_length: Option<u64>,
    /// Two uniform draws in `[0, 1)`: the sample's and the noise's.
    pub draws: (f64, f64),
}

/// A request to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// A write under `writes: dry_run` (the copy says `X-Gateway-Shadow: dry-run`).
    pub write: bool,
    /// Also sent a second time to the primary, to learn its noise.
    pub noise: bool,
}

/// The decision on one request: `Ok(Some(plan))` to copy, `Ok(None)` when not sampled,
/// `Err(reason)` when a rule refuses (see the module docs).
pub fn decide(spec: &ShadowSpec, facts: &Facts<'_>) -> Result<Option<Plan>, Skip> {
    if !spec.methods.contains(facts.method) {
        return Err(Skip::Method);
    }
    if facts.upgrade {
        return Err(Skip::Upgrade);
    }
    if facts.primary == spec.upstream {
        return Err(Skip::SameUpstream);
    }
    let (sample, noise) = facts.draws;
    if sample >= spec.sample {
        return Ok(None);
    }
    if facts.content_length.is_some_and(|n| n > spec.max_body) {
        return Err(Skip::BodyTooLarge);
    }
    let read = matches!(*facts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    Ok(Some(Plan {
        write: !read,
        noise: read && noise < spec.noise,
    }))
}

/// Bytes kept up to a limit: a request body teed for the copy, or an answer kept for the
/// comparison. Past the limit it keeps nothing more and says so (the caller skips).
#[derive(Debug, Default)]
pub struct Capped {
    bytes: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Capped {
    pub fn new(limit: u64) -> Capped {
        Capped {
            bytes: Vec::new(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            over: false,
        }
    }

    /// Appends a chunk; false (and the bytes dropped) once the total passes the limit.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        if self.over || self.bytes.len() + chunk.len() > self.limit {
            self.over = true;
            self.bytes = Vec::new();
            return false;
        }
        self.bytes.extend_from_slice(chunk);
        true
    }

    /// Starts again (the answer of another attempt).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.over = false;
    }

    pub fn is_over(&self) -> bool {
        self.over
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::shadow::compare::CompareSpec;

    fn spec() -> ShadowSpec {
        ShadowSpec {
            upstream: "payments".into(),
            sample: 0.5,
            methods: vec![Method::GET, Method::HEAD, Method::POST],
            dry_run: true,
            max_body: 100,
            max_response: 1000,
            timeout: Duration::from_secs(1),
            max_in_flight: 4,
            compare: CompareSpec::default(),
            noise: 0.1,
            mismatches: 10,
            redact: Vec::new(),
        }
    }

    fn facts<'a>(method: &'a Method) -> Facts<'a> {
        Facts {
            method,
            upgrade: false,
            primary: "monolith",
            content_length: None,
            draws: (0.0, 0.99),
        }
    }

    #[test]
    fn the_rules_refuse_in_order_and_sampling_is_not_a_skip() {
        let s = spec();
        let get = Method::GET;
        let put = Method::PUT;
        assert_eq!(decide(&s, &facts(&put)), Err(Skip::Method));
        let upgrade = Facts {
            upgrade: true,
            ..facts(&get)
        };
        assert_eq!(decide(&s, &upgrade), Err(Skip::Upgrade));
        let moved = Facts {
            primary: "payments",
            ..facts(&get)
        };
        assert_eq!(decide(&s, &moved), Err(Skip::SameUpstream));
        let unsampled = Facts {
            draws: (0.5, 0.0),
            content_length: Some(1_000_000),
            ..facts(&get)
        };
        assert_eq!(decide(&s, &unsampled), Ok(None), "sampling comes first");
        let big = Facts {
            content_length: Some(101),
            ..facts(&get)
        };
        assert_eq!(decide(&s, &big), Err(Skip::BodyTooLarge));
        let fits = Facts {
            content_length: Some(100),
            ..facts(&get)
        };
        assert_eq!(
            decide(&s, &fits),
            Ok(Some(Plan {
                write: false,
                noise: false
            }))
        );
    }

    #[test]
    fn only_reads_learn_noise_and_writes_are_marked() {
        let s = spec();
        let (get, post) = (Method::GET, Method::POST);
        let noisy = |m| Facts {
            draws: (0.1, 0.05),
            ..facts(m)
        };
        assert_eq!(
            decide(&s, &noisy(&get)),
            Ok(Some(Plan {
                write: false,
                noise: true
            }))
        );
        assert_eq!(
            decide(&s, &noisy(&post)),
            Ok(Some(Plan {
                write: true,
                noise: false
            })),
            "a write is never sent to the primary twice"
        );
    }

    #[test]
    fn capped_keeps_up_to_its_limit_and_no_byte_past_it() {
        let mut c = Capped::new(5);
        assert!(c.push(b"abc"));
        assert!(c.push(b"de"));
        assert!(!c.push(b"f"));
        assert!(c.is_over());
        assert!(!c.push(b""), "once over, always over");
        c.clear();
        assert!(c.push(b"xy"));
        assert_eq!(c.into_bytes(), b"xy");
        let mut none = Capped::new(0);
        assert!(none.push(b""));
        assert!(!none.push(b"a"));
    }
}
