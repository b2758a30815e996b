//! Verdicts and per-route bookkeeping for shadow traffic: what a comparison's differences mean
//! ([`classify`] against a learned [`NoiseModel`]), and what a route keeps of them
//! ([`RouteStats`]: counts, parity, top differing pointers, a ring of redacted mismatches) for
//! `gateway_shadow_requests_total{route,result}`, `GET /admin/shadow` and
//! `GET /admin/shadow/ROUTE/mismatches`.
//!
//! Nothing here touches a pingora `Session`: the proxy hands over the differences (the sorted
//! difference texts of `compare`: `status`, `header:NAME`, JSON pointers such as
//! `/items/0/price`, `body`), the two statuses and the two parsed JSON documents, and carries
//! out nothing but the returned [`Verdict`]. Time is read from [`tokio::time::Instant`] (only
//! for a record's age).
//!
//! ## The verdict rules
//! Errors are decided before any comparison, by the caller: the primary failed →
//! [`Verdict::PrimaryError`] ([`RouteStats::record_primary_error`]); the copy failed, timed out
//! or answered something that could not be compared → [`Verdict::ShadowError`]
//! ([`RouteStats::record_shadow_error`]). For two answers that were compared
//! ([`classify`], [`RouteStats::record_comparison`]):
//!
//! | differences | verdict |
//! |---|---|
//! | none | `match` |
//! | every one is a JSON pointer the noise model has learned | `noise` |
//! | at least one is not (a pointer never seen noisy, `status`, `header:…`, `body`) | `mismatch`, reporting only those |
//!
//! ## The noise model (Diffy-style)
//! A share of requests is also sent a second time to the primary; the differences between the
//! two primary answers are [`NoiseModel::learn`]ed. Rules:
//! * **Only JSON pointers are learned**, never `status`, `header:…` or `body`, and never `""`
//!   (the whole document): a primary whose status or whole body changes between two calls is
//!   unstable, and learning that would turn every later real mismatch of that kind into noise.
//!   A header that differs between primaries should be dropped from `compare.headers`.
//! * **Indexes are generalised**: every all-digit segment becomes `*`, when learning and when
//!   matching, so `/items/3/id` learned makes `/items/7/id` noise. (Numeric object keys, maps
//!   keyed by id, generalise the same way; a literal key `*` is not told apart from the wildcard.)
//! * **Subtrees**: a learned pointer also makes every pointer below it noise (`/meta` learned →
//!   `/meta/ts` is noise), as a `compare.ignore` pattern would.
//! * **Bounded**: at most [`Limits::noise_patterns`] patterns (default 256), none longer than
//!   [`MAX_POINTER_BYTES`]. Beyond that, learned patterns keep their counts, new ones are counted
//!   as `refused` and the model says it is `full` (a full model under-reports noise; it never
//!   forgets a pattern, so a verdict never flips from noise back to mismatch by eviction).
//!
//! ## Parity and its Wilson lower bound
//! parity = match / (match + mismatch): noise and errors are not trials. With few trials the
//! ratio alone means little (3 of 3 is "100%"), so the view also gives the lower end of the
//! Wilson score interval at 95% (z = 1.96), for `s` successes in `n` trials, `p = s / n`:
//!
//! ```text
//!         p + z²/2n − z·√( p(1−p)/n + z²/4n² )
//!   lb = ──────────────────────────────────────
//!                    1 + z²/n
//! ```
//! and 0 when n = 0. 100/100 gives 0.963, 50/100 gives 0.404 ([`wilson_lower_bound`]). A route
//! is ready to move when the lower bound, not the ratio, clears the team's bar. The noise ratio
//! is noise / (match + mismatch + noise).
//!
//! ## The top differing pointers
//! Counted from mismatches only (the reported differences, noise left out), with indexes
//! generalised as above (`/items/*/price`), pointers cut to [`MAX_POINTER_BYTES`]. At most
//! [`Limits::top_pointers`] distinct texts (default 1,000) are kept, by the *space-saving*
//! rule: a new text arriving when the table is full evicts the least counted one (ties: the
//! greatest text) and starts at that count + 1, remembering it as its `overcount` (the true count
//! is between `count − overcount` and `count`). Any text seen more than total / capacity times is
//! guaranteed to be in the table. An eviction scans the table (O(capacity), about a microsecond).
//!
//! ## Mismatch records and redaction
//! The last [`Limits::mismatches`] mismatches (`record.mismatches`, default 200; 0 keeps none) sit
//! in a ring, the oldest dropped first. A record holds the request id, the trace id, the method,
//! the path **without its query string** (cut to [`MAX_PATH_BYTES`]), both statuses, the
//! number of differences left out as noise, and at most [`Limits::pointers_per_record`] (default
//! 32) differing pointers, each with its value in both documents (absent when the document has
//! none there; never for `status`, `header:…`, `body`: header values can carry credentials, and
//! the statuses are stored already).
//!
//! A value is stored as its **redacted** copy, made while it is first written out: any part of
//! it at a pointer covered by a `record.redact` pattern (the pointer itself or anything below it:
//! `/card/*` covers `/card/number` and `/card/number/last4`) is written as `"[redacted]"`, and
//! this also holds when the differing pointer is *above* the redacted one (a differing `/card`
//! or a whole-document difference stores `{"number":"[redacted]"}`). The writer stops after
//! [`Limits::value_bytes`] bytes of JSON text (default 256); a longer value is stored as a
//! string of that prefix followed by [`TRUNCATED`]. So a redacted value is never copied into
//! memory this module keeps, and the work per value is bounded however large the answer is.
//! (Redaction is of values: an object *key* that carries personal data still shows in pointers.)

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::pointer::Pattern;

