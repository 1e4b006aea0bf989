//! The ladder on real media: a 1080p30 H.264 source (encoded by ffmpeg, read from FLV) goes
//! through the pipeline; every rung comes out at its size with keyframes exactly where the
//! source has them, thumbnails are JPEGs, and stopping leaves no GStreamer threads behind.

use std::time::Duration;

use aether_media::avc::AvcConfig;
use aether_media::flv::{VideoTag, parse_video};
use aether_media::{MediaFrame, TIMEBASE, Track};
use aether_transcode::{Output, Rung, TranscodeConfig, Transcoder, missing_elements, plan};
use bytes::Bytes;

fn tools_present() -> bool {
    let ffmpeg = std::process::Command::new("ffmpeg").arg("-version").output().is_ok();
    let elements = missing_elements().map(|missing| missing.is_empty()).unwrap_or(false);
    if !(ffmpeg && elements) {
        assert!(std::env::var_os("CI").is_none(), "ffmpeg or GStreamer elements missing: scripts/install-deps.sh test");
        eprintln!("skipped: ffmpeg or the GStreamer elements are missing");
    }
    ffmpeg && elements
}

/// The video of an FLV file ffmpeg encodes: (config, frames).
fn source(width: u32, height: u32, seconds: u32) -> (AvcConfig, Vec<MediaFrame>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("source.flv");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", &format!("testsrc2=size={width}x{height}:rate=30"), "-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "30", "-keyint_min", "30"])
        .args(["-sc_threshold", "0", "-pix_fmt", "yuv420p", "-an", "-f", "flv"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let file = Bytes::from(std::fs::read(&path).unwrap());
    let mut at = 13; // header (9) + first previous-tag-size (4)
    let mut config = None;
    let mut frames = Vec::new();
    while at + 11 <= file.len() {
        let kind = file[at];
        let size = u32::from_be_bytes([0, file[at + 1], file[at + 2], file[at + 3]]) as usize;
        let ms = u32::from_be_bytes([file[at + 7], file[at + 4], file[at + 5], file[at + 6]]) as i64;
        let body = file.slice(at + 11..at + 11 + size);
        at += 11 + size + 4;
        if kind != 9 {
            continue;
        }
        match parse_video(&body).unwrap() {
            VideoTag::SequenceHeader(record) => config = Some(AvcConfig::parse(record).unwrap()),
            VideoTag::Frame { keyframe, composition_ms, data } => {
                let dts = ms * i64::from(TIMEBASE) / 1000;
                let pts = dts + i64::from(composition_ms) * i64::from(TIMEBASE) / 1000;
                frames.push(MediaFrame { track: Track::Video, dts, pts, keyframe, data });
            }
            _ => {}
        }
    }
    (config.expect("a sequence header"), frames)
}

fn config() -> TranscodeConfig {
    let rung = |name: &str, height, kbps| Rung {
        name: name.into(),
        height,
        max_bitrate_kbps: kbps,
        fps_cap: 30,
        preset: "ultrafast".into(),
    };
    TranscodeConfig {
        enabled: true,
        encoder: aether_transcode::Encoder::X264,
        ladder: vec![rung("720p", 720, 2500), rung("480p", 480, 1200), rung("360p", 360, 700)],
        thumbnail_seconds: 1,
        max_lag_ms: 60_000,
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|dir| dir.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1080p_source_becomes_aligned_720p_480p_and_360p_rungs_with_thumbnails() {
    if !tools_present() {
        return;
    }
    let (source_config, frames) = source(1920, 1080, 3);
    let rungs = plan(&config(), source_config.width, source_config.height);
    let before = threads();
    // VA-API is configured but absent here: the ladder falls back to x264 rather than failing.
    let config = TranscodeConfig { encoder: aether_transcode::Encoder::Vaapi, ..config() };
    let (mut transcoder, mut outputs) = Transcoder::start(&config, &source_config, &rungs).unwrap();
    let source_keys: Vec<i64> = frames.iter().filter(|f| f.keyframe).map(|f| f.pts).collect();
    for frame in &frames {
        transcoder.push(frame);
    }
    tokio::task::spawn_blocking(move || transcoder.finish(Duration::from_secs(30))).await.unwrap();

    let mut configs = vec![None; rungs.len()];
    let mut keys = vec![Vec::new(); rungs.len()];
    let mut counts = vec![0; rungs.len()];
    let mut thumbnails = Vec::new();
    while let Ok(output) = outputs.try_recv() {
        match output {
            Output::Config { rung, config } => configs[rung] = Some(config),
            Output::Frame { rung, frame } => {
                counts[rung] += 1;
                if frame.keyframe {
                    keys[rung].push(frame.pts);
                }
            }
            Output::Thumbnail(jpeg) => thumbnails.push(jpeg),
            other => panic!("unexpected {other:?}"),
        }
    }
    for (index, rung) in rungs.iter().enumerate() {
        let config = configs[index].as_ref().expect("every rung announces its configuration");
        assert_eq!((config.width, config.height), (rung.width, rung.height), "{}", rung.name);
        assert_eq!(counts[index], frames.len(), "{}: every picture is encoded", rung.name);
        assert_eq!(keys[index], source_keys, "{}: keyframes exactly where the source has them", rung.name);
    }
    assert!(thumbnails.len() >= 3, "one thumbnail a second: {}", thumbnails.len());
    assert!(thumbnails.iter().all(|jpeg| jpeg.starts_with(&[0xff, 0xd8])), "thumbnails are JPEGs");
    // The pipeline and its threads are gone (GStreamer's thread pools may keep a few idle ones
    // for a while; they are not per stream).
    let mut after = threads();
    for _ in 0..50 {
        if after <= before + 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = threads();
    }
    assert!(after <= before + 2, "threads before {before}, after {after}");
}

#[test]
fn a_480p_source_gets_no_upscaled_rungs() {
    let rungs = plan(&config(), 854, 480);
    assert_eq!(rungs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["360p"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rungs_that_fall_behind_real_time_are_dropped_lowest_first() {
    if !tools_present() {
        return;
    }
    let (source_config, frames) = source(1920, 1080, 6);
    let mut config = config();
    config.max_lag_ms = 500;
    for rung in &mut config.ladder {
        rung.preset = "slow".into();
    }
    let rungs = plan(&config, source_config.width, source_config.height);
    let (mut transcoder, mut outputs) = Transcoder::start(&config, &source_config, &rungs).unwrap();
    // Six seconds of 1080p at once: far more than three "slow" encoders do in real time.
    for frame in &frames {
        transcoder.push(frame);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut dropped = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dropped.len() < rungs.len() && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), outputs.recv()).await {
            Ok(Some(Output::Dropped { rung })) => dropped.push(rung),
            Ok(Some(Output::Failed(reason))) => panic!("{reason}"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert!(!dropped.is_empty(), "a lagging rung is dropped");
    assert_eq!(dropped[0], rungs.len() - 1, "the lowest rung goes first: {dropped:?}");
    let mut sorted = dropped.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(dropped, sorted, "then the next lowest: {dropped:?}");
    drop(transcoder);
}

#[test]
fn a_keyframe_becomes_a_jpeg_and_garbage_is_an_error() {
    if !tools_present() {
        return;
    }
    let (config, frames) = source(1280, 720, 1);
    let jpeg = aether_transcode::keyframe_jpeg(&config.record, &frames[0].data, 640).unwrap();
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "a JPEG");
    assert!(aether_transcode::keyframe_jpeg(&config.record, &Bytes::from_static(b"\0\0\0\x02ab"), 640).is_err());
}

#[test]
fn a_gop_is_reencoded_from_an_exact_picture_on() {
    if !tools_present() {
        return;
    }
    let (config, frames) = source(1280, 720, 2);
    let second_key = frames.iter().skip(1).position(|f| f.keyframe).map(|i| i + 1).unwrap();
    let gop: Vec<aether_transcode::GopPicture> = frames[..second_key]
        .iter()
        .map(|f| aether_transcode::GopPicture { pts: f.pts, dts: f.dts, keyframe: f.keyframe, data: f.data.clone() })
        .collect();
    let mut shown: Vec<i64> = gop.iter().map(|p| p.pts).collect();
    shown.sort_unstable();
    let from = shown[10];
    let out = aether_transcode::reencode_gop(&config.record, &gop, from, 2000, 1).unwrap();
    let pts: Vec<i64> = out.pictures.iter().map(|(pts, ..)| *pts).collect();
    assert_eq!(pts, shown[10..].to_vec(), "the pictures from the 11th on, at their times");
    assert!(out.pictures[0].1, "the first is a keyframe");
    assert!(out.pictures[1..].iter().all(|(_, key, _)| !key));
    let encoded = AvcConfig::parse(out.record).unwrap();
    assert_eq!(encoded.height, 720);
    assert_eq!(encoded.parameter_set_ids(), (vec![1], vec![1]), "the asked parameter set id");
}
