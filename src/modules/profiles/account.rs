//! The account as a whole: deleting it, and exporting what it holds.
//!
//! `DELETE /api/v1/me` (with the password): the account and everything it owns go. In the
//! database that is one transaction (the user row; its sessions, profile, follows, blocks,
//! notifications, channels, their VODs, clips and chat moderation records follow by ON DELETE
//! CASCADE; clips it made of other channels too). Its stored media (recordings, clips,
//! pictures, channel previews, exports) are removed by a `profiles.purge` job queued in that same
//! transaction, retried until storage has let go of every object. Refused while one of its
//! channels is live.
//!
//! `POST /api/v1/me/export`: a `profiles.export` job writes a JSON document (the account,
//! profile, channels, follows, blocks, VODs and clips with their links) to storage; it is
//! listed at `GET /api/v1/me/exports` and downloaded from `GET /api/v1/me/exports/{id}`, by
//! its owner alone. An email says when it is ready.

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::images::Picture;
use super::store::{self, ExportRow};
use crate::app::AppState;
use crate::auth::{AuthUser, UserId, accounts};
use crate::channels::{self, ChannelId};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult, Json};
use crate::jobs::{ClaimedJob, JobError, Kind, NewJob, Queue};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", delete(delete_account))
        .route("/api/v1/me/export", post(request_export))
        .route("/api/v1/me/exports", get(list_exports))
        .route("/api/v1/me/exports/{id}", get(download_export))
}

pub const PURGE: Kind = Kind {
    name: "profiles.purge",
    queue: Queue::Default,
    max_attempts: 20,
    run: |state, job| Box::pin(purge(state, job)),
};

pub const EXPORT: Kind = Kind {
    name: "profiles.export",
    queue: Queue::Default,
    max_attempts: 5,
    run: |state, job| Box::pin(export(state, job)),
};

