//! Profiles (level 1): what a user shows of themselves (display name, bio, links, pictures:
//! `profile.rs`, `images.rs`), the account as a whole (deletion and data export: `account.rs`),
//! who follows which channel and how much they want to hear of it, and who blocked whom. The facade below is what other modules may call; every function takes a
//! connection so that the caller owns the transaction. A new follow publishes `user.followed`.

mod account;
mod images;
mod profile;
mod routes;
mod store;

use axum::Router;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

pub use account::{EXPORT, PURGE};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().merge(routes::router()).merge(profile::router()).merge(account::router())
}

use crate::auth::UserId;
use crate::channels::ChannelId;
use crate::db::now_ms;
use crate::events::{self, Event};

/// How much a follower wants to hear of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowLevel {
    /// Everything the channel does (go-live, and what later modules announce).
    All,
    /// Only when it goes live.
    Live,
    /// Nothing.
    Off,
}

impl FollowLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowLevel::All => "all",
            FollowLevel::Live => "live",
            FollowLevel::Off => "off",
        }
    }

    fn parse(value: &str) -> Option<FollowLevel> {
        [FollowLevel::All, FollowLevel::Live, FollowLevel::Off].into_iter().find(|level| level.as_str() == value)
    }

    /// Whether a go-live of the channel reaches this follower.
    pub fn hears_go_live(self) -> bool {
        self != FollowLevel::Off
    }
}

#[derive(Debug, Clone)]
pub struct Follow {
    pub user: UserId,
    pub channel: ChannelId,
    pub notify: FollowLevel,
    pub created_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("you cannot follow your own channel")]
    OwnChannel,
    #[error("this channel's owner blocked you")]
    Blocked,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

impl From<FollowError> for crate::error::ApiError {
    fn from(error: FollowError) -> Self {
        use crate::error::ApiError;
        match error {
            FollowError::OwnChannel => ApiError::conflict("own_channel", error.to_string()),
            FollowError::Blocked => ApiError::forbidden(error.to_string()),
            FollowError::Store(error) => error.into(),
        }
    }
}

/// `user` follows `channel` (owned by `owner`); idempotent. Publishes `user.followed` when new;
/// returns the follow and whether it is new.
pub async fn follow(
    conn: &mut AnyConnection,
    user: UserId,
    channel: ChannelId,
    owner: UserId,
) -> Result<(Follow, bool), FollowError> {
    if user == owner {
        return Err(FollowError::OwnChannel);
    }
    if store::is_blocked(conn, owner, user).await? {
        return Err(FollowError::Blocked);
    }
    let new = store::insert_follow(conn, user, channel, now_ms()).await?;
    if new {
        events::publish(conn, &Event::UserFollowed { follower: user.0, channel_id: channel.0 }).await?;
    }
    let follow = store::find_follow(conn, user, channel).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok((follow, new))
}

/// Idempotent: true when there was a follow to remove.
pub async fn unfollow(conn: &mut AnyConnection, user: UserId, channel: ChannelId) -> Result<bool, sqlx::Error> {
    store::delete_follow(conn, user, channel).await
}

pub async fn follow_of(
    conn: &mut AnyConnection,
    user: UserId,
    channel: ChannelId,
) -> Result<Option<Follow>, sqlx::Error> {
    store::find_follow(conn, user, channel).await
}

/// False when `user` does not follow `channel`.
pub async fn set_level(
    conn: &mut AnyConnection,
    user: UserId,
    channel: ChannelId,
    level: FollowLevel,
) -> Result<bool, sqlx::Error> {
    store::set_level(conn, user, channel, level).await
}

pub async fn follower_count(conn: &mut AnyConnection, channel: ChannelId) -> Result<i64, sqlx::Error> {
    store::count_followers(conn, channel).await
}

/// A batch of a channel's followers by user id, after `after` (start at `UserId(0)`): the go-live
/// fan-out pages through them so that no list of every follower is ever held.
pub async fn followers_after(
    conn: &mut AnyConnection,
    channel: ChannelId,
    after: UserId,
    limit: i64,
) -> Result<Vec<Follow>, sqlx::Error> {
    store::followers_after(conn, channel, after, limit).await
}

/// Whether `user` blocked `other`.
pub async fn is_blocked(conn: &mut AnyConnection, user: UserId, other: UserId) -> Result<bool, sqlx::Error> {
    store::is_blocked(conn, user, other).await
}

/// `user` blocks `other`: `other` stops following `user`'s channels (`owned`) and cannot follow
/// them again. True when new.
pub async fn block(
    conn: &mut AnyConnection,
    user: UserId,
    other: UserId,
    owned: &[ChannelId],
) -> Result<bool, sqlx::Error> {
    let new = store::insert_block(conn, user, other, now_ms()).await?;
    store::delete_follows_of(conn, other, owned).await?;
    Ok(new)
}

pub async fn unblock(conn: &mut AnyConnection, user: UserId, other: UserId) -> Result<bool, sqlx::Error> {
    store::delete_block(conn, user, other).await
}

/// What lists of users show of each.
#[derive(Debug, Clone, Serialize)]
pub struct UserCard {
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
}

/// Users matching a search: the username itself first, then usernames starting with it, then
/// display names matching every term; at most `limit` after skipping `offset`.
pub async fn search_users(
    db: &crate::db::Db,
    terms: &[String],
    limit: i64,
    offset: i64,
) -> Result<Vec<UserCard>, sqlx::Error> {
    let want = offset + limit;
    let mut found: Vec<crate::auth::User> = Vec::new();
    if terms.len() == 1 {
        found = crate::auth::accounts::search_usernames(db, &terms[0], want).await?;
        // The exact name first.
        found.sort_by_key(|user| user.username != terms[0]);
    }
    let mut conn = db.pool().acquire().await?;
    let by_name = store::search_display_names(&mut conn, db.backend(), terms, want).await?;
    drop(conn);
    let extra: Vec<UserId> = by_name.into_iter().filter(|id| !found.iter().any(|u| u.id == *id)).collect();
    let mut more = crate::auth::accounts::find_by_ids(db, &extra).await?;
    more.sort_by_key(|user| extra.iter().position(|id| *id == user.id));
    found.extend(more);
    let page: Vec<crate::auth::User> = found.into_iter().skip(offset as usize).take(limit as usize).collect();
    let mut conn = db.pool().acquire().await?;
    let cards = store::cards(&mut conn, &page.iter().map(|u| u.id).collect::<Vec<_>>()).await?;
    Ok(page
        .into_iter()
        .map(|user| {
            let card = cards.iter().find(|(id, _, _)| *id == user.id);
            let display_name = card.map(|(_, name, _)| name.clone()).filter(|name| !name.is_empty());
            UserCard {
                avatar_url: card.and_then(|(_, _, at)| *at).map(|at| format!("/u/{}/avatar.jpg?v={at}", user.username)),
                display_name: display_name.unwrap_or_else(|| user.username.clone()),
                username: user.username,
            }
        })
        .collect())
}
