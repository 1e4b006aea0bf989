//! Reconnects: a publisher that drops and comes back with the same key within
//! `live.reconnect_grace_seconds` continues the broadcast (one stream session, one VOD that
//! covers both parts, one `stream.started` / `stream.ended` pair, the playlists going on after a
//! discontinuity, the ladder's rungs too); the channel says `reconnecting` meanwhile. Another key
//! (rotated) during the grace, or a publish after it, is a new broadcast.

mod support;

use std::time::Duration;

use aether::events::Event;
use serde_json::json;
use support::{Backend, Publisher, TestApp, eventually};

const GRACE_SECS: u32 = 4;

async fn sessions(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM stream_sessions").fetch_one(app.state.db().pool()).await.unwrap()
}

async fn stream_state(app: &TestApp, channel: &str) -> Option<String> {
    let (_, body) = app.get(&format!("/api/v1/channels/{channel}"), None).await;
    body["stream"]["state"].as_str().map(str::to_owned)
}

/// Each variant's codecs, size and URI (bandwidths are measured, and move).
fn variants(master: &str) -> Vec<String> {
    master
        .lines()
        .filter(|line| !line.starts_with('#') || line.starts_with("#EXT-X-STREAM-INF"))
        .map(|line| {
            line.split(',')
                .filter(|field| !field.contains("BANDWIDTH") && !field.starts_with("FRAME-RATE"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// Publishes `seconds` of a 480p stream (so the ladder has a 360p rung) in the background; the
/// task ends with the publisher: whether it succeeded, and what it said.
fn publish(app: &TestApp, key: &str, seconds: u32) -> tokio::task::JoinHandle<(bool, String)> {
    let (rtmp, key) = (app.rtmp_addr, key.to_owned());
    tokio::task::spawn_blocking(move || {
        let fast = ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0"];
        Publisher::start_sized(rtmp, &key, seconds, "854x480", &fast).wait(Duration::from_secs(60))
    })
}

async fn finished(publisher: tokio::task::JoinHandle<(bool, String)>) {
    let (ok, stderr) = publisher.await.unwrap();
    assert!(ok, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_back_within_the_grace_continues_the_broadcast_and_another_key_starts_a_new_one() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.live.reconnect_grace_seconds = GRACE_SECS;
        for rung in &mut config.transcode.ladder {
            rung.preset = "ultrafast".into();
        }
        config.transcode.max_lag_ms = 10_000;
    })
    .await
    .unwrap();
    let mut events = app.state.bus().subscribe();
    let owner = app.signup("blippy").await;
    let key = app.create_channel(&owner, "blip_tv").await;

    // First part, then the connection drops: the channel waits, live, "reconnecting".
    let first = publish(&app, &key, 5);
    let master = eventually(Duration::from_secs(20), || async {
        let response = app.client.get(app.url("/live/blip_tv/master.m3u8")).send().await.ok()?;
        (response.status() == 200).then_some(response.text().await.ok()?)
    })
    .await
    .expect("live");
    finished(first).await;
    let reconnecting = eventually(Duration::from_secs(3), || async {
        (stream_state(&app, "blip_tv").await.as_deref() == Some("reconnecting")).then_some(())
    })
    .await;
    assert!(reconnecting.is_some(), "the channel says reconnecting during the grace");
    let (_, channel) = app.get("/api/v1/channels/blip_tv", None).await;
    assert_eq!(channel["live"], true, "still live while it waits");

    // Back with the same key within the grace: the same broadcast goes on.
    let second = publish(&app, &key, 5);
    for rendition in ["source", "360p"] {
        let playlist = eventually(Duration::from_secs(15), || async {
            let response =
                app.client.get(app.url(&format!("/live/blip_tv/{rendition}/index.m3u8"))).send().await.ok()?;
            let text = response.text().await.ok()?;
            text.contains("#EXT-X-DISCONTINUITY\n").then_some(text)
        })
        .await
        .unwrap_or_else(|| panic!("{rendition} goes on after a discontinuity"));
        assert_eq!(playlist.matches("#EXT-X-MAP").count(), 1, "the same init segment: {playlist}");
        let sequence: Vec<u64> = m3u8_rs::parse_media_playlist_res(playlist.as_bytes())
            .unwrap()
            .segments
            .iter()
            .filter_map(|s| s.uri.rsplit('/').next()?.strip_prefix("seg-")?.strip_suffix(".m4s")?.parse().ok())
            .collect();
        assert!(sequence.windows(2).all(|w| w[1] == w[0] + 1), "{rendition}: numbers go on {sequence:?}");
    }
    let again = app.client.get(app.url("/live/blip_tv/master.m3u8")).send().await.unwrap().text().await.unwrap();
    assert_eq!(variants(&again), variants(&master), "the same variants");
    finished(second).await;
    assert_eq!(sessions(&app).await, 1, "one stream session");

    // Meanwhile the key is rotated: a publish with the new key is a new broadcast, at once.
    let (status, body) = app.post("/api/v1/channels/blip_tv/stream-key", Some(&owner), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let new_key = body["stream_key"].as_str().unwrap().to_owned();
    let third = publish(&app, &new_key, 3);
    let new_session = eventually(Duration::from_secs(10), || async { (sessions(&app).await == 2).then_some(()) }).await;
    assert!(new_session.is_some(), "a new stream session for the new key");
    finished(third).await;
    // After the grace that one ends too; a publish after it is a third broadcast.
    let offline = eventually(Duration::from_secs(u64::from(GRACE_SECS) + 10), || async {
        let (_, channel) = app.get("/api/v1/channels/blip_tv", None).await;
        (channel["live"] == false).then_some(())
    })
    .await;
    assert!(offline.is_some(), "offline after the grace");
    finished(publish(&app, &new_key, 2)).await;
    assert_eq!(sessions(&app).await, 3);

    // The first broadcast is one VOD covering both of its parts (5 s each, and the gap).
    let vods = eventually(Duration::from_secs(20), || async {
        let (_, body) = app.get("/api/v1/channels/blip_tv/vods", Some(&owner)).await;
        let vods = body["vods"].as_array()?.clone();
        (vods.len() >= 2 && vods.iter().all(|v| v["status"] == "ready")).then_some(vods)
    })
    .await
    .expect("the VODs are ready");
    let longest = vods.iter().map(|v| v["duration_ms"].as_i64().unwrap()).max().unwrap();
    assert!(longest >= 9_000, "one VOD covers both parts: {vods:?}");

    // One started / ended pair per broadcast: three of each, none for the reconnect.
    let mut started = 0;
    let mut ended = 0;
    let counted = eventually(Duration::from_secs(u64::from(GRACE_SECS) + 10), || {
        while let Ok(event) = events.try_recv() {
            match event {
                Event::StreamStarted { .. } => started += 1,
                Event::StreamEnded { .. } => ended += 1,
                _ => {}
            }
        }
        let done = ended == 3;
        async move { done.then_some(()) }
    })
    .await;
    assert!(counted.is_some(), "three broadcasts end: started {started}, ended {ended}");
    assert_eq!(started, 3);
    app.stop().await;
}
