//! Clips cut from recorded CMAF segments without re-encoding: the samples are read out of the
//! stored fragments (`moof` + `mdat`), the video is cut at a keyframe at or before the requested
//! start (so it decodes) and just before the first reference frame at or after the requested end
//! (so every kept frame decodes and presentation has no gap), audio is kept over the same span,
//! and the result is written twice from the same sample payloads (never copied until written):
//! a progressive MP4 with the index up front (`moov` before `mdat`, "faststart") for download,
//! and CMAF fragments (one per source segment) for HLS playback.
//!
//! Times: segments carry their start in milliseconds since the recording began; sample times
//! inside them are media times. The first segment's first video sample ties the two together.

use aether_media::cmaf::{self, Sample, TrackRun};
use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{
    Co64, Ctts, CttsEntry, Decode, Edts, Elst, ElstEntry, Encode, FourCC, Ftyp, Moof, Moov, Stco, Stsc, StscEntry,
    Stss, Stsz, StszSamples, Stts, SttsEntry, TrunEntry,
};

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("malformed MP4: {0}")]
    Mp4(#[from] mp4_atom::Error),
    #[error("malformed recording: {0}")]
    Malformed(&'static str),
    #[error("the recording has no media in the requested range")]
    Empty,
    #[error("MP4 encoding failed: {0}")]
    Mux(#[from] cmaf::MuxError),
    #[error("re-encoding the first GOP failed: {0}")]
    Reencode(String),
}

/// A stored segment of the recording, with its start in milliseconds since the recording began.
pub struct SourceSegment {
    pub start_ms: i64,
    pub data: Bytes,
}

/// One fragment of the clip's HLS rendition.
#[derive(Debug, Clone)]
pub struct ClipFragment {
    pub data: Bytes,
    pub duration_ms: i64,
}

/// A picture of the GOP a precise clip starts in, times in the video track's timescale.
#[derive(Debug, Clone)]
pub struct HeadPicture {
    pub pts: i64,
    pub dts: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// Re-encodes a GOP from the picture shown at `from_pts` on: given the decoder configuration
/// record, the GOP (decode order, a keyframe first) and the parameter set id to use (one the
/// source does not), returns the encoder's record and the pictures `(pts, keyframe, access
/// unit)` in order. For frame-precise clips.
pub type HeadEncoder<'a> = &'a dyn Fn(&Bytes, &[HeadPicture], i64, u32) -> Result<ReencodedHead, String>;

/// What a `HeadEncoder` returns: the encoder's decoder configuration record and the pictures
/// `(pts, keyframe, access unit)`.
pub type ReencodedHead = (Bytes, Vec<(i64, bool, Bytes)>);

#[derive(Debug)]
pub struct Clip {
    /// The progressive MP4, as buffers to write one after another (headers, then sample data).
    pub mp4: Vec<Bytes>,
    /// The init segment of the HLS rendition (the recording's own; for a precise clip with the
    /// re-encoded head's parameter sets added) and its fragments.
    pub init: Bytes,
    pub fragments: Vec<ClipFragment>,
    /// Where the clip really starts (a keyframe), in milliseconds since the recording began.
    pub start_ms: i64,
    pub duration_ms: i64,
    /// Its first picture, for a thumbnail: (AVCDecoderConfigurationRecord, the keyframe's
    /// access unit).
    pub first_picture: Option<(Bytes, Bytes)>,
}

impl Clip {
    pub fn mp4_len(&self) -> usize {
        self.mp4.iter().map(Bytes::len).sum()
    }
}

#[derive(Debug, Clone)]
struct RawSample {
    dts: i64,
    duration: u32,
    cts: i32,
    sync: bool,
    data: Bytes,
    /// Which source segment it came from: chunks and fragments follow segments.
    segment: usize,
    /// 0: as recorded; 1: re-encoded (the precise clip's first GOP), with its own configuration.
    description: u32,
}

impl RawSample {
    fn pts(&self) -> i64 {
        self.dts + i64::from(self.cts)
    }
}

struct TrackSamples {
    track_id: u32,
    timescale: u32,
    is_video: bool,
    samples: Vec<RawSample>,
}

/// Sync sample: `sample_is_non_sync_sample` (bit 16 of the sample flags) clear.
fn is_sync(flags: u32) -> bool {
    flags & 0x0001_0000 == 0
}

fn boxes(data: &[u8]) -> impl Iterator<Item = Result<(FourCC, usize, usize), ClipError>> + '_ {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        if offset + 8 > data.len() {
            return None;
        }
        let size32 = u32::from_be_bytes(data[offset..offset + 4].try_into().unwrap()) as usize;
        let kind = FourCC::new(data[offset + 4..offset + 8].try_into().unwrap());
        let size = match size32 {
            0 => data.len() - offset,
            1 if offset + 16 <= data.len() => {
                u64::from_be_bytes(data[offset + 8..offset + 16].try_into().unwrap()) as usize
            }
            n => n,
        };
        if size < 8 || offset + size > data.len() {
            offset = data.len();
            return Some(Err(ClipError::Malformed("a box runs past the end of its data")));
        }
        let start = offset;
        offset += size;
        Some(Ok((kind, start, size)))
    })
}

fn parse_init(init: &[u8]) -> Result<Moov, ClipError> {
    for found in boxes(init) {
        let (kind, start, size) = found?;
        if kind == FourCC::new(b"moov") {
            return Ok(Moov::decode(&mut &init[start..start + size])?);
        }
    }
    Err(ClipError::Malformed("the init segment has no moov"))
}

