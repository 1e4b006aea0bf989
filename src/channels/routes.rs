//! HTTP surface of channels: create, public view, listing (`?live=true`), the owner's own
//! channels, edit and stream-key rotation (owner or admin only).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{Channel, ChannelUpdate, NewChannel};
use crate::app::AppState;
use crate::auth::{AuthUser, User};
use crate::error::{ApiError, ApiResult, Json, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/channels", post(create).get(list))
        .route("/api/v1/channels/{name}", get(show).patch(update))
        .route("/api/v1/channels/{name}/stream-key", post(rotate_key))
        .route("/api/v1/me/channels", get(mine))
}

/// The public view of a channel.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    name: String,
    title: String,
    category: String,
    tags: Vec<String>,
    owner: String,
    live: bool,
    viewers: u64,
    /// Whether broadcasts become VODs.
    record: bool,
    /// Its picture: the live thumbnail while live, else the preview its last broadcast left;
    /// `null` when there is none yet.
    thumbnail_url: Option<String>,
    created_at: i64,
    /// While live: what is being received and served.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<StreamView>,
}

#[derive(Debug, Serialize)]
struct StreamView {
    /// `live`, or `reconnecting` while the publisher is away within the reconnect grace.
    state: &'static str,
    started_at: i64,
    bitrate_kbps: u64,
    width: u32,
    height: u32,
    frame_rate: Option<f64>,
    keyframe_interval_secs: Option<f64>,
    /// `H.264 High 3.1`.
    video_codec: Option<String>,
    /// `AAC-LC 48 kHz stereo`.
    audio: Option<String>,
    renditions: Vec<String>,
    /// Viewers playing over WebRTC now (the channel's `viewers` counts chat connections).
    webrtc_viewers: usize,
    /// What the creator should change in the encoder's settings.
    warnings: Vec<StreamWarning>,
}

#[derive(Debug, Serialize)]
struct StreamWarning {
    code: &'static str,
    message: String,
}

pub fn view(state: &AppState, channel: Channel) -> ChannelView {
    let live = state.live().status(&channel.name);
    let segment_seconds = state.config().hls.segment_seconds;
    let stream = live.map(|live| StreamView {
        warnings: stream_warnings(&live.ingest, segment_seconds),
        state: if live.reconnecting { "reconnecting" } else { "live" },
        started_at: live.started_at,
        bitrate_kbps: (live.ingest.bitrate_bps / 1000.0).round() as u64,
        width: live.ingest.width,
        height: live.ingest.height,
        frame_rate: live.ingest.frame_rate.map(|rate| (rate * 100.0).round() / 100.0),
        keyframe_interval_secs: live.ingest.keyframe_interval_secs,
        video_codec: live.ingest.video_codec,
        audio: live.ingest.audio,
        renditions: live.renditions,
        webrtc_viewers: live.webrtc_viewers,
    });
    let live_picture = state.live().get(&channel.name).is_some_and(|live| live.thumbnail().is_some());
    let thumbnail_url = match (live_picture, channel.preview_at) {
        (true, _) => Some(format!("/live/{}/thumbnail.jpg", channel.name)),
        (false, Some(at)) => Some(format!("/live/{}/thumbnail.jpg?v={at}", channel.name)),
        (false, None) => None,
    };
    ChannelView {
        thumbnail_url,
        live: stream.is_some(),
        stream,
        viewers: state.hub().viewers(&channel.name) as u64,
        name: channel.name,
        title: channel.title,
        category: channel.category,
        tags: channel.tags,
        owner: channel.owner,
        record: channel.record && state.config().recording.enabled,
        created_at: channel.created_at,
    }
}

fn stream_warnings(ingest: &crate::live::IngestStats, segment_seconds: f64) -> Vec<StreamWarning> {
    let mut warnings = Vec::new();
    if ingest.keyframes_too_far_apart(segment_seconds)
        && let Some(interval) = ingest.keyframe_interval_secs
    {
        warnings.push(StreamWarning {
            code: "keyframe_interval",
            message: format!(
                "Keyframes arrive every {interval:.1} s, so segments are that long and viewers are further behind. \
                 In OBS set Settings > Output > Keyframe Interval to {segment_seconds} s."
            ),
        });
    }
    warnings
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    #[serde(default)]
    title: String,
}

