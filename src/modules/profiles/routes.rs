//! HTTP surface of follows and blocks (CONTRACT.md, "Platform"):
//! `PUT|DELETE|GET|PATCH /api/v1/channels/{name}/follow`, `GET /api/v1/channels/{name}/followers`
//! (the channel's owner and admins), `GET /api/v1/me/following`, `PUT|DELETE
//! /api/v1/users/{username}/block`, `GET /api/v1/me/blocks`.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};

use super::{Follow, FollowLevel, store};
use crate::app::AppState;
use crate::auth::{AuthUser, MaybeUser, UserId};
use crate::channels::{self, ChannelId};
use crate::error::{ApiError, ApiResult, Json, Query};
use crate::http::{ListQuery, Listing};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/channels/{name}/follow", put(follow).delete(unfollow).get(show).patch(set_level))
        .route("/api/v1/channels/{name}/followers", get(followers))
        .route("/api/v1/me/following", get(following))
        .route("/api/v1/users/{username}/block", put(block).delete(unblock))
        .route("/api/v1/me/blocks", get(blocks))
}

/// A channel's follow state as the caller sees it.
#[derive(Debug, Serialize)]
struct FollowState {
    followers: i64,
    /// `null` for anonymous callers.
    following: Option<bool>,
    followed_at: Option<i64>,
    notify: Option<FollowLevel>,
}

async fn state_of(state: &AppState, channel: ChannelId, user: Option<UserId>) -> ApiResult<FollowState> {
    let mut conn = state.db().pool().acquire().await?;
    let followers = super::follower_count(&mut conn, channel).await?;
    let follow = match user {
        Some(user) => super::follow_of(&mut conn, user, channel).await?,
        None => None,
    };
    Ok(FollowState {
        followers,
        following: user.map(|_| follow.is_some()),
        followed_at: follow.as_ref().map(|f| f.created_at),
        notify: follow.map(|f| f.notify),
    })
}

async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    user: MaybeUser,
) -> ApiResult<Json<FollowState>> {
    let channel = channels::find_or_404(state.db(), &name).await?;
    Ok(Json(state_of(&state, channel.id, user.0.map(|auth| auth.user.id)).await?))
}

async fn follow(
    State(state): State<AppState>,
    Path(name): Path<String>,
    auth: AuthUser,
) -> ApiResult<Json<FollowState>> {
    let channel = channels::find_or_404(state.db(), &name).await?;
    let mut tx = state.db().write().await?;
    let (_, new) = super::follow(&mut tx, auth.user.id, channel.id, channel.owner_id).await?;
    tx.commit().await?;
    if new {
        state.jobs().wake();
        metrics::counter!("aether_follows_total").increment(1);
    }
    Ok(Json(state_of(&state, channel.id, Some(auth.user.id)).await?))
}

