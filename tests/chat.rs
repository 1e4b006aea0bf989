//! Chat over real WebSockets against a real server, on SQLite and PostgreSQL.

mod support;

use std::time::Duration;

use aether::events::Event;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::Row;
use support::ws::Ws;
use support::{Backend, TestApp};
use tokio_tungstenite::tungstenite::Message;

async fn chat_app(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |config| {
        config.chat.presence_interval_ms = 100;
        config.chat.max_violations_per_minute = 100;
    })
    .await
}

on_both_backends!(
    the_protocol_works_end_to_end_and_bad_frames_keep_the_socket_open,
    moderation_is_for_the_owner_moderators_and_admins_and_bans_persist,
    a_reconnecting_client_recovers_what_it_missed,
    presence_reaches_the_room_and_the_channel_api,
    followers_only_chat_needs_a_follow_old_enough,
);

async fn followers_only_chat_needs_a_follow_old_enough(backend: Backend) {
    let Some(app) = chat_app(backend).await else { return };
    let owner = app.signup("fanclub").await;
    app.create_channel(&owner, "fanclub_tv").await;
    let newcomer = app.signup("newcomer").await;
    let mut owner_ws = Ws::connect(&app, Some(&owner)).await;
    owner_ws.join("fanclub_tv").await;
    let mut ws = Ws::connect(&app, Some(&newcomer)).await;
    ws.join("fanclub_tv").await;

    owner_ws.send(json!({"type": "followers_only", "room": "fanclub_tv", "minutes": 0})).await;
    assert_eq!(ws.next("notice").await["text"], "followers-only mode: followers may chat");
    ws.send(json!({"type": "send", "room": "fanclub_tv", "text": "hi?"})).await;
    let refused = ws.next("error").await;
    assert_eq!(refused["code"], "followers_only", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("follow the channel"));
    owner_ws.say("fanclub_tv", "the owner always may").await;

    app.send(reqwest::Method::PUT, "/api/v1/channels/fanclub_tv/follow", Some(&newcomer), Value::Null).await;
    // A missing follow is trusted only a moment: soon after following, the follower may chat.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    ws.say("fanclub_tv", "followed now").await;

    owner_ws.send(json!({"type": "followers_only", "room": "fanclub_tv", "minutes": 10})).await;
    ws.next("notice").await;
    ws.send(json!({"type": "send", "room": "fanclub_tv", "text": "still too new"})).await;
    let refused = ws.next("error").await;
    assert_eq!(refused["code"], "followers_only");
    assert!(refused["message"].as_str().unwrap().contains("in 10 min"), "{refused}");
    // Moderators only may change it; too long is refused.
    ws.send(json!({"type": "followers_only", "room": "fanclub_tv", "minutes": null})).await;
    assert_eq!(ws.next("error").await["code"], "forbidden");
    owner_ws.send(json!({"type": "followers_only", "room": "fanclub_tv", "minutes": 200000})).await;
    assert_eq!(owner_ws.next("error").await["code"], "bad_request");

    owner_ws.send(json!({"type": "followers_only", "room": "fanclub_tv", "minutes": null})).await;
    assert_eq!(ws.next("notice").await["text"], "followers-only mode is off");
    ws.say("fanclub_tv", "anyone again").await;
    let (_, log) = app.get("/api/v1/channels/fanclub_tv/moderation-log", Some(&owner)).await;
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["followers_only", "followers_only", "followers_only"]);
    app.stop().await;
}

