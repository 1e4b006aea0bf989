//! VODs: the recordings of broadcasts (see `live::record`), addressed by a random public id. Who
//! may see one (its visibility: private to the channel's owner and admins, unlisted = anyone with
//! the link, public = listed too), the database queries behind the API and the playlists, and
//! deletion with the stored objects.

pub(crate) mod http;
pub mod index;
mod routes;

pub use routes::{VodView, view as public_view};

use aether_vod::playlist::IndexedSegment;
use axum::Router;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::app::AppState;
use crate::auth::{User, UserId};
use crate::channels::ChannelId;
use crate::db::Db;

pub fn router() -> Router<AppState> {
    Router::new().merge(routes::router()).merge(http::router())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Private,
    Unlisted,
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Unlisted => "unlisted",
            Visibility::Public => "public",
        }
    }

    fn parse(value: &str) -> Option<Visibility> {
        [Visibility::Private, Visibility::Unlisted, Visibility::Public].into_iter().find(|v| v.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VodStatus {
    /// The broadcast is still going on (or was cut by a crash and not yet finalized).
    Recording,
    Ready,
}

/// A VOD as stored, with its channel.
#[derive(Debug, Clone)]
pub struct Vod {
    /// The row id, internal.
    pub row_id: i64,
    pub id: String,
    pub channel_id: ChannelId,
    pub channel: String,
    pub owner_id: UserId,
    pub session_id: i64,
    pub title: String,
    pub status: VodStatus,
    pub visibility: Visibility,
    pub duration_ms: i64,
    pub created_at: i64,
}

impl Vod {
    /// The channel's owner and admins may change or delete it.
    pub fn can_manage(&self, user: &User) -> bool {
        user.id == self.owner_id || user.is_admin()
    }

    /// Private VODs are seen only by those who may manage them; the others by anyone with the id.
    pub fn can_view(&self, user: Option<&User>) -> bool {
        self.visibility != Visibility::Private || user.is_some_and(|user| self.can_manage(user))
    }

    /// Where its recording's objects are stored.
    pub fn storage_prefix(&self) -> String {
        format!("recordings/{}", self.session_id)
    }
}

macro_rules! vod_select {
    () => {
        "SELECT v.id AS row_id, v.public_id, v.channel_id, c.name AS channel, c.owner_id, v.session_id, v.title, \
         v.status, v.visibility, v.duration_ms, v.created_at FROM vods v JOIN channel_names c ON c.id = v.channel_id"
    };
}

fn vod_from_row(row: &AnyRow) -> Result<Vod, sqlx::Error> {
    let decode = |what: &str| sqlx::Error::Decode(format!("unknown VOD {what}").into());
    let status: String = row.try_get("status")?;
    let visibility: String = row.try_get("visibility")?;
    Ok(Vod {
        row_id: row.try_get("row_id")?,
        id: row.try_get("public_id")?,
        channel_id: ChannelId(row.try_get("channel_id")?),
        channel: row.try_get("channel")?,
        owner_id: UserId(row.try_get("owner_id")?),
        session_id: row.try_get("session_id")?,
        title: row.try_get("title")?,
        status: match status.as_str() {
            "recording" => VodStatus::Recording,
            "ready" => VodStatus::Ready,
            _ => return Err(decode("status")),
        },
        visibility: Visibility::parse(&visibility).ok_or_else(|| decode("visibility"))?,
        duration_ms: row.try_get("duration_ms")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn find(db: &Db, id: &str) -> Result<Option<Vod>, sqlx::Error> {
    let row = sqlx::query(concat!(vod_select!(), " WHERE v.public_id = $1")).bind(id).fetch_optional(db.pool()).await?;
    row.map(|row| vod_from_row(&row)).transpose()
}

/// VODs, newest first: a channel's, or every channel's (`None`); only the public ones unless `all`.
pub async fn list(
    db: &Db,
    channel: Option<ChannelId>,
    all: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<Vod>, sqlx::Error> {
    let sql = concat!(
        vod_select!(),
        " WHERE ($1 = 0 OR v.channel_id = $1) AND ($2 = 1 OR v.visibility = 'public') \
         ORDER BY v.created_at DESC, v.id DESC LIMIT $3 OFFSET $4"
    );
    // Row ids start at 1, so 0 stands for "any channel".
    let channel = channel.map_or(0, |channel| channel.0);
    let rows =
        sqlx::query(sql).bind(channel).bind(i64::from(all)).bind(limit).bind(offset).fetch_all(db.pool()).await?;
    rows.iter().map(vod_from_row).collect()
}

/// Public VODs whose title matches every term (as a prefix), best first (on SQLite, among the
/// best-ranked `(offset + limit) x 2 + 200` matches of any visibility).
pub async fn search(db: &Db, terms: &[String], limit: i64, offset: i64) -> Result<Vec<Vod>, sqlx::Error> {
    let sql = match db.backend() {
        // The best-ranked candidates first (FTS5 ranks them inside the index), then the join:
        // joining every match before ranking took twice as long over a million titles. Past
        // `$4` candidates (a few pages more than asked) nothing is looked at.
        crate::db::Backend::Sqlite => concat!(
            vod_select!(),
            " JOIN (SELECT rowid, rank FROM vods_fts WHERE vods_fts MATCH $1 ORDER BY rank LIMIT $4) f ON f.rowid = v.id \
             WHERE v.visibility = 'public' ORDER BY f.rank, v.id DESC LIMIT $2 OFFSET $3"
        ),
        crate::db::Backend::Postgres => concat!(
            vod_select!(),
            " WHERE v.search @@ to_tsquery('simple', $1) AND v.visibility = 'public' \
             ORDER BY ts_rank(v.search, to_tsquery('simple', $1)) DESC, v.id DESC LIMIT $2 OFFSET $3"
        ),
    };
    let query = db.backend().match_query(terms);
    let candidates = (offset + limit) * 2 + 200;
    let mut statement = sqlx::query(sql).bind(query).bind(limit).bind(offset);
    if db.backend() == crate::db::Backend::Sqlite {
        statement = statement.bind(candidates);
    }
    let rows = statement.fetch_all(db.pool()).await?;
    rows.iter().map(vod_from_row).collect()
}

pub async fn update(db: &Db, vod: &Vod, title: &str, visibility: Visibility) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE vods SET title = $1, visibility = $2 WHERE id = $3")
        .bind(title)
        .bind(visibility.as_str())
        .bind(vod.row_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn delete(db: &Db, vod: &Vod) -> Result<(), sqlx::Error> {
    // The segment index and renditions go with it (ON DELETE CASCADE).
    sqlx::query("DELETE FROM vods WHERE id = $1").bind(vod.row_id).execute(db.pool()).await?;
    Ok(())
}

/// The recorded segments of one rendition, in order.
pub async fn segments(db: &Db, vod: &Vod, rendition: &str) -> Result<Vec<IndexedSegment>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT msn, init_id, duration_ms, program_date_time_ms, discontinuity FROM vod_segments \
         WHERE vod_id = $1 AND rendition = $2 ORDER BY msn",
    )
    .bind(vod.row_id)
    .bind(rendition)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(IndexedSegment {
                msn: row.try_get::<i64, _>("msn")? as u64,
                init_id: row.try_get::<i64, _>("init_id")? as u32,
                duration_ms: row.try_get("duration_ms")?,
                program_date_time_ms: row.try_get("program_date_time_ms")?,
                discontinuity: row.try_get::<i64, _>("discontinuity")? != 0,
            })
        })
        .collect()
}

/// A recorded rendition with the bandwidth its segments actually took.
#[derive(Debug, Clone)]
pub struct RecordedRendition {
    pub name: String,
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    pub peak_bps: u64,
    pub average_bps: u64,
}

/// The renditions that have at least one segment, the source first, then by height.
pub async fn renditions(db: &Db, vod: &Vod) -> Result<Vec<RecordedRendition>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.rendition, r.codecs, r.width, r.height, r.frame_rate_millis, \
         MAX(s.bytes * 8000 / s.duration_ms) AS peak, \
         CAST(SUM(s.bytes) AS BIGINT) AS bytes, CAST(SUM(s.duration_ms) AS BIGINT) AS ms \
         FROM vod_renditions r JOIN vod_segments s ON s.vod_id = r.vod_id AND s.rendition = r.rendition \
         WHERE r.vod_id = $1 AND s.duration_ms > 0 \
         GROUP BY r.rendition, r.codecs, r.width, r.height, r.frame_rate_millis \
         ORDER BY CASE WHEN r.rendition = 'source' THEN 0 ELSE 1 END, r.height DESC",
    )
    .bind(vod.row_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let width: Option<i64> = row.try_get("width")?;
            let height: Option<i64> = row.try_get("height")?;
            let bytes: i64 = row.try_get("bytes")?;
            let ms: i64 = row.try_get("ms")?;
            Ok(RecordedRendition {
                name: row.try_get("rendition")?,
                codecs: row.try_get("codecs")?,
                resolution: width.zip(height).map(|(w, h)| (w as u32, h as u32)),
                frame_rate: row.try_get::<Option<i64>, _>("frame_rate_millis")?.map(|m| m as f64 / 1000.0),
                peak_bps: row.try_get::<i64, _>("peak")?.max(0) as u64,
                average_bps: (bytes * 8000 / ms.max(1)).max(0) as u64,
            })
        })
        .collect()
}

/// The stored object key of a rendition's file, when the index has it.
pub async fn object_key(
    db: &Db,
    vod: &Vod,
    rendition: &str,
    file: aether_vod::playlist::VodFile,
) -> Result<Option<String>, sqlx::Error> {
    use aether_vod::playlist::VodFile;
    match file {
        VodFile::Segment(msn) => {
            let row =
                sqlx::query("SELECT object_key FROM vod_segments WHERE vod_id = $1 AND rendition = $2 AND msn = $3")
                    .bind(vod.row_id)
                    .bind(rendition)
                    .bind(msn as i64)
                    .fetch_optional(db.pool())
                    .await?;
            row.map(|row| row.try_get("object_key")).transpose()
        }
        VodFile::Init(id) => {
            let row = sqlx::query(
                "SELECT 1 AS found FROM vod_segments WHERE vod_id = $1 AND rendition = $2 AND init_id = $3 LIMIT 1",
            )
            .bind(vod.row_id)
            .bind(rendition)
            .bind(i64::from(id))
            .fetch_optional(db.pool())
            .await?;
            Ok(row.map(|_| file.object_key(vod.session_id, rendition)))
        }
    }
}
