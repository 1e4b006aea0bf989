//! The clip job (`clips.make`, on the `clips` queue, so that at most `clips.workers` clips are
//! cut at once and cutting never holds up other jobs): fetch the recording's segments over the
//! clip's span, cut, store. The clip row keeps the clip's own state: each try is counted on it
//! (`attempts`), a storage hiccup is retried by the queue with backoff, and a clip that cannot
//! be made, or whose tries ran out, is marked `failed` with the reason.

use std::time::{Duration, Instant};

use aether_vod::clip::{self, SourceSegment};
use aether_vod::playlist::VodFile;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Clip, ClipStatus};
use crate::app::AppState;
use crate::db::now_ms;
use crate::jobs::{ClaimedJob, JobError, Kind, NewJob, Queue};

/// Tries before a clip is given up on.
const MAX_ATTEMPTS: i64 = 3;
/// How long a live clip waits for the recording to reach its end.
const RECORDING_WAIT: Duration = Duration::from_secs(30);
/// Objects fetched or stored at the same time for one clip.
const TRANSFERS_IN_FLIGHT: usize = 16;

/// `clips.make {clip}`: cut clip row `clip`.
pub const MAKE: Kind = Kind {
    name: "clips.make",
    queue: Queue::Clips,
    // The clip row counts its own tries (also those a crash cut short) and gives up after
    // MAX_ATTEMPTS; the job's limit is only a backstop.
    max_attempts: MAX_ATTEMPTS + 2,
    run: |state, job| Box::pin(make_job(state, job)),
};

#[derive(Debug, Serialize, Deserialize)]
struct MakeClip {
    clip: i64,
}

/// The job that makes clip row `row_id`, to enqueue in the transaction that inserts it.
pub fn make_clip(row_id: i64) -> NewJob {
    NewJob::new(&MAKE, &MakeClip { clip: row_id }).dedup(format!("clips.make:{row_id}"))
}

