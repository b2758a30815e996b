//! Checks of a route's `shadow:` block (`docs/shadow.md`): the candidate upstream, which
//! requests are copied (methods, writes, sample, sizes), and how answers are compared and
//! recorded (`compare:`, `noise`, `record:`).

use http::{HeaderName, Method};

use super::model::ShadowSpec;
use super::upstreams::Upstreams;
use super::yaml::{index, join};
use super::{Problem, Validator, defaults, duration, file};
use crate::shadow::compare::{BodyMode, CompareSpec, Numbers, StatusMode};
use crate::shadow::pointer::Pattern;

/// A method a copy may repeat without `writes: dry_run`: one that changes nothing.
fn is_read(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Validator<'_> {
    pub(super) fn shadow(
        &mut self,
        s: file::Shadow,
        path: &str,
        upstreams: &Upstreams,
    ) -> Option<ShadowSpec> {
        let before = self.count();
        self.known_upstream(&s.upstream, &join(path, "upstream"), upstreams);
        let sample = s.sample.unwrap_or(defaults::SHADOW_SAMPLE);
        self.ratio(sample, &join(path, "sample"));
        let noise = s.noise.unwrap_or(defaults::SHADOW_NOISE);
        self.ratio(noise, &join(path, "noise"));
        let dry_run = match s.writes.as_deref() {
            None | Some("off") => false,
            Some("dry_run") => true,
            Some(other) => {
                self.one_of(&join(path, "writes"), "off or dry_run", other);
                false
            }
        };
        let methods_path = join(path, "methods");
        let methods = match s.methods {
            None => defaults::SHADOW_METHODS.to_vec(),
            Some(list) => {
                if list.is_empty() {
                    self.err(&methods_path, Problem::Empty);
                }
                self.methods(&list, &methods_path, true)
            }
        };
        if !dry_run && let Some(i) = methods.iter().position(|m| !is_read(m)) {
            self.err(
                &index(&methods_path, i),
                Problem::ShadowWriteWithoutDryRun(methods[i].clone()),
            );
        }
        let max_body = s.max_body.map_or(defaults::SHADOW_MAX_BODY, |b| b.0);
        self.within(
            &join(path, "max_body"),
            max_body,
            defaults::SHADOW_MAX_BODY_RANGE,
        );
        let max_response = s
            .max_response
            .map_or(defaults::SHADOW_MAX_RESPONSE, |b| b.0);
        self.within(
            &join(path, "max_response"),
            max_response,
            defaults::SHADOW_MAX_RESPONSE_RANGE,
        );
        let timeout = duration::or(s.timeout, defaults::SHADOW_TIMEOUT);
        self.within(
            &join(path, "timeout"),
            timeout,
            defaults::SHADOW_TIMEOUT_RANGE,
        );
        let max_in_flight = s.max_in_flight.unwrap_or(defaults::SHADOW_MAX_IN_FLIGHT);
        self.within(
            &join(path, "max_in_flight"),
            max_in_flight,
            defaults::SHADOW_MAX_IN_FLIGHT_RANGE,
        );
        let compare = self.compare(s.compare, &join(path, "compare"));
        let record_path = join(path, "record");
        let mismatches = s
            .record
            .mismatches
            .unwrap_or(defaults::SHADOW_RECORD_MISMATCHES);
        self.within(
            &join(&record_path, "mismatches"),
            mismatches,
            defaults::SHADOW_RECORD_MISMATCHES_RANGE,
        );
        let redact = self.patterns(&s.record.redact, &join(&record_path, "redact"));
        if self.count() > before {
            return None;
        }
        Some(ShadowSpec {
            upstream: s.upstream,
            sample,
            methods,
            dry_run,
            max_body,
            max_response,
            timeout,
            max_in_flight,
            compare,
            noise,
            mismatches,
            redact,
        })
    }

    fn compare(&mut self, c: file::ShadowCompare, path: &str) -> CompareSpec {
        let status = match c.status.as_deref() {
            None | Some("exact") => StatusMode::Exact,
            Some("class") => StatusMode::Class,
            Some(other) => {
                self.one_of(&join(path, "status"), "exact or class", other);
                StatusMode::Exact
            }
        };
        let body = match c.body.as_deref() {
            None | Some("json") => BodyMode::Json,
            Some("bytes") => BodyMode::Bytes,
            Some("none") => BodyMode::None,
            Some(other) => {
                self.one_of(&join(path, "body"), "json, bytes or none", other);
                BodyMode::Json
            }
        };
        let numbers = match c.numbers.as_deref() {
            None | Some("exact") => Numbers::Exact,
            Some("decimal") => Numbers::Decimal,
            Some(other) => {
                self.one_of(&join(path, "numbers"), "exact or decimal", other);
                Numbers::Exact
            }
        };
        let headers_path = join(path, "headers");
        let mut headers: Vec<HeaderName> = Vec::new();
        for (i, h) in c.headers.iter().enumerate() {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) if !headers.contains(&name) => headers.push(name),
                Ok(_) => {}
                Err(_) => self.err(&index(&headers_path, i), Problem::BadHeaderName(h.clone())),
            }
        }
        CompareSpec {
            status,
            headers,
            body,
            ignore: self.patterns(&c.ignore, &join(path, "ignore")),
            unordered: self.patterns(&c.unordered, &join(path, "unordered")),
            numbers,
        }
    }

    /// JSON Pointer patterns (`/items/*/id`), each refused at its own index.
    fn patterns(&mut self, list: &[String], path: &str) -> Vec<Pattern> {
        list.iter()
            .enumerate()
            .filter_map(|(i, text)| match Pattern::parse(text) {
                Ok(p) => Some(p),
                Err(error) => {
                    self.err(
                        &index(path, i),
                        Problem::BadPointer {
                            pointer: text.clone(),
                            error,
                        },
                    );
                    None
                }
            })
            .collect()
    }

    fn one_of(&mut self, path: &str, expected: &'static str, got: &str) {
        self.err(
            path,
            Problem::NotOneOf {
                expected,
                got: got.to_string(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::load_str;
    use crate::config::model::RouteSpec;
    use crate::config::tests::{at, problems};

    const UPSTREAMS: &str = "upstreams:\n  monolith: { targets: [\"127.0.0.1:1\"] }\n  payments: { targets: [\"127.0.0.1:2\"] }\n";

    fn route(shadow: &str) -> String {
        format!(
            "{UPSTREAMS}routes:\n  - name: r\n    match: {{}}\n    upstream: monolith\n    shadow: {shadow}\n"
        )
    }

    fn loaded(shadow: &str) -> Arc<RouteSpec> {
        let config = load_str("gw.yaml", &route(shadow)).expect("a valid config");
        config.routes[0].clone()
    }

    #[test]
    fn a_shadow_with_only_its_upstream_takes_every_default() {
        let s = loaded("{ upstream: payments }")
            .shadow
            .clone()
            .expect("a shadow");
        assert_eq!(s.upstream, "payments");
        assert_eq!(s.sample, 1.0);
        assert_eq!(s.methods, vec![Method::GET, Method::HEAD]);
        assert!(!s.dry_run);
        assert_eq!(s.max_body, 64 * 1024);
        assert_eq!(s.max_response, 1024 * 1024);
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.max_in_flight, 64);
        assert_eq!(s.compare, CompareSpec::default());
        assert_eq!(s.noise, 0.0);
        assert_eq!(s.mismatches, 200);
        assert!(s.redact.is_empty());
    }

    #[test]
    fn the_issue_shape_parses() {
        let s = loaded(
            "\n      upstream: payments\n      sample: 0.2\n      methods: [GET, HEAD, POST]\n      writes: dry_run\n      max_body: 64KiB\n      max_response: 1MiB\n      timeout: 2s\n      max_in_flight: 16\n      compare:\n        status: class\n        headers: [content-type, Location]\n        body: json\n        ignore: [/id, /created_at, /items/*/updated_at]\n        unordered: [/items]\n        numbers: decimal\n      noise: 0.02\n      record: { mismatches: 50, redact: [/email, /card/*] }",
        )
        .shadow
        .clone()
        .expect("a shadow");
        assert_eq!(s.sample, 0.2);
        assert_eq!(s.methods, vec![Method::GET, Method::HEAD, Method::POST]);
        assert!(s.dry_run);
        assert_eq!((s.max_body, s.max_response), (65_536, 1_048_576));
        assert_eq!(s.max_in_flight, 16);
        assert_eq!(s.compare.status, StatusMode::Class);
        assert_eq!(
            s.compare.headers,
            vec![http::header::CONTENT_TYPE, http::header::LOCATION]
        );
        assert_eq!(s.compare.numbers, Numbers::Decimal);
        assert_eq!(s.compare.ignore.len(), 3);
        assert_eq!(s.compare.unordered[0].to_string(), "/items");
        assert_eq!(s.noise, 0.02);
        assert_eq!(s.mismatches, 50);
        assert_eq!(s.redact[1].to_string(), "/card/*");
        let bytes = loaded("{ upstream: payments, max_body: 1000, max_response: 2 MB }")
            .shadow
            .clone()
            .expect("a shadow");
        assert_eq!((bytes.max_body, bytes.max_response), (1000, 2_000_000));
    }

    #[test]
    fn shadow_mistakes_are_named_at_their_field() {
        assert_eq!(
            problems(&route("{ upstream: payments, methods: [GET, POST] }")),
            at([(
                "routes[0].shadow.methods[1]",
                Problem::ShadowWriteWithoutDryRun(Method::POST)
            )])
        );
        assert_eq!(
            problems(&route(
                "{ upstream: payments, writes: on, sample: 1.5, compare: { body: xml, ignore: [id] } }"
            )),
            at([
                (
                    "routes[0].shadow.writes",
                    Problem::NotOneOf {
                        expected: "off or dry_run",
                        got: "on".into()
                    }
                ),
                ("routes[0].shadow.sample", Problem::NotARatio(1.5)),
                (
                    "routes[0].shadow.compare.body",
                    Problem::NotOneOf {
                        expected: "json, bytes or none",
                        got: "xml".into()
                    }
                ),
                (
                    "routes[0].shadow.compare.ignore[0]",
                    Problem::BadPointer {
                        pointer: "id".into(),
                        error: crate::shadow::pointer::PatternError::NoLeadingSlash
                    }
                ),
            ])
        );
        let unknown = problems(&route("{ upstream: nowhere }"));
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].0, "routes[0].shadow.upstream");
        let typo = problems(&route("{ upstream: payments, sampel: 0.5 }"));
        assert_eq!(typo.len(), 1, "{typo:?}");
        assert!(typo[0].0.starts_with("routes[0].shadow"), "{typo:?}");
        let size = problems(&route("{ upstream: payments, max_body: lots }"));
        assert_eq!(size.len(), 1, "{size:?}");
        let range = problems(&route("{ upstream: payments, max_in_flight: 0 }"));
        assert_eq!(range[0].0, "routes[0].shadow.max_in_flight");
    }
}
