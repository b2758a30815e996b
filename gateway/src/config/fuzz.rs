//! Fuzzing the config loader (see `docs/fuzzing.md`, "The config loader"), and the findings of
//! issue 16 as named regression tests.
//!
//! Three generators feed [`load_str`] (the code path of `gateway validate` and of every reload,
//! minus the host checks):
//! - `fuzz_mutated_shipped_config`: `config/gateway.yaml` with 1-4 text mutations (a value
//!   replaced by a nasty scalar, a cut, an insertion of YAML punctuation or unicode, a deleted
//!   or doubled line);
//! - `fuzz_numeric_fields`: a file that sets *every* number and duration of the config, each to
//!   a value drawn around its range's edges, far outside it, huge (`584y`, `2^63`), negative,
//!   fractional or not a number;
//! - `fuzz_generated_yaml`: random YAML (nesting up to twice [`yaml::MAX_DEPTH`], block and
//!   flow, unicode keys and scalars), and random bytes.
//!
//! What must hold for every input: no panic (a stack overflow would abort the test binary);
//! every refusal names a position inside the file; every accepted config has every value
//! within its documented range ([`in_ranges`]), and the runtime objects built from it
//! (limiters, breakers, budgets, timers) build without overflowing.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::defaults;

use super::model::{Config, LimitStore, RouteTarget};
use super::yaml::{self, Pos};
use super::{LoadError, Problem, load_str};

/// The shipped example, as CI validates it.
const SHIPPED: &str = include_str!("../../../config/gateway.yaml");

/// `pos` is inside `src`: a line of it (or the empty line after its last line break) and a
/// column on that line, or just past its end. YAML's line breaks are `\r\n`, `\r` and `\n`.
fn inside(src: &str, pos: Pos) -> bool {
    let lines: Vec<&str> = src
        .split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .collect();
    pos.line >= 1
        && pos.line <= lines.len()
        && pos.col >= 1
        && pos.col <= lines[pos.line - 1].chars().count() + 1
}

/// What must hold for any text: a refusal has positions inside it; an accepted config is
/// within every range and builds.
fn check(src: &str) -> Result<(), TestCaseError> {
    match load_str("gw.yaml", src) {
        Ok(config) => {
            if let Err(out) = in_ranges(&config) {
                return Err(TestCaseError::fail(format!(
                    "accepted, but {out} is out of its range"
                )));
            }
            builds(&config);
        }
        Err(LoadError { errors, .. }) => {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                prop_assert!(
                    inside(src, e.pos),
                    "{}:{}: {e} is outside the file",
                    e.pos.line,
                    e.pos.col
                );
            }
        }
    }
    Ok(())
}

