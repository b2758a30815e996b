//! What is wrong with one field: [`Problem`], one variant per kind of mistake.
//!
//! A [`super::FieldError`] pairs a problem with the field path and position it was found at, so
//! the text here never names the field: `unknown upstream "paymnts" (known: payments)`, not
//! `routes[1].upstream: ...`. Checks return these values and tests compare them; only
//! [`std::fmt::Display`] turns them into the words `gateway validate` prints.

use std::time::Duration;

use http::{HeaderName, Method};

use super::model::LimitKey;
use crate::path::PathError;

/// One problem with one field.
///
/// Variants that carry a value carry it as written, for the message to quote it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    // ---- the file and its shape ----------------------------------------------------------
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("the file is {bytes} bytes; a config file may have at most {max} (1 MiB)")]
    FileTooLarge { bytes: usize, max: usize },
    /// Lists and mappings nested deeper than the limit (a real config needs fewer than 10).
    #[error("lists and mappings nest more than {0} deep here")]
    TooDeep(usize),
    #[error("a mapping key of {bytes} bytes; keys may have at most {max}")]
    KeyTooLong { bytes: usize, max: usize },
    #[error("aliases (`*name`) are not supported: write the value out")]
    Alias,
    /// The list stopped after this many problems; how many more there were.
    #[error("{0} more problems not shown (fix these first)")]
    MoreProblems(usize),
    /// The document is a list or a scalar (`found` says which).
    #[error("expected a mapping at the top level, found {0}")]
    NotAMapping(&'static str),
    /// serde refused a value: wrong type, unknown field, missing field. Its words, tidied.
    #[error("{0}")]
    Decode(String),
    /// A rule of the circuit breaker's own (`BreakerConfig::validate`) that no range covers.
    #[error("{0}")]
    Breaker(crate::breaker::BreakerRule),
    /// A rule of the retry budget's own (`BudgetConfig::validate`) that no range covers.
    #[error("{0}")]
    Budget(crate::retry_budget::BudgetRule),

    // ---- bounds shared by every section --------------------------------------------------
    /// Outside its documented range (`config/defaults.rs`, the `_RANGE` items).
    #[error("must be between {min} and {max}, got {got}")]
    OutOfRange {
        min: Quantity,
        max: Quantity,
        got: Quantity,
    },
    #[error("must not be empty")]
    Empty,
    #[error("{0} is not a ratio: use 0.0 to 1.0")]
    NotARatio(f64),
    #[error("invalid {0} name \"{1}\": use letters, digits, '-' and '_'")]
    BadName(Named, String),
    #[error("invalid header name \"{0}\"")]
    BadHeaderName(String),
    #[error("\"{0}\" must start with '/'")]
    NoLeadingSlash(String),

    // ---- listeners -------------------------------------------------------------------------
    #[error("invalid listen address \"{0}\": expected IP:PORT such as 0.0.0.0:8080")]
    BadListenAddress(String),
    #[error("\"{0}\" is not a file")]
    NotAFile(String),
    #[error("cannot read \"{file}\": {error}")]
    CannotRead { file: String, error: String },
    /// The certificate and key files exist but do not load as a pair.
    #[error("{0}")]
    Certificate(String),
    #[error("invalid CIDR \"{0}\": expected e.g. 10.0.0.0/8 or 192.168.1.10")]
    BadCidr(String),

    // ---- auth ------------------------------------------------------------------------------
    #[error("must not be empty: it is compared with every token's `iss`")]
    EmptyIssuer,
    #[error("list at least one audience; every token's `aud` must contain one of them")]
    NoAudiences,
    #[error("invalid URL \"{0}\": expected http(s)://host[:port]/path")]
    BadJwksUrl(String),
    #[error("list the accepted algorithms, e.g. [RS256]")]
    NoAlgorithms,
    #[error(
        "\"{0}\" is a shared-secret algorithm; a gateway verifying against a JWKS accepts only public-key algorithms (RS*, PS*, ES*, EdDSA)"
    )]
    SharedSecretAlgorithm(String),
    #[error(
        "unknown algorithm \"{0}\": use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
    )]
    UnknownAlgorithm(String),

    // ---- upstreams -------------------------------------------------------------------------
    #[error("an upstream needs at least one target (host:port)")]
    NoTargets,
    #[error("invalid target \"{0}\": expected host:port such as 127.0.0.1:8000 or monolith:8000")]
    BadTarget(String),
    /// The target's name does not resolve on this machine (the [`super::Host`]'s words).
    #[error("{0}")]
    Unresolvable(String),
    #[error("must be at least backoff ({backoff:?}), got {got:?}")]
    BelowBackoff { backoff: Duration, got: Duration },
    #[error("\"{0}\" is not a valid request path")]
    BadRequestPath(String),
    #[error("not a valid Host header value")]
    BadHostHeader,
    #[error("must be at most the interval ({interval:?}), got {got:?}")]
    TimeoutAboveInterval { interval: Duration, got: Duration },
    #[error("{0} is not an HTTP status (100-599)")]
    NotAStatus(u16),
    #[error("\"{0}\": use a status code (503) or a class (4xx, 5xx)")]
    BadStatusClass(String),

    // ---- routes ----------------------------------------------------------------------------
    #[error("no routes: add at least one route (see config/gateway.yaml)")]
    NoRoutes,
    #[error("duplicate route name \"{name}\" (first defined at line {first_line})")]
    DuplicateRouteName { name: String, first_line: usize },
    #[error(
        "this route checks tokens, but there is no top-level `auth:` block (issuer, audiences, jwks_url, algorithms)"
    )]
    NoAuthBlock,
    /// `sticky_by: claim.X` on a route that does not check tokens.
    #[error(
        "a claim is only known on routes that check tokens: set `auth: optional` or `auth: required`"
    )]
    ClaimWithoutAuth,
    #[error("unknown upstream \"{name}\" (known: {})", .known.join(", "))]
    UnknownUpstream { name: String, known: Vec<String> },
    #[error("sticky_by needs a split: it picks the side of a split")]
    StickyWithoutSplit,
    #[error("a split needs at least one side")]
    EmptySplit,
    #[error("the weights sum to 0: at least one side needs a weight above 0")]
    ZeroWeights,
    #[error(
        "invalid sticky_by \"{0}\": expected header.NAME, cookie.NAME, client_ip or claim.NAME"
    )]
    BadStickyKey(String),
    #[error("a route has either `upstream` or `split`, not both")]
    UpstreamAndSplit,
    #[error("a route needs `upstream` or `split`")]
    NoUpstream,
    #[error("use either strip_prefix or prefix_rewrite, not both")]
    StripAndRewrite,
    #[error("strip_prefix needs match.path_prefix")]
    StripWithoutPrefix,
    #[error("prefix_rewrite needs match.path_prefix")]
    RewriteWithoutPrefix,
    #[error("use either path_prefix or path, not both")]
    PathAndPrefix,
    #[error("invalid host \"{0}\": expected a name such as api.example.com or *.example.com")]
    BadHost(String),
    #[error("an empty list matches nothing: remove `methods` to match every method")]
    NoMethods,
    /// Holds the method in upper case, as it should be written.
    #[error("write methods in upper case: \"{0}\"")]
    LowerCaseMethod(String),
    #[error("invalid HTTP method \"{0}\"")]
    BadMethod(String),
    #[error(
        "list at least one failure: unavailable, connect_error, timeout, reset or {{ status: [...] }}"
    )]
    NoFallbackFailures,
    #[error(
        "\"{0}\" is not a failure: use unavailable, connect_error, timeout, reset or {{ status: [502, 503] }}"
    )]
    BadFallbackFailure(String),
    #[error("{0} is not a failure answer: a fallback takes statuses 400-599 only")]
    FallbackOnSuccess(u16),
    #[error("\"{path}\" is not in normal form and would never match; write \"{normal}\"")]
    NotNormal { path: String, normal: String },
    #[error("\"{path}\" is not a valid path: {error}")]
    BadPath { path: String, error: PathError },

    // ---- cohorts and percent splits ------------------------------------------------------
    #[error("\"{0}\" is not a cookie name: use letters, digits and !#$%&'*+-.^_`|~")]
    BadCookieName(String),
    #[error(
        "the secret has {bytes} bytes; a pin secret needs at least {min} (e.g. `head -c 32 /dev/urandom > FILE`)"
    )]
    ShortSecret { bytes: usize, min: usize },
    #[error("cohort \"{first}\" already pins in cookie \"{cookie}\": give each cohort its own")]
    PinCookieTwice { cookie: String, first: String },
    #[error("the file is longer than {max} bytes: a pin secret is a key of 32 to {max} bytes")]
    LongSecret { max: usize },
    #[error("unknown cohort \"{name}\" (known: {})", .known.join(", "))]
    UnknownCohort { name: String, known: Vec<String> },
    #[error("must be a percent from 0 to 100 in hundredths at most (such as 10 or 12.5), got {0}")]
    BadPercent(f64),
    #[error(
        "cohort \"{0}\" places users by a claim (by or fallback_by), which is only known on routes that check tokens: set `auth: optional` or `auth: required`"
    )]
    CohortClaimWithoutAuth(String),
    #[error("the cohort places the requests of a percent split: remove sticky_by")]
    StickyWithCohort,

    // ---- shadow traffic --------------------------------------------------------------------
    #[error(
        "{0} is a write: copying it to the candidate needs `writes: dry_run` (the copy then carries X-Gateway-Shadow: dry-run)"
    )]
    ShadowWriteWithoutDryRun(Method),
    #[error("expected {expected}, got \"{got}\"")]
    NotOneOf { expected: &'static str, got: String },
    #[error("invalid JSON Pointer \"{pointer}\": {error}")]
    BadPointer {
        pointer: String,
        error: crate::shadow::pointer::PatternError,
    },

    // ---- rate limits -----------------------------------------------------------------------
    #[error("store: redis needs `redis_url` (e.g. redis://127.0.0.1:6379/0)")]
    RedisWithoutUrl,
    /// Never quotes the URL: it may hold a password.
    #[error("invalid Redis URL: expected redis://[user:password@]host:port[/db] or rediss://...")]
    BadRedisUrl,
    #[error("invalid key \"{0}\": expected client_ip, route, claim.NAME or header.NAME")]
    BadLimitKey(String),
    #[error(
        "\"{0}\" is an identity header (auth.claims_to_headers): the client sends it here, so count by the claim instead (claim.NAME)"
    )]
    IdentityHeaderKey(HeaderName),
    #[error("more than 1,000,000 requests per second per key cannot be counted")]
    RateTooHigh,
    #[error(
        "an empty bucket would take {} to refill (burst × per / limit); the most is {}",
        humantime::format_duration(*got), humantime::format_duration(*max)
    )]
    RefillTooLong { max: Duration, got: Duration },
    #[error("policy \"{0}\" is listed twice")]
    PolicyListedTwice(String),
    #[error("unknown policy \"{0}\": there is no top-level `rate_limits:` block")]
    NoRateLimitsBlock(String),
    #[error("unknown policy \"{name}\" (known: {})", .known.join(", "))]
    UnknownPolicy { name: String, known: Vec<String> },
    #[error(
        "policy \"{policy}\" counts by {key}, which is only known on routes that check tokens: set `auth: optional` or `auth: required`"
    )]
    ClaimKeyWithoutAuth { policy: String, key: LimitKey },

    // ---- observability ---------------------------------------------------------------------
    /// `access_log.output: ""`.
    #[error("must be stdout, stderr or a file path")]
    NoOutput,
    #[error("cannot open \"{file}\" for appending: {error}")]
    CannotOpen { file: String, error: String },
    #[error("invalid endpoint \"{0}\": expected http://host:port such as http://127.0.0.1:4317")]
    BadOtlpEndpoint(String),
}

