//! Recording: every broadcast becomes a VOD. The row is created when the stream starts (status
//! `recording`); each init segment and each finished segment goes to object storage as soon as
//! the packager produces it and is indexed in `vod_segments` right after, so a crash loses at most
//! the segment in flight; when the stream ends (or, after a crash, at the next start) the VOD is
//! finalized with its duration. Writes happen on the recorder's own task behind a bounded queue,
//! so slow storage never stalls the live path. When storage cannot be reached, objects wait in a
//! bounded local spool and are uploaded (and indexed) in order once it is back, also after a
//! restart; what cannot be queued or spooled is logged and counted, never dropped silently.

use std::sync::Arc;
use std::time::Duration;

use aether_media::packager::{Packager, Produced};
use aether_vod::playlist::VodFile;
use aether_vod::{Spool, SpoolError, Storage, StorageError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::db::Db;
use crate::live::LiveStream;

/// Segments (and init segments) waiting to be written: about a minute of media.
const QUEUE: usize = 64;
/// How long the stream waits for room in a full queue before an item is dropped.
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// With remote storage, a backlog this deep goes to the local spool (fast) rather than waiting
/// on storage, and is uploaded from there.
const BACKLOG_TO_SPOOL: usize = 8;

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

/// One object of a recording and the index row that goes with it; also what a spool entry says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    vod_id: i64,
    key: String,
    row: IndexRow,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum IndexRow {
    Rendition {
        rendition: String,
        codecs: String,
        width: Option<i64>,
        height: Option<i64>,
        frame_rate_millis: Option<i64>,
    },
    Segment {
        rendition: String,
        msn: i64,
        init_id: i64,
        start_ms: i64,
        duration_ms: i64,
        bytes: i64,
        program_date_time_ms: i64,
        discontinuity: bool,
    },
}

#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("indexing: {0}")]
    Database(#[from] sqlx::Error),
}

/// Where recordings go: object storage, and the spool while storage cannot be reached. Objects
/// of one recording are stored in the order they were made: once anything waits in the spool,
/// new objects queue behind it.
#[derive(Clone)]
pub struct Archive {
    db: Db,
    storage: Storage,
    spool: Arc<Spool<Stored>>,
    spooled: Arc<Notify>,
}

impl Archive {
    pub fn open(db: Db, storage: Storage, dir: &std::path::Path, max_bytes: u64) -> Result<Archive, SpoolError> {
        let spool = Spool::open(dir, max_bytes)?;
        if !spool.is_empty() {
            tracing::warn!(
                entries = spool.len(),
                bytes = spool.used_bytes(),
                "recordings are waiting in the spool; uploading them"
            );
        }
        metrics::gauge!("aether_recording_spool_bytes").set(spool.used_bytes() as f64);
        Ok(Archive { db, storage, spool: Arc::new(spool), spooled: Arc::new(Notify::new()) })
    }

    /// Stores an object, or spools it: when storage fails, when earlier objects wait in the
    /// spool (order), or when `backlog` says storage is not keeping up.
    async fn save(&self, stored: Stored, chunks: Vec<Bytes>, backlog: usize) {
        let behind = backlog > BACKLOG_TO_SPOOL && self.storage.is_remote();
        if self.spool.is_empty() && !behind {
            match self.storage.put(&stored.key, chunks.clone(), "video/mp4").await {
                Ok(()) => return self.index(&stored).await,
                Err(error) => {
                    metrics::counter!("aether_recording_errors_total").increment(1);
                    tracing::warn!(vod_id = stored.vod_id, key = stored.key, %error, "storage failed; spooling");
                }
            }
        }
        match self.spool.push(stored.clone(), &chunks).await {
            Ok(()) => {
                metrics::counter!("aether_recording_spooled_total").increment(1);
                metrics::gauge!("aether_recording_spool_bytes").set(self.spool.used_bytes() as f64);
                self.spooled.notify_one();
            }
            Err(error) => {
                metrics::counter!("aether_recording_dropped_total").increment(1);
                tracing::error!(vod_id = stored.vod_id, key = stored.key, %error, "a recorded object was lost");
            }
        }
    }

    async fn index(&self, stored: &Stored) {
        match index(&self.db, stored).await {
            Ok(()) => {
                if matches!(stored.row, IndexRow::Segment { .. }) {
                    metrics::counter!("aether_recorded_segments_total").increment(1);
                }
            }
            Err(error) => {
                metrics::counter!("aether_recording_errors_total").increment(1);
                tracing::error!(vod_id = stored.vod_id, key = stored.key, %error, "indexing a recorded object failed");
            }
        }
    }

    /// Uploads what waits in the spool, oldest first, retrying with backoff while storage is
    /// down, until `stop` (what is left stays for the next start).
    pub async fn upload_spooled(self, stop: CancellationToken) {
        let mut backoff = RETRY_FIRST;
        loop {
            let front = match self.spool.front().await {
                Ok(front) => front,
                Err(error) => {
                    tracing::error!(%error, "the spool cannot be read");
                    None
                }
            };
            let Some((seq, stored, data)) = front else {
                tokio::select! {
                    _ = self.spooled.notified() => continue,
                    _ = stop.cancelled() => return,
                }
            };
            match self.upload_one(&stored, data).await {
                Ok(()) => {
                    self.spool.remove(seq).await;
                    metrics::gauge!("aether_recording_spool_bytes").set(self.spool.used_bytes() as f64);
                    backoff = RETRY_FIRST;
                    if self.spool.is_empty() {
                        tracing::info!("the spool is empty: every recorded object is in storage");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, waiting = self.spool.len(), retry_in = ?backoff, "storage still unavailable");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    async fn upload_one(&self, stored: &Stored, data: Bytes) -> Result<(), RecordError> {
        self.storage.put(&stored.key, vec![data], "video/mp4").await?;
        index(&self.db, stored).await?;
        if matches!(stored.row, IndexRow::Segment { .. }) {
            metrics::counter!("aether_recorded_segments_total").increment(1);
            crate::vod::index::refresh_duration(self.db.pool(), stored.vod_id).await?;
        }
        Ok(())
    }
}

const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

async fn index(db: &Db, stored: &Stored) -> Result<(), sqlx::Error> {
    use crate::vod::index::{RenditionRow, SegmentRow, put_rendition, put_segment};
    match &stored.row {
        IndexRow::Rendition { rendition, codecs, width, height, frame_rate_millis } => {
            let row = RenditionRow {
                vod_id: stored.vod_id,
                rendition,
                codecs,
                width: *width,
                height: *height,
                frame_rate_millis: *frame_rate_millis,
            };
            put_rendition(db.pool(), row).await
        }
        IndexRow::Segment {
            rendition,
            msn,
            init_id,
            start_ms,
            duration_ms,
            bytes,
            program_date_time_ms,
            discontinuity,
        } => {
            let row = SegmentRow {
                vod_id: stored.vod_id,
                rendition,
                msn: *msn,
                init_id: *init_id,
                start_ms: *start_ms,
                duration_ms: *duration_ms,
                bytes: *bytes,
                program_date_time_ms: *program_date_time_ms,
                discontinuity: *discontinuity,
                object_key: &stored.key,
            };
            put_segment(db.pool(), row).await
        }
    }
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
        let opened = match crate::channels::find(state.db(), &stream.channel).await {
            Ok(Some(channel)) if channel.record => {
                crate::vod::index::open(state.db().pool(), channel.id, stream.session_id, &channel.title)
                    .await
                    .map(Some)
            }
            Ok(_) => Ok(None),
            Err(error) => Err(error),
        };
        let vod_id = match opened {
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
        state.tasks().spawn(write(state.archive().clone(), vod_id, stream.session_id, receiver));
        Some(Recorder { sender, vod_id })
    }

    pub fn vod_id(&self) -> i64 {
        self.vod_id
    }

    /// Queues what the packager produced. A full queue (storage and spool slower than the
    /// stream, as when a file is pushed faster than real time) holds the stream back for up to
    /// `QUEUE_WAIT` per item before the item is dropped, with an error and a metric.
    pub async fn record(&self, items: Vec<Item>) {
        for item in items {
            let item = match self.sender.try_send(item) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(item)) => item,
            };
            metrics::counter!("aether_recording_backpressure_total").increment(1);
            if self.sender.send_timeout(item, QUEUE_WAIT).await.is_err() {
                metrics::counter!("aether_recording_dropped_total").increment(1);
                tracing::error!(
                    vod_id = self.vod_id,
                    "recording queue full: storage and spool are too slow, a segment was not recorded"
                );
            }
        }
    }
}

async fn write(archive: Archive, vod_id: i64, session_id: i64, mut items: mpsc::Receiver<Item>) {
    let mut first_dts = None;
    while let Some(item) = items.recv().await {
        let (stored, chunks) = match item {
            Item::Init { rendition, id, bytes, codecs, resolution, frame_rate } => {
                let key = VodFile::Init(id).object_key(session_id, &rendition);
                let row = IndexRow::Rendition {
                    rendition,
                    codecs,
                    width: resolution.map(|(w, _)| i64::from(w)),
                    height: resolution.map(|(_, h)| i64::from(h)),
                    frame_rate_millis: frame_rate.map(|rate| (rate * 1000.0).round() as i64),
                };
                (Stored { vod_id, key, row }, vec![bytes])
            }
            Item::Segment { rendition, msn, init_id, start_dts, duration_ms, pdt_ms, discontinuity, chunks } => {
                let key = VodFile::Segment(msn).object_key(session_id, &rendition);
                let first = *first_dts.get_or_insert(start_dts);
                let row = IndexRow::Segment {
                    rendition,
                    msn: msn as i64,
                    init_id: i64::from(init_id),
                    start_ms: (start_dts - first) * 1000 / i64::from(aether_media::TIMEBASE),
                    duration_ms,
                    bytes: chunks.iter().map(|c| c.len() as i64).sum(),
                    program_date_time_ms: pdt_ms,
                    discontinuity,
                };
                (Stored { vod_id, key, row }, chunks)
            }
        };
        archive.save(stored, chunks, items.len()).await;
    }
    if let Err(error) = finalize(&archive.db, Some(vod_id)).await {
        tracing::error!(vod_id, %error, "finalizing the VOD failed");
    }
}

/// Marks recordings ready: one VOD, or (`None`) every one a crash left `recording`.
pub async fn finalize(db: &Db, vod_id: Option<i64>) -> Result<u64, sqlx::Error> {
    crate::vod::index::finalize(db.pool(), vod_id).await
}
