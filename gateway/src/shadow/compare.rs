//! A shadow's `compare:` settings and the comparison of the primary's answer with the
//! candidate's: plain data in, a sorted list of where they differ out. Nothing here touches a
//! pingora `Session`; the proxy hands over the two answers it captured.
//!
//! ## What is compared, per mode
//! - **`status`**: `exact` (the codes are equal) or `class` (`200` and `204` are both `2xx`: equal).
//!   A difference is reported as `status`.
//! - **`headers`**: each named header, all of its values in order, byte for byte; a header absent
//!   on one side and present on the other differs. Reported as `header:<name>` (lowercase).
//! - **`body`**: `none` skips it; `bytes` compares the bytes (a difference is `body`); `json`
//!   walks both documents as described below. Identical bytes are equal in every mode, without
//!   being parsed (so two identical HTML error pages match in `json` mode too).
//!
//! ## The JSON walk
//! A difference is reported as the RFC 6901 pointer where it is (`/items/0/price`); the whole
//! document (pointer `""`, e.g. an object against an array) is reported as `body`.
//! - An object key present on one side only: its pointer. Keys are compared as a set, their
//!   order never matters; a key repeated in one object keeps its last value (as `serde_json`).
//! - A change of type (object, array, string, number, boolean, null): the pointer.
//! - Objects recurse key by key; arrays index by index. **Arrays of different lengths**: the
//!   indexes present on both sides are compared as usual, and each index present on one side
//!   only is reported (`[1, 2, 3]` against `[1, 5]` gives `/a/1` and `/a/2`). An element
//!   inserted at the front therefore reports every later index (up to the cap): no alignment
//!   is attempted (bounded work); `unordered` is the tool for lists whose order is not meant.
//! - **`ignore`**: a pointer covered by a pattern (the pattern itself or anything under it;
//!   `*` is any one key or index) is never a difference, not even when present on one side
//!   only, and is not walked.
//! - **`unordered`**: an array at a pointer matched by a pattern (exactly, not its subtree) is
//!   compared as a multiset: equal when both hold the same elements the same number of times,
//!   in any order. Elements are compared with the same rules: keys under `ignore` are left out
//!   (`/items/*/updated_at` ignored: two items differing only there are the same element),
//!   numbers follow `numbers`, nested `unordered` arrays are multisets too. A multiset
//!   difference (including a different length) is reported once, at the array's pointer.
//!   An element that is itself ignored still counts, as "some element": the length matters.
//! - **`numbers`**: `exact` compares a JSON number as written (`1.0` ≠ `1`, `1e2` ≠ `100`,
//!   `12.5` ≠ `"12.5"`): what the client's bytes say. `decimal` compares by exact decimal value
//!   every number, and every string that is a JSON number by RFC 8259's grammar
//!   (`"12.50"` = `12.5` = `12.500` = `1.25e1`; `-0` = `0`; but `"007"`, `" 1"`, `"+1"`, `"1."`
//!   and `"NaN"` are plain strings): Django's `Decimal` as a string against a float. There is
//!   no rounding: `0.1` ≠ `0.10000000000000001` and `9007199254740993` ≠ `9007199254740992`,
//!   though both pairs are the same `f64`. A number whose exponent does not fit an `i64`
//!   compares as written.
//!
//! ## Bounded work
//! At most [`MAX_POINTERS`] pointers are kept; the walk stops at the next one and
//! [`Differences::more`] says that more differ. A body that is not JSON (including an empty
//! one, or invalid UTF-8), or nests arrays and objects deeper than [`MAX_DEPTH`], is not walked:
//! it is reported as `body` plus a reason naming the side, `body:primary_not_json`,
//! `body:candidate_not_json`, `body:primary_too_deep` or `body:candidate_too_deep`. Parsing
//! never recurses past [`MAX_DEPTH`] (so no stack overflow however deep the input): serde_json
//! skips a value's raw text without recursion, and only our own walk descends, one level at a
//! time. Answers larger than the shadow's `max_response` never reach this module.
//!
//! ## Why these tools
//! - **Numbers as written.** Without its `arbitrary_precision` feature, `serde_json` turns a
//!   number with a fraction or beyond `u64` into an `f64` (and, without `float_roundtrip`, not
//!   even the nearest one), so exact decimals cannot be had from `serde_json::Value`.
//!   `arbitrary_precision` is not an option: Cargo unifies features across the workspace and it
//!   changes how every crate's `serde_json` numbers deserialize (known breakage with untagged and
//!   flattened enums). So documents are read through `serde_json`'s additive `raw_value`
//!   feature: each container is parsed one level at a time into raw children, keeping each
//!   number's text. The cost is reading a byte once per enclosing level (at most
//!   [`MAX_DEPTH`] + 1 times, a handful for real APIs).
//! - **Decimal values by normalisation, not a decimal crate.** A number's value is kept as
//!   (sign, significant digits without leading or trailing zeros, exponent): two numbers are
//!   equal exactly when those are, in time linear in their text, for any size. `rust_decimal`
//!   stops at 28 digits (a 30-digit id would not compare); `bigdecimal` is exact, but comparing
//!   `1e-999999999` with `1` rescales to a billion-digit integer: one short body, gigabytes.
//! - **A small walker, not a JSON-diff crate.** `treediff` and `json-patch`'s `diff` work on
//!   `serde_json::Value` (the `f64` numbers above) and know nothing of ignored subtrees,
//!   multiset arrays or decimal equality, which are the rules that make a shadow's verdict
//!   useful; normalising first would still leave `unordered` to us. The walker is ~100 lines.

use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderMap, HeaderName};
use serde_json::value::RawValue;

use super::pointer::{self, Pattern};

/// The most JSON pointers a comparison keeps; past it, [`Differences::more`] is set.
pub const MAX_POINTERS: usize = 32;
/// The deepest nesting of arrays and objects that is walked (`[[1]]` nests 2 deep).
pub const MAX_DEPTH: usize = 64;