async fn the_protocol_works_end_to_end_and_bad_frames_keep_the_socket_open(backend: Backend) {
    let Some(app) = chat_app(backend).await else { return };
    let owner = app.signup("alice").await;
    app.create_channel(&owner, "alice_tv").await;
    let bob = app.signup("bob").await;

    let mut viewer = Ws::connect(&app, None).await;
    let joined = viewer.join("alice_tv").await;
    assert_eq!(joined["history"], json!([]));
    assert_eq!(joined["presence"]["count"], 1);
    let mut bob_ws = Ws::connect(&app, Some(&bob)).await;
    bob_ws.join("alice_tv").await;
    bob_ws.send(json!({"type": "send", "room": "alice_tv", "text": "hello <b>world</b>", "nonce": "c-1"})).await;
    let own = bob_ws.next("msg").await;
    assert_eq!(own["nonce"], "c-1");
    let seen = viewer.next("msg").await;
    assert_eq!(seen["text"], "hello <b>world</b>", "text is sent as-is; the UI escapes it");
    assert_eq!(seen["user"]["name"], "bob");
    assert!(seen.get("nonce").is_none());
    assert!(seen["ts"].as_i64().unwrap() > 1_700_000_000_000);

    viewer.send(json!({"type": "ping"})).await;
    viewer.next("pong").await;
    viewer.send(json!({"type": "send", "room": "alice_tv", "text": "hi"})).await;
    assert_eq!(viewer.next("error").await["code"], "unauthorized");

    // Bad input is answered and the socket stays open.
    viewer.raw(Message::text("{not json")).await;
    assert_eq!(viewer.next("error").await["code"], "bad_request");
    viewer.raw(Message::text(json!({"type": "send", "room": "alice_tv", "text": "x".repeat(6000)}).to_string())).await;
    assert_eq!(viewer.next("error").await["code"], "frame_too_large");
    viewer.raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(viewer.next("error").await["code"], "bad_request");
    viewer.send(json!({"type": "join", "room": "nobody_here"})).await;
    assert_eq!(viewer.next("error").await["code"], "not_found");
    viewer.send(json!({"type": "join", "room": "../etc"})).await;
    assert_eq!(viewer.next("error").await["code"], "not_found");
    bob_ws.send(json!({"type": "send", "room": "alice_tv", "text": "y".repeat(501)})).await;
    assert_eq!(bob_ws.next("error").await["code"], "invalid_message");
    viewer.send(json!({"type": "ping"})).await;
    viewer.next("pong").await;

    viewer.send(json!({"type": "leave", "room": "alice_tv"})).await;
    viewer.next("left").await;
    bob_ws.say("alice_tv", "anyone?").await;
    viewer.send(json!({"type": "ping"})).await;
    let next = viewer.next("pong").await;
    assert_eq!(next["type"], "pong", "no messages after leaving");

    // A stream event becomes a notice in the room.
    app.state.bus().publish(Event::StreamStarted { channel: "alice_tv".into(), session_id: 1 });
    assert_eq!(bob_ws.next("notice").await["text"], "the stream started");

    // An invalid token is refused at the upgrade.
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/ws?token={}", app.addr, "0".repeat(64))).await;
    assert!(refused.is_err());
    app.stop().await;
}

