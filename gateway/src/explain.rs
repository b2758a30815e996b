//! `gateway explain`: which route a request would take, where it would go, and what applies.
//! Works on the validated config alone (no DNS, no running gateway).
//!
//! On a split that places users by a key (a cohort's percent split, a weighted split with
//! `sticky_by`), it also says where *this* request goes: the key that placed it, the key's
//! bucket and the side, computed as the proxy computes them ([`sticky::key`] reads the key,
//! [`cohort::place`] and [`upstream::pick_side`] choose the side). A [`User`] stands for what
//! the request carries beyond its headers: a verified token's claims, cookies, the client IP.
//! A pin cookie is not evaluated (explain has no clock and no secret worth trusting here): a
//! request that carries a valid one is placed by the pin's position instead.

use std::fmt::Write;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Map, Value};

use crate::auth::verify::Verified;
use crate::cohort::{self, PlacedBy};
use crate::config::model::{
    Config, FallbackSpec, PathMatch, RouteTarget, ShadowSpec, UpstreamSpec,
};
use crate::routing::{self, RequestFacts, RouteTable};
use crate::split::{BUCKETS, Position};
use crate::{path, request_head, sticky, upstream};

/// What a request carries beyond its headers, for the splits that place users by a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// Claims of a verified token, NAME and VALUE (`--claim sub=42`). A value stands for the
    /// claim as text: a string as-is, another JSON value as its compact JSON (`42`, `true`),
    /// which is how the gateway reads a claim as a key. None: no token.
    pub claims: Vec<(String, String)>,
    /// Cookies, NAME and VALUE (`--cookie sessionid=abc`): sent in one `Cookie` header after
    /// any the headers have.
    pub cookies: Vec<(String, String)>,
    /// The client address after `trusted_proxies`.
    pub client_ip: Option<IpAddr>,
}

/// The explanation, and whether a route matched.
pub fn explain(
    config: &Config,
    method: &str,
    raw_path: &str,
    headers: &[(String, String)],
) -> Result<(String, bool), String> {
    explain_for(config, method, raw_path, headers, &User::default())
}

