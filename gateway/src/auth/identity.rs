//! Identity headers and the bearer credential.
//!
//! Every header named in `claims_to_headers` is removed from the client's request in every
//! spelling — any case, `_` for `-`, repeated — before the verified values are added, on every
//! route (`auth: none` included), so a backend can trust them.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use pingora_http::RequestHeader;

use super::AuthError;
use super::verify::AuthFailure;

/// `X-User_Id` → `x-user-id`: the form two spellings of one identity header share.
pub fn normalized(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Removes every header whose normalised name is in `names` (already normalised).
pub fn strip(req: &mut RequestHeader, names: &[String]) {
    if names.is_empty() {
        return;
    }
    let doomed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| {
            let n = k.as_str();
            names.iter().any(|want| {
                want.len() == n.len()
                    && want
                        .bytes()
                        .zip(n.bytes())
                        .all(|(w, c)| w == if c == b'_' { b'-' } else { c })
            })
        })
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

/// The bearer token of a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Credential<'a> {
    /// A token68 (RFC 9110 §11.2): ASCII only.
    pub token: &'a str,
    /// The scheme was spelled exactly `Bearer`.
    pub canonical: bool,
}

/// The request's bearer credential, for a route that checks tokens:
/// - no `Authorization` header: `None`;
/// - two or more: 400 `invalid_request` (RFC 6750 §2: one method only);
/// - one: [`parse_bearer`] decides, and anything but a well-formed `Bearer <token68>` is a 401
///   (never "no token": an optional route must not let a credential it cannot check through).
pub fn bearer(headers: &HeaderMap) -> Result<Option<Credential<'_>>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest);
    }
    parse_bearer(first.as_bytes())
        .map(Some)
        .map_err(AuthError::Unauthorized)
}

/// One `Authorization` field value, strictly (RFC 6750 §2.1 with RFC 9110 §11.4):
///
/// ```text
/// credentials = "Bearer" SP token68        ; "Bearer" in any letter case, exactly one SP
/// token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
/// ```
///
/// Nothing is trimmed or decoded first. Another scheme (`Basic …`: a token as the scheme name,
/// then a space or the end) is [`AuthFailure::UnsupportedScheme`]; every other deviation —
/// a tab or two spaces after `Bearer`, an empty token, a byte outside token68 (non-ASCII, a
/// space, a comma) — is [`AuthFailure::MalformedCredential`].
pub fn parse_bearer(value: &[u8]) -> Result<Credential<'_>, AuthFailure> {
    let scheme_len = value
        .iter()
        .position(|b| !is_tchar(*b))
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_len);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        let other_scheme = !scheme.is_empty() && matches!(rest.first(), None | Some(b' '));
        return Err(if other_scheme {
            AuthFailure::UnsupportedScheme
        } else {
            AuthFailure::MalformedCredential
        });
    }
    let token = rest
        .strip_prefix(b" ")
        .filter(|t| is_token68(t))
        .ok_or(AuthFailure::MalformedCredential)?;
    // token68 is ASCII, so this cannot fail; no `unwrap` on request bytes all the same.
    let token = std::str::from_utf8(token).map_err(|_| AuthFailure::MalformedCredential)?;
    Ok(Credential {
        token,
        canonical: scheme == b"Bearer",
    })
}

/// RFC 9110 §5.6.2 `tchar`: what an auth-scheme name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// token68's characters before its padding (RFC 9110 §11.2), as a table: a token is hundreds
/// of bytes and is checked on every request, so one load per byte.
const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        i += 1;
    }
    table
};