/// What a redacted value is replaced by.
pub const REDACTED: &str = "[redacted]";
/// What follows the kept prefix of a value longer than [`Limits::value_bytes`].
pub const TRUNCATED: &str = "…[truncated]";
/// Longest pointer text kept (top pointers, records; longer ones are cut) or learned as noise
/// (longer ones are refused).
pub const MAX_POINTER_BYTES: usize = 512;
/// Longest request id or trace id kept in a record (both are checked upstream; this is a backstop).
pub const MAX_ID_BYTES: usize = 128;
/// Longest path kept in a record (longer ones are cut, with [`TRUNCATED`]).
pub const MAX_PATH_BYTES: usize = 1024;
/// z for a 95% interval.
const Z_95: f64 = 1.96;

/// The verdict on one shadowed request: the `result` label of
/// `gateway_shadow_requests_total{route,result}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Match,
    Mismatch,
    Noise,
    ShadowError,
    PrimaryError,
}

impl Verdict {
    /// Every verdict, in label order (to set up the metric's series at once).
    pub const ALL: [Verdict; 5] = [
        Verdict::Match,
        Verdict::Mismatch,
        Verdict::Noise,
        Verdict::ShadowError,
        Verdict::PrimaryError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Mismatch => "mismatch",
            Verdict::Noise => "noise",
            Verdict::ShadowError => "shadow_error",
            Verdict::PrimaryError => "primary_error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a request was not copied, or its answers not compared: the `reason` label of
/// `gateway_shadow_skipped_total{route,reason}` (the rules: `crate::mirror::plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Method,
    Upgrade,
    SameUpstream,
    BodyTooLarge,
    InFlight,
    /// The candidate has no target that can take a copy (unhealthy or its shadow breaker open).
    Unavailable,
    /// An answer (either side) was larger than `max_response`, encoded or decoded.
    ResponseTooLarge,
    /// An answer's `Content-Encoding` is unknown, or its bytes are not what it says.
    Encoding,
    /// The client's request ended before its body or its answer did (it went away).
    RequestIncomplete,
    /// The client's answer came from the route's fallback: nothing of the primary's to compare.
    Fallback,
    /// The primary's answer was not whole `crate::mirror::copy::PRIMARY_WAIT` after the copy's.
    PrimaryTooSlow,
}

impl Skip {
    /// Every reason, in label order (to set up the metric's series at once).
    pub const ALL: [Skip; 11] = [
        Skip::Method,
        Skip::Upgrade,
        Skip::SameUpstream,
        Skip::BodyTooLarge,
        Skip::InFlight,
        Skip::Unavailable,
        Skip::ResponseTooLarge,
        Skip::Encoding,
        Skip::RequestIncomplete,
        Skip::Fallback,
        Skip::PrimaryTooSlow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Method => "method",
            Skip::Upgrade => "upgrade",
            Skip::SameUpstream => "same_upstream",
            Skip::BodyTooLarge => "body_too_large",
            Skip::InFlight => "in_flight",
            Skip::Unavailable => "unavailable",
            Skip::ResponseTooLarge => "response_too_large",
            Skip::Encoding => "encoding",
            Skip::RequestIncomplete => "request_incomplete",
            Skip::Fallback => "fallback",
            Skip::PrimaryTooSlow => "primary_too_slow",
        }
    }
}

/// The verdict on two compared answers (see the rules in the module doc).
pub fn classify(differences: &[String], noise: &NoiseModel) -> Verdict {
    if differences.is_empty() {
        Verdict::Match
    } else if differences.iter().all(|d| noise.is_noise(d)) {
        Verdict::Noise
    } else {
        Verdict::Mismatch
    }
}

/// The Wilson score interval's lower bound at 95% (z = 1.96) for `successes` of `trials`; 0 for
/// no trials. `successes` above `trials` counts as `trials`.
pub fn wilson_lower_bound(successes: u64, trials: u64) -> f64 {
    if trials == 0 {
        return 0.0;
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z2 = Z_95 * Z_95;
    let centre = p + z2 / (2.0 * n);
    let spread = Z_95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// A difference text with its all-digit segments replaced by `*` (`/items/3/id` →
/// `/items/*/id`); `None` for what is not a JSON pointer below the root (`status`,
/// `header:…`, `body`, `""`).
pub fn generalise(difference: &str) -> Option<String> {
    let rest = difference.strip_prefix('/')?;
    let mut out = String::with_capacity(difference.len());
    for segment in rest.split('/') {
        out.push('/');
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('*');
        } else {
            out.push_str(segment);
        }
    }
    Some(out)
}

/// The caps of one route's bookkeeping, chosen at config load (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Mismatch records kept (`record.mismatches`).
    pub mismatches: usize,
    /// Noise patterns learned.
    pub noise_patterns: usize,
    /// Distinct pointers counted for the top differing pointers.
    pub top_pointers: usize,
    /// Bytes of JSON text kept of each recorded value.
    pub value_bytes: usize,
    /// Differing pointers kept in one record.
    pub pointers_per_record: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            mismatches: 200,
            noise_patterns: 256,
            top_pointers: 1000,
            value_bytes: 256,
            pointers_per_record: 32,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The noise model

/// Pointers seen differing between two answers of the primary, indexes generalised.
#[derive(Debug, Clone)]
pub struct NoiseModel {
    capacity: usize,
    /// Generalised pointer → times seen differing.
    learned: HashMap<String, u64>,
    /// Primary-vs-primary comparisons learned from.
    observations: u64,
    /// New patterns not kept because the model was full (or the pointer too long).
    refused: u64,
}

/// One learned pattern, for the admin view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LearnedPattern {
    pub pointer: String,
    pub seen: u64,
}

