//! Checks of `cohorts:`: who moves first on the routes that name a cohort (`split: { to,
//! percent, cohort, rest }`), its keys, its salt and its pin cookie. The routes' side of it
//! (percent, `to`, `rest`, a claim key on a route without tokens) is in `routes.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::model::{Cohort, PinSpec, Secret, StickyKey};
use super::problem::Named;
use super::routes::parse_sticky;
use super::yaml::join;
use super::{Problem, Validator, defaults, duration, file, valid_name};

/// The cohorts that passed their checks, and every name declared, so a route naming a broken
/// cohort is not also told it is unknown.
pub(super) struct Cohorts {
    pub(super) valid: BTreeMap<String, Arc<Cohort>>,
    declared: BTreeSet<String>,
}

impl Cohorts {
    pub(super) fn is_declared(&self, name: &str) -> bool {
        self.declared.contains(name)
    }
}

impl Validator<'_> {
    /// `cohorts:`, each on its own.
    pub(super) fn cohorts(&mut self, raw: serde_json::Map<String, serde_json::Value>) -> Cohorts {
        let declared = raw.keys().cloned().collect();
        let mut valid = BTreeMap::new();
        let mut pin_cookies: BTreeMap<String, String> = BTreeMap::new();
        for (name, v) in raw {
            let path = join("cohorts", &name);
            let Some(c) = self.cohort(&name, v, &path) else {
                continue;
            };
            // Two cohorts pinning in one cookie would replace each other's pin on every
            // answer (a pin of one cohort never verifies for another).
            if let Some(pin) = &c.pin {
                if let Some(first) = pin_cookies.get(&pin.cookie) {
                    self.err(
                        &join(&join(&path, "pin"), "cookie"),
                        Problem::PinCookieTwice {
                            cookie: pin.cookie.clone(),
                            first: first.clone(),
                        },
                    );
                    continue;
                }
                pin_cookies.insert(pin.cookie.clone(), name.clone());
            }
            valid.insert(name, Arc::new(c));
        }
        Cohorts { valid, declared }
    }

    fn cohort(&mut self, name: &str, v: serde_json::Value, path: &str) -> Option<Cohort> {
        let before = self.count();
        if !valid_name(name) {
            self.err(path, Problem::BadName(Named::Cohort, name.to_string()));
        }
        let c: file::Cohort = self.decode(v, path)?;
        let mut key = |text: &str, field: &str| {
            parse_sticky(text)
                .map_err(|e| self.err(&join(path, field), e))
                .ok()
        };
        let by = key(&c.by, "by");
        let fallback_by = c.fallback_by.as_deref().map(|k| key(k, "fallback_by"));
        let salt = c.salt.unwrap_or_else(|| name.to_string());
        if salt.is_empty() {
            self.err(&join(path, "salt"), Problem::Empty);
        }
        let pin = c.pin.and_then(|p| self.pin(name, p, &join(path, "pin")));
        if self.count() > before {
            return None;
        }
        Some(Cohort {
            name: name.to_string(),
            by: by?,
            fallback_by: fallback_by.flatten(),
            seed: crate::split::seed(&salt),
            salt,
            pin,
        })
    }

    /// `pin: { cookie, ttl, secret_file }`: the secret is read now, so `validate`, a start and
    /// a reload all refuse a missing or short one.
    fn pin(&mut self, cohort: &str, p: file::Pin, path: &str) -> Option<PinSpec> {
        let before = self.count();
        let cookie = p.cookie.unwrap_or_else(|| defaults::pin_cookie(cohort));
        if cookie.is_empty() || !cookie.bytes().all(is_cookie_name_byte) {
            self.err(
                &join(path, "cookie"),
                Problem::BadCookieName(cookie.clone()),
            );
        }
        let ttl = duration::or(p.ttl, defaults::PIN_TTL);
        self.within(&join(path, "ttl"), ttl, defaults::PIN_TTL_RANGE);
        let secret_path = join(path, "secret_file");
        let secret = match read_secret(&p.secret_file) {
            Err(e) => {
                self.err(
                    &secret_path,
                    Problem::CannotRead {
                        file: p.secret_file.clone(),
                        error: e.to_string(),
                    },
                );
                None
            }
            Ok(None) => {
                self.err(
                    &secret_path,
                    Problem::LongSecret {
                        max: defaults::PIN_SECRET_MAX_BYTES,
                    },
                );
                None
            }
            Ok(Some(bytes)) => {
                // One line ending is not key material (`echo KEY > FILE`); other bytes are, even
                // whitespace (a random key may end with any byte).
                let key = bytes
                    .strip_suffix(b"\r\n")
                    .or_else(|| bytes.strip_suffix(b"\n"))
                    .unwrap_or(&bytes);
                if key.len() < defaults::PIN_SECRET_MIN_BYTES {
                    self.err(
                        &secret_path,
                        Problem::ShortSecret {
                            bytes: key.len(),
                            min: defaults::PIN_SECRET_MIN_BYTES,
                        },
                    );
                }
                Some(Secret::new(key))
            }
        };
        if self.count() > before {
            return None;
        }
        Some(PinSpec {
            cookie,
            ttl,
            secret_file: PathBuf::from(p.secret_file),
            secret: secret?,
        })
    }
}

