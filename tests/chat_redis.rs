//! Two server nodes on one Redis form one chat: a message sent on node A reaches a subscriber on
//! node B exactly once with the same id, presence sums both nodes, moderation propagates, and
//! when Redis dies and comes back both nodes keep their local chat and then resume the bridge.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Backend, TestApp, eventually, test_config};
use tokio_tungstenite::tungstenite::Message;

struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// A throwaway redis-server on a free loopback port; `None` (with a note) when it is not installed.
    fn start() -> Option<Redis> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is missing: scripts/install-deps.sh test installs it"
            );
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Redis { port, child: None };
        redis.run();
        Some(redis)
    }

    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Ws(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>);

impl Ws {
    async fn connect(app: &TestApp, token: Option<&str>) -> Ws {
        let url = match token {
            Some(token) => format!("ws://{}/ws?token={token}", app.addr),
            None => format!("ws://{}/ws", app.addr),
        };
        Ws(tokio_tungstenite::connect_async(url).await.unwrap().0)
    }

    async fn send(&mut self, frame: Value) {
        self.0.send(Message::text(frame.to_string())).await.unwrap();
    }

    /// The next frame of `kind` within `limit`, skipping others.
    async fn next_within(&mut self, kind: &str, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let message = tokio::time::timeout_at(deadline, self.0.next()).await.ok()??.ok()?;
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == kind {
                    return Some(value);
                }
            }
        }
    }

    async fn next(&mut self, kind: &str) -> Value {
        self.next_within(kind, Duration::from_secs(10)).await.unwrap_or_else(|| panic!("no {kind}"))
    }

    /// The next message with exactly `text`, skipping other messages.
    async fn message(&mut self, text: &str, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.next_within("msg", left).await?;
            if message["text"] == text {
                return Some(message);
            }
        }
    }
}

/// Sends `text` from `sender` every half second until `receiver` gets it, for at most `limit`.
async fn until_delivered(sender: &mut Ws, receiver: &mut Ws, room: &str, text: &str, limit: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        sender.send(json!({"type": "send", "room": room, "text": text})).await;
        if let Some(message) = receiver.message(text, Duration::from_millis(500)).await {
            return Some(message);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_redis_are_one_chat_and_survive_a_redis_restart() {
    let Some(mut redis) = Redis::start() else { return };
    let node_a = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.redis.url = Some(redis.url());
        config.chat.presence_interval_ms = 200;
    })
    .await
    .unwrap();
    let mut config_b = test_config(&node_a.storage);
    config_b.redis.url = Some(redis.url());
    config_b.chat.presence_interval_ms = 200;
    let node_b = TestApp::start(node_a.storage.clone(), config_b).await;

    let alice = node_a.signup("alice").await;
    node_a.create_channel(&alice, "multi_tv").await;
    let mut alice_a = Ws::connect(&node_a, Some(&alice)).await;
    alice_a.send(json!({"type": "join", "room": "multi_tv"})).await;
    alice_a.next("joined").await;
    let mut viewer_b = Ws::connect(&node_b, None).await;
    viewer_b.send(json!({"type": "join", "room": "multi_tv"})).await;
    viewer_b.next("joined").await;

    // Once both nodes are subscribed, a message crosses over.
    let crossed = until_delivered(&mut alice_a, &mut viewer_b, "multi_tv", "warm up", Duration::from_secs(10)).await;
    assert!(crossed.is_some(), "a message from node A reached node B");

    // Exactly once, with the same id on both nodes; the nonce only for the sender.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while viewer_b.next_within("msg", Duration::from_millis(100)).await.is_some() {}
    while alice_a.next_within("msg", Duration::from_millis(100)).await.is_some() {}
    alice_a.send(json!({"type": "send", "room": "multi_tv", "text": "hello from A", "nonce": "n-a"})).await;
    let own = alice_a.message("hello from A", Duration::from_secs(5)).await.expect("the sender gets it");
    assert_eq!(own["nonce"], "n-a");
    let seen = viewer_b.message("hello from A", Duration::from_secs(5)).await.expect("node B gets it");
    assert_eq!(seen["id"], own["id"], "one id on every node");
    assert!(seen.get("nonce").is_none());
    assert!(viewer_b.message("hello from A", Duration::from_millis(700)).await.is_none(), "exactly once on B");
    assert!(alice_a.message("hello from A", Duration::from_millis(300)).await.is_none(), "exactly once for the sender");

    // Presence sums both nodes, in the room and in the channel API.
    let summed = eventually(Duration::from_secs(10), || async {
        let (_, channel) = node_a.get("/api/v1/channels/multi_tv", None).await;
        (channel["viewers"] == 2).then_some(())
    })
    .await;
    assert!(summed.is_some(), "node A counts node B's viewer");
    // A user on both nodes is two connections but one user.
    let mut alice_b = Ws::connect(&node_b, Some(&alice)).await;
    alice_b.send(json!({"type": "join", "room": "multi_tv"})).await;
    alice_b.next("joined").await;
    // (Each node learns of the other's users at its next heartbeat: a count may be stale for one.)
    let mut last = Value::Null;
    for _ in 0..20 {
        if let Some(presence) = viewer_b.next_within("presence", Duration::from_millis(500)).await {
            last = presence;
        }
        if last["count"] == 3 && last["users"] == 1 {
            break;
        }
    }
    assert_eq!((&last["count"], &last["users"]), (&json!(3), &json!(1)), "alice is on both nodes, counted once");
    drop(alice_b);

    // Moderation propagates: the owner on A deletes, B sees it.
    alice_a.send(json!({"type": "delete", "room": "multi_tv", "id": own["id"]})).await;
    assert_eq!(viewer_b.next("deleted").await["id"], own["id"]);

    // Redis dies: each node keeps its local chat.
    redis.kill();
    let mut local_a = Ws::connect(&node_a, None).await;
    local_a.send(json!({"type": "join", "room": "multi_tv"})).await;
    local_a.next("joined").await;
    let delivered_locally =
        until_delivered(&mut alice_a, &mut local_a, "multi_tv", "redis is down", Duration::from_secs(10)).await;
    let local = delivered_locally.expect("node A serves its local clients without Redis");
    let epoch = |id: &Value| id.as_str().unwrap().split('-').next().unwrap().to_owned();
    assert_ne!(epoch(&local["id"]), epoch(&own["id"]), "ids numbered without Redis never reuse Redis's epoch");
    let (status, _) = node_b.get("/healthz", None).await;
    assert_eq!(status, 200);

    // Redis is back: the bridge reconnects and messages cross again.
    redis.run();
    let resumed =
        until_delivered(&mut alice_a, &mut viewer_b, "multi_tv", "redis is back", Duration::from_secs(20)).await;
    assert!(resumed.is_some(), "the bridge resumed after Redis came back");
    node_b.stop().await;
    node_a.stop().await;
}
