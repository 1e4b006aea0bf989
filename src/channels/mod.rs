//! Channels: a name (the viewer page's path), a title, category and tags, an owner, and a stream
//! key kept only as a hash. Validation of names (lowercase `[a-z0-9_]{3,25}`, reserved path
//! segments refused) and of the editable fields, and the database queries behind the API.

pub mod keys;
mod routes;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

pub use routes::{ChannelView, router, view as public_view};

use crate::auth::UserId;
use crate::db::{Db, is_unique_violation_on, now_ms};
use crate::error::ApiError;
use keys::StreamKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ChannelId(pub i64);

/// First path segments the web UI and API use; no channel may take them.
pub const RESERVED_NAMES: &[&str] = &[
    "about",
    "account",
    "admin",
    "api",
    "app",
    "assets",
    "auth",
    "certificates",
    "browse",
    "channel",
    "channels",
    "checkout",
    "clip",
    "clips",
    "community",
    "courses",
    "dashboard",
    "directory",
    "embed",
    "events",
    "explore",
    "favicon",
    "following",
    "forgot_password",
    "healthz",
    "help",
    "home",
    "jobs",
    "learn",
    "live",
    "login",
    "logout",
    "me",
    "metrics",
    "new",
    "notifications",
    "orders",
    "posts",
    "privacy",
    "readyz",
    "reset_password",
    "robots",
    "search",
    "settings",
    "setup",
    "shop",
    "signup",
    "static",
    "store",
    "support",
    "terms",
    "user",
    "users",
    "verify_email",
    "vod",
    "vods",
    "whep",
    "whip",
    "ws",
];

pub const TITLE_MAX_CHARS: usize = 140;
pub const CATEGORY_MAX_CHARS: usize = 50;
pub const TAGS_MAX: usize = 10;
pub const TAG_MAX_CHARS: usize = 25;

pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let well_formed = (3..=25).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !well_formed {
        return Err(ApiError::invalid("invalid_channel_name", "channel names are 3 to 25 of a-z, 0-9 and _"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(ApiError::invalid("reserved_channel_name", format!("\"{name}\" is reserved")));
    }
    Ok(())
}

/// Trims `value` and checks it is at most `max` characters with no control characters.
pub fn clean_text(field: &'static str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(ApiError::invalid("invalid_field", format!("{field} is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid("invalid_field", format!("{field} contains control characters")));
    }
    Ok(value.to_owned())
}

/// Lowercases, trims and de-duplicates tags; each 1 to 25 of letters, digits, `-` and `_`.
pub fn clean_tags(tags: &[String]) -> Result<Vec<String>, ApiError> {
    if tags.len() > TAGS_MAX {
        return Err(ApiError::invalid("invalid_field", format!("at most {TAGS_MAX} tags")));
    }
    let mut clean: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        let ok = !tag.is_empty()
            && tag.chars().count() <= TAG_MAX_CHARS
            && tag.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(ApiError::invalid(
                "invalid_field",
                format!("tags are 1 to {TAG_MAX_CHARS} letters, digits, - or _"),
            ));
        }
        if !clean.contains(&tag) {
            clean.push(tag);
        }
    }
    Ok(clean)
}

/// A channel as stored, with its owner's username. Never carries the stream key.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: ChannelId,
    pub owner_id: UserId,
    pub owner: String,
    pub name: String,
    pub title: String,
    pub category: String,
    pub tags: Vec<String>,
    /// Broadcasts are recorded as VODs (when recording is on for the server).
    pub record: bool,
    pub created_at: i64,
    /// When its preview picture (the latest live thumbnail) was stored; `None`: it has none.
    pub preview_at: Option<i64>,
}

/// The select `channel_from_row` reads, as a literal so that queries stay `&'static str`.
macro_rules! channel_select {
    () => {
        "SELECT c.id, c.owner_id, u.username AS owner, c.name, c.title, c.category, c.tags, c.record, c.created_at, c.preview_at \
         FROM channels c JOIN user_names u ON u.id = c.owner_id"
    };
}

