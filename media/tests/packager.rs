//! The packager on synthetic streams: 30 fps H.264 with 2 s GOPs and B-frames, AAC at 48 kHz.

use aether_media::aac::AacConfig;
use aether_media::avc::AvcConfig;
use aether_media::packager::{Packager, PackagerConfig, Produced};
use aether_media::playlist::{self, RenditionReport, Resource, Variant};
use aether_media::{MediaFrame, StreamEvent, Track};
use bytes::Bytes;
use mp4_atom::{Any, Decode};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00,
    0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
const WALL0: i64 = 1_700_000_000_000;
/// 90 kHz ticks per 30 fps frame.
const FRAME: i64 = 3000;

fn avc_config(sps: &[u8]) -> AvcConfig {
    let mut record = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    record.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    record.extend_from_slice(sps);
    record.push(1);
    record.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    record.extend_from_slice(PPS);
    AvcConfig::parse(Bytes::from(record)).unwrap()
}

fn aac_config() -> AacConfig {
    AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap()
}

fn video(index: i64, keyframe: bool) -> StreamEvent {
    // Decode order I P B B P B B ...: the B-frames' presentation is later than their decode.
    let dts = index * FRAME;
    let pts = dts + if index % 3 == 0 { 2 * FRAME } else { FRAME };
    StreamEvent::Frame(MediaFrame {
        track: Track::Video,
        dts,
        pts,
        keyframe,
        data: Bytes::from(vec![index as u8; 200]),
    })
}

fn audio(index: i64) -> StreamEvent {
    let dts = index * 1024 * 90_000 / 48_000;
    StreamEvent::Frame(MediaFrame {
        track: Track::Audio,
        dts,
        pts: dts,
        keyframe: true,
        data: Bytes::from(vec![7; 20]),
    })
}

/// Feeds `seconds` of interleaved audio and video (keyframe every 60 frames) in arrival order.
fn feed(packager: &mut Packager, seconds: i64) -> Vec<Produced> {
    let mut produced = packager.push(StreamEvent::VideoConfig(avc_config(SPS)), WALL0).unwrap();
    produced.extend(packager.push(StreamEvent::AudioConfig(aac_config()), WALL0).unwrap());
    let mut next_audio = 0;
    for index in 0..seconds * 30 {
        let wall = WALL0 + index * 1000 / 30;
        while next_audio * 1024 * 90_000 / 48_000 <= index * FRAME {
            produced.extend(packager.push(audio(next_audio), wall).unwrap());
            next_audio += 1;
        }
        produced.extend(packager.push(video(index, index % 60 == 0), wall).unwrap());
    }
    produced
}

#[test]
fn segments_are_cut_at_keyframes_and_split_into_parts_within_the_target() {
    let mut packager = Packager::new(PackagerConfig::default());
    let produced = feed(&mut packager, 7);
    assert_eq!(produced[0], Produced::Init { id: 0 });
    let segments: Vec<_> = packager.segments().collect();
    assert_eq!(segments.iter().map(|s| s.msn).collect::<Vec<_>>(), [0, 1, 2]);
    for segment in &segments {
        assert!((segment.duration_secs() - 2.0).abs() < 1e-9, "{}", segment.duration_secs());
        assert_eq!(segment.start_dts % (60 * FRAME), 0, "starts on a keyframe");
        assert_eq!(segment.program_date_time_ms, WALL0 + segment.start_dts / 90);
        assert_eq!(segment.parts.len(), 4);
        assert!(segment.parts[0].independent);
        let total: i64 = segment.parts.iter().map(|p| p.duration_ticks).sum();
        assert_eq!(total, segment.duration_ticks);
        for part in &segment.parts {
            assert!(part.duration_ticks <= 45_000, "a part longer than PART-TARGET");
        }
        let served: Vec<u8> = packager.segment(segment.msn).unwrap().iter().flat_map(|c| c.iter().copied()).collect();
        let joined: Vec<u8> = segment.parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        assert_eq!(served, joined, "a segment is its parts in order");
        assert_eq!(segment.len(), joined.len());
    }
    assert!(produced.contains(&Produced::Segment { msn: 2 }));
    assert!(produced.contains(&Produced::Part { msn: 3, index: 0 }));
    assert_eq!(packager.stats().frames_dropped, 0);
    let fps = packager.frame_rate().unwrap();
    assert!((fps - 30.0).abs() < 0.01, "{fps}");
}