/// [`explain`] for a request from `user`.
pub fn explain_for(
    config: &Config,
    method: &str,
    raw_path: &str,
    headers: &[(String, String)],
    user: &User,
) -> Result<(String, bool), String> {
    // Methods are case-sensitive (RFC 9110 §9.1): `get` is not `GET`, here as in the gateway.
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("invalid method \"{method}\""))?;
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("invalid header name \"{k}\""))?;
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| format!("invalid value for header \"{k}\""))?;
        map.append(name, value);
    }
    if let Some(cookies) = cookie_header(&user.cookies)? {
        map.append(http::header::COOKIE, cookies);
    }
    let identity = identity(&user.claims)?;
    let mut out = String::new();
    // The same request-target rules as the running gateway's (`request_head`), so the two
    // agree on every target.
    let checked = request_head::check_target(method.as_str(), raw_path.as_bytes()).and_then(|t| {
        let hosts = map.get_all(http::header::HOST).iter().map(|h| h.as_bytes());
        request_head::check_authority(hosts, &t).map(|()| t)
    });
    let (path_only, query) = match checked {
        Ok(target) => (target.path, target.query),
        Err(e) => {
            let status = e.status();
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            let _ = writeln!(out, "request:   {method} {raw_path}");
            let _ = writeln!(out, "result:    {status} {reason} ({e})");
            return Ok((out, false));
        }
    };
    let normalised = match path::normalize(path_only, config.encoded_slashes) {
        Ok(n) => n,
        Err(e) => {
            let _ = writeln!(out, "request:   {method} {raw_path}");
            let _ = writeln!(out, "result:    400 Bad Request ({e})");
            return Ok((out, false));
        }
    };
    let uri: http::Uri = "/".parse().map_err(|_| "uri".to_string())?;
    let mut host_buf = String::new();
    let host = routing::request_host(&uri, &map, &mut host_buf);
    let facts = RequestFacts {
        method: &method,
        path: &normalised,
        host,
        headers: &map,
    };
    let table = RouteTable::new(&config.routes);
    let _ = writeln!(out, "request:   {method} {raw_path}");
    if normalised != path_only {
        let _ = writeln!(out, "normalised: {normalised}");
    }
    let mut candidates = table.candidates(&facts);
    let Some(route) = candidates.next() else {
        let _ = writeln!(
            out,
            "route:     none matches; the gateway answers 404 (problem+json)"
        );
        return Ok((out, false));
    };
    let _ = writeln!(
        out,
        "route:     {} (routes[{}], line {})",
        route.name, route.index, route.line
    );
    let m = &route.matcher;
    let mut conds = Vec::new();
    match &m.path {
        PathMatch::Any => {}
        PathMatch::Prefix(p) => conds.push(format!("path_prefix {p}")),
        PathMatch::Exact(p) => conds.push(format!("path {p}")),
    }
    if let Some(h) = &m.host {
        conds.push(format!("host {h:?}"));
    }
    if let Some(ms) = &m.methods {
        conds.push(format!(
            "methods {}",
            ms.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
        ));
    }
    for (k, v) in &m.headers {
        conds.push(format!("header {k}={v}"));
    }
    let _ = writeln!(
        out,
        "matched:   {}",
        if conds.is_empty() {
            "everything".to_string()
        } else {
            conds.join(", ")
        }
    );
    match &route.target {
        RouteTarget::Single(u) => {
            let _ = writeln!(out, "upstream:  {}", describe_upstream(config, u));
        }
        RouteTarget::Split { sides, sticky_by } => {
            let total: u64 = sides.iter().map(|s| u64::from(s.weight)).sum();
            let parts: Vec<String> = sides
                .iter()
                .map(|s| {
                    format!(
                        "{} {:.1}%",
                        s.upstream,
                        100.0 * f64::from(s.weight) / total.max(1) as f64
                    )
                })
                .collect();
            let sticky = match sticky_by {
                Some(k) => format!(", sticky by {k}"),
                None => ", not sticky".to_string(),
            };
            let _ = writeln!(out, "upstream:  split {}{sticky}", parts.join(" / "));
            for s in sides {
                let _ = writeln!(out, "           {}", describe_upstream(config, &s.upstream));
            }
        }
        RouteTarget::Cohort(c) => {
            let keys: Vec<String> = c.cohort.keys().map(|k| k.to_string()).collect();
            let _ = writeln!(
                out,
                "upstream:  {} for {}% of cohort {} (by {}), else {}",
                c.to,
                c.percent(),
                c.cohort.name,
                keys.join(", then "),
                c.rest
            );
            for name in [&c.to, &c.rest] {
                let _ = writeln!(out, "           {}", describe_upstream(config, name));
            }
        }
    }
    // As in the proxy: a route that checks no token has no claims to place by.
    let checks_tokens = route.auth != crate::config::model::RouteAuth::None;
    let inputs = sticky::Inputs {
        headers: &map,
        // As the proxy sees it: `::ffff:1.2.3.4` is 1.2.3.4.
        client_ip: user.client_ip.map(crate::forwarding::canonical),
        identity: identity.as_ref().filter(|_| checks_tokens),
    };
    if identity.is_some() && !checks_tokens && places_by_key(&route.target) {
        let _ = writeln!(
            out,
            "claims:    not read: the route checks no token (auth: none)"
        );
    }
    placement(&mut out, &route.target, &inputs);
    if let Some(fb) = &route.fallback {
        let own = matches!(&route.target, RouteTarget::Single(u) if *u == fb.upstream);
        let note = if own {
            "the route's own upstream: no effect".to_string()
        } else {
            describe_fallback(fb)
        };
        let _ = writeln!(
            out,
            "fallback:  {} ({note})",
            describe_upstream(config, &fb.upstream)
        );
    }
    if let Some(sh) = &route.shadow {
        let _ = writeln!(
            out,
            "shadow:    {} ({})",
            describe_upstream(config, &sh.upstream),
            describe_shadow(sh, &method)
        );
    }
    let mut involved: Vec<&str> = route.target.upstream_names();
    involved.extend(route.fallback.as_ref().map(|f| f.upstream.as_str()));
    for name in involved {
        if let Some(u) = config.upstreams.get(name) {
            let _ = writeln!(out, "resilience: {name}: {}", describe_resilience(u));
            let t = route.timeouts.over(&u.timeouts);
            let d = |d| humantime::format_duration(d).to_string();
            let total = t.total.map_or("none".to_string(), d);
            let _ = writeln!(
                out,
                "timeouts:  {name}: connect {}, response {}, upgraded idle {}, total {total}",
                d(t.connect),
                d(t.response),
                d(t.upgraded_idle),
            );
        }
    }
    let forwarded = routing::rewrite_path(route.rewrite.as_ref(), &normalised)
        .unwrap_or_else(|| normalised.to_string());
    let forwarded = match query {
        Some(q) => format!("{forwarded}?{q}"),
        None => forwarded,
    };
    let _ = writeln!(out, "forwarded: {forwarded}");
    let auth = match &route.auth {
        crate::config::model::RouteAuth::None => "none".to_string(),
        crate::config::model::RouteAuth::Optional => {
            "optional (no token: anonymous; a bad token: 401)".to_string()
        }
        crate::config::model::RouteAuth::Required { roles, scopes } => {
            let mut s = "required".to_string();
            if !roles.is_empty() {
                s.push_str(&format!(", one of roles [{}]", roles.join(", ")));
            }
            if !scopes.is_empty() {
                s.push_str(&format!(", all of scopes [{}]", scopes.join(", ")));
            }
            s
        }
    };
    let _ = writeln!(out, "auth:      {auth}");
    if let Some(rl) = config
        .rate_limits
        .as_ref()
        .filter(|_| !route.rate_limit.is_empty())
    {
        let _ = writeln!(
            out,
            "limits:    {} (all must admit; store {})",
            crate::ratelimit::Limiter::describe(rl, &route.rate_limit).join(", "),
            match rl.store {
                crate::config::model::LimitStore::Memory => "memory",
                crate::config::model::LimitStore::Redis { .. } => "redis",
            }
        );
    }
    let _ = writeln!(
        out,
        "headers:   X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-ID"
    );
    let others: Vec<String> = candidates
        .map(|r| format!("{} (line {})", r.name, r.line))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "also matched, lower precedence: {}", others.join(", "));
    }
    Ok((out, true))
}

