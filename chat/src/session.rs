//! One connection's protocol core: parses client frames, enforces the per-connection limits
//! (frame size, message and join rates, rooms per connection, the per-user rate shared by all
//! of a user's connections), answers what it can itself (pong, errors) and routes the rest to the
//! rooms' shards. Replies go into the connection's bounded outbox, which the server's WebSocket
//! writer drains. Counting violations lets it end a connection that keeps abusing the limits.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::hub::{ChatUser, CloseReason, ConnId, Control, Hub, Member, ModerationAction};
use crate::limits::TokenBucket;
use crate::protocol::{self, ClientFrame, ErrorCode};
use crate::shard::{Command, MAX_SLOW_SECS, MAX_TIMEOUT_SECS};

pub struct Session {
    hub: Hub,
    conn: ConnId,
    user: Option<Arc<ChatUser>>,
    /// The outbox and close switch, shared with the writer and the rooms joined.
    control: Arc<Control>,
    rooms: HashSet<String>,
    sends: TokenBucket,
    joins: TokenBucket,
    violations: u32,
    window_start: Instant,
}

/// The longest follow age followers-only mode may ask for: 90 days.
const MAX_FOLLOW_MINUTES: u64 = 90 * 24 * 60;

/// The room of the signed-in user's own messages from the server.
pub const PERSONAL_ROOM: &str = "@me";

