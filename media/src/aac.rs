//! AAC decoder configuration: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) that RTMP carries
//! in its AAC sequence header and MP4 in `esds`.

use bytes::Bytes;

use crate::bits::BitReader;

const SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AacError {
    #[error("AudioSpecificConfig is truncated")]
    Truncated,
    #[error("AudioSpecificConfig has an invalid sample rate index {0}")]
    SampleRate(u32),
    #[error("AudioSpecificConfig channel configuration {0} is not supported")]
    Channels(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type: 2 = AAC-LC, 5 = HE-AAC (SBR), 29 = HE-AACv2.
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
    /// The AudioSpecificConfig as received.
    pub asc: Bytes,
}

impl AacConfig {
    pub fn parse(asc: Bytes) -> Result<AacConfig, AacError> {
        let mut r = BitReader::new(&asc);
        let truncated = |_| AacError::Truncated;
        let mut object_type = r.bits(5).map_err(truncated)?;
        if object_type == 31 {
            object_type = 32 + r.bits(6).map_err(truncated)?;
        }
        let index = r.bits(4).map_err(truncated)?;
        let sample_rate = match index {
            15 => r.bits(24).map_err(truncated)?,
            i => *SAMPLE_RATES.get(i as usize).ok_or(AacError::SampleRate(i))?,
        };
        if sample_rate == 0 {
            return Err(AacError::SampleRate(index));
        }
        let channels = r.bits(4).map_err(truncated)?;
        let channels = match channels {
            1..=6 => channels,
            7 => 8,
            other => return Err(AacError::Channels(other)),
        };
        Ok(AacConfig { object_type: object_type as u8, sample_rate, channels: channels as u8, asc })
    }

    /// The RFC 6381 codecs string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// `AAC-LC 48 kHz stereo`, for people.
    pub fn describe(&self) -> String {
        let kind = match self.object_type {
            2 => "AAC-LC".to_owned(),
            5 => "HE-AAC".to_owned(),
            29 => "HE-AACv2".to_owned(),
            other => format!("AAC (object type {other})"),
        };
        let channels = match self.channels {
            1 => "mono".to_owned(),
            2 => "stereo".to_owned(),
            n => format!("{n} channels"),
        };
        let rate = f64::from(self.sample_rate) / 1000.0;
        format!("{kind} {rate} kHz {channels}")
    }

    /// PCM samples per AAC frame (per channel).
    pub fn samples_per_frame(&self) -> u32 {
        1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_stereo_48k_parses_and_reads_as_people_name_it() {
        assert_eq!(AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap().describe(), "AAC-LC 48 kHz stereo");
        assert_eq!(AacConfig::parse(Bytes::from_static(&[0x12, 0x08])).unwrap().describe(), "AAC-LC 44.1 kHz mono");
        // 00010 0011 0010 000: AAC-LC, 48 kHz, 2 channels.
        let config = AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap();
        assert_eq!((config.object_type, config.sample_rate, config.channels), (2, 48000, 2));
        assert_eq!(config.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn bad_configs_are_errors() {
        assert_eq!(AacConfig::parse(Bytes::from_static(&[0x11])), Err(AacError::Truncated));
        assert_eq!(AacConfig::parse(Bytes::from_static(&[0x16, 0x90])), Err(AacError::SampleRate(13)));
        assert_eq!(AacConfig::parse(Bytes::from_static(&[0x11, 0x80])), Err(AacError::Channels(0)));
        assert!(AacConfig::parse(Bytes::new()).is_err());
    }
}