/// What the noise model knows, for the admin view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoiseModelView {
    pub observations: u64,
    pub capacity: usize,
    pub full: bool,
    pub refused: u64,
    /// Most seen first.
    pub learned: Vec<LearnedPattern>,
}

impl NoiseModel {
    pub fn new(capacity: usize) -> NoiseModel {
        NoiseModel {
            capacity,
            learned: HashMap::new(),
            observations: 0,
            refused: 0,
        }
    }

    /// Learns from the differences between two answers of the primary to the same request.
    pub fn learn(&mut self, differences: &[String]) {
        self.observations += 1;
        for pattern in differences.iter().filter_map(|d| generalise(d)) {
            if let Some(seen) = self.learned.get_mut(&pattern) {
                *seen += 1;
            } else if self.learned.len() < self.capacity && pattern.len() <= MAX_POINTER_BYTES {
                self.learned.insert(pattern, 1);
            } else {
                self.refused += 1;
            }
        }
    }

    /// Whether this difference is a pointer at or below a learned one.
    pub fn is_noise(&self, difference: &str) -> bool {
        let Some(pattern) = generalise(difference) else {
            return false;
        };
        // The pointer itself, then each ancestor (cut before each `/` but the leading one).
        self.learned.contains_key(&pattern)
            || pattern
                .match_indices('/')
                .skip(1)
                .any(|(at, _)| self.learned.contains_key(&pattern[..at]))
    }

    /// Whether a new pattern would be refused.
    pub fn is_full(&self) -> bool {
        self.learned.len() >= self.capacity
    }

    /// The learned patterns, most seen first (ties by pointer).
    pub fn learned(&self) -> Vec<LearnedPattern> {
        let mut out: Vec<_> = self
            .learned
            .iter()
            .map(|(pointer, &seen)| LearnedPattern {
                pointer: pointer.clone(),
                seen,
            })
            .collect();
        out.sort_by(|a, b| b.seen.cmp(&a.seen).then_with(|| a.pointer.cmp(&b.pointer)));
        out
    }

    pub fn view(&self) -> NoiseModelView {
        NoiseModelView {
            observations: self.observations,
            capacity: self.capacity,
            full: self.is_full(),
            refused: self.refused,
            learned: self.learned(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Top differing pointers (space-saving)

/// Bounded counts of difference texts by the space-saving rule (module doc).
#[derive(Debug, Clone)]
pub struct TopPointers {
    capacity: usize,
    /// Text → (count, overcount).
    counts: HashMap<String, (u64, u64)>,
}

/// One counted pointer, for the admin view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PointerCount {
    pub pointer: String,
    pub count: u64,
    /// How much of `count` may have been inherited from an evicted pointer.
    pub overcount: u64,
}

impl TopPointers {
    pub fn new(capacity: usize) -> TopPointers {
        TopPointers {
            capacity,
            counts: HashMap::new(),
        }
    }

    pub fn add(&mut self, text: &str) {
        if let Some((count, _)) = self.counts.get_mut(text) {
            *count += 1;
            return;
        }
        if self.capacity == 0 {
            return;
        }
        let mut start = (1, 0);
        if self.counts.len() >= self.capacity {
            let least = self
                .counts
                .iter()
                .min_by(|a, b| a.1.0.cmp(&b.1.0).then_with(|| b.0.cmp(a.0)))
                .map(|(text, &(count, _))| (text.clone(), count));
            if let Some((evicted, count)) = least {
                self.counts.remove(&evicted);
                start = (count + 1, count);
            }
        }
        self.counts.insert(text.to_string(), start);
    }

    /// The `n` most counted, most first (ties by text).
    pub fn top(&self, n: usize) -> Vec<PointerCount> {
        let mut out: Vec<_> = self
            .counts
            .iter()
            .map(|(pointer, &(count, overcount))| PointerCount {
                pointer: pointer.clone(),
                count,
                overcount,
            })
            .collect();
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.pointer.cmp(&b.pointer))
        });
        out.truncate(n);
        out
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Mismatch records

/// One compared exchange, borrowed from the proxy for [`RouteStats::record_comparison`].
/// It holds the raw, unredacted documents, so it has no `Debug` (nothing can log it by accident).
pub struct Exchange<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub method: &'a str,
    /// The request-target's path; a query string, if still there, is cut off here.
    pub path: &'a str,
    pub primary_status: u16,
    pub candidate_status: u16,
    /// The parsed answers, when the route compares bodies as JSON.
    pub primary: Option<&'a Value>,
    pub candidate: Option<&'a Value>,
}

/// A recorded mismatch: only redacted, capped values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MismatchRecord {
    #[serde(skip)]
    at: Instant,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub method: String,
    pub path: String,
    pub status: StatusPair,
    /// The first [`Limits::pointers_per_record`] reported differences.
    pub differences: Vec<RecordedDifference>,
    /// Reported differences beyond those.
    pub more_differences: usize,
    /// Differences left out as noise.
    pub noise_differences: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusPair {
    pub primary: u16,
    pub candidate: u16,
}

/// One differing pointer and its redacted, capped value in each document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedDifference {
    pub pointer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Value>,
}