/// Appends the samples of every fragment in `segment` to their tracks.
fn read_segment(data: &Bytes, index: usize, tracks: &mut [TrackSamples]) -> Result<(), ClipError> {
    for found in boxes(data) {
        let (kind, moof_start, size) = found?;
        if kind != FourCC::new(b"moof") {
            continue;
        }
        let moof = Moof::decode(&mut &data[moof_start..moof_start + size])?;
        for traf in &moof.traf {
            let track = tracks
                .iter_mut()
                .find(|t| t.track_id == traf.tfhd.track_id)
                .ok_or(ClipError::Malformed("a fragment names an unknown track"))?;
            let mut dts =
                traf.tfdt.as_ref().ok_or(ClipError::Malformed("a fragment has no tfdt"))?.base_media_decode_time as i64;
            let base = traf.tfhd.base_data_offset.map_or(moof_start, |b| b as usize);
            for trun in &traf.trun {
                let mut position = base + trun.data_offset.unwrap_or(0).max(0) as usize;
                let explicit: Vec<TrunEntry> = match &trun.samples {
                    mp4_atom::TrunSamples::Explicit(entries) => entries.clone(),
                    mp4_atom::TrunSamples::Inherited { count, first_flags } => (0..*count)
                        .map(|i| TrunEntry { flags: if i == 0 { *first_flags } else { None }, ..Default::default() })
                        .collect(),
                };
                for entry in explicit {
                    let duration = entry.duration.or(traf.tfhd.default_sample_duration).unwrap_or(0);
                    let length = entry.size.or(traf.tfhd.default_sample_size).unwrap_or(0) as usize;
                    let flags = entry.flags.or(traf.tfhd.default_sample_flags).unwrap_or(0);
                    if position + length > data.len() {
                        return Err(ClipError::Malformed("a sample lies past the end of its segment"));
                    }
                    track.samples.push(RawSample {
                        dts,
                        duration,
                        cts: entry.cts.unwrap_or(0) as i32,
                        sync: is_sync(flags),
                        data: data.slice(position..position + length),
                        segment: index,
                        description: 0,
                    });
                    position += length;
                    dts += i64::from(duration);
                }
            }
        }
    }
    Ok(())
}

/// Cuts `[start_ms, end_ms)` (milliseconds since the recording began) out of `segments` (in
/// order, all under the same `init`). With `precise`, the clip starts on the exact picture (the
/// GOP it falls in re-encoded from there by `precise`) and ends exactly at `end_ms` (in the MP4,
/// by its edit list; the HLS rendition shows at most one picture more).
pub fn cut(
    init: &Bytes,
    segments: &[SourceSegment],
    start_ms: i64,
    end_ms: i64,
    precise: Option<HeadEncoder<'_>>,
) -> Result<Clip, ClipError> {
    let moov = parse_init(init)?;
    let mut tracks: Vec<TrackSamples> = moov
        .trak
        .iter()
        .map(|trak| TrackSamples {
            track_id: trak.tkhd.track_id,
            timescale: trak.mdia.mdhd.timescale.max(1),
            is_video: trak.mdia.hdlr.handler == FourCC::new(b"vide"),
            samples: Vec::new(),
        })
        .collect();
    for (index, segment) in segments.iter().enumerate() {
        read_segment(&segment.data, index, &mut tracks)?;
    }
    // The timeline anchor: the primary track's first sample is at the first segment's start.
    let primary = tracks.iter().position(|t| t.is_video).unwrap_or(0);
    let first = segments.first().ok_or(ClipError::Empty)?;
    let anchor = &tracks.get(primary).ok_or(ClipError::Malformed("no tracks"))?;
    let anchor_dts = anchor.samples.first().ok_or(ClipError::Empty)?.dts;
    let anchor_scale = i128::from(anchor.timescale);
    // Microseconds since the recording began, for a media time of a track with `timescale`.
    let origin_us = i128::from(anchor_dts) * 1_000_000 / anchor_scale - i128::from(first.start_ms) * 1000;
    let to_us = |time: i64, timescale: u32| i128::from(time) * 1_000_000 / i128::from(timescale) - origin_us;
    let start_us = i128::from(start_ms) * 1000;
    let end_us = i128::from(end_ms) * 1000;

    // The primary track decides the span.
    let mut head: Option<(Bytes, u32)> = None;
    let (span_start_us, span_end_us) = {
        let track = &mut tracks[primary];
        let scale = track.timescale;
        let samples = &track.samples;
        let begin = samples
            .iter()
            .rposition(|s| s.sync && to_us(s.pts(), scale) <= start_us)
            .or_else(|| samples.iter().position(|s| s.sync))
            .ok_or(ClipError::Empty)?;
        let mut highest = i64::MIN;
        let mut end = samples.len();
        for (i, sample) in samples.iter().enumerate().skip(begin) {
            let pts = sample.pts();
            if i > begin && pts > highest && to_us(pts, scale) >= end_us {
                end = i;
                break;
            }
            highest = highest.max(pts);
        }
        if precise.is_some() && end < samples.len() {
            // Keep the reference picture shown at or after the end and the pictures that need
            // it (shown before it); the edit list ends the presentation on time.
            let reference = samples[end].pts();
            end = samples
                .iter()
                .enumerate()
                .skip(end + 1)
                .find(|(_, s)| s.pts() > reference)
                .map_or(samples.len(), |(j, _)| j);
        }
        let mut kept = samples[begin..end].to_vec();
        let first_pts = kept.iter().map(RawSample::pts).min().ok_or(ClipError::Empty)?;
        let last_end = match samples.get(end) {
            Some(next) => next.pts(),
            None => kept.iter().map(|s| s.pts() + i64::from(s.duration)).max().unwrap_or(first_pts),
        };
        let mut span = (to_us(first_pts, scale), to_us(last_end, scale));
        if let Some(encoder) = precise {
            // The first picture shown at or after the start.
            let target = kept.iter().map(RawSample::pts).filter(|&pts| to_us(pts, scale) >= start_us).min();
            if let Some(target) = target.filter(|&target| target > first_pts) {
                let (samples, record) = reencode_head(kept, target, &moov, track.track_id, encoder)?;
                kept = samples;
                head = Some((record, track.track_id));
                span.0 = to_us(target, scale);
            }
            span.1 = span.1.min(end_us.max(span.0 + 1));
        }
        track.samples = kept;
        span
    };
    if span_end_us <= span_start_us {
        return Err(ClipError::Empty);
    }
    for (index, track) in tracks.iter_mut().enumerate() {
        if index != primary {
            let scale = track.timescale;
            track.samples.retain(|s| {
                let pts = to_us(s.pts(), scale);
                pts >= span_start_us && pts < span_end_us
            });
        }
    }
    tracks.retain(|t| !t.samples.is_empty());

    let duration_us = span_end_us - span_start_us;
    let head_record = head;
    let first_picture = first_picture(&moov, &tracks, head_record.as_ref());
    let fragments = fragments(&tracks, primary_id(&tracks))?;
    // The recording's init, or with the head's parameter sets added.
    let clip_init = match &head_record {
        Some(record) => head_init(init, &moov, record)?,
        None => init.clone(),
    };
    let mp4 = progressive(&moov, &tracks, span_start_us, duration_us, &to_us, head_record.as_ref())?;
    Ok(Clip {
        mp4,
        init: clip_init,
        fragments,
        start_ms: (span_start_us / 1000) as i64,
        duration_ms: (duration_us / 1000) as i64,
        first_picture,
    })
}

