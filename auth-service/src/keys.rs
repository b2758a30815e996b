//! Signing keys: generation, rotation, the overlap window, and the live [`KeySet`].
//!
//! - Keys are generated with aws-lc-rs (RSA 2048, P-256, Ed25519), stored in `signing_keys` as
//!   PKCS#8 PEM next to their public JWK; the `kid` is the RFC 7638 JWK thumbprint (SHA-256).
//! - Exactly one key is meant to be *active* (`retired_at_ms IS NULL`; if several are, e.g.
//!   after two replicas started at once on an empty database, the newest signs).
//!   [`rotate`] inserts a new key and retires the others in one transaction.
//! - A retired key stays *published* in the JWKS (and accepted by `/api/auth/me`) for the
//!   overlap window `access_ttl + jwks_max_age` after its retirement (see
//!   [`crate::Settings::key_overlap`]), then it is *retired* for good.
//! - A running server holds the key set in an [`ArcSwap`] and [`KeyStore::reload`]s it from the
//!   database on a timer, so a rotation done by the CLI (or another replica) is picked up
//!   without a restart.
//!
//! Private key material never leaves this module except as the `EncodingKey` used to sign; it
//! is never logged (only `kid`s are).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{DecodingKey, EncodingKey};
use prometheus::IntGaugeVec;
use sqlx::Row;

use crate::config::SigningAlg;
use crate::db::{Db, duration_ms, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating a {alg} key: {message}")]
    Generate { alg: SigningAlg, message: String },
    #[error("signing key {kid}: {message}")]
    Load { kid: String, message: String },
    #[error("signing keys: {0}")]
    Db(#[from] sqlx::Error),
}

/// A freshly generated key pair.
pub struct GeneratedKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub private_pem: String,
    pub public_jwk: Jwk,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Generates a key pair for `alg` (RSA 2048 / P-256 / Ed25519). CPU-bound (RSA: tens of ms).
pub fn generate(alg: SigningAlg) -> Result<GeneratedKey, KeyError> {
    let fail = |message: String| KeyError::Generate { alg, message };
    let pkcs8: Vec<u8> = match alg {
        SigningAlg::Rs256 => {
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|e| fail(e.to_string()))?;
            kp.as_der()
                .map_err(|e| fail(e.to_string()))?
                .as_ref()
                .to_vec()
        }
        SigningAlg::Es256 => {
            let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            )
            .map_err(|e| fail(e.to_string()))?;
            kp.to_pkcs8v1()
                .map_err(|e| fail(e.to_string()))?
                .as_ref()
                .to_vec()
        }
        SigningAlg::EdDsa => {
            let kp = aws_lc_rs::signature::Ed25519KeyPair::generate()
                .map_err(|e| fail(e.to_string()))?;
            kp.to_pkcs8v1()
                .map_err(|e| fail(e.to_string()))?
                .as_ref()
                .to_vec()
        }
    };
    let private_pem = pem_encode("PRIVATE KEY", &pkcs8);
    let encoding = encoding_key(alg, &private_pem).map_err(fail)?;
    let mut jwk =
        Jwk::from_encoding_key(&encoding, alg.jwt_algorithm()).map_err(|e| fail(e.to_string()))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| fail(e.to_string()))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(key_algorithm(alg));
    Ok(GeneratedKey {
        kid,
        alg,
        private_pem,
        public_jwk: jwk,
    })
}

fn key_algorithm(alg: SigningAlg) -> KeyAlgorithm {
    match alg {
        SigningAlg::Rs256 => KeyAlgorithm::RS256,
        SigningAlg::Es256 => KeyAlgorithm::ES256,
        SigningAlg::EdDsa => KeyAlgorithm::EdDSA,
    }
}

