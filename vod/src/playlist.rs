//! VOD playlists, rendered as pure functions of a recording's segment index: the media playlist
//! of one rendition (`EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST` once the recording is
//! finished; `EVENT` while it is still being written) and the names of the files it lists. The
//! multivariant playlist is the live one's (`aether_media::playlist::multivariant_playlist`).

use std::fmt::Write;

use aether_media::playlist::iso8601;

/// One recorded segment, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedSegment {
    pub msn: u64,
    pub init_id: u32,
    pub duration_ms: i64,
    pub program_date_time_ms: i64,
    /// A timestamp jump or a configuration change happened before this segment.
    pub discontinuity: bool,
}

/// A file of a recorded rendition, as a playlist names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VodFile {
    Init(u32),
    Segment(u64),
}

impl VodFile {
    pub fn file_name(&self) -> String {
        match self {
            VodFile::Init(id) => format!("init-{id}.mp4"),
            VodFile::Segment(msn) => format!("seg-{msn}.m4s"),
        }
    }

    pub fn parse(name: &str) -> Option<VodFile> {
        if let Some(id) = name.strip_prefix("init-").and_then(|rest| rest.strip_suffix(".mp4")) {
            return id.parse().ok().map(VodFile::Init);
        }
        let msn = name.strip_prefix("seg-")?.strip_suffix(".m4s")?;
        msn.parse().ok().map(VodFile::Segment)
    }

    /// The object key of this file in the recording of `session_id`.
    pub fn object_key(&self, session_id: i64, rendition: &str) -> String {
        format!("recordings/{session_id}/{rendition}/{}", self.file_name())
    }
}

/// The media playlist of one recorded rendition; `segments` in recording order. `complete`:
/// the recording has ended (a VOD playlist with an end), otherwise an `EVENT` playlist that grows.
pub fn media_playlist(segments: &[IndexedSegment], complete: bool) -> String {
    let mut out = String::with_capacity(128 + segments.len() * 96);
    let longest = segments.iter().map(|s| s.duration_ms).max().unwrap_or(1000);
    // EXTINF rounded to the nearest second may not exceed the target duration.
    let target = ((longest + 500) / 1000).max(1);
    let first = segments.first().map_or(0, |s| s.msn);
    let kind = if complete { "VOD" } else { "EVENT" };
    let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-PLAYLIST-TYPE:{kind}");
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut current_init = None;
    for segment in segments {
        let init_changed = current_init != Some(segment.init_id);
        if current_init.is_some() && (segment.discontinuity || init_changed) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if init_changed {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", VodFile::Init(segment.init_id).file_name());
            current_init = Some(segment.init_id);
        }
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(segment.program_date_time_ms));
        let _ = writeln!(
            out,
            "#EXTINF:{:.3},\n{}",
            segment.duration_ms as f64 / 1000.0,
            VodFile::Segment(segment.msn).file_name()
        );
    }
    if complete {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(msn: u64, init_id: u32, duration_ms: i64, discontinuity: bool) -> IndexedSegment {
        IndexedSegment { msn, init_id, duration_ms, program_date_time_ms: 1_700_000_000_000, discontinuity }
    }

    #[test]
    fn a_finished_recording_is_a_vod_playlist_with_an_end() {
        let playlist = media_playlist(&[segment(0, 0, 2000, false), segment(1, 0, 2000, false)], true);
        let parsed = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).expect("parses");
        assert_eq!(parsed.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
        assert!(parsed.end_list);
        assert_eq!(parsed.target_duration, 2);
        assert_eq!(parsed.segments.len(), 2);
        assert_eq!(parsed.segments[0].uri, "seg-0.m4s");
        assert_eq!(parsed.segments[0].map.as_ref().unwrap().uri, "init-0.mp4");
        assert!((parsed.segments[1].duration - 2.0).abs() < 1e-6);
    }

    #[test]
    fn a_recording_in_progress_is_an_event_playlist_without_an_end() {
        let playlist = media_playlist(&[segment(5, 0, 2400, false)], false);
        let parsed = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).expect("parses");
        assert_eq!(parsed.playlist_type, Some(m3u8_rs::MediaPlaylistType::Event));
        assert!(!parsed.end_list);
        assert_eq!(parsed.media_sequence, 5);
    }

    #[test]
    fn a_new_init_segment_or_a_jump_is_a_discontinuity() {
        let segments = [
            segment(0, 0, 2000, false),
            segment(1, 1, 2000, true),
            segment(2, 1, 2000, true),
            segment(3, 1, 1600, false),
        ];
        let playlist = media_playlist(&segments, true);
        let parsed = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).expect("parses");
        let flags: Vec<bool> = parsed.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(flags, [false, true, true, false]);
        assert_eq!(parsed.segments[1].map.as_ref().unwrap().uri, "init-1.mp4");
        assert!(parsed.segments[2].map.is_none(), "the map is repeated only when it changes");
    }

    #[test]
    fn file_names_round_trip_and_nothing_else_parses() {
        for file in [VodFile::Init(3), VodFile::Segment(42)] {
            assert_eq!(VodFile::parse(&file.file_name()), Some(file));
        }
        for bad in ["seg-.m4s", "seg-1.mp4", "../seg-1.m4s", "init-x.mp4", "part-1-0.m4s", "seg-1.m4s/"] {
            assert_eq!(VodFile::parse(bad), None, "{bad}");
        }
        assert_eq!(VodFile::Segment(7).object_key(12, "source"), "recordings/12/source/seg-7.m4s");
    }
}