/// `placed:` and `side:` of a split that places users by a key; nothing for other targets.
fn placement(out: &mut String, target: &RouteTarget, inputs: &sticky::Inputs<'_>) {
    match target {
        RouteTarget::Split {
            sides,
            sticky_by: Some(k),
        } => match sticky::key(k, inputs) {
            Some(v) => {
                let side = upstream::pick_side(sides, Some(&v));
                let bucket = Position::of(0, &v).bucket();
                let _ = writeln!(
                    out,
                    "placed:    by {k} {}, bucket {bucket} of {BUCKETS}",
                    shown(&v)
                );
                let _ = writeln!(out, "side:      {}", side.upstream);
            }
            None => {
                let _ = writeln!(
                    out,
                    "placed:    no {k}: each request takes a side at random, by weight"
                );
                let _ = writeln!(out, "side:      random");
            }
        },
        RouteTarget::Cohort(split) => {
            let cohort = &split.cohort;
            if let Some(pin) = &cohort.pin
                && sticky::cookie(inputs.headers, &pin.cookie).is_some()
            {
                let _ = writeln!(
                    out,
                    "pin:       cookie {} not evaluated by explain: a valid pin places the request by its own position, not by the keys below",
                    pin.cookie
                );
            }
            let placed = cohort::place(split, None, |k| sticky::key(k, inputs));
            let share = match split.basis_points {
                0 => format!("{} takes no bucket", split.to),
                b if b >= BUCKETS => format!("{} takes every bucket", split.to),
                b => format!("{} takes buckets below {b}", split.to),
            };
            match (placed.by, placed.position) {
                (PlacedBy::Key(k), Some(p)) => {
                    let v = sticky::key(k, inputs).unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "placed:    by {k} {}, bucket {} of {BUCKETS}; {share}",
                        shown(&v),
                        p.bucket()
                    );
                }
                (PlacedBy::Pin, Some(p)) => {
                    let _ = writeln!(
                        out,
                        "placed:    by the pin, bucket {} of {BUCKETS}; {share}",
                        p.bucket()
                    );
                }
                _ => {
                    let missing: Vec<String> = cohort.keys().map(|k| format!("no {k}")).collect();
                    let _ = writeln!(
                        out,
                        "placed:    no key ({}): the rest side, never a random one",
                        missing.join(", ")
                    );
                }
            }
            let role = if placed.upstream == split.to {
                "to"
            } else {
                "rest"
            };
            let _ = writeln!(out, "side:      {} ({role})", placed.upstream);
        }
        _ => {}
    }
}

