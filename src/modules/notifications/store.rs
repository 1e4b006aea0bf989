//! Every SQL statement on the notifications module's tables: notifications, notification_prefs
//! and go_live_fanouts.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Notification, NotificationKind, Prefs};
use crate::auth::UserId;
use crate::channels::ChannelId;
use crate::db::placeholders;

fn notification_from_row(row: &AnyRow) -> Result<Notification, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let data: String = row.try_get("data")?;
    Ok(Notification {
        id: row.try_get("id")?,
        user: UserId(row.try_get("user_id")?),
        kind: NotificationKind::parse(&kind).ok_or_else(|| sqlx::Error::Decode("unknown notification kind".into()))?,
        data: serde_json::from_str(&data).map_err(|e| sqlx::Error::Decode(e.into()))?,
        created_at: row.try_get("created_at")?,
        read_at: row.try_get("read_at")?,
    })
}

/// One row each for `users` (skipping a user who has this `dedup_key` already); returns the
/// rows made.
pub(super) async fn insert_many(
    conn: &mut AnyConnection,
    users: &[UserId],
    kind: NotificationKind,
    data: &serde_json::Value,
    dedup_key: &str,
    now: i64,
) -> Result<Vec<Notification>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let data = data.to_string();
    let rows: Vec<String> = (0..users.len()).map(|i| format!("(${}, $1, $2, $3, $4)", i + 5)).collect();
    let sql = format!(
        "INSERT INTO notifications (user_id, kind, data, dedup_key, created_at) VALUES {} \
         ON CONFLICT (user_id, dedup_key) DO NOTHING RETURNING id, user_id, kind, data, created_at, read_at",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(kind.as_str()).bind(data).bind(dedup_key).bind(now);
    for user in users {
        query = query.bind(user.0);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter().map(notification_from_row).collect()
}

/// A user's notifications, unread first, then newest first, after the cursor (unread as 1/0,
/// id).
pub(super) async fn page(
    conn: &mut AnyConnection,
    user: UserId,
    after: Option<[i64; 2]>,
    limit: i64,
) -> Result<Vec<Notification>, sqlx::Error> {
    let [unread, id] = after.unwrap_or([1, i64::MAX]);
    let rows = sqlx::query(
        "SELECT id, user_id, kind, data, created_at, read_at FROM notifications WHERE user_id = $1 AND \
         ((read_at IS NULL AND $2 = 1 AND id < $3) OR (read_at IS NOT NULL AND ($2 = 1 OR id < $3))) \
         ORDER BY CASE WHEN read_at IS NULL THEN 0 ELSE 1 END, id DESC LIMIT $4",
    )
    .bind(user.0)
    .bind(unread)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(notification_from_row).collect()
}

/// Unread notifications, counted up to `cap` (the bell shows "99+").
pub(super) async fn unread_count(conn: &mut AnyConnection, user: UserId, cap: i64) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM notifications WHERE user_id = $1 AND read_at IS NULL LIMIT $2) AS unread",
    )
    .bind(user.0)
    .bind(cap)
    .fetch_one(conn)
    .await?
    .try_get("n")
}

/// Marks `ids` (or, `None`, all) of `user`'s notifications read; returns how many changed.
pub(super) async fn mark_read(
    conn: &mut AnyConnection,
    user: UserId,
    ids: Option<&[i64]>,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let sql = match ids {
        Some([]) => return Ok(0),
        Some(ids) => format!(
            "UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL AND id IN ({})",
            placeholders(3, ids.len())
        ),
        None => "UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL".to_owned(),
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(user.0);
    for id in ids.unwrap_or_default() {
        query = query.bind(*id);
    }
    Ok(query.execute(conn).await?.rows_affected())
}

/// The stored preferences of `users` for `kind` (users without a row are left out).
pub(super) async fn prefs_of(
    conn: &mut AnyConnection,
    users: &[UserId],
    kind: NotificationKind,
) -> Result<HashMap<UserId, Prefs>, sqlx::Error> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT user_id, in_app, email FROM notification_prefs WHERE kind = $1 AND user_id IN ({})",
        placeholders(2, users.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(kind.as_str());
    for user in users {
        query = query.bind(user.0);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let prefs =
                Prefs { in_app: row.try_get::<i64, _>("in_app")? != 0, email: row.try_get::<i64, _>("email")? != 0 };
            Ok((UserId(row.try_get("user_id")?), prefs))
        })
        .collect()
}

pub(super) async fn set_prefs(
    conn: &mut AnyConnection,
    user: UserId,
    kind: NotificationKind,
    prefs: Prefs,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notification_prefs (user_id, kind, in_app, email) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, kind) DO UPDATE SET in_app = excluded.in_app, email = excluded.email",
    )
    .bind(user.0)
    .bind(kind.as_str())
    .bind(i64::from(prefs.in_app))
    .bind(i64::from(prefs.email))
    .execute(conn)
    .await?;
    Ok(())
}

/// A go-live fan-out's progress.
#[derive(Debug, Clone)]
pub(super) struct Fanout {
    pub started_at: i64,
    pub cursor: i64,
    pub done_at: Option<i64>,
}

fn fanout_from_row(row: &AnyRow) -> Result<Fanout, sqlx::Error> {
    Ok(Fanout {
        started_at: row.try_get("started_at")?,
        cursor: row.try_get("cursor")?,
        done_at: row.try_get("done_at")?,
    })
}

/// The channel's latest fan-out before `session_id`'s.
pub(super) async fn previous_fanout(
    conn: &mut AnyConnection,
    channel: ChannelId,
    session_id: i64,
) -> Result<Option<Fanout>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT session_id, started_at, cursor, done_at FROM go_live_fanouts WHERE channel_id = $1 AND session_id <> $2 \
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(channel.0)
    .bind(session_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(fanout_from_row).transpose()
}

/// The fan-out of `session_id`, made if new.
pub(super) async fn open_fanout(
    conn: &mut AnyConnection,
    channel: ChannelId,
    session_id: i64,
    now: i64,
) -> Result<Fanout, sqlx::Error> {
    sqlx::query(
        "INSERT INTO go_live_fanouts (session_id, channel_id, started_at) VALUES ($1, $2, $3) ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(session_id)
    .bind(channel.0)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT session_id, started_at, cursor, done_at FROM go_live_fanouts WHERE session_id = $1")
        .bind(session_id)
        .fetch_one(conn)
        .await?;
    fanout_from_row(&row)
}

/// Records a batch: followers up to `cursor` are done.
pub(super) async fn advance_fanout(
    conn: &mut AnyConnection,
    session_id: i64,
    cursor: i64,
    notified: i64,
    skipped: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE go_live_fanouts SET cursor = $2, notified = notified + $3, skipped = skipped + $4 WHERE session_id = $1",
    )
    .bind(session_id)
    .bind(cursor)
    .bind(notified)
    .bind(skipped)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn finish_fanout(conn: &mut AnyConnection, session_id: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE go_live_fanouts SET done_at = $2 WHERE session_id = $1")
        .bind(session_id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}