/// Every number and duration of an accepted config against its documented range; `Err` names
/// the first one outside.
fn in_ranges(c: &Config) -> Result<(), String> {
    fn is<T: PartialOrd + Copy + std::fmt::Debug>(
        what: &str,
        v: T,
        r: Range<T>,
    ) -> Result<(), String> {
        if r.contains(v) {
            Ok(())
        } else {
            Err(format!("{what} = {v:?}"))
        }
    }
    use defaults::*;
    let s = &c.server;
    is("threads", s.threads, SERVER_THREADS_RANGE)?;
    is("drain_timeout", s.drain_timeout, DRAIN_TIMEOUT_RANGE)?;
    is("reload_debounce", s.reload_debounce, RELOAD_DEBOUNCE_RANGE)?;
    is(
        "upstream_keepalive_pool",
        s.upstream_keepalive_pool,
        UPSTREAM_KEEPALIVE_POOL_RANGE,
    )?;
    if let Some(a) = &c.auth {
        is("leeway", a.leeway, AUTH_LEEWAY_RANGE)?;
        is(
            "jwks_refresh_interval",
            a.jwks_refresh_interval,
            JWKS_REFRESH_INTERVAL_RANGE,
        )?;
        is(
            "jwks_min_refresh_interval",
            a.jwks_min_refresh_interval,
            JWKS_MIN_REFRESH_INTERVAL_RANGE,
        )?;
        is(
            "jwks_unknown_kid_cooldown",
            a.jwks_unknown_kid_cooldown,
            JWKS_UNKNOWN_KID_COOLDOWN_RANGE,
        )?;
        is("jwks_timeout", a.jwks_timeout, JWKS_TIMEOUT_RANGE)?;
        is("max_token_bytes", a.max_token_bytes, MAX_TOKEN_BYTES_RANGE)?;
        is(
            "token_cache_size",
            a.token_cache_size,
            TOKEN_CACHE_SIZE_RANGE,
        )?;
    }
    for u in c.upstreams.values() {
        let t = &u.timeouts;
        is("connect", t.connect, CONNECT_TIMEOUT_RANGE)?;
        is("response", t.response, RESPONSE_TIMEOUT_RANGE)?;
        is("idle", t.idle, IDLE_TIMEOUT_RANGE)?;
        let r = &u.retries;
        is("attempts", r.attempts, RETRY_ATTEMPTS_RANGE)?;
        is("backoff", r.backoff, RETRY_BACKOFF_RANGE)?;
        is("max_backoff", r.max_backoff, RETRY_MAX_BACKOFF_RANGE)?;
        is(
            "min_retries_per_second",
            r.budget.min_retries_per_second,
            RETRY_BUDGET_MIN_RETRIES_PER_SECOND_RANGE,
        )?;
        is("budget.window", r.budget.window, RETRY_BUDGET_WINDOW_RANGE)?;
        if let Some(h) = &u.health_check {
            is("interval", h.interval, HEALTH_INTERVAL_RANGE)?;
            is("timeout", h.timeout, HEALTH_TIMEOUT_RANGE)?;
            is(
                "healthy_threshold",
                h.healthy_threshold,
                HEALTHY_THRESHOLD_RANGE,
            )?;
            is(
                "unhealthy_threshold",
                h.unhealthy_threshold,
                UNHEALTHY_THRESHOLD_RANGE,
            )?;
        }
        if let Some(b) = &u.circuit_breaker {
            let b = &b.config;
            is("min_requests", b.min_requests, BREAKER_MIN_REQUESTS_RANGE)?;
            is("window", b.window, BREAKER_WINDOW_RANGE)?;
            is("open_for", b.open_for, BREAKER_OPEN_FOR_RANGE)?;
            is("max_open_for", b.max_open_for, BREAKER_MAX_OPEN_FOR_RANGE)?;
            is(
                "half_open_requests",
                b.half_open_requests,
                BREAKER_HALF_OPEN_REQUESTS_RANGE,
            )?;
        }
    }
    if let Some(l) = &c.rate_limits {
        if let LimitStore::Redis { pool_size, .. } = &l.store {
            is("redis_pool_size", *pool_size, REDIS_POOL_SIZE_RANGE)?;
        }
        is(
            "store_timeout",
            l.store_timeout,
            RATE_LIMIT_STORE_TIMEOUT_RANGE,
        )?;
        for p in l.policies.values() {
            is("limit", p.limit, RATE_LIMIT_LIMIT_RANGE)?;
            is("per", p.per, RATE_LIMIT_PER_RANGE)?;
            is("burst", p.burst, RATE_LIMIT_BURST_RANGE)?;
            is(
                "burst × per / limit",
                p.interval().saturating_mul(p.burst),
                Range::new(Duration::ZERO, RATE_LIMIT_MAX_REFILL),
            )?;
        }
    }
    for r in &c.routes {
        if let RouteTarget::Split { sides, .. } = &r.target {
            for s in sides {
                is("weight", s.weight, SPLIT_WEIGHT_RANGE)?;
            }
        }
    }
    if let Some(a) = &c.observability.access_log {
        is("access_log.buffer", a.buffer, ACCESS_LOG_BUFFER_RANGE)?;
    }
    if let Some(o) = &c.observability.otlp {
        is("otlp.timeout", o.timeout, OTLP_TIMEOUT_RANGE)?;
        is("otlp.queue_size", o.queue_size, OTLP_QUEUE_SIZE_RANGE)?;
    }
    Ok(())
}

