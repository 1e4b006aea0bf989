//! A user's public profile and its settings: `GET /api/v1/users/{username}` (display name, bio,
//! links, pictures, their channels), `PATCH /api/v1/me/profile`, `PUT|DELETE
//! /api/v1/me/{avatar,banner}` (the picture's bytes as the body, re-encoded, see `images.rs`),
//! and the pictures themselves at `/u/{username}/{avatar,banner}.jpg`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use serde::{Deserialize, Serialize};

use super::images::{self, Picture};
use super::store::{self, ProfileRow};
use crate::app::AppState;
use crate::auth::{AuthUser, User, accounts};
use crate::channels::{self, ChannelView};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult, Json, Query};

const DISPLAY_NAME_MAX: usize = 50;
const BIO_MAX: usize = 1000;
const LINKS_MAX: usize = 5;
const LINK_TITLE_MAX: usize = 50;
const LINK_URL_MAX: usize = 300;

pub fn router() -> Router<AppState> {
    let pictures = Router::new()
        .route("/api/v1/me/avatar", put(put_avatar).delete(delete_avatar))
        .route("/api/v1/me/banner", put(put_banner).delete(delete_banner))
        .layer(DefaultBodyLimit::max(images::MAX_BYTES + 1));
    Router::new()
        .route("/api/v1/users/{username}", get(show))
        .route("/api/v1/me/profile", patch(update))
        .route("/u/{username}/{file}", get(picture))
        .merge(pictures)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProfileLink {
    pub title: String,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct ProfileView {
    pub username: String,
    pub display_name: String,
    pub bio: String,
    pub links: Vec<ProfileLink>,
    pub avatar_url: Option<String>,
    pub banner_url: Option<String>,
    pub created_at: i64,
    pub channels: Vec<ChannelView>,
}

fn picture_url(user: &User, picture: Picture, at: Option<i64>) -> Option<String> {
    at.map(|at| format!("/u/{}/{}.jpg?v={at}", user.username, picture.name()))
}

pub(super) fn picture_key(user: &User, picture: Picture) -> String {
    format!("profiles/{}/{}.jpg", user.id.0, picture.name())
}

async fn view(state: &AppState, user: User) -> ApiResult<ProfileView> {
    let mut conn = state.db().pool().acquire().await?;
    let row = store::profile(&mut conn, user.id).await?.unwrap_or_default();
    drop(conn);
    let channels =
        channels::list_owned(state.db(), user.id).await?.into_iter().map(|c| channels::public_view(state, c)).collect();
    Ok(ProfileView {
        display_name: if row.display_name.is_empty() { user.username.clone() } else { row.display_name },
        bio: row.bio,
        links: serde_json::from_str(&row.links).unwrap_or_default(),
        avatar_url: picture_url(&user, Picture::Avatar, row.avatar_at),
        banner_url: picture_url(&user, Picture::Banner, row.banner_at),
        created_at: user.created_at,
        username: user.username,
        channels,
    })
}

async fn find_user(state: &AppState, username: &str) -> ApiResult<User> {
    accounts::find_by_username(state.db(), username).await?.ok_or_else(|| ApiError::not_found("no such user"))
}

async fn show(State(state): State<AppState>, Path(username): Path<String>) -> ApiResult<Json<ProfileView>> {
    let user = find_user(&state, &username).await?;
    Ok(Json(view(&state, user).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileUpdate {
    display_name: Option<String>,
    bio: Option<String>,
    links: Option<Vec<ProfileLink>>,
}

fn checked_links(links: Vec<ProfileLink>) -> ApiResult<Vec<ProfileLink>> {
    if links.len() > LINKS_MAX {
        return Err(ApiError::invalid("invalid_links", format!("at most {LINKS_MAX} links")));
    }
    links
        .into_iter()
        .map(|link| {
            let title = channels::clean_text("link title", &link.title, LINK_TITLE_MAX)?;
            let url = link.url.trim().to_owned();
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            let host_ok = url.split("://").nth(1).is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !scheme_ok
                || !host_ok
                || url.len() > LINK_URL_MAX
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ApiError::invalid("invalid_links", "links are http:// or https:// addresses"));
            }
            Ok(ProfileLink { title, url })
        })
        .collect()
}

async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<ProfileUpdate>,
) -> ApiResult<Json<ProfileView>> {
    let mut tx = state.db().write().await?;
    let current =
        store::profile(&mut tx, auth.user.id).await?.unwrap_or(ProfileRow { links: "[]".into(), ..Default::default() });
    let display_name = match body.display_name {
        Some(name) => channels::clean_text("display_name", &name, DISPLAY_NAME_MAX)?,
        None => current.display_name,
    };
    let bio = match body.bio {
        Some(bio) => {
            let bio = bio.trim().to_owned();
            if bio.chars().count() > BIO_MAX || bio.chars().any(|c| c.is_control() && c != '\n') {
                return Err(ApiError::invalid("invalid_bio", format!("the bio is at most {BIO_MAX} characters")));
            }
            bio
        }
        None => current.bio,
    };
    let links = match body.links {
        Some(links) => serde_json::to_string(&checked_links(links)?).expect("links serialize"),
        None => current.links,
    };
    store::save_text(&mut tx, auth.user.id, &display_name, &bio, &links, now_ms()).await?;
    tx.commit().await?;
    Ok(Json(view(&state, auth.user).await?))
}

type Upload = Result<Bytes, BytesRejection>;

async fn store_picture(state: &AppState, user: &User, picture: Picture, body: Upload) -> ApiResult<Json<ProfileView>> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => images::ImageError::TooLarge.into(),
        status => ApiError::new(status, "invalid_body", rejection.body_text()),
    })?;
    let jpeg = tokio::task::spawn_blocking(move || images::reencode(&body, picture))
        .await
        .map_err(|error| anyhow::anyhow!("decoding a picture panicked: {error}"))??;
    state.storage().put(&picture_key(user, picture), vec![Bytes::from(jpeg)], "image/jpeg").await.map_err(|error| {
        tracing::error!(%error, "storing a profile picture failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "storage did not answer; try again")
    })?;
    let mut conn = state.db().pool().acquire().await?;
    let now = now_ms();
    store::set_picture(&mut conn, user.id, picture == Picture::Banner, Some(now), now).await?;
    drop(conn);
    Ok(Json(view(state, user.clone()).await?))
}

