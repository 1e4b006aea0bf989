//! Thumbnails of a live stream without a ladder: every `transcode.thumbnail_seconds`, the next
//! source keyframe is decoded alone and encoded as a JPEG (the single-picture path clips use),
//! on a small shared pool of blocking workers. Never per frame, and no pipeline stays alive
//! between pictures. With a ladder, the ladder's own decode gives the pictures (`LiveLadder`);
//! both keep them the same way (`keep`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aether_media::MediaFrame;
use bytes::Bytes;
use tokio::sync::Semaphore;

use super::LiveStream;
use crate::app::AppState;
use crate::db::now_ms;

/// Pictures decoded at once across every stream of the node: thumbnails wait their turn (a
/// stream whose turn is taken tries again at its next keyframe) rather than take cores from
/// ingest.
const WORKERS: usize = 2;
/// Thumbnails are at most this wide.
const WIDTH: u32 = 640;

fn workers() -> &'static Arc<Semaphore> {
    static WORKERS_POOL: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    WORKERS_POOL.get_or_init(|| Arc::new(Semaphore::new(WORKERS)))
}

/// One stream's keyframe thumbnails.
pub struct KeyframeThumbnails {
    every: Duration,
    /// When the next picture is due; `None` until the first (at the first keyframe).
    due: Option<Instant>,
    /// A picture of this stream is being made.
    busy: Arc<AtomicBool>,
    taken: Arc<std::sync::atomic::AtomicU32>,
    recorded: bool,
}

impl KeyframeThumbnails {
    /// `None` when GStreamer is not usable: no thumbnails.
    pub fn new(state: &AppState, recorded: bool) -> Option<KeyframeThumbnails> {
        state.transcoding_available().then(|| KeyframeThumbnails {
            every: Duration::from_secs(u64::from(state.config().transcode.thumbnail_seconds)),
            due: None,
            busy: Arc::default(),
            taken: Arc::default(),
            recorded,
        })
    }

    /// Looks at a source frame: a keyframe when a picture is due is handed to a worker.
    pub fn on_frame(&mut self, state: &AppState, stream: &Arc<LiveStream>, frame: &MediaFrame) {
        if !frame.keyframe || self.due.is_some_and(|due| Instant::now() < due) || self.busy.load(Ordering::Acquire) {
            return;
        }
        let Some(record) = stream.source.packager().video_config().map(|config| config.record.clone()) else { return };
        let Ok(permit) = workers().clone().try_acquire_owned() else { return };
        self.due = Some(Instant::now() + self.every);
        self.busy.store(true, Ordering::Release);
        let (state, stream, picture) = (state.clone(), stream.clone(), frame.data.clone());
        let (busy, taken, recorded) = (self.busy.clone(), self.taken.clone(), self.recorded);
        state.clone().tasks().spawn(async move {
            let made = tokio::task::spawn_blocking(move || {
                let made = aether_transcode::keyframe_jpeg(&record, &picture, WIDTH);
                drop(permit);
                made
            })
            .await;
            busy.store(false, Ordering::Release);
            match made {
                Ok(Ok(jpeg)) => {
                    let count = taken.fetch_add(1, Ordering::AcqRel) + 1;
                    keep(&state, &stream, jpeg, count, recorded);
                }
                Ok(Err(error)) => tracing::warn!(channel = %stream.channel, %error, "a thumbnail failed"),
                Err(error) => tracing::warn!(channel = %stream.channel, %error, "the thumbnail worker failed"),
            }
        });
    }
}

/// Keeps a stream's `count`-th thumbnail: on the stream (served live), in storage as the
/// channel's preview and, for the first two (about `thumbnail_seconds` in), as the VOD's.
pub fn keep(state: &AppState, stream: &LiveStream, jpeg: Bytes, count: u32, recorded: bool) {
    *stream.thumbnail.lock().unwrap_or_else(|p| p.into_inner()) = Some(jpeg.clone());
    let mut keys = vec![super::preview_key(&stream.channel)];
    if recorded && count <= 2 {
        keys.push(format!("recordings/{}/thumbnail.jpg", stream.session_id));
    }
    let (state, channel) = (state.clone(), stream.channel_id);
    state.clone().tasks().spawn(async move {
        let preview = keys[0].clone();
        for key in keys {
            match state.storage().put(&key, vec![jpeg.clone()], "image/jpeg").await {
                // The first preview of a broadcast tells the channel it has one (pages ask for
                // it only then).
                Ok(()) if key == preview && count == 1 => {
                    if let Err(error) = crate::channels::mark_preview(state.db(), channel, now_ms()).await {
                        tracing::warn!(%error, "noting the channel's preview failed");
                    }
                }
                Ok(()) => {}
                Err(error) => tracing::warn!(key, %error, "storing a thumbnail failed"),
            }
        }
    });
}