/// The video track's decoder configuration record and first (key) picture.
fn first_picture(moov: &Moov, tracks: &[TrackSamples], head: Option<&(Bytes, u32)>) -> Option<(Bytes, Bytes)> {
    let video = tracks.iter().find(|t| t.is_video)?;
    let first = video.samples.first()?;
    let record = match head {
        Some((record, _)) if first.description == 1 => record.clone(),
        _ => source_record(moov, video.track_id)?,
    };
    Some((record, first.data.clone()))
}

/// The decoder configuration record of track `track_id` in `moov` (its `avcC` box's body).
fn source_record(moov: &Moov, track_id: u32) -> Option<Bytes> {
    let trak = moov.trak.iter().find(|t| t.tkhd.track_id == track_id)?;
    let avcc = trak.mdia.minf.stbl.stsd.codecs.iter().find_map(|codec| match codec {
        mp4_atom::Codec::Avc1(avc1) => Some(&avc1.avcc),
        _ => None,
    })?;
    let mut boxed = BytesMut::new();
    avcc.encode(&mut boxed).ok()?;
    Some(boxed.freeze().slice(8..))
}

fn avcc_of(record: &Bytes) -> Result<mp4_atom::Avcc, ClipError> {
    let config = aether_media::avc::AvcConfig::parse(record.clone())
        .map_err(|_| ClipError::Reencode("the encoder's configuration does not parse".into()))?;
    Ok(mp4_atom::Avcc {
        configuration_version: 1,
        avc_profile_indication: config.profile,
        profile_compatibility: config.compatibility,
        avc_level_indication: config.level,
        length_size: config.length_size,
        sequence_parameter_sets: config.sps.iter().map(|b| b.to_vec()).collect(),
        picture_parameter_sets: config.pps.iter().map(|b| b.to_vec()).collect(),
        ext: None,
    })
}

/// The sample entry of the re-encoded pictures: the source's, with the encoder's `avcC`.
fn head_entry(moov: &Moov, track_id: u32, record: &Bytes) -> Result<mp4_atom::Codec, ClipError> {
    let trak = moov.trak.iter().find(|t| t.tkhd.track_id == track_id).ok_or(ClipError::Malformed("no video track"))?;
    let source = trak
        .mdia
        .minf
        .stbl
        .stsd
        .codecs
        .iter()
        .find_map(|codec| match codec {
            mp4_atom::Codec::Avc1(avc1) => Some(avc1.clone()),
            _ => None,
        })
        .ok_or(ClipError::Malformed("the video track is not H.264"))?;
    Ok(mp4_atom::Codec::Avc1(mp4_atom::Avc1 { avcc: avcc_of(record)?, ..source }))
}

/// The init segment of the re-encoded pictures: the recording's, with the encoder's `avcC`.
fn head_init(init: &Bytes, moov: &Moov, (record, track_id): &(Bytes, u32)) -> Result<Bytes, ClipError> {
    let mut moov = moov.clone();
    let entry = head_entry(&moov, *track_id, record)?;
    for trak in moov.trak.iter_mut().filter(|t| t.tkhd.track_id == *track_id) {
        trak.mdia.minf.stbl.stsd.codecs = vec![entry.clone()];
    }
    let mut out = BytesMut::new();
    for found in boxes(init) {
        let (kind, start, size) = found?;
        if kind == FourCC::new(b"ftyp") {
            out.extend_from_slice(&init[start..start + size]);
        }
    }
    moov.encode(&mut out)?;
    Ok(out.freeze())
}

