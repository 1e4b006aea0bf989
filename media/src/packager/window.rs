//! The packager's live window as the server reads it: init segments, segments and parts, the
//! positions blocking reloads wait on, and what the multivariant playlist says (bandwidth,
//! frame rate).

use bytes::Bytes;

use super::{OpenSegment, Packager, PackagerConfig, PackagerStats, Segment};
use crate::aac::AacConfig;
use crate::avc::AvcConfig;
use crate::frame::TIMEBASE;

impl Packager {
    pub fn config(&self) -> &PackagerConfig {
        &self.config
    }

    pub fn stats(&self) -> PackagerStats {
        self.stats
    }

    /// The (decode time, Unix ms) pair program date-times count from, once started. Another
    /// packager of the same stream given the same anchor stamps the same times.
    pub fn clock_anchor(&self) -> Option<(i64, i64)> {
        self.clock_anchor
    }

    pub fn video_config(&self) -> Option<&AvcConfig> {
        self.video_config.as_ref()
    }

    pub fn audio_config(&self) -> Option<&AacConfig> {
        self.audio_config.as_ref()
    }

    pub fn init(&self, id: u32) -> Option<Bytes> {
        self.inits.iter().find(|(init, _)| *init == id).map(|(_, bytes)| bytes.clone())
    }

    pub fn current_init_id(&self) -> Option<u32> {
        self.inits.back().map(|(id, _)| *id)
    }

    /// Complete segments still held (the playlist window and a small grace).
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &Segment> + ExactSizeIterator {
        self.segments.iter()
    }

    /// Complete segments listed in the playlist.
    pub fn window(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().skip(self.segments.len().saturating_sub(self.config.window_segments))
    }

    pub fn open_segment_ref(&self) -> Option<&OpenSegment> {
        self.open.as_ref()
    }

    /// A complete segment's bytes, as its parts' buffers in order.
    pub fn segment(&self, msn: u64) -> Option<Vec<Bytes>> {
        self.segments.iter().find(|s| s.msn == msn).map(Segment::chunks)
    }

    pub fn part(&self, msn: u64, index: usize) -> Option<Bytes> {
        if let Some(open) = self.open.as_ref().filter(|open| open.msn == msn) {
            return open.parts.get(index).map(|part| part.data.clone());
        }
        self.segments.iter().find(|s| s.msn == msn)?.parts.get(index).map(|part| part.data.clone())
    }

    /// The newest complete segment and, in the open segment, how many parts exist.
    pub fn last_msn(&self) -> Option<u64> {
        self.segments.back().map(|s| s.msn)
    }

    /// The newest part: (msn, index).
    pub fn last_part(&self) -> Option<(u64, usize)> {
        match &self.open {
            Some(open) if !open.parts.is_empty() => Some((open.msn, open.parts.len() - 1)),
            _ => self.segments.back().filter(|s| !s.parts.is_empty()).map(|s| (s.msn, s.parts.len() - 1)),
        }
    }

    /// Whether the playlist already holds segment `msn` (and, with `part`, that part of it).
    pub fn has(&self, msn: u64, part: Option<usize>) -> bool {
        if self.last_msn().is_some_and(|last| msn <= last) {
            return true;
        }
        match (part, &self.open) {
            (Some(index), Some(open)) => open.msn == msn && open.parts.len() > index,
            _ => false,
        }
    }

    /// The next media sequence number to be produced (the open segment's).
    pub fn next_msn(&self) -> u64 {
        self.open.as_ref().map_or(self.next_msn, |open| open.msn)
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities before the first listed segment.
    pub fn discontinuity_sequence(&self) -> u64 {
        let held_before_window = self.segments.len().saturating_sub(self.config.window_segments);
        self.dropped_discontinuities
            + self.segments.iter().take(held_before_window).filter(|s| s.discontinuity).count() as u64
    }

    /// Longest complete segment so far, seconds.
    pub fn max_segment_secs(&self) -> f64 {
        self.max_segment_ticks as f64 / f64::from(TIMEBASE)
    }

    /// Measured video frame rate.
    pub fn frame_rate(&self) -> Option<f64> {
        (self.video_ticks > 0).then(|| self.video_frames as f64 * f64::from(TIMEBASE) / self.video_ticks as f64)
    }

    /// Peak and average bits per second over the held segments (or the open parts before any
    /// segment is complete).
    pub fn bandwidth(&self) -> Option<(u64, u64)> {
        let rate = |bytes: usize, ticks: i64| (bytes as f64 * 8.0 * f64::from(TIMEBASE) / ticks.max(1) as f64) as u64;
        if self.segments.is_empty() {
            let open = self.open.as_ref()?;
            let bytes: usize = open.parts.iter().map(|p| p.data.len()).sum();
            let ticks: i64 = open.parts.iter().map(|p| p.duration_ticks).sum();
            return (ticks > 0).then(|| (rate(bytes, ticks), rate(bytes, ticks)));
        }
        let peak = self.segments.iter().map(|s| rate(s.len(), s.duration_ticks)).max()?;
        let bytes: usize = self.segments.iter().map(Segment::len).sum();
        let ticks: i64 = self.segments.iter().map(|s| s.duration_ticks).sum();
        Some((peak, rate(bytes, ticks)))
    }
}
