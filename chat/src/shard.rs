//! A shard: one task that owns a set of rooms outright (members, history ring, presence,
//! moderation state), so the hot path takes no lock. A message is stamped and serialized once
//! and the same `Bytes` goes to every member, a window at a time (a big room in turns spread over
//! the window); a member whose queue is full is closed as a slow consumer instead of being
//! buffered. Rooms are loaded from the `Directory` on first use (commands wait meanwhile) and
//! dropped some minutes after their last member left.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bridge::{Bridge, BridgeCommand, PendingMessage, RemoteEvent};
use crate::config::ChatConfig;
use crate::hub::{
    ChatUser, CloseReason, ConnId, Directory, Member, ModerationAction, ModerationRecord, RoomSeed, now_ms,
};
use crate::ids::MessageId;
use crate::protocol::{self, ErrorCode};
use crate::room::{FOLLOW_CACHE, Group, Pace, Room};

/// How long a room with no members keeps its history and state.
const EMPTY_ROOM_TTL: Duration = Duration::from_secs(300);
/// Commands that may wait for a room to load.
const MAX_WAITING: usize = 10_000;
pub const MAX_TIMEOUT_SECS: u64 = 14 * 24 * 3600;
pub const MAX_SLOW_SECS: u64 = 3600;

#[derive(Debug)]
pub enum Command {
    Join {
        room: String,
        member: Member,
        since: Option<String>,
    },
    Leave {
        room: String,
        conn: ConnId,
        reply: bool,
    },
    Send {
        room: String,
        conn: ConnId,
        user: Arc<ChatUser>,
        text: String,
        nonce: Option<String>,
        queued: Instant,
    },
    Moderate {
        room: String,
        conn: ConnId,
        actor: Arc<ChatUser>,
        action: ModerationAction,
    },
    Notice {
        room: String,
        text: String,
    },
    SetModerator {
        room: String,
        user: String,
        moderator: bool,
    },
    /// A ban the server made outside chat (the owner blocked the user): silent, this node.
    SetBanned {
        room: String,
        user: String,
        banned: bool,
    },
    Loaded {
        room: String,
        seed: Result<Option<RoomSeed>, String>,
    },
    /// The directory's answer to "since when does `user` follow this room's channel?".
    FollowChecked {
        room: String,
        user: i64,
        since: Result<Option<i64>, String>,
    },
    /// A message of this node's member got its id from the bridge (`None`: Redis unavailable,
    /// use a local id).
    Delivered {
        message: PendingMessage,
        id: Option<MessageId>,
    },
    /// Something that happened in the room on another node.
    Remote {
        room: String,
        event: RemoteEvent,
        id: Option<MessageId>,
    },
    /// The other nodes' presence in the room.
    RemotePresence {
        room: String,
        count: usize,
        users: usize,
    },
}

impl Command {
    fn room(&self) -> &str {
        match self {
            Command::Join { room, .. }
            | Command::Leave { room, .. }
            | Command::Send { room, .. }
            | Command::Moderate { room, .. }
            | Command::Notice { room, .. }
            | Command::SetModerator { room, .. }
            | Command::SetBanned { room, .. }
            | Command::Loaded { room, .. }
            | Command::FollowChecked { room, .. }
            | Command::Delivered { message: PendingMessage { room, .. }, .. }
            | Command::Remote { room, .. }
            | Command::RemotePresence { room, .. } => room,
        }
    }
}

enum Slot {
    Loading(Vec<Command>),
    Ready(Box<Room>),
}

pub struct Shard {
    index: usize,
    config: ChatConfig,
    directory: Arc<dyn Directory>,
    presence: Arc<DashMap<String, usize>>,
    own_queue: mpsc::WeakSender<Command>,
    /// Room loads and moderation records run here, so that shutdown waits for them.
    tasks: TaskTracker,
    bridge: Option<Bridge>,
    rooms: HashMap<String, Slot>,
    /// Rooms with frames outgoing, for the next flush (each once: `Room::flush_listed`).
    dirty: Vec<String>,
}