async fn moderation_is_for_the_owner_moderators_and_admins_and_bans_persist(backend: Backend) {
    let Some(app) = chat_app(backend).await else { return };
    let owner = app.signup("olga").await;
    app.create_channel(&owner, "olga_tv").await;
    let carol = app.signup("carol").await;
    let troll = app.signup("troll").await;

    let (status, reply) =
        app.send(reqwest::Method::PUT, "/api/v1/channels/olga_tv/moderators/carol", Some(&troll), json!({})).await;
    assert_eq!(status, 403, "{reply}");
    let (status, _) =
        app.send(reqwest::Method::PUT, "/api/v1/channels/olga_tv/moderators/carol", Some(&owner), json!({})).await;
    assert_eq!(status, 204);
    let (_, list) = app.get("/api/v1/channels/olga_tv/moderators", Some(&owner)).await;
    assert_eq!(list["moderators"], json!(["carol"]));

    let mut owner_ws = Ws::connect(&app, Some(&owner)).await;
    let mut carol_ws = Ws::connect(&app, Some(&carol)).await;
    let mut troll_ws = Ws::connect(&app, Some(&troll)).await;
    let mut you = Vec::new();
    for ws in [&mut owner_ws, &mut carol_ws, &mut troll_ws] {
        you.push(ws.join("olga_tv").await["you"].clone());
    }
    // `joined` tells each signed-in member who they are in the room (the web UI's menus).
    assert_eq!(you[0], json!({"name": "olga", "badges": ["broadcaster"], "moderator": true}));
    assert_eq!(you[1], json!({"name": "carol", "badges": ["moderator"], "moderator": true}));
    assert_eq!(you[2], json!({"name": "troll", "badges": [], "moderator": false}));
    let mut anonymous = Ws::connect(&app, None).await;
    assert!(anonymous.join("olga_tv").await.get("you").is_none());
    let spam = troll_ws.say("olga_tv", "buy followers").await;
    troll_ws.send(json!({"type": "timeout", "room": "olga_tv", "user": "carol", "seconds": 60})).await;
    assert_eq!(troll_ws.next("error").await["code"], "forbidden");

    carol_ws.send(json!({"type": "delete", "room": "olga_tv", "id": spam["id"]})).await;
    assert_eq!(owner_ws.next("deleted").await["id"], spam["id"]);
    carol_ws.send(json!({"type": "ban", "room": "olga_tv", "user": "troll"})).await;
    troll_ws.next("notice").await;
    troll_ws.send(json!({"type": "send", "room": "olga_tv", "text": "again"})).await;
    assert_eq!(troll_ws.next("error").await["code"], "banned");
    owner_ws.send(json!({"type": "slow", "room": "olga_tv", "seconds": 10})).await;
    while !carol_ws.next("notice").await["text"].as_str().unwrap().contains("slow mode") {}

    // Removing a moderator takes effect in the live room.
    let (status, _) =
        app.send(reqwest::Method::DELETE, "/api/v1/channels/olga_tv/moderators/carol", Some(&owner), json!({})).await;
    assert_eq!(status, 204);
    carol_ws.send(json!({"type": "unban", "room": "olga_tv", "user": "troll"})).await;
    assert_eq!(carol_ws.next("error").await["code"], "forbidden");

    // Audited, and the ban is in the database.
    let log = support::eventually(Duration::from_secs(5), || async {
        let (_, log) = app.get("/api/v1/channels/olga_tv/moderation-log", Some(&owner)).await;
        (log["entries"].as_array().map_or(0, Vec::len) >= 3).then_some(log)
    })
    .await
    .expect("three audited actions");
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["slow", "ban", "delete"]);
    assert_eq!(log["entries"][1]["actor"], "carol");
    assert_eq!(log["entries"][1]["target"], "troll");
    let (status, _) = app.get("/api/v1/channels/olga_tv/moderation-log", Some(&troll)).await;
    assert_eq!(status, 403);
    let bans: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM channel_bans").fetch_one(app.state.db().pool()).await.unwrap().get("n");
    assert_eq!(bans, 1);

    // After a restart the ban still holds (the room reloads it from the database).
    drop((owner_ws, carol_ws, troll_ws));
    let app = app.restart().await;
    let mut troll_ws = Ws::connect(&app, Some(&troll)).await;
    troll_ws.join("olga_tv").await;
    troll_ws.send(json!({"type": "send", "room": "olga_tv", "text": "i am back"})).await;
    assert_eq!(troll_ws.next("error").await["code"], "banned");
    app.stop().await;
}

async fn a_reconnecting_client_recovers_what_it_missed(backend: Backend) {
    let Some(app) = chat_app(backend).await else { return };
    let owner = app.signup("rita").await;
    app.create_channel(&owner, "rita_tv").await;
    let mut talker = Ws::connect(&app, Some(&owner)).await;
    talker.join("rita_tv").await;
    let mut viewer = Ws::connect(&app, None).await;
    viewer.join("rita_tv").await;
    talker.say("rita_tv", "first").await;
    let last_seen = viewer.next("msg").await["id"].as_str().unwrap().to_owned();
    drop(viewer);
    talker.say("rita_tv", "second").await;
    talker.say("rita_tv", "third").await;

    let mut back = Ws::connect(&app, None).await;
    back.send(json!({"type": "join", "room": "rita_tv", "since": last_seen})).await;
    let joined = back.next("joined").await;
    assert_eq!(joined["recovered"], true);
    let texts: Vec<&str> = joined["history"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["second", "third"]);

    let mut lost = Ws::connect(&app, None).await;
    lost.send(json!({"type": "join", "room": "rita_tv", "since": "zz-1"})).await;
    let joined = lost.next("joined").await;
    assert_eq!(joined["recovered"], false, "an id from another epoch is never a continuation");
    assert_eq!(joined["history"].as_array().unwrap().len(), 3);
    app.stop().await;
}

