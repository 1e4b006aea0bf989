//! A chat room's state and what it does with commands: members in groups, history, users,
//! moderation state, the outgoing frames and their paced flushing. Its shard owns it; the
//! moderation and followers-only rules are in `moderation.rs`, the flushing in `flush.rs`.

mod flush;
mod moderation;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bridge::{Bridge, BridgeCommand, PendingMessage, RemoteEvent};
use crate::hub::{ChatUser, ConnId, Member, ModerationRecord, now_ms};
use crate::ids::MessageId;
use crate::protocol::{self, ChatUserView, ErrorCode, MessageFields};
use crate::shard::{Command, reply};
use crate::wire;

pub(crate) struct HistoryEntry {
    pub(crate) id: MessageId,
    pub(crate) author: String,
    pub(crate) frame: Bytes,
    /// Users who must not get it (its author blocked them).
    pub(crate) hidden_from: Hidden,
}

/// The user ids a message is kept from; `None` for most.
pub(crate) type Hidden = Option<Arc<HashSet<i64>>>;

pub(crate) fn hidden_from(user: &ChatUser) -> Hidden {
    (!user.blocked.is_empty()).then(|| user.blocked.clone())
}

pub(crate) fn is_hidden(hidden: &Hidden, user: Option<i64>) -> bool {
    matches!((hidden, user), (Some(set), Some(user)) if set.contains(&user))
}

pub(crate) struct Room {
    pub(crate) name: String,
    pub(crate) epoch: u64,
    /// Whether `epoch` (and the sequence) are Redis's, shared by every node.
    pub(crate) epoch_from_redis: bool,
    pub(crate) next_seq: u64,
    pub(crate) history: VecDeque<HistoryEntry>,
    pub(crate) history_limit: usize,
    /// Signed-in users present, with their connection counts.
    pub(crate) users: HashMap<String, usize>,
    pub(crate) owner: String,
    pub(crate) moderators: HashSet<String>,
    pub(crate) banned: HashSet<String>,
    pub(crate) timeouts: HashMap<String, Instant>,
    pub(crate) slow: Duration,
    pub(crate) last_sent: HashMap<String, Instant>,
    /// Followers-only mode: how long one must have followed to chat (`None`: off).
    pub(crate) followers_only: Option<Duration>,
    /// Since when users follow (unix ms, `None`: they do not), as the directory said, and when
    /// it said it: kept `FOLLOW_CACHE` long.
    pub(crate) follows: HashMap<i64, (Option<i64>, Instant)>,
    /// Messages waiting for their sender's follow to be looked up.
    pub(crate) awaiting: Vec<AwaitingSend>,
    /// Users to look up (drained by the shard).
    pub(crate) lookups: Vec<i64>,
    /// This node's messages that name users (drained by the shard, handed to the directory).
    pub(crate) mentions: Vec<crate::hub::Mention>,
    pub(crate) presence_sent: (usize, usize),
    /// The set of users changed since the bridge was last told.
    pub(crate) users_changed: bool,
    /// Members and users on other nodes (from the bridge).
    pub(crate) remote_presence: (usize, usize),
    pub(crate) empty_since: Option<Instant>,
    /// Frames for every member, numbered from `outgoing_base`, held until each group has
    /// written them: a group writes at most once per `chat.coalesce_ms`, so that a busy room
    /// costs each connection one write per window.
    pub(crate) outgoing: VecDeque<Outgoing>,
    pub(crate) outgoing_base: u64,
    /// The members, in `chat.coalesce_groups` groups (by connection id) that take their turns
    /// spread evenly over the window once the room is big (see `flush_due`).
    pub(crate) groups: Vec<Group>,
    /// When any group last wrote.
    pub(crate) last_write: Option<tokio::time::Instant>,
    /// When the room last wrote after a quiet window: the groups' turns count from here.
    pub(crate) origin: tokio::time::Instant,
    /// In the shard's list of rooms to flush.
    pub(crate) flush_listed: bool,
}

/// How long a looked-up follow is trusted; a missing one only briefly, so that someone who
/// just followed may chat a moment later.
pub(crate) const FOLLOW_CACHE: Duration = Duration::from_secs(60);
pub(crate) const NO_FOLLOW_CACHE: Duration = Duration::from_secs(2);
/// Messages a room holds while follows are looked up; more are refused as busy.
pub(crate) const MAX_AWAITING: usize = 1000;

