//! Checks of `routes:`: names, matches, targets (an upstream or a split), prefix rewrites and
//! what each route asks of the caller's token. Each route's `rate_limit` list is checked in
//! `rate_limits.rs`, once the policies are known.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, Method};

use super::cohorts::Cohorts;
use super::duration;
use super::model::{
    CohortSplit, EncodedSlashes, FallbackOn, FallbackSpec, HostMatch, Matcher, PathMatch, Rewrite,
    RouteAuth, RouteSpec, RouteTarget, RouteTimeouts, SplitSide, StatusSet, StickyKey,
};
use super::problem::Named;
use super::upstreams::Upstreams;
use super::yaml::{Pos, index, join};
use super::{Problem, Validator, defaults, file, some_names, valid_name};
use crate::path;
use crate::retry_budget::BudgetConfig;

/// `header.NAME`, `cookie.NAME`, `client_ip`, `claim.NAME`.
pub fn parse_sticky(s: &str) -> Result<StickyKey, Problem> {
    let bad = || Problem::BadStickyKey(s.to_string());
    if s == "client_ip" {
        return Ok(StickyKey::ClientIp);
    }
    let (kind, name) = s.split_once('.').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    match kind {
        "header" => HeaderName::from_bytes(name.as_bytes())
            .map(StickyKey::Header)
            .map_err(|_| bad()),
        "cookie" => Ok(StickyKey::Cookie(name.to_string())),
        "claim" => Ok(StickyKey::Claim(name.to_string())),
        _ => Err(bad()),
    }
}

/// `percent` in hundredths (`12.5` → 1,250), if it is 0 to 100 with at most two decimals.
fn percent_basis_points(percent: f64) -> Option<u32> {
    let hundredths = percent * 100.0;
    let whole = hundredths.round();
    ((0.0..=10_000.0).contains(&whole) && (hundredths - whole).abs() < 1e-6).then_some(whole as u32)
}

