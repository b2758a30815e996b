//! Refresh tokens: opaque 32-byte random values (base64url), stored only as SHA-256 hashes.
//!
//! Every login starts a *family*. [`rotate`] marks the presented token used and issues its
//! successor in the same family, atomically: the conditional
//! `UPDATE … WHERE used_at_ms IS NULL AND revoked_at_ms IS NULL` lets exactly one of two
//! concurrent refreshes of the same token win. Presenting a token that was already used is
//! theft detection: the whole family is revoked, so neither the thief nor the victim can go on
//! with it. [`revoke_family`] is logout.

use std::time::Duration;

use sqlx::Row;

use crate::db::{Db, duration_ms, now_ms};
use crate::random::{new_id, random_token};

pub const TOKEN_BYTES: usize = 32;

/// A newly issued refresh token: the value goes to the client, never to the database or logs.
pub struct Issued {
    pub token: String,
    pub family_id: String,
    pub user_id: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("family_id", &self.family_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Why a refresh failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    Unknown,
    Expired,
    Revoked,
    /// An already-rotated token was presented: the family is now revoked.
    Reused {
        family_id: String,
        user_id: String,
    },
}

impl Rejected {
    pub fn label(&self) -> &'static str {
        match self {
            Rejected::Unknown => "invalid",
            Rejected::Expired => "expired",
            Rejected::Revoked => "revoked",
            Rejected::Reused { .. } => "reused",
        }
    }
}

async fn insert(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    family_id: &str,
    parent_id: Option<&str>,
    ttl: Duration,
    now: i64,
) -> Result<String, sqlx::Error> {
    let token = random_token(TOKEN_BYTES);
    sqlx::query(
        "INSERT INTO refresh_tokens (id, token_hash, family_id, parent_id, user_id, issued_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(sha256_hex(token.as_bytes()))
    .bind(family_id)
    .bind(parent_id)
    .bind(user_id)
    .bind(now)
    .bind(now.saturating_add(duration_ms(ttl)))
    .execute(&mut *conn)
    .await?;
    Ok(token)
}

/// Starts a new family (at login).
pub async fn issue(db: &Db, user_id: &str, ttl: Duration) -> Result<Issued, sqlx::Error> {
    let family_id = new_id();
    let mut conn = db.pool.acquire().await?;
    let token = insert(&mut conn, user_id, &family_id, None, ttl, now_ms()).await?;
    Ok(Issued {
        token,
        family_id,
        user_id: user_id.to_string(),
    })
}

/// Exchanges `presented` for its successor.
pub async fn rotate(
    db: &Db,
    presented: &str,
    ttl: Duration,
) -> Result<Result<Issued, Rejected>, sqlx::Error> {
    let now = now_ms();
    let hash = sha256_hex(presented.as_bytes());
    let Some(row) = sqlx::query(
        "SELECT id, family_id, user_id, expires_at_ms, used_at_ms, revoked_at_ms \
         FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&db.pool)
    .await?
    else {
        return Ok(Err(Rejected::Unknown));
    };
    let id: String = row.try_get("id")?;
    let family_id: String = row.try_get("family_id")?;
    let user_id: String = row.try_get("user_id")?;
    let expires_at_ms: i64 = row.try_get("expires_at_ms")?;
    let used_at_ms: Option<i64> = row.try_get("used_at_ms")?;
    let revoked_at_ms: Option<i64> = row.try_get("revoked_at_ms")?;

    if used_at_ms.is_some() {
        revoke_family(db, &family_id).await?;
        return Ok(Err(Rejected::Reused { family_id, user_id }));
    }
    if revoked_at_ms.is_some() {
        return Ok(Err(Rejected::Revoked));
    }
    if expires_at_ms <= now {
        return Ok(Err(Rejected::Expired));
    }

    let mut tx = db.pool.begin().await?;
    // Write first (SQLite takes the write lock here); only one concurrent caller matches.
    let won = sqlx::query(
        "UPDATE refresh_tokens SET used_at_ms = $1 WHERE id = $2 AND used_at_ms IS NULL AND revoked_at_ms IS NULL",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !won {
        tx.rollback().await?;
        // Someone used it between our read and our write: same as reuse.
        revoke_family(db, &family_id).await?;
        return Ok(Err(Rejected::Reused { family_id, user_id }));
    }
    let token = insert(&mut tx, &user_id, &family_id, Some(&id), ttl, now).await?;
    tx.commit().await?;
    Ok(Ok(Issued {
        token,
        family_id,
        user_id,
    }))
}

/// Revokes every token of a family. Returns how many were still live.
pub async fn revoke_family(db: &Db, family_id: &str) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE refresh_tokens SET revoked_at_ms = $1 WHERE family_id = $2 AND revoked_at_ms IS NULL")
        .bind(now_ms())
        .bind(family_id)
        .execute(&db.pool)
        .await?
        .rows_affected())
}

/// Logout: revokes the family of `presented`, if it is a known token. Returns (user id,
/// family id) when it was.
pub async fn logout(db: &Db, presented: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query("SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(sha256_hex(presented.as_bytes()))
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let family_id: String = row.try_get("family_id")?;
    let user_id: String = row.try_get("user_id")?;
    revoke_family(db, &family_id).await?;
    Ok(Some((user_id, family_id)))
}

/// Deletes tokens that expired more than `grace` ago (housekeeping).
pub async fn purge_expired(db: &Db, grace: Duration) -> Result<u64, sqlx::Error> {
    let cutoff = now_ms().saturating_sub(duration_ms(grace));
    Ok(
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at_ms < $1")
            .bind(cutoff)
            .execute(&db.pool)
            .await?
            .rows_affected(),
    )
}

/// Lower-case hex SHA-256: what the database keeps of a token.
pub fn sha256_hex(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
