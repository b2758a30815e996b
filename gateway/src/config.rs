//! Configuration: YAML text → raw structs ([`file`]) → validated model ([`model`]).
//!
//! [`load_str`] is the only way to a [`model::Config`]. It collects *every* error it can find,
//! each with the field path and its `line:col`, so `gateway validate` and a failed reload print
//! the same list:
//!
//! ```text
//! gateway.yaml:14:15: routes[1].upstream: unknown upstream "paymnts"
//! ```
//!
//! Each section (every route, every upstream, each top-level block) is decoded on its own, so a
//! typo in one does not hide the errors in the others.

pub mod duration;
pub mod file;
pub mod model;
mod rate_limits;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderName, Method};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::path;
use model::*;
use yaml::{Pos, Positions, join};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub pos: Pos,
    /// `routes[2].upstream`; empty for file-level problems.
    pub path: String,
    pub message: String,
}

/// Every problem found in one file. `Display` prints one `file:line:col: path: reason` per line.
#[derive(Debug)]
pub struct LoadError {
    pub file: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let (line, col) = (e.pos.line, e.pos.col);
            if e.path.is_empty() {
                write!(f, "{}:{line}:{col}: {}", self.file, e.message)?;
            } else {
                write!(f, "{}:{line}:{col}: {}: {}", self.file, e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// A validated config with the text it came from.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
    pub source: String,
    /// `sha256:` + hex of the file's bytes.
    pub hash: String,
}

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| LoadError {
        file: name.clone(),
        errors: vec![FieldError {
            pos: Pos { line: 1, col: 1 },
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    let config = load_str(&name, &source)?;
    let hash = format!("sha256:{:x}", Sha256::digest(source.as_bytes()));
    Ok(Loaded {
        config,
        path: path.to_path_buf(),
        source,
        hash,
    })
}

/// Validates config text; `file` is only used in error messages.
pub fn load_str(file: &str, source: &str) -> Result<Config, LoadError> {
    let (value, positions) = yaml::parse(source).map_err(|e| LoadError {
        file: file.to_string(),
        errors: vec![FieldError {
            pos: e.pos,
            path: String::new(),
            message: format!("invalid YAML: {}", e.message),
        }],
    })?;
    let mut v = Validator {
        positions: &positions,
        errors: Vec::new(),
    };
    let config = v.config(value);
    match config {
        Some(config) if v.errors.is_empty() => Ok(config),
        _ => {
            let mut errors = v.errors;
            errors.sort_by_key(|e| (e.pos.line, e.pos.col));
            errors.dedup();
            Err(LoadError {
                file: file.to_string(),
                errors,
            })
        }
    }
}

struct Validator<'a> {
    positions: &'a Positions,
    errors: Vec<FieldError>,
}

impl Validator<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            pos: self.positions.of(path),
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Deserialises one section; on failure records the error at the innermost path serde
    /// reached and returns `None`.
    fn decode<T: DeserializeOwned>(&mut self, value: serde_json::Value, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let mut full = match inner.as_str() {
                    "." | "" => path.to_string(),
                    inner => join(path, inner),
                };
                let message = e.into_inner().to_string();
                // `unknown field `x``: point at the key itself.
                let pos = match unknown_field(&message) {
                    Some(field) => {
                        if !full.ends_with(field) {
                            full = join(&full, field);
                        }
                        self.positions.key_of(&full)
                    }
                    None => self.positions.of(&full),
                };
                self.errors.push(FieldError {
                    pos,
                    path: full,
                    message: tidy(&message),
                });
                None
            }
        }
    }