fn channel_from_row(row: &AnyRow) -> Result<Channel, sqlx::Error> {
    let tags: String = row.try_get("tags")?;
    Ok(Channel {
        id: ChannelId(row.try_get("id")?),
        owner_id: UserId(row.try_get("owner_id")?),
        owner: row.try_get("owner")?,
        name: row.try_get("name")?,
        title: row.try_get("title")?,
        category: row.try_get("category")?,
        tags: serde_json::from_str(&tags).map_err(|e| sqlx::Error::Decode(e.into()))?,
        record: row.try_get::<i64, _>("record")? != 0,
        created_at: row.try_get("created_at")?,
        preview_at: row.try_get("preview_at")?,
    })
}

/// Notes that the channel's preview picture was stored at `at` (unix ms).
pub async fn mark_preview(db: &Db, channel: ChannelId, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE channels SET preview_at = $1 WHERE id = $2")
        .bind(at)
        .bind(channel.0)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub struct NewChannel {
    pub owner: UserId,
    pub name: String,
    pub title: String,
}

/// Creates a channel and returns it with its stream key, the only time the key is in the clear.
pub async fn create(db: &Db, new: NewChannel, max_per_user: u32) -> Result<(Channel, StreamKey), ApiError> {
    validate_name(&new.name)?;
    let title = clean_text("title", &new.title, TITLE_MAX_CHARS)?;
    let owned: i64 = sqlx::query("SELECT COUNT(*) AS n FROM channels WHERE owner_id = $1")
        .bind(new.owner.0)
        .fetch_one(db.pool())
        .await?
        .try_get("n")?;
    if owned >= i64::from(max_per_user) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "channel_limit",
            format!("a user may own at most {max_per_user} channels"),
        ));
    }
    let key = StreamKey::generate(&new.name);
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO channels (owner_id, name, title, stream_key_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(new.owner.0)
    .bind(&new.name)
    .bind(&title)
    .bind(key.hash())
    .bind(now)
    .execute(db.pool())
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation_on(&e, "name") => {
            return Err(ApiError::conflict("channel_name_taken", "that channel name is already taken"));
        }
        Err(e) => return Err(e.into()),
    }
    let channel = find(db, &new.name).await?.ok_or_else(|| anyhow::anyhow!("channel vanished after insert"))?;
    Ok((channel, key))
}

pub async fn find(db: &Db, name: &str) -> Result<Option<Channel>, sqlx::Error> {
    let sql = concat!(channel_select!(), " WHERE c.name = $1");
    let row = sqlx::query(sql).bind(name).fetch_optional(db.pool()).await?;
    row.map(|row| channel_from_row(&row)).transpose()
}

/// The channel named `name`, or the API's 404.
pub async fn find_or_404(db: &Db, name: &str) -> Result<Channel, ApiError> {
    find(db, name).await?.ok_or_else(|| ApiError::not_found(format!("no channel named \"{name}\"")))
}

/// Channels, newest first.
pub async fn list(db: &Db, limit: i64, offset: i64) -> Result<Vec<Channel>, sqlx::Error> {
    let sql = concat!(channel_select!(), " ORDER BY c.id DESC LIMIT $1 OFFSET $2");
    let rows = sqlx::query(sql).bind(limit).bind(offset).fetch_all(db.pool()).await?;
    rows.iter().map(channel_from_row).collect()
}

/// The channels among `ids`, newest first.
pub async fn list_by_ids(db: &Db, ids: &[ChannelId]) -> Result<Vec<Channel>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(concat!(channel_select!(), " WHERE c.id IN ({}) ORDER BY c.id DESC"), placeholders.join(", "));
    // Only generated `$N` placeholders are spliced in; the values are bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id.0);
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter().map(channel_from_row).collect()
}

