//! The clips API and clip playback. `POST /api/v1/clips` takes the last `seconds` of a live
//! stream or a `[start_ms, end_ms)` range of a VOD, answers 202 with the clip in `processing`,
//! and queues the job. Anyone signed in may clip a live stream or a public VOD (the channel's
//! owner also their private ones); the clip belongs to its creator and the channel. Ready clips
//! play at `/clips/{id}/index.m3u8` and download at `/clips/{id}.mp4`.

use aether_vod::playlist::{self, VodFile};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{Clip, ClipStatus, NewClip};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::channels::{self, TITLE_MAX_CHARS, clean_text};
use crate::error::{ApiError, ApiResult, Json, Query};
use crate::http::Page;
use crate::vod::http::{playlist_response, serve_object};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clips", post(create).get(recent))
        .route("/api/v1/clips/{id}", get(show).delete(remove))
        .route("/api/v1/channels/{name}/clips", get(list))
        .route("/clips/{file}", get(download))
        .route("/clips/{id}/index.m3u8", get(media_playlist))
        .route("/clips/{id}/thumbnail.jpg", get(thumbnail))
        .route("/clips/{id}/{file}", get(media_file))
}

#[derive(Debug, Serialize)]
struct Requested {
    start_ms: i64,
    end_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct ClipView {
    id: String,
    channel: String,
    creator: String,
    vod_id: Option<String>,
    title: String,
    status: ClipStatus,
    failure: Option<String>,
    precise: bool,
    /// The span asked for, in milliseconds of the recording.
    requested: Requested,
    /// The span cut (from a keyframe at or before the requested start), once ready.
    start_ms: Option<i64>,
    duration_ms: Option<i64>,
    bytes: Option<i64>,
    playback_url: Option<String>,
    download_url: Option<String>,
    thumbnail_url: Option<String>,
    created_at: i64,
}

pub fn view(clip: Clip) -> ClipView {
    let ready = clip.status == ClipStatus::Ready;
    ClipView {
        playback_url: ready.then(|| format!("/clips/{}/index.m3u8", clip.id)),
        download_url: ready.then(|| format!("/clips/{}.mp4", clip.id)),
        thumbnail_url: (ready && clip.has_thumbnail).then(|| format!("/clips/{}/thumbnail.jpg", clip.id)),
        id: clip.id,
        channel: clip.channel,
        creator: clip.creator,
        vod_id: clip.vod_id,
        title: clip.title,
        status: clip.status,
        failure: clip.failure,
        precise: clip.precise,
        requested: Requested { start_ms: clip.requested_start_ms, end_ms: clip.requested_end_ms },
        start_ms: clip.start_ms,
        duration_ms: clip.duration_ms,
        bytes: clip.bytes,
        created_at: clip.created_at,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    channel: Option<String>,
    seconds: Option<u32>,
    vod_id: Option<String>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    precise: bool,
}

fn bad(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::invalid("invalid_clip", message)
}

async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<CreateRequest>,
) -> ApiResult<(StatusCode, Json<ClipView>)> {
    if body.precise && !state.transcoding_available() {
        return Err(ApiError::invalid(
            "precise_unavailable",
            "frame-precise clips need GStreamer, which this server lacks; \
             leave precise off for a clip that starts at the keyframe before start_ms",
        ));
    }
    let limits = &state.config().clips;
    let (min_ms, max_ms) = (i64::from(limits.min_seconds) * 1000, i64::from(limits.max_seconds) * 1000);
    let title = clean_text("title", &body.title, TITLE_MAX_CHARS)?;
    let new = match (&body.channel, body.seconds, &body.vod_id, body.start_ms, body.end_ms) {
        (Some(name), Some(seconds), None, None, None) => {
            let seconds = i64::from(seconds) * 1000;
            if !(min_ms..=max_ms).contains(&seconds) {
                return Err(bad(format!("seconds must be {} to {}", limits.min_seconds, limits.max_seconds)));
            }
            let channel = channels::find_or_404(state.db(), name).await?;
            let stream = state
                .live()
                .get(name)
                .ok_or_else(|| ApiError::conflict("not_live", format!("\"{name}\" is not live")))?;
            // The live clip ends where the recording has got to.
            let recording = crate::vod::index::progress_of_session(state.db().pool(), stream.session_id)
                .await?
                .ok_or_else(|| ApiError::conflict("not_recorded", "this broadcast is not being recorded"))?;
            let end = recording
                .recorded_ms
                .ok_or_else(|| ApiError::conflict("too_early", "nothing has been recorded yet; try in a moment"))?;
            NewClip {
                channel_id: channel.id,
                creator: auth.user.id,
                vod_row_id: recording.vod_id,
                title: &title,
                start_ms: (end - seconds).max(0),
                end_ms: end,
                precise: body.precise,
            }
        }
        (None, None, Some(vod_id), Some(start_ms), Some(end_ms)) => {
            let vod = crate::vod::find(state.db(), vod_id)
                .await?
                .filter(|vod| vod.can_view(Some(&auth.user)))
                .ok_or_else(|| ApiError::not_found("no such VOD"))?;
            if vod.visibility != crate::vod::Visibility::Public && !vod.can_manage(&auth.user) {
                return Err(ApiError::forbidden("only public VODs may be clipped by others"));
            }
            if start_ms < 0 || end_ms <= start_ms {
                return Err(bad("start_ms must be at least 0 and before end_ms"));
            }
            if !(min_ms..=max_ms).contains(&(end_ms - start_ms)) {
                return Err(bad(format!("a clip is {} to {} seconds long", limits.min_seconds, limits.max_seconds)));
            }
            if vod.status == crate::vod::VodStatus::Ready && start_ms >= vod.duration_ms {
                return Err(bad(format!("the VOD is {} ms long", vod.duration_ms)));
            }
            NewClip {
                channel_id: vod.channel_id,
                creator: auth.user.id,
                vod_row_id: vod.row_id,
                title: &title,
                start_ms,
                end_ms: end_ms.min(if vod.status == crate::vod::VodStatus::Ready { vod.duration_ms } else { end_ms }),
                precise: body.precise,
            }
        }
        _ => return Err(bad("send {channel, seconds} for a live clip or {vod_id, start_ms, end_ms} for a VOD clip")),
    };
    let mut tx = state.db().write().await?;
    let (row_id, id) = super::insert(&mut tx, new).await?;
    crate::jobs::enqueue(&mut tx, super::jobs::make_clip(row_id)).await?;
    tx.commit().await?;
    state.jobs().wake();
    let clip = super::find(state.db(), &id).await?.ok_or_else(|| anyhow::anyhow!("clip vanished after insert"))?;
    tracing::info!(clip = %clip.id, channel = %clip.channel, by = %auth.user.username, "clip requested");
    Ok((StatusCode::ACCEPTED, Json(view(clip))))
}

async fn load(state: &AppState, id: &str) -> ApiResult<Clip> {
    super::find(state.db(), id).await?.ok_or_else(|| ApiError::not_found("no such clip"))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ClipView>> {
    Ok(Json(view(load(&state, &id).await?)))
}

#[derive(Debug, Serialize)]
struct ListResponse {
    clips: Vec<ClipView>,
}

async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse>> {
    let (limit, offset) = page.checked()?;
    let channel = channels::find_or_404(state.db(), &name).await?;
    let clips = super::list(state.db(), Some(channel.id), limit, offset).await?;
    Ok(Json(ListResponse { clips: clips.into_iter().map(view).collect() }))
}

/// The ready clips of every channel, newest first (the home page).
async fn recent(State(state): State<AppState>, Query(page): Query<Page>) -> ApiResult<Json<ListResponse>> {
    let (limit, offset) = page.checked()?;
    let clips = super::list(state.db(), None, limit, offset).await?;
    Ok(Json(ListResponse { clips: clips.into_iter().map(view).collect() }))
}

async fn remove(State(state): State<AppState>, auth: AuthUser, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let clip = load(&state, &id).await?;
    if !clip.can_delete(&auth.user) {
        return Err(ApiError::forbidden("only the clip's creator, the channel's owner or an admin may delete it"));
    }
    if clip.status == ClipStatus::Processing {
        return Err(ApiError::conflict("processing", "the clip is still being made"));
    }
    state.storage().delete_prefix(&clip.storage_prefix()).await.map_err(|error| {
        tracing::error!(clip = %clip.id, %error, "deleting a clip's objects failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "storage did not answer; try again")
    })?;
    super::delete(state.db(), &clip).await?;
    tracing::info!(clip = %clip.id, by = %auth.user.username, "clip deleted");
    Ok(StatusCode::NO_CONTENT)
}

const MEDIA_CACHE: &str = "public, max-age=86400, immutable";

async fn ready(state: &AppState, id: &str) -> ApiResult<Clip> {
    Some(load(state, id).await?)
        .filter(|clip| clip.status == ClipStatus::Ready)
        .ok_or_else(|| ApiError::not_found("the clip is not ready"))
}

/// `/clips/{id}.mp4`: the progressive MP4.
async fn download(State(state): State<AppState>, Path(file): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let id = file.strip_suffix(".mp4").ok_or_else(|| ApiError::not_found("no such route"))?;
    let clip = ready(&state, id).await?;
    serve_object(&state, &clip.mp4_key(), &headers, ("video/mp4", MEDIA_CACHE), "clip").await
}

async fn thumbnail(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let clip = Some(ready(&state, &id).await?)
        .filter(|clip| clip.has_thumbnail)
        .ok_or_else(|| ApiError::not_found("the clip has no thumbnail"))?;
    serve_object(&state, &clip.thumbnail_key(), &headers, ("image/jpeg", MEDIA_CACHE), "clip").await
}

async fn media_playlist(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let clip = ready(&state, &id).await?;
    Ok(playlist_response(playlist::media_playlist(&super::jobs::fragment_segments(&clip), true)))
}

async fn media_file(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let clip = ready(&state, &id).await?;
    let file = VodFile::parse(&file)
        .filter(|file| match file {
            VodFile::Init(id) => *id == 0,
            VodFile::Segment(index) => (*index as usize) < clip.fragments.len(),
        })
        .ok_or_else(|| ApiError::not_found("no such media"))?;
    let key = format!("{}/{}", clip.storage_prefix(), file.file_name());
    serve_object(&state, &key, &headers, ("video/mp4", MEDIA_CACHE), "clip").await
}