    fn config(&mut self, value: serde_json::Value) -> Option<Config> {
        if !value.is_object() {
            self.err(
                "",
                format!(
                    "expected a mapping at the top level, found {}",
                    file::kind(&value)
                ),
            );
            return None;
        }
        let top: file::Top = self.decode(value, "")?;

        let listen = match top.listen {
            None => Some(parse_addr(defaults::LISTEN)),
            Some(v) => self
                .decode::<String>(v, "listen")
                .and_then(|s| self.addr(&s, "listen")),
        };
        let admin_listen = match top.admin {
            None => Some(parse_addr(defaults::ADMIN_LISTEN)),
            Some(v) => self
                .decode::<file::Admin>(v, "admin")
                .and_then(|a| self.addr(&a.listen, "admin.listen")),
        };
        let tls = top.tls.and_then(|v| self.tls(v));
        let server = self.server(top.server);
        let trusted_proxies = self.trusted_proxies(top.trusted_proxies);
        let encoded_slashes = match top.path_normalization {
            None => EncodedSlashes::Reject,
            Some(v) => self
                .decode::<file::PathNormalization>(v, "path_normalization")
                .and_then(|p| p.encoded_slashes)
                .unwrap_or(EncodedSlashes::Reject),
        };

        // Routes check against the block's presence: a broken block is reported once, not
        // again by every route that uses it.
        let auth_declared = top.auth.is_some();
        let mut auth = top.auth.and_then(|v| self.auth(v));
        let declared_policies = rate_limits::declared_policies(top.rate_limits.as_ref());
        let rate_limits = top
            .rate_limits
            .and_then(|v| self.rate_limits(v, auth.as_ref()));
        let raw_upstreams = top.upstreams.unwrap_or_default();
        // Upstreams that exist but failed validation are not also reported as unknown by routes.
        let declared: Vec<String> = raw_upstreams.keys().cloned().collect();
        let mut upstreams = BTreeMap::new();
        for (name, v) in raw_upstreams {
            let path = join("upstreams", &name);
            if let Some(u) = self.upstream(&name, v, &path) {
                upstreams.insert(name, Arc::new(u));
            }
        }

        let observability = match top.observability {
            None => Some(Observability::default()),
            Some(v) => self.observability(v),
        };

        let mut routes = Vec::new();
        let mut seen_names: HashMap<String, Pos> = HashMap::new();
        let raw_routes = top.routes.unwrap_or_default();
        if raw_routes.is_empty() {
            self.err(
                "routes",
                "no routes: add at least one route (see config/gateway.yaml)",
            );
        }
        for (i, v) in raw_routes.into_iter().enumerate() {
            let path = format!("routes[{i}]");
            if let Some(r) = self.route(i, v, &path, &upstreams, &declared, auth_declared) {
                if let Some(first) = seen_names.get(&r.name) {
                    let first = *first;
                    self.err(
                        &format!("{path}.name"),
                        format!(
                            "duplicate route name \"{}\" (first defined at line {})",
                            r.name, first.line
                        ),
                    );
                } else {
                    seen_names.insert(r.name.clone(), self.positions.of(&format!("{path}.name")));
                }
                routes.push(Arc::new(r));
            }
        }

        self.route_rate_limits(&routes, rate_limits.as_ref(), declared_policies.as_deref());
        if let Some(a) = auth.as_mut() {
            a.kept_claims = claims_read_by(&routes, rate_limits.as_ref());
        }

        Some(Config {
            listen: listen?,
            tls,
            admin_listen: admin_listen?,
            server: server?,
            trusted_proxies: trusted_proxies?,
            encoded_slashes,
            auth,
            rate_limits,
            upstreams,
            routes,
            observability: observability?,
        })
    }