/// The status's entry in [`Differences`].
pub const STATUS: &str = "status";
/// The whole body's entry in [`Differences`].
pub const BODY: &str = "body";
/// How [`Differences`]' `Display` marks that more pointers differ than were kept.
pub const MORE: &str = "+more";

/// How status codes compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMode {
    /// The same code.
    Exact,
    /// The same class (`2xx` against `2xx`).
    Class,
}

/// How bodies compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Both walked as JSON documents (module docs).
    Json,
    /// Byte for byte.
    Bytes,
    /// Not compared.
    None,
}

/// How JSON numbers compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    /// As written.
    Exact,
    /// By exact decimal value, numeric strings included.
    Decimal,
}

/// A route's `compare:` settings, as the runtime uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareSpec {
    pub status: StatusMode,
    /// Compared by value (all values, in order); absent against present differs.
    pub headers: Vec<HeaderName>,
    pub body: BodyMode,
    /// These pointers (and their subtrees) are never differences.
    pub ignore: Vec<Pattern>,
    /// Arrays at these pointers are compared as multisets.
    pub unordered: Vec<Pattern>,
    pub numbers: Numbers,
}

impl Default for CompareSpec {
    /// The strictest comparison: exact status, no headers, JSON bodies with exact numbers.
    fn default() -> Self {
        CompareSpec {
            status: StatusMode::Exact,
            headers: Vec::new(),
            body: BodyMode::Json,
            ignore: Vec::new(),
            unordered: Vec::new(),
            numbers: Numbers::Exact,
        }
    }
}

/// One side's answer, as captured (the body up to the shadow's `max_response`).
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Where two answers differ: `status`, `header:<name>`, `body`, `body:<reason>` and JSON
/// pointers, sorted and deduplicated; at most [`MAX_POINTERS`] pointers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Differences {
    entries: Vec<String>,
    more: bool,
}

impl Differences {
    /// The answers are the same under the spec.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorted (pointers first, as `/` sorts before letters), deduplicated.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// More pointers differ than the [`MAX_POINTERS`] kept.
    pub fn more(&self) -> bool {
        self.more
    }
}

impl fmt::Display for Differences {
    /// The entries separated by spaces, then [`MORE`] if more differ.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let more = self.more.then_some(MORE);
        for entry in self.entries.iter().map(String::as_str).chain(more) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(entry)?;
        }
        Ok(())
    }
}

/// Compares the candidate's answer with the primary's under `spec` (rules in the module docs).
pub fn compare(spec: &CompareSpec, primary: &Answer, candidate: &Answer) -> Differences {
    let mut entries = Vec::new();
    let same_status = match spec.status {
        StatusMode::Exact => primary.status == candidate.status,
        StatusMode::Class => primary.status / 100 == candidate.status / 100,
    };
    if !same_status {
        entries.push(STATUS.to_string());
    }
    for name in &spec.headers {
        let p = primary.headers.get_all(name);
        let c = candidate.headers.get_all(name);
        if !p.iter().eq(c.iter()) {
            entries.push(format!("header:{}", name.as_str()));
        }
    }
    let mut more = false;
    match spec.body {
        BodyMode::None => {}
        BodyMode::Bytes => {
            if primary.body != candidate.body {
                entries.push(BODY.to_string());
            }
        }
        BodyMode::Json if primary.body == candidate.body => {}
        BodyMode::Json => match (parse(primary.body), parse(candidate.body)) {
            (Ok(p), Ok(c)) => {
                let mut walk = Walk {
                    spec,
                    path: Vec::new(),
                    found: Vec::new(),
                    more: false,
                };
                walk.value(&p, &c);
                entries.append(&mut walk.found);
                more = walk.more;
            }
            (p, c) => {
                entries.push(BODY.to_string());
                for (side, parsed) in [("primary", p.err()), ("candidate", c.err())] {
                    if let Some(why) = parsed {
                        entries.push(format!("body:{side}_{}", why.as_str()));
                    }
                }
            }
        },
    }
    entries.sort();
    entries.dedup();
    Differences { entries, more }
}

/// A JSON document with each number as written.
#[derive(Debug)]
enum Node<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    String(String),
    Array(Vec<Node<'a>>),
    Object(BTreeMap<String, Node<'a>>),
}

/// Why a body is not walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unwalkable {
    NotJson,
    TooDeep,
}

impl Unwalkable {
    fn as_str(self) -> &'static str {
        match self {
            Unwalkable::NotJson => "not_json",
            Unwalkable::TooDeep => "too_deep",
        }
    }
}

fn parse(body: &[u8]) -> Result<Node<'_>, Unwalkable> {
    // Validates the whole document without recursing (serde_json's `ignore_value` loops).
    let raw: &RawValue = serde_json::from_slice(body).map_err(|_| Unwalkable::NotJson)?;
    node(raw, 0)
}

/// `raw` as a node, `depth` containers down. Each container's text is parsed one level deep
/// (its children stay raw), so the only recursion is this function's, at most [`MAX_DEPTH`].
fn node(raw: &RawValue, depth: usize) -> Result<Node<'_>, Unwalkable> {
    let text = raw.get();
    let not_json = |_| Unwalkable::NotJson;
    let enter = || {
        if depth >= MAX_DEPTH {
            Err(Unwalkable::TooDeep)
        } else {
            Ok(())
        }
    };
    Ok(match text.as_bytes().first() {
        Some(b'{') => {
            enter()?;
            // A repeated key keeps its last value, as `serde_json::Value` does.
            let fields: BTreeMap<String, &RawValue> =
                serde_json::from_str(text).map_err(not_json)?;
            let fields = fields
                .into_iter()
                .map(|(k, v)| Ok((k, node(v, depth + 1)?)))
                .collect::<Result<_, _>>()?;
            Node::Object(fields)
        }
        Some(b'[') => {
            enter()?;
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(not_json)?;
            let items = items
                .into_iter()
                .map(|v| node(v, depth + 1))
                .collect::<Result<_, _>>()?;
            Node::Array(items)
        }
        Some(b'"') => Node::String(serde_json::from_str(text).map_err(not_json)?),
        Some(b't') => Node::Bool(true),
        Some(b'f') => Node::Bool(false),
        Some(b'n') => Node::Null,
        _ => Node::Number(text),
    })
}

