//! The Redis bridge that joins several nodes into one chat. One task per node owns the Redis
//! connections. A message sent on this node gets its id from Redis (an atomic script: the room's
//! epoch, INCR of its sequence, PUBLISH to the room's channel), so ids are ordered across nodes;
//! the origin shard delivers it locally as soon as the id is known and drops its own echo (by node
//! id); other nodes deliver what they receive. The bridge subscribes only to rooms that have
//! local members (one channel per room, no patterns). Moderation, notices and moderator changes
//! are published as events. Presence: each node writes its per-room counts with an expiry into a
//! hash and reads the others' back every second. If Redis goes away the node keeps serving its
//! local clients (local ids, so recovery across the switch says `recovered: false`), logs it, and
//! reconnects with backoff.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::{ChatUser, ConnId, now_ms};
use crate::ids::MessageId;
use crate::shard::Command;

/// Commands queued for the bridge; when it is full, shards deliver locally.
const BRIDGE_QUEUE: usize = 8192;
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// A node's presence entry counts for this long after its last heartbeat.
const PRESENCE_TTL_MS: i64 = 5_000;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

const SEND_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], epoch .. '|' .. seq .. '|' .. ARGV[2])
return {epoch, seq}
";

fn channel(room: &str) -> String {
    format!("aether:chat:room:{room}")
}

/// What one node tells the others about a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemoteEvent {
    Msg {
        user: String,
        badges: Vec<String>,
        text: String,
        ts: i64,
    },
    Deleted {
        id: String,
    },
    Notice {
        text: String,
    },
    /// A moderation change of room state, with the notice the origin showed.
    Ban {
        user: String,
        notice: String,
    },
    Unban {
        user: String,
        notice: String,
    },
    Timeout {
        user: String,
        seconds: u64,
        notice: String,
    },
    Slow {
        seconds: u64,
        notice: String,
    },
    FollowersOnly {
        minutes: Option<u64>,
        notice: String,
    },
    Moderator {
        user: String,
        moderator: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: u64,
    room: String,
    event: RemoteEvent,
}

/// A message a local member sent, waiting for its id.
#[derive(Debug)]
pub struct PendingMessage {
    pub room: String,
    pub conn: ConnId,
    pub user: Arc<ChatUser>,
    pub text: String,
    pub nonce: Option<String>,
    pub badges: &'static [&'static str],
    pub queued: Instant,
}

#[derive(Debug)]
pub enum BridgeCommand {
    Send(PendingMessage),
    Publish {
        room: String,
        event: RemoteEvent,
    },
    Subscribe(String),
    Unsubscribe(String),
    /// A room's local counts; `names` (the signed-in users present) only when they changed.
    Presence {
        room: String,
        count: usize,
        users: usize,
        names: Option<Vec<String>>,
    },
}

/// The shards' handle on the bridge.
#[derive(Debug, Clone)]
pub struct Bridge {
    sender: mpsc::Sender<BridgeCommand>,
    connected: Arc<AtomicBool>,
}

impl Bridge {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Queues a command; false when the bridge is down or full (the caller goes local).
    pub fn offer(&self, command: BridgeCommand) -> Result<(), BridgeCommand> {
        if !self.is_connected() {
            return Err(command);
        }
        self.sender.try_send(command).map_err(|error| match error {
            mpsc::error::TrySendError::Full(command) | mpsc::error::TrySendError::Closed(command) => command,
        })
    }

    /// For commands that matter whether or not Redis is up right now (subscriptions, presence);
    /// false when the queue is full.
    pub fn note(&self, command: BridgeCommand) -> bool {
        self.sender.try_send(command).is_ok()
    }
}

/// Routes a command to the shard that owns a room.
pub type Router = Arc<dyn Fn(&str, Command) + Send + Sync>;

pub struct BridgeTask {
    url: String,
    node: u64,
    commands: mpsc::Receiver<BridgeCommand>,
    connected: Arc<AtomicBool>,
    route: Router,
    rooms: HashSet<String>,
    presence: HashMap<String, LocalPresence>,
}

/// What this node has of a room, for the other nodes.
#[derive(Debug, Default)]
struct LocalPresence {
    count: usize,
    users: usize,
    names: Vec<String>,
    /// `names` is not in Redis yet.
    unsent: bool,
}