fn encoding_key(alg: SigningAlg, pem: &str) -> Result<EncodingKey, String> {
    let r = match alg {
        SigningAlg::Rs256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        SigningAlg::Es256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        SigningAlg::EdDsa => EncodingKey::from_ed_pem(pem.as_bytes()),
    };
    r.map_err(|e| format!("private key: {e}"))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Signs new tokens; published.
    Active,
    /// Retired, still published until `until_ms` (unix ms).
    Overlap { until_ms: i64 },
    /// No longer published.
    Retired,
}

impl KeyStatus {
    pub fn of(retired_at_ms: Option<i64>, overlap: Duration, now_ms: i64) -> KeyStatus {
        match retired_at_ms {
            None => KeyStatus::Active,
            Some(r) => {
                let until_ms = r.saturating_add(duration_ms(overlap));
                if until_ms > now_ms {
                    KeyStatus::Overlap { until_ms }
                } else {
                    KeyStatus::Retired
                }
            }
        }
    }

    pub fn is_published(self) -> bool {
        !matches!(self, KeyStatus::Retired)
    }

    pub fn label(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Overlap { .. } => "overlap",
            KeyStatus::Retired => "retired",
        }
    }
}

/// One row of `keys list`.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at_ms: i64,
    pub retired_at_ms: Option<i64>,
    pub status: KeyStatus,
}

/// Every key, oldest first, with its status at `now`.
pub async fn list(db: &Db, overlap: Duration) -> Result<Vec<KeyInfo>, KeyError> {
    let now = now_ms();
    let rows = sqlx::query(
        "SELECT kid, alg, created_at_ms, retired_at_ms FROM signing_keys ORDER BY created_at_ms, kid",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let retired_at_ms: Option<i64> = r.try_get("retired_at_ms")?;
            Ok(KeyInfo {
                kid: r.try_get("kid")?,
                alg: r.try_get("alg")?,
                created_at_ms: r.try_get("created_at_ms")?,
                retired_at_ms,
                status: KeyStatus::of(retired_at_ms, overlap, now),
            })
        })
        .collect()
}

/// Adds a new active key for `alg` and retires every other active key, atomically.
pub async fn rotate(db: &Db, alg: SigningAlg) -> Result<GeneratedKeyInfo, KeyError> {
    let key = tokio::task::spawn_blocking(move || generate(alg))
        .await
        .map_err(|e| KeyError::Generate {
            alg,
            message: e.to_string(),
        })??;
    let jwk_json = serde_json::to_string(&key.public_jwk).map_err(|e| KeyError::Generate {
        alg,
        message: e.to_string(),
    })?;
    let now = now_ms();
    let mut tx = db.pool.begin().await?;
    // Write first: on SQLite this takes the write lock at once (no upgrade deadlock).
    let retired =
        sqlx::query("UPDATE signing_keys SET retired_at_ms = $1 WHERE retired_at_ms IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_key_pem, public_jwk, created_at_ms, retired_at_ms) \
         VALUES ($1, $2, $3, $4, $5, NULL)",
    )
    .bind(&key.kid)
    .bind(alg.as_str())
    .bind(&key.private_pem)
    .bind(&jwk_json)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(kid = %key.kid, alg = %alg, retired, "signing key rotated");
    Ok(GeneratedKeyInfo {
        kid: key.kid,
        alg,
        retired,
    })
}

/// The public outcome of [`rotate`].
#[derive(Debug, Clone)]
pub struct GeneratedKeyInfo {
    pub kid: String,
    pub alg: SigningAlg,
    /// How many previously active keys were retired.
    pub retired: u64,
}

