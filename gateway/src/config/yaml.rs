//! YAML text → a JSON value tree plus a map from field paths to source positions.
//!
//! Deserialising straight from YAML stops at the first error and forgets where a value came from
//! once it is in a struct. Going through a plain value tree lets validation look at every section
//! on its own (so `gateway validate` reports every error) and still point each error at its
//! `line:col` in the file.
//!
//! ## Bounded by construction
//! A config file is input like any other: a hot reload must never be able to crash the gateway.
//! So the tree is built from saphyr's *event* parser in one loop with an explicit stack (no
//! recursion anywhere), and before anything else is built:
//! - the text is at most [`MAX_FILE_BYTES`];
//! - collections nest at most [`MAX_DEPTH`] deep (the event that opens level `MAX_DEPTH + 1` is
//!   refused, so nothing deeper is ever built, converted, validated or dropped recursively);
//! - a mapping key is at most [`MAX_KEY_BYTES`] (keys become field paths in every message);
//! - aliases (`*name`) are refused: an alias copies a subtree, so a few bytes could stand for an
//!   exponential amount of config.
//!
//! Positions are kept per node as its parent and its own path segment (the key or the index),
//! not as a full path string per node: memory is linear in the file, whatever its shape. A lookup
//! hashes the asked path and checks the candidates segment by segment.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, Span};
use serde_json::{Map, Number, Value};

use super::Problem;

/// The largest config file read, in bytes (1 MiB; real configs are a few KiB).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// The deepest nesting of lists and mappings (the top-level mapping is depth 1; real configs
/// need fewer than 10).
pub const MAX_DEPTH: usize = 64;
/// The longest mapping key, in bytes (keys are field names, upstream, policy, claim and header
/// names).
pub const MAX_KEY_BYTES: usize = 256;

/// A position in the source file: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Where each field path (`routes[2].match.path_prefix`) starts in the file.
///
/// [`Positions::of`] points at the value (used for "bad value" errors), [`Positions::key_of`]
/// at the mapping key (used for "unknown key" errors).
#[derive(Debug, Default)]
pub struct Positions {
    nodes: Vec<Node>,
    /// Hash of a node's path → the last node with that hash (older ones by `Node::same_hash`).
    by_hash: HashMap<u64, usize>,
    hasher: RandomState,
}

#[derive(Debug)]
struct Node {
    /// `None` for the document's root.
    parent: Option<usize>,
    segment: Segment,
    value: Pos,
    key: Option<Pos>,
    same_hash: Option<usize>,
}

#[derive(Debug)]
enum Segment {
    Root,
    Key(Box<str>),
    Index(usize),
}

/// The hash of a path, fed in pieces as the path grows (`a`, `.b`, `[3]`), equal to the hash
/// of the whole path's text.
#[derive(Clone)]
struct PathHash {
    state: std::hash::DefaultHasher,
    /// Whether the path is empty (the root): a key below it gets no leading `.`.
    empty: bool,
}

impl PathHash {
    fn child(&self, segment: &Segment) -> PathHash {
        let mut next = self.clone();
        match segment {
            Segment::Root => return next,
            Segment::Key(k) => {
                if !self.empty {
                    next.state.write(b".");
                }
                next.state.write(k.as_bytes());
            }
            Segment::Index(i) => {
                next.state.write(b"[");
                next.state.write(i.to_string().as_bytes());
                next.state.write(b"]");
            }
        }
        next.empty = false;
        next
    }
}

impl Positions {
    fn root_hash(&self) -> PathHash {
        PathHash {
            state: self.hasher.build_hasher(),
            empty: true,
        }
    }

    fn hash_of(&self, path: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(path.as_bytes());
        h.finish()
    }

    /// Records a node; returns its id.
    fn add(
        &mut self,
        parent: Option<usize>,
        segment: Segment,
        hash: &PathHash,
        value: Pos,
        key: Option<Pos>,
    ) -> usize {
        let id = self.nodes.len();
        let h = hash.state.finish();
        let same_hash = self.by_hash.insert(h, id);
        self.nodes.push(Node {
            parent,
            segment,
            value,
            key,
            same_hash,
        });
        id
    }

