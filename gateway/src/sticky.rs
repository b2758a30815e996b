//! A request's value for a split key (`sticky_by:` of a weighted split, `by:` and
//! `fallback_by:` of a cohort), from plain data: the request's headers, its client IP and its
//! verified identity. The proxy places requests with it and `gateway explain` shows where a
//! user goes with it, so the two read a key the same way:
//!
//! | key | value |
//! |---|---|
//! | `header.NAME` | the bytes of the first `NAME` header (an empty one is a key, `""`) |
//! | `cookie.NAME` | the value of the first `NAME` cookie, over every `Cookie` header in order |
//! | `client_ip` | the client address after `trusted_proxies`, as text (`192.0.2.7`, `2001:db8::1`) |
//! | `claim.NAME` | the verified claim: a string as-is, another value as compact JSON (`42`, `true`); `null` is no key |
//!
//! Nothing here touches a pingora `Session`.

use std::net::IpAddr;

use http::HeaderMap;

use crate::auth::verify::Verified;
use crate::config::model::StickyKey;

/// What a key is read from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub headers: &'a HeaderMap,
    /// After `trusted_proxies`.
    pub client_ip: Option<IpAddr>,
    /// The verified token, when the route checked one.
    pub identity: Option<&'a Verified>,
}

/// The request's value for `key`, if it has one.
pub fn key(key: &StickyKey, inputs: &Inputs<'_>) -> Option<Vec<u8>> {
    match key {
        StickyKey::Header(name) => inputs.headers.get(name).map(|v| v.as_bytes().to_vec()),
        StickyKey::Cookie(name) => cookie(inputs.headers, name).map(<[u8]>::to_vec),
        StickyKey::ClientIp => inputs.client_ip.map(|ip| ip.to_string().into_bytes()),
        StickyKey::Claim(name) => inputs.identity.and_then(|v| v.claim_key(name)),
    }
}

/// The value of the request's cookie `name`, if it sent one: the first pair named so, over
/// every `Cookie` header in order (`a=1; b=2`, whitespace around pairs ignored). Read as bytes,
/// so another cookie with bytes outside ASCII does not hide this one.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter_map(|pair| {
            let eq = pair.iter().position(|b| *b == b'=')?;
            Some((&pair[..eq], &pair[eq + 1..]))
        })
        .find(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};
    use serde_json::json;

    use super::*;
    use crate::auth::testing::{NOW, config, good_claims, signer};
    use crate::auth::verify::verify;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn header(name: &'static str) -> StickyKey {
        StickyKey::Header(HeaderName::from_static(name))
    }

    #[test]
    fn each_kind_of_key_as_a_table() {
        let h = headers(&[
            ("x-user", "u-1"),
            ("x-user", "u-2"),
            ("x-empty", ""),
            ("cookie", "theme=dark; sessionid=abc"),
            ("cookie", "sessionid=later; other=x=y"),
        ]);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let inputs = Inputs {
            headers: &h,
            client_ip: Some(ip),
            identity: None,
        };
        let cases: [(StickyKey, Option<&[u8]>); 8] = [
            (header("x-user"), Some(b"u-1")),
            (header("x-empty"), Some(b"")),
            (header("x-none"), None),
            (StickyKey::Cookie("sessionid".into()), Some(b"abc")),
            (StickyKey::Cookie("other".into()), Some(b"x=y")),
            (StickyKey::Cookie("session".into()), None),
            (StickyKey::ClientIp, Some(b"2001:db8::1")),
            (StickyKey::Claim("sub".into()), None),
        ];
        for (k, want) in cases {
            assert_eq!(key(&k, &inputs).as_deref(), want, "{k}");
        }
        // A cookie with bytes outside ASCII (set from a script, say) hides nothing.
        let mut raw = HeaderMap::new();
        raw.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"tracking=caf\xc3\xa9; sessionid=s1").unwrap(),
        );
        let raw_inputs = Inputs {
            headers: &raw,
            ..inputs
        };
        let session = StickyKey::Cookie("sessionid".into());
        assert_eq!(key(&session, &raw_inputs).as_deref(), Some(&b"s1"[..]));
        let none = Inputs {
            client_ip: None,
            ..inputs
        };
        assert_eq!(key(&StickyKey::ClientIp, &none), None);
    }

    #[test]
    fn a_claim_is_read_from_the_verified_token() {
        let s = signer();
        let mut cfg = config();
        cfg.kept_claims = vec!["sub".into(), "n".into(), "flag".into(), "gone".into()];
        let mut claims = good_claims();
        claims["sub"] = json!("42");
        claims["n"] = json!(42);
        claims["flag"] = json!(true);
        claims["gone"] = json!(null);
        let verified = verify(&s.sign(&claims), &s.keys, &cfg, NOW).expect("valid");
        let h = HeaderMap::new();
        let inputs = Inputs {
            headers: &h,
            client_ip: None,
            identity: Some(&verified),
        };
        let claim = |name: &str| key(&StickyKey::Claim(name.into()), &inputs);
        assert_eq!(claim("sub").as_deref(), Some(&b"42"[..]));
        assert_eq!(
            claim("n").as_deref(),
            Some(&b"42"[..]),
            "a number as JSON text"
        );
        assert_eq!(claim("flag").as_deref(), Some(&b"true"[..]));
        assert_eq!(claim("gone"), None, "null is no key");
        assert_eq!(
            claim("scope"),
            None,
            "a claim the config does not read is not kept"
        );
    }
}