/// Room names are channel names.
fn valid_room(room: &str) -> bool {
    (3..=25).contains(&room.len()) && room.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Session {
    /// A session for a new connection, and its `Control`: the outbox the writer drains (whole
    /// WebSocket frames) and the close switch.
    pub fn new(hub: Hub, user: Option<ChatUser>) -> (Session, Arc<Control>) {
        let config = hub.config().clone();
        let control = Arc::new(Control::new(config.outbox_frames));
        let now = Instant::now();
        let session = Session {
            conn: hub.next_conn_id(),
            hub,
            user: user.map(Arc::new),
            control: control.clone(),
            rooms: HashSet::new(),
            sends: TokenBucket::new(config.messages_per_second, config.messages_per_second * 2.0, now),
            joins: TokenBucket::new(config.joins_per_second, config.joins_per_second * 2.0, now),
            violations: 0,
            window_start: now,
        };
        metrics::gauge!("aether_chat_connections").increment(1.0);
        (session, control)
    }

    pub fn user(&self) -> Option<&ChatUser> {
        self.user.as_deref()
    }

    fn say(&self, frame: Bytes) {
        self.control.send_text(&frame);
    }

    /// Answers an error; too many of them within a minute close the connection.
    fn refuse(&mut self, code: ErrorCode, message: &str) -> Result<(), CloseReason> {
        if matches!(code, ErrorCode::RateLimited) {
            metrics::counter!("aether_chat_rate_limited_total").increment(1);
        }
        self.say(protocol::error(code, message));
        let now = Instant::now();
        if now.duration_since(self.window_start) > Duration::from_secs(60) {
            self.window_start = now;
            self.violations = 0;
        }
        self.violations += 1;
        if self.violations > self.hub.config().max_violations_per_minute {
            return Err(CloseReason::Abuse);
        }
        Ok(())
    }

    /// Handles one text frame. `Err` means: close the connection for that reason.
    pub async fn handle_text(&mut self, text: &str) -> Result<(), CloseReason> {
        if text.len() > self.hub.config().max_frame_bytes {
            let limit = self.hub.config().max_frame_bytes;
            return self.refuse(ErrorCode::FrameTooLarge, &format!("frames are limited to {limit} bytes"));
        }
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(error) => return self.refuse(ErrorCode::BadRequest, &format!("invalid frame: {error}")),
        };
        match frame {
            ClientFrame::Ping => {
                self.say(protocol::pong());
                Ok(())
            }
            ClientFrame::Join { room, since } => self.join(room, since).await,
            ClientFrame::Leave { room } if room == PERSONAL_ROOM => {
                if let (true, Some(user)) = (self.rooms.remove(&room), &self.user) {
                    self.hub.leave_personal(user.id, self.conn);
                    self.say(protocol::left(&room));
                    Ok(())
                } else {
                    self.refuse(ErrorCode::NotJoined, "not in that room")
                }
            }
            ClientFrame::Leave { room } => {
                if self.rooms.remove(&room) {
                    self.hub.command(&room.clone(), Command::Leave { room, conn: self.conn, reply: true }).await;
                    Ok(())
                } else {
                    self.refuse(ErrorCode::NotJoined, "not in that room")
                }
            }
            ClientFrame::Send { room, text, nonce } => self.send(room, text, nonce).await,
            ClientFrame::Delete { room, id } => {
                self.moderate(room, ModerationAction::Delete { id, author: None }).await
            }
            ClientFrame::Timeout { room, user, seconds } => {
                if !(1..=MAX_TIMEOUT_SECS).contains(&seconds) {
                    return self.refuse(ErrorCode::BadRequest, "timeouts are 1 s to 14 days");
                }
                self.moderate(room, ModerationAction::Timeout { user: user.to_ascii_lowercase(), seconds }).await
            }
            ClientFrame::Ban { room, user } => {
                self.moderate(room, ModerationAction::Ban { user: user.to_ascii_lowercase() }).await
            }
            ClientFrame::Unban { room, user } => {
                self.moderate(room, ModerationAction::Unban { user: user.to_ascii_lowercase() }).await
            }
            ClientFrame::FollowersOnly { room, minutes } => {
                if minutes.is_some_and(|minutes| minutes > MAX_FOLLOW_MINUTES) {
                    return self.refuse(ErrorCode::BadRequest, "followers-only is 0 minutes to 90 days (null: off)");
                }
                self.moderate(room, ModerationAction::FollowersOnly { minutes }).await
            }
            ClientFrame::Slow { room, seconds } => {
                if seconds > MAX_SLOW_SECS {
                    return self.refuse(ErrorCode::BadRequest, "slow mode is 0 (off) to 3600 s");
                }
                self.moderate(room, ModerationAction::Slow { seconds }).await
            }
        }
    }

    /// Binary frames are not part of the protocol.
    pub fn handle_binary(&mut self) -> Result<(), CloseReason> {
        self.refuse(ErrorCode::BadRequest, "frames are JSON text")
    }

    async fn join(&mut self, room: String, since: Option<String>) -> Result<(), CloseReason> {
        if room == PERSONAL_ROOM {
            return self.join_personal();
        }
        if !valid_room(&room) {
            return self.refuse(ErrorCode::NotFound, "no such room");
        }
        if !self.joins.take(Instant::now()) {
            return self.refuse(ErrorCode::RateLimited, "joining too fast");
        }
        if !self.rooms.contains(&room) && self.rooms.len() >= self.hub.config().max_rooms_per_connection {
            let limit = self.hub.config().max_rooms_per_connection;
            return self.refuse(ErrorCode::TooManyRooms, &format!("at most {limit} rooms per connection"));
        }
        self.rooms.insert(room.clone());
        let member = Member { conn: self.conn, user: self.user.clone(), control: self.control.clone() };
        if !self.hub.command(&room.clone(), Command::Join { room, member, since }).await {
            return Err(CloseReason::Shutdown);
        }
        Ok(())
    }

    /// `@me`: the signed-in user's own room, where the server sends what is for them alone
    /// (notifications). Nobody joins another user's: the room is whoever this connection is.
    fn join_personal(&mut self) -> Result<(), CloseReason> {
        let Some(user) = self.user.clone() else {
            return self.refuse(ErrorCode::Unauthorized, "sign in to get your notifications");
        };
        if !self.rooms.contains(PERSONAL_ROOM) && self.rooms.len() >= self.hub.config().max_rooms_per_connection {
            let limit = self.hub.config().max_rooms_per_connection;
            return self.refuse(ErrorCode::TooManyRooms, &format!("at most {limit} rooms per connection"));
        }
        self.rooms.insert(PERSONAL_ROOM.to_owned());
        self.hub.join_personal(user.id, self.conn, self.control.clone());
        self.say(protocol::joined(PERSONAL_ROOM, &[], 1, None, None));
        Ok(())
    }

    async fn send(&mut self, room: String, text: String, nonce: Option<String>) -> Result<(), CloseReason> {
        let Some(user) = self.user.clone() else {
            return self.refuse(ErrorCode::Unauthorized, "sign in to chat");
        };
        if room == PERSONAL_ROOM {
            return self.refuse(ErrorCode::BadRequest, "@me is for the server's messages to you");
        }
        if !self.rooms.contains(&room) {
            return self.refuse(ErrorCode::NotJoined, "join the room first");
        }
        let text = protocol::clean_text(&text);
        let limit = self.hub.config().max_message_chars;
        if text.is_empty() || text.chars().count() > limit {
            return self.refuse(ErrorCode::InvalidMessage, &format!("messages are 1 to {limit} characters"));
        }
        if nonce.as_ref().is_some_and(|nonce| nonce.len() > 64) {
            return self.refuse(ErrorCode::BadRequest, "nonces are at most 64 bytes");
        }
        let now = Instant::now();
        if !self.sends.take(now) || !self.hub.user_may_send(user.id, now) {
            return self.refuse(ErrorCode::RateLimited, "sending too fast");
        }
        let command = Command::Send { room: room.clone(), conn: self.conn, user, text, nonce, queued: now };
        if !self.hub.command(&room, command).await {
            return Err(CloseReason::Shutdown);
        }
        Ok(())
    }

    async fn moderate(&mut self, room: String, action: ModerationAction) -> Result<(), CloseReason> {
        let Some(actor) = self.user.clone() else {
            return self.refuse(ErrorCode::Unauthorized, "sign in to moderate");
        };
        if room == PERSONAL_ROOM {
            return self.refuse(ErrorCode::BadRequest, "nothing to moderate in @me");
        }
        if !self.rooms.contains(&room) {
            return self.refuse(ErrorCode::NotJoined, "join the room first");
        }
        let command = Command::Moderate { room: room.clone(), conn: self.conn, actor, action };
        if !self.hub.command(&room, command).await {
            return Err(CloseReason::Shutdown);
        }
        Ok(())
    }

    /// Leaves every room; call when the connection ends.
    pub async fn close(mut self) {
        if self.rooms.remove(PERSONAL_ROOM)
            && let Some(user) = &self.user
        {
            self.hub.leave_personal(user.id, self.conn);
        }
        for room in std::mem::take(&mut self.rooms) {
            self.hub.command(&room.clone(), Command::Leave { room, conn: self.conn, reply: false }).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        metrics::gauge!("aether_chat_connections").decrement(1.0);
    }
}
