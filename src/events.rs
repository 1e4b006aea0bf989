//! Events: what happened, for whoever cares. Two deliveries:
//! - **durable** ([`publish`]): inside the publisher's transaction, one `jobs` row per subscriber
//!   (`crate::modules::SUBSCRIPTIONS`), so a subscriber runs at least once after the commit and
//!   never for a rolled-back change. The event's JSON is the job's payload: a contract.
//! - **live** ([`EventBus`]): an in-process broadcast for screens and sockets, sent after the
//!   commit, best effort; a subscriber that falls behind misses events and is told how many.

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use tokio::sync::broadcast;

use crate::jobs::{self, NewJob};

const CAPACITY: usize = 1024;

/// An event's name on the bus, in job payloads and in webhooks.
pub type EventName = &'static str;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "stream.started")]
    StreamStarted { channel: String, session_id: i64 },
    #[serde(rename = "stream.ended")]
    StreamEnded { channel: String, session_id: i64 },
    /// A user followed a channel for the first time (a follow after an unfollow is new again).
    #[serde(rename = "user.followed")]
    UserFollowed { follower: i64, channel_id: i64 },
    /// A chat message named users with `@name`.
    #[serde(rename = "chat.mention")]
    ChatMention { room: String, from: String, message_id: String, text: String, users: Vec<String> },
}

impl Event {
    pub fn name(&self) -> EventName {
        match self {
            Event::StreamStarted { .. } => "stream.started",
            Event::StreamEnded { .. } => "stream.ended",
            Event::UserFollowed { .. } => "user.followed",
            Event::ChatMention { .. } => "chat.mention",
        }
    }

    /// What makes this event one of a kind: publishing it twice queues its subscribers once.
    fn key(&self) -> String {
        match self {
            Event::StreamStarted { session_id, .. } | Event::StreamEnded { session_id, .. } => session_id.to_string(),
            Event::UserFollowed { follower, channel_id } => format!("{follower}:{channel_id}"),
            Event::ChatMention { room, message_id, .. } => format!("{room}:{message_id}"),
        }
    }
}

/// Queues `event` for its durable subscribers in the caller's transaction. Wake the job runner
/// (`AppState::jobs().wake()`) after the commit.
pub async fn publish(conn: &mut AnyConnection, event: &Event) -> Result<(), sqlx::Error> {
    for kind in crate::modules::subscribers(event.name()) {
        let job = NewJob::new(kind, event).dedup(format!("{}:{}:{}", kind.name, event.name(), event.key()));
        jobs::enqueue(conn, job).await?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self { sender: broadcast::channel(CAPACITY).0 }
    }
}

impl EventBus {
    /// Sends `event` to the live subscribers (after the commit that made it true).
    pub fn publish(&self, event: Event) {
        tracing::debug!(event = event.name(), "event");
        // No subscriber is not an error.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
