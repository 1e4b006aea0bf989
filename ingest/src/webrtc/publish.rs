//! A WHIP publisher: str0m's depacketized frames -> `StreamEvent`s, as an RTMP connection makes
//! them. H.264 comes as Annex B access units: parameter sets become `VideoConfig` events (again
//! whenever they change) and are kept out of the frames, which go on as AVC (length-prefixed).
//! Opus packets go on as they are (the server transcodes them for HLS). Both tracks' RTP clocks
//! are put on one timeline by when their first packet arrived. Browsers and OBS send no
//! B-frames over WebRTC, so decode time = presentation time.
//!
//! After a gap (lost packets that NACK did not recover) video waits for the next keyframe, which
//! it asks for at once (PLI, at most once a second); the server asks for one too when a rendition
//! or a viewer needs it (`RtcFeed::request_keyframe`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_media::annexb::{self, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};
use aether_media::{MediaFrame, StreamEvent, TIMEBASE, Track};
use bytes::Bytes;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaTime, Mid};
use str0m::{Event, Rtc};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc};

use super::peer::Ended;
use crate::Publication;

/// Keyframe requests to the publisher: at most one a second.
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Publisher {
    name: String,
    events: mpsc::Sender<StreamEvent>,
    keyframes: Arc<Notify>,
    video_mid: Option<Mid>,
    /// The parameter sets seen last, and those the last `VideoConfig` carried.
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    announced: Option<(Vec<u8>, Vec<u8>)>,
    /// Video is held back until a keyframe (at the start and after a gap).
    waiting_for_keyframe: bool,
    last_request: Option<Instant>,
    clock: Clock,
    frames: u64,
    dropped: u64,
}

pub(crate) enum Work {
    KeyframeWanted,
    BroadcastGone,
}

impl Publisher {
    /// `video_mid`: the mid of the answer's video section (keyframe requests go there).
    pub fn new(publication: Publication, video_mid: Option<Mid>) -> Publisher {
        Publisher {
            name: publication.name,
            events: publication.events,
            keyframes: publication.keyframes,
            video_mid,
            sps: None,
            pps: None,
            announced: None,
            waiting_for_keyframe: true,
            last_request: None,
            clock: Clock::new(Instant::now()),
            frames: 0,
            dropped: 0,
        }
    }

    pub async fn next(&self) -> Work {
        tokio::select! {
            _ = self.keyframes.notified() => Work::KeyframeWanted,
            _ = self.events.closed() => Work::BroadcastGone,
        }
    }

    pub fn on_work(&mut self, rtc: &mut Rtc, work: Work) -> Result<(), Ended> {
        match work {
            Work::KeyframeWanted => {
                self.request_keyframe(rtc);
                Ok(())
            }
            Work::BroadcastGone => Err(Ended::Done("the broadcast ended")),
        }
    }

    pub fn on_event(&mut self, rtc: &mut Rtc, event: Event) -> Result<(), Ended> {
        match event {
            Event::MediaData(data) => self.on_media(rtc, data),
            _ => Ok(()),
        }
    }

    pub fn finish(&mut self) {
        tracing::info!(channel = %self.name, frames = self.frames, dropped = self.dropped, "whip publisher done");
    }

    fn on_media(&mut self, rtc: &mut Rtc, data: MediaData) -> Result<(), Ended> {
        match data.params.spec().codec {
            Codec::H264 => self.on_video(rtc, data),
            Codec::Opus => {
                let time = self.clock.ticks(1, data.time, data.network_time);
                let frame = MediaFrame {
                    track: Track::Audio,
                    dts: time,
                    pts: time,
                    keyframe: true,
                    data: Bytes::from(data.data.to_vec()),
                };
                self.send(rtc, StreamEvent::Opus(frame))
            }
            _ => Ok(()),
        }
    }

