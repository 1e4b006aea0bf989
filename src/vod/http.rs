//! VOD playback over HLS: the multivariant playlist and each rendition's media playlist are
//! rendered from the segment index; init segments and segments come from object storage, as a
//! redirect to a presigned URL (S3) or streamed through. Private VODs answer 404 to anyone but
//! their channel's owner and admins.

use aether_media::playlist::{Variant, multivariant_playlist};
use aether_vod::playlist::{self, VodFile};
use aether_vod::{Download, StorageError};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::routes::visible;
use super::{Visibility, Vod, VodStatus};
use crate::app::AppState;
use crate::auth::MaybeUser;
use crate::error::{ApiError, ApiResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/vod/{id}/master.m3u8", get(master))
        .route("/vod/{id}/thumbnail.jpg", get(thumbnail))
        .route("/vod/{id}/{rendition}/index.m3u8", get(media_playlist))
        .route("/vod/{id}/{rendition}/{file}", get(media_file))
}

const PLAYLIST: &str = "application/vnd.apple.mpegurl";

fn headers(response: &mut Response, content_type: &'static str, cache: &'static str) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
}

/// Playlists may change (a recording grows; visibility can be withdrawn): revalidate each time.
pub(crate) fn playlist_response(text: String) -> Response {
    metrics::counter!("aether_vod_requests_total", "kind" => "playlist").increment(1);
    let mut response = text.into_response();
    headers(&mut response, PLAYLIST, "no-cache");
    response
}

async fn master(
    State(state): State<AppState>,
    MaybeUser(auth): MaybeUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let vod = visible(&state, auth.as_ref(), &id).await?;
    let variants: Vec<Variant> = super::renditions(state.db(), &vod)
        .await?
        .into_iter()
        .map(|rendition| Variant {
            uri: format!("{}/index.m3u8", rendition.name),
            bandwidth: rendition.peak_bps,
            average_bandwidth: rendition.average_bps,
            codecs: rendition.codecs.split(',').map(str::to_owned).collect(),
            resolution: rendition.resolution,
            frame_rate: rendition.frame_rate,
        })
        .collect();
    if variants.is_empty() {
        return Err(ApiError::not_found("this VOD has no recorded media yet"));
    }
    Ok(playlist_response(multivariant_playlist(&variants)))
}

/// A picture from about `transcode.thumbnail_seconds` into the broadcast, when one was taken.
async fn thumbnail(
    State(state): State<AppState>,
    MaybeUser(auth): MaybeUser,
    Path(id): Path<String>,
    request_headers: HeaderMap,
) -> ApiResult<Response> {
    let vod = visible(&state, auth.as_ref(), &id).await?;
    let key = format!("{}/thumbnail.jpg", vod.storage_prefix());
    let cache = match vod.visibility {
        Visibility::Private => "private, max-age=300",
        Visibility::Unlisted | Visibility::Public => "public, max-age=300",
    };
    serve_object(&state, &key, &request_headers, ("image/jpeg", cache), "thumbnail").await
}

async fn media_playlist(
    State(state): State<AppState>,
    MaybeUser(auth): MaybeUser,
    Path((id, rendition)): Path<(String, String)>,
) -> ApiResult<Response> {
    let vod = visible(&state, auth.as_ref(), &id).await?;
    let segments = super::segments(state.db(), &vod, &rendition).await?;
    if segments.is_empty() {
        return Err(ApiError::not_found("no such rendition"));
    }
    Ok(playlist_response(playlist::media_playlist(&segments, vod.status == VodStatus::Ready)))
}

/// Media objects never change under a name; private ones stay out of shared caches.
fn media_cache(vod: &Vod) -> &'static str {
    match vod.visibility {
        Visibility::Private => "private, max-age=86400, immutable",
        Visibility::Unlisted | Visibility::Public => "public, max-age=86400, immutable",
    }
}

async fn media_file(
    State(state): State<AppState>,
    MaybeUser(auth): MaybeUser,
    Path((id, rendition, file)): Path<(String, String, String)>,
    request_headers: HeaderMap,
) -> ApiResult<Response> {
    let gone = || ApiError::not_found("no such media");
    let vod = visible(&state, auth.as_ref(), &id).await?;
    let file = VodFile::parse(&file).ok_or_else(gone)?;
    let key = super::object_key(state.db(), &vod, &rendition, file).await?.ok_or_else(gone)?;
    let kind = match file {
        VodFile::Init(_) => "init",
        VodFile::Segment(_) => "segment",
    };
    serve_object(&state, &key, &request_headers, ("video/mp4", media_cache(&vod)), kind).await
}

/// An object from storage for a player or downloader: a redirect to a presigned URL, or the
/// bytes streamed through (a single `Range` honoured with 206).
pub(crate) async fn serve_object(
    state: &AppState,
    key: &str,
    request_headers: &HeaderMap,
    (content_type, cache): (&'static str, &'static str),
    kind: &'static str,
) -> ApiResult<Response> {
    let range = request_headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(aether_vod::parse_range);
    let download = state.storage().download(key, range).await.map_err(|error| match error {
        StorageError::NotFound(_) => ApiError::not_found("no such media"),
        StorageError::Range { size } => ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the object has {size} bytes"),
        ),
        error => {
            tracing::error!(key, %error, "reading a stored object failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "storage did not answer; try again")
        }
    })?;
    metrics::counter!("aether_vod_requests_total", "kind" => kind).increment(1);
    let mut response = match download {
        Download::Redirect(url) => {
            let mut response = StatusCode::FOUND.into_response();
            let location = HeaderValue::try_from(url).map_err(anyhow::Error::from)?;
            response.headers_mut().insert(header::LOCATION, location);
            // The URL expires: never cache the redirect for long.
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=60"));
            response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            return Ok(response);
        }
        Download::Stream { size, range, body } => {
            let length = range.end - range.start;
            metrics::counter!("aether_vod_bytes_total").increment(length);
            let mut response = Body::from_stream(body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if length != size {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                let value = format!("bytes {}-{}/{size}", range.start, range.end.saturating_sub(1));
                response
                    .headers_mut()
                    .insert(header::CONTENT_RANGE, HeaderValue::try_from(value).map_err(anyhow::Error::from)?);
            }
            response
        }
    };
    headers(&mut response, content_type, cache);
    Ok(response)
}
