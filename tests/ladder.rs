//! The ABR ladder end to end: a 1080p30 publish comes out as 1080p (source), 720p, 480p and
//! 360p renditions that ffprobe decodes at their advertised sizes, with the same segment numbers
//! and program date-times in every rendition; a thumbnail of the live picture, kept as the
//! channel's preview after the stream; every rendition recorded. A 480p source gets no upscaled
//! rungs.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{Backend, Publisher, TestApp, eventually};

/// A test server whose ladder uses the cheapest x264 preset (two cores encode three rungs and
/// the publisher's 1080p in real time) and takes a thumbnail every second.
async fn spawn() -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |config| {
        for rung in &mut config.transcode.ladder {
            rung.preset = "ultrafast".into();
        }
        config.transcode.thumbnail_seconds = 1;
        config.transcode.max_lag_ms = 10_000;
    })
    .await
    .unwrap()
}

async fn text(app: &TestApp, path: &str) -> (u16, String) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Segment number -> program date-time of every complete segment of a media playlist.
fn segments(playlist: &str) -> BTreeMap<u64, String> {
    let parsed = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).expect("a media playlist");
    parsed
        .segments
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.uri.is_empty() && s.duration > 0.0)
        .filter_map(|(i, s)| Some((parsed.media_sequence + i as u64, s.program_date_time?.to_rfc3339())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1080p_publish_becomes_an_aligned_ladder_with_thumbnails() {
    if !support::gstreamer_present() {
        return;
    }
    let app = spawn().await;
    let owner = app.signup("ladder").await;
    let key = app.create_channel(&owner, "ladder_tv").await;
    let fast = ["-c:v", "libx264", "-profile:v", "high", "-preset", "ultrafast", "-bf", "2"];
    let publisher = Publisher::start_sized(app.rtmp_addr, &key, 14, "1920x1080", &fast);

    // All four renditions, with their real sizes and codecs.
    let master = eventually(Duration::from_secs(20), || async {
        let (status, body) = text(&app, "/live/ladder_tv/master.m3u8").await;
        (status == 200 && body.matches("#EXT-X-STREAM-INF").count() == 4).then_some(body)
    })
    .await
    .expect("the master playlist lists four renditions");
    for (name, size) in [("source", "1920x1080"), ("720p", "1280x720"), ("480p", "854x480"), ("360p", "640x360")] {
        let line = master.lines().zip(master.lines().skip(1)).find(|(_, uri)| uri.starts_with(&format!("{name}/")));
        let (info, _) = line.unwrap_or_else(|| panic!("{name} in {master}"));
        assert!(info.contains(&format!("RESOLUTION={size}")) && info.contains("CODECS=\"avc1."), "{info}");
    }

    // ffprobe decodes each at its advertised size.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (name, width, height) in [("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)] {
        let url = app.url(&format!("/live/ladder_tv/{name}/index.m3u8"));
        let probe = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height"])
            .args(["-of", "csv=p=0", &url])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&probe.stdout);
        let first = out.lines().find(|line| !line.is_empty()).unwrap_or_default();
        assert_eq!(first, format!("h264,{width},{height}"), "{name}: {}", String::from_utf8_lossy(&probe.stderr));
    }

    // The same segment numbers with the same program date-times in every rendition.
    let source = eventually(Duration::from_secs(10), || async {
        let source = segments(&text(&app, "/live/ladder_tv/source/index.m3u8").await.1);
        (source.len() >= 3).then_some(source)
    })
    .await
    .expect("three segments of the source");
    for name in ["720p", "480p", "360p"] {
        let (_, playlist) = text(&app, &format!("/live/ladder_tv/{name}/index.m3u8")).await;
        let rung = segments(&playlist);
        let common: Vec<u64> = source.keys().filter(|msn| rung.contains_key(msn)).copied().collect();
        assert!(common.len() >= 2, "{name} shares segments with the source: {rung:?} vs {source:?}");
        for msn in common {
            assert_eq!(rung[&msn], source[&msn], "{name} segment {msn} starts when the source's does");
        }
    }

    // A thumbnail of the live picture.
    let response = app.client.get(app.url("/live/ladder_tv/thumbnail.jpg")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert!(response.bytes().await.unwrap().starts_with(&[0xff, 0xd8]), "a JPEG");

    let (ok, stderr) = publisher.wait(Duration::from_secs(40));
    assert!(ok, "{stderr}");
    // Offline: the last picture stays as the channel's preview, and the VOD has every rendition.
    let preview = eventually(Duration::from_secs(10), || async {
        let response = app.client.get(app.url("/live/ladder_tv/thumbnail.jpg")).send().await.unwrap();
        (response.status() == 200).then_some(response.bytes().await.unwrap())
    })
    .await
    .expect("the preview is kept");
    assert!(preview.starts_with(&[0xff, 0xd8]));
    let vod = eventually(Duration::from_secs(15), || async {
        let (_, body) = app.get("/api/v1/channels/ladder_tv/vods", Some(&owner)).await;
        body["vods"].as_array().and_then(|v| v.first().cloned()).filter(|v| v["status"] == "ready")
    })
    .await
    .expect("the VOD is ready");
    let vod_master = app
        .client
        .get(app.url(vod["playback_url"].as_str().unwrap()))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(vod_master.matches("#EXT-X-STREAM-INF").count(), 4, "{vod_master}");
    let thumbnail =
        app.client.get(app.url(vod["thumbnail_url"].as_str().unwrap())).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(thumbnail.status(), 200, "the VOD has a thumbnail");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_480p_publish_gets_no_upscaled_renditions() {
    if !support::gstreamer_present() {
        return;
    }
    let app = spawn().await;
    let owner = app.signup("small").await;
    let key = app.create_channel(&owner, "small_tv").await;
    let fast = ["-c:v", "libx264", "-preset", "ultrafast"];
    let publisher = Publisher::start_sized(app.rtmp_addr, &key, 8, "854x480", &fast);
    let master = eventually(Duration::from_secs(20), || async {
        let (status, body) = text(&app, "/live/small_tv/master.m3u8").await;
        (status == 200 && body.contains("360p/index.m3u8")).then_some(body)
    })
    .await
    .expect("the 360p rung appears");
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "source and 360p only: {master}");
    assert!(!master.contains("480p/") && !master.contains("720p/"), "{master}");
    drop(publisher);
    app.stop().await;
}