async fn presence_reaches_the_room_and_the_channel_api(backend: Backend) {
    let Some(app) = chat_app(backend).await else { return };
    let owner = app.signup("pia").await;
    app.create_channel(&owner, "pia_tv").await;
    let mut first = Ws::connect(&app, Some(&owner)).await;
    first.join("pia_tv").await;
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut ws = Ws::connect(&app, None).await;
        ws.join("pia_tv").await;
        others.push(ws);
    }
    let counted = support::eventually(Duration::from_secs(5), || async {
        let (_, channel) = app.get("/api/v1/channels/pia_tv", None).await;
        (channel["viewers"] == 4).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the channel API shows 4 viewers");
    loop {
        let presence = first.next("presence").await;
        if presence["count"] == 4 {
            assert_eq!(presence["users"], 1);
            break;
        }
    }
    drop(others);
    loop {
        if first.next("presence").await["count"] == 1 {
            break;
        }
    }
    app.stop().await;
}

/// A server for floods of large messages (so that the kernel's socket buffers, several MB, fill
/// quickly), with `owner`'s channel `room`; returns it and the owner's token.
async fn flood_app(outbox_frames: usize, owner: &str, room: &str) -> (TestApp, String) {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.chat.outbox_frames = outbox_frames;
        config.chat.max_message_chars = 8000;
        config.chat.max_frame_bytes = 16_384;
        config.chat.messages_per_second = 100_000.0;
        config.chat.user_messages_per_second = 100_000.0;
    })
    .await
    .unwrap();
    let token = app.signup(owner).await;
    app.create_channel(&token, room).await;
    (app, token)
}