impl LocalPresence {
    fn update(&mut self, count: usize, users: usize, names: Option<Vec<String>>) {
        (self.count, self.users) = (count, users);
        if let Some(names) = names {
            self.names = names;
            self.unsent = true;
        }
    }
}

/// The key of a node's set of signed-in users in a room (a hash tag keeps a room's keys together).
fn names_key(room: &str, node: impl std::fmt::Display) -> String {
    format!("aether:chat:users:{{{room}}}:{node}")
}

/// How many distinct users the given sets hold together, without moving them to the client.
const UNION_COUNT_SCRIPT: &str = "return #redis.call('SUNION', unpack(KEYS))";

pub fn bridge(url: String, node: u64, route: Router) -> (Bridge, BridgeTask) {
    let (sender, commands) = mpsc::channel(BRIDGE_QUEUE);
    let connected = Arc::new(AtomicBool::new(false));
    let task = BridgeTask {
        url,
        node,
        commands,
        connected: connected.clone(),
        route,
        rooms: HashSet::new(),
        presence: HashMap::new(),
    };
    (Bridge { sender, connected }, task)
}

#[derive(Debug, thiserror::Error)]
enum BridgeError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("the subscription stream ended")]
    Disconnected,
}

impl BridgeTask {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.session(&shutdown, &mut backoff).await {
                Ok(()) => return,
                Err(error) => {
                    if self.connected.swap(false, Ordering::AcqRel) {
                        tracing::warn!(%error, "chat bridge lost Redis; serving local clients only until it is back");
                    } else {
                        tracing::debug!(%error, "chat bridge cannot reach Redis");
                    }
                    metrics::gauge!("aether_chat_bridge_connected").set(0.0);
                }
            }
            // While down, keep answering shards so that nothing waits on Redis.
            let deadline = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    command = self.commands.recv() => match command {
                        Some(command) => self.offline(command),
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Handles a command without Redis: messages are delivered with local ids.
    fn offline(&mut self, command: BridgeCommand) {
        match command {
            BridgeCommand::Send(message) => {
                (self.route)(&message.room.clone(), Command::Delivered { message, id: None });
            }
            BridgeCommand::Subscribe(room) => {
                self.rooms.insert(room);
            }
            BridgeCommand::Unsubscribe(room) => {
                self.rooms.remove(&room);
                self.presence.remove(&room);
            }
            BridgeCommand::Presence { room, count, users, names } => {
                self.presence.entry(room).or_default().update(count, users, names);
            }
            BridgeCommand::Publish { .. } => {}
        }
    }

    async fn session(&mut self, shutdown: &CancellationToken, backoff: &mut Duration) -> Result<(), BridgeError> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let (mut subscriptions, mut incoming) = client.get_async_pubsub().await?.split();
        for room in &self.rooms {
            subscriptions.subscribe(channel(room)).await?;
        }
        let script = redis::Script::new(SEND_SCRIPT);
        let union_count = redis::Script::new(UNION_COUNT_SCRIPT);
        // Redis may have lost them (a restart): send every room's users again.
        for presence in self.presence.values_mut() {
            presence.unsent = true;
        }
        self.connected.store(true, Ordering::Release);
        metrics::gauge!("aether_chat_bridge_connected").set(1.0);
        tracing::info!(node = self.node, rooms = self.rooms.len(), "chat bridge connected to Redis");
        *backoff = BACKOFF_MIN;
        let mut heartbeat = tokio::time::interval(PRESENCE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    for room in self.presence.keys() {
                        let _: Result<(), _> = conn.hdel(format!("aether:chat:presence:{room}"), self.node).await;
                        let _: Result<(), _> = conn.del(names_key(room, self.node)).await;
                    }
                    return Ok(());
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { return Ok(()) };
                    match command {
                        BridgeCommand::Send(message) => {
                            let event = RemoteEvent::Msg {
                                user: message.user.name.clone(),
                                badges: message.badges.iter().map(|b| (*b).to_owned()).collect(),
                                text: message.text.clone(),
                                ts: now_ms(),
                            };
                            let room = message.room.clone();
                            let payload = serde_json::to_string(&Envelope { node: self.node, room: room.clone(), event }).expect("envelopes serialize");
                            let result: Result<(String, u64), _> = script
                                .key(format!("aether:chat:epoch:{room}"))
                                .key(format!("aether:chat:seq:{room}"))
                                .key(channel(&room))
                                .arg(now_ms())
                                .arg(payload)
                                .invoke_async(&mut conn)
                                .await;
                            let id = match &result {
                                Ok((epoch, seq)) => epoch.parse().ok().map(|epoch| MessageId { epoch, seq: *seq }),
                                Err(_) => None,
                            };
                            (self.route)(&room, Command::Delivered { message, id });
                            result?;
                        }
                        BridgeCommand::Publish { room, event } => {
                            let payload = serde_json::to_string(&Envelope { node: self.node, room: room.clone(), event }).expect("envelopes serialize");
                            conn.publish::<_, _, ()>(channel(&room), format!("0|0|{payload}")).await?;
                        }
                        BridgeCommand::Subscribe(room) => {
                            if self.rooms.insert(room.clone()) {
                                subscriptions.subscribe(channel(&room)).await?;
                            }
                        }
                        BridgeCommand::Unsubscribe(room) => {
                            if self.rooms.remove(&room) {
                                subscriptions.unsubscribe(channel(&room)).await?;
                            }
                            self.presence.remove(&room);
                            let _: () = conn.hdel(format!("aether:chat:presence:{room}"), self.node).await?;
                            let _: () = conn.del(names_key(&room, self.node)).await?;
                        }
                        BridgeCommand::Presence { room, count, users, names } => {
                            self.presence.entry(room).or_default().update(count, users, names);
                        }
                    }
                }
                message = incoming.next() => {
                    let Some(message) = message else { return Err(BridgeError::Disconnected) };
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    self.receive(&payload);
                }
                _ = heartbeat.tick() => self.exchange_presence(&mut conn, &union_count).await?,
            }
        }
    }

    /// Routes a published event from another node to the room's shard.
    fn receive(&self, payload: &str) {
        let mut parts = payload.splitn(3, '|');
        let (Some(epoch), Some(seq), Some(json)) = (parts.next(), parts.next(), parts.next()) else { return };
        let Ok(envelope) = serde_json::from_str::<Envelope>(json) else {
            tracing::warn!("chat bridge: undecodable event");
            return;
        };
        if envelope.node == self.node {
            return;
        }
        let id = match (epoch.parse::<u64>(), seq.parse::<u64>()) {
            (Ok(epoch), Ok(seq)) if epoch > 0 => Some(MessageId { epoch, seq }),
            _ => None,
        };
        metrics::counter!("aether_chat_bridge_received_total").increment(1);
        let room = envelope.room.clone();
        (self.route)(&room, Command::Remote { room: envelope.room, event: envelope.event, id });
    }

    /// Writes this node's counts and users and reads the other nodes' back, per room with local
    /// members: connections add up; users are counted once however many nodes they are on.
    async fn exchange_presence(
        &mut self,
        conn: &mut redis::aio::MultiplexedConnection,
        union_count: &redis::Script,
    ) -> Result<(), BridgeError> {
        let now = now_ms();
        for (room, presence) in &mut self.presence {
            let key = format!("aether:chat:presence:{room}");
            let own_names = names_key(room, self.node);
            let mut pipe = redis::pipe();
            pipe.atomic();
            if presence.unsent {
                pipe.del(&own_names).ignore();
                if !presence.names.is_empty() {
                    pipe.sadd(&own_names, &presence.names).ignore();
                }
            }
            pipe.pexpire(&own_names, PRESENCE_TTL_MS).ignore();
            pipe.hset(&key, self.node, format!("{},{},{}", presence.count, presence.users, now + PRESENCE_TTL_MS))
                .ignore();
            pipe.hgetall(&key);
            let (all,): (HashMap<String, String>,) = pipe.query_async(conn).await?;
            presence.unsent = false;
            let mut others = 0;
            let mut live = vec![own_names];
            for (node, value) in all {
                if node == self.node.to_string() {
                    continue;
                }
                let fields: Vec<i64> = value.split(',').filter_map(|v| v.parse().ok()).collect();
                if let [count, _, expires] = fields[..]
                    && expires > now
                {
                    others += count.max(0) as usize;
                    live.push(names_key(room, node));
                }
            }
            let distinct: usize = if live.len() > 1 {
                let mut invocation = union_count.prepare_invoke();
                for key in &live {
                    invocation.key(key);
                }
                invocation.invoke_async(conn).await?
            } else {
                presence.users
            };
            let other_users = distinct.saturating_sub(presence.users);
            (self.route)(room, Command::RemotePresence { room: room.clone(), count: others, users: other_users });
        }
        Ok(())
    }
}