/// Why one try at a clip failed.
#[derive(Debug, thiserror::Error)]
enum ClipError {
    /// Worth another try (storage or the database did not answer).
    #[error("{0}")]
    Transient(String),
    /// Will not get better: the clip fails with this reason.
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for ClipError {
    fn from(error: sqlx::Error) -> Self {
        ClipError::Transient(format!("database: {error}"))
    }
}

impl From<aether_vod::StorageError> for ClipError {
    fn from(error: aether_vod::StorageError) -> Self {
        match error {
            aether_vod::StorageError::NotFound(key) => {
                ClipError::Permanent(format!("a recorded object is missing from storage: {key}"))
            }
            other => ClipError::Transient(other.to_string()),
        }
    }
}

/// What a finished job records on the clip.
struct Made {
    start_ms: i64,
    duration_ms: i64,
    bytes: i64,
    fragments: Vec<i64>,
    thumbnail: bool,
}

/// Queues a job for every clip left `processing` without one (rows from before the queue, or
/// written by hand); a clip whose job is waiting or running keeps it (the dedup key).
pub async fn resume(state: &AppState) -> Result<usize, sqlx::Error> {
    let mut tx = state.db().write().await?;
    let rows = sqlx::query("SELECT id FROM clips WHERE status = 'processing' ORDER BY id").fetch_all(&mut *tx).await?;
    let mut queued = 0;
    for row in rows {
        queued += usize::from(crate::jobs::enqueue(&mut tx, make_clip(row.try_get("id")?)).await?);
    }
    tx.commit().await?;
    state.jobs().wake();
    Ok(queued)
}

async fn make_job(state: AppState, job: ClaimedJob) -> Result<(), JobError> {
    let MakeClip { clip: row_id } = job.payload()?;
    let db = state.db();
    let clip = match super::find_by_row(db, row_id).await? {
        Some(clip) if clip.status == ClipStatus::Processing => clip,
        // Made already, failed already, or deleted: nothing to do (a second run is harmless).
        _ => return Ok(()),
    };
    if clip.attempts >= MAX_ATTEMPTS {
        // Earlier tries never finished (the server stopped or died while cutting it).
        super::fail(db, row_id, &format!("gave up after {} tries", clip.attempts)).await?;
        return Ok(());
    }
    let attempt = clip.attempts + 1;
    sqlx::query("UPDATE clips SET attempts = $1 WHERE id = $2").bind(attempt).bind(row_id).execute(db.pool()).await?;
    let started = Instant::now();
    match make(&state, &clip).await {
        Ok(made) => {
            metrics::histogram!("aether_clip_seconds").record(started.elapsed().as_secs_f64());
            tracing::info!(clip = %clip.id, duration_ms = made.duration_ms, bytes = made.bytes,
                took_ms = started.elapsed().as_millis() as u64, "clip ready");
            mark_ready(&state, &clip, made).await?;
            Ok(())
        }
        Err(ClipError::Transient(reason)) if attempt < MAX_ATTEMPTS && !job.is_last_try() => {
            tracing::warn!(clip = %clip.id, attempt, %reason, "clip failed for now; retrying");
            Err(JobError::Retry(reason))
        }
        Err(ClipError::Transient(reason) | ClipError::Permanent(reason)) => {
            metrics::counter!("aether_clips_total", "status" => "failed").increment(1);
            tracing::warn!(clip = %clip.id, attempt, %reason, "clip failed");
            super::fail(db, row_id, &reason).await?;
            Ok(())
        }
    }
}

async fn mark_ready(state: &AppState, clip: &Clip, made: Made) -> Result<(), sqlx::Error> {
    metrics::counter!("aether_clips_total", "status" => "ready").increment(1);
    let fragments = serde_json::to_string(&made.fragments).expect("integers serialize");
    sqlx::query(
        "UPDATE clips SET status = 'ready', failure = NULL, start_ms = $1, duration_ms = $2, bytes = $3, \
         fragments = $4, finished_at = $5, has_thumbnail = $7 WHERE id = $6",
    )
    .bind(made.start_ms)
    .bind(made.duration_ms)
    .bind(made.bytes)
    .bind(fragments)
    .bind(now_ms())
    .bind(clip.row_id)
    .bind(i64::from(made.thumbnail))
    .execute(state.db().pool())
    .await?;
    Ok(())
}

/// The recording's source segments over the clip's span, fetched, cut and stored.
async fn make(state: &AppState, clip: &Clip) -> Result<Made, ClipError> {
    let db = state.db();
    let vod = clip.vod_row_id.ok_or_else(|| ClipError::Permanent("the recording was deleted".into()))?;
    let wait_until = Instant::now() + RECORDING_WAIT;
    let session_id: i64 = loop {
        let progress = crate::vod::index::progress(db.pool(), vod)
            .await?
            .ok_or_else(|| ClipError::Permanent("the recording was deleted".into()))?;
        if progress.ready || progress.recorded_ms.is_some_and(|end| end >= clip.requested_end_ms) {
            break progress.session_id;
        }
        if Instant::now() > wait_until {
            return Err(ClipError::Permanent("the recording did not reach the clip's end in time".into()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rows =
        crate::vod::index::source_segments_between(db.pool(), vod, clip.requested_start_ms, clip.requested_end_ms)
            .await?;
    // One init segment and one timeline: stop where the stream changed configuration or jumped.
    let mut wanted: Vec<(i64, String)> = Vec::new();
    let mut init_id = None;
    for row in rows {
        if init_id.is_some_and(|first| first != row.init_id) || (init_id.is_some() && row.discontinuity) {
            break;
        }
        init_id = Some(row.init_id);
        wanted.push((row.start_ms, row.object_key));
    }
    let init_id = init_id.ok_or_else(|| ClipError::Permanent("the recording has no media in that range".into()))?;
    let storage = state.storage();
    let fetch_started = Instant::now();
    let init = storage.get(&VodFile::Init(init_id as u32).object_key(session_id, "source")).await?;
    let segments: Vec<SourceSegment> = futures_util::stream::iter(wanted)
        .map(|(start_ms, key)| async move { storage.get(&key).await.map(|data| SourceSegment { start_ms, data }) })
        .buffered(TRANSFERS_IN_FLIGHT)
        .try_collect()
        .await?;
    let (start, end, precise) = (clip.requested_start_ms, clip.requested_end_ms, clip.precise);
    let fetched = fetch_started.elapsed();
    let cut = tokio::task::spawn_blocking(move || {
        let encoder =
            |record: &Bytes, gop: &[clip::HeadPicture], from: i64, id: u32| reencode_head(record, gop, from, id);
        clip::cut(&init, &segments, start, end, precise.then_some(&encoder as clip::HeadEncoder<'_>))
    })
    .await
    .map_err(|error| ClipError::Permanent(format!("cutting failed: {error}")))?
    .map_err(|error| ClipError::Permanent(format!("cutting failed: {error}")))?;

    // The MP4 (in parts above 16 MiB), the init segment and the fragments go up together.
    let prefix = clip.storage_prefix();
    let bytes = cut.mp4_len() as i64;
    let fragments: Vec<i64> = cut.fragments.iter().map(|f| f.duration_ms).collect();
    // A thumbnail of the first picture, when GStreamer is there to decode it.
    let picture = cut.first_picture.clone().filter(|_| state.transcoding_available());
    let thumbnail = match picture {
        Some((record, keyframe)) => {
            tokio::task::spawn_blocking(move || aether_transcode::keyframe_jpeg(&record, &keyframe, 640))
                .await
                .ok()
                .and_then(|result| {
                    result.map_err(|error| tracing::warn!(clip = %clip.id, %error, "no thumbnail for the clip")).ok()
                })
        }
        None => None,
    };
    let mut uploads: Vec<(String, Vec<Bytes>)> =
        vec![(clip.mp4_key(), cut.mp4), (format!("{prefix}/init-0.mp4"), vec![cut.init])];
    if let Some(jpeg) = &thumbnail {
        uploads.push((clip.thumbnail_key(), vec![jpeg.clone()]));
    }
    uploads.extend(cut.fragments.into_iter().enumerate().map(|(index, fragment)| {
        (format!("{prefix}/{}", VodFile::Segment(index as u64).file_name()), vec![fragment.data])
    }));
    let cut_done = fetch_started.elapsed();
    futures_util::stream::iter(uploads)
        .map(|(key, chunks)| async move {
            let content_type = if key.ends_with(".jpg") { "image/jpeg" } else { "video/mp4" };
            storage.put(&key, chunks, content_type).await
        })
        .buffer_unordered(TRANSFERS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    tracing::debug!(clip = %clip.id, fetch_ms = fetched.as_millis() as u64,
        cut_ms = (cut_done - fetched).as_millis() as u64,
        store_ms = (fetch_started.elapsed() - cut_done).as_millis() as u64, "clip made");
    Ok(Made { start_ms: cut.start_ms, duration_ms: cut.duration_ms, bytes, fragments, thumbnail: thumbnail.is_some() })
}

/// The first GOP of a frame-precise clip, re-encoded from the picture at `from` on with
/// GStreamer, at about the source's bitrate.
fn reencode_head(
    record: &Bytes,
    gop: &[clip::HeadPicture],
    from: i64,
    parameter_set_id: u32,
) -> Result<clip::ReencodedHead, String> {
    let bytes: usize = gop.iter().map(|p| p.data.len()).sum();
    let span = gop.iter().map(|p| p.pts).max().unwrap_or(0) - gop.iter().map(|p| p.pts).min().unwrap_or(0);
    let seconds = (span as f64 / 90_000.0).max(1.0 / 30.0);
    let kbps = ((bytes as f64 * 8.0 / seconds / 1000.0) * 1.2).clamp(300.0, 50_000.0) as u32;
    let pictures: Vec<aether_transcode::GopPicture> = gop
        .iter()
        .map(|p| aether_transcode::GopPicture { pts: p.pts, dts: p.dts, keyframe: p.keyframe, data: p.data.clone() })
        .collect();
    let reencoded =
        aether_transcode::reencode_gop(record, &pictures, from, kbps, parameter_set_id).map_err(|e| e.to_string())?;
    Ok((reencoded.record, reencoded.pictures))
}

/// The clip's own HLS rendition: its fragments' object keys are `{prefix}/seg-N.m4s`.
pub fn fragment_segments(clip: &Clip) -> Vec<aether_vod::playlist::IndexedSegment> {
    let mut elapsed = 0;
    clip.fragments
        .iter()
        .enumerate()
        .map(|(index, &duration_ms)| {
            let segment = aether_vod::playlist::IndexedSegment {
                msn: index as u64,
                init_id: 0,
                duration_ms,
                program_date_time_ms: clip.created_at + elapsed,
                discontinuity: false,
            };
            elapsed += duration_ms;
            segment
        })
        .collect()
}