/// A number or a duration, as a [`Problem::OutOfRange`] quotes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    Count(u64),
    Duration(Duration),
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quantity::Count(n) => write!(f, "{n}"),
            Quantity::Duration(d) if d.is_zero() => f.write_str("0s"),
            Quantity::Duration(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl From<Duration> for Quantity {
    fn from(d: Duration) -> Self {
        Quantity::Duration(d)
    }
}

impl From<u64> for Quantity {
    fn from(n: u64) -> Self {
        Quantity::Count(n)
    }
}

impl From<u32> for Quantity {
    fn from(n: u32) -> Self {
        Quantity::Count(u64::from(n))
    }
}

impl From<usize> for Quantity {
    fn from(n: usize) -> Self {
        Quantity::Count(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

/// What a [`Problem::BadName`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Route,
    Upstream,
    Policy,
    Cohort,
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Named::Route => "route",
            Named::Upstream => "upstream",
            Named::Policy => "policy",
            Named::Cohort => "cohort",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words of the problems the section tests only compare as values.
    #[test]
    fn messages_read_as_before() {
        let ms = Duration::from_millis;
        let table = [
            (
                Problem::BadName(Named::Upstream, "a b".into()),
                "invalid upstream name \"a b\": use letters, digits, '-' and '_'",
            ),
            (
                Problem::UnknownUpstream {
                    name: "x".into(),
                    known: vec!["a".into(), "b".into()],
                },
                "unknown upstream \"x\" (known: a, b)",
            ),
            (
                Problem::UnknownUpstream {
                    name: "x".into(),
                    known: vec![],
                },
                "unknown upstream \"x\" (known: )",
            ),
            (
                Problem::OutOfRange {
                    min: ms(100).into(),
                    max: Duration::from_secs(86_400).into(),
                    got: Duration::ZERO.into(),
                },
                "must be between 100ms and 1day, got 0s",
            ),
            (
                Problem::OutOfRange {
                    min: 1usize.into(),
                    max: 1024usize.into(),
                    got: 2_147_483_648usize.into(),
                },
                "must be between 1 and 1024, got 2147483648",
            ),
            (
                Problem::NotARatio(-0.1),
                "-0.1 is not a ratio: use 0.0 to 1.0",
            ),
            (
                Problem::BadPath {
                    path: "/a%zz".into(),
                    error: PathError::BadPercentEncoding,
                },
                "\"/a%zz\" is not a valid path: the request path has a malformed percent-encoding",
            ),
            (
                Problem::NotNormal {
                    path: "/a//b".into(),
                    normal: "/a/b".into(),
                },
                "\"/a//b\" is not in normal form and would never match; write \"/a/b\"",
            ),
            (
                Problem::IdentityHeaderKey(HeaderName::from_static("x-user-id")),
                "\"x-user-id\" is an identity header (auth.claims_to_headers): the client sends it here, so count by the claim instead (claim.NAME)",
            ),
            (
                Problem::UnknownPolicy {
                    name: "p".into(),
                    known: vec!["q".into()],
                },
                "unknown policy \"p\" (known: q)",
            ),
            (
                Problem::CannotRead {
                    file: "/x".into(),
                    error: "gone".into(),
                },
                "cannot read \"/x\": gone",
            ),
            (
                Problem::LowerCaseMethod("GET".into()),
                "write methods in upper case: \"GET\"",
            ),
        ];
        for (problem, text) in table {
            assert_eq!(problem.to_string(), text, "{problem:?}");
        }
    }
}
