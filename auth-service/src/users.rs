//! Accounts and roles: the email and password policy, and their storage.
//!
//! Emails are compared case-insensitively: the lower-cased form is unique in the database.
//! New accounts get the role [`DEFAULT_ROLE`]; more are granted with the CLI.

use sqlx::Row;

use service_kit::FieldError;

use crate::db::{Db, now_ms};
use crate::error::AppError;
use crate::random::new_id;

pub const DEFAULT_ROLE: &str = "user";
pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 256;

/// A few of the most common passwords that pass the length rule.
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "12345678910",
    "0123456789",
    "qwertyuiop",
    "password12",
    "password123",
    "password1234",
    "iloveyou12",
    "qwerty1234",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "abcdefghij",
    "aaaaaaaaaa",
    "letmein123",
    "welcome123",
    "administrator",
    "passw0rd123",
    "qwertyuiop123",
    "changeme123",
    "football123",
    "0987654321",
    "9876543210",
    "1111111111",
    "0000000000",
];

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
}

/// Lower-cases and trims an email for lookups.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks the shape of an email address (a pragmatic subset of RFC 5321).
pub fn validate_email(email: &str) -> Result<(), String> {
    let email = email.trim();
    if email.is_empty() {
        return Err("is required".into());
    }
    if email.len() > 254 {
        return Err("is too long (at most 254 characters)".into());
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("is not a valid email address".into());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        Ok(())
    } else {
        Err("is not a valid email address".into())
    }
}

/// The password policy: 10 to 256 characters, not a well-known password, not the email.
pub fn validate_password(password: &str, email: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < PASSWORD_MIN_CHARS {
        return Err(format!(
            "is too short (at least {PASSWORD_MIN_CHARS} characters)"
        ));
    }
    if n > PASSWORD_MAX_CHARS {
        return Err(format!(
            "is too long (at most {PASSWORD_MAX_CHARS} characters)"
        ));
    }
    let lower = password.to_lowercase();
    if COMMON_PASSWORDS.contains(&lower.as_str()) {
        return Err("is too common".into());
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return Err("is too weak (use at least 4 different characters)".into());
    }
    if lower == normalize_email(email)
        || Some(lower.as_str()) == normalize_email(email).split('@').next()
    {
        return Err("must not be the email address".into());
    }
    Ok(())
}

/// Validates a registration; returns every field error at once.
pub fn validate_registration(email: &str, password: &str) -> Result<(), AppError> {
    let mut errors = Vec::new();
    if let Err(m) = validate_email(email) {
        errors.push(FieldError::new("email", m));
    }
    if let Err(m) = validate_password(password, email) {
        errors.push(FieldError::new("password", m));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

/// Role names: 1–64 of `[a-z0-9_.:-]`.
pub fn validate_role(role: &str) -> Result<(), String> {
    if !role.is_empty()
        && role.len() <= 64
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c))
    {
        Ok(())
    } else {
        Err(format!(
            "invalid role {role:?}: use 1-64 characters of a-z 0-9 _ . : -"
        ))
    }
}

/// Inserts a user with the default role. `Err(EmailTaken)` on a duplicate.
pub async fn create(db: &Db, email: &str, password_hash: &str) -> Result<User, AppError> {
    let id = new_id();
    let email = email.trim().to_string();
    let now = now_ms();
    let mut tx = db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, email_normalized, password_hash, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email_normalized) DO NOTHING",
    )
    .bind(&id)
    .bind(&email)
    .bind(normalize_email(&email))
    .bind(password_hash)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(AppError::EmailTaken);
    }
    sqlx::query("INSERT INTO user_roles (user_id, role, granted_at_ms) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(DEFAULT_ROLE)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(User {
        id,
        email,
        password_hash: password_hash.to_string(),
    })
}

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        password_hash: r.try_get("password_hash")?,
    })
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query("SELECT id, email, password_hash FROM users WHERE email_normalized = $1")
        .bind(normalize_email(email))
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query("SELECT id, email, password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

/// The user's roles, sorted.
pub async fn roles(db: &Db, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
        .bind(user_id)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|r| r.try_get("role")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("no user with email {0}")]
    NoSuchUser(String),
    #[error("{0}")]
    InvalidRole(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Grants `role` to the user with `email`. Returns false if the user already had it.
pub async fn grant_role(db: &Db, email: &str, role: &str) -> Result<bool, RoleError> {
    validate_role(role).map_err(RoleError::InvalidRole)?;
    let user = find_by_email(db, email)
        .await?
        .ok_or_else(|| RoleError::NoSuchUser(email.to_string()))?;
    let n = sqlx::query(
        "INSERT INTO user_roles (user_id, role, granted_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, role) DO NOTHING",
    )
    .bind(&user.id)
    .bind(role)
    .bind(now_ms())
    .execute(&db.pool)
    .await?
    .rows_affected();
    tracing::info!(user_id = %user.id, role, granted = n == 1, "grant role");
    Ok(n == 1)
}

/// Revokes `role` from the user with `email`. Returns false if the user did not have it.
pub async fn revoke_role(db: &Db, email: &str, role: &str) -> Result<bool, RoleError> {
    let user = find_by_email(db, email)
        .await?
        .ok_or_else(|| RoleError::NoSuchUser(email.to_string()))?;
    let n = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
        .bind(&user.id)
        .bind(role)
        .execute(&db.pool)
        .await?
        .rows_affected();
    tracing::info!(user_id = %user.id, role, revoked = n == 1, "revoke role");
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "a@b.co",
            "First.Last+tag@example.com",
            " padded@example.org ",
        ] {
            assert!(validate_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@-x.com",
            "a..b@x.com",
            "a@x..com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_email(" Alice@Example.COM "), "alice@example.com");
    }

    #[test]
    fn passwords() {
        assert!(validate_password("correct horse battery", "a@b.co").is_ok());
        assert!(
            validate_password("short", "a@b.co")
                .unwrap_err()
                .contains("too short")
        );
        assert!(
            validate_password("Password123", "a@b.co")
                .unwrap_err()
                .contains("too common")
        );
        assert!(
            validate_password("abababababab", "a@b.co")
                .unwrap_err()
                .contains("too weak")
        );
        assert!(validate_password("someone@example.com", "Someone@example.com").is_err());
        assert!(
            validate_password(&"x1y2".repeat(100), "a@b.co")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn roles_are_restricted() {
        assert!(validate_role("admin").is_ok());
        assert!(validate_role("orders:write").is_ok());
        assert!(validate_role("").is_err());
        assert!(validate_role("Admin").is_err());
        assert!(validate_role("a b").is_err());
    }
}