#[test]
fn b_frame_composition_offsets_and_both_tracks_reach_the_fragments() {
    let mut packager = Packager::new(PackagerConfig::default());
    feed(&mut packager, 3);
    let first = packager.segments().next().unwrap();
    let mut cursor = std::io::Cursor::new(&first.parts[0].data[..]);
    let Any::Moof(moof) = Any::decode(&mut cursor).unwrap() else { panic!("no moof") };
    assert_eq!(moof.traf.len(), 2, "video and audio in every part");
    let video: Vec<_> = moof.traf[0].trun[0].samples.iter().collect();
    assert_eq!(video.len(), 15, "0.5 s of 30 fps");
    assert_eq!(video[0].cts, Some(2 * FRAME));
    assert_eq!(video[1].cts, Some(FRAME));
    assert!(video.iter().all(|s| s.duration == Some(FRAME as u32)));
    assert_eq!(moof.traf[1].tfhd.track_id, 2);
    let audio_base = moof.traf[1].tfdt.as_ref().unwrap().base_media_decode_time;
    assert_eq!(audio_base, 0);
    // The audio of the second part continues where the first ended, in samples.
    let first_audio = moof.traf[1].trun[0].samples.len() as u64;
    let mut cursor = std::io::Cursor::new(&first.parts[1].data[..]);
    let Any::Moof(second) = Any::decode(&mut cursor).unwrap() else { panic!("no moof") };
    assert_eq!(second.traf[1].tfdt.as_ref().unwrap().base_media_decode_time, first_audio * 1024);
}

#[test]
fn frames_before_the_first_keyframe_are_dropped_and_counted() {
    let mut packager = Packager::new(PackagerConfig::default());
    packager.push(StreamEvent::VideoConfig(avc_config(SPS)), WALL0).unwrap();
    packager.push(StreamEvent::AudioConfig(aac_config()), WALL0).unwrap();
    for index in 1..=10 {
        assert!(packager.push(video(index, false), WALL0).unwrap().is_empty());
    }
    let produced = packager.push(video(11, true), WALL0).unwrap();
    assert_eq!(produced, [Produced::Init { id: 0 }]);
    assert_eq!(packager.stats().frames_dropped, 10);
    for index in 12..80 {
        packager.push(video(index, (index - 11) % 60 == 0), WALL0).unwrap();
    }
    assert_eq!(packager.segments().next().unwrap().start_dts, 11 * FRAME);
    // Frames with no configuration are dropped too.
    let mut bare = Packager::new(PackagerConfig::default());
    bare.push(video(0, true), WALL0).unwrap();
    bare.push(audio(0), WALL0).unwrap();
    assert_eq!(bare.stats().frames_dropped, 2);
}

#[test]
fn repeated_or_backward_timestamps_never_make_zero_or_negative_durations() {
    let mut packager = Packager::new(PackagerConfig::default());
    packager.push(StreamEvent::VideoConfig(avc_config(SPS)), WALL0).unwrap();
    let frame = |dts: i64, keyframe| {
        StreamEvent::Frame(MediaFrame {
            track: Track::Video,
            dts,
            pts: dts,
            keyframe,
            data: Bytes::from_static(&[1; 10]),
        })
    };
    for (dts, key) in
        [(0, true), (3000, false), (3000, false), (2000, false), (9000, false), (200_000, true), (203_000, false)]
    {
        packager.push(frame(dts, key), WALL0).unwrap();
    }
    packager.finish().unwrap();
    for segment in packager.segments() {
        assert!(segment.duration_ticks > 0);
        for part in &segment.parts {
            let mut cursor = std::io::Cursor::new(&part.data[..]);
            let Any::Moof(moof) = Any::decode(&mut cursor).unwrap() else { panic!("no moof") };
            assert!(moof.traf[0].trun[0].samples.iter().all(|s| s.duration.unwrap() > 0));
        }
    }
}

