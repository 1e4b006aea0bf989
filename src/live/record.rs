//! Recording: every broadcast becomes a VOD. The row is created when the stream starts (status
//! `recording`); each init segment and each finished segment goes to object storage as soon as
//! the packager produces it and is indexed in `vod_segments` right after, so a crash loses at most
//! the segment in flight; when the stream ends (or, after a crash, at the next start) the VOD is
//! finalized with its duration. Writes happen on the recorder's own task behind a bounded queue,
//! so slow storage never stalls the live path; what cannot be queued is logged and counted.

use aether_media::packager::{Packager, Produced};
use aether_vod::Storage;
use bytes::Bytes;
use sqlx::Row;
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::db::{Db, now_ms};
use crate::live::LiveStream;

/// Segments (and init segments) waiting to be written: about a minute of media.
const QUEUE: usize = 64;

#[derive(Debug)]
pub enum Item {
    Init {
        rendition: String,
        id: u32,
        bytes: Bytes,
        /// What the rendition is, for the VOD's multivariant playlist.
        codecs: String,
        resolution: Option<(u32, u32)>,
        frame_rate: Option<f64>,
    },
    Segment {
        rendition: String,
        msn: u64,
        init_id: u32,
        start_dts: i64,
        duration_ms: i64,
        pdt_ms: i64,
        discontinuity: bool,
        chunks: Vec<Bytes>,
    },
}

/// What the packager just produced that must be recorded, taken while its lock is held.
pub fn items(rendition: &str, packager: &Packager, produced: &[Produced]) -> Vec<Item> {
    produced
        .iter()
        .filter_map(|item| match *item {
            Produced::Init { id } => packager.init(id).map(|bytes| {
                let video = packager.video_config();
                let codecs = video
                    .map(|v| v.codec_string())
                    .into_iter()
                    .chain(packager.audio_config().map(|a| a.codec_string()));
                Item::Init {
                    rendition: rendition.to_owned(),
                    id,
                    bytes,
                    codecs: codecs.collect::<Vec<_>>().join(","),
                    resolution: video.map(|v| (v.width, v.height)),
                    frame_rate: packager.frame_rate(),
                }
            }),
            Produced::Segment { msn } => packager.segments().find(|s| s.msn == msn).map(|segment| Item::Segment {
                rendition: rendition.to_owned(),
                msn,
                init_id: segment.init_id,
                start_dts: segment.start_dts,
                duration_ms: segment.duration_ticks * 1000 / i64::from(aether_media::TIMEBASE),
                pdt_ms: segment.program_date_time_ms,
                discontinuity: segment.discontinuity,
                chunks: segment.chunks(),
            }),
            Produced::Part { .. } => None,
        })
        .collect()
}

pub struct Recorder {
    sender: mpsc::Sender<Item>,
    vod_id: i64,
}

impl Recorder {
    /// Opens the VOD row and the recorder task; `None` when recording is off (for the server or
    /// the channel) or the row cannot be made.
    pub async fn start(state: &AppState, stream: &LiveStream) -> Option<Recorder> {
        if !state.config().recording.enabled {
            return None;
        }
        let inserted = sqlx::query(
            "INSERT INTO vods (channel_id, session_id, public_id, title, created_at) \
             SELECT id, $1, $4, title, $2 FROM channels WHERE id = $3 AND record = 1 RETURNING id",
        )
        .bind(stream.session_id)
        .bind(now_ms())
        .bind(stream.channel_id.0)
        .bind(crate::db::public_id())
        .fetch_optional(state.db().pool())
        .await
        .and_then(|row| row.map(|row| row.try_get::<i64, _>("id")).transpose());
        let vod_id = match inserted {
            Ok(Some(id)) => id,
            Ok(None) => {
                tracing::info!(channel = %stream.channel, "recording is off for this channel");
                return None;
            }
            Err(error) => {
                tracing::error!(%error, channel = %stream.channel, "cannot start the recording");
                return None;
            }
        };
        let (sender, receiver) = mpsc::channel(QUEUE);
        state.tasks().spawn(write(state.db().clone(), state.storage().clone(), vod_id, stream.session_id, receiver));
        Some(Recorder { sender, vod_id })
    }