impl MismatchRecord {
    fn new(
        exchange: &Exchange<'_>,
        reported: &[&String],
        noise_differences: usize,
        redact: &[Pattern],
        limits: &Limits,
    ) -> MismatchRecord {
        let path = exchange.path.split('?').next().unwrap_or_default();
        let kept = reported.len().min(limits.pointers_per_record);
        let differences = reported[..kept]
            .iter()
            .map(|d| {
                let value = |doc: Option<&Value>| {
                    let segments = segments(d)?;
                    let found = doc?.pointer(d)?;
                    Some(stored_value(found, segments, redact, limits.value_bytes))
                };
                RecordedDifference {
                    pointer: cut(d, MAX_POINTER_BYTES),
                    primary: value(exchange.primary),
                    candidate: value(exchange.candidate),
                }
            })
            .collect();
        MismatchRecord {
            at: Instant::now(),
            request_id: cut(exchange.request_id, MAX_ID_BYTES),
            trace_id: exchange.trace_id.map(|t| cut(t, MAX_ID_BYTES)),
            method: cut(exchange.method, 32),
            path: cut(path, MAX_PATH_BYTES),
            status: StatusPair {
                primary: exchange.primary_status,
                candidate: exchange.candidate_status,
            },
            differences,
            more_differences: reported.len() - kept,
            noise_differences,
        }
    }
}

/// A recorded mismatch with its age, for `GET /admin/shadow/ROUTE/mismatches`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MismatchView {
    pub age_seconds: u64,
    #[serde(flatten)]
    pub record: MismatchRecord,
}

/// `GET /admin/shadow/ROUTE/mismatches`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MismatchesView {
    pub route: String,
    pub capacity: usize,
    /// Mismatches recorded since start, including those dropped from the ring.
    pub recorded_total: u64,
    /// Newest first.
    pub mismatches: Vec<MismatchView>,
}

/// The unescaped segments of a JSON pointer (`None` if it is not one).
fn segments(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// `text` cut to at most `max` bytes (at a char boundary), with [`TRUNCATED`] if it was cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED}", &text[..end])
}

/// The redacted copy of `value` (found at `path`), as a JSON value if its text fits in
/// `max_bytes`, else as a string of the text's prefix and [`TRUNCATED`].
fn stored_value(
    value: &Value,
    mut path: Vec<String>,
    redact: &[Pattern],
    max_bytes: usize,
) -> Value {
    let mut out = Capped {
        buf: Vec::new(),
        cap: max_bytes,
    };
    match write_redacted(&mut out, value, &mut path, redact) {
        Ok(()) => serde_json::from_slice(&out.buf)
            .unwrap_or_else(|_| Value::String(format!("{}{TRUNCATED}", lossy(out.buf)))),
        Err(_) => Value::String(format!("{}{TRUNCATED}", lossy(out.buf))),
    }
}

fn lossy(buf: Vec<u8>) -> String {
    match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut buf = e.into_bytes();
            buf.truncate(valid);
            String::from_utf8(buf).unwrap_or_default()
        }
    }
}

/// Writes `value` as JSON, any part covered by a redact pattern as `"[redacted]"`; fails as soon
/// as `out` is full, so the work is bounded by its cap (plus the depth).
fn write_redacted(
    out: &mut Capped,
    value: &Value,
    path: &mut Vec<String>,
    redact: &[Pattern],
) -> io::Result<()> {
    use io::Write as _;
    if redact.iter().any(|p| p.covers(path)) {
        return serde_json::to_writer(&mut *out, REDACTED).map_err(io::Error::from);
    }
    match value {
        Value::Object(map) => {
            out.write_all(b"{")?;
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, key).map_err(io::Error::from)?;
                out.write_all(b":")?;
                path.push(key.clone());
                let written = write_redacted(out, item, path, redact);
                path.pop();
                written?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                path.push(i.to_string());
                let written = write_redacted(out, item, path, redact);
                path.pop();
                written?;
            }
            out.write_all(b"]")
        }
        scalar => serde_json::to_writer(&mut *out, scalar).map_err(io::Error::from),
    }
}

/// A writer that keeps at most `cap` bytes and fails once more is written.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
}

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.cap - self.buf.len();
        if bytes.len() > room {
            self.buf.extend_from_slice(&bytes[..room]);
            return Err(io::Error::other("value longer than its cap"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Per-route stats

/// One route's shadow bookkeeping, shared by its request tasks (`Sync`): verdict counts are
/// atomics; the noise model, and the top pointers with the ring, each sit behind their own
/// short-held `Mutex` (values are redacted and capped before the lock is taken).
#[derive(Debug)]
pub struct RouteStats {
    limits: Limits,
    redact: Vec<Pattern>,
    counts: [AtomicU64; 5],
    noise: Mutex<NoiseModel>,
    tally: Mutex<Tally>,
}

#[derive(Debug)]
struct Tally {
    top: TopPointers,
    ring: VecDeque<MismatchRecord>,
    recorded_total: u64,
}

/// Requests by verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    #[serde(rename = "match")]
    pub matched: u64,
    pub mismatch: u64,
    pub noise: u64,
    pub shadow_error: u64,
    pub primary_error: u64,
}

/// match / (match + mismatch), with its Wilson 95% lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Parity {
    pub matched: u64,
    pub trials: u64,
    /// `None` before the first trial.
    pub ratio: Option<f64>,
    pub lower_bound: f64,
}

impl Parity {
    pub fn new(matched: u64, trials: u64) -> Parity {
        Parity {
            matched,
            trials,
            ratio: (trials > 0).then(|| matched as f64 / trials as f64),
            lower_bound: wilson_lower_bound(matched, trials),
        }
    }
}

/// One route in `GET /admin/shadow`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteView {
    pub route: String,
    pub counts: Counts,
    pub parity: Parity,
    /// noise / (match + mismatch + noise); `None` before the first comparison.
    pub noise_ratio: Option<f64>,
    pub top_pointers: Vec<PointerCount>,
    pub noise_model: NoiseModelView,
    pub mismatches_recorded: u64,
}

/// `GET /admin/shadow`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowView {
    /// By route name.
    pub routes: Vec<RouteView>,
}