/// Replaces the GOP the clip starts in with its pictures from `target` on, re-encoded.
fn reencode_head(
    kept: Vec<RawSample>,
    target: i64,
    moov: &Moov,
    track_id: u32,
    encoder: HeadEncoder<'_>,
) -> Result<(Vec<RawSample>, Bytes), ClipError> {
    let record = source_record(moov, track_id).ok_or(ClipError::Malformed("the video track has no avcC"))?;
    let next_key = kept.iter().skip(1).position(|s| s.sync).map_or(kept.len(), |i| i + 1);
    let pictures: Vec<HeadPicture> = kept[..next_key]
        .iter()
        .map(|s| HeadPicture { pts: s.pts(), dts: s.dts, keyframe: s.sync, data: s.data.clone() })
        .collect();
    // The re-encoded pictures use parameter sets of their own id, carried beside the source's in
    // one decoder configuration: one sample entry, one init segment, no switch for players.
    let source = aether_media::avc::AvcConfig::parse(record.clone())
        .map_err(|_| ClipError::Malformed("the video track's avcC does not parse"))?;
    let (sps_ids, pps_ids) = source.parameter_set_ids();
    let id = sps_ids.iter().chain(&pps_ids).max().map_or(1, |max| max + 1);
    if id > 31 {
        return Err(ClipError::Reencode("no free parameter set id".into()));
    }
    let (new_record, encoded) = encoder(&record, &pictures, target, id).map_err(ClipError::Reencode)?;
    if encoded.first().is_none_or(|(pts, key, _)| *pts != target || !key) {
        return Err(ClipError::Reencode("the re-encoded GOP does not start with the asked picture".into()));
    }
    // The re-encoded pictures keep the source's reorder delay, so decode times stay in order
    // where the copied pictures take over.
    let delay = i64::from(kept[0].cts.max(0));
    let following = kept.get(next_key).map(|s| s.dts);
    let (segment, typical) = (kept[0].segment, kept[0].duration.max(1));
    let mut samples = Vec::with_capacity(kept.len());
    for (i, (pts, _, data)) in encoded.iter().enumerate() {
        let dts = pts - delay;
        let next = encoded.get(i + 1).map(|(p, ..)| p - delay).or(following).unwrap_or(dts + i64::from(typical));
        samples.push(RawSample {
            dts,
            duration: (next - dts).max(1) as u32,
            cts: delay as i32,
            sync: i == 0,
            data: data.clone(),
            segment,
            description: 1,
        });
    }
    samples.extend(kept[next_key..].iter().cloned());
    let head = aether_media::avc::AvcConfig::parse(new_record)
        .map_err(|_| ClipError::Reencode("the encoder's configuration does not parse".into()))?;
    if head.parameter_set_ids().0 != [id] {
        return Err(ClipError::Reencode(format!("the encoder did not use parameter set id {id}")));
    }
    let merged = mp4_atom::Avcc {
        sequence_parameter_sets: source.sps.iter().chain(&head.sps).map(|b| b.to_vec()).collect(),
        picture_parameter_sets: source.pps.iter().chain(&head.pps).map(|b| b.to_vec()).collect(),
        ..avcc_of(&record)?
    };
    let mut boxed = BytesMut::new();
    merged.encode(&mut boxed)?;
    Ok((samples, boxed.freeze().slice(8..)))
}

fn primary_id(tracks: &[TrackSamples]) -> u32 {
    tracks.iter().find(|t| t.is_video).or(tracks.first()).map_or(0, |t| t.track_id)
}

/// How samples fall into groups: a group is a source segment, except that the segment a
/// precise clip's re-encoded head lies in is split where the copied pictures take over. Chunks of
/// the MP4 and fragments of the HLS rendition follow the groups.
struct Grouping {
    head_segment: Option<usize>,
    /// Seconds (of the media clock) where the copied pictures begin in the head segment.
    boundary_secs: Option<f64>,
}

impl Grouping {
    fn of(tracks: &[TrackSamples]) -> Grouping {
        let Some(video) = tracks.iter().find(|t| t.is_video) else {
            return Grouping { head_segment: None, boundary_secs: None };
        };
        let head_segment = video.samples.first().filter(|s| s.description == 1).map(|s| s.segment);
        let boundary_secs = head_segment.and_then(|segment| {
            video
                .samples
                .iter()
                .find(|s| s.segment == segment && s.description == 0)
                .map(|s| s.dts as f64 / f64::from(video.timescale))
        });
        Grouping { head_segment, boundary_secs }
    }

    /// (segment, description) of a sample of a track with `timescale`.
    fn key(&self, timescale: u32, sample: &RawSample) -> (usize, u32) {
        if self.head_segment != Some(sample.segment) {
            return (sample.segment, 0);
        }
        match self.boundary_secs {
            Some(boundary) if sample.dts as f64 / f64::from(timescale) >= boundary => (sample.segment, 0),
            _ => (sample.segment, 1),
        }
    }

    /// Every group, in order (a re-encoded head before the copied rest of its segment).
    fn all(&self, tracks: &[TrackSamples]) -> Vec<(usize, u32)> {
        let mut keys: Vec<(usize, u32)> =
            tracks.iter().flat_map(|t| t.samples.iter().map(|s| self.key(t.timescale, s))).collect();
        keys.sort_unstable_by_key(|&(segment, description)| (segment, 1 - description));
        keys.dedup();
        keys
    }
}

