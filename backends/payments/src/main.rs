//! `payments` binary: parses the command line, sets up JSON logs, serves [`payments::app`].

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use payments::http::TrustedPeers;
use payments::{AppState, DEFAULT_LISTEN, store};

#[derive(Parser)]
#[command(
    name = "payments",
    about = "The payments service: the canary side of the payments split"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "PAYMENTS_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Comma-separated CIDRs of peers whose X-User-* headers are believed (the gateway, and the
    /// services that call this one).
    #[arg(long, env = "TRUSTED_GATEWAYS", default_value = "127.0.0.1/32,::1/128")]
    trusted_gateways: String,
    /// How many payments the process keeps in memory (oldest dropped first).
    #[arg(long, env = "PAYMENTS_CAPACITY", default_value_t = store::DEFAULT_CAPACITY)]
    capacity: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let otlp = service_kit::telemetry::OtlpSettings::from_env().map_err(anyhow::Error::msg)?;
    let telemetry = service_kit::telemetry::init(payments::SERVICE, "info", otlp.as_ref())
        .map_err(anyhow::Error::msg)?;
    let trusted = TrustedPeers::parse(&args.trusted_gateways)
        .map_err(|e| anyhow::anyhow!("--trusted-gateways / TRUSTED_GATEWAYS: {e}"))?;
    tracing::info!(trusted = ?trusted.nets(), capacity = args.capacity, "starting");
    let state = AppState::new(args.capacity, trusted).context("registering metrics")?;
    let served =
        service_kit::serve::serve(payments::SERVICE, args.listen, payments::app(state)).await;
    // Spans still queued go out before the process ends.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    served
}
