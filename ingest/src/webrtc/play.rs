//! A WHEP viewer: writes a stream's `RtcFeed` samples to its peer (str0m packetizes, keeps the
//! send buffer NACKs are answered from, and sends RTCP). Video starts at a keyframe (asked of the
//! source when the viewer joins); a viewer that falls more than the feed's capacity behind skips
//! to the next keyframe. The viewer's PLI/FIR become keyframe requests to the source, coalesced
//! there. A viewer whose receiver reports loss above 5 % for three seconds running steps down to
//! the next lower rendition (at its next keyframe; the RTP clock is the same on every rung).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use str0m::format::{Codec, PayloadParams};
use str0m::media::{Frequency, MediaTime, Mid, Pt};
use str0m::{Event, Rtc};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, broadcast};

use super::peer::Ended;
use super::{RtcFeed, RtcSample, SampleKind};

/// Loss (fraction, from receiver reports) above which a second counts against the rendition,
/// and how many such seconds in a row make the viewer step down.
const LOSS_TO_STEP_DOWN: f32 = 0.05;
const LOSSY_SECONDS: u32 = 3;

pub(crate) struct Player {
    samples: broadcast::Receiver<Arc<RtcSample>>,
    lower: VecDeque<RtcFeed>,
    lossy_seconds: u32,
    keyframes: Arc<Notify>,
    video: Option<(Mid, Option<Pt>)>,
    audio: Option<(Mid, Option<Pt>)>,
    connected: bool,
    /// A keyframe went out since the start or the last skip.
    video_started: bool,
    skipped: u64,
}

pub(crate) enum Work {
    Sample(Arc<RtcSample>),
    Lagged(u64),
    FeedGone,
}

impl Player {
    /// `video` and `audio`: the mids of the answer's sections.
    pub fn new(feed: &RtcFeed, lower: Vec<RtcFeed>, video: Option<Mid>, audio: Option<Mid>) -> Player {
        Player {
            samples: feed.samples.subscribe(),
            lower: lower.into(),
            lossy_seconds: 0,
            keyframes: feed.keyframes.clone(),
            video: video.map(|mid| (mid, None)),
            audio: audio.map(|mid| (mid, None)),
            connected: false,
            video_started: false,
            skipped: 0,
        }
    }

    pub async fn next(&mut self) -> Work {
        match self.samples.recv().await {
            Ok(sample) => Work::Sample(sample),
            Err(RecvError::Lagged(count)) => Work::Lagged(count),
            Err(RecvError::Closed) => Work::FeedGone,
        }
    }

    pub fn on_event(&mut self, rtc: &mut Rtc, event: Event) -> Result<(), Ended> {
        match event {
            Event::Connected => {
                self.connected = true;
                self.video = self.video.map(|(mid, _)| (mid, payload_type(rtc, mid, Codec::H264)));
                self.audio = self.audio.map(|(mid, _)| (mid, payload_type(rtc, mid, Codec::Opus)));
                tracing::debug!(video = ?self.video, audio = ?self.audio, "whep viewer connected");
                self.keyframes.notify_one();
                Ok(())
            }
            Event::KeyframeRequest(_) => {
                self.keyframes.notify_one();
                Ok(())
            }
            Event::MediaEgressStats(stats) if self.video.is_some_and(|(mid, _)| mid == stats.mid) => {
                if stats.loss.is_some_and(|loss| loss > LOSS_TO_STEP_DOWN) {
                    self.lossy_seconds += 1;
                } else {
                    self.lossy_seconds = 0;
                }
                if self.lossy_seconds >= LOSSY_SECONDS {
                    self.step_down(stats.loss.unwrap_or_default());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn on_work(&mut self, rtc: &mut Rtc, work: Work) -> Result<(), Ended> {
        match work {
            Work::Sample(sample) if self.connected => self.write(rtc, &sample),
            Work::Sample(_) => Ok(()),
            Work::Lagged(count) => {
                // Too slow for the stream: what was missed is gone; the picture resumes at a
                // keyframe.
                self.skipped += count;
                metrics::counter!("aether_webrtc_viewer_samples_skipped_total").increment(count);
                self.video_started = false;
                self.keyframes.notify_one();
                Ok(())
            }
            Work::FeedGone => Err(Ended::Done("the stream ended")),
        }
    }

    /// To the next lower rendition, from its next keyframe.
    fn step_down(&mut self, loss: f32) {
        self.lossy_seconds = 0;
        let Some(next) = self.lower.pop_front() else { return };
        tracing::info!(loss, "a WebRTC viewer keeps losing packets: it steps down a rendition");
        metrics::counter!("aether_webrtc_viewer_step_downs_total").increment(1);
        self.samples = next.samples.subscribe();
        self.keyframes = next.keyframes.clone();
        self.video_started = false;
        self.keyframes.notify_one();
    }

    fn write(&mut self, rtc: &mut Rtc, sample: &RtcSample) -> Result<(), Ended> {
        let (target, time) = match sample.kind {
            SampleKind::Video => {
                if !self.video_started && !sample.keyframe {
                    return Ok(());
                }
                self.video_started = true;
                (self.video, MediaTime::from_90khz(sample.time.max(0) as u64))
            }
            SampleKind::Audio => {
                let rtp = sample.time.max(0) as u64 * 48_000 / u64::from(aether_media::TIMEBASE);
                (self.audio, MediaTime::new(rtp, Frequency::FORTY_EIGHT_KHZ))
            }
        };
        let Some((mid, Some(pt))) = target else { return Ok(()) };
        let Some(writer) = rtc.writer(mid) else { return Ok(()) };
        writer
            .write(pt, Instant::now(), time, sample.data.to_vec())
            .map_err(|error| Ended::Failed(format!("writing media: {error}")))
    }
}

/// The payload type the answer gave `codec` on `mid` (H.264: packetization mode 1 first).
fn payload_type(rtc: &mut Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let writer = rtc.writer(mid)?;
    let mut params: Vec<&PayloadParams> = writer.payload_params().filter(|p| p.spec().codec == codec).collect();
    params.sort_by_key(|p| p.spec().format.packetization_mode != Some(1));
    params.first().map(|p| p.pt())
}
