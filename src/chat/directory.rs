//! The chat hub's view of the database: a room is a channel (owner, moderators, bans), and every
//! moderation action lands in `moderation_log` (bans and unbans also in `channel_bans`).

use std::collections::HashSet;

use aether_chat::{BoxFuture, Directory, Mention, ModerationAction, ModerationRecord, RoomSeed};
use sqlx::Row;

use crate::db::Db;

pub struct ChatDirectory {
    db: Db,
    /// Wakes the job runner after a mention's event is committed.
    jobs: crate::jobs::Jobs,
}

impl ChatDirectory {
    pub fn new(db: Db, jobs: crate::jobs::Jobs) -> Self {
        Self { db, jobs }
    }
}

/// Queues `chat.mention` (the notifications module tells the users named).
async fn mentioned(db: &Db, mention: Mention) -> Result<(), sqlx::Error> {
    let event = crate::events::Event::ChatMention {
        room: mention.room,
        from: mention.from,
        message_id: mention.message_id,
        text: mention.text,
        users: mention.users,
    };
    let mut tx = db.write().await?;
    crate::events::publish(&mut tx, &event).await?;
    tx.commit().await
}

async fn load(db: Db, room: String) -> Result<Option<RoomSeed>, sqlx::Error> {
    let Some(channel) = sqlx::query(
        "SELECT c.id, u.username FROM channel_names c JOIN user_names u ON u.id = c.owner_id WHERE c.name = $1",
    )
    .bind(&room)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let channel_id: i64 = channel.try_get("id")?;
    let names = |sql: &'static str| {
        let db = db.clone();
        async move {
            let rows = sqlx::query(sql).bind(channel_id).fetch_all(db.pool()).await?;
            rows.iter().map(|row| row.try_get::<String, _>("username")).collect::<Result<HashSet<_>, _>>()
        }
    };
    let moderators = names(
        "SELECT u.username FROM channel_moderators m JOIN user_names u ON u.id = m.user_id WHERE m.channel_id = $1",
    )
    .await?;
    let banned =
        names("SELECT u.username FROM channel_bans b JOIN user_names u ON u.id = b.user_id WHERE b.channel_id = $1")
            .await?;
    Ok(Some(RoomSeed { owner: channel.try_get("username")?, moderators, banned }))
}

async fn record(db: Db, record: ModerationRecord) -> Result<(), sqlx::Error> {
    let Some(channel) = sqlx::query("SELECT id FROM channel_names WHERE name = $1")
        .bind(&record.room)
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(());
    };
    let channel_id: i64 = channel.try_get("id")?;
    let (action, target, detail) = match &record.action {
        ModerationAction::Delete { id, author } => ("delete", author.clone(), Some(format!("message {id}"))),
        ModerationAction::Timeout { user, seconds } => ("timeout", Some(user.clone()), Some(format!("{seconds} s"))),
        ModerationAction::Ban { user } => ("ban", Some(user.clone()), None),
        ModerationAction::Unban { user } => ("unban", Some(user.clone()), None),
        ModerationAction::Slow { seconds } => ("slow", None, Some(format!("{seconds} s"))),
        ModerationAction::FollowersOnly { minutes: Some(minutes) } => {
            ("followers_only", None, Some(format!("{minutes} min")))
        }
        ModerationAction::FollowersOnly { minutes: None } => ("followers_only", None, Some("off".to_owned())),
    };
    let mut tx = db.write().await?;
    sqlx::query(
        "INSERT INTO moderation_log (channel_id, actor_id, action, target, detail, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(channel_id)
    .bind(record.actor_id)
    .bind(action)
    .bind(target.clone())
    .bind(detail)
    .bind(record.at_ms)
    .execute(&mut *tx)
    .await?;
    if let (Some(user), "ban" | "unban") = (&target, action) {
        let user_id: Option<i64> = sqlx::query("SELECT id FROM user_names WHERE username = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("id"))
            .transpose()?;
        if let Some(user_id) = user_id {
            if action == "ban" {
                sqlx::query(
                    "INSERT INTO channel_bans (channel_id, user_id, banned_by, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (channel_id, user_id) DO NOTHING",
                )
                .bind(channel_id)
                .bind(user_id)
                .bind(record.actor_id)
                .bind(record.at_ms)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query("DELETE FROM channel_bans WHERE channel_id = $1 AND user_id = $2")
                    .bind(channel_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await
}

/// The users `user` blocked (the profiles module's `block_edges` view).
pub(super) async fn blocked_by(db: &Db, user: i64) -> Result<HashSet<i64>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT blocked_id FROM block_edges WHERE user_id = $1").bind(user).fetch_all(db.pool()).await?;
    rows.iter().map(|row| row.try_get("blocked_id")).collect()
}

/// Stores a ban the server made outside chat (the channel's owner blocked `user`).
pub(super) async fn store_ban(
    conn: &mut sqlx::AnyConnection,
    channel: i64,
    actor: i64,
    user: i64,
    detail: &str,
) -> Result<(), sqlx::Error> {
    let now = crate::db::now_ms();
    let new = sqlx::query(
        "INSERT INTO channel_bans (channel_id, user_id, banned_by, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (channel_id, user_id) DO NOTHING",
    )
    .bind(channel)
    .bind(user)
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if new.rows_affected() == 1 {
        sqlx::query(
            "INSERT INTO moderation_log (channel_id, actor_id, action, target, detail, created_at) \
             SELECT $1, $2, 'ban', username, $4, $5 FROM user_names WHERE id = $3",
        )
        .bind(channel)
        .bind(actor)
        .bind(user)
        .bind(detail)
        .bind(now)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Since when `user` follows the channel of `room` (the profiles module's `follow_edges` view).
async fn followed_since(db: Db, room: String, user: i64) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT f.created_at FROM follow_edges f JOIN channel_names c ON c.id = f.channel_id \
         WHERE c.name = $1 AND f.user_id = $2",
    )
    .bind(room)
    .bind(user)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| row.try_get("created_at")).transpose()
}

impl Directory for ChatDirectory {
    fn load_room(&self, room: String) -> BoxFuture<Result<Option<RoomSeed>, String>> {
        let db = self.db.clone();
        Box::pin(async move { load(db, room).await.map_err(|error| error.to_string()) })
    }

    fn mentioned(&self, mention: Mention) -> BoxFuture<()> {
        let (db, jobs) = (self.db.clone(), self.jobs.clone());
        Box::pin(async move {
            match mentioned(&db, mention).await {
                Ok(()) => jobs.wake(),
                Err(error) => tracing::warn!(%error, "queueing a chat mention failed"),
            }
        })
    }

    fn followed_since(&self, room: String, user: i64) -> BoxFuture<Result<Option<i64>, String>> {
        let db = self.db.clone();
        Box::pin(async move { followed_since(db, room, user).await.map_err(|error| error.to_string()) })
    }

    fn record(&self, moderation: ModerationRecord) -> BoxFuture<()> {
        let db = self.db.clone();
        Box::pin(async move {
            if let Err(error) = record(db, moderation).await {
                tracing::error!(%error, "recording a chat moderation action failed");
            }
        })
    }
}
