//! The health checker: runs every due active check (see [`crate::health`] for the rules it
//! counts by) and nudges lazy breaker transitions, on a short tick over the *current* runtime, so
//! it follows reloads.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_load_balancing::Backend;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck};
use tokio::time::Instant;

use crate::config::model::HealthCheckSpec;
use crate::state::Shared;
use crate::upstream::Target;

/// The background service running every due check, and nudging lazy breaker transitions
/// (Open → HalfOpen) so the state gauge moves without traffic.
pub struct HealthChecker {
    shared: Arc<Shared>,
}

/// How often the service looks for due checks (and picks up a reloaded config).
const TICK: Duration = Duration::from_millis(100);

impl HealthChecker {
    pub fn new(shared: Arc<Shared>) -> Self {
        HealthChecker { shared }
    }

    fn tick(&self) {
        let rt = self.shared.runtime();
        for up in rt.upstreams.values() {
            for target in &up.targets {
                if let Some(b) = &target.breaker {
                    b.state();
                }
            }
            let Some(spec) = &up.spec.health_check else {
                continue;
            };
            let now = Instant::now();
            for target in &up.targets {
                let Some(check) = &target.probe else {
                    continue;
                };
                if target.health.claim_if_due(now) {
                    tokio::spawn(run_check(
                        self.shared.clone(),
                        up.spec.name.clone(),
                        spec.clone(),
                        check.clone(),
                        target.clone(),
                        now,
                    ));
                }
            }
        }
    }
}

async fn run_check(
    shared: Arc<Shared>,
    upstream: String,
    spec: HealthCheckSpec,
    check: Arc<HttpHealthCheck>,
    target: Arc<Target>,
    started: Instant,
) {
    let backend = Backend {
        addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(target.addr),
        weight: 1,
        ext: http::Extensions::new(),
    };
    // The peer's timeouts bound each step; this bounds the whole check.
    let result = match tokio::time::timeout(spec.timeout, check.check(&backend)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err("timed out".to_string()),
    };
    let ok = result.is_ok();
    let m = &shared.metrics;
    m.health_checks
        .with_label_values(&[
            upstream.as_str(),
            target.name.as_str(),
            if ok { "success" } else { "failure" },
        ])
        .inc();
    if let Some(healthy) = target.health.observe(result.clone(), &spec, started) {
        m.target_up
            .with_label_values(&[upstream.as_str(), target.name.as_str()])
            .set(i64::from(healthy));
        if healthy {
            tracing::info!(upstream, target = %target.name, "target healthy again");
        } else {
            tracing::warn!(
                upstream,
                target = %target.name,
                error = result.err().unwrap_or_default(),
                "target unhealthy: taken out of rotation"
            );
        }
    }
}

/// A short, address-free reason for `/admin/upstreams` and the log.
fn describe(e: &pingora_error::Error) -> String {
    use pingora_error::ErrorType::*;
    match e.etype() {
        CustomCode(_, status) => format!("status {status}"),
        ConnectTimedout | ReadTimedout | WriteTimedout => "timed out".into(),
        ConnectRefused => "connection refused".into(),
        other => other.as_str().to_string(),
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => self.tick(),
            }
        }
    }
}
