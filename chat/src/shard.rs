//! A shard: one task that owns a set of rooms outright (members, history ring, presence,
//! moderation state), so the hot path takes no lock. A message is stamped and serialized once
//! and the same `Bytes` goes to every member, a window at a time (a big room in turns spread over
//! the window); a member whose queue is full is closed as a slow consumer instead of being
//! buffered. Rooms are loaded from the `Directory` on first use (commands wait meanwhile) and
//! dropped some minutes after their last member left.

use std::collections::{HashMap, HashSet, VecDeque};
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
use crate::protocol::{self, ChatUserView, ErrorCode, MessageFields};
use crate::wire;

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

struct HistoryEntry {
    id: MessageId,
    author: String,
    frame: Bytes,
    /// Users who must not get it (its author blocked them).
    hidden_from: Hidden,
}

/// The user ids a message is kept from; `None` for most.
type Hidden = Option<Arc<HashSet<i64>>>;

fn hidden_from(user: &ChatUser) -> Hidden {
    (!user.blocked.is_empty()).then(|| user.blocked.clone())
}

fn is_hidden(hidden: &Hidden, user: Option<i64>) -> bool {
    matches!((hidden, user), (Some(set), Some(user)) if set.contains(&user))
}

struct Room {
    name: String,
    epoch: u64,
    /// Whether `epoch` (and the sequence) are Redis's, shared by every node.
    epoch_from_redis: bool,
    next_seq: u64,
    history: VecDeque<HistoryEntry>,
    history_limit: usize,
    /// Signed-in users present, with their connection counts.
    users: HashMap<String, usize>,
    owner: String,
    moderators: HashSet<String>,
    banned: HashSet<String>,
    timeouts: HashMap<String, Instant>,
    slow: Duration,
    last_sent: HashMap<String, Instant>,
    /// Followers-only mode: how long one must have followed to chat (`None`: off).
    followers_only: Option<Duration>,
    /// Since when users follow (unix ms, `None`: they do not), as the directory said, and when
    /// it said it: kept `FOLLOW_CACHE` long.
    follows: HashMap<i64, (Option<i64>, Instant)>,
    /// Messages waiting for their sender's follow to be looked up.
    awaiting: Vec<AwaitingSend>,
    /// Users to look up (drained by the shard).
    lookups: Vec<i64>,
    /// This node's messages that name users (drained by the shard, handed to the directory).
    mentions: Vec<crate::hub::Mention>,
    presence_sent: (usize, usize),
    /// The set of users changed since the bridge was last told.
    users_changed: bool,
    /// Members and users on other nodes (from the bridge).
    remote_presence: (usize, usize),
    empty_since: Option<Instant>,
    /// Frames for every member, numbered from `outgoing_base`, held until each group has
    /// written them: a group writes at most once per `chat.coalesce_ms`, so that a busy room
    /// costs each connection one write per window.
    outgoing: VecDeque<Outgoing>,
    outgoing_base: u64,
    /// The members, in `chat.coalesce_groups` groups (by connection id) that take their turns
    /// spread evenly over the window once the room is big (see `flush_due`).
    groups: Vec<Group>,
    /// When any group last wrote.
    last_write: Option<tokio::time::Instant>,
    /// When the room last wrote after a quiet window: the groups' turns count from here.
    origin: tokio::time::Instant,
    /// In the shard's list of rooms to flush.
    flush_listed: bool,
}

/// How long a looked-up follow is trusted; a missing one only briefly, so that someone who
/// just followed may chat a moment later.
const FOLLOW_CACHE: Duration = Duration::from_secs(60);
const NO_FOLLOW_CACHE: Duration = Duration::from_secs(2);
/// Messages a room holds while follows are looked up; more are refused as busy.
const MAX_AWAITING: usize = 1000;

struct AwaitingSend {
    conn: ConnId,
    user: Arc<ChatUser>,
    text: String,
    nonce: Option<String>,
    queued: Instant,
}

