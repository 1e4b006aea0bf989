//! The hub handle: routes room commands to the shard that owns the room (by hash), keeps the
//! presence counts the rest of the server reads, and the per-user send buckets. Cloneable.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ChatConfig;
use crate::limits::TokenBucket;
use crate::shard::{self, Command};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Commands queued per shard before senders wait.
const SHARD_QUEUE: usize = 8192;
/// Above this many tracked users, full (idle) send buckets are dropped.
const PRUNE_USER_BUCKETS_ABOVE: usize = 100_000;

/// A signed-in chat user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatUser {
    pub id: i64,
    /// The username: how chat names users, in messages and moderation commands.
    pub name: String,
    pub admin: bool,
    /// The users this one blocked: they do not get this user's messages (as of connecting).
    pub blocked: Arc<std::collections::HashSet<i64>>,
}

/// What the server knows about a room when it is first used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomSeed {
    pub owner: String,
    pub moderators: HashSet<String>,
    pub banned: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModerationAction {
    Delete {
        id: String,
        author: Option<String>,
    },
    Timeout {
        user: String,
        seconds: u64,
    },
    Ban {
        user: String,
    },
    Unban {
        user: String,
    },
    Slow {
        seconds: u64,
    },
    /// Followers-only mode: `Some(minutes)` of following needed to chat, `None` off.
    FollowersOnly {
        minutes: Option<u64>,
    },
}

/// One moderation action, for the audit log (and the ban list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModerationRecord {
    pub room: String,
    pub actor_id: i64,
    pub actor: String,
    pub action: ModerationAction,
    pub at_ms: i64,
}

/// A message of this node's that names users with `@name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    pub room: String,
    /// The sender's username.
    pub from: String,
    pub message_id: String,
    pub text: String,
    /// Usernames named (lowercase, at most 5, not the sender).
    pub users: Vec<String>,
}

/// The usernames a message names with `@name` (3 to 25 of `a-z 0-9 _`, any case), at most 5
/// distinct ones, the sender left out.
pub fn mentioned_users(text: &str, sender: &str) -> Vec<String> {
    let mut users: Vec<String> = Vec::new();
    for (at, _) in text.match_indices('@') {
        let name: String = text[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
            .to_ascii_lowercase();
        let before = text[..at].chars().next_back();
        let standalone = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if standalone && (3..=25).contains(&name.len()) && name != sender && !users.contains(&name) {
            users.push(name);
            if users.len() == 5 {
                break;
            }
        }
    }
    users
}

/// The server's side of chat: which rooms exist and who runs them, and where moderation is kept.
pub trait Directory: Send + Sync + 'static {
    /// `Ok(None)`: there is no such room.
    fn load_room(&self, room: String) -> BoxFuture<Result<Option<RoomSeed>, String>>;
    fn record(&self, record: ModerationRecord) -> BoxFuture<()>;
    /// A message named users (called off the hot path, once per message, by the sender's node).
    fn mentioned(&self, mention: Mention) -> BoxFuture<()> {
        let _ = mention;
        Box::pin(async {})
    }
    /// Since when (unix ms) user `user` follows the channel of `room`; `None` when they do not.
    /// Asked in followers-only mode, at most once a minute per user and room.
    fn followed_since(&self, room: String, user: i64) -> BoxFuture<Result<Option<i64>, String>> {
        let _ = (room, user);
        Box::pin(async { Ok(None) })
    }
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    /// Its queue filled up: it did not read fast enough.
    SlowConsumer = 1,
    /// It kept breaking the limits.
    Abuse = 2,
    Shutdown = 3,
    /// The client went, or broke the WebSocket protocol: whatever close frame is due is already
    /// queued.
    Ended = 4,
}

impl CloseReason {
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::Abuse => "too many violations",
            CloseReason::Shutdown => "server shutting down",
            CloseReason::Ended => "connection ended",
        }
    }

    /// The WebSocket close code the server sends for it (`None`: already sent).
    pub fn code(self) -> Option<u16> {
        match self {
            CloseReason::SlowConsumer => Some(crate::wire::close::SLOW_CONSUMER),
            CloseReason::Abuse => Some(crate::wire::close::POLICY),
            CloseReason::Shutdown => Some(crate::wire::close::GOING_AWAY),
            CloseReason::Ended => None,
        }
    }
}