/// Builds what crashed in issue 16 from an accepted config (no sockets, no threads): every
/// duration as a timer deadline, every limiter, breaker and budget, the largest backoff.
fn builds(c: &Config) {
    let now = Instant::now();
    let deadline = |d: Duration| {
        now.checked_add(d)
            .expect("a configured duration overflows a deadline")
    };
    deadline(c.server.drain_timeout);
    deadline(c.server.reload_debounce);
    for u in c.upstreams.values() {
        for d in [u.timeouts.connect, u.timeouts.response, u.timeouts.idle] {
            deadline(d);
        }
        deadline(u.retries.backoff_for(u.retries.attempts));
        crate::retry_budget::RetryBudget::new(u.retries.budget.clone());
        if let Some(h) = &u.health_check {
            deadline(h.interval);
        }
        if let Some(b) = &u.circuit_breaker {
            deadline(b.config.max_open_for);
            crate::breaker::Breaker::new(b.config.clone());
        }
    }
    if let Some(l) = &c.rate_limits {
        for p in l.policies.values() {
            // What governor computes from a policy (in `MemoryLimiter::new`, a layer below this
            // one, so not called from here): the bucket's depth in u64 nanoseconds.
            let tau = p.interval().as_nanos() * u128::from(p.burst.saturating_sub(1));
            assert!(u64::try_from(tau).is_ok(), "{p:?} overflows governor");
        }
    }
}

// ---- generators ------------------------------------------------------------------------------

/// Scalars that broke or nearly broke something: edges, huge numbers, wrong types, unicode.
fn nasty_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("0s".to_string()),
        Just("584y".to_string()),
        Just("600years".to_string()),
        Just("9223372036854775808s".to_string()),
        Just("18446744073709551615".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("2147483648".to_string()),
        Just("1e400".to_string()),
        Just(".nan".to_string()),
        Just("~".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("*a".to_string()),
        Just("&a x".to_string()),
        Just("!!int x".to_string()),
        Just("\"ünïcödé ☃ 🦀\"".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (any::<u32>(), "(ms|s|m|h|d|y|us|ns)").prop_map(|(n, u)| format!("{n}{u}")),
        "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
    ]
}

/// A duration as written: mostly near the ranges' edges, sometimes far outside.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..3000, "(ms|s|m|h|d)").prop_map(|(n, u)| format!("{n}{u}")),
        1 => (0u64..1000, "(y|years|months|w)").prop_map(|(n, u)| format!("{n}{u}")),
        1 => any::<u64>().prop_map(|n| format!("{n}s")),
        1 => any::<u64>().prop_map(|n| format!("{n}ms")),
        1 => nasty_scalar(),
    ]
}

/// A count as written: mostly near the ranges' edges, sometimes far outside.
fn count_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            0u64, 1, 2, 3, 9, 10, 11, 255, 256, 1000, 1001, 1024, 1025, 10_000, 10_001,
            65_536, 65_537, 100_000, 100_001, 1_000_000, 1_000_001, 1_000_000_000,
            1_000_000_001, 4_294_967_295, 4_294_967_296,
        ])
        .prop_map(|n| n.to_string()),
        2 => (0u64..5000).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => nasty_scalar(),
    ]
}

/// Every number and duration of the config, `D` and `N` standing for generated ones.
const EVERY_NUMBER: &str = "\
server: { threads: N, drain_timeout: D, reload_debounce: D, upstream_keepalive_pool: N }
auth:
  issuer: i
  audiences: [api]
  jwks_url: http://127.0.0.1:1/jwks
  algorithms: [RS256]
  leeway: D
  jwks_refresh_interval: D
  jwks_min_refresh_interval: D
  jwks_unknown_kid_cooldown: D
  jwks_timeout: D
  max_token_bytes: N
  token_cache_size: N
rate_limits:
  store: redis
  redis_url: redis://127.0.0.1:1/0
  redis_pool_size: N
  store_timeout: D
  policies:
    p: { key: client_ip, limit: N, per: D, burst: N }
    q: { key: route, limit: N, per: D }
upstreams:
  a:
    targets: [127.0.0.1:9]
    timeouts: { connect: D, response: D, idle: D }
    retries: { attempts: N, backoff: D, max_backoff: D, budget: { min_retries_per_second: N, window: D } }
    health_check: { path: /h, interval: D, timeout: D, healthy_threshold: N, unhealthy_threshold: N }
    circuit_breaker: { min_requests: N, window: D, open_for: D, max_open_for: D, half_open_requests: N }
  b:
    targets: [127.0.0.1:9]
    circuit_breaker: { open_for: D }
