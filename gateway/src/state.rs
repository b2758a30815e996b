//! Process state: the active [`Runtime`] (config + everything built from it) behind an
//! `ArcSwap`, and the handles that live as long as the process (metrics, TLS resolver, drain).
//!
//! A reload builds a complete new `Runtime` first and swaps it in with one atomic store; a
//! request holds the `Arc<Runtime>` it started with, so it finishes on that config.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use pingora_rustls::sign::CertifiedKey;

use crate::auth::Authenticator;
use crate::auth::identity;
use crate::config::{self, LoadError, Loaded};
use crate::metrics::Metrics;
use crate::mirror::copy::RouteShadow;
use crate::observability::Telemetry;
use crate::ratelimit::Limiter;
use crate::retry_budget::RetryBudget;
use crate::routing::RouteTable;
use crate::tls::CertResolver;
use crate::upstream::Upstream;

/// One loaded config and everything built from it.
pub struct Runtime {
    pub loaded: Loaded,
    pub loaded_at: SystemTime,
    pub routes: RouteTable,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub cert: Option<Arc<CertifiedKey>>,
    pub auth: Option<Authenticator>,
    /// The headers only the gateway sets, normalised (`_` read as `-`, as Django and others
    /// read them): the `claims_to_headers` names and the shadow's `X-Gateway-Shadow`. Stripped
    /// from every client request.
    pub identity_headers: Vec<String>,
    /// The `rate_limits:` policies; unchanged ones keep their buckets across reloads.
    pub limits: Option<Limiter>,
    /// Each route's fallback budget, by `RouteSpec::index` (`None`: no fallback). Kept across
    /// reloads for a route of the same name whose budget settings are unchanged.
    pub fallback_budgets: Vec<Option<Arc<RetryBudget>>>,
    /// Each route's shadow, by `RouteSpec::index` (`None`: no shadow). What it learned is kept
    /// across reloads for a route of the same name (see [`RouteShadow::build`]).
    pub shadows: Vec<Option<Arc<RouteShadow>>>,
}

impl Runtime {
    /// The fallback budget of the route at `index` in the file.
    pub fn fallback_budget(&self, index: usize) -> Option<&Arc<RetryBudget>> {
        self.fallback_budgets.get(index)?.as_ref()
    }

    /// The shadow of the route at `index` in the file.
    pub fn shadow(&self, index: usize) -> Option<&Arc<RouteShadow>> {
        self.shadows.get(index)?.as_ref()
    }

    /// Builds the runtime objects: targets at the addresses the load resolved, the certificate,
    /// and the JWKS of `previous` kept when its URL is unchanged.
    pub fn build(
        loaded: Loaded,
        previous: Option<&Runtime>,
        metrics: &Arc<Metrics>,
    ) -> Result<Runtime, String> {
        let mut upstreams = HashMap::new();
        for (name, spec) in &loaded.config.upstreams {
            let before = previous.and_then(|p| p.upstreams.get(name)).map(|u| &**u);
            let built = Upstream::build(spec.clone(), before, &loaded.config.addresses, metrics)?;
            upstreams.insert(name.clone(), Arc::new(built));
        }
        if let Some(p) = previous {
            forget_removed_targets(p, &upstreams, metrics);
        }
        let cert = match &loaded.config.tls {
            Some(t) => Some(crate::tls::load_certified_key(&t.cert_file, &t.key_file)?),
            None => None,
        };
        let auth = match &loaded.config.auth {
            Some(cfg) => Some(Authenticator::new(
                cfg,
                previous.and_then(|p| p.auth.as_ref()),
                metrics.clone(),
            )?),
            None => None,
        };
        let limits = match &loaded.config.rate_limits {
            Some(cfg) => Some(Limiter::new(
                cfg,
                previous.and_then(|p| p.limits.as_ref()),
                metrics.clone(),
            )?),
            None => None,
        };
        let identity_headers = loaded
            .config
            .auth
            .iter()
            .flat_map(|a| {
                a.claims_to_headers
                    .iter()
                    .map(|(_, h)| identity::normalized(h.as_str()))
            })
            .chain([crate::mirror::copy::HEADER.to_string()])
            .collect();
        // The previous config's budgets by route name, looked up once per route.
        let before: HashMap<&str, &Arc<RetryBudget>> = previous
            .map(|p| {
                let routes = &p.loaded.config.routes;
                routes
                    .iter()
                    .filter_map(|r| Some((r.name.as_str(), p.fallback_budget(r.index)?)))
                    .collect()
            })
            .unwrap_or_default();
        let fallback_budgets = loaded
            .config
            .routes
            .iter()
            .map(|r| {
                let fb = r.fallback.as_ref()?;
                let kept = before.get(r.name.as_str()).copied();
                Some(match kept {
                    Some(b) if b.config() == &fb.budget => b.clone(),
                    _ => Arc::new(RetryBudget::new(fb.budget.clone())),
                })
            })
            .collect();
        let shadows = build_shadows(&loaded, &upstreams, previous, metrics);
        // Last, once nothing can fail: a build that fails (a bad certificate) must not leave the
        // gauges it sets (cohort percents) showing a config that never became active.
        metrics.config_loaded(&loaded.config);
        Ok(Runtime {
            routes: RouteTable::new(&loaded.config.routes),
            fallback_budgets,
            shadows,
            auth,
            identity_headers,
            limits,
            loaded_at: SystemTime::now(),
            upstreams,
            cert,
            loaded,
        })
    }
}

