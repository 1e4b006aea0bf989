//! A live stream's ABR ladder, driven from its packaging task: once the source's video
//! configuration is known, the rungs are planned (never above the source), their renditions are
//! registered on the stream, and the transcoder starts. Source video goes into the transcoder;
//! source audio is passed through to every rung (no re-encode), held until the rung's first
//! picture so that every rendition starts like the source. The rungs' packagers stamp program
//! date-times from the source's clock anchor, so that all renditions list the same times.

use std::collections::VecDeque;
use std::time::Duration;

use aether_media::{MediaFrame, StreamEvent, TIMEBASE, Track};
use aether_transcode::{Output, Transcoder};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::record::{self, Item};
use super::{LiveStream, Rendition};
use crate::app::AppState;
use crate::db::now_ms;

/// How a packager is flushed when the publisher goes: `Packager::finish` at the end,
/// `Packager::interrupt` when it may come back.
pub type Flush = fn(
    &mut aether_media::packager::Packager,
) -> Result<Vec<aether_media::packager::Produced>, aether_media::packager::PackagerError>;

/// Source audio frames held per rung until its first picture: a few seconds.
const HELD_AUDIO: usize = 500;

struct RungFeed {
    /// Audio waiting for the rung's first picture.
    held_audio: VecDeque<MediaFrame>,
    started: bool,
}

pub struct LiveLadder {
    transcoder: Option<Transcoder>,
    outputs: mpsc::Receiver<Output>,
    feeds: Vec<RungFeed>,
    audio_config: Option<StreamEvent>,
    thumbnails: u32,
    /// The broadcast is recorded: its VOD gets a thumbnail too.
    recorded: bool,
    /// The source packager's clock anchor, once it has one (it never changes after).
    anchor: Option<(i64, i64)>,
}

impl LiveLadder {
    /// Starts the ladder for `stream` once its source video configuration is known; `None` when
    /// GStreamer is not usable (passthrough only) or the pipeline cannot start.
    pub fn start(
        state: &AppState,
        stream: &LiveStream,
        source: &aether_media::avc::AvcConfig,
        source_kbps: u32,
        recorded: bool,
    ) -> Option<LiveLadder> {
        if !state.transcoding_available() {
            // Decided: no rungs (the multivariant playlist waits for this decision).
            let _ = stream.ladder.set(Vec::new());
            return None;
        }
        let config = &state.config().transcode;
        // Under the source's measured bitrate; a rung that could not cost less is not made.
        let rungs = aether_transcode::plan_under(config, source.width, source.height, source_kbps);
        if rungs.is_empty() {
            // Nothing to transcode: thumbnails come from single keyframes (`thumbnails`), and no
            // pipeline decodes every frame.
            let _ = stream.ladder.set(Vec::new());
            return None;
        }
        if let Some(existing) = stream.ladder.get()
            && !existing.iter().map(|r| &r.name).eq(rungs.iter().map(|r| &r.name))
        {
            // A publisher back from a reconnect with another picture size: the renditions the
            // players know stay as they were, without new pictures, until the broadcast ends.
            tracing::warn!(channel = %stream.channel, "the source's size changed across a reconnect; rungs stop");
            for rendition in existing {
                rendition.dropped.store(true, std::sync::atomic::Ordering::Release);
            }
            return None;
        }
        match Transcoder::start(config, source, &rungs) {
            Ok((transcoder, outputs)) => {
                // After a reconnect the rungs go on in the renditions they had.
                let queue = state.config().webrtc.viewer_queue;
                let renditions = rungs.iter().map(|rung| {
                    let rtc = aether_ingest::webrtc::RtcFeed::new(queue, stream.keyframes.clone());
                    Rendition::new(&rung.name, state.config().hls.packager(), rtc)
                });
                let _ = stream.ladder.set(renditions.collect());
                tracing::info!(channel = %stream.channel, rungs = ?rungs.iter().map(|r| &r.name).collect::<Vec<_>>(),
                    source = %format!("{}x{}", source.width, source.height), "transcoding started");
                let feeds = rungs.iter().map(|_| RungFeed { held_audio: VecDeque::new(), started: false }).collect();
                metrics::gauge!("aether_transcode_pipelines").increment(1.0);
                Some(LiveLadder {
                    transcoder: Some(transcoder),
                    outputs,
                    feeds,
                    // Publishers send the audio configuration before or after the video's: one
                    // that came first is on the source packager already.
                    audio_config: stream.source.packager().audio_config().cloned().map(StreamEvent::AudioConfig),
                    thumbnails: 0,
                    recorded,
                    anchor: None,
                })
            }
            Err(error) => {
                tracing::error!(channel = %stream.channel, %error, "transcoding could not start; passthrough only");
                let _ = stream.ladder.set(Vec::new());
                None
            }
        }
    }