routes:
  - name: r
    match: { path_prefix: / }
    split: [ { upstream: a, weight: N }, { upstream: b, weight: N } ]
    rate_limit: [p, q]
observability:
  access_log: { output: stdout, buffer: N }
  otlp: { endpoint: \"http://127.0.0.1:4317\", timeout: D, queue_size: N }
";

/// Valid values for [`EVERY_NUMBER`]'s `N`s, in order (its `D`s are all valid as `1s`).
const VALID_COUNTS: [&str; 18] = [
    "2", "8", "1024", "100", "4", "10", "20", "5", "2", "10", "2", "3", "20", "3", "1", "9", "100",
    "100",
];

/// [`EVERY_NUMBER`] with each `D` and `N` replaced, in order: by the generated value where there
/// is one, else by a valid one.
fn fill(template: &str, durations: &[Option<String>], counts: &[Option<String>]) -> String {
    let mut d = durations.iter().map(|v| v.as_deref().unwrap_or("1s"));
    let mut n = counts
        .iter()
        .map(|v| v.as_deref())
        .chain(std::iter::repeat(None))
        .zip(VALID_COUNTS)
        .map(|(v, valid)| v.unwrap_or(valid));
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(i) = rest.find([' ', '[']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let token_end = rest.find([',', ' ', '}', '\n', ']']).unwrap_or(rest.len());
        match &rest[..token_end] {
            "D" => out.push_str(d.next().unwrap_or("1s")),
            "N" => out.push_str(n.next().unwrap_or("1")),
            other => out.push_str(other),
        }
        rest = &rest[token_end..];
    }
    out.push_str(rest);
    out
}

/// One edit of a text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value after the `n`-th `: ` (modulo their count).
    Value(usize, String),
    /// Cut the text at a fraction of its length.
    Truncate(f64),
    /// Insert at a fraction of its length.
    Insert(f64, String),
    /// Remove or double the `n`-th line.
    DeleteLine(usize),
    DoubleLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), nasty_scalar()).prop_map(|(i, v)| Mutation::Value(i, v)),
        1 => (0.0..1.0f64).prop_map(Mutation::Truncate),
        2 => (
            0.0..1.0f64,
            prop_oneof![
                "[-:{}\\[\\],&*!|>'\"%@` #?\n\t\r]{1,4}",
                "\\PC{1,6}",
                Just("\u{feff}".to_string()),
                Just("\n  - - - - -".to_string()),
            ]
        )
            .prop_map(|(at, s)| Mutation::Insert(at, s)),
        1 => any::<usize>().prop_map(Mutation::DeleteLine),
        1 => any::<usize>().prop_map(Mutation::DoubleLine),
    ]
}

