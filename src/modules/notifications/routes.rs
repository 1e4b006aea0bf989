//! HTTP surface of notifications (CONTRACT.md, "Platform"): `GET /api/v1/me/notifications`
//! (unread first, paged), `GET /api/v1/me/notifications/unread-count`, `POST
//! /api/v1/me/notifications/read` (`{"ids":[...]}` or `{"all":true}`), and the preferences,
//! `GET|PUT /api/v1/me/notification-settings`.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{Notification, NotificationKind, Prefs, UNREAD_CAP, store};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult, Json, Query};
use crate::http::{ListQuery, Listing};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/notifications", get(list))
        .route("/api/v1/me/notifications/unread-count", get(unread_count))
        .route("/api/v1/me/notifications/read", post(mark_read))
        .route("/api/v1/me/notification-settings", get(settings).put(update_settings))
}

async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Listing<Notification>>> {
    let limit = query.limit()?;
    let mut conn = state.db().pool().acquire().await?;
    let rows = store::page(&mut conn, auth.user.id, query.cursor()?, limit + 1).await?;
    Ok(Json(Listing::page(rows, limit, |n: &Notification| [i64::from(n.read_at.is_none()), n.id])))
}

#[derive(Debug, Serialize)]
struct UnreadCount {
    /// Unread notifications, counted up to `cap`.
    count: i64,
    cap: i64,
}

async fn unread_count(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<UnreadCount>> {
    let mut conn = state.db().pool().acquire().await?;
    let count = store::unread_count(&mut conn, auth.user.id, UNREAD_CAP).await?;
    Ok(Json(UnreadCount { count, cap: UNREAD_CAP }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadRequest {
    #[serde(default)]
    ids: Option<Vec<i64>>,
    #[serde(default)]
    all: bool,
}

async fn mark_read(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<ReadRequest>,
) -> ApiResult<Json<UnreadCount>> {
    let ids = match (&body.ids, body.all) {
        (Some(ids), false) if ids.len() <= 500 => Some(ids.as_slice()),
        (None, true) => None,
        _ => return Err(ApiError::invalid("invalid_body", "send {\"ids\": [up to 500 ids]} or {\"all\": true}")),
    };
    let mut conn = state.db().pool().acquire().await?;
    // Another user's ids match no row of this user's: nothing happens to them.
    store::mark_read(&mut conn, auth.user.id, ids, now_ms()).await?;
    let count = store::unread_count(&mut conn, auth.user.id, UNREAD_CAP).await?;
    Ok(Json(UnreadCount { count, cap: UNREAD_CAP }))
}

#[derive(Debug, Serialize, Deserialize)]
struct KindSetting {
    kind: NotificationKind,
    #[serde(skip_deserializing)]
    label: &'static str,
    in_app: bool,
    email: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    kinds: Vec<KindSetting>,
}

async fn current(state: &AppState, auth: &AuthUser) -> ApiResult<Settings> {
    let mut conn = state.db().pool().acquire().await?;
    let mut kinds = Vec::new();
    for kind in NotificationKind::ALL {
        let prefs = super::prefs_for(&mut conn, &[auth.user.id], kind).await?[&auth.user.id];
        kinds.push(KindSetting { kind, label: kind.label(), in_app: prefs.in_app, email: prefs.email });
    }
    Ok(Settings { kinds })
}

async fn settings(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Settings>> {
    Ok(Json(current(&state, &auth).await?))
}

async fn update_settings(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<Settings>,
) -> ApiResult<Json<Settings>> {
    let mut tx = state.db().write().await?;
    for setting in &body.kinds {
        let prefs = Prefs { in_app: setting.in_app, email: setting.email };
        store::set_prefs(&mut tx, auth.user.id, setting.kind, prefs).await?;
    }
    tx.commit().await?;
    Ok(Json(current(&state, &auth).await?))
}