    pub fn vod_id(&self) -> i64 {
        self.vod_id
    }

    pub fn record(&self, items: Vec<Item>) {
        for item in items {
            if self.sender.try_send(item).is_err() {
                metrics::counter!("aether_recording_dropped_total").increment(1);
                tracing::warn!(
                    vod_id = self.vod_id,
                    "recording queue full: storage is too slow, a segment was not recorded"
                );
            }
        }
    }
}

async fn write(db: Db, storage: Storage, vod_id: i64, session_id: i64, mut items: mpsc::Receiver<Item>) {
    let mut first_dts = None;
    while let Some(item) = items.recv().await {
        let result = match item {
            Item::Init { rendition, id, bytes, codecs, resolution, frame_rate } => {
                let key = format!("recordings/{session_id}/{rendition}/init-{id}.mp4");
                match storage.put(&key, vec![bytes], "video/mp4").await {
                    Ok(()) => sqlx::query(
                        "INSERT INTO vod_renditions (vod_id, rendition, codecs, width, height, frame_rate_millis) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (vod_id, rendition) DO UPDATE SET \
                         codecs = excluded.codecs, width = excluded.width, height = excluded.height, \
                         frame_rate_millis = excluded.frame_rate_millis",
                    )
                    .bind(vod_id)
                    .bind(rendition)
                    .bind(codecs)
                    .bind(resolution.map(|(w, _)| i64::from(w)))
                    .bind(resolution.map(|(_, h)| i64::from(h)))
                    .bind(frame_rate.map(|rate| (rate * 1000.0).round() as i64))
                    .execute(db.pool())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                    Err(error) => Err(error.to_string()),
                }
            }
            Item::Segment { rendition, msn, init_id, start_dts, duration_ms, pdt_ms, discontinuity, chunks } => {
                let key = format!("recordings/{session_id}/{rendition}/seg-{msn}.m4s");
                let bytes: usize = chunks.iter().map(Bytes::len).sum();
                let first = *first_dts.get_or_insert(start_dts);
                let start_ms = (start_dts - first) * 1000 / i64::from(aether_media::TIMEBASE);
                match storage.put(&key, chunks, "video/mp4").await {
                    Ok(()) => sqlx::query(
                        "INSERT INTO vod_segments (vod_id, rendition, msn, init_id, start_ms, duration_ms, bytes, \
                         program_date_time_ms, discontinuity, object_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(vod_id)
                    .bind(rendition)
                    .bind(msn as i64)
                    .bind(i64::from(init_id))
                    .bind(start_ms)
                    .bind(duration_ms)
                    .bind(bytes as i64)
                    .bind(pdt_ms)
                    .bind(i64::from(discontinuity))
                    .bind(key)
                    .execute(db.pool())
                    .await
                    .map(|_| metrics::counter!("aether_recorded_segments_total").increment(1))
                    .map_err(|e| e.to_string()),
                    Err(error) => Err(error.to_string()),
                }
            }
        };
        if let Err(error) = result {
            metrics::counter!("aether_recording_errors_total").increment(1);
            tracing::error!(vod_id, %error, "recording a segment failed");
        }
    }
    if let Err(error) = finalize(&db, Some(vod_id)).await {
        tracing::error!(vod_id, %error, "finalizing the VOD failed");
    }
}

/// Marks recordings ready with their source-rendition duration: one VOD, or (`None`) every one a
/// crash left `recording`. Returns how many.
pub async fn finalize(db: &Db, vod_id: Option<i64>) -> Result<u64, sqlx::Error> {
    let duration = "(SELECT COALESCE(SUM(s.duration_ms), 0) FROM vod_segments s WHERE s.vod_id = vods.id AND s.rendition = 'source')";
    let done = match vod_id {
        Some(id) => {
            let sql =
                format!("UPDATE vods SET status = 'ready', finalized_at = $1, duration_ms = {duration} WHERE id = $2");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms()).bind(id).execute(db.pool()).await?
        }
        None => {
            let sql = format!(
                "UPDATE vods SET status = 'ready', finalized_at = $1, duration_ms = {duration} WHERE status = 'recording'"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms()).execute(db.pool()).await?
        }
    };
    Ok(done.rows_affected())
}