/// Whether `target` places requests by a key.
fn places_by_key(target: &RouteTarget) -> bool {
    matches!(
        target,
        RouteTarget::Cohort(_)
            | RouteTarget::Split {
                sticky_by: Some(_),
                ..
            }
    )
}

/// A key's bytes, quoted.
fn shown(v: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(v))
}

/// The `Cookie` header `--cookie` pairs make, if any.
fn cookie_header(cookies: &[(String, String)]) -> Result<Option<HeaderValue>, String> {
    if cookies.is_empty() {
        return Ok(None);
    }
    let mut pairs = Vec::with_capacity(cookies.len());
    for (name, value) in cookies {
        let bad_name = name.is_empty()
            || name
                .bytes()
                .any(|b| b == b'=' || b == b';' || b.is_ascii_whitespace() || b.is_ascii_control());
        if bad_name {
            return Err(format!("invalid cookie name \"{name}\""));
        }
        if value.contains(';') {
            return Err(format!("the value of cookie \"{name}\" contains ';'"));
        }
        pairs.push(format!("{name}={value}"));
    }
    HeaderValue::from_str(&pairs.join("; "))
        .map(Some)
        .map_err(|_| "invalid cookie value".to_string())
}

/// A verified token carrying `claims` (each a string): what the gateway keeps of a token whose
/// claims have these values, for [`Verified::claim_key`]. `None` when there are none.
fn identity(claims: &[(String, String)]) -> Result<Option<Verified>, String> {
    if claims.is_empty() {
        return Ok(None);
    }
    let mut map = Map::new();
    for (name, value) in claims {
        if name.is_empty() {
            return Err("a claim needs a name (NAME=VALUE)".to_string());
        }
        if map
            .insert(name.clone(), Value::String(value.clone()))
            .is_some()
        {
            return Err(format!("claim \"{name}\" given twice"));
        }
    }
    Ok(Some(Verified {
        kid: String::new(),
        exp: 0,
        sub: map.get("sub").and_then(Value::as_str).map(str::to_string),
        roles: Vec::new(),
        scopes: Vec::new(),
        headers: Vec::new(),
        claims: map,
    }))
}