fn is_token68(t: &[u8]) -> bool {
    let body = t.iter().take_while(|b| TOKEN68[usize::from(**b)]).count();
    body > 0 && t[body..].iter().all(|b| *b == b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_spelling() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in [
            ("X-User-Id", "1"),
            ("x-user-id", "2"),
            ("X_USER_ID", "3"),
            ("x_user-id", "4"),
            ("x-user-idx", "keep"),
            ("x-user-email", "e"),
        ] {
            req.append_header(k.to_string(), v).unwrap();
        }
        strip(
            &mut req,
            &[normalized("X-User-Id"), normalized("X-User-Email")],
        );
        let left: Vec<_> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(left, vec![("x-user-idx".to_string(), "keep".to_string())]);
    }

    #[test]
    fn only_a_well_formed_bearer_credential_is_a_token() {
        use AuthFailure::{MalformedCredential as Malformed, UnsupportedScheme as Other};
        let ok = |token, canonical| Ok(Credential { token, canonical });
        let table: &[(&[u8], Result<Credential<'_>, AuthFailure>)] = &[
            (b"Bearer abc", ok("abc", true)),
            (b"bearer abc", ok("abc", false)),
            (b"BEARER a-b.c_d~e+f/g==", ok("a-b.c_d~e+f/g==", false)),
            (b"Bearer x", ok("x", true)),
            // Whitespace: exactly one SP, nothing trimmed.
            (b"Bearer\tabc", Err(Malformed)),
            (b"Bearer  abc", Err(Malformed)),
            (b"Bearer abc ", Err(Malformed)),
            (b" Bearer abc", Err(Malformed)),
            (b"Bearer ", Err(Malformed)),
            (b"Bearer", Err(Malformed)),
            (b"", Err(Malformed)),
            // Bytes outside token68.
            ("Bearer abc\u{e9}".as_bytes(), Err(Malformed)),
            (b"Bearer ab\xffc", Err(Malformed)),
            (b"Bearer a b", Err(Malformed)),
            (b"Bearer a,b", Err(Malformed)),
            (b"Bearer =abc", Err(Malformed)),
            (b"Bearer ab=c", Err(Malformed)),
            (b"Bearer \"abc\"", Err(Malformed)),
            (b"Bearer,abc", Err(Malformed)),
            // Other schemes.
            (b"Basic dXNlcjpwYXNz", Err(Other)),
            (b"Bearerx abc", Err(Other)),
            (b"Token", Err(Other)),
            (b"Basic\tdXNlcjpwYXNz", Err(Malformed)),
        ];
        for (value, want) in table {
            assert_eq!(
                &parse_bearer(value),
                want,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn one_authorization_header_or_none() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), Ok(None));
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(
            bearer(&h),
            Ok(Some(Credential {
                token: "abc",
                canonical: true
            }))
        );
        h.insert(AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(
            bearer(&h),
            Err(AuthError::Unauthorized(AuthFailure::UnsupportedScheme))
        );
        h.insert(
            AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer ab\xc3\xa9").unwrap(),
        );
        assert_eq!(
            bearer(&h),
            Err(AuthError::Unauthorized(AuthFailure::MalformedCredential))
        );
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        h.append(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Err(AuthError::InvalidRequest));
    }

    /// An independent reading of RFC 6750 §2.1, written differently from [`parse_bearer`]
    /// (on text, with `split_once` and `trim_end_matches`): the token it accepts, if any.
    fn grammar(value: &[u8]) -> Option<(&str, bool)> {
        let text = std::str::from_utf8(value).ok()?;
        let (scheme, token) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("Bearer") {
            return None;
        }
        let unpadded = token.trim_end_matches('=');
        let b64 = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
        (!unpadded.is_empty() && unpadded.chars().all(b64)).then_some((token, scheme == "Bearer"))
    }

    /// Bytes that matter to the grammar, weighted towards near-misses of a valid credential.
    fn credential_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            4 => proptest::sample::select(
                vec![
                    &b"Bearer"[..], b"bearer", b"BEARER", b"bEaReR", b"Basic", b"Bearer ",
                    b"Bearer\t", b"Bearer  ", b" ", b"\t", b"=", b"==", b"abc", b"A-z_0.9~+/",
                    b",", b"\"", b"\xc3\xa9", b"\xff", b"\x00", b"\r\n", b"Beare", b"r",
                ]
            )
            .prop_map(<[u8]>::to_vec),
            1 => proptest::collection::vec(any::<u8>(), 0..4),
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        #![proptest_config(testkit::proptest_config(100_000))]

        /// Any bytes: no panic, and a token exactly when the grammar says so.
        #[test]
        fn fuzz_bearer_parser_accepts_exactly_rfc6750(
            value in proptest::prop_oneof![
                credential_bytes(),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48),
            ]
        ) {
            let got = parse_bearer(&value).ok().map(|c| (c.token, c.canonical));
            proptest::prop_assert_eq!(got, grammar(&value));
            // Through a header map, where the value is one `http` accepts, the same answer.
            if let Ok(v) = http::HeaderValue::from_bytes(&value) {
                let mut h = HeaderMap::new();
                h.insert(AUTHORIZATION, v);
                let via_map = bearer(&h).map(|c| c.map(|c| (c.token.to_string(), c.canonical)));
                let direct = parse_bearer(&value)
                    .map(|c| Some((c.token.to_string(), c.canonical)))
                    .map_err(AuthError::Unauthorized);
                proptest::prop_assert_eq!(via_map, direct);
            }
        }
    }
}
