//! The hub handle: routes room commands to the shard that owns the room (by hash), keeps the
//! presence counts the rest of the server reads, and the per-user send buckets. Cloneable.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::mpsc;
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
    Delete { id: String, author: Option<String> },
    Timeout { user: String, seconds: u64 },
    Ban { user: String },
    Unban { user: String },
    Slow { seconds: u64 },
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

/// The server's side of chat: which rooms exist and who runs them, and where moderation is kept.
pub trait Directory: Send + Sync + 'static {
    /// `Ok(None)`: there is no such room.
    fn load_room(&self, room: String) -> BoxFuture<Result<Option<RoomSeed>, String>>;
    fn record(&self, record: ModerationRecord) -> BoxFuture<()>;
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
}

impl CloseReason {
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::Abuse => "too many violations",
            CloseReason::Shutdown => "server shutting down",
        }
    }
}

/// Lets the hub close a connection it cannot serve.
#[derive(Debug, Default)]
pub struct Control {
    token: CancellationToken,
    reason: AtomicU8,
}

impl Control {
    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.token.cancel();
    }

    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    pub fn reason(&self) -> Option<CloseReason> {
        match self.reason.load(Ordering::Acquire) {
            1 => Some(CloseReason::SlowConsumer),
            2 => Some(CloseReason::Abuse),
            3 => Some(CloseReason::Shutdown),
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
    pub outbox: mpsc::Sender<Bytes>,
    pub control: Arc<Control>,
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
}

impl Hub {
    /// Starts the shard tasks on `tasks`; they stop when `shutdown` is cancelled.
    pub fn start(
        config: ChatConfig,
        directory: Arc<dyn Directory>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Hub {
        let presence = Arc::new(DashMap::new());
        let shards = (0..config.shard_count())
            .map(|index| {
                let (sender, receiver) = mpsc::channel(SHARD_QUEUE);
                let shard = shard::Shard::new(
                    index,
                    config.clone(),
                    directory.clone(),
                    presence.clone(),
                    sender.downgrade(),
                    tasks.clone(),
                );
                tasks.spawn(shard.run(receiver, shutdown.clone()));
                sender
            })
            .collect();
        Hub {
            inner: Arc::new(HubInner {
                config,
                shards,
                presence,
                next_conn: AtomicU64::new(1),
                user_buckets: DashMap::new(),
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
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        room.hash(&mut hasher);
        &self.inner.shards[(hasher.finish() % self.inner.shards.len() as u64) as usize]
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
