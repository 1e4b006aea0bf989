//! FLV tag bodies as RTMP carries them in video and audio messages (Adobe FLV spec 10.1, E.4):
//! H.264 in AVC packets and AAC in AAC packets. Anything else is an `Unsupported` error that
//! names the codec, so the connection can be closed with a clear reason.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("empty or truncated FLV {0} tag")]
    Truncated(&'static str),
    #[error("unsupported video codec: {0}")]
    UnsupportedVideo(String),
    #[error("unsupported audio codec: {0}")]
    UnsupportedAudio(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// AVC sequence header: an AVCDecoderConfigurationRecord.
    SequenceHeader(Bytes),
    /// One access unit of length-prefixed NAL units.
    Frame {
        keyframe: bool,
        /// Composition time offset (pts - dts) in milliseconds; negative only from broken muxers.
        composition_ms: i32,
        data: Bytes,
    },
    EndOfSequence,
    /// Video info / command frames and empty frames: nothing to play.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// AAC sequence header: an AudioSpecificConfig.
    SequenceHeader(Bytes),
    Frame(Bytes),
}

const CODEC_AVC: u8 = 7;
const FORMAT_AAC: u8 = 10;

pub fn parse_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Truncated("video"))?;
    if first & 0x80 != 0 {
        // Enhanced RTMP: a FourCC follows (hvc1, av01, vp09).
        let fourcc = body.get(1..5).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
        return Err(FlvError::UnsupportedVideo(format!("enhanced RTMP {fourcc:?}")));
    }
    let frame_type = first >> 4;
    let codec = first & 0x0f;
    if codec != CODEC_AVC {
        let name = match codec {
            2 => "Sorenson H.263",
            3 => "screen video",
            4 => "VP6",
            5 => "VP6 with alpha",
            6 => "screen video v2",
            12 => "HEVC (legacy id 12)",
            _ => "unknown",
        };
        return Err(FlvError::UnsupportedVideo(format!("{name} (codec id {codec})")));
    }
    if frame_type == 5 {
        return Ok(VideoTag::Ignored);
    }
    if body.len() < 5 {
        return Err(FlvError::Truncated("AVC video"));
    }
    let composition = (i32::from(body[2]) << 16 | i32::from(body[3]) << 8 | i32::from(body[4])) << 8 >> 8;
    match body[1] {
        0 => Ok(VideoTag::SequenceHeader(body.slice(5..))),
        1 if body.len() == 5 => Ok(VideoTag::Ignored),
        1 => Ok(VideoTag::Frame { keyframe: frame_type == 1, composition_ms: composition, data: body.slice(5..) }),
        2 => Ok(VideoTag::EndOfSequence),
        other => Err(FlvError::UnsupportedVideo(format!("AVC packet type {other}"))),
    }
}

pub fn parse_audio(body: &Bytes) -> Result<AudioTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Truncated("audio"))?;
    let format = first >> 4;
    if format != FORMAT_AAC {
        let name = match format {
            0 | 3 => "linear PCM",
            1 => "ADPCM",
            2 => "MP3",
            4..=6 => "Nellymoser",
            7 => "G.711 A-law",
            8 => "G.711 mu-law",
            11 => "Speex",
            14 => "MP3 8 kHz",
            9 => "enhanced RTMP audio",
            _ => "unknown",
        };
        return Err(FlvError::UnsupportedAudio(format!("{name} (sound format {format})")));
    }
    match body.get(1) {
        Some(0) => Ok(AudioTag::SequenceHeader(body.slice(2..))),
        Some(1) => Ok(AudioTag::Frame(body.slice(2..))),
        Some(other) => Err(FlvError::UnsupportedAudio(format!("AAC packet type {other}"))),
        None => Err(FlvError::Truncated("AAC audio")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_tags_parse_with_signed_composition_offsets() {
        let key = Bytes::from_static(&[0x17, 1, 0, 0, 0x42, 0, 0, 0, 1, 0x65]);
        assert_eq!(
            parse_video(&key),
            Ok(VideoTag::Frame { keyframe: true, composition_ms: 66, data: Bytes::from_static(&[0, 0, 0, 1, 0x65]) })
        );
        let negative = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x41]);
        assert!(matches!(parse_video(&negative), Ok(VideoTag::Frame { keyframe: false, composition_ms: -2, .. })));
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2])),
            Ok(VideoTag::SequenceHeader(Bytes::from_static(&[1, 2])))
        );
        assert_eq!(parse_video(&Bytes::from_static(&[0x17, 2, 0, 0, 0])), Ok(VideoTag::EndOfSequence));
        assert_eq!(parse_video(&Bytes::from_static(&[0x57, 0])), Ok(VideoTag::Ignored));
    }

    #[test]
    fn other_codecs_and_truncated_tags_are_errors() {
        assert!(
            matches!(parse_video(&Bytes::from_static(&[0x12, 0])), Err(FlvError::UnsupportedVideo(name)) if name.contains("H.263"))
        );
        assert!(
            matches!(parse_video(&Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1'])), Err(FlvError::UnsupportedVideo(name)) if name.contains("hvc1"))
        );
        assert!(matches!(parse_video(&Bytes::new()), Err(FlvError::Truncated(_))));
        assert!(matches!(parse_video(&Bytes::from_static(&[0x17, 1])), Err(FlvError::Truncated(_))));
        assert!(
            matches!(parse_audio(&Bytes::from_static(&[0x2f, 0])), Err(FlvError::UnsupportedAudio(name)) if name.contains("MP3"))
        );
        assert!(matches!(parse_audio(&Bytes::from_static(&[0xaf])), Err(FlvError::Truncated(_))));
    }

    #[test]
    fn aac_tags_parse() {
        assert_eq!(
            parse_audio(&Bytes::from_static(&[0xaf, 0, 0x11, 0x90])),
            Ok(AudioTag::SequenceHeader(Bytes::from_static(&[0x11, 0x90])))
        );
        assert_eq!(
            parse_audio(&Bytes::from_static(&[0xaf, 1, 9, 9])),
            Ok(AudioTag::Frame(Bytes::from_static(&[9, 9])))
        );
    }
}