    /// The first node (in file order) whose path is `path`.
    fn find(&self, path: &str) -> Option<&Node> {
        let mut candidate = self.by_hash.get(&self.hash_of(path)).copied();
        let mut found = None;
        while let Some(id) = candidate {
            if self.spells(id, path) {
                found = Some(id);
            }
            candidate = self.nodes[id].same_hash;
        }
        found.map(|id| &self.nodes[id])
    }

    /// Whether node `id`'s path is `path`, checked from its last segment up.
    fn spells(&self, mut id: usize, path: &str) -> bool {
        let mut rest = path;
        loop {
            let node = &self.nodes[id];
            let stripped = match &node.segment {
                Segment::Root => return rest.is_empty(),
                Segment::Key(k) => rest.strip_suffix(&**k),
                Segment::Index(i) => rest
                    .strip_suffix(']')
                    .and_then(|r| r.strip_suffix(i.to_string().as_str()))
                    .and_then(|r| r.strip_suffix('[')),
            };
            let Some(stripped) = stripped else {
                return false;
            };
            let Some(parent) = node.parent else {
                return stripped.is_empty();
            };
            rest = stripped;
            if matches!(node.segment, Segment::Key(_))
                && !matches!(self.nodes[parent].segment, Segment::Root)
            {
                match rest.strip_suffix('.') {
                    Some(r) => rest = r,
                    None => return false,
                }
            }
            id = parent;
        }
    }

    /// The best position for an error at `path`: the value, else the key, else the nearest
    /// ancestor that has one, else the top of the file.
    pub fn of(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(node) = self.find(p) {
                return node.value;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return Pos { line: 1, col: 1 },
            }
        }
    }

    /// The position of the key that introduced `path` (falls back to [`Positions::of`]).
    pub fn key_of(&self, path: &str) -> Pos {
        self.find(path)
            .and_then(|n| n.key)
            .unwrap_or_else(|| self.of(path))
    }
}

/// `a.b[3].c` → `a.b[3]` → `a.b` → `a` → None.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Joins a path and a mapping key the way error messages print them.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A list item's path, the way error messages print it: `routes[2]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Why the text is not a config tree, and where.
#[derive(Debug)]
pub struct SyntaxError {
    pub pos: Pos,
    pub reason: Problem,
}

impl SyntaxError {
    fn yaml(pos: Pos, message: &str) -> Self {
        SyntaxError {
            pos,
            reason: Problem::Yaml(message.to_string()),
        }
    }
}

/// A list or mapping being built: the open levels, innermost last.
enum Open {
    List {
        id: usize,
        hash: PathHash,
        items: Vec<Value>,
    },
    Mapping {
        id: usize,
        hash: PathHash,
        entries: Map<String, Value>,
        /// The key read and waiting for its value, with its position.
        key: Option<(String, Pos)>,
    },
}

