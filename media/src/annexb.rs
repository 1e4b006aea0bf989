//! H.264 byte streams (Annex B: NAL units behind `00 00 01` start codes, as RTP depacketizers and
//! WebRTC packetizers use them) <-> AVC access units (length-prefixed NAL units, as `MediaFrame`
//! carries them), and the decoder configuration record built from in-band parameter sets.

use bytes::{BufMut, Bytes, BytesMut};

use crate::avc::{AvcConfig, AvcError};

/// NAL unit types this module looks at.
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;

pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |header| header & 0x1f)
}

/// The NAL units of an Annex B byte stream, start codes removed (empty units skipped).
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (n, &(_, begin)) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |&(code, _)| code);
        // A four-byte start code's leading zero (and trailing zeros) belong to no unit.
        while end > begin && data[end - 1] == 0 {
            end -= 1;
        }
        if end > begin {
            units.push(&data[begin..end]);
        }
    }
    units
}

/// The NAL units of an AVC access unit with `length_size`-byte prefixes; `None` when a length
/// runs past the end.
pub fn avcc_units(data: &[u8], length_size: u8) -> Option<Vec<&[u8]>> {
    let size = usize::from(length_size);
    let mut units = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let prefix = data.get(at..at + size)?;
        let len = prefix.iter().fold(0usize, |len, byte| len << 8 | usize::from(*byte));
        let unit = data.get(at + size..at + size + len)?;
        if !unit.is_empty() {
            units.push(unit);
        }
        at += size + len;
    }
    Some(units)
}

/// Length-prefixed (4 bytes) units, as `MediaFrame` carries them.
pub fn to_avcc<'a>(units: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for unit in units {
        out.put_u32(unit.len() as u32);
        out.put_slice(unit);
    }
    out.freeze()
}

/// Annex B with four-byte start codes.
pub fn to_annexb<'a>(units: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for unit in units {
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(unit);
    }
    out.freeze()
}

/// The decoder configuration record for one SPS and one PPS, parsed.
pub fn config_from_parameter_sets(sps: &[u8], pps: &[u8]) -> Result<AvcConfig, AvcError> {
    if sps.len() < 4 || pps.is_empty() {
        return Err(AvcError::MissingParameterSets);
    }
    let mut record = BytesMut::with_capacity(11 + sps.len() + pps.len());
    record.put_slice(&[1, sps[1], sps[2], sps[3], 0xff, 0xe1]);
    record.put_u16(sps.len() as u16);
    record.put_slice(sps);
    record.put_u8(1);
    record.put_u16(pps.len() as u16);
    record.put_slice(pps);
    AvcConfig::parse(record.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avc::tests::{PPS, SPS_720P_HIGH};

    #[test]
    fn annexb_splits_on_both_start_codes_and_round_trips_through_avcc() {
        let mut stream = vec![0, 0, 0, 1];
        stream.extend_from_slice(SPS_720P_HIGH);
        stream.extend_from_slice(&[0, 0, 1]);
        stream.extend_from_slice(PPS);
        stream.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x00, 0x10, 0, 0]);
        let units = nal_units(&stream);
        assert_eq!(units.len(), 3);
        assert_eq!(units[0], SPS_720P_HIGH);
        assert_eq!(units[1], PPS);
        assert_eq!(units[2], &[0x65, 0x88, 0x00, 0x10]);
        assert_eq!(nal_type(units[2]), NAL_IDR);
        let avcc = to_avcc(units.iter().copied());
        let back = avcc_units(&avcc, 4).unwrap();
        assert_eq!(back, units);
        assert_eq!(nal_units(&to_annexb(back)), units);
    }

    #[test]
    fn truncated_avcc_and_short_parameter_sets_are_refused() {
        assert!(avcc_units(&[0, 0, 0, 9, 1, 2], 4).is_none());
        assert!(config_from_parameter_sets(&[0x67], PPS).is_err());
        let config = config_from_parameter_sets(SPS_720P_HIGH, PPS).unwrap();
        assert_eq!((config.width, config.height, config.codec_string().as_str()), (1280, 720, "avc1.64001f"));
        assert!(nal_units(&[0, 0, 1]).is_empty());
    }
}