#[derive(Debug, Serialize)]
struct CreatedResponse {
    channel: ChannelView,
    /// Shown this once; only its hash is stored.
    stream_key: String,
}

async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<CreateRequest>,
) -> ApiResult<(StatusCode, Json<CreatedResponse>)> {
    let new = NewChannel { owner: auth.user.id, name: body.name, title: body.title };
    let (channel, key) = super::create(state.db(), new, state.config().channels.max_per_user).await?;
    tracing::info!(channel = %channel.name, owner = %auth.user.username, "channel created");
    let body = CreatedResponse { channel: view(&state, channel), stream_key: key.as_str().to_owned() };
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    live: Option<bool>,
    /// With `live=true`: only this category / tag.
    category: Option<String>,
    tag: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Debug, Serialize)]
struct ListResponse {
    channels: Vec<ChannelView>,
}

async fn list(State(state): State<AppState>, Query(query): Query<ListQuery>) -> ApiResult<Json<ListResponse>> {
    let (limit, offset) = crate::http::Page { limit: query.limit, offset: query.offset }.checked()?;
    let channels = match query.live {
        // The live set is small and in memory: look those channels up directly.
        Some(true) => {
            let live = state.live().live_channels();
            let mut found = super::list_by_ids(state.db(), &live).await?;
            // Browse: by category and tag (case-insensitive), most watched first.
            if let Some(category) = query.category.as_deref().filter(|c| !c.is_empty()) {
                found.retain(|channel| channel.category.eq_ignore_ascii_case(category));
            }
            if let Some(tag) = query.tag.as_deref().filter(|t| !t.is_empty()) {
                found.retain(|channel| channel.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)));
            }
            found.sort_by_key(|channel| (std::cmp::Reverse(state.hub().viewers(&channel.name)), channel.id.0));
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(found.len());
            found.drain(..start);
            found.truncate(limit as usize);
            found
        }
        Some(false) => {
            let mut found = super::list(state.db(), limit, offset).await?;
            found.retain(|channel| state.live().status(&channel.name).is_none());
            found
        }
        None => super::list(state.db(), limit, offset).await?,
    };
    let channels = channels.into_iter().map(|channel| view(&state, channel)).collect();
    Ok(Json(ListResponse { channels }))
}

async fn load(state: &AppState, name: &str) -> ApiResult<Channel> {
    super::find_or_404(state.db(), name).await
}

fn ensure_can_manage(user: &User, channel: &Channel) -> ApiResult<()> {
    if user.id == channel.owner_id || user.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("only the channel's owner or an admin may do this"))
    }
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<ChannelView>> {
    let channel = load(&state, &name).await?;
    Ok(Json(view(&state, channel)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    title: Option<String>,
    category: Option<String>,
    tags: Option<Vec<String>>,
    record: Option<bool>,
}

async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(name): Path<String>,
    Json(body): Json<UpdateRequest>,
) -> ApiResult<Json<ChannelView>> {
    let channel = load(&state, &name).await?;
    ensure_can_manage(&auth.user, &channel)?;
    let change = ChannelUpdate { title: body.title, category: body.category, tags: body.tags, record: body.record };
    super::update(state.db(), &channel, change).await?;
    let channel = load(&state, &name).await?;
    Ok(Json(view(&state, channel)))
}

#[derive(Debug, Serialize)]
struct KeyResponse {
    stream_key: String,
}

async fn rotate_key(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<KeyResponse>> {
    let channel = load(&state, &name).await?;
    ensure_can_manage(&auth.user, &channel)?;
    let key = super::rotate_key(state.db(), &channel).await?;
    tracing::info!(channel = %channel.name, by = %auth.user.username, "stream key rotated");
    Ok(Json(KeyResponse { stream_key: key.as_str().to_owned() }))
}

async fn mine(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<ListResponse>> {
    let channels = super::list_owned(state.db(), auth.user.id).await?;
    let channels = channels.into_iter().map(|channel| view(&state, channel)).collect();
    Ok(Json(ListResponse { channels }))
}
