//! The glue of the media core: the registry of live streams (channel name -> stream), the
//! publish authority that ingest asks (key check, one publisher per channel, a stream session
//! row, the go-live / go-offline events), the per-stream packaging task, and HLS / LL-HLS
//! serving straight from the in-memory window.

mod http;
mod ladder;
mod publish;
pub mod record;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use aether_media::packager::{Packager, PackagerConfig};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use serde::Deserialize;
use tokio::sync::watch;

pub use http::router;
pub use ladder::preview_key;
pub use publish::{LivePublishers, end_unfinished_sessions};

use crate::channels::ChannelId;

/// `[hls]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsConfig {
    pub segment_seconds: f64,
    pub part_seconds: f64,
    pub low_latency: bool,
    pub window_segments: usize,
}

impl HlsConfig {
    pub fn packager(&self) -> PackagerConfig {
        PackagerConfig {
            segment_target_ms: (self.segment_seconds * 1000.0).round() as u32,
            part_target_ms: self.low_latency.then(|| (self.part_seconds * 1000.0).round() as u32),
            window_segments: self.window_segments,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(0.5..=30.0).contains(&self.segment_seconds) {
            return Err("hls.segment_seconds must be 0.5 to 30".into());
        }
        if !(0.1..=self.segment_seconds).contains(&self.part_seconds) {
            return Err("hls.part_seconds must be 0.1 to hls.segment_seconds".into());
        }
        if !(2..=100).contains(&self.window_segments) {
            return Err("hls.window_segments must be 2 to 100".into());
        }
        Ok(())
    }
}

/// One rendition's packager and the signal that it produced something.
pub struct Rendition {
    pub name: String,
    packager: Mutex<Packager>,
    changed: watch::Sender<u64>,
    /// A rung taken off the ladder (transcoding fell behind, or failed).
    dropped: AtomicBool,
}

impl Rendition {
    fn new(name: &str, config: PackagerConfig) -> Self {
        Rendition {
            name: name.to_owned(),
            packager: Mutex::new(Packager::new(config)),
            changed: watch::Sender::new(0),
            dropped: AtomicBool::new(false),
        }
    }

    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// The packager, for a short synchronous look or push; never held across an await.
    pub fn packager(&self) -> MutexGuard<'_, Packager> {
        self.packager.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|version| *version += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// A live broadcast.
pub struct LiveStream {
    pub channel_id: ChannelId,
    pub channel: String,
    pub session_id: i64,
    pub started_at: i64,
    /// The passthrough of the source, at the top of the ladder.
    pub source: Rendition,
    /// The transcoded rungs, highest first, once the source's size is known.
    ladder: OnceLock<Vec<Rendition>>,
    /// The latest thumbnail (JPEG).
    thumbnail: Mutex<Option<Bytes>>,
    /// What the publisher sends: measured bitrate, picture size and rate.
    ingest: Mutex<IngestStats>,
    /// Set once the publisher is gone and the last segment flushed.
    ended: AtomicBool,
}

impl LiveStream {
    fn new(channel_id: ChannelId, channel: String, session_id: i64, started_at: i64, config: PackagerConfig) -> Self {
        LiveStream {
            channel_id,
            channel,
            session_id,
            started_at,
            source: Rendition::new("source", config),
            ladder: OnceLock::new(),
            thumbnail: Mutex::new(None),
            ingest: Mutex::new(IngestStats::default()),
            ended: AtomicBool::new(false),
        }
    }

    /// The source, then the rungs still on the ladder.
    pub fn renditions(&self) -> impl Iterator<Item = &Rendition> {
        std::iter::once(&self.source).chain(self.ladder.get().into_iter().flatten().filter(|r| !r.is_dropped()))
    }

    pub fn thumbnail(&self) -> Option<Bytes> {
        self.thumbnail.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn ingest(&self) -> IngestStats {
        *self.ingest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_ingest(&self, update: impl FnOnce(&mut IngestStats)) {
        update(&mut self.ingest.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub fn rendition(&self, name: &str) -> Option<&Rendition> {
        self.renditions().find(|rendition| rendition.name == name)
    }
}

/// What the rest of the server may know about a channel that is live.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStatus {
    pub started_at: i64,
    pub ingest: IngestStats,
    /// The renditions being served, source first.
    pub renditions: Vec<String>,
}

/// The publisher's stream as received: updated about once a second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IngestStats {
    /// Media bits per second (audio and video payload), over the last second or so.
    pub bitrate_bps: f64,
    pub width: u32,
    pub height: u32,
    pub frame_rate: Option<f64>,
}

/// Live streams by channel name.
#[derive(Default)]
pub struct LiveRegistry {
    streams: DashMap<String, Arc<LiveStream>>,
}

impl LiveRegistry {
    pub fn get(&self, channel: &str) -> Option<Arc<LiveStream>> {
        self.streams.get(channel).map(|entry| entry.clone())
    }

    pub fn status(&self, channel: &str) -> Option<LiveStatus> {
        self.streams.get(channel).map(|stream| LiveStatus {
            started_at: stream.started_at,
            ingest: stream.ingest(),
            renditions: stream.renditions().map(|rendition| rendition.name.clone()).collect(),
        })
    }

    pub fn live_channels(&self) -> Vec<ChannelId> {
        self.streams.iter().map(|entry| entry.channel_id).collect()
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Registers `stream` unless its channel is already live.
    fn insert(&self, stream: Arc<LiveStream>) -> Result<(), Arc<LiveStream>> {
        match self.streams.entry(stream.channel.clone()) {
            Entry::Occupied(_) => Err(stream),
            Entry::Vacant(slot) => {
                slot.insert(stream);
                Ok(())
            }
        }
    }

    /// Removes the stream if it is still the registered one for its channel.
    fn remove(&self, stream: &LiveStream) {
        self.streams.remove_if(&stream.channel, |_, current| current.session_id == stream.session_id);
    }
}
