//! Login sessions: opaque random tokens (256 bits), stored only as SHA-256 hashes with an expiry.
//! A token works as `Authorization: Bearer` or as the HttpOnly session cookie; cookie-authenticated
//! writes must also carry `X-CSRF-Token`, a value derived from the session token that a page of
//! this origin can read (JSON reply, `aether_csrf` cookie) and another site cannot.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{User, UserId};
use crate::db::{Db, now_ms};

pub const SESSION_COOKIE: &str = "aether_session";
pub const CSRF_COOKIE: &str = "aether_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A session token as the client holds it. Never logged, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl SessionToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        SessionToken(hex::encode(bytes))
    }

    pub fn from_client(value: &str) -> Option<Self> {
        let plausible = value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit());
        plausible.then(|| SessionToken(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database stores.
    pub fn hash(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }

    /// The CSRF token that goes with this session.
    pub fn csrf_token(&self) -> String {
        sha256_hex(format!("aether-csrf:{}", self.0).as_bytes())
    }

    pub fn csrf_matches(&self, presented: &str) -> bool {
        self.csrf_token().as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub async fn create(db: &Db, user: UserId, ttl_hours: u32) -> Result<SessionToken, sqlx::Error> {
    let token = SessionToken::generate();
    let now = now_ms();
    let expires = now + i64::from(ttl_hours) * 3_600_000;
    sqlx::query("INSERT INTO sessions (user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(user.0)
        .bind(token.hash())
        .bind(now)
        .bind(expires)
        .execute(db.pool())
        .await?;
    Ok(token)
}

/// The user of a live (unexpired) session.
pub async fn user_of(db: &Db, token: &SessionToken) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.id, u.username, u.email, u.role, u.created_at, u.email_verified_at FROM sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(token.hash())
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| super::accounts::user_from_row(&row)).transpose()
}

pub async fn delete(db: &Db, token: &SessionToken) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token.hash()).execute(db.pool()).await?;
    Ok(())
}

/// Ends every session of `user` (a password reset).
pub async fn delete_all(conn: &mut sqlx::AnyConnection, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user.0).execute(conn).await?;
    Ok(())
}

/// Ends every session of `user` but `keep` (a password change).
pub async fn delete_all_but(
    conn: &mut sqlx::AnyConnection,
    user: UserId,
    keep: &SessionToken,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(user.0)
        .bind(keep.hash())
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes expired sessions; returns how many.
pub async fn delete_expired(db: &Db) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now_ms()).execute(db.pool()).await?;
    Ok(done.rows_affected())
}