/// Makes sure an active key for `alg` exists: generates one on first start, and rotates when
/// the configured algorithm differs from the active key's. Returns the new key, if any.
pub async fn ensure_active_key(
    db: &Db,
    alg: SigningAlg,
) -> Result<Option<GeneratedKeyInfo>, KeyError> {
    let active = sqlx::query(
        "SELECT kid, alg FROM signing_keys WHERE retired_at_ms IS NULL ORDER BY created_at_ms DESC, kid DESC",
    )
    .fetch_optional(&db.pool)
    .await?;
    match active {
        Some(row) => {
            let active_alg: String = row.try_get("alg")?;
            if active_alg == alg.as_str() {
                return Ok(None);
            }
            let kid: String = row.try_get("kid")?;
            tracing::info!(%kid, from = %active_alg, to = %alg, "signing_alg changed: rotating");
            rotate(db, alg).await.map(Some)
        }
        None => {
            tracing::info!(alg = %alg, "no active signing key: generating one");
            rotate(db, alg).await.map(Some)
        }
    }
}

/// The key that signs.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub encoding: EncodingKey,
}

/// A key that verifies (and is published while its status says so).
pub struct VerificationKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub jwk: Jwk,
    pub decoding: DecodingKey,
    pub retired_at_ms: Option<i64>,
}

/// The keys loaded from the database at one moment.
pub struct KeySet {
    signing: Option<SigningKey>,
    keys: Vec<VerificationKey>,
    overlap: Duration,
    /// (kid, retired_at_ms) of the loaded keys, to skip rebuilding when nothing changed.
    fingerprint: Vec<(String, Option<i64>)>,
}

impl KeySet {
    pub fn empty(overlap: Duration) -> KeySet {
        KeySet {
            signing: None,
            keys: Vec::new(),
            overlap,
            fingerprint: Vec::new(),
        }
    }

