//! HTTP surface of chat: the WebSocket endpoint, and channel moderators and the moderation log
//! (owner or admin only). Moderator changes reach the live room at once.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use serde::Serialize;
use sqlx::Row;

use crate::app::AppState;
use crate::auth::{AuthUser, accounts};
use crate::channels::{self, Channel};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult, Json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws", get(super::socket))
        .route("/api/v1/channels/{name}/moderators", get(list_moderators))
        .route("/api/v1/channels/{name}/moderators/{username}", put(add_moderator).delete(remove_moderator))
        .route("/api/v1/channels/{name}/moderation-log", get(moderation_log))
}

async fn managed_channel(state: &AppState, auth: &AuthUser, name: &str) -> ApiResult<Channel> {
    let channel = channels::find_or_404(state.db(), name).await?;
    if channel.owner_id != auth.user.id && !auth.user.is_admin() {
        return Err(ApiError::forbidden("only the channel's owner or an admin may do this"));
    }
    Ok(channel)
}

#[derive(Debug, Serialize)]
struct ModeratorsResponse {
    moderators: Vec<String>,
}

async fn list_moderators(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<ModeratorsResponse>> {
    let channel = managed_channel(&state, &auth, &name).await?;
    let rows = sqlx::query(
        "SELECT u.username FROM channel_moderators m JOIN user_names u ON u.id = m.user_id WHERE m.channel_id = $1 ORDER BY u.username",
    )
    .bind(channel.id.0)
    .fetch_all(state.db().pool())
    .await?;
    let moderators = rows.iter().map(|row| row.try_get("username")).collect::<Result<_, _>>()?;
    Ok(Json(ModeratorsResponse { moderators }))
}

async fn add_moderator(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((name, username)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let channel = managed_channel(&state, &auth, &name).await?;
    let user =
        accounts::find_by_username(state.db(), &username).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
    sqlx::query(
        "INSERT INTO channel_moderators (channel_id, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (channel_id, user_id) DO NOTHING",
    )
    .bind(channel.id.0)
    .bind(user.id.0)
    .bind(now_ms())
    .execute(state.db().pool())
    .await?;
    state.hub().set_moderator(&channel.name, &user.username, true).await;
    tracing::info!(channel = %channel.name, moderator = %user.username, by = %auth.user.username, "moderator added");
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_moderator(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((name, username)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let channel = managed_channel(&state, &auth, &name).await?;
    let user =
        accounts::find_by_username(state.db(), &username).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
    sqlx::query("DELETE FROM channel_moderators WHERE channel_id = $1 AND user_id = $2")
        .bind(channel.id.0)
        .bind(user.id.0)
        .execute(state.db().pool())
        .await?;
    state.hub().set_moderator(&channel.name, &user.username, false).await;
    tracing::info!(channel = %channel.name, moderator = %user.username, by = %auth.user.username, "moderator removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
struct LogEntry {
    actor: Option<String>,
    action: String,
    target: Option<String>,
    detail: Option<String>,
    created_at: i64,
}

#[derive(Debug, Serialize)]
struct LogResponse {
    entries: Vec<LogEntry>,
}

/// The newest 200 moderation actions.
async fn moderation_log(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<LogResponse>> {
    let channel = managed_channel(&state, &auth, &name).await?;
    let rows = sqlx::query(
        "SELECT u.username AS actor, l.action, l.target, l.detail, l.created_at FROM moderation_log l \
         LEFT JOIN user_names u ON u.id = l.actor_id WHERE l.channel_id = $1 ORDER BY l.id DESC LIMIT 200",
    )
    .bind(channel.id.0)
    .fetch_all(state.db().pool())
    .await?;
    let entries = rows
        .iter()
        .map(|row| {
            Ok(LogEntry {
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                detail: row.try_get("detail")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(LogResponse { entries }))
}
