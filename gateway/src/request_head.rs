//! An HTTP/1 request head as the client sent it, checked strictly before pingora reads it.
//!
//! pingora parses request heads leniently, and some of its leniency changes what a request
//! means: a request line that `httparse` refuses is percent-escaped and parsed again (so
//! `GET /public /../admin/x` became `/public%20/../admin/x`, then `/admin/x`), a raw `#` cuts
//! the target silently, and its own refusals are a bare `400` with no body. The gateway does
//! not let that happen: every head on a plain or TLS HTTP/1 connection goes through [`scan`]
//! first (the `edge` module reads it off the socket and hands the same bytes to pingora), and
//! a head that is not what RFC 9112 allows is refused with problem+json. pingora then only
//! ever parses heads that passed, which it reads exactly as sent.
//!
//! The request-target rules ([`check_target`]) are shared with `gateway explain`, so the
//! explanation and the running gateway agree on every target:
//! - origin-form (`/path?query`), absolute-form (`http://host/path?query`, `https://` too),
//!   and `*` for `OPTIONS` only; anything else is 400, `CONNECT` is 405;
//! - never in the target: a space or control byte, `#` (a fragment is not part of a
//!   request-target), `<`, `>`, `"`, or a byte above 0x7F (clients percent-encode those; a raw
//!   one would route on one reading of the path and reach the origin as another); nor a
//!   backtick in the path;
//! - `%` is always followed by two hex digits;
//! - at most [`MAX_TARGET`] bytes (414 beyond).
//!
//! Everything the RFC 3986 character set allows passes, and so do the printable characters
//! browsers send unencoded (`[ ] { } | \ ^`, a backtick in the query): the query reaches the
//! upstream byte for byte.
//!
//! The head itself: at most [`MAX_HEADERS`] fields (431) in at most [`MAX_HEAD`] bytes (431),
//! no obs-fold, one `Host` without userinfo (equal to an absolute-form target's authority),
//! `Content-Length` values that agree, and `Transfer-Encoding` only on HTTP/1.1 with
//! `chunked` last. These are the checks pingora makes after parsing, made here so that their
//! refusals are problem+json too.

use std::fmt;

/// The most header fields a request may carry (pingora's own limit).
pub const MAX_HEADERS: usize = 256;
/// The largest request head, request line and fields together (pingora's own limit).
pub const MAX_HEAD: usize = 1_048_575;
/// The longest request-target, as nginx's default `large_client_header_buffers` (8 KiB).
pub const MAX_TARGET: usize = 8 * 1024;

/// Why a head is refused. Each maps to one problem type (see `respond`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The request line or a field does not parse as HTTP/1 (the reason says which part).
    Malformed(&'static str),
    /// The request-target is not acceptable.
    Target(TargetError),
    /// The request-target is longer than [`MAX_TARGET`].
    TargetTooLong,
    /// More than [`MAX_HEADERS`] fields, or a head larger than [`MAX_HEAD`].
    HeadTooLarge,
    /// `CONNECT`: the gateway is not a tunnel.
    Connect,
    /// `Host`, `Content-Length` or `Transfer-Encoding` make the request ambiguous.
    Framing(&'static str),
}

impl HeadError {
    /// The answer's status: 414 and 431 for the limits, 405 for `CONNECT`, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TargetTooLong => 414,
            HeadError::HeadTooLarge => 431,
            HeadError::Connect => 405,
            HeadError::Malformed(_) | HeadError::Target(_) | HeadError::Framing(_) => 400,
        }
    }

    /// A short, stable label for metrics (`gateway_malformed_requests_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            HeadError::Malformed(_) => "malformed",
            HeadError::Target(_) => "bad_target",
            HeadError::TargetTooLong => "target_too_long",
            HeadError::HeadTooLarge => "head_too_large",
            HeadError::Connect => "connect",
            HeadError::Framing(_) => "framing",
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Malformed(what) => write!(f, "The request is not valid HTTP/1: {what}."),
            HeadError::Target(e) => write!(f, "{e}"),
            HeadError::TargetTooLong => {
                write!(f, "The request-target is longer than {MAX_TARGET} bytes.")
            }
            HeadError::HeadTooLarge => write!(
                f,
                "The request head has more than {MAX_HEADERS} fields or {MAX_HEAD} bytes."
            ),
            HeadError::Connect => {
                write!(f, "CONNECT is not supported: the gateway is not a tunnel.")
            }
            HeadError::Framing(what) => write!(f, "{what}"),
        }
    }
}

