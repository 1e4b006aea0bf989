//! Clips: the last seconds of a live stream and a range of a VOD, cut without re-encoding into a
//! faststart MP4 and an HLS rendition that ffmpeg reads at the right length and decodes without
//! errors; limits and permissions; jobs resumed after a restart. On local storage and on a real
//! S3-compatible server.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::s3::S3Server;
use support::{Backend, Publisher, TestApp, assert_error, eventually};

/// ffprobe's duration of a URL or file, and whether ffmpeg decodes all of it without an error.
fn check_media(input: &str) -> (f64, bool, String) {
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", input])
        .output()
        .expect("ffprobe runs");
    let seconds = String::from_utf8_lossy(&probe.stdout).trim().parse().unwrap_or(0.0);
    let decode = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", input, "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    // ffmpeg's HLS reader notes every redirect to another host (presigned S3 URLs); not an error.
    let errors: String = String::from_utf8_lossy(&decode.stderr)
        .lines()
        .filter(|line| !line.contains("Cannot reuse HTTP connection for different host"))
        .collect::<Vec<_>>()
        .join("\n");
    (seconds, decode.status.success() && errors.trim().is_empty(), errors)
}

async fn wait_ready(app: &TestApp, id: &str) -> Value {
    eventually(Duration::from_secs(30), || async {
        let (_, clip) = app.get(&format!("/api/v1/clips/{id}"), None).await;
        (clip["status"] != "processing").then_some(clip)
    })
    .await
    .expect("the clip job finishes")
}