#[test]
fn the_window_slides_and_old_media_is_released() {
    let config = PackagerConfig { window_segments: 3, ..Default::default() };
    let mut packager = Packager::new(config);
    feed(&mut packager, 21);
    let held: Vec<u64> = packager.segments().map(|s| s.msn).collect();
    assert_eq!(held, [5, 6, 7, 8, 9], "a window of 3 plus 2 of grace");
    let listed: Vec<u64> = packager.window().map(|s| s.msn).collect();
    assert_eq!(listed, [7, 8, 9]);
    assert!(packager.segment(4).is_none());
    assert!(packager.segment(5).is_some());
    assert!(packager.part(9, 3).is_some());
    let text = playlist::media_playlist(&packager, "", &[]);
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:7\n"), "{text}");
    assert!(!text.contains("seg-6.m4s"));
    // Parts are listed for the last three segments only (about three target durations).
    assert!(text.contains("part-7-0.m4s") && text.contains("part-10-0.m4s"), "{text}");
    let mut longer = Packager::new(PackagerConfig::default());
    feed(&mut longer, 21);
    let text = playlist::media_playlist(&longer, "", &[]);
    assert!(!text.contains("part-6-0.m4s") && text.contains("part-7-0.m4s"), "{text}");
}

#[test]
fn blocking_reload_positions_follow_the_parts() {
    let mut packager = Packager::new(PackagerConfig::default());
    assert_eq!(packager.last_part(), None);
    assert!(!packager.has(0, Some(0)));
    feed(&mut packager, 3);
    // 3 s in: segment 0 complete; in segment 1 part 0 is complete and part 1 waits for the
    // frame after its last (the last frame is held back until its duration is known).
    assert_eq!(packager.last_msn(), Some(0));
    assert_eq!(packager.last_part(), Some((1, 0)));
    assert!(packager.has(0, None) && packager.has(0, Some(3)) && packager.has(1, Some(0)));
    assert!(!packager.has(1, Some(1)) && !packager.has(1, None) && !packager.has(2, Some(0)));
    assert_eq!(packager.next_msn(), 1);
}

#[test]
fn the_media_playlist_carries_the_ll_hls_tags_and_parses() {
    let mut packager = Packager::new(PackagerConfig::default());
    feed(&mut packager, 5);
    let report = RenditionReport { uri: "../720p/index.m3u8".into(), last_msn: 2, last_part: Some(1) };
    let text = playlist::media_playlist(&packager, "", &[report]);
    for tag in [
        "#EXT-X-VERSION:9",
        "#EXT-X-TARGETDURATION:2\n",
        "#EXT-X-MEDIA-SEQUENCE:0\n",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500",
        "#EXT-X-PART-INF:PART-TARGET=0.500",
        "#EXT-X-MAP:URI=\"init-0.mp4\"",
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z",
        "#EXT-X-PART:DURATION=0.50000,URI=\"part-0-0.m4s\",INDEPENDENT=YES",
        "#EXT-X-PART:DURATION=0.50000,URI=\"part-0-1.m4s\"\n",
        "#EXTINF:2.00000,\nseg-0.m4s",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-2-1.m4s\"",
        "#EXT-X-RENDITION-REPORT:URI=\"../720p/index.m3u8\",LAST-MSN=2,LAST-PART=1",
    ] {
        assert!(text.contains(tag), "missing {tag:?} in\n{text}");
    }
    let prefixed = playlist::media_playlist(&packager, "17/", &[]);
    for uri in [
        "URI=\"17/init-0.mp4\"",
        "URI=\"17/part-0-0.m4s\"",
        "\n17/seg-0.m4s\n",
        "PRELOAD-HINT:TYPE=PART,URI=\"17/part-2-1.m4s\"",
    ] {
        assert!(prefixed.contains(uri), "{uri} in {prefixed}");
    }
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("a valid media playlist");
    assert_eq!(parsed.segments.len(), 2);
    assert_eq!(parsed.target_duration, 2);
    assert_eq!(parsed.segments[1].uri, "seg-1.m4s");
    assert!(parsed.segments[0].program_date_time.is_some());
}