/// The secret file's bytes, read no further than [`defaults::PIN_SECRET_MAX_BYTES`] (`None`:
/// longer). Only a regular file: a FIFO or a device such as `/dev/zero` must not hang the load.
fn read_secret(file: &str) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    if !std::fs::metadata(file)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let max = defaults::PIN_SECRET_MAX_BYTES;
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() <= max).then_some(bytes))
}

/// RFC 6265 §4.1.1 cookie-name (an RFC 9110 token).
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Cohort {
    /// The keys a request is placed by, in order.
    pub fn keys(&self) -> impl Iterator<Item = &StickyKey> {
        std::iter::once(&self.by).chain(self.fallback_by.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{at, load, problems};

    const UPSTREAMS: &str =
        "upstreams:\n  new: { targets: [127.0.0.1:9] }\n  old: { targets: [127.0.0.1:10] }\n";

    fn with_cohorts(cohorts: &str) -> String {
        format!(
            "{UPSTREAMS}cohorts:\n{cohorts}routes:\n  - {{ name: r, match: {{}}, split: {{ to: new, percent: 12.5, cohort: early, rest: old }} }}\n"
        )
    }

    #[test]
    fn a_cohort_and_its_pin_load() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pin.key");
        std::fs::write(&secret, format!("{}\n", "k".repeat(40))).unwrap();
        let c = load(&with_cohorts(&format!(
            "  early: {{ by: header.x-user, fallback_by: cookie.sessionid, pin: {{ secret_file: \"{}\" }} }}\n",
            secret.display()
        )));
        let early = &c.cohorts["early"];
        assert_eq!(early.salt, "early", "the name is the default salt");
        assert_eq!(early.seed, crate::split::seed("early"));
        assert_eq!(early.keys().count(), 2);
        let pin = early.pin.as_ref().unwrap();
        assert_eq!(pin.cookie, "gw_cohort_early");
        assert_eq!(pin.ttl, defaults::PIN_TTL);
        assert_eq!(
            pin.secret.len(),
            40,
            "the trailing newline is not key material"
        );
        assert_eq!(format!("{:?}", pin.secret), "Secret(40 bytes)");
        let crate::config::model::RouteTarget::Cohort(split) = &c.routes[0].target else {
            panic!("{:?}", c.routes[0].target);
        };
        assert_eq!(
            (split.basis_points, split.percent()),
            (1_250, "12.5".into())
        );
    }

    #[test]
    fn cohort_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.key");
        std::fs::write(&short, "too short").unwrap();
        let p = problems(&with_cohorts(&format!(
            "  early: {{ by: body.x, salt: \"\", pin: {{ cookie: \"a b\", ttl: 1s, secret_file: \"{}\" }} }}\n",
            short.display()
        )));
        assert_eq!(
            p,
            at([
                ("cohorts.early.by", Problem::BadStickyKey("body.x".into())),
                ("cohorts.early.salt", Problem::Empty),
                (
                    "cohorts.early.pin.cookie",
                    Problem::BadCookieName("a b".into())
                ),
                (
                    "cohorts.early.pin.ttl",
                    crate::config::tests::out_of_range(
                        defaults::PIN_TTL_RANGE,
                        std::time::Duration::from_secs(1)
                    )
                ),
                (
                    "cohorts.early.pin.secret_file",
                    Problem::ShortSecret { bytes: 9, min: 32 }
                ),
            ])
        );
        // A device that never ends is refused, not read forever; so is a file too long.
        let p = problems(&with_cohorts(
            "  early: { by: header.x-user, pin: { secret_file: /dev/zero } }\n",
        ));
        assert_eq!(
            p,
            at([(
                "cohorts.early.pin.secret_file",
                Problem::CannotRead {
                    file: "/dev/zero".into(),
                    error: "not a regular file".into()
                }
            )])
        );
        let key = dir.path().join("good.key");
        std::fs::write(&key, [1u8; 32]).unwrap();
        let twice = format!(
            "  early: {{ by: header.x-user, pin: {{ cookie: gw_cohort, secret_file: \"{k}\" }} }}\n  late: {{ by: header.x-user, pin: {{ cookie: gw_cohort, secret_file: \"{k}\" }} }}\n",
            k = key.display()
        );
        assert_eq!(
            problems(&with_cohorts(&twice)),
            at([(
                "cohorts.late.pin.cookie",
                Problem::PinCookieTwice {
                    cookie: "gw_cohort".into(),
                    first: "early".into()
                }
            )])
        );
        let long = dir.path().join("long.key");
        std::fs::write(&long, vec![b'k'; 5000]).unwrap();
        let p = problems(&with_cohorts(&format!(
            "  early: {{ by: header.x-user, pin: {{ secret_file: \"{}\" }} }}\n",
            long.display()
        )));
        assert_eq!(
            p,
            at([(
                "cohorts.early.pin.secret_file",
                Problem::LongSecret { max: 4096 }
            )])
        );
    }

    #[test]
    fn percent_split_mistakes_are_named() {
        let route = |split: &str, extra: &str| {
            format!(
                "{UPSTREAMS}cohorts:\n  early: {{ by: claim.sub }}\n  anon: {{ by: header.x-user }}\nroutes:\n  - {{ name: r, match: {{}}, split: {split}{extra} }}\n"
            )
        };
        for (percent, ok) in [
            ("0", true),
            ("100", true),
            ("12.34", true),
            ("0.01", true),
            ("100.01", false),
            ("-1", false),
            ("12.345", false),
        ] {
            let src = route(
                &format!("{{ to: new, percent: {percent}, cohort: anon, rest: old }}"),
                "",
            );
            match ok {
                true => assert!(
                    crate::config::load_str("gw.yaml", &src).is_ok(),
                    "{percent}"
                ),
                false => assert_eq!(
                    problems(&src),
                    at([(
                        "routes[0].split.percent",
                        Problem::BadPercent(percent.parse().unwrap())
                    )]),
                    "{percent}"
                ),
            }
        }
        assert_eq!(
            problems(&route(
                "{ to: neu, percent: 5, cohort: erly, rest: old }",
                ", sticky_by: client_ip"
            )),
            at([
                (
                    "routes[0].split.to",
                    Problem::UnknownUpstream {
                        name: "neu".into(),
                        known: vec!["new".into(), "old".into()]
                    }
                ),
                (
                    "routes[0].split.cohort",
                    Problem::UnknownCohort {
                        name: "erly".into(),
                        known: vec!["anon".into(), "early".into()]
                    }
                ),
                ("routes[0].sticky_by", Problem::StickyWithCohort),
            ])
        );
        assert_eq!(
            problems(&route(
                "{ to: new, percent: 5, cohort: early, rest: old }",
                ""
            )),
            at([(
                "routes[0].split.cohort",
                Problem::CohortClaimWithoutAuth("early".into())
            )])
        );
        let typo = crate::config::tests::errors(&route(
            "{ to: new, percnt: 5, cohort: anon, rest: old }",
            "",
        ));
        assert!(
            typo.contains("routes[0].split.percnt: unknown field `percnt`, expected one of `to`, `percent`, `cohort`, `rest`"),
            "{typo}"
        );
        // The position of an error in the file, as `gateway validate` prints it.
        let text = crate::config::tests::errors(&route(
            "{ to: new, percent: 101, cohort: anon, rest: old }",
            "",
        ));
        assert!(
            text.starts_with("gw.yaml:8:54: routes[0].split.percent: "),
            "{text}"
        );
    }
}