    fn on_video(&mut self, rtc: &mut Rtc, data: MediaData) -> Result<(), Ended> {
        if !data.contiguous && !self.waiting_for_keyframe {
            self.waiting_for_keyframe = true;
            self.request_keyframe(rtc);
        }
        let units = annexb::nal_units(&data.data);
        let mut keyframe = false;
        for unit in &units {
            match annexb::nal_type(unit) {
                NAL_SPS => self.sps = Some(unit.to_vec()),
                NAL_PPS => self.pps = Some(unit.to_vec()),
                NAL_IDR => keyframe = true,
                _ => {}
            }
        }
        if let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
            && self.announced.as_ref().is_none_or(|(s, p)| s != sps || p != pps)
        {
            match annexb::config_from_parameter_sets(sps, pps) {
                Ok(config) => {
                    self.announced = Some((sps.clone(), pps.clone()));
                    self.send(rtc, StreamEvent::VideoConfig(config))?;
                }
                Err(error) => {
                    tracing::warn!(channel = %self.name, %error, "the publisher's H.264 parameter sets do not parse");
                    (self.sps, self.pps) = (None, None);
                }
            }
        }
        if self.waiting_for_keyframe {
            if !keyframe || self.announced.is_none() {
                self.request_keyframe(rtc);
                return Ok(());
            }
            self.waiting_for_keyframe = false;
        }
        let picture: Vec<&[u8]> =
            units.into_iter().filter(|unit| !matches!(annexb::nal_type(unit), NAL_SPS | NAL_PPS | NAL_AUD)).collect();
        if picture.is_empty() {
            return Ok(());
        }
        let time = self.clock.ticks(0, data.time, data.network_time);
        let frame = MediaFrame { track: Track::Video, dts: time, pts: time, keyframe, data: annexb::to_avcc(picture) };
        self.send(rtc, StreamEvent::Frame(frame))
    }

    fn send(&mut self, rtc: &mut Rtc, event: StreamEvent) -> Result<(), Ended> {
        let video = matches!(&event, StreamEvent::Frame(frame) if frame.track == Track::Video);
        match self.events.try_send(event) {
            Ok(()) => {
                self.frames += 1;
                Ok(())
            }
            // The packaging task is behind: this frame is lost, and video starts again at a
            // keyframe so that no decoder sees a broken reference.
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                metrics::counter!("aether_webrtc_ingest_frames_dropped_total").increment(1);
                if video {
                    self.waiting_for_keyframe = true;
                    self.request_keyframe(rtc);
                }
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(Ended::Done("the broadcast ended")),
        }
    }

    fn request_keyframe(&mut self, rtc: &mut Rtc) {
        if self.last_request.is_some_and(|at| at.elapsed() < KEYFRAME_REQUEST_EVERY) {
            return;
        }
        let Some(mid) = self.video_mid else { return };
        if let Some(mut writer) = rtc.writer(mid) {
            let kind = if writer.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
                KeyframeRequestKind::Pli
            } else {
                KeyframeRequestKind::Fir
            };
            match writer.request_keyframe(None, kind) {
                Ok(()) => {
                    self.last_request = Some(Instant::now());
                    metrics::counter!("aether_webrtc_keyframe_requests_total").increment(1);
                }
                Err(error) => tracing::debug!(channel = %self.name, %error, "cannot ask the publisher for a keyframe"),
            }
        }
    }
}

/// Both tracks on one timeline: each track's RTP time from its first packet, placed at when that
/// packet arrived (ticks since the publisher started).
struct Clock {
    start: Instant,
    tracks: [Option<(u64, u32, i64)>; 2],
}

impl Clock {
    fn new(start: Instant) -> Clock {
        Clock { start, tracks: [None, None] }
    }

    fn ticks(&mut self, track: usize, time: MediaTime, arrived: Instant) -> i64 {
        let start = self.start;
        let (first, rate, at) = *self.tracks[track].get_or_insert_with(|| {
            let since = arrived.saturating_duration_since(start);
            (time.numer(), time.denom(), (since.as_micros() as i64) * i64::from(TIMEBASE) / 1_000_000)
        });
        let elapsed = i128::from(time.numer()) - i128::from(first);
        at + (elapsed * i128::from(TIMEBASE) / i128::from(rate.max(1))) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::Frequency;

    #[test]
    fn both_tracks_share_a_timeline_anchored_at_their_first_packet() {
        let start = Instant::now();
        let mut clock = Clock::new(start);
        let video = |rtp| MediaTime::new(rtp, Frequency::NINETY_KHZ);
        let audio = |rtp| MediaTime::new(rtp, Frequency::FORTY_EIGHT_KHZ);
        assert_eq!(clock.ticks(0, video(1_000_000), start), 0);
        assert_eq!(clock.ticks(0, video(1_003_000), start), 3000);
        // Audio's first packet came 20 ms later, with an unrelated RTP offset.
        assert_eq!(clock.ticks(1, audio(77), start + Duration::from_millis(20)), 1800);
        assert_eq!(clock.ticks(1, audio(77 + 960), start + Duration::from_secs(9)), 1800 + 1800);
    }
}
