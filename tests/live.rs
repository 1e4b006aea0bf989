//! Live streaming end to end: ffmpeg publishes over RTMP like OBS, the server packages CMAF
//! with LL-HLS and serves it from memory; ffprobe reads it back.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{Backend, Publisher, TestApp, eventually};

async fn text(app: &TestApp, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

async fn live_app(channel: &str) -> (TestApp, String) {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let token = app.signup("streamer").await;
    let key = app.create_channel(&token, channel).await;
    (app, key)
}

/// Waits until `channel` is live with media; returns its media playlist path.
async fn wait_live(app: &TestApp, channel: &str) -> String {
    let master = format!("/live/{channel}/master.m3u8");
    eventually(Duration::from_secs(20), || async {
        let (status, _, _) = text(app, &master).await;
        (status == 200).then_some(())
    })
    .await
    .expect("the stream goes live");
    format!("/live/{channel}/source/index.m3u8")
}

fn program_date_times(playlist: &str) -> Vec<f64> {
    playlist
        .lines()
        .filter_map(|line| line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .map(|value| {
            // 2026-11-22T04:05:06.789Z -> seconds of the day is enough within one test.
            let time = &value[11..value.len() - 1];
            let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
            parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_publish_becomes_ll_hls_that_ffprobe_reads() {
    let (app, key) = live_app("demo_live").await;
    let publisher = Publisher::start(app.rtmp_addr, &key, 9);
    let media = wait_live(&app, "demo_live").await;

    let (status, master, headers) = text(&app, "/live/demo_live/master.m3u8").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
    assert!(master.contains("CODECS=\"avc1.64001e,mp4a.40.2\""), "High profile, as OBS sends: {master}");
    assert!(master.contains("RESOLUTION=640x360"), "{master}");
    assert!(master.contains("source/index.m3u8"));

    // Wait for three complete segments, and a part of the next (a playlist read just as a
    // segment closed ends at it: no preload hint before the open segment has a part).
    let playlist = eventually(Duration::from_secs(15), || async {
        let (_, body, _) = text(&app, &media).await;
        (body.matches("#EXTINF:").count() >= 3 && body.contains("#EXT-X-PRELOAD-HINT")).then_some(body)
    })
    .await
    .expect("segments appear");
    for tag in [
        "#EXT-X-PART-INF:PART-TARGET=0.500",
        "CAN-BLOCK-RELOAD=YES",
        "#EXT-X-PRELOAD-HINT:TYPE=PART",
        "#EXT-X-MAP:URI=",
    ] {
        assert!(playlist.contains(tag), "{tag} missing:\n{playlist}");
    }
    assert!(playlist.contains("#EXT-X-PART:DURATION="), "{playlist}");
    for line in playlist.lines().filter_map(|l| l.strip_prefix("#EXTINF:")) {
        let seconds: f64 = line.trim_end_matches(',').parse().unwrap();
        assert!((seconds - 2.0).abs() < 0.05, "segment of {seconds} s with a 2 s GOP:\n{playlist}");
    }
    let pdts = program_date_times(&playlist);
    assert!(pdts.windows(2).all(|w| w[1] > w[0]), "PDT advances: {pdts:?}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 86_400.0;
    let newest = *pdts.last().unwrap();
    assert!((now - newest).abs() < 5.0, "PDT follows the wall clock: now {now}, newest {newest}");

    // Media URIs are served with the right types; segments and parts are immutable.
    let segment = playlist.lines().find(|l| l.ends_with(".m4s") && !l.starts_with('#')).unwrap();
    let (status, _, headers) = text(&app, &format!("/live/demo_live/source/{segment}")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "video/mp4");
    assert!(headers["cache-control"].to_str().unwrap().contains("immutable"));
    // A segment is served as exactly its parts, in order.
    let last_segment = playlist.lines().rfind(|l| l.ends_with(".m4s") && !l.starts_with('#')).unwrap();
    let (prefix, name) = last_segment.rsplit_once('/').unwrap();
    let msn = name.trim_start_matches("seg-").trim_end_matches(".m4s");
    let bytes = |path: String| {
        let request = app.client.get(app.url(&path)).send();
        async move { request.await.unwrap().bytes().await.unwrap().to_vec() }
    };
    let whole = bytes(format!("/live/demo_live/source/{last_segment}")).await;
    let mut joined = Vec::new();
    for index in 0..playlist.matches(&format!("part-{msn}-")).count() {
        joined.extend(bytes(format!("/live/demo_live/source/{prefix}/part-{msn}-{index}.m4s")).await);
    }
    assert!(!whole.is_empty() && whole == joined, "segment of {} bytes, parts {} bytes", whole.len(), joined.len());
    let (status, _, _) = text(&app, "/live/demo_live/source/999/seg-0.m4s").await;
    assert_eq!(status, 404, "another broadcast's media");

    // Blocking reload: ask for the part after the newest one; the answer comes when it exists.
    let (_, current, _) = text(&app, &media).await;
    let hint = current.lines().find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"")).unwrap();
    let name = hint.trim_end_matches('"').rsplit('/').next().unwrap().to_owned();
    let numbers: Vec<u64> =
        name.trim_start_matches("part-").trim_end_matches(".m4s").split('-').map(|n| n.parse().unwrap()).collect();
    let asked = Instant::now();
    let (status, blocked, _) = text(&app, &format!("{media}?_HLS_msn={}&_HLS_part={}", numbers[0], numbers[1])).await;
    assert_eq!(status, 200);
    assert!(blocked.contains(&format!("{name}\"")), "the awaited part is listed:\n{blocked}");
    assert!(asked.elapsed() < Duration::from_secs(3), "answered when the part appeared");
    let (status, _, _) = text(&app, &format!("{media}?_HLS_msn={}", numbers[0] + 10)).await;
    assert_eq!(status, 400, "too far in the future");

    // ffprobe plays the media playlist: H.264 and AAC.
    let probe = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0"])
        .arg(app.url(&media))
        .output();
    let probe = tokio::time::timeout(Duration::from_secs(30), probe).await.expect("ffprobe finishes").unwrap();
    let streams = String::from_utf8_lossy(&probe.stdout);
    assert!(streams.contains("h264,640,360"), "{streams}\n{}", String::from_utf8_lossy(&probe.stderr));
    assert!(streams.contains("aac"), "{streams}");

    // The publisher finishes: offline within a few seconds, the live window gone.
    let (ok, stderr) = publisher.wait(Duration::from_secs(30));
    assert!(ok, "ffmpeg: {stderr}");
    let offline = eventually(Duration::from_secs(5), || async {
        let (_, channel) = app.get("/api/v1/channels/demo_live", None).await;
        (channel["live"] == false).then_some(())
    })
    .await;
    assert!(offline.is_some(), "offline after the publisher left");
    let (status, _, _) = text(&app, &media).await;
    assert_eq!(status, 404);

    let metrics = text(&app, "/metrics").await.1;
    for name in
        ["aether_segments_total", "aether_parts_total", "aether_hls_requests_total", "aether_ingest_bytes_total"]
    {
        assert!(metrics.contains(name), "{name} missing");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_and_a_second_publisher_are_refused() {
    let (app, key) = live_app("solo_live").await;
    let (ok, _) = Publisher::start(app.rtmp_addr, "solo_live_0000000000000000000000000000000000000000", 5)
        .wait(Duration::from_secs(15));
    assert!(!ok, "a wrong key is refused");
    let (_, channel) = app.get("/api/v1/channels/solo_live", None).await;
    assert_eq!(channel["live"], false);
    assert!(channel.get("stream").is_none(), "{channel}");

    let _first = Publisher::start(app.rtmp_addr, &key, 15);
    wait_live(&app, "solo_live").await;
    // While live, the channel says what is received: the dashboard's bitrate and resolution.
    let stream = eventually(Duration::from_secs(10), || async {
        let (_, channel) = app.get("/api/v1/channels/solo_live", None).await;
        (channel["stream"]["bitrate_kbps"].as_u64() > Some(100)).then(|| channel["stream"].clone())
    })
    .await
    .expect("an ingest bitrate");
    assert_eq!((stream["width"].as_u64(), stream["height"].as_u64()), (Some(640), Some(360)), "{stream}");
    assert!(stream["started_at"].as_i64() > Some(0) && stream["renditions"][0] == "source", "{stream}");
    assert!((stream["frame_rate"].as_f64().unwrap() - 30.0).abs() < 1.0, "{stream}");
    let started = Instant::now();
    let (ok, _) = Publisher::start(app.rtmp_addr, &key, 5).wait(Duration::from_secs(15));
    assert!(!ok, "a second publisher is refused");
    assert!(started.elapsed() < Duration::from_secs(5), "refused at publish time");
    let (_, channel) = app.get("/api/v1/channels/solo_live", None).await;
    assert_eq!(channel["live"], true, "the first publisher keeps the channel");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_publisher_takes_the_channel_offline_and_the_server_stays_up() {
    let (app, key) = live_app("crash_live").await;
    let mut publisher = Publisher::start(app.rtmp_addr, &key, 30);
    wait_live(&app, "crash_live").await;
    publisher.child.kill().unwrap();
    let offline = eventually(Duration::from_secs(5), || async {
        let (_, channel) = app.get("/api/v1/channels/crash_live", None).await;
        (channel["live"] == false).then_some(())
    })
    .await;
    assert!(offline.is_some(), "offline within a few seconds");
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    // The channel can go live again, with a new broadcast.
    let _again = Publisher::start(app.rtmp_addr, &key, 10);
    wait_live(&app, "crash_live").await;
    app.stop().await;
}

/// Reads until the server closes the connection; panics if it is still open after `limit`.
async fn closed_within(socket: &mut tokio::net::TcpStream, limit: Duration) {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 8192];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rtmp_clients_are_closed_and_logged_while_other_streams_play() {
    use support::process::{Server, create_channel, loopback_serve, prepare_channel};
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let key = prepare_channel(dir.path(), "host", "good_live");
    let other_key = create_channel(dir.path(), "host", "codec_live");

    let mut command = loopback_serve(dir.path());
    command.env("AETHER_RTMP__IDLE_TIMEOUT", "1");
    let mut server = Server::start(command);
    let (http, rtmp) = server.addresses();
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{http}{path}")).send();

    let _good = Publisher::start(rtmp, &key, 20);
    eventually(Duration::from_secs(20), || async {
        (get("/live/good_live/master.m3u8").await.ok()?.status() == 200).then_some(())
    })
    .await
    .expect("the good stream goes live");

    // Garbage instead of a handshake.
    let mut socket = tokio::net::TcpStream::connect(rtmp).await.unwrap();
    socket.write_all(&[0xab; 1537]).await.unwrap();
    closed_within(&mut socket, Duration::from_secs(5)).await;
    server.wait_for("handshake failed");

    // A handshake that stops halfway: dropped after the idle timeout.
    let mut socket = tokio::net::TcpStream::connect(rtmp).await.unwrap();
    let mut partial = vec![3u8];
    partial.extend_from_slice(&[0; 700]);
    socket.write_all(&partial).await.unwrap();
    closed_within(&mut socket, Duration::from_secs(5)).await;
    server.wait_for("no data for 1 s");

    // A chunk size beyond what RTMP allows (the top bit must be zero).
    let mut socket = tokio::net::TcpStream::connect(rtmp).await.unwrap();
    support::flv::handshake(&mut socket).await;
    let set_chunk_size = [0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    socket.write_all(&set_chunk_size).await.unwrap();
    closed_within(&mut socket, Duration::from_secs(5)).await;
    server.wait_for("protocol error");

    // A codec we cannot carry (Sorenson H.263).
    let (ok, _) = Publisher::start_with(rtmp, &other_key, 3, &["-c:v", "flv1"]).wait(Duration::from_secs(20));
    assert!(!ok, "the publish fails");
    let refused = server.wait_for("unsupported video codec");
    assert!(refused.contains("Sorenson") || refused.contains("codec id 2"), "{refused}");
    let offline = eventually(Duration::from_secs(5), || async {
        let channel: serde_json::Value = get("/api/v1/channels/codec_live").await.ok()?.json().await.ok()?;
        (channel["live"] == false).then_some(())
    })
    .await;
    assert!(offline.is_some(), "the refused stream does not stay live");

    // Through all of it the good stream kept playing and the server kept answering.
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let playlist = get("/live/good_live/source/index.m3u8").await.unwrap().text().await.unwrap();
    assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
    assert!(server.terminate(), "clean exit");
}
