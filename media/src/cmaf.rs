//! The CMAF (fragmented MP4) muxer: an init segment (`ftyp` + `moov` with one video and/or one
//! audio track) and media fragments (`moof` + `mdat`) holding runs of samples of both tracks.
//! Boxes are built with mp4-atom; only the `mdat` header is written here, so that sample
//! payloads are copied once, straight into the fragment.

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{
    Audio, Avc1, Avcc, Codec, Dinf, Dref, Encode, Esds, Ftyp, Hdlr, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex,
    Mvhd, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, TrunSamples, Url, Visual, Vmhd,
    esds,
};

use crate::aac::AacConfig;
use crate::avc::AvcConfig;
use crate::frame::TIMEBASE;

pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;
/// Video track timescale: the frame timebase itself, so video times need no conversion.
pub const VIDEO_TIMESCALE: u32 = TIMEBASE;

/// Sample flags (ISO/IEC 14496-12 8.8.3.1): a sync sample that depends on no other ...
const FLAGS_SYNC: u32 = 0x0200_0000;
/// ... and a non-sync sample that depends on others.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

#[derive(Debug, thiserror::Error)]
#[error("MP4 encoding failed: {0}")]
pub struct MuxError(#[from] mp4_atom::Error);

/// The `ftyp` + `moov` of a stream with the given tracks (at least one).
pub fn init_segment(video: Option<&AvcConfig>, audio: Option<&AacConfig>) -> Result<Bytes, MuxError> {
    let mut traks = Vec::new();
    let mut trex = Vec::new();
    if let Some(video) = video {
        traks.push(video_trak(video));
        trex.push(default_trex(VIDEO_TRACK_ID));
    }
    if let Some(audio) = audio {
        traks.push(audio_trak(audio));
        trex.push(default_trex(AUDIO_TRACK_ID));
    }
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    };
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            next_track_id: AUDIO_TRACK_ID + 1,
            rate: 1.into(),
            volume: 1.into(),
            ..Default::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak: traks,
        ..Default::default()
    };
    let mut out = BytesMut::new();
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(out.freeze())
}

fn default_trex(track_id: u32) -> Trex {
    Trex { track_id, default_sample_description_index: 1, ..Default::default() }
}

fn media_info(handler: &[u8; 4], name: &str, timescale: u32, minf: Minf) -> Mdia {
    Mdia {
        mdhd: Mdhd { timescale, language: "und".into(), ..Default::default() },
        hdlr: Hdlr { handler: handler.into(), name: name.into() },
        minf,
    }
}

fn sample_table(codec: Codec) -> Stbl {
    Stbl { stsd: Stsd { codecs: vec![codec] }, stco: Some(Stco::default()), ..Default::default() }
}

fn data_information() -> Dinf {
    Dinf { dref: Dref { entries: vec![Url::default().into()] } }
}

fn video_trak(config: &AvcConfig) -> Trak {
    let avc1 = Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width: config.width as u16,
            height: config.height as u16,
            ..Default::default()
        },
        avcc: Avcc {
            configuration_version: 1,
            avc_profile_indication: config.profile,
            profile_compatibility: config.compatibility,
            avc_level_indication: config.level,
            length_size: config.length_size,
            sequence_parameter_sets: config.sps.iter().map(|s| s.to_vec()).collect(),
            picture_parameter_sets: config.pps.iter().map(|p| p.to_vec()).collect(),
            ext: None,
        },
        ..Default::default()
    };
    let minf = Minf {
        vmhd: Some(Vmhd::default()),
        dinf: data_information(),
        stbl: sample_table(avc1.into()),
        ..Default::default()
    };
    Trak {
        tkhd: Tkhd {
            track_id: VIDEO_TRACK_ID,
            enabled: true,
            in_movie: true,
            width: (config.width as u16).into(),
            height: (config.height as u16).into(),
            ..Default::default()
        },
        mdia: media_info(b"vide", "Aether video", VIDEO_TIMESCALE, minf),
        ..Default::default()
    }
}