/// A connection's outbox and the switch that lets the hub close a connection it cannot serve.
/// One per connection, shared by its session, its room memberships and its writer.
///
/// Frames are whole WebSocket frames (see `wire`). Once the server attaches the connection's
/// socket, a frame with nothing queued before it is written straight from the caller (a shard's
/// flush, say) with one non-blocking write: no queue, no task wakeup. Whatever the socket does
/// not take at once is queued, whole or the rest of it, for the connection's writer task, and
/// later frames queue behind it until the writer has caught up. The queue is bounded (a client
/// that lets it fill is a slow consumer) and holds no memory while empty.
#[derive(Debug)]
pub struct Control {
    /// 0 while open, else the `CloseReason`.
    reason: AtomicU8,
    outbox: Mutex<Outbox>,
    /// Wakes the writer: frames queued, or the connection closed.
    ready: Notify,
    /// Wakes whoever waits in `closed()`.
    closing: Notify,
    capacity: usize,
    socket: OnceLock<TcpStream>,
}

#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<Bytes>,
    /// The writer holds frames it took and has not finished writing: nothing may be written
    /// directly until it has.
    writing: bool,
}

impl Control {
    pub fn new(capacity: usize) -> Self {
        Control {
            reason: AtomicU8::new(0),
            outbox: Mutex::new(Outbox::default()),
            ready: Notify::new(),
            closing: Notify::new(),
            capacity,
            socket: OnceLock::new(),
        }
    }

    /// Hands the connection's socket over, for direct writes (once; `false` if one was already).
    pub fn attach(&self, socket: TcpStream) -> bool {
        self.socket.set(socket).is_ok()
    }

    pub fn socket(&self) -> Option<&TcpStream> {
        self.socket.get()
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a frame: written at once when nothing is queued before it and the socket takes it,
    /// else queued for the writer. `false` when the queue is full (a slow consumer). Frames for
    /// a closed connection are dropped.
    pub fn push(&self, frame: Bytes) -> bool {
        if self.is_closed() {
            return true;
        }
        let mut outbox = self.outbox();
        // Checked again under the lock: the writer's close frame must come after every frame.
        if self.is_closed() {
            return true;
        }
        if outbox.frames.is_empty()
            && !outbox.writing
            && let Some(socket) = self.socket.get()
        {
            let rest = match socket.try_write(&frame) {
                Ok(written) if written == frame.len() => return true,
                Ok(written) => frame.slice(written..),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => frame,
                Err(_) => {
                    drop(outbox);
                    self.close(CloseReason::Ended);
                    return true;
                }
            };
            outbox.frames.push_back(rest);
            drop(outbox);
            self.ready.notify_one();
            return true;
        }
        if outbox.frames.len() >= self.capacity {
            return false;
        }
        outbox.frames.push_back(frame);
        let was_empty = outbox.frames.len() == 1;
        drop(outbox);
        // Onto a queue that was not empty, the writer has been woken already and has yet to take
        // what is there (it takes everything under this lock): no need to wake it again.
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    /// Sends `payload` as a text frame; a connection that cannot take it is closed as a slow
    /// consumer.
    pub fn send_text(&self, payload: &[u8]) {
        if !self.push(crate::wire::text(payload)) {
            self.close(CloseReason::SlowConsumer);
            metrics::counter!("aether_chat_slow_consumers_total").increment(1);
        }
    }

    /// Waits for queued frames and moves up to `limit` of them into `out` (for the one writer);
    /// 0 once the connection is closed and nothing is queued.
    pub async fn pop_many(&self, out: &mut Vec<Bytes>, limit: usize) -> usize {
        loop {
            let taken = self.try_pop_many(out, limit);
            if taken > 0 || self.is_closed() {
                return taken;
            }
            self.ready.notified().await;
        }
    }

    /// Moves up to `limit` queued frames into `out` without waiting. Until the writer comes back
    /// empty-handed, it holds the socket: frames queue behind the ones it took.
    pub fn try_pop_many(&self, out: &mut Vec<Bytes>, limit: usize) -> usize {
        let mut outbox = self.outbox();
        let taken = outbox.frames.len().min(limit);
        out.extend(outbox.frames.drain(..taken));
        outbox.writing = taken > 0;
        if outbox.frames.is_empty() && outbox.frames.capacity() > 64 {
            // A burst grew it: give the memory back once it is drained.
            outbox.frames = VecDeque::new();
        }
        taken
    }

    /// For the writer's last words (the close frame): from now on nothing is written directly.
    pub fn hold_socket(&self) {
        self.outbox().writing = true;
    }

    /// Closes the connection (the first reason given is kept) and wakes its writer and readers.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.ready.notify_one();
        self.closing.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.reason.load(Ordering::Acquire) != 0
    }

    /// Resolves once the connection is closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            // Registered before the check, so that a close in between is not missed.
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    pub fn reason(&self) -> Option<CloseReason> {
        match self.reason.load(Ordering::Acquire) {
            1 => Some(CloseReason::SlowConsumer),
            2 => Some(CloseReason::Abuse),
            3 => Some(CloseReason::Shutdown),
            4 => Some(CloseReason::Ended),
            _ => None,
        }
    }
}

pub type ConnId = u64;

/// A connection as a room sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub conn: ConnId,
    pub user: Option<Arc<ChatUser>>,
    pub control: Arc<Control>,
}