/// Why a request-target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Not origin-form, absolute-form, or `*` with `OPTIONS`.
    Form,
    /// A byte that may not appear raw.
    Byte(u8),
    /// `%` not followed by two hex digits.
    Percent,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Form => write!(
                f,
                "The request-target must be a path starting with '/', an absolute http(s) URL, or '*' with OPTIONS."
            ),
            TargetError::Byte(b) if b.is_ascii_graphic() => write!(
                f,
                "The request-target contains '{}', which must be percent-encoded.",
                *b as char
            ),
            TargetError::Byte(b) => write!(
                f,
                "The request-target contains the byte 0x{b:02X}, which must be percent-encoded."
            ),
            TargetError::Percent => {
                write!(
                    f,
                    "The request-target has a '%' not followed by two hex digits."
                )
            }
        }
    }
}

/// The form of an accepted request-target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    Origin,
    Absolute,
    Asterisk,
}

/// An accepted request-target, split the way routing reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub form: TargetForm,
    /// The path (`/` for an absolute-form target without one, `*` for asterisk-form).
    pub path: &'a str,
    /// The query, without its `?`, byte for byte as sent.
    pub query: Option<&'a str>,
    /// The authority of an absolute-form target.
    pub authority: Option<&'a str>,
}

/// Checks a request-target against the rules in the module docs.
pub fn check_target<'a>(method: &str, target: &'a [u8]) -> Result<Target<'a>, HeadError> {
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(HeadError::Connect);
    }
    if target.len() > MAX_TARGET {
        return Err(HeadError::TargetTooLong);
    }
    if target == b"*" {
        return match method {
            "OPTIONS" => Ok(Target {
                form: TargetForm::Asterisk,
                path: "*",
                query: None,
                authority: None,
            }),
            _ => Err(HeadError::Target(TargetError::Form)),
        };
    }
    let (form, authority, rest) = if target.first() == Some(&b'/') {
        (TargetForm::Origin, None, target)
    } else {
        let after_scheme = strip_prefix_ignore_case(target, b"http://")
            .or_else(|| strip_prefix_ignore_case(target, b"https://"))
            .ok_or(HeadError::Target(TargetError::Form))?;
        let end = after_scheme
            .iter()
            .position(|b| matches!(b, b'/' | b'?'))
            .unwrap_or(after_scheme.len());
        let authority = &after_scheme[..end];
        if authority.is_empty() {
            return Err(HeadError::Target(TargetError::Form));
        }
        if let Some(&b) = authority.iter().find(|b| !is_authority_byte(**b)) {
            return Err(HeadError::Target(TargetError::Byte(b)));
        }
        // What pingora checks of the authority, so it never refuses one that passed here.
        if http::uri::Authority::try_from(authority).is_err() {
            return Err(HeadError::Target(TargetError::Form));
        }
        (TargetForm::Absolute, Some(authority), &after_scheme[end..])
    };
    let (path, query) = match rest.iter().position(|b| *b == b'?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    check_bytes(path, true)?;
    if let Some(query) = query {
        check_bytes(query, false)?;
    }
    // Every byte checked is ASCII, so these are valid UTF-8.
    let text = |b: &'a [u8]| std::str::from_utf8(b).expect("checked ASCII");
    Ok(Target {
        form,
        path: if path.is_empty() { "/" } else { text(path) },
        query: query.map(text),
        authority: authority.map(text),
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// RFC 3986 authority: unreserved, sub-delims, `:`, `@` (refused later, with `Host`), `[`, `]`,
/// and `%` (IPv6 zone ids).
fn is_authority_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@[]%".contains(&b)
}

/// The bytes of a path (`in_path`) or query, against the rules in the module docs.
fn check_bytes(bytes: &[u8], in_path: bool) -> Result<(), HeadError> {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let refused = !b.is_ascii_graphic()
            || matches!(b, b'#' | b'<' | b'>' | b'"')
            || (in_path && b == b'`');
        if refused {
            return Err(HeadError::Target(TargetError::Byte(b)));
        }
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return Err(HeadError::Target(TargetError::Percent));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Scans the start of `buf` for a complete request head. `Ok(Some(len))`: the head is the
/// first `len` bytes (the blank line included) and passed every check; `Ok(None)`: more bytes
/// are needed.
pub fn scan(buf: &[u8]) -> Result<Option<usize>, HeadError> {
    // Uninitialised: zeroing 256 fields (8 KiB) per request would cost more than the parse.
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return match req.path {
                // The request line is complete: only the fields are missing.
                Some(path) if path.len() > MAX_TARGET => Err(HeadError::TargetTooLong),
                _ if buf.len() > MAX_HEAD => Err(HeadError::HeadTooLarge),
                // A request line still without its end: refuse as soon as it is too long.
                None if request_line_pending_over(buf) => Err(HeadError::TargetTooLong),
                _ => Ok(None),
            };
        }
        Err(e) => return Err(parse_error(e)),
    };
    let method = req.method.unwrap_or("");
    let target = check_target(method, req.path.unwrap_or("").as_bytes())?;
    check_fields(req.headers, req.version == Some(0), &target)?;
    Ok(Some(len))
}

/// A request line with no line end yet, already longer than any acceptable one.
fn request_line_pending_over(buf: &[u8]) -> bool {
    // method (a token, at most 32 bytes here) + SP + target + SP + "HTTP/1.1".
    buf.len() > MAX_TARGET + 64 && !buf[..MAX_TARGET + 64].contains(&b'\n')
}

fn parse_error(e: httparse::Error) -> HeadError {
    use httparse::Error::*;
    HeadError::Malformed(match e {
        TooManyHeaders => return HeadError::HeadTooLarge,
        Token => "the request line is not `METHOD SP request-target SP HTTP-version`",
        Version => "the request line is not `METHOD SP request-target SP HTTP-version`",
        HeaderName => "a field name is not a token",
        HeaderValue => "a field value has a forbidden byte, or a line is folded (obs-fold)",
        NewLine => "a line does not end in CRLF",
        Status => "a status where a request was expected",
    })
}

/// The `Host` fields against the target, as pingora checks them: at most one, no userinfo
/// (`@`) in it or in an absolute-form target's authority, and equal to that authority.
pub fn check_authority<'a>(
    hosts: impl IntoIterator<Item = &'a [u8]>,
    target: &Target<'_>,
) -> Result<(), HeadError> {
    let mut hosts = hosts.into_iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HeadError::Framing(
            "The request has more than one Host field.",
        ));
    }
    if host.is_some_and(|h| h.contains(&b'@')) || target.authority.is_some_and(|a| a.contains('@'))
    {
        return Err(HeadError::Framing(
            "The request's authority carries userinfo ('@').",
        ));
    }
    if let (Some(host), Some(authority)) = (host, target.authority)
        && host != authority.as_bytes()
    {
        return Err(HeadError::Framing(
            "The Host field differs from the request-target's authority.",
        ));
    }
    Ok(())
}