    pub fn signing(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// The key with this kid, if it is published now.
    pub fn verification_key(&self, kid: &str) -> Option<&VerificationKey> {
        let now = now_ms();
        self.keys
            .iter()
            .find(|k| k.kid == kid)
            .filter(|k| KeyStatus::of(k.retired_at_ms, self.overlap, now).is_published())
    }

    /// The keys published at `now_ms`, newest first.
    pub fn published(&self, now_ms: i64) -> Vec<&VerificationKey> {
        let mut out: Vec<&VerificationKey> = self
            .keys
            .iter()
            .filter(|k| KeyStatus::of(k.retired_at_ms, self.overlap, now_ms).is_published())
            .collect();
        out.reverse();
        out
    }

    /// The JWKS document at `now_ms`.
    pub fn jwks(&self, now_ms: i64) -> serde_json::Value {
        let keys: Vec<&Jwk> = self.published(now_ms).into_iter().map(|k| &k.jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    /// Distinct algorithms of the published keys.
    pub fn algorithms(&self, now_ms: i64) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = self
            .published(now_ms)
            .iter()
            .map(|k| k.alg.as_str())
            .collect();
        algs.sort_unstable();
        algs.dedup();
        algs
    }
}

/// The live key set of a running service.
pub struct KeyStore {
    db: Db,
    overlap: Duration,
    current: ArcSwap<KeySet>,
    gauge: IntGaugeVec,
}

impl KeyStore {
    /// Loads the keys now.
    pub async fn load(db: Db, overlap: Duration, gauge: IntGaugeVec) -> Result<KeyStore, KeyError> {
        let store = KeyStore {
            db,
            overlap,
            current: ArcSwap::from_pointee(KeySet::empty(overlap)),
            gauge,
        };
        store.reload().await?;
        Ok(store)
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Re-reads the keys from the database; swaps the set in if anything changed.
    /// Returns true when it did.
    pub async fn reload(&self) -> Result<bool, KeyError> {
        let now = now_ms();
        let rows = sqlx::query(
            "SELECT kid, alg, private_key_pem, public_jwk, created_at_ms, retired_at_ms \
             FROM signing_keys ORDER BY created_at_ms, kid",
        )
        .fetch_all(&self.db.pool)
        .await?;

        let mut counts = [0i64; 3];
        let mut live = Vec::new();
        for r in &rows {
            let retired_at_ms: Option<i64> = r.try_get("retired_at_ms")?;
            let status = KeyStatus::of(retired_at_ms, self.overlap, now);
            counts[match status {
                KeyStatus::Active => 0,
                KeyStatus::Overlap { .. } => 1,
                KeyStatus::Retired => 2,
            }] += 1;
            if status.is_published() {
                live.push((r, retired_at_ms));
            }
        }
        for (i, label) in ["active", "overlap", "retired"].iter().enumerate() {
            self.gauge.with_label_values(&[*label]).set(counts[i]);
        }

        let fingerprint: Vec<(String, Option<i64>)> = live
            .iter()
            .map(|(r, retired)| Ok((r.try_get::<String, _>("kid")?, *retired)))
            .collect::<Result<_, sqlx::Error>>()?;
        if fingerprint == self.current.load().fingerprint {
            return Ok(false);
        }

        let mut keys = Vec::with_capacity(live.len());
        let mut signing = None;
        for (r, retired_at_ms) in live {
            let kid: String = r.try_get("kid")?;
            let alg_s: String = r.try_get("alg")?;
            let load_err = |message: String| KeyError::Load {
                kid: kid.clone(),
                message,
            };
            let alg: SigningAlg = alg_s.parse().map_err(load_err)?;
            let jwk: Jwk = serde_json::from_str(&r.try_get::<String, _>("public_jwk")?)
                .map_err(|e| load_err(format!("public_jwk: {e}")))?;
            let decoding =
                DecodingKey::from_jwk(&jwk).map_err(|e| load_err(format!("public_jwk: {e}")))?;
            if retired_at_ms.is_none() {
                // Rows are oldest first: the last active one (the newest) signs.
                let pem: String = r.try_get("private_key_pem")?;
                let encoding = encoding_key(alg, &pem).map_err(load_err)?;
                signing = Some(SigningKey {
                    kid: kid.clone(),
                    alg,
                    encoding,
                });
            }
            keys.push(VerificationKey {
                kid,
                alg,
                jwk,
                decoding,
                retired_at_ms,
            });
        }
        let set = KeySet {
            signing,
            keys,
            overlap: self.overlap,
            fingerprint,
        };
        tracing::info!(
            signing_kid = set
                .signing
                .as_ref()
                .map(|k| k.kid.as_str())
                .unwrap_or("none"),
            published = set.keys.len(),
            "signing keys loaded"
        );
        self.current.store(Arc::new(set));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_a_usable_key_with_a_thumbprint_kid() {
        for alg in SigningAlg::ALL {
            let key = generate(alg).unwrap();
            assert_eq!(key.kid.len(), 43, "{alg}: base64url SHA-256");
            assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let json = serde_json::to_value(&key.public_jwk).unwrap();
            assert_eq!(json["kid"], key.kid.as_str());
            assert_eq!(json["use"], "sig");
            assert_eq!(json["alg"], alg.as_str());
            assert!(json.get("d").is_none(), "{alg}: no private part in the JWK");
            // Sign with the PEM, verify with the JWK.
            let enc = encoding_key(alg, &key.private_pem).unwrap();
            let dec = DecodingKey::from_jwk(&key.public_jwk).unwrap();
            let sig = jsonwebtoken::crypto::sign(b"msg", &enc, alg.jwt_algorithm()).unwrap();
            assert!(jsonwebtoken::crypto::verify(&sig, b"msg", &dec, alg.jwt_algorithm()).unwrap());
        }
    }

    #[test]
    fn status_follows_the_overlap_window() {
        let overlap = Duration::from_secs(10);
        assert_eq!(KeyStatus::of(None, overlap, 1_000), KeyStatus::Active);
        assert_eq!(
            KeyStatus::of(Some(1_000), overlap, 5_000),
            KeyStatus::Overlap { until_ms: 11_000 }
        );
        assert_eq!(
            KeyStatus::of(Some(1_000), overlap, 10_999),
            KeyStatus::Overlap { until_ms: 11_000 }
        );
        assert_eq!(
            KeyStatus::of(Some(1_000), overlap, 11_000),
            KeyStatus::Retired
        );
    }
}