/// Wall-clock milliseconds since the Unix epoch (message timestamps, epochs, expiries).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Which of `shards` owns `room`.
fn shard_index(room: &str, shards: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    room.hash(&mut hasher);
    (hasher.finish() % shards as u64) as usize
}

/// A random node id, so that a node can recognise (and drop) its own published events.
fn rand_node_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::process::id().hash(&mut hasher);
    std::time::SystemTime::now().hash(&mut hasher);
    hasher.finish()
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: ChatConfig,
    shards: Vec<mpsc::Sender<Command>>,
    presence: Arc<DashMap<String, usize>>,
    next_conn: AtomicU64,
    user_buckets: DashMap<i64, TokenBucket>,
    /// The `@me` rooms: each signed-in user's connections that joined theirs.
    personal: DashMap<i64, Vec<(ConnId, Arc<Control>)>>,
}

impl Hub {
    /// Starts the shard tasks on `tasks` (and, with `redis_url`, the bridge that joins this node
    /// to the others on the same Redis); they stop when `shutdown` is cancelled.
    pub fn start(
        config: ChatConfig,
        directory: Arc<dyn Directory>,
        redis_url: Option<String>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Hub {
        let presence = Arc::new(DashMap::new());
        let count = config.shard_count();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| mpsc::channel::<Command>(SHARD_QUEUE)).unzip();
        let bridge = redis_url.map(|url| {
            let shards = senders.clone();
            let route: crate::bridge::Router = Arc::new(move |room: &str, command: Command| {
                // The bridge never waits on a shard: a full shard queue drops the event.
                if shards[shard_index(room, shards.len())].try_send(command).is_err() {
                    metrics::counter!("aether_chat_bridge_dropped_total").increment(1);
                }
            });
            let node = rand_node_id();
            let (bridge, task) = crate::bridge::bridge(url, node, route);
            tasks.spawn(task.run(shutdown.clone()));
            bridge
        });
        for (index, receiver) in receivers.into_iter().enumerate() {
            let own = senders[index].downgrade();
            let shard = shard::Shard::new(
                index,
                config.clone(),
                directory.clone(),
                presence.clone(),
                own,
                tasks.clone(),
                bridge.clone(),
            );
            tasks.spawn(shard.run(receiver, shutdown.clone()));
        }
        Hub {
            inner: Arc::new(HubInner {
                config,
                shards: senders,
                presence,
                next_conn: AtomicU64::new(1),
                user_buckets: DashMap::new(),
                personal: DashMap::new(),
            }),
        }
    }

