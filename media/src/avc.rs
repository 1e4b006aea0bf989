//! H.264 decoder configuration: the AVCDecoderConfigurationRecord that RTMP carries in its AVC
//! sequence header (and MP4 in `avcC`), and the parts of the SPS the packager needs (resolution,
//! profile and level for the `avc1.PPCCLL` codecs string).

use bytes::Bytes;

use crate::bits::{BitReader, EndOfData};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvcError {
    #[error("AVC decoder configuration record is truncated")]
    Truncated,
    #[error("AVC decoder configuration record version {0} is not 1")]
    Version(u8),
    #[error("AVC decoder configuration has no SPS or no PPS")]
    MissingParameterSets,
    #[error("H.264 SPS is malformed")]
    BadSps,
}

impl From<EndOfData> for AvcError {
    fn from(_: EndOfData) -> Self {
        AvcError::BadSps
    }
}

/// A parsed AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub profile: u8,
    pub compatibility: u8,
    pub level: u8,
    /// Bytes in each NAL unit length prefix (1, 2 or 4).
    pub length_size: u8,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    pub width: u32,
    pub height: u32,
    /// The record as received, for decoders that take it whole.
    pub record: Bytes,
}

impl AvcConfig {
    pub fn parse(record: Bytes) -> Result<AvcConfig, AvcError> {
        let data = &record[..];
        if data.len() < 7 {
            return Err(AvcError::Truncated);
        }
        if data[0] != 1 {
            return Err(AvcError::Version(data[0]));
        }
        let (profile, compatibility, level) = (data[1], data[2], data[3]);
        let length_size = (data[4] & 0x03) + 1;
        let mut at = 5;
        let sets = |count: usize, at: &mut usize| -> Result<Vec<Bytes>, AvcError> {
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let len = usize::from(u16::from_be_bytes([
                    *data.get(*at).ok_or(AvcError::Truncated)?,
                    *data.get(*at + 1).ok_or(AvcError::Truncated)?,
                ]));
                let end = *at + 2 + len;
                if end > data.len() || len == 0 {
                    return Err(AvcError::Truncated);
                }
                out.push(record.slice(*at + 2..end));
                *at = end;
            }
            Ok(out)
        };
        let sps_count = usize::from(data[at] & 0x1f);
        at += 1;
        let sps = sets(sps_count, &mut at)?;
        let pps_count = usize::from(*data.get(at).ok_or(AvcError::Truncated)?);
        at += 1;
        let pps = sets(pps_count, &mut at)?;
        if sps.is_empty() || pps.is_empty() || length_size == 3 {
            return Err(AvcError::MissingParameterSets);
        }
        let (width, height) = sps_resolution(&sps[0])?;
        Ok(AvcConfig { profile, compatibility, level, length_size, sps, pps, width, height, record })
    }

    /// The RFC 6381 codecs string, e.g. `avc1.64001f`.
    /// The ids of its sequence and picture parameter sets (`seq_parameter_set_id`,
    /// `pic_parameter_set_id`), where they parse.
    pub fn parameter_set_ids(&self) -> (Vec<u32>, Vec<u32>) {
        let id = |nal: &Bytes, skip: usize| {
            let mut reader = BitReader::new(nal.get(skip..)?);
            reader.ue().ok()
        };
        // SPS: NAL header, profile, constraints, level, then the id; PPS: NAL header, then the id.
        (self.sps.iter().filter_map(|s| id(s, 4)).collect(), self.pps.iter().filter_map(|p| id(p, 1)).collect())
    }

    pub fn codec_string(&self) -> String {
        format!("avc1.{:02x}{:02x}{:02x}", self.profile, self.compatibility, self.level)
    }

    /// `High 3.1`: the profile's name and the level, as encoders' settings name them.
    pub fn profile_name(&self) -> String {
        let profile = match self.profile {
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 => "High 10",
            122 => "High 4:2:2",
            244 => "High 4:4:4",
            _ => "profile",
        };
        let profile = if profile == "profile" { format!("profile {}", self.profile) } else { profile.to_owned() };
        format!("{profile} {}.{}", self.level / 10, self.level % 10)
    }
}

/// Removes emulation-prevention bytes (`00 00 03` -> `00 00`) from a NAL unit payload.
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// Width and height in pixels after cropping, from an SPS NAL unit (ITU-T H.264 7.3.2.1.1).
pub fn sps_resolution(sps: &[u8]) -> Result<(u32, u32), AvcError> {
    if sps.len() < 4 || sps[0] & 0x1f != 7 {
        return Err(AvcError::BadSps);
    }
    let rbsp = unescape(&sps[1..]);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(AvcError::BadSps);
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_x, mut crop_y) = (0, 0);
    if r.flag()? {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (sub_width, sub_height) = match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (unit_x, unit_y) = if chroma_format_idc == 0 {
            (1, 2 - frame_mbs_only)
        } else {
            (sub_width, sub_height * (2 - frame_mbs_only))
        };
        crop_x = unit_x * (left + right);
        crop_y = unit_y * (top + bottom);
    }
    let width = (width_mbs * 16).checked_sub(crop_x).ok_or(AvcError::BadSps)?;
    let height = ((2 - frame_mbs_only) * height_map_units * 16).checked_sub(crop_y).ok_or(AvcError::BadSps)?;
    if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
        return Err(AvcError::BadSps);
    }
    Ok((width, height))
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), EndOfData> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        last = if next == 0 { last } else { next };
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An SPS from x264: High profile, level 3.1, 1280x720 (1280x736 coded, cropped by 16 rows).
    pub const SPS_720P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
        0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    pub const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    pub fn record(sps: &[u8], pps: &[u8]) -> Bytes {
        let mut out = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        out.extend_from_slice(sps);
        out.push(1);
        out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        out.extend_from_slice(pps);
        Bytes::from(out)
    }

    #[test]
    fn a_high_profile_record_parses_with_its_cropped_resolution() {
        let config = AvcConfig::parse(record(SPS_720P_HIGH, PPS)).unwrap();
        assert_eq!((config.width, config.height), (1280, 720));
        assert_eq!(config.length_size, 4);
        assert_eq!(config.codec_string(), "avc1.64001f");
        assert_eq!(config.sps.len(), 1);
        assert_eq!(&config.pps[0][..], PPS);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let good = record(SPS_720P_HIGH, PPS);
        for cut in 0..good.len() {
            let _ = AvcConfig::parse(good.slice(..cut));
        }
        assert_eq!(AvcConfig::parse(Bytes::from_static(&[2, 0, 0, 0, 0, 0, 0])), Err(AvcError::Version(2)));
        assert_eq!(
            AvcConfig::parse(Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0])),
            Err(AvcError::MissingParameterSets)
        );
        let mut garbage = good.to_vec();
        for byte in garbage.iter_mut().skip(9) {
            *byte = 0xff;
        }
        assert!(AvcConfig::parse(Bytes::from(garbage)).is_err());
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), [0, 0, 1, 0, 0]);
    }
}