/// Each route's shadow, keeping what the same route's shadow in `previous` learned.
fn build_shadows(
    loaded: &Loaded,
    upstreams: &HashMap<String, Arc<Upstream>>,
    previous: Option<&Runtime>,
    metrics: &Arc<Metrics>,
) -> Vec<Option<Arc<RouteShadow>>> {
    let before: HashMap<&str, &Arc<RouteShadow>> = previous
        .map(|p| {
            p.shadows
                .iter()
                .flatten()
                .map(|s| (s.route.as_str(), s))
                .collect()
        })
        .unwrap_or_default();
    loaded
        .config
        .routes
        .iter()
        .map(|r| {
            let spec = r.shadow.clone()?;
            // Validation checked the name; an upstream missing here is a bug, not a config.
            let candidate = upstreams.get(&spec.upstream)?.clone();
            let kept = before.get(r.name.as_str()).map(|s| &***s);
            Some(Arc::new(RouteShadow::build(
                r, spec, candidate, kept, metrics,
            )))
        })
        .collect()
}

/// Drops the series of targets the new config no longer has.
fn forget_removed_targets(
    previous: &Runtime,
    next: &HashMap<String, Arc<Upstream>>,
    metrics: &Metrics,
) {
    for (name, old) in &previous.upstreams {
        for t in &old.targets {
            let kept = next
                .get(name)
                .is_some_and(|u| u.targets.iter().any(|n| Arc::ptr_eq(n, t)));
            if !kept {
                metrics.target_removed(name, &t.name);
            }
        }
    }
}

/// Why a reload did not take effect.
#[derive(Debug)]
pub enum ReloadError {
    Invalid(LoadError),
    Build(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Invalid(e) => write!(f, "{e}"),
            ReloadError::Build(e) => write!(f, "{e}"),
        }
    }
}

/// This machine, as `run` uses it: target names resolve through [`crate::upstream::resolve`]
/// (what [`Upstream::build`] calls), the access-log file opens through
/// [`crate::observability::access_log::open_file`] (what the writer calls; it creates the file
/// when missing). `gateway validate` checks a file against it, so `validate` and `run` agree.
pub struct ThisMachine;

impl config::Host for ThisMachine {
    fn resolve(&self, target: &str) -> Result<std::net::SocketAddr, String> {
        crate::upstream::resolve(target)
    }

    fn open_access_log(&self, path: &std::path::Path) -> Result<(), String> {
        crate::observability::access_log::open_file(path)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Reads and validates a config file as `run` and a reload do: the file, and what it needs of
/// [`ThisMachine`] (`gateway validate`).
pub fn check_file(path: &std::path::Path) -> Result<Loaded, LoadError> {
    config::load_file_on(path, Some(&ThisMachine))
}

/// Loads ([`check_file`]) and builds a runtime from a file.
pub fn load_runtime(
    path: &std::path::Path,
    previous: Option<&Runtime>,
    metrics: &Arc<Metrics>,
) -> Result<Runtime, ReloadError> {
    let loaded = check_file(path).map_err(ReloadError::Invalid)?;
    Runtime::build(loaded, previous, metrics).map_err(ReloadError::Build)
}

/// Per-process state shared by the proxy, the admin listener and the reloader.
pub struct Shared {
    runtime: ArcSwap<Runtime>,
    pub config_path: PathBuf,
    pub metrics: Arc<Metrics>,
    /// Tracer and access-log writer, started from the first config (see `Telemetry::apply`
    /// for what a reload changes).
    pub telemetry: Telemetry,
    pub cert_resolver: Option<Arc<CertResolver>>,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    last_reload_error: Mutex<Option<String>>,
}

/// Outcome of a successful reload.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Changed { hash: String },
    Unchanged,
}

impl Shared {
    pub fn new(
        config_path: PathBuf,
        runtime: Runtime,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Shared>, String> {
        let telemetry = Telemetry::start(&runtime.loaded.config.observability, &metrics)?;
        let cert_resolver = runtime.cert.clone().map(|c| Arc::new(CertResolver::new(c)));
        metrics.last_reload_successful.set(1);
        metrics
            .last_reload_success_time
            .set(unix_seconds(runtime.loaded_at));
        Ok(Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            config_path,
            metrics,
            telemetry,
            cert_resolver,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_reload_error: Mutex::new(None),
        }))
    }

