//! The packager: stream events in (codec configurations and frames), CMAF segments and LL-HLS
//! partial segments out, kept in a sliding live window. One code path for every rendition.
//!
//! Segments start at a sync sample (a video keyframe; any frame of an audio-only stream) once the
//! open segment is at least `segment_target` long. Parts close before they would exceed
//! `part_target`, at frame boundaries. Video is held back one frame so that each sample's duration
//! is known (the next frame's decode time minus its own); audio frames wait in a small bounded
//! queue until the part they fall into closes. A segment's bytes are its parts' bytes in order,
//! kept once, so a player may fetch either at no extra memory. A change of codec configuration starts a new init segment at the
//! next segment boundary, marked as a discontinuity. Pure: the caller passes the wall clock.

mod window;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::aac::AacConfig;
use crate::avc::AvcConfig;
use crate::cmaf::{self, AUDIO_TRACK_ID, MuxError, Sample, TrackRun, VIDEO_TRACK_ID};
use crate::frame::{MediaFrame, StreamEvent, TIMEBASE, Track};

/// Complete segments kept beyond the playlist window, for players that fetched the playlist just
/// before a segment left it.
const GRACE_SEGMENTS: usize = 2;
/// Complete segments (counting back from the newest) whose parts stay listed and fetchable:
/// LL-HLS lists parts for about three target durations.
const SEGMENTS_WITH_PARTS: usize = 3;
/// Audio frames that may wait for a part to close; beyond this the oldest are dropped (a stream
/// whose video stalled must not grow memory).
const AUDIO_QUEUE_MAX: usize = 512;
/// Timing tolerance for cuts, in ticks (1 ms).
const TOLERANCE: i64 = (TIMEBASE / 1000) as i64;
/// Video frames held while the packager waits for the audio configuration: a bound on memory
/// whatever the timestamps say (10 s at 60 fps).
const WAITING_VIDEO_MAX: usize = 600;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackagerConfig {
    pub segment_target_ms: u32,
    /// `None`: no LL-HLS parts (one fragment per segment).
    pub part_target_ms: Option<u32>,
    /// Complete segments listed in the live playlist.
    pub window_segments: usize,
    /// Before the first segment, how long (media time) a stream that has shown one track's
    /// configuration waits for the other's before it starts without it. Publishers send the two
    /// sequence headers in either order, some frames apart; starting at the first one would make
    /// a first init segment without the other track and a discontinuity when it comes.
    pub track_wait_ms: u32,
}

/// The default `track_wait_ms`: a second.
pub const TRACK_WAIT_MS: u32 = 1000;

impl Default for PackagerConfig {
    fn default() -> Self {
        Self { segment_target_ms: 2000, part_target_ms: Some(500), window_segments: 6, track_wait_ms: TRACK_WAIT_MS }
    }
}

#[derive(Debug, Clone)]
pub struct Part {
    pub duration_ticks: i64,
    pub independent: bool,
    pub data: Bytes,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub msn: u64,
    pub start_dts: i64,
    pub duration_ticks: i64,
    /// Wall-clock time of the first sample, Unix ms.
    pub program_date_time_ms: i64,
    pub init_id: u32,
    /// Starts a new init segment or follows a gap: `#EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// The segment's bytes are its parts' bytes in order: kept once, served either way.
    pub parts: Vec<Part>,
    /// Whether the playlist still lists the parts (only for the newest segments).
    pub parts_listed: bool,
}