#[test]
fn the_multivariant_playlist_describes_each_rendition() {
    let mut packager = Packager::new(PackagerConfig::default());
    assert!(Variant::of(&packager, "source/index.m3u8".into()).is_none(), "nothing to describe yet");
    feed(&mut packager, 5);
    let variant = Variant::of(&packager, "source/index.m3u8".into()).unwrap();
    assert_eq!(variant.codecs, ["avc1.64001f", "mp4a.40.2"]);
    assert_eq!(variant.resolution, Some((1280, 720)));
    assert!(variant.bandwidth >= variant.average_bandwidth && variant.average_bandwidth > 0);
    let text = playlist::multivariant_playlist(&[variant]);
    assert!(
        text.contains("CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000\nsource/index.m3u8"),
        "{text}"
    );
    let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("a valid multivariant playlist");
    assert_eq!(parsed.variants[0].uri, "source/index.m3u8");
}

#[test]
fn a_new_codec_configuration_starts_a_new_init_segment_after_a_discontinuity() {
    let mut packager = Packager::new(PackagerConfig::default());
    feed(&mut packager, 3);
    let mut other_sps = SPS.to_vec();
    other_sps[3] = 0x28; // level 4.0: a different record
    packager.push(StreamEvent::VideoConfig(avc_config(&other_sps)), WALL0).unwrap();
    let mut produced = Vec::new();
    for index in 90..200 {
        produced.extend(packager.push(video(index, index % 60 == 0), WALL0).unwrap());
    }
    assert!(produced.contains(&Produced::Init { id: 1 }));
    let switched = packager.segments().find(|s| s.init_id == 1).unwrap();
    assert!(switched.discontinuity);
    assert_eq!(switched.start_dts, 120 * FRAME, "at the next keyframe");
    assert!(packager.init(1).is_some() && packager.init(0).is_some());
    let text = playlist::media_playlist(&packager, "", &[]);
    assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\""), "{text}");
}

#[test]
fn an_audio_only_stream_is_packaged_too() {
    let mut packager = Packager::new(PackagerConfig::default());
    packager.push(StreamEvent::AudioConfig(aac_config()), WALL0).unwrap();
    for index in 0..300 {
        packager.push(audio(index), WALL0).unwrap();
    }
    let segment = packager.segments().next().expect("a segment");
    assert!((segment.duration_secs() - 2.0).abs() < 0.03, "{}", segment.duration_secs());
    let variant = Variant::of(&packager, "a.m3u8".into()).unwrap();
    assert_eq!(variant.codecs, ["mp4a.40.2"]);
    assert_eq!(variant.resolution, None);
}

#[test]
fn finishing_flushes_the_held_frame_and_open_segment() {
    let mut packager = Packager::new(PackagerConfig::default());
    feed(&mut packager, 3);
    let produced = packager.finish().unwrap();
    assert!(produced.contains(&Produced::Segment { msn: 1 }));
    let last = packager.segments().last().unwrap();
    assert!((last.duration_secs() - 1.0).abs() < 1e-9, "{}", last.duration_secs());
}