/// `Host`, `Content-Length` and `Transfer-Encoding`, as pingora checks them after parsing.
fn check_fields(
    fields: &[httparse::Header<'_>],
    http10: bool,
    target: &Target<'_>,
) -> Result<(), HeadError> {
    let named = |name: &'static str| {
        fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    };
    check_authority(named("host"), target)?;
    let mut codings = named("transfer-encoding").peekable();
    if codings.peek().is_some() {
        if http10 {
            return Err(HeadError::Framing(
                "Transfer-Encoding is not allowed in an HTTP/1.0 request.",
            ));
        }
        let last = codings
            .flat_map(|v| v.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|c| !c.is_empty());
        if !last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
            return Err(HeadError::Framing(
                "The final Transfer-Encoding is not chunked.",
            ));
        }
        // Transfer-Encoding frames the body; a Content-Length beside it is refused later
        // (`proxy::admit`: ambiguous framing).
        return Ok(());
    }
    let mut length: Option<&[u8]> = None;
    for value in named("content-length").flat_map(|v| v.split(|b| *b == b',')) {
        let value = value.trim_ascii();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::Framing("Content-Length is not a number."));
        }
        if length.is_some_and(|l| l != value) {
            return Err(HeadError::Framing(
                "The request has Content-Length values that differ.",
            ));
        }
        length = Some(value);
    }
    Ok(())
}

