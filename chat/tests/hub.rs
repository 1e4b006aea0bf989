//! The hub driven through sessions, as the WebSocket driver does, with an in-memory directory.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_chat::{
    BoxFuture, ChatConfig, ChatUser, CloseReason, Control, Directory, Hub, ModerationAction, ModerationRecord,
    RoomSeed, Session,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Default)]
struct Rooms {
    records: Mutex<Vec<ModerationRecord>>,
}

impl Directory for Rooms {
    fn load_room(&self, room: String) -> BoxFuture<Result<Option<RoomSeed>, String>> {
        Box::pin(async move {
            Ok(match room.as_str() {
                "nowhere" => None,
                _ => Some(RoomSeed {
                    owner: "owner".into(),
                    moderators: HashSet::from(["mod".into()]),
                    banned: HashSet::from(["outlaw".into()]),
                }),
            })
        })
    }

    fn record(&self, record: ModerationRecord) -> BoxFuture<()> {
        self.records.lock().unwrap().push(record);
        Box::pin(async {})
    }
}

fn config() -> ChatConfig {
    ChatConfig { shards: 2, history: 5, presence_interval_ms: 100, ..ChatConfig::default() }
}

fn start(config: ChatConfig) -> (Hub, Arc<Rooms>) {
    let rooms = Arc::new(Rooms::default());
    let hub = Hub::start(config, rooms.clone(), None, &TaskTracker::new(), CancellationToken::new());
    (hub, rooms)
}

fn user(id: i64, name: &str) -> Option<ChatUser> {
    Some(ChatUser { id, name: name.into(), admin: false, blocked: Default::default() })
}

struct Client {
    session: Session,
    inbox: Arc<Control>,
    queued: std::collections::VecDeque<Value>,
}

impl Client {
    fn new(hub: &Hub, user: Option<ChatUser>) -> Client {
        let (session, inbox) = Session::new(hub.clone(), user);
        Client { session, inbox, queued: Default::default() }
    }

    /// The next frame's JSON (the outbox holds whole WebSocket frames).
    async fn recv(&mut self) -> Value {
        while self.queued.is_empty() {
            let mut batch = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), self.inbox.pop_many(&mut batch, 64)).await.expect("a frame");
            for entry in batch {
                assert_eq!(entry[0], 0x81, "whole text frames");
                let frames = aether_chat::wire::payloads(&entry);
                self.queued.extend(frames.into_iter().map(|frame| serde_json::from_slice::<Value>(frame).unwrap()));
            }
        }
        self.queued.pop_front().unwrap()
    }

    async fn send(&mut self, frame: Value) {
        self.session.handle_text(&frame.to_string()).await.unwrap();
    }

    /// The next frame of `kind`, skipping others (presence, ...).
    async fn next(&mut self, kind: &str) -> Value {
        loop {
            let value = self.recv().await;
            if value["type"] == kind {
                return value;
            }
        }
    }

    async fn join(&mut self, room: &str) -> Value {
        self.send(serde_json::json!({"type": "join", "room": room})).await;
        self.next("joined").await
    }
}

#[tokio::test]
async fn messages_reach_every_member_once_with_the_nonce_only_for_the_sender() {
    let (hub, _) = start(config());
    let mut alice = Client::new(&hub, user(1, "alice"));
    let mut viewer = Client::new(&hub, None);
    alice.join("lobby").await;
    viewer.join("lobby").await;
    alice.send(serde_json::json!({"type": "send", "room": "lobby", "text": "  hello\u{0}  ", "nonce": "n-1"})).await;
    let own = alice.next("msg").await;
    assert_eq!((own["text"].as_str(), own["nonce"].as_str()), (Some("hello"), Some("n-1")));
    let seen = viewer.next("msg").await;
    assert_eq!(seen["text"], "hello");
    assert!(seen.get("nonce").is_none());
    assert_eq!(seen["id"], own["id"]);
    assert_eq!(seen["user"]["name"], "alice");
}

