//! HLS / LL-HLS delivery from memory: the multivariant playlist, media playlists with blocking
//! reload (`_HLS_msn` / `_HLS_part`: the request waits on the rendition's change signal, not a
//! poll loop, for at most three target durations), init segments, segments and parts (a request
//! for the part the playlist hints at next waits for it too). Media URIs carry the stream session
//! id, so that they never repeat across broadcasts and may be cached as immutable.

use std::sync::Arc;
use std::time::Duration;

use aether_media::packager::Packager;
use aether_media::playlist::{self, RenditionReport, Resource, Variant};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;

use super::{LiveStream, Rendition};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/live/{channel}/master.m3u8", get(master))
        .route("/live/{channel}/thumbnail.jpg", get(thumbnail))
        .route("/live/{channel}/{rendition}/index.m3u8", get(media_playlist))
        .route("/live/{channel}/{rendition}/{session}/{file}", get(media_file))
}

const PLAYLIST: &str = "application/vnd.apple.mpegurl";
const MP4: &str = "video/mp4";

fn not_live(channel: &str) -> ApiError {
    ApiError::not_found(format!("\"{channel}\" is not live"))
}

fn stream(state: &AppState, channel: &str) -> ApiResult<Arc<LiveStream>> {
    state.live().get(channel).ok_or_else(|| not_live(channel))
}

/// How long a player's first playlist request may wait for a rendition's first segment: a
/// publisher's first keyframe interval (OBS's default is ~8.3 s), within players' own request
/// time-outs (hls.js: 10 s).
const FIRST_SEGMENT_WAIT: Duration = Duration::from_secs(9);

/// How long a blocking request may wait: three target durations (the LL-HLS recommendation).
fn hold(state: &AppState) -> Duration {
    Duration::from_secs_f64(state.config().hls.segment_seconds * 3.0)
}

/// Waits until `ready` holds for the rendition, the stream ends, or `limit` passes.
async fn wait_for(
    stream: &LiveStream,
    rendition: &Rendition,
    limit: Duration,
    ready: impl Fn(&Packager) -> bool,
) -> bool {
    let mut changes = rendition.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        changes.borrow_and_update();
        if ready(&rendition.packager()) {
            return true;
        }
        if stream.has_ended() {
            return false;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => return false,
        }
    }
}

/// A response of `chunks` sent one after another (a segment is its parts), without copying.
fn respond(kind: &'static str, content_type: &'static str, cache: &'static str, chunks: Vec<Bytes>) -> Response {
    let length: usize = chunks.iter().map(Bytes::len).sum();
    metrics::counter!("aether_hls_requests_total", "kind" => kind).increment(1);
    metrics::counter!("aether_hls_bytes_total").increment(length as u64);
    let body = match <[Bytes; 1]>::try_from(chunks) {
        Ok([single]) => Body::from(single),
        Err(chunks) => Body::from_stream(futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>))),
    };
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // Players embedded on other sites fetch media cross-origin.
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

const NO_CACHE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=86400, immutable";

async fn master(State(state): State<AppState>, Path(channel): Path<String>) -> ApiResult<Response> {
    let stream = stream(&state, &channel)?;
    // Right after going live there is nothing to describe yet: wait for the first part of every
    // rendition (a rung starts a moment after the source), so that the first answer already
    // lists the renditions that every later one lists.
    let deadline = tokio::time::Instant::now() + hold(&state);
    if !wait_for(&stream, &stream.source, hold(&state), |p| p.bandwidth().is_some()).await {
        return Err(not_live(&channel));
    }
    // The ladder is planned a second in (from the source's measured bitrate).
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    wait_for(&stream, &stream.source, left, |_| stream.ladder_decided()).await;
    for rendition in stream.renditions().skip(1) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        wait_for(&stream, rendition, left, |p| p.bandwidth().is_some()).await;
    }
    let variants: Vec<Variant> = stream
        .renditions()
        .filter_map(|rendition| rendition.variant(format!("{}/index.m3u8", rendition.name)))
        .collect();
    Ok(respond("master", PLAYLIST, NO_CACHE, vec![playlist::multivariant_playlist(&variants).into()]))
}