struct Joined {
    member: Member,
    /// The first outgoing frame it is owed (frames from before its join are in the history it
    /// got).
    owed_from: u64,
}

/// How often a room's members get its frames (`chat.coalesce_*`).
#[derive(Clone, Copy)]
struct Pace {
    window: Duration,
    turn_members: usize,
}

struct Group {
    members: HashMap<ConnId, Joined>,
    /// The first outgoing frame this group has not written.
    cursor: u64,
    /// When the group may write next.
    next: tokio::time::Instant,
}

/// A frame (whole, see `wire`) for every member; its sender, if any, gets its own copy instead
/// (the one with the nonce), in the same place.
struct Outgoing {
    frame: Bytes,
    sender: Option<(ConnId, Bytes)>,
    hidden_from: Hidden,
    /// When it was stamped (for the delivery latency histogram).
    at: Instant,
}

/// What `conn` (user `user`) is owed of `outgoing`: each frame, or its own copy of the ones it
/// sent, but those kept from it.
fn frames_for<'a>(outgoing: impl Iterator<Item = &'a Outgoing> + Clone, conn: ConnId, user: Option<i64>) -> Bytes {
    wire::joined(outgoing.filter(move |out| !is_hidden(&out.hidden_from, user)).map(move |out| match &out.sender {
        Some((sender, own)) if *sender == conn => own,
        _ => &out.frame,
    }))
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

fn reply(member: &Member, frame: Bytes) {
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

impl Room {
    /// Handles one command; a moderation action comes back as a record to persist.
    fn handle(&mut self, command: Command, bridge: Option<&Bridge>) -> Option<ModerationRecord> {
        match command {
            Command::Join { member, since, .. } => self.join(member, since),
            Command::Leave { conn, reply: answer, .. } => {
                if let Some(member) = self.remove(conn)
                    && answer
                {
                    reply(&member, protocol::left(&self.name));
                }
            }
            Command::Send { conn, user, text, nonce, queued, .. } => self.send(conn, user, text, nonce, queued, bridge),
            Command::Delivered { message, id } => {
                let PendingMessage { conn, user, text, nonce, badges, queued, .. } = message;
                self.deliver(Some(conn), &user.name, badges, &text, nonce.as_deref(), id, now_ms(), hidden_from(&user));
                metrics::histogram!("aether_chat_fanout_seconds").record(queued.elapsed().as_secs_f64());
            }
            Command::Moderate { conn, actor, action, .. } => return self.moderate(conn, &actor, action, bridge),
            Command::Notice { text, .. } => {
                let frame = protocol::notice(&self.name, &text);
                self.broadcast(&frame);
                self.publish(bridge, RemoteEvent::Notice { text });
            }
            Command::SetModerator { user, moderator, .. } => {
                self.set_moderator(user.clone(), moderator);
                self.publish(bridge, RemoteEvent::Moderator { user, moderator });
            }
            Command::SetBanned { user, banned, .. } => {
                self.timeouts.remove(&user);
                if banned {
                    self.banned.insert(user);
                } else {
                    self.banned.remove(&user);
                }
            }
            Command::Remote { event, id, .. } => self.remote(event, id),
            Command::RemotePresence { count, users, .. } => self.remote_presence = (count, users),
            Command::FollowChecked { user, since, .. } => self.follow_checked(user, since, bridge),
            Command::Loaded { .. } => {}
        }
        None
    }

    /// A follow looked up: remembered, and the messages that waited for it go on (or are
    /// refused).
    fn follow_checked(&mut self, user: i64, since: Result<Option<i64>, String>, bridge: Option<&Bridge>) {
        let since = match since {
            Ok(since) => since,
            Err(error) => {
                tracing::warn!(room = %self.name, %error, "looking up a follow failed");
                for waiting in self.awaiting.iter().filter(|w| w.user.id == user) {
                    if let Some(member) = self.member(waiting.conn) {
                        reply(
                            member,
                            protocol::error(ErrorCode::Unavailable, "cannot check your follow right now; try again"),
                        );
                    }
                }
                self.awaiting.retain(|w| w.user.id != user);
                return;
            }
        };
        self.follows.insert(user, (since, Instant::now()));
        let (ready, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.awaiting).into_iter().partition(|w| w.user.id == user);
        self.awaiting = rest;
        for AwaitingSend { conn, user, text, nonce, queued } in ready {
            self.send(conn, user, text, nonce, queued, bridge);
        }
    }

    /// In followers-only mode: `Ok(true)` when `user` may chat, `Ok(false)` when their follow
    /// is being looked up (the message waits), `Err` with the refusal otherwise.
    fn followers_only_check(&mut self, user: &ChatUser, now: Instant) -> Result<bool, String> {
        let Some(needed) = self.followers_only else { return Ok(true) };
        let fresh = |(since, at): &&(Option<i64>, Instant)| {
            now.saturating_duration_since(*at) < if since.is_some() { FOLLOW_CACHE } else { NO_FOLLOW_CACHE }
        };
        match self.follows.get(&user.id).filter(fresh) {
            Some((None, _)) => Err("followers-only chat: follow the channel to chat".to_owned()),
            Some((Some(since), _)) => {
                let followed = Duration::from_millis(now_ms().saturating_sub(*since).max(0) as u64);
                if followed >= needed {
                    Ok(true)
                } else {
                    let left = (needed - followed).as_secs().div_ceil(60).max(1);
                    Err(format!("followers-only chat: you can chat in {left} min"))
                }
            }
            None => {
                if !self.lookups.contains(&user.id) && !self.awaiting.iter().any(|w| w.user.id == user.id) {
                    self.lookups.push(user.id);
                }
                Ok(false)
            }
        }
    }

    fn set_moderator(&mut self, user: String, moderator: bool) {
        if moderator {
            self.moderators.insert(user);
        } else {
            self.moderators.remove(&user);
        }
    }

    /// Applies what another node did in this room.
    fn remote(&mut self, event: RemoteEvent, id: Option<MessageId>) {
        match event {
            RemoteEvent::Msg { user, badges, text, ts } => {
                let badges: Vec<&str> = badges.iter().map(String::as_str).collect();
                self.deliver(None, &user, &badges, &text, None, id, ts, None);
            }
            RemoteEvent::Deleted { id } => {
                if let Some(parsed) = MessageId::parse(&id) {
                    self.history.retain(|entry| entry.id != parsed);
                }
                let frame = protocol::deleted(&self.name, &id);
                self.broadcast(&frame);
            }
            RemoteEvent::Notice { text } => {
                let frame = protocol::notice(&self.name, &text);
                self.broadcast(&frame);
            }
            RemoteEvent::Ban { user, notice } => {
                self.timeouts.remove(&user);
                self.banned.insert(user);
                self.broadcast(&protocol::notice(&self.name, &notice));
            }
            RemoteEvent::Unban { user, notice } => {
                self.timeouts.remove(&user);
                self.banned.remove(&user);
                self.broadcast(&protocol::notice(&self.name, &notice));
            }
            RemoteEvent::Timeout { user, seconds, notice } => {
                self.timeouts.insert(user, Instant::now() + Duration::from_secs(seconds.min(MAX_TIMEOUT_SECS)));
                let frame = protocol::notice(&self.name, &notice);
                self.broadcast(&frame);
            }
            RemoteEvent::Slow { seconds, notice } => {
                self.slow = Duration::from_secs(seconds.min(MAX_SLOW_SECS));
                let frame = protocol::notice(&self.name, &notice);
                self.broadcast(&frame);
            }
            RemoteEvent::FollowersOnly { minutes, notice } => {
                self.followers_only = minutes.map(|minutes| Duration::from_secs(minutes * 60));
                self.broadcast(&protocol::notice(&self.name, &notice));
            }
            RemoteEvent::Moderator { user, moderator } => self.set_moderator(user, moderator),
        }
    }

    fn join(&mut self, member: Member, since: Option<String>) {
        let viewer = member.user.as_ref().map(|user| user.id);
        let visible = |entry: &&HistoryEntry| !is_hidden(&entry.hidden_from, viewer);
        let (history, recovered) = match since.as_deref().map(MessageId::parse) {
            None => (self.history.iter().filter(visible).map(|entry| entry.frame.clone()).collect::<Vec<_>>(), None),
            Some(since) => match since {
                // Everything after `since` is still held: replay exactly that.
                Some(id)
                    if id.epoch == self.epoch
                        && self
                            .history
                            .iter()
                            .find(|entry| entry.id.epoch == self.epoch)
                            .is_none_or(|first| first.id.seq <= id.seq + 1) =>
                {
                    let missed = self
                        .history
                        .iter()
                        .filter(visible)
                        .filter(|entry| entry.id > id)
                        .map(|entry| entry.frame.clone());
                    (missed.collect(), Some(true))
                }
                _ => (self.history.iter().filter(visible).map(|entry| entry.frame.clone()).collect(), Some(false)),
            },
        };
        if let Some(user) = &member.user {
            let connections = self.users.entry(user.name.clone()).or_default();
            *connections += 1;
            self.users_changed |= *connections == 1;
        }
        let conn = member.conn;
        // What is outgoing is in the history the joiner gets: it is owed what comes after.
        let owed_from = self.outgoing_base + self.outgoing.len() as u64;
        let group = self.group_of(conn);
        if let Some(previous) = self.groups[group].members.insert(conn, Joined { member, owed_from })
            && let Some(user) = &previous.member.user
        {
            // A repeated join of the same connection replaces it; keep the user count right.
            self.forget_user(&user.name);
        }
        self.empty_since = None;
        let member = &self.groups[group].members[&conn].member;
        let you = member.user.as_deref().map(|user| protocol::You {
            name: &user.name,
            badges: self.badges(user),
            moderator: self.is_moderator(user),
        });
        let frame =
            protocol::joined(&self.name, &history, self.member_count() + self.remote_presence.0, recovered, you);
        reply(member, frame);
    }

    fn forget_user(&mut self, name: &str) {
        if let Some(count) = self.users.get_mut(name) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(name);
                self.users_changed = true;
            }
        }
    }

    fn remove(&mut self, conn: ConnId) -> Option<Member> {
        let group = self.group_of(conn);
        let Joined { member, .. } = self.groups[group].members.remove(&conn)?;
        if let Some(user) = &member.user {
            self.forget_user(&user.name);
        }
        if self.member_count() == 0 {
            self.empty_since = Some(Instant::now());
        }
        Some(member)
    }

    fn is_moderator(&self, user: &ChatUser) -> bool {
        user.admin || user.name == self.owner || self.moderators.contains(&user.name)
    }

    fn badges(&self, user: &ChatUser) -> &'static [&'static str] {
        if user.name == self.owner {
            &["broadcaster"]
        } else if self.moderators.contains(&user.name) {
            &["moderator"]
        } else if user.admin {
            &["admin"]
        } else {
            &[]
        }
    }

    fn send(
        &mut self,
        conn: ConnId,
        user: Arc<ChatUser>,
        text: String,
        nonce: Option<String>,
        queued: Instant,
        bridge: Option<&Bridge>,
    ) {
        let Some(sender) = self.member(conn) else { return };
        let now = Instant::now();
        let privileged = self.is_moderator(&user);
        let refusal = if self.banned.contains(&user.name) {
            Some((ErrorCode::Banned, "you are banned from this room".to_owned()))
        } else if let Some(until) = self.timeouts.get(&user.name).filter(|until| **until > now) {
            Some((
                ErrorCode::TimedOut,
                format!("you are timed out for {} more s", until.duration_since(now).as_secs() + 1),
            ))
        } else if let Some(last) = self.last_sent.get(&user.name).filter(|_| !privileged && !self.slow.is_zero()) {
            let wait = self.slow.saturating_sub(now.saturating_duration_since(*last));
            (!wait.is_zero()).then(|| (ErrorCode::SlowMode, format!("slow mode: wait {} s", wait.as_secs() + 1)))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            reply(sender, protocol::error(code, &message));
            return;
        }
        if !privileged {
            match self.followers_only_check(&user, now) {
                Ok(true) => {}
                Ok(false) if self.awaiting.len() < MAX_AWAITING => {
                    self.awaiting.push(AwaitingSend { conn, user, text, nonce, queued });
                    return;
                }
                Ok(false) => {
                    if let Some(member) = self.member(conn) {
                        reply(member, protocol::error(ErrorCode::Unavailable, "the room is busy; try again"));
                    }
                    return;
                }
                Err(message) => {
                    if let Some(member) = self.member(conn) {
                        reply(member, protocol::error(ErrorCode::FollowersOnly, &message));
                    }
                    return;
                }
            }
        }
        let badges = self.badges(&user);
        if !self.slow.is_zero() {
            self.last_sent.insert(user.name.clone(), now);
        }
        let command =
            BridgeCommand::Send(PendingMessage { room: self.name.clone(), conn, user, text, nonce, badges, queued });
        let local = match bridge {
            // Through Redis for an id every node agrees on; delivered when it comes back.
            Some(bridge) => bridge.offer(command),
            None => Err(command),
        };
        if let Err(BridgeCommand::Send(PendingMessage { user, text, nonce, .. })) = local {
            self.deliver(Some(conn), &user.name, badges, &text, nonce.as_deref(), None, now_ms(), hidden_from(&user));
            metrics::histogram!("aether_chat_fanout_seconds").record(queued.elapsed().as_secs_f64());
        }
    }

    /// Stamps, records and fans out a message. `origin`: the local sender (who gets the nonce);
    /// `id`: from Redis, or `None` for the next local id.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        origin: Option<ConnId>,
        user: &str,
        badges: &[&str],
        text: &str,
        nonce: Option<&str>,
        id: Option<MessageId>,
        ts: i64,
        hidden: Hidden,
    ) {
        let id = match id {
            Some(id) => {
                // The room's ids now come from Redis: its epoch is the room's epoch.
                if id.epoch != self.epoch {
                    self.epoch = id.epoch;
                    self.next_seq = 0;
                }
                self.epoch_from_redis = true;
                self.next_seq = self.next_seq.max(id.seq + 1);
                id
            }
            None => {
                if self.epoch_from_redis {
                    // Redis is unreachable: number locally under a fresh epoch, so that these ids
                    // can never collide with ones Redis hands out later.
                    self.epoch = (now_ms().max(1) as u64).max(self.epoch + 1);
                    self.next_seq = 1;
                    self.epoch_from_redis = false;
                }
                let id = MessageId { epoch: self.epoch, seq: self.next_seq };
                self.next_seq += 1;
                id
            }
        };
        let fields =
            MessageFields { room: &self.name, id: id.to_string(), user: ChatUserView { name: user, badges }, text, ts };
        let (shared, own) = protocol::msg(fields, nonce);
        // Keep the history in id order (messages from other nodes may arrive a little late).
        // Ids only compare within an epoch; a message of a new epoch goes after everything held.
        let at =
            self.history.iter().rposition(|entry| entry.id.epoch != id.epoch || entry.id < id).map_or(0, |at| at + 1);
        if origin.is_some() && text.contains('@') {
            let users = crate::hub::mentioned_users(text, user);
            if !users.is_empty() {
                self.mentions.push(crate::hub::Mention {
                    room: self.name.clone(),
                    from: user.to_owned(),
                    message_id: id.to_string(),
                    text: text.to_owned(),
                    users,
                });
            }
        }
        self.history.insert(
            at,
            HistoryEntry { id, author: user.to_owned(), frame: shared.clone(), hidden_from: hidden.clone() },
        );
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        metrics::counter!("aether_chat_messages_total").increment(1);
        let sender = match (own, origin) {
            (Some(own), Some(conn)) => Some((conn, wire::text(&own))),
            _ => None,
        };
        self.outgoing.push_back(Outgoing {
            frame: wire::text(&shared),
            sender,
            hidden_from: hidden,
            at: Instant::now(),
        });
    }

    /// Sends `frame` to every member at the shard's next flush.
    fn broadcast(&mut self, frame: &Bytes) {
        self.outgoing.push_back(Outgoing {
            frame: wire::text(frame),
            sender: None,
            hidden_from: None,
            at: Instant::now(),
        });
    }

    /// Puts the room on the shard's list for the next flush if it has frames outgoing (once).
    fn list_for_flush(&mut self, name: &str, dirty: &mut Vec<String>) {
        if !self.outgoing.is_empty() && !self.flush_listed {
            self.flush_listed = true;
            dirty.push(name.to_owned());
        }
    }

    fn group_of(&self, conn: ConnId) -> usize {
        (conn % self.groups.len() as u64) as usize
    }

    fn member(&self, conn: ConnId) -> Option<&Member> {
        self.groups[self.group_of(conn)].members.get(&conn).map(|joined| &joined.member)
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.groups.iter().flat_map(|group| group.members.values()).map(|joined| &joined.member)
    }

    fn member_count(&self) -> usize {
        self.groups.iter().map(|group| group.members.len()).sum()
    }

    /// Writes what is outgoing to the groups whose turn has come: to all at once if the room has
    /// not written for a window (a quiet room adds no delay), else to each group whose window has
    /// passed. A room of up to `pace.turn_members` members writes in one turn per window; a bigger
    /// one in as many turns as that takes (at most one per group), staggered evenly over the
    /// window. Returns when the next group is due (now, for groups left for the next pass), if
    /// any still owes frames.
    fn flush_due(&mut self, now: tokio::time::Instant, pace: Pace) -> Option<tokio::time::Instant> {
        if self.outgoing.is_empty() {
            return None;
        }
        if self.last_write.is_none_or(|at| at + pace.window <= now) {
            // Quiet: every group is due now.
            self.origin = now;
            for group in &mut self.groups {
                group.next = now;
            }
        }
        let groups = self.groups.len();
        let turns = self.member_count().div_ceil(pace.turn_members.max(1)).clamp(1, groups);
        let end = self.outgoing_base + self.outgoing.len() as u64;
        let mut wrote = false;
        // About a turn's worth of members per pass: due groups beyond that (all of a big room's
        // after a quiet window) are left for the next pass, due at once, so that the shard serves
        // its other rooms and commands in between.
        let mut budget = pace.turn_members;
        for index in 0..groups {
            let group = &mut self.groups[index];
            if group.members.is_empty() {
                group.cursor = end;
                continue;
            }
            if group.next > now || budget == 0 {
                continue;
            }
            budget = budget.saturating_sub(group.members.len());
            self.write_group(index);
            wrote = true;
            // The group's next turn: its place among the turns, one window apart from then on.
            let turn = (index * turns / groups) as u32 + 1;
            let mut next = self.origin + pace.window * turn / turns as u32;
            if next <= now && !pace.window.is_zero() {
                let behind = (now - next).as_nanos() / pace.window.as_nanos();
                next += pace.window * (behind as u32 + 1);
            }
            self.groups[index].next = next;
        }
        if wrote {
            self.last_write = Some(now);
        }
        // Drop what every group has written.
        let written = self.groups.iter().map(|group| group.cursor).min().unwrap_or(end);
        self.outgoing.drain(..(written - self.outgoing_base) as usize);
        self.outgoing_base = written;
        self.groups.iter().filter(|group| group.cursor < end).map(|group| group.next).min()
    }

    /// Hands one group what it has not had of what is outgoing: the same bytes (framed once,
    /// joined once) to all but the senders and the newly joined among them; members that cannot
    /// take it are closed.
    fn write_group(&mut self, index: usize) {
        let base = self.outgoing_base;
        let end = base + self.outgoing.len() as u64;
        let group = &mut self.groups[index];
        let start = group.cursor;
        group.cursor = end;
        if start >= end {
            return;
        }
        let outgoing = self.outgoing.range((start - base) as usize..);
        let everyone = wire::joined(outgoing.clone().map(|out| &out.frame));
        // Frames some members must not get (their author blocked them): those members get
        // their own batch.
        let restricted = outgoing.clone().any(|out| out.hidden_from.is_some());
        // Sorted, so that each member is told apart from the senders in log time: a busy room
        // has many members and a window may hold many senders.
        let mut senders: Vec<ConnId> =
            outgoing.clone().filter_map(|out| out.sender.as_ref().map(|(conn, _)| *conn)).collect();
        senders.sort_unstable();
        senders.dedup();
        let mut slow = Vec::new();
        let mut delivered = 0u64;
        for (conn, Joined { member, owed_from }) in &group.members {
            let from = start.max(*owed_from);
            if from >= end {
                continue;
            }
            let user = member.user.as_ref().map(|user| user.id);
            let kept_from = restricted && outgoing.clone().any(|out| is_hidden(&out.hidden_from, user));
            let batch = if from > start || kept_from {
                frames_for(self.outgoing.range((from - base) as usize..), *conn, user)
            } else if senders.binary_search(conn).is_ok() {
                frames_for(outgoing.clone(), *conn, user)
            } else {
                everyone.clone()
            };
            if batch.is_empty() {
                continue;
            }
            if member.control.push(batch) {
                delivered += end - from;
            } else {
                member.control.close(CloseReason::SlowConsumer);
                slow.push(*conn);
            }
        }
        metrics::counter!("aether_chat_deliveries_total").increment(delivered);
        // How long each frame took from its stamping to this group's sockets (its turn's writes
        // included).
        let now = Instant::now();
        let waited = metrics::histogram!("aether_chat_delivery_seconds");
        for out in outgoing {
            waited.record(now.saturating_duration_since(out.at).as_secs_f64());
        }
        if !slow.is_empty() {
            metrics::counter!("aether_chat_slow_consumers_total").increment(slow.len() as u64);
            for conn in slow {
                self.remove(conn);
            }
        }
    }

    fn publish(&self, bridge: Option<&Bridge>, event: RemoteEvent) {
        if let Some(bridge) = bridge {
            let _ = bridge.offer(BridgeCommand::Publish { room: self.name.clone(), event });
        }
    }

    fn broadcast_presence(&mut self, presence: &DashMap<String, usize>) {
        let now = (self.member_count() + self.remote_presence.0, self.users.len() + self.remote_presence.1);
        if now == self.presence_sent {
            return;
        }
        self.presence_sent = now;
        presence.insert(self.name.clone(), now.0);
        let frame = protocol::presence(&self.name, now.0, now.1);
        self.broadcast(&frame);
    }

    fn moderate(
        &mut self,
        conn: ConnId,
        actor: &ChatUser,
        action: ModerationAction,
        bridge: Option<&Bridge>,
    ) -> Option<ModerationRecord> {
        let member = self.member(conn).cloned()?;
        if !self.is_moderator(actor) {
            reply(
                &member,
                protocol::error(
                    ErrorCode::Forbidden,
                    "only the channel's owner, its moderators and admins may moderate",
                ),
            );
            return None;
        }
        let target = match &action {
            ModerationAction::Timeout { user, .. }
            | ModerationAction::Ban { user }
            | ModerationAction::Unban { user } => Some(user.clone()),
            _ => None,
        };
        if let Some(target) = &target {
            let target_is_staff =
                *target == self.owner || (self.moderators.contains(target) && actor.name != self.owner && !actor.admin);
            if target_is_staff && !matches!(action, ModerationAction::Unban { .. }) {
                reply(
                    &member,
                    protocol::error(
                        ErrorCode::Forbidden,
                        "the channel's owner and moderators cannot be sanctioned here",
                    ),
                );
                return None;
            }
        }
        let now = Instant::now();
        let recorded = match action {
            ModerationAction::Delete { id, .. } => {
                let Some(parsed) = MessageId::parse(&id).filter(|parsed| parsed.epoch == self.epoch) else {
                    reply(&member, protocol::error(ErrorCode::NotFound, "no such message"));
                    return None;
                };
                let author = self
                    .history
                    .iter()
                    .position(|entry| entry.id == parsed)
                    .and_then(|at| self.history.remove(at))
                    .map(|entry| entry.author);
                let frame = protocol::deleted(&self.name, &id);
                self.broadcast(&frame);
                self.publish(bridge, RemoteEvent::Deleted { id: id.clone() });
                ModerationAction::Delete { id, author }
            }
            ModerationAction::Timeout { user, seconds } => {
                let seconds = seconds.clamp(1, MAX_TIMEOUT_SECS);
                self.timeouts.insert(user.clone(), now + Duration::from_secs(seconds));
                let notice = format!("{user} was timed out for {seconds} s");
                self.broadcast(&protocol::notice(&self.name, &notice));
                self.publish(bridge, RemoteEvent::Timeout { user: user.clone(), seconds, notice });
                ModerationAction::Timeout { user, seconds }
            }
            ModerationAction::Ban { user } => {
                self.banned.insert(user.clone());
                self.timeouts.remove(&user);
                let notice = format!("{user} was banned");
                self.broadcast(&protocol::notice(&self.name, &notice));
                self.publish(bridge, RemoteEvent::Ban { user: user.clone(), notice });
                ModerationAction::Ban { user }
            }
            ModerationAction::Unban { user } => {
                self.banned.remove(&user);
                self.timeouts.remove(&user);
                let notice = format!("{user} was unbanned");
                self.broadcast(&protocol::notice(&self.name, &notice));
                self.publish(bridge, RemoteEvent::Unban { user: user.clone(), notice });
                ModerationAction::Unban { user }
            }
            ModerationAction::FollowersOnly { minutes } => {
                self.followers_only = minutes.map(|minutes| Duration::from_secs(minutes * 60));
                let notice = followers_only_notice(minutes);
                self.broadcast(&protocol::notice(&self.name, &notice));
                self.publish(bridge, RemoteEvent::FollowersOnly { minutes, notice });
                ModerationAction::FollowersOnly { minutes }
            }
            ModerationAction::Slow { seconds } => {
                let seconds = seconds.min(MAX_SLOW_SECS);
                self.slow = Duration::from_secs(seconds);
                let text = if seconds == 0 {
                    "slow mode is off".to_owned()
                } else {
                    format!("slow mode: one message every {seconds} s")
                };
                let frame = protocol::notice(&self.name, &text);
                self.broadcast(&frame);
                ModerationAction::Slow { seconds }
            }
        };
        metrics::counter!("aether_chat_moderation_total").increment(1);
        tracing::info!(room = %self.name, actor = %actor.name, action = ?recorded, "chat moderation");
        Some(ModerationRecord {
            room: self.name.clone(),
            actor_id: actor.id,
            actor: actor.name.clone(),
            action: recorded,
            at_ms: now_ms(),
        })
    }
}

fn followers_only_notice(minutes: Option<u64>) -> String {
    match minutes {
        None => "followers-only mode is off".to_owned(),
        Some(0) => "followers-only mode: followers may chat".to_owned(),
        Some(minutes) => format!("followers-only mode: followers of at least {minutes} min may chat"),
    }
}
