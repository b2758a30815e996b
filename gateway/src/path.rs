//! Request path normalisation: routes match on exactly the path that is forwarded upstream.
//!
//! The rules, in order (also in `docs/routing.md`):
//! 1. The path must start with `/` (origin form); anything else is a 400.
//! 2. Percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) are decoded, so `%2e%2E`
//!    is a `..` segment like any other; other percent-encodings are kept with upper-case hex.
//!    A malformed escape (`%zz`, a lone `%`), an encoded NUL or control character is a 400.
//! 3. `%2F` (`/`) and `%5C` (`\`) are refused with 400 by default, because backends disagree on
//!    whether they separate segments; `path_normalization.encoded_slashes: keep` forwards them
//!    encoded. A raw `\` is always a 400.
//! 4. Repeated slashes are merged (`//a///b` → `/a/b`).
//! 5. Dot-segments are removed as in RFC 3986 §5.2.4 (`/a/./b/../c` → `/a/c`); `..` never climbs
//!    above `/`.
//! 6. A trailing slash is kept (`/a/b/` stays `/a/b/`), and the query string is never touched.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

/// What to do with `%2F` and `%5C` in a request path (`path_normalization.encoded_slashes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodedSlashes {
    /// Answer 400 (the default): backends disagree on whether they separate segments.
    Reject,
    /// Forward them encoded, and match routes on the encoded form.
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotOriginForm,
    BadPercentEncoding,
    EncodedSlash,
    ControlCharacter,
    Backslash,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "the request path must start with '/'",
            PathError::BadPercentEncoding => "the request path has a malformed percent-encoding",
            PathError::EncodedSlash => {
                "the request path has an encoded slash or backslash (%2F, %5C)"
            }
            PathError::ControlCharacter => {
                "the request path has an encoded NUL or control character"
            }
            PathError::Backslash => "the request path has a backslash",
        })
    }
}

