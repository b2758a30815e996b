//! Placing a request in a cohort: which key it is known by (the pin cookie, then the cohort's
//! `by`, then `fallback_by`), that key's [`Position`], and the side of a percent split that owns
//! it. Plain data: the proxy hands in the request's key lookups, never a `Session`.
//!
//! ## The pin cookie
//! A cohort with `pin:` keeps a visitor's position in a cookie, so the side they were dealt as
//! an anonymous visitor (by `cookie.sessionid`, say) stays theirs after they log in (when `by:
//! claim.sub` would place them elsewhere). The cookie is set on the first answer that placed the
//! request by a key and found no valid pin, and holds
//!
//! ```text
//!   v1.<position, 16 hex digits>.<expiry, unix seconds>.<HMAC-SHA256(secret, "cohort|seed|position|expiry"), base64url>
//! ```
//!
//! A pin whose signature does not verify (forged, signed with another secret, or for the
//! cohort before its salt changed), that has expired, or that is malformed is ignored: the
//! request is placed by its keys and gets a fresh pin. A pin with less than half its `ttl` left
//! is re-signed on the answer (same position), so a visitor who keeps coming back keeps it; one
//! who stays away longer than `ttl` is placed by their keys again. Rotating the secret voids
//! every pin at once. The position in a pin is not a side: raising the percent moves pinned visitors exactly
//! as it moves everyone (only onto the new side).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::model::{Cohort, CohortSplit, PinSpec, StickyKey};
use crate::split::{Position, in_share};

/// Which side of a percent split a request is on, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement<'a> {
    /// `to` or `rest` of the split.
    pub upstream: &'a str,
    /// Where the request stands; `None` when it had no key (then it is on `rest`).
    pub position: Option<Position>,
    pub by: PlacedBy<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacedBy<'a> {
    /// A valid pin cookie.
    Pin,
    /// This key of the cohort.
    Key(&'a StickyKey),
    /// No key at all: the `rest` side, never a random one.
    Nothing,
}

/// Places a request: `pin`, a verified pin's position if any; `key`, the request's value for
/// one of the cohort's keys (`None` when it has none).
pub fn place<'a>(
    split: &'a CohortSplit,
    pin: Option<Position>,
    mut key: impl FnMut(&StickyKey) -> Option<Vec<u8>>,
) -> Placement<'a> {
    let cohort = &split.cohort;
    let (position, by) = match pin {
        Some(p) => (Some(p), PlacedBy::Pin),
        None => cohort
            .keys()
            .find_map(|k| key(k).map(|v| (Some(Position::of(cohort.seed, &v)), PlacedBy::Key(k))))
            .unwrap_or((None, PlacedBy::Nothing)),
    };
    let upstream = match position {
        Some(p) if in_share(split.basis_points, p) => split.to.as_str(),
        _ => split.rest.as_str(),
    };
    Placement {
        upstream,
        position,
        by,
    }
}

