//! The JWKS refresher: keeps the active config's key set fresh, following reloads.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::state::Shared;

/// Keeps the active config's JWKS fresh: fetches at start (readiness waits for it) and whenever
/// the store's schedule says so. Follows reloads: it always refreshes the *current* runtime's
/// store.
pub struct JwksRefresher {
    shared: Arc<Shared>,
}

impl JwksRefresher {
    pub fn new(shared: Arc<Shared>) -> Self {
        JwksRefresher { shared }
    }
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let rt = self.shared.runtime();
            let wait = match &rt.auth {
                Some(auth) => {
                    auth.jwks.refresh_if_due().await;
                    auth.jwks
                        .due_in()
                        .clamp(Duration::from_millis(50), Duration::from_secs(1))
                }
                None => Duration::from_secs(1),
            };
            drop(rt);
            tokio::select! {
                _ = shutdown.changed() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
