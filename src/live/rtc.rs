//! A broadcast's WebRTC side, in its packaging task: what its WHEP viewers get, and the Opus a
//! WHIP publisher sends made into AAC for HLS and the recording.
//!
//! Every rendition has a feed: the source's pictures as they came (when it has no B-frames: WHIP
//! always, RTMP from encoders set so), each rung's as x264 made them (`zerolatency`: none).
//! Audio goes to every feed: a WHIP source's Opus as it came, an RTMP source's AAC transcoded to
//! Opus once for every viewer (only while someone watches). Each transcoder starts with the
//! first frame that needs it.

use std::sync::atomic::Ordering;

use aether_ingest::webrtc::{RtcFeed, RtcSample, SampleKind};
use aether_media::aac::AacConfig;
use aether_media::annexb;
use aether_media::avc::AvcConfig;
use aether_media::{MediaFrame, StreamEvent, Track};
use aether_transcode::{AudioOutput, AudioTranscoder};
use tokio::sync::mpsc;

use super::LiveStream;

/// AAC for HLS made from a WHIP publisher's Opus, and Opus for viewers made from RTMP's AAC.
const AAC_KBPS: u32 = 128;
const OPUS_KBPS: u32 = 96;

#[derive(Default)]
pub(super) struct RtcOut {
    /// WHIP Opus -> AAC for the packager; `failed` once it could not start.
    to_aac: Option<(AudioTranscoder, mpsc::Receiver<AudioOutput>)>,
    to_aac_failed: bool,
    /// RTMP AAC -> Opus for viewers.
    to_opus: Option<(AudioTranscoder, mpsc::Receiver<AudioOutput>)>,
    aac_config: Option<AacConfig>,
    source_video: Option<AvcConfig>,
    /// The rungs' configurations, by rung index.
    rung_video: Vec<Option<AvcConfig>>,
    /// The source reorders pictures: viewers get the top rung instead.
    bframes: bool,
}

/// Output of the audio transcoders, for the packaging task.
pub(super) enum RtcNext {
    /// AAC made from Opus: to the packager, as if the publisher had sent it.
    Aac(StreamEvent),
    /// Nothing more from a transcoder (it failed or was dropped).
    Stopped,
}

impl RtcOut {
    /// One source event (times already on the broadcast's timeline).
    pub fn on_source(&mut self, stream: &LiveStream, event: &StreamEvent) {
        match event {
            StreamEvent::VideoConfig(config) => self.source_video = Some(config.clone()),
            StreamEvent::AudioConfig(config) => {
                if self.aac_config.as_ref().is_some_and(|old| old.asc != config.asc) {
                    self.to_opus = None;
                }
                self.aac_config = Some(config.clone());
            }
            StreamEvent::Opus(frame) => {
                send_audio(stream, frame);
                if let Some((transcoder, _)) = self.opus_to_aac(stream) {
                    transcoder.push(frame);
                }
            }
            StreamEvent::Frame(frame) if frame.track == Track::Video => {
                if frame.pts != frame.dts && !self.bframes {
                    tracing::info!(channel = %stream.channel, "the source has B-frames: WebRTC viewers get the rungs");
                    self.bframes = true;
                    stream.bframes.store(true, Ordering::Release);
                }
                if !self.bframes {
                    send_video(&stream.source.rtc, self.source_video.as_ref(), frame);
                }
            }
            StreamEvent::Frame(frame) => {
                if stream.rtc_feeds().all(|feed| feed.viewers() == 0) {
                    // Nobody listens: the next viewer's audio starts from a fresh transcoder.
                    self.to_opus = None;
                    return;
                }
                if self.to_opus.is_none()
                    && let Some(config) = &self.aac_config
                {
                    match AudioTranscoder::aac_to_opus(config, OPUS_KBPS) {
                        Ok(started) => self.to_opus = Some(started),
                        Err(error) => {
                            tracing::warn!(channel = %stream.channel, %error, "no Opus for WebRTC viewers");
                            self.aac_config = None;
                        }
                    }
                }
                if let Some((transcoder, _)) = &mut self.to_opus {
                    transcoder.push(frame);
                }
            }
        }
    }