/// One CMAF fragment per group, keeping the recording's decode times.
fn fragments(tracks: &[TrackSamples], primary: u32) -> Result<Vec<ClipFragment>, ClipError> {
    let grouping = Grouping::of(tracks);
    let mut out = Vec::new();
    for group in grouping.all(tracks) {
        let in_group = |track: &TrackSamples, s: &RawSample| grouping.key(track.timescale, s) == group;
        let runs: Vec<TrackRun> = tracks
            .iter()
            .filter_map(|track| {
                let samples: Vec<&RawSample> = track.samples.iter().filter(|s| in_group(track, s)).collect();
                let base = samples.first()?.dts;
                Some(TrackRun {
                    track_id: track.track_id,
                    base_decode_time: base.max(0) as u64,
                    samples: samples
                        .iter()
                        .map(|s| Sample {
                            duration: s.duration,
                            composition_offset: s.cts,
                            sync: s.sync,
                            data: s.data.clone(),
                        })
                        .collect(),
                })
            })
            .collect();
        if runs.is_empty() {
            continue;
        }
        let duration_ms = tracks
            .iter()
            .find(|t| t.track_id == primary)
            .map(|t| {
                let ticks: i64 = t.samples.iter().filter(|s| in_group(t, s)).map(|s| i64::from(s.duration)).sum();
                ticks * 1000 / i64::from(t.timescale)
            })
            .unwrap_or(0);
        let data = cmaf::fragment(out.len() as u32 + 1, &runs)?;
        out.push(ClipFragment { data, duration_ms });
    }
    Ok(out)
}

/// Run-length entries: (count, value) for consecutive equal values.
fn runs<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Vec<(u32, T)> {
    let mut out: Vec<(u32, T)> = Vec::new();
    for value in values {
        match out.last_mut() {
            Some((count, last)) if *last == value => *count += 1,
            _ => out.push((1, value)),
        }
    }
    out
}

const MOVIE_TIMESCALE: u32 = 1000;

