//! Turns a publisher's 32-bit millisecond timestamps (RTMP, FLV) into the monotonic decode times
//! the packager needs: unwraps the 2^32 ms wrap (every ~49.7 days), and re-anchors across jumps
//! (an encoder restart, a clock step) so that time keeps advancing by about one frame instead of
//! leaping or running backwards. One `Timeline` serves all tracks of a stream, so a jump seen
//! on one track shifts the others the same way and audio stays in sync with video.

use crate::frame::{TIMEBASE, Track};

/// A step larger than this (either way) between two frames of one track is a discontinuity.
pub const MAX_STEP_MS: i64 = 5_000;
/// How far a track advances over a discontinuity.
const STEP_OVER_MS: i64 = 20;

#[derive(Debug, Default)]
pub struct Timeline {
    last_raw: Option<u32>,
    unwrapped: i64,
    /// Added to unwrapped publisher time to get output time.
    offset: i64,
    last_video: Option<i64>,
    last_audio: Option<i64>,
    discontinuities: u64,
}

impl Timeline {
    /// The decode time, in `TIMEBASE` ticks, of a frame stamped `raw_ms` by the publisher.
    pub fn decode_time(&mut self, track: Track, raw_ms: u32) -> i64 {
        self.unwrapped = match self.last_raw {
            // Interpreting the difference as signed makes the 2^32 wrap a small forward step.
            Some(previous) => self.unwrapped + i64::from(raw_ms.wrapping_sub(previous) as i32),
            None => i64::from(raw_ms),
        };
        self.last_raw = Some(raw_ms);
        let mut out = self.unwrapped + self.offset;
        let last = match track {
            Track::Video => &mut self.last_video,
            Track::Audio => &mut self.last_audio,
        };
        if let Some(previous) = *last {
            if (out - previous).abs() > MAX_STEP_MS {
                let anchored = previous + STEP_OVER_MS;
                self.offset += anchored - out;
                self.discontinuities += 1;
                out = anchored;
            } else if out < previous {
                out = previous;
            }
        }
        *last = Some(out);
        out * i64::from(TIMEBASE / 1000)
    }

    /// How many jumps were stepped over.
    pub fn discontinuities(&self) -> u64 {
        self.discontinuities
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 90;

    #[test]
    fn milliseconds_become_90khz_ticks() {
        let mut timeline = Timeline::default();
        assert_eq!(timeline.decode_time(Track::Video, 1000), 1000 * MS);
        assert_eq!(timeline.decode_time(Track::Audio, 1021), 1021 * MS);
        assert_eq!(timeline.decode_time(Track::Video, 1033), 1033 * MS);
    }

    #[test]
    fn the_32_bit_wrap_keeps_time_moving_forward() {
        let mut timeline = Timeline::default();
        let before = timeline.decode_time(Track::Video, u32::MAX - 10);
        let after = timeline.decode_time(Track::Video, 23);
        assert_eq!(after - before, 34 * MS);
        assert_eq!(timeline.discontinuities(), 0);
    }

    #[test]
    fn jumps_are_stepped_over_for_every_track() {
        let mut timeline = Timeline::default();
        timeline.decode_time(Track::Video, 10_000);
        timeline.decode_time(Track::Audio, 10_010);
        // The encoder restarts its clock at zero.
        let video = timeline.decode_time(Track::Video, 0);
        assert_eq!(video, (10_000 + STEP_OVER_MS) * MS);
        // Audio follows the same shift instead of jumping back too.
        let audio = timeline.decode_time(Track::Audio, 5);
        assert_eq!(audio, (10_000 + STEP_OVER_MS + 5) * MS);
        // A leap forward is stepped over as well.
        let leap = timeline.decode_time(Track::Video, 3_600_000);
        assert_eq!(leap, video + STEP_OVER_MS * MS);
        assert_eq!(timeline.discontinuities(), 2);
    }

    #[test]
    fn small_backward_steps_are_clamped_to_stay_monotonic() {
        let mut timeline = Timeline::default();
        timeline.decode_time(Track::Video, 1000);
        assert_eq!(timeline.decode_time(Track::Video, 990), 1000 * MS);
    }
}
