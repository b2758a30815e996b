//! Route matching and the precedence rule.
//!
//! **Precedence: the most specific route wins; ties go to the route written first.**
//! Specificity is compared field by field, stopping at the first difference:
//! 1. path: an exact `path` beats a `path_prefix`, which beats no path condition;
//! 2. the longer path (or prefix) beats the shorter;
//! 3. host: an exact `host` beats a `*.wildcard`, which beats no host condition;
//! 4. more `headers` conditions beat fewer;
//! 5. a `methods` list beats no method condition.
//!
//! The table is sorted once when a config is loaded; a lookup walks it in that order and returns
//! the first route whose every condition holds.

use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::config::model::{HostMatch, Matcher, PathMatch, Rewrite, RouteSpec};

/// What a route looks at in a request.
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// Normalised (see [`crate::path`]).
    pub path: &'a str,
    /// Lower-case, without the port.
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// Routes in precedence order.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<RouteSpec>>,
}

type Specificity = (u8, usize, u8, usize, u8);

fn specificity(m: &Matcher) -> Specificity {
    let (path_rank, path_len) = match &m.path {
        PathMatch::Exact(p) => (2, p.len()),
        PathMatch::Prefix(p) => (1, p.len()),
        PathMatch::Any => (0, 0),
    };
    let host_rank = match &m.host {
        Some(HostMatch::Exact(_)) => 2,
        Some(HostMatch::Suffix(_)) => 1,
        None => 0,
    };
    (
        path_rank,
        path_len,
        host_rank,
        m.headers.len(),
        u8::from(m.methods.is_some()),
    )
}

impl RouteTable {
    pub fn new(routes: &[Arc<RouteSpec>]) -> Self {
        let mut routes = routes.to_vec();
        // Stable sort keeps file order among equals; `index` makes that explicit.
        routes.sort_by(|a, b| {
            specificity(&b.matcher)
                .cmp(&specificity(&a.matcher))
                .then(a.index.cmp(&b.index))
        });
        RouteTable { routes }
    }

    /// The winning route for a request, if any.
    pub fn find(&self, req: &RequestFacts<'_>) -> Option<&Arc<RouteSpec>> {
        self.routes.iter().find(|r| matches(&r.matcher, req))
    }

    /// Every route that matches, winner first (for `gateway explain`).
    pub fn candidates<'a>(
        &'a self,
        req: &'a RequestFacts<'_>,
    ) -> impl Iterator<Item = &'a Arc<RouteSpec>> {
        self.routes.iter().filter(|r| matches(&r.matcher, req))
    }

    /// Routes in precedence order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<RouteSpec>> {
        self.routes.iter()
    }
}

pub fn matches(m: &Matcher, req: &RequestFacts<'_>) -> bool {
    path_matches(&m.path, req.path)
        && m.host.as_ref().is_none_or(|h| host_matches(h, req.host))
        && m.methods.as_ref().is_none_or(|ms| ms.contains(req.method))
        && m.headers.iter().all(|(name, want)| {
            req.headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() == want.as_bytes())
        })
}

