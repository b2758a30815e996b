//! Identity headers and the bearer credential.
//!
//! Every header named in `claims_to_headers` is removed from the client's request in every
//! spelling — any case, `_` for `-`, repeated — before the verified values are added, on every
//! route (`auth: none` included), so a backend can trust them.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use pingora_http::RequestHeader;

use super::AuthError;

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
    pub token: &'a str,
    /// The scheme was spelled exactly `Bearer`.
    pub canonical: bool,
}

/// The request's bearer token: `None` without an `Authorization` header or with another
/// scheme; an error for two `Authorization` headers (RFC 6750 §2: one method only).
pub fn bearer(headers: &HeaderMap) -> Result<Option<Credential<'_>>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest);
    }
    let Ok(text) = first.to_str() else {
        return Ok(None);
    };
    let Some((scheme, rest)) = text.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim();
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential {
        token,
        canonical: scheme == "Bearer" && rest.len() == token.len(),
    }))
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
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), Ok(None));
        h.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(
            bearer(&h),
            Ok(Some(Credential {
                token: "abc",
                canonical: false
            }))
        );
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(
            bearer(&h),
            Ok(Some(Credential {
                token: "abc",
                canonical: true
            }))
        );
        h.insert(AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(bearer(&h), Ok(None));
        h.append(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Err(AuthError::InvalidRequest));
    }
}
