//! WHIP and WHEP over HTTP against a real server, on SQLite and PostgreSQL: offers made by str0m
//! (an independent client of the endpoint), refusals with clear statuses and JSON errors, the
//! go-live a WHIP session opens and its end on DELETE, and peers that never connect cleaned up
//! after the ICE timeout (sessions back to zero). Media from real browsers is in web/e2e.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use str0m::Rtc;
use str0m::media::{Direction, MediaKind};
use support::{Backend, TestApp, eventually};

on_both_backends!(
    whip_refuses_bad_offers_keys_and_a_second_publisher_and_delete_ends_the_broadcast,
    whep_refuses_channels_that_are_not_live_and_unknown_sessions,
    peers_that_never_connect_are_cleaned_up_after_the_ice_timeout,
);

/// A str0m viewer: negotiates over WHEP and drives ICE and DTLS on a loopback socket; true once
/// connected (within `limit`).
async fn viewer_connects(app: &TestApp, channel: &str, limit: Duration, delete: bool) -> bool {
    use str0m::change::SdpAnswer;
    use str0m::net::{Protocol, Receive};
    use str0m::{Candidate, Event, Input, Output};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = Rtc::builder().clear_codecs().enable_h264(true).enable_opus(true, false).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let (status, headers, answer) = post_sdp(app, &format!("/api/whep/{channel}"), None, offer.to_sdp_string()).await;
    assert_eq!(status, 201, "{answer}");
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    let until = Instant::now() + limit;
    let mut buffer = vec![0u8; 2048];
    let mut connected = false;
    while !connected && Instant::now() < until {
        let deadline = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(at) => break at,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::Connected) => connected = true,
                Output::Event(_) => {}
            }
        };
        let wait = deadline.min(until).saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        if let Ok(Ok((len, source))) = tokio::time::timeout(wait, socket.recv_from(&mut buffer)).await {
            let contents = buffer[..len].try_into().unwrap();
            let receive = Receive { proto: Protocol::Udp, source, destination: local, contents };
            rtc.handle_input(Input::Receive(Instant::now(), receive)).unwrap();
        } else {
            rtc.handle_input(Input::Timeout(Instant::now())).unwrap();
        }
    }
    if delete {
        let location = headers["location"].to_str().unwrap().to_owned();
        app.client.delete(app.url(&location)).send().await.unwrap();
    }
    connected
}

/// Bound to every interface (the default, 0.0.0.0), the datagrams' destination is not a
/// candidate address; peers connect all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_connect_to_an_endpoint_bound_to_every_interface() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.webrtc.udp_listen = "0.0.0.0:0".parse().unwrap();
    })
    .await
    else {
        return;
    };
    let owner = app.signup("anyiface").await;
    let key = app.create_channel(&owner, "any_iface").await;
    let (status, _, answer) = post_sdp(&app, "/api/whip", Some(&key), offer(Direction::SendOnly, true)).await;
    assert_eq!(status, 201);
    let port = app.state.webrtc().unwrap().local_addr().port();
    assert!(answer.contains(&format!("127.0.0.1 {port} typ host")), "loopback is a candidate: {answer}");
    assert!(viewer_connects(&app, "any_iface", Duration::from_secs(10), true).await, "ICE and DTLS completed");
}

/// A viewer that connected and then vanished (no DELETE, no DTLS close) ends once it has been
/// silent for the ICE timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_viewer_that_vanishes_is_cleaned_up() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |config| config.webrtc.ice_timeout_seconds = 2).await else {
        return;
    };
    let owner = app.signup("vanishing").await;
    let key = app.create_channel(&owner, "vanishing").await;
    // An RTMP publisher keeps the channel live (a WHIP one would time out too).
    let _publisher = support::Publisher::start(app.rtmp_addr, &key, 30);
    let live = eventually(Duration::from_secs(15), || async {
        let (_, channel) = app.get("/api/v1/channels/vanishing", None).await;
        (channel["live"] == true).then_some(())
    })
    .await;
    assert!(live.is_some());
    assert!(viewer_connects(&app, "vanishing", Duration::from_secs(10), false).await);
    assert_eq!(app.state.webrtc().unwrap().counts(), (0, 1));
    let endpoint = app.state.webrtc().unwrap().clone();
    let gone = eventually(Duration::from_secs(15), || async { (endpoint.counts().1 == 0).then_some(()) }).await;
    assert!(gone.is_some(), "sessions: {:?}", endpoint.counts());
}

/// Runs the aiortc client (tests/support/aiortc_client.py) and returns its JSON line.
fn aiortc(args: &[&str]) -> std::process::Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/aiortc_client.py");
    std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