/// `GET /admin/shadow`, from each route with a shadow, showing `top` pointers per route.
pub fn shadow_view<'a>(
    routes: impl IntoIterator<Item = (&'a str, &'a RouteStats)>,
    top: usize,
) -> ShadowView {
    let mut routes: Vec<_> = routes
        .into_iter()
        .map(|(name, stats)| stats.view(name, top))
        .collect();
    routes.sort_by(|a, b| a.route.cmp(&b.route));
    ShadowView { routes }
}

impl RouteStats {
    /// `redact`: the route's `record.redact` patterns.
    pub fn new(limits: Limits, redact: Vec<Pattern>) -> RouteStats {
        RouteStats {
            limits,
            redact,
            counts: Default::default(),
            noise: Mutex::new(NoiseModel::new(limits.noise_patterns)),
            tally: Mutex::new(Tally {
                top: TopPointers::new(limits.top_pointers),
                ring: VecDeque::with_capacity(limits.mismatches.min(1024)),
                recorded_total: 0,
            }),
        }
    }

    fn noise(&self) -> std::sync::MutexGuard<'_, NoiseModel> {
        self.noise.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, verdict: Verdict) {
        self.counts[verdict.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The differences between two answers of the primary (the `noise` share).
    pub fn learn_noise(&self, differences: &[String]) {
        self.noise().learn(differences);
    }

    /// The primary failed: nothing was compared.
    pub fn record_primary_error(&self) -> Verdict {
        self.count(Verdict::PrimaryError);
        Verdict::PrimaryError
    }

    /// The copy failed, timed out, or could not be compared.
    pub fn record_shadow_error(&self) -> Verdict {
        self.count(Verdict::ShadowError);
        Verdict::ShadowError
    }

    /// Classifies a comparison and counts it; a mismatch also counts its reported pointers and
    /// is recorded (redacted) in the ring.
    pub fn record_comparison(&self, exchange: &Exchange<'_>, differences: &[String]) -> Verdict {
        let (verdict, reported) = {
            let noise = self.noise();
            let verdict = classify(differences, &noise);
            let reported: Vec<&String> = if verdict == Verdict::Mismatch {
                differences.iter().filter(|d| !noise.is_noise(d)).collect()
            } else {
                Vec::new()
            };
            (verdict, reported)
        };
        self.count(verdict);
        if verdict != Verdict::Mismatch {
            return verdict;
        }
        let record = (self.limits.mismatches > 0).then(|| {
            let noise_differences = differences.len() - reported.len();
            MismatchRecord::new(
                exchange,
                &reported,
                noise_differences,
                &self.redact,
                &self.limits,
            )
        });
        let mut tally = self.tally();
        for d in &reported {
            let text = generalise(d).unwrap_or_else(|| d.to_string());
            tally.top.add(&cut(&text, MAX_POINTER_BYTES));
        }
        tally.recorded_total += 1;
        if let Some(record) = record {
            if tally.ring.len() >= self.limits.mismatches {
                tally.ring.pop_front();
            }
            tally.ring.push_back(record);
        }
        verdict
    }

    pub fn counts(&self) -> Counts {
        let get = |v: Verdict| self.counts[v.index()].load(Ordering::Relaxed);
        Counts {
            matched: get(Verdict::Match),
            mismatch: get(Verdict::Mismatch),
            noise: get(Verdict::Noise),
            shadow_error: get(Verdict::ShadowError),
            primary_error: get(Verdict::PrimaryError),
        }
    }

    pub fn parity(&self) -> Parity {
        let c = self.counts();
        Parity::new(c.matched, c.matched + c.mismatch)
    }

    /// noise / (match + mismatch + noise).
    pub fn noise_ratio(&self) -> Option<f64> {
        let c = self.counts();
        let compared = c.matched + c.mismatch + c.noise;
        (compared > 0).then(|| c.noise as f64 / compared as f64)
    }

    /// The `n` most frequent reported differences.
    pub fn top(&self, n: usize) -> Vec<PointerCount> {
        self.tally().top.top(n)
    }

    /// This route in `GET /admin/shadow`.
    pub fn view(&self, route: &str, top: usize) -> RouteView {
        let counts = self.counts();
        let compared = counts.matched + counts.mismatch + counts.noise;
        let (top_pointers, mismatches_recorded) = {
            let tally = self.tally();
            (tally.top.top(top), tally.recorded_total)
        };
        RouteView {
            route: route.to_string(),
            counts,
            parity: Parity::new(counts.matched, counts.matched + counts.mismatch),
            noise_ratio: (compared > 0).then(|| counts.noise as f64 / compared as f64),
            top_pointers,
            noise_model: self.noise().view(),
            mismatches_recorded,
        }
    }

    /// `GET /admin/shadow/ROUTE/mismatches`: the ring, newest first.
    pub fn mismatches(&self, route: &str) -> MismatchesView {
        let now = Instant::now();
        let tally = self.tally();
        MismatchesView {
            route: route.to_string(),
            capacity: self.limits.mismatches,
            recorded_total: tally.recorded_total,
            mismatches: tally
                .ring
                .iter()
                .rev()
                .map(|record| MismatchView {
                    age_seconds: now.saturating_duration_since(record.at).as_secs(),
                    record: record.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diffs(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|s| s.to_string()).collect()
    }

    fn model(learned: &[&[&str]]) -> NoiseModel {
        let mut model = NoiseModel::new(256);
        for pair in learned {
            model.learn(&diffs(pair));
        }
        model
    }

    fn exchange<'a>(request_id: &'a str, a: &'a Value, b: &'a Value) -> Exchange<'a> {
        Exchange {
            request_id,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            method: "GET",
            path: "/payments/42?token=secret-query",
            primary_status: 200,
            candidate_status: 200,
            primary: Some(a),
            candidate: Some(b),
        }
    }

    #[test]
    fn verdict_labels_are_the_metric_result_values() {
        let labels: Vec<_> = Verdict::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(
            labels,
            [
                "match",
                "mismatch",
                "noise",
                "shadow_error",
                "primary_error"
            ]
        );
        for v in Verdict::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), json!(v.as_str()));
        }
    }

    #[test]
    fn classify_rules() {
        use Verdict::{Match, Mismatch, Noise};
        type Row = (
            &'static [&'static [&'static str]],
            &'static [&'static str],
            Verdict,
        );
        // Primary-vs-primary differences that are not pointers, or the whole document.
        const UNSTABLE: &[&[&str]] = &[&["status", "header:date", "body", ""]];
        #[rustfmt::skip]
        let table: &[Row] = &[
            // learned from primary pairs       differences                          verdict
            (&[],                               &[],                                 Match),
            (&[&["/id"]],                       &[],                                 Match),
            (&[],                               &["/id"],                            Mismatch),
            (&[&["/id"]],                       &["/id"],                            Noise),
            (&[&["/id"]],                       &["/id", "/price"],                  Mismatch),
            (&[&["/id"], &["/created_at"]],     &["/created_at", "/id"],             Noise),
            // indexes generalise, when learning and when matching
            (&[&["/items/3/id"]],               &["/items/7/id"],                    Noise),
            (&[&["/items/3/id"]],               &["/items/7/price"],                 Mismatch),
            // a learned pointer covers its subtree, not its parent, nor a longer key
            (&[&["/meta"]],                     &["/meta/ts", "/meta/host/name"],    Noise),
            (&[&["/meta/ts"]],                  &["/meta"],                          Mismatch),
            (&[&["/meta"]],                     &["/metadata"],                      Mismatch),
            // only pointers below the root are ever learned
            (UNSTABLE,                          &["status"],                         Mismatch),
            (UNSTABLE,                          &["header:date"],                    Mismatch),
            (UNSTABLE,                          &["body"],                           Mismatch),
            (UNSTABLE,                          &["/anything"],                      Mismatch),
            (&[&["/id"]],                       &["status", "/id"],                  Mismatch),
        ];
        for (i, (learned, differences, want)) in table.iter().enumerate() {
            let got = classify(&diffs(differences), &model(learned));
            assert_eq!(
                got, *want,
                "row {i}: learned {learned:?}, differences {differences:?}"
            );
        }
    }

    #[test]
    fn generalise_replaces_all_digit_segments_only() {
        let table = [
            ("/items/3/id", Some("/items/*/id")),
            ("/items/12/tags/0", Some("/items/*/tags/*")),
            ("/users/123", Some("/users/*")),
            ("/v2/a1", Some("/v2/a1")),
            ("/a~1b/0", Some("/a~1b/*")),
            ("/", Some("/")),
            ("", None),
            ("status", None),
            ("header:date", None),
            ("body", None),
        ];
        for (text, want) in table {
            assert_eq!(generalise(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn the_noise_model_is_bounded_and_says_when_it_is_full() {
        let mut model = NoiseModel::new(256);
        model.learn(&diffs(&["/id", "/items/0/ts", "/items/1/ts"]));
        let flood: Vec<String> = (0..1000).map(|i| format!("/k{i}")).collect();
        model.learn(&flood);
        let view = model.view();
        assert_eq!(view.learned.len(), 256);
        assert!(view.full && model.is_full());
        assert_eq!(view.observations, 2);
        assert_eq!(view.refused, 1000 - (256 - 2));
        // What was learned before it filled up still counts and is still noise.
        model.learn(&diffs(&["/id"]));
        assert!(model.is_noise("/id") && model.is_noise("/items/9/ts"));
        assert!(!model.is_noise("/k999"));
        let learned = model.learned();
        assert_eq!(
            learned[0],
            LearnedPattern {
                pointer: "/id".into(),
                seen: 2
            }
        );
        assert_eq!(
            learned[1],
            LearnedPattern {
                pointer: "/items/*/ts".into(),
                seen: 2
            }
        );
        // Too long to learn.
        let mut model = NoiseModel::new(8);
        model.learn(&[format!("/{}", "x".repeat(MAX_POINTER_BYTES))]);
        assert_eq!((model.learned().len(), model.view().refused), (0, 1));
        assert!(!model.is_full());
    }

    #[test]
    fn wilson_lower_bound_known_values() {
        let table = [
            (0, 0, 0.0),
            (0, 10, 0.0),
            (1, 1, 0.2065),
            (100, 100, 0.9630),
            (50, 100, 0.4038),
            (95, 100, 0.8883),
            (990, 1000, 0.9817),
            (200, 100, 0.9630), // more successes than trials: capped
        ];
        for (s, n, want) in table {
            let got = wilson_lower_bound(s, n);
            assert!((got - want).abs() < 5e-4, "{s}/{n}: {got} != {want}");
        }
    }

    #[test]
    fn parity_and_noise_ratio_leave_out_what_they_should() {
        let stats = RouteStats::new(Limits::default(), Vec::new());
        stats.learn_noise(&diffs(&["/id"]));
        let (a, b) = (json!({"id": 1}), json!({"id": 2}));
        let ex = exchange("r", &a, &b);
        for differences in [&[][..], &[], &[], &["/price"], &["/id"], &["/id"]] {
            stats.record_comparison(&ex, &diffs(differences));
        }
        stats.record_shadow_error();
        stats.record_shadow_error();
        stats.record_primary_error();
        let counts = stats.counts();
        assert_eq!(
            counts,
            Counts {
                matched: 3,
                mismatch: 1,
                noise: 2,
                shadow_error: 2,
                primary_error: 1
            }
        );
        let parity = stats.parity();
        assert_eq!(
            (parity.matched, parity.trials, parity.ratio),
            (3, 4, Some(0.75))
        );
        assert!((parity.lower_bound - wilson_lower_bound(3, 4)).abs() < 1e-12);
        assert_eq!(stats.noise_ratio(), Some(2.0 / 6.0));

        let empty = RouteStats::new(Limits::default(), Vec::new());
        assert_eq!(
            empty.parity(),
            Parity {
                matched: 0,
                trials: 0,
                ratio: None,
                lower_bound: 0.0
            }
        );
        assert_eq!(empty.noise_ratio(), None);
    }

    #[test]
    fn top_pointers_evict_the_least_counted_and_stay_bounded() {
        let mut top = TopPointers::new(3);
        for (text, times) in [("/a", 5), ("/b", 3), ("/c", 1)] {
            for _ in 0..times {
                top.add(text);
            }
        }
        top.add("/d"); // evicts /c (1), starts at 2 with an overcount of 1
        let got: Vec<_> = top
            .top(10)
            .into_iter()
            .map(|p| (p.pointer, p.count, p.overcount))
            .collect();
        assert_eq!(
            got,
            [
                ("/a".into(), 5, 0),
                ("/b".into(), 3, 0),
                ("/d".to_string(), 2, 1)
            ]
        );
        assert_eq!(top.top(1).len(), 1);
        // A flood of distinct pointers never grows the table, and the heavy hitter survives.
        for i in 0..10_000 {
            top.add(&format!("/flood/{i}"));
        }
        assert_eq!(top.len(), 3);
        let first = &top.top(1)[0];
        assert!(first.count >= 5, "{first:?}");
        let mut none = TopPointers::new(0);
        none.add("/a");
        assert!(none.is_empty());
    }

    #[test]
    fn route_top_pointers_are_generalised_reported_differences_only() {
        let limits = Limits {
            top_pointers: 4,
            ..Limits::default()
        };
        let stats = RouteStats::new(limits, Vec::new());
        stats.learn_noise(&diffs(&["/ts"]));
        let v = json!({});
        let ex = exchange("r", &v, &v);
        stats.record_comparison(&ex, &diffs(&["/items/0/price", "/items/1/price", "/ts"]));
        stats.record_comparison(&ex, &diffs(&["/items/2/price", "status"]));
        stats.record_comparison(&ex, &diffs(&["/ts"])); // noise: not counted
        let top: Vec<_> = stats
            .top(10)
            .into_iter()
            .map(|p| (p.pointer, p.count))
            .collect();
        assert_eq!(
            top,
            [("/items/*/price".into(), 3), ("status".to_string(), 1)]
        );
        for i in 0..5_000 {
            stats.record_comparison(&ex, &[format!("/k{i}")]);
        }
        assert_eq!(stats.top(usize::MAX).len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ring_keeps_the_newest_mismatches_up_to_its_capacity() {
        let limits = Limits {
            mismatches: 3,
            ..Limits::default()
        };
        let stats = RouteStats::new(limits, Vec::new());
        let (a, b) = (json!({"price": 1}), json!({"price": 2}));
        for i in 1..=5 {
            let id = format!("r{i}");
            stats.record_comparison(&exchange(&id, &a, &b), &diffs(&["/price"]));
            tokio::time::advance(std::time::Duration::from_secs(10)).await;
        }
        stats.record_comparison(&exchange("same", &a, &a), &[]); // a match is not recorded
        let view = stats.mismatches("payments");
        assert_eq!((view.capacity, view.recorded_total), (3, 5));
        let ids: Vec<_> = view
            .mismatches
            .iter()
            .map(|m| m.record.request_id.as_str())
            .collect();
        assert_eq!(ids, ["r5", "r4", "r3"]);
        let ages: Vec<_> = view.mismatches.iter().map(|m| m.age_seconds).collect();
        assert_eq!(ages, [10, 20, 30]);
        let newest = &view.mismatches[0].record;
        assert_eq!(
            newest.path, "/payments/42",
            "the query string is never kept"
        );
        assert_eq!(
            newest.status,
            StatusPair {
                primary: 200,
                candidate: 200
            }
        );
        assert_eq!(
            newest.differences,
            [RecordedDifference {
                pointer: "/price".into(),
                primary: Some(json!(1)),
                candidate: Some(json!(2)),
            }]
        );
        assert_eq!(stats.view("payments", 10).mismatches_recorded, 5);

        // Capacity 0 records nothing, but still counts.
        let none = RouteStats::new(
            Limits {
                mismatches: 0,
                ..Limits::default()
            },
            Vec::new(),
        );
        none.record_comparison(&exchange("r", &a, &b), &diffs(&["/price"]));
        assert!(none.mismatches("r").mismatches.is_empty());
        assert_eq!(none.counts().mismatch, 1);
        assert_eq!(none.top(10)[0].pointer, "/price");
    }

    #[test]
    fn a_record_keeps_a_bounded_number_of_pointers_and_bytes() {
        let limits = Limits {
            pointers_per_record: 32,
            value_bytes: 64,
            ..Limits::default()
        };
        let stats = RouteStats::new(limits, Vec::new());
        stats.learn_noise(&diffs(&["/ts"]));
        let long = "é".repeat(200); // two bytes a char: the cut must fall on a boundary
        let (a, b) = (
            json!({"blob": long, "n": 1}),
            json!({"blob": "short", "n": 2}),
        );
        // Kept in the order given (compare's is sorted; here the short ones come first).
        let mut differences = diffs(&["/blob", "/n", "/ts", "header:etag", "status"]);
        differences.extend((0..40).map(|i| format!("/x{i:02}")));
        let ex = Exchange {
            primary_status: 200,
            candidate_status: 201,
            ..exchange("r", &a, &b)
        };
        assert_eq!(
            stats.record_comparison(&ex, &differences),
            Verdict::Mismatch
        );
        let view = stats.mismatches("r");
        let record = &view.mismatches[0].record;
        assert_eq!(record.differences.len(), 32);
        assert_eq!(record.more_differences, 44 - 32);
        assert_eq!(record.noise_differences, 1);
        let blob = &record.differences[0];
        assert_eq!(blob.pointer, "/blob");
        let Some(Value::String(text)) = &blob.primary else {
            panic!("a long value is kept as a cut string: {blob:?}");
        };
        assert!(
            text.starts_with("\"éé") && text.ends_with(TRUNCATED),
            "{text}"
        );
        assert!(text.len() <= 64 + TRUNCATED.len());
        assert_eq!(blob.candidate, Some(json!("short")));
        // No value for what is not a pointer, nor for a pointer a document lacks.
        let header = record
            .differences
            .iter()
            .find(|d| d.pointer == "header:etag")
            .unwrap();
        assert_eq!((&header.primary, &header.candidate), (&None, &None));
        let x = record
            .differences
            .iter()
            .find(|d| d.pointer == "/x00")
            .unwrap();
        assert_eq!((&x.primary, &x.candidate), (&None, &None));
    }

    #[test]
    fn redacted_values_never_reach_what_is_kept() {
        const EMAIL: &str = "alice@example.com";
        const CARD: &str = "4111111111111111";
        let redact = ["/email", "/card/*", "/payer/*/email"]
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect();
        let stats = RouteStats::new(
            Limits {
                value_bytes: 96,
                ..Limits::default()
            },
            redact,
        );
        let doc = |name: &str| {
            json!({
                "name": name,
                "email": EMAIL,
                "card": {"number": CARD, "brand": "visa"},
                "payer": [{"email": EMAIL, "id": 1}],
                "padding": "x".repeat(40),
            })
        };
        let (a, b) = (doc("Alice"), doc("Alicia"));
        // Differences at, below and above the redacted pointers, and the whole document.
        let differences = diffs(&[
            "",
            "/card",
            "/card/number",
            "/email",
            "/name",
            "/payer",
            "/payer/0/email",
        ]);
        let mut ex = exchange("r1", &a, &b);
        ex.path = "/users/me?email=alice@example.com";
        assert_eq!(
            stats.record_comparison(&ex, &differences),
            Verdict::Mismatch
        );

        let mismatches = serde_json::to_string(&stats.mismatches("users")).unwrap();
        let admin = serde_json::to_string(&shadow_view([("users", &stats)], 10)).unwrap();
        let debug = [
            format!("{stats:?}"),
            format!("{:?}", stats.mismatches("users")),
            format!("{:?}", stats.view("users", 10)),
        ];
        for text in [&mismatches, &admin].into_iter().chain(&debug) {
            assert!(!text.contains(EMAIL), "{text}");
            assert!(!text.contains(CARD), "{text}");
        }
        assert!(
            mismatches.contains(REDACTED) && mismatches.contains("Alicia"),
            "{mismatches}"
        );

        let view = stats.mismatches("users");
        let by_pointer = |p: &str| {
            view.mismatches[0]
                .record
                .differences
                .iter()
                .find(|d| d.pointer == p)
                .unwrap()
                .clone()
        };
        assert_eq!(by_pointer("/email").primary, Some(json!(REDACTED)));
        assert_eq!(by_pointer("/card/number").candidate, Some(json!(REDACTED)));
        assert_eq!(
            by_pointer("/card").primary,
            Some(json!({"number": REDACTED, "brand": REDACTED}))
        );
        assert_eq!(
            by_pointer("/payer").primary,
            Some(json!([{"email": REDACTED, "id": 1}]))
        );
        assert_eq!(by_pointer("/name").candidate, Some(json!("Alicia")));
        // The whole document is longer than its cap: a cut string, redacted before the cut.
        let Some(Value::String(whole)) = by_pointer("").primary else {
            panic!("the whole document is cut");
        };
        assert!(
            whole.ends_with(TRUNCATED) && whole.contains(REDACTED),
            "{whole}"
        );
    }

    #[test]
    fn the_admin_view_has_the_documented_shape() {
        let stats = RouteStats::new(Limits::default(), Vec::new());
        let v = json!({});
        stats.record_comparison(&exchange("r", &v, &v), &[]);
        stats.record_comparison(&exchange("r", &v, &v), &diffs(&["/a"]));
        stats.learn_noise(&diffs(&["/id"]));
        let other = RouteStats::new(Limits::default(), Vec::new());
        let view =
            serde_json::to_value(shadow_view([("users", &stats), ("orders", &other)], 5)).unwrap();
        assert_eq!(view["routes"][0]["route"], "orders");
        let users = &view["routes"][1];
        assert_eq!(
            users["counts"],
            json!({"match": 1, "mismatch": 1, "noise": 0, "shadow_error": 0, "primary_error": 0})
        );
        assert_eq!(users["parity"]["ratio"], 0.5);
        assert_eq!(users["noise_ratio"], 0.0);
        assert_eq!(
            users["top_pointers"],
            json!([{"pointer": "/a", "count": 1, "overcount": 0}])
        );
        assert_eq!(
            users["noise_model"],
            json!({"observations": 1, "capacity": 256, "full": false, "refused": 0,
                   "learned": [{"pointer": "/id", "seen": 1}]})
        );
        assert_eq!(view["routes"][0]["parity"]["ratio"], Value::Null);
    }

    #[test]
    fn route_stats_are_shared_by_request_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<RouteStats>();
    }
}