async fn unfollow(
    State(state): State<AppState>,
    Path(name): Path<String>,
    auth: AuthUser,
) -> ApiResult<Json<FollowState>> {
    let channel = channels::find_or_404(state.db(), &name).await?;
    let mut conn = state.db().pool().acquire().await?;
    super::unfollow(&mut conn, auth.user.id, channel.id).await?;
    drop(conn);
    Ok(Json(state_of(&state, channel.id, Some(auth.user.id)).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelRequest {
    notify: FollowLevel,
}

async fn set_level(
    State(state): State<AppState>,
    Path(name): Path<String>,
    auth: AuthUser,
    Json(body): Json<LevelRequest>,
) -> ApiResult<Json<FollowState>> {
    let channel = channels::find_or_404(state.db(), &name).await?;
    let mut conn = state.db().pool().acquire().await?;
    if !super::set_level(&mut conn, auth.user.id, channel.id, body.notify).await? {
        return Err(ApiError::conflict("not_following", "follow the channel first"));
    }
    drop(conn);
    Ok(Json(state_of(&state, channel.id, Some(auth.user.id)).await?))
}

#[derive(Debug, Serialize)]
struct FollowerView {
    username: String,
    followed_at: i64,
}

async fn followers(
    State(state): State<AppState>,
    Path(name): Path<String>,
    auth: AuthUser,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Listing<FollowerView>>> {
    let channel = channels::find_or_404(state.db(), &name).await?;
    if channel.owner_id != auth.user.id && !auth.user.is_admin() {
        // Who follows a channel is its owner's to see.
        return Err(ApiError::not_found("no such channel"));
    }
    let limit = query.limit()?;
    let mut conn = state.db().pool().acquire().await?;
    let rows = store::follows_page(&mut conn, store::Side::FollowersOf(channel.id), query.cursor()?, limit + 1).await?;
    drop(conn);
    let page = Listing::page(rows, limit, |f: &Follow| [f.created_at, f.user.0]);
    let ids: Vec<UserId> = page.items.iter().map(|f| f.user).collect();
    let names: std::collections::HashMap<UserId, String> = crate::auth::accounts::find_by_ids(state.db(), &ids)
        .await?
        .into_iter()
        .map(|user| (user.id, user.username))
        .collect();
    Ok(Json(page.map(|f| FollowerView {
        username: names.get(&f.user).cloned().unwrap_or_default(),
        followed_at: f.created_at,
    })))
}

#[derive(Debug, Serialize)]
struct FollowingView {
    channel: channels::ChannelView,
    followed_at: i64,
    notify: FollowLevel,
}

async fn following(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Listing<FollowingView>>> {
    let limit = query.limit()?;
    let mut conn = state.db().pool().acquire().await?;
    let rows =
        store::follows_page(&mut conn, store::Side::FollowedBy(auth.user.id), query.cursor()?, limit + 1).await?;
    drop(conn);
    let page = Listing::page(rows, limit, |f: &Follow| [f.created_at, f.channel.0]);
    let ids: Vec<ChannelId> = page.items.iter().map(|f| f.channel).collect();
    let mut found: std::collections::HashMap<ChannelId, channels::Channel> =
        channels::list_by_ids(state.db(), &ids).await?.into_iter().map(|c| (c.id, c)).collect();
    let items = page
        .items
        .into_iter()
        .filter_map(|f| {
            let channel = found.remove(&f.channel)?;
            Some(FollowingView {
                channel: channels::public_view(&state, channel),
                followed_at: f.created_at,
                notify: f.notify,
            })
        })
        .collect();
    Ok(Json(Listing { items, next_cursor: page.next_cursor }))
}

#[derive(Debug, Serialize)]
struct BlockState {
    username: String,
    blocked: bool,
}

async fn target(state: &AppState, username: &str, me: &crate::auth::User) -> ApiResult<crate::auth::User> {
    let user = crate::auth::accounts::find_by_username(state.db(), username)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    if user.id == me.id {
        return Err(ApiError::conflict("self", "you cannot block yourself"));
    }
    Ok(user)
}

async fn block(
    State(state): State<AppState>,
    Path(username): Path<String>,
    auth: AuthUser,
) -> ApiResult<Json<BlockState>> {
    let other = target(&state, &username, &auth.user).await?;
    let mine = channels::list_owned(state.db(), auth.user.id).await?;
    let owned: Vec<ChannelId> = mine.iter().map(|c| c.id).collect();
    let mut tx = state.db().write().await?;
    super::block(&mut tx, auth.user.id, other.id, &owned).await?;
    // They cannot chat in the blocker's channels either: stored with the block, all or nothing.
    for channel in &mine {
        crate::chat::ban_by_owner(&mut tx, channel, &auth.user, &other).await?;
    }
    tx.commit().await?;
    for channel in &mine {
        crate::chat::apply_ban(&state, &channel.name, &other.username).await;
    }
    Ok(Json(BlockState { username: other.username, blocked: true }))
}

async fn unblock(
    State(state): State<AppState>,
    Path(username): Path<String>,
    auth: AuthUser,
) -> ApiResult<Json<BlockState>> {
    let other = target(&state, &username, &auth.user).await?;
    let mut conn = state.db().pool().acquire().await?;
    super::unblock(&mut conn, auth.user.id, other.id).await?;
    Ok(Json(BlockState { username: other.username, blocked: false }))
}

#[derive(Debug, Serialize)]
struct BlockedView {
    username: String,
    blocked_at: i64,
}

async fn blocks(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Listing<BlockedView>>> {
    let mut conn = state.db().pool().acquire().await?;
    let rows = store::blocked_by(&mut conn, auth.user.id).await?;
    drop(conn);
    let ids: Vec<UserId> = rows.iter().map(|(id, _)| *id).collect();
    let names: std::collections::HashMap<UserId, String> =
        crate::auth::accounts::find_by_ids(state.db(), &ids).await?.into_iter().map(|u| (u.id, u.username)).collect();
    let items = rows
        .into_iter()
        .filter_map(|(id, at)| Some(BlockedView { username: names.get(&id)?.clone(), blocked_at: at }))
        .collect();
    Ok(Json(Listing { items, next_cursor: None }))
}
