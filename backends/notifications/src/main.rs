//! `notifications` binary: parses the command line, sets up JSON logs, serves [`notifications::app`].

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use notifications::http::TrustedPeers;
use notifications::{AppState, DEFAULT_LISTEN, store};

#[derive(Parser)]
#[command(
    name = "notifications",
    about = "The notifications service extracted from the monolith"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "NOTIFICATIONS_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Comma-separated CIDRs of peers whose X-User-* headers are believed (the gateway, and the
    /// services that call this one).
    #[arg(long, env = "TRUSTED_GATEWAYS", default_value = "127.0.0.1/32,::1/128")]
    trusted_gateways: String,
    /// How many notifications the process keeps in memory (oldest dropped first).
    #[arg(long, env = "NOTIFICATIONS_CAPACITY", default_value_t = store::DEFAULT_CAPACITY)]
    capacity: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let otlp = service_kit::telemetry::OtlpSettings::from_env().map_err(anyhow::Error::msg)?;
    let telemetry = service_kit::telemetry::init(notifications::SERVICE, "info", otlp.as_ref())
        .map_err(anyhow::Error::msg)?;
    let trusted = TrustedPeers::parse(&args.trusted_gateways)
        .map_err(|e| anyhow::anyhow!("--trusted-gateways / TRUSTED_GATEWAYS: {e}"))?;
    tracing::info!(trusted = ?trusted.nets(), capacity = args.capacity, "starting");
    let state = AppState::new(args.capacity, trusted).context("registering metrics")?;
    let served = service_kit::serve::serve(
        notifications::SERVICE,
        args.listen,
        notifications::app(state),
    )
    .await;
    // Spans still queued go out before the process ends.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    served
}