    fn observability(&mut self, v: serde_json::Value) -> Option<Observability> {
        let o: file::Observability = self.decode(v, "observability")?;
        let before = self.errors.len();
        let service_name = o
            .service_name
            .unwrap_or_else(|| defaults::SERVICE_NAME.to_string());
        if service_name.trim().is_empty() {
            self.err("observability.service_name", "must not be empty");
        }
        let access_log = match o.access_log {
            None | Some(file::AccessLog::Short(file::AccessLogShort::Off)) => None,
            Some(file::AccessLog::Short(file::AccessLogShort::Json)) => Some(AccessLog {
                output: AccessLogOutput::Stdout,
                sample_successful: 1.0,
                buffer: defaults::ACCESS_LOG_BUFFER,
            }),
            Some(file::AccessLog::Full(a)) => {
                let output = match a.output.as_deref() {
                    None | Some("stdout") => AccessLogOutput::Stdout,
                    Some("stderr") => AccessLogOutput::Stderr,
                    Some("") => {
                        self.err(
                            "observability.access_log.output",
                            "must be stdout, stderr or a file path",
                        );
                        AccessLogOutput::Stdout
                    }
                    Some(path) => AccessLogOutput::File(PathBuf::from(path)),
                };
                let sample_successful = a.sample_successful.unwrap_or(1.0);
                self.ratio(
                    sample_successful,
                    "observability.access_log.sample_successful",
                );
                let buffer = a.buffer.unwrap_or(defaults::ACCESS_LOG_BUFFER);
                if buffer == 0 {
                    self.err("observability.access_log.buffer", "must be at least 1");
                }
                Some(AccessLog {
                    output,
                    sample_successful,
                    buffer,
                })
            }
        };
        let otlp = o.otlp.map(|t| {
            match http::Uri::from_str(&t.endpoint) {
                Ok(u)
                    if u.scheme_str() == Some("http")
                        && u.host().is_some()
                        && u.port_u16().is_some() => {}
                _ => self.err(
                    "observability.otlp.endpoint",
                    format!(
                        "invalid endpoint \"{}\": expected http://host:port such as http://127.0.0.1:4317",
                        t.endpoint
                    ),
                ),
            }
            let sample_ratio = t.sample_ratio.unwrap_or(1.0);
            self.ratio(sample_ratio, "observability.otlp.sample_ratio");
            let timeout = duration::or(t.timeout, defaults::OTLP_TIMEOUT);
            if timeout.is_zero() {
                self.err("observability.otlp.timeout", "must be greater than 0");
            }
            let queue_size = t.queue_size.unwrap_or(defaults::OTLP_QUEUE_SIZE);
            if queue_size == 0 {
                self.err("observability.otlp.queue_size", "must be at least 1");
            }
            Otlp {
                endpoint: t.endpoint.trim_end_matches('/').to_string(),
                protocol: t.protocol.unwrap_or(OtlpProtocol::Grpc),
                sample_ratio,
                timeout,
                queue_size,
            }
        });
        if self.errors.len() > before {
            return None;
        }
        Some(Observability {
            service_name,
            access_log,
            otlp,
        })
    }

    fn ratio(&mut self, r: f64, path: &str) {
        if !(0.0..=1.0).contains(&r) {
            self.err(path, format!("{r} is not a ratio: use 0.0 to 1.0"));
        }
    }

    fn auth(&mut self, v: serde_json::Value) -> Option<AuthConfig> {
        let a: file::Auth = self.decode(v, "auth")?;
        let before = self.errors.len();
        if a.issuer.trim().is_empty() {
            self.err(
                "auth.issuer",
                "must not be empty: it is compared with every token's `iss`",
            );
        }
        if a.audiences.is_empty() || a.audiences.iter().any(|s| s.trim().is_empty()) {
            self.err(
                "auth.audiences",
                "list at least one audience; every token's `aud` must contain one of them",
            );
        }
        match http::Uri::from_str(&a.jwks_url) {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => self.err(
                "auth.jwks_url",
                format!(
                    "invalid URL \"{}\": expected http(s)://host[:port]/path",
                    a.jwks_url
                ),
            ),
        }
        let mut algorithms = Vec::new();
        if a.algorithms.is_empty() {
            self.err(
                "auth.algorithms",
                "list the accepted algorithms, e.g. [RS256]",
            );
        }
        for (i, name) in a.algorithms.iter().enumerate() {
            let at = format!("auth.algorithms[{i}]");
            match jsonwebtoken::Algorithm::from_str(name) {
                Ok(alg) if name.starts_with("HS") => {
                    let _ = alg;
                    self.err(&at, format!("\"{name}\" is a shared-secret algorithm; a gateway verifying against a JWKS accepts only public-key algorithms (RS*, PS*, ES*, EdDSA)"));
                }
                Ok(alg) => algorithms.push(alg),
                Err(_) => self.err(&at, format!("unknown algorithm \"{name}\": use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA")),
            }
        }
        let mut claims_to_headers = Vec::new();
        for (claim, header) in &a.claims_to_headers {
            match HeaderName::from_str(header) {
                Ok(h) => claims_to_headers.push((claim.clone(), h)),
                Err(_) => self.err(
                    &format!("auth.claims_to_headers.{claim}"),
                    format!("invalid header name \"{header}\""),
                ),
            }
        }
        let max_token_bytes = a.max_token_bytes.unwrap_or(defaults::MAX_TOKEN_BYTES);
        if max_token_bytes < 256 {
            self.err("auth.max_token_bytes", "must be at least 256");
        }
        if self.errors.len() > before {
            return None;
        }
        Some(AuthConfig {
            issuer: a.issuer,
            audiences: a.audiences,
            jwks_url: a.jwks_url,
            algorithms,
            leeway: duration::or(a.leeway, defaults::AUTH_LEEWAY),
            claims_to_headers,
            jwks_refresh_interval: duration::or(
                a.jwks_refresh_interval,
                defaults::JWKS_REFRESH_INTERVAL,
            ),
            jwks_min_refresh_interval: duration::or(
                a.jwks_min_refresh_interval,
                defaults::JWKS_MIN_REFRESH_INTERVAL,
            ),
            jwks_unknown_kid_cooldown: duration::or(
                a.jwks_unknown_kid_cooldown,
                defaults::JWKS_UNKNOWN_KID_COOLDOWN,
            ),
            jwks_timeout: duration::or(a.jwks_timeout, defaults::JWKS_TIMEOUT),
            max_token_bytes,
            token_cache_size: a.token_cache_size.unwrap_or(defaults::TOKEN_CACHE_SIZE),
            // Filled in once the routes and rate limits are known.
            kept_claims: Vec::new(),
        })
    }

