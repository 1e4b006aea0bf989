//! The glue of the media core: the registry of live streams (channel name -> stream), the
//! publish authority that ingest asks (key check, one publisher per channel, a stream session
//! row, the go-live / go-offline events), the per-stream packaging task, and HLS / LL-HLS
//! serving straight from the in-memory window.

mod http;
mod ladder;
mod publish;
pub mod record;
mod rtc;
mod thumbnails;
pub mod webrtc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use aether_ingest::webrtc::RtcFeed;
use aether_media::packager::{Packager, PackagerConfig};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use serde::Deserialize;
use tokio::sync::{Notify, mpsc, watch};

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
            track_wait_ms: aether_media::packager::TRACK_WAIT_MS,
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

/// `[live]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// How long a broadcast whose publisher dropped waits for it to come back.
    pub reconnect_grace_seconds: u32,
}

/// One rendition's packager and the signal that it produced something.
pub struct Rendition {
    pub name: String,
    /// Its pictures (and the stream's sound) for WebRTC viewers who play it.
    pub rtc: RtcFeed,
    packager: Mutex<Packager>,
    changed: watch::Sender<u64>,
    /// A rung taken off the ladder (transcoding fell behind, or failed).
    dropped: AtomicBool,
    /// What the multivariant playlist says of it (codecs, picture size), fixed at its first
    /// description for the life of the broadcast: a player picks its decoders once.
    described: OnceLock<Described>,
}

/// The fixed part of a rendition's variant.
#[derive(Debug, Clone)]
struct Described {
    codecs: Vec<String>,
    resolution: Option<(u32, u32)>,
}

impl Rendition {
    fn new(name: &str, config: PackagerConfig, rtc: RtcFeed) -> Self {
        Rendition {
            name: name.to_owned(),
            rtc,
            packager: Mutex::new(Packager::new(config)),
            changed: watch::Sender::new(0),
            dropped: AtomicBool::new(false),
            described: OnceLock::new(),
        }
    }

    /// Its `EXT-X-STREAM-INF` once it has produced media: measured bandwidth and frame rate, and
    /// the codecs and size it was first described with.
    pub fn variant(&self, uri: String) -> Option<aether_media::playlist::Variant> {
        let mut variant = aether_media::playlist::Variant::of(&self.packager(), uri)?;
        let described =
            self.described.get_or_init(|| Described { codecs: variant.codecs.clone(), resolution: variant.resolution });
        variant.codecs.clone_from(&described.codecs);
        variant.resolution = described.resolution;
        Some(variant)
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
    /// The hash of the stream key that opened it: only that key may continue it.
    key_hash: String,
    /// To the packaging task while it waits for its publisher to come back.
    handovers: mpsc::Sender<publish::Handover>,
    /// The publisher is gone and the broadcast waits for it (the reconnect grace).
    reconnecting: AtomicBool,
    /// The passthrough of the source, at the top of the ladder.
    pub source: Rendition,
    /// The transcoded rungs, highest first, once the source's size and bitrate are known (empty
    /// when there are none).
    ladder: OnceLock<Vec<Rendition>>,
    /// The latest thumbnail (JPEG).
    thumbnail: Mutex<Option<Bytes>>,
    /// What the publisher sends: measured bitrate, picture size and rate.
    ingest: Mutex<IngestStats>,
    /// Set once the publisher is gone and the last segment flushed.
    ended: AtomicBool,
    /// Notified when a keyframe is wanted from the publisher (a WHIP publisher listens).
    pub keyframes: Arc<Notify>,
    /// The source reorders pictures (B-frames): WebRTC viewers get rungs only.
    bframes: AtomicBool,
}

/// What a new broadcast is opened with.
struct Opened {
    channel_id: ChannelId,
    channel: String,
    session_id: i64,
    started_at: i64,
    key_hash: String,
    handovers: mpsc::Sender<publish::Handover>,
}

impl LiveStream {
    fn new(opened: Opened, config: PackagerConfig, viewer_queue: usize) -> Self {
        let keyframes: Arc<Notify> = Arc::default();
        LiveStream {
            channel_id: opened.channel_id,
            channel: opened.channel,
            session_id: opened.session_id,
            started_at: opened.started_at,
            key_hash: opened.key_hash,
            handovers: opened.handovers,
            reconnecting: AtomicBool::new(false),
            source: Rendition::new("source", config, RtcFeed::new(viewer_queue, keyframes.clone())),
            ladder: OnceLock::new(),
            thumbnail: Mutex::new(None),
            ingest: Mutex::new(IngestStats::default()),
            ended: AtomicBool::new(false),
            keyframes,
            bframes: AtomicBool::new(false),
        }
    }

