//! Notifications (level 3): what a user is told (a followed channel went live, a new follower,
//! ...), stored per user and sent in real time to their `@me` room; per-kind preferences (in the
//! app, by email). Nobody calls this module: it subscribes to events (`jobs.rs`) and renders
//! them from the facades of the modules below it.

mod jobs;
mod routes;
mod store;

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

pub use jobs::{GO_LIVE, MENTION, NEW_FOLLOWER};
pub use routes::router;

use crate::app::AppState;
use crate::auth::UserId;

/// The kinds of notification, each with its default delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    GoLive,
    NewFollower,
    Mention,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 3] =
        [NotificationKind::GoLive, NotificationKind::NewFollower, NotificationKind::Mention];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::GoLive => "go_live",
            NotificationKind::NewFollower => "new_follower",
            NotificationKind::Mention => "mention",
        }
    }

    fn parse(value: &str) -> Option<NotificationKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            NotificationKind::GoLive => "A channel you follow goes live",
            NotificationKind::NewFollower => "Someone follows your channel",
            NotificationKind::Mention => "Someone mentions you in chat",
        }
    }

    /// Delivery for a user who never changed it.
    pub fn default_prefs(self) -> Prefs {
        match self {
            NotificationKind::GoLive => Prefs { in_app: true, email: true },
            NotificationKind::NewFollower | NotificationKind::Mention => Prefs { in_app: true, email: false },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefs {
    pub in_app: bool,
    pub email: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub id: i64,
    #[serde(skip)]
    pub user: UserId,
    pub kind: NotificationKind,
    /// What the page shows: for go_live `{channel, title}`, for new_follower `{follower, channel}`,
    /// for mention `{from, room, text, message_id}`.
    pub data: serde_json::Value,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// The unread count the bell shows, capped.
pub const UNREAD_CAP: i64 = 100;

/// Sends each new notification to its user's `@me` room (after the commit that stored it).
fn push(state: &AppState, notifications: &[Notification]) {
    for notification in notifications {
        let frame = serde_json::json!({ "type": "notification", "notification": notification });
        state.hub().to_user(notification.user.0, frame.to_string().as_bytes());
    }
}

/// The delivery each of `users` chose for `kind`.
async fn prefs_for(
    conn: &mut AnyConnection,
    users: &[UserId],
    kind: NotificationKind,
) -> Result<std::collections::HashMap<UserId, Prefs>, sqlx::Error> {
    let stored = store::prefs_of(conn, users, kind).await?;
    Ok(users.iter().map(|user| (*user, stored.get(user).copied().unwrap_or(kind.default_prefs()))).collect())
}
