//! A room's moderation: actions of the owner and moderators, followers-only mode and the
//! follow look-ups it needs, and what other nodes did.

use std::time::{Duration, Instant};

use super::{AwaitingSend, FOLLOW_CACHE, NO_FOLLOW_CACHE, Room};
use crate::bridge::{Bridge, RemoteEvent};
use crate::hub::{ChatUser, ConnId, ModerationAction, ModerationRecord, now_ms};
use crate::ids::MessageId;
use crate::protocol::{self, ErrorCode};
use crate::shard::{MAX_SLOW_SECS, MAX_TIMEOUT_SECS, reply};

impl Room {
    /// A follow looked up: remembered, and the messages that waited for it go on (or are
    /// refused).
    pub(crate) fn follow_checked(&mut self, user: i64, since: Result<Option<i64>, String>, bridge: Option<&Bridge>) {
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
    pub(crate) fn followers_only_check(&mut self, user: &ChatUser, now: Instant) -> Result<bool, String> {
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

    pub(crate) fn set_moderator(&mut self, user: String, moderator: bool) {
        if moderator {
            self.moderators.insert(user);
        } else {
            self.moderators.remove(&user);
        }
    }

    /// Applies what another node did in this room.
    pub(crate) fn remote(&mut self, event: RemoteEvent, id: Option<MessageId>) {
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

    pub(crate) fn moderate(
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