/// Normalises `path` (no query string). Borrowed when it is already normal.
pub fn normalize(path: &str, encoded_slashes: EncodedSlashes) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if is_normal(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes, encoded_slashes)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// The fast path: no `%`, no `\`, no control byte, no `//`, no `.` or `..` segment.
fn is_normal(bytes: &[u8]) -> bool {
    let mut prev = b'/';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            // The slow path refuses `\` and control bytes, and decodes `%`.
            b'%' | b'\\' | 0..=0x1f | 0x7f => return false,
            b'/' if prev == b'/' && i > 0 => return false,
            b'.' if prev == b'/' => {
                // `.` or `..` as a whole segment
                let rest = &bytes[i..];
                let seg_end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
                if seg_end == 1 || (seg_end == 2 && rest[1] == b'.') {
                    return false;
                }
            }
            _ => {}
        }
        prev = b;
        i += 1;
    }
    true
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(bytes: &[u8], encoded_slashes: EncodedSlashes) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadPercentEncoding);
                };
                let c = h << 4 | l;
                match c {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        out.push(c as char)
                    }
                    b'/' | b'\\' if encoded_slashes == EncodedSlashes::Reject => {
                        return Err(PathError::EncodedSlash);
                    }
                    0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    _ => {
                        out.push('%');
                        out.push(HEX[usize::from(c >> 4)] as char);
                        out.push(HEX[usize::from(c & 0xf)] as char);
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            _ => {
                // Copy one UTF-8 sequence (the URI parser already accepted the bytes).
                let len = utf8_len(b);
                let end = (i + len).min(bytes.len());
                out.push_str(&String::from_utf8_lossy(&bytes[i..end]));
                i = end;
            }
        }
    }
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// Merges slashes and resolves `.` / `..` segments of a path starting with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in path.split('/').skip(1) {
        trailing_slash = false;
        match seg {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p, EncodedSlashes::Reject).map(|c| c.into_owned())
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/api/v1/users/7"] {
            assert!(
                matches!(normalize(p, EncodedSlashes::Reject), Ok(Cow::Borrowed(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(n("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(n("//a///b//").unwrap(), "/a/b/");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        assert_eq!(n("/.").unwrap(), "/");
        assert_eq!(n("/..").unwrap(), "/");
    }

    #[test]
    fn percent_encoded_dots_are_segments_too() {
        assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/public/%2E%2E/admin").unwrap(), "/admin");
        assert_eq!(n("/public/.%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/%61pi/x").unwrap(), "/api/x");
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
        assert_eq!(n("/a%3ab").unwrap(), "/a%3Ab");
    }

    #[test]
    fn refusals() {
        assert_eq!(n("/a%2Fb"), Err(PathError::EncodedSlash));
        assert_eq!(n("/a%2f..%2fb"), Err(PathError::EncodedSlash));
        assert_eq!(n("/a%5Cb"), Err(PathError::EncodedSlash));
        assert_eq!(n("/a\\b"), Err(PathError::Backslash));
        assert_eq!(n("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(n("/a%2"), Err(PathError::BadPercentEncoding));
        assert_eq!(n("/a%00b"), Err(PathError::ControlCharacter));
        // Found by fuzz_normalize_agrees_with_the_rfc_and_is_idempotent: the fast path let a
        // raw control byte through.
        assert_eq!(n("/a\u{1}b"), Err(PathError::ControlCharacter));
        assert_eq!(n("a/b"), Err(PathError::NotOriginForm));
        assert_eq!(n("*"), Err(PathError::NotOriginForm));
    }

    #[test]
    fn keep_mode_forwards_encoded_slashes() {
        let kept = normalize("/a%2fb/../c", EncodedSlashes::Keep).unwrap();
        assert_eq!(kept, "/c");
        assert_eq!(normalize("/a%2fb", EncodedSlashes::Keep).unwrap(), "/a%2Fb");
    }

    /// RFC 3986 §5.2.4 written out literally, after decoding unreserved escapes and merging
    /// slashes: the reference the normaliser is compared with.
    fn reference(path: &str) -> Option<String> {
        let bytes = path.as_bytes();
        if bytes.first() != Some(&b'/') || path.contains('\\') {
            return None;
        }
        let mut decoded = String::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                let c = u8::from_str_radix(hex, 16).ok()?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit())
                    || matches!(c, b'/' | b'\\')
                    || c < 0x20
                    || c == 0x7f
                {
                    return None;
                }
                if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                    decoded.push(c as char);
                } else {
                    decoded.push_str(&format!("%{c:02X}"));
                }
                i += 3;
            } else if bytes[i] < 0x20 || bytes[i] == 0x7f {
                return None;
            } else {
                let ch = path[i..].chars().next()?;
                decoded.push(ch);
                i += ch.len_utf8();
            }
        }
        while decoded.contains("//") {
            decoded = decoded.replace("//", "/");
        }
        let (mut input, mut output) = (decoded, String::new());
        let pop = |output: &mut String| {
            let cut = output.rfind('/').unwrap_or(0);
            output.truncate(cut);
        };
        while !input.is_empty() {
            if let Some(rest) = input.strip_prefix("../") {
                input = rest.to_string();
            } else if let Some(rest) = input.strip_prefix("./") {
                input = rest.to_string();
            } else if input.starts_with("/./") {
                input.replace_range(..3, "/");
            } else if input == "/." {
                input = "/".into();
            } else if input.starts_with("/../") {
                input.replace_range(..4, "/");
                pop(&mut output);
            } else if input == "/.." {
                input = "/".into();
                pop(&mut output);
            } else if input == "." || input == ".." {
                input.clear();
            } else {
                let end = input[1..].find('/').map_or(input.len(), |e| e + 1);
                output.push_str(&input[..end]);
                input.replace_range(..end, "");
            }
        }
        Some(if output.is_empty() {
            "/".into()
        } else {
            output
        })
    }

    fn paths() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            6 => prop::sample::select(vec![
                "/", "a", "b", ".", "..", "%2e", "%2E", "%2e%2E", "%41", "%7e", "%20", "%3a",
                "%3A", "%C3%A9", "é", "~", "-", "_", "=", ";", "[", "%2F", "%5c",
            ])
            .prop_map(String::from),
            1 => prop::sample::select(vec!["%", "%z", "%0", "%00", "%1f", "%7F", "\\", "\u{1}"])
                .prop_map(String::from),
        ];
        (
            prop::sample::select(vec!["/", "//", "", "/./", "/../"]),
            prop::collection::vec(piece, 0..10),
        )
            .prop_map(|(start, rest)| format!("{start}{}", rest.concat()))
    }

    proptest::proptest! {
        #![proptest_config(testkit::proptest_config(4000))]

        /// The normaliser agrees with RFC 3986 §5.2.4 written out literally, refuses exactly
        /// what the rules refuse, and what it returns is already normal (a second pass leaves it
        /// unchanged).
        #[test]
        fn fuzz_normalize_agrees_with_the_rfc_and_is_idempotent(path in paths()) {
            let ours = n(&path).ok();
            proptest::prop_assert_eq!(&ours, &reference(&path), "{:?}", path);
            if let Some(out) = ours {
                let again = normalize(&out, EncodedSlashes::Reject).unwrap();
                proptest::prop_assert_eq!(again.as_ref(), out.as_str(), "{:?}", path);
            }
        }

        /// Any string at all: no panic.
        #[test]
        fn fuzz_normalize_never_panics(path in "\\PC{0,64}") {
            let _ = normalize(&path, EncodedSlashes::Reject);
            let _ = normalize(&path, EncodedSlashes::Keep);
        }
    }
}