fn report(child: std::process::Child) -> Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("aiortc said {stdout:?}; stderr: {}", String::from_utf8_lossy(&out.stderr)))
}

fn aiortc_present() -> bool {
    let present = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import aiortc"])
        .status()
        .is_ok_and(|status| status.success());
    assert!(present || std::env::var_os("CI").is_none(), "python3-aiortc is missing (scripts/install-deps.sh test)");
    present
}

/// aiortc, a second WebRTC implementation: it publishes H.264 + Opus over WHIP (HLS gets both,
/// the Opus as AAC) and plays the stream back over WHEP, decoding pictures and sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publishes_over_whip_and_plays_over_whep() {
    if !aiortc_present() || !support::gstreamer_present() {
        return;
    }
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let owner = app.signup("aiortc_owner").await;
    let key = app.create_channel(&owner, "aiortc_chan").await;
    let base = app.url("");
    let base = base.trim_end_matches('/').to_owned();
    // aiortc 1.4 (Debian's) ignores keyframe requests: its pictures start at x264's own keyframes
    // (a new one each time its bitrate changes by a tenth, every few seconds), so the viewer
    // watches long enough to meet a few.
    let publisher = aiortc(&["publish", &base, &key, "24"]);
    let master = eventually(Duration::from_secs(20), || async {
        let response = app.client.get(app.url("/live/aiortc_chan/master.m3u8")).send().await.ok()?;
        let text = response.text().await.ok()?;
        (text.contains("mp4a.40.2") && text.contains("avc1.")).then_some(text)
    })
    .await;
    assert!(master.is_some(), "HLS has H.264 and the AAC made from aiortc's Opus");
    let (_, channel) = app.get("/api/v1/channels/aiortc_chan", None).await;
    assert_eq!(channel["live"], true);
    assert_eq!(channel["stream"]["video_codec"].as_str().map(|c| c.starts_with("H.264")), Some(true), "{channel}");

    let viewer = report(aiortc(&["play", &base, "aiortc_chan", "12"]));
    assert_eq!(viewer["state"], "connected", "{viewer}");
    assert!(viewer["video"].as_u64().unwrap() > 30, "pictures decoded: {viewer}");
    assert!(viewer["audio"].as_u64().unwrap() > 50, "sound decoded: {viewer}");
    assert_eq!(viewer["width"], 640, "{viewer}");
    assert_eq!(viewer["delete"], 200, "{viewer}");

    let published = report(publisher);
    assert_eq!(
        (published["state"].as_str(), published["delete"].as_u64()),
        (Some("connected"), Some(200)),
        "{published}"
    );
    let offline = eventually(Duration::from_secs(10), || async {
        let (_, channel) = app.get("/api/v1/channels/aiortc_chan", None).await;
        (channel["live"] == false).then_some(())
    })
    .await;
    assert!(offline.is_some(), "the DELETE ended the broadcast");
}

/// An offer as a client makes it: `kinds` sent (WHIP) or received (WHEP), Opus and H.264 or
/// only `video_codec` for video.
fn offer(direction: Direction, h264: bool) -> String {
    let mut builder = Rtc::builder().clear_codecs().enable_opus(true, false);
    builder = if h264 { builder.enable_h264(true) } else { builder.enable_vp8(true) };
    let mut rtc = builder.build(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, direction, None, None, None);
    change.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, _) = change.apply().expect("an offer");
    // A host candidate, as browsers include (the server is ICE-lite and needs none).
    offer.to_sdp_string()
}