impl Segment {
    pub fn duration_secs(&self) -> f64 {
        self.duration_ticks as f64 / f64::from(TIMEBASE)
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|part| part.data.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment's bytes, as the parts' buffers in order (no copy).
    pub fn chunks(&self) -> Vec<Bytes> {
        self.parts.iter().map(|part| part.data.clone()).collect()
    }
}

/// The segment being filled.
#[derive(Debug)]
pub struct OpenSegment {
    pub msn: u64,
    pub start_dts: i64,
    pub program_date_time_ms: i64,
    pub init_id: u32,
    pub discontinuity: bool,
    pub parts: Vec<Part>,
}

/// What a `push` produced, for whoever waits on it (blocking playlist reloads, recording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produced {
    Init { id: u32 },
    Part { msn: u64, index: usize },
    Segment { msn: u64 },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackagerStats {
    /// Frames that could not be packaged: before the first keyframe, without a configuration,
    /// or audio that overflowed its queue.
    pub frames_dropped: u64,
    pub segments: u64,
    pub parts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PackagerError {
    #[error(transparent)]
    Mux(#[from] MuxError),
}

#[derive(Debug)]
pub struct Packager {
    config: PackagerConfig,
    video_config: Option<AvcConfig>,
    audio_config: Option<AacConfig>,
    /// Configuration changed since the current init segment was made.
    config_changed: bool,
    inits: VecDeque<(u32, Bytes)>,
    /// Whether the current init segment has each track.
    init_tracks: (bool, bool),
    /// (decode time, wall-clock ms) of the first packaged frame.
    clock_anchor: Option<(i64, i64)>,
    /// Before the start: video frames (from the first keyframe, with their arrival wall clock)
    /// held while the audio configuration may still come.
    waiting_video: VecDeque<(MediaFrame, i64)>,
    /// The wait for the other track is over: the stream starts with what it has.
    tracks_settled: bool,
    /// The wall clock of the latest event.
    last_wall_ms: i64,
    /// The publisher went away and came back (`interrupt`): the next segment follows a
    /// discontinuity.
    interrupted: bool,
    pending_video: Option<MediaFrame>,
    last_video_duration: i64,
    part_video: Vec<Sample>,
    part_video_base: i64,
    part_start: i64,
    part_independent: bool,
    audio_queue: VecDeque<MediaFrame>,
    next_audio_decode: Option<u64>,
    open: Option<OpenSegment>,
    segments: VecDeque<Segment>,
    next_msn: u64,
    fragment_sequence: u32,
    max_segment_ticks: i64,
    /// Discontinuities in segments no longer held.
    dropped_discontinuities: u64,
    video_frames: u64,
    video_ticks: i64,
    stats: PackagerStats,
}

impl Packager {
    pub fn new(config: PackagerConfig) -> Self {
        Packager {
            config,
            video_config: None,
            audio_config: None,
            config_changed: false,
            inits: VecDeque::new(),
            init_tracks: (false, false),
            clock_anchor: None,
            waiting_video: VecDeque::new(),
            tracks_settled: false,
            last_wall_ms: 0,
            interrupted: false,
            pending_video: None,
            last_video_duration: i64::from(TIMEBASE / 30),
            part_video: Vec::new(),
            part_video_base: 0,
            part_start: 0,
            part_independent: true,
            audio_queue: VecDeque::new(),
            next_audio_decode: None,
            open: None,
            segments: VecDeque::new(),
            next_msn: 0,
            fragment_sequence: 1,
            max_segment_ticks: 0,
            dropped_discontinuities: 0,
            video_frames: 0,
            video_ticks: 0,
            stats: PackagerStats::default(),
        }
    }

    /// Takes one stream event; `wall_ms` is the wall clock (Unix ms) at which it arrived.
    pub fn push(&mut self, event: StreamEvent, wall_ms: i64) -> Result<Vec<Produced>, PackagerError> {
        let mut produced = Vec::new();
        self.last_wall_ms = wall_ms;
        match event {
            StreamEvent::VideoConfig(config) => {
                if self.video_config.as_ref().is_some_and(|old| old.record != config.record)
                    || (self.started() && !self.init_tracks.0)
                {
                    self.config_changed = true;
                }
                self.video_config = Some(config);
            }
            StreamEvent::AudioConfig(config) => {
                if self.audio_config.as_ref().is_some_and(|old| old.asc != config.asc)
                    || (self.started() && !self.init_tracks.1)
                {
                    self.config_changed = true;
                }
                self.audio_config = Some(config);
                // The video that waited for this starts the stream now, with both tracks.
                self.release_waiting_video(&mut produced)?;
            }
            StreamEvent::Frame(frame) => match frame.track {
                Track::Video => self.push_video(frame, wall_ms, &mut produced)?,
                Track::Audio => self.push_audio(frame, wall_ms, &mut produced)?,
            },
            // HLS carries AAC: the server hands this packager the Opus transcoded.
            StreamEvent::Opus(_) => {}
        }
        Ok(produced)
    }

    fn started(&self) -> bool {
        self.open.is_some()
    }

    fn push_video(
        &mut self,
        frame: MediaFrame,
        wall_ms: i64,
        produced: &mut Vec<Produced>,
    ) -> Result<(), PackagerError> {
        if self.video_config.is_none() {
            self.stats.frames_dropped += 1;
            return Ok(());
        }
        let Some(pending) = self.pending_video.take() else {
            if !self.started() {
                if !frame.keyframe && self.waiting_video.is_empty() {
                    self.stats.frames_dropped += 1;
                    return Ok(());
                }
                if self.audio_config.is_none() && !self.tracks_settled {
                    return self.wait_for_audio(frame, wall_ms, produced);
                }
                self.start(frame.dts, wall_ms, produced)?;
                self.part_video_base = frame.dts;
            }
            self.pending_video = Some(frame);
            return Ok(());
        };
        let duration = frame.dts - pending.dts;
        let duration = if duration > 0 { duration } else { self.last_video_duration.max(1) };
        self.last_video_duration = duration;
        self.video_frames += 1;
        self.video_ticks += duration;
        let boundary = self.add_video_sample(pending, duration);
        self.cut_before(boundary, frame.keyframe, produced)?;
        self.pending_video = Some(frame);
        Ok(())
    }

    /// Holds `frame` (the first keyframe or one after it) until the audio configuration comes or
    /// the held video spans `track_wait_ms`; then the stream starts with the tracks it has.
    fn wait_for_audio(
        &mut self,
        frame: MediaFrame,
        wall_ms: i64,
        produced: &mut Vec<Produced>,
    ) -> Result<(), PackagerError> {
        let first = self.waiting_video.front().map_or(frame.dts, |(first, _)| first.dts);
        let waited = frame.dts - first >= self.ms_to_ticks(self.config.track_wait_ms);
        self.waiting_video.push_back((frame, wall_ms));
        if waited || self.waiting_video.len() >= WAITING_VIDEO_MAX {
            self.tracks_settled = true;
            self.release_waiting_video(produced)?;
        }
        Ok(())
    }

    /// Packages the video that waited for the audio configuration, in its order.
    fn release_waiting_video(&mut self, produced: &mut Vec<Produced>) -> Result<(), PackagerError> {
        for (frame, wall_ms) in std::mem::take(&mut self.waiting_video) {
            self.push_video(frame, wall_ms, produced)?;
        }
        Ok(())
    }

    /// Adds a held video frame, now that its duration is known, to the open part; returns where
    /// it ends.
    fn add_video_sample(&mut self, frame: MediaFrame, duration: i64) -> i64 {
        if self.part_video.is_empty() {
            self.part_video_base = frame.dts;
        }
        let end = frame.dts + duration;
        self.part_video.push(Sample {
            duration: duration as u32,
            composition_offset: (frame.pts - frame.dts).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            sync: frame.keyframe,
            data: frame.data,
        });
        end
    }

    fn push_audio(
        &mut self,
        frame: MediaFrame,
        wall_ms: i64,
        produced: &mut Vec<Produced>,
    ) -> Result<(), PackagerError> {
        if self.audio_config.is_none() {
            self.stats.frames_dropped += 1;
            return Ok(());
        }
        let audio_only = self.video_config.is_none();
        if !self.started() {
            // Kept until the first keyframe (audio stamped at or after it belongs to it), or, while
            // no video configuration has come, until the audio alone spans the track wait.
            let first = self.audio_queue.front().map_or(frame.dts, |first| first.dts);
            let waited = frame.dts - first >= self.ms_to_ticks(self.config.track_wait_ms);
            self.audio_queue.push_back(frame);
            if self.audio_queue.len() > AUDIO_QUEUE_MAX {
                self.audio_queue.pop_front();
                self.stats.frames_dropped += 1;
            }
            if !audio_only || !(waited || self.tracks_settled) {
                return Ok(());
            }
            return self.start_audio_only(wall_ms, produced);
        }
        if !self.init_tracks.1 {
            // The stream started without audio: it joins at the next init segment.
            self.stats.frames_dropped += 1;
            return Ok(());
        }
        let dts = frame.dts;
        self.audio_queue.push_back(frame);
        if self.audio_queue.len() > AUDIO_QUEUE_MAX {
            self.audio_queue.pop_front();
            self.stats.frames_dropped += 1;
        }
        if audio_only {
            self.cut_before(dts, true, produced)?;
        }
        Ok(())
    }

    /// Starts an audio-only stream at its first queued frame (`wall_ms`: when the last arrived).
    fn start_audio_only(&mut self, wall_ms: i64, produced: &mut Vec<Produced>) -> Result<(), PackagerError> {
        self.tracks_settled = true;
        let queued = std::mem::take(&mut self.audio_queue);
        let (Some(first), Some(last)) = (queued.front(), queued.back()) else { return Ok(()) };
        let start = first.dts;
        let start_wall = wall_ms - (last.dts - start) * 1000 / i64::from(TIMEBASE);
        self.start(start, start_wall, produced)?;
        for frame in queued {
            let dts = frame.dts;
            self.audio_queue.push_back(frame);
            self.cut_before(dts, true, produced)?;
        }
        Ok(())
    }

    fn start(&mut self, dts: i64, wall_ms: i64, produced: &mut Vec<Produced>) -> Result<(), PackagerError> {
        self.clock_anchor.get_or_insert((dts, wall_ms));
        let before = self.audio_queue.len();
        self.audio_queue.retain(|frame| frame.dts >= dts);
        self.stats.frames_dropped += (before - self.audio_queue.len()) as u64;
        // After an interruption the init segment stays unless the configuration changed.
        let discontinuity = std::mem::take(&mut self.interrupted);
        let init_id = match self.inits.back() {
            Some((id, _)) if discontinuity && !self.config_changed => *id,
            _ => self.new_init(produced)?,
        };
        self.open_segment(dts, init_id, discontinuity);
        Ok(())
    }

    fn new_init(&mut self, produced: &mut Vec<Produced>) -> Result<u32, PackagerError> {
        let id = self.inits.back().map_or(0, |(id, _)| id + 1);
        let init = cmaf::init_segment(self.video_config.as_ref(), self.audio_config.as_ref())?;
        self.inits.push_back((id, init));
        if self.inits.len() > 2 {
            self.inits.pop_front();
        }
        self.init_tracks = (self.video_config.is_some(), self.audio_config.is_some());
        self.config_changed = false;
        produced.push(Produced::Init { id });
        Ok(id)
    }

    fn open_segment(&mut self, dts: i64, init_id: u32, discontinuity: bool) {
        let (anchor_dts, anchor_wall) = self.clock_anchor.unwrap_or((dts, 0));
        let program_date_time_ms = anchor_wall + (dts - anchor_dts) * 1000 / i64::from(TIMEBASE);
        self.open = Some(OpenSegment {
            msn: self.next_msn,
            start_dts: dts,
            program_date_time_ms,
            init_id,
            discontinuity,
            parts: Vec::new(),
        });
        self.next_msn += 1;
        self.part_start = dts;
        self.part_independent = true;
    }

    /// Decides, before a frame at `next_dts` joins the output, whether the part and the segment
    /// close there. `next_is_sync`: that frame may start a segment.
    fn cut_before(
        &mut self,
        next_dts: i64,
        next_is_sync: bool,
        produced: &mut Vec<Produced>,
    ) -> Result<(), PackagerError> {
        let Some(open) = &self.open else { return Ok(()) };
        let segment_ticks = next_dts - open.start_dts;
        let segment_due = segment_ticks + TOLERANCE >= self.ms_to_ticks(self.config.segment_target_ms);
        if next_is_sync && (segment_due || self.config_changed) && next_dts > open.start_dts {
            self.close_part(next_dts, produced)?;
            self.close_segment(next_dts, produced);
            let discontinuity = self.config_changed;
            let init_id =
                if self.config_changed { self.new_init(produced)? } else { self.inits.back().map_or(0, |(id, _)| *id) };
            self.open_segment(next_dts, init_id, discontinuity);
            return Ok(());
        }
        if let Some(part_ms) = self.config.part_target_ms {
            // Close now if the next frame would take the part past its target.
            let frame = if self.video_config.is_some() { self.last_video_duration } else { self.audio_frame_ticks() };
            if next_dts - self.part_start + frame > self.ms_to_ticks(part_ms) + TOLERANCE {
                self.close_part(next_dts, produced)?;
                self.part_independent = next_is_sync;
            }
        }
        Ok(())
    }

    fn ms_to_ticks(&self, ms: u32) -> i64 {
        i64::from(ms) * i64::from(TIMEBASE) / 1000
    }

    fn audio_frame_ticks(&self) -> i64 {
        self.audio_config.as_ref().map_or(TOLERANCE, |audio| {
            i64::from(audio.samples_per_frame()) * i64::from(TIMEBASE) / i64::from(audio.sample_rate)
        })
    }

    fn close_part(&mut self, boundary: i64, produced: &mut Vec<Produced>) -> Result<(), PackagerError> {
        let video = std::mem::take(&mut self.part_video);
        let audio = self.take_audio_before(boundary);
        let duration = boundary - self.part_start;
        if (video.is_empty() && audio.is_none()) || duration <= 0 {
            return Ok(());
        }
        let mut runs = Vec::with_capacity(2);
        if !video.is_empty() {
            runs.push(TrackRun {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: self.part_video_base.max(0) as u64,
                samples: video,
            });
        }
        runs.extend(audio);
        let data = cmaf::fragment(self.fragment_sequence, &runs)?;
        self.fragment_sequence = self.fragment_sequence.wrapping_add(1);
        let open = self.open.as_mut().expect("parts close only in an open segment");
        open.parts.push(Part { duration_ticks: duration, independent: self.part_independent, data });
        produced.push(Produced::Part { msn: open.msn, index: open.parts.len() - 1 });
        self.stats.parts += 1;
        self.part_start = boundary;
        Ok(())
    }

    /// The queued audio frames that start before `boundary`, as one run in the audio timescale.
    fn take_audio_before(&mut self, boundary: i64) -> Option<TrackRun> {
        let audio = self.audio_config.as_ref()?;
        let rate = u64::from(audio.sample_rate);
        let per_frame = audio.samples_per_frame();
        let mut samples = Vec::new();
        let mut base = None;
        while self.audio_queue.front().is_some_and(|frame| frame.dts < boundary) {
            let frame = self.audio_queue.pop_front().expect("checked non-empty");
            if base.is_none() {
                let actual = frame.dts.max(0) as u64 * rate / u64::from(TIMEBASE);
                // Publishers stamp audio in whole milliseconds; counting samples keeps the track
                // gapless unless it really jumped by more than a couple of frames.
                base = Some(match self.next_audio_decode {
                    Some(expected) if expected.abs_diff(actual) <= 2 * u64::from(per_frame) => expected,
                    _ => actual,
                });
            }
            samples.push(Sample { duration: per_frame, composition_offset: 0, sync: true, data: frame.data });
        }
        let base = base?;
        self.next_audio_decode = Some(base + samples.len() as u64 * u64::from(per_frame));
        Some(TrackRun { track_id: AUDIO_TRACK_ID, base_decode_time: base, samples })
    }

    fn close_segment(&mut self, boundary: i64, produced: &mut Vec<Produced>) {
        let Some(open) = self.open.take() else { return };
        if open.parts.is_empty() {
            return;
        }
        let duration_ticks = boundary - open.start_dts;
        self.max_segment_ticks = self.max_segment_ticks.max(duration_ticks);
        self.segments.push_back(Segment {
            msn: open.msn,
            start_dts: open.start_dts,
            duration_ticks,
            program_date_time_ms: open.program_date_time_ms,
            init_id: open.init_id,
            discontinuity: open.discontinuity,
            parts: open.parts,
            parts_listed: true,
        });
        self.stats.segments += 1;
        produced.push(Produced::Segment { msn: open.msn });
        while self.segments.len() > self.config.window_segments + GRACE_SEGMENTS {
            if self.segments.pop_front().is_some_and(|gone| gone.discontinuity) {
                self.dropped_discontinuities += 1;
            }
        }
        let keep_parts_from = self.segments.len().saturating_sub(SEGMENTS_WITH_PARTS);
        for segment in self.segments.iter_mut().take(keep_parts_from) {
            segment.parts_listed = false;
        }
    }

    /// Flushes everything held back (the publisher is gone): the last frame, the open part and
    /// segment.
    pub fn finish(&mut self) -> Result<Vec<Produced>, PackagerError> {
        let mut produced = Vec::new();
        if !self.started() {
            // Whatever waited for the other track goes out with the track it has.
            self.tracks_settled = true;
            self.release_waiting_video(&mut produced)?;
            if !self.started() && self.video_config.is_none() {
                self.start_audio_only(self.last_wall_ms, &mut produced)?;
            }
            if !self.started() {
                return Ok(produced);
            }
        }
        if let Some(pending) = self.pending_video.take() {
            let end = self.add_video_sample(pending, self.last_video_duration.max(1));
            self.close_part(end, &mut produced)?;
            self.close_segment(end, &mut produced);
        } else if let Some(last) = self.audio_queue.back().map(|frame| frame.dts + self.audio_frame_ticks()) {
            self.close_part(last, &mut produced)?;
            self.close_segment(last, &mut produced);
        }
        Ok(produced)
    }

    /// The publisher is gone for now and may come back (a reconnect): what is held is flushed
    /// as by `finish`, and the stream goes on, when frames come again, with a new segment after
    /// a discontinuity (timestamps must keep increasing across it: the caller shifts them).
    pub fn interrupt(&mut self) -> Result<Vec<Produced>, PackagerError> {
        let produced = self.finish()?;
        self.pending_video = None;
        self.audio_queue.clear();
        self.next_audio_decode = None;
        self.interrupted = self.open.is_none() && !self.inits.is_empty();
        Ok(produced)
    }
}