#[tokio::test]
async fn history_on_join_and_recovery_with_since() {
    let (hub, _) = start(config());
    let mut alice = Client::new(&hub, user(1, "alice"));
    alice.join("lobby").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        alice.send(serde_json::json!({"type": "send", "room": "lobby", "text": format!("m{i}")})).await;
        ids.push(alice.next("msg").await["id"].as_str().unwrap().to_owned());
    }
    let mut late = Client::new(&hub, None);
    let joined = late.join("lobby").await;
    let texts: Vec<&str> = joined["history"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["m0", "m1", "m2"]);

    // Reconnect after m0: exactly m1 and m2 come back.
    let mut back = Client::new(&hub, None);
    back.send(serde_json::json!({"type": "join", "room": "lobby", "since": ids[0]})).await;
    let joined = back.next("joined").await;
    assert_eq!(joined["recovered"], true);
    let replayed: Vec<&str> = joined["history"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(replayed, [ids[1].as_str(), ids[2].as_str()]);

    // A gap older than the history (5 kept) cannot be recovered: say so, send the recent history.
    for i in 3..10 {
        alice.send(serde_json::json!({"type": "send", "room": "lobby", "text": format!("m{i}")})).await;
        alice.next("msg").await;
        tokio::time::sleep(Duration::from_millis(450)).await; // stay under the send rate
    }
    let mut stale = Client::new(&hub, None);
    stale.send(serde_json::json!({"type": "join", "room": "lobby", "since": ids[0]})).await;
    let joined = stale.next("joined").await;
    assert_eq!(joined["recovered"], false);
    assert_eq!(joined["history"].as_array().unwrap().len(), 5);
    // An id from another epoch (a restarted node) is not a continuation either.
    let mut foreign = Client::new(&hub, None);
    foreign.send(serde_json::json!({"type": "join", "room": "lobby", "since": "1-2"})).await;
    assert_eq!(foreign.next("joined").await["recovered"], false);
}

#[tokio::test]
async fn presence_is_counted_and_coalesced() {
    let (hub, _) = start(config());
    let mut a = Client::new(&hub, user(1, "alice"));
    a.join("lobby").await;
    let mut others = Vec::new();
    for i in 0..3 {
        let mut c = Client::new(&hub, if i == 0 { user(1, "alice") } else { None });
        c.join("lobby").await;
        others.push(c);
    }
    // A tick may fall between the joins: counts on the way up may come first.
    let mut presence = a.next("presence").await;
    while presence["count"] != 4 {
        presence = a.next("presence").await;
    }
    assert_eq!((presence["count"].as_u64(), presence["users"].as_u64()), (Some(4), Some(1)));
    assert_eq!(hub.viewers("lobby"), 4);
    for c in others {
        c.session.close().await;
    }
    let presence = a.next("presence").await;
    assert_eq!(presence["count"], 1);
}

#[tokio::test]
async fn moderation_by_staff_and_refusal_for_others() {
    let (hub, rooms) = start(config());
    let mut owner = Client::new(&hub, user(1, "owner"));
    let mut moderator = Client::new(&hub, user(2, "mod"));
    let mut troll = Client::new(&hub, user(3, "troll"));
    for c in [&mut owner, &mut moderator, &mut troll] {
        c.join("lobby").await;
    }
    troll.send(serde_json::json!({"type": "send", "room": "lobby", "text": "spam"})).await;
    let spam = owner.next("msg").await;
    assert_eq!(spam["user"]["badges"], serde_json::json!([]));

    troll.send(serde_json::json!({"type": "ban", "room": "lobby", "user": "owner"})).await;
    assert_eq!(troll.next("error").await["code"], "forbidden");

    moderator.send(serde_json::json!({"type": "delete", "room": "lobby", "id": spam["id"]})).await;
    assert_eq!(owner.next("deleted").await["id"], spam["id"]);
    let mut late = Client::new(&hub, None);
    assert!(!late.join("lobby").await.to_string().contains("spam"), "deleted messages leave the history");

    moderator.send(serde_json::json!({"type": "timeout", "room": "lobby", "user": "Troll", "seconds": 60})).await;
    assert!(owner.next("notice").await["text"].as_str().unwrap().contains("troll was timed out"));
    troll.send(serde_json::json!({"type": "send", "room": "lobby", "text": "again"})).await;
    assert_eq!(troll.next("error").await["code"], "timed_out");

    owner.send(serde_json::json!({"type": "ban", "room": "lobby", "user": "troll"})).await;
    troll.send(serde_json::json!({"type": "send", "room": "lobby", "text": "again"})).await;
    assert_eq!(troll.next("error").await["code"], "banned");
    owner.send(serde_json::json!({"type": "unban", "room": "lobby", "user": "troll"})).await;
    owner.next("notice").await;

    owner.send(serde_json::json!({"type": "slow", "room": "lobby", "seconds": 30})).await;
    let mut regular = Client::new(&hub, user(4, "regular"));
    regular.join("lobby").await;
    regular.send(serde_json::json!({"type": "send", "room": "lobby", "text": "one"})).await;
    regular.next("msg").await;
    regular.send(serde_json::json!({"type": "send", "room": "lobby", "text": "two"})).await;
    assert_eq!(regular.next("error").await["code"], "slow_mode");
    moderator.send(serde_json::json!({"type": "send", "room": "lobby", "text": "staff are exempt"})).await;
    moderator.send(serde_json::json!({"type": "send", "room": "lobby", "text": "twice"})).await;
    let mut own = Vec::new();
    while own.len() < 2 {
        let message = moderator.next("msg").await;
        if message["user"]["name"] == "mod" {
            own.push(message);
        }
    }
    assert_eq!(own[0]["user"]["badges"], serde_json::json!(["moderator"]));
    assert_eq!(own[1]["text"], "twice");

    // A ban loaded from the directory holds from the start.
    let mut outlaw = Client::new(&hub, user(5, "outlaw"));
    outlaw.join("lobby").await;
    outlaw.send(serde_json::json!({"type": "send", "room": "lobby", "text": "hi"})).await;
    assert_eq!(outlaw.next("error").await["code"], "banned");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let records = rooms.records.lock().unwrap();
    let actions: Vec<&ModerationAction> = records.iter().map(|r| &r.action).collect();
    assert_eq!(actions.len(), 5, "refused actions are not recorded: {actions:?}");
    assert!(matches!(actions[0], ModerationAction::Delete { author: Some(a), .. } if a == "troll"));
    assert_eq!(records[0].actor, "mod");
}