pub(crate) struct AwaitingSend {
    pub(crate) conn: ConnId,
    pub(crate) user: Arc<ChatUser>,
    pub(crate) text: String,
    pub(crate) nonce: Option<String>,
    pub(crate) queued: Instant,
}

pub(crate) struct Joined {
    pub(crate) member: Member,
    /// The first outgoing frame it is owed (frames from before its join are in the history it
    /// got).
    pub(crate) owed_from: u64,
}

/// How often a room's members get its frames (`chat.coalesce_*`).
#[derive(Clone, Copy)]
pub(crate) struct Pace {
    pub(crate) window: Duration,
    pub(crate) turn_members: usize,
}

pub(crate) struct Group {
    pub(crate) members: HashMap<ConnId, Joined>,
    /// The first outgoing frame this group has not written.
    pub(crate) cursor: u64,
    /// When the group may write next.
    pub(crate) next: tokio::time::Instant,
}

/// A frame (whole, see `wire`) for every member; its sender, if any, gets its own copy instead
/// (the one with the nonce), in the same place.
pub(crate) struct Outgoing {
    pub(crate) frame: Bytes,
    pub(crate) sender: Option<(ConnId, Bytes)>,
    pub(crate) hidden_from: Hidden,
    /// When it was stamped (for the delivery latency histogram).
    pub(crate) at: Instant,
}

/// What `conn` (user `user`) is owed of `outgoing`: each frame, or its own copy of the ones it
/// sent, but those kept from it.
pub(crate) fn frames_for<'a>(
    outgoing: impl Iterator<Item = &'a Outgoing> + Clone,
    conn: ConnId,
    user: Option<i64>,
) -> Bytes {
    wire::joined(outgoing.filter(move |out| !is_hidden(&out.hidden_from, user)).map(move |out| match &out.sender {
        Some((sender, own)) if *sender == conn => own,
        _ => &out.frame,
    }))
}

impl Room {
    /// Handles one command; a moderation action comes back as a record to persist.
    pub(crate) fn handle(&mut self, command: Command, bridge: Option<&Bridge>) -> Option<ModerationRecord> {
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

    pub(crate) fn join(&mut self, member: Member, since: Option<String>) {
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

    pub(crate) fn forget_user(&mut self, name: &str) {
        if let Some(count) = self.users.get_mut(name) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(name);
                self.users_changed = true;
            }
        }
    }

    pub(crate) fn remove(&mut self, conn: ConnId) -> Option<Member> {
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

    pub(crate) fn is_moderator(&self, user: &ChatUser) -> bool {
        user.admin || user.name == self.owner || self.moderators.contains(&user.name)
    }

    pub(crate) fn badges(&self, user: &ChatUser) -> &'static [&'static str] {
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

    pub(crate) fn send(
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
    pub(crate) fn deliver(
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
    pub(crate) fn broadcast(&mut self, frame: &Bytes) {
        self.outgoing.push_back(Outgoing {
            frame: wire::text(frame),
            sender: None,
            hidden_from: None,
            at: Instant::now(),
        });
    }

    /// Puts the room on the shard's list for the next flush if it has frames outgoing (once).
    pub(crate) fn list_for_flush(&mut self, name: &str, dirty: &mut Vec<String>) {
        if !self.outgoing.is_empty() && !self.flush_listed {
            self.flush_listed = true;
            dirty.push(name.to_owned());
        }
    }

    pub(crate) fn group_of(&self, conn: ConnId) -> usize {
        (conn % self.groups.len() as u64) as usize
    }

    pub(crate) fn member(&self, conn: ConnId) -> Option<&Member> {
        self.groups[self.group_of(conn)].members.get(&conn).map(|joined| &joined.member)
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &Member> {
        self.groups.iter().flat_map(|group| group.members.values()).map(|joined| &joined.member)
    }

    pub(crate) fn member_count(&self) -> usize {
        self.groups.iter().map(|group| group.members.len()).sum()
    }

    pub(crate) fn publish(&self, bridge: Option<&Bridge>, event: RemoteEvent) {
        if let Some(bridge) = bridge {
            let _ = bridge.offer(BridgeCommand::Publish { room: self.name.clone(), event });
        }
    }
}
