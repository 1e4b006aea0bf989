//! The VOD API: a channel's VODs (its owner and admins see all of them, others only the public
//! ones), one VOD (private ones are 404 to everyone else, so their ids do not leak), editing the
//! title and visibility, and deletion with the stored recording.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{Visibility, Vod, VodStatus};
use crate::app::AppState;
use crate::auth::{AuthUser, MaybeUser};
use crate::channels::{self, TITLE_MAX_CHARS, clean_text};
use crate::error::{ApiError, ApiResult, Json, Query};
use crate::http::Page;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/vods", get(recent))
        .route("/api/v1/channels/{name}/vods", get(list))
        .route("/api/v1/vods/{id}", get(show).patch(update).delete(remove))
}

#[derive(Debug, Serialize)]
pub struct VodView {
    id: String,
    channel: String,
    title: String,
    status: VodStatus,
    visibility: Visibility,
    duration_ms: i64,
    created_at: i64,
    playback_url: String,
    /// A picture from early in the broadcast (404 when none was taken).
    thumbnail_url: String,
}

pub fn view(vod: Vod) -> VodView {
    VodView {
        playback_url: format!("/vod/{}/master.m3u8", vod.id),
        thumbnail_url: format!("/vod/{}/thumbnail.jpg", vod.id),
        id: vod.id,
        channel: vod.channel,
        title: vod.title,
        status: vod.status,
        visibility: vod.visibility,
        duration_ms: vod.duration_ms,
        created_at: vod.created_at,
    }
}

#[derive(Debug, Serialize)]
struct ListResponse {
    vods: Vec<VodView>,
}

async fn list(
    State(state): State<AppState>,
    MaybeUser(auth): MaybeUser,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse>> {
    let (limit, offset) = page.checked()?;
    let channel = channels::find_or_404(state.db(), &name).await?;
    let all = auth.is_some_and(|auth| auth.user.id == channel.owner_id || auth.user.is_admin());
    let vods = super::list(state.db(), Some(channel.id), all, limit, offset).await?;
    Ok(Json(ListResponse { vods: vods.into_iter().map(view).collect() }))
}

/// The public VODs of every channel, newest first (the home page).
async fn recent(State(state): State<AppState>, Query(page): Query<Page>) -> ApiResult<Json<ListResponse>> {
    let (limit, offset) = page.checked()?;
    let vods = super::list(state.db(), None, false, limit, offset).await?;
    Ok(Json(ListResponse { vods: vods.into_iter().map(view).collect() }))
}

/// The VOD if the caller may see it; 404 otherwise.
pub(super) async fn visible(state: &AppState, auth: Option<&AuthUser>, id: &str) -> ApiResult<Vod> {
    super::find(state.db(), id)
        .await?
        .filter(|vod| vod.can_view(auth.map(|auth| &auth.user)))
        .ok_or_else(|| ApiError::not_found("no such VOD"))
}

async fn managed(state: &AppState, auth: &AuthUser, id: &str) -> ApiResult<Vod> {
    let vod = visible(state, Some(auth), id).await?;
    if !vod.can_manage(&auth.user) {
        return Err(ApiError::forbidden("only the channel's owner or an admin may do this"));
    }
    Ok(vod)
}

async fn show(
    State(state): State<AppState>,
    MaybeUser(auth): MaybeUser,
    Path(id): Path<String>,
) -> ApiResult<Json<VodView>> {
    Ok(Json(view(visible(&state, auth.as_ref(), &id).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    title: Option<String>,
    visibility: Option<Visibility>,
}

async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<UpdateRequest>,
) -> ApiResult<Json<VodView>> {
    let vod = managed(&state, &auth, &id).await?;
    let title = match body.title {
        Some(title) => clean_text("title", &title, TITLE_MAX_CHARS)?,
        None => vod.title.clone(),
    };
    let visibility = body.visibility.unwrap_or(vod.visibility);
    super::update(state.db(), &vod, &title, visibility).await?;
    let vod = super::find(state.db(), &id).await?.ok_or_else(|| ApiError::not_found("no such VOD"))?;
    Ok(Json(view(vod)))
}

async fn remove(State(state): State<AppState>, auth: AuthUser, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let vod = managed(&state, &auth, &id).await?;
    if vod.status == VodStatus::Recording && state.live().status(&vod.channel).is_some() {
        return Err(ApiError::conflict("still_recording", "the broadcast is still being recorded; end it first"));
    }
    // Objects first: if storage fails, the VOD stays listed and the delete can be retried.
    let deleted = state.storage().delete_prefix(&vod.storage_prefix()).await.map_err(|error| {
        tracing::error!(vod = %vod.id, %error, "deleting a VOD's objects failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "storage did not answer; try again")
    })?;
    super::delete(state.db(), &vod).await?;
    tracing::info!(vod = %vod.id, channel = %vod.channel, objects = deleted, by = %auth.user.username, "VOD deleted");
    Ok(StatusCode::NO_CONTENT)
}
