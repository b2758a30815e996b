//! Running a service: the listener, the one-line ready message on stdout
//! (`<service> listening on http://ADDR`, which scripts and tests wait for), and a graceful stop
//! on SIGINT / SIGTERM.

use std::io::Write;
use std::net::SocketAddr;

use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Binds `listen`, prints the ready line and serves `app` (with each connection's peer address
/// as `ConnectInfo<SocketAddr>`) until SIGINT or SIGTERM.
pub async fn serve(service: &str, listen: SocketAddr, app: axum::Router) -> Result<(), ServeError> {
    let bind = |source| ServeError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    tracing::info!(%addr, "{service} listening");
    println!("{service} listening on http://{addr}");
    let _ = std::io::stdout().flush();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(ServeError::Serve)?;
    tracing::info!("{service} stopped");
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
    tracing::info!("shutdown signal received");
}