/// Parses `src` as a single YAML document.
pub fn parse(src: &str) -> Result<(Value, Positions), SyntaxError> {
    if src.len() > MAX_FILE_BYTES {
        return Err(SyntaxError {
            pos: Pos { line: 1, col: 1 },
            reason: Problem::FileTooLarge {
                bytes: src.len(),
                max: MAX_FILE_BYTES,
            },
        });
    }
    let mut parser = Parser::new_from_str(src);
    let mut positions = Positions::default();
    let mut open: Vec<Open> = Vec::new();
    let mut root: Option<Value> = None;
    let mut documents = 0;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            let at = Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            };
            SyntaxError::yaml(within(src, at), e.info())
        })?;
        let pos = pos_of(&span);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError::yaml(
                        pos,
                        "expected a single YAML document, found several",
                    ));
                }
            }
            Event::Alias(_) => {
                return Err(SyntaxError {
                    pos,
                    reason: Problem::Alias,
                });
            }
            Event::Scalar(text, style, _anchor, tag) => {
                let Some(scalar) = Scalar::parse_from_cow_and_metadata(text, style, tag.as_ref())
                else {
                    return Err(SyntaxError::yaml(
                        pos,
                        "a value that does not match its tag",
                    ));
                };
                if let Some(Open::Mapping {
                    key: key @ None, ..
                }) = open.last_mut()
                {
                    let Some(k) = scalar_key(&scalar) else {
                        return Err(SyntaxError::yaml(pos, "mapping keys must be plain scalars"));
                    };
                    if k.len() > MAX_KEY_BYTES {
                        return Err(SyntaxError {
                            pos,
                            reason: Problem::KeyTooLong {
                                bytes: k.len(),
                                max: MAX_KEY_BYTES,
                            },
                        });
                    }
                    *key = Some((k, pos));
                    continue;
                }
                enter(&mut open, &mut positions, pos)?;
                finish(&mut open, &mut root, scalar_to_json(&scalar), pos)?;
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if let Some(Open::Mapping { key: None, .. }) = open.last() {
                    return Err(SyntaxError::yaml(pos, "mapping keys must be plain scalars"));
                }
                if open.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        pos,
                        reason: Problem::TooDeep(MAX_DEPTH),
                    });
                }
                let (id, hash) = enter(&mut open, &mut positions, pos)?;
                open.push(match event {
                    Event::SequenceStart(..) => Open::List {
                        id,
                        hash,
                        items: Vec::new(),
                    },
                    _ => Open::Mapping {
                        id,
                        hash,
                        entries: Map::new(),
                        key: None,
                    },
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let value = match open.pop() {
                    Some(Open::List { items, .. }) => Value::Array(items),
                    Some(Open::Mapping { entries, .. }) => Value::Object(entries),
                    None => return Err(SyntaxError::yaml(pos, "unbalanced collection")),
                };
                finish(&mut open, &mut root, value, pos)?;
            }
        }
    }
    match root {
        Some(value) => Ok((value, positions)),
        None => Err(SyntaxError::yaml(
            Pos { line: 1, col: 1 },
            "the file is empty: expected a YAML mapping",
        )),
    }
}

/// Records the position of a node that starts at `pos` under the innermost open collection
/// (or as the root); returns its id and path hash.
fn enter(
    open: &mut [Open],
    positions: &mut Positions,
    pos: Pos,
) -> Result<(usize, PathHash), SyntaxError> {
    let (parent, segment, key_pos, parent_hash) = match open.last() {
        None => (None, Segment::Root, None, positions.root_hash()),
        Some(Open::List { id, hash, items }) => {
            (Some(*id), Segment::Index(items.len()), None, hash.clone())
        }
        Some(Open::Mapping { id, hash, key, .. }) => {
            let Some((k, at)) = key else {
                return Err(SyntaxError::yaml(pos, "mapping keys must be plain scalars"));
            };
            (
                Some(*id),
                Segment::Key(k.as_str().into()),
                Some(*at),
                hash.clone(),
            )
        }
    };
    let hash = parent_hash.child(&segment);
    let id = positions.add(parent, segment, &hash, pos, key_pos);
    Ok((id, hash))
}

/// Puts a finished value (whose last event is at `pos`) into the innermost open collection, or
/// makes it the root.
fn finish(
    open: &mut [Open],
    root: &mut Option<Value>,
    value: Value,
    pos: Pos,
) -> Result<(), SyntaxError> {
    match open.last_mut() {
        None => *root = Some(value),
        Some(Open::List { items, .. }) => items.push(value),
        Some(Open::Mapping { entries, key, .. }) => {
            let Some((k, at)) = key.take() else {
                return Err(SyntaxError::yaml(pos, "mapping keys must be plain scalars"));
            };
            if entries.contains_key(&k) {
                return Err(SyntaxError::yaml(
                    at,
                    &format!("duplicated key in mapping: `{k}`"),
                ));
            }
            entries.insert(k, value);
        }
    }
    Ok(())
}

