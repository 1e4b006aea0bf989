//! The recording index: the `vods` rows and their segment and rendition index, as the live
//! recorder writes them (`live::record`) and the clip cutter reads them (`clips`). The only
//! place besides `vod/mod.rs` whose SQL names the vod tables: each function is one statement
//! and takes any executor (the pool, a connection or a transaction).

use sqlx::{AnyExecutor, Row};

use crate::channels::ChannelId;
use crate::db::now_ms;

/// One rendition's description, written when its first init segment is stored.
pub struct RenditionRow<'a> {
    pub vod_id: i64,
    pub rendition: &'a str,
    pub codecs: &'a str,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub frame_rate_millis: Option<i64>,
}

/// One stored segment.
pub struct SegmentRow<'a> {
    pub vod_id: i64,
    pub rendition: &'a str,
    pub msn: i64,
    pub init_id: i64,
    pub start_ms: i64,
    pub duration_ms: i64,
    pub bytes: i64,
    pub program_date_time_ms: i64,
    pub discontinuity: bool,
    pub object_key: &'a str,
}

/// Opens the (private, `recording`) VOD of a broadcast; returns its row id.
pub async fn open(
    executor: impl AnyExecutor<'_>,
    channel: ChannelId,
    session_id: i64,
    title: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO vods (channel_id, session_id, public_id, title, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(channel.0)
    .bind(session_id)
    .bind(crate::db::public_id())
    .bind(title)
    .bind(now_ms())
    .fetch_one(executor)
    .await?;
    row.try_get("id")
}

pub async fn put_rendition(executor: impl AnyExecutor<'_>, row: RenditionRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vod_renditions (vod_id, rendition, codecs, width, height, frame_rate_millis) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (vod_id, rendition) DO UPDATE SET \
         codecs = excluded.codecs, width = excluded.width, height = excluded.height, \
         frame_rate_millis = excluded.frame_rate_millis",
    )
    .bind(row.vod_id)
    .bind(row.rendition)
    .bind(row.codecs)
    .bind(row.width)
    .bind(row.height)
    .bind(row.frame_rate_millis)
    .execute(executor)
    .await?;
    Ok(())
}

pub async fn put_segment(executor: impl AnyExecutor<'_>, row: SegmentRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vod_segments (vod_id, rendition, msn, init_id, start_ms, duration_ms, bytes, \
         program_date_time_ms, discontinuity, object_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(row.vod_id)
    .bind(row.rendition)
    .bind(row.msn)
    .bind(row.init_id)
    .bind(row.start_ms)
    .bind(row.duration_ms)
    .bind(row.bytes)
    .bind(row.program_date_time_ms)
    .bind(i64::from(row.discontinuity))
    .bind(row.object_key)
    .execute(executor)
    .await?;
    Ok(())
}

/// A VOD's length: the sum of its source rendition's indexed segments.
const DURATION: &str =
    "(SELECT COALESCE(SUM(s.duration_ms), 0) FROM vod_segments s WHERE s.vod_id = vods.id AND s.rendition = 'source')";

/// A VOD finalized while its last segments were spooled gets its full length once they are in.
pub async fn refresh_duration(executor: impl AnyExecutor<'_>, vod_id: i64) -> Result<(), sqlx::Error> {
    let sql = format!("UPDATE vods SET duration_ms = {DURATION} WHERE id = $1 AND status = 'ready'");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(vod_id).execute(executor).await?;
    Ok(())
}

/// Marks recordings ready with their source-rendition duration: one VOD, or (`None`) every one a
/// crash left `recording`. Returns how many.
pub async fn finalize(executor: impl AnyExecutor<'_>, vod_id: Option<i64>) -> Result<u64, sqlx::Error> {
    let done = match vod_id {
        Some(id) => {
            let sql =
                format!("UPDATE vods SET status = 'ready', finalized_at = $1, duration_ms = {DURATION} WHERE id = $2");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms()).bind(id).execute(executor).await?
        }
        None => {
            let sql = format!(
                "UPDATE vods SET status = 'ready', finalized_at = $1, duration_ms = {DURATION} WHERE status = 'recording'"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms()).execute(executor).await?
        }
    };
    Ok(done.rows_affected())
}

/// How far a recording has got.
pub struct Progress {
    pub vod_id: i64,
    pub session_id: i64,
    pub ready: bool,
    /// The end (ms from its start) of the last source segment stored; `None` before the first.
    pub recorded_ms: Option<i64>,
}

macro_rules! progress_select {
    () => {
        "SELECT v.id, v.session_id, v.status, (SELECT MAX(s.start_ms + s.duration_ms) FROM vod_segments s \
         WHERE s.vod_id = v.id AND s.rendition = 'source') AS recorded FROM vods v"
    };
}

fn progress_from_row(row: &sqlx::any::AnyRow) -> Result<Progress, sqlx::Error> {
    Ok(Progress {
        vod_id: row.try_get("id")?,
        session_id: row.try_get("session_id")?,
        ready: row.try_get::<String, _>("status")? == "ready",
        recorded_ms: row.try_get("recorded")?,
    })
}

pub async fn progress(executor: impl AnyExecutor<'_>, vod_id: i64) -> Result<Option<Progress>, sqlx::Error> {
    let row =
        sqlx::query(concat!(progress_select!(), " WHERE v.id = $1")).bind(vod_id).fetch_optional(executor).await?;
    row.as_ref().map(progress_from_row).transpose()
}

/// The recording of a live broadcast, when it is being recorded.
pub async fn progress_of_session(
    executor: impl AnyExecutor<'_>,
    session_id: i64,
) -> Result<Option<Progress>, sqlx::Error> {
    let row = sqlx::query(concat!(progress_select!(), " WHERE v.session_id = $1"))
        .bind(session_id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(progress_from_row).transpose()
}

/// A stored source segment over a span.
pub struct SourceSegmentRow {
    pub msn: i64,
    pub init_id: i64,
    pub start_ms: i64,
    pub discontinuity: bool,
    pub object_key: String,
}

/// The source segments that overlap [start_ms, end_ms), in order.
pub async fn source_segments_between(
    executor: impl AnyExecutor<'_>,
    vod_id: i64,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<SourceSegmentRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT msn, init_id, start_ms, discontinuity, object_key FROM vod_segments \
         WHERE vod_id = $1 AND rendition = 'source' AND start_ms + duration_ms > $2 AND start_ms < $3 ORDER BY msn",
    )
    .bind(vod_id)
    .bind(start_ms)
    .bind(end_ms)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SourceSegmentRow {
                msn: row.try_get("msn")?,
                init_id: row.try_get("init_id")?,
                start_ms: row.try_get("start_ms")?,
                discontinuity: row.try_get::<i64, _>("discontinuity")? != 0,
                object_key: row.try_get("object_key")?,
            })
        })
        .collect()
}
