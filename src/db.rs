//! The database: one `sqlx::AnyPool` over SQLite (the embedded default, `<data_dir>/aether.db`) or
//! PostgreSQL (`database.url = "postgres://..."`), and the migrations of each backend. Queries are
//! written once in the SQL both backends share (`$1` placeholders, `RETURNING`, BIGINT ids,
//! timestamps as unix milliseconds, money as integer minor units plus a currency code).

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::config::Config;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to the configured database (creating the SQLite file if needed). Does not migrate.
    pub async fn connect(config: &Config) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = match &config.database.url {
            Some(url) if url.starts_with("sqlite:") => (url.clone(), Backend::Sqlite),
            Some(url) => (url.clone(), Backend::Postgres),
            None => (sqlite_url(&config.data_dir)?, Backend::Sqlite),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(DbError::Connect)?;
        let pool = AnyPoolOptions::new()
            .max_connections(config.database.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; wait on a busy writer instead of failing.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(DbError::Connect)?;
        Ok(Db { pool, backend })
    }

    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction for work that reads and then writes. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails with
    /// SQLITE_BUSY, whatever the busy timeout, when another connection wrote in between.
    pub async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn sqlite_url(data_dir: &Path) -> Result<String, DbError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|source| DbError::DataDir { path: data_dir.display().to_string(), source })?;
    let file = data_dir.join("aether.db");
    Ok(format!("sqlite://{}?mode=rwc", file.display()))
}

/// `$first, $first+1, ...` (`count` of them): the placeholders of an `IN (...)` list or of a
/// multi-row `VALUES`. (sqlx's `QueryBuilder` writes `?` for `Any`, which PostgreSQL refuses.)
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// The words of a search box: runs of letters and digits, lowercased, at most 8 words of at most
/// 40 characters. Nothing else reaches the full-text index, so no input (`"`, `*`, `NEAR(`,
/// `:*`, `!`) can be query syntax.
pub fn search_terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| word.chars().take(40).collect::<String>().to_lowercase())
        .take(8)
        .collect()
}

impl Backend {
    /// The full-text query matching every term as a prefix: FTS5 `"w1"* "w2"*` on SQLite,
    /// `w1:* & w2:*` for PostgreSQL's `to_tsquery('simple', ..)`. Terms come from
    /// [`search_terms`] (letters and digits only).
    pub fn match_query(self, terms: &[String]) -> String {
        match self {
            Backend::Sqlite => terms.iter().map(|t| format!("\"{t}\"*")).collect::<Vec<_>>().join(" "),
            Backend::Postgres => terms.iter().map(|t| format!("{t}:*")).collect::<Vec<_>>().join(" & "),
        }
    }
}

/// Milliseconds since the Unix epoch: the portable timestamp stored in every table.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A random public id for media people share links to (VODs, clips): 14 characters of
/// `[0-9A-Za-z]`, about 83 bits, so that unlisted media cannot be found by guessing.
pub fn public_id() -> String {
    use rand::Rng;
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(14).map(char::from).collect()
}

/// True when `error` is a unique-key violation whose constraint or message names `column`.
/// SQLite says "UNIQUE constraint failed: users.email", PostgreSQL names the index `users_email_key`.
pub fn is_unique_violation_on(error: &sqlx::Error, column: &str) -> bool {
    let Some(db) = error.as_database_error() else { return false };
    db.is_unique_violation() && (db.constraint().is_some_and(|c| c.contains(column)) || db.message().contains(column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_boxes_become_plain_words() {
        assert_eq!(search_terms("  Hello, World!  "), ["hello", "world"]);
        assert!(search_terms("\" * ( :* ! & | ( ) ^ - + \\").is_empty());
        assert_eq!(search_terms("NEAR("), ["near"], "an operator is a word like any other");
        assert_eq!(search_terms("NEAR(e2e_live\"*"), ["near", "e2e", "live"]);
        assert_eq!(search_terms("Café über"), ["café", "über"]);
        assert_eq!(search_terms("a b c d e f g h i j").len(), 8);
        assert_eq!(Backend::Sqlite.match_query(&search_terms("e2e live")), "\"e2e\"* \"live\"*");
        assert_eq!(Backend::Postgres.match_query(&search_terms("e2e live")), "e2e:* & live:*");
    }
}