async fn remove_picture(state: &AppState, user: &User, picture: Picture) -> ApiResult<Json<ProfileView>> {
    let mut conn = state.db().pool().acquire().await?;
    store::set_picture(&mut conn, user.id, picture == Picture::Banner, None, now_ms()).await?;
    drop(conn);
    if let Err(error) = state.storage().delete_prefix(&picture_key(user, picture)).await {
        tracing::warn!(%error, "deleting a profile picture's object failed; it is no longer shown");
    }
    Ok(Json(view(state, user.clone()).await?))
}

async fn put_avatar(State(state): State<AppState>, auth: AuthUser, body: Upload) -> ApiResult<Json<ProfileView>> {
    store_picture(&state, &auth.user, Picture::Avatar, body).await
}

async fn put_banner(State(state): State<AppState>, auth: AuthUser, body: Upload) -> ApiResult<Json<ProfileView>> {
    store_picture(&state, &auth.user, Picture::Banner, body).await
}

async fn delete_avatar(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<ProfileView>> {
    remove_picture(&state, &auth.user, Picture::Avatar).await
}

async fn delete_banner(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<ProfileView>> {
    remove_picture(&state, &auth.user, Picture::Banner).await
}

#[derive(Debug, Deserialize)]
struct Version {
    v: Option<i64>,
}

/// A stored profile picture (our own JPEG): immutable when asked for by version.
async fn picture(
    State(state): State<AppState>,
    Path((username, file)): Path<(String, String)>,
    Query(version): Query<Version>,
) -> ApiResult<Response> {
    let picture = match file.as_str() {
        "avatar.jpg" => Picture::Avatar,
        "banner.jpg" => Picture::Banner,
        _ => return Err(ApiError::not_found("no such picture")),
    };
    let user = find_user(&state, &username).await?;
    let mut conn = state.db().pool().acquire().await?;
    let row = store::profile(&mut conn, user.id).await?.unwrap_or_default();
    drop(conn);
    let stored = if picture == Picture::Banner { row.banner_at } else { row.avatar_at };
    if stored.is_none() {
        return Err(ApiError::not_found("no such picture"));
    }
    let bytes =
        state.storage().get(&picture_key(&user, picture)).await.map_err(|_| ApiError::not_found("no such picture"))?;
    let cache = if version.v.is_some() { "public, max-age=31536000, immutable" } else { "public, max-age=60" };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        bytes,
    )
        .into_response())
}