impl Validator<'_> {
    /// `routes:`: every valid route in file order. `auth_declared`: whether there is an
    /// `auth:` block at all (valid or not).
    pub(super) fn routes(
        &mut self,
        raw: Vec<serde_json::Value>,
        upstreams: &Upstreams,
        cohorts: &Cohorts,
        auth_declared: bool,
    ) -> Vec<Arc<RouteSpec>> {
        let mut routes = Vec::new();
        let mut seen_names: HashMap<String, Pos> = HashMap::new();
        if raw.is_empty() {
            self.err("routes", Problem::NoRoutes);
        }
        for (i, v) in raw.into_iter().enumerate() {
            let path = index("routes", i);
            if let Some(r) = self.route(i, v, &path, upstreams, cohorts, auth_declared) {
                let name_path = join(&path, "name");
                if let Some(first) = seen_names.get(&r.name) {
                    let first_line = first.line;
                    self.err(
                        &name_path,
                        Problem::DuplicateRouteName {
                            name: r.name.clone(),
                            first_line,
                        },
                    );
                } else {
                    seen_names.insert(r.name.clone(), self.positions.of(&name_path));
                }
                routes.push(Arc::new(r));
            }
        }
        routes
    }

    fn route(
        &mut self,
        position: usize,
        v: serde_json::Value,
        path: &str,
        upstreams: &Upstreams,
        cohorts: &Cohorts,
        auth_declared: bool,
    ) -> Option<RouteSpec> {
        let r: file::Route = self.decode(v, path)?;
        let route_auth = match r.auth {
            None => defaults::ROUTE_AUTH,
            Some(file::RouteAuth::Mode(file::AuthMode::None)) => RouteAuth::None,
            Some(file::RouteAuth::Mode(file::AuthMode::Optional)) => RouteAuth::Optional,
            Some(file::RouteAuth::Mode(file::AuthMode::Required)) => RouteAuth::Required {
                roles: vec![],
                scopes: vec![],
            },
            Some(file::RouteAuth::Rules(rules)) => RouteAuth::Required {
                roles: rules.roles,
                scopes: rules.scopes,
            },
        };
        if route_auth != RouteAuth::None && !auth_declared {
            self.err(&join(path, "auth"), Problem::NoAuthBlock);
        }
        if let Some(StickyKey::Claim(_)) = r.sticky_by.as_deref().and_then(|s| parse_sticky(s).ok())
            && route_auth == RouteAuth::None
        {
            self.err(&join(path, "sticky_by"), Problem::ClaimWithoutAuth);
        }
        let errors_before = self.count();
        if !valid_name(&r.name) {
            self.err(
                &join(path, "name"),
                Problem::BadName(Named::Route, r.name.clone()),
            );
        }
        let matcher = self.matcher(r.matcher, &join(path, "match"));
        let target = match (r.upstream, r.split) {
            (Some(u), None) => {
                self.known_upstream(&u, &join(path, "upstream"), upstreams);
                if r.sticky_by.is_some() {
                    self.err(&join(path, "sticky_by"), Problem::StickyWithoutSplit);
                }
                Some(RouteTarget::Single(u))
            }
            (None, Some(file::Split::Sides(sides))) => {
                let split_path = join(path, "split");
                if sides.is_empty() {
                    self.err(&split_path, Problem::EmptySplit);
                }
                for (i, s) in sides.iter().enumerate() {
                    let side = index(&split_path, i);
                    self.known_upstream(&s.upstream, &join(&side, "upstream"), upstreams);
                    self.within(
                        &join(&side, "weight"),
                        s.weight,
                        defaults::SPLIT_WEIGHT_RANGE,
                    );
                }
                if !sides.is_empty() && sides.iter().map(|s| u64::from(s.weight)).sum::<u64>() == 0
                {
                    self.err(&split_path, Problem::ZeroWeights);
                }
                let sticky_by = r.sticky_by.as_deref().and_then(|s| {
                    parse_sticky(s)
                        .map_err(|e| self.err(&join(path, "sticky_by"), e))
                        .ok()
                });
                Some(RouteTarget::Split {
                    sides: sides
                        .into_iter()
                        .map(|s| SplitSide {
                            upstream: s.upstream,
                            weight: s.weight,
                        })
                        .collect(),
                    sticky_by,
                })
            }
            (None, Some(file::Split::Percent(p))) => {
                let split_path = join(path, "split");
                self.known_upstream(&p.to, &join(&split_path, "to"), upstreams);
                self.known_upstream(&p.rest, &join(&split_path, "rest"), upstreams);
                let basis_points = percent_basis_points(p.percent);
                if basis_points.is_none() {
                    self.err(
                        &join(&split_path, "percent"),
                        Problem::BadPercent(p.percent),
                    );
                }
                if r.sticky_by.is_some() {
                    self.err(&join(path, "sticky_by"), Problem::StickyWithCohort);
                }
                let cohort = cohorts.valid.get(&p.cohort).cloned();
                let cohort_path = join(&split_path, "cohort");
                match &cohort {
                    Some(c)
                        if route_auth == RouteAuth::None
                            && c.keys().any(|k| matches!(k, StickyKey::Claim(_))) =>
                    {
                        self.err(
                            &cohort_path,
                            Problem::CohortClaimWithoutAuth(c.name.clone()),
                        );
                    }
                    Some(_) => {}
                    None if cohorts.is_declared(&p.cohort) => {}
                    None => self.err(
                        &cohort_path,
                        Problem::UnknownCohort {
                            name: p.cohort.clone(),
                            known: some_names(cohorts.valid.keys()),
                        },
                    ),
                }
                Some(RouteTarget::Cohort(CohortSplit {
                    to: p.to,
                    rest: p.rest,
                    basis_points: basis_points.unwrap_or(0),
                    // A missing cohort is an error above; the route is dropped with it.
                    cohort: cohort?,
                }))
            }
            (Some(_), Some(_)) => {
                self.err(path, Problem::UpstreamAndSplit);
                None
            }
            (None, None) => {
                self.err(path, Problem::NoUpstream);
                None
            }
        };
        let prefix = match matcher.as_ref().map(|m| &m.path) {
            Some(PathMatch::Prefix(p)) => Some(p.clone()),
            _ => None,
        };
        let rewrite = match (r.strip_prefix, r.prefix_rewrite) {
            (false, None) => None,
            (true, Some(_)) => {
                self.err(&join(path, "prefix_rewrite"), Problem::StripAndRewrite);
                None
            }
            (true, None) => match &prefix {
                Some(p) => Some(Rewrite::Strip { prefix: p.clone() }),
                None => {
                    self.err(&join(path, "strip_prefix"), Problem::StripWithoutPrefix);
                    None
                }
            },
            (false, Some(to)) => {
                if !to.starts_with('/') {
                    self.err(
                        &join(path, "prefix_rewrite"),
                        Problem::NoLeadingSlash(to.clone()),
                    );
                }
                match &prefix {
                    Some(p) => Some(Rewrite::Replace {
                        prefix: p.clone(),
                        to,
                    }),
                    None => {
                        self.err(&join(path, "prefix_rewrite"), Problem::RewriteWithoutPrefix);
                        None
                    }
                }
            }
        };
        let fallback = r
            .fallback
            .and_then(|fb| self.fallback(fb, &join(path, "fallback"), upstreams));
        let timeouts = self.route_timeouts(r.timeouts.unwrap_or_default(), &join(path, "timeouts"));
        let shadow = r
            .shadow
            .and_then(|s| self.shadow(s, &join(path, "shadow"), upstreams))
            .map(Arc::new);
        if self.count() > errors_before {
            return None;
        }
        Some(RouteSpec {
            index: position,
            line: self.positions.of(path).line,
            name: r.name,
            matcher: matcher?,
            target: target?,
            rewrite,
            auth: route_auth,
            fallback,
            timeouts,
            rate_limit: r.rate_limit,
            shadow,
            migration: None,
        })
    }

    /// `fallback: NAME` (the defaults) or `fallback: { upstream, on, methods, budget }`. A
    /// fallback equal to the route's upstream is allowed and has no effect: flipping a route
    /// back to the monolith must not require deleting its fallback first.
    fn fallback(
        &mut self,
        fb: file::Fallback,
        path: &str,
        upstreams: &Upstreams,
    ) -> Option<FallbackSpec> {
        let before = self.count();
        let rules = match fb {
            file::Fallback::Upstream(upstream) => {
                self.known_upstream(&upstream, path, upstreams);
                file::FallbackRules {
                    upstream,
                    on: None,
                    methods: None,
                    budget: None,
                }
            }
            file::Fallback::Rules(rules) => {
                self.known_upstream(&rules.upstream, &join(path, "upstream"), upstreams);
                rules
            }
        };
        let on = match rules.on {
            None => defaults::fallback_on(),
            Some(list) => self.fallback_on(&list, &join(path, "on")),
        };
        let methods = match rules.methods {
            None => defaults::FALLBACK_METHODS.to_vec(),
            Some(list) => self.methods(&list, &join(path, "methods"), true),
        };
        let b = rules.budget.unwrap_or_default();
        let budget = BudgetConfig {
            ratio: b.ratio.unwrap_or(defaults::FALLBACK_BUDGET_RATIO),
            min_retries_per_second: b
                .min_per_second
                .unwrap_or(defaults::FALLBACK_BUDGET_MIN_PER_SECOND),
            window: duration::or(b.window, defaults::FALLBACK_BUDGET_WINDOW),
        };
        self.budget(
            &budget,
            &join(path, "budget"),
            "min_per_second",
            defaults::FALLBACK_BUDGET_MIN_PER_SECOND_RANGE,
            defaults::FALLBACK_BUDGET_WINDOW_RANGE,
        );
        if self.count() > before {
            return None;
        }
        Some(FallbackSpec {
            upstream: rules.upstream,
            on,
            methods,
            budget,
        })
    }

    /// `on: [unavailable, connect_error, timeout, reset, { status: [502, 503, 5xx] }]`.
    fn fallback_on(&mut self, list: &[file::FallbackWhen], path: &str) -> FallbackOn {
        let mut on = FallbackOn {
            unavailable: false,
            connect_error: false,
            timeout: false,
            reset: false,
            statuses: StatusSet::empty(),
        };
        if list.is_empty() {
            self.err(path, Problem::NoFallbackFailures);
        }
        for (i, when) in list.iter().enumerate() {
            let at = index(path, i);
            match when {
                file::FallbackWhen::Kind(kind) => match kind.as_str() {
                    "unavailable" => on.unavailable = true,
                    "connect_error" => on.connect_error = true,
                    "timeout" => on.timeout = true,
                    "reset" => on.reset = true,
                    other => self.err(&at, Problem::BadFallbackFailure(other.to_string())),
                },
                file::FallbackWhen::Status(s) => {
                    let at = join(&at, "status");
                    if s.status.is_empty() {
                        self.err(&at, Problem::Empty);
                    }
                    let set = self.statuses(&s.status, &at);
                    if let Some(code) = (100..400).find(|c| set.contains(*c)) {
                        self.err(&at, Problem::FallbackOnSuccess(code));
                    }
                    on.statuses.union(&set);
                }
            }
        }
        on
    }

    /// A list of methods, written in upper case. `may_be_empty`: an empty `match.methods` would
    /// match nothing (refused); an empty `fallback.methods` replays only requests carrying an
    /// `Idempotency-Key`.
    pub(super) fn methods(
        &mut self,
        list: &[String],
        path: &str,
        may_be_empty: bool,
    ) -> Vec<Method> {
        if list.is_empty() && !may_be_empty {
            self.err(path, Problem::NoMethods);
        }
        list.iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let upper = s.to_ascii_uppercase();
                let problem = match Method::from_bytes(upper.as_bytes()) {
                    Ok(m) if upper == *s => return Some(m),
                    Ok(_) => Problem::LowerCaseMethod(upper),
                    Err(_) => Problem::BadMethod(s.clone()),
                };
                self.err(&index(path, i), problem);
                None
            })
            .collect()
    }

    /// A route's `timeouts: { response, upgraded_idle, total }`.
    fn route_timeouts(&mut self, t: file::RouteTimeouts, path: &str) -> RouteTimeouts {
        let timeouts = RouteTimeouts {
            response: t.response.map(|d| d.0),
            upgraded_idle: t.upgraded_idle.map(|d| d.0),
            total: t.total.map(|d| d.0),
        };
        for (field, d, range) in [
            (
                "response",
                timeouts.response,
                defaults::RESPONSE_TIMEOUT_RANGE,
            ),
            (
                "upgraded_idle",
                timeouts.upgraded_idle,
                defaults::UPGRADED_IDLE_TIMEOUT_RANGE,
            ),
            ("total", timeouts.total, defaults::TOTAL_TIMEOUT_RANGE),
        ] {
            if let Some(d) = d {
                self.within(&join(path, field), d, range);
            }
        }
        timeouts
    }

    /// An upstream that failed its own checks is still known: it is reported once, there.
    pub(super) fn known_upstream(&mut self, name: &str, at: &str, upstreams: &Upstreams) {
        if !upstreams.is_declared(name) {
            self.err(
                at,
                Problem::UnknownUpstream {
                    name: name.to_string(),
                    known: some_names(upstreams.valid.keys()),
                },
            );
        }
    }

    fn matcher(&mut self, m: file::Match, path: &str) -> Option<Matcher> {
        let before = self.count();
        let path_match = match (m.path_prefix, m.path) {
            (Some(_), Some(_)) => {
                self.err(path, Problem::PathAndPrefix);
                PathMatch::Any
            }
            (Some(p), None) => {
                self.check_route_path(&p, &join(path, "path_prefix"));
                PathMatch::Prefix(p)
            }
            (None, Some(p)) => {
                self.check_route_path(&p, &join(path, "path"));
                PathMatch::Exact(p)
            }
            (None, None) => PathMatch::Any,
        };
        let host = m.host.map(|h| {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix('*') {
                Some(rest) if rest.starts_with('.') && rest.len() > 1 => {
                    HostMatch::Suffix(rest.to_string())
                }
                _ => {
                    if h.is_empty() || h.contains(['*', '/', ' ']) {
                        self.err(&join(path, "host"), Problem::BadHost(h.clone()));
                    }
                    HostMatch::Exact(h)
                }
            }
        });
        let methods = m
            .methods
            .map(|list| self.methods(&list, &join(path, "methods"), false));
        let headers = m
            .headers
            .into_iter()
            .filter_map(|(k, v)| match HeaderName::from_bytes(k.as_bytes()) {
                Ok(name) => Some((name, v)),
                Err(_) => {
                    self.err(&join(&join(path, "headers"), &k), Problem::BadHeaderName(k));
                    None
                }
            })
            .collect();
        if self.count() > before {
            return None;
        }
        Some(Matcher {
            path: path_match,
            host,
            methods,
            headers,
        })
    }

    /// A route path must already be in normal form, or it could never match a request
    /// (requests are normalised before matching).
    fn check_route_path(&mut self, p: &str, at: &str) {
        if !p.starts_with('/') {
            self.err(at, Problem::NoLeadingSlash(p.to_string()));
            return;
        }
        match path::normalize(p, EncodedSlashes::Keep) {
            Ok(n) if n == p => {}
            Ok(n) => self.err(
                at,
                Problem::NotNormal {
                    path: p.to_string(),
                    normal: n.into_owned(),
                },
            ),
            Err(error) => self.err(
                at,
                Problem::BadPath {
                    path: p.to_string(),
                    error,
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::config::tests::{at, errors, load, problems};

    const UPSTREAMS: &str =
        "upstreams:\n  a: { targets: [127.0.0.1:9] }\n  b: { targets: [127.0.0.1:10] }\n";
    const AUTH: &str = "auth: { issuer: i, audiences: [x], algorithms: [RS256], jwks_url: \"http://127.0.0.1:9/jwks\" }\n";

    /// `UPSTREAMS` plus one route written as the flow mapping `route`.
    fn one_route(route: &str) -> String {
        format!("{UPSTREAMS}routes:\n  - {{ name: r, {route} }}\n")
    }

    #[test]
    fn sticky_keys_parse() {
        assert_eq!(parse_sticky("client_ip"), Ok(StickyKey::ClientIp));
        assert_eq!(
            parse_sticky("header.X-User"),
            Ok(StickyKey::Header(HeaderName::from_static("x-user")))
        );
        assert_eq!(
            parse_sticky("cookie.sid"),
            Ok(StickyKey::Cookie("sid".into()))
        );
        assert_eq!(
            parse_sticky("claim.tenant"),
            Ok(StickyKey::Claim("tenant".into()))
        );
        for bad in [
            "ip",
            "header.",
            "header.bad header",
            "query.x",
            "",
            "cookie",
        ] {
            assert_eq!(
                parse_sticky(bad),
                Err(Problem::BadStickyKey(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_route_loads_into_the_model() {
        let c = load(&format!(
            "{UPSTREAMS}{AUTH}routes:\n  - name: api\n    match: {{ path_prefix: /api/, host: \"*.Example.com\", methods: [GET], headers: {{ x-version: 2 }} }}\n    split: [ {{ upstream: a, weight: 1 }}, {{ upstream: b, weight: 3 }} ]\n    sticky_by: cookie.sid\n    strip_prefix: true\n    auth: {{ roles: [admin] }}\n    fallback: a\n"
        ));
        let r = &c.routes[0];
        assert_eq!((r.index, r.line, r.name.as_str()), (0, 6, "api"));
        assert_eq!(r.matcher.path, PathMatch::Prefix("/api/".into()));
        assert_eq!(
            r.matcher.host,
            Some(HostMatch::Suffix(".example.com".into()))
        );
        assert_eq!(r.matcher.methods, Some(vec![Method::GET]));
        assert_eq!(
            r.matcher.headers,
            [(HeaderName::from_static("x-version"), "2".to_string())]
        );
        assert!(matches!(
            &r.target,
            RouteTarget::Split { sides, sticky_by: Some(StickyKey::Cookie(c)) }
                if sides.len() == 2 && sides[1].weight == 3 && c == "sid"
        ));
        assert_eq!(
            r.rewrite,
            Some(Rewrite::Strip {
                prefix: "/api/".into()
            })
        );
        assert_eq!(
            r.auth,
            RouteAuth::Required {
                roles: vec!["admin".into()],
                scopes: vec![]
            }
        );
        let fb = r.fallback.as_ref().expect("a fallback");
        assert_eq!(fb.upstream, "a");
        assert_eq!(fb.on, defaults::fallback_on(), "the short form's failures");
        assert_eq!(fb.methods, defaults::FALLBACK_METHODS);
        assert_eq!(r.timeouts, RouteTimeouts::default());
    }

    #[test]
    fn the_long_fallback_form_and_route_timeouts_parse() {
        let c = load(&format!(
            "{UPSTREAMS}routes:\n  - name: r\n    match: {{}}\n    upstream: b\n    fallback:\n      upstream: a\n      on: [connect_error, {{ status: [502, 5xx] }}, reset]\n      methods: [GET]\n      budget: {{ ratio: 0.05, min_per_second: 2, window: 30s }}\n    timeouts: {{ response: 2s, upgraded_idle: 10m, total: 5s }}\n"
        ));
        let r = &c.routes[0];
        let fb = r.fallback.as_ref().unwrap();
        assert!(!fb.on.unavailable && fb.on.connect_error && !fb.on.timeout && fb.on.reset);
        assert_eq!(fb.on.statuses.describe(), "500-599");
        assert_eq!(fb.methods, [Method::GET]);
        assert_eq!(fb.budget.ratio, 0.05);
        assert_eq!(fb.budget.min_retries_per_second, 2);
        assert_eq!(fb.budget.window, Duration::from_secs(30));
        assert_eq!(
            r.timeouts,
            RouteTimeouts {
                response: Some(Duration::from_secs(2)),
                upgraded_idle: Some(Duration::from_secs(600)),
                total: Some(Duration::from_secs(5)),
            }
        );
        let t = r.timeouts.over(&c.upstreams["b"].timeouts);
        assert_eq!(t.connect, defaults::CONNECT_TIMEOUT, "the upstream's");
        assert_eq!(t.response, Duration::from_secs(2), "the route's");
    }

    #[test]
    fn fallback_and_timeout_mistakes_are_named() {
        let route = |rest: &str| one_route(&format!("match: {{}}, upstream: b, {rest}"));
        assert_eq!(
            problems(&route("fallback: { upstream: a, on: [] }")),
            at([("routes[0].fallback.on", Problem::NoFallbackFailures)])
        );
        assert_eq!(
            problems(&route("fallback: { upstream: a, on: [timeout, crash] }")),
            at([(
                "routes[0].fallback.on[1]",
                Problem::BadFallbackFailure("crash".into())
            )])
        );
        assert_eq!(
            problems(&route(
                "fallback: { upstream: a, on: [{ status: [503, 302] }] }"
            )),
            at([(
                "routes[0].fallback.on[0].status",
                Problem::FallbackOnSuccess(302)
            )])
        );
        assert_eq!(
            problems(&route("fallback: { upstream: a, methods: [get] }")),
            at([(
                "routes[0].fallback.methods[0]",
                Problem::LowerCaseMethod("GET".into())
            )])
        );
        assert_eq!(
            problems(&route("fallback: { upstream: c }")),
            at([(
                "routes[0].fallback.upstream",
                Problem::UnknownUpstream {
                    name: "c".into(),
                    known: vec!["a".into(), "b".into()]
                }
            )])
        );
        assert_eq!(
            problems(&route("fallback: { upstream: a, budget: { ratio: 2 } }")),
            at([(
                "routes[0].fallback.budget.ratio",
                Problem::Budget(crate::retry_budget::BudgetRule::Ratio(2.0))
            )])
        );
        assert_eq!(
            problems(&route("timeouts: { total: 0s }")),
            at([(
                "routes[0].timeouts.total",
                crate::config::tests::out_of_range(defaults::TOTAL_TIMEOUT_RANGE, Duration::ZERO)
            )])
        );
        // Either form of a field gets its own message, not "did not match any variant".
        for (route_text, want) in [
            (
                "fallback: { upstrem: a }",
                "routes[0].fallback.upstrem: unknown field `upstrem`, expected one of `upstream`, `on`, `methods`, `budget`",
            ),
            (
                "fallback: 7",
                "routes[0].fallback: expected an upstream name or a mapping { upstream, on, methods, budget }, found a number",
            ),
            (
                "fallback: { upstream: a, on: [7] }",
                "expected unavailable, connect_error, timeout, reset or { status: [502, 503] }, found a number",
            ),
        ] {
            let text = errors(&route(route_text));
            assert!(text.contains(want), "{text}");
        }
        // A route has no keep-alive pool: its `idle` would mean nothing.
        let idle = errors(&route("timeouts: { idle: 5s }"));
        assert!(idle.contains("unknown field `idle`"), "{idle}");
        // An empty `methods` is allowed: only keyed requests are replayed.
        let c = load(&route("fallback: { upstream: a, methods: [] }"));
        assert!(c.routes[0].fallback.as_ref().unwrap().methods.is_empty());
    }

    #[test]
    fn a_route_without_auth_checks_no_token() {
        let c = load(&one_route("match: {}, upstream: a"));
        assert_eq!(c.routes[0].auth, defaults::ROUTE_AUTH);
        assert_eq!(c.routes[0].matcher.path, PathMatch::Any);
        assert_eq!(c.routes[0].rewrite, None);
    }

    #[test]
    fn targets_name_known_upstreams() {
        assert_eq!(
            problems(&one_route("match: {}, upstream: c, fallback: d")),
            at([
                (
                    "routes[0].upstream",
                    Problem::UnknownUpstream {
                        name: "c".into(),
                        known: vec!["a".into(), "b".into()]
                    }
                ),
                (
                    "routes[0].fallback",
                    Problem::UnknownUpstream {
                        name: "d".into(),
                        known: vec!["a".into(), "b".into()]
                    }
                ),
            ])
        );
        assert_eq!(
            problems(&one_route("match: {}, upstream: a, split: []")),
            at([("routes[0]", Problem::UpstreamAndSplit)])
        );
        assert_eq!(
            problems(&one_route("match: {}")),
            at([("routes[0]", Problem::NoUpstream)])
        );
        assert_eq!(
            problems(&one_route("match: {}, split: []")),
            at([("routes[0].split", Problem::EmptySplit)])
        );
    }

    #[test]
    fn an_upstream_that_failed_its_checks_is_not_also_unknown() {
        let src =
            "upstreams:\n  a: { targets: [] }\nroutes:\n  - { name: r, match: {}, upstream: a }\n";
        assert_eq!(
            problems(src),
            at([("upstreams.a.targets", Problem::NoTargets)])
        );
    }

    #[test]
    fn sticky_by_needs_a_split_and_a_claim_needs_auth() {
        assert_eq!(
            problems(&one_route("match: {}, upstream: a, sticky_by: cookie.s")),
            at([("routes[0].sticky_by", Problem::StickyWithoutSplit)])
        );
        assert_eq!(
            problems(&one_route(
                "match: {}, split: [ { upstream: a, weight: 1 } ], sticky_by: claim.sub"
            )),
            at([("routes[0].sticky_by", Problem::ClaimWithoutAuth)])
        );
        assert_eq!(
            problems(&one_route(
                "match: {}, split: [ { upstream: a, weight: 1 } ], sticky_by: query.x"
            )),
            at([(
                "routes[0].sticky_by",
                Problem::BadStickyKey("query.x".into())
            )])
        );
    }

    #[test]
    fn route_auth_needs_the_auth_block() {
        assert_eq!(
            problems(&one_route("match: {}, upstream: a, auth: optional")),
            at([("routes[0].auth", Problem::NoAuthBlock)])
        );
    }

    #[test]
    fn rewrites_need_a_prefix_and_one_kind() {
        assert_eq!(
            problems(&one_route(
                "match: { path: /x }, upstream: a, strip_prefix: true"
            )),
            at([("routes[0].strip_prefix", Problem::StripWithoutPrefix)])
        );
        assert_eq!(
            problems(&one_route("match: {}, upstream: a, prefix_rewrite: v2/")),
            at([
                (
                    "routes[0].prefix_rewrite",
                    Problem::NoLeadingSlash("v2/".into())
                ),
                ("routes[0].prefix_rewrite", Problem::RewriteWithoutPrefix),
            ])
        );
        assert_eq!(
            problems(&one_route(
                "match: { path_prefix: /a/ }, upstream: a, strip_prefix: true, prefix_rewrite: /b/"
            )),
            at([("routes[0].prefix_rewrite", Problem::StripAndRewrite)])
        );
        let c = load(&one_route(
            "match: { path_prefix: /a/ }, upstream: a, prefix_rewrite: /b/",
        ));
        assert_eq!(
            c.routes[0].rewrite,
            Some(Rewrite::Replace {
                prefix: "/a/".into(),
                to: "/b/".into()
            })
        );
    }

    #[test]
    fn matches_are_checked_field_by_field() {
        let src = format!(
            "{UPSTREAMS}routes:\n  - name: \"bad name\"\n    match: {{ path_prefix: /a//b, host: \"a b\", methods: [get, \"BAD METHOD\"], headers: {{ \"bad header\": x }} }}\n    upstream: a\n  - {{ name: r, match: {{ path: x }}, upstream: a }}\n  - {{ name: s, match: {{ path: /a, path_prefix: /a }}, upstream: a }}\n  - {{ name: t, match: {{ path: \"/a%zz\", methods: [] }}, upstream: a }}\n"
        );
        assert_eq!(
            problems(&src),
            at([
                (
                    "routes[0].name",
                    Problem::BadName(Named::Route, "bad name".into())
                ),
                (
                    "routes[0].match.path_prefix",
                    Problem::NotNormal {
                        path: "/a//b".into(),
                        normal: "/a/b".into()
                    }
                ),
                ("routes[0].match.host", Problem::BadHost("a b".into())),
                (
                    "routes[0].match.methods[0]",
                    Problem::LowerCaseMethod("GET".into())
                ),
                (
                    "routes[0].match.methods[1]",
                    Problem::BadMethod("BAD METHOD".into())
                ),
                (
                    "routes[0].match.headers.bad header",
                    Problem::BadHeaderName("bad header".into())
                ),
                ("routes[1].match.path", Problem::NoLeadingSlash("x".into())),
                ("routes[2].match", Problem::PathAndPrefix),
                (
                    "routes[3].match.path",
                    Problem::BadPath {
                        path: "/a%zz".into(),
                        error: path::PathError::BadPercentEncoding
                    }
                ),
                ("routes[3].match.methods", Problem::NoMethods),
            ])
        );
    }

    #[test]
    fn a_repeated_name_points_at_the_first() {
        assert_eq!(
            errors(&format!(
                "{UPSTREAMS}routes:\n  - {{ name: r, match: {{}}, upstream: a }}\n  - {{ name: r, match: {{}}, upstream: b }}\n"
            )),
            "gw.yaml:6:13: routes[1].name: duplicate route name \"r\" (first defined at line 5)"
        );
    }
}
