//! Every SQL statement on the profiles module's tables: follows and blocks.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Follow, FollowLevel};
use crate::auth::UserId;
use crate::channels::ChannelId;
use crate::db::placeholders;

fn follow_from_row(row: &AnyRow) -> Result<Follow, sqlx::Error> {
    let notify: String = row.try_get("notify")?;
    Ok(Follow {
        user: UserId(row.try_get("user_id")?),
        channel: ChannelId(row.try_get("channel_id")?),
        notify: FollowLevel::parse(&notify).ok_or_else(|| sqlx::Error::Decode("unknown follow level".into()))?,
        created_at: row.try_get("created_at")?,
    })
}

/// True when the follow is new.
pub(super) async fn insert_follow(
    conn: &mut AnyConnection,
    user: UserId,
    channel: ChannelId,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO follows (user_id, channel_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, channel_id) DO NOTHING",
    )
    .bind(user.0)
    .bind(channel.0)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn delete_follow(
    conn: &mut AnyConnection,
    user: UserId,
    channel: ChannelId,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM follows WHERE user_id = $1 AND channel_id = $2")
        .bind(user.0)
        .bind(channel.0)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn set_level(
    conn: &mut AnyConnection,
    user: UserId,
    channel: ChannelId,
    level: FollowLevel,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE follows SET notify = $3 WHERE user_id = $1 AND channel_id = $2")
        .bind(user.0)
        .bind(channel.0)
        .bind(level.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn find_follow(
    conn: &mut AnyConnection,
    user: UserId,
    channel: ChannelId,
) -> Result<Option<Follow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, channel_id, notify, created_at FROM follows WHERE user_id = $1 AND channel_id = $2",
    )
    .bind(user.0)
    .bind(channel.0)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(follow_from_row).transpose()
}

pub(super) async fn count_followers(conn: &mut AnyConnection, channel: ChannelId) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM follows WHERE channel_id = $1")
        .bind(channel.0)
        .fetch_one(conn)
        .await?
        .try_get("n")
}

/// One side of the follow graph, for a page of it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    /// A channel's followers (keyed by user id).
    FollowersOf(ChannelId),
    /// The channels a user follows (keyed by channel id).
    FollowedBy(UserId),
}

/// Follows on one side, newest first, after the cursor (created_at, the other side's id).
pub(super) async fn follows_page(
    conn: &mut AnyConnection,
    side: Side,
    after: Option<[i64; 2]>,
    limit: i64,
) -> Result<Vec<Follow>, sqlx::Error> {
    let [at, id] = after.unwrap_or([i64::MAX, i64::MAX]);
    let (sql, key) = match side {
        Side::FollowersOf(channel) => (
            "SELECT user_id, channel_id, notify, created_at FROM follows WHERE channel_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND user_id < $3)) ORDER BY created_at DESC, user_id DESC LIMIT $4",
            channel.0,
        ),
        Side::FollowedBy(user) => (
            "SELECT user_id, channel_id, notify, created_at FROM follows WHERE user_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND channel_id < $3)) ORDER BY created_at DESC, channel_id DESC LIMIT $4",
            user.0,
        ),
    };
    let rows = sqlx::query(sql).bind(key).bind(at).bind(id).bind(limit).fetch_all(conn).await?;
    rows.iter().map(follow_from_row).collect()
}

/// Up to `limit` followers with a user id above `after`, by user id: the fan-out's batches.
pub(super) async fn followers_after(
    conn: &mut AnyConnection,
    channel: ChannelId,
    after: UserId,
    limit: i64,
) -> Result<Vec<Follow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, channel_id, notify, created_at FROM follows WHERE channel_id = $1 AND user_id > $2 \
         ORDER BY user_id LIMIT $3",
    )
    .bind(channel.0)
    .bind(after.0)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(follow_from_row).collect()
}

/// Removes `user`'s follows of any of `channels`.
pub(super) async fn delete_follows_of(
    conn: &mut AnyConnection,
    user: UserId,
    channels: &[ChannelId],
) -> Result<u64, sqlx::Error> {
    if channels.is_empty() {
        return Ok(0);
    }
    let sql = format!("DELETE FROM follows WHERE user_id = $1 AND channel_id IN ({})", placeholders(2, channels.len()));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user.0);
    for channel in channels {
        query = query.bind(channel.0);
    }
    Ok(query.execute(conn).await?.rows_affected())
}

pub(super) async fn insert_block(
    conn: &mut AnyConnection,
    user: UserId,
    blocked: UserId,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id, blocked_id) DO NOTHING",
    )
    .bind(user.0)
    .bind(blocked.0)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn delete_block(conn: &mut AnyConnection, user: UserId, blocked: UserId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2")
        .bind(user.0)
        .bind(blocked.0)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn is_blocked(conn: &mut AnyConnection, user: UserId, blocked: UserId) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 AS found FROM blocks WHERE user_id = $1 AND blocked_id = $2")
        .bind(user.0)
        .bind(blocked.0)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// Who `user` blocked, newest first: (blocked id, since).
pub(super) async fn blocked_by(conn: &mut AnyConnection, user: UserId) -> Result<Vec<(UserId, i64)>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT blocked_id, created_at FROM blocks WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1000")
            .bind(user.0)
            .fetch_all(conn)
            .await?;
    rows.iter().map(|row| Ok((UserId(row.try_get("blocked_id")?), row.try_get("created_at")?))).collect()
}

/// A stored profile.
#[derive(Debug, Clone, Default)]
pub(super) struct ProfileRow {
    pub display_name: String,
    pub bio: String,
    pub links: String,
    pub avatar_at: Option<i64>,
    pub banner_at: Option<i64>,
}