pub(crate) fn reply(member: &Member, frame: Bytes) {
    member.control.send_text(&frame);
}

impl Shard {
    pub fn new(
        index: usize,
        config: ChatConfig,
        directory: Arc<dyn Directory>,
        presence: Arc<DashMap<String, usize>>,
        own_queue: mpsc::WeakSender<Command>,
        tasks: TaskTracker,
        bridge: Option<Bridge>,
    ) -> Self {
        Shard { index, config, directory, presence, own_queue, tasks, bridge, rooms: HashMap::new(), dirty: Vec::new() }
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.presence_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(64);
        let flush = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(flush);
        let mut armed = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                received = commands.recv_many(&mut batch, 64) => {
                    if received == 0 {
                        break;
                    }
                    for command in batch.drain(..) {
                        self.handle(command);
                    }
                }
                _ = &mut flush, if armed => {}
                _ = tick.tick() => self.tick(Instant::now()),
            }
            if let Some(next) = self.flush() {
                flush.as_mut().reset(next);
            }
            armed = !self.dirty.is_empty();
        }
        for slot in self.rooms.values() {
            if let Slot::Ready(room) = slot {
                for member in room.members() {
                    member.control.close(CloseReason::Shutdown);
                }
            }
        }
        tracing::debug!(shard = self.index, "chat shard stopped");
    }

    /// Writes what is outgoing to the groups whose turn has come (in a room that has not written
    /// for a window, to all at once); returns when the next of the others is due.
    fn flush(&mut self) -> Option<tokio::time::Instant> {
        let pace = Pace {
            window: Duration::from_millis(self.config.coalesce_ms),
            turn_members: self.config.coalesce_turn_members,
        };
        let now = tokio::time::Instant::now();
        let rooms = &mut self.rooms;
        let mut next: Option<tokio::time::Instant> = None;
        self.dirty.retain(|name| {
            let Some(Slot::Ready(room)) = rooms.get_mut(name) else { return false };
            match room.flush_due(now, pace) {
                Some(due) => {
                    next = Some(next.map_or(due, |next| next.min(due)));
                    true
                }
                None => {
                    room.flush_listed = false;
                    false
                }
            }
        });
        next
    }

    fn handle(&mut self, command: Command) {
        let name = command.room().to_owned();
        if let Command::Loaded { seed, .. } = command {
            return self.loaded(name, seed);
        }
        match self.rooms.get_mut(&name) {
            Some(Slot::Ready(room)) => {
                let record = room.handle(command, self.bridge.as_ref());
                room.list_for_flush(&name, &mut self.dirty);
                let lookups = std::mem::take(&mut room.lookups);
                let mentions = std::mem::take(&mut room.mentions);
                if let Some(record) = record {
                    self.persist(record);
                }
                for mention in mentions {
                    self.tasks.spawn(self.directory.mentioned(mention));
                }
                for user in lookups {
                    let (directory, queue, room) = (self.directory.clone(), self.own_queue.clone(), name.clone());
                    self.tasks.spawn(async move {
                        let since = directory.followed_since(room.clone(), user).await;
                        if let Some(queue) = queue.upgrade() {
                            let _ = queue.send(Command::FollowChecked { room, user, since }).await;
                        }
                    });
                }
            }
            Some(Slot::Loading(waiting)) => {
                if waiting.len() < MAX_WAITING {
                    waiting.push(command);
                } else if let Command::Join { member, .. } = command {
                    reply(&member, protocol::error(ErrorCode::Unavailable, "the room is busy; try again"));
                }
            }
            None => {
                // Only a join brings a room into memory; anything else for an absent room is moot.
                let Command::Join { .. } = command else { return };
                self.rooms.insert(name.clone(), Slot::Loading(vec![command]));
                let (directory, queue) = (self.directory.clone(), self.own_queue.clone());
                self.tasks.spawn(async move {
                    let seed = directory.load_room(name.clone()).await;
                    if let Some(queue) = queue.upgrade() {
                        let _ = queue.send(Command::Loaded { room: name, seed }).await;
                    }
                });
            }
        }
    }

    fn loaded(&mut self, name: String, seed: Result<Option<RoomSeed>, String>) {
        let Some(Slot::Loading(waiting)) = self.rooms.remove(&name) else { return };
        let seed = match seed {
            Ok(Some(seed)) => seed,
            Ok(None) | Err(_) => {
                let (code, text) = match &seed {
                    Err(error) => {
                        tracing::warn!(room = %name, %error, "loading a chat room failed");
                        (ErrorCode::Unavailable, "the room cannot be loaded right now")
                    }
                    _ => (ErrorCode::NotFound, "no such room"),
                };
                for command in waiting {
                    if let Command::Join { member, .. } = command {
                        reply(&member, protocol::error(code, text));
                    }
                }
                return;
            }
        };
        let mut room = Box::new(Room {
            name: name.clone(),
            epoch: now_ms().max(1) as u64,
            epoch_from_redis: false,
            next_seq: 1,
            history: VecDeque::with_capacity(self.config.history.min(1024)),
            history_limit: self.config.history,
            users: HashMap::new(),
            users_changed: false,
            owner: seed.owner,
            moderators: seed.moderators,
            banned: seed.banned,
            timeouts: HashMap::new(),
            slow: Duration::ZERO,
            last_sent: HashMap::new(),
            followers_only: None,
            follows: HashMap::new(),
            awaiting: Vec::new(),
            lookups: Vec::new(),
            mentions: Vec::new(),
            presence_sent: (0, 0),
            remote_presence: (0, 0),
            empty_since: None,
            outgoing: VecDeque::new(),
            outgoing_base: 0,
            groups: (0..self.config.coalesce_groups.max(1))
                .map(|_| Group { members: HashMap::new(), cursor: 0, next: tokio::time::Instant::now() })
                .collect(),
            last_write: None,
            origin: tokio::time::Instant::now(),
            flush_listed: false,
        });
        if let Some(bridge) = &self.bridge {
            bridge.note(BridgeCommand::Subscribe(name.clone()));
        }
        for command in waiting {
            if let Some(record) = room.handle(command, self.bridge.as_ref()) {
                self.persist(record);
            }
        }
        room.list_for_flush(&name, &mut self.dirty);
        metrics::gauge!("aether_chat_rooms").increment(1.0);
        self.rooms.insert(name, Slot::Ready(room));
    }

    /// Hands a moderation record to the directory (audit log, ban list) off the hot path.
    fn persist(&self, record: ModerationRecord) {
        self.tasks.spawn(self.directory.record(record));
    }

    fn tick(&mut self, now: Instant) {
        let presence = &self.presence;
        let bridge = self.bridge.as_ref();
        let dirty = &mut self.dirty;
        self.rooms.retain(|name, slot| {
            let Slot::Ready(room) = slot else { return true };
            if let Some(bridge) = bridge {
                let names = room.users_changed.then(|| room.users.keys().cloned().collect());
                let noted = bridge.note(BridgeCommand::Presence {
                    room: name.clone(),
                    count: room.member_count(),
                    users: room.users.len(),
                    names,
                });
                room.users_changed &= !noted;
            }
            room.broadcast_presence(presence);
            room.list_for_flush(name, dirty);
            room.timeouts.retain(|_, until| *until > now);
            let slow = room.slow;
            room.last_sent.retain(|_, at| now.saturating_duration_since(*at) < slow);
            // Looked-up follows are kept a minute: without this, every sender ever seen while
            // followers-only was on would stay.
            room.follows.retain(|_, (_, at)| now.saturating_duration_since(*at) < FOLLOW_CACHE);
            let expired = room.empty_since.is_some_and(|since| now.saturating_duration_since(since) > EMPTY_ROOM_TTL);
            if expired {
                presence.remove(name);
                if let Some(bridge) = bridge {
                    bridge.note(BridgeCommand::Unsubscribe(name.clone()));
                }
                metrics::gauge!("aether_chat_rooms").decrement(1.0);
            }
            !expired
        });
    }
}