    /// The active runtime (an `Arc` the caller may keep for the whole request).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Re-reads the config file (and the certificate it names); swaps it in only if it
    /// validates and builds.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let current = self.runtime.load();
        let result = load_runtime(&self.config_path, Some(&current), &self.metrics).map(|rt| {
            // Swapped even when the file is unchanged: the certificate files may have been
            // renewed (SIGHUP after a renewal must pick them up).
            let changed = rt.loaded.hash != current.loaded.hash;
            let restart_needed = restart_only_changes(&current.loaded.config, &rt.loaded.config);
            for what in restart_needed {
                tracing::warn!(
                    setting = what,
                    "changed in the file; takes effect after a restart"
                );
            }
            self.telemetry.apply(&rt.loaded.config.observability);
            if let (Some(resolver), Some(cert)) = (&self.cert_resolver, &rt.cert) {
                resolver.set(cert.clone());
            }
            let hash = rt.loaded.hash.clone();
            self.runtime.store(Arc::new(rt));
            if changed {
                Reloaded::Changed { hash }
            } else {
                Reloaded::Unchanged
            }
        });
        let m = &self.metrics;
        match &result {
            Ok(_) => {
                m.reloads.with_label_values(&["success"]).inc();
                m.last_reload_successful.set(1);
                m.last_reload_success_time
                    .set(unix_seconds(SystemTime::now()));
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(e) => {
                m.reloads.with_label_values(&["failure"]).inc();
                m.last_reload_successful.set(0);
                *self
                    .last_reload_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
        result
    }

    /// The error of the last reload attempt, if it failed.
    pub fn last_reload_error(&self) -> Option<String> {
        self.last_reload_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready: not draining, and the JWKS is loaded when authentication is configured.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.is_draining() {
            return Err("draining");
        }
        if let Some(auth) = &self.runtime().auth
            && !auth.jwks.is_loaded()
        {
            return Err("JWKS not loaded yet");
        }
        Ok(())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.metrics.in_flight.inc();
        InFlight(self.clone())
    }
}

/// Decrements the in-flight count when the request's context is dropped.
pub struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.in_flight.dec();
    }
}

/// Settings a reload cannot apply to a running process (listeners and threads are fixed).
fn restart_only_changes(
    old: &config::model::Config,
    new: &config::model::Config,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.listen != new.listen {
        out.push("listen");
    }
    if old.admin_listen != new.admin_listen {
        out.push("admin.listen");
    }
    if old.tls.as_ref().map(|t| t.listen) != new.tls.as_ref().map(|t| t.listen) {
        out.push("tls.listen");
    }
    if old.server.threads != new.server.threads {
        out.push("server.threads");
    }
    if old.server.upstream_keepalive_pool != new.server.upstream_keepalive_pool {
        out.push("server.upstream_keepalive_pool");
    }
    if old.server.drain_timeout != new.server.drain_timeout {
        out.push("server.drain_timeout");
    }
    let (o, n) = (&old.observability, &new.observability);
    if o.service_name != n.service_name {
        out.push("observability.service_name");
    }
    let pipeline = |c: &config::model::Observability| {
        c.otlp
            .as_ref()
            .map(|t| (t.endpoint.clone(), t.protocol, t.timeout, t.queue_size))
    };
    if pipeline(o) != pipeline(n) {
        out.push("observability.otlp (endpoint, protocol, timeout, queue_size, on/off)");
    }
    let writer = |c: &config::model::Observability| {
        c.access_log.as_ref().map(|a| (a.output.clone(), a.buffer))
    };
    if writer(o) != writer(n) {
        out.push("observability.access_log (output, buffer, on/off)");
    }
    out
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::net::SocketAddr;
    use std::path::Path;

    use super::*;

    /// A machine where `monolith.invalid` (a name DNS never resolves) is 127.0.0.1, counting
    /// the lookups.
    struct Counting(Cell<usize>);

    impl config::Host for Counting {
        fn resolve(&self, target: &str) -> Result<SocketAddr, String> {
            self.0.set(self.0.get() + 1);
            match target {
                "monolith.invalid:8000" => Ok("127.0.0.1:8000".parse().unwrap()),
                other => Err(format!("unknown {other}")),
            }
        }

        fn open_access_log(&self, _: &Path) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_target_name_is_looked_up_once_per_load_and_the_runtime_uses_that_address() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gw.yaml");
        std::fs::write(
            &file,
            "upstreams:\n  a: { targets: [monolith.invalid:8000] }\n  b: { targets: [monolith.invalid:8000] }\n\
             routes:\n  - { name: r, match: {}, upstream: a }\n  - { name: s, match: { path_prefix: /s/ }, upstream: b }\n",
        )
        .unwrap();
        let host = Counting(Cell::new(0));
        let loaded = config::load_file_on(&file, Some(&host)).unwrap();
        assert_eq!(host.0.get(), 1, "two upstreams, one name, one lookup");
        // Building looks nothing up again: the name would not resolve here.
        let runtime = Runtime::build(loaded, None, &Arc::new(Metrics::new())).unwrap();
        for name in ["a", "b"] {
            let addr = runtime.upstreams[name].targets[0].addr;
            assert_eq!(addr, "127.0.0.1:8000".parse::<SocketAddr>().unwrap());
        }
    }
}