/// Whether the `Connection` fields ask to close the connection after the answer (RFC 9110
/// §7.6.1: `close` in any of them). pingora reads only the first field; the proxy calls this
/// for the others.
pub fn asks_to_close<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> bool {
    fields.into_iter().any(|field| {
        field
            .split(|b| *b == b',')
            .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(t: &str) -> Result<Target<'_>, HeadError> {
        check_target("GET", t.as_bytes())
    }

    #[test]
    fn origin_and_absolute_form_split_path_and_query() {
        let t = target("/a/b?x=1&y=%20").unwrap();
        assert_eq!(
            (t.form, t.path, t.query),
            (TargetForm::Origin, "/a/b", Some("x=1&y=%20"))
        );
        let t = target("HTTP://example.com:8080?q").unwrap();
        assert_eq!(t.form, TargetForm::Absolute);
        assert_eq!(
            (t.path, t.query, t.authority),
            ("/", Some("q"), Some("example.com:8080"))
        );
        let t = target("https://[::1]/p").unwrap();
        assert_eq!((t.path, t.authority), ("/p", Some("[::1]")));
        assert_eq!(target("/?").unwrap().query, Some(""));
        // What browsers send unencoded passes, byte for byte.
        let t = target("/a[1]/{b}|c^d\\e?f[]=1&g={\"h\"}`").unwrap_err();
        assert_eq!(t, HeadError::Target(TargetError::Byte(b'"')));
        let t = target("/a[1]/{b}|c^d\\e?f[]=1&g={h}`").unwrap();
        assert_eq!(t.query, Some("f[]=1&g={h}`"));
    }

    #[test]
    fn other_forms_are_refused() {
        for bad in ["a/b", "", "%2F", "ftp://x/", "http://", "http:///x", "//"] {
            let r = target(bad);
            if bad == "//" {
                assert!(r.is_ok(), "'//' is an origin-form path");
                continue;
            }
            assert_eq!(r, Err(HeadError::Target(TargetError::Form)), "{bad:?}");
        }
        assert_eq!(
            check_target("OPTIONS", b"*").unwrap().form,
            TargetForm::Asterisk
        );
        assert_eq!(target("*"), Err(HeadError::Target(TargetError::Form)));
        assert_eq!(
            check_target("CONNECT", b"example.com:443"),
            Err(HeadError::Connect)
        );
    }

    #[test]
    fn raw_bytes_that_change_meaning_are_refused() {
        for (t, b) in [
            ("/a b", b' '),
            ("/a\tb", b'\t'),
            ("/a#frag", b'#'),
            ("/x?a#b", b'#'),
            ("/<script>", b'<'),
            ("/a?b>", b'>'),
            ("/\"", b'"'),
            ("/a`b", b'`'),
            ("/\x7f", 0x7f),
            ("/é", 0xC3),
            ("/x?é", 0xC3),
            ("http://ex ample/", b' '),
        ] {
            assert_eq!(
                target(t),
                Err(HeadError::Target(TargetError::Byte(b))),
                "{t:?}"
            );
        }
        for t in ["/%", "/%2", "/%zz", "/x?%G0"] {
            assert_eq!(
                target(t),
                Err(HeadError::Target(TargetError::Percent)),
                "{t:?}"
            );
        }
        assert_eq!(target("/%2f%C3%A9").unwrap().path, "/%2f%C3%A9");
        let long = format!("/{}", "a".repeat(MAX_TARGET));
        assert_eq!(target(&long), Err(HeadError::TargetTooLong));
    }

    #[test]
    fn close_in_any_connection_field() {
        let asks = |fields: &[&str]| asks_to_close(fields.iter().map(|f| f.as_bytes()));
        assert!(asks(&["keep-alive", "close"]));
        assert!(asks(&["Upgrade, CLOSE "]));
        assert!(!asks(&["keep-alive", "closed, x-close"]));
        assert!(!asks(&[]));
    }

    fn head(s: &str) -> Result<Option<usize>, HeadError> {
        scan(s.as_bytes())
    }

    #[test]
    fn heads_are_complete_partial_or_refused() {
        let ok = "GET /x?q=1 HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(head(ok), Ok(Some(ok.len() - 4)));
        assert_eq!(head("GET /x HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(head("GET /x HT"), Ok(None));
        // The findings of issue 16: autocorrected request lines are refused instead.
        for bad in [
            "GET  /x HTTP/1.1\r\n\r\n",
            "GET /public /../admin/x HTTP/1.1\r\n\r\n",
            "GET /x HTTP/1.1 \r\n\r\n",
            "GET /x\r\n\r\n",
            "GET /x HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
            "GET /x HTTP/1.1\r\nA b: c\r\n\r\n",
        ] {
            assert!(
                matches!(head(bad), Err(HeadError::Malformed(_))),
                "{bad:?}: {:?}",
                head(bad)
            );
        }
        assert_eq!(
            head("GET a/b HTTP/1.1\r\n\r\n"),
            Err(HeadError::Target(TargetError::Form))
        );
        assert_eq!(
            head("GET /a#b HTTP/1.1\r\n\r\n"),
            Err(HeadError::Target(TargetError::Byte(b'#')))
        );
    }

    #[test]
    fn limits() {
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x{i}: y\r\n")).collect();
        assert_eq!(
            head(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(HeadError::HeadTooLarge)
        );
        let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(65_000));
        assert_eq!(head(&line), Err(HeadError::TargetTooLong));
        // Refused before the line ends: a client cannot make the gateway buffer it.
        assert_eq!(
            head(&line[..MAX_TARGET + 100]),
            Err(HeadError::TargetTooLong)
        );
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(head(&big), Err(HeadError::HeadTooLarge));
    }

    #[test]
    fn host_and_framing_fields() {
        let refused = |h: &str| matches!(head(h), Err(HeadError::Framing(_)));
        assert!(refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"));
        assert!(refused("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"));
        assert!(refused("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n"));
        assert!(refused("GET http://u@a/ HTTP/1.1\r\n\r\n"));
        assert!(!refused("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(refused(
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(refused(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
        ));
        assert!(!refused(
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n"
        ));
        assert!(refused(
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
        ));
        assert!(refused("POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n"));
        assert!(refused("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"));
        assert!(refused("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"));
        assert!(!refused(
            "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n"
        ));
    }

    /// Request lines built from pieces that matter to one parser or another.
    fn request_lines() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let methods = prop::sample::select(vec!["GET", "OPTIONS", "POST", "CONNECT", "get", "G T"]);
        let starts = prop::sample::select(vec!["/", "", "a", "*", "http://h", "HTTPS://h:1", "//"]);
        let piece = prop_oneof![
            4 => prop::sample::select(vec![
                "a", "/", "..", "%2e", "%2F", "?", "=", "&", "[", "]", "{", "}", "|", "^", "\\",
                "'", "@", ":", "~", "+", "!", "$", ";", ",", "*", "(", ")",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ];
        let versions = prop::sample::select(vec![
            " HTTP/1.1",
            " HTTP/1.0",
            " HTTP/2.0",
            "",
            "  HTTP/1.1",
        ]);
        (
            methods,
            starts,
            prop::collection::vec(piece, 0..12),
            versions,
        )
            .prop_map(|(method, start, pieces, version)| {
                let mut line = format!("{method} {start}").into_bytes();
                line.extend(pieces.concat());
                line.extend_from_slice(version.as_bytes());
                line.extend_from_slice(b"\r\nHost: h\r\n\r\n");
                line
            })
    }

    proptest::proptest! {
        #![proptest_config(testkit::proptest_config(4000))]

        /// Arbitrary bytes: no panic, and a head is never longer than the input.
        #[test]
        fn fuzz_scan_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Ok(Some(len)) = scan(&bytes) {
                proptest::prop_assert!(len <= bytes.len());
            }
        }

        /// Whatever passes is a head pingora parses as sent: the target it stores is the one
        /// checked here, so the gateway routes on what the client sent and pingora never
        /// refuses (with its bare 400) a head that passed.
        #[test]
        fn fuzz_what_passes_pingora_reads_as_sent(line in request_lines()) {
            let Ok(Some(_)) = scan(&line) else { return Ok(()) };
            let mut fields = [httparse::EMPTY_HEADER; 4];
            let mut req = httparse::Request::new(&mut fields);
            proptest::prop_assert!(req.parse(&line).is_ok());
            let (method, raw) = (req.method.unwrap(), req.path.unwrap());
            let header = pingora_http::RequestHeader::build(method, raw.as_bytes(), None);
            proptest::prop_assert!(header.is_ok(), "pingora refuses {:?}", raw);
            let header = header.unwrap();
            let target = check_target(method, raw.as_bytes()).unwrap();
            proptest::prop_assert_eq!(header.raw_path(), raw.as_bytes());
            proptest::prop_assert_eq!(header.uri.path(), target.path);
            proptest::prop_assert_eq!(header.uri.query(), target.query);
        }
    }
}
