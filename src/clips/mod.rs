//! Clips: a span of a recording (the last seconds of a live stream, or a range of a VOD) cut
//! without re-encoding (`aether_vod::clip`) by a background job (`jobs`), stored under
//! `clips/{id}/` as a faststart MP4 and an HLS rendition. A clip belongs to the user who made it
//! and to the channel; anyone may watch a ready clip. The row is the job's state.

mod jobs;
mod routes;

use axum::Router;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

pub use jobs::{MAKE, resume};
pub use routes::{ClipView, view as public_view};

use crate::app::AppState;
use crate::auth::{User, UserId};
use crate::channels::ChannelId;
use crate::db::Db;

pub fn router() -> Router<AppState> {
    routes::router()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipStatus {
    Processing,
    Ready,
    Failed,
}

impl ClipStatus {
    fn parse(value: &str) -> Option<ClipStatus> {
        match value {
            "processing" => Some(ClipStatus::Processing),
            "ready" => Some(ClipStatus::Ready),
            "failed" => Some(ClipStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Clip {
    pub row_id: i64,
    pub id: String,
    pub channel_id: ChannelId,
    pub channel: String,
    pub channel_owner: UserId,
    pub creator_id: UserId,
    pub creator: String,
    /// The row id of the VOD it is cut from; `None` once that VOD was deleted.
    pub vod_row_id: Option<i64>,
    pub vod_id: Option<String>,
    pub title: String,
    pub requested_start_ms: i64,
    pub requested_end_ms: i64,
    /// Starts on the exact picture asked for (the first GOP re-encoded) and ends exactly.
    pub precise: bool,
    pub status: ClipStatus,
    pub failure: Option<String>,
    pub attempts: i64,
    pub start_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub bytes: Option<i64>,
    /// Durations (ms) of the HLS rendition's fragments.
    pub fragments: Vec<i64>,
    pub has_thumbnail: bool,
    pub created_at: i64,
}

impl Clip {
    /// Its creator, the channel's owner and admins may delete it.
    pub fn can_delete(&self, user: &User) -> bool {
        user.id == self.creator_id || user.id == self.channel_owner || user.is_admin()
    }

    pub fn storage_prefix(&self) -> String {
        format!("clips/{}", self.id)
    }

    pub fn mp4_key(&self) -> String {
        format!("clips/{}/clip.mp4", self.id)
    }

    pub fn thumbnail_key(&self) -> String {
        format!("clips/{}/thumbnail.jpg", self.id)
    }
}

macro_rules! clip_select {
    () => {
        "SELECT k.id AS row_id, k.public_id, k.channel_id, c.name AS channel, c.owner_id AS channel_owner, \
         k.creator_id, u.username AS creator, k.vod_id AS vod_row_id, v.public_id AS vod_public_id, k.title, \
         k.requested_start_ms, k.requested_end_ms, k.precise, k.status, k.failure, k.attempts, k.start_ms, k.duration_ms, \
         k.bytes, k.fragments, k.has_thumbnail, k.created_at \
         FROM clips k JOIN channel_names c ON c.id = k.channel_id JOIN user_names u ON u.id = k.creator_id \
         LEFT JOIN vod_public_ids v ON v.id = k.vod_id"
    };
}

fn clip_from_row(row: &AnyRow) -> Result<Clip, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let fragments: String = row.try_get("fragments")?;
    Ok(Clip {
        row_id: row.try_get("row_id")?,
        id: row.try_get("public_id")?,
        channel_id: ChannelId(row.try_get("channel_id")?),
        channel: row.try_get("channel")?,
        channel_owner: UserId(row.try_get("channel_owner")?),
        creator_id: UserId(row.try_get("creator_id")?),
        creator: row.try_get("creator")?,
        vod_row_id: row.try_get("vod_row_id")?,
        vod_id: row.try_get("vod_public_id")?,
        title: row.try_get("title")?,
        requested_start_ms: row.try_get("requested_start_ms")?,
        requested_end_ms: row.try_get("requested_end_ms")?,
        precise: row.try_get::<i64, _>("precise")? != 0,
        status: ClipStatus::parse(&status).ok_or_else(|| sqlx::Error::Decode("unknown clip status".into()))?,
        failure: row.try_get("failure")?,
        attempts: row.try_get("attempts")?,
        start_ms: row.try_get("start_ms")?,
        duration_ms: row.try_get("duration_ms")?,
        bytes: row.try_get("bytes")?,
        fragments: serde_json::from_str(&fragments).map_err(|e| sqlx::Error::Decode(e.into()))?,
        has_thumbnail: row.try_get::<i64, _>("has_thumbnail")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn find(db: &Db, id: &str) -> Result<Option<Clip>, sqlx::Error> {
    let row =
        sqlx::query(concat!(clip_select!(), " WHERE k.public_id = $1")).bind(id).fetch_optional(db.pool()).await?;
    row.map(|row| clip_from_row(&row)).transpose()
}

pub async fn find_by_row(db: &Db, row_id: i64) -> Result<Option<Clip>, sqlx::Error> {
    let row = sqlx::query(concat!(clip_select!(), " WHERE k.id = $1")).bind(row_id).fetch_optional(db.pool()).await?;
    row.map(|row| clip_from_row(&row)).transpose()
}

/// Ready clips, newest first: a channel's, or every channel's (`None`).
pub async fn list(db: &Db, channel: Option<ChannelId>, limit: i64, offset: i64) -> Result<Vec<Clip>, sqlx::Error> {
    let sql = concat!(
        clip_select!(),
        " WHERE ($1 = 0 OR k.channel_id = $1) AND k.status = 'ready' ORDER BY k.created_at DESC, k.id DESC \
         LIMIT $2 OFFSET $3"
    );
    // Row ids start at 1, so 0 stands for "any channel".
    let channel = channel.map_or(0, |channel| channel.0);
    let rows = sqlx::query(sql).bind(channel).bind(limit).bind(offset).fetch_all(db.pool()).await?;
    rows.iter().map(clip_from_row).collect()
}

/// Ready clips whose title matches every term (as a prefix), best first.
pub async fn search(db: &Db, terms: &[String], limit: i64, offset: i64) -> Result<Vec<Clip>, sqlx::Error> {
    let sql = match db.backend() {
        crate::db::Backend::Sqlite => concat!(
            clip_select!(),
            " JOIN clips_fts ON clips_fts.rowid = k.id WHERE clips_fts MATCH $1 AND k.status = 'ready' \
             ORDER BY bm25(clips_fts), k.id DESC LIMIT $2 OFFSET $3"
        ),
        crate::db::Backend::Postgres => concat!(
            clip_select!(),
            " WHERE k.search @@ to_tsquery('simple', $1) AND k.status = 'ready' \
             ORDER BY ts_rank(k.search, to_tsquery('simple', $1)) DESC, k.id DESC LIMIT $2 OFFSET $3"
        ),
    };
    let query = db.backend().match_query(terms);
    let rows = sqlx::query(sql).bind(query).bind(limit).bind(offset).fetch_all(db.pool()).await?;
    rows.iter().map(clip_from_row).collect()
}

pub struct NewClip<'a> {
    pub channel_id: ChannelId,
    pub creator: UserId,
    pub vod_row_id: i64,
    pub title: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
    pub precise: bool,
}

/// Inserts a clip in `processing`; returns its row id and public id.
pub async fn insert(conn: &mut sqlx::AnyConnection, new: NewClip<'_>) -> Result<(i64, String), sqlx::Error> {
    let public_id = crate::db::public_id();
    let row = sqlx::query(
        "INSERT INTO clips (public_id, channel_id, creator_id, vod_id, title, requested_start_ms, requested_end_ms, \
         created_at, precise) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(&public_id)
    .bind(new.channel_id.0)
    .bind(new.creator.0)
    .bind(new.vod_row_id)
    .bind(new.title)
    .bind(new.start_ms)
    .bind(new.end_ms)
    .bind(crate::db::now_ms())
    .bind(i64::from(new.precise))
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("id")?, public_id))
}

pub async fn fail(db: &Db, row_id: i64, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE clips SET status = 'failed', failure = $1, finished_at = $2 WHERE id = $3")
        .bind(reason)
        .bind(crate::db::now_ms())
        .bind(row_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The storage prefixes of every clip of `channels` or made by `creator` (account deletion).
pub async fn storage_prefixes(db: &Db, channels: &[ChannelId], creator: UserId) -> Result<Vec<String>, sqlx::Error> {
    let sql = if channels.is_empty() {
        "SELECT public_id FROM clips WHERE creator_id = $1".to_owned()
    } else {
        format!(
            "SELECT public_id FROM clips WHERE creator_id = $1 OR channel_id IN ({})",
            crate::db::placeholders(2, channels.len())
        )
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(creator.0);
    for channel in channels {
        query = query.bind(channel.0);
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter().map(|row| row.try_get::<String, _>("public_id").map(|id| format!("clips/{id}"))).collect()
}

pub async fn delete(db: &Db, clip: &Clip) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM clips WHERE id = $1").bind(clip.row_id).execute(db.pool()).await?;
    Ok(())
}