    /// Whether the ladder's rungs (maybe none) are known.
    pub fn ladder_decided(&self) -> bool {
        self.ladder.get().is_some()
    }

    pub fn is_reconnecting(&self) -> bool {
        self.reconnecting.load(Ordering::Acquire)
    }

    /// The source, then the rungs still on the ladder.
    pub fn renditions(&self) -> impl Iterator<Item = &Rendition> {
        std::iter::once(&self.source).chain(self.ladder.get().into_iter().flatten().filter(|r| !r.is_dropped()))
    }

    pub fn thumbnail(&self) -> Option<Bytes> {
        self.thumbnail.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn ingest(&self) -> IngestStats {
        self.ingest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update_ingest(&self, update: impl FnOnce(&mut IngestStats)) {
        update(&mut self.ingest.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// What a WebRTC viewer plays: the rendition asked for (by name) or the best one (the source
    /// unless it has B-frames, else the top rung), and the lower ones it may step down to.
    pub fn webrtc_feeds(&self, rendition: Option<&str>) -> Result<(RtcFeed, Vec<RtcFeed>), FeedError> {
        let mut choices: Vec<&Rendition> = Vec::new();
        if !self.bframes.load(Ordering::Acquire) {
            choices.push(&self.source);
        }
        choices.extend(self.ladder.get().into_iter().flatten().filter(|rung| !rung.is_dropped()));
        let start = match rendition {
            None if choices.is_empty() && !self.ladder_decided() => return Err(FeedError::NotYet),
            None if choices.is_empty() => return Err(FeedError::Unplayable),
            None => 0,
            Some(name) => choices.iter().position(|r| r.name == name).ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|r| r.name.as_str()).collect();
                FeedError::NoSuch(format!(
                    "no rendition \"{name}\" to play over WebRTC (there are: {})",
                    names.join(", ")
                ))
            })?,
        };
        Ok((choices[start].rtc.clone(), choices[start + 1..].iter().map(|r| r.rtc.clone()).collect()))
    }

    /// Every WebRTC feed: the source's and the rungs'.
    pub fn rtc_feeds(&self) -> impl Iterator<Item = &RtcFeed> {
        std::iter::once(&self.source.rtc).chain(self.ladder.get().into_iter().flatten().map(|rung| &rung.rtc))
    }

    pub fn rendition(&self, name: &str) -> Option<&Rendition> {
        self.renditions().find(|rendition| rendition.name == name)
    }
}

/// Why a stream has nothing to play over WebRTC (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedError {
    /// The source has B-frames and its ladder is still starting.
    NotYet,
    /// The source has B-frames and there is no ladder (transcoding is off).
    Unplayable,
    NoSuch(String),
}

/// What the rest of the server may know about a channel that is live.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStatus {
    pub started_at: i64,
    /// The publisher dropped and the broadcast waits for it to come back.
    pub reconnecting: bool,
    pub ingest: IngestStats,
    /// The renditions being served, source first.
    pub renditions: Vec<String>,
    /// Viewers playing over WebRTC (WHEP) now, on this node.
    pub webrtc_viewers: usize,
}

/// The publisher's stream as received: updated about once a second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestStats {
    /// Media bits per second (audio and video payload), over the last second or so.
    pub bitrate_bps: f64,
    pub width: u32,
    pub height: u32,
    pub frame_rate: Option<f64>,
    /// Seconds between source keyframes: the last interval, or the time since the last
    /// keyframe when that is already longer.
    pub keyframe_interval_secs: Option<f64>,
    /// `H.264 High 3.1`.
    pub video_codec: Option<String>,
    /// `AAC-LC 48 kHz stereo`.
    pub audio: Option<String>,
}

impl IngestStats {
    pub fn keyframes_too_far_apart(&self, segment_seconds: f64) -> bool {
        keyframes_too_far_apart(self.keyframe_interval_secs, segment_seconds)
    }
}

/// Whether keyframes come further apart than segments can follow: segments are cut at
/// keyframes, so they grow to the keyframe interval (and latency with them).
fn keyframes_too_far_apart(interval_secs: Option<f64>, segment_seconds: f64) -> bool {
    interval_secs.is_some_and(|interval| interval > 2.0 * segment_seconds)
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
            reconnecting: stream.is_reconnecting(),
            ingest: stream.ingest(),
            renditions: stream.renditions().map(|rendition| rendition.name.clone()).collect(),
            webrtc_viewers: stream.rtc_feeds().map(RtcFeed::viewers).sum(),
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
