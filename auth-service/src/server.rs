//! Running the service on a socket: the background tasks (key reload, refresh-token
//! housekeeping) around service-kit's [`serve`](service_kit::serve::serve): the listener, the
//! ready line, graceful shutdown on SIGINT / SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use service_kit::serve::ServeError;

use crate::state::AppState;

/// Expired refresh tokens are deleted this long after their expiry.
const REFRESH_PURGE_GRACE: Duration = Duration::from_secs(24 * 3600);
const REFRESH_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Serves `state` on `listen` until SIGINT or SIGTERM. Prints
/// `auth-service listening on http://ADDR` to stdout once the socket is bound (the state, built
/// first, has migrated the database and loaded a signing key).
pub async fn serve(state: AppState, listen: SocketAddr) -> Result<(), ServeError> {
    tracing::info!(issuer = %state.settings.issuer, "starting");
    let reload = tokio::spawn(reload_keys(state.clone()));
    let purge = tokio::spawn(purge_refresh_tokens(state.clone()));
    let served = service_kit::serve::serve(crate::SERVICE, listen, crate::app(state)).await;
    reload.abort();
    purge.abort();
    served
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