/// A client with a 4 KiB receive window, joined to `room`.
async fn small_window_client(app: &TestApp, room: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(app.addr).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", app.addr), stream).await.unwrap();
    socket.send(Message::text(json!({"type": "join", "room": room}).to_string())).await.unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_while_others_keep_up() {
    let (app, owner) = flood_app(64, "sam", "sam_tv").await;
    // A reader with a tiny receive window that never reads.
    let _stuck = small_window_client(&app, "sam_tv").await;

    let mut reader = Ws::connect(&app, None).await;
    reader.join("sam_tv").await;
    let mut talker = Ws::connect(&app, Some(&owner)).await;
    talker.join("sam_tv").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = "z".repeat(7900);
    for i in 0..1500 {
        talker.send(json!({"type": "send", "room": "sam_tv", "text": format!("{i} {text}")})).await;
        if i % 10 == 9 {
            // The reader (and the talker, who gets its own messages) keep up, in order.
            for j in i - 9..=i {
                let message = reader.next("msg").await;
                assert!(message["text"].as_str().unwrap().starts_with(&format!("{j} ")), "{}", message["text"]);
                talker.next("msg").await;
            }
        }
    }
    let disconnected = support::eventually(Duration::from_secs(5), || async {
        let metrics = app.client.get(app.url("/metrics")).send().await.ok()?.text().await.ok()?;
        metrics.lines().any(|l| l.starts_with("aether_chat_slow_consumers_total") && !l.ends_with(" 0")).then_some(())
    })
    .await;
    assert!(disconnected.is_some(), "the stuck client was closed as a slow consumer");
    app.stop().await;
}

/// A WebSocket client at the byte level, for what a well-behaved library never sends.
struct RawWs {
    stream: tokio::net::TcpStream,
    buffered: Vec<u8>,
}

impl RawWs {
    async fn connect(app: &TestApp) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            app.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            response.push(byte[0]);
        }
        let response = String::from_utf8(response).unwrap();
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        // The RFC's own example key and accept value.
        assert!(
            response.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{response}"
        );
        RawWs { stream, buffered: Vec::new() }
    }

    async fn send(&mut self, first: u8, payload: &[u8], masked: bool) {
        use tokio::io::AsyncWriteExt;
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![first];
        let flag = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => frame.push(flag | n as u8),
            n if n <= 65535 => {
                frame.push(flag | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(flag | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        let _ = self.stream.write_all(&frame).await;
    }

    /// The next server frame: (opcode, payload); `None` once the server has closed the TCP side.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buffered.len() >= 2 {
                let (len, header) = match self.buffered[1] & 0x7f {
                    126 if self.buffered.len() >= 4 => {
                        (u16::from_be_bytes([self.buffered[2], self.buffered[3]]) as usize, 4)
                    }
                    127 if self.buffered.len() >= 10 => {
                        (u64::from_be_bytes(self.buffered[2..10].try_into().unwrap()) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                assert_eq!(self.buffered[1] & 0x80, 0, "server frames are not masked");
                if len != usize::MAX && self.buffered.len() >= header + len {
                    let opcode = self.buffered[0] & 0x0f;
                    let payload = self.buffered[header..header + len].to_vec();
                    self.buffered.drain(..header + len);
                    return Some((opcode, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .expect("the server answers within 5 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The close frame's code, skipping other frames.
    async fn close_code(&mut self) -> u16 {
        loop {
            let (opcode, payload) = self.next().await.expect("a close frame before the end");
            if opcode == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_layer_follows_rfc_6455_and_closes_broken_clients_alone() {
    let app = chat_app(Backend::Sqlite).await.unwrap();
    let owner = app.signup("rawson").await;
    app.create_channel(&owner, "raw_tv").await;
    let mut bystander = Ws::connect(&app, None).await;
    bystander.join("raw_tv").await;

    // Not a WebSocket request, or not version 13: plain HTTP errors.
    let plain = app.client.get(app.url("/ws")).send().await.unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.unwrap().contains("websocket_required"));
    let old = app
        .client
        .get(app.url("/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 426);

    // Ping -> pong with the same payload; a message in three fragments with a ping between
    // them; then a close is echoed and the TCP side ends.
    let mut raw = RawWs::connect(&app).await;
    raw.send(0x89, b"are you there", true).await;
    assert_eq!(raw.next().await, Some((0xA, b"are you there".to_vec())));
    raw.send(0x01, br#"{"type":"jo"#, true).await;
    raw.send(0x00, br#"in","room":"#, true).await;
    raw.send(0x89, b"", true).await;
    raw.send(0x80, br#""raw_tv"}"#, true).await;
    assert_eq!(raw.next().await.map(|(op, _)| op), Some(0xA));
    let (opcode, joined) = raw.next().await.unwrap();
    assert_eq!(opcode, 0x1);
    assert_eq!(serde_json::from_slice::<Value>(&joined).unwrap()["type"], "joined");
    raw.send(0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(raw.close_code().await, 1000);
    assert_eq!(raw.next().await, None, "the server ends the connection after the close");

    // Broken frames close that connection with the RFC's code, and only that one.
    for (first, payload, masked, code) in [
        (0x81, b"{}".to_vec(), false, 1002),       // unmasked client frame
        (0x81, vec![0xff, 0xfe], true, 1007),      // text that is not UTF-8
        (0x81, vec![b' '; 70 * 1024], true, 1009), // over the 64 KiB ceiling
        (0x83, b"x".to_vec(), true, 1002),         // reserved opcode
        (0x80, b"x".to_vec(), true, 1002),         // continuation of nothing
    ] {
        let mut raw = RawWs::connect(&app).await;
        raw.send(first, &payload, masked).await;
        assert_eq!(raw.close_code().await, code, "first byte {first:#x}");
    }
    // A frame too large for chat but within the ceiling is answered, and the socket stays.
    let mut raw = RawWs::connect(&app).await;
    raw.send(0x81, &vec![b' '; 8 * 1024], true).await;
    let (_, error) = raw.next().await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&error).unwrap()["code"], "frame_too_large");
    raw.send(0x81, br#"{"type":"ping"}"#, true).await;
    let (_, pong) = raw.next().await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&pong).unwrap()["type"], "pong");

    // The well-behaved client saw none of it and still chats.
    let owner_ws = &mut Ws::connect(&app, Some(&owner)).await;
    owner_ws.join("raw_tv").await;
    owner_ws.say("raw_tv", "still here").await;
    assert_eq!(bystander.next("msg").await["text"], "still here");
    app.stop().await;
}

/// The next chat message's text at a raw client, skipping other frames.
async fn next_text(raw: &mut RawWs) -> String {
    loop {
        let (opcode, payload) = raw.next().await.expect("the socket is open");
        let frame: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        if opcode == 0x1 && frame["type"] == "msg" {
            return frame["text"].as_str().unwrap().to_owned();
        }
    }
}

/// A server with a 1 s window (`groups` groups; turns above `turn_members` members) and a channel
/// `room` of `owner`'s, whose token comes back.
async fn paced_app(groups: usize, turn_members: usize, owner: &str, room: &str) -> (TestApp, String) {
    let app = TestApp::spawn_with(Backend::Sqlite, move |config| {
        config.chat.coalesce_ms = 1000;
        config.chat.coalesce_groups = groups;
        config.chat.coalesce_turn_members = turn_members;
    })
    .await
    .unwrap();
    let token = app.signup(owner).await;
    app.create_channel(&token, room).await;
    (app, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_connection_gets_a_write_per_window_and_a_quiet_one_gets_its_frame_at_once() {
    let (app, owner) = paced_app(1, 1000, "pacer", "pace_tv").await;
    let mut reader = RawWs::connect(&app).await;
    reader.send(0x81, json!({"type": "join", "room": "pace_tv"}).to_string().as_bytes(), true).await;
    let mut talker = Ws::connect(&app, Some(&owner)).await;
    talker.join("pace_tv").await;
    // Let the writes of the joins (history, then presence at the next tick, up to 1 s later) and
    // their window pass, so that the room is quiet.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Quiet: nothing written for longer than the window, so the frame leaves at once.
    let sent = std::time::Instant::now();
    talker.send(json!({"type": "send", "room": "pace_tv", "text": "first"})).await;
    assert_eq!(next_text(&mut reader).await, "first");
    assert!(sent.elapsed() < Duration::from_millis(700), "a quiet connection's frame is not held back");

    // Busy: what follows within the window waits for it, and leaves as one write.
    let written = std::time::Instant::now();
    talker.send(json!({"type": "send", "room": "pace_tv", "text": "second"})).await;
    talker.send(json!({"type": "send", "room": "pace_tv", "text": "third"})).await;
    assert_eq!(next_text(&mut reader).await, "second");
    assert!(written.elapsed() >= Duration::from_millis(800), "held for the window: {:?}", written.elapsed());
    assert!(!reader.buffered.is_empty(), "the third message came in the same write as the second");
    assert_eq!(next_text(&mut reader).await, "third");

    // The delivery latency histogram saw the wait (frames that waited over half a second).
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |prefix: &str| -> f64 {
        let line = metrics.lines().find(|line| line.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let within_half_a_second = value("aether_chat_delivery_seconds_bucket{le=\"0.5\"}");
    assert!(value("aether_chat_delivery_seconds_count") > within_half_a_second, "{metrics}");
    app.stop().await;
}

/// When `text` reaches `ws` (skipping other frames).
async fn arrival(ws: &mut Ws, text: &str) -> std::time::Instant {
    loop {
        if ws.next("msg").await["text"] == text {
            return std::time::Instant::now();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_room_takes_its_writes_in_turns_spread_over_the_window() {
    // Two members make a big room here: its writes go in two turns, half a window apart.
    let (app, owner) = paced_app(2, 1, "turner", "turns_tv").await;
    let mut talker = Ws::connect(&app, Some(&owner)).await;
    talker.join("turns_tv").await;
    // Consecutive connections, so one in each group.
    let (mut a, mut b) = (Ws::connect(&app, None).await, Ws::connect(&app, None).await);
    a.join("turns_tv").await;
    b.join("turns_tv").await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // quiet, as above
    let apart = |x: std::time::Instant, y: std::time::Instant| x.max(y) - x.min(y);

    // Quiet: everyone at once.
    let sent = std::time::Instant::now();
    talker.send(json!({"type": "send", "room": "turns_tv", "text": "first"})).await;
    let (first_a, first_b) = tokio::join!(arrival(&mut a, "first"), arrival(&mut b, "first"));
    assert!(first_a.max(first_b) - sent < Duration::from_millis(400), "a quiet room's frame is not held back");

    // Busy: each group on its own turn, one half a window after the other.
    talker.send(json!({"type": "send", "room": "turns_tv", "text": "second"})).await;
    let (second_a, second_b) = tokio::join!(arrival(&mut a, "second"), arrival(&mut b, "second"));
    assert!(apart(second_a, second_b) >= Duration::from_millis(300), "{:?}", apart(second_a, second_b));

    // And from then on one write a window for each, still half a window apart.
    talker.send(json!({"type": "send", "room": "turns_tv", "text": "third"})).await;
    let (third_a, third_b) = tokio::join!(arrival(&mut a, "third"), arrival(&mut b, "third"));
    assert!(third_a - second_a >= Duration::from_millis(800), "{:?}", third_a - second_a);
    assert!(third_b - second_b >= Duration::from_millis(800), "{:?}", third_b - second_b);
    assert!(apart(third_a, third_b) >= Duration::from_millis(300), "{:?}", apart(third_a, third_b));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_within_a_window_gets_each_message_once() {
    // One group: the late member joins one that still owes what was sent before it came.
    let (app, owner) = paced_app(1, 1000, "joiner", "late_tv").await;
    let mut talker = Ws::connect(&app, Some(&owner)).await;
    talker.join("late_tv").await;
    let mut early = Ws::connect(&app, None).await;
    early.join("late_tv").await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // quiet, as above
    talker.send(json!({"type": "send", "room": "late_tv", "text": "a"})).await;
    arrival(&mut early, "a").await;
    // "b" waits for the window; the late member joins meanwhile and finds it in the history.
    talker.send(json!({"type": "send", "room": "late_tv", "text": "b"})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = Ws::connect(&app, None).await;
    let joined = late.join("late_tv").await;
    talker.send(json!({"type": "send", "room": "late_tv", "text": "c"})).await;

    let mut seen: Vec<String> =
        joined["history"].as_array().unwrap().iter().map(|msg| msg["text"].as_str().unwrap().to_owned()).collect();
    while seen.last().map(String::as_str) != Some("c") {
        seen.push(late.next("msg").await["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["a", "b", "c"], "the history, then what came after, each once");
    arrival(&mut early, "b").await;
    arrival(&mut early, "c").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_that_keeps_up_gets_every_frame_whole_and_in_order() {
    let (app, owner) = flood_app(100_000, "slowpoke", "slow_tv").await;
    // A reader with a small receive window that reads slowly: the server's writes into its
    // socket come back short or refused, and the rest must follow, in order, as whole frames.
    let mut slow = small_window_client(&app, "slow_tv").await;

    let talker = Ws::connect(&app, Some(&owner)).await;
    let (mut sink, mut echoes) = talker.socket.split();
    sink.send(Message::text(json!({"type": "join", "room": "slow_tv"}).to_string())).await.unwrap();
    // The talker gets its own messages too: keep reading them.
    tokio::spawn(async move { while let Some(Ok(_)) = echoes.next().await {} });
    // More than the server's socket send buffer (up to 4 MB) and the reader's window hold.
    let count = 3000;
    let filler = "y".repeat(3000);
    let sender = tokio::spawn(async move {
        for i in 0..count {
            let text = format!("{i} {filler}");
            sink.send(Message::text(json!({"type": "send", "room": "slow_tv", "text": text}).to_string()))
                .await
                .unwrap();
        }
        sink
    });
    // Not reading at first, so that the server's socket fills up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut next = 0;
    while next < count {
        let message = tokio::time::timeout(Duration::from_secs(20), slow.next())
            .await
            .expect("frames keep coming")
            .expect("the socket stays open")
            .expect("every frame is whole");
        let Message::Text(text) = message else { continue };
        let frame: Value = serde_json::from_str(&text).expect("every frame is whole JSON");
        if frame["type"] != "msg" {
            continue;
        }
        let text = frame["text"].as_str().unwrap();
        assert!(text.starts_with(&format!("{next} ")) && text.len() == format!("{next} ").len() + 3000, "in order");
        next += 1;
        if next % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(sender.await.unwrap());
    app.stop().await;
}
