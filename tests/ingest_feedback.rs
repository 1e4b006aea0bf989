//! What a creator is told about their stream, and what it costs without a ladder: the channel
//! API reports the keyframe interval, codecs and audio, and warns (with what to set in OBS) when
//! keyframes are too far apart for the segment length; with transcoding off the thumbnail comes
//! from single keyframes, with no GStreamer pipeline running for the stream; the channel names
//! its picture only once it has one.

mod support;

use std::time::Duration;

use support::{Backend, TestApp, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_keyframe_intervals_are_reported_and_thumbnails_need_no_pipeline_without_a_ladder() {
    if !support::gstreamer_present() {
        return;
    }
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.transcode.enabled = false;
        config.transcode.thumbnail_seconds = 1;
    })
    .await
    .unwrap();
    let owner = app.signup("slowkeys").await;
    let key = app.create_channel(&owner, "slow_keys").await;
    let (_, channel) = app.get("/api/v1/channels/slow_keys", None).await;
    assert!(channel["thumbnail_url"].is_null(), "no picture yet, so pages ask for none: {channel}");
    // OBS's "auto" keyframe interval is 250 frames; 240 at 30 fps here: 8 s.
    let publisher = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=44100"])
        .args(["-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-g", "240"])
        .args(["-keyint_min", "240", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "1"])
        .args(["-f", "flv", &format!("rtmp://{}/live/{key}", app.rtmp_addr)])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ffmpeg runs");
    let publisher = support::Publisher { child: publisher };

    // A thumbnail from the first keyframe, and no pipeline decoding every frame.
    let jpeg = eventually(Duration::from_secs(15), || async {
        let response = app.client.get(app.url("/live/slow_keys/thumbnail.jpg")).send().await.ok()?;
        (response.status() == 200).then_some(response.bytes().await.ok()?)
    })
    .await
    .expect("a thumbnail while live");
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "a JPEG");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let pipelines = metrics.lines().find(|line| line.starts_with("aether_transcode_pipelines "));
    assert!(pipelines.is_none_or(|line| line.ends_with(" 0")), "no ladder pipeline: {pipelines:?}");

    // The keyframe interval, measured, and the warning that says what to set.
    let stream = eventually(Duration::from_secs(15), || async {
        let (_, channel) = app.get("/api/v1/channels/slow_keys", None).await;
        let stream = channel["stream"].clone();
        (stream["warnings"].as_array()?.len() == 1).then_some(stream)
    })
    .await
    .expect("a keyframe warning");
    assert!(stream["keyframe_interval_secs"].as_f64().unwrap() > 4.0, "{stream}");
    assert_eq!(stream["warnings"][0]["code"], "keyframe_interval");
    let message = stream["warnings"][0]["message"].as_str().unwrap();
    assert!(message.contains("Keyframe Interval to 2 s"), "{message}");
    assert_eq!(stream["video_codec"], "H.264 High 3.0", "{stream}");
    assert_eq!(stream["audio"], "AAC-LC 44.1 kHz mono", "{stream}");
    assert_eq!(stream["state"], "live");
    let (_, channel) = app.get("/api/v1/channels/slow_keys", None).await;
    assert_eq!(channel["thumbnail_url"], "/live/slow_keys/thumbnail.jpg");
    drop(publisher);
    // Offline, the channel keeps its last picture as its preview, and says where it is.
    let preview = eventually(Duration::from_secs(10), || async {
        let (_, channel) = app.get("/api/v1/channels/slow_keys", None).await;
        let url = channel["thumbnail_url"].as_str()?.to_owned();
        (channel["live"] == false && url.contains("?v=")).then_some(url)
    })
    .await
    .expect("the preview is noted on the channel");
    let response = app.client.get(app.url(&preview)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap().starts_with(&[0xff, 0xd8]));
    app.stop().await;
}
