//! The database: one sqlx [`AnyPool`] for SQLite (default) or PostgreSQL (a `postgres://` URL),
//! with embedded migrations per backend (`migrations/sqlite`, `migrations/postgres`).
//!
//! Queries are written once in the common SQL subset with `$1` placeholders (SQLite accepts
//! them too); times are stored as `BIGINT` unix milliseconds and ids as `TEXT`, so the same
//! Rust types decode on both backends.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database handle: the pool and which backend it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database {url}: creating {path}: {source}")]
    CreateDir {
        url: String,
        path: String,
        source: std::io::Error,
    },
    #[error("database {url}: migrations: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
}

impl Db {
    /// Connects (creating a SQLite file and its directory if missing) and runs the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        install_default_drivers();
        let shown = redact_url(url);
        let (backend, connect_url) = if url.starts_with("sqlite:") {
            (
                Backend::Sqlite,
                prepare_sqlite_url(url).map_err(|(path, source)| DbError::CreateDir {
                    url: shown.clone(),
                    path,
                    source,
                })?,
            )
        } else {
            (Backend::Postgres, url.to_string())
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&connect_url)
            .await
            .map_err(|source| DbError::Connect {
                url: shown.clone(),
                source,
            })?;
        if backend == Backend::Sqlite {
            // WAL lets the CLI write (rotate keys, grant roles) while the server reads.
            pool.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(|source| DbError::Connect {
                    url: shown.clone(),
                    source,
                })?;
        }
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| DbError::Migrate {
                url: shown.clone(),
                source,
            })?;
        Ok(Db { pool, backend })
    }

    /// `SELECT 1`, for the health check.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.pool.execute("SELECT 1").await.map(|_| ())
    }
}

/// Adds `mode=rwc` (create if missing) and creates the parent directory of a file database.
fn prepare_sqlite_url(url: &str) -> Result<String, (String, std::io::Error)> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let in_memory =
        path.is_empty() || path == ":memory:" || query.is_some_and(|q| q.contains("mode=memory"));
    if !in_memory
        && let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| (parent.display().to_string(), e))?;
    }
    Ok(match query {
        Some(q) if q.contains("mode=") => url.to_string(),
        Some(_) => format!("{url}&mode=rwc"),
        None => format!("{url}?mode=rwc"),
    })
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Now, in unix milliseconds (the unit of every `*_ms` column).
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested/dir/auth.db");
        let url = format!("sqlite://{}", file.display());
        assert_eq!(prepare_sqlite_url(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(file.parent().unwrap().is_dir());
        assert_eq!(
            prepare_sqlite_url("sqlite::memory:").unwrap(),
            "sqlite::memory:?mode=rwc"
        );
        assert_eq!(
            prepare_sqlite_url("sqlite://x.db?mode=ro").unwrap(),
            "sqlite://x.db?mode=ro"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://data/auth.db"), "sqlite://data/auth.db");
    }
}
