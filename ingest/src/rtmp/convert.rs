//! FLV tag bodies from an RTMP publisher -> `StreamEvent`s: codec configurations parsed, frames
//! stamped in the 90 kHz timebase through one `Timeline` (wrap and jump handling), composition
//! offsets applied. Pure; errors name what the publisher sent that we cannot carry.

use aether_media::aac::{AacConfig, AacError};
use aether_media::avc::{AvcConfig, AvcError};
use aether_media::flv::{self, AudioTag, FlvError, VideoTag};
use aether_media::timestamps::Timeline;
use aether_media::{MediaFrame, StreamEvent, TIMEBASE, Track};
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Flv(#[from] FlvError),
    #[error("invalid H.264 configuration: {0}")]
    Avc(#[from] AvcError),
    #[error("invalid AAC configuration: {0}")]
    Aac(#[from] AacError),
}

#[derive(Debug, Default)]
pub struct FlvConverter {
    timeline: Timeline,
}

impl FlvConverter {
    pub fn video(&mut self, timestamp_ms: u32, body: &Bytes) -> Result<Option<StreamEvent>, ConvertError> {
        Ok(match flv::parse_video(body)? {
            VideoTag::SequenceHeader(record) => Some(StreamEvent::VideoConfig(AvcConfig::parse(record)?)),
            VideoTag::Frame { keyframe, composition_ms, data } => {
                let dts = self.timeline.decode_time(Track::Video, timestamp_ms);
                let pts = dts + i64::from(composition_ms) * i64::from(TIMEBASE / 1000);
                Some(StreamEvent::Frame(MediaFrame { track: Track::Video, dts, pts, keyframe, data }))
            }
            VideoTag::EndOfSequence | VideoTag::Ignored => None,
        })
    }

    pub fn audio(&mut self, timestamp_ms: u32, body: &Bytes) -> Result<Option<StreamEvent>, ConvertError> {
        Ok(match flv::parse_audio(body)? {
            AudioTag::SequenceHeader(asc) => Some(StreamEvent::AudioConfig(AacConfig::parse(asc)?)),
            AudioTag::Frame(data) if data.is_empty() => None,
            AudioTag::Frame(data) => {
                let dts = self.timeline.decode_time(Track::Audio, timestamp_ms);
                Some(StreamEvent::Frame(MediaFrame { track: Track::Audio, dts, pts: dts, keyframe: true, data }))
            }
        })
    }

    pub fn discontinuities(&self) -> u64 {
        self.timeline.discontinuities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_get_90khz_times_with_composition_offsets() {
        let mut converter = FlvConverter::default();
        let tag = Bytes::from_static(&[0x27, 1, 0, 0, 66, 0, 0, 0, 1, 0x41]);
        let Some(StreamEvent::Frame(frame)) = converter.video(1000, &tag).unwrap() else { panic!() };
        assert_eq!((frame.dts, frame.pts, frame.keyframe), (90_000, 90_000 + 66 * 90, false));
        let audio = Bytes::from_static(&[0xaf, 1, 1, 2, 3]);
        let Some(StreamEvent::Frame(frame)) = converter.audio(1021, &audio).unwrap() else { panic!() };
        assert_eq!((frame.track, frame.dts), (Track::Audio, 1021 * 90));
    }

    #[test]
    fn bad_configurations_and_codecs_are_errors() {
        let mut converter = FlvConverter::default();
        let bad_record = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64]);
        assert!(matches!(converter.video(0, &bad_record), Err(ConvertError::Avc(_))));
        let mp3 = Bytes::from_static(&[0x2f, 0xff]);
        assert!(matches!(converter.audio(0, &mp3), Err(ConvertError::Flv(FlvError::UnsupportedAudio(_)))));
        assert!(converter.video(0, &Bytes::from_static(&[0x17, 2, 0, 0, 0])).unwrap().is_none());
    }
}
