//! Wiring: builds the pingora server (proxy listeners, admin listener, reloader) from a config
//! file and runs it until SIGTERM (drain) or SIGINT (fast stop).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{ExecutionPhase, RunArgs, Server};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;

use crate::admin::AdminApp;
use crate::background::{HealthChecker, JwksRefresher, Reloader};
use crate::edge::Edge;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::state::{self, Shared};

/// Runs the gateway. Returns when the server has stopped.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let runtime =
        state::load_runtime(config_path, None, &metrics).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = &runtime.loaded.config;
    let listen = config.listen;
    let admin_listen = config.admin_listen;
    let tls_listen = config.tls.as_ref().map(|t| t.listen);
    let settings = config.server.clone();
    for (what, addr) in [
        ("listen", Some(listen)),
        ("admin.listen", Some(admin_listen)),
        ("tls.listen", tls_listen),
    ] {
        if let Some(addr) = addr {
            check_free(what, addr)?;
        }
    }
    let shared = Shared::new(config_path.to_path_buf(), runtime, metrics)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let conf = ServerConf {
        threads: settings.threads,
        grace_period_seconds: Some(settings.drain_timeout.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: settings.upstream_keepalive_pool,
        // Above the most attempts `failover` can ask for (1 + 10 retries + the free one on the
        // route's upstream, as many on the fallback), so pingora never stops it first.
        max_retries: 32,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);

    let mut proxy = Service::new(
        "gateway proxy".to_string(),
        Edge::new(
            pingora_proxy::http_proxy(&server.configuration, Proxy::new(shared.clone())),
            shared.metrics.clone(),
        ),
    );
    proxy.add_tcp(&listen.to_string());
    if let (Some(addr), Some(resolver)) = (tls_listen, shared.cert_resolver.clone()) {
        let mut tls = TlsSettings::intermediate("", "").context("TLS settings")?;
        tls.set_cert_resolver(resolver);
        tls.enable_h2();
        proxy.add_tls_with_settings(&addr.to_string(), None, tls);
    }
    let mut admin = Service::new("gateway admin".to_string(), AdminApp::new(shared.clone()));
    admin.threads = Some(1);
    admin.add_tcp(&admin_listen.to_string());

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service(
        "config reloader",
        Reloader::new(shared.clone()),
    ));
    server.add_service(background_service(
        "health checker",
        HealthChecker::new(shared.clone()),
    ));
    server.add_service(background_service(
        "JWKS refresher",
        JwksRefresher::new(shared.clone()),
    ));
    spawn_drain_watcher(&server, shared.clone(), settings.drain_timeout);

    tracing::info!(
        %listen,
        tls = tls_listen.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        admin = %admin_listen,
        threads = settings.threads,
        config = %config_path.display(),
        "gateway starting"
    );
    server.bootstrap();
    server.run(RunArgs::default());
    shared.telemetry.flush();
    tracing::info!("gateway stopped");
    Ok(())
}

/// A clear message instead of a panic deep in the listener when a port is taken.
fn check_free(what: &str, addr: SocketAddr) -> anyhow::Result<()> {
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            bail!(
                "{what} {addr}: the address is already in use (another process listens there); choose another port in the config"
            )
        }
        Err(e) => bail!("{what} {addr}: cannot listen: {e}"),
    }
}

/// SIGTERM: pingora stops accepting and closes idle connections, then waits up to the grace
/// period. We end that wait as soon as no request is in flight, and exit 0.
fn spawn_drain_watcher(server: &Server, shared: Arc<Shared>, drain_timeout: Duration) {
    let mut phases = server.watch_execution_phase();
    std::thread::spawn(move || {
        while let Ok(phase) = phases.blocking_recv() {
            match phase {
                ExecutionPhase::ShutdownStarted => {
                    shared.start_draining();
                    tracing::info!(
                        in_flight = shared.in_flight(),
                        "shutting down: draining in-flight requests"
                    );
                }
                ExecutionPhase::ShutdownGracePeriod => {
                    let deadline = Instant::now() + drain_timeout;
                    while shared.in_flight() > 0 && Instant::now() < deadline {
                        std::thread::park_timeout(Duration::from_millis(10));
                    }
                    let left = shared.in_flight();
                    if left == 0 {
                        tracing::info!("drained; exiting");
                    } else {
                        tracing::warn!(in_flight = left, "drain timeout reached; exiting");
                    }
                    // Queued spans and access-log lines go out before the process does.
                    shared.telemetry.flush();
                    std::process::exit(0);
                }
                _ => {}
            }
        }
    });
}