/// Retries, breaker and health check of an upstream, in one line.
fn describe_resilience(u: &UpstreamSpec) -> String {
    let d = |d| humantime::format_duration(d).to_string();
    let r = &u.retries;
    let retries = match r.attempts {
        0 => "no retries".to_string(),
        n => format!(
            "retries {n} (connect failures; idempotent or Idempotency-Key requests before a response), backoff {}..{}, budget {}%",
            d(r.backoff),
            d(r.max_backoff),
            (r.budget.ratio * 100.0).round()
        ),
    };
    let breaker = match &u.circuit_breaker {
        None => "breaker off".to_string(),
        Some(b) => format!(
            "breaker opens above {}% failures ({}) of >= {} requests in {}, open {}",
            (b.config.failure_ratio * 100.0).round(),
            b.failure_statuses.describe(),
            b.config.min_requests,
            d(b.config.window),
            d(b.config.open_for),
        ),
    };
    let health = match &u.health_check {
        None => "no active health check".to_string(),
        Some(h) => format!("health GET {} every {}", h.path, d(h.interval)),
    };
    format!("{retries}; {breaker}; {health}")
}

/// `on unavailable, connect_error, timeout, reset, status 502-504; replays GET, HEAD, ... or
/// with Idempotency-Key, budget 10%`.
fn describe_fallback(fb: &FallbackSpec) -> String {
    let methods: Vec<&str> = fb.methods.iter().map(Method::as_str).collect();
    format!(
        "on {}; replays {} or with Idempotency-Key, budget {}%",
        fb.on.describe(),
        if methods.is_empty() {
            "nothing".to_string()
        } else {
            methods.join(", ")
        },
        (fb.budget.ratio * 100.0).round()
    )
}