    fn addr(&mut self, s: &str, path: &str) -> Option<SocketAddr> {
        match SocketAddr::from_str(s) {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    path,
                    format!(
                        "invalid listen address \"{s}\": expected IP:PORT such as 0.0.0.0:8080"
                    ),
                );
                None
            }
        }
    }

    fn tls(&mut self, v: serde_json::Value) -> Option<TlsListener> {
        let t: file::Tls = self.decode(v, "tls")?;
        let listen = self.addr(&t.listen, "tls.listen");
        let cert_ok = self.readable(&t.cert_file, "tls.cert_file");
        let key_ok = self.readable(&t.key_file, "tls.key_file");
        if cert_ok
            && key_ok
            && let Err(e) =
                crate::tls::load_certified_key(Path::new(&t.cert_file), Path::new(&t.key_file))
        {
            self.err("tls", e);
        }
        Some(TlsListener {
            listen: listen?,
            cert_file: PathBuf::from(t.cert_file),
            key_file: PathBuf::from(t.key_file),
        })
    }

    fn readable(&mut self, file: &str, path: &str) -> bool {
        match std::fs::metadata(file) {
            Ok(m) if m.is_file() => true,
            Ok(_) => {
                self.err(path, format!("\"{file}\" is not a file"));
                false
            }
            Err(e) => {
                self.err(path, format!("cannot read \"{file}\": {e}"));
                false
            }
        }
    }

    fn server(&mut self, v: Option<serde_json::Value>) -> Option<ServerSettings> {
        let s: file::Server = match v {
            None => file::Server::default(),
            Some(v) => self.decode(v, "server")?,
        };
        if s.threads == Some(0) {
            self.err("server.threads", "must be at least 1");
        }
        let threads = s.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        Some(ServerSettings {
            threads: threads.max(1),
            drain_timeout: duration::or(s.drain_timeout, defaults::DRAIN_TIMEOUT),
            reload_debounce: duration::or(s.reload_debounce, defaults::RELOAD_DEBOUNCE),
            upstream_keepalive_pool: s
                .upstream_keepalive_pool
                .unwrap_or(defaults::UPSTREAM_KEEPALIVE_POOL),
        })
    }

    fn trusted_proxies(&mut self, v: Option<serde_json::Value>) -> Option<Vec<IpNet>> {
        let Some(v) = v else { return Some(Vec::new()) };
        let list: Vec<String> = self.decode(v, "trusted_proxies")?;
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let parsed = IpNet::from_str(s)
                .ok()
                .or_else(|| IpAddr::from_str(s).ok().map(IpNet::from));
            match parsed {
                Some(net) => out.push(net.trunc()),
                None => self.err(
                    &format!("trusted_proxies[{i}]"),
                    format!("invalid CIDR \"{s}\": expected e.g. 10.0.0.0/8 or 192.168.1.10"),
                ),
            }
        }
        Some(out)
    }

    fn upstream(&mut self, name: &str, v: serde_json::Value, path: &str) -> Option<UpstreamSpec> {
        if !valid_name(name) {
            self.err(
                path,
                format!("invalid upstream name \"{name}\": use letters, digits, '-' and '_'"),
            );
        }
        let u: file::Upstream = self.decode(v, path)?;
        if u.targets.is_empty() {
            self.err(
                &join(path, "targets"),
                "an upstream needs at least one target (host:port)",
            );
        }
        for (i, t) in u.targets.iter().enumerate() {
            if let Err(reason) = check_target(t) {
                self.err(&format!("{path}.targets[{i}]"), reason);
            }
        }
        let t = u.timeouts.unwrap_or_default();
        let timeouts = Timeouts {
            connect: duration::or(t.connect, defaults::CONNECT_TIMEOUT),
            response: duration::or(t.response, defaults::RESPONSE_TIMEOUT),
            idle: duration::or(t.idle, defaults::IDLE_TIMEOUT),
        };
        for (field, d) in [
            ("connect", timeouts.connect),
            ("response", timeouts.response),
        ] {
            if d.is_zero() {
                self.err(
                    &format!("{path}.timeouts.{field}"),
                    "must be greater than 0",
                );
            }
        }
        let retries = self.retries(u.retries.unwrap_or_default(), &join(path, "retries"));
        let health_check = u
            .health_check
            .and_then(|h| self.health_check(h, &join(path, "health_check")));
        let circuit_breaker = self.circuit_breaker(
            u.circuit_breaker.unwrap_or_default(),
            &join(path, "circuit_breaker"),
        );
        Some(UpstreamSpec {
            name: name.to_string(),
            targets: u.targets,
            load_balancing: u.load_balancing.unwrap_or(LoadBalancing::RoundRobin),
            timeouts,
            retries: retries?,
            health_check,
            circuit_breaker: circuit_breaker?,
        })
    }

    fn retries(&mut self, r: file::Retries, path: &str) -> Option<RetryPolicy> {
        let before = self.errors.len();
        let b = r.budget.unwrap_or_default();
        let default_budget = crate::retry_budget::BudgetConfig::default();
        let budget = crate::retry_budget::BudgetConfig {
            ratio: b.ratio.unwrap_or(default_budget.ratio),
            min_retries_per_second: b
                .min_retries_per_second
                .unwrap_or(default_budget.min_retries_per_second),
            window: duration::or(b.window, default_budget.window),
        };
        if let Err(e) = budget.validate() {
            self.err_field(&join(path, "budget"), &e);
        }
        let policy = RetryPolicy {
            attempts: r.attempts.unwrap_or(defaults::RETRY_ATTEMPTS),
            backoff: duration::or(r.backoff, defaults::RETRY_BACKOFF),
            max_backoff: duration::or(r.max_backoff, defaults::RETRY_MAX_BACKOFF),
            budget,
        };
        if policy.attempts > 10 {
            self.err(
                &join(path, "attempts"),
                format!(
                    "{} retries per request is an outage multiplier: use at most 10",
                    policy.attempts
                ),
            );
        }
        if policy.max_backoff < policy.backoff {
            self.err(
                &join(path, "max_backoff"),
                format!(
                    "must be at least backoff ({:?}), got {:?}",
                    policy.backoff, policy.max_backoff
                ),
            );
        }
        (self.errors.len() == before).then_some(policy)
    }

    fn health_check(&mut self, h: file::HealthCheck, path: &str) -> Option<HealthCheckSpec> {
        let before = self.errors.len();
        if !h.path.starts_with('/') {
            self.err(
                &join(path, "path"),
                format!("\"{}\" must start with '/'", h.path),
            );
        } else if http::uri::PathAndQuery::from_str(&h.path).is_err() {
            self.err(
                &join(path, "path"),
                format!("\"{}\" is not a valid request path", h.path),
            );
        }
        if let Some(host) = &h.host
            && http::HeaderValue::from_str(host).is_err()
        {
            self.err(&join(path, "host"), "not a valid Host header value");
        }
        let spec = HealthCheckSpec {
            path: h.path,
            host: h.host,
            interval: duration::or(h.interval, defaults::HEALTH_INTERVAL),
            timeout: duration::or(h.timeout, defaults::HEALTH_TIMEOUT),
            healthy_threshold: h.healthy_threshold.unwrap_or(defaults::HEALTHY_THRESHOLD),
            unhealthy_threshold: h
                .unhealthy_threshold
                .unwrap_or(defaults::UNHEALTHY_THRESHOLD),
        };
        if spec.interval < defaults::HEALTH_MIN_INTERVAL {
            self.err(
                &join(path, "interval"),
                format!(
                    "must be at least {:?}, got {:?}",
                    defaults::HEALTH_MIN_INTERVAL,
                    spec.interval
                ),
            );
        }
        if spec.timeout.is_zero() || spec.timeout > spec.interval {
            self.err(
                &join(path, "timeout"),
                format!(
                    "must be greater than 0 and at most the interval ({:?}), got {:?}",
                    spec.interval, spec.timeout
                ),
            );
        }
        for (field, v) in [
            ("healthy_threshold", spec.healthy_threshold),
            ("unhealthy_threshold", spec.unhealthy_threshold),
        ] {
            if v == 0 {
                self.err(&join(path, field), "must be at least 1");
            }
        }
        (self.errors.len() == before).then_some(spec)
    }

    /// `Some(None)`: valid and switched off; `None`: invalid (errors recorded).
    fn circuit_breaker(
        &mut self,
        c: file::CircuitBreaker,
        path: &str,
    ) -> Option<Option<BreakerSpec>> {
        let before = self.errors.len();
        let d = crate::breaker::BreakerConfig::default();
        let open_for = duration::or(c.open_for, d.open_for);
        let config = crate::breaker::BreakerConfig {
            failure_ratio: c.failure_ratio.unwrap_or(d.failure_ratio),
            min_requests: c.min_requests.unwrap_or(d.min_requests),
            window: duration::or(c.window, d.window),
            open_for,
            // The cap follows `open_for` unless set: 8 doublings' worth.
            max_open_for: duration::or(c.max_open_for, open_for.saturating_mul(8)),
            half_open_requests: c.half_open_requests.unwrap_or(d.half_open_requests),
        };
        if let Err(e) = config.validate() {
            self.err_field(path, &e);
        }
        let failure_statuses = match c.failure_statuses {
            None => StatusSet::server_errors(),
            Some(entries) => {
                let mut set = StatusSet::empty();
                for (i, e) in entries.iter().enumerate() {
                    let at = format!("{path}.failure_statuses[{i}]");
                    match e {
                        file::StatusEntry::Code(code @ 100..=599) => set.insert_range(*code, *code),
                        file::StatusEntry::Code(code) => {
                            self.err(&at, format!("{code} is not an HTTP status (100-599)"))
                        }
                        file::StatusEntry::Class(class) => match class.as_str() {
                            "4xx" => set.insert_range(400, 499),
                            "5xx" => set.insert_range(500, 599),
                            other => self.err(
                                &at,
                                format!(
                                    "\"{other}\": use a status code (503) or a class (4xx, 5xx)"
                                ),
                            ),
                        },
                    }
                }
                set
            }
        };
        if self.errors.len() > before {
            return None;
        }
        Some(c.enabled.unwrap_or(true).then_some(BreakerSpec {
            config,
            failure_statuses,
        }))
    }

    /// An error from a `validate()` that starts with its field name (`ratio: must be ...`):
    /// reported at `path.field`.
    fn err_field(&mut self, path: &str, error: &str) {
        match error.split_once(": ") {
            Some((field, reason)) if valid_name(field) => self.err(&join(path, field), reason),
            _ => self.err(path, error),
        }
    }

    fn route(
        &mut self,
        index: usize,
        v: serde_json::Value,
        path: &str,
        upstreams: &BTreeMap<String, Arc<UpstreamSpec>>,
        declared: &[String],
        auth_configured: bool,
    ) -> Option<RouteSpec> {
        let r: file::Route = self.decode(v, path)?;
        let route_auth = match r.auth {
            None | Some(file::RouteAuth::Mode(file::AuthMode::None)) => RouteAuth::None,
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
        if route_auth != RouteAuth::None && !auth_configured {
            self.err(
                &join(path, "auth"),
                "this route checks tokens, but there is no top-level `auth:` block (issuer, audiences, jwks_url, algorithms)",
            );
        }
        if let Some(StickyKey::Claim(_)) = r.sticky_by.as_deref().and_then(|s| parse_sticky(s).ok())
            && route_auth == RouteAuth::None
        {
            self.err(
                &join(path, "sticky_by"),
                "a claim is only known on routes that check tokens: set `auth: optional` or `auth: required`",
            );
        }
        let errors_before = self.errors.len();
        if !valid_name(&r.name) {
            self.err(
                &join(path, "name"),
                format!(
                    "invalid route name \"{}\": use letters, digits, '-' and '_'",
                    r.name
                ),
            );
        }
        let matcher = self.matcher(r.matcher, &join(path, "match"));
        let check_upstream = |v: &mut Self, name: &str, at: &str| {
            if !upstreams.contains_key(name) && !declared.iter().any(|d| d == name) {
                let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                v.err(
                    at,
                    format!("unknown upstream \"{name}\" (known: {})", known.join(", ")),
                );
            }
        };
        let target = match (r.upstream, r.split) {
            (Some(u), None) => {
                check_upstream(self, &u, &join(path, "upstream"));
                if r.sticky_by.is_some() {
                    self.err(
                        &join(path, "sticky_by"),
                        "sticky_by needs a split: it picks the side of a split",
                    );
                }
                Some(RouteTarget::Single(u))
            }
            (None, Some(sides)) => {
                let split_path = join(path, "split");
                if sides.is_empty() {
                    self.err(&split_path, "a split needs at least one side");
                }
                for (i, s) in sides.iter().enumerate() {
                    check_upstream(self, &s.upstream, &format!("{split_path}[{i}].upstream"));
                }
                if !sides.is_empty() && sides.iter().map(|s| u64::from(s.weight)).sum::<u64>() == 0
                {
                    self.err(
                        &split_path,
                        "the weights sum to 0: at least one side needs a weight above 0",
                    );
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
            (Some(_), Some(_)) => {
                self.err(path, "a route has either `upstream` or `split`, not both");
                None
            }
            (None, None) => {
                self.err(path, "a route needs `upstream` or `split`");
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
                self.err(
                    &join(path, "prefix_rewrite"),
                    "use either strip_prefix or prefix_rewrite, not both",
                );
                None
            }
            (true, None) => match &prefix {
                Some(p) => Some(Rewrite::Strip { prefix: p.clone() }),
                None => {
                    self.err(
                        &join(path, "strip_prefix"),
                        "strip_prefix needs match.path_prefix",
                    );
                    None
                }
            },
            (false, Some(to)) => {
                if !to.starts_with('/') {
                    self.err(
                        &join(path, "prefix_rewrite"),
                        format!("\"{to}\" must start with '/'"),
                    );
                }
                match &prefix {
                    Some(p) => Some(Rewrite::Replace {
                        prefix: p.clone(),
                        to,
                    }),
                    None => {
                        self.err(
                            &join(path, "prefix_rewrite"),
                            "prefix_rewrite needs match.path_prefix",
                        );
                        None
                    }
                }
            }
        };
        if let Some(fb) = &r.fallback {
            // A fallback equal to the route's upstream is allowed and has no effect: flipping a
            // route back to the monolith must not require deleting its fallback first.
            check_upstream(self, fb, &join(path, "fallback"));
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(RouteSpec {
            index,
            line: self.positions.of(path).line,
            name: r.name,
            matcher: matcher?,
            target: target?,
            rewrite,
            auth: route_auth,
            fallback: r.fallback,
            rate_limit: r.rate_limit,
        })
    }

    fn matcher(&mut self, m: file::Match, path: &str) -> Option<Matcher> {
        let before = self.errors.len();
        let path_match = match (m.path_prefix, m.path) {
            (Some(_), Some(_)) => {
                self.err(path, "use either path_prefix or path, not both");
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
                Some(rest) if rest.starts_with('.') && rest.len() > 1 => HostMatch::Suffix(rest.to_string()),
                _ => {
                    if h.is_empty() || h.contains(['*', '/', ' ']) {
                        self.err(&join(path, "host"), format!("invalid host \"{h}\": expected a name such as api.example.com or *.example.com"));
                    }
                    HostMatch::Exact(h)
                }
            }
        });
        let methods = m.methods.map(|list| {
            if list.is_empty() {
                self.err(
                    &join(path, "methods"),
                    "an empty list matches nothing: remove `methods` to match every method",
                );
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let upper = s.to_ascii_uppercase();
                    match Method::from_bytes(upper.as_bytes()) {
                        Ok(m) if upper == *s => Some(m),
                        Ok(_) => {
                            self.err(
                                &format!("{path}.methods[{i}]"),
                                format!("write methods in upper case: \"{upper}\""),
                            );
                            None
                        }
                        Err(_) => {
                            self.err(
                                &format!("{path}.methods[{i}]"),
                                format!("invalid HTTP method \"{s}\""),
                            );
                            None
                        }
                    }
                })
                .collect()
        });
        let headers = m
            .headers
            .into_iter()
            .filter_map(|(k, v)| match HeaderName::from_bytes(k.as_bytes()) {
                Ok(name) => Some((name, v)),
                Err(_) => {
                    self.err(
                        &format!("{path}.headers.{k}"),
                        format!("invalid header name \"{k}\""),
                    );
                    None
                }
            })
            .collect();
        if self.errors.len() > before {
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
            self.err(at, format!("\"{p}\" must start with '/'"));
            return;
        }
        match path::normalize(p, EncodedSlashes::Keep) {
            Ok(n) if n == p => {}
            Ok(n) => self.err(
                at,
                format!("\"{p}\" is not in normal form and would never match; write \"{n}\""),
            ),
            Err(e) => self.err(at, format!("\"{p}\" is not a valid path: {e}")),
        }
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    SocketAddr::from_str(s).expect("built-in default addresses parse")
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `host:port`, `[v6]:port`; the host is resolved later (at run time, not by `validate`).
fn check_target(t: &str) -> Result<(), String> {
    if SocketAddr::from_str(t).is_ok() {
        return Ok(());
    }
    let bad = || {
        format!(
            "invalid target \"{t}\": expected host:port such as 127.0.0.1:8000 or monolith:8000"
        )
    };
    let (host, port) = t.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(bad());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(bad());
    }
    Ok(())
}

/// The claim names that splits (`sticky_by: claim.X`) and rate-limit policies (`key: claim.X`)
/// read from a verified token, sorted and without repeats.
fn claims_read_by(routes: &[Arc<RouteSpec>], limits: Option<&RateLimits>) -> Vec<String> {
    let sticky = routes.iter().filter_map(|r| match &r.target {
        RouteTarget::Split {
            sticky_by: Some(StickyKey::Claim(c)),
            ..
        } => Some(c),
        _ => None,
    });
    let limited = limits
        .into_iter()
        .flat_map(|l| l.policies.values())
        .filter_map(|p| match &p.key {
            LimitKey::Claim(c) => Some(c),
            _ => None,
        });
    let mut names: Vec<String> = sticky.chain(limited).cloned().collect();
    names.sort();
    names.dedup();
    names
}

/// `header.NAME`, `cookie.NAME`, `client_ip`, `claim.NAME`.
pub fn parse_sticky(s: &str) -> Result<StickyKey, String> {
    let bad = || {
        format!(
            "invalid sticky_by \"{s}\": expected header.NAME, cookie.NAME, client_ip or claim.NAME"
        )
    };
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

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// serde's messages, minus the noise that means nothing to a YAML author.
fn tidy(message: &str) -> String {
    message
        .replace("invalid type: map", "invalid type: mapping")
        .replace("invalid type: sequence", "invalid type: list")
}
