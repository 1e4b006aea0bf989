//! VODs: a broadcast becomes a VOD that plays over HLS for its length, with its visibility
//! enforced on the API and on playback, editable and deletable by its owner. The same suite runs
//! on local storage and on a real S3-compatible server (s3s-fs) on loopback.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::s3::S3Server;
use support::{Backend, Publisher, TestApp, assert_error, eventually};

enum Store {
    Local,
    S3,
}

/// A server whose media goes to `store`; `None` when that store or backend is not available here.
async fn spawn(backend: Backend, store: Store) -> Option<(TestApp, Option<S3Server>)> {
    match store {
        Store::Local => Some((TestApp::spawn(backend).await?, None)),
        Store::S3 => {
            let s3 = S3Server::start()?;
            let app = TestApp::spawn_with(backend, |config| s3.configure(config)).await?;
            Some((app, Some(s3)))
        }
    }
}

/// ffprobe's reading of a playlist URL: (duration in seconds, streams as "codec WxH").
fn probe(url: &str, token: Option<&str>) -> (f64, Vec<String>) {
    let mut command = std::process::Command::new("ffprobe");
    command.args(["-v", "error", "-show_entries", "format=duration:stream=codec_name,width,height", "-of", "csv=p=0"]);
    if let Some(token) = token {
        command.args(["-headers", &format!("Authorization: Bearer {token}\r\n")]);
    }
    let output = command.arg(url).output().expect("ffprobe runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines: Vec<&str> = text.lines().filter(|line| !line.is_empty()).collect();
    let duration = lines.pop().and_then(|line| line.parse().ok()).unwrap_or(0.0);
    (duration, lines.into_iter().map(|line| line.trim_end_matches(',').replace(',', " ")).collect())
}

async fn text(app: &TestApp, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn vod_lifecycle(backend: Backend, store: Store) {
    let Some((app, _s3)) = spawn(backend, store).await else { return };
    let owner = app.signup("vodder").await;
    let other = app.signup("other").await;
    let key = app.create_channel(&owner, "vod_tv").await;
    let (ok, stderr) = Publisher::start(app.rtmp_addr, &key, 20).wait(Duration::from_secs(60));
    assert!(ok, "{stderr}");

    let vod = eventually(Duration::from_secs(15), || async {
        let (_, body) = app.get("/api/v1/channels/vod_tv/vods", Some(&owner)).await;
        body["vods"].as_array().and_then(|vods| vods.first().cloned()).filter(|vod| vod["status"] == "ready")
    })
    .await
    .expect("the broadcast becomes a ready VOD");
    let id = vod["id"].as_str().unwrap().to_owned();
    assert_eq!(vod["visibility"], "private", "{vod}");
    assert!(id.len() >= 12 && id.chars().all(|c| c.is_ascii_alphanumeric()), "a random public id: {id}");
    let duration = vod["duration_ms"].as_i64().unwrap();
    assert!((19_000..=21_500).contains(&duration), "{duration} ms recorded of a 20 s broadcast");
    let playback = vod["playback_url"].as_str().unwrap().to_owned();
    assert_eq!(playback, format!("/vod/{id}/master.m3u8"));

    // Private: nobody else sees it, not even that it exists.
    for token in [None, Some(other.as_str())] {
        let (_, listed) = app.get("/api/v1/channels/vod_tv/vods", token).await;
        assert_eq!(listed["vods"], json!([]), "{listed}");
        let (status, body) = app.get(&format!("/api/v1/vods/{id}"), token).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(text(&app, &playback, token).await.0, 404);
        assert_eq!(text(&app, &format!("/vod/{id}/source/index.m3u8"), token).await.0, 404);
    }

    // The owner plays it: a VOD playlist over the stored segments, the whole broadcast long.
    let (status, master) = text(&app, &playback, Some(&owner)).await;
    assert_eq!(status, 200, "{master}");
    assert!(master.contains("CODECS=\"avc1.") && master.contains("RESOLUTION=640x360"), "{master}");
    let (_, media) = text(&app, &format!("/vod/{id}/source/index.m3u8"), Some(&owner)).await;
    assert!(media.contains("#EXT-X-PLAYLIST-TYPE:VOD") && media.ends_with("#EXT-X-ENDLIST\n"), "{media}");
    let (seconds, streams) = probe(&app.url(&playback), Some(&owner));
    assert!((19.0..=21.5).contains(&seconds), "ffprobe reads {seconds} s; {streams:?}");
    assert!(streams.iter().any(|s| s.starts_with("h264 640 360")), "{streams:?}");
    assert!(streams.iter().any(|s| s.starts_with("aac")), "{streams:?}");
    assert_eq!(text(&app, &format!("/vod/{id}/source/seg-999.m4s"), Some(&owner)).await.0, 404);
    assert_eq!(text(&app, &format!("/vod/{id}/source/..%2F..%2Faether.db"), Some(&owner)).await.0, 404);

    // Only the owner may edit; bad values are refused.
    let path = format!("/api/v1/vods/{id}");
    let (status, body) = app.patch(&path, Some(&other), json!({"title": "mine now"})).await;
    assert_eq!(status, 404, "others cannot even see a private VOD: {body}");
    let (status, body) = app.patch(&path, Some(&owner), json!({"visibility": "secret"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = app.patch(&path, Some(&owner), json!({"title": "x".repeat(141)})).await;
    assert_eq!(status, 422, "{body}");
    assert_error(&body, "invalid_field");

    // Unlisted: reachable by its link, not listed.
    let (status, body) = app.patch(&path, Some(&owner), json!({"visibility": "unlisted", "title": "Best run"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["visibility"].as_str(), body["title"].as_str()), (Some("unlisted"), Some("Best run")));
    let (status, body) = app.get(&path, None).await;
    assert_eq!((status, body["title"].as_str()), (200, Some("Best run")), "{body}");
    let (_, listed) = app.get("/api/v1/channels/vod_tv/vods", None).await;
    assert_eq!(listed["vods"], json!([]), "{listed}");
    let (_, listed) = app.get("/api/v1/vods", None).await;
    assert_eq!(listed["vods"], json!([]), "not on the home page either: {listed}");
    let (seconds, _) = probe(&app.url(&playback), None);
    assert!((19.0..=21.5).contains(&seconds), "an unlisted VOD plays for anyone: {seconds} s");
    let (status, body) = app.patch(&path, Some(&other), json!({"title": "mine now"})).await;
    assert_eq!(status, 403, "{body}");

    // Public: listed for everyone.
    app.patch(&path, Some(&owner), json!({"visibility": "public"})).await;
    let (_, listed) = app.get("/api/v1/channels/vod_tv/vods", None).await;
    assert_eq!(listed["vods"][0]["id"], Value::from(id.clone()), "{listed}");
    let (_, listed) = app.get("/api/v1/vods?limit=5", None).await;
    assert_eq!(listed["vods"][0]["id"], Value::from(id.clone()), "every channel's public VODs: {listed}");
    assert_eq!(app.get("/api/v1/vods?limit=0", None).await.0, 422);

    // Deleting removes the VOD and its stored objects.
    let session = stored_session(&app, &id).await;
    let segment_key = format!("recordings/{session}/source/seg-0.m4s");
    assert!(app.state.storage().get(&segment_key).await.is_ok(), "the segment is stored");
    let (status, _) = app.send(reqwest::Method::DELETE, &path, Some(&other), Value::Null).await;
    assert_eq!(status, 403);
    let (status, body) = app.send(reqwest::Method::DELETE, &path, Some(&owner), Value::Null).await;
    assert_eq!(status, 204, "{body}");
    assert!(app.state.storage().get(&segment_key).await.is_err(), "the objects are deleted too");
    assert!(app.state.storage().get(&format!("recordings/{session}/source/init-0.mp4")).await.is_err());
    assert_eq!(app.get(&path, Some(&owner)).await.0, 404);
    assert_eq!(text(&app, &playback, Some(&owner)).await.0, 404);
    app.stop().await;
}

async fn stored_session(app: &TestApp, id: &str) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT session_id FROM vods WHERE public_id = $1")
        .bind(id)
        .fetch_one(app.state.db().pool())
        .await
        .unwrap()
        .get("session_id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_becomes_a_vod_with_visibility_editing_and_deletion_on_local_storage() {
    vod_lifecycle(Backend::Sqlite, Store::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_becomes_a_vod_with_visibility_editing_and_deletion_on_postgres() {
    vod_lifecycle(Backend::Postgres, Store::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_becomes_a_vod_with_visibility_editing_and_deletion_on_s3() {
    vod_lifecycle(Backend::Sqlite, Store::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_with_recording_switched_off_makes_no_vod() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let owner = app.signup("quiet").await;
    let key = app.create_channel(&owner, "quiet_tv").await;
    let (_, channel) = app.get("/api/v1/channels/quiet_tv", None).await;
    assert_eq!(channel["record"], true, "recording is on by default: {channel}");
    let (status, channel) = app.patch("/api/v1/channels/quiet_tv", Some(&owner), json!({"record": false})).await;
    assert_eq!((status, &channel["record"]), (200, &json!(false)), "{channel}");

    let (ok, stderr) = Publisher::start(app.rtmp_addr, &key, 3).wait(Duration::from_secs(30));
    assert!(ok, "{stderr}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, listed) = app.get("/api/v1/channels/quiet_tv/vods", Some(&owner)).await;
    assert_eq!(listed["vods"], json!([]), "{listed}");
    let stored = std::fs::read_dir(app.storage.data_dir().join("media/recordings")).map(|dir| dir.count()).unwrap_or(0);
    assert_eq!(stored, 0, "no recording was written to storage");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_outage_mid_stream_loses_nothing_of_the_vod() {
    let Some(mut s3) = S3Server::start() else { return };
    let app = TestApp::spawn_with(Backend::Sqlite, |config| s3.configure(config)).await.unwrap();
    let owner = app.signup("outage").await;
    let key = app.create_channel(&owner, "outage_tv").await;
    let publisher = Publisher::start(app.rtmp_addr, &key, 16);
    let db = app.state.db().clone();
    let indexed = || async {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM vod_segments").fetch_one(db.pool()).await.unwrap().get::<i64, _>("n")
    };
    eventually(Duration::from_secs(20), || async { (indexed().await >= 1).then_some(()) })
        .await
        .expect("segments are recorded before the outage");

    // Storage goes away for a while: segments made meanwhile wait in the spool.
    s3.stop();
    let spool = app.storage.data_dir().join("spool");
    let spooled = eventually(Duration::from_secs(15), || async {
        let files = std::fs::read_dir(&spool).map(|dir| dir.count()).unwrap_or(0);
        (files >= 4).then_some(files)
    })
    .await;
    assert!(spooled.is_some(), "segments are spooled while storage is down");
    let during = indexed().await;
    s3.resume();
    let (ok, stderr) = publisher.wait(Duration::from_secs(40));
    assert!(ok, "{stderr}");

    // Once storage is back, the spool drains in order and the VOD is whole.
    let vod = eventually(Duration::from_secs(30), || async {
        let (_, body) = app.get("/api/v1/channels/outage_tv/vods", Some(&owner)).await;
        let vod = body["vods"][0].clone();
        let empty = std::fs::read_dir(&spool).map(|dir| dir.count() == 0).unwrap_or(true);
        (vod["status"] == "ready" && empty && vod["duration_ms"].as_i64() >= Some(15_000)).then_some(vod)
    })
    .await
    .expect("the VOD is complete once storage is back");
    assert!(indexed().await > during, "spooled segments were indexed after the outage");
    let msns: Vec<i64> = {
        use sqlx::Row;
        let rows = sqlx::query("SELECT msn FROM vod_segments ORDER BY msn").fetch_all(db.pool()).await.unwrap();
        rows.iter().map(|row| row.get("msn")).collect()
    };
    assert_eq!(msns, (0..msns.len() as i64).collect::<Vec<_>>(), "no segment is missing");
    let (seconds, _) = probe(&app.url(vod["playback_url"].as_str().unwrap()), Some(&owner));
    assert!((15.0..=17.5).contains(&seconds), "ffprobe reads {seconds} s of a 16 s broadcast");
    app.stop().await;
}

/// A 4-minute file (120 segments, more than the recording queue holds) pushed as fast as the server takes it (`ffmpeg` without `-re`): the recording
/// keeps up (spooling, then holding the publisher back) instead of dropping segments.
async fn a_file_pushed_faster_than_real_time_is_recorded_whole(store: Store) {
    let Some((app, _s3)) = spawn(Backend::Sqlite, store).await else { return };
    let owner = app.signup("pusher").await;
    let key = app.create_channel(&owner, "push_tv").await;
    let file = app.storage.data_dir().join("source.flv");
    let encoded = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "240"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(encoded.success());
    let pushed = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&file)
        .args(["-c", "copy", "-f", "flv", &format!("rtmp://{}/live/{key}", app.rtmp_addr)])
        .status()
        .unwrap();
    assert!(pushed.success());
    let vod = eventually(Duration::from_secs(60), || async {
        let (_, body) = app.get("/api/v1/channels/push_tv/vods", Some(&owner)).await;
        let vod = body["vods"][0].clone();
        (vod["status"] == "ready" && vod["duration_ms"].as_i64() >= Some(239_000)).then_some(vod)
    })
    .await;
    let (_, body) = app.get("/api/v1/channels/push_tv/vods", Some(&owner)).await;
    assert!(vod.is_some(), "the whole 240 s are recorded: {body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_pushed_faster_than_real_time_is_recorded_whole_on_local_storage() {
    a_file_pushed_faster_than_real_time_is_recorded_whole(Store::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_pushed_faster_than_real_time_is_recorded_whole_on_s3() {
    a_file_pushed_faster_than_real_time_is_recorded_whole(Store::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_spooled_when_the_server_stops_are_uploaded_after_it_starts_again() {
    let Some(mut s3) = S3Server::start() else { return };
    let app = TestApp::spawn_with(Backend::Sqlite, |config| s3.configure(config)).await.unwrap();
    let owner = app.signup("restart").await;
    let key = app.create_channel(&owner, "restart_tv").await;
    // Storage is down for the whole broadcast: everything goes to the spool.
    s3.stop();
    let (ok, stderr) = Publisher::start(app.rtmp_addr, &key, 7).wait(Duration::from_secs(30));
    assert!(ok, "{stderr}");
    let spool = app.storage.data_dir().join("spool");
    let spooled = std::fs::read_dir(&spool).map(|dir| dir.count()).unwrap_or(0);
    assert!(spooled >= 8, "init + segments wait in the spool: {spooled} files");
    let app = app.restart().await;
    s3.resume();
    // The next start uploads and indexes them, in order, and the VOD gets its full length.
    let vod = eventually(Duration::from_secs(30), || async {
        let (_, body) = app.get("/api/v1/channels/restart_tv/vods", Some(&owner)).await;
        let vod = body["vods"][0].clone();
        let empty = std::fs::read_dir(&spool).map(|dir| dir.count() == 0).unwrap_or(true);
        (empty && vod["status"] == "ready" && vod["duration_ms"].as_i64() >= Some(6_000)).then_some(vod)
    })
    .await
    .expect("the spooled recording is uploaded after the restart");
    let (seconds, _) = probe(&app.url(vod["playback_url"].as_str().unwrap()), Some(&owner));
    assert!((6.0..=8.0).contains(&seconds), "ffprobe reads {seconds} s of a 7 s broadcast");
    app.stop().await;
}