    /// A ladder output: a rung's pictures to its feed.
    pub fn on_ladder(&mut self, stream: &LiveStream, output: &aether_transcode::Output) {
        match output {
            aether_transcode::Output::Config { rung, config } => {
                if self.rung_video.len() <= *rung {
                    self.rung_video.resize(rung + 1, None);
                }
                self.rung_video[*rung] = Some(config.clone());
            }
            aether_transcode::Output::Frame { rung, frame } => {
                if let Some(feed) = stream.ladder.get().and_then(|rungs| rungs.get(*rung)) {
                    send_video(&feed.rtc, self.rung_video.get(*rung).and_then(Option::as_ref), frame);
                }
            }
            _ => {}
        }
    }

    /// The next output of the audio transcoders; never resolves without one.
    pub async fn next(&mut self, stream: &LiveStream) -> RtcNext {
        loop {
            tokio::select! {
                Some(output) = recv(&mut self.to_aac) => match output {
                    AudioOutput::AacConfig(config) => return RtcNext::Aac(StreamEvent::AudioConfig(config)),
                    AudioOutput::Frame(frame) => return RtcNext::Aac(StreamEvent::Frame(frame)),
                    AudioOutput::Failed(reason) => {
                        tracing::warn!(channel = %stream.channel, %reason, "Opus to AAC failed: HLS has no audio");
                        (self.to_aac, self.to_aac_failed) = (None, true);
                        return RtcNext::Stopped;
                    }
                },
                Some(output) = recv(&mut self.to_opus) => match output {
                    AudioOutput::Frame(frame) => send_audio(stream, &frame),
                    AudioOutput::AacConfig(_) => {}
                    AudioOutput::Failed(reason) => {
                        tracing::warn!(channel = %stream.channel, %reason, "AAC to Opus failed");
                        self.to_opus = None;
                        return RtcNext::Stopped;
                    }
                },
                else => return std::future::pending().await,
            }
        }
    }

    fn opus_to_aac(&mut self, stream: &LiveStream) -> Option<&mut (AudioTranscoder, mpsc::Receiver<AudioOutput>)> {
        if self.to_aac.is_none() && !self.to_aac_failed {
            match AudioTranscoder::opus_to_aac(AAC_KBPS) {
                Ok(started) => self.to_aac = Some(started),
                Err(error) => {
                    tracing::error!(channel = %stream.channel, %error, "cannot transcode Opus to AAC: HLS has no audio");
                    self.to_aac_failed = true;
                }
            }
        }
        self.to_aac.as_mut()
    }
}

async fn recv(transcoder: &mut Option<(AudioTranscoder, mpsc::Receiver<AudioOutput>)>) -> Option<AudioOutput> {
    match transcoder {
        Some((_, outputs)) => outputs.recv().await,
        None => std::future::pending().await,
    }
}

/// Sound to the viewers of every rendition.
fn send_audio(stream: &LiveStream, frame: &MediaFrame) {
    for feed in stream.rtc_feeds().filter(|feed| feed.viewers() > 0) {
        feed.send(RtcSample { kind: SampleKind::Audio, time: frame.pts, keyframe: true, data: frame.data.clone() });
    }
}

/// A picture to a rendition's viewers as Annex B, the parameter sets ahead of each keyframe.
fn send_video(feed: &RtcFeed, config: Option<&AvcConfig>, frame: &MediaFrame) {
    if feed.viewers() == 0 {
        return;
    }
    let Some(config) = config else { return };
    let Some(units) = annexb::avcc_units(&frame.data, config.length_size) else { return };
    let data = if frame.keyframe {
        let sets = config.sps.iter().chain(&config.pps).map(|set| &set[..]);
        annexb::to_annexb(sets.chain(units))
    } else {
        annexb::to_annexb(units)
    };
    feed.send(RtcSample { kind: SampleKind::Video, time: frame.pts, keyframe: frame.keyframe, data });
}
