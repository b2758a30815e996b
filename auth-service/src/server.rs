//! Running the service on a socket: state, listener, the ready line, background tasks
//! (key reload, refresh-token housekeeping) and graceful shutdown on SIGINT / SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Settings;
use crate::state::{AppState, StartError};

/// Expired refresh tokens are deleted this long after their expiry.
const REFRESH_PURGE_GRACE: Duration = Duration::from_secs(24 * 3600);
const REFRESH_PURGE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Serves until SIGINT or SIGTERM. Prints `auth-service listening on http://ADDR` to stdout
/// once the database is migrated, a signing key is loaded and the socket is bound.
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let listen = settings.listen;
    let state = AppState::new(settings).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: listen,
        source,
    })?;

    let reload = tokio::spawn(reload_keys(state.clone()));
    let purge = tokio::spawn(purge_refresh_tokens(state.clone()));

    tracing::info!(%addr, issuer = %state.settings.issuer, "auth-service listening");
    println!("auth-service listening on http://{addr}");
    let _ = std::io::stdout().flush();

    let app = crate::app(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    reload.abort();
    purge.abort();
    tracing::info!("auth-service stopped");
    result.map_err(ServeError::Serve)
}

/// Reloads the signing keys every `key_reload_interval`, so a rotation made by the CLI or
/// another replica is picked up without a restart.
async fn reload_keys(state: AppState) {
    let mut tick = tokio::time::interval(state.settings.key_reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the keys were just loaded
    loop {
        tick.tick().await;
        if let Err(e) = state.keys.reload().await {
            tracing::warn!(error = %e, "reloading signing keys failed; keeping the current set");
        }
    }
}

async fn purge_refresh_tokens(state: AppState) {
    let mut tick = tokio::time::interval(REFRESH_PURGE_EVERY);
    loop {
        tick.tick().await;
        match crate::refresh::purge_expired(&state.db, REFRESH_PURGE_GRACE).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired refresh tokens purged"),
            Err(e) => tracing::warn!(error = %e, "purging expired refresh tokens failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