/// Channels matching every term (as a prefix) in their name, title, category or tags, best
/// first.
pub async fn search(db: &Db, terms: &[String], limit: i64, offset: i64) -> Result<Vec<Channel>, sqlx::Error> {
    let sql = match db.backend() {
        crate::db::Backend::Sqlite => concat!(
            channel_select!(),
            " JOIN channels_fts ON channels_fts.rowid = c.id WHERE channels_fts MATCH $1 \
             ORDER BY bm25(channels_fts, 10.0, 5.0, 2.0, 2.0), c.id LIMIT $2 OFFSET $3"
        ),
        crate::db::Backend::Postgres => concat!(
            channel_select!(),
            " WHERE c.search @@ to_tsquery('simple', $1) \
             ORDER BY ts_rank(c.search, to_tsquery('simple', $1)) DESC, c.id LIMIT $2 OFFSET $3"
        ),
    };
    let query = db.backend().match_query(terms);
    let rows = sqlx::query(sql).bind(query).bind(limit).bind(offset).fetch_all(db.pool()).await?;
    rows.iter().map(channel_from_row).collect()
}

/// The categories channels use most, with how many channels use each.
pub async fn top_categories(db: &Db, limit: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT category, COUNT(*) AS n FROM channels WHERE category <> '' GROUP BY category ORDER BY n DESC, category LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|row| Ok((row.try_get("category")?, row.try_get("n")?))).collect()
}

pub async fn list_owned(db: &Db, owner: UserId) -> Result<Vec<Channel>, sqlx::Error> {
    let sql = concat!(channel_select!(), " WHERE c.owner_id = $1 ORDER BY c.id");
    let rows = sqlx::query(sql).bind(owner.0).fetch_all(db.pool()).await?;
    rows.iter().map(channel_from_row).collect()
}

pub struct ChannelUpdate {
    pub title: Option<String>,
    pub category: Option<String>,
    pub tags: Option<Vec<String>>,
    pub record: Option<bool>,
}

pub async fn update(db: &Db, channel: &Channel, update: ChannelUpdate) -> Result<(), ApiError> {
    let title = match update.title {
        Some(title) => clean_text("title", &title, TITLE_MAX_CHARS)?,
        None => channel.title.clone(),
    };
    let category = match update.category {
        Some(category) => clean_text("category", &category, CATEGORY_MAX_CHARS)?,
        None => channel.category.clone(),
    };
    let tags = match update.tags {
        Some(tags) => clean_tags(&tags)?,
        None => channel.tags.clone(),
    };
    let tags = serde_json::to_string(&tags).map_err(anyhow::Error::from)?;
    let record = update.record.unwrap_or(channel.record);
    sqlx::query("UPDATE channels SET title = $1, category = $2, tags = $3, record = $6, updated_at = $4 WHERE id = $5")
        .bind(title)
        .bind(category)
        .bind(tags)
        .bind(now_ms())
        .bind(channel.id.0)
        .bind(i64::from(record))
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Replaces the channel's stream key; the old one stops working at once.
pub async fn rotate_key(db: &Db, channel: &Channel) -> Result<StreamKey, sqlx::Error> {
    let key = StreamKey::generate(&channel.name);
    sqlx::query("UPDATE channels SET stream_key_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(key.hash())
        .bind(now_ms())
        .bind(channel.id.0)
        .execute(db.pool())
        .await?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_the_contract() {
        for good in ["abc", "my_channel_2", &"a".repeat(25)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["ab", "Abc", "has-dash", "spa ce", "ünï", &"a".repeat(26), "api", "live", "dashboard", "ws"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_normalised_and_bounded() {
        let tags = clean_tags(&[" Rust ".into(), "rust".into(), "game-dev".into()]).unwrap();
        assert_eq!(tags, ["rust", "game-dev"]);
        assert!(clean_tags(&["".into()]).is_err());
        assert!(clean_tags(&["a b".into()]).is_err());
        assert!(clean_tags(&vec!["x".to_owned(); 11]).is_err());
        assert!(clean_text("title", "bell\u{7}", 10).is_err());
        assert!(clean_text("title", &"x".repeat(11), 10).is_err());
    }
}