#[derive(Debug, Serialize, Deserialize)]
struct Purge {
    prefixes: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct DeleteRequest {
    password: String,
}

async fn delete_account(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    auth: AuthUser,
    Json(body): Json<DeleteRequest>,
) -> ApiResult<StatusCode> {
    crate::auth::throttle(&state, peer.ip(), "account deletion")?;
    let user = &auth.user;
    crate::auth::confirm_password(&state, user, body.password, "the password is wrong").await?;
    let owned = channels::list_owned(state.db(), user.id).await?;
    if let Some(live) = owned.iter().find(|channel| state.live().get(&channel.name).is_some()) {
        return Err(ApiError::conflict("live", format!("\"{}\" is live: end the broadcast first", live.name)));
    }
    let ids: Vec<ChannelId> = owned.iter().map(|channel| channel.id).collect();
    let mut prefixes = Vec::new();
    for channel in &owned {
        let vods = crate::vod::list(state.db(), Some(channel.id), true, i64::MAX, 0).await?;
        prefixes.extend(vods.iter().map(|vod| vod.storage_prefix()));
        prefixes.push(crate::live::preview_key(&channel.name));
    }
    prefixes.extend(crate::clips::storage_prefixes(state.db(), &ids, user.id).await?);
    prefixes.push(format!("profiles/{}/", user.id.0));
    prefixes.push(format!("exports/{}/", user.id.0));
    let mut tx = state.db().write().await?;
    crate::jobs::enqueue(&mut tx, NewJob::new(&PURGE, &Purge { prefixes })).await?;
    accounts::delete(&mut tx, user.id).await?;
    tx.commit().await?;
    state.jobs().wake();
    tracing::info!(user = %user.username, channels = owned.len(), "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(state: AppState, job: ClaimedJob) -> Result<(), JobError> {
    let Purge { prefixes } = job.payload()?;
    let mut removed = 0;
    for prefix in &prefixes {
        removed += state.storage().delete_prefix(prefix).await.map_err(|error| JobError::Retry(error.to_string()))?;
    }
    tracing::info!(prefixes = prefixes.len(), objects = removed, "a deleted account's media removed");
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct ExportJob {
    export: i64,
}

async fn request_export(State(state): State<AppState>, auth: AuthUser) -> ApiResult<(StatusCode, Json<ExportRow>)> {
    let mut tx = state.db().write().await?;
    let recent = store::exports_of(&mut tx, auth.user.id).await?;
    if recent.iter().any(|export| export.status == "pending") {
        return Err(ApiError::conflict("export_pending", "an export is being made already"));
    }
    let id = store::insert_export(&mut tx, auth.user.id, now_ms()).await?;
    crate::jobs::enqueue(
        &mut tx,
        NewJob::new(&EXPORT, &ExportJob { export: id }).dedup(format!("profiles.export:{id}")),
    )
    .await?;
    let row = store::find_export(&mut tx, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    tx.commit().await?;
    state.jobs().wake();
    Ok((StatusCode::ACCEPTED, Json(row)))
}

async fn list_exports(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<serde_json::Value>> {
    let mut conn = state.db().pool().acquire().await?;
    let items = store::exports_of(&mut conn, auth.user.id).await?;
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

async fn download_export(State(state): State<AppState>, Path(id): Path<i64>, auth: AuthUser) -> ApiResult<Response> {
    let mut conn = state.db().pool().acquire().await?;
    let export = store::find_export(&mut conn, id)
        .await?
        // Another user's export is not found, like one that does not exist.
        .filter(|export| export.user == auth.user.id.0)
        .ok_or_else(|| ApiError::not_found("no such export"))?;
    drop(conn);
    let key = export.object_key.ok_or_else(|| ApiError::conflict("not_ready", "the export is not ready"))?;
    let bytes = state.storage().get(&key).await.map_err(|_| ApiError::not_found("no such export"))?;
    let disposition = format!("attachment; filename=\"aether-{}-export-{id}.json\"", auth.user.username);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("ASCII")),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, no-store")),
        ],
        bytes,
    )
        .into_response())
}

async fn export(state: AppState, job: ClaimedJob) -> Result<(), JobError> {
    let ExportJob { export: id } = job.payload()?;
    let mut conn = state.db().pool().acquire().await?;
    let Some(row) = store::find_export(&mut conn, id).await?.filter(|row| row.status == "pending") else {
        return Ok(());
    };
    drop(conn);
    let Some(user) = accounts::find_by_id(state.db(), UserId(row.user)).await? else { return Ok(()) };
    let document = document(&state, &user).await?;
    let body = serde_json::to_vec_pretty(&document).expect("JSON values serialize");
    let key = format!("exports/{}/{id}.json", user.id.0);
    let bytes = body.len() as i64;
    state
        .storage()
        .put(&key, vec![Bytes::from(body)], "application/json")
        .await
        .map_err(|error| JobError::Retry(error.to_string()))?;
    let mut tx = state.db().write().await?;
    store::finish_export(&mut tx, id, Ok((&key, bytes)), now_ms()).await?;
    let base = state.public_url();
    let email = crate::email::Email {
        to: user.email.clone(),
        subject: "Your Aether data export is ready".into(),
        text: format!("Hi {},\n\nYour data export is ready: {base}/settings/account\n", user.username),
        html: format!(
            "<p>Hi {},</p><p>Your data export is ready: <a href=\"{base}/settings/account\">download it from your settings</a>.</p>",
            html_escape::encode_text(&user.username)
        ),
    };
    crate::email::queue(&mut tx, &email, Some(format!("email.export:{id}"))).await?;
    tx.commit().await?;
    state.jobs().wake();
    Ok(())
}

/// Everything the export holds, with absolute links to the media.
async fn document(state: &AppState, user: &crate::auth::User) -> Result<serde_json::Value, JobError> {
    let base = state.public_url();
    let mut conn = state.db().pool().acquire().await?;
    let profile = store::profile(&mut conn, user.id).await?.unwrap_or_default();
    let follows = store::all_follows(&mut conn, user.id).await?;
    let blocked = store::blocked_by(&mut conn, user.id).await?;
    drop(conn);
    let followed = channels::list_by_ids(state.db(), &follows.iter().map(|f| f.channel).collect::<Vec<_>>()).await?;
    let blocked_users =
        accounts::find_by_ids(state.db(), &blocked.iter().map(|(id, _)| *id).collect::<Vec<_>>()).await?;
    let mut channels_out = Vec::new();
    for channel in channels::list_owned(state.db(), user.id).await? {
        let vods = crate::vod::list(state.db(), Some(channel.id), true, i64::MAX, 0).await?;
        let clips = crate::clips::list(state.db(), Some(channel.id), i64::MAX, 0).await?;
        channels_out.push(json!({
            "name": channel.name, "title": channel.title, "category": channel.category, "tags": channel.tags,
            "created_at": channel.created_at, "url": format!("{base}/{}", channel.name),
            "vods": vods.iter().map(|v| json!({
                "id": v.id, "title": v.title, "visibility": v.visibility, "duration_ms": v.duration_ms,
                "created_at": v.created_at, "url": format!("{base}/vod/{}", v.id),
                "playlist": format!("{base}/vod/{}/master.m3u8", v.id),
            })).collect::<Vec<_>>(),
            "clips": clips.iter().map(|c| json!({
                "id": c.id, "title": c.title, "creator": c.creator, "duration_ms": c.duration_ms,
                "created_at": c.created_at, "url": format!("{base}/clip/{}", c.id),
                "download": format!("{base}/clips/{}.mp4", c.id),
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({
        "exported_at": now_ms(),
        "account": { "username": user.username, "email": user.email, "role": user.role.as_str(),
                     "created_at": user.created_at, "email_verified_at": user.email_verified_at },
        "profile": {
            "display_name": profile.display_name, "bio": profile.bio,
            "links": serde_json::from_str::<serde_json::Value>(&profile.links).unwrap_or(json!([])),
            "avatar": profile.avatar_at.map(|at| format!("{base}/u/{}/{}.jpg?v={at}", user.username, Picture::Avatar.name())),
            "banner": profile.banner_at.map(|at| format!("{base}/u/{}/{}.jpg?v={at}", user.username, Picture::Banner.name())),
        },
        "channels": channels_out,
        "following": follows.iter().filter_map(|f| {
            let channel = followed.iter().find(|c| c.id == f.channel)?;
            Some(json!({ "channel": channel.name, "since": f.created_at, "notify": f.notify }))
        }).collect::<Vec<_>>(),
        "blocked": blocked_users.iter().map(|u| u.username.clone()).collect::<Vec<_>>(),
    }))
}