/// `ftyp` + `moov` + `mdat`, the index first. Chunks follow the source segments, track by track,
/// so that audio and video stay interleaved about every segment.
fn progressive(
    init_moov: &Moov,
    tracks: &[TrackSamples],
    span_start_us: i128,
    duration_us: i128,
    to_us: &dyn Fn(i64, u32) -> i128,
    head: Option<&(Bytes, u32)>,
) -> Result<Vec<Bytes>, ClipError> {
    // Chunk layout: for each group, for each track, the samples of that track in that group.
    let grouping = Grouping::of(tracks);
    let mut chunks: Vec<(usize, usize, usize)> = Vec::new(); // (track, first sample, count)
    let mut cursor = vec![0usize; tracks.len()];
    for group in grouping.all(tracks) {
        for (index, track) in tracks.iter().enumerate() {
            let start = cursor[index];
            let count = track.samples[start..].iter().take_while(|s| grouping.key(track.timescale, s) == group).count();
            if count > 0 {
                chunks.push((index, start, count));
                cursor[index] += count;
            }
        }
    }
    // A re-encoded head is described by a second sample entry.
    let head_entry = match head {
        Some((record, track_id)) => Some((*track_id, head_entry(init_moov, *track_id, record)?)),
        None => None,
    };
    let payload: u64 = tracks.iter().flat_map(|t| &t.samples).map(|s| s.data.len() as u64).sum();
    let large = payload > u64::from(u32::MAX) - (1 << 20);
    let movie_duration = (duration_us * i128::from(MOVIE_TIMESCALE) / 1_000_000) as u64;

    let build_moov = |offsets: &[u64]| -> Moov {
        let mut moov = init_moov.clone();
        moov.mvex = None;
        moov.mvhd.timescale = MOVIE_TIMESCALE;
        moov.mvhd.duration = movie_duration;
        moov.trak.retain(|trak| tracks.iter().any(|t| t.track_id == trak.tkhd.track_id));
        for trak in &mut moov.trak {
            let index = tracks.iter().position(|t| t.track_id == trak.tkhd.track_id).expect("retained above");
            let track = &tracks[index];
            let samples = &track.samples;
            let media_duration: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
            let first_dts = samples[0].dts;
            let first_pts = samples.iter().map(RawSample::pts).min().unwrap_or(first_dts);
            trak.tkhd.duration = movie_duration;
            trak.mdia.mdhd.duration = media_duration;
            // The edit list starts presentation at the first sample's presentation time; a track
            // that begins later than the span (audio after a keyframe) starts with an empty edit.
            let delay_us = (to_us(first_pts, track.timescale) - span_start_us).max(0);
            let delay = (delay_us * i128::from(MOVIE_TIMESCALE) / 1_000_000) as u64;
            let mut entries = Vec::new();
            if delay > 0 {
                entries.push(ElstEntry { segment_duration: delay, media_time: None, media_rate: 1.into() });
            }
            entries.push(ElstEntry {
                segment_duration: movie_duration.saturating_sub(delay),
                media_time: Some((first_pts - first_dts).max(0) as u64),
                media_rate: 1.into(),
            });
            trak.edts = Some(Edts { elst: Some(Elst { entries }) });
            let stbl = &mut trak.mdia.minf.stbl;
            stbl.stts = Stts {
                entries: runs(samples.iter().map(|s| s.duration))
                    .into_iter()
                    .map(|(sample_count, sample_delta)| SttsEntry { sample_count, sample_delta })
                    .collect(),
            };
            stbl.ctts = samples.iter().any(|s| s.cts != 0).then(|| Ctts {
                entries: runs(samples.iter().map(|s| s.cts))
                    .into_iter()
                    .map(|(sample_count, offset)| CttsEntry { sample_count, sample_offset: i64::from(offset) })
                    .collect(),
            });
            stbl.stss = (track.is_video && samples.iter().any(|s| !s.sync)).then(|| Stss {
                entries: samples.iter().enumerate().filter(|(_, s)| s.sync).map(|(i, _)| i as u32 + 1).collect(),
            });
            stbl.stsz = Stsz {
                samples: StszSamples::Different { sizes: samples.iter().map(|s| s.data.len() as u32).collect() },
            };
            let mine: Vec<(usize, &(usize, usize, usize))> =
                chunks.iter().enumerate().filter(|(_, (t, _, _))| *t == index).collect();
            if let Some((_, entry)) = head_entry.as_ref().filter(|(id, _)| *id == track.track_id) {
                // The source's parameter sets and the re-encoded head's, in one entry.
                stbl.stsd.codecs = vec![entry.clone()];
            }
            let mut stsc: Vec<StscEntry> = Vec::new();
            for (number, (_, (_, _, count))) in mine.iter().enumerate() {
                if stsc.last().is_none_or(|last| last.samples_per_chunk != *count as u32) {
                    stsc.push(StscEntry {
                        first_chunk: number as u32 + 1,
                        samples_per_chunk: *count as u32,
                        sample_description_index: 1,
                    });
                }
            }
            stbl.stsc = Stsc { entries: stsc };
            let chunk_offsets: Vec<u64> = mine.iter().map(|(chunk, _)| offsets[*chunk]).collect();
            if large {
                stbl.stco = None;
                stbl.co64 = Some(Co64 { entries: chunk_offsets });
            } else {
                stbl.co64 = None;
                stbl.stco = Some(Stco { entries: chunk_offsets.iter().map(|&o| o as u32).collect() });
            }
        }
        moov
    };

    let ftyp = Ftyp {
        major_brand: b"isom".into(),
        minor_version: 512,
        compatible_brands: vec![b"isom".into(), b"iso2".into(), b"avc1".into(), b"mp41".into()],
    };
    let mut head = BytesMut::new();
    ftyp.encode(&mut head)?;
    // The chunk offsets do not change the moov's size: measure it, then fill them in.
    let mut probe = BytesMut::new();
    build_moov(&vec![0; chunks.len()]).encode(&mut probe)?;
    let mdat_header = if payload + 8 > u64::from(u32::MAX) { 16 } else { 8 };
    let mut offset = (head.len() + probe.len() + mdat_header) as u64;
    let mut offsets = Vec::with_capacity(chunks.len());
    for (track, first, count) in &chunks {
        offsets.push(offset);
        offset += tracks[*track].samples[*first..first + count].iter().map(|s| s.data.len() as u64).sum::<u64>();
    }
    build_moov(&offsets).encode(&mut head)?;
    if mdat_header == 16 {
        head.put_u32(1);
        head.put_slice(b"mdat");
        head.put_u64(payload + 16);
    } else {
        head.put_u32(payload as u32 + 8);
        head.put_slice(b"mdat");
    }
    let mut out = Vec::with_capacity(1 + tracks.iter().map(|t| t.samples.len()).sum::<usize>());
    out.push(head.freeze());
    for (track, first, count) in &chunks {
        out.extend(tracks[*track].samples[*first..first + count].iter().map(|s| s.data.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use aether_media::aac::AacConfig;
    use aether_media::avc::AvcConfig;
    use aether_media::cmaf::{AUDIO_TRACK_ID, VIDEO_TRACK_ID, fragment, init_segment};

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
        0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn record() -> Bytes {
        let mut out = vec![1, SPS[1], SPS[2], SPS[3], 0xff, 0xe1];
        out.extend((SPS.len() as u16).to_be_bytes());
        out.extend(SPS);
        out.push(1);
        out.extend((PPS.len() as u16).to_be_bytes());
        out.extend(PPS);
        Bytes::from(out)
    }

    /// A synthetic recording: 30 fps video with a keyframe every second and I P B B P B B ...
    /// composition order, 48 kHz AAC; `seconds` one-second segments of two fragments each.
    fn recording(seconds: i64) -> (Bytes, Vec<SourceSegment>) {
        let video = AvcConfig::parse(record()).unwrap();
        let audio = AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap();
        let init = init_segment(Some(&video), Some(&audio)).unwrap();
        let frame = 3000u32; // 90 kHz / 30 fps
        let mut segments = Vec::new();
        let mut video_dts = 900_000u64; // recordings rarely start at zero
        let mut audio_dts = video_dts * 48_000 / 90_000;
        let mut frame_number = 0u64;
        for second in 0..seconds {
            let mut data = BytesMut::new();
            for half in 0..2 {
                let mut samples = Vec::new();
                let base = video_dts;
                for i in 0..15 {
                    let position = half * 15 + i;
                    // Decode order I P B B P B B ... P P: every frame shown one frame after its decode
                    // time, except that each P of a triple is shown after its two B frames.
                    let cts = match position {
                        0 | 28 | 29 => 3000,
                        n if n % 3 == 1 => 9000,
                        _ => 0,
                    };
                    samples.push(Sample {
                        duration: frame,
                        composition_offset: cts,
                        sync: position == 0,
                        data: Bytes::from(format!("v{frame_number}").into_bytes()),
                    });
                    frame_number += 1;
                    video_dts += u64::from(frame);
                }
                let audio_base = audio_dts;
                // 24 frames of 1000 samples: exactly half a second at 48 kHz, like the video.
                let audio_samples: Vec<Sample> = (0..24)
                    .map(|_| {
                        audio_dts += 1000;
                        Sample { duration: 1000, composition_offset: 0, sync: true, data: Bytes::from_static(b"aac") }
                    })
                    .collect();
                let runs = [
                    TrackRun { track_id: VIDEO_TRACK_ID, base_decode_time: base, samples },
                    TrackRun { track_id: AUDIO_TRACK_ID, base_decode_time: audio_base, samples: audio_samples },
                ];
                data.extend_from_slice(&fragment((second * 2 + half) as u32, &runs).unwrap());
            }
            segments.push(SourceSegment { start_ms: second * 1000, data: data.freeze() });
        }
        (init, segments)
    }

    fn concat(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn a_copy_clip_starts_at_the_keyframe_before_the_start_and_ends_at_the_asked_end() {
        let (init, segments) = recording(10);
        let clip = cut(&init, &segments[2..8], 2500, 6500, None).unwrap();
        assert_eq!(clip.start_ms, 2033, "the keyframe at 2 s, shown one frame after its decode time");
        let (record, picture) = clip.first_picture.as_ref().expect("the first picture");
        assert_eq!(&picture[..], b"v60");
        assert_eq!(aether_media::avc::AvcConfig::parse(record.clone()).unwrap().height, 720);
        // Cut before the first reference frame shown at or after 6.5 s.
        assert!((4400..=4600).contains(&clip.duration_ms), "{} ms", clip.duration_ms);
        let durations: Vec<i64> = clip.fragments.iter().map(|f| f.duration_ms).collect();
        assert_eq!(clip.fragments.len(), 5, "segments 2..=6 contribute: {durations:?} {}", clip.duration_ms);

        let mp4 = concat(&clip.mp4);
        assert_eq!(mp4.len(), clip.mp4_len());
        let mut reader = Cursor::new(&mp4[..]);
        let Ok(mp4_atom::Any::Ftyp(_)) = mp4_atom::Any::decode(&mut reader) else { panic!("ftyp first") };
        let Ok(mp4_atom::Any::Moov(moov)) = mp4_atom::Any::decode(&mut reader) else { panic!("moov before mdat") };
        assert!(moov.mvex.is_none(), "not fragmented");
        let video = moov.trak.iter().find(|t| t.tkhd.track_id == VIDEO_TRACK_ID).unwrap();
        let stbl = &video.mdia.minf.stbl;
        let StszSamples::Different { sizes } = &stbl.stsz.samples else { panic!("sizes") };
        let count = sizes.len();
        assert_eq!(stbl.stss.as_ref().unwrap().entries[0], 1, "the first sample is a keyframe");
        let stco = stbl.stco.as_ref().unwrap();
        // The first video chunk holds the first sample, which is frame 60 (the keyframe at 2 s).
        let first = stco.entries[0] as usize;
        assert_eq!(&mp4[first..first + 3], b"v60");
        assert_eq!(video.mdia.mdhd.duration, count as u64 * 3000);
        let edit = &video.edts.as_ref().unwrap().elst.as_ref().unwrap().entries;
        assert_eq!(edit.last().unwrap().media_time, Some(3000), "presentation starts at the keyframe");
        // Every byte of the mdat is a sample.
        let payload: usize = moov
            .trak
            .iter()
            .map(|t| match &t.mdia.minf.stbl.stsz.samples {
                StszSamples::Different { sizes } => sizes.iter().map(|&s| s as usize).sum(),
                StszSamples::Identical { count, size } => (*count * *size) as usize,
            })
            .sum();
        assert_eq!(mp4.len(), reader.position() as usize + 8 + payload);
    }

    #[test]
    fn a_clip_does_not_depend_on_how_long_the_recording_is() {
        let (init, segments) = recording(30);
        let short = cut(&init, &segments[10..16], 10_000, 15_000, None).unwrap();
        let (init2, segments2) = recording(12);
        let long = cut(&init2, &segments2[10..12], 10_000, 11_000, None).unwrap();
        assert_eq!(short.start_ms, 10_033);
        assert_eq!(long.start_ms, 10_033);
        assert!(short.duration_ms > long.duration_ms);
    }

    #[test]
    fn the_clip_fragments_parse_back_to_the_same_samples() {
        let (init, segments) = recording(4);
        let clip = cut(&init, &segments, 0, 4000, None).unwrap();
        assert!((3900..=4000).contains(&clip.duration_ms), "{}", clip.duration_ms);
        let mut tracks = vec![
            TrackSamples { track_id: VIDEO_TRACK_ID, timescale: 90_000, is_video: true, samples: vec![] },
            TrackSamples { track_id: AUDIO_TRACK_ID, timescale: 48_000, is_video: false, samples: vec![] },
        ];
        for (index, fragment) in clip.fragments.iter().enumerate() {
            read_segment(&fragment.data, index, &mut tracks).unwrap();
        }
        assert_eq!(tracks[0].samples.len(), 119, "all but the frame shown at 4.0 s");
        assert_eq!(&tracks[0].samples[0].data[..], b"v0");
        assert!(tracks[1].samples.len() >= 90);
    }

    /// Stands in for GStreamer: "re-encodes" by relabelling the pictures shown from `from` on.
    fn fake_encoder(_record: &Bytes, gop: &[HeadPicture], from: i64, id: u32) -> Result<ReencodedHead, String> {
        let mut shown: Vec<&HeadPicture> = gop.iter().filter(|p| p.pts >= from).collect();
        shown.sort_by_key(|p| p.pts);
        let pictures = shown
            .iter()
            .enumerate()
            .map(|(i, p)| (p.pts, i == 0, Bytes::from(format!("r{}", p.pts).into_bytes())))
            .collect();
        // A baseline 1280x720 SPS and a PPS with id `id`, as an encoder would make them.
        let mut sps = Bits::default();
        sps.byte(0x67).byte(66).byte(0xc0).byte(31);
        sps.ue(id).ue(0).ue(2).ue(1).bit(0).ue(79).ue(44).bit(1).bit(1).bit(0).bit(0);
        let mut pps = Bits::default();
        pps.byte(0x68).ue(id).ue(id).bit(0).bit(0).ue(0).ue(0).ue(0).bit(0).bit(0).bit(0);
        pps.ue(0).ue(0).ue(0).bit(1).bit(0).bit(0);
        let (sps, pps) = (sps.finish(), pps.finish());
        let mut record = vec![1, 66, 0xc0, 31, 0xff, 0xe1, 0, sps.len() as u8];
        record.extend(&sps);
        record.extend([1, 0, pps.len() as u8]);
        record.extend(&pps);
        Ok((Bytes::from(record), pictures))
    }

    /// A bit writer for hand-made parameter sets.
    #[derive(Default)]
    struct Bits {
        bits: Vec<u8>,
    }

    impl Bits {
        fn bit(&mut self, bit: u8) -> &mut Self {
            self.bits.push(bit);
            self
        }

        fn byte(&mut self, byte: u8) -> &mut Self {
            for i in (0..8).rev() {
                self.bit((byte >> i) & 1);
            }
            self
        }

        /// Exp-Golomb.
        fn ue(&mut self, value: u32) -> &mut Self {
            let coded = value + 1;
            let width = 32 - coded.leading_zeros();
            for _ in 1..width {
                self.bit(0);
            }
            for i in (0..width).rev() {
                self.bit(((coded >> i) & 1) as u8);
            }
            self
        }

        /// With the stop bit, padded to whole bytes.
        fn finish(&mut self) -> Vec<u8> {
            self.bit(1);
            while !self.bits.len().is_multiple_of(8) {
                self.bit(0);
            }
            self.bits.chunks(8).map(|byte| byte.iter().fold(0, |acc, b| acc << 1 | b)).collect()
        }
    }

    #[test]
    fn a_precise_clip_starts_on_the_asked_picture_and_ends_on_time() {
        let (init, segments) = recording(10);
        let clip = cut(&init, &segments[2..8], 2500, 6500, Some(&fake_encoder)).unwrap();
        assert_eq!(clip.start_ms, 2500, "the picture shown at 2.5 s");
        assert_eq!(clip.duration_ms, 4000, "exactly to 6.5 s");
        let mp4 = concat(&clip.mp4);
        let mut reader = Cursor::new(&mp4[..]);
        let _ = mp4_atom::Any::decode(&mut reader).unwrap();
        let Ok(mp4_atom::Any::Moov(moov)) = mp4_atom::Any::decode(&mut reader) else { panic!("moov") };
        assert_eq!(moov.mvhd.duration, 4000);
        let video = moov.trak.iter().find(|t| t.tkhd.track_id == VIDEO_TRACK_ID).unwrap();
        let stbl = &video.mdia.minf.stbl;
        assert_eq!(stbl.stsd.codecs.len(), 1, "one sample entry");
        let mp4_atom::Codec::Avc1(avc1) = &stbl.stsd.codecs[0] else { panic!("avc1") };
        assert_eq!(avc1.avcc.sequence_parameter_sets.len(), 2, "the source's SPS and the head's");
        let first = stbl.stco.as_ref().unwrap().entries[0] as usize;
        assert_eq!(&mp4[first..first + 8], b"r1125000", "the first sample is the re-encoded picture shown at 2.5 s");
        // Decode times never go back where the copied pictures take over.
        let mut dts = 0u64;
        let mut last = None;
        for entry in &stbl.stts.entries {
            for _ in 0..entry.sample_count {
                if let Some(last) = last {
                    assert!(dts > last);
                }
                last = Some(dts);
                dts += u64::from(entry.sample_delta);
            }
        }
    }

    #[test]
    fn garbage_and_empty_ranges_are_errors_not_panics() {
        let (init, segments) = recording(3);
        assert!(cut(&init, &[], 0, 1000, None).is_err());
        let junk = SourceSegment { start_ms: 0, data: Bytes::from_static(b"\x00\x00\x00\x10moofjunkjunk") };
        assert!(cut(&init, &[junk], 0, 1000, None).is_err());
        let truncated = SourceSegment { start_ms: 0, data: segments[0].data.slice(..segments[0].data.len() / 2 + 5) };
        assert!(cut(&init, &[truncated], 0, 1000, None).is_err());
        assert!(cut(&Bytes::from_static(b"nonsense"), &segments, 0, 1000, None).is_err());
        // A range past the recorded media must not panic either (the API refuses it earlier).
        let _ = cut(&init, &segments, 5000, 6000, None);
    }
}