/// The pin cookie's value for `position`, valid for the pin's `ttl` from `now`.
pub fn sign_pin(cohort: &Cohort, pin: &PinSpec, position: Position, now: SystemTime) -> String {
    let expiry = unix(now) + pin.ttl.as_secs();
    let tag = hmac::sign(key(pin), signed(cohort, position, expiry).as_bytes());
    format!(
        "v1.{:016x}.{expiry}.{}",
        position.0,
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// A pin that verified: its position, and whether it is due for renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidPin {
    pub position: Position,
    /// Less than half its `ttl` is left: the answer re-signs the same position, so a visitor
    /// who keeps coming back keeps their pin.
    pub renew: bool,
}

/// The pin a cookie holds, if its signature verifies, it has not expired at `now`, and it
/// expires no later than `ttl` from now (a pin issued under a longer `ttl` is not kept past
/// the current one).
pub fn verify_pin(
    cohort: &Cohort,
    pin: &PinSpec,
    value: &str,
    now: SystemTime,
) -> Option<ValidPin> {
    let mut parts = value.split('.');
    let (Some("v1"), Some(pos), Some(exp), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if pos.len() != 16
        || !pos
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let position = Position(u64::from_str_radix(pos, 16).ok()?);
    let expiry: u64 = exp.parse().ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    // The signature first (constant time), then the time: a forged pin learns nothing.
    hmac::verify(key(pin), signed(cohort, position, expiry).as_bytes(), &tag).ok()?;
    let (now, ttl) = (unix(now), pin.ttl.as_secs());
    (expiry > now && expiry <= now.saturating_add(ttl)).then_some(ValidPin {
        position,
        renew: expiry - now < ttl / 2,
    })
}

/// The `Set-Cookie` value for a pin: kept `ttl` from now (re-signed while the visitor keeps
/// coming), for the whole site, not readable by scripts.
pub fn set_cookie(pin: &PinSpec, value: &str, secure: bool) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        pin.cookie,
        pin.ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

fn key(pin: &PinSpec) -> &hmac::Key {
    pin.secret.key()
}

/// What a pin signs: the cohort and its salt's seed (a pin of one cohort, or of the cohort
/// before its salt changed, is not one now), the position and the expiry.
fn signed(cohort: &Cohort, position: Position, expiry: u64) -> String {
    format!(
        "{}|{:016x}|{:016x}|{expiry}",
        cohort.name, cohort.seed, position.0
    )
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::model::Secret;

    fn cohort(name: &str, secret: &[u8]) -> Cohort {
        Cohort {
            name: name.into(),
            by: StickyKey::Claim("sub".into()),
            fallback_by: Some(StickyKey::Cookie("sessionid".into())),
            salt: name.into(),
            seed: crate::split::seed(name),
            pin: Some(PinSpec {
                cookie: "gw_cohort".into(),
                ttl: Duration::from_secs(3600),
                secret_file: "/dev/null".into(),
                secret: Secret::new(secret),
            }),
        }
    }

    fn split(c: Cohort, basis_points: u32) -> CohortSplit {
        CohortSplit {
            to: "new".into(),
            rest: "old".into(),
            basis_points,
            cohort: Arc::new(c),
        }
    }

    #[test]
    fn the_first_key_present_places_the_request_and_none_means_rest() {
        let s = split(cohort("early", &[7; 32]), 10_000);
        let claim = StickyKey::Claim("sub".into());
        let cookie = StickyKey::Cookie("sessionid".into());
        let by_claim = place(&s, None, |k| (*k == claim).then(|| b"42".to_vec()));
        assert_eq!(by_claim.by, PlacedBy::Key(&claim));
        assert_eq!(by_claim.upstream, "new", "100%: everyone with a key");
        assert_eq!(by_claim.position, Some(Position::of(s.cohort.seed, b"42")));
        let by_cookie = place(&s, None, |k| (*k == cookie).then(|| b"abc".to_vec()));
        assert_eq!(by_cookie.by, PlacedBy::Key(&cookie));
        let nothing = place(&s, None, |_| None);
        assert_eq!((nothing.upstream, nothing.by), ("old", PlacedBy::Nothing));
        let pinned = place(&s, Some(Position(0)), |_| Some(b"42".to_vec()));
        assert_eq!(
            (pinned.by, pinned.position),
            (PlacedBy::Pin, Some(Position(0)))
        );
        let none = split(cohort("early", &[7; 32]), 0);
        assert_eq!(place(&none, Some(Position(0)), |_| None).upstream, "old");
    }

    #[test]
    fn a_pin_verifies_until_it_expires_and_a_forged_one_never() {
        let c = cohort("early", &[7; 32]);
        let pin = c.pin.clone().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let value = sign_pin(&c, &pin, Position(0xdead_beef), now);
        assert!(
            value.starts_with("v1.00000000deadbeef.1800003600."),
            "{value}"
        );
        let valid = |renew| {
            Some(ValidPin {
                position: Position(0xdead_beef),
                renew,
            })
        };
        assert_eq!(verify_pin(&c, &pin, &value, now), valid(false));
        let half = now + Duration::from_secs(1801);
        assert_eq!(verify_pin(&c, &pin, &value, half), valid(true), "renew");
        let later = now + Duration::from_secs(3600);
        assert_eq!(verify_pin(&c, &pin, &value, later), None, "expired");
        // A shorter ttl since: the pin is not kept past it.
        let mut shorter = pin.clone();
        shorter.ttl = Duration::from_secs(60);
        assert_eq!(verify_pin(&c, &shorter, &value, now), None);
        // The same cohort with another salt: its pins are void.
        let mut resalted = cohort("early", &[7; 32]);
        resalted.seed = crate::split::seed("early-2027");
        assert_eq!(verify_pin(&resalted, &pin, &value, now), None);
        let upper = value.replacen("deadbeef", "DEADBEEF", 1);
        // Another position, expiry or cohort under the same tag; another secret; junk.
        let forged_position = value.replacen("deadbeef", "00000000", 1);
        let forged_expiry = value.replacen("1800003600", "1900003600", 1);
        let other_cohort = cohort("late", &[7; 32]);
        let other_secret = cohort("early", &[8; 32]);
        for bad in [
            forged_position.as_str(),
            forged_expiry.as_str(),
            upper.as_str(),
            "",
            "v1",
            "v1.x.y.z",
            "v2.00000000deadbeef.1800003600.AAAA",
            &format!("{value}.extra"),
        ] {
            assert_eq!(verify_pin(&c, &pin, bad, now), None, "{bad}");
        }
        assert_eq!(verify_pin(&other_cohort, &pin, &value, now), None);
        let other_pin = other_secret.pin.clone().unwrap();
        assert_eq!(verify_pin(&other_secret, &other_pin, &value, now), None);
        assert_eq!(
            set_cookie(&pin, "v", true),
            "gw_cohort=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