#[tokio::test]
async fn limits_answer_errors_and_persistent_abuse_closes() {
    let (hub, _) = start(ChatConfig { max_violations_per_minute: 5, ..config() });
    let mut anon = Client::new(&hub, None);
    anon.join("lobby").await;
    anon.send(serde_json::json!({"type": "send", "room": "lobby", "text": "hi"})).await;
    assert_eq!(anon.next("error").await["code"], "unauthorized");
    let mut bob = Client::new(&hub, user(9, "bob"));
    bob.join("lobby").await;
    bob.send(serde_json::json!({"type": "send", "room": "elsewhere", "text": "hi"})).await;
    assert_eq!(bob.next("error").await["code"], "not_joined");
    bob.send(serde_json::json!({"type": "send", "room": "lobby", "text": "x".repeat(501)})).await;
    assert_eq!(bob.next("error").await["code"], "invalid_message");
    bob.session.handle_text("{not json").await.unwrap();
    assert_eq!(bob.next("error").await["code"], "bad_request");
    let huge = serde_json::json!({"type": "send", "room": "lobby", "text": "y".repeat(5000)}).to_string();
    assert_eq!(bob.session.handle_text(&huge).await, Ok(()), "the fourth violation is answered");
    assert_eq!(bob.next("error").await["code"], "frame_too_large");
    assert_eq!(bob.session.handle_text(&huge).await, Ok(()), "the fifth too");
    assert_eq!(bob.session.handle_text(&huge).await, Err(CloseReason::Abuse), "the sixth closes");

    let mut nowhere = Client::new(&hub, None);
    nowhere.send(serde_json::json!({"type": "join", "room": "nowhere"})).await;
    assert_eq!(nowhere.next("error").await["code"], "not_found");
    let mut fast = Client::new(&hub, user(10, "fast"));
    fast.join("lobby").await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        fast.send(serde_json::json!({"type": "send", "room": "lobby", "text": "go"})).await;
    }
    // Twelve answers (a message or an error each); presence frames may come in between.
    while codes.len() < 12 {
        let frame = fast.recv().await;
        if frame["type"] == "msg" || frame["type"] == "error" {
            codes.push(frame["code"].as_str().unwrap_or("msg").to_owned());
        }
    }
    assert_eq!(codes.iter().filter(|c| *c == "msg").count(), 10, "a burst of twice the rate: {codes:?}");
    assert!(codes.iter().any(|c| c == "rate_limited"));
}