/// The char boundary at or before `fraction` of `s`.
fn at_fraction(s: &str, fraction: f64) -> usize {
    let mut i = ((s.len() as f64) * fraction) as usize;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(src: &str, m: &Mutation) -> String {
    match m {
        Mutation::Value(n, v) => {
            let colons: Vec<usize> = src.match_indices(": ").map(|(i, _)| i + 2).collect();
            if colons.is_empty() {
                return src.to_string();
            }
            let start = colons[n % colons.len()];
            let end = src[start..]
                .find([',', '}', ']', '\n', '#'])
                .map_or(src.len(), |e| start + e);
            format!("{}{v}{}", &src[..start], &src[end..])
        }
        Mutation::Truncate(f) => src[..at_fraction(src, *f)].to_string(),
        Mutation::Insert(f, s) => {
            let i = at_fraction(src, *f);
            format!("{}{s}{}", &src[..i], &src[i..])
        }
        Mutation::DeleteLine(n) | Mutation::DoubleLine(n) => {
            let mut lines: Vec<&str> = src.split_inclusive('\n').collect();
            if lines.is_empty() {
                return src.to_string();
            }
            let i = n % lines.len();
            if matches!(m, Mutation::DeleteLine(_)) {
                lines.remove(i);
            } else {
                lines.insert(i, lines[i]);
            }
            lines.concat()
        }
    }
}

/// Random YAML text: nested block or flow collections (deeper than the limit at times),
/// unicode keys, any scalar.
fn yaml_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        nasty_scalar(),
        "[a-z_]{1,8}",
        (0u64..100_000).prop_map(|n| n.to_string())
    ];
    let flow = leaf.prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z\\PC]{1,6}", inner), 0..6).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    });
    prop_oneof![
        3 => prop::collection::vec(("[a-z_]{1,10}", flow), 1..8).prop_map(|kv| {
            kv.iter().map(|(k, v)| format!("{k}: {v}\n")).collect::<String>()
        }),
        1 => (0usize..2 * yaml::MAX_DEPTH, any::<bool>()).prop_map(|(depth, flow)| {
            if flow {
                format!("a: {}1{}\n", "[".repeat(depth), "]".repeat(depth))
            } else {
                format!("a:\n  {}1\n", "- ".repeat(depth))
            }
        }),
        1 => (0usize..2 * yaml::MAX_DEPTH).prop_map(|depth| {
            (0..depth).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect::<String>()
        }),
        1 => "\\PC{0,200}",
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

proptest! {
    #![proptest_config(testkit::proptest_config(256))]

    #[test]
    fn fuzz_mutated_shipped_config(ms in prop::collection::vec(mutation(), 1..5)) {
        let mut src = SHIPPED.to_string();
        for m in &ms {
            src = apply(&src, m);
        }
        check(&src)?;
    }

    #[test]
    fn fuzz_numeric_fields(
        durations in prop::collection::vec(prop::option::weighted(0.08, duration_text()), 23),
        counts in prop::collection::vec(prop::option::weighted(0.08, count_text()), 18),
    ) {
        check(&fill(EVERY_NUMBER, &durations, &counts))?;
    }

    #[test]
    fn fuzz_generated_yaml(src in yaml_text()) {
        check(&src)?;
        if let Err(e) = yaml::parse(&src) {
            prop_assert!(inside(&src, e.pos), "{e:?}");
        }
    }
}

// ---- the generators reach what they should ----------------------------------------------------

#[test]
fn the_templates_load_as_written() {
    let ones = fill(EVERY_NUMBER, &[], &[]);
    assert!(!ones.contains(" D") && !ones.contains(" N"), "{ones}");
    let c = super::tests::load(&ones);
    in_ranges(&c).unwrap();
    builds(&c);
    assert_eq!(c.server.threads, 2);
    assert_eq!(ones.matches(" D").count() + ones.matches("[D").count(), 0);
    let c = super::tests::load(SHIPPED);
    in_ranges(&c).unwrap();
}

#[test]
fn positions_inside_the_file() {
    assert!(inside("a: 1\n", Pos { line: 1, col: 5 }));
    assert!(inside("a: 1\n", Pos { line: 2, col: 1 }));
    assert!(!inside("a: 1\n", Pos { line: 2, col: 2 }));
    assert!(!inside("a: 1\n", Pos { line: 3, col: 1 }));
    assert!(inside("a\r\nb\rc", Pos { line: 3, col: 2 }));
}

// ---- issue 16: each finding, as the error a user now sees -------------------------------------

/// `(block appended to a one-route file, the line of the error)`: values that `validate`
/// accepted and that aborted the gateway at start, on reload or on SIGTERM, or that allocated
/// without bound, or (`jwks_timeout: 0s`) made every token route answer 503.
#[test]
fn every_value_that_crashed_the_gateway_is_now_a_config_error() {
    let auth = "auth: { issuer: i, audiences: [a], jwks_url: \"http://127.0.0.1:1/j\", algorithms: [RS256]";
    let table = [
        (
            "rate_limits: { policies: { p: { key: route, limit: 1, per: 584y } } }".to_string(),
            "rate_limits.policies.p.per: must be between 1ms and 1year, got 584years",
        ),
        (
            "observability: { otlp: { endpoint: \"http://127.0.0.1:4317\", timeout: 10000000000y } }".into(),
            "observability.otlp.timeout: must be between 1ms and 5m, got",
        ),
        (
            "server: { drain_timeout: 100000000y }".into(),
            "server.drain_timeout: must be between 0s and 1h, got",
        ),
        (
            "observability: { otlp: { endpoint: \"http://127.0.0.1:4317\", timeout: 10000000000y } }".into(),
            "observability.otlp.timeout: must be between 1ms and 5m, got",
        ),
        (
            "observability: { otlp: { endpoint: \"http://127.0.0.1:4317\", queue_size: 9223372036854775807 } }".into(),
            "observability.otlp.queue_size: must be between 1 and 1000000, got 9223372036854775807",
        ),
        (
            "server: { upstream_keepalive_pool: 9223372036854775807 }".into(),
            "server.upstream_keepalive_pool: must be between 0 and 1024, got 9223372036854775807",
        ),
        (
            "observability: { access_log: { buffer: 9223372036854775807 } }".into(),
            "observability.access_log.buffer: must be between 1 and 1000000, got 9223372036854775807",
        ),
        (
            "server: { threads: 2147483648 }".into(),
            "server.threads: must be between 1 and 1024, got 2147483648",
        ),
        (
            "rate_limits: { store: redis, redis_url: \"redis://127.0.0.1:1/0\", redis_pool_size: 999999999 }".into(),
            "rate_limits.redis_pool_size: must be between 1 and 256, got 999999999",
        ),
        (
            "rate_limits: { redis_pool_size: 999999999 }".into(),
            "rate_limits.redis_pool_size: must be between 1 and 256, got 999999999",
        ),
        (
            format!("{auth}, jwks_timeout: 0s }}"),
            "auth.jwks_timeout: must be between 1ms and 5m, got 0s",
        ),
        (
            "rate_limits: { policies: { p: { key: route, limit: 1, per: 1d, burst: 1000 } } }".into(),
            "rate_limits.policies.p.burst: an empty bucket would take 2years 8months",
        ),
    ];
    for (block, expected) in table {
        let src = format!("{}{block}\n", super::tests::MINIMAL);
        let e = super::tests::errors(&src);
        assert!(
            e.starts_with("gw.yaml:5:") && e.contains(expected) && e.lines().count() == 1,
            "{block}\n  got: {e}\n want: {expected}"
        );
    }
    let e = super::tests::errors(
        "upstreams:\n  a: { targets: [127.0.0.1:9], health_check: { path: /, interval: 9223372036854775808s } }\nroutes:\n  - { name: r, match: {}, upstream: a }\n",
    );
    assert!(
        e.starts_with(
            "gw.yaml:2:67: upstreams.a.health_check.interval: must be between 100ms and 1day, got 292271023045years"
        ),
        "{e}"
    );
}

/// The 4,200-deep block sequence that killed the reloader, and the 16,900-deep one that
/// aborted `validate`: a position and a reason, at once.
#[test]
fn the_deep_files_of_the_issue_are_config_errors() {
    for depth in [4_200, 16_900] {
        let src = format!("a:\n  {}x\n", "- ".repeat(depth));
        let e = load_str("gw.yaml", &src).unwrap_err();
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].reason, Problem::TooDeep(yaml::MAX_DEPTH));
        assert_eq!(
            e.to_string(),
            "gw.yaml:2:129: lists and mappings nest more than 64 deep here"
        );
    }
}