fn audio_trak(config: &AacConfig) -> Trak {
    let mp4a = Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: u16::from(config.channels),
            sample_size: 16,
            sample_rate: (config.sample_rate.min(u32::from(u16::MAX)) as u16).into(),
        },
        esds: Esds {
            es_desc: esds::EsDescriptor {
                es_id: AUDIO_TRACK_ID as u16,
                dec_config: esds::DecoderConfig {
                    object_type_indication: 0x40, // MPEG-4 audio
                    stream_type: 5,               // audio stream
                    up_stream: 0,
                    dec_specific: Some(esds::DecoderSpecific {
                        profile: config.object_type,
                        raw: config.asc.to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    };
    let minf = Minf {
        smhd: Some(Smhd::default()),
        dinf: data_information(),
        stbl: sample_table(mp4a.into()),
        ..Default::default()
    };
    Trak {
        tkhd: Tkhd {
            track_id: AUDIO_TRACK_ID,
            alternate_group: 1,
            enabled: true,
            in_movie: true,
            volume: 1.into(),
            ..Default::default()
        },
        mdia: media_info(b"soun", "Aether audio", config.sample_rate, minf),
        ..Default::default()
    }
}

/// One sample of a fragment, in its track's timescale.
#[derive(Debug, Clone)]
pub struct Sample {
    pub duration: u32,
    /// Presentation minus decode time.
    pub composition_offset: i32,
    pub sync: bool,
    pub data: Bytes,
}

/// The samples of one track in one fragment.
#[derive(Debug, Clone)]
pub struct TrackRun {
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale.
    pub base_decode_time: u64,
    pub samples: Vec<Sample>,
}

/// A `moof` + `mdat` with the given runs (empty runs are left out).
pub fn fragment(sequence_number: u32, runs: &[TrackRun]) -> Result<Bytes, MuxError> {
    let runs: Vec<&TrackRun> = runs.iter().filter(|run| !run.samples.is_empty()).collect();
    let traf = |run: &TrackRun, data_offset: i32| Traf {
        tfhd: Tfhd { track_id: run.track_id, default_base_is_moof: true, ..Default::default() },
        tfdt: Some(Tfdt { base_media_decode_time: run.base_decode_time }),
        trun: vec![Trun {
            data_offset: Some(data_offset),
            samples: TrunSamples::Explicit(
                run.samples
                    .iter()
                    .map(|sample| TrunEntry {
                        duration: Some(sample.duration),
                        size: Some(sample.data.len() as u32),
                        flags: Some(if sample.sync { FLAGS_SYNC } else { FLAGS_NON_SYNC }),
                        cts: Some(i64::from(sample.composition_offset)),
                    })
                    .collect(),
            ),
        }],
        ..Default::default()
    };
    let moof_with = |offsets: &[i32]| Moof {
        mfhd: Mfhd { sequence_number },
        traf: runs.iter().zip(offsets).map(|(run, offset)| traf(run, *offset)).collect(),
    };
    // The data offsets point past the moof, whose size they do not change: measure, then fill in.
    let mut probe = BytesMut::new();
    moof_with(&vec![0; runs.len()]).encode(&mut probe)?;
    let mut offset = probe.len() as i32 + 8;
    let mut offsets = Vec::with_capacity(runs.len());
    for run in &runs {
        offsets.push(offset);
        offset += run.samples.iter().map(|s| s.data.len() as i32).sum::<i32>();
    }
    let payload: usize = runs.iter().flat_map(|run| &run.samples).map(|s| s.data.len()).sum();
    let mut out = BytesMut::with_capacity(probe.len() + 8 + payload);
    moof_with(&offsets).encode(&mut out)?;
    out.put_u32(8 + payload as u32);
    out.put_slice(b"mdat");
    for sample in runs.iter().flat_map(|run| &run.samples) {
        out.put_slice(&sample.data);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avc::tests::{PPS, SPS_720P_HIGH, record};
    use mp4_atom::{Any, Decode};

    fn configs() -> (AvcConfig, AacConfig) {
        (
            AvcConfig::parse(record(SPS_720P_HIGH, PPS)).unwrap(),
            AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap(),
        )
    }

    #[test]
    fn the_init_segment_decodes_with_both_tracks() {
        let (video, audio) = configs();
        let init = init_segment(Some(&video), Some(&audio)).unwrap();
        let mut cursor = std::io::Cursor::new(&init[..]);
        assert!(matches!(Any::decode(&mut cursor).unwrap(), Any::Ftyp(_)));
        let Any::Moov(moov) = Any::decode(&mut cursor).unwrap() else { panic!("no moov") };
        assert_eq!(moov.trak.len(), 2);
        assert_eq!(moov.trak[0].mdia.mdhd.timescale, 90_000);
        assert_eq!(moov.trak[1].mdia.mdhd.timescale, 48_000);
        let Codec::Avc1(avc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else { panic!("not avc1") };
        assert_eq!((avc1.visual.width, avc1.visual.height), (1280, 720));
        assert_eq!(avc1.avcc.sequence_parameter_sets[0], SPS_720P_HIGH);
        let Codec::Mp4a(mp4a) = &moov.trak[1].mdia.minf.stbl.stsd.codecs[0] else { panic!("not mp4a") };
        assert_eq!(mp4a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap().raw, [0x11, 0x90]);
        assert_eq!(moov.mvex.unwrap().trex.len(), 2);
    }

    #[test]
    fn a_fragment_points_each_run_at_its_bytes_in_the_mdat() {
        let sample = |byte: u8, len: usize, sync: bool| Sample {
            duration: 3000,
            composition_offset: 6000,
            sync,
            data: Bytes::from(vec![byte; len]),
        };
        let runs = [
            TrackRun {
                track_id: 1,
                base_decode_time: 90_000,
                samples: vec![sample(1, 100, true), sample(2, 50, false)],
            },
            TrackRun { track_id: 2, base_decode_time: 48_000, samples: vec![sample(3, 10, true)] },
            TrackRun { track_id: 3, base_decode_time: 0, samples: vec![] },
        ];
        let bytes = fragment(7, &runs).unwrap();
        let mut cursor = std::io::Cursor::new(&bytes[..]);
        let Any::Moof(moof) = Any::decode(&mut cursor).unwrap() else { panic!("no moof") };
        assert_eq!(moof.mfhd.sequence_number, 7);
        assert_eq!(moof.traf.len(), 2, "empty runs are left out");
        let video_offset = moof.traf[0].trun[0].data_offset.unwrap() as usize;
        let audio_offset = moof.traf[1].trun[0].data_offset.unwrap() as usize;
        assert_eq!(&bytes[video_offset..video_offset + 100], &[1u8; 100][..]);
        assert_eq!(&bytes[video_offset + 100..video_offset + 150], &[2u8; 50][..]);
        assert_eq!(&bytes[audio_offset..audio_offset + 10], &[3u8; 10][..]);
        assert_eq!(bytes.len(), audio_offset + 10);
        assert_eq!(moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time, 90_000);
        let entries: Vec<_> = moof.traf[0].trun[0].samples.iter().collect();
        assert_eq!(entries[0].flags, Some(FLAGS_SYNC));
        assert_eq!(entries[1].flags, Some(FLAGS_NON_SYNC));
        assert_eq!(entries[1].cts, Some(6000));
        let Any::Mdat(mdat) = Any::decode(&mut cursor).unwrap() else { panic!("no mdat") };
        assert_eq!(mdat.data.len(), 160);
    }
}