fn path_matches(m: &PathMatch, path: &str) -> bool {
    match m {
        PathMatch::Any => true,
        PathMatch::Exact(p) => path == p,
        PathMatch::Prefix(p) => {
            path.starts_with(p.as_str())
                && (p.ends_with('/') || path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
        }
    }
}

fn host_matches(m: &HostMatch, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    match m {
        HostMatch::Exact(h) => host == h,
        HostMatch::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
    }
}

/// The path sent upstream for a matched route (query string excluded).
pub fn rewrite_path(rewrite: Option<&Rewrite>, path: &str) -> Option<String> {
    let (prefix, to) = match rewrite? {
        Rewrite::Strip { prefix } => (prefix.as_str(), "/"),
        Rewrite::Replace { prefix, to } => (prefix.as_str(), to.as_str()),
    };
    let rest = path
        .strip_prefix(prefix)
        .unwrap_or(path)
        .trim_start_matches('/');
    let mut out = String::with_capacity(to.len() + rest.len() + 1);
    out.push_str(to.trim_end_matches('/'));
    out.push('/');
    out.push_str(rest);
    Some(out)
}

/// Host for matching: the `Host` header (HTTP/1.1) or the URI authority (HTTP/2), lower-cased,
/// without the port.
pub fn request_host<'a>(
    uri: &'a http::Uri,
    headers: &'a HeaderMap,
    buf: &'a mut String,
) -> Option<&'a str> {
    let raw = uri.host().or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })?;
    let without_port = if raw.starts_with('[') {
        raw.split_once(']')
            .map(|(h, _)| &raw[..h.len() + 1])
            .unwrap_or(raw)
    } else {
        raw.split_once(':').map_or(raw, |(host, _port)| host)
    };
    if without_port.bytes().any(|b| b.is_ascii_uppercase()) {
        *buf = without_port.to_ascii_lowercase();
        Some(buf.as_str())
    } else {
        Some(without_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::RouteTarget;

    fn route(index: usize, name: &str, matcher: Matcher) -> Arc<RouteSpec> {
        Arc::new(RouteSpec {
            index,
            line: index + 1,
            name: name.into(),
            matcher,
            target: RouteTarget::Single("u".into()),
            rewrite: None,
            auth: Default::default(),
            fallback: None,
            timeouts: Default::default(),
            rate_limit: Vec::new(),
            shadow: None,
            migration: None,
        })
    }

    fn find<'a>(
        t: &'a RouteTable,
        method: &Method,
        path: &str,
        host: Option<&str>,
    ) -> Option<&'a str> {
        let headers = HeaderMap::new();
        t.find(&RequestFacts {
            method,
            path,
            host,
            headers: &headers,
        })
        .map(|r| r.name.as_str())
    }

    #[test]
    fn prefix_respects_segment_boundary_without_trailing_slash() {
        assert!(path_matches(&PathMatch::Prefix("/api".into()), "/api"));
        assert!(path_matches(&PathMatch::Prefix("/api".into()), "/api/x"));
        assert!(!path_matches(&PathMatch::Prefix("/api".into()), "/apix"));
        assert!(path_matches(&PathMatch::Prefix("/api/".into()), "/api/x"));
        assert!(!path_matches(&PathMatch::Prefix("/api/".into()), "/api"));
        assert!(path_matches(&PathMatch::Prefix("/".into()), "/anything"));
    }

    #[test]
    fn most_specific_wins_then_file_order() {
        let t = RouteTable::new(&[
            route(
                0,
                "all",
                Matcher {
                    path: PathMatch::Prefix("/".into()),
                    ..Default::default()
                },
            ),
            route(
                1,
                "api",
                Matcher {
                    path: PathMatch::Prefix("/api/".into()),
                    ..Default::default()
                },
            ),
            route(
                2,
                "exact",
                Matcher {
                    path: PathMatch::Exact("/api/health".into()),
                    ..Default::default()
                },
            ),
            route(
                3,
                "api-get",
                Matcher {
                    path: PathMatch::Prefix("/api/".into()),
                    methods: Some(vec![Method::GET]),
                    ..Default::default()
                },
            ),
            route(
                4,
                "api-host",
                Matcher {
                    path: PathMatch::Prefix("/api/".into()),
                    host: Some(HostMatch::Exact("a.example".into())),
                    ..Default::default()
                },
            ),
            route(
                5,
                "api-dup",
                Matcher {
                    path: PathMatch::Prefix("/api/".into()),
                    ..Default::default()
                },
            ),
        ]);
        assert_eq!(find(&t, &Method::GET, "/x", None), Some("all"));
        assert_eq!(find(&t, &Method::POST, "/api/x", None), Some("api"));
        assert_eq!(find(&t, &Method::GET, "/api/x", None), Some("api-get"));
        assert_eq!(
            find(&t, &Method::GET, "/api/x", Some("a.example")),
            Some("api-host")
        );
        assert_eq!(find(&t, &Method::POST, "/api/health", None), Some("exact"));
    }

    #[test]
    fn rewrites() {
        let strip = Rewrite::Strip {
            prefix: "/api/".into(),
        };
        assert_eq!(
            rewrite_path(Some(&strip), "/api/users/7").unwrap(),
            "/users/7"
        );
        assert_eq!(rewrite_path(Some(&strip), "/api/").unwrap(), "/");
        let strip2 = Rewrite::Strip {
            prefix: "/api".into(),
        };
        assert_eq!(rewrite_path(Some(&strip2), "/api").unwrap(), "/");
        assert_eq!(rewrite_path(Some(&strip2), "/api/x").unwrap(), "/x");
        let repl = Rewrite::Replace {
            prefix: "/old/".into(),
            to: "/new/v2".into(),
        };
        assert_eq!(
            rewrite_path(Some(&repl), "/old/a/b").unwrap(),
            "/new/v2/a/b"
        );
        assert_eq!(rewrite_path(None, "/x"), None);
    }

    #[test]
    fn host_without_port_lowercased() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, "API.Example.com:8080".parse().unwrap());
        let uri: http::Uri = "/x".parse().unwrap();
        let mut buf = String::new();
        assert_eq!(
            request_host(&uri, &headers, &mut buf),
            Some("api.example.com")
        );
        let mut buf = String::new();
        headers.insert(http::header::HOST, "[::1]:80".parse().unwrap());
        assert_eq!(request_host(&uri, &headers, &mut buf), Some("[::1]"));
    }
}