/// Thousands of broken entries make one bounded list, not one line (and one copy of every
/// name) each.
#[test]
fn a_file_with_thousands_of_problems_lists_the_first_hundred() {
    let mut src = String::from("upstreams:\n");
    for i in 0..5_000 {
        src.push_str(&format!("  u{i}: {{ targets: [127.0.0.1:9] }}\n"));
    }
    src.push_str("routes:\n");
    for i in 0..5_000 {
        src.push_str(&format!(
            "  - {{ name: r{i}, match: {{}}, upstream: nope{i} }}\n"
        ));
    }
    let e = load_str("gw.yaml", &src).unwrap_err();
    assert_eq!(e.errors.len(), super::MAX_PROBLEMS + 1);
    assert_eq!(
        e.errors.last().map(|e| &e.reason),
        Some(&Problem::MoreProblems(5_000 - super::MAX_PROBLEMS))
    );
    let first = e.to_string().lines().next().unwrap().to_string();
    assert!(
        first.starts_with("gw.yaml:5003:")
            && first.ends_with("unknown upstream \"nope0\" (known: u0, u1, u10, u100, u1000, u1001, u1002, u1003, u1004, u1005, u1006, u1007, u1008, u1009, u101, u1010, u1011, u1012, u1013, u1014, ...)"),
        "{first}"
    );
}
