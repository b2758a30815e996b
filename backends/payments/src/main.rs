//! `payments` binary: parses the command line, sets up JSON logs, serves [`payments::app`].

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use payments::http::TrustedPeers;
use payments::{AppState, DEFAULT_LISTEN, store};
use tokio::net::TcpListener;

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
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let trusted = TrustedPeers::parse(&args.trusted_gateways)
        .map_err(|e| anyhow::anyhow!("--trusted-gateways / TRUSTED_GATEWAYS: {e}"))?;
    let state = AppState::new(args.capacity, trusted.clone()).context("registering metrics")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr().context("local address")?;
    tracing::info!(%addr, trusted = ?trusted.nets(), capacity = args.capacity, "payments listening");
    println!("payments listening on http://{addr}");
    let _ = std::io::stdout().flush();

    let app = payments::app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server")?;
    tracing::info!("payments stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
