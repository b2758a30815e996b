//! `gateway explain`: which route a request would take, where it would go, and what applies.
//! Works on the validated config alone (no DNS, no running gateway).

use std::fmt::Write;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::model::{Config, FallbackSpec, PathMatch, RouteTarget, UpstreamSpec};
use crate::routing::{self, RequestFacts, RouteTable};
use crate::{path, request_head};

/// The explanation, and whether a route matched.
pub fn explain(
    config: &Config,
    method: &str,
    raw_path: &str,
    headers: &[(String, String)],
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
