//! The shell of an extracted service (`backends/notifications`, `backends/payments`): everything
//! but its domain. A service declares itself once, as a [`ServiceSpec`] (its name, its command
//! line's defaults, what it stores, its routes), and gets
//!
//! - [`AppState`]: its [`Store`], the [`TrustedPeers`] whose identity headers it believes, its
//!   [`HttpMetrics`];
//! - [`app`]: its routes plus `GET /healthz`, `GET /metrics`, 404 / 405 as problems, and the
//!   [`request_context`] middleware around all of them;
//! - [`Args`] and [`main`]: `--listen`, `--trusted-gateways`, `--capacity` (each with an
//!   environment variable), JSON logs and OTLP export, serving until SIGINT / SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{FromRef, Request, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use clap::{CommandFactory, FromArgMatches, Parser};
use serde_json::Value;

use crate::http::{RequestContext, request_context};
use crate::identity::TrustedPeers;
use crate::json::RejectWith;
use crate::metrics::HttpMetrics;
use crate::problem::Problem;
use crate::store::{DEFAULT_CAPACITY, Record, Store};
use crate::telemetry::{self, OtlpSettings};

/// What an extracted service declares about itself.
pub trait ServiceSpec: Sized + Send + Sync + 'static {
    /// Its name: `X-Served-By`, the metric prefix, the problem types, the ready line, the
    /// service name of its spans.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// `--listen`'s default, and the environment variable that sets it.
    const DEFAULT_LISTEN: &'static str;
    const LISTEN_ENV: &'static str;
    /// The environment variable that sets `--capacity`.
    const CAPACITY_ENV: &'static str;
    /// What it stores, plural, for `--capacity`'s help: by default its name ("notifications").
    const RECORDS: &'static str = Self::NAME;

    type Record: Record;

    /// Its own routes; [`app`] adds the rest.
    fn routes() -> Router<AppState<Self>>;
}

/// Per-process state, shared by the handlers.
pub struct AppState<S: ServiceSpec> {
    pub store: Arc<Store<S::Record>>,
    pub trusted: TrustedPeers,
    pub metrics: HttpMetrics,
}

impl<S: ServiceSpec> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            store: self.store.clone(),
            trusted: self.trusted.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<S: ServiceSpec> AppState<S> {
    /// An empty store of `capacity` records; metrics registered under the service's name.
    pub fn new(capacity: usize, trusted: TrustedPeers) -> Result<Self, prometheus::Error> {
        Ok(AppState {
            store: Arc::new(Store::new(capacity)),
            trusted,
            metrics: HttpMetrics::new(S::NAME)?,
        })
    }
}

impl<S: ServiceSpec> FromRef<AppState<S>> for TrustedPeers {
    fn from_ref(state: &AppState<S>) -> Self {
        state.trusted.clone()
    }
}

impl<S: ServiceSpec> RejectWith for AppState<S> {
    type Error = Problem;
}

/// The service's router: [`ServiceSpec::routes`], `/healthz`, `/metrics`, problem answers for
/// unknown paths and methods, all inside [`request_context`].
pub fn app<S: ServiceSpec>(state: AppState<S>) -> Router {
    S::routes()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            RequestContext::new(S::NAME, state.metrics.clone()),
            request_context,
        ))
        .with_state(state)
}