/// The live picture (a few seconds old at most), or the channel's preview from its last broadcast.
async fn thumbnail(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    request_headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    if let Some(jpeg) = state.live().get(&channel).and_then(|stream| stream.thumbnail()) {
        return Ok(respond("thumbnail", "image/jpeg", "public, max-age=5", vec![jpeg]));
    }
    crate::channels::validate_name(&channel).map_err(|_| ApiError::not_found("no such channel"))?;
    let key = super::preview_key(&channel);
    crate::vod::http::serve_object(&state, &key, &request_headers, ("image/jpeg", "public, max-age=60"), "thumbnail")
        .await
        .map_err(|_| ApiError::not_found(format!("no thumbnail of \"{channel}\"")))
}

#[derive(Debug, Deserialize)]
struct BlockingQuery {
    #[serde(rename = "_HLS_msn")]
    msn: Option<u64>,
    #[serde(rename = "_HLS_part")]
    part: Option<usize>,
}

async fn media_playlist(
    State(state): State<AppState>,
    Path((channel, rendition_name)): Path<(String, String)>,
    Query(query): Query<BlockingQuery>,
) -> ApiResult<Response> {
    let stream = stream(&state, &channel)?;
    let rendition = stream.rendition(&rendition_name).ok_or_else(|| ApiError::not_found("no such rendition"))?;
    let wanted = match (query.msn, query.part) {
        (None, Some(_)) => return Err(ApiError::bad_request("invalid_query", "_HLS_part needs _HLS_msn")),
        (Some(msn), part) => {
            let next = rendition.packager().next_msn();
            if msn > next + 2 {
                return Err(ApiError::bad_request("invalid_query", "_HLS_msn is too far in the future"));
            }
            Some((msn, part))
        }
        (None, None) => None,
    };
    let limit = hold(&state);
    let ready = match wanted {
        Some((msn, part)) => wait_for(&stream, rendition, limit, |p| p.has(msn, part)).await,
        // A plain request (a player joining) waits for the rendition's first complete segment,
        // as a blocking reload would: a playlist of parts and a preload hint alone is one that
        // some players (Shaka Player) cannot start from.
        None => wait_for(&stream, rendition, limit.max(FIRST_SEGMENT_WAIT), |p| p.last_msn().is_some()).await,
    };
    if !ready {
        if stream.has_ended() {
            return Err(not_live(&channel));
        }
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the requested part did not appear in time",
        ));
    }
    let reports: Vec<RenditionReport> = stream
        .renditions()
        .filter(|other| other.name != rendition.name)
        .filter_map(|other| {
            let packager = other.packager();
            let last_part = packager.last_part();
            let last_msn = last_part.map(|(msn, _)| msn).or(packager.last_msn())?;
            Some(RenditionReport {
                uri: format!("../{}/index.m3u8", other.name),
                last_msn,
                last_part: last_part.map(|(_, part)| part),
            })
        })
        .collect();
    let prefix = format!("{}/", stream.session_id);
    let text = playlist::media_playlist(&rendition.packager(), &prefix, &reports);
    Ok(respond("playlist", PLAYLIST, NO_CACHE, vec![text.into()]))
}

async fn media_file(
    State(state): State<AppState>,
    Path((channel, rendition_name, session, file)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let gone = || ApiError::not_found("no such media");
    let stream = stream(&state, &channel)?;
    if session.parse::<i64>().ok() != Some(stream.session_id) {
        return Err(gone());
    }
    let rendition = stream.rendition(&rendition_name).ok_or_else(gone)?;
    let resource = Resource::parse(&file).ok_or_else(gone)?;
    let found = match resource {
        Resource::Init(id) => rendition.packager().init(id).map(|bytes| ("init", vec![bytes])),
        Resource::Segment(msn) => rendition.packager().segment(msn).map(|chunks| ("segment", chunks)),
        Resource::Part(msn, index) => {
            // The hinted next part (or the first of the next segment) is worth waiting for.
            let upcoming = |p: &Packager| {
                let next = p.next_msn();
                (msn == next && p.open_segment_ref().is_some_and(|open| index <= open.parts.len()))
                    || (msn == next + 1 && index == 0)
            };
            if upcoming(&rendition.packager()) {
                wait_for(&stream, rendition, hold(&state), |p| p.part(msn, index).is_some()).await;
            }
            rendition.packager().part(msn, index).map(|bytes| ("part", vec![bytes]))
        }
    };
    let (kind, chunks) = found.ok_or_else(gone)?;
    Ok(respond(kind, MP4, IMMUTABLE, chunks))
}
