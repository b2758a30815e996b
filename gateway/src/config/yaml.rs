//! YAML text → a JSON value tree plus a map from field paths to source positions.
//!
//! Deserialising straight from YAML stops at the first error and forgets where a value came from
//! once it is in a struct. Going through a plain value tree lets validation look at every section
//! on its own (so `gateway validate` reports every error) and still point each error at its
//! `line:col` in the file.

use std::collections::HashMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

/// A position in the source file: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Where each field path (`routes[2].match.path_prefix`) starts in the file.
///
/// `value` points at the value (used for "bad value" errors), `key` at the mapping key (used for
/// "unknown key" errors).
#[derive(Debug, Default)]
pub struct Positions {
    value: HashMap<String, Pos>,
    key: HashMap<String, Pos>,
}

impl Positions {
    /// The best position for an error at `path`: the value, else the key, else the nearest
    /// ancestor that has one, else the top of the file.
    pub fn of(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.value.get(p).or_else(|| self.key.get(p)) {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return Pos { line: 1, col: 1 },
            }
        }
    }

    /// The position of the key that introduced `path` (falls back to [`Positions::of`]).
    pub fn key_of(&self, path: &str) -> Pos {
        self.key.get(path).copied().unwrap_or_else(|| self.of(path))
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

/// A YAML syntax error, with its position.
#[derive(Debug)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses `src` as a single YAML document.
pub fn parse(src: &str) -> Result<(Value, Positions), SyntaxError> {
    let docs = MarkedYaml::load_from_str(src).map_err(|e| SyntaxError {
        pos: Pos {
            line: e.marker().line(),
            col: e.marker().col() + 1,
        },
        message: e.info().to_string(),
    })?;
    let mut docs = docs.into_iter();
    let Some(doc) = docs.next() else {
        return Err(SyntaxError {
            pos: Pos { line: 1, col: 1 },
            message: "the file is empty: expected a YAML mapping".into(),
        });
    };
    if let Some(extra) = docs.next() {
        return Err(SyntaxError {
            pos: pos_of(&extra),
            message: "expected a single YAML document, found several".into(),
        });
    }
    let mut positions = Positions::default();
    let value = convert(&doc, String::new(), &mut positions)?;
    Ok((value, positions))
}

fn pos_of(node: &MarkedYaml<'_>) -> Pos {
    Pos {
        line: node.span.start.line(),
        col: node.span.start.col() + 1,
    }
}

fn convert(
    node: &MarkedYaml<'_>,
    path: String,
    positions: &mut Positions,
) -> Result<Value, SyntaxError> {
    positions.value.entry(path.clone()).or_insert(pos_of(node));
    Ok(match &node.data {
        YamlData::Value(scalar) => scalar_to_json(scalar),
        YamlData::Representation(text, style, tag) => {
            match Scalar::parse_from_cow_and_metadata(text.clone(), *style, tag.as_ref()) {
                Some(scalar) => scalar_to_json(&scalar),
                None => Value::String(text.to_string()),
            }
        }
        YamlData::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(convert(item, index(&path, i), positions)?);
            }
            Value::Array(out)
        }
        YamlData::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match &k.data {
                    YamlData::Value(s) => scalar_key(s),
                    YamlData::Representation(text, ..) => Some(text.to_string()),
                    _ => None,
                };
                let Some(key) = key else {
                    return Err(SyntaxError {
                        pos: pos_of(k),
                        message: "mapping keys must be plain scalars".into(),
                    });
                };
                let child = join(&path, &key);
                positions.key.insert(child.clone(), pos_of(k));
                let value = convert(v, child, positions)?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        YamlData::Tagged(_, inner) => convert(inner, path, positions)?,
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err(SyntaxError {
                pos: pos_of(node),
                message: "invalid value (unresolved alias or a value that does not match its tag)"
                    .into(),
            });
        }
    })
}

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
        assert!(
            dup.message.contains("duplicate") || dup.message.contains("key"),
            "{dup:?}"
        );
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
}
