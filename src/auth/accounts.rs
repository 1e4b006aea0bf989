//! User accounts in the database: validation of the signup fields, creation with unique-key
//! conflicts mapped to 409, and look-ups by id, username or login (username or email).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Role, User, UserId, password};
use crate::db::{Db, is_unique_violation_on, now_ms};
use crate::error::ApiError;

pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// Account fields checked and normalised (username and email lowercased).
#[derive(Debug)]
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub password: String,
    pub role: Role,
}

impl NewAccount {
    pub fn validate(username: &str, email: &str, password: String, role: Role) -> Result<Self, ApiError> {
        let username = username.trim().to_ascii_lowercase();
        if !(3..=25).contains(&username.len()) || !username.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ApiError::invalid(
                "invalid_username",
                "username must be 3 to 25 letters, digits or underscores",
            ));
        }
        let email = Self::check_email(email)?;
        Self::check_password(&password)?;
        Ok(NewAccount { username, email, password, role })
    }
}

impl NewAccount {
    /// The address, lowercased, if it is plausible.
    pub fn check_email(email: &str) -> Result<String, ApiError> {
        let email = email.trim().to_ascii_lowercase();
        if !plausible_email(&email) {
            return Err(ApiError::invalid("invalid_email", "email address is not valid"));
        }
        Ok(email)
    }

    pub fn check_password(password: &str) -> Result<(), ApiError> {
        if password.chars().count() < PASSWORD_MIN_CHARS || password.len() > PASSWORD_MAX_BYTES {
            return Err(ApiError::invalid(
                "weak_password",
                format!(
                    "password must be at least {PASSWORD_MIN_CHARS} characters (and at most {PASSWORD_MAX_BYTES} bytes)"
                ),
            ));
        }
        Ok(())
    }
}

/// A syntactic check only: one `@`, something before it, a dotted domain after it, no spaces.
fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    email.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Hashes the password (argon2, slow on purpose: before any transaction) and inserts the account.
pub async fn create(db: &Db, account: NewAccount) -> Result<User, ApiError> {
    let hash = password::hash(account.password.clone()).await?;
    let mut conn = db.pool().acquire().await?;
    insert(&mut conn, account, &hash).await
}

/// Inserts an account whose password is already hashed, in the caller's transaction.
pub async fn insert(conn: &mut sqlx::AnyConnection, account: NewAccount, hash: &str) -> Result<User, ApiError> {
    let created_at = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO users (username, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&account.username)
    .bind(&account.email)
    .bind(hash)
    .bind(account.role.as_str())
    .bind(created_at)
    .fetch_one(conn)
    .await;
    match inserted {
        Ok(row) => Ok(User {
            id: UserId(row.try_get("id")?),
            username: account.username,
            email: account.email,
            role: account.role,
            created_at,
            email_verified_at: None,
        }),
        Err(e) if is_unique_violation_on(&e, "username") => {
            Err(ApiError::conflict("username_taken", "that username is already taken"))
        }
        Err(e) if is_unique_violation_on(&e, "email") => {
            Err(ApiError::conflict("email_taken", "an account with that email already exists"))
        }
        Err(e) => Err(e.into()),
    }
}

/// The columns `user_from_row` reads, as a literal so that queries stay `&'static str`.
macro_rules! user_columns {
    () => {
        "id, username, email, role, created_at, email_verified_at"
    };
}

pub fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: UserId(row.try_get("id")?),
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role:?}").into()))?,
        created_at: row.try_get("created_at")?,
        email_verified_at: row.try_get("email_verified_at")?,
    })
}

/// The user whose username or email is `login`, with the stored password hash.
pub async fn find_for_login(db: &Db, login: &str) -> Result<Option<(User, String)>, sqlx::Error> {
    let login = login.trim().to_ascii_lowercase();
    let sql = if login.contains('@') {
        concat!("SELECT ", user_columns!(), ", password_hash FROM users WHERE email = $1")
    } else {
        concat!("SELECT ", user_columns!(), ", password_hash FROM users WHERE username = $1")
    };
    let row = sqlx::query(sql).bind(login).fetch_optional(db.pool()).await?;
    row.map(|row| Ok((user_from_row(&row)?, row.try_get("password_hash")?))).transpose()
}

pub async fn find_by_username(db: &Db, username: &str) -> Result<Option<User>, sqlx::Error> {
    let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1");
    let row = sqlx::query(sql).bind(username.trim().to_ascii_lowercase()).fetch_optional(db.pool()).await?;
    row.map(|row| user_from_row(&row)).transpose()
}

pub async fn find_by_id(db: &Db, id: UserId) -> Result<Option<User>, sqlx::Error> {
    let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
    let row = sqlx::query(sql).bind(id.0).fetch_optional(db.pool()).await?;
    row.map(|row| user_from_row(&row)).transpose()
}

/// The users among `ids` (any order; missing ids are left out). For a page of ids: merge the
/// result in memory.
pub async fn find_by_ids(db: &Db, ids: &[UserId]) -> Result<Vec<User>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        concat!("SELECT ", user_columns!(), " FROM users WHERE id IN ({})"),
        crate::db::placeholders(1, ids.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id.0);
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter().map(user_from_row).collect()
}

pub async fn set_password(conn: &mut sqlx::AnyConnection, user: UserId, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2").bind(hash).bind(user.0).execute(conn).await?;
    Ok(())
}

pub async fn mark_email_verified(conn: &mut sqlx::AnyConnection, user: UserId, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email_verified_at IS NULL")
        .bind(at)
        .bind(user.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// Switches to a proven address (a unique violation when another account took it meanwhile).
pub async fn set_email(conn: &mut sqlx::AnyConnection, user: UserId, email: &str, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email = $1, email_verified_at = $2 WHERE id = $3")
        .bind(email)
        .bind(at)
        .bind(user.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the account; what is theirs in the database goes with it (ON DELETE CASCADE).
pub async fn delete(conn: &mut sqlx::AnyConnection, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM users WHERE id = $1").bind(user.0).execute(conn).await?;
    Ok(())
}

/// Users whose username starts with `prefix` (lowercase letters, digits, underscores), in
/// order; the range keeps to the unique index on both databases.
pub async fn search_usernames(db: &Db, prefix: &str, limit: i64) -> Result<Vec<User>, sqlx::Error> {
    let sql = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE username >= $1 AND username < $2 ORDER BY username LIMIT $3"
    );
    let upper = format!("{prefix}\u{7f}");
    let rows = sqlx::query(sql).bind(prefix).bind(upper).bind(limit).fetch_all(db.pool()).await?;
    rows.iter().map(user_from_row).collect()
}

pub async fn count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(db.pool()).await?.try_get("n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signup_fields_are_normalised_and_checked() {
        let ok = NewAccount::validate(" Alice_1 ", "Alice@Example.COM", "long enough".into(), Role::User).unwrap();
        assert_eq!((ok.username.as_str(), ok.email.as_str()), ("alice_1", "alice@example.com"));
        for bad in ["al", "alice!", "a".repeat(26).as_str(), "ali ce"] {
            assert!(NewAccount::validate(bad, "a@b.co", "long enough".into(), Role::User).is_err(), "{bad}");
        }
        for bad in ["", "nope", "a@b", "@b.co", "a@.co", "a b@c.co", "a@b@c.co"] {
            assert!(NewAccount::validate("alice", bad, "long enough".into(), Role::User).is_err(), "{bad}");
        }
        assert!(NewAccount::validate("alice", "a@b.co", "short".into(), Role::User).is_err());
        assert!(NewAccount::validate("alice", "a@b.co", "x".repeat(2000), Role::User).is_err());
    }
}