async fn clips_from_live_and_vod(app: TestApp) {
    let owner = app.signup("streamer").await;
    let viewer = app.signup("viewer").await;
    let key = app.create_channel(&owner, "clip_tv").await;
    let publisher = Publisher::start(app.rtmp_addr, &key, 24);

    // Validation first, while it is live.
    let (status, body) = app.post("/api/v1/clips", None, json!({"channel": "clip_tv", "seconds": 8})).await;
    assert_eq!(status, 401, "{body}");
    for (request, code) in [
        (json!({"channel": "clip_tv", "seconds": 2}), "invalid_clip"),
        (json!({"channel": "clip_tv", "seconds": 121}), "invalid_clip"),
        (json!({"channel": "clip_tv", "seconds": 8, "vod_id": "x", "start_ms": 0, "end_ms": 9000}), "invalid_clip"),
        (json!({"vod_id": "nope", "start_ms": 0}), "invalid_clip"),
    ] {
        let (status, body) = app.post("/api/v1/clips", Some(&viewer), request.clone()).await;
        assert_eq!(status, 422, "{request} -> {body}");
        assert_error(&body, code);
    }
    let (status, body) = app.post("/api/v1/clips", Some(&viewer), json!({"channel": "nobody_tv", "seconds": 8})).await;
    assert_eq!(status, 404, "{body}");

    // The last 8 seconds of the live stream, clipped by a viewer 14 s in.
    let db = app.state.db().clone();
    eventually(Duration::from_secs(30), || async {
        use sqlx::Row;
        let row = sqlx::query("SELECT MAX(start_ms + duration_ms) AS end FROM vod_segments").fetch_one(db.pool()).await;
        row.ok().and_then(|row| row.get::<Option<i64>, _>("end")).filter(|&end| end >= 14_000)
    })
    .await
    .expect("the broadcast is recorded");
    let (status, clip) =
        app.post("/api/v1/clips", Some(&viewer), json!({"channel": "clip_tv", "seconds": 8, "title": "wow"})).await;
    assert_eq!(status, 202, "{clip}");
    assert_eq!((clip["status"].as_str(), clip["creator"].as_str()), (Some("processing"), Some("viewer")));
    assert!(clip["download_url"].is_null());
    let id = clip["id"].as_str().unwrap().to_owned();
    let clip = wait_ready(&app, &id).await;
    assert_eq!(clip["status"], "ready", "{clip}");
    let duration = clip["duration_ms"].as_i64().unwrap();
    assert!((7_900..=10_100).contains(&duration), "8 s asked, up to one 2 s GOP more: {duration} ms");

    let mp4_url = app.url(clip["download_url"].as_str().unwrap());
    let (seconds, clean, errors) = check_media(&mp4_url);
    assert!((duration as f64 / 1000.0 - seconds).abs() < 0.15, "ffprobe reads {seconds} s of the MP4 ({duration} ms)");
    assert!(clean, "the MP4 decodes without errors: {errors}");
    let (seconds, clean, errors) = check_media(&app.url(clip["playback_url"].as_str().unwrap()));
    assert!((duration as f64 / 1000.0 - seconds).abs() < 0.25, "ffprobe reads {seconds} s of the HLS clip");
    assert!(clean, "the HLS clip decodes without errors: {errors}");
    // The MP4 has its index first, so players can start before the download ends.
    let head = app.client.get(&mp4_url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&head[4..8], b"ftyp");
    let moov_at = u32::from_be_bytes(head[0..4].try_into().unwrap()) as usize;
    assert_eq!(&head[moov_at + 4..moov_at + 8], b"moov", "faststart: moov right after ftyp");
    assert_eq!(clip["bytes"].as_u64(), Some(head.len() as u64));
    // A thumbnail of its first picture (GStreamer decodes it).
    if aether_transcode::missing_elements().is_ok_and(|missing| missing.is_empty()) {
        let url = clip["thumbnail_url"].as_str().expect("a thumbnail");
        let jpeg = app.client.get(app.url(url)).send().await.unwrap();
        let kind = jpeg.headers()["content-type"].clone();
        assert_eq!(kind, "image/jpeg", "{url}: {}", jpeg.text().await.unwrap());
        let jpeg = app.client.get(app.url(url)).send().await.unwrap();
        assert!(jpeg.bytes().await.unwrap().starts_with(&[0xff, 0xd8]));
    }
    let (ok, stderr) = publisher.wait(Duration::from_secs(40));
    assert!(ok, "{stderr}");

    // A range of the VOD: the owner's private VOD cannot be clipped by others until it is public.
    let vod = eventually(Duration::from_secs(15), || async {
        let (_, body) = app.get("/api/v1/channels/clip_tv/vods", Some(&owner)).await;
        body["vods"].as_array().and_then(|v| v.first().cloned()).filter(|v| v["status"] == "ready")
    })
    .await
    .expect("the VOD is ready");
    let vod_id = vod["id"].as_str().unwrap();
    let request = json!({"vod_id": vod_id, "start_ms": 5000, "end_ms": 15000});
    let (status, body) = app.post("/api/v1/clips", Some(&viewer), request.clone()).await;
    assert_eq!(status, 404, "{body}");
    app.patch(&format!("/api/v1/vods/{vod_id}"), Some(&owner), json!({"visibility": "public"})).await;
    let (status, body) = app.post("/api/v1/clips", Some(&viewer), request).await;
    assert_eq!(status, 202, "{body}");
    let clip = wait_ready(&app, body["id"].as_str().unwrap()).await;
    let (start, duration) = (clip["start_ms"].as_i64().unwrap(), clip["duration_ms"].as_i64().unwrap());
    assert!((3_000..=5_000).contains(&start), "starts at the keyframe at or before 5 s: {start}");
    assert!((14_900..=15_100).contains(&(start + duration)), "ends at 15 s: {start} + {duration}");
    let (seconds, clean, errors) = check_media(&app.url(clip["download_url"].as_str().unwrap()));
    assert!((duration as f64 / 1000.0 - seconds).abs() < 0.15, "ffprobe reads {seconds} s ({duration} ms)");
    assert!(clean, "{errors}");
    let (status, body) =
        app.post("/api/v1/clips", Some(&viewer), json!({"vod_id": vod_id, "start_ms": 60_000, "end_ms": 70_000})).await;
    assert_eq!(status, 422, "past the end of the VOD: {body}");

    // Frame-precise: the first GOP re-encoded from the picture at 5 s, the end at 15 s exactly.
    let precise = json!({"vod_id": vod_id, "start_ms": 5000, "end_ms": 15000, "precise": true});
    let (status, body) = app.post("/api/v1/clips", Some(&viewer), precise).await;
    assert_eq!(status, 202, "{body}");
    let clip = wait_ready(&app, body["id"].as_str().unwrap()).await;
    assert_eq!(clip["status"], "ready", "{clip}");
    let (start, duration) = (clip["start_ms"].as_i64().unwrap(), clip["duration_ms"].as_i64().unwrap());
    assert!((5000 - start).abs() <= 34, "starts within a frame of 5 s: {start}");
    assert!((10_000 - duration).abs() <= 34, "lasts 10 s within a frame: {duration}");
    let (seconds, clean, errors) = check_media(&app.url(clip["download_url"].as_str().unwrap()));
    assert!((seconds - 10.0).abs() <= 0.05, "ffprobe reads {seconds} s of the precise MP4");
    assert!(clean, "the precise MP4 decodes without errors: {errors}");
    let (seconds, clean, errors) = check_media(&app.url(clip["playback_url"].as_str().unwrap()));
    assert!((seconds - 10.0).abs() <= 0.1, "ffprobe reads {seconds} s of the precise HLS clip");
    assert!(clean, "the precise HLS clip decodes without errors: {errors}");

    // Listed on the channel; deleted by its creator, with its objects.
    let (_, listed) = app.get("/api/v1/channels/clip_tv/clips", None).await;
    assert_eq!(listed["clips"].as_array().map(Vec::len), Some(3), "{listed}");
    let (_, recent) = app.get("/api/v1/clips?limit=2", None).await;
    assert_eq!(recent["clips"].as_array().map(Vec::len), Some(2), "every channel's clips, newest first: {recent}");
    assert_eq!(recent["clips"][0]["id"], listed["clips"][0]["id"]);
    let path = format!("/api/v1/clips/{id}");
    let stranger = app.signup("stranger").await;
    assert_eq!(app.send(reqwest::Method::DELETE, &path, Some(&stranger), Value::Null).await.0, 403);
    assert_eq!(app.send(reqwest::Method::DELETE, &path, Some(&viewer), Value::Null).await.0, 204);
    assert!(app.state.storage().get(&format!("clips/{id}/clip.mp4")).await.is_err(), "objects deleted");
    assert_eq!(app.client.get(&mp4_url).send().await.unwrap().status(), 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_of_a_live_stream_and_of_a_vod_on_local_storage() {
    clips_from_live_and_vod(TestApp::spawn(Backend::Sqlite).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_of_a_live_stream_and_of_a_vod_on_s3() {
    let Some(s3) = S3Server::start() else { return };
    let app = TestApp::spawn_with(Backend::Sqlite, |config| s3.configure(config)).await.unwrap();
    clips_from_live_and_vod(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_jobs_left_unfinished_are_resumed_or_given_up_after_a_restart() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else { return };
    let owner = app.signup("resumer").await;
    let key = app.create_channel(&owner, "resume_tv").await;
    let (ok, stderr) = Publisher::start(app.rtmp_addr, &key, 8).wait(Duration::from_secs(30));
    assert!(ok, "{stderr}");
    let db = app.state.db().clone();
    let vod_row: i64 = eventually(Duration::from_secs(15), || async {
        use sqlx::Row;
        let row = sqlx::query("SELECT id FROM vods WHERE status = 'ready'").fetch_optional(db.pool()).await.unwrap();
        row.map(|row| row.get("id"))
    })
    .await
    .expect("the VOD is ready");
    // Two clips a crash left behind (rows the running server never queued): one never tried,
    // one whose three tries all died with the server.
    insert_unfinished(&db, vod_row, "resumedclip001", 0).await;
    insert_unfinished(&db, vod_row, "doomedclip0001", 3).await;
    let app = app.restart().await;
    let resumed = wait_ready(&app, "resumedclip001").await;
    assert_eq!(resumed["status"], "ready", "{resumed}");
    assert!((5_000..=7_100).contains(&resumed["duration_ms"].as_i64().unwrap()), "{resumed}");
    let doomed = wait_ready(&app, "doomedclip0001").await;
    assert_eq!(doomed["status"], "failed", "{doomed}");
    assert!(doomed["failure"].as_str().unwrap().contains("gave up after 3 tries"), "{doomed}");
    app.stop().await;
}

async fn insert_unfinished(db: &aether::db::Db, vod_row: i64, public_id: &str, attempts: i64) {
    use sqlx::Row;
    let row = sqlx::query("SELECT channel_id, (SELECT MIN(id) FROM users) AS user_id FROM vods WHERE id = $1")
        .bind(vod_row)
        .fetch_one(db.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO clips (public_id, channel_id, creator_id, vod_id, requested_start_ms, requested_end_ms, \
         attempts, created_at) VALUES ($1, $2, $3, $4, 1000, 7000, $5, 0)",
    )
    .bind(public_id)
    .bind(row.get::<i64, _>("channel_id"))
    .bind(row.get::<i64, _>("user_id"))
    .bind(vod_row)
    .bind(attempts)
    .execute(db.pool())
    .await
    .unwrap();
}