async fn post_sdp(
    app: &TestApp,
    path: &str,
    key: Option<&str>,
    body: String,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = app.client.post(app.url(path)).header("content-type", "application/sdp").body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

fn code(body: &str) -> String {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON error, got {body:?}"));
    json["error"]["code"].as_str().unwrap_or_default().to_owned()
}

async fn whip_refuses_bad_offers_keys_and_a_second_publisher_and_delete_ends_the_broadcast(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let owner = app.signup("whipper").await;
    let key = app.create_channel(&owner, "whip_chan").await;
    let good = offer(Direction::SendOnly, true);

    let (status, headers, body) = post_sdp(&app, "/api/whip", None, good.clone()).await;
    assert_eq!((status, code(&body).as_str()), (401, "unauthorized"), "no token");
    assert_eq!(headers["access-control-allow-origin"], "*", "errors carry CORS headers too");
    let (status, _, body) = post_sdp(&app, "/api/whip", Some("nope"), good.clone()).await;
    assert_eq!((status, code(&body).as_str()), (401, "invalid_stream_key"));
    let (status, _, body) = post_sdp(&app, "/api/whip", Some(&key), "v=0\r\nthis is not sdp".into()).await;
    assert_eq!((status, code(&body).as_str()), (400, "invalid_sdp"), "{body}");
    let no_media = good.split("m=").next().unwrap().to_owned();
    let (status, _, body) = post_sdp(&app, "/api/whip", Some(&key), no_media).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = post_sdp(&app, "/api/whip", Some(&key), offer(Direction::SendOnly, false)).await;
    assert_eq!((status, code(&body).as_str()), (406, "unsupported_codec"), "VP8 only");
    assert!(body.contains("H.264"), "the message says what to send: {body}");
    let wrong_type = app.client.post(app.url("/api/whip")).bearer_auth(&key).body(good.clone()).send().await.unwrap();
    assert_eq!(wrong_type.status(), 415);
    let preflight = app.client.request(reqwest::Method::OPTIONS, app.url("/api/whip")).send().await.unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(preflight.headers()["access-control-allow-headers"].to_str().unwrap().contains("Authorization"));
    let (_, channel) = app.get("/api/v1/channels/whip_chan", None).await;
    assert_eq!(channel["live"], false, "nothing refused went live");

    let (status, headers, answer) = post_sdp(&app, "/api/whip", Some(&key), good.clone()).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(headers["content-type"], "application/sdp");
    assert!(answer.starts_with("v=0") && answer.contains("a=ice-lite") && answer.contains("H264"), "{answer}");
    let candidate = format!("{} typ host", app.state.webrtc().unwrap().local_addr().port());
    assert!(answer.contains(&candidate), "the answer names the endpoint's UDP port: {answer}");
    let location = headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/api/whip/"), "{location}");
    assert!(headers.contains_key("etag"));
    let (_, channel) = app.get("/api/v1/channels/whip_chan", None).await;
    assert_eq!(channel["live"], true, "a WHIP session takes the channel live");

    let (status, _, body) = post_sdp(&app, "/api/whip", Some(&key), good.clone()).await;
    assert_eq!((status, code(&body).as_str()), (409, "already_live"));

    // Trickle is accepted, an ICE restart refused, and a fragment needs its content type.
    let patch = |content_type: &'static str, if_match: Option<&'static str>| {
        let mut request = app.client.patch(app.url(&location)).header("content-type", content_type);
        if let Some(value) = if_match {
            request = request.header("if-match", value);
        }
        request.body(
            "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
        )
    };
    assert_eq!(patch("application/trickle-ice-sdpfrag", None).send().await.unwrap().status(), 204);
    let restarted = patch("application/trickle-ice-sdpfrag", Some("*")).send().await.unwrap();
    assert_eq!(restarted.status(), 200, "an ICE restart");
    assert_eq!(restarted.headers()["content-type"], "application/trickle-ice-sdpfrag");
    assert_ne!(restarted.headers()["etag"], headers["etag"], "new credentials, new ETag");
    let fragment = restarted.text().await.unwrap();
    assert!(
        fragment.contains("a=ice-ufrag:") && fragment.contains("a=ice-pwd:") && fragment.contains("typ host"),
        "{fragment}"
    );
    let no_credentials = app
        .client
        .patch(app.url(&location))
        .header("content-type", "application/trickle-ice-sdpfrag")
        .header("if-match", "*")
        .body("a=end-of-candidates\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(no_credentials.status(), 400);
    assert_eq!(patch("text/plain", None).send().await.unwrap().status(), 415);

    let deleted = app.client.delete(app.url(&location)).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    let offline = eventually(Duration::from_secs(10), || async {
        let (_, channel) = app.get("/api/v1/channels/whip_chan", None).await;
        (channel["live"] == false).then_some(())
    })
    .await;
    assert!(offline.is_some(), "DELETE ends the broadcast");
    assert_eq!(app.client.delete(app.url(&location)).send().await.unwrap().status(), 404, "gone once ended");
    assert_eq!(app.state.webrtc().unwrap().counts(), (0, 0));
}

async fn whep_refuses_channels_that_are_not_live_and_unknown_sessions(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let owner = app.signup("whepowner").await;
    let key = app.create_channel(&owner, "whep_chan").await;
    let watch = offer(Direction::RecvOnly, true);
    let (status, _, body) = post_sdp(&app, "/api/whep/whep_chan", None, watch.clone()).await;
    assert_eq!((status, code(&body).as_str()), (404, "not_found"), "not live: {body}");
    let (status, _, body) = post_sdp(&app, "/api/whep/no_such_chan", None, watch.clone()).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = post_sdp(&app, "/api/whep/whep_chan", None, "garbage".into()).await;
    assert_eq!(status, 400, "{body}");
    for path in ["/api/whep/whep_chan/0123456789abcdef", "/api/whip/0123456789abcdef"] {
        assert_eq!(app.client.delete(app.url(path)).send().await.unwrap().status(), 404);
        let patched = app
            .client
            .patch(app.url(path))
            .header("content-type", "application/trickle-ice-sdpfrag")
            .body("a=end-of-candidates\r\n")
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 404);
    }

    // Live (a WHIP session opened it): a viewer's offer is answered, VP8-only is refused.
    let (status, _, _) = post_sdp(&app, "/api/whip", Some(&key), offer(Direction::SendOnly, true)).await;
    assert_eq!(status, 201);
    let (status, headers, answer) = post_sdp(&app, "/api/whep/whep_chan", None, watch.clone()).await;
    assert_eq!(status, 201, "{answer}");
    let location = headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/api/whep/whep_chan/"), "{location}");
    assert!(answer.contains("a=sendonly"), "the server sends: {answer}");
    let (status, _, body) = post_sdp(&app, "/api/whep/whep_chan", None, offer(Direction::RecvOnly, false)).await;
    assert_eq!((status, code(&body).as_str()), (406, "unsupported_codec"));
    // A rendition by name: the source is one (no ladder has started without media).
    let (status, _, body) = post_sdp(&app, "/api/whep/whep_chan?rendition=720p", None, watch.clone()).await;
    assert_eq!((status, code(&body).as_str()), (404, "no_such_rendition"), "{body}");
    assert!(body.contains("source"), "the error names what there is: {body}");
    let (status, headers, _) = post_sdp(&app, "/api/whep/whep_chan?rendition=source", None, watch.clone()).await;
    assert_eq!(status, 201);
    let chosen = headers["location"].to_str().unwrap().to_owned();
    assert_eq!(app.client.delete(app.url(&chosen)).send().await.unwrap().status(), 200);
    // A viewer session is not a publisher's: the WHIP path does not end it.
    let id = location.rsplit('/').next().unwrap();
    assert_eq!(app.client.delete(app.url(&format!("/api/whip/{id}"))).send().await.unwrap().status(), 404);
    assert_eq!(app.client.delete(app.url(&location)).send().await.unwrap().status(), 200);
}

async fn peers_that_never_connect_are_cleaned_up_after_the_ice_timeout(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |config| {
        config.webrtc.ice_timeout_seconds = 1;
        config.webrtc.max_sessions = 4;
    })
    .await
    else {
        return;
    };
    let owner = app.signup("vanisher").await;
    let key = app.create_channel(&owner, "vanish_chan").await;
    let (status, _, _) = post_sdp(&app, "/api/whip", Some(&key), offer(Direction::SendOnly, true)).await;
    assert_eq!(status, 201);
    for _ in 0..3 {
        let (status, _, _) = post_sdp(&app, "/api/whep/vanish_chan", None, offer(Direction::RecvOnly, true)).await;
        assert_eq!(status, 201);
    }
    let endpoint = app.state.webrtc().unwrap().clone();
    assert_eq!(endpoint.counts(), (1, 3));
    // At webrtc.max_sessions (4 here) the next offer is refused, and nothing is opened for it.
    let (status, _, body) = post_sdp(&app, "/api/whep/vanish_chan", None, offer(Direction::RecvOnly, true)).await;
    assert_eq!((status, code(&body).as_str()), (503, "busy"), "{body}");
    assert_eq!(endpoint.counts(), (1, 3));
    // Nobody connects and nobody says DELETE: every session ends, and the broadcast with its publisher.
    let cleaned = eventually(Duration::from_secs(10), || async { (endpoint.counts() == (0, 0)).then_some(()) }).await;
    assert!(cleaned.is_some(), "sessions left: {:?}", endpoint.counts());
    let offline = eventually(Duration::from_secs(10), || async {
        let (_, channel) = app.get("/api/v1/channels/vanish_chan", None).await;
        (channel["live"] == false).then_some(())
    })
    .await;
    assert!(offline.is_some());
    // (The gauge's value is shared by every server in this test process; its presence is checked.)
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("aether_webrtc_sessions{role=\"viewer\"}"), "{metrics}");
}

/// The ICE-TCP port shuts a connection whose first packet is no STUN request of a session, and
/// a hostile length prefix costs nothing; the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_closes_connections_that_are_not_a_sessions() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let tcp = app.state.webrtc().unwrap().tcp_addr().expect("ICE-TCP is on by default");
    for garbage in [&b"\x00\x05hello"[..], &b"\xff\xffGET / HTTP/1.1\r\n\r\n"[..]] {
        let mut stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(8), stream.read(&mut buffer)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
    }
    let (status, _) = app.get("/api/v1/server", None).await;
    assert_eq!(status, 200);
}