struct Walk<'s> {
    spec: &'s CompareSpec,
    /// The pointer being compared, segments unescaped.
    path: Vec<String>,
    found: Vec<String>,
    /// The cap was reached: stop walking.
    more: bool,
}

impl Walk<'_> {
    fn value(&mut self, a: &Node, b: &Node) {
        if self.more || ignored(self.spec, &self.path) {
            return;
        }
        match (a, b) {
            (Node::Object(x), Node::Object(y)) => {
                for (key, xv) in x {
                    self.path.push(key.clone());
                    match y.get(key) {
                        Some(yv) => self.value(xv, yv),
                        None => self.differ(),
                    }
                    self.path.pop();
                }
                for key in y.keys().filter(|k| !x.contains_key(*k)) {
                    self.path.push(key.clone());
                    self.differ();
                    self.path.pop();
                }
            }
            (Node::Array(x), Node::Array(y)) if unordered(self.spec, &self.path) => {
                let same = x.len() == y.len()
                    && multiset(self.spec, &mut self.path, x)
                        == multiset(self.spec, &mut self.path, y);
                if !same {
                    self.differ();
                }
            }
            (Node::Array(x), Node::Array(y)) => {
                for i in 0..x.len().max(y.len()) {
                    if self.more {
                        break;
                    }
                    self.path.push(i.to_string());
                    match (x.get(i), y.get(i)) {
                        (Some(xv), Some(yv)) => self.value(xv, yv),
                        _ => self.differ(),
                    }
                    self.path.pop();
                }
            }
            _ => {
                if !same_scalar(a, b, self.spec.numbers) {
                    self.differ();
                }
            }
        }
    }

    /// The value at the current pointer differs, unless ignored.
    fn differ(&mut self) {
        if self.more || ignored(self.spec, &self.path) {
            return;
        }
        if self.found.len() == MAX_POINTERS {
            self.more = true;
            return;
        }
        let text = pointer::to_text(&self.path);
        self.found.push(if text.is_empty() {
            BODY.to_string()
        } else {
            text
        });
    }
}

fn ignored(spec: &CompareSpec, path: &[String]) -> bool {
    spec.ignore.iter().any(|p| p.covers(path))
}

fn unordered(spec: &CompareSpec, path: &[String]) -> bool {
    spec.unordered.iter().any(|p| p.matches(path))
}

/// Two values that are not both objects or both arrays.
fn same_scalar(a: &Node, b: &Node, numbers: Numbers) -> bool {
    if numbers == Numbers::Decimal
        && let (Some(x), Some(y)) = (decimal(a), decimal(b))
    {
        return x == y;
    }
    match (a, b) {
        (Node::Null, Node::Null) => true,
        (Node::Bool(x), Node::Bool(y)) => x == y,
        (Node::Number(x), Node::Number(y)) => x == y,
        (Node::String(x), Node::String(y)) => x == y,
        _ => false,
    }
}

fn decimal(node: &Node) -> Option<Decimal> {
    match node {
        Node::Number(text) => Decimal::parse(text),
        Node::String(text) => Decimal::parse(text),
        _ => None,
    }
}

/// The elements of the array at `path` as sorted canonical texts: equal multisets give equal
/// vectors.
fn multiset(spec: &CompareSpec, path: &mut Vec<String>, items: &[Node]) -> Vec<String> {
    let mut texts: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            path.push(i.to_string());
            let mut text = String::new();
            if ignored(spec, path) {
                // Still an element: the length of a multiset counts.
                text.push('_');
            } else {
                canonical(spec, path, item, &mut text);
            }
            path.pop();
            text
        })
        .collect();
    texts.sort_unstable();
    texts
}

/// A text for `node` at `path` that two values share exactly when the walk finds no
/// difference between them: ignored keys and indexes left out, numbers by `spec.numbers`,
/// `unordered` arrays sorted. Strings and keys are JSON-quoted, a decimal starts with `#`, so
/// no two kinds of value share a text.
fn canonical(spec: &CompareSpec, path: &mut Vec<String>, node: &Node, out: &mut String) {
    if spec.numbers == Numbers::Decimal
        && let Some(d) = decimal(node)
    {
        d.write(out);
        return;
    }
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Number(text) => out.push_str(text),
        Node::String(s) => quote(s, out),
        Node::Array(items) if unordered(spec, path) => {
            out.push('[');
            out.push_str(&multiset(spec, path, items).join(","));
            out.push(']');
        }
        Node::Array(items) => {
            // Index-tagged: the walk compares index by index and skips ignored indexes.
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                if !ignored(spec, path) {
                    out.push_str(&i.to_string());
                    out.push(':');
                    canonical(spec, path, item, out);
                    out.push(',');
                }
                path.pop();
            }
            out.push(']');
        }
        Node::Object(fields) => {
            out.push('{');
            for (key, value) in fields {
                path.push(key.clone());
                if !ignored(spec, path) {
                    quote(key, out);
                    out.push(':');
                    canonical(spec, path, value, out);
                    out.push(',');
                }
                path.pop();
            }
            out.push('}');
        }
    }
}

