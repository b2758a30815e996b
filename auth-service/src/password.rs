//! Password hashing with argon2id (PHC strings), on tokio's blocking pool, with a bound on
//! concurrent hashes (each one holds `memory_kib` of RAM: an unbounded burst of logins would
//! otherwise be a memory DoS).
//!
//! [`PasswordHasher::verify_or_dummy`] runs a full verification against a fixed dummy hash made
//! with the same parameters when the account does not exist, so a wrong email and a wrong
//! password take about the same time.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

use crate::config::PasswordHashSettings;
use crate::error::AppError;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    pub fn new(s: PasswordHashSettings) -> Result<PasswordHasher, String> {
        let params = Params::new(s.memory_kib, s.iterations, s.parallelism, None)
            .map_err(|e| format!("password_hash: {e}"))?;
        let concurrency = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            * 2;
        let mut hasher = PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            dummy_hash: Arc::from(""),
        };
        // The dummy password is random and thrown away: nothing can match it.
        let dummy = hasher.hash_blocking(&crate::random::random_token(24))?;
        hasher.dummy_hash = Arc::from(dummy);
        Ok(hasher)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_blocking(&self, password: &str) -> Result<String, String> {
        let mut salt = [0u8; 16];
        crate::random::fill_random(&mut salt);
        self.argon2()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| format!("argon2 hash: {e}"))
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| AppError::internal("hash permits", e))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.hash_blocking(&password))
            .await
            .map_err(|e| AppError::internal("hash task", e))?
            .map_err(AppError::Internal)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when `stored` is None
    /// (and then returns false).
    pub async fn verify_or_dummy(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, AppError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| AppError::internal("hash permits", e))?;
        let argon2 = self.argon2();
        let dummy = self.dummy_hash.clone();
        tokio::task::spawn_blocking(move || {
            let real = stored.is_some();
            let hash = stored.as_deref().unwrap_or(&dummy);
            let ok = argon2.verify_password(password.as_bytes(), hash).is_ok();
            real && ok
        })
        .await
        .map_err(|e| AppError::internal("verify task", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordHasher {
        PasswordHasher::new(PasswordHashSettings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = fast();
        let stored = h.hash("correct horse battery".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{stored}"
        );
        assert!(
            h.verify_or_dummy("correct horse battery".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(
            !h.verify_or_dummy("wrong".into(), Some(stored))
                .await
                .unwrap()
        );
        assert!(!h.verify_or_dummy("anything".into(), None).await.unwrap());
    }

    #[test]
    fn default_parameters_are_owasp() {
        let h = PasswordHasher::new(PasswordHashSettings::default()).unwrap();
        assert!(h.dummy_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }
}