    /// Keeps the rungs under the source's measured video bitrate (kbps).
    pub fn cap_bitrates(&self, source_kbps: u32) {
        if let Some(transcoder) = &self.transcoder {
            transcoder.cap_bitrates(source_kbps);
        }
    }

    /// The next output of the transcoder; pending forever once there is none.
    pub async fn next(&mut self) -> Option<Output> {
        self.outputs.recv().await
    }

    /// Feeds a source event (after the source rendition has it). Returns what the rungs'
    /// packagers produced that must be recorded.
    pub fn on_source(&mut self, stream: &LiveStream, event: &StreamEvent) -> Vec<Item> {
        let anchor = self.anchor(stream);
        let mut recorded = Vec::new();
        match event {
            StreamEvent::Frame(frame) if frame.track == Track::Video => {
                if let Some(transcoder) = &mut self.transcoder {
                    transcoder.push(frame);
                }
            }
            StreamEvent::VideoConfig(config) => {
                if let Some(transcoder) = &mut self.transcoder {
                    transcoder.reconfigure(config);
                }
            }
            // The rungs get the AAC made from it.
            StreamEvent::Opus(_) => {}
            StreamEvent::AudioConfig(_) => {
                self.audio_config = Some(event.clone());
                for (index, feed) in self.feeds.iter().enumerate() {
                    if feed.started {
                        recorded.extend(push(stream, anchor, index, event.clone()));
                    }
                }
            }
            StreamEvent::Frame(frame) => {
                for index in 0..self.feeds.len() {
                    if self.feeds[index].started {
                        recorded.extend(push(stream, anchor, index, StreamEvent::Frame(frame.clone())));
                    } else {
                        let held = &mut self.feeds[index].held_audio;
                        held.push_back(frame.clone());
                        if held.len() > HELD_AUDIO {
                            held.pop_front();
                        }
                    }
                }
            }
        }
        recorded
    }

    /// Takes one transcoder output into the rungs' packagers (or the stream's thumbnail).
    pub fn on_output(&mut self, state: &AppState, stream: &LiveStream, output: Output) -> Vec<Item> {
        let anchor = self.anchor(stream);
        let mut recorded = Vec::new();
        match output {
            Output::Config { rung, config } => {
                recorded.extend(push(stream, anchor, rung, StreamEvent::VideoConfig(config)));
            }
            Output::Frame { rung, frame } => {
                if let Some(feed) = self.feeds.get_mut(rung)
                    && !feed.started
                {
                    // The rung's first picture: its audio configuration goes first (so that its
                    // first init segment has both tracks), then the picture, then the audio held
                    // for it, from the same time on.
                    feed.started = true;
                    let held: Vec<MediaFrame> = feed.held_audio.drain(..).collect();
                    if let Some(config) = &self.audio_config {
                        recorded.extend(push(stream, anchor, rung, config.clone()));
                    }
                    recorded.extend(push(stream, anchor, rung, StreamEvent::Frame(frame.clone())));
                    for audio in held.into_iter().filter(|audio| audio.dts >= frame.dts) {
                        recorded.extend(push(stream, anchor, rung, StreamEvent::Frame(audio)));
                    }
                } else {
                    recorded.extend(push(stream, anchor, rung, StreamEvent::Frame(frame)));
                }
            }
            Output::Thumbnail(jpeg) => self.thumbnail(state, stream, jpeg),
            Output::Dropped { rung } => {
                metrics::counter!("aether_transcode_rungs_dropped_total").increment(1);
                if let Some(rendition) = stream.ladder.get().and_then(|rungs| rungs.get(rung)) {
                    tracing::warn!(channel = %stream.channel, rendition = %rendition.name,
                        "rendition dropped: transcoding fell behind real time");
                    rendition.dropped.store(true, std::sync::atomic::Ordering::Release);
                    rendition.notify();
                }
            }
            Output::Failed(reason) => {
                metrics::counter!("aether_transcode_failures_total").increment(1);
                tracing::error!(channel = %stream.channel, %reason, "transcoding failed; the source rendition goes on");
                for rendition in stream.ladder.get().into_iter().flatten() {
                    rendition.dropped.store(true, std::sync::atomic::Ordering::Release);
                    rendition.notify();
                }
                self.transcoder = None;
            }
        }
        recorded
    }