/// `GET /healthz`: 200 `{"status": "ok"}` while the process serves.
async fn healthz() -> Json<Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /metrics`: the Prometheus text format (not routed by the gateway).
async fn metrics<S: ServiceSpec>(State(state): State<AppState<S>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// 404 for unknown paths, as a problem.
async fn not_found(req: Request) -> Problem {
    Problem::not_found(format!("no route for {}", req.uri().path()))
}

/// 405 for known paths with another method, as a problem.
async fn method_not_allowed() -> Problem {
    Problem::method_not_allowed()
}

/// The command line; the name, `--help` text, defaults and environment variables are the
/// service's ([`Args::command_for`]).
#[derive(Debug, Parser)]
pub struct Args {
    /// Address to listen on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Comma-separated CIDRs of peers whose X-User-* headers are believed (the gateway, and the
    /// services that call this one).
    #[arg(long, env = "TRUSTED_GATEWAYS", default_value = "127.0.0.1/32,::1/128")]
    pub trusted_gateways: String,
    #[arg(long, default_value_t = DEFAULT_CAPACITY)]
    pub capacity: usize,
}

impl Args {
    /// The command line of service `S`.
    pub fn command_for<S: ServiceSpec>() -> clap::Command {
        Args::command()
            .name(S::NAME)
            .about(S::ABOUT)
            .mut_arg("listen", |a| {
                a.env(S::LISTEN_ENV)
                    .default_value(S::DEFAULT_LISTEN)
                    .required(false)
            })
            .mut_arg("capacity", |a| {
                a.env(S::CAPACITY_ENV).help(format!(
                    "How many {} the process keeps in memory (oldest dropped first)",
                    S::RECORDS
                ))
            })
    }

    /// Parses the process's arguments for service `S`; exits with clap's message on an error.
    pub fn parse_for<S: ServiceSpec>() -> Self {
        let matches = Self::command_for::<S>().get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// The whole of service `S`'s `main`: the command line, JSON logs (and OTLP export when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set), serving [`app`] until SIGINT / SIGTERM, then the
/// spans still queued.
pub async fn main<S: ServiceSpec>() -> anyhow::Result<()> {
    let args = Args::parse_for::<S>();
    let otlp = OtlpSettings::from_env().map_err(anyhow::Error::msg)?;
    let telemetry = telemetry::init(S::NAME, "info", otlp.as_ref()).map_err(anyhow::Error::msg)?;
    let trusted = TrustedPeers::parse(&args.trusted_gateways)
        .map_err(|e| anyhow::anyhow!("--trusted-gateways / TRUSTED_GATEWAYS: {e}"))?;
    tracing::info!(trusted = ?trusted.nets(), capacity = args.capacity, "starting");
    let state = AppState::<S>::new(args.capacity, trusted).context("registering metrics")?;
    let served = crate::serve::serve(S::NAME, args.listen, app(state)).await;
    // Spans still queued go out before the process ends.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(served?)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    #[derive(Clone)]
    struct Thing;

    impl Record for Thing {
        fn owner(&self) -> &str {
            ""
        }
    }

    impl ServiceSpec for Fake {
        const NAME: &'static str = "fake";
        const ABOUT: &'static str = "A fake service";
        const DEFAULT_LISTEN: &'static str = "127.0.0.1:8999";
        const LISTEN_ENV: &'static str = "FAKE_SERVICE_KIT_TEST_LISTEN";
        const CAPACITY_ENV: &'static str = "FAKE_SERVICE_KIT_TEST_CAPACITY";
        const RECORDS: &'static str = "things";
        type Record = Thing;
        fn routes() -> Router<AppState<Self>> {
            Router::new()
        }
    }

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let matches = Args::command_for::<Fake>().try_get_matches_from(args)?;
        Args::from_arg_matches(&matches)
    }

    #[test]
    fn the_command_line_is_the_services() {
        let cmd = Args::command_for::<Fake>();
        cmd.clone().debug_assert();
        assert_eq!(cmd.get_name(), "fake");
        let help = cmd.clone().render_help().to_string();
        assert!(help.contains("How many things the process keeps"), "{help}");
        assert!(help.contains("FAKE_SERVICE_KIT_TEST_LISTEN"), "{help}");

        let args = parse(&["fake"]).expect("defaults");
        assert_eq!(args.listen.to_string(), "127.0.0.1:8999");
        assert_eq!(args.capacity, DEFAULT_CAPACITY);
        let args = parse(&["fake", "--listen", "0.0.0.0:1", "--capacity", "5"]).expect("flags");
        assert_eq!((args.listen.port(), args.capacity), (1, 5));
        assert!(parse(&["fake", "--listen", "nowhere"]).is_err());
    }
}
