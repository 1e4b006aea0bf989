//! The one internal stream type between ingest, transcode and the packager.

use bytes::Bytes;

use crate::aac::AacConfig;
use crate::avc::AvcConfig;

/// Every timestamp on a `MediaFrame` counts ticks of this clock (Hz): the MPEG 90 kHz clock,
/// which represents every common video frame rate and converts exactly from RTMP milliseconds.
pub const TIMEBASE: u32 = 90_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    Video,
    Audio,
}

/// One access unit: a video picture (AVCC: length-prefixed NAL units) or one raw AAC frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    pub track: Track,
    /// Decode time, `TIMEBASE` ticks, monotonic per track.
    pub dts: i64,
    /// Presentation time; differs from `dts` with B-frames.
    pub pts: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// What a publisher's stream carries, in order: configurations before the frames that need them.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    VideoConfig(AvcConfig),
    AudioConfig(AacConfig),
    Frame(MediaFrame),
    /// One Opus packet (48 kHz, stereo as WebRTC negotiates it; track `Audio`, times in
    /// `TIMEBASE` ticks), from a WebRTC publisher. The server transcodes these to AAC for HLS
    /// and the recording; WebRTC viewers get them as they came.
    Opus(MediaFrame),
}
