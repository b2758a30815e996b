//! JSON Pointers (RFC 6901) and the patterns a shadow's `compare.ignore`, `compare.unordered`
//! and `record.redact` are written in: a pointer whose segments may be `*`, matching any one
//! array index or object key (`/items/*/updated_at`).

use std::fmt;

/// A pattern: `/`-separated segments, each a literal (with RFC 6901's `~0` and `~1` escapes
/// decoded) or `*`. The empty pattern `""` is the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Any,
    Literal(String),
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a JSON Pointer starts with \"/\" (or is \"\" for the whole document)")]
    NoLeadingSlash,
    #[error("\"~\" must be followed by 0 or 1 (RFC 6901)")]
    BadEscape,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.is_empty() {
            return Ok(Pattern {
                segments: Vec::new(),
                text: String::new(),
            });
        }
        let rest = text.strip_prefix('/').ok_or(PatternError::NoLeadingSlash)?;
        let segments = rest
            .split('/')
            .map(|s| match s {
                "*" => Ok(Segment::Any),
                s => unescape(s).map(Segment::Literal),
            })
            .collect::<Result<_, _>>()?;
        Ok(Pattern {
            segments,
            text: text.to_string(),
        })
    }

    /// Whether the pointer (segments already unescaped) is matched by this pattern.
    pub fn matches(&self, pointer: &[String]) -> bool {
        self.segments.len() == pointer.len()
            && self.segments.iter().zip(pointer).all(|(s, p)| {
                matches!(s, Segment::Any) || matches!(s, Segment::Literal(l) if l == p)
            })
    }

    /// Whether the pattern matches `pointer` or a prefix of it (a value inside an ignored or
    /// redacted subtree is ignored or redacted too).
    pub fn covers(&self, pointer: &[String]) -> bool {
        self.segments.len() <= pointer.len() && self.matches(&pointer[..self.segments.len()])
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The RFC 6901 text of a pointer: `["items", "0", "a/b"]` → `/items/0/a~1b`.
pub fn to_text(pointer: &[String]) -> String {
    let mut out = String::new();
    for s in pointer {
        out.push('/');
        out.push_str(&s.replace('~', "~0").replace('/', "~1"));
    }
    out
}

fn unescape(s: &str) -> Result<String, PatternError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(PatternError::BadEscape),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(segments: &[&str]) -> Vec<String> {
        segments.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn patterns_match_whole_pointers_and_cover_subtrees() {
        let p = Pattern::parse("/items/*/updated_at").unwrap();
        assert!(p.matches(&ptr(&["items", "3", "updated_at"])));
        assert!(!p.matches(&ptr(&["items", "3"])));
        assert!(!p.matches(&ptr(&["items", "3", "updated_at", "x"])));
        assert!(p.covers(&ptr(&["items", "3", "updated_at", "x"])));
        assert!(!p.covers(&ptr(&["items"])));
        let escaped = Pattern::parse("/a~1b/c~0d").unwrap();
        assert!(escaped.matches(&ptr(&["a/b", "c~d"])));
        assert_eq!(to_text(&ptr(&["a/b", "c~d"])), "/a~1b/c~0d");
        let whole = Pattern::parse("").unwrap();
        assert!(whole.covers(&ptr(&["anything"])));
        assert_eq!(Pattern::parse("id"), Err(PatternError::NoLeadingSlash));
        assert_eq!(Pattern::parse("/a~2"), Err(PatternError::BadEscape));
        assert_eq!(p.to_string(), "/items/*/updated_at");
    }
}