    pub fn config(&self) -> &ChatConfig {
        &self.inner.config
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn shard(&self, room: &str) -> &mpsc::Sender<Command> {
        &self.inner.shards[shard_index(room, self.inner.shards.len())]
    }

    /// Queues a command for the room's shard; false if the hub is stopping.
    pub(crate) async fn command(&self, room: &str, command: Command) -> bool {
        self.shard(room).send(command).await.is_ok()
    }

    /// Connections in a room (this node).
    pub fn viewers(&self, room: &str) -> usize {
        self.inner.presence.get(room).map_or(0, |count| *count)
    }

    /// Posts a `notice` to everyone in the room (stream started/ended, ...).
    pub async fn notice(&self, room: &str, text: &str) {
        self.command(room, Command::Notice { room: room.to_owned(), text: text.to_owned() }).await;
    }

    /// Tells a room that `user` became (or stopped being) a moderator.
    pub async fn set_moderator(&self, room: &str, user: &str, moderator: bool) {
        let command = Command::SetModerator { room: room.to_owned(), user: user.to_owned(), moderator };
        self.command(room, command).await;
    }

    /// Adds a connection to its user's `@me` room.
    pub(crate) fn join_personal(&self, user: i64, conn: ConnId, control: Arc<Control>) {
        let mut members = self.inner.personal.entry(user).or_default();
        if !members.iter().any(|(id, _)| *id == conn) {
            members.push((conn, control));
        }
    }

    pub(crate) fn leave_personal(&self, user: i64, conn: ConnId) {
        let emptied = match self.inner.personal.get_mut(&user) {
            Some(mut members) => {
                members.retain(|(id, _)| *id != conn);
                members.is_empty()
            }
            None => false,
        };
        if emptied {
            self.inner.personal.remove_if(&user, |_, members| members.is_empty());
        }
    }

    /// Sends one frame (a JSON object the server made: a notification, ...) to every connection
    /// of `user` in its `@me` room on this node; returns how many got it. A connection whose
    /// outbox is full is closed, as in any room.
    pub fn to_user(&self, user: i64, frame: &[u8]) -> usize {
        let Some(members) = self.inner.personal.get(&user) else { return 0 };
        for (_, control) in members.iter() {
            control.send_text(frame);
        }
        members.len()
    }

    /// Bans (or unbans) `user` from a loaded room without a notice: a ban the server made
    /// outside chat, already stored by the caller.
    pub async fn set_banned(&self, room: &str, user: &str, banned: bool) {
        let command = Command::SetBanned { room: room.to_owned(), user: user.to_owned(), banned };
        self.command(room, command).await;
    }

    /// Takes a token from the user's send bucket (all their connections share it).
    pub(crate) fn user_may_send(&self, user: i64, now: Instant) -> bool {
        let config = &self.inner.config;
        let buckets = &self.inner.user_buckets;
        if buckets.len() > PRUNE_USER_BUCKETS_ABOVE && !buckets.contains_key(&user) {
            buckets.retain(|_, bucket| !bucket.is_full(now));
        }
        let rate = config.user_messages_per_second;
        buckets.entry(user).or_insert_with(|| TokenBucket::new(rate, rate * 2.0, now)).take(now)
    }
}

#[cfg(test)]
mod mention_tests {
    use super::mentioned_users;

    #[test]
    fn mentions_are_standalone_at_names_without_the_sender() {
        assert_eq!(mentioned_users("hi @Alice and @bob_2!", "carol"), ["alice", "bob_2"]);
        assert_eq!(mentioned_users("mail me at x@example.com", "carol"), Vec::<String>::new());
        assert_eq!(mentioned_users("@carol @ab @alice @alice", "carol"), ["alice"]);
        let many = "@aaa @bbb @ccc @ddd @eee @fff @ggg";
        assert_eq!(mentioned_users(many, "x").len(), 5);
    }
}