    /// The source's clock anchor: read from its packager until it has one, then kept.
    fn anchor(&mut self, stream: &LiveStream) -> Option<(i64, i64)> {
        if self.anchor.is_none() {
            self.anchor = stream.source.packager().clock_anchor();
        }
        self.anchor
    }

    fn thumbnail(&mut self, state: &AppState, stream: &LiveStream, jpeg: Bytes) {
        self.thumbnails += 1;
        super::thumbnails::keep(state, stream, jpeg, self.thumbnails, self.recorded);
    }

    /// Ends the transcoder's input, waits (off the runtime) for it to drain, and packages what
    /// it still produced.
    pub async fn finish(mut self, state: &AppState, stream: &LiveStream, how: Flush) -> Vec<Item> {
        if let Some(transcoder) = self.transcoder.take() {
            let _ = tokio::task::spawn_blocking(move || transcoder.finish(Duration::from_secs(3))).await;
        }
        let mut recorded = Vec::new();
        while let Ok(output) = self.outputs.try_recv() {
            recorded.extend(self.on_output(state, stream, output));
        }
        for rendition in stream.ladder.get().into_iter().flatten() {
            let mut packager = rendition.packager();
            if let Ok(produced) = how(&mut packager) {
                recorded.extend(record::items(&rendition.name, &packager, &produced));
            }
        }
        recorded
    }
}

impl Drop for LiveLadder {
    fn drop(&mut self) {
        metrics::gauge!("aether_transcode_pipelines").decrement(1.0);
    }
}

/// Where a channel's latest thumbnail is kept, for its offline preview.
pub fn preview_key(channel: &str) -> String {
    format!("thumbnails/channels/{channel}.jpg")
}

/// Pushes an event into rung `index`'s packager, stamped on the source's clock (`anchor`).
fn push(stream: &LiveStream, anchor: Option<(i64, i64)>, index: usize, event: StreamEvent) -> Vec<Item> {
    let Some(rendition) = stream.ladder.get().and_then(|rungs| rungs.get(index)) else { return Vec::new() };
    if rendition.is_dropped() {
        return Vec::new();
    }
    let wall = match (&event, anchor) {
        (StreamEvent::Frame(frame), Some((dts, wall))) => wall + (frame.dts - dts) * 1000 / i64::from(TIMEBASE),
        _ => now_ms(),
    };
    let mut packager = rendition.packager();
    match packager.push(event, wall) {
        Ok(produced) => {
            let recorded = record::items(&rendition.name, &packager, &produced);
            drop(packager);
            if !produced.is_empty() {
                rendition.notify();
            }
            recorded
        }
        Err(error) => {
            tracing::warn!(channel = %stream.channel, rendition = %rendition.name, %error, "packaging a rung failed");
            Vec::new()
        }
    }
}
