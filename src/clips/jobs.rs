//! Clip jobs: a bounded queue of clip ids and a dispatcher that runs at most `clips.workers` of
//! them at once, on their own tasks, so that cutting never holds up the live path. The state is
//! the clip row: at start-up the clips left `processing` are resumed; each try is counted, a
//! storage hiccup is retried with backoff, and a clip that cannot be made is marked `failed` with
//! the reason.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_vod::clip::{self, SourceSegment};
use aether_vod::playlist::VodFile;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::Row;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Clip, ClipStatus};
use crate::app::AppState;
use crate::db::now_ms;

/// Tries before a clip is given up on.
const MAX_ATTEMPTS: i64 = 3;
/// How long a live clip waits for the recording to reach its end.
const RECORDING_WAIT: Duration = Duration::from_secs(30);
/// Objects fetched or stored at the same time for one clip.
const TRANSFERS_IN_FLIGHT: usize = 16;

pub struct ClipJobs {
    sender: mpsc::Sender<i64>,
    receiver: Mutex<Option<mpsc::Receiver<i64>>>,
}

#[derive(Debug, thiserror::Error)]
enum JobError {
    /// Worth another try (storage or the database did not answer).
    #[error("{0}")]
    Transient(String),
    /// Will not get better: the clip fails with this reason.
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for JobError {
    fn from(error: sqlx::Error) -> Self {
        JobError::Transient(format!("database: {error}"))
    }
}

impl From<aether_vod::StorageError> for JobError {
    fn from(error: aether_vod::StorageError) -> Self {
        match error {
            aether_vod::StorageError::NotFound(key) => {
                JobError::Permanent(format!("a recorded object is missing from storage: {key}"))
            }
            other => JobError::Transient(other.to_string()),
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

impl ClipJobs {
    pub fn new(queue: usize) -> ClipJobs {
        let (sender, receiver) = mpsc::channel(queue);
        ClipJobs { sender, receiver: Mutex::new(Some(receiver)) }
    }

    /// Queues a clip; `false` when the queue is full.
    pub fn submit(&self, row_id: i64) -> bool {
        self.sender.try_send(row_id).is_ok()
    }

    /// Resumes the clips a previous run left unfinished, then runs queued clips, at most
    /// `clips.workers` at a time, until `stop`.
    pub async fn run(state: AppState, stop: CancellationToken) {
        let Some(mut receiver) = state.clip_jobs().receiver.lock().unwrap().take() else { return };
        let mut resumed: VecDeque<i64> =
            match sqlx::query("SELECT id FROM clips WHERE status = 'processing' ORDER BY id")
                .fetch_all(state.db().pool())
                .await
            {
                Ok(rows) => rows.iter().filter_map(|row| row.try_get("id").ok()).collect(),
                Err(error) => {
                    tracing::error!(%error, "cannot look up unfinished clips");
                    VecDeque::new()
                }
            };
        if !resumed.is_empty() {
            tracing::info!(clips = resumed.len(), "resuming clips left unfinished");
        }
        let workers = Arc::new(Semaphore::new(state.config().clips.workers));
        loop {
            let row_id = match resumed.pop_front() {
                Some(id) => id,
                None => tokio::select! {
                    next = receiver.recv() => match next {
                        Some(id) => id,
                        None => return,
                    },
                    _ = stop.cancelled() => return,
                },
            };
            let permit = tokio::select! {
                permit = workers.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                _ = stop.cancelled() => return,
            };
            let (job_state, job_stop) = (state.clone(), stop.clone());
            state.tasks().spawn(async move {
                let _permit = permit;
                run_job(&job_state, row_id, &job_stop).await;
            });
        }
    }
}

async fn run_job(state: &AppState, row_id: i64, stop: &CancellationToken) {
    let db = state.db();
    let mut backoff = Duration::from_secs(1);
    loop {
        let clip = match super::find_by_row(db, row_id).await {
            Ok(Some(clip)) if clip.status == ClipStatus::Processing => clip,
            Ok(_) => return,
            Err(error) => {
                tracing::error!(row_id, %error, "cannot load a clip job");
                return;
            }
        };
        if clip.attempts >= MAX_ATTEMPTS {
            // Earlier tries never finished (the server stopped or died while cutting it).
            let reason = format!("gave up after {} tries", clip.attempts);
            if let Err(error) = super::fail(db, row_id, &reason).await {
                tracing::error!(row_id, %error, "cannot record the clip's outcome");
            }
            return;
        }
        let attempt = clip.attempts + 1;
        if let Err(error) = sqlx::query("UPDATE clips SET attempts = $1 WHERE id = $2")
            .bind(attempt)
            .bind(row_id)
            .execute(db.pool())
            .await
        {
            tracing::error!(row_id, %error, "cannot count a clip attempt");
            return;
        }
        let started = Instant::now();
        let result = tokio::select! {
            result = make(state, &clip) => result,
            // Shutting down: the clip stays `processing` and is resumed at the next start.
            _ = stop.cancelled() => return,
        };
        let finish = match result {
            Ok(made) => {
                metrics::histogram!("aether_clip_seconds").record(started.elapsed().as_secs_f64());
                tracing::info!(clip = %clip.id, duration_ms = made.duration_ms, bytes = made.bytes,
                    took_ms = started.elapsed().as_millis() as u64, "clip ready");
                mark_ready(state, &clip, made).await
            }
            Err(JobError::Transient(reason)) if attempt < MAX_ATTEMPTS => {
                tracing::warn!(clip = %clip.id, attempt, %reason, "clip failed for now; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff *= 4;
                continue;
            }
            Err(JobError::Transient(reason) | JobError::Permanent(reason)) => {
                metrics::counter!("aether_clips_total", "status" => "failed").increment(1);
                tracing::warn!(clip = %clip.id, attempt, %reason, "clip failed");
                super::fail(db, row_id, &reason).await
            }
        };
        if let Err(error) = finish {
            tracing::error!(clip = %clip.id, %error, "cannot record the clip's outcome");
        }
        return;
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
async fn make(state: &AppState, clip: &Clip) -> Result<Made, JobError> {
    let db = state.db();
    let vod = clip.vod_row_id.ok_or_else(|| JobError::Permanent("the recording was deleted".into()))?;
    let wait_until = Instant::now() + RECORDING_WAIT;
    let session_id: i64 = loop {
        let row = sqlx::query(
            "SELECT v.session_id, v.status, (SELECT MAX(s.start_ms + s.duration_ms) FROM vod_segments s \
             WHERE s.vod_id = v.id AND s.rendition = 'source') AS recorded FROM vods v WHERE v.id = $1",
        )
        .bind(vod)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| JobError::Permanent("the recording was deleted".into()))?;
        let recorded: Option<i64> = row.try_get("recorded")?;
        let status: String = row.try_get("status")?;
        if status == "ready" || recorded.is_some_and(|end| end >= clip.requested_end_ms) {
            break row.try_get("session_id")?;
        }
        if Instant::now() > wait_until {
            return Err(JobError::Permanent("the recording did not reach the clip's end in time".into()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rows = sqlx::query(
        "SELECT msn, init_id, start_ms, discontinuity, object_key FROM vod_segments \
         WHERE vod_id = $1 AND rendition = 'source' AND start_ms + duration_ms > $2 AND start_ms < $3 ORDER BY msn",
    )
    .bind(vod)
    .bind(clip.requested_start_ms)
    .bind(clip.requested_end_ms)
    .fetch_all(db.pool())
    .await?;
    // One init segment and one timeline: stop where the stream changed configuration or jumped.
    let mut wanted: Vec<(i64, String)> = Vec::new();
    let mut init_id = None;
    for row in &rows {
        let id: i64 = row.try_get("init_id")?;
        let jump = row.try_get::<i64, _>("discontinuity")? != 0;
        if init_id.is_some_and(|first| first != id) || (init_id.is_some() && jump) {
            break;
        }
        init_id = Some(id);
        wanted.push((row.try_get("start_ms")?, row.try_get("object_key")?));
    }
    let init_id = init_id.ok_or_else(|| JobError::Permanent("the recording has no media in that range".into()))?;
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
    .map_err(|error| JobError::Permanent(format!("cutting failed: {error}")))?
    .map_err(|error| JobError::Permanent(format!("cutting failed: {error}")))?;

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