fn quote(s: &str, out: &mut String) {
    // Serializing a `str` cannot fail; the fallback keeps this total anyway.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A decimal's exact value: `digits × 10^exponent`, with `digits` free of leading and
/// trailing zeros (empty for zero, which has no sign). Equal values, equal fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    /// A number by RFC 8259's grammar, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, and
    /// nothing else (no spaces, no `+` sign, no leading zeros); `None` also when the exponent
    /// does not fit an `i64`.
    fn parse(text: &str) -> Option<Decimal> {
        let b = text.as_bytes();
        let digits_from = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let negative = b.first() == Some(&b'-');
        let int_start = usize::from(negative);
        let int_end = match b.get(int_start) {
            Some(b'0') => int_start + 1,
            Some(b'1'..=b'9') => digits_from(int_start + 1),
            _ => return None,
        };
        let mut i = int_end;
        let mut frac = "";
        if b.get(i) == Some(&b'.') {
            let end = digits_from(i + 1);
            if end == i + 1 {
                return None;
            }
            frac = &text[i + 1..end];
            i = end;
        }
        let mut exp: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let minus = b.get(i) == Some(&b'-');
            if matches!(b.get(i), Some(b'-' | b'+')) {
                i += 1;
            }
            let end = digits_from(i);
            if end == i {
                return None;
            }
            for d in &b[i..end] {
                exp = exp.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
            }
            if minus {
                exp = -exp;
            }
            i = end;
        }
        if i != b.len() {
            return None;
        }
        let all = format!("{}{frac}", &text[int_start..int_end]);
        let trimmed = all.trim_start_matches('0');
        let digits = trimmed.trim_end_matches('0');
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits: String::new(),
                exponent: 0,
            });
        }
        let trailing = i64::try_from(trimmed.len() - digits.len()).ok()?;
        let exponent = exp
            .checked_sub(i64::try_from(frac.len()).ok()?)?
            .checked_add(trailing)?;
        Some(Decimal {
            negative,
            digits: digits.to_string(),
            exponent,
        })
    }

    /// `#`, the sign, the digits, `e`, the exponent: `#-125e-1` for `-12.50`.
    fn write(&self, out: &mut String) {
        out.push('#');
        if self.negative {
            out.push('-');
        }
        out.push_str(&self.digits);
        out.push('e');
        out.push_str(&self.exponent.to_string());
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn patterns(texts: &[&str]) -> Vec<Pattern> {
        texts
            .iter()
            .map(|t| Pattern::parse(t).expect("a test pattern"))
            .collect()
    }

    fn json_spec(ignore: &[&str], unordered: &[&str], numbers: Numbers) -> CompareSpec {
        CompareSpec {
            ignore: patterns(ignore),
            unordered: patterns(unordered),
            numbers,
            ..CompareSpec::default()
        }
    }

    /// Compares two bodies, status 200 and no headers on both sides.
    fn bodies(spec: &CompareSpec, primary: &str, candidate: &str) -> Differences {
        let headers = HeaderMap::new();
        let answer = |body: &'static [u8]| Answer {
            status: 200,
            headers: &headers,
            body,
        };
        compare(
            spec,
            &Answer {
                body: primary.as_bytes(),
                ..answer(b"")
            },
            &Answer {
                body: candidate.as_bytes(),
                ..answer(b"")
            },
        )
    }

    fn entries(d: &Differences) -> Vec<&str> {
        d.entries().iter().map(String::as_str).collect()
    }

    #[test]
    fn status_exact_or_by_class() {
        let headers = HeaderMap::new();
        let at = |status| Answer {
            status,
            headers: &headers,
            body: b"",
        };
        let cases: &[(StatusMode, u16, u16, bool)] = &[
            (StatusMode::Exact, 200, 200, true),
            (StatusMode::Exact, 200, 201, false),
            (StatusMode::Class, 200, 204, true),
            (StatusMode::Class, 299, 300, false),
            (StatusMode::Class, 404, 400, true),
            (StatusMode::Class, 500, 404, false),
        ];
        for &(mode, p, c, same) in cases {
            let spec = CompareSpec {
                status: mode,
                ..CompareSpec::default()
            };
            let d = compare(&spec, &at(p), &at(c));
            let want: &[&str] = if same { &[] } else { &["status"] };
            assert_eq!(entries(&d), want, "{mode:?} {p} vs {c}");
        }
    }

    #[test]
    fn headers_compare_every_value_in_order() {
        let map = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, HeaderValue::from_static(v));
            }
            m
        };
        let spec = CompareSpec {
            headers: vec![
                HeaderName::from_static("content-type"),
                HeaderName::from_static("vary"),
            ],
            body: BodyMode::None,
            ..CompareSpec::default()
        };
        type Pairs = &'static [(&'static str, &'static str)];
        let cases: &[(Pairs, Pairs, &[&str])] = &[
            (&[], &[], &[]),
            (&[("content-type", "a/b")], &[("content-type", "a/b")], &[]),
            (
                &[("content-type", "a/b")],
                &[("content-type", "a/c")],
                &["header:content-type"],
            ),
            (&[("content-type", "a/b")], &[], &["header:content-type"]),
            (&[], &[("vary", "x")], &["header:vary"]),
            (
                &[("vary", "x"), ("vary", "y")],
                &[("vary", "x"), ("vary", "y")],
                &[],
            ),
            (
                &[("vary", "x"), ("vary", "y")],
                &[("vary", "y"), ("vary", "x")],
                &["header:vary"],
            ),
            (
                &[("vary", "x"), ("vary", "y")],
                &[("vary", "x")],
                &["header:vary"],
            ),
            // Headers not named are not compared.
            (&[("server", "a")], &[("server", "b")], &[]),
        ];
        for (p, c, want) in cases {
            let (hp, hc) = (map(p), map(c));
            let d = compare(
                &spec,
                &Answer {
                    status: 200,
                    headers: &hp,
                    body: b"1",
                },
                &Answer {
                    status: 200,
                    headers: &hc,
                    body: b"2",
                },
            );
            assert_eq!(entries(&d), *want, "{p:?} vs {c:?}");
        }
    }

    #[test]
    fn body_modes() {
        let bytes = CompareSpec {
            body: BodyMode::Bytes,
            ..CompareSpec::default()
        };
        let none = CompareSpec {
            body: BodyMode::None,
            ..CompareSpec::default()
        };
        let json = CompareSpec::default();
        let cases: &[(&CompareSpec, &str, &str, &[&str])] = &[
            (&bytes, "abc", "abc", &[]),
            (&bytes, r#"{"a":1}"#, r#"{ "a": 1 }"#, &["body"]),
            (&none, "abc", "xyz", &[]),
            (&json, r#"{"a":1}"#, r#"{ "a": 1 }"#, &[]),
            (&json, "<html>", "<html>", &[]),
            (&json, "", "", &[]),
            (
                &json,
                "<html>",
                r#"{"a":1}"#,
                &["body", "body:primary_not_json"],
            ),
            (
                &json,
                r#"{"a":1}"#,
                "",
                &["body", "body:candidate_not_json"],
            ),
            (
                &json,
                r#"{"a":1}"#,
                r#"{"a":1"#,
                &["body", "body:candidate_not_json"],
            ),
            (
                &json,
                r#"{"a":1} x"#,
                r#"{"a":1}"#,
                &["body", "body:primary_not_json"],
            ),
            (
                &json,
                "<a>",
                "<b>",
                &["body", "body:candidate_not_json", "body:primary_not_json"],
            ),
        ];
        for (spec, p, c, want) in cases {
            assert_eq!(
                entries(&bodies(spec, p, c)),
                *want,
                "{:?}: {p} vs {c}",
                spec.body
            );
        }
        let headers = HeaderMap::new();
        let invalid_utf8 = Answer {
            status: 200,
            headers: &headers,
            body: b"\"\xff\"",
        };
        let fine = Answer {
            status: 200,
            headers: &headers,
            body: b"\"x\"",
        };
        assert_eq!(
            entries(&compare(&json, &invalid_utf8, &fine)),
            ["body", "body:primary_not_json"]
        );
    }

    /// One rule a row: name, `ignore`, `unordered`, `numbers`, primary, candidate, differences.
    type Row = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        Numbers,
        &'static str,
        &'static str,
        &'static [&'static str],
    );

    #[test]
    fn json_walk_rules() {
        use Numbers::{Decimal as D, Exact as E};
        #[rustfmt::skip]
        let cases: &[Row] = &[
            ("same", &[], &[], E, r#"{"a":1,"b":[1,2]}"#, r#"{"b":[1,2],"a":1}"#, &[]),
            ("key on one side", &[], &[], E, r#"{"a":1}"#, r#"{"a":1,"b":2}"#, &["/b"]),
            ("key on the other", &[], &[], E, r#"{"a":1,"b":2}"#, r#"{"a":1}"#, &["/b"]),
            ("type change", &[], &[], E, r#"{"a":1}"#, r#"{"a":"1"}"#, &["/a"]),
            ("null vs absent", &[], &[], E, r#"{"a":null}"#, r#"{}"#, &["/a"]),
            ("object vs array", &[], &[], E, r#"{"a":{}}"#, r#"{"a":[]}"#, &["/a"]),
            ("nested", &[], &[], E, r#"{"a":{"b":{"c":1,"d":2}}}"#, r#"{"a":{"b":{"c":2,"d":2}}}"#, &["/a/b/c"]),
            ("bools", &[], &[], E, "[true,false]", "[true,true]", &["/1"]),
            ("shorter array", &[], &[], E, r#"{"a":[1,2,3]}"#, r#"{"a":[1,5]}"#, &["/a/1", "/a/2"]),
            ("longer array", &[], &[], E, r#"{"a":[1]}"#, r#"{"a":[1,2,3]}"#, &["/a/1", "/a/2"]),
            ("insertion shifts", &[], &[], E, "[1,2,3]", "[0,1,2,3]", &["/0", "/1", "/2", "/3"]),
            ("root type", &[], &[], E, "{}", "[]", &["body"]),
            ("root scalar", &[], &[], E, "1", "2", &["body"]),
            ("escaped key", &[], &[], E, r#"{"a/b":1,"c~d":1}"#, r#"{"a/b":2,"c~d":2}"#, &["/a~1b", "/c~0d"]),
            ("string escapes", &[], &[], E, r#"{"a":"\u00e9"}"#, r#"{"a":"é"}"#, &[]),
            ("last repeated key wins", &[], &[], E, r#"{"a":1,"a":2}"#, r#"{"a":2}"#, &[]),
            ("ignored key", &["/id"], &[], E, r#"{"id":1,"a":1}"#, r#"{"id":2,"a":1}"#, &[]),
            ("ignored on one side", &["/id"], &[], E, r#"{"id":1}"#, r#"{}"#, &[]),
            ("ignored subtree", &["/meta"], &[], E, r#"{"meta":{"x":1}}"#, r#"{"meta":{"x":2,"y":[]}}"#, &[]),
            ("ignored with *", &["/items/*/updated_at"], &[], E,
                r#"{"items":[{"p":1,"updated_at":"x"},{"p":2,"updated_at":"y"}]}"#,
                r#"{"items":[{"p":1,"updated_at":"z"},{"p":3}]}"#, &["/items/1/p"]),
            ("ignored extra index", &["/a/*"], &[], E, r#"{"a":[1]}"#, r#"{"a":[2,3]}"#, &[]),
            ("ignore everything", &[""], &[], E, "{}", "[]", &[]),
            ("ordered without unordered", &[], &[], E, r#"{"a":[1,2,3]}"#, r#"{"a":[3,2,1]}"#, &["/a/0", "/a/2"]),
            ("unordered", &[], &["/a"], E, r#"{"a":[1,2,3]}"#, r#"{"a":[3,2,1]}"#, &[]),
            ("unordered counts", &[], &["/a"], E, r#"{"a":[1,1,2]}"#, r#"{"a":[1,2,2]}"#, &["/a"]),
            ("unordered length", &[], &["/a"], E, r#"{"a":[1,2]}"#, r#"{"a":[2,1,1]}"#, &["/a"]),
            ("unordered root", &[], &[""], E, "[1,2]", "[2,1]", &[]),
            ("unordered root differs", &[], &[""], E, "[1,2]", "[2,3]", &["body"]),
            ("unordered is exact, not subtree", &[], &["/a"], E, r#"{"a":[[1,2]]}"#, r#"{"a":[[2,1]]}"#, &["/a"]),
            ("unordered with *", &[], &["/a/*/tags"], E,
                r#"{"a":[{"tags":["x","y"]},{"tags":[]}]}"#,
                r#"{"a":[{"tags":["y","x"]},{"tags":["z"]}]}"#, &["/a/1/tags"]),
            ("unordered objects, keys in any order", &[], &["/items"], E,
                r#"{"items":[{"id":1,"p":2},{"id":2,"p":3}]}"#,
                r#"{"items":[{"p":3,"id":2},{"p":2,"id":1}]}"#, &[]),
            ("unordered ignores inside elements", &["/items/*/updated_at"], &["/items"], E,
                r#"{"items":[{"id":1,"updated_at":"a"},{"id":2,"updated_at":"b"}]}"#,
                r#"{"items":[{"id":2,"updated_at":"c"},{"id":1}]}"#, &[]),
            ("unordered still sees the rest", &["/items/*/updated_at"], &["/items"], E,
                r#"{"items":[{"id":1,"updated_at":"a"}]}"#,
                r#"{"items":[{"id":3,"updated_at":"a"}]}"#, &["/items"]),
            ("unordered element ignored whole", &["/a/*"], &["/a"], E, r#"{"a":[1,2]}"#, r#"{"a":[3,4]}"#, &[]),
            ("unordered element ignored, length counts", &["/a/*"], &["/a"], E, r#"{"a":[1]}"#, r#"{"a":[3,4]}"#, &["/a"]),
            ("nested unordered", &[], &["/a", "/a/*/t"], E,
                r#"{"a":[{"t":[1,2]},{"t":[3]}]}"#, r#"{"a":[{"t":[3]},{"t":[2,1]}]}"#, &[]),
            ("ordered inside unordered", &[], &["/a"], E, r#"{"a":[[1,2],[3]]}"#, r#"{"a":[[3],[2,1]]}"#, &["/a"]),
            ("unordered, decimal elements", &[], &["/a"], D, r#"{"a":[1.50,"2"]}"#, r#"{"a":[2.0,"1.5"]}"#, &[]),
            ("unordered, exact elements", &[], &["/a"], E, r#"{"a":[1.50,2]}"#, r#"{"a":[2,1.5]}"#, &["/a"]),
            ("unordered, string vs number", &[], &["/a"], E, r#"{"a":["1"]}"#, r#"{"a":[1]}"#, &["/a"]),
            ("exact numbers as written", &[], &[], E, "[1.0,1e2,12.5]", "[1,100,\"12.5\"]", &["/0", "/1", "/2"]),
            ("exact same text", &[], &[], E, "[1.0,1e2]", "[1.0,1e2]", &[]),
            ("decimal by value", &[], &[], D,
                r#"["12.50",12.5,1e2,0.1,-0,1E+2,"0.5"]"#,
                r#"[12.5,"12.500",100,0.10,0,"100",5e-1]"#, &[]),
            ("decimal, no f64 rounding", &[], &[], D,
                "[0.1,9007199254740993,123456789012345678901234567890]",
                "[0.10000000000000001,9007199254740992,123456789012345678901234567891]", &["/0", "/1", "/2"]),
            ("decimal, huge exponents", &[], &[], D, r#"[1e400,"1e-999999999"]"#, r#"["10e399",0.1e-999999998]"#, &[]),
            ("decimal, strings must be JSON numbers", &[], &[], D,
                r#"["007"," 1","+1","1.","NaN",".5"]"#,
                r#"[7,1,1,1,"nan",0.5]"#, &["/0", "/1", "/2", "/3", "/4", "/5"]),
            ("decimal, plain strings still compare", &[], &[], D, r#"["abc"]"#, r#"["abd"]"#, &["/0"]),
            ("decimal, sign", &[], &[], D, "[1]", "[-1]", &["/0"]),
        ];
        for (name, ignore, unordered, numbers, p, c, want) in cases {
            let spec = json_spec(ignore, unordered, *numbers);
            let d = bodies(&spec, p, c);
            assert_eq!(entries(&d), *want, "{name}: {p} vs {c}");
            assert!(!d.more(), "{name}");
            let back = bodies(&spec, c, p);
            assert_eq!(back, d, "{name}: symmetric");
        }
    }

    #[test]
    fn differences_are_sorted_with_status_headers_and_pointers() {
        let mut hp = HeaderMap::new();
        hp.insert("content-type", HeaderValue::from_static("application/json"));
        let hc = HeaderMap::new();
        let spec = CompareSpec {
            headers: vec![HeaderName::from_static("content-type")],
            ..CompareSpec::default()
        };
        let d = compare(
            &spec,
            &Answer {
                status: 200,
                headers: &hp,
                body: br#"{"z":1,"a":[1,2]}"#,
            },
            &Answer {
                status: 500,
                headers: &hc,
                body: br#"{"z":2,"a":[1,3]}"#,
            },
        );
        assert_eq!(entries(&d), ["/a/1", "/z", "header:content-type", "status"]);
        assert_eq!(d.to_string(), "/a/1 /z header:content-type status");
        assert!(!d.is_empty());
        assert!(bodies(&spec, "{}", "{}").is_empty());
    }

    #[test]
    fn a_huge_difference_is_capped() {
        let doc = |v: u32| {
            let fields: Vec<String> = (0..10_000).map(|i| format!("\"k{i:05}\":{v}")).collect();
            format!("{{{}}}", fields.join(","))
        };
        let d = bodies(&CompareSpec::default(), &doc(1), &doc(2));
        assert_eq!(d.entries().len(), MAX_POINTERS);
        assert!(d.more());
        assert_eq!(d.entries()[0], "/k00000");
        assert!(d.to_string().ends_with(" +more"));
        let long = |n: usize| format!("[{}]", vec!["1"; n].join(","));
        let d = bodies(&CompareSpec::default(), "[]", &long(100_000));
        assert_eq!((d.entries().len(), d.more()), (MAX_POINTERS, true));
        // Exactly at the cap: all kept, no marker.
        let d = bodies(&CompareSpec::default(), "[]", &long(MAX_POINTERS));
        assert_eq!((d.entries().len(), d.more()), (MAX_POINTERS, false));
    }

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn deep_bodies_are_not_walked_and_never_overflow() {
        let spec = CompareSpec::default();
        // MAX_DEPTH levels are walked.
        let d = bodies(
            &spec,
            &nested(MAX_DEPTH),
            &nested(MAX_DEPTH).replace('1', "2"),
        );
        let pointer = "/0".repeat(MAX_DEPTH);
        assert_eq!(entries(&d), [pointer.as_str()]);
        // One more is not: past serde_json's own limit of 128 too, and far past any stack.
        for depth in [MAX_DEPTH + 1, 200, 100_000] {
            let deep = nested(depth);
            let d = bodies(&spec, &nested(1), &deep);
            assert_eq!(entries(&d), ["body", "body:candidate_too_deep"], "{depth}");
            let d = bodies(&spec, &deep, &deep.replace('1', "2"));
            assert_eq!(
                entries(&d),
                ["body", "body:candidate_too_deep", "body:primary_too_deep"],
                "{depth}"
            );
            // Identical bytes are equal without a walk.
            assert!(bodies(&spec, &deep, &deep).is_empty());
        }
        let objects = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
        let d = bodies(&spec, &objects, "{}");
        assert_eq!(entries(&d), ["body", "body:primary_too_deep"]);
        // Deep but not JSON: not_json wins (the whole text is checked first).
        let broken = format!("{}1", "[".repeat(100_000));
        let d = bodies(&spec, &broken, "[]");
        assert_eq!(entries(&d), ["body", "body:primary_not_json"]);
    }

    #[test]
    fn decimals_normalise_exactly() {
        let d = |t: &str| {
            Decimal::parse(t).map(|d| {
                let mut s = String::new();
                d.write(&mut s);
                s
            })
        };
        let cases: &[(&str, Option<&str>)] = &[
            ("0", Some("#e0")),
            ("-0", Some("#e0")),
            ("0.000", Some("#e0")),
            ("0e999999", Some("#e0")),
            ("12.50", Some("#125e-1")),
            ("-12.5", Some("#-125e-1")),
            ("1.25e1", Some("#125e-1")),
            ("1E+2", Some("#1e2")),
            ("100", Some("#1e2")),
            ("0.001", Some("#1e-3")),
            ("1e-0000000000000000000000003", Some("#1e-3")),
            (
                "123456789012345678901234567890",
                Some("#12345678901234567890123456789e1"),
            ),
            ("9223372036854775807e0", Some("#9223372036854775807e0")),
            ("1e9223372036854775807", Some("#1e9223372036854775807")),
            ("1e9223372036854775808", None),
            ("0.1e-9223372036854775808", None),
            ("", None),
            ("-", None),
            ("007", None),
            ("+1", None),
            ("1.", None),
            (".5", None),
            ("1e", None),
            ("1e+", None),
            (" 1", None),
            ("1 ", None),
            ("1x", None),
            ("NaN", None),
            ("Infinity", None),
            ("--1", None),
            ("0x10", None),
        ];
        for (text, want) in cases {
            assert_eq!(d(text).as_deref(), *want, "{text:?}");
        }
    }

    // ---- Property tests ----

    /// A test document: objects keep their keys in the order written.
    #[derive(Debug, Clone)]
    enum Doc {
        Null,
        Bool(bool),
        Num(String),
        Str(String),
        Arr(Vec<Doc>),
        Obj(Vec<(String, Doc)>),
    }

    fn doc() -> impl Strategy<Value = Doc> {
        let leaf = prop_oneof![
            Just(Doc::Null),
            any::<bool>().prop_map(Doc::Bool),
            "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,3})?".prop_map(Doc::Num),
            "[a-z0-9 .]{0,8}".prop_map(Doc::Str),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Doc::Arr),
                prop::collection::btree_map("[a-z~/*]{1,3}", inner, 0..6)
                    .prop_map(|m| Doc::Obj(m.into_iter().collect())),
            ]
        })
    }

    fn render(doc: &Doc, reverse_keys: bool, out: &mut String) {
        match doc {
            Doc::Null => out.push_str("null"),
            Doc::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Doc::Num(n) => out.push_str(n),
            Doc::Str(s) => quote(s, out),
            Doc::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render(item, reverse_keys, out);
                }
                out.push(']');
            }
            Doc::Obj(fields) => {
                out.push_str("{ ");
                let mut order: Vec<&(String, Doc)> = fields.iter().collect();
                if reverse_keys {
                    order.reverse();
                }
                for (i, (k, v)) in order.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    quote(k, out);
                    out.push_str(": ");
                    render(v, reverse_keys, out);
                }
                out.push('}');
            }
        }
    }

    fn text(doc: &Doc, reverse_keys: bool) -> String {
        let mut s = String::new();
        render(doc, reverse_keys, &mut s);
        s
    }

    /// Every pointer in the document, the root (`[]`) first.
    fn pointers(doc: &Doc, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        let children: Vec<(String, &Doc)> = match doc {
            Doc::Arr(items) => items
                .iter()
                .enumerate()
                .map(|(i, d)| (i.to_string(), d))
                .collect(),
            Doc::Obj(fields) => fields.iter().map(|(k, d)| (k.clone(), d)).collect(),
            _ => Vec::new(),
        };
        for (segment, child) in children {
            path.push(segment);
            pointers(child, path, out);
            path.pop();
        }
    }

    fn all_pointers(doc: &Doc) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        pointers(doc, &mut Vec::new(), &mut out);
        out
    }

    fn replace(doc: &mut Doc, path: &[String], with: Doc) {
        let Some((first, rest)) = path.split_first() else {
            *doc = with;
            return;
        };
        let child = match doc {
            Doc::Arr(items) => first.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            Doc::Obj(fields) => fields.iter_mut().find(|(k, _)| k == first).map(|(_, v)| v),
            _ => None,
        };
        if let Some(child) = child {
            replace(child, rest, with);
        }
    }

    fn reverse_arrays(doc: &mut Doc) {
        match doc {
            Doc::Arr(items) => {
                items.reverse();
                items.iter_mut().for_each(reverse_arrays);
            }
            Doc::Obj(fields) => fields.iter_mut().for_each(|(_, v)| reverse_arrays(v)),
            _ => {}
        }
    }

    /// A pattern for the pointer, with the segments whose bit is set in `stars` written `*`.
    fn pattern(path: &[String], stars: u64) -> Pattern {
        let segments: Vec<String> = path
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if stars & (1 << (i % 64)) != 0 {
                    "*".to_string()
                } else {
                    s.clone()
                }
            })
            .collect();
        let mut text = String::new();
        for s in &segments {
            text.push('/');
            if s == "*" {
                text.push('*');
            } else {
                text.push_str(&pointer::to_text(std::slice::from_ref(s))[1..]);
            }
        }
        Pattern::parse(&text).expect("a pattern from a pointer")
    }

    fn numbers() -> impl Strategy<Value = Numbers> {
        prop_oneof![Just(Numbers::Exact), Just(Numbers::Decimal)]
    }

    /// Never generated by `doc()`: unequal to any value there, in both number modes.
    fn changed() -> Doc {
        Doc::Str("\u{1}changed".to_string())
    }

    proptest! {
        #![proptest_config(testkit::proptest_config(64))]

        #[test]
        fn fuzz_a_document_equals_itself(d in doc(), numbers in numbers()) {
            let spec = json_spec(&[], &[], numbers);
            let t = text(&d, false);
            prop_assert!(bodies(&spec, &t, &t).is_empty());
            // Also when the bytes differ (so the walk runs): different whitespace.
            let spaced = format!(" {t}\n");
            prop_assert!(bodies(&spec, &t, &spaced).is_empty());
        }

        #[test]
        fn fuzz_reordered_keys_are_equal(d in doc(), numbers in numbers()) {
            let spec = json_spec(&[], &[], numbers);
            prop_assert!(bodies(&spec, &text(&d, false), &text(&d, true)).is_empty());
        }

        #[test]
        fn fuzz_reversed_arrays_are_equal_when_unordered(d in doc(), numbers in numbers()) {
            let mut reversed = d.clone();
            reverse_arrays(&mut reversed);
            // Every array unordered, at any depth (positional patterns would not follow the
            // reversal: patterns apply at an element's own index on its own side).
            let arrays: Vec<String> = (0..8).map(|depth| "/*".repeat(depth)).collect();
            let arrays: Vec<&str> = arrays.iter().map(String::as_str).collect();
            let spec = json_spec(&[], &arrays, numbers);
            prop_assert!(bodies(&spec, &text(&d, false), &text(&reversed, true)).is_empty());
        }

        #[test]
        fn fuzz_a_changed_ignored_value_is_no_difference(
            d in doc(),
            at in any::<prop::sample::Index>(),
            stars in any::<u64>(),
            numbers in numbers(),
        ) {
            let all = all_pointers(&d);
            let path = at.get(&all).clone();
            let mut other = d.clone();
            replace(&mut other, &path, changed());
            let spec = CompareSpec {
                ignore: vec![pattern(&path, stars)],
                numbers,
                ..CompareSpec::default()
            };
            let diff = bodies(&spec, &text(&d, false), &text(&other, true));
            prop_assert!(diff.is_empty(), "{}: {}", pointer::to_text(&path), diff);
        }

        #[test]
        fn fuzz_one_changed_value_is_exactly_its_pointer(
            d in doc(),
            at in any::<prop::sample::Index>(),
            numbers in numbers(),
        ) {
            let all = all_pointers(&d);
            let path = at.get(&all).clone();
            let mut other = d.clone();
            replace(&mut other, &path, changed());
            let spec = json_spec(&[], &[], numbers);
            let diff = bodies(&spec, &text(&d, false), &text(&other, true));
            let want = match pointer::to_text(&path) {
                t if t.is_empty() => BODY.to_string(),
                t => t,
            };
            prop_assert_eq!(diff.entries(), &[want][..]);
            prop_assert!(!diff.more());
        }

        #[test]
        fn fuzz_decimals_equal_by_value_in_any_spelling(
            negative in any::<bool>(),
            digits in "[1-9]([0-9]{0,30}[1-9])?",
            exponent in -60i64..60,
            zeros_before in 0usize..4,
            zeros_after in 0usize..4,
            as_string in any::<bool>(),
            changed_digit in any::<prop::sample::Index>(),
        ) {
            let sign = if negative { "-" } else { "" };
            // digits × 10^exponent, then 0.(zeros)digits(zeros) × 10^shifted: the trailing zeros
            // are fraction digits, so they shift nothing.
            let plain = format!("{sign}{digits}e{exponent}");
            let shifted = exponent + i64::try_from(zeros_before + digits.len()).unwrap_or(0);
            let spelled = format!(
                "{sign}0.{}{digits}{}E{shifted:+}",
                "0".repeat(zeros_before),
                "0".repeat(zeros_after)
            );
            let spelled = if as_string { format!("\"{spelled}\"") } else { spelled };
            let spec = json_spec(&[], &[], Numbers::Decimal);
            let (p, c) = (format!("[{plain}]"), format!("[{spelled}]"));
            prop_assert!(bodies(&spec, &p, &c).is_empty(), "{} vs {}", p, c);
            // Any one digit changed: a different value.
            let mut other = digits.clone().into_bytes();
            let i = changed_digit.index(other.len());
            other[i] = if other[i] == b'9' { b'1' } else { other[i] + 1 };
            let other = String::from_utf8(other).unwrap_or_default();
            let c = format!("[{sign}{other}e{exponent}]");
            let diff = bodies(&spec, &p, &c);
            prop_assert_eq!(entries(&diff), ["/0"]);
        }
    }
}
