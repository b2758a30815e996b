//! Per-process state shared by the handlers (behind one `Arc`): settings, database, live key
//! set, password hasher, login throttle, metrics. No globals.

use std::ops::Deref;
use std::sync::Arc;

use service_kit::json::RejectWith;

use crate::config::Settings;
use crate::db::{Db, DbError};
use crate::error::AppError;
use crate::keys::{KeyError, KeyStore, ensure_active_key};
use crate::metrics::Metrics;
use crate::password::PasswordHasher;
use crate::throttle::LoginThrottle;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: Db,
    pub keys: KeyStore,
    pub hasher: PasswordHasher,
    pub throttle: LoginThrottle,
    pub metrics: Metrics,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Request bodies ([`service_kit::JsonBody`]) that do not parse are [`AppError`]s.
impl RejectWith for AppState {
    type Error = AppError;
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("{0}")]
    Password(String),
}

impl AppState {
    /// Connects and migrates the database, makes sure an active signing key for the configured
    /// algorithm exists, and loads the key set.
    pub async fn new(settings: Settings) -> Result<AppState, StartError> {
        let db = Db::connect(&settings.database_url, settings.database_max_connections).await?;
        ensure_active_key(&db, settings.signing_alg).await?;
        Self::with_db(settings, db).await
    }

    /// Like [`AppState::new`] on an already connected database (no key is generated).
    pub async fn with_db(settings: Settings, db: Db) -> Result<AppState, StartError> {
        let metrics = Metrics::new();
        let keys = KeyStore::load(
            db.clone(),
            settings.key_overlap(),
            metrics.signing_keys.clone(),
        )
        .await?;
        let hasher = PasswordHasher::new(settings.password_hash).map_err(StartError::Password)?;
        let throttle = LoginThrottle::new(settings.login_throttle);
        Ok(AppState(Arc::new(Inner {
            settings,
            db,
            keys,
            hasher,
            throttle,
            metrics,
        })))
    }
}
