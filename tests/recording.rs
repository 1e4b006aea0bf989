//! Recording: every broadcast is written to storage segment by segment and becomes a VOD, also
//! after the server was killed mid-stream.

mod support;

use std::time::Duration;

use aether::config::Config;
use aether::db::Db;
use sqlx::Row;
use support::process::{Server, loopback_serve, prepare_channel};
use support::s3::S3Server;
use support::{Backend, Publisher, TestApp, eventually};

/// The VOD of channel `name`: (status, duration_ms, segments recorded).
async fn vod_of(db: &Db, name: &str) -> Option<(String, i64, i64)> {
    let row = sqlx::query(
        "SELECT v.id, v.status, v.duration_ms FROM vods v JOIN channels c ON c.id = v.channel_id WHERE c.name = $1",
    )
    .bind(name)
    .fetch_optional(db.pool())
    .await
    .unwrap()?;
    let id: i64 = row.get("id");
    let segments: i64 = sqlx::query("SELECT COUNT(*) AS n FROM vod_segments WHERE vod_id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get("n");
    Some((row.get("status"), row.get("duration_ms"), segments))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_is_recorded_as_a_vod_that_plays_for_its_length() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let token = app.signup("rec").await;
    let key = app.create_channel(&token, "rec_tv").await;
    let (ok, stderr) = Publisher::start(app.rtmp_addr, &key, 7).wait(Duration::from_secs(30));
    assert!(ok, "{stderr}");
    let db = app.state.db().clone();
    let (status, duration, segments) = eventually(Duration::from_secs(10), || async {
        vod_of(&db, "rec_tv").await.filter(|(status, ..)| status == "ready")
    })
    .await
    .expect("the recording becomes a ready VOD");
    assert_eq!(status, "ready");
    assert!((6000..=8000).contains(&duration), "duration {duration} ms for a 7 s broadcast");
    assert_eq!(segments, 4, "three 2 s segments and the flushed last one");

    // The stored init + segments, concatenated, are the whole broadcast.
    let session: i64 = sqlx::query("SELECT session_id FROM vods").fetch_one(db.pool()).await.unwrap().get("session_id");
    let dir = app.storage.data_dir().join("media").join(format!("recordings/{session}/source"));
    let mut file = std::fs::read(dir.join("init-0.mp4")).expect("the init segment is stored");
    let keys = sqlx::query("SELECT object_key FROM vod_segments ORDER BY msn").fetch_all(db.pool()).await.unwrap();
    for row in keys {
        let key: String = row.get("object_key");
        file.extend(std::fs::read(app.storage.data_dir().join("media").join(key)).unwrap());
    }
    let joined = app.storage.data_dir().join("joined.mp4");
    std::fs::write(&joined, file).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(&joined)
        .output()
        .unwrap();
    let seconds: f64 = String::from_utf8_lossy(&probe.stdout).trim().parse().unwrap_or(0.0);
    assert!((6.0..=8.0).contains(&seconds), "ffprobe reads {seconds} s");
    app.stop().await;
}

/// SIGKILL the server about 12 s into a broadcast (once 10 s are recorded), start it again: the
/// partial recording is a VOD of at least 10 s.
async fn a_recording_cut_short_by_a_crash_becomes_a_vod(s3: Option<&S3Server>) {
    let dir = tempfile::tempdir().unwrap();
    let key = prepare_channel(dir.path(), "crash", "crash_tv");
    let serve = || {
        let mut command = loopback_serve(dir.path());
        if let Some(s3) = s3 {
            let config = s3.storage_config();
            command
                .env("AETHER_STORAGE__KIND", "s3")
                .env("AETHER_STORAGE__ENDPOINT", config.endpoint.unwrap())
                .env("AETHER_STORAGE__BUCKET", config.bucket.unwrap())
                .env("AETHER_STORAGE__PATH_STYLE", "true")
                .env("AETHER_STORAGE__ACCESS_KEY_ID", config.access_key_id.unwrap())
                .env("AETHER_STORAGE__SECRET_ACCESS_KEY", config.secret_access_key.unwrap());
        }
        Server::start(command)
    };
    let mut server = serve();
    let (_, rtmp) = server.addresses();
    let _publisher = Publisher::start(rtmp, &key, 60);
    let mut config = Config::embedded();
    config.data_dir = dir.path().to_path_buf();
    let db = Db::connect(&config).await.unwrap();
    let recorded = || async {
        sqlx::query("SELECT COALESCE(SUM(duration_ms), 0) AS ms FROM vod_segments")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get::<i64, _>("ms")
    };
    eventually(Duration::from_secs(40), || async { (recorded().await >= 10_000).then_some(()) })
        .await
        .expect("10 s are recorded while live");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let (status, ..) = vod_of(&db, "crash_tv").await.unwrap();
    assert_eq!(status, "recording", "the crash left the recording unfinished");

    let mut server = serve();
    server.wait_for("finalized recordings left unfinished");
    server.wait_for("listening");
    let (status, duration, segments) = vod_of(&db, "crash_tv").await.unwrap();
    assert_eq!(status, "ready");
    assert!(segments >= 5 && duration >= 10_000, "{segments} segments, {duration} ms kept");
    assert!(server.terminate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_cut_short_by_a_crash_becomes_a_vod_at_the_next_start() {
    a_recording_cut_short_by_a_crash_becomes_a_vod(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_on_s3_cut_short_by_a_crash_becomes_a_vod_at_the_next_start() {
    let Some(s3) = S3Server::start() else { return };
    a_recording_cut_short_by_a_crash_becomes_a_vod(Some(&s3)).await;
}