pub(super) async fn profile(conn: &mut AnyConnection, user: UserId) -> Result<Option<ProfileRow>, sqlx::Error> {
    let row = sqlx::query("SELECT display_name, bio, links, avatar_at, banner_at FROM profiles WHERE user_id = $1")
        .bind(user.0)
        .fetch_optional(conn)
        .await?;
    row.map(|row| {
        Ok(ProfileRow {
            display_name: row.try_get("display_name")?,
            bio: row.try_get("bio")?,
            links: row.try_get("links")?,
            avatar_at: row.try_get("avatar_at")?,
            banner_at: row.try_get("banner_at")?,
        })
    })
    .transpose()
}

pub(super) async fn save_text(
    conn: &mut AnyConnection,
    user: UserId,
    display_name: &str,
    bio: &str,
    links: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO profiles (user_id, display_name, bio, links, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, bio = excluded.bio, \
         links = excluded.links, updated_at = excluded.updated_at",
    )
    .bind(user.0)
    .bind(display_name)
    .bind(bio)
    .bind(links)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records (or, `None`, clears) when a picture was stored.
pub(super) async fn set_picture(
    conn: &mut AnyConnection,
    user: UserId,
    banner: bool,
    at: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = if banner {
        "INSERT INTO profiles (user_id, banner_at, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET banner_at = excluded.banner_at, updated_at = excluded.updated_at"
    } else {
        "INSERT INTO profiles (user_id, avatar_at, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET avatar_at = excluded.avatar_at, updated_at = excluded.updated_at"
    };
    sqlx::query(sql).bind(user.0).bind(at).bind(now).execute(conn).await?;
    Ok(())
}

/// All of a user's follows, newest first (the data export).
pub(super) async fn all_follows(conn: &mut AnyConnection, user: UserId) -> Result<Vec<Follow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, channel_id, notify, created_at FROM follows WHERE user_id = $1 ORDER BY created_at DESC",
    )
    .bind(user.0)
    .fetch_all(conn)
    .await?;
    rows.iter().map(follow_from_row).collect()
}

/// A data export's state.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct ExportRow {
    pub id: i64,
    #[serde(skip)]
    pub user: i64,
    pub status: String,
    #[serde(skip)]
    pub object_key: Option<String>,
    pub bytes: Option<i64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

fn export_from_row(row: &AnyRow) -> Result<ExportRow, sqlx::Error> {
    Ok(ExportRow {
        id: row.try_get("id")?,
        user: row.try_get("user_id")?,
        status: row.try_get("status")?,
        object_key: row.try_get("object_key")?,
        bytes: row.try_get("bytes")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

pub(super) async fn insert_export(conn: &mut AnyConnection, user: UserId, now: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("INSERT INTO data_exports (user_id, created_at) VALUES ($1, $2) RETURNING id")
        .bind(user.0)
        .bind(now)
        .fetch_one(conn)
        .await?
        .try_get("id")
}

pub(super) async fn find_export(conn: &mut AnyConnection, id: i64) -> Result<Option<ExportRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, user_id, status, object_key, bytes, created_at, finished_at FROM data_exports WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(export_from_row).transpose()
}

pub(super) async fn exports_of(conn: &mut AnyConnection, user: UserId) -> Result<Vec<ExportRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, user_id, status, object_key, bytes, created_at, finished_at FROM data_exports WHERE user_id = $1 \
         ORDER BY id DESC LIMIT 10",
    )
    .bind(user.0)
    .fetch_all(conn)
    .await?;
    rows.iter().map(export_from_row).collect()
}

pub(super) async fn finish_export(
    conn: &mut AnyConnection,
    id: i64,
    outcome: Result<(&str, i64), ()>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (status, key, bytes) = match outcome {
        Ok((key, bytes)) => ("ready", Some(key), Some(bytes)),
        Err(()) => ("failed", None, None),
    };
    sqlx::query("UPDATE data_exports SET status = $2, object_key = $3, bytes = $4, finished_at = $5 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(key)
        .bind(bytes)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Users whose display name matches every term (as a prefix), best first.
pub(super) async fn search_display_names(
    conn: &mut AnyConnection,
    backend: crate::db::Backend,
    terms: &[String],
    limit: i64,
) -> Result<Vec<UserId>, sqlx::Error> {
    let sql = match backend {
        crate::db::Backend::Sqlite => {
            "SELECT rowid AS user_id FROM profiles_fts WHERE profiles_fts MATCH $1 ORDER BY bm25(profiles_fts) LIMIT $2"
        }
        crate::db::Backend::Postgres => {
            "SELECT user_id FROM profiles WHERE search @@ to_tsquery('simple', $1) \
             ORDER BY ts_rank(search, to_tsquery('simple', $1)) DESC LIMIT $2"
        }
    };
    let rows = sqlx::query(sql).bind(backend.match_query(terms)).bind(limit).fetch_all(conn).await?;
    rows.iter().map(|row| Ok(UserId(row.try_get("user_id")?))).collect()
}

/// Display names and picture versions of `users` (search results, lists).
pub(super) async fn cards(
    conn: &mut AnyConnection,
    users: &[UserId],
) -> Result<Vec<(UserId, String, Option<i64>)>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT user_id, display_name, avatar_at FROM profiles WHERE user_id IN ({})",
        placeholders(1, users.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for user in users {
        query = query.bind(user.0);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter()
        .map(|row| Ok((UserId(row.try_get("user_id")?), row.try_get("display_name")?, row.try_get("avatar_at")?)))
        .collect()
}
