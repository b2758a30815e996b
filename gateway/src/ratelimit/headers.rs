//! The IETF rate-limit fields, as in draft-ietf-httpapi-ratelimit-headers-10:
//! Structured Field lists with one member per policy checked, the policy name as a String.
//!
//! ```text
//! RateLimit-Policy: "per_user";q=100;w=1, "per_ip";q=20;w=1
//! RateLimit: "per_user";r=42;t=1, "per_ip";r=19;t=1
//! ```
//!
//! - `q`/`w`: the sustained quota, `limit` per `per` (`w` in whole seconds: a `per` that is not
//!   a whole number of seconds is scaled to the next whole second, `q` rounded down).
//! - `r`: requests that would still be admitted now; `t`: seconds until the bucket is full
//!   again (rounded up).
//! - `Retry-After` (on 429): seconds until the refusing policy admits again (rounded up, ≥ 1).

use super::Decision;
use crate::config::model::LimitPolicy;
use crate::seconds;

/// The two field values, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub policy: String,
    pub limit: String,
}

impl Fields {
    pub fn pairs(&self) -> [(&'static str, &str); 2] {
        [
            ("RateLimit-Policy", self.policy.as_str()),
            ("RateLimit", self.limit.as_str()),
        ]
    }
}

/// A 429: the fields of the policies checked so far (the last one refused) and `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub policy: String,
    pub retry_after_secs: u64,
    pub fields: Fields,
}

/// `(q, w)` for a policy.
pub fn quota_window(p: &LimitPolicy) -> (u64, u64) {
    let per_ms = p.per.as_millis().max(1);
    if per_ms.is_multiple_of(1000) {
        return (u64::from(p.limit), (per_ms / 1000) as u64);
    }
    let w = per_ms.div_ceil(1000);
    let q = u128::from(p.limit) * w * 1000 / per_ms;
    (q as u64, w as u64)
}

/// Built with `push_str` and `itoa`, not `write!`: this runs on every limited request, and the
/// formatting machinery was a visible part of its cost.
pub fn fields(seen: &[(&LimitPolicy, Decision)]) -> Fields {
    let mut policy = String::with_capacity(32 * seen.len());
    let mut limit = String::with_capacity(32 * seen.len());
    let mut num = itoa::Buffer::new();
    for (i, (p, d)) in seen.iter().enumerate() {
        if i > 0 {
            policy.push_str(", ");
            limit.push_str(", ");
        }
        let (q, w) = quota_window(p);
        for (out, first, second) in [
            (&mut policy, (";q=", q), (";w=", w)),
            (
                &mut limit,
                (";r=", d.remaining),
                (";t=", seconds::ceil(d.reset)),
            ),
        ] {
            out.push('"');
            out.push_str(&p.name);
            out.push('"');
            for (key, value) in [first, second] {
                out.push_str(key);
                out.push_str(num.format(value));
            }
        }
    }
    Fields { policy, limit }
}

/// The rejection for `seen`, whose last entry is the refusing policy.
pub fn rejection(seen: &[(&LimitPolicy, Decision)]) -> Rejection {
    let (p, d) = seen
        .last()
        .map(|(p, d)| (p.name.clone(), *d))
        .unwrap_or_default();
    Rejection {
        policy: p,
        retry_after_secs: seconds::retry_after(d.retry_after),
        fields: fields(seen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::LimitKey;
    use std::time::Duration;

    fn policy(name: &str, limit: u32, per: Duration) -> LimitPolicy {
        LimitPolicy {
            name: name.into(),
            key: LimitKey::ClientIp,
            limit,
            per,
            burst: limit,
        }
    }

    #[test]
    fn quota_and_window_in_whole_seconds() {
        assert_eq!(
            quota_window(&policy("a", 100, Duration::from_secs(1))),
            (100, 1)
        );
        assert_eq!(
            quota_window(&policy("a", 5, Duration::from_secs(60))),
            (5, 60)
        );
        assert_eq!(
            quota_window(&policy("a", 5, Duration::from_millis(500))),
            (10, 1)
        );
        assert_eq!(
            quota_window(&policy("a", 10, Duration::from_millis(1500))),
            (13, 2)
        );
    }

    #[test]
    fn fields_are_structured_field_lists() {
        let a = policy("per_user", 100, Duration::from_secs(1));
        let b = policy("per_ip", 20, Duration::from_secs(1));
        let ok = Decision {
            allowed: true,
            remaining: 42,
            reset: Duration::from_millis(580),
            retry_after: Duration::ZERO,
        };
        let no = Decision {
            allowed: false,
            remaining: 0,
            reset: Duration::from_millis(1000),
            retry_after: Duration::from_millis(50),
        };
        let f = fields(&[(&a, ok)]);
        assert_eq!(f.policy, "\"per_user\";q=100;w=1");
        assert_eq!(f.limit, "\"per_user\";r=42;t=1");
        let r = rejection(&[(&a, ok), (&b, no)]);
        assert_eq!(r.policy, "per_ip");
        assert_eq!(r.retry_after_secs, 1);
        assert_eq!(
            r.fields.policy,
            "\"per_user\";q=100;w=1, \"per_ip\";q=20;w=1"
        );
        assert_eq!(r.fields.limit, "\"per_user\";r=42;t=1, \"per_ip\";r=0;t=1");
    }
}
