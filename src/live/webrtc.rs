//! WHIP (RFC 9725) and WHEP over HTTP: the offer is checked first (malformed 400, no H.264 or
//! Opus 406), then the stream key (401, a live channel 409) or the channel (404 when not live),
//! and only then is a peer made. Sessions are resources (`Location`), ended by `DELETE`;
//! `PATCH` takes trickled candidates (ICE-lite needs none, so they are accepted and ignored) and
//! ICE restarts.
//! Every response carries CORS headers so that a page on another origin can publish or play.

use std::net::SocketAddr;

use aether_ingest::webrtc::{OfferError, Role, Session, WebrtcError, check_offer};
use aether_ingest::{PublishAuthority, PublishRequest, Refusal};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};

use super::{FeedError, LivePublishers};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, Query};

const SDP: &str = "application/sdp";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/whip", post(publish).options(preflight))
        .route("/api/whip/{session}", delete(end_publish).patch(patch_publish).options(preflight))
        .route("/api/whep/{channel}", post(play).options(preflight))
        .route("/api/whep/{channel}/{session}", delete(end_play).patch(patch_play).options(preflight))
        .layer(axum::middleware::map_response(cors))
}

async fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers
        .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Location, ETag, Link, Accept-Patch"));
    response
}

async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "POST, PATCH, DELETE, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "Authorization, Content-Type, If-Match"),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
            (header::HeaderName::from_static("accept-post"), SDP),
            (header::HeaderName::from_static("accept-patch"), SDPFRAG),
        ],
    )
        .into_response()
}

fn endpoint(state: &AppState) -> ApiResult<&aether_ingest::webrtc::Endpoint> {
    state.webrtc().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webrtc_disabled",
            "WebRTC is turned off on this server (webrtc.enabled)",
        )
    })
}

/// The offer's text, checked: its content type, encoding and what it asks for.
fn offer<'a>(headers: &HeaderMap, body: &'a Bytes) -> ApiResult<&'a str> {
    content_type(headers, SDP)?;
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("invalid_sdp", "the SDP offer is not UTF-8"))?;
    check_offer(text).map_err(|error| match error {
        OfferError::NoH264(_) | OfferError::NoOpus(_) => {
            ApiError::new(StatusCode::NOT_ACCEPTABLE, "unsupported_codec", error.to_string())
        }
        OfferError::Malformed(_) | OfferError::NoMedia => ApiError::bad_request("invalid_sdp", error.to_string()),
    })?;
    Ok(text)
}

fn content_type(headers: &HeaderMap, wanted: &'static str) -> ApiResult<()> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    if given.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(wanted) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send Content-Type: {wanted}"),
        ))
    }
}

fn created(state: &AppState, session: Session, location: String) -> Response {
    let mut response = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, SDP.to_owned()), (header::LOCATION, location), (header::ETAG, session.etag)],
        session.answer,
    )
        .into_response();
    for server in &state.config().webrtc.ice_servers {
        if let Ok(link) = HeaderValue::from_str(&format!("<{server}>; rel=\"ice-server\"")) {
            response.headers_mut().append(header::LINK, link);
        }
    }
    response
}

async fn publish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let endpoint = endpoint(&state)?;
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::unauthorized("send the stream key as Authorization: Bearer <stream key>"))?;
    let offer = offer(&headers, &body)?;
    let request = PublishRequest { app: "whip".into(), stream_key: key.to_owned(), peer };
    let publication = LivePublishers::new(state.clone()).authorize(request).await.map_err(|refusal| match refusal {
        Refusal::UnknownKey => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_stream_key", "unknown stream key"),
        Refusal::AlreadyLive => ApiError::conflict("already_live", "the channel is already live"),
        Refusal::Unavailable(why) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why),
    })?;
    // A failure here drops the publication, which ends the broadcast it opened.
    let session = endpoint.publish(offer, publication).map_err(refused)?;
    let location = format!("/api/whip/{}", session.id);
    Ok(created(&state, session, location))
}