#[tokio::test]
async fn a_member_that_never_reads_is_closed_while_the_others_keep_getting_messages() {
    let (hub, _) = start(ChatConfig {
        outbox_frames: 8,
        messages_per_second: 1000.0,
        user_messages_per_second: 1000.0,
        ..config()
    });
    let (mut stuck, control) = Session::new(hub.clone(), None);
    stuck.handle_text(r#"{"type":"join","room":"lobby"}"#).await.unwrap();
    let mut reader = Client::new(&hub, None);
    reader.join("lobby").await;
    let mut talker = Client::new(&hub, user(1, "talker"));
    talker.join("lobby").await;
    for i in 0..20 {
        talker.send(serde_json::json!({"type": "send", "room": "lobby", "text": format!("m{i}")})).await;
        assert_eq!(reader.next("msg").await["text"], format!("m{i}"));
        talker.next("msg").await;
    }
    assert_eq!(control.reason(), Some(CloseReason::SlowConsumer));
}

#[tokio::test]
async fn a_batch_of_messages_reaches_each_member_as_one_entry_in_order_with_the_senders_own_copies() {
    // One runtime thread: the three sends are queued before the shard runs, so it handles them
    // as one batch.
    let (hub, _) = start(ChatConfig { messages_per_second: 100.0, ..config() });
    let mut alice = Client::new(&hub, user(1, "alice"));
    let mut bob = Client::new(&hub, user(2, "bob"));
    let mut viewer = Client::new(&hub, None);
    for client in [&mut alice, &mut bob, &mut viewer] {
        client.join("lobby").await;
    }
    // Let the presence changes of those joins go out first.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for client in [&mut alice, &mut bob, &mut viewer] {
        let mut drained = Vec::new();
        client.inbox.try_pop_many(&mut drained, usize::MAX);
    }
    alice.send(serde_json::json!({"type": "send", "room": "lobby", "text": "one", "nonce": "a1"})).await;
    bob.send(serde_json::json!({"type": "send", "room": "lobby", "text": "two", "nonce": "b1"})).await;
    alice.send(serde_json::json!({"type": "send", "room": "lobby", "text": "three"})).await;
    let mut entries = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), viewer.inbox.pop_many(&mut entries, 64)).await.unwrap();
    assert_eq!(entries.len(), 1, "one queue entry (one write) for the batch");
    let texts: Vec<Value> = aether_chat::wire::payloads(&entries[0])
        .into_iter()
        .map(|frame| serde_json::from_slice::<Value>(frame).unwrap()["text"].clone())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    // Each sender gets the same batch with its own copies (nonces) in their places.
    let mine: Vec<(Value, Value)> = (0..3)
        .map(|_| futures_util::FutureExt::now_or_never(alice.recv()).expect("queued already"))
        .map(|frame| (frame["text"].clone(), frame["nonce"].clone()))
        .collect();
    assert_eq!(mine, [("one".into(), "a1".into()), ("two".into(), Value::Null), ("three".into(), Value::Null)]);
    assert_eq!(bob.next("msg").await["nonce"], Value::Null);
    assert_eq!(bob.next("msg").await["nonce"], "b1");
}

/// A loopback connection: the server's end attached to a `Control`, and the client's end.
async fn attached(capacity: usize) -> (Arc<Control>, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let control = Arc::new(Control::new(capacity));
    assert!(control.attach(server));
    (control, client)
}

#[tokio::test]
async fn a_frame_the_full_socket_refuses_is_queued_whole_and_later_ones_behind_it() {
    use tokio::io::AsyncReadExt;
    let (control, mut client) = attached(8).await;
    // Fill the socket (the client is not reading) until it takes nothing more.
    let socket = control.socket().unwrap();
    let mut filled = 0;
    loop {
        match socket.try_write(&[b'.'; 64 * 1024]) {
            Ok(written) => filled += written,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) => panic!("{error}"),
        }
    }
    let first = aether_chat::wire::text(b"{\"n\":1}");
    let second = aether_chat::wire::text(b"{\"n\":2}");
    assert!(control.push(first.clone()), "refused for now, not a slow consumer");
    assert!(control.push(second.clone()));
    assert!(!control.is_closed());
    let mut queued = Vec::new();
    assert_eq!(control.try_pop_many(&mut queued, 64), 2);
    assert_eq!(queued, [first.clone(), second.clone()], "both queued, whole, in order");

    // What the writer then writes follows the filler, nothing lost or repeated.
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        all
    });
    let (control_for_writer, queued) = (control.clone(), queued);
    let writer = tokio::spawn(async move {
        let socket = control_for_writer.socket().unwrap();
        for frame in queued {
            let mut rest = &frame[..];
            while !rest.is_empty() {
                socket.writable().await.unwrap();
                match socket.try_write(rest) {
                    Ok(written) => rest = &rest[written..],
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(error) => panic!("{error}"),
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), writer).await.unwrap().unwrap();
    // Close the server's end so the reader sees the end.
    drop(control);
    let all = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
    assert_eq!(all.len(), filled + first.len() + second.len());
    assert!(all[..filled].iter().all(|byte| *byte == b'.'));
    assert_eq!(&all[filled..], [&first[..], &second[..]].concat());
}