/// `pos`, or the end of the file when it is past it: saphyr reports an error at the end of a
/// file without a final line break on the line after the last one.
fn within(src: &str, pos: Pos) -> Pos {
    let lines: Vec<&str> = src
        .split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .collect();
    let Some(last) = lines.len().checked_sub(1) else {
        return Pos { line: 1, col: 1 };
    };
    let line = pos.line.clamp(1, last + 1);
    let width = lines[line - 1].chars().count() + 1;
    if pos.line > line {
        return Pos { line, col: width };
    }
    Pos {
        line,
        col: pos.col.clamp(1, width),
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

/// A mapping key as text; `None` for a null key.
fn scalar_key(s: &Scalar<'_>) -> Option<String> {
    match s {
        Scalar::String(s) => Some(s.to_string()),
        Scalar::Integer(i) => Some(i.to_string()),
        Scalar::Boolean(b) => Some(b.to_string()),
        Scalar::FloatingPoint(f) => Some(f.to_string()),
        Scalar::Null => None,
    }
}

fn scalar_to_json(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_point_at_values_and_keys() {
        let src = "listen: 0.0.0.0:8080\nroutes:\n  - name: a\n    upstream: x\n";
        let (value, pos) = parse(src).unwrap();
        assert_eq!(value["routes"][0]["upstream"], "x");
        assert_eq!(pos.of("routes[0].upstream"), Pos { line: 4, col: 15 });
        assert_eq!(pos.key_of("routes[0].upstream"), Pos { line: 4, col: 5 });
        assert_eq!(pos.of("routes[0].missing.deeper"), Pos { line: 3, col: 5 });
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        let dup = parse("a: 1\na: 2\n").unwrap_err();
        assert!(dup.reason.to_string().contains("duplicate"), "{dup:?}");
    }

    #[test]
    fn scalars_resolve_like_yaml_1_2() {
        let (v, _) = parse("a: 1\nb: true\nc: '1'\nd: 1.5\ne: ~\nf: 5s\n").unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(v["b"], true);
        assert_eq!(v["c"], "1");
        assert_eq!(v["d"], 1.5);
        assert!(v["e"].is_null());
        assert_eq!(v["f"], "5s");
    }

    /// Block sequences nested `depth` deep (`- - - x`), the shape that overflowed the
    /// reloader's stack (issue 16: ~4,200 levels, an 8.6 KB file).
    fn block_nest(depth: usize) -> String {
        format!("a:\n  {}x\n", "- ".repeat(depth))
    }

    #[test]
    fn nesting_is_bounded_before_anything_deep_is_built() {
        // The top-level mapping is level 1; `a:`'s list level 2; so MAX_DEPTH - 1 lists fit.
        assert!(parse(&block_nest(MAX_DEPTH - 1)).is_ok());
        let e = parse(&block_nest(MAX_DEPTH)).unwrap_err();
        assert_eq!(e.reason, Problem::TooDeep(MAX_DEPTH));
        assert_eq!(
            e.pos,
            Pos {
                line: 2,
                col: 3 + 2 * (MAX_DEPTH - 1)
            },
            "the `-` that opens level MAX_DEPTH + 1"
        );
        // Far deeper, flow or block: the same error at the same place, at once.
        for src in [
            block_nest(4_200),
            block_nest(400_000),
            format!("a: {}{}", "[".repeat(200_000), "]".repeat(200_000)),
            format!("a: {}", "{a: ".repeat(100_000)),
        ] {
            let e = parse(&src).unwrap_err();
            // saphyr's scanner reads flow collections ahead and stops them at 255 levels itself.
            assert!(
                e.reason == Problem::TooDeep(MAX_DEPTH)
                    || e.reason == Problem::Yaml("recursion limit exceeded".into()),
                "{}: {:?}",
                &src[..20],
                e.reason
            );
            assert!(e.pos.line <= 2, "{:?}", e.pos);
        }
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_before_parsing() {
        let big = format!("a: \"{}\"\n", "x".repeat(MAX_FILE_BYTES));
        let e = parse(&big).unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 1 });
        assert_eq!(
            e.reason,
            Problem::FileTooLarge {
                bytes: big.len(),
                max: MAX_FILE_BYTES
            }
        );
        let fits = format!("a: \"{}\"\n", "x".repeat(MAX_FILE_BYTES - 8));
        assert!(parse(&fits).is_ok());
    }

    #[test]
    fn aliases_are_refused_where_they_are_used() {
        let e = parse("a: &x [1, 2]\nb: *x\n").unwrap_err();
        assert_eq!((e.pos, e.reason), (Pos { line: 2, col: 4 }, Problem::Alias));
        // The "billion laughs" shape fails at its first alias, having built nothing big.
        let mut laughs = String::from("l0: &l0 [lol, lol]\n");
        for i in 1..30 {
            laughs.push_str(&format!("l{i}: &l{i} [*l{p}, *l{p}]\n", p = i - 1));
        }
        let e = parse(&laughs).unwrap_err();
        assert_eq!((e.pos.line, e.reason), (2, Problem::Alias));
        // An anchor alone is harmless and ignored.
        let (v, _) = parse("a: &x 1\n").unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn keys_are_bounded_and_must_be_scalars() {
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let e = parse(&format!("a:\n  \"{long}\": 1\n")).unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 3 });
        assert_eq!(
            e.reason,
            Problem::KeyTooLong {
                bytes: MAX_KEY_BYTES + 1,
                max: MAX_KEY_BYTES
            }
        );
        assert!(parse(&format!("{}: 1\n", "k".repeat(MAX_KEY_BYTES))).is_ok());
        for src in ["? [a]\n: 1\n", "? {a: 1}\n: 1\n", "~: 1\n"] {
            let e = parse(src).unwrap_err();
            assert_eq!(
                e.reason,
                Problem::Yaml("mapping keys must be plain scalars".into()),
                "{src:?}"
            );
        }
    }

    /// Memory used to grow with depth × path length per node: a long key above many small
    /// values made every value's path that long. Now a node holds its own segment only.
    #[test]
    fn positions_stay_linear_in_the_file() {
        let key = "k".repeat(MAX_KEY_BYTES);
        let mut src = String::new();
        let mut indent = 0;
        for _ in 0..(MAX_DEPTH - 2) {
            src.push_str(&format!("{}{key}:\n", " ".repeat(indent)));
            indent += 1;
        }
        src.push_str(&format!("{}leaf: [", " ".repeat(indent)));
        let items = (MAX_FILE_BYTES - src.len()) / 3;
        src.push_str(&"1, ".repeat(items - 1));
        src.push_str("1]\n");
        let (_, pos) = parse(&src).unwrap();
        assert!(pos.nodes.len() > 300_000);
        let stored: usize = pos
            .nodes
            .iter()
            .map(|n| match &n.segment {
                Segment::Key(k) => k.len(),
                _ => 0,
            })
            .sum();
        assert!(
            stored <= src.len(),
            "{stored} bytes of keys for a {} byte file",
            src.len()
        );
        let deep = format!("{}.leaf[7]", vec![key.as_str(); MAX_DEPTH - 2].join("."));
        assert_eq!(pos.of(&deep).line, MAX_DEPTH - 1);
    }

    #[test]
    fn a_path_is_found_only_by_its_exact_spelling() {
        let (_, pos) = parse("a.b: 1\na:\n  b: 2\n  c: [x, {d: 3}]\n").unwrap();
        // `a.b` the key (line 1) and `a` → `b` (line 3) spell the same path: the first wins,
        // as it always did.
        assert_eq!(pos.of("a.b"), Pos { line: 1, col: 6 });
        assert_eq!(pos.of("a.c[1].d"), Pos { line: 4, col: 14 });
        assert_eq!(pos.key_of("a.c[1].d"), Pos { line: 4, col: 11 });
        assert_eq!(
            pos.of("a.c[2]"),
            Pos { line: 4, col: 6 },
            "falls back to a.c"
        );
        assert_eq!(pos.of("zz"), Pos { line: 1, col: 1 });
    }
}