#[derive(serde::Deserialize)]
struct PlayQuery {
    /// A rendition by name (`source`, `360p`, ...); the best one when absent.
    rendition: Option<String>,
}

async fn play(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    Query(query): Query<PlayQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let endpoint = endpoint(&state)?;
    let offer = offer(&headers, &body)?;
    let stream = state
        .live()
        .get(&channel)
        .filter(|stream| !stream.has_ended())
        .ok_or_else(|| ApiError::not_found(format!("\"{channel}\" is not live")))?;
    let (feed, lower) = match stream.webrtc_feeds(query.rendition.as_deref()) {
        Ok(feeds) => feeds,
        Err(FeedError::NotYet) => {
            let error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the stream's renditions for WebRTC are starting: try again in a moment",
            );
            return Ok((StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "2")], error).into_response());
        }
        Err(FeedError::Unplayable) => {
            return Err(ApiError::conflict(
                "unplayable",
                "the source has B-frames and this server makes no renditions (transcode.enabled): \
                 WebRTC playback needs one; set the encoder to send no B-frames",
            ));
        }
        Err(FeedError::NoSuch(why)) => return Err(ApiError::new(StatusCode::NOT_FOUND, "no_such_rendition", why)),
    };
    let session = endpoint.play(offer, &channel, &feed, lower).map_err(refused)?;
    let location = format!("/api/whep/{channel}/{}", session.id);
    Ok(created(&state, session, location))
}

/// Why the endpoint did not start a session: full (503), or the offer could not be answered.
fn refused(error: WebrtcError) -> ApiError {
    match error {
        WebrtcError::Full => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", error.to_string()),
        error => ApiError::bad_request("invalid_sdp", error.to_string()),
    }
}

/// The session `id` of `role` (and channel, for WHEP), or 404.
fn find(state: &AppState, id: &str, role: Role, channel: Option<&str>) -> ApiResult<()> {
    match endpoint(state)?.session(id) {
        Some((found, name)) if found == role && channel.is_none_or(|channel| channel == name) => Ok(()),
        _ => Err(ApiError::not_found("no such WebRTC session (it ended, or never was)")),
    }
}

async fn end_publish(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    find(&state, &id, Role::Publisher, None)?;
    endpoint(&state)?.end(&id);
    Ok(StatusCode::OK)
}

async fn end_play(State(state): State<AppState>, Path((channel, id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    find(&state, &id, Role::Viewer, Some(&channel))?;
    endpoint(&state)?.end(&id);
    Ok(StatusCode::OK)
}

async fn patch_publish(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    find(&state, &id, Role::Publisher, None)?;
    patch(&state, &id, &headers, &body).await
}

async fn patch_play(
    State(state): State<AppState>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    find(&state, &id, Role::Viewer, Some(&channel))?;
    patch(&state, &id, &headers, &body).await
}

/// Trickled candidates are accepted (the server is ICE-lite: it learns the client's address from
/// its connectivity checks). An ICE restart (`If-Match: "*"`, RFC 9725 4.3.2) takes the client's
/// new credentials and answers ours (200, an SDP fragment, a new ETag); the media goes on.
async fn patch(state: &AppState, id: &str, headers: &HeaderMap, body: &Bytes) -> ApiResult<Response> {
    content_type(headers, SDPFRAG)?;
    let fragment =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("invalid_sdpfrag", "the fragment is not UTF-8"))?;
    if headers.get(header::IF_MATCH).is_none_or(|value| value.as_bytes() != b"*") {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    match endpoint(state)?.restart(id, fragment).await {
        Ok((answer, etag)) => {
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, SDPFRAG.to_owned()), (header::ETAG, etag)], answer)
                .into_response())
        }
        Err(WebrtcError::BadFragment) => {
            Err(ApiError::bad_request("invalid_sdpfrag", WebrtcError::BadFragment.to_string()))
        }
        Err(_) => Err(ApiError::not_found("no such WebRTC session (it ended, or never was)")),
    }
}