/// `this GET is copied for 20% of requests; 2% of copied reads also sent twice …; compares
/// status exact, body json, numbers decimal, ignores /id` — or why this method is not copied.
fn describe_shadow(sh: &ShadowSpec, method: &Method) -> String {
    use crate::shadow::compare::{BodyMode, Numbers, StatusMode};
    let methods: Vec<&str> = sh.methods.iter().map(Method::as_str).collect();
    let percent = |share: f64| format!("{}%", (share * 10_000.0).round() / 100.0);
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let copied = if sh.methods.contains(method) {
        format!(
            "this {method} is copied for {} of requests{}",
            percent(sh.sample),
            if read { "" } else { " as a dry-run write" }
        )
    } else {
        format!("{method} is not copied: it copies {}", methods.join(", "))
    };
    let c = &sh.compare;
    let mut compares = vec![
        format!(
            "status {}",
            match c.status {
                StatusMode::Exact => "exact",
                StatusMode::Class => "class",
            }
        ),
        format!(
            "body {}",
            match c.body {
                BodyMode::Json => "json",
                BodyMode::Bytes => "bytes",
                BodyMode::None => "none",
            }
        ),
    ];
    if c.numbers == Numbers::Decimal {
        compares.push("numbers decimal".to_string());
    }
    if !c.headers.is_empty() {
        let names: Vec<&str> = c.headers.iter().map(|h| h.as_str()).collect();
        compares.push(format!("headers {}", names.join(", ")));
    }
    let list = |ps: &[crate::shadow::pointer::Pattern]| {
        ps.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !c.ignore.is_empty() {
        compares.push(format!("ignores {}", list(&c.ignore)));
    }
    if !c.unordered.is_empty() {
        compares.push(format!("unordered {}", list(&c.unordered)));
    }
    let noise = if sh.noise > 0.0 && read {
        format!(
            "; {} of copied reads also sent twice to the primary, to learn its noise",
            percent(sh.noise)
        )
    } else {
        String::new()
    };
    format!("{copied}{noise}; compares {}", compares.join(", "))
}

fn describe_upstream(config: &Config, name: &str) -> String {
    match config.upstreams.get(name) {
        Some(u) => format!(
            "{name} -> {} ({:?}; timeouts connect {}, response {})",
            u.targets.join(", "),
            u.load_balancing,
            humantime::format_duration(u.timeouts.connect),
            humantime::format_duration(u.timeouts.response),
        )
        .replace("RoundRobin", "round_robin")
        .replace("Random", "random"),
        None => format!("{name} (unknown)"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::testing::{NOW, good_claims, signer};
    use crate::split::seed;

    /// A cohort split (30% of `early`, by `header.x-user` then `cookie.sessionid`, pinned), a
    /// cohort split by claim on a route that checks tokens and one that does not, and a
    /// weighted split sticky by a header.
    fn config(dir: &tempfile::TempDir) -> Config {
        let secret = dir.path().join("pin.key");
        std::fs::write(&secret, "k".repeat(40)).unwrap();
        let src = format!(
            r#"auth:
  issuer: https://issuer.test
  audiences: [api]
  algorithms: [RS256]
  jwks_url: "http://127.0.0.1:1/jwks"
upstreams:
  new: {{ targets: [127.0.0.1:9] }}
  old: {{ targets: [127.0.0.1:10] }}
cohorts:
  early: {{ by: header.x-user, fallback_by: cookie.sessionid, pin: {{ cookie: gw_pin, secret_file: "{}" }} }}
  users: {{ by: claim.sub, fallback_by: cookie.sessionid, salt: users-1 }}
routes:
  - {{ name: cohort, match: {{ path_prefix: /c/ }}, split: {{ to: new, percent: 30, cohort: early, rest: old }} }}
  - {{ name: claims, match: {{ path_prefix: /t/ }}, auth: optional, split: {{ to: new, percent: 50, cohort: users, rest: old }} }}
  - name: weighted
    match: {{ path_prefix: /w/ }}
    split: [ {{ upstream: new, weight: 1 }}, {{ upstream: old, weight: 3 }} ]
    sticky_by: header.x-user
  - {{ name: plain, match: {{ path_prefix: / }}, upstream: old }}
"#,
            secret.display()
        );
        crate::config::load_str("gw.yaml", &src).expect("valid")
    }

    fn run(config: &Config, path: &str, headers: &[(&str, &str)], user: &User) -> String {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (text, matched) = explain_for(config, "GET", path, &headers, user).unwrap();
        assert!(matched, "{text}");
        text
    }

    /// The `placed:`, `side:` and note lines of an explanation.
    fn placed(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| {
                ["placed:", "side:", "pin:", "claims:"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .collect()
    }

    /// `--client-ip ::ffff:1.2.3.4` places as the proxy places that client: as 1.2.3.4.
    #[test]
    fn a_mapped_client_ip_places_as_its_ipv4_address() {
        let src = "upstreams:\n  new: { targets: [127.0.0.1:9] }\n  old: { targets: [127.0.0.1:10] }\ncohorts:\n  ip: { by: client_ip }\nroutes:\n  - { name: r, match: {}, split: { to: new, percent: 50, cohort: ip, rest: old } }\n";
        let config = crate::config::load_str("gw.yaml", src).expect("valid");
        let at = |ip: &str| {
            let user = User {
                client_ip: Some(ip.parse().unwrap()),
                ..User::default()
            };
            placed(&run(&config, "/x", &[], &user))
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
        };
        let v4 = at("192.0.2.7");
        assert!(v4.iter().any(|l| l.contains("\"192.0.2.7\"")), "{v4:?}");
        assert_eq!(at("::ffff:192.0.2.7"), v4);
    }

    #[test]
    fn a_shadowed_route_says_whether_this_request_is_copied_and_how_it_is_compared() {
        let src = "upstreams:\n  new: { targets: [127.0.0.1:9] }\n  old: { targets: [127.0.0.1:10] }\nroutes:\n  - name: r\n    match: {}\n    upstream: old\n    shadow: { upstream: new, sample: 0.2, noise: 0.07, compare: { numbers: decimal, ignore: [/id, /items/*/at] } }\n";
        let config = crate::config::load_str("gw.yaml", src).expect("valid");
        let line = |method: &str| {
            let (text, _) = explain_for(&config, method, "/x", &[], &User::default()).unwrap();
            text.lines()
                .find(|l| l.starts_with("shadow:"))
                .map(str::to_string)
                .unwrap_or_default()
        };
        let get = line("GET");
        assert!(get.starts_with("shadow:    new -> 127.0.0.1:9"), "{get}");
        assert!(
            get.contains("this GET is copied for 20% of requests; 7% of copied reads also sent twice to the primary, to learn its noise; compares status exact, body json, numbers decimal, ignores /id, /items/*/at"),
            "{get}"
        );
        let post = line("POST");
        assert!(
            post.contains("POST is not copied: it copies GET, HEAD"),
            "{post}"
        );
    }

    fn cookies(pairs: &[(&str, &str)]) -> User {
        User {
            cookies: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..User::default()
        }
    }

    /// A key, its bucket under `salt`, and the side a 30% split gives it.
    fn expected(salt: &str, key: &str, basis_points: u32) -> (u32, &'static str) {
        let bucket = Position::of(seed(salt), key.as_bytes()).bucket();
        (
            bucket,
            if bucket < basis_points {
                "new (to)"
            } else {
                "old (rest)"
            },
        )
    }

    #[test]
    fn a_cohort_split_says_which_key_placed_the_request_its_bucket_and_side() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&dir);
        let (bucket, side) = expected("early", "u-17", 3_000);
        let text = run(&c, "/c/x", &[("x-user", "u-17")], &User::default());
        assert_eq!(
            placed(&text),
            [
                format!(
                    "placed:    by header.x-user \"u-17\", bucket {bucket} of 10000; new takes buckets below 3000"
                ),
                format!("side:      {side}"),
            ],
            "{text}"
        );
        // The fallback key when the first is absent; the first when both are there.
        let (bucket, side) = expected("early", "abc", 3_000);
        let text = run(&c, "/c/x", &[], &cookies(&[("sessionid", "abc")]));
        assert_eq!(
            placed(&text),
            [
                format!(
                    "placed:    by cookie.sessionid \"abc\", bucket {bucket} of 10000; new takes buckets below 3000"
                ),
                format!("side:      {side}"),
            ]
        );
        let both = run(
            &c,
            "/c/x",
            &[("x-user", "u-17")],
            &cookies(&[("sessionid", "abc")]),
        );
        assert!(both.contains("placed:    by header.x-user"), "{both}");
        // No key: rest, never random.
        let text = run(&c, "/c/x", &[], &User::default());
        assert_eq!(
            placed(&text),
            [
                "placed:    no key (no header.x-user, no cookie.sessionid): the rest side, never a random one",
                "side:      old (rest)",
            ]
        );
    }

    #[test]
    fn a_pin_cookie_is_named_and_not_evaluated() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&dir);
        let note = "pin:       cookie gw_pin not evaluated by explain: a valid pin places the request by its own position, not by the keys below";
        for user in [
            cookies(&[("gw_pin", "v1.0000000000000000.1.x")]),
            User::default(),
        ] {
            let from_flag = run(&c, "/c/x", &[("x-user", "u-17")], &user);
            let from_header = run(
                &c,
                "/c/x",
                &[("x-user", "u-17"), ("cookie", "gw_pin=v1")],
                &User::default(),
            );
            assert_eq!(
                from_flag.contains(note),
                !user.cookies.is_empty(),
                "{from_flag}"
            );
            assert!(from_header.contains(note), "{from_header}");
            // Placed by the key all the same.
            assert!(from_flag.contains("placed:    by header.x-user"));
        }
        // Another cookie is no pin.
        let text = run(&c, "/c/x", &[], &cookies(&[("gw_other", "1")]));
        assert!(!text.contains("pin:"), "{text}");
    }

    /// `--claim sub=42` places as a verified token whose `sub` is "42", or whose numeric claim
    /// is 42: the same bytes through [`Verified::claim_key`].
    #[test]
    fn a_claim_places_like_a_verified_token_carrying_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&dir);
        let s = signer();
        let mut cfg = crate::auth::testing::config();
        cfg.kept_claims = vec!["sub".into()];
        let mut claims = good_claims();
        claims["sub"] = json!("42");
        let token = crate::auth::verify::verify(&s.sign(&claims), &s.keys, &cfg, NOW).unwrap();
        let RouteTarget::Cohort(split) = &c.routes[1].target else {
            panic!("{:?}", c.routes[1].target);
        };
        let headers = HeaderMap::new();
        let proxy = cohort::place(split, None, |k| {
            sticky::key(
                k,
                &sticky::Inputs {
                    headers: &headers,
                    client_ip: None,
                    identity: Some(&token),
                },
            )
        });
        let user = User {
            claims: vec![("sub".into(), "42".into())],
            ..User::default()
        };
        let text = run(&c, "/t/x", &[], &user);
        let bucket = proxy.position.unwrap().bucket();
        assert_eq!(bucket, Position::of(seed("users-1"), b"42").bucket());
        let role = if proxy.upstream == "new" {
            "to"
        } else {
            "rest"
        };
        assert_eq!(
            placed(&text),
            [
                format!(
                    "placed:    by claim.sub \"42\", bucket {bucket} of 10000; new takes buckets below 5000"
                ),
                format!("side:      {} ({role})", proxy.upstream),
            ]
        );
        // A numeric claim reads as its JSON text: the same key.
        let mut numeric = good_claims();
        numeric["n"] = json!(42);
        cfg.kept_claims = vec!["n".into()];
        let token = crate::auth::verify::verify(&s.sign(&numeric), &s.keys, &cfg, NOW).unwrap();
        assert_eq!(
            token.claim_key("n"),
            identity(&user.claims).unwrap().unwrap().claim_key("sub")
        );
        // Claims are not read on a route that checks no token.
        let text = run(&c, "/c/x", &[], &user);
        assert!(
            text.contains("claims:    not read: the route checks no token (auth: none)"),
            "{text}"
        );
    }

    #[test]
    fn a_weighted_sticky_split_says_the_bucket_and_side_or_random() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&dir);
        let RouteTarget::Split { sides, .. } = &c.routes[2].target else {
            panic!();
        };
        let side = &upstream::pick_side(sides, Some(b"u-17")).upstream;
        let bucket = Position::of(0, b"u-17").bucket();
        let text = run(&c, "/w/x", &[("x-user", "u-17")], &User::default());
        assert_eq!(
            placed(&text),
            [
                format!("placed:    by header.x-user \"u-17\", bucket {bucket} of 10000"),
                format!("side:      {side}"),
            ]
        );
        let text = run(&c, "/w/x", &[], &User::default());
        assert_eq!(
            placed(&text),
            [
                "placed:    no header.x-user: each request takes a side at random, by weight",
                "side:      random",
            ]
        );
        // A route that places nobody says nothing of it.
        let text = run(&c, "/other", &[("x-user", "u-17")], &User::default());
        assert!(placed(&text).is_empty(), "{text}");
    }

    #[test]
    fn bad_user_flags_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&dir);
        let err = |user: User| explain_for(&c, "GET", "/c/x", &[], &user).unwrap_err();
        assert_eq!(err(cookies(&[("a b", "1")])), "invalid cookie name \"a b\"");
        assert_eq!(err(cookies(&[("", "1")])), "invalid cookie name \"\"");
        assert_eq!(
            err(cookies(&[("a", "1; b=2")])),
            "the value of cookie \"a\" contains ';'"
        );
        let claims = |pairs: &[(&str, &str)]| User {
            claims: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..User::default()
        };
        assert_eq!(
            err(claims(&[("sub", "1"), ("sub", "2")])),
            "claim \"sub\" given twice"
        );
        assert_eq!(
            err(claims(&[("", "1")])),
            "a claim needs a name (NAME=VALUE)"
        );
    }
}