#[test]
fn resource_names_round_trip_and_reject_junk() {
    for resource in [Resource::Init(3), Resource::Segment(42), Resource::Part(42, 3)] {
        assert_eq!(Resource::parse(&resource.file_name()), Some(resource));
    }
    for junk in ["index.m3u8", "seg-x.m4s", "part-1.m4s", "part-1-2-3.m4s", "../seg-1.m4s", "seg--1.m4s"] {
        assert_eq!(Resource::parse(junk), None, "{junk}");
    }
    assert_eq!(playlist::iso8601(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(playlist::iso8601(951_782_400_001), "2000-02-29T00:00:00.001Z");
}

/// The track ids in an init segment's `moov`.
fn init_tracks(init: &Bytes) -> Vec<u32> {
    let mut cursor = std::io::Cursor::new(&init[..]);
    loop {
        match Any::decode(&mut cursor).expect("an init segment") {
            Any::Moov(moov) => return moov.trak.iter().map(|trak| trak.tkhd.track_id).collect(),
            _ => continue,
        }
    }
}

/// `seconds` of a stream whose audio sequence header comes `audio_late` frames of video after
/// the first keyframe (OBS 29: the AAC header 66 ms after the first picture); audio frames start
/// with the header.
fn feed_video_first(packager: &mut Packager, audio_late: i64, seconds: i64) {
    packager.push(StreamEvent::VideoConfig(avc_config(SPS)), WALL0).unwrap();
    let mut next_audio = 0;
    for index in 0..seconds * 30 {
        let wall = WALL0 + index * 1000 / 30;
        if index == audio_late {
            packager.push(StreamEvent::AudioConfig(aac_config()), wall).unwrap();
            next_audio = (index * FRAME * 48_000 / 90_000 + 1023) / 1024;
        }
        while index >= audio_late && next_audio * 1024 * 90_000 / 48_000 <= index * FRAME {
            packager.push(audio(next_audio), wall).unwrap();
            next_audio += 1;
        }
        packager.push(video(index, index % 60 == 0), wall).unwrap();
    }
}

#[test]
fn audio_whose_configuration_comes_after_the_first_picture_is_in_the_first_init() {
    let mut packager = Packager::new(PackagerConfig::default());
    feed_video_first(&mut packager, 2, 5);
    assert_eq!(packager.current_init_id(), Some(0), "one init segment, no discontinuity");
    assert_eq!(init_tracks(&packager.init(0).unwrap()), [1, 2], "video and audio from the first init");
    let first = packager.segments().next().unwrap();
    assert_eq!((first.start_dts, first.program_date_time_ms), (0, WALL0), "starts at the first keyframe");
    assert!(!packager.segments().any(|s| s.discontinuity));
    assert_eq!(Variant::of(&packager, "v.m3u8".into()).unwrap().codecs.len(), 2);
}

#[test]
fn audio_that_comes_before_the_video_configuration_waits_for_the_first_keyframe() {
    let mut packager = Packager::new(PackagerConfig::default());
    packager.push(StreamEvent::AudioConfig(aac_config()), WALL0).unwrap();
    // 300 ms of audio alone, then the video configuration and the pictures from dts 0.
    for index in 0..15 {
        assert!(packager.push(audio(index), WALL0).unwrap().is_empty(), "no audio-only start");
    }
    packager.push(StreamEvent::VideoConfig(avc_config(SPS)), WALL0).unwrap();
    let mut next_audio = 15;
    for index in 0..150 {
        while next_audio * 1024 * 90_000 / 48_000 <= index * FRAME {
            packager.push(audio(next_audio), WALL0).unwrap();
            next_audio += 1;
        }
        packager.push(video(index, index % 60 == 0), WALL0).unwrap();
    }
    assert_eq!(packager.current_init_id(), Some(0));
    assert_eq!(init_tracks(&packager.init(0).unwrap()), [1, 2]);
    assert!(!packager.segments().any(|s| s.discontinuity));
}

#[test]
fn a_stream_without_audio_starts_after_the_track_wait_from_its_first_keyframe() {
    let mut packager = Packager::new(PackagerConfig::default());
    packager.push(StreamEvent::VideoConfig(avc_config(SPS)), WALL0).unwrap();
    let mut first_init_at = None;
    for index in 0..150 {
        let produced = packager.push(video(index, index % 60 == 0), WALL0 + index * 1000 / 30).unwrap();
        if produced.contains(&Produced::Init { id: 0 }) && first_init_at.is_none() {
            first_init_at = Some(index);
        }
    }
    assert_eq!(first_init_at, Some(30), "one second of video waited for an audio configuration");
    assert_eq!(init_tracks(&packager.init(0).unwrap()), [1]);
    let first = packager.segments().next().unwrap();
    assert_eq!((first.start_dts, first.program_date_time_ms), (0, WALL0), "nothing that waited is lost");
    assert_eq!(packager.stats().frames_dropped, 0);
    // Audio that turns up later still joins, at the next segment, after a discontinuity.
    packager.push(StreamEvent::AudioConfig(aac_config()), WALL0).unwrap();
    for index in 150..250 {
        packager.push(video(index, index % 60 == 0), WALL0).unwrap();
    }
    assert!(packager.segments().any(|s| s.discontinuity && s.init_id == 1));
}

#[test]
fn a_short_stream_that_ends_while_waiting_is_still_packaged() {
    let mut packager = Packager::new(PackagerConfig::default());
    packager.push(StreamEvent::VideoConfig(avc_config(SPS)), WALL0).unwrap();
    for index in 0..10 {
        packager.push(video(index, index == 0), WALL0).unwrap();
    }
    assert!(packager.segments().next().is_none() && packager.open_segment_ref().is_none());
    let produced = packager.finish().unwrap();
    assert!(produced.contains(&Produced::Segment { msn: 0 }), "{produced:?}");
    // Audio alone, ended before the wait: packaged too; and nothing at all is no error.
    let mut audio_only = Packager::new(PackagerConfig::default());
    audio_only.push(StreamEvent::AudioConfig(aac_config()), WALL0).unwrap();
    for index in 0..10 {
        audio_only.push(audio(index), WALL0).unwrap();
    }
    assert!(audio_only.finish().unwrap().contains(&Produced::Segment { msn: 0 }));
    let mut nothing = Packager::new(PackagerConfig::default());
    nothing.push(StreamEvent::VideoConfig(avc_config(SPS)), WALL0).unwrap();
    nothing.push(audio(0), WALL0).unwrap();
    assert!(nothing.finish().unwrap().is_empty());
}

#[test]
fn an_interrupted_stream_goes_on_after_a_discontinuity_with_the_same_init() {
    let mut packager = Packager::new(PackagerConfig::default());
    feed(&mut packager, 3);
    let produced = packager.interrupt().unwrap();
    assert!(produced.contains(&Produced::Segment { msn: 1 }), "the open segment is flushed: {produced:?}");
    assert!(packager.open_segment_ref().is_none());
    // The publisher comes back 5 s later, its frames shifted to follow on (the caller's job).
    let shift = 8 * 90_000;
    packager.push(StreamEvent::VideoConfig(avc_config(SPS)), WALL0).unwrap();
    packager.push(StreamEvent::AudioConfig(aac_config()), WALL0).unwrap();
    for index in 0..150 {
        let StreamEvent::Frame(mut frame) = video(index, index % 60 == 0) else { unreachable!() };
        frame.dts += shift;
        frame.pts += shift;
        packager.push(StreamEvent::Frame(frame), WALL0).unwrap();
    }
    let resumed = packager.segments().find(|s| s.start_dts == shift).expect("a segment from the first keyframe back");
    assert!(resumed.discontinuity && resumed.init_id == 0, "same init, after a discontinuity");
    assert_eq!(resumed.msn, 2, "media sequence numbers go on");
    assert_eq!(resumed.program_date_time_ms, WALL0 + 8000, "dated on the first clock");
    assert_eq!(packager.segments().filter(|s| s.discontinuity).count(), 1);
    let text = playlist::media_playlist(&packager, "", &[]);
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    assert_eq!(text.matches("#EXT-X-MAP").count(), 1, "{text}");
}

#[test]
fn a_playlist_read_as_a_segment_closes_ends_at_it_with_nothing_dangling() {
    let mut packager = Packager::new(PackagerConfig::default());
    feed(&mut packager, 2);
    // The next keyframe closes segment 0; the new segment has no part yet.
    packager.push(video(60, true), WALL0).unwrap();
    packager.push(video(61, false), WALL0).unwrap();
    assert!(packager.open_segment_ref().is_some_and(|open| open.parts.is_empty()));
    let text = playlist::media_playlist(&packager, "", &[]);
    let tail: Vec<&str> = text.lines().skip_while(|line| !line.starts_with("#EXTINF")).collect();
    assert_eq!(tail, ["#EXTINF:2.00000,", "seg-0.m4s"], "no date, discontinuity or hint without a part: {text}");
    // With a part, the open segment is listed again, with its hint.
    for index in 62..80 {
        packager.push(video(index, false), WALL0).unwrap();
    }
    let text = playlist::media_playlist(&packager, "", &[]);
    assert!(
        text.contains("#EXT-X-PART:DURATION=0.50000,URI=\"part-1-0.m4s\"") && text.contains("PRELOAD-HINT"),
        "{text}"
    );
}
